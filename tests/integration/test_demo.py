"""The built-in demo: real standard-library text, natural false negatives, and a resumable build."""

from __future__ import annotations

import pytest

from core.datasets import load_beir
from core.demo import DEMO_DATASET, build_demo_beir, demo_needed, ensure_demo, summary


def test_demo_folder_is_valid_beir_with_natural_false_negatives(tmp_path):
    folder = build_demo_beir(tmp_path / "demo")
    content = load_beir(folder)
    docs = {d[0]: d for d in content.documents}
    assert 600 <= len(docs) <= 1500
    assert {s for s, *_ in content.qrels} == {"train", "test"}
    # the same function under two public names: one labelled, the other an unlabelled twin
    assert {"os.path.join", "posixpath.join"} <= set(docs)
    positives = {d for _, _, d, _ in content.qrels}
    assert ("os.path.join" in positives) != ("posixpath.join" in positives)
    assert {"random.choice", "random.Random.choice"} <= set(docs)
    queries = {q[1] for q in content.queries}
    assert any("pathname components" in q for q in queries)
    assert len(queries) == len(content.queries)  # no two identical queries


def test_summary_skips_signature_lines_and_stubs():
    assert summary("strftime(format[, tuple]) -> string\n\nConvert a time tuple to a string. More.") == \
        "Convert a time tuple to a string."
    assert summary("Same as a + b.") is None


@pytest.mark.slow
def test_ensure_demo_builds_once_and_resumes(tmp_path):
    from core.datasets import ingest
    from core.projection import load_projection
    from core.workspace import open_workspace
    from tests.fixtures import make_beir

    ws = open_workspace(tmp_path / "ws")
    stages = []
    run_id = ensure_demo(ws, lambda msg, frac: stages.append(frac), max_documents=150)
    store = ws.store()
    assert not demo_needed(store)
    assert [r["run_id"] for r in store.runs(DEMO_DATASET)] == [run_id]
    assert store.count("candidates", run_id=run_id) > 0
    assert load_projection(store, ws, run_id, "pca") is not None
    assert stages == sorted(stages) and stages[-1] == 1.0
    assert ensure_demo(ws, max_documents=150) == run_id  # nothing redone
    assert len(store.runs(DEMO_DATASET)) == 1
    other = open_workspace(tmp_path / "own")
    ingest(other.store(), make_beir(tmp_path / "tiny"), "tiny")
    assert ensure_demo(other) is None  # never adds the demo to a user's workspace
