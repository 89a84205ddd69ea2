"""Negative Space in the browser: password gate, first-run demo build, sidebar and page navigation.

Run with ``python3 -m streamlit run app.py --server.address 127.0.0.1``. Pages are thin views over ``core``.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.auth import check_password, configured_password
from core.demo import demo_needed, ensure_demo
from core.jobs import Job
from core.projection import warm_umap
from core.workspace import open_workspace, resolve_path
from pages import common

HERE = Path(__file__).resolve().parent
st.set_page_config(page_title="Negative Space", page_icon=":material/search:", layout="wide")


PAGES = HERE / "pages"


def page_sections() -> dict[str, list]:
    """Every page by sidebar section."""
    return {
        "Data": [st.Page("pages/overview.py", title="Overview", icon=":material/bar_chart:", default=True),
                 st.Page("pages/import_data.py", title="Import", icon=":material/upload_file:")],
        "Negatives": [st.Page("pages/mine.py", title="Mine", icon=":material/filter_alt:"),
                      st.Page("pages/review.py", title="Review", icon=":material/gavel:"),
                      st.Page("pages/map.py", title="Map", icon=":material/scatter_plot:")],
        "Team & training": [st.Page("pages/team.py", title="Team", icon=":material/group:"),
                            st.Page("pages/train.py", title="Train", icon=":material/model_training:")],
        "Output": [st.Page("pages/export.py", title="Export", icon=":material/download:")],
    }


def hide_navigation() -> None:
    """Register the pages without showing them, so a gate screen never shows Streamlit's raw file list."""
    st.navigation(page_sections(), position="hidden")


def _secrets() -> dict:
    """st.secrets raises when no secrets.toml exists; no file simply means no secret password."""
    try:
        return dict(st.secrets)
    except Exception:  # noqa: BLE001 - FileNotFoundError or Streamlit's own "no secrets" error
        return {}


def password_gate() -> None:
    """Show only a password prompt until the configured password is given (nothing else renders before)."""
    expected = configured_password(secrets=_secrets())
    if expected is None or st.session_state.get("ns_authenticated"):
        return
    hide_navigation()
    st.title("Negative Space")
    with st.form("ns_login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Enter")
    if submitted:
        if check_password(given, expected):
            st.session_state["ns_authenticated"] = True
            st.rerun()
        st.error("Wrong password.")
    st.stop()


@st.cache_resource(show_spinner=False)
def demo_job(root: str) -> Job:
    """One demo build per workspace per server process, shared by every tab that opens meanwhile."""
    return Job("demo", lambda stage: ensure_demo(open_workspace(root), stage))


@st.cache_resource(show_spinner=False)
def umap_warmer() -> Job | None:
    """Compile UMAP's numba kernels in the background once per process, so the Map page gets UMAP quickly."""
    if os.environ.get("NEGSPACE_UMAP", "1") == "0":
        return None
    return Job("warm-umap", lambda stage: warm_umap())


def demo_gate() -> None:
    """On the default workspace, build the demo (with progress) the first time the app is opened."""
    root = resolve_path(None)
    if os.environ.get("NEGSPACE_DEMO", "1") == "0" or st.session_state.get(common.WORKSPACE, str(root)) != str(root):
        return
    if not demo_needed(common.get_store(str(root))):
        return
    job = demo_job(str(root))
    hide_navigation()
    st.title("Negative Space")
    st.write("Building the demo workspace from this machine's Python standard-library documentation: "
             "docstring summaries are the queries, functions the documents, and re-exported or near-identical "
             "functions are natural false negatives. First start only, about two minutes; nothing is downloaded.")
    bar = st.progress(0.0, text=job.message)
    while not job.wait(0.5):
        bar.progress(job.fraction, text=job.message)
    if job.error is not None:
        st.error(f"Building the demo failed: {job.error}")
        if st.button("Retry"):
            demo_job.clear()
            st.rerun()
        st.stop()
    st.rerun()


password_gate()
demo_gate()
umap_warmer()
st.session_state[common.APP_RAN] = True
common.sidebar()

navigation = st.navigation(page_sections())
deep_link = st.session_state.pop(common.DEEP_LINK, None)
if deep_link and (PAGES / deep_link).exists():
    st.switch_page(f"pages/{deep_link}")  # a page opened by URL before the app had started (common.through_app)
navigation.run()
