"""Triage: a review queue in false-negative-risk order, verdicts spread as suggestions, promotion to positives.

Annotator time is the scarce resource, so the queue puts the likeliest false negatives first across all queries.
A verdict is usually true of a document's near-copies and of the same document under a near-identical query, but
only a person may make a verdict: propagation therefore writes *suggestions* that someone accepts or rejects.
A confirmed false negative can become a positive (a qrels row with origin ``promoted``) and can be demoted again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

from core import labels
from core.errors import UserError
from core.lookups import is_positive, positive_qrels, require_dataset, require_run
from core.vectors import NEAR_DUPLICATE_COSINE, Vectors, run_encoder, tfidf_matrix

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

QUEUE_COLUMNS = ["query_id", "doc_id", "rank", "score", "pos_score", "risk", "signals"]
NEAR_DUPLICATE_OVERLAP = 0.8  # TF-IDF cosine at which two documents count as near-copies even if embeddings differ
SIMILAR_QUERY_COSINE = 0.9  # queries this close share verdicts on the same document
PROMOTED_SCORE = 1  # qrels grade given to a promoted positive


def triage_queue(store: Store, run_id: str, annotator: str | None = None, limit: int = 50) -> pd.DataFrame:
    """The next ``limit`` candidates to review across all queries, riskiest first.

    Skips pairs this annotator already judged (any annotator's, when ``annotator`` is None). ``signals`` is the
    parsed dict of signal values (see core.risk.SIGNALS); candidates whose risk was never computed come last.
    """
    run = require_run(store, run_id)
    cands = store.candidates(run_id)
    judged = labels.current(store, run["dataset"], labels.check_annotator(annotator) if annotator else None)
    done = set(zip(judged["query_id"], judged["doc_id"]))
    todo = cands[[pair not in done for pair in zip(cands["query_id"], cands["doc_id"])]]
    todo = todo.sort_values(["risk", "query_id", "rank"], ascending=[False, True, True], na_position="last",
                            kind="stable").head(max(int(limit), 0)).reset_index(drop=True)
    todo = todo.assign(signals=[json.loads(s) if isinstance(s, str) else {} for s in todo["signals"]])
    return todo[QUEUE_COLUMNS]


def propagate(store: Store, workspace: Workspace, dataset: str, query_id: str, doc_id: str, label: str,
              source_event: int | None) -> int:
    """Suggest a verdict's label for near-copies of the document under the same query (embedding cosine ≥ 0.95
    or TF-IDF overlap ≥ 0.8) and for the same document under queries with cosine ≥ 0.9; returns how many open
    suggestions were created.

    Only pairs that some run of the dataset mined are considered (those are the pairs anyone reviews), and pairs
    that are already judged, already positives, or already carry the same open suggestion are skipped.
    ``unsure`` says nothing about other pairs, so it creates none.
    """
    label = labels.normalise_label(label)
    if label == "unsure":
        return 0
    runs = store.runs(dataset)
    if not runs:
        return 0
    vectors = Vectors(store, dataset, run_encoder(workspace, runs[0]))  # newest run's model
    qrels = store.qrels(dataset)
    positives = positive_qrels(qrels)
    skip = set(zip(positives["query_id"], positives["doc_id"]))
    verdicts = labels.current(store, dataset)
    skip |= set(zip(verdicts["query_id"], verdicts["doc_id"]))
    skip.add((query_id, doc_id))
    rows = []

    siblings = [d for d in store.candidate_pairs(dataset, query_id=query_id)["doc_id"]
                if (query_id, d) not in skip]
    if siblings:
        row, vecs, texts = vectors.documents([doc_id, *siblings])
        if doc_id in row:
            cosine = vecs @ vecs[row[doc_id]]
            tfidf = tfidf_matrix(texts)
            overlap = (tfidf @ tfidf[row[doc_id]].T).toarray().ravel()
            for d in siblings:
                i = row[d]
                if cosine[i] >= NEAR_DUPLICATE_COSINE or overlap[i] >= NEAR_DUPLICATE_OVERLAP:
                    rows.append({"query_id": query_id, "doc_id": d, "similarity": float(cosine[i]),
                                 "reason": f"near-copy of {doc_id} (cosine {cosine[i]:.2f}, word overlap "
                                           f"{overlap[i]:.2f}) judged {label} for this query"})

    others = [q for q in store.candidate_pairs(dataset, doc_id=doc_id)["query_id"] if (q, doc_id) not in skip]
    if others:
        row, vecs = vectors.queries([query_id, *others])
        if query_id in row:
            cosine = vecs @ vecs[row[query_id]]
            for q in others:
                if cosine[row[q]] >= SIMILAR_QUERY_COSINE:
                    rows.append({"query_id": q, "doc_id": doc_id, "similarity": float(cosine[row[q]]),
                                 "reason": f"judged {label} for the similar query {query_id} "
                                           f"(cosine {cosine[row[q]]:.2f})"})
    return store.add_suggestions([{**r, "dataset": dataset, "label": label, "source_event": source_event}
                                  for r in rows])


def suggestions(store: Store, dataset: str, query_id: str | None = None, status: str | None = "open") -> pd.DataFrame:
    """Suggestions of a dataset (columns as the suggestions table), oldest first; status None means all."""
    if status is not None and status not in ("open", "accepted", "rejected"):
        raise UserError(f"unknown suggestion status {status!r} (use open, accepted or rejected)")
    return store.suggestions(dataset, query_id, status)


def _decide(store: Store, suggestion_id: int, status: str, event: dict | None) -> int | None:
    try:
        return store.decide_suggestion(int(suggestion_id), status, event)
    except LookupError:
        raise UserError(f"suggestion {suggestion_id} was already decided or does not exist") from None


def _open_suggestion(store: Store, suggestion_id: int) -> dict:
    found = store.suggestion(int(suggestion_id))
    if found is None:
        raise UserError(f"no suggestion {suggestion_id}")
    if found["status"] != "open":
        raise UserError(f"suggestion {suggestion_id} is already {found['status']}")
    return found


def accept_suggestion(store: Store, suggestion_id: int, annotator: str) -> int:
    """Turn a suggestion into the annotator's verdict (one event, noted as accepted) and return the event id."""
    found = _open_suggestion(store, suggestion_id)
    event = {"dataset": found["dataset"], "query_id": found["query_id"], "doc_id": found["doc_id"],
             "annotator": labels.check_annotator(annotator), "label": found["label"],
             "note": f"accepted suggestion #{found['id']}: {found['reason']}"}
    return int(_decide(store, suggestion_id, "accepted", event))


