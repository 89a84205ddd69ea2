"""Mining streams the corpus in chunks and is atomic: the same candidates as a brute-force computation over the
whole corpus at once, and a mine killed with SIGKILL leaves no run and resumes encoding only what is missing."""

from __future__ import annotations

import json
import signal
import subprocess

import bm25s
import numpy as np
import pytest

from core import mining
from core.datasets import ingest
from core.encoders import document_text, load_encoder
from core.lookups import positives_by_query
from core.workspace import open_workspace
from tests.cli_helpers import run_cli, run_cli_signalled
from tests.fixtures import make_synthetic_beir


def _brute_force(store, encoder, dataset: str, depth: int, bm25_depth: int) -> dict[str, list[tuple]]:
    """Per query: (doc_id, rank, score, pos_score, bm25) computed over the whole corpus in memory with numpy and
    bm25s, the way the tool mined before it streamed."""
    docs = store.documents(dataset)
    texts = [document_text(t, x) for t, x in zip(docs["title"], docs["text"])]
    doc_ids = docs["doc_id"].tolist()
    positives = positives_by_query(store, dataset, "train")
    queries = store.queries(dataset, list(positives))
    doc_vecs = encoder.encode_documents(texts)
    query_vecs = encoder.encode_queries(queries["text"].tolist())
    lexical = bm25s.BM25()
    lexical.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    out = {}
    for qi, (query_id, text) in enumerate(zip(queries["query_id"], queries["text"])):
        pos = {doc_ids.index(d) for d in positives[query_id]}
        scores = doc_vecs @ query_vecs[qi]
        pool = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in pos][:depth]
        tokens = bm25s.tokenize([text], stopwords="en", show_progress=False, return_ids=False)[0]
        bm = lexical.get_scores(tokens) if tokens else np.zeros(len(texts))
        if bm25_depth:
            pool += [int(i) for i in np.argsort(-bm, kind="stable")[:bm25_depth] if int(i) not in pos | set(pool)]
        pool.sort(key=lambda i: -scores[i])
        pos_score = float(min(scores[i] for i in pos))
        out[query_id] = [(doc_ids[i], r + 1, float(scores[i]), pos_score, float(bm[i])) for r, i in enumerate(pool)]
    return out


def test_streamed_candidates_equal_brute_force_over_several_chunks(tmp_path, static_model, monkeypatch):
    ws = open_workspace(tmp_path / "ws")
    store = ws.store()
    ingest(store, make_synthetic_beir(tmp_path / "synthetic", 300, 40), "synthetic")
    monkeypatch.setattr(mining, "DOCUMENT_CHUNK", 70)  # five chunks, the last one short
    encoder = load_encoder(static_model, cache_dir=ws.embeddings_dir)
    positives = positives_by_query(store, "synthetic", "train")
    queries = store.queries("synthetic", list(positives))
    got, index = mining.candidates_for(encoder, store, "synthetic", queries, positives, depth=15, bm25_depth=10,
                                       scratch=ws.embeddings_dir)
    assert index == {"kind": "flat", "searched": "index"}
    expected = _brute_force(store, encoder, "synthetic", depth=15, bm25_depth=10)
    assert set(got["query_id"]) == set(expected)
    assert len(got) > 15 * len(expected), "BM25 added candidates beyond the dense top 15"
    for query_id, group in got.groupby("query_id"):
        want = expected[query_id]
        assert len(group) == len(want) >= 15
        assert group["rank"].tolist() == [w[1] for w in want]
        # equal scores may swap places between two exact computations: compare scores by rank, ids as sets
        np.testing.assert_allclose(group["score"], [w[2] for w in want], atol=1e-5)
        assert set(group["doc_id"]) == {w[0] for w in want}
        np.testing.assert_allclose(group["pos_score"], [w[3] for w in want], atol=1e-5)
        by_doc = {w[0]: w[4] for w in want}
        np.testing.assert_allclose(group["bm25"], [by_doc[d] for d in group["doc_id"]], rtol=1e-5, atol=1e-5)
    assert not list(ws.embeddings_dir.glob("*.f32")), "the scratch vector file leaves nothing behind"
    store.close()


