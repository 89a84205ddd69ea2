"""How index build, search time and memory grow from 10k to 1M 384-d vectors, exact vs approximate.

Points: real all-MiniLM-L6-v2 embeddings of the shared corpora where we have them (≈12k); beyond that, synthetic
neighbours of real embeddings (real vector + Gaussian noise σ=0.03 per dimension, re-normalised) so the data keep
the cluster structure of real text (uniform random vectors have none and would flatter nobody). Queries: 1,000 real
SciFact query embeddings. recall@100 of each approximate index is measured against exact search in the same run.
Each (size, index) runs in a fresh process so its peak RSS is its own.

    NEGSPACE_EMBEDDINGS=benchmarks/.cache/embeddings python3 benchmarks/bench_scale.py
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, print_table, python, timed_process, write_result  # noqa: E402

SIZES = [10_000, 100_000, 1_000_000]
CACHE = ROOT / "benchmarks" / ".cache"


def real_vectors() -> np.ndarray:
    """Every cached embedding of the default model (queries and documents of the shared corpora)."""
    from core.encoders import default_model_path, model_fingerprint

    folder = Path(os.environ.get("NEGSPACE_EMBEDDINGS") or CACHE / "embeddings")
    fp = model_fingerprint(default_model_path())
    files = sorted(folder.glob(f"{fp}-*.sqlite"))
    if not files:
        raise SystemExit(f"no cached embeddings in {folder}: run a mine over the shared datasets first")
    rows = sqlite3.connect(files[0]).execute("SELECT vec FROM vectors").fetchall()
    return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])


def make_points(n: int, real: np.ndarray, seed: int = 0) -> np.ndarray:
    if n <= len(real):
        return real[:n].copy()
    rng = np.random.default_rng(seed)
    base = real[rng.integers(0, len(real), size=n - len(real))]
    synth = base + rng.normal(0, 0.03, size=base.shape).astype(np.float32)
    synth /= np.linalg.norm(synth, axis=1, keepdims=True)
    return np.vstack([real, synth]).astype(np.float32)


def child(n: int, kind: str, out: Path) -> None:
    """Build one index, search 1,000 queries for top-100, save ids; prints timings as JSON."""
    from core.index import build_index, search

    real = real_vectors()
    points = make_points(n, real)
    rng = np.random.default_rng(1)
    queries = real[rng.choice(len(real), size=1000, replace=False)]
    queries = queries + rng.normal(0, 0.01, size=queries.shape).astype(np.float32)  # not identical to a point
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    t0 = time.perf_counter()
    index = build_index(points, kind)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, ids = search(index, queries, 100)
    search_s = time.perf_counter() - t0
    np.save(out, ids)
    import faiss

    print(json.dumps({"build_s": build, "search_s": search_s,
                      "index_mib": len(faiss.serialize_index(index)) / 2**20}))


def main() -> None:
    if len(sys.argv) == 4:
        child(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
        return
    tmp = CACHE / "scale"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in SIZES:
        exact_ids = None
        for kind in ("flat", "ivf", "hnsw"):
            if kind == "hnsw" and n > 100_000:
                continue  # measured too slow to build on 2 cores at 1M (see docs/BENCHMARKS.md)
            out = tmp / f"{n}-{kind}.npy"
            res = timed_process([python(), __file__, str(n), kind, str(out)])
            info = json.loads(res["stdout"].strip().splitlines()[-1])
            ids = np.load(out)
            if kind == "flat":
                exact_ids = ids
            recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(ids, exact_ids)])
            rows.append({"vectors": n, "index": kind, "build_s": round(info["build_s"], 2),
                         "search_1k_q_s": round(info["search_s"], 3), "recall@100": round(float(recall), 4),
                         "index_mib": round(info["index_mib"], 1), "peak_rss_mib": res["peak_rss_mib"]})
            print_table(rows[-1:], list(rows[-1]))
    print()
    print_table(rows, list(rows[0]))
    write_result("scale", {"queries": 1000, "k": 100, "rows": rows})


if __name__ == "__main__":
    main()
