"""Store queries that other tests reach only indirectly: listing runs, and the optional filters of listings."""

from __future__ import annotations

import pandas as pd

from core.datasets import ingest


def _save_run(store, run_id: str, created_at: str, pairs: list[tuple[str, str]]) -> None:
    candidates = pd.DataFrame([{"query_id": q, "doc_id": d, "rank": rank, "score": 0.5, "pos_score": 0.9,
                                "bm25": None, "kept": True, "rule": "top"} for rank, (q, d) in enumerate(pairs, 1)])
    store.save_run({"run_id": run_id, "dataset": "tiny", "split": "train", "model_fingerprint": "fp",
                    "params": {"depth": len(pairs)}, "stats": {"candidates": len(pairs)}, "created_at": created_at},
                   candidates)


def test_runs_are_listed_newest_first_in_one_statement(workspace, beir_dir):
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    for run_id, created_at in (("old", "2025-01-01"), ("new", "2025-03-01"), ("mid", "2025-02-01")):
        _save_run(store, run_id, created_at, [("q1", "py-join")])
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    runs = store.runs("tiny")
    store.conn.set_trace_callback(None)
    assert len(statements) == 1, statements
    assert [r["run_id"] for r in runs] == ["new", "mid", "old"]
    assert runs[0]["params"] == {"depth": 1} and runs[0]["stats"] == {"candidates": 1}
    assert runs == store.runs() and store.runs("other") == []
    assert runs[1] == store.run("mid")


def test_optional_filters_narrow_only_when_given(workspace, beir_dir):
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    _save_run(store, "r1", "2025-01-01", [("q1", "py-join"), ("q1", "heat-1"), ("q3", "heat-1")])
    _save_run(store, "r2", "2025-01-02", [("q3", "heat-1"), ("q3", "py-join")])

    def pairs(**only: str) -> list[tuple[str, str]]:
        return sorted(map(tuple, store.candidate_pairs("tiny", **only).to_numpy().tolist()))

    assert pairs() == [("q1", "heat-1"), ("q1", "py-join"), ("q3", "heat-1"), ("q3", "py-join")]
    assert pairs(query_id="q3") == [("q3", "heat-1"), ("q3", "py-join")]
    assert pairs(doc_id="heat-1") == [("q1", "heat-1"), ("q3", "heat-1")]
    assert pairs(query_id="q1", doc_id="heat-1") == [("q1", "heat-1")]
    assert store.candidates("r1", "q1")["doc_id"].tolist() == ["py-join", "heat-1"]
    assert len(store.candidates("r1")) == 3
    assert len(store.qrels("tiny")) > len(store.qrels("tiny", "train")) > 0
    assert store.count("candidates", run_id="r2") == 2 and store.count("candidates") == 5
