"""Triage: a review queue in false-negative-risk order, verdicts spread as suggestions, promotion to positives.

Annotator time is the scarce resource, so the queue puts the likeliest false negatives first across all queries.
A verdict is usually true of a document's near-copies and of the same document under a near-identical query, but
only a person may make a verdict: propagation therefore writes *suggestions* that someone accepts or rejects.
A confirmed false negative can become a positive (a qrels row with origin ``promoted``) and can be demoted again.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import audit, labels, roles
from core.errors import UserError
from core.lookups import is_positive, require_dataset, require_run
from core.risk import SIGNALS, RiskModel
from core.vectors import NEAR_DUPLICATE_COSINE, Vectors, run_encoder, tfidf_matrix

if TYPE_CHECKING:
    from core.review import RunOutline
    from core.store import Store
    from core.workspace import Workspace

QUEUE_COLUMNS = ["query_id", "doc_id", "rank", "score", "pos_score", "risk", "signals"]
NEAR_DUPLICATE_OVERLAP = 0.8  # TF-IDF cosine at which two documents count as near-copies even if embeddings differ
SIMILAR_QUERY_COSINE = 0.9  # queries this close share verdicts on the same document
PROMOTED_SCORE = 1  # qrels grade given to a promoted positive


def _judged_pairs(store: Store, dataset: str, annotator: str | None) -> set[tuple[str, str]]:
    judged = labels.current(store, dataset, labels.check_annotator(annotator) if annotator else None)
    return set(zip(judged["query_id"], judged["doc_id"]))


def triage_queue(store: Store, run_id: str, annotator: str | None = None, limit: int = 50,
                 share: RunOutline | None = None) -> pd.DataFrame:
    """The next ``limit`` candidates to review across all queries, riskiest first (ties by query and rank).

    Skips pairs this annotator already judged (any annotator's, when ``annotator`` is None). ``share``: only the
    queries of this outline (an annotator's assignment, core.assignments), in the same risk order.
    ``signals`` is the parsed dict of signal values (see core.risk.SIGNALS); candidates whose risk was never
    computed come last. Pages of the run's risk index are read until enough unjudged candidates are found (each
    page twice the last, so a reviewer with thousands of verdicts costs a few reads), never the whole run.
    """
    run = require_run(store, run_id)
    done = _judged_pairs(store, run["dataset"], annotator)
    mine = None if share is None else share.position
    want, parts, found = max(int(limit), 0), [], 0
    for scored in (True, False):
        offset, size = 0, max(2 * want, 64)
        while found < want:
            page = store.risk_order(run_id, offset, size, scored)
            todo = page[[pair not in done and (mine is None or pair[0] in mine)
                         for pair in zip(page["query_id"], page["doc_id"])]]
            if len(todo):
                parts.append(todo)
                found += len(todo)
            if len(page) < size:
                break
            offset, size = offset + size, 2 * size
    todo = pd.concat(parts, ignore_index=True).head(want) if parts else store.risk_order(run_id, 0, 0)
    todo = todo.assign(signals=[json.loads(s) if isinstance(s, str) else {} for s in todo["signals"]])
    return todo[QUEUE_COLUMNS]


def readable(queue: pd.DataFrame, model: RiskModel, top: int = 2) -> pd.DataFrame:
    """The queue as a person reads it: instead of the signal values, the ``top`` signals that raised each
    candidate's risk most under ``model`` (the one that scored the run, core.risk.risk_model), each in the words
    declared with it in core.risk and with its value, so nobody has to know what "bm25_norm" is."""
    values = pd.DataFrame(list(queue["signals"]), index=queue.index).reindex(columns=list(SIGNALS)).astype(float)
    share = np.nan_to_num(model.contributions(values).to_numpy(), nan=0.0)
    names, why = list(SIGNALS), []
    for shares, own in zip(share, values.to_numpy()):
        raised = [i for i in np.argsort(-shares, kind="stable")[:top] if shares[i] > 0]
        why.append("; ".join(f"{SIGNALS[names[i]].description}: {own[i]:.3g}" for i in raised) or
                   "no signal raised it above the model's baseline")
    return queue.drop(columns="signals").assign(**{"raised most by": why})


def unjudged(store: Store, run_id: str, annotator: str | None = None, share: RunOutline | None = None) -> int:
    """How many candidates of the run this annotator (anyone, when None) has not judged: the queue's true length,
    from the run's size and a primary-key probe per verdict (with ``share``, the queue of those queries: their
    candidates less the verdicts placed among them)."""
    run = require_run(store, run_id)
    if share is not None:
        judged = pd.DataFrame(list(_judged_pairs(store, run["dataset"], annotator)), columns=["query_id", "doc_id"])
        placed = share.pair_rows(judged["query_id"].tolist(), judged["doc_id"].tolist())
        return int(share.queries["candidates"].sum()) - int((placed >= 0).sum())
    base = require_run(store, store.rows_of(run_id))
    total = base["stats"].get("candidates")
    if total is None:
        total = store.count("candidates", run_id=base["run_id"])
    return int(total) - len(store.mined_pairs(run_id, _judged_pairs(store, run["dataset"], annotator)))


_QUERY_VECTORS: OrderedDict[tuple, tuple[list[str], dict[str, int], np.ndarray]] = OrderedDict()
_QUERY_VECTORS_LOCK = threading.Lock()
QUERY_VECTOR_SETS = 2  # datasets' query matrices kept per process (100k queries x 384 dims: 150 MB each)


def _query_vectors(store: Store, dataset: str, runs: list[dict],
                   vectors: Vectors) -> tuple[list[str], dict[str, int], np.ndarray]:
    """Every query some run of the dataset mined, as rows of unit vectors: built once per set of mined runs and
    encoder (cache hits after mining), so finding similar queries is one matrix-vector product. Returns the ids in
    row order, each id's row and the vectors."""
    bases = tuple(sorted({r["base_run"] or r["run_id"] for r in runs}))
    encoder = vectors.encoder
    key = (str(store.path), dataset, bases, encoder.fingerprint, encoder.precision, encoder.query_prompt)
    with _QUERY_VECTORS_LOCK:
        if key not in _QUERY_VECTORS:
            ids: set[str] = set()
            for base in bases:
                column = store.run_columns(base, ["query_id"])["query_id"].combine_chunks()
                ids.update(column.dictionary.to_pylist() if len(column) else [])
            row, vecs = vectors.queries(sorted(ids))
            _QUERY_VECTORS[key] = list(row), row, vecs
            while len(_QUERY_VECTORS) > QUERY_VECTOR_SETS:
                _QUERY_VECTORS.popitem(last=False)
        _QUERY_VECTORS.move_to_end(key)
        return _QUERY_VECTORS[key]


