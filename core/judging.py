"""Judging: the one way a verdict enters the store, whatever screen or judge it came from.

A verdict (a key on Review, a lasso batch on the Map, an adjudication on the Team page) is recorded as one batch in one transaction,
closes the open suggestions on its pairs, and is spread as *suggestions* to near-duplicates (core.triage.propagate)
exactly the same way. An LLM judge's verdict (``llm:<model>``, core.llm_judge) enters here too, but only a person's
verdict decides or spreads suggestions. ``undo`` takes back the annotator's latest verdict, or the whole batch it
belonged to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core import labels, triage

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace


@dataclass
class Judgement:
    """What a judge call did: the new event ids and how many suggestions it spread."""

    events: list[int] = field(default_factory=list)
    suggested: int = 0


def judge(store: Store, workspace: Workspace, dataset: str, pairs: list[tuple[str, str]], annotator: str, label: str,
          note: str = "", adjudication: bool = False) -> Judgement:
    """Record ``label`` on every (query, doc) pair as one batch, then propagate each verdict as suggestions.

    ``adjudication``: the final verdict on a disputed pair (the Team page), which ``labels.resolved`` prefers.
    An LLM judge's verdict is not propagated: suggestions carry a person's verdict to near-duplicates.
    """
    pairs = list(dict.fromkeys(pairs))
    events = labels.record_batch(store, dataset, pairs, annotator, label, note, adjudication)
    if labels.is_llm(annotator):
        return Judgement(events)
    suggested = sum(triage.propagate(store, workspace, dataset, q, d, label, event)
                    for (q, d), event in zip(pairs, events))
    return Judgement(events, suggested)


def undo(store: Store, dataset: str, annotator: str) -> list[dict]:
    """Undo the annotator's latest verdict, or its whole batch; returns the undone events, latest first."""
    return labels.undo(store, dataset, annotator)
