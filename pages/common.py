"""Shared sidebar, session state and cached readers for every page.

Session-state contract (read by every page):
``ns_workspace`` (str path), ``ns_dataset`` (str | None), ``ns_run`` (str | None), ``ns_annotator`` (str).
Pages change the dataset or run with ``select_dataset`` / ``select_run`` (applied before the sidebar widgets
exist on the next run, because Streamlit forbids writing a widget's key after it is drawn).

The workspace, dataset, run and annotator are mirrored in the URL's query parameters, so a reload (which starts
a new session) comes back to the same run under the same annotator instead of falling back to defaults: a
verdict recorded under the wrong name would corrupt agreement statistics.

When the server's workspace has accounts, ``ns_account`` holds the signed-in core.accounts.Account (app.py's
gate) and the annotator is that account's name: there is no name box, and the URL's annotator is ignored. With
$NEGSPACE_ROOT the workspace box takes a folder inside that root (core.validation.confined_path) and shows paths
relative to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core import roles
from core.accounts import Account
from core.devices import DEVICE_HELP, available_devices
from core.errors import UserError
from core.jobs import Job
from core.review import RunOutline, run_outline
from core.store import Store
from core.validation import configured_root, confined_path, relative_to_root
from core.workspace import Workspace, open_workspace, resolve_path

WORKSPACE, DATASET, RUN, ANNOTATOR = "ns_workspace", "ns_dataset", "ns_run", "ns_annotator"
QUERY = "ns_query"  # the query under review; the Map page anchors on it
ACCOUNT, SESSION = "ns_account", "ns_session"  # the signed-in Account and its core.auth.Session
WORKSPACE_FIELD = "ns_workspace_field"  # with $NEGSPACE_ROOT: the typed folder, relative to the root
APP_RAN, DEEP_LINK, DEEP_LINK_PARAMS = "ns_app_ran", "ns_deep_link", "ns_deep_link_params"
_PENDING = "_ns_pending"
URL_RESTORED = "_ns_url_restored"
URL_KEYS = {WORKSPACE: "workspace", DATASET: "dataset", RUN: "run", ANNOTATOR: "annotator"}
CACHE_TTL_S = 60  # derived reports that verdicts can change (e.g. leakage of curated data) are recomputed this often


def through_app(page_file: str) -> None:
    """Send a page that runs without app.py back through it (call first thing on every page).

    On a freshly started server, Streamlit's legacy ``pages/`` mode runs a deep-linked page file directly until
    the entry script has called st.navigation once; without this the page would have no sidebar, no password
    gate and no demo build.
    """
    if not st.session_state.get(APP_RAN):
        st.session_state[DEEP_LINK] = Path(page_file).name
        st.session_state[DEEP_LINK_PARAMS] = st.query_params.to_dict()  # switch_page drops the URL's parameters
        st.switch_page("app.py")


@st.cache_resource(show_spinner=False)
def get_workspace(path: str) -> Workspace:
    return open_workspace(path)


@st.cache_resource(show_spinner=False)
def get_store(path: str) -> Store:
    """One store (SQLite connection, WAL) per workspace path, shared by all sessions of this server."""
    return get_workspace(path).store()


def workspace() -> Workspace:
    return get_workspace(st.session_state.get(WORKSPACE) or str(resolve_path(None)))


def store() -> Store:
    return get_store(str(workspace().root))


def server_store() -> Store:
    """The store of the server's own workspace ($NEGSPACE_WORKSPACE or data/workspace), whose accounts decide who
    may open the app, whichever workspace a person then picks."""
    return get_store(str(resolve_path(None)))


def server_root() -> Path | None:
    """$NEGSPACE_ROOT as a resolved folder, or None when the app is not confined."""
    return configured_root()


def account() -> Account | None:
    return st.session_state.get(ACCOUNT)


def signed_in() -> roles.Actor | None:
    """core.roles' account source: this session's account; NOBODY for a session that has not signed in while
    accounts exist; None outside a page run (a background job started by a permitted call) or without accounts."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    if (who := account()) is not None:
        return who
    return roles.NOBODY if server_store().has_accounts() else None


