"""The real app in headless Chromium with NEGSPACE_PASSWORD set: only the password prompt shows (also on a deep
link to a page), a wrong password is refused, the right one opens the app."""

from __future__ import annotations


import pytest

from tests.app_helpers import CHROMIUM, CHROMIUM_ARGS as ARGS, ROOT, streamlit_server

PASSWORD = "s3cret-pässwörd"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")]


@pytest.fixture
def locked_server(tmp_path):
    """`streamlit run app.py` on a loopback port, password set, on an empty workspace (no demo build)."""
    env = {"NEGSPACE_PASSWORD": PASSWORD, "NEGSPACE_WORKSPACE": str(tmp_path / "ws")}
    with streamlit_server(env, tmp_path / "streamlit.log") as url:
        yield url


def assert_only_the_prompt(page) -> None:
    """The password field is there, and nothing of the app: no sidebar, no navigation, no page content."""
    page.locator("input[type=password]").wait_for(timeout=60_000)
    assert page.locator("[data-testid=stSidebar]").count() == 0
    assert page.locator("[data-testid=stSidebarNav]").count() == 0
    body = page.locator("[data-testid=stMain]").inner_text()
    for app_text in ("Workspace folder", "Overview", "Team", "no dataset yet", "Annotator"):
        assert app_text not in body, f"{app_text!r} visible before the password was given"


def test_password_gate_in_the_browser(locked_server):
    from playwright.sync_api import sync_playwright

    url = locked_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 850})
            page.goto(url)
            assert_only_the_prompt(page)

            page.locator("input[type=password]").fill("wrong password")
            page.get_by_role("button", name="Enter").click()
            page.get_by_text("Wrong password.").wait_for(timeout=30_000)
            assert_only_the_prompt(page)

            deep = browser.new_page()  # a fresh session opening a page by URL is gated too
            deep.goto(f"{url}/team")
            assert_only_the_prompt(deep)
            deep.close()

            page.locator("input[type=password]").fill(PASSWORD)
            page.get_by_role("button", name="Enter").click()
            page.get_by_text("Workspace folder").first.wait_for(timeout=60_000)
            page.locator("input[type=password]").wait_for(state="detached", timeout=30_000)
            page.get_by_text("no dataset yet", exact=False).first.wait_for(timeout=30_000)
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "auth-unlocked.png"))
        finally:
            browser.close()