def propagate(store: Store, workspace: Workspace, dataset: str, query_id: str, doc_id: str, label: str,
              source_event: int | None) -> int:
    """Suggest a verdict's label for near-copies of the document under the same query (embedding cosine ≥ 0.95
    or TF-IDF overlap ≥ 0.8) and for the same document under queries with cosine ≥ 0.9; returns how many open
    suggestions were created.

    Only pairs that some run of the dataset mined are considered (those are the pairs anyone reviews), and pairs
    that are already judged, already positives, or already carry the same open suggestion are skipped.
    ``unsure`` says nothing about other pairs, so it creates none. Every read is indexed: the query's candidates,
    the similar queries from the runs' cached query vectors, then each (similar query, document) by primary key.
    """
    label = labels.normalise_label(label)
    if label == "unsure":
        return 0
    words = label.replace("_", " ")  # the reason is read by people: "false negative", not "false_negative"
    runs = store.runs(dataset)
    if not runs:
        return 0
    vectors = Vectors(store, dataset, run_encoder(workspace, runs[0]))  # newest run's model
    verdicts = labels.current(store, dataset)
    judged = set(zip(verdicts["query_id"], verdicts["doc_id"]))
    positives: dict[str, set[str]] = {}

    def skipped(q: str, d: str) -> bool:
        if q not in positives:
            positives[q] = set(store.positives(dataset, None, q))
        return (q, d) == (query_id, doc_id) or (q, d) in judged or d in positives[q]

    rows = []
    siblings = [d for d in store.candidate_pairs(dataset, query_id=query_id)["doc_id"] if not skipped(query_id, d)]
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
                                           f"{overlap[i]:.2f}) judged {words} for this query"})

    ids, row, vecs = _query_vectors(store, dataset, runs, vectors)
    if query_id in row:
        query = vecs[row[query_id]]
    else:
        own_row, own = vectors.queries([query_id])
        query = own[own_row[query_id]] if query_id in own_row else None
    if query is not None:
        cosine = vecs @ query
        for i in sorted(np.flatnonzero(cosine >= SIMILAR_QUERY_COSINE), key=ids.__getitem__):
            q = ids[i]
            if not skipped(q, doc_id) and not store.candidate_pairs(dataset, query_id=q, doc_id=doc_id).empty:
                rows.append({"query_id": q, "doc_id": doc_id, "similarity": float(cosine[i]),
                             "reason": f"judged {words} for the similar query {query_id} (cosine {cosine[i]:.2f})"})
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
    roles.require(roles.JUDGE)
    roles.require_self(annotator)
    found = _open_suggestion(store, suggestion_id)
    event = {"dataset": found["dataset"], "query_id": found["query_id"], "doc_id": found["doc_id"],
             "annotator": labels.check_annotator(annotator), "label": found["label"],
             "note": f"accepted suggestion #{found['id']}: {found['reason']}"}
    return int(_decide(store, suggestion_id, "accepted", event))


def reject_suggestion(store: Store, suggestion_id: int, annotator: str) -> None:
    """Close a suggestion without a verdict (the suggestions table records no decider: the audit log does)."""
    roles.require(roles.JUDGE)
    roles.require_self(annotator)
    labels.check_annotator(annotator)
    found = _open_suggestion(store, suggestion_id)
    _decide(store, suggestion_id, "rejected", None)
    audit.record(store, "reject suggestion", f"{found['dataset']}/{found['query_id']}/{found['doc_id']}",
                 suggestion=int(suggestion_id), annotator=annotator)


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
    person having confirmed it. Adjudicators and admins only, once accounts exist (core.roles).
    """
    roles.require(roles.PROMOTE)
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
    audit.record(store, "promote", f"{dataset}/{query_id}/{doc_id}", split=split)


def demote(store: Store, dataset: str, split: str, query_id: str, doc_id: str) -> None:
    """Remove a promoted positive again; imported judgments cannot be demoted."""
    roles.require(roles.PROMOTE)
    _check_pair(store, dataset, split, query_id, doc_id)
    qrels = store.qrels(dataset, split)
    row = qrels[(qrels["query_id"] == query_id) & (qrels["doc_id"] == doc_id)]
    if row.empty or row["origin"].iloc[0] != "promoted":
        raise UserError(f"({query_id}, {doc_id}) is not a promoted positive of {split!r}")
    store.set_promoted(dataset, split, query_id, doc_id, None)
    audit.record(store, "demote", f"{dataset}/{query_id}/{doc_id}", split=split)


def promoted(store: Store, dataset: str) -> pd.DataFrame:
    """Promoted positives of a dataset: split, query_id, doc_id, score, origin."""
    qrels = store.qrels(dataset)
    return qrels[qrels["origin"] == "promoted"].reset_index(drop=True)

