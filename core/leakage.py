"""Leakage between training data and the evaluation split.

Training on a test query, or on a document the test split judges, inflates the held-out score without making the
model better. Before training we count training queries, positives and negatives that also occur in the evaluation
split, by the same id or by the same normalised text (duplicated claims and re-uploaded abstracts are common), and
optionally drop them. The corpus itself is shared by design in BEIR, so a document only "leaks" when the evaluation
split judges it, and judged non-relevant documents count too (they carry evaluation information).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from core.encoders import document_text
from core.selection import TrainingData

if TYPE_CHECKING:
    from core.store import Store

_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lower-cased word tokens joined by one space: catches copies that differ in case, spacing or punctuation."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass
class LeakageReport:
    eval_split: str
    queries: int = 0
    positives: int = 0
    negatives: int = 0
    excluded: bool = False
    leaked_queries: list[str] = field(default_factory=list, repr=False)
    leaked_docs: list[str] = field(default_factory=list, repr=False)

    @property
    def any(self) -> bool:
        return bool(self.queries or self.positives or self.negatives)

    def summary(self) -> str:
        return (f"leakage into split {self.eval_split!r}: {self.queries} training queries, {self.positives} "
                f"positives and {self.negatives} negatives also occur there (same id or same normalised text)"
                + ("; excluded from training" if self.excluded else ""))

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("leaked_queries")
        out.pop("leaked_docs")
        return out


def check(store: Store, training: TrainingData, eval_split: str) -> LeakageReport:
    """Count training items that also occur in ``eval_split`` of the run's dataset."""
    dataset = training.run["dataset"]
    report = LeakageReport(eval_split)
    qrels = store.qrels(dataset, eval_split)
    if qrels.empty:
        return report
    eval_queries = store.queries(dataset, sorted(set(qrels["query_id"])))
    eval_docs = store.documents(dataset, sorted(set(qrels["doc_id"])))
    query_ids, query_texts = set(eval_queries["query_id"]), {normalise(t) for t in eval_queries["text"]}
    doc_ids = set(eval_docs["doc_id"])
    doc_texts = {normalise(document_text(t, x)) for t, x in zip(eval_docs["title"], eval_docs["text"])}

    def doc_leaks(doc_id: str) -> bool:
        return doc_id in doc_ids or normalise(training.doc(doc_id)) in doc_texts

    leaked_docs: set[str] = set()
    for example in training.examples:
        if example.query_id in query_ids or normalise(training.query_text[example.query_id]) in query_texts:
            report.queries += 1
            report.leaked_queries.append(example.query_id)
        for kind, docs in (("positives", example.positives), ("negatives", example.negatives)):
            hits = [d for d in docs if doc_leaks(d)]
            setattr(report, kind, getattr(report, kind) + len(hits))
            leaked_docs.update(hits)
    report.leaked_docs = sorted(leaked_docs)
    return report


def exclude(training: TrainingData, report: LeakageReport) -> TrainingData:
    """The training data without leaked queries and documents; an example left with no positive is dropped."""
    queries, docs = set(report.leaked_queries), set(report.leaked_docs)
    examples = []
    for example in training.examples:
        if example.query_id in queries:
            continue
        positives = [d for d in example.positives if d not in docs]
        if positives:
            examples.append(replace(example, positives=positives,
                                    negatives=[d for d in example.negatives if d not in docs]))
    report.excluded = True
    return replace(training, examples=examples)
