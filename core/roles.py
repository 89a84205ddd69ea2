"""Who may do what: the one permission table (action -> roles), read by the pages (what to show) and by core (what
to refuse).

Roles only exist once a workspace has accounts (core.accounts). Without accounts — one person on localhost, or a
team behind the shared password — there is nobody to tell apart, so every action is allowed, as before accounts
existed. The command line is the machine's operator and is never restricted: it registers no account source, so
``current()`` is None there.

The app registers an account source once per process (``act_from``): core functions that change what others
rely on call ``require`` (and ``require_self`` where a verdict is recorded under a name), so a page that forgot
to hide a button still cannot be used to adjudicate, promote, manage accounts, import, mine, export, train,
assign work or edit guidelines. The source is a function rather
than a value set per page run because Streamlit runs a button's callback before the page script, possibly in a
fresh thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from core.errors import UserError

ANNOTATOR, ADJUDICATOR, ADMIN = "annotator", "adjudicator", "admin"
ROLES = (ANNOTATOR, ADJUDICATOR, ADMIN)  # each role may do everything the one before it may

JUDGE = "judge"  # record and undo one's own verdicts, decide suggestions
ADJUDICATE = "adjudicate"  # record the final verdict on a disagreement (Team page)
PROMOTE = "promote"  # promote a confirmed false negative to a positive, demote it again
ACCOUNTS = "accounts"  # add, remove accounts, set passwords and roles
DATASETS = "datasets"  # import datasets
RUNS = "runs"  # mine, re-rule, score with a cross-encoder, ask an LLM judge
EXPORT = "export"
TRAIN = "train"  # train retrievers and rerankers, set the second model of risk
ASSIGN = "assign"  # split a run's queries among annotators (core.assignments)
GUIDELINES = "guidelines"  # edit a dataset's annotation guidelines (core.guidelines)

PERMISSIONS: dict[str, frozenset[str]] = {
    JUDGE: frozenset(ROLES),
    ADJUDICATE: frozenset({ADJUDICATOR, ADMIN}),
    PROMOTE: frozenset({ADJUDICATOR, ADMIN}),
    ACCOUNTS: frozenset({ADMIN}),
    DATASETS: frozenset({ADMIN}),
    RUNS: frozenset({ADMIN}),
    EXPORT: frozenset({ADMIN}),
    TRAIN: frozenset({ADMIN}),
    ASSIGN: frozenset({ADMIN}),
    GUIDELINES: frozenset({ADMIN}),
}
DESCRIPTIONS = {
    JUDGE: "record and undo their own verdicts, decide suggestions",
    ADJUDICATE: "resolve disagreements (final verdicts on the Team page)",
    PROMOTE: "promote confirmed false negatives to positives, demote them",
    ACCOUNTS: "manage accounts",
    DATASETS: "import datasets",
    RUNS: "mine, re-rule, score runs, ask an LLM judge",
    EXPORT: "export training data",
    TRAIN: "train models, set risk's second model",
    ASSIGN: "assign a run's queries to annotators",
    GUIDELINES: "edit annotation guidelines",
}


class Actor(Protocol):
    """Whoever is signed in (a core.accounts.Account): a name and a role."""

    name: str
    role: str


class _Nobody:
    """Stands for a browser session that has not signed in while accounts exist: it may do nothing."""

    name = "(not signed in)"
    role = "none"


NOBODY: Actor = _Nobody()


class NotPermitted(UserError):
    """The signed-in account's role may not do what was asked (a user error: one line, no traceback)."""


_source: Callable[[], Actor | None] | None = None
_UNSET = object()
_acting: contextvars.ContextVar[object] = contextvars.ContextVar("negspace_actor", default=_UNSET)


def act_from(source: Callable[[], Actor | None] | None) -> None:
    """Register where the signed-in account comes from (the app, once per process); None: nobody is signed in."""
    global _source
    _source = source


def current() -> Actor | None:
    """The signed-in account, or None (no accounts, the command line, a background job's thread)."""
    if (actor := _acting.get()) is not _UNSET:
        return actor  # type: ignore[return-value]
    return _source() if _source is not None else None


@contextmanager
def acting(actor: Actor | None) -> Iterator[None]:
    """Answer ``current()`` with ``actor`` inside, in this thread, without asking the account source.

    The Review page's key events are applied where nothing may call into Streamlit (a call there can abandon the
    callback half-way, after a verdict is stored but before the event is marked applied, and the next key would
    store it again): the page asks who is signed in first and applies the events under this."""
    token = _acting.set(actor)
    try:
        yield
    finally:
        _acting.reset(token)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (use {', '.join(ROLES)})")
    return role


def may(actor: Actor | None, action: str) -> bool:
    """Whether ``actor`` may do ``action``; without an account (None) everything is allowed."""
    return actor is None or actor.role in PERMISSIONS[action]


def allowed(role: str) -> list[str]:
    """The actions a role may do, in the table's order (for help text and the Accounts page)."""
    return [action for action, roles in PERMISSIONS.items() if role in roles]


def require(action: str) -> None:
    """Refuse ``action`` when the signed-in account's role may not do it."""
    actor = current()
    if not may(actor, action):
        who = ", ".join(r for r in ROLES if r in PERMISSIONS[action])
        raise NotPermitted(f"{actor.name} ({actor.role}) may not {DESCRIPTIONS[action]}; that needs the role "
                           f"{who}")


def require_self(annotator: str) -> None:
    """Refuse to record or undo verdicts under another name than the signed-in account's."""
    actor = current()
    if actor is not None and actor.name != annotator:
        raise NotPermitted(f"signed in as {actor.name}: verdicts are recorded under your own account, not "
                           f"{annotator!r}")
