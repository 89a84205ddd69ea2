"""A freshly CLI-mined, unscored run in headless Chromium: the Review page shows its first query within 5 s while
risk is being scored in the background, and the risk column fills in without a reload once scoring is done."""

from __future__ import annotations

import re
import time

import pytest

from core.workspace import open_workspace
from tests.app_helpers import CHROMIUM, CHROMIUM_ARGS, streamlit_server
from tests.cli_helpers import run_cli
from tests.fixtures import QUERIES, make_beir

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")]

# Started as `python -c LAUNCHER run app.py ...`: registers, in the server process only, a risk signal that holds
# scoring until the test creates the file NS_TEST_RELEASE (or two minutes pass), so the test sees the page while
# scoring is certainly still running; then Streamlit's own command line runs the app.
LAUNCHER = """
import os, sys, time
import numpy as np
from core import risk

def held(ctx):
    deadline = time.monotonic() + 120
    while not os.path.exists(os.environ["NS_TEST_RELEASE"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return np.zeros(ctx.n)

risk.register(risk.Signal("test_held", "holds scoring until the test releases it", held, 0.0))
from streamlit.web import cli
sys.argv = ["streamlit", *sys.argv[1:]]
sys.exit(cli.main(prog_name="streamlit"))
"""
FIRST_QUERY_S = 5
RISK_CELL = 7  # the risk column of pages/candidate_list.js's table (1-based)


def _risk_cells(page) -> list[str]:
    return page.locator(f".ns-list tr[data-doc] td:nth-child({RISK_CELL})").all_inner_texts()


def test_review_opens_on_an_unscored_run_while_risk_is_scored_then_shows_risk(tmp_path):
    from playwright.sync_api import sync_playwright

    root = tmp_path / "ws"
    for args in (("ingest", make_beir(tmp_path / "tiny"), "--workspace", root, "--name", "tiny"),
                 ("mine", "--workspace", root, "--dataset", "tiny", "--depth", 20, "--rule", "top",
                  "--num-negatives", 3)):
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
    store = open_workspace(root).store()
    run_id = store.runs("tiny")[0]["run_id"]
    assert store.risk_scored_at(run_id) is None, "mining leaves risk to the first review"
    release = tmp_path / "release-scoring"
    env = {"NEGSPACE_WORKSPACE": str(root), "NS_TEST_RELEASE": str(release)}
    with streamlit_server(env, tmp_path / "streamlit.log", ("-c", LAUNCHER)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            warm = browser.new_page()  # the server's first script run imports the app; Review is timed after it
            warm.goto(f"{url}/import_data?annotator=ana")
            warm.get_by_role("heading", name="Import").wait_for(timeout=90_000)
            warm.close()
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/review?annotator=ana")
            page.locator(".ns-list tr[data-doc]").first.wait_for(timeout=FIRST_QUERY_S * 1000)
            page.get_by_text(QUERIES["q1"], exact=True).first.wait_for(timeout=1000)
            assert set(_risk_cells(page)) == {"scoring…"}
            assert not release.exists() and store.risk_scored_at(run_id) is None, "scoring is still running"
            release.touch()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not all(re.fullmatch(r"\d\.\d\d", c) for c in _risk_cells(page)):
                time.sleep(0.3)
            cells = _risk_cells(page)
            assert cells and all(re.fullmatch(r"\d\.\d\d", c) for c in cells), cells
            assert store.risk_scored_at(run_id) is not None
        finally:
            browser.close()
    store.close()
