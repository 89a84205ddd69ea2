"""Judging: the one way a verdict enters the store, whatever screen or judge it came from.

A verdict (a key on Review, a lasso batch on the Map, an adjudication on the Team page) is recorded as one batch in one transaction,
closes the open suggestions on its pairs, and is spread as *suggestions* to near-duplicates (core.triage.propagate)
exactly the same way (or, from the Review page, in the background: a verdict must answer at the speed of a key,
while spreading reads the query's candidates and every mined query's vector). An LLM judge's verdict (``llm:<model>``, core.llm_judge) enters here too, but only a person's
verdict decides or spreads suggestions. ``undo`` takes back the annotator's latest verdict, or the whole batch it
belonged to.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core import labels, roles, triage
from core.jobs import Job, shared_job

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace


@dataclass
class Judgement:
    """What a judge call did: the new event ids and how many suggestions it spread (with ``spread_later``, the
    ``spreading`` job does that and its result is the count)."""

    events: list[int] = field(default_factory=list)
    suggested: int = 0
    spreading: Job | None = None


_SPREADING = threading.Lock()  # one spreading at a time per process: fast keys queue up instead of competing


def _spread(store: Store, workspace: Workspace, dataset: str, pairs: list[tuple[str, str]], events: list[int],
            label: str) -> int:
    with _SPREADING:
        return sum(triage.propagate(store, workspace, dataset, q, d, label, event)
                   for (q, d), event in zip(pairs, events))


def judge(store: Store, workspace: Workspace, dataset: str, pairs: list[tuple[str, str]], annotator: str, label: str,
          note: str = "", adjudication: bool = False, spread_later: bool = False,
          guideline_version: int | None = None) -> Judgement:
    """Record ``label`` on every (query, doc) pair as one batch, then propagate each verdict as suggestions.

    ``adjudication``: the final verdict on a disputed pair (the Team page), which ``labels.resolved`` prefers.
    ``spread_later``: return once the verdict is stored and spread it in a background job (``Judgement.spreading``);
    an undo that lands first withdraws what it would spread (the store refuses suggestions of an undone verdict).
    An LLM judge's verdict is not propagated: suggestions carry a person's verdict to near-duplicates.
    A signed-in account (core.roles) records only under its own name, and adjudicates only if its role may.
    ``guideline_version``: the dataset's guidelines version shown beside the verdict (core.guidelines), or None.
    """
    roles.require(roles.ADJUDICATE if adjudication else roles.JUDGE)
    roles.require_self(annotator)
    pairs = list(dict.fromkeys(pairs))
    events = labels.record_batch(store, dataset, pairs, annotator, label, note, adjudication, guideline_version)
    if labels.is_llm(annotator):
        return Judgement(events)
    if spread_later:
        job = shared_job(f"spread:{store.path}:{events[0]}",
                         lambda stage: _spread(store, workspace, dataset, pairs, events, label))
        return Judgement(events, spreading=job)
    return Judgement(events, _spread(store, workspace, dataset, pairs, events, label))


def undo(store: Store, dataset: str, annotator: str) -> list[dict]:
    """Undo the annotator's latest verdict, or its whole batch; returns the undone events, latest first. A
    signed-in account undoes only its own."""
    roles.require(roles.JUDGE)
    roles.require_self(annotator)
    return labels.undo(store, dataset, annotator)
