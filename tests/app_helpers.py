"""Helpers for the Streamlit AppTest suites: a private copy of a mined workspace and an app opened on a page."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def store_at(root: Path):
    from core.workspace import open_workspace

    return open_workspace(root).store()


def copy_workspace(src: Path, dst: Path) -> Path:
    """A consistent copy (SQLite online backup + cached embeddings) so a test's verdicts never leak to others."""
    dst.mkdir(parents=True)
    for sub in ("embeddings", "projections", "models", "exports"):
        if (src / sub).is_dir():
            shutil.copytree(src / sub, dst / sub)
    source, target = sqlite3.connect(src / "negspace.sqlite"), sqlite3.connect(dst / "negspace.sqlite")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dst


class _NavigationPagesManager(PagesManager):
    """AppTest resets ``uses_pages_directory`` before every run, so with a ``pages/`` folder each run after the
    first would execute the page file alone (Streamlit's legacy mode) instead of app.py. A real server clears
    the flag for good once app.py calls st.navigation; this does the same for every test run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False


def open_app(monkeypatch, workspace: Path, page: str | None = None, password: str | None = None,
             annotator: str | None = "reviewer", url: dict[str, str] | None = None) -> AppTest:
    """Run app.py on ``workspace`` (demo build and UMAP off) as ``annotator`` (None: nobody chose a name yet),
    opened on a URL with the query parameters ``url`` (as after a reload), and switch to ``page``; fails on any
    exception."""
    monkeypatch.setenv("NEGSPACE_WORKSPACE", str(workspace))
    monkeypatch.setenv("NEGSPACE_DEMO", "0")
    monkeypatch.setenv("NEGSPACE_UMAP", "0")
    if password is None:
        monkeypatch.delenv("NEGSPACE_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("NEGSPACE_PASSWORD", password)
    monkeypatch.setattr("streamlit.testing.v1.app_test.PagesManager", _NavigationPagesManager)
    at = AppTest.from_file(APP, default_timeout=180)
    if annotator is not None:
        at.session_state["ns_annotator"] = annotator
    at.query_params.update(url or {})
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def finish_job(at: AppTest, key: str, fails: bool = False) -> None:
    """Wait for the page's background job under ``key`` (started by a click), then run the page once: it reports
    the result, or with ``fails`` the user error the job stopped with. A job quick enough to end before the rerun
    that follows the click was reported by that rerun already: the page is not run again (a report is shown once).
    """
    assert not at.exception, [e.value for e in at.exception]
    if key not in at.session_state:
        assert bool(at.error) == fails, [e.value for e in at.error]
        return
    job = at.session_state[key]
    assert job.wait(600), f"{key} still running"
    assert (job.error is not None) == fails, job.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def outlives_a_click(at: AppTest, button: str, key: str, entered, release, touch: Callable[[AppTest], object],
                     while_running: Callable[[], object] = lambda: None) -> None:
    """Click ``button`` and check its job under ``key`` survives a click meanwhile: once the job is inside its held
    work (``entered``, a ``threading.Event`` the test's stand-in sets), ``touch`` a widget and rerun, check the job is
    still running (and ``while_running``), then ``release`` it and let the page report it (``finish_job``)."""
    at.button(key=button).click()
    timed(at)
    assert at.button(key=button).disabled, "one such job per session at a time"
    assert entered.wait(60)
    touch(at)
    timed(at)
    assert not at.session_state[key].done
    while_running()
    release.set()
    finish_job(at, key)


def candidate_list(at: AppTest) -> dict:
    """What the Review page's candidate list (a custom component, pages/candidate_list.py) was mounted with:
    query_id, cursor and rows (doc_id, rank, label, score, margin, rule, risk, text)."""
    import json

    mounted = [e for e in at.get("bidi_component") if e.proto.component_name == "ns_candidate_list"]
    assert len(mounted) == 1, "the candidate list is not on the page"
    return json.loads(mounted[0].proto.json)


def timed(at: AppTest) -> float:
    """Seconds one script run takes (the server-side latency of an interaction)."""
    started = time.perf_counter()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return time.perf_counter() - started


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


@contextmanager
def streamlit_server(env: dict[str, str], log_path: Path,
                     launcher: tuple[str, ...] = ("-m", "streamlit")) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port with ``env`` added; yields its URL once healthy.
    ``launcher``: the Python arguments that start Streamlit's command line (e.g. ``-c`` code that first registers
    something in the server process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    full_env = {**os.environ, "NEGSPACE_DEMO": "0", "NEGSPACE_UMAP": "0", **env}
    if "NEGSPACE_PASSWORD" not in env:
        full_env.pop("NEGSPACE_PASSWORD", None)
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, *launcher, "run", str(ROOT / "app.py"),
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                                cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("streamlit did not start: " + log_path.read_text()) from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)
