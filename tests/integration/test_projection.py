"""Projections from cached embeddings, shared by derived runs; map point frames; the password rule."""

from __future__ import annotations

import numpy as np
import pytest

from core import labels
from core.auth import check_password, configured_password
from core.mining import derive_run
from core.projection import (anchored_points, best_projection, dataset_points, ensure_projection,
                             projection_path, root_run, umap_2d)
from core.rules import RuleSpec
from core.workspace import open_workspace
from tests.app_helpers import copy_workspace


@pytest.fixture
def own(mined, tmp_path):
    """A private copy of the mined workspace: these tests add runs and projections."""
    ws, _, result = mined
    copy = open_workspace(copy_workspace(ws.root, tmp_path / "ws"))
    return copy, copy.store(), result


def test_pca_projection_is_stored_and_shared_by_derived_runs(own):
    ws, store, result = own
    frame = ensure_projection(store, ws, result.run_id, "pca")
    cands = store.candidates(result.run_id)
    assert set(frame.loc[frame["kind"] == "query", "id"]) == set(cands["query_id"])
    assert set(cands["doc_id"]) <= set(frame.loc[frame["kind"] == "document", "id"])
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()
    assert projection_path(ws, result.run_id, "pca").exists()
    derived = derive_run(store, result.run_id, RuleSpec("percpos", num_negatives=2)).run_id
    assert root_run(store, derived) == result.run_id
    shared, method = best_projection(store, ws, derived)
    assert method == "pca" and shared.equals(frame)


def test_map_point_frames(own):
    ws, store, result = own
    proj = ensure_projection(store, ws, result.run_id, "pca")
    cands = store.candidates(result.run_id)
    judged = labels.current(store, "tiny", "nobody")[["query_id", "doc_id", "label"]]
    judged.loc[0] = ["q1", "py-join-dup", "false_negative"]
    points = anchored_points(proj, cands, ["py-join"], "q1", judged, "verdict")
    assert points["kind"].tolist()[:2] == ["query", "positive"]
    assert points.set_index("id").at["py-join-dup", "verdict"] == "false_negative"
    assert len(points) == 2 + (cands["query_id"] == "q1").sum()
    whole = dataset_points(proj, cands, {"py-join"}, judged, "rule")
    assert set(whole["rule"]) <= {"kept", "dropped", "query", "positive"}
    assert whole.set_index("id").at["py-join-dup", "rule"] in {"kept", "dropped"}
    scored = dataset_points(proj, cands, {"py-join"}, judged, "score")
    assert scored.loc[scored["kind"] == "document", "score"].notna().any()


def test_password_configuration_and_check():
    assert configured_password({}, {}) is None
    assert configured_password({"NEGSPACE_PASSWORD": ""}, {}) is None
    assert configured_password({"NEGSPACE_PASSWORD": "a"}, {"password": "b"}) == "a"
    assert configured_password({}, {"password": "b"}) == "b"
    assert check_password("pässword", "pässword")
    assert not check_password("password", "pässword") and not check_password(None, "x")


@pytest.mark.slow
def test_umap_projection(own):
    ws, store, result = own
    frame = ensure_projection(store, ws, result.run_id, "umap")
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()
    assert best_projection(store, ws, result.run_id)[1] == "umap"
    assert umap_2d(np.eye(12, dtype=np.float32)).shape == (12, 2)


def test_documents_queries_lists_the_pairs_a_whole_dataset_selection_stands_for():
    import pandas as pd

    from core.projection import documents_queries

    cands = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q1", "q4", "q5", "q6", "q7", "q8"],
                          "doc_id": ["d1", "d1", "d1", "d2", "d3", "d3", "d3", "d3", "d3"]})
    frame = documents_queries(cands, ["d3", "nope", "d1", "d3"], shown=4)
    assert frame["doc_id"].tolist() == ["d3", "d1"]
    assert frame["queries"].tolist() == [5, 3]
    assert frame["query_ids"].tolist() == ["q4, q5, q6, q7 …", "q1, q2, q3"]
    assert documents_queries(cands, []).empty