def audit_name() -> str | None:
    """core.audit's actor when nobody is signed in (no accounts): the annotator name typed in this session's
    sidebar, "app" when none is; None outside a page run (a background job carries its starter's name)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return (st.session_state.get(ANNOTATOR) or "").strip() or "app"


def may(action: str) -> bool:
    """Whether this session may do ``action`` (core.roles' table): pages draw only what it may use."""
    return roles.may(account(), action)


def shown_path(path: object) -> str:
    """A server path (or a message naming one) as a page may show it: relative to $NEGSPACE_ROOT when the app
    is confined."""
    return relative_to_root(str(path), server_root())


RISK_FAILED = "_ns_risk_failed"  # run id -> why this session's background scoring of it failed
RISK_POLL_S = 2


@st.fragment(run_every=RISK_POLL_S)
def _risk_progress(job: Job, run_id: str) -> None:
    """Poll the scoring job; rerun the whole page once risk is stored (or scoring failed), so it appears."""
    if job.done:
        if job.error is not None:
            st.session_state.setdefault(RISK_FAILED, {})[run_id] = str(job.error)
        st.rerun(scope="app")
    st.progress(job.fraction, text=f"Scoring false-negative risk in the background ({job.message}); the page "
                                   "works meanwhile and shows risk when it is stored.")


def _retry_risk(run_id: str) -> None:
    st.session_state.get(RISK_FAILED, {}).pop(run_id, None)


def risk_ready(run_id: str) -> bool:
    """Whether the run's risk is scored by today's signals. If not, scoring runs in the background (one job per
    run in this server, whichever session asked first) and a small fragment shows its progress and reruns the
    page when it is done; a failure is said once, with a button to try again, instead of restarting by itself."""
    from core.risk import scoring_job

    failed = st.session_state.get(RISK_FAILED, {}).get(run_id)
    if failed is not None:
        st.error(f"Scoring false-negative risk failed: {failed}", icon="⚠️")
        st.button("Score risk again", key="ns_risk_retry", on_click=_retry_risk, args=(run_id,))
        return False
    job = scoring_job(store(), workspace().root, run_id)
    if job is None:
        return True
    _risk_progress(job, run_id)
    return False


@st.cache_resource(show_spinner=False, max_entries=4)
def _run_outline(path: str, run_id: str) -> RunOutline:
    return run_outline(get_store(path), run_id)


def outline(run_id: str) -> RunOutline:
    """The run's navigation list and per-row layout (core.review.RunOutline): runs are immutable, so it is read
    once per process and shared by every session (bounded: a 10M-candidate run's outline is ~100 MB)."""
    return _run_outline(str(workspace().root), run_id)


def select_dataset(name: str | None) -> None:
    st.session_state.setdefault(_PENDING, {})[DATASET] = name


def select_run(run_id: str | None) -> None:
    st.session_state.setdefault(_PENDING, {})[RUN] = run_id


def _run_label(store: Store, run_id: str) -> str:
    run = store.run(run_id)
    if run is None:
        return run_id
    from core.mining import run_spec

    created = run["created_at"][:16].replace("T", " ")
    return f"{created} · {run_spec(run).describe()} · {run['stats'].get('kept', 0)} kept"


def _restore_from_url() -> None:
    """Once per browser session, take the pickers' values from the URL (a reload keeps who and what)."""
    if st.session_state.get(URL_RESTORED):
        return
    st.session_state[URL_RESTORED] = True
    params = st.session_state.pop(DEEP_LINK_PARAMS, None) or st.query_params.to_dict()
    for key, param in URL_KEYS.items():
        value = params.get(param)
        if value and key not in st.session_state:
            st.session_state[key] = value


def _mirror_to_url() -> None:
    """Write the pickers' current values into the URL (the default workspace is left out, a confined one is
    relative to the root, and a signed-in account's name is not written: it comes from signing in)."""
    default_ws = str(resolve_path(None))
    for key, param in URL_KEYS.items():
        value = st.session_state.get(key)
        if key == WORKSPACE:
            value = None if value == default_ws else shown_path(value) if value else None
        if key == ANNOTATOR and account() is not None:
            value = None
        value = (value or "").strip() if isinstance(value, str) else value
        if value:
            if st.query_params.get(param) != value:
                st.query_params[param] = value
        elif param in st.query_params:
            del st.query_params[param]


def sidebar() -> None:
    """Workspace, dataset, run and annotator pickers; values live in session state and in the URL."""
    _restore_from_url()
    pending = st.session_state.pop(_PENDING, {})
    for key, value in pending.items():
        st.session_state[key] = value
    side = st.sidebar
    _workspace_box(side)
    try:
        current = store()
    except (UserError, OSError) as exc:
        side.error(f"Cannot open workspace: {shown_path(exc)}")
        st.session_state[DATASET] = st.session_state[RUN] = None
        return
    names = [d["name"] for d in current.datasets()]
    if st.session_state.get(DATASET) not in names:
        st.session_state[DATASET] = names[0] if names else None
    side.selectbox("Dataset", names or [None], key=DATASET,
                   format_func=lambda n: n or "(no dataset yet)", disabled=not names)
    dataset = st.session_state.get(DATASET)
    run_ids = [r["run_id"] for r in current.runs(dataset)] if dataset else []
    if st.session_state.get(RUN) not in run_ids:
        st.session_state[RUN] = run_ids[0] if run_ids else None
    side.selectbox("Mining run", run_ids or [None], key=RUN, disabled=not run_ids,
                   format_func=lambda r: _run_label(current, r) if r else "(no run yet)")
    if (who := account()) is not None:
        st.session_state[ANNOTATOR] = who.name
        side.caption(f"Signed in as **{escape_markdown(who.name)}** ({who.role})")
        side.button("Sign out", key="ns_sign_out", on_click=_sign_out)
    else:
        st.session_state.setdefault(ANNOTATOR, "")
        side.text_input("Annotator", key=ANNOTATOR, max_chars=100, placeholder="your name (required to judge)",
                        help="Your verdicts are recorded under this name; it stays in the address bar, so a "
                             "reload keeps it.")
    _mirror_to_url()


def _sign_out() -> None:
    for key in (ACCOUNT, SESSION, ANNOTATOR):
        st.session_state.pop(key, None)


def _workspace_box(side) -> None:
    """The workspace folder box. Confined ($NEGSPACE_ROOT): the box takes a folder inside the root and the
    checked absolute path goes to ``ns_workspace``; a refused one stops the page here, before anything opens or
    creates it."""
    root, fixed = server_root(), not may(roles.DATASETS)  # a new folder is a new workspace: admins choose them
    if root is None:
        st.session_state.setdefault(WORKSPACE, str(resolve_path(None)))
        side.text_input("Workspace folder", key=WORKSPACE, disabled=fixed,
                        help="A folder holding negspace.sqlite; created if missing.")
        return
    st.session_state.setdefault(WORKSPACE_FIELD, shown_path(st.session_state.get(WORKSPACE) or resolve_path(None)))
    typed = side.text_input("Workspace folder", key=WORKSPACE_FIELD, disabled=fixed,
                            help="A folder inside the server's folder, relative to it; created if missing.")
    try:
        st.session_state[WORKSPACE] = str(confined_path(typed, root, "workspace"))
    except UserError as exc:
        st.session_state[WORKSPACE] = str(resolve_path(None))
        side.error(f"Cannot open workspace: {shown_path(exc)}")
        st.error(f"Choose a workspace folder inside the server's folder. {shown_path(exc)}", icon="⚠️")
        st.stop()


def require_dataset() -> str:
    dataset = st.session_state.get(DATASET)
    if not dataset:
        st.info("This workspace has no dataset yet. Import one on the **Import** page "
                "(or open the default workspace, which builds the demo).")
        st.stop()
    return dataset


def require_run() -> str:
    require_dataset()
    run_id = st.session_state.get(RUN)
    if not run_id:
        st.info("This dataset has no mining run yet. Mine it on the **Mine** page.")
        st.stop()
    return run_id


def annotator() -> str:
    """The annotator name (the signed-in account's, when accounts exist), shown on the page, or a warning and stop
    when none was chosen: every verdict must say who made it, and no default name stands in for a person."""
    name = (st.session_state.get(ANNOTATOR) or "").strip()
    if not name:
        st.warning("Enter your annotator name in the sidebar to record verdicts.")
        st.stop()
    st.caption(f"Judging as **{escape_markdown(name)}**")
    return name


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&])")