def reject_suggestion(store: Store, suggestion_id: int, annotator: str) -> None:
    """Close a suggestion without a verdict (the suggestions table records no decider, so none is stored)."""
    labels.check_annotator(annotator)
    _open_suggestion(store, suggestion_id)
    _decide(store, suggestion_id, "rejected", None)


def _check_pair(store: Store, dataset: str, split: str, query_id: str, doc_id: str) -> None:
    require_dataset(store, dataset)
    if split not in store.splits(dataset):
        raise UserError(f"dataset {dataset!r} has no split {split!r} (splits: {store.splits(dataset)})")
    if store.queries(dataset, [query_id]).empty:
        raise UserError(f"unknown query id {query_id!r}")
    if store.documents(dataset, [doc_id]).empty:
        raise UserError(f"unknown corpus id {doc_id!r}")


def promote(store: Store, dataset: str, split: str, query_id: str, doc_id: str) -> None:
    """Make a confirmed false negative a positive of ``split`` (qrels grade 1, origin promoted).

    Only a pair whose resolved verdict is false_negative can be promoted, so a positive never appears without a
    person having confirmed it.
    """
    _check_pair(store, dataset, split, query_id, doc_id)
    verdicts = labels.resolved(store, dataset)
    mine = verdicts[(verdicts["query_id"] == query_id) & (verdicts["doc_id"] == doc_id)]
    label = mine["label"].iloc[0] if len(mine) else None
    if label != "false_negative":
        raise UserError(f"({query_id}, {doc_id}) can be promoted only once its verdict is false_negative "
                        f"(it is {label or 'unjudged'})")
    existing = store.qrels(dataset, split)
    existing = existing[(existing["query_id"] == query_id) & (existing["doc_id"] == doc_id)]
    if len(existing) and is_positive(existing["score"].iloc[0]):
        raise UserError(f"({query_id}, {doc_id}) is already a positive of {split!r} ({existing['origin'].iloc[0]})")
    store.set_promoted(dataset, split, query_id, doc_id, PROMOTED_SCORE)


def demote(store: Store, dataset: str, split: str, query_id: str, doc_id: str) -> None:
    """Remove a promoted positive again; imported judgments cannot be demoted."""
    _check_pair(store, dataset, split, query_id, doc_id)
    qrels = store.qrels(dataset, split)
    row = qrels[(qrels["query_id"] == query_id) & (qrels["doc_id"] == doc_id)]
    if row.empty or row["origin"].iloc[0] != "promoted":
        raise UserError(f"({query_id}, {doc_id}) is not a promoted positive of {split!r}")
    store.set_promoted(dataset, split, query_id, doc_id, None)


def promoted(store: Store, dataset: str) -> pd.DataFrame:
    """Promoted positives of a dataset: split, query_id, doc_id, score, origin."""
    qrels = store.qrels(dataset)
    return qrels[qrels["origin"] == "promoted"].reset_index(drop=True)

