"""The real app in headless Chromium: keyboard verdict lands in SQLite, undo removes it, markup stays text."""

from __future__ import annotations

import time

import pytest

from core import labels
from core.workspace import open_workspace
from tests.app_helpers import CHROMIUM, CHROMIUM_ARGS as ARGS, ROOT, copy_workspace, streamlit_server

MARKUP = "<script>alert('x')</script> **not bold**"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")]


@pytest.fixture
def server(mined, tmp_path):
    """`streamlit run app.py` on a loopback port over a private copy of the mined workspace."""
    ws, _, _ = mined
    root = copy_workspace(ws.root, tmp_path / "ws")
    with streamlit_server({"NEGSPACE_WORKSPACE": str(root)}, tmp_path / "streamlit.log") as url:
        yield url, root


def _wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_keyboard_verdict_undo_and_literal_markup(server):
    from playwright.sync_api import sync_playwright

    url, root = server
    store = open_workspace(root).store()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            page.goto(f"{url}/review")
            page.get_by_text("how do I join path components").first.wait_for(timeout=90_000)
            page.locator(".st-key-ns_false_negative button").first.wait_for(timeout=30_000)
            page.get_by_role("heading", name="Review").click()  # focus the page, as a user's first click does
            page.keyboard.press("f")
            judged = _wait_for(lambda: not labels.current(store, "tiny", "reviewer").empty)
            assert judged, "pressing f recorded no verdict"
            current = labels.current(store, "tiny", "reviewer")
            assert list(current["label"]) == ["false_negative"] and list(current["query_id"]) == ["q1"]
            page.get_by_text("1 / 3 judged", exact=False).first.wait_for(timeout=20_000)
            page.keyboard.press("z")
            assert _wait_for(lambda: labels.current(store, "tiny", "reviewer").empty), "z did not undo"
            page.get_by_text("0 / 3 judged", exact=False).first.wait_for(timeout=20_000)

            page.get_by_text("all mined").click()
            page.get_by_text("0 / 20 judged", exact=False).first.wait_for(timeout=20_000)
            for _ in range(25):  # walk the candidates with j until the markup document is the current one
                if page.get_by_text(MARKUP, exact=False).count():
                    break
                page.keyboard.press("j")
                time.sleep(0.6)
            shown = page.get_by_text(MARKUP, exact=False).first
            shown.wait_for(timeout=10_000)
            assert MARKUP in shown.inner_text()
            assert page.locator("strong", has_text="not bold").count() == 0
            assert not dialogs, f"document script ran: {dialogs}"
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "review-browser.png"))
        finally:
            browser.close()
