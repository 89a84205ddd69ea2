"""Projections from cached embeddings, fitted on a sample and shared by derived runs; map point frames; the
password rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import labels, projection
from core.auth import check_password, configured_password
from core.mining import derive_run
from core.projection import (anchored_points, compute_projection, dataset_points, documents_queries,
                             ensure_projection, fit_projection, load_projection, map_state, point_ids,
                             projection_path, root_run, run_pairs)
from core.rules import RuleSpec
from core.vectors import Vectors, run_encoder
from core.workspace import open_workspace
from tests.app_helpers import copy_workspace


@pytest.fixture
def own(mined, tmp_path):
    """A private copy of the mined workspace: these tests add runs, verdicts and projections."""
    ws, _, result = mined
    copy = open_workspace(copy_workspace(ws.root, tmp_path / "ws"))
    return copy, copy.store(), result


def _vectors_of(ws, store, run_id: str, frame: pd.DataFrame) -> np.ndarray:
    """The cached vectors of the map's points, row for row, read independently of core.projection."""
    vectors = Vectors(store, "tiny", run_encoder(ws, store.run(run_id)))
    q_row, q_vecs = vectors.queries(frame.loc[frame["kind"] == "query", "id"].tolist())
    d_row, d_vecs, _ = vectors.documents(frame.loc[frame["kind"] == "document", "id"].tolist())
    return np.vstack([q_vecs[q_row[i]] if kind == "query" else d_vecs[d_row[i]]
                      for kind, i in zip(frame["kind"], frame["id"])])


def test_pca_projection_is_stored_and_shared_by_derived_runs(own):
    ws, store, result = own
    frame = ensure_projection(store, ws, result.run_id, "pca")
    cands = store.candidates(result.run_id)
    assert set(frame.loc[frame["kind"] == "query", "id"]) == set(cands["query_id"])
    assert set(cands["doc_id"]) <= set(frame.loc[frame["kind"] == "document", "id"])
    assert len(frame) == len(point_ids(store, result.run_id)) and frame["fitted"].all()
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()
    assert projection_path(ws, result.run_id, "pca").exists()
    derived = derive_run(store, result.run_id, RuleSpec("percpos", num_negatives=2)).run_id
    assert root_run(store, derived) == result.run_id
    state = map_state(store, ws, derived, umap=False)
    assert state.method == "pca" and state.complete and state.frame.equals(frame) and not state.jobs


def test_a_map_fitted_on_a_sample_places_the_rest_on_it(own, monkeypatch):
    ws, store, result = own
    monkeypatch.setattr(projection, "FIT_POINTS", 12)
    monkeypatch.setattr(projection, "CHUNK", 7)
    messages = []
    frame = compute_projection(store, ws, result.run_id, "pca", stage=lambda m, f: messages.append(m))
    total = len(point_ids(store, result.run_id))
    assert len(frame) == total > 12 + 7 and frame["fitted"].sum() == 12
    assert f"PCA: 19 of {total:,} points projected" in messages
    fitted = frame[frame["fitted"]]
    direct, place = fit_projection("pca", _vectors_of(ws, store, result.run_id, fitted))
    np.testing.assert_allclose(fitted[["x", "y"]].to_numpy(), direct, atol=1e-5)
    rest = frame[~frame["fitted"]]
    np.testing.assert_allclose(rest[["x", "y"]].to_numpy(), place(_vectors_of(ws, store, result.run_id, rest)),
                               atol=1e-5)
    assert load_projection(store, ws, result.run_id, "pca").equals(frame)


def test_a_large_run_is_projected_in_a_background_job(own, monkeypatch):
    ws, store, result = own
    monkeypatch.setattr(projection, "FIT_POINTS", 5)
    first = map_state(store, ws, result.run_id, umap=False)
    assert set(first.jobs) == {"pca"} and not first.complete
    assert first.jobs["pca"].wait(120) and first.jobs["pca"].error is None
    done = map_state(store, ws, result.run_id, umap=False)
    assert done.complete and not done.jobs and done.total == len(point_ids(store, result.run_id))
    assert done.frame["fitted"].sum() == 5


def test_map_point_frames(own):
    ws, store, result = own
    proj = ensure_projection(store, ws, result.run_id, "pca")
    cands = store.candidates(result.run_id)
    judged = pd.DataFrame({"query_id": ["q1"], "doc_id": ["py-join-dup"], "label": ["false_negative"]})
    points = anchored_points(store, result.run_id, proj, "q1", judged, "verdict")
    assert points["kind"].tolist()[:2] == ["query", "positive"]
    assert points.set_index("id").at["py-join-dup", "verdict"] == "false_negative"
    assert len(points) == 2 + (cands["query_id"] == "q1").sum()
    assert points["hover"].str.len().gt(0).all()
    pairs = run_pairs(store, result.run_id)
    whole = dataset_points(store, result.run_id, proj, pairs, judged, "rule")
    assert len(whole) == len(proj)  # under SHOWN_POINTS: every point
    assert set(whole["rule"]) <= {"kept", "dropped", "query", "positive"}
    assert whole.set_index("id").at["py-join-dup", "rule"] in {"kept", "dropped"}
    scored = dataset_points(store, result.run_id, proj, pairs, judged, "score")
    best = cands.groupby("doc_id")["score"].max()
    docs = scored[scored["kind"] == "document"].set_index("id")["score"]
    np.testing.assert_allclose(docs.to_numpy(), best.reindex(docs.index).to_numpy())
    risky = dataset_points(store, result.run_id, proj, pairs, judged, "risk")
    risk = risky[risky["kind"] == "document"].set_index("id")["risk"]
    np.testing.assert_allclose(risk.to_numpy(), cands.groupby("doc_id")["risk"].max().reindex(risk.index).astype(float))
    # kept for the process until the run's risk is written again: then the new values, not the cached ones
    from core.risk import signal_set

    lone = cands[cands.groupby("doc_id")["doc_id"].transform("size") == 1].iloc[0]  # a document of one pair
    store.set_risk(result.run_id, [(lone.query_id, lone.doc_id, 0.0, lone.signals)], signal_set=signal_set())
    again = dataset_points(store, result.run_id, proj, pairs, judged, "risk")
    assert again.set_index("id").at[lone.doc_id, "risk"] == 0.0 != lone.risk


