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

    NEGSPACE_EMBEDDINGS=benchmarks/.cache/embeddings python benchmarks/bench_train.py
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
from core.evaluate import METRICS, collection_from_beir, compare, default_cache_dir, evaluate  # noqa: E402
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
    return labels.import_tsv(store, dataset, path, annotator) if pairs else 0


def _train_and_evaluate(store, run_id: str, data: str, out: Path, collection,
                        training: dict) -> tuple[dict, object]:
    manifest = train(store, run_id, out, TrainOptions(data=data, **training))
    started = time.perf_counter()
    result = evaluate(str(out), collection, cache_dir=default_cache_dir())
    return {**manifest, "eval_seconds": round(time.perf_counter() - started, 1)}, result


def _report(name: str, evaluations: dict[str, object], manifests: dict[str, dict]) -> dict:
    rows, out = [], {"models": {}, "comparisons": {}}
    for model, result in evaluations.items():
        means = result.means()
        manifest = manifests.get(model, {})
        out["models"][model] = {**means, "queries": result.queries, "train_seconds": manifest.get("seconds"),
                                "steps": manifest.get("steps"), "rows": manifest.get("rows"),
                                "masked_false_negatives": manifest.get("masked_false_negatives"),
                                "leakage": manifest.get("leakage"), "eval_seconds": manifest.get("eval_seconds")}
        rows.append({"model": model, **{m: f"{v:.4f}" for m, v in means.items()},
                     "train s": manifest.get("seconds", "")})
    pairs = [("base", "raw"), ("base", "curated"), ("raw", "curated")]
    for a, b in pairs:
        out["comparisons"][f"{b}_vs_{a}"] = {m: compare(evaluations[a], evaluations[b], m, seed=SEED).to_dict()
                                             for m in METRICS}
    print(f"\n== {name}")
    print_table(rows, ["model", *METRICS, "train s"])
    for key, by_metric in out["comparisons"].items():
        c = by_metric["ndcg@10"]
        print(f"{key}: ΔnDCG@10 {c['delta']:+.4f} (95% CI {c['ci95'][0]:+.4f} … {c['ci95'][1]:+.4f})  "
              f"wins/losses/ties {c['wins']}/{c['losses']}/{c['ties']}  "
              f"p(t) {c['p_ttest']:.3g}  p(rand) {c['p_randomization']:.3g}")
    return out


def _risk_ranked(store, workspace, run_id: str) -> pd.DataFrame:
    """Kept candidates riskiest first (a derived run may not carry risk yet: compute it then)."""
    cands = store.candidates(run_id)
    if cands["risk"].isna().all():
        from core.risk import compute_risk

        compute_risk(store, workspace, run_id)
        cands = store.candidates(run_id)
    kept = cands[cands["kept"]]
    return kept.sort_values(["risk", "score"], ascending=False)


def scifact_study(root: Path) -> dict:
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
    evaluations = {"base": evaluate("default", collection, cache_dir=default_cache_dir())}
    manifests = {}
    for arm, run_id in (("raw", raw.run_id), ("curated", curated.run_id)):
        manifests[arm], evaluations[arm] = _train_and_evaluate(store, run_id, arm, root / f"scifact-{arm}",
                                                               collection, TRAINING)
    report = _report("SciFact: base vs raw top-5 vs automatically curated (percpos + risk drop)", evaluations,
                     manifests)
    report["setup"] = {"raw": f"top-{NEGATIVES} of depth {DEPTH}", "curated": f"percpos (0.95·s_P) then top "
                       f"{NEGATIVES}; its {len(dropped)} riskiest kept candidates ({RISK_DROP_SHARE:.0%}) judged "
                       f"false_negative and replaced by the next eligible ones (skip_judged)",
                       "risk_source": "core.risk.compute_risk", "raw_kept": raw.kept, "percpos_kept": percpos.kept,
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


def cranfield_study(root: Path) -> dict:
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
    evaluations = {"base": evaluate("default", collection, cache_dir=default_cache_dir())}
    manifests = {}
    for arm in ("raw", "curated"):
        manifests[arm], evaluations[arm] = _train_and_evaluate(store, run.run_id, arm, root / f"cranfield-{arm}",
                                                               collection, CRANFIELD_TRAINING)
    report = _report("Cranfield oracle: raw vs curated (every mined hidden positive judged false negative)",
                     evaluations, manifests)
    report["setup"] = {"train_queries": run.queries, "kept": run.kept, "training": CRANFIELD_TRAINING,
                       "hidden_positives_among_candidates": len(hidden),
                       "hidden_positives_among_kept_negatives": int(kept_hidden), "mining_seconds": mining_seconds}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", choices=["all", "scifact", "cranfield"], default="all")
    args = parser.parse_args()
    # a single study replaces only its own entry; each study records the training settings it ran with
    previous = RESULTS / "train.json"
    studies = json.loads(previous.read_text(encoding="utf-8"))["studies"] if previous.exists() else {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        if args.study in ("all", "scifact"):
            studies["scifact"] = scifact_study(Path(tmp))
        if args.study in ("all", "cranfield"):
            studies["cranfield"] = cranfield_study(Path(tmp))
    print(f"\nwrote {write_result('train', {'depth': DEPTH, 'negatives': NEGATIVES, 'studies': studies})}")


if __name__ == "__main__":
    main()
