"""What the review screen shows, assembled from stored data: no encoding, no search, just joins.

The app asks for one query at a time (its text, positives and candidates with scores, margins, rule verdicts,
risk and the annotator's verdicts) plus progress counts. A query's candidates are one indexed read; the navigation
list and progress come from a run's ``RunOutline`` (read once from its snapshot columns, the run being immutable)
and the annotator's verdicts, so a verdict click costs the same at ten million candidates as at a thousand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import labels, run_stats
from core.lookups import require_run

if TYPE_CHECKING:
    from core.store import Store

SCOPES = ("kept", "all")  # kept: the negatives a trainer would use; all: every candidate to the mining depth
SORTS = ("rank", "risk")


@dataclass
class QueryView:
    query_id: str
    text: str
    positives: pd.DataFrame  # doc_id, title, text
    candidates: pd.DataFrame  # rank, doc_id, title, text, score, pos_score, margin, kept, rule, risk, signals,
    #                           label, note (label/note: this annotator's current verdict, None when unjudged)


@dataclass
class RunOutline:
    """A run's immutable shape: its queries in id order with texts and counts (the review's navigation list) and,
    per candidate row in (query, rank) order, its document and whether the rule kept it.

    Built once per run from dictionary-encoded snapshot columns (integer codes, no 10M Python strings); a query's
    document ids are read (by the (run, query, rank) index) only when a verdict on that query has to be found
    (``pair_rows``), so the outline holds no document column at all.
    """

    queries: pd.DataFrame  # query_id, text, candidates, kept
    starts: np.ndarray  # query i owns rows starts[i]:starts[i + 1]
    kept: np.ndarray  # per row
    docs_of: Callable[[str], list[str]]  # a query's document ids in row order
    position: dict[str, int]  # query id -> its index in ``queries``
    _rows: dict[int, dict[str, int]] = field(default_factory=dict, repr=False)  # decoded queries: doc id -> row

    def neighbour(self, query_id: str, step: int) -> str:
        """The query ``step`` places from ``query_id`` in the list, clamped to its ends (from the first query when
        ``query_id`` is not in the run)."""
        at = max(0, min(len(self.position) - 1, self.position.get(query_id, 0) + step))
        return str(self.queries["query_id"].iat[at])

    def totals(self, scope: str) -> np.ndarray:
        """Candidates per query in ``scope``."""
        check_scope(scope)
        return self.queries["kept" if scope == "kept" else "candidates"].to_numpy()

    def subset(self, query_ids: Collection[str]) -> RunOutline:
        """The outline of only these queries, in this outline's order (ids the run lacks are ignored): an
        annotator's share of the run (core.assignments), which Review and the triage queue then walk instead."""
        at = np.array(sorted(self.position[q] for q in set(query_ids) if q in self.position), dtype=np.int64)
        lengths = self.starts[at + 1] - self.starts[at]
        starts = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        rows = np.repeat(self.starts[at] - starts[:-1], lengths) + np.arange(int(starts[-1]), dtype=np.int64)
        queries = self.queries.iloc[at].reset_index(drop=True)
        return RunOutline(queries, starts, self.kept[rows], self.docs_of,
                          {q: i for i, q in enumerate(queries["query_id"])})

    def pair_rows(self, query_ids: list[str], doc_ids: list[str]) -> np.ndarray:
        """The row of each (query, document) pair, -1 where the pair is not a candidate of the run."""
        out = np.full(len(query_ids), -1, dtype=np.int64)
        for i, (query_id, doc_id) in enumerate(zip(query_ids, doc_ids)):
            at = self.position.get(query_id)
            if at is None:
                continue
            rows = self._rows.get(at)
            if rows is None:
                start = int(self.starts[at])
                rows = self._rows[at] = {doc: start + k for k, doc in enumerate(self.docs_of(query_id))}
            out[i] = rows.get(doc_id, -1)
        return out


def run_outline(store: Store, run_id: str) -> RunOutline:
    """The run's ``RunOutline`` (a derived run's with its own kept flags), from its snapshot columns."""
    run = require_run(store, run_id)
    table = store.run_columns(run_id, ["query_id", "kept"])

    def docs_of(query_id: str) -> list[str]:
        return store.candidates(run_id, query_id, with_signals=False, with_risk=False)["doc_id"].tolist()

    if table.num_rows == 0:  # an empty run's snapshot columns have no type to decode
        queries = pd.DataFrame({"query_id": pd.Series(dtype=object), "text": pd.Series(dtype=object),
                                "candidates": pd.Series(dtype=np.int64), "kept": pd.Series(dtype=np.int64)})
        return RunOutline(queries, np.zeros(1, np.int64), np.zeros(0, bool), docs_of, {})
    codes, query_values = run_stats.codes(table, "query_id")
    kept = table["kept"].to_numpy().astype(bool)
    starts = np.r_[run_stats.query_starts(codes), len(codes)]
    ids = query_values.take(codes[starts[:-1]]).to_pylist()
    counts = pd.DataFrame({"query_id": ids, "candidates": np.diff(starts).astype(np.int64),
                           "kept": np.add.reduceat(kept.astype(np.int64), starts[:-1])})
    texts = store.queries(run["dataset"], ids)
    queries = counts.merge(texts, on="query_id", how="left")[["query_id", "text", "candidates", "kept"]]
    return RunOutline(queries, starts, kept, docs_of, {q: i for i, q in enumerate(ids)})


