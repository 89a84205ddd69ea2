"""Server-side latency of the Review page and of a verdict write on a run of 100,000 candidates.

A synthetic workspace (1,000 queries × 100 candidates, 20,000 short documents) is written straight through the
store; the vectors the timed steps read are encoded first, as mining would have cached them; then the real app.py
runs under Streamlit's AppTest: each timed step is one full script run
(what the server does between a click and the reply). Verdict writes are timed directly through core.labels.

    python3 benchmarks/bench_latency.py        # writes benchmarks/results/latency.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, write_result  # noqa: E402
from core import labels  # noqa: E402
from core.workspace import open_workspace  # noqa: E402
from tests.app_helpers import open_app, timed  # noqa: E402

QUERIES, DEPTH, DOCS, REPEATS = 1_000, 100, 20_000, 40


def build(root: Path) -> tuple:
    ws = open_workspace(root)
    store = ws.store()
    rng = np.random.default_rng(0)
    words = np.array("heat flow slab layer wing shock wave boundary pressure lift drag flutter panel".split())
    docs = [(f"d{i}", f"doc {i}", " ".join(rng.choice(words, 30))) for i in range(DOCS)]
    queries = [(f"q{i}", " ".join(rng.choice(words, 6))) for i in range(QUERIES)]
    qrels = [("train", f"q{i}", f"d{i}", 1) for i in range(QUERIES)]
    store.save_dataset("synthetic", "bench", "beir", "x", docs, queries, qrels)
    parts = []
    for i in range(QUERIES):
        ids = rng.choice(np.arange(QUERIES, DOCS), DEPTH, replace=False)
        scores = np.sort(rng.uniform(0.2, 0.8, DEPTH))[::-1]
        parts.append(pd.DataFrame({"query_id": f"q{i}", "doc_id": [f"d{j}" for j in ids],
                                   "rank": np.arange(1, DEPTH + 1), "score": scores, "pos_score": 0.75,
                                   "bm25": rng.uniform(0, 10, DEPTH), "kept": np.arange(DEPTH) < 5,
                                   "rule": np.where(np.arange(DEPTH) < 5, "kept:top", "unselected:top"),
                                   "risk": rng.uniform(0, 1, DEPTH), "signals": None}))
    cands = pd.concat(parts, ignore_index=True)
    from core.risk import signal_set

    store.save_run({"run_id": "bench-run", "dataset": "synthetic", "split": "train", "model_fingerprint": "none",
                    "signal_set": signal_set(),  # saved already scored, by today's signals: the app won't rescore
                    "params": {"depth": DEPTH, "rules": {"rule": "top", "num_negatives": 5}},
                    "stats": {"queries": QUERIES, "candidates": len(cands), "kept": int(cands.kept.sum()),
                              "short_queries": 0}}, cands)
    return ws, store


def warm_cache(ws, store) -> None:
    """Encode what mining would have left in the cache for the pairs the timed steps judge: every query and the
    candidates of the first queries (verdict propagation reads these vectors; a mined run has them all)."""
    from core.review import run_queries
    from core.vectors import Vectors, run_encoder

    vectors = Vectors(store, "synthetic", run_encoder(ws, store.run("bench-run")))
    cands = store.candidates("bench-run", with_signals=False)
    vectors.queries(cands["query_id"].unique().tolist())
    first = run_queries(store, "bench-run", cands)["query_id"].head(REPEATS + 1).tolist()  # the review's order
    vectors.documents(cands.loc[cands["query_id"].isin(first), "doc_id"].unique().tolist())


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 1)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    ws, store = build(root / "ws")
    warm_cache(ws, store)
    mp = pytest.MonkeyPatch()
    at = open_app(mp, ws.root, "pages/review.py")
    steps: dict[str, list[float]] = {"rerun (no change)": [], "next candidate (j)": [], "verdict click (f)": [],
                                      "next query (n)": []}
    for _ in range(REPEATS):
        steps["rerun (no change)"].append(timed(at))
        at.button(key="ns_next_cand").click()
        steps["next candidate (j)"].append(timed(at))
        at.button(key="ns_false_negative").click()
        steps["verdict click (f)"].append(timed(at))
        at.button(key="ns_next_query").click()
        steps["next query (n)"].append(timed(at))
    writes = []
    for i in range(500):
        started = time.perf_counter()
        labels.record(store, "synthetic", f"q{i}", f"d{QUERIES + i}", "bench", "true_negative")
        writes.append(time.perf_counter() - started)
    rows = [{"step": k, "p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "max_ms": pct(v, 100), "n": len(v)}
            for k, v in steps.items()]
    rows.append({"step": "verdict write (core.labels.record)", "p50_ms": pct(writes, 50), "p95_ms": pct(writes, 95),
                 "max_ms": pct(writes, 100), "n": len(writes)})
    print(f"run: {store.count('candidates')} candidates, {QUERIES} queries")
    print_table(rows, ["step", "p50_ms", "p95_ms", "max_ms", "n"])
    write_result("latency", {"candidates": store.count("candidates"), "queries": QUERIES, "rows": rows,
                             "targets_ms": {"rerun_p95": 300, "write_p95": 20}})
    mp.undo()


if __name__ == "__main__":
    main()
