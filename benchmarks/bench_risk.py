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

``--teacher`` measures a cross-encoder teacher instead (issue 15; results/risk_ce.json): RocketQA's teacher
(core.train_reranker) is trained on the cranfield *train* split, its negatives sampled from a depth-30 mined run of
that split, then cranfield test and dbpedia_entity are simulated as above at depth 30 (cross-encoder scoring costs a
forward pass per pair on the CPU), the teacher scores every candidate (core.cross_encoder.score_run), risk is scored
again, and the queue is ranked by the teacher alone, by the combined risk without and with its ``ce_score`` signal,
and by the dense score; no verdict feedback. The ``ce_score`` weight is the hand-set default of core/risk.py; as a
cross-check, the CE weight (with a scale on the risk logit without it) is fitted on the *other* reported dataset.

    python benchmarks/bench_risk.py --teacher [--cross-encoder DIR] [--teacher-steps N]
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

from benchmarks.common import write_result  # noqa: E402
from core import risk  # noqa: E402
from core.cross_encoder import score_run  # noqa: E402
from core.datasets import ingest, load_beir  # noqa: E402
from core.mining import mine  # noqa: E402
from core.rules import PercPos, RuleSpec  # noqa: E402
from core.train_reranker import RerankerOptions, train_reranker  # noqa: E402
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
TEACHER_DEPTH = 30  # candidates per query in the teacher's simulation (and the run its negatives come from)
TEACHER = ROOT / "benchmarks" / ".cache" / "reranker-cranfield-train"
# 1,280 of the 2,156 pairs seen once: what two shared CPU cores trained in 27 minutes (see docs/BENCHMARKS.md)
TEACHER_OPTIONS = RerankerOptions(split="train", negatives=1, batch_size=16, max_steps=80, max_length=128, seed=0,
                                  device="cpu")


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


def simulate(dataset: str, split: str, root: Path, depth: int = DEPTH) -> Simulation:
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
    result = mine(store, ws, dataset, split, depth=depth, spec=RuleSpec("top"))
    risk.compute_risk(store, ws, result.run_id)
    return Simulation(dataset, split, scored_frame(store, result.run_id, hidden), len(hidden), result.queries, store,
                      ws, result.run_id)


def scored_frame(store: Store, run_id: str, hidden: set[tuple[str, str]]) -> pd.DataFrame:
    """The run's candidates with their stored signals as columns and ``hidden`` marked."""
    cands = store.candidates(run_id)
    signals = risk.stored_signals(cands)
    frame = pd.concat([cands.drop(columns=["signals", *signals.columns.intersection(cands.columns)]), signals],
                      axis=1)
    frame["hidden"] = [pair in hidden for pair in zip(frame["query_id"], frame["doc_id"])]
    return frame


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


def train_teacher(root: Path, out: Path, steps: int) -> dict:
    """RocketQA's teacher on cranfield train (every train qrel a positive, one negative per positive sampled from the
    query's depth-30 candidates), or the manifest of the one trained before into ``out``."""
    if (out / "manifest.json").exists():
        return json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    ws = open_workspace(root / "teacher")
    store = ws.store()
    ingest(store, DATASETS / "cranfield", "cranfield")
    run = mine(store, ws, "cranfield", "train", depth=TEACHER_DEPTH, spec=RuleSpec("top")).run_id
    options = RerankerOptions(**{**TEACHER_OPTIONS.__dict__, "run": run, "max_steps": steps})
    return train_reranker(store, "cranfield", out, options)


def with_teacher(sim: Simulation, teacher: Path) -> dict:
    """Score the run's candidates and positives with the teacher, score risk again (now with ``ce_score``), and
    refresh the simulation's frame; returns what scoring took."""
    scored = score_run(sim.store, sim.workspace, sim.run_id, teacher, device="cpu")
    started = time.perf_counter()
    risk.compute_risk(sim.store, sim.workspace, sim.run_id)
    hidden = set(zip(sim.candidates.loc[sim.candidates["hidden"], "query_id"],
                     sim.candidates.loc[sim.candidates["hidden"], "doc_id"]))
    sim.candidates = scored_frame(sim.store, sim.run_id, hidden)
    return {"pairs_scored": scored.scored, "scoring_seconds": scored.seconds,
            "pairs_per_second": round(scored.scored / max(scored.seconds, 1e-9), 2),
            "risk_seconds": round(time.perf_counter() - started, 1)}


