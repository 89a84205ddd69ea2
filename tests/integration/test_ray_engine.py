"""--engine ray: Ray Data fills a workspace's embedding cache with the vectors the local engine computes, so a mine
afterwards encodes nothing and finds the same candidates. Runs Ray for real on a local two-CPU cluster."""

from __future__ import annotations

import importlib.util
import socket
import sys

import numpy as np
import pandas as pd
import pytest

from core import ray_engine
from core.encoders import Encoder, default_model_path, load_encoder
from core.engines import ENGINES, check_engine
from core.errors import UserError
from core.lookups import document_texts, positives_by_query
from core.mining import mine
from core.ray_engine import RAY_MISSING, connect, fill_cache, pool_size
from core.rules import RuleSpec
from core.workspace import open_workspace
from tests.app_helpers import copy_workspace

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install -r requirements-ray.txt)")
SPEC = RuleSpec("top", num_negatives=3)


def mined_texts(store) -> list[str]:
    """What mining the fixture's train split encodes (no prompts): every document and the train queries."""
    queries = store.queries("tiny", list(positives_by_query(store, "tiny", "train")))
    return document_texts(store.documents("tiny")) + queries["text"].tolist()


@pytest.fixture
def local_ray():
    """A local two-CPU Ray (ray.init(num_cpus=2, include_dashboard=False) with the engine's settings), shut down
    after the test. One test starts it: it takes half a minute, and xdist may spread a module's tests over
    workers."""
    import ray

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        connect(num_cpus=2)
    yield ray
    ray.shutdown()


PRECISION = "fp32"


@needs_ray
def test_ray_fills_the_cache_so_mining_matches_the_local_engine(mined, tmp_path, local_ray, monkeypatch):
    # two private copies of the session's mined workspace: `local` mines with the local engine; `cold` has its
    # vectors deleted and mines with Ray. Both in fp32: under bf16 (precision=auto on a CPU with AVX512-BF16) a
    # vector's rounding depends on the batch it was encoded in, and Ray batches differently
    local = open_workspace(copy_workspace(mined[0].root, tmp_path / "local"))
    cold = open_workspace(copy_workspace(mined[0].root, tmp_path / "ray"))
    for path in cold.embeddings_dir.glob("*.sqlite*"):
        path.unlink()
    texts = mined_texts(cold.store())
    encoder = load_encoder(cache_dir=cold.embeddings_dir, precision=PRECISION)
    assert len(encoder.cache) == 0

    # `mine --engine ray`: Ray encodes what the cache lacks, the corpus streamed in chunks; the local pass after it
    # encodes nothing
    monkeypatch.setattr(ray_engine, "FILL_CHUNK", 10)
    after_ray = mine(cold.store(), cold, "tiny", "train", depth=100, spec=SPEC, engine="ray", precision=PRECISION)
    stats = cold.store().run(after_ray.run_id)["stats"]
    assert stats["engine"] == "ray" and stats["engine_encoded"] == len(set(texts)) > 2 * ray_engine.FILL_CHUNK
    assert after_ray.encoded == 0 and after_ray.cached > 0
    assert fill_cache(encoder, iter(texts + texts[:4]), None) == 0, "a filled cache sends nothing to Ray"

    # (a) the vectors Ray stored are the local engine's
    by_local = mine(local.store(), local, "tiny", "train", depth=100, spec=SPEC, precision=PRECISION)
    ray_encoder = load_encoder(cache_dir=cold.embeddings_dir, precision=PRECISION)
    local_encoder = load_encoder(cache_dir=local.embeddings_dir, precision=PRECISION)
    from_ray, from_local = ray_encoder.encode(texts), local_encoder.encode(texts)
    assert ray_encoder.stats.encoded == 0 and local_encoder.stats.encoded == 0, "both answered from their caches"
    np.testing.assert_allclose(from_ray, from_local, atol=1e-5)

    # (b) the same top-100 candidates and scores as the local engine
    ray_cands = cold.store().candidates(after_ray.run_id).sort_values(["query_id", "rank"], ignore_index=True)
    local_cands = local.store().candidates(by_local.run_id).sort_values(["query_id", "rank"], ignore_index=True)
    assert len(ray_cands) == after_ray.candidates > 0
    columns = ["query_id", "doc_id", "rank", "kept"]
    pd.testing.assert_frame_equal(ray_cands[columns], local_cands[columns])
    for column in ("score", "pos_score"):
        np.testing.assert_allclose(ray_cands[column], local_cands[column], atol=1e-5)

    # the actors encode under the prompt they are given, stored under that prompt's keys; a repeat counts once
    calls: list[tuple[int, int]] = []
    assert fill_cache(encoder, iter(texts[:3] * 2), "query: ", progress=lambda d, t: calls.append((d, t))) == 3
    assert calls[-1] == (3, 3)
    prompted, plain = ray_encoder.encode(texts[:3], "query: "), ray_encoder.encode(texts[:3])
    assert ray_encoder.stats.encoded == 0
    assert np.all(np.sum(prompted * plain, axis=1) < 0.999), "encoded with the prompt, not without it"


@needs_ray
def test_unreachable_ray_address_is_one_line(monkeypatch):
    import ray

    assert not ray.is_initialized()
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(UserError, match=rf"^RAY_ADDRESS=127.0.0.1:{port}: no Ray cluster answers there") as error:
        connect()
    assert "\n" not in str(error.value) and not ray.is_initialized()


def test_missing_ray_is_one_line_naming_the_install(tmp_path, monkeypatch):
    encoder = Encoder(default_model_path(), "fingerprint", "fp32", None, 384, cache_dir=tmp_path)  # never loaded
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    for attempt in (lambda: fill_cache(encoder, ["a text"], None), connect):
        with pytest.raises(UserError) as error:
            attempt()
        assert str(error.value) == RAY_MISSING and "\n" not in str(error.value)


@pytest.mark.parametrize("cpus, gpus, expected", [
    (2, 0, (1, 1, {"num_cpus": 1})),  # a 2-core machine: one actor, one CPU slot left free
    (16, 0, (7, 2, {"num_cpus": 2})),
    (1, 0, (1, 1, {"num_cpus": 0.5})),
    (64, 4, (4, None, {"num_gpus": 1})),  # one actor per GPU
])
def test_actor_pool_leaves_a_cpu_slot_free_or_takes_one_actor_per_gpu(cpus, gpus, expected):
    actors, threads, per_actor = pool_size(cpus, gpus)
    assert (actors, threads, per_actor) == expected
    if not gpus:
        assert actors * per_actor["num_cpus"] < cpus


def test_engines_are_declared_once_and_unknown_ones_refused():
    assert list(ENGINES) == ["local", "ray"] and all(ENGINES.values())
    assert check_engine("ray") == "ray"
    with pytest.raises(UserError, match=r"^unknown engine 'spark' \(use local or ray\)$"):
        check_engine("spark")
