"""The Review page's candidate list: a small custom component that owns the keyboard.

Streamlit's button shortcuts act on whatever the *next* script run shows, so keys pressed while the page reruns
landed on the wrong candidate. This component applies each key at once to the row on screen and sends the server
an event naming its (query, document) and a sequence number; the server applies each event exactly once, in
order, and tells the list which it has applied.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import audit, roles

HERE = Path(__file__).resolve().parent
_COMPONENT = st.components.v2.component(
    "ns_candidate_list",
    html=('<div class="ns-bar"><span class="ns-status"></span><span class="ns-notice"></span></div>'
          '<div class="ns-frame"><div class="ns-list"></div><div class="ns-help" role="dialog" hidden></div></div>'),
    css=(HERE / "candidate_list.css").read_text(encoding="utf-8"),
    js=(HERE / "candidate_list.js").read_text(encoding="utf-8"),
)
KEY = "ns_candidate_list"
ACTIONS = ("verdict", "move", "query", "undo", "suggestion")


def rows(candidates: pd.DataFrame) -> list[dict[str, Any]]:
    """The columns the list shows, JSON-ready (NaN risk becomes None; text cut to a line)."""
    out = []
    for r in candidates.itertuples(index=False):
        out.append({"doc_id": str(r.doc_id), "rank": int(r.rank), "label": r.label, "score": float(r.score),
                    "margin": float(r.margin), "rule": str(r.rule),
                    "risk": None if pd.isna(r.risk) else float(r.risk),
                    "text": str(r.text)[:160].replace("\n", " ")})
    return out


@dataclass
class _Stream:
    """A browser session's key events: the last one applied, and the session-state values they left behind that
    may not have been written yet."""

    applied: int = 0
    unwritten: dict[str, Any] = field(default_factory=dict)
    shown: int = 0  # screens sent: the list keeps the newest when Streamlit briefly holds two copies of it


_STREAMS: OrderedDict[str, _Stream] = OrderedDict()
_LOCK = threading.Lock()
MAX_STREAMS = 10_000  # browser sessions remembered per server process; the oldest are forgotten first


def _stream(token: str) -> _Stream:
    """The stream of ``token`` (call with the lock held)."""
    stream = _STREAMS.setdefault(token, _Stream())
    _STREAMS.move_to_end(token)
    while len(_STREAMS) > MAX_STREAMS:
        _STREAMS.popitem(last=False)
    return stream


def show(candidates: pd.DataFrame, query_id: str, cursor: str | None, token: str,
         on_event: Callable[[MutableMapping[str, Any], dict], None], tracked: Sequence[str],
         verdicts_wait: bool = False, risk_pending: bool = False, suggestions: Sequence[dict[str, Any]] = (),
         notice: str | None = None) -> None:
    """Mount the list for one query. Each key event is passed once, in order, to ``on_event(state, event)``, where
    ``state`` holds the ``tracked`` session-state keys; what it sets there is written to the session state.

    ``verdicts_wait``: the server, not the list, decides where a verdict moves the cursor (the triage queue jumps
    to the next riskiest item), so keys after a verdict wait for its answer. ``risk_pending``: risk is being scored
    in the background, and the risk column says so instead of showing nothing. ``suggestions``: the query's open
    suggestions (id, doc_id, label in words, reason), oldest first; the a / r keys decide the first one shown.
    ``notice``: what the last key did that the rows cannot show (an undo, a decided suggestion), said beside them.
    """
    with _LOCK:
        stream = _stream(token)
        stream.shown += 1
        acked, rev = stream.applied, stream.shown
    _COMPONENT(key=KEY, data={"token": token, "acked": acked, "rev": rev, "query_id": query_id, "cursor": cursor,
                              "rows": rows(candidates), "verdicts_wait": verdicts_wait,
                              "risk_pending": risk_pending, "suggestions": list(suggestions), "notice": notice},
               on_events_change=partial(_receive, token, on_event, tuple(tracked)))


def _receive(token: str, on_event: Callable[[MutableMapping[str, Any], dict], None], tracked: tuple[str, ...]) -> None:
    """Apply the new key events exactly once.

    Streamlit may abandon a callback at any Streamlit call when a newer rerun request arrives (keys pressed
    meanwhile): cut off after a verdict is stored but before its event is marked applied, the next key would store
    it again. So everything is read first (the session state, who is signed in, whom writes are attributed to),
    the events are applied under a lock with no Streamlit call in between, and their session-state effects stay
    with the stream until written (``catch_up`` finishes the job for a callback that was cut off).
    """
    value = st.session_state.get(KEY)
    read = {key: st.session_state.get(key) for key in tracked}
    actor, name = roles.current(), audit.who()  # asked now: they read the session state
    with _LOCK, roles.acting(actor), audit.acting_as(name):
        stream = _stream(token)
        events = _pending(value, token, stream.applied)
        if not events:
            return
        state = {**read, **stream.unwritten}
        for event in events:
            on_event(state, event)
            stream.applied = event["seq"]
        stream.unwritten = changed(read, stream.unwritten, state)
    catch_up(token)


def changed(read: dict[str, Any], unwritten: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What of ``state`` must be written to the session state: the keys that differ from what was ``read`` (and
    any still ``unwritten``). Writing an unchanged widget key (the note box) would tell the browser to set that
    widget's value, erasing what the person typed while the key event was on its way."""
    return {key: val for key, val in state.items() if key in unwritten or val != read.get(key)}


def catch_up(token: str) -> None:
    """Write the session-state effects of applied key events that are not written yet (call before reading the
    keys they track)."""
    with _LOCK:
        unwritten = _stream(token).unwritten
    for key, value in unwritten.items():
        st.session_state[key] = value
    with _LOCK:
        stream = _stream(token)
        if stream.unwritten is unwritten:
            stream.unwritten = {}


def _pending(value: Any, token: str, applied: int) -> list[dict[str, Any]]:
    """Events of this browser session newer than ``applied``, oldest first; malformed ones are dropped."""
    sent = value.get("events") if isinstance(value, dict) else None
    if not isinstance(sent, dict) or sent.get("token") != token:
        return []
    events = [e for e in sent.get("events") or [] if isinstance(e, dict) and isinstance(e.get("seq"), int)
              and e["seq"] > applied and e.get("action") in ACTIONS]
    return sorted(events, key=lambda e: e["seq"])
