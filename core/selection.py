"""Which (query, positives, negatives) a run yields for training or export: ``raw`` or ``curated``.

raw = the run's kept negatives as mined with the imported positives. curated = the same minus every candidate
whose resolved verdict is false_negative (and unsure, unless told to keep them), minus promoted positives, with
promoted positives added as positives. One definition serves export, training and the app. An LLM judge's
verdicts (core.llm_judge) curate only when counted (``llm_verdicts='count'``); by default people's verdicts decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from core import labels
from core.errors import UserError
from core.lookups import positive_qrels, require_run

if TYPE_CHECKING:
    import pandas as pd

    from core.store import Store

DATA_CHOICES = ("raw", "curated")
UNSURE_CHOICES = ("drop", "keep")
LLM_CHOICES = ("ignore", "count")  # whether LLM judges' verdicts vote in the resolved verdict (labels.resolved)


@dataclass
class Example:
    query_id: str
    positives: list[str]
    negatives: list[str]
    masked: list[str] = field(default_factory=list)  # judged false negatives: never use as negatives


@dataclass
class TrainingData:
    run: dict
    data: str
    unsure: str
    examples: list[Example]
    query_text: dict[str, str]
    doc_title: dict[str, str]
    doc_text: dict[str, str]
    label_counts: dict[str, int]
    removed_negatives: int
    promoted_positives: int

    def doc(self, doc_id: str) -> str:
        from core.encoders import document_text

        return document_text(self.doc_title.get(doc_id, ""), self.doc_text[doc_id])


def _lists_by_key(frame: pd.DataFrame, key: str, value: str) -> dict[str, list[str]]:
    """``value`` listed per ``key`` in row order, for a frame already grouped by ``key`` (pandas' groupby costs
    seconds at a million rows)."""
    keys = frame[key].to_numpy(dtype=object)
    values = frame[value].to_numpy(dtype=object)
    if not len(keys):
        return {}
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return dict(zip(keys[starts].tolist(), (part.tolist() for part in np.split(values, starts[1:]))))


def select(store: Store, run_id: str, data: str = "raw", unsure: str = "drop",
           llm_verdicts: str = "ignore") -> TrainingData:
    if data not in DATA_CHOICES:
        raise UserError(f"unknown data choice {data!r} (use raw or curated)")
    if unsure not in UNSURE_CHOICES:
        raise UserError(f"unknown unsure policy {unsure!r} (use drop or keep)")
    if llm_verdicts not in LLM_CHOICES:
        raise UserError(f"unknown LLM verdicts policy {llm_verdicts!r} (use ignore or count)")
    run = require_run(store, run_id)
    dataset, split = run["dataset"], run["split"]
    qrels = positive_qrels(store.qrels(dataset, split))
    if data == "raw":
        qrels = qrels[qrels["origin"] == "imported"]
    positives = _lists_by_key(qrels.sort_values("query_id", kind="stable"), "query_id", "doc_id")
    verdicts = labels.resolved(store, dataset, llm=llm_verdicts == "count")
    label_counts = {k: int(v) for k, v in verdicts["label"].value_counts().items()} if not verdicts.empty else {}
    bad_labels = {"false_negative"} | ({"unsure"} if unsure == "drop" else set())
    flagged = verdicts[verdicts["label"].isin(bad_labels)]
    flagged_pairs = set(zip(flagged["query_id"], flagged["doc_id"]))
    fn = verdicts[verdicts["label"] == "false_negative"]
    fn_by_query: dict[str, list[str]] = {}
    for q, d in zip(fn["query_id"], fn["doc_id"]):
        fn_by_query.setdefault(q, []).append(d)
    cands = store.candidates(run_id, with_signals=False, with_risk=False)  # in (query, rank) order
    examples = []
    removed = 0
    for query_id, negs in _lists_by_key(cands[cands["kept"]], "query_id", "doc_id").items():
        pos = positives.get(query_id, [])
        if not pos:
            continue
        if data == "curated":
            pos_set = set(pos)
            before = len(negs)
            negs = [d for d in negs if (query_id, d) not in flagged_pairs and d not in pos_set]
            removed += before - len(negs)
        masked = fn_by_query.get(query_id, []) if data == "curated" else []
        examples.append(Example(query_id, pos, negs, masked))
    # queries whose candidates were all filtered still train on their positives
    covered = {e.query_id for e in examples}
    for query_id in sorted(set(cands["query_id"].unique()) - covered):
        if positives.get(query_id):
            examples.append(Example(query_id, positives[query_id], [],
                                    fn_by_query.get(query_id, []) if data == "curated" else []))
    doc_ids = {d for e in examples for d in (*e.positives, *e.negatives)}
    docs = store.documents(dataset, sorted(doc_ids))
    queries = store.queries(dataset, [e.query_id for e in examples])
    promoted = int((qrels["origin"] == "promoted").sum())
    return TrainingData(run, data, unsure, examples, dict(zip(queries["query_id"], queries["text"])),
                        dict(zip(docs["doc_id"], docs["title"])), dict(zip(docs["doc_id"], docs["text"])),
                        label_counts, removed, promoted)
