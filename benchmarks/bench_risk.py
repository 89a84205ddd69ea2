"""Does the risk score find unlabelled positives? A simulation on datasets with dense judgments.

For each query keep one positive (highest grade, ties by smallest id) and hide the others; mine depth-100
candidates with the bundled model through core.mining (then risk is scored once, as on the
run's first review in the product); then
rank all candidates of all queries by each method and measure how early the hidden positives come:
average precision, recall after reviewing 10 % / 20 % of the candidates, precision of the top 100.

Rankings: the raw dense score; percpos as a rule (candidates ordered by (s − s_P)/|s_P|, so the ones percpos at
95 % would drop come first); BM25 alone (normalised per query by its best candidate); the combined risk as first
scored; and the triage queue as the product runs it: a simulated reviewer judges the riskiest unjudged
candidates in batches of 2 % of the run (verdicts = the hidden labels of exactly those candidates), risk is
recomputed after each batch (verdict signals, and refitted weights once 30 of each class exist), up to half the
run; the rest follows in the last risk order. No candidate's position depends on its own hidden label.

The default risk weights are fitted on the cranfield *train* split (``--fit-defaults`` prints them for
core/risk.py); results are reported on cranfield *test* and dbpedia_entity, which the weights never saw, plus a
cross-check with weights fitted on dbpedia_entity applied to cranfield test.

    NEGSPACE_EMBEDDINGS=benchmarks/.cache/embeddings python benchmarks/bench_risk.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NEGSPACE_EMBEDDINGS", str(ROOT / "benchmarks" / ".cache" / "embeddings"))

from core import risk  # noqa: E402
from core.datasets import load_beir  # noqa: E402
from core.mining import mine  # noqa: E402
from core.rules import PercPos, RuleSpec  # noqa: E402
from core.triage import triage_queue  # noqa: E402
from core.store import Store  # noqa: E402
from core.workspace import Workspace, open_workspace  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
DEPTH = 100
BUDGETS = (0.10, 0.20)
FEEDBACK_BATCH = 0.02  # share of the run judged between two risk recomputations
FEEDBACK_UNTIL = 0.5  # share of the run the simulated reviewer judges
TOP = 100
RESULTS = ROOT / "benchmarks" / "results" / "risk.json"


@dataclass
class Simulation:
    name: str
    split: str
    candidates: pd.DataFrame  # the run's candidates, one column per signal, and `hidden` (bool)
    hidden_total: int  # hidden positives, retrieved or not
    queries: int
    store: Store
    workspace: Workspace
    run_id: str


def simulate(dataset: str, split: str, root: Path) -> Simulation:
    """Import the dataset with one positive per query, mine it, and mark the hidden positives among candidates."""
    folder = DATASETS / dataset
    content = load_beir(folder)
    qrels = pd.DataFrame(content.qrels, columns=["split", "query_id", "doc_id", "score"])
    qrels = qrels[(qrels["split"] == split) & (qrels["score"] > 0)]
    qrels = qrels.sort_values(["query_id", "score", "doc_id"], ascending=[True, False, True])
    kept = qrels.drop_duplicates("query_id")
    hidden = set(zip(qrels["query_id"], qrels["doc_id"])) - set(zip(kept["query_id"], kept["doc_id"]))
    ws = open_workspace(root / f"{dataset}-{split}")
    store = ws.store()
    store.save_dataset(dataset, str(folder), "beir", f"simulation:{split}", content.documents, content.queries,
                       kept[["split", "query_id", "doc_id", "score"]].itertuples(index=False, name=None))
    result = mine(store, ws, dataset, split, depth=DEPTH, spec=RuleSpec("top"))
    risk.compute_risk(store, ws, result.run_id)
    cands = store.candidates(result.run_id)
    signals = risk.stored_signals(cands)
    frame = pd.concat([cands.drop(columns=["signals", *signals.columns.intersection(cands.columns)]), signals],
                      axis=1)
    frame["hidden"] = [pair in hidden for pair in zip(frame["query_id"], frame["doc_id"])]
    return Simulation(dataset, split, frame, len(hidden), result.queries, store, ws, result.run_id)


def feedback_queue(sim: Simulation) -> np.ndarray:
    """Review order of the triage queue with verdicts fed back (see the module docstring), as a score per row."""
    frame = sim.candidates
    hidden = set(zip(frame.loc[frame["hidden"], "query_id"], frame.loc[frame["hidden"], "doc_id"]))
    batch = max(1, int(FEEDBACK_BATCH * len(frame)))
    order: list[tuple[str, str]] = []
    while len(order) < FEEDBACK_UNTIL * len(frame):
        queue = triage_queue(sim.store, sim.run_id, "simulated reviewer", limit=batch)
        pairs = list(zip(queue["query_id"], queue["doc_id"]))
        sim.store.add_events([{"dataset": sim.name, "query_id": q, "doc_id": d, "annotator": "simulated reviewer",
                               "label": "false_negative" if (q, d) in hidden else "true_negative"}
                              for q, d in pairs])
        order += pairs
        risk.compute_risk(sim.store, sim.workspace, sim.run_id)
    order += list(zip(*triage_queue(sim.store, sim.run_id, "simulated reviewer", limit=len(frame))[
        ["query_id", "doc_id"]].to_numpy().T))
    position = {pair: i for i, pair in enumerate(order)}
    return -np.array([position[pair] for pair in zip(frame["query_id"], frame["doc_id"])], dtype=float)


def rankings(frame: pd.DataFrame, models: dict[str, risk.RiskModel]) -> dict[str, np.ndarray]:
    """Higher = review earlier."""
    relative = (frame["score"] - frame["pos_score"]) / frame["pos_score"].abs().clip(lower=1e-6)
    out = {"dense score": frame["score"].to_numpy(),
           f"percpos ({1 - PercPos.named_default:.0%}) rule": relative.to_numpy(),
           "BM25 (per-query max)": frame["bm25_norm"].to_numpy()}
    for label, model in models.items():
        out[label] = model.predict(frame)
    return out


def measure(scores: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    order = np.argsort(-scores, kind="stable")
    found = np.cumsum(hidden[order])
    total = int(hidden.sum())
    out = {"ap": float(average_precision_score(hidden, scores))}
    for budget in BUDGETS:
        out[f"recall@{budget:.0%}"] = float(found[math.ceil(budget * len(scores)) - 1] / total)
    out[f"p@{TOP}"] = float(found[TOP - 1] / TOP)
    return out


def percpos_operating_point(frame: pd.DataFrame) -> dict[str, float]:
    """What the binary percpos rule at 95 % flags: how many candidates, how many hidden positives among them."""
    flagged = frame["score"] >= frame["pos_score"] - frame["pos_score"].abs() * PercPos.named_default
    hits = int((flagged & frame["hidden"]).sum())
    return {"flagged": int(flagged.sum()), "flagged_share": float(flagged.mean()),
            "precision": hits / max(int(flagged.sum()), 1), "recall": hits / max(int(frame["hidden"].sum()), 1)}


def fit_on(sim: Simulation) -> risk.RiskModel:
    return risk.fit(sim.candidates, sim.candidates["hidden"].to_numpy(),
                    f"fitted on the {sim.name} {sim.split}-split simulation")


def report(sim: Simulation, models: dict[str, risk.RiskModel], note: str, feedback: bool) -> dict:
    frame = sim.candidates
    hidden = frame["hidden"].to_numpy()
    rows = {name: measure(scores, hidden) for name, scores in rankings(frame, models).items()}
    extra = {}
    if feedback:
        rows["combined risk, triage queue with verdict feedback"] = measure(feedback_queue(sim), hidden)
        extra["feedback_final_model"] = risk.risk_model(sim.store, sim.run_id).source
    return {"dataset": sim.name, "split": sim.split, "queries": sim.queries, "candidates": len(frame),
            "hidden_positives": sim.hidden_total, "hidden_in_candidates": int(hidden.sum()),
            "weights": note, "rankings": rows, "percpos_rule": percpos_operating_point(frame), **extra}


def markdown(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines.append(f"**{res['dataset']} ({res['split']})** — {res['queries']} queries, {res['candidates']} "
                     f"candidates, {res['hidden_in_candidates']} of {res['hidden_positives']} hidden positives "
                     f"among them; risk weights: {res['weights']}.\n")
        lines.append("| ranking | AP | recall @10 % | recall @20 % | P@100 |")
        lines.append("|---|---|---|---|---|")
        for name, m in res["rankings"].items():
            lines.append(f"| {name} | {m['ap']:.3f} | {m['recall@10%']:.3f} | {m['recall@20%']:.3f} | "
                         f"{m['p@100']:.3f} |")
        rule = res["percpos_rule"]
        lines.append(f"\npercpos at 95 % as a cut flags {rule['flagged']} candidates "
                     f"({rule['flagged_share']:.1%}): precision {rule['precision']:.3f}, recall {rule['recall']:.3f}.\n")
    return "\n".join(lines)


def model_literal(model: risk.RiskModel) -> str:
    """The fitted (weight, mean, scale) of each signal, for its declaration in core/risk.py, and the intercept
    (DEFAULT_INTERCEPT); hand-set weights of signals that are constant in the simulation are left as declared."""
    lines = [f"{name}: weight={model.weights[name]:.4g}, mean={model.mean[name]:.4g}, scale={model.scale[name]:.4g}"
             for name in model.weights]
    return "\n".join(lines + [f"DEFAULT_INTERCEPT = {model.intercept:.4g}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit-defaults", action="store_true",
                        help="fit on the cranfield train simulation and print weights for core/risk.py")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cran_train = simulate("cranfield", "train", root)
        if args.fit_defaults:
            print(model_literal(fit_on(cran_train)))
            return
        cran_test = simulate("cranfield", "test", root)
        dbpedia = simulate("dbpedia_entity", "test", root)
        default = {"combined risk": risk.DEFAULT_MODEL}
        cross_check = fit_on(dbpedia)
        results = [
            report(dbpedia, default, "defaults (fitted on cranfield train)", feedback=True),
            report(cran_test, {**default, "combined risk, weights fit on dbpedia (cross-check)": cross_check},
                   "defaults (fitted on cranfield train); cross-check fitted on dbpedia_entity", feedback=True),
            report(cran_train, default, "defaults — in-sample, fitted on this very split", feedback=False),
        ]
    payload = {"command": "NEGSPACE_EMBEDDINGS=benchmarks/.cache/embeddings python benchmarks/bench_risk.py",
               "depth": DEPTH, "default_model": risk.DEFAULT_MODEL.to_dict(), "results": results,
               "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))


if __name__ == "__main__":
    main()
