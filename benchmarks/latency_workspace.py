"""Workspaces for the app latency benchmark: one scored depth-100 run of N candidates over a 200k-document corpus.

Each size is built once into ``benchmarks/.cache/latency-<N>/`` (git-ignored) and reused: the scale corpus of
200,000 documents (``benchmarks/scale_corpus.py``, seed 0) with N/100 queries is ingested, every document and query
is encoded with the static model (``benchmarks/static_model.py``) into the workspace's embedding cache, each query's
top 100 (its positive left out) is taken from those vectors by FAISS IVF (1,024 lists, 32 probes: real neighbours
and scores; exact search of 100k queries was too slow on a busy 2-core machine), ``core.rules.apply`` keeps the
top 5, and the run is saved through ``store.save_run`` with the encoder's fingerprint and model path (what
``core.vectors.run_encoder`` reads) and already risk-scored: a random risk and a signals JSON per candidate under today's ``signal_set()``, so
the app never scores it and page timings exclude scoring. BM25 is random too (no page time depends on its value).

A 10M-candidate run is one DataFrame handed to ``save_run``: ids and rules are object columns that share one Python
string per distinct value (10M pointers, not 10M strings), so the build peaks at 6.3 GB RSS (the frame, the rule's
copy, save_run's reindexed copy and the snapshot's sort) and needs no other way in; the search runs 4,096 queries at
a time. 10M took 35 minutes on a busy 2-core AVX2 machine (save_run 18 of them), 4.4 minutes on a quiet one with
AVX512 (save_run 3.2), and 5 GB of disk.

    python3 benchmarks/latency_workspace.py 100000       # → benchmarks/.cache/latency-100000/
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT

DOCS, DEPTH, SEED = 200_000, 100, 0
DATASET, RUN_ID = "scale", "latency-run"
CACHE = ROOT / "benchmarks" / ".cache"
SIGNAL_VARIANTS = 1024  # distinct signals JSON strings, so the stored rows are as long as real ones


def workspace_dir(size: int) -> Path:
    return CACHE / f"latency-{size}"


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _signals_pool(rng: np.random.Generator) -> np.ndarray:
    """Signals JSON as ``core.risk.compute_risk`` stores it (every registered signal, 4 decimals)."""
    from core.risk import SIGNALS

    pool = [json.dumps({name: round(float(v), 4) for name, v in zip(SIGNALS, rng.uniform(0, 1, len(SIGNALS)))},
                       separators=(",", ":")) for _ in range(SIGNAL_VARIANTS)]
    return np.asarray(pool, dtype=object)


def _candidates(doc_ids: list[str], doc_vecs: np.ndarray, query_ids: list[str], query_vecs: np.ndarray,
                positive_rows: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Each query's top ``DEPTH`` documents by cosine (IVF), its positive left out, in (query, rank) order."""
    import faiss

    dim = doc_vecs.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, 1024, faiss.METRIC_INNER_PRODUCT)
    index.train(doc_vecs[rng.choice(len(doc_vecs), 50_000, replace=False)])
    index.add(doc_vecs)
    index.nprobe = 32
    n = len(query_ids)
    d_rows = np.empty((n, DEPTH), dtype=np.int64)
    scores = np.empty((n, DEPTH), dtype=np.float32)
    for start in range(0, n, 4096):
        stop = min(n, start + 4096)
        found_scores, found = index.search(query_vecs[start:stop], DEPTH + 1)
        if (found < 0).any():
            raise RuntimeError("IVF probes returned fewer than DEPTH + 1 documents: raise nprobe")
        keep = found != positive_rows[start:stop, None]
        keep[keep.all(axis=1), -1] = False  # positive not retrieved: drop the 101st instead
        d_rows[start:stop] = found[keep].reshape(-1, DEPTH)
        scores[start:stop] = found_scores[keep].reshape(-1, DEPTH)
    pos_score = np.einsum("ij,ij->i", query_vecs, doc_vecs[positive_rows])
    total = n * DEPTH
    return pd.DataFrame({
        "query_id": np.asarray(query_ids, dtype=object)[np.repeat(np.arange(n), DEPTH)],
        "doc_id": np.asarray(doc_ids, dtype=object)[d_rows.ravel()],
        "rank": np.tile(np.arange(1, DEPTH + 1), n),
        "score": scores.ravel().astype(float),
        "pos_score": np.repeat(pos_score, DEPTH).astype(float),
        "bm25": rng.uniform(0, 10, total),
        "risk": rng.uniform(0, 1, total),
        "signals": _signals_pool(rng)[rng.integers(0, SIGNAL_VARIANTS, total)],
    })


