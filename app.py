"""Negative Space in the browser: sign-in gate, first-run demo build, sidebar and page navigation.

Who is asked what (core.auth): nobody when the server's workspace has no accounts and no shared password is set;
the shared password ($NEGSPACE_PASSWORD) when no accounts exist; otherwise an account name and password, and the
pages each role may use (core.roles) are the only ones in the navigation.

Run with ``python3 -m streamlit run app.py --server.address 127.0.0.1``. Pages are thin views over ``core``.
"""

from __future__ import annotations

import gc
import os

import streamlit as st

from core import audit, auth, roles
from core.demo import demo_needed, ensure_demo
from core.errors import UserError
from core.jobs import Job
from core.projection import warm_umap
from core.workspace import open_workspace, resolve_path
from pages import common

st.set_page_config(page_title="Negative Space", page_icon=":material/search:", layout="wide")


# Every page by sidebar section, with the core.roles action it needs (None: every signed-in role may look).
SECTIONS: dict[str, list[tuple[str, str, str, str | None]]] = {
    "Data": [("overview.py", "Overview", ":material/bar_chart:", None),
             ("import_data.py", "Import", ":material/upload_file:", roles.DATASETS)],
    "Negatives": [("mine.py", "Mine", ":material/filter_alt:", roles.RUNS),
                  ("review.py", "Review", ":material/gavel:", roles.JUDGE),
                  ("map.py", "Map", ":material/scatter_plot:", roles.JUDGE)],
    "Team & training": [("team.py", "Team", ":material/group:", None),
                        ("train.py", "Train", ":material/model_training:", roles.TRAIN)],
    "Output": [("export.py", "Export", ":material/download:", roles.EXPORT)],
    "Server": [("accounts.py", "Accounts", ":material/manage_accounts:", roles.ACCOUNTS)],
}


def visible_pages(account: roles.Actor | None) -> dict[str, list[tuple[str, str, str, str | None]]]:
    """The pages ``account`` may use, by section: all of them without accounts, except Accounts, which exists
    only once someone has signed in. A page left out cannot be opened by its URL either."""
    sections = {section: [page for page in pages if (page[3] is None or roles.may(account, page[3]))
                          and (page[3] != roles.ACCOUNTS or account is not None)]
                for section, pages in SECTIONS.items()}
    return {section: pages for section, pages in sections.items() if pages}


def page_sections(account: roles.Actor | None = None) -> dict[str, list]:
    """st.navigation's sections of the pages ``account`` may use."""
    return {section: [st.Page(f"pages/{file}", title=title, icon=icon, default=file == "overview.py")
                      for file, title, icon, _ in pages]
            for section, pages in visible_pages(account).items()}


def hide_navigation() -> None:
    """Register the pages without showing them, so a gate screen never shows Streamlit's raw file list."""
    st.navigation(page_sections(), position="hidden")


def _secrets() -> dict:
    """st.secrets raises when no secrets.toml exists; no file simply means no secret password."""
    try:
        return dict(st.secrets)
    except Exception:  # noqa: BLE001 - FileNotFoundError or Streamlit's own "no secrets" error
        return {}


def confinement_gate() -> None:
    """With $NEGSPACE_ROOT, the server's own workspace must lie inside it (a configuration error stops the app
    with a message naming the variables, never the paths)."""
    try:
        root = common.server_root()
    except UserError as exc:
        hide_navigation()
        st.error(f"The server is misconfigured: {exc}")
        st.stop()
    if root is not None and not resolve_path(None).is_relative_to(root):
        hide_navigation()
        st.error("The server is misconfigured: its workspace ($NEGSPACE_WORKSPACE, default data/workspace) must lie "
                 "inside $NEGSPACE_ROOT.")
        st.stop()


def sign_in_gate() -> None:
    """Show only a sign-in prompt until the visitor is let in (nothing else renders before): an account when the
    server's workspace has accounts, else the shared password when one is configured."""
    roles.act_from(common.signed_in)  # once per run is harmless: core's refusals ask this session who it is
    audit.attribute_from(common.audit_name)  # who wrote, when nobody is signed in
    store = common.server_store()
    if store.has_accounts():
        account_gate(store)
    else:
        for key in (common.ACCOUNT, common.SESSION):  # the last account was removed: back to the open modes
            st.session_state.pop(key, None)
        password_gate()


def account_gate(store) -> None:
    """Resume this browser session's sign-in (re-reading the account, so a role change applies at once), or ask
    for an account name and password; a session unused for $NEGSPACE_SESSION_IDLE_H hours, or whose password
    was changed, signs in again."""
    session = st.session_state.get(common.SESSION)
    if session is not None:
        resumed = auth.resume(store, session)
        if resumed is not None:
            st.session_state[common.ACCOUNT], st.session_state[common.SESSION] = resumed
            return
        for key in (common.ACCOUNT, common.SESSION, common.ANNOTATOR):
            st.session_state.pop(key, None)
        st.session_state["ns_sign_in_note"] = "Your session ended; sign in again."
    hide_navigation()
    st.title("Negative Space")
    if note := st.session_state.pop("ns_sign_in_note", None):
        st.info(note)
    with st.form("ns_sign_in"):
        name = st.text_input("Account")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            account = auth.sign_in(store, name.strip(), password, st.context.ip_address)
        except UserError as exc:
            st.error(str(exc))
        else:
            st.session_state[common.ACCOUNT], st.session_state[common.SESSION] = account, auth.start_session(account)
            st.rerun()
    st.stop()


def password_gate() -> None:
    """Show only a password prompt until the shared password is given, slowed down after wrong ones."""
    expected = auth.configured_password(secrets=_secrets())
    if expected is None or st.session_state.get("ns_authenticated"):
        return
    hide_navigation()
    st.title("Negative Space")
    with st.form("ns_login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Enter")
    if submitted:
        try:
            auth.enter_shared_password(given, expected, st.context.ip_address)
        except UserError as exc:
            st.error(str(exc))
        else:
            st.session_state["ns_authenticated"] = True
            st.rerun()
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


@st.cache_resource(show_spinner=False)
def freeze_startup_heap() -> int:
    """Take everything alive after the process's first complete page run (Streamlit, pandas, plotly, pyarrow, the
    core modules and what they cached: a few million objects that live as long as the server) out of the cyclic
    garbage collector's walk, once per server process (``gc.freeze``). Left in, each full collection walks them all
    and lands in whichever rerun triggers it: Review reruns on a 100k run measured p50 46 / p95 118 ms, 51 ms at p95
    with them frozen. Objects made later are collected as before; a frozen object is still freed when nothing
    refers to it."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


confinement_gate()
sign_in_gate()
demo_gate()
umap_warmer()
st.session_state[common.APP_RAN] = True
common.sidebar()

navigation = st.navigation(page_sections(common.account()))
deep_link = st.session_state.pop(common.DEEP_LINK, None)
if deep_link and deep_link in {page[0] for pages in visible_pages(common.account()).values() for page in pages}:
    st.switch_page(f"pages/{deep_link}")  # a page opened by URL before the app had started (common.through_app)
try:
    navigation.run()
finally:  # also when the page stopped or asked for a rerun: its imports and caches are in place by then
    freeze_startup_heap()
