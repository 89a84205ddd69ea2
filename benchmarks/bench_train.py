"""Does curating negatives make a better retriever? Two training studies, each in one run with fixed seeds.

1. SciFact: the bundled all-MiniLM-L6-v2 (base) vs the same model fine-tuned on raw top-5 negatives vs fine-tuned on
   automatically curated negatives, evaluated on the SciFact test split. Raw = depth-100 mining, top-5 rule.
   Curated (automatic, no human) = the percpos rule (keep s < 0.95·s_P) then top 5; the kept candidates with the
   highest false-negative risk (core/risk.py) are recorded as false_negative verdicts of an "auto-risk"
   annotator, and the rule is re-applied with ``skip_judged`` so each query is refilled to 5 from its next
   eligible candidates; the flagged documents are masked as in-batch negatives as well.
2. Cranfield oracle annotator: hide all but one positive per training query (highest grade, ties by smallest
   id), mine top-5 of depth 100, let a simulated reviewer mark as false_negative every mined candidate (all 100)
   that the full qrels judge relevant, then train on raw vs curated data of that same run and evaluate on the
   (untouched) test split.

Both arms of a study train with the same seed, steps, batch, learning rate and token length on n-tuple rows (one
row per query and positive with all its negatives), so they see the same queries in the same batches and only the
negatives differ.
Every model is evaluated by core.evaluate (same encoder, cache and FAISS path as mining); significance is a paired
two-sided t-test and a sign-flip randomization test over per-query nDCG@10.

Each arm can be trained with several seeds (``--seeds 0 1 2``): its per-query scores are then averaged over the
seeds before the paired tests, and every seed is also reported on its own.

    NEGSPACE_EMBEDDINGS=benchmarks/.cache/embeddings python benchmarks/bench_train.py [--study scifact] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NEGSPACE_EMBEDDINGS", str(ROOT / "benchmarks" / ".cache" / "embeddings"))

import pandas as pd  # noqa: E402

from benchmarks.common import RESULTS, SHARED, print_table, write_result  # noqa: E402
from core import labels  # noqa: E402
from core.datasets import ingest, load_beir  # noqa: E402
from core.evaluate import METRICS, Evaluation, collection_from_beir, compare, default_cache_dir, evaluate  # noqa: E402
from core.mining import derive_run, mine  # noqa: E402
from core.rules import RuleSpec  # noqa: E402
from core.train import TrainOptions, train  # noqa: E402
from core.workspace import open_workspace  # noqa: E402

SEED = 0
DEPTH = 100
NEGATIVES = 5
RISK_DROP_SHARE = 0.10  # SciFact curated: drop this share of percpos-kept candidates, highest risk first
# One epoch of n-tuple rows; a SciFact step (32 queries × 7 texts at 128 tokens) takes ≈ 35 s on 2 CPU cores.
TRAINING = {"row_layout": "ntuple", "batch_size": 32, "epochs": 1.0, "max_seq_length": 128,
            "learning_rate": 5e-5, "seed": SEED, "precision": "fp32"}
# Cranfield has 150 training queries (5 steps an epoch): 5 epochs give about as many steps as SciFact's one.
CRANFIELD_TRAINING = {**TRAINING, "epochs": 5.0}


def _verdicts(store, dataset: str, pairs: list[tuple[str, str]], annotator: str, folder: Path) -> int:
    """Record false_negative verdicts through the product's TSV import (one transaction)."""
    path = folder / f"{annotator}.tsv"
    path.write_text("query-id\tcorpus-id\tlabel\n" + "".join(f"{q}\t{d}\tfalse_negative\n" for q, d in pairs),
                    encoding="utf-8")
    return labels.import_tsv(store, dataset, path, annotator).added if pairs else 0