def escape_markdown(text: str) -> str:
    """Backslash-escape markdown and HTML syntax so user text shows literally inside st.markdown."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


def show_document(title: str | None, text: str) -> None:
    """A document exactly as stored: the title as escaped markdown, the body with st.text (never HTML)."""
    if title:
        st.markdown(f"**{escape_markdown(title)}**")
    st.text(text)


def user_error(exc: Exception) -> None:
    st.error(shown_path(exc), icon="⚠️")


@st.fragment(run_every=1)
def wait_for(job: Job, what: str) -> None:
    """Poll a background job; rerun the whole page once it ended, so its report is shown."""
    if job.done:
        st.rerun(scope="app")
    st.progress(job.fraction, text=f"{what}: {job.message}")


def job_slot(key: str, what: str, report: Callable[[Any], None],
             refused: Callable[[UserError], None] = user_error) -> bool:
    """This session's job under ``key`` (work of minutes run in the background, so that a click on the page does
    not stop it half-way): its progress while it runs, then ``report(result)`` once, or ``refused(error)`` for the
    user error that stopped it (any other error is raised). True while it runs (its button stays disabled)."""
    job = st.session_state.get(key)
    if job is None:
        return False
    if not job.done:
        wait_for(job, what)
        return True
    del st.session_state[key]
    if isinstance(job.error, UserError):
        refused(job.error)
    elif job.error is not None:
        raise job.error
    else:
        report(job.result)
    return False


def start(key: str, make: Callable[[], Job], refused: Callable[[UserError], None] = user_error) -> None:
    """Start ``make()`` as this session's job under ``key`` and rerun, so ``job_slot`` shows its progress;
    ``refused(error)`` when it is refused before starting (e.g. a role, an output folder in use)."""
    try:
        st.session_state[key] = make()
    except UserError as exc:
        refused(exc)
    else:
        st.rerun()


@st.cache_resource(show_spinner=False)
def _devices() -> list[str]:
    return available_devices()


def device_choice(column, key: str) -> str:
    """The device picker wherever work that loads a model starts (core.devices lists what this machine has)."""
    return column.selectbox("Device", _devices(), key=key, help=DEVICE_HELP)