def without_teacher(model: risk.RiskModel) -> risk.RiskModel:
    """The same model with the ``ce_score`` weight at 0: the combined risk as it was before a teacher."""
    return risk.RiskModel({**model.weights, "ce_score": 0.0}, model.mean, model.scale, model.intercept,
                          f"{model.source}, ce_score weight 0")


def _logit(model: risk.RiskModel, frame: pd.DataFrame) -> np.ndarray:
    return model.intercept + model.contributions(frame).sum(axis=1).to_numpy()


def fit_teacher_weight(sim: Simulation) -> tuple[float, float, float]:
    """(intercept, scale of the risk logit without the teacher, ce_score weight) fitted on ``sim``'s hidden labels:
    how much the teacher should count next to the other signals, learnt on a dataset other than the one reported."""
    from sklearn.linear_model import LogisticRegression

    frame = sim.candidates
    x = np.column_stack([_logit(without_teacher(risk.default_model()), frame), frame["ce_score"].to_numpy()])
    fitted = LogisticRegression(C=1.0, max_iter=1000).fit(x, frame["hidden"].to_numpy(dtype=int))
    return float(fitted.intercept_[0]), float(fitted.coef_[0][0]), float(fitted.coef_[0][1])


def teacher_report(sim: Simulation, cross_fit: tuple[float, float, float], other: str, cost: dict) -> dict:
    frame = sim.candidates
    hidden = frame["hidden"].to_numpy()
    default = risk.default_model()
    intercept, scale, weight = cross_fit
    rankings_ = {
        "dense score": frame["score"].to_numpy(),
        "cross-encoder alone": frame["ce_score"].to_numpy(),
        "combined risk without the CE signal": without_teacher(default).predict(frame),
        f"combined risk with the CE signal (hand-set weight {default.weights['ce_score']:g})": default.predict(frame),
        f"combined risk with the CE signal, weight fitted on {other}":
            intercept + scale * _logit(without_teacher(default), frame) + weight * frame["ce_score"].to_numpy(),
    }
    return {"dataset": sim.name, "split": sim.split, "queries": sim.queries, "candidates": len(frame),
            "hidden_positives": sim.hidden_total, "hidden_in_candidates": int(hidden.sum()),
            "weights": f"defaults (fitted on cranfield train; ce_score hand-set); cross-fit on {other}: intercept "
                       f"{intercept:.3f}, risk-logit scale {scale:.3f}, ce_score weight {weight:.3f}",
            "teacher_cost": cost, "rankings": {name: measure(scores, hidden) for name, scores in rankings_.items()},
            "percpos_rule": percpos_operating_point(frame)}


def teacher_main(cross_encoder: Path | None, steps: int) -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = cross_encoder or TEACHER
        manifest = (json.loads((teacher / "manifest.json").read_text(encoding="utf-8"))
                    if cross_encoder else train_teacher(root, TEACHER, steps))
        sims = [simulate("cranfield", "test", root, TEACHER_DEPTH), simulate("dbpedia_entity", "test", root,
                                                                              TEACHER_DEPTH)]
        costs = [with_teacher(sim, teacher) for sim in sims]
        fits = [fit_teacher_weight(sim) for sim in sims]
        results = [teacher_report(sims[0], fits[1], "dbpedia_entity", costs[0]),
                   teacher_report(sims[1], fits[0], "cranfield test", costs[1])]
    command = "python benchmarks/bench_risk.py --teacher" + (f" --cross-encoder {cross_encoder}" if cross_encoder
                                                              else f" --teacher-steps {steps}")
    path = write_result("risk_ce", {"command": command, "depth": TEACHER_DEPTH, "teacher": str(teacher),
                                    "teacher_manifest": manifest, "default_model": risk.default_model().to_dict(),
                                    "results": results, "seconds": round(time.perf_counter() - started, 1)})
    print(markdown(results))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit-defaults", action="store_true",
                        help="fit on the cranfield train simulation and print weights for core/risk.py")
    parser.add_argument("--teacher", action="store_true",
                        help="measure a cross-encoder teacher (results/risk_ce.json) instead")
    parser.add_argument("--cross-encoder", type=Path, help="--teacher: this cross-encoder instead of training one "
                                                           f"on cranfield train into {TEACHER}")
    parser.add_argument("--teacher-steps", type=int, default=TEACHER_OPTIONS.max_steps,
                        help="--teacher: optimizer steps when training the teacher")
    args = parser.parse_args()
    if args.teacher:
        teacher_main(args.cross_encoder, args.teacher_steps)
        return
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