def build(size: int, model: Path) -> dict:
    """Build ``workspace_dir(size)`` (in a sibling folder renamed at the end, so it is complete or absent)."""
    from benchmarks import scale_corpus
    from core import rules, run_stats
    from core.datasets import ingest
    from core.encoders import load_encoder
    from core.risk import signal_set
    from core.vectors import Vectors
    from core.workspace import open_workspace

    if size % DEPTH:
        raise SystemExit(f"size {size} is not a multiple of the depth {DEPTH}")
    out = workspace_dir(size)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    seconds: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = round(now - clock, 1)
        clock = now

    corpus = CACHE / f"scale-{DOCS}-s{SEED}-q{size // DEPTH}"
    if not (corpus / "corpus.jsonl").exists():
        scale_corpus.build(DOCS, corpus, SEED, size // DEPTH)
    lap("corpus")
    ws = open_workspace(tmp)
    donor = next((d for d in sorted(CACHE.glob("latency-*")) if (d / "build.json").exists()), None)
    if donor is not None:  # the same documents: their vectors (keyed by content) are cache hits here too
        shutil.copytree(donor / "embeddings", ws.embeddings_dir, dirs_exist_ok=True)
    store = ws.store()
    ingest(store, corpus, DATASET)
    lap("ingest")
    encoder = load_encoder(str(model), cache_dir=ws.embeddings_dir, precision="fp32", device="cpu")
    vectors = Vectors(store, DATASET, encoder)
    doc_ids = store.documents(DATASET)["doc_id"].tolist()
    doc_vecs = np.empty((len(doc_ids), encoder.dim), dtype=np.float32)
    for start in range(0, len(doc_ids), 50_000):
        chunk = doc_ids[start:start + 50_000]
        row, vecs, _ = vectors.documents(chunk)
        doc_vecs[start:start + len(chunk)] = vecs[[row[d] for d in chunk]]
    qrels = store.qrels(DATASET)
    query_ids = qrels["query_id"].tolist()
    row, query_vecs = vectors.queries(query_ids)
    query_vecs = np.ascontiguousarray(query_vecs[[row[q] for q in query_ids]], dtype=np.float32)
    lap("encode")
    doc_row = {d: i for i, d in enumerate(doc_ids)}
    rng = np.random.default_rng(SEED)
    cands = _candidates(doc_ids, doc_vecs, query_ids, query_vecs,
                        np.asarray([doc_row[d] for d in qrels["doc_id"]]), rng)
    del doc_vecs
    spec = rules.RuleSpec()
    cands = rules.apply(spec, cands)
    lap("search and rule")
    stats = {**rules.summarise(cands, spec, query_ids), "precision": encoder.precision, "device": encoder.device}
    store.save_run({"run_id": RUN_ID, "dataset": DATASET, "split": "train", "model_fingerprint": encoder.fingerprint,
                    "signal_set": signal_set(),  # scored by today's signals: the app does not rescore it
                    "params": {"depth": DEPTH, "bm25_depth": 0, "model_path": str(encoder.path),
                               "query_prompt": None, "document_prompt": None, "rules": spec.to_dict()},
                    "stats": stats}, cands)
    run_stats.run_shape(store, RUN_ID)  # stored with the run, as `mine` does
    lap("save run")
    store.close()
    encoder.cache.conn.close()  # both files are closed before their folder is renamed
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    info = {"size": size, "queries": len(query_ids), "documents": len(doc_ids), "signal_set": signal_set(),
            "build_seconds": round(time.perf_counter() - started, 1), "stages": seconds,
            "disk_mib": round(disk_bytes(out) / 2**20)}
    (out / "build.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def ensure(size: int) -> dict:
    """The built workspace's facts (building it first when it is missing)."""
    done = workspace_dir(size) / "build.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    from benchmarks.static_model import DEFAULT_OUT
    from benchmarks.static_model import build as build_model

    model = DEFAULT_OUT if (DEFAULT_OUT / "modules.json").exists() else build_model()
    return build(size, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="+", help="candidates (queries × 100)")
    for size in parser.parse_args().sizes:
        print(json.dumps(ensure(size)), flush=True)


if __name__ == "__main__":
    main()