def _train_arms(store, runs: dict[str, str], root: Path, collection, training: dict,
                seeds: list[int]) -> tuple[dict[str, Evaluation], dict[str, list[dict]], dict[str, dict]]:
    """Train and evaluate every arm once per seed. An arm's evaluation is its per-query scores averaged over the
    seeds, so the paired tests compare seed-averaged models query by query; each seed is also compared alone."""
    per_seed: dict[int, dict[str, Evaluation]] = {}
    manifests: dict[str, list[dict]] = {arm: [] for arm in runs}
    for seed in seeds:
        per_seed[seed] = {}
        for arm, run_id in runs.items():
            out = root / f"{collection.name}-{arm}-s{seed}"
            manifest = train(store, run_id, out, TrainOptions(data=arm, **{**training, "seed": seed}))
            started = time.perf_counter()
            per_seed[seed][arm] = evaluate(str(out), collection, cache_dir=default_cache_dir())
            manifests[arm].append({**manifest, "eval_seconds": round(time.perf_counter() - started, 1)})
            shutil.rmtree(out)
    pooled = {arm: Evaluation(arm, collection.name, collection.split,
                              sum(per_seed[seed][arm].per_query for seed in seeds) / len(seeds)) for arm in runs}
    seeds_report = {str(seed): {"means": {arm: e.means() for arm, e in per_seed[seed].items()},
                                "curated_vs_raw": compare(per_seed[seed]["raw"], per_seed[seed]["curated"],
                                                          "ndcg@10", seed=SEED).to_dict()} for seed in seeds}
    return pooled, manifests, seeds_report


def _report(name: str, evaluations: dict[str, Evaluation], manifests: dict[str, list[dict]],
            seeds_report: dict[str, dict]) -> dict:
    rows, out = [], {"models": {}, "comparisons": {}, "seeds": seeds_report}
    for model, result in evaluations.items():
        means = result.means()
        runs = manifests.get(model, [])
        first = runs[0] if runs else {}
        seconds = round(sum(m["seconds"] for m in runs) / len(runs), 1) if runs else None
        out["models"][model] = {**means, "queries": result.queries, "train_seconds": seconds,
                                "steps": first.get("steps"), "rows": first.get("rows"),
                                "masked_false_negatives": first.get("masked_false_negatives"),
                                "leakage": first.get("leakage"), "eval_seconds": first.get("eval_seconds")}
        rows.append({"model": model, **{m: f"{v:.4f}" for m, v in means.items()}, "train s": seconds or ""})
    pairs = [("base", "raw"), ("base", "curated"), ("raw", "curated")]
    for a, b in pairs:
        out["comparisons"][f"{b}_vs_{a}"] = {m: compare(evaluations[a], evaluations[b], m, seed=SEED).to_dict()
                                             for m in METRICS}
    print(f"\n== {name} (seeds {', '.join(seeds_report)}; trained arms averaged over seeds per query)")
    print_table(rows, ["model", *METRICS, "train s"])
    for key, by_metric in out["comparisons"].items():
        c = by_metric["ndcg@10"]
        print(f"{key}: ΔnDCG@10 {c['delta']:+.4f} (95% CI {c['ci95'][0]:+.4f} … {c['ci95'][1]:+.4f})  "
              f"wins/losses/ties {c['wins']}/{c['losses']}/{c['ties']}  "
              f"p(t) {c['p_ttest']:.3g}  p(rand) {c['p_randomization']:.3g}")
    for seed, report in seeds_report.items():
        c = report["curated_vs_raw"]
        print(f"  seed {seed}: raw {report['means']['raw']['ndcg@10']:.4f}  curated "
              f"{report['means']['curated']['ndcg@10']:.4f}  Δ {c['delta']:+.4f}  p(t) {c['p_ttest']:.3g}")
    return out


def _risk_ranked(store, workspace, run_id: str) -> pd.DataFrame:
    """Kept candidates riskiest first, risk scored the way the app does on a run's first review."""
    from core.risk import ensure_risk

    ensure_risk(store, workspace, run_id)
    cands = store.candidates(run_id)
    kept = cands[cands["kept"]]
    return kept.sort_values(["risk", "score"], ascending=False)


def scifact_study(root: Path, seeds: list[int]) -> dict:
    ws = open_workspace(root / "scifact-ws")
    store = ws.store()
    ingest(store, SHARED / "scifact", "scifact")
    started = time.perf_counter()
    raw = mine(store, ws, "scifact", "train", depth=DEPTH, spec=RuleSpec("top", num_negatives=NEGATIVES))
    percpos = derive_run(store, raw.run_id, RuleSpec("percpos", num_negatives=NEGATIVES))
    ranked = _risk_ranked(store, ws, percpos.run_id)
    dropped = ranked.head(int(round(RISK_DROP_SHARE * len(ranked))))
    _verdicts(store, "scifact", list(zip(dropped["query_id"], dropped["doc_id"])), "auto-risk", root)
    curated = derive_run(store, percpos.run_id, RuleSpec("percpos", num_negatives=NEGATIVES, skip_judged=True))
    mining_seconds = round(time.perf_counter() - started, 1)
    collection = collection_from_beir(SHARED / "scifact", "test")
    base = evaluate("default", collection, cache_dir=default_cache_dir())
    arms, manifests, seeds_report = _train_arms(store, {"raw": raw.run_id, "curated": curated.run_id}, root,
                                                collection, TRAINING, seeds)
    report = _report("SciFact: base vs raw top-5 vs automatically curated (percpos + risk drop)",
                     {"base": base, **arms}, manifests, seeds_report)
    report["setup"] = {"raw": f"top-{NEGATIVES} of depth {DEPTH}", "curated": f"percpos (0.95·s_P) then top "
                       f"{NEGATIVES}; its {len(dropped)} riskiest kept candidates ({RISK_DROP_SHARE:.0%}) judged "
                       f"false_negative and replaced by the next eligible ones (skip_judged)",
                       "risk_source": "core.risk.ensure_risk", "raw_kept": raw.kept, "percpos_kept": percpos.kept,
                       "curated_kept": curated.kept, "risk_dropped": len(dropped), "mining_seconds": mining_seconds,
                       "training": TRAINING}
    return report