@pytest.mark.parametrize("compressed", [False, True], ids=["ivf", "ivf-sq8"])
def test_approximate_search_is_calibrated_to_the_recall_target_and_stores_exact_scores(tmp_path, static_model,
                                                                                       monkeypatch, compressed):
    """Past the approximate threshold a mine probes as many IVF lists as its own queries need for recall ≥ 0.95,
    says so in the run's stats, and stores exact scores (8-bit hits are re-scored)."""
    from core import index

    ws = open_workspace(tmp_path / "ws")
    store = ws.store()
    ingest(store, make_synthetic_beir(tmp_path / "synthetic", 400, 60), "synthetic")
    monkeypatch.setattr(index, "APPROX_THRESHOLD", 100)
    monkeypatch.setattr(index, "COMPRESSED_BYTES", 0 if compressed else 1 << 40)
    result = mining.mine(store, ws, "synthetic", model=str(static_model), depth=20)
    facts = store.run(result.run_id)["stats"]["index"]
    assert facts == result.index
    assert facts["kind"] == ("ivf-sq8" if compressed else "ivf")
    assert facts["sample_recall"] >= index.TARGET_RECALL and 1 <= facts["nprobe"] <= facts["nlist"]
    assert "recall@" in mining.describe_index(facts) and facts["searched"] in {"index", "exact"}
    encoder = load_encoder(static_model, cache_dir=ws.embeddings_dir)
    expected = _brute_force(store, encoder, "synthetic", depth=20, bm25_depth=0)
    got = store.candidates(result.run_id, with_signals=False, with_risk=False)
    found = sum(len(set(group["doc_id"]) & {w[0] for w in expected[q]}) for q, group in got.groupby("query_id"))
    assert found / sum(len(w) for w in expected.values()) >= index.TARGET_RECALL
    exact = {(q, w[0]): w[2] for q, want in expected.items() for w in want}
    for q, d, s in zip(got["query_id"], got["doc_id"], got["score"]):
        if (q, d) in exact:
            assert abs(s - exact[(q, d)]) < 1e-5
    store.close()


def _cli(*args: object, kill_at: tuple[str, str, int] | None = None) -> subprocess.CompletedProcess:
    return run_cli_signalled(kill_at, signal.SIGKILL, *args) if kill_at else run_cli(*args)


def _runs(ws) -> list[dict]:
    return json.loads(_cli("runs", "-w", ws, "--json").stdout)


def _candidates(ws, run_id: str) -> list[tuple]:
    store = open_workspace(ws).store()
    try:
        frame = store.candidates(run_id, with_signals=False)
        return [(q, d, r, round(s, 5), k) for q, d, r, s, k in
                zip(frame["query_id"], frame["doc_id"], frame["rank"], frame["score"], frame["kept"])]
    finally:
        store.close()


MINE_ARGS = ("--dataset", "s", "--depth", 20, "--json")
N_DOCS, N_QUERIES = 4000, 300


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, static_model) -> tuple:
    """The corpus, and what an uninterrupted mine of it stores (run id, candidates)."""
    root = tmp_path_factory.mktemp("resume")
    corpus = make_synthetic_beir(root / "synthetic", N_DOCS, N_QUERIES)
    assert _cli("ingest", corpus, "-w", root / "reference", "--name", "s").returncode == 0
    run = json.loads(_cli("mine", "-w", root / "reference", *MINE_ARGS, "--model", static_model).stdout)
    return corpus, _candidates(root / "reference", run["run"])


@pytest.mark.parametrize("kill_at", [("core/encoders.py", "put", 2), ("core/store/runs.py", "records", 500)],
                         ids=["while-encoding", "while-writing-candidates"])
def test_a_killed_mine_leaves_no_run_and_resumes_encoding_only_what_is_missing(tmp_path, static_model, kill_at,
                                                                                uninterrupted):
    corpus, expected = uninterrupted
    killed = tmp_path / "killed"
    assert _cli("ingest", corpus, "-w", killed, "--name", "s").returncode == 0
    crashed = _cli("mine", "-w", killed, *MINE_ARGS, "--model", static_model, kill_at=kill_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert _runs(killed) == [], "a killed mine leaves no run behind"
    store = open_workspace(killed).store()
    assert store.scalar("SELECT COUNT(*) FROM candidates") == 0, "nor any of its candidates"
    store.close()

    resumed = json.loads(_cli("mine", "-w", killed, *MINE_ARGS, "--model", static_model).stdout)
    texts = N_DOCS + N_QUERIES
    if kill_at[1] == "put":  # two whole batches reached the cache before the kill: only the rest is encoded
        assert 0 < resumed["encoded"] < texts and resumed["encoded"] + resumed["cached"] == texts
    else:  # everything was encoded before the kill
        assert resumed["encoded"] == 0 and resumed["cached"] == texts
    assert [r["run_id"] for r in _runs(killed)] == [resumed["run"]]
    assert _candidates(killed, resumed["run"]) == expected
