"""Who wrote what, and when: the audit trail of a workspace, and its export.

Verdicts, undos and adjudications already say who and when (``label_events.annotator``, ``created_at``: the
signed-in account when accounts exist), so they are not copied. Every other write — promotion and demotion, a
rejected suggestion, account changes, assignments, guidelines, imports, mining and re-ruling, cross-encoder
scoring, LLM judging, exports and training — appends one ``audit`` row naming its actor (``who``) at UTC time.
``render`` / ``export`` give both logs merged in time order as TSV or JSON Lines.

``who`` is the signed-in account (core.roles); in the app without accounts, the name typed in the sidebar (the
app registers that source, ``attribute_from``); on the command line ``cli:<OS user>``. A background job acts for
whoever started it (core.jobs captures ``who`` when the job is created and runs it ``acting_as`` that name), as
its thread has no page run to ask.
"""

from __future__ import annotations

import contextvars
import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core import roles
from core.errors import UserError

if TYPE_CHECKING:
    from core.store import Store

FORMATS = ("tsv", "jsonl")
COLUMNS = ["at", "actor", "action", "target", "detail"]
_acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("negspace_audit_actor", default=None)
_name_source: Callable[[], str | None] | None = None


def attribute_from(source: Callable[[], str | None] | None) -> None:
    """Register who acts when nobody is signed in (the app: the annotator name of the page run, None outside one)."""
    global _name_source
    _name_source = source


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return "unknown"


def who() -> str:
    """The actor of a write made now, in this thread (see the module docstring)."""
    if (acting := _acting.get()) is not None:
        return acting
    if (actor := roles.current()) is not None:
        return actor.name
    if _name_source is not None and (name := _name_source()):
        return name
    return f"cli:{_os_user()}"


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Attribute the writes made inside, in this thread, to ``name`` (a background job, for its starter)."""
    token = _acting.set(name)
    try:
        yield
    finally:
        _acting.reset(token)


def record(store: Store, action: str, target: str = "", **detail: Any) -> int:
    """Append one audit row for a write that just succeeded; ``detail`` is stored as JSON (never a password)."""
    return store.add_audit(who(), action, target, detail)


def log(store: Store) -> pd.DataFrame:
    """The audit rows and the label events together, oldest first: columns at, actor, action, target, detail
    (a dict). A label event's target is dataset/query/document; its detail the label, note, guideline version,
    the event it undoes and its batch."""
    audit = store.audit_rows()
    rows = [(r.at, r.actor, r.action, r.target, json.loads(r.detail)) for r in audit.itertuples(index=False)]
    for r in store.label_event_log().itertuples(index=False):
        detail = {"event": int(r.id), "label": r.label, "note": r.note,
                  "guideline_version": None if pd.isna(r.guideline_version) else int(r.guideline_version),
                  "undoes": None if pd.isna(r.undoes) else int(r.undoes),
                  "batch": None if pd.isna(r.batch) else int(r.batch)}
        rows.append((r.at, r.actor, r.action, f"{r.dataset}/{r.query_id}/{r.doc_id}",
                     {k: v for k, v in detail.items() if v not in (None, "")}))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values("at", kind="stable").reset_index(drop=True)  # ISO UTC times sort as text


def render(store: Store, fmt: str = "tsv") -> tuple[str, int]:
    """``log`` as text and its row count: TSV (a header, backslash-escaped fields as in the labels TSV, detail as
    JSON) or JSON Lines (one object per row)."""
    from core.labels import escape_field

    if fmt not in FORMATS:
        raise UserError(f"unknown audit format {fmt!r} (use {', '.join(FORMATS)})")
    frame = log(store)
    if fmt == "jsonl":
        lines = [json.dumps(dict(zip(COLUMNS, row)), ensure_ascii=False, sort_keys=True)
                 for row in frame.itertuples(index=False)]
    else:
        lines = ["\t".join(COLUMNS)] + ["\t".join(escape_field(json.dumps(v, ensure_ascii=False, sort_keys=True)
                                                                if isinstance(v, dict) else str(v)) for v in row)
                                        for row in frame.itertuples(index=False)]
    return "".join(line + "\n" for line in lines), len(frame)


def export(store: Store, out: str | Path, fmt: str = "tsv") -> int:
    """Write ``render``'s text to ``out`` atomically; returns the rows written."""
    from core.files import atomic_write_text
    from core.validation import user_path

    text, count = render(store, fmt)
    path = user_path(out, "--out", kind="file", create_parent=True)
    try:
        atomic_write_text(path, text)
    except OSError as exc:  # disk full, no permission, a name the file system refuses
        raise UserError(f"--out: cannot write {path} ({exc.strerror})") from None
    return count