def _one_positive_folder(source: Path, target: Path) -> dict[str, dict[str, int]]:
    """A copy of a BEIR folder whose train qrels keep one positive per query; returns the full train qrels."""
    content = load_beir(source)
    target.mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        shutil.copy(source / name, target / name)
    (target / "qrels").mkdir()
    shutil.copy(source / "qrels" / "test.tsv", target / "qrels" / "test.tsv")
    full: dict[str, dict[str, int]] = {}
    for split, query_id, doc_id, score in content.qrels:
        if split == "train":
            full.setdefault(query_id, {})[doc_id] = score
    lines = ["query-id\tcorpus-id\tscore"]
    for query_id, docs in sorted(full.items()):
        positives = [(-s, d) for d, s in docs.items() if s > 0]
        if positives:
            score, doc_id = min(positives)
            lines.append(f"{query_id}\t{doc_id}\t{-score}")
    (target / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return full


def cranfield_study(root: Path, seeds: list[int]) -> dict:
    full = _one_positive_folder(SHARED / "cranfield", root / "cranfield-one-positive")
    ws = open_workspace(root / "cranfield-ws")
    store = ws.store()
    ingest(store, root / "cranfield-one-positive", "cranfield")
    started = time.perf_counter()
    run = mine(store, ws, "cranfield", "train", depth=DEPTH, spec=RuleSpec("top", num_negatives=NEGATIVES))
    cands = store.candidates(run.run_id)
    hidden = [(q, d) for q, d in zip(cands["query_id"], cands["doc_id"]) if full.get(q, {}).get(d, 0) > 0]
    kept_hidden = sum(full.get(q, {}).get(d, 0) > 0 for q, d in
                      zip(cands.loc[cands["kept"], "query_id"], cands.loc[cands["kept"], "doc_id"]))
    _verdicts(store, "cranfield", hidden, "oracle", root)
    mining_seconds = round(time.perf_counter() - started, 1)
    collection = collection_from_beir(SHARED / "cranfield", "test")
    base = evaluate("default", collection, cache_dir=default_cache_dir())
    arms, manifests, seeds_report = _train_arms(store, {"raw": run.run_id, "curated": run.run_id}, root,
                                                collection, CRANFIELD_TRAINING, seeds)
    report = _report("Cranfield oracle: raw vs curated (every mined hidden positive judged false negative)",
                     {"base": base, **arms}, manifests, seeds_report)
    report["setup"] = {"train_queries": run.queries, "kept": run.kept, "training": CRANFIELD_TRAINING,
                       "hidden_positives_among_candidates": len(hidden),
                       "hidden_positives_among_kept_negatives": int(kept_hidden), "mining_seconds": mining_seconds}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", choices=["all", "scifact", "cranfield"], default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[SEED],
                        help="training seeds; each arm is trained once per seed (mining is deterministic)")
    args = parser.parse_args()
    # a single study replaces only its own entry; each study records the training settings it ran with
    previous = RESULTS / "train.json"
    studies = json.loads(previous.read_text(encoding="utf-8"))["studies"] if previous.exists() else {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        if args.study in ("all", "scifact"):
            studies["scifact"] = scifact_study(Path(tmp), args.seeds)
        if args.study in ("all", "cranfield"):
            studies["cranfield"] = cranfield_study(Path(tmp), args.seeds)
    print(f"\nwrote {write_result('train', {'depth': DEPTH, 'negatives': NEGATIVES, 'studies': studies})}")


if __name__ == "__main__":
    main()
