"""Lookups every run- or dataset-level feature starts from: a run or dataset that must exist, and its positives.

"A positive is a qrel with grade > 0" is decided here once (the store's SQL may say the same in SQL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from core.encoders import document_text
from core.errors import UserError

if TYPE_CHECKING:
    from core.store import Store


def require_run(store: Store, run_id: str) -> dict:
    """The stored run, or a user error naming it when this workspace has no such run."""
    run = store.run(run_id)
    if run is None:
        raise UserError(f"no run {run_id!r} in this workspace")
    return run


def require_dataset(store: Store, dataset: str) -> dict:
    """The stored dataset, or a user error naming it when this workspace has no such dataset."""
    found = store.dataset(dataset)
    if found is None:
        raise UserError(f"no dataset named {dataset!r} in this workspace")
    return found


def is_positive(grade: float | pd.Series) -> bool | pd.Series:
    """A relevance grade above 0 marks a positive; 0 (and negative grades) do not. Works on one grade or a column."""
    return grade > 0


def positive_qrels(qrels: pd.DataFrame) -> pd.DataFrame:
    """The rows of a qrels frame (``score`` column) that are positives."""
    return qrels[is_positive(qrels["score"])]


def positives_by_query(store: Store, dataset: str, split: str) -> dict[str, list[str]]:
    """Positive document ids per query id of a dataset split, in stored order."""
    qrels = positive_qrels(store.qrels(dataset, split))
    out: dict[str, list[str]] = {}
    for query_id, doc_id in zip(qrels["query_id"].tolist(), qrels["doc_id"].tolist()):  # one pass over plain lists:
        out.setdefault(query_id, []).append(doc_id)  # pandas' groupby-to-list on string columns took 7 s at 100k queries
    return out


def snippet(text: str, width: int = 100) -> str:
    """``text`` on one line, cut on a word boundary to at most ``width`` characters with "…" marking the cut: enough
    to recognise a query or document in a table row or beside a verdict without its whole body (a single word
    longer than that is cut inside)."""
    flat = " ".join(str(text).split())
    if len(flat) <= width:
        return flat
    cut = flat[:width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip() + "…"


def document_texts(documents: pd.DataFrame) -> list[str]:
    """The text each document is encoded and matched as (``document_text``), for a frame with title and text."""
    return [document_text(t, x) for t, x in zip(documents["title"], documents["text"])]