def test_whole_dataset_sample_is_stratified_and_keeps_every_judged_point(own, monkeypatch):
    ws, store, result = own
    proj = ensure_projection(store, ws, result.run_id, "pca")
    cands = store.candidates(result.run_id)
    pairs = run_pairs(store, result.run_id)
    doc_pairs = cands.drop_duplicates("doc_id")
    judged_docs = doc_pairs["doc_id"].head(9).tolist()
    for q, d in zip(doc_pairs["query_id"].head(9), judged_docs):
        labels.record(store, "tiny", q, d, "ana", "true_negative")
    labels.record(store, "tiny", doc_pairs["query_id"].iloc[0], judged_docs[0], "bob", "false_negative")
    judged = labels.current(store, "tiny", "ana")[["query_id", "doc_id", "label"]]
    judged.loc[len(judged)] = ["q1", "not-a-candidate-of-q1", "false_negative"]  # no pair of the run: ignored
    monkeypatch.setattr(projection, "SHOWN_POINTS", 10)
    sample = dataset_points(store, result.run_id, proj, pairs, judged, "verdict")
    assert set(judged_docs) <= set(sample["id"])
    assert (sample["verdict"] == "true_negative").sum() == 9 and "false_negative" not in set(sample["verdict"])
    assert len(sample) <= 10 + 9 and sample["id"].is_unique
    unjudged = sample[~sample["id"].isin(judged_docs)]
    assert 1 <= (unjudged["kind"] == "query").sum() <= 2 and (unjudged["kind"] == "positive").sum() <= 2
    rule = dataset_points(store, result.run_id, proj, pairs, judged.head(0), "rule")
    assert {"kept", "dropped"} <= set(rule["rule"]) and len(rule) == 10
    assert set(sample["id"]) <= set(proj["id"])


def test_password_configuration_and_check():
    assert configured_password({}, {}) is None
    assert configured_password({"NEGSPACE_PASSWORD": ""}, {}) is None
    assert configured_password({"NEGSPACE_PASSWORD": "a"}, {"password": "b"}) == "a"
    assert configured_password({}, {"password": "b"}) == "b"
    assert check_password("pässword", "pässword")
    assert not check_password("password", "pässword") and not check_password(None, "x")


@pytest.mark.slow
def test_umap_projection_fitted_on_a_sample(own, monkeypatch):
    ws, store, result = own
    monkeypatch.setattr(projection, "FIT_POINTS", 20)
    ensure_projection(store, ws, result.run_id, "pca")
    frame = ensure_projection(store, ws, result.run_id, "umap")
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all() and frame["fitted"].sum() == 20 < len(frame)
    fitted = frame[frame["fitted"]]
    direct, _ = fit_projection("umap", _vectors_of(ws, store, result.run_id, fitted))
    np.testing.assert_allclose(fitted[["x", "y"]].to_numpy(), direct, atol=1e-4)
    assert map_state(store, ws, result.run_id).method == "umap"
    assert fit_projection("umap", np.eye(12, dtype=np.float32))[0].shape == (12, 2)


def test_documents_queries_lists_the_pairs_a_whole_dataset_selection_stands_for(own):
    _, store, result = own
    cands = store.candidates(result.run_id, with_signals=False)
    counts = cands["doc_id"].value_counts()
    busy, single = counts.index[0], counts.index[-1]
    frame = documents_queries(run_pairs(store, result.run_id), [busy, "nope", single, busy], shown=2)
    assert frame["doc_id"].tolist() == [busy, single]
    assert frame["queries"].tolist() == [counts[busy], counts[single]]
    first = cands.loc[cands["doc_id"] == busy, "query_id"].tolist()
    assert frame["query_ids"].iloc[0] == ", ".join(first[:2]) + (" …" if len(first) > 2 else "")
    assert documents_queries(run_pairs(store, result.run_id), []).empty


def test_pca_axes_are_the_two_leading_principal_components():
    """fit_projection's PCA (eigenvectors of the scatter matrix) against an SVD of the centred sample: the same
    coordinates up to each axis' sign, and a point placed later lands where the fit would put it."""
    vectors = np.random.default_rng(3).normal(size=(500, 48)) * np.linspace(3, 0.1, 48)
    coords, place = fit_projection("pca", vectors.astype(np.float32))
    centred = vectors - vectors.mean(axis=0)
    reference = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    np.testing.assert_allclose(np.abs(coords), np.abs(reference), atol=1e-4)
    np.testing.assert_allclose(place(vectors[:7].astype(np.float32)), coords[:7], atol=1e-5)