def find_queries(queries: pd.DataFrame, needle: str, limit: int = 50) -> pd.DataFrame:
    """Queries whose id equals ``needle`` first, then those whose text or id contains it (case-insensitive)."""
    needle = needle.strip()
    if not needle:
        return queries.head(0)
    exact = queries["query_id"] == needle
    lowered = needle.lower()
    contains = queries["text"].str.lower().str.contains(lowered, regex=False) | \
        queries["query_id"].str.lower().str.contains(lowered, regex=False)
    return pd.concat([queries[exact], queries[contains & ~exact]]).head(limit)


def check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")


def in_scope(candidates: pd.DataFrame, scope: str) -> pd.DataFrame:
    check_scope(scope)
    return candidates[candidates["kept"]] if scope == "kept" else candidates


def sort_candidates(frame: pd.DataFrame, sort: str) -> pd.DataFrame:
    """Rank order, or risk descending with the dense score standing in where risk was never computed."""
    if sort == "rank":
        return frame.sort_values("rank", kind="stable")
    if sort != "risk":
        raise ValueError(f"unknown sort {sort!r}")
    key = frame["risk"].astype(float).fillna(-1.0)
    return frame.assign(_k1=key, _k2=frame["score"]).sort_values(["_k1", "_k2"], ascending=False,
                                                                  kind="stable").drop(columns=["_k1", "_k2"])


def own_verdicts(store: Store, dataset: str, annotator: str) -> pd.DataFrame:
    """This annotator's current verdicts: query_id, doc_id, label, note."""
    frame = labels.current(store, dataset, annotator)
    return frame[["query_id", "doc_id", "label", "note"]]


def query_view(store: Store, run_id: str, query_id: str, judged: pd.DataFrame, scope: str = "kept",
               sort: str = "rank") -> QueryView:
    """One query's screen from one indexed read of its candidates; ``judged`` from ``own_verdicts``."""
    run = require_run(store, run_id)
    dataset = run["dataset"]
    query = store.queries(dataset, [query_id])
    if query.empty:
        raise KeyError(query_id)
    own = in_scope(store.candidates(run_id, query_id), scope)
    own = own.merge(judged[judged["query_id"] == query_id].drop(columns="query_id"), on="doc_id", how="left")
    pos_ids = store.positives(dataset, run["split"], query_id)
    docs = store.documents(dataset, list(own["doc_id"]) + pos_ids)
    own = own.merge(docs, on="doc_id", how="left")
    own["margin"] = own["score"] - own["pos_score"]
    own = sort_candidates(own, sort).reset_index(drop=True)
    for column in ("label", "note"):  # unjudged rows: None, not NaN, so callers can test ``if label``
        own[column] = own[column].astype(object).where(own[column].notna(), None)
    positives = docs[docs["doc_id"].isin(pos_ids)].reset_index(drop=True)
    return QueryView(query_id, str(query["text"].iloc[0]), positives, own)


def signal_items(signals: str | None) -> dict[str, float]:
    """The stored risk signals of one candidate as a dict (empty when risk was never computed)."""
    if not signals:
        return {}
    try:
        parsed = json.loads(signals)
    except (TypeError, json.JSONDecodeError):
        return {}
    return {str(k): v for k, v in parsed.items()} if isinstance(parsed, dict) else {}


@dataclass
class Progress:
    """Judged / total candidates in scope: over the run, for one query, and how many queries are complete."""

    done: int
    total: int
    query_done: int
    query_total: int
    complete: int
    queries: int


def progress(outline: RunOutline, judged: pd.DataFrame, scope: str, query_id: str) -> Progress:
    """The Review page's two progress bars and its count of complete queries, over the candidates in ``scope``
    (a verdict on an out-of-scope pair doesn't count; queries with nothing in scope are not counted at all)."""
    totals = outline.totals(scope)
    pairs = judged[["query_id", "doc_id"]].drop_duplicates()
    rows = outline.pair_rows(pairs["query_id"].tolist(), pairs["doc_id"].tolist())
    rows = rows[rows >= 0]
    if scope == "kept":
        rows = rows[outline.kept[rows]]
    done = np.bincount(np.searchsorted(outline.starts, rows, side="right") - 1, minlength=len(totals))
    present = totals > 0
    at = outline.position.get(query_id)
    query_done, query_total = (int(done[at]), int(totals[at])) if at is not None and present[at] else (0, 0)
    return Progress(int(done.sum()), int(totals.sum()), query_done, query_total,
                    int(((done == totals) & present).sum()), int(present.sum()))

