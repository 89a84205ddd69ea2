"""Fast paths stay correct: approximate indexes keep recall, bf16 encoding agrees with fp32 or falls back."""

from __future__ import annotations

import json

import numpy as np

from core import encoders
from core.index import (
    TARGET_RECALL,
    VectorFile,
    build_index,
    calibrate_probes,
    exact_search,
    index_kind,
    recall_at_k,
    search,
)
from core.lexical import Bm25


def _clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    pts = centres[rng.integers(0, 50, n)] + rng.normal(scale=0.15, size=(n, dim))
    return (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32)


def _recall_at_100(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 100 for a, b in zip(approx, exact)]))


def _spread(n: int, dim: int = 48, seed: int = 0) -> np.ndarray:
    """Unit vectors with little cluster structure: IVF needs many probes on these."""
    pts = np.random.default_rng(seed).normal(size=(n, dim))
    return (pts / np.linalg.norm(pts, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_streams_chunks_and_equals_a_flat_index():
    points, queries = _spread(5_000), _spread(20, seed=1)
    with VectorFile(points.shape[1]) as file:
        for start in range(0, len(points), 700):
            file.append(points[start:start + 700])
        scores, got = exact_search(file, queries, 30)
    want_scores, want = search(build_index(points, "flat"), queries, 30)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert recall_at_k(got, want) == 1.0
    half = np.where(np.arange(30) < 15, got, -1)  # -1 (no hit) never counts
    assert recall_at_k(half, want) == 0.5
    assert exact_search(points[:7], queries, 30)[1].shape == (20, 7)  # fewer vectors than k: all of them


def test_probes_are_calibrated_by_measured_recall_where_the_first_guess_falls_short():
    """The probe rule of thumb misses on geometry unlike MiniLM's: the calibrated count reaches the target on
    queries outside the calibration sample, and says what it measured."""
    points = _spread(20_000)
    seen, unseen = _spread(300, seed=1), _spread(200, seed=2)
    _, exact = search(build_index(points, "flat"), unseen, 100)
    index = build_index(points, "ivf")
    first = index.nprobe
    assert _recall_at_100(search(index, unseen, 100)[1], exact) < 0.9
    facts = calibrate_probes(index, points, seen, 100)
    assert index.nprobe == facts["nprobe"] > first
    assert facts["sample_recall"] >= TARGET_RECALL and str(first) in facts["tried"]
    assert set(facts["sample_seconds"]) == {"exact", "ivf"}
    assert _recall_at_100(search(index, unseen, 100)[1], exact) >= TARGET_RECALL


def test_ivf_index_recall_at_100():
    """IVF is what ``auto`` switches to above APPROX_THRESHOLD; its probe count must keep recall ≥ 0.95."""
    points = _clustered(20_000)
    queries = _clustered(200, seed=1)
    _, exact = search(build_index(points, "flat"), queries, 100)
    index = build_index(points, "ivf")
    calibrate_probes(index, points, _clustered(200, seed=2), 100)
    assert _recall_at_100(search(index, queries, 100)[1], exact) >= 0.95


def test_auto_compresses_where_a_flat_copy_passes_a_gigabyte():
    assert index_kind(200_000, 384) == "flat"
    assert index_kind(500_000, 384) == "ivf"
    assert index_kind(1_000_000, 384) == "ivf-sq8"
    assert index_kind(500_000, 768) == "ivf-sq8"


def test_compressed_index_from_a_vector_file_keeps_recall_at_100():
    """Past COMPRESSED_BYTES the IVF lists hold 8-bit vectors, filled from the scratch file chunk by chunk."""
    points = _clustered(20_000)
    queries = _clustered(200, seed=1)
    with VectorFile(points.shape[1]) as file:
        for start in range(0, len(points), 3_000):
            file.append(points[start:start + 3_000])
        assert len(file) == len(points)
        np.testing.assert_array_equal(file.take(np.array([5, 19_999, 5, 0, 6])), points[[5, 19_999, 5, 0, 6]])
        index = build_index(file, "ivf-sq8")
        calibrate_probes(index, file, _clustered(200, seed=2), 100)
        _, approx = search(index, queries, 100)
    _, exact = search(build_index(points, "flat"), queries, 100)
    assert _recall_at_100(approx, exact) >= 0.95


def test_flat_search_is_exact_and_handles_small_corpus():
    points = _clustered(30)
    scores, ids = search(build_index(points, "auto"), points[:2], 100)
    assert ids.shape == (2, 30)
    assert list(ids[:, 0]) == [0, 1]
    np.testing.assert_allclose(scores[0], np.sort(points @ points[0])[::-1], rtol=1e-5, atol=1e-6)


def test_bm25_search_answers_in_the_dense_order_scores_then_ids():
    corpus = ["heat conduction in slabs", "os.path.join joins path components", "join two paths with os.path"]
    scores, ids = Bm25.of(corpus).search(["join paths"], 2)
    assert scores.dtype == np.float32 and np.issubdtype(ids.dtype, np.integer)
    assert set(ids[0]) == {1, 2} and scores[0][0] >= scores[0][1] > 0


def test_bf16_agrees_with_fp32_and_auto_takes_it_only_when_close_and_faster(tmp_path, monkeypatch):
    texts = ["heat conduction in composite slabs", "os.path.join joins path components", "x" * 500]
    bf16 = encoders.load_encoder(cache_dir=tmp_path / "a", precision="bf16")
    fp32 = encoders.load_encoder(cache_dir=tmp_path / "b", precision="fp32")
    assert bf16.precision == "bf16" and bf16.bf16_cosine >= encoders.BF16_MIN_COSINE
    assert bf16.bf16_speedup > 0
    a, b = bf16.encode(texts), fp32.encode(texts)
    assert np.min(np.sum(a * b, axis=1)) >= 0.999
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-4)
    # the measured facts are remembered per machine beside the cache
    facts = json.loads((tmp_path / "a" / "models.json").read_text())[bf16.fingerprint]
    assert facts["bf16_speedup_by_machine"] == {encoders.machine_key(): bf16.bf16_speedup}
    # auto follows both bars: close enough and fast enough on this machine
    monkeypatch.setattr(encoders, "BF16_MIN_SPEEDUP", 0.0)
    assert encoders.load_encoder(cache_dir=tmp_path / "a").precision == "bf16"
    monkeypatch.setattr(encoders, "BF16_MIN_SPEEDUP", bf16.bf16_speedup + 1e-3)
    assert encoders.load_encoder(cache_dir=tmp_path / "a").precision == "fp32"
    # a model whose bf16 output drifted past the bar is encoded in fp32 even where bf16 is fast
    monkeypatch.setattr(encoders, "BF16_MIN_SPEEDUP", 0.0)
    monkeypatch.setattr(encoders, "BF16_MIN_COSINE", bf16.bf16_cosine + 1e-6)
    strict = encoders.load_encoder(cache_dir=tmp_path / "c")
    assert strict.precision == "fp32"
    assert np.allclose(strict.encode(texts), b, atol=1e-6)
