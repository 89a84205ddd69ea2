"""What the review screen shows, assembled from stored data: no encoding, no search, just joins.

The app asks for one query at a time (its text, positives and candidates with scores, margins, rule verdicts,
risk and the annotator's verdicts) plus progress counts; every answer here is a few indexed reads, so a verdict
click re-renders in well under a second even on a large run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from core import labels
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


def run_queries(store: Store, run_id: str, candidates: pd.DataFrame) -> pd.DataFrame:
    """The run's queries in id order with their text and candidate counts: the review's navigation list."""
    run = require_run(store, run_id)
    counts = candidates.groupby("query_id", sort=True).agg(candidates=("doc_id", "size"), kept=("kept", "sum"))
    texts = store.queries(run["dataset"], list(counts.index))
    out = counts.reset_index().merge(texts, on="query_id", how="left")
    return out[["query_id", "text", "candidates", "kept"]]


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


def in_scope(candidates: pd.DataFrame, scope: str) -> pd.DataFrame:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
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


def query_view(store: Store, run_id: str, query_id: str, candidates: pd.DataFrame, judged: pd.DataFrame,
               scope: str = "kept", sort: str = "rank") -> QueryView:
    """One query's screen. ``candidates`` is the run's candidate table, ``judged`` from ``own_verdicts``."""
    run = require_run(store, run_id)
    dataset = run["dataset"]
    query = store.queries(dataset, [query_id])
    if query.empty:
        raise KeyError(query_id)
    own = in_scope(candidates[candidates["query_id"] == query_id], scope)
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


def judged_per_query(candidates: pd.DataFrame, judged: pd.DataFrame, scope: str = "kept") -> pd.DataFrame:
    """Judged / total per query over the candidates in scope; a verdict on an out-of-scope pair doesn't count."""
    frame = in_scope(candidates, scope)[["query_id", "doc_id"]]
    marks = judged[["query_id", "doc_id"]].drop_duplicates().assign(judged=True)
    frame = frame.merge(marks, on=["query_id", "doc_id"], how="left")
    frame["judged"] = frame["judged"].fillna(False).astype(bool)
    per_query = frame.groupby("query_id").agg(judged=("judged", "sum"), total=("doc_id", "size"))
    return per_query.reset_index()


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


def progress_summary(per_query: pd.DataFrame, query_id: str) -> Progress:
    """From ``judged_per_query``: the Review page's two progress bars and its count of complete queries."""
    row = per_query[per_query["query_id"] == query_id]
    query_done, query_total = (int(row["judged"].iloc[0]), int(row["total"].iloc[0])) if not row.empty else (0, 0)
    return Progress(int(per_query["judged"].sum()), int(per_query["total"].sum()), query_done, query_total,
                    int((per_query["judged"] == per_query["total"]).sum()), len(per_query))


@dataclass
class AboveWeakestPositive:
    """Candidates that score above their query's weakest labelled positive: the likeliest false negatives."""

    candidates: int
    share: float
    queries: int
    kept: int


def above_weakest_positive(candidates: pd.DataFrame) -> AboveWeakestPositive:
    """How many candidates score s > s_P, their share of the run, the queries they belong to and how many the
    run's rule kept as negatives."""
    above = candidates[candidates["score"] > candidates["pos_score"]]
    return AboveWeakestPositive(len(above), len(above) / len(candidates) if len(candidates) else 0.0,
                                int(above["query_id"].nunique()), int(above["kept"].sum()))
