"""The Map page on a run treated as large (sample sizes shrunk): projected in a background job, the whole-dataset
view a stratified sample titled "n of N points", and never the whole-run candidate frame."""

from __future__ import annotations

import json

from core import labels, projection
from core.jobs import running_job
from core.projection import point_ids, projection_path
from core.workspace import open_workspace
from core.store import Store
from tests.app_helpers import open_app, store_at, timed


def _figure(at) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def _one_query_only(monkeypatch) -> None:
    """Make any read of a whole run's candidate table (a 10M-row frame at scale) fail the test."""
    read = Store.candidates

    def candidates(self, run_id, query_id=None, *args, **kwargs):
        assert query_id is not None, f"the Map page read the whole candidate table of {run_id}"
        return read(self, run_id, query_id, *args, **kwargs)
    monkeypatch.setattr(Store, "candidates", candidates)


def test_map_of_a_large_run_samples_and_projects_in_the_background(monkeypatch, ws_root):
    monkeypatch.setattr(projection, "FIT_POINTS", 5)
    monkeypatch.setattr(projection, "CHUNK", 4)
    monkeypatch.setattr(projection, "SHOWN_POINTS", 10)
    store = store_at(ws_root)
    run_id = store.runs("tiny")[0]["run_id"]
    pairs = store.candidates(run_id, with_signals=False).drop_duplicates("doc_id").head(12)
    for q, d in zip(pairs["query_id"], pairs["doc_id"]):
        labels.record(store, "tiny", q, d, "reviewer", "unsure")
    _one_query_only(monkeypatch)

    at = open_app(monkeypatch, ws_root, "pages/map.py")
    job = running_job(f"projection:{projection_path(open_workspace(ws_root), run_id, 'pca')}")
    assert job is None or job.wait(120)
    timed(at)
    total = len(point_ids(store, run_id))
    stored = projection.load_projection(store, open_workspace(ws_root), run_id, "pca")
    assert len(stored) == total and stored["fitted"].sum() == 5
    assert _figure(at)["layout"]["title"]["text"].endswith("· PCA")

    at.session_state["map_view"] = "Whole dataset"
    timed(at)
    figure = _figure(at)
    shown = sum(len(trace["customdata"]) for trace in figure["data"])
    assert figure["layout"]["title"]["text"] == f"{shown:,} of {total:,} points · PCA"
    assert 12 <= shown <= 10 + 12
    ids = {row[0] for trace in figure["data"] for row in trace["customdata"]}
    assert set(pairs["doc_id"]) <= ids


def test_before_the_runs_map_is_placed_the_query_is_drawn_on_its_own_pca(monkeypatch, ws_root):
    """A run too large to project on the page: until its sample is placed, the query-anchored view draws the query,
    its positives and candidates on a PCA of those points alone, and the whole-dataset view waits."""
    import threading

    monkeypatch.setattr(projection, "FIT_POINTS", 5)
    gate = threading.Event()
    real = projection.compute_projection

    def held(*args, **kwargs):  # the background placement waits until the test has looked at the page
        gate.wait(120)
        return real(*args, **kwargs)
    monkeypatch.setattr(projection, "compute_projection", held)
    _one_query_only(monkeypatch)
    store = store_at(ws_root)
    run_id = store.runs("tiny")[0]["run_id"]
    try:
        at = open_app(monkeypatch, ws_root, "pages/map.py")
        assert projection.load_projection(store, open_workspace(ws_root), run_id, "pca") is None
        figure = _figure(at)
        assert "pca of this query alone".upper() in figure["layout"]["title"]["text"]
        own = store.candidates(run_id, "q1", with_signals=False)
        drawn = {row[0] for trace in figure["data"] for row in trace["customdata"]}
        assert set(own["doc_id"]) <= drawn
        assert any("being placed" in i.value for i in at.info)
        assert at.get("button_group")[0].proto.disabled, "the whole-dataset view waits for the run's map"
    finally:
        gate.set()
    job = running_job(f"projection:{projection_path(open_workspace(ws_root), run_id, 'pca')}")
    assert job is None or job.wait(120)
