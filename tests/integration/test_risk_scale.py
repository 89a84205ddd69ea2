"""The vectorised risk signals equal a slow per-candidate reference that spells out each signal's definition.

``core.risk.signal_frame`` pairs every candidate with its query's known positives, rejected documents and
neighbour queries in blocks over the whole run; the reference below loops over candidates one by one, in float64,
exactly as ``risk.SIGNALS`` describes them. Both run on the tiny fixture with verdicts of every kind recorded, so
every signal (own-verdict exclusions included) is non-trivial somewhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import labels, risk
from core.lookups import positives_by_query
from core.vectors import Vectors, run_encoder, tfidf_matrix

VERDICTS = [("q1", "py-join-dup", "false_negative"), ("q1", "py-split", "true_negative"),
            ("q2", "py-rev", "true_negative"), ("q2", "py-sort-dup", "false_negative"),
            ("q4", "bio-3", "unsure"), ("q5", "geo-3", "true_negative"), ("q5", "geo-4", "true_negative")]


@pytest.fixture(scope="module")
def judged_run(mined, tmp_path_factory):
    """A private copy of the session's mined workspace with verdicts of every kind."""
    from core.workspace import open_workspace
    from tests.app_helpers import copy_workspace

    shared, _, result = mined
    ws = open_workspace(copy_workspace(shared.root, tmp_path_factory.mktemp("risk-scale") / "ws"))
    store, run_id = ws.store(), result.run_id
    for query_id, doc_id, label in VERDICTS:
        labels.record(store, "tiny", query_id, doc_id, "ana", label)
    return ws, store, run_id


def reference(store, ws, run_id: str) -> pd.DataFrame:
    """Every signal of every candidate, one candidate at a time, in float64."""
    run = store.run(run_id)
    dataset = run["dataset"]
    cands = store.candidates(run_id)
    verdicts = labels.resolved(store, dataset)
    verdicts = verdicts[verdicts["label"].isin(["false_negative", "true_negative"])]
    is_fn = {(q, d): label == "false_negative" for q, d, label in zip(verdicts["query_id"], verdicts["doc_id"],
                                                                      verdicts["label"])}
    known = {q: set(docs) for q, docs in positives_by_query(store, dataset, run["split"]).items()}
    rejected: dict[str, set[str]] = {}
    for (q, d), fn in is_fn.items():
        (known if fn else rejected).setdefault(q, set()).add(d)
    run_queries = set(cands["query_id"])
    needed = set(cands["doc_id"]).union(*(known.get(q, set()) | rejected.get(q, set()) for q in run_queries))
    vectors = Vectors(store, dataset, run_encoder(ws, run))
    row, doc_vecs, texts = vectors.documents(sorted(needed))
    doc_vecs = doc_vecs.astype(np.float64)
    tfidf = tfidf_matrix(texts).astype(np.float64).toarray()
    query_row, query_vecs = vectors.queries(sorted(store.queries(dataset)["query_id"]))
    query_vecs = query_vecs.astype(np.float64)
    overall = float(np.mean(list(is_fn.values()))) if is_fn else 0.5

    out = []
    for c in cands.itertuples():
        q, d, v = c.query_id, c.doc_id, doc_vecs[row[c.doc_id]]
        positives = [p for p in known.get(q, ()) if p in row and p != d]
        negatives = [n for n in rejected.get(q, ()) if n in row and n != d]
        closest = cands[cands["query_id"] == q].sort_values("rank")["doc_id"][:risk.EXPANSION_TOP]
        expanded = (query_vecs[query_row[q]] + np.mean([doc_vecs[row[t]] for t in closest], axis=0)
                    + (np.mean([doc_vecs[row[p]] for p in positives], axis=0) if positives else 0.0))
        neighbours = [o for o, docs in known.items() if d in docs and o != q]
        judged = [fn for (o, _), fn in is_fn.items() if o == q]
        own = [is_fn[(q, d)]] if (q, d) in is_fn else []
        query_bm25 = cands.loc[cands["query_id"] == q, "bm25"].fillna(0.0)
        out.append({
            "query_id": q, "doc_id": d, "rank": c.rank, "score": c.score, "margin": c.score - c.pos_score,
            "bm25_norm": (0.0 if pd.isna(c.bm25) else c.bm25) / query_bm25.max() if query_bm25.max() > 0 else 0.0,
            "pos_cosine": max((v @ doc_vecs[row[p]] for p in positives), default=0.0),
            "pos_overlap": max((tfidf[row[d]] @ tfidf[row[p]] for p in positives), default=0.0),
            "expansion": v @ expanded / np.linalg.norm(expanded),
            "neighbour_query": max((query_vecs[query_row[o]] @ query_vecs[query_row[q]] for o in neighbours),
                                   default=0.0),
            "second_model": 0.0,
            "ce_score": 0.0,  # no cross-encoder scored this run
            "tn_cosine": max(0.0, max((v @ doc_vecs[row[n]] for n in negatives), default=0.0)),
            "query_fn_rate": (sum(judged) - sum(own) + risk.PRIOR_VERDICTS * overall)
                             / (len(judged) - len(own) + risk.PRIOR_VERDICTS),
        })
    return pd.DataFrame(out).set_index(["query_id", "doc_id"])


@pytest.mark.parametrize("chunk", [risk.PAIR_CHUNK, 7], ids=["one-block", "blocks-of-7"])
def test_signals_equal_the_per_candidate_reference(judged_run, monkeypatch, chunk):
    ws, store, run_id = judged_run
    monkeypatch.setattr(risk, "PAIR_CHUNK", chunk)  # blocks must not change a value, wherever they split a query
    got = risk.signal_frame(store, ws, run_id).set_index(["query_id", "doc_id"])
    want = reference(store, ws, run_id)
    assert len(got) == len(want) > 100
    got = got.loc[want.index, list(risk.SIGNALS)].astype(float)
    for name in risk.SIGNALS:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-9, err_msg=name)
    # each verdict-driven signal is exercised, including the candidate's own verdict left out of its signals
    assert (want["tn_cosine"] > 0).sum() >= 3 and (want["neighbour_query"] != 0).sum() >= 3
    assert want["query_fn_rate"].nunique() >= 3
    assert want.loc[("q1", "py-join-dup"), "pos_cosine"] < 0.95, "a judged false negative is not its own positive"


def test_stored_risk_is_the_default_model_over_the_reference_signals(judged_run):
    ws, store, run_id = judged_run
    risk.compute_risk(store, ws, run_id)
    cands = store.candidates(run_id).set_index(["query_id", "doc_id"])
    want = reference(store, ws, run_id)
    expected = risk.DEFAULT_MODEL.predict(want.reset_index())
    np.testing.assert_allclose(cands.loc[want.index, "risk"], expected, rtol=0, atol=1e-9)
    stored = risk.stored_signals(cands.loc[want.index].reset_index())
    np.testing.assert_allclose(stored.to_numpy(float), want[list(risk.SIGNALS)].round(4).to_numpy(float), atol=2e-4)
