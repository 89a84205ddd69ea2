"""Retrieval evaluation: nDCG@10, MRR@10, Recall@100 with ir-measures, per query, and paired significance.

Retrieval goes through the same ``Encoder`` (and its on-disk cache), document texts and dense search as mining,
so a model scores here exactly as it ranks candidates there. Metrics are computed by ir-measures (pytrec_eval),
never by hand: nDCG uses the graded qrels as gains (trec_eval's ``ndcg_cut``); MRR and recall count any grade ≥ 1
as relevant. Only queries with at least one positive judgment in the split are evaluated (the BEIR convention).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.encoders import Encoder, load_encoder
from core.errors import UserError
from core.index import encode_and_search
from core.jobs import Job
from core.lookups import document_texts, positive_qrels, require_dataset

if TYPE_CHECKING:
    from core.jobs import StageProgress
    from core.store import Store

DEPTH = 100
METRICS = ("ndcg@10", "mrr@10", "recall@100")

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


def _measures() -> dict:
    from ir_measures import RR, R, nDCG

    return {"ndcg@10": nDCG @ 10, "mrr@10": RR @ 10, "recall@100": R @ 100}


def default_cache_dir() -> Path:
    """Embedding cache for evaluations outside a workspace: $NEGSPACE_EMBEDDINGS, else ~/.cache/negspace.

    Cache keys are content hashes of (model weights, text), so one cache safely serves every corpus and workspace;
    re-evaluating a model on the same corpus then encodes nothing.
    """
    shared = os.environ.get("NEGSPACE_EMBEDDINGS")
    return Path(shared or "~/.cache/negspace/embeddings").expanduser().resolve()


@dataclass
class Collection:
    """What an evaluation needs: the corpus, the queries and the graded judgments of one split."""

    name: str
    split: str
    documents: pd.DataFrame  # doc_id, title, text
    queries: pd.DataFrame  # query_id, text: only queries with a positive judgment in the split
    qrels: Qrels


def _collection(name: str, split: str, documents: pd.DataFrame, queries: pd.DataFrame,
                qrels: pd.DataFrame, splits: list[str]) -> Collection:
    qrels = qrels[qrels["split"] == split]
    judged = {str(q) for q in positive_qrels(qrels)["query_id"]}
    if not judged:
        raise UserError(f"{name}: no positive judgments in split {split!r} (splits: {', '.join(splits)})")
    graded: Qrels = {}
    for query_id, doc_id, score in zip(qrels["query_id"], qrels["doc_id"], qrels["score"]):
        if query_id in judged:
            graded.setdefault(str(query_id), {})[str(doc_id)] = int(score)
    queries = queries[queries["query_id"].isin(judged)].reset_index(drop=True)
    return Collection(name, split, documents.reset_index(drop=True), queries, graded)


def collection_from_beir(folder: str | Path, split: str = "test") -> Collection:
    """A BEIR folder's split, parsed and validated by the same importer as ``ingest``."""
    from core.datasets import load_beir

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (expected a BEIR folder with corpus.jsonl)")
    content = load_beir(folder)
    qrels = pd.DataFrame(content.qrels, columns=["split", "query_id", "doc_id", "score"])
    return _collection(folder.name, split, pd.DataFrame(content.documents, columns=["doc_id", "title", "text"]),
                       pd.DataFrame(content.queries, columns=["query_id", "text"]), qrels,
                       sorted(qrels["split"].unique()))


def collection_from_store(store: Store, dataset: str, split: str = "test") -> Collection:
    """A workspace dataset's split; promoted positives count as judgments (they are the user's corrections)."""
    require_dataset(store, dataset)
    return _collection(dataset, split, store.documents(dataset), store.queries(dataset), store.qrels(dataset, split),
                       store.splits(dataset))


def run_model(encoder: Encoder, collection: Collection, depth: int = DEPTH,
              progress: StageProgress | None = None) -> Run:
    """Top-``depth`` documents per query by cosine score, through mining's dense path (same text, cache, FAISS)."""
    documents, queries = collection.documents, collection.queries
    hits = encode_and_search(encoder, document_texts(documents), queries["text"].tolist(), depth, kind="flat",
                             stage=progress, encode_share=0.9)
    doc_ids = documents["doc_id"].tolist()
    if progress:
        progress("scoring", 1.0)
    return {query_id: {doc_ids[i]: float(s) for s, i in zip(hits.scores[row], hits.ids[row]) if i >= 0}
            for row, query_id in enumerate(queries["query_id"])}


@dataclass
class Evaluation:
    """Mean metrics plus one row per evaluated query (index query_id, one column per metric)."""

    model: str
    collection: str
    split: str
    per_query: pd.DataFrame

    @property
    def queries(self) -> int:
        return len(self.per_query)

    def means(self) -> dict[str, float]:
        return {m: float(self.per_query[m].mean()) for m in METRICS}

    def to_dict(self) -> dict:
        return {**self.means(), "queries": self.queries}


def score(qrels: Qrels, run: Run) -> pd.DataFrame:
    """Per-query ir-measures scores for every judged query; a query the run misses scores 0 (not skipped)."""
    import ir_measures

    measures = _measures()
    names = {str(v): k for k, v in measures.items()}
    rows: dict[str, dict[str, float]] = {q: dict.fromkeys(METRICS, 0.0) for q in qrels}
    for metric in ir_measures.iter_calc(list(measures.values()), qrels, run):
        if metric.query_id in rows:
            rows[metric.query_id][names[str(metric.measure)]] = float(metric.value)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRICS))
    frame.index.name = "query_id"
    return frame.sort_index()


def evaluate_job(store: Store, dataset: str, split: str, models: list[tuple[str, str | None]],
                 cache_dir: Path | None = None, device: str = "auto") -> Job:
    """``evaluate`` of each (label, model) on one split in a background thread; ``Job.result`` maps each label to
    its ``Evaluation``. Encoding a corpus per model takes minutes on a CPU, which a click on the page would
    otherwise stop half-way; vectors already in the embedding cache are not encoded again."""
    def work(stage: StageProgress) -> dict[str, Evaluation]:
        collection = collection_from_store(store, dataset, split)
        results: dict[str, Evaluation] = {}
        for i, (label, model) in enumerate(models):
            def told(message: str, fraction: float, i: int = i, label: str = label) -> None:
                stage(f"{label}: {message}", (i + fraction) / len(models))
            results[label] = evaluate(model, collection, cache_dir, progress=told, device=device)
        return results

    return Job(f"evaluate:{dataset}:{split}", work)


def evaluate(model: str | None, collection: Collection, cache_dir: Path | None = None, precision: str = "auto",
             progress: StageProgress | None = None, device: str = "auto") -> Evaluation:
    """Encode (cached) on ``device``, retrieve the top 100 with FAISS and score one model on one collection
    split."""
    encoder = load_encoder(model, cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
                           precision=precision, device=device)
    try:
        run = run_model(encoder, collection, DEPTH, progress)
    finally:
        encoder.close()
    return Evaluation(str(model or "default"), collection.name, collection.split, score(collection.qrels, run))


@dataclass
class Comparison:
    """Model B against model A on one metric over the same queries (B − A)."""

    metric: str
    mean_a: float
    mean_b: float
    wins: int
    losses: int
    ties: int
    p_ttest: float
    p_randomization: float
    ci_low: float  # 95 % confidence interval of the mean difference (paired t): "not worse" needs its bounds too
    ci_high: float
    per_query: pd.DataFrame  # index query_id; columns a, b, diff

    @property
    def delta(self) -> float:
        return self.mean_b - self.mean_a

    def to_dict(self) -> dict:
        return {"metric": self.metric, "mean_a": self.mean_a, "mean_b": self.mean_b, "delta": self.delta,
                "wins": self.wins, "losses": self.losses, "ties": self.ties, "p_ttest": self.p_ttest,
                "p_randomization": self.p_randomization, "ci95": [self.ci_low, self.ci_high]}


def compare(a: Evaluation, b: Evaluation, metric: str = "ndcg@10", resamples: int = 10_000,
            seed: int = 0) -> Comparison:
    """Paired two-sided tests over per-query scores: Student's t (ranx's default) with the 95 % confidence interval
    of the mean difference and a sign-flip randomization test (Fisher; Smucker et al. 2007 recommend it for IR),
    plus how many queries B wins, loses and ties."""
    from scipy import stats

    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r} (use {', '.join(METRICS)})")
    if set(a.per_query.index) != set(b.per_query.index):
        raise UserError("the two evaluations cover different queries; evaluate both on the same split")
    pair = pd.DataFrame({"a": a.per_query[metric], "b": b.per_query[metric].reindex(a.per_query.index)})
    pair["diff"] = pair["b"] - pair["a"]
    diff = pair["diff"].to_numpy()
    if np.allclose(diff, 0):
        p_t = p_rand = 1.0
        ci = (float(diff.mean()),) * 2
    else:
        test = stats.ttest_rel(pair["b"], pair["a"])
        p_t, ci = float(test.pvalue), tuple(float(x) for x in test.confidence_interval(0.95))
        p_rand = float(stats.permutation_test((pair["b"].to_numpy(), pair["a"].to_numpy()),
                                              lambda x, y: np.mean(x - y), permutation_type="samples",
                                              n_resamples=resamples, alternative="two-sided",
                                              rng=np.random.default_rng(seed)).pvalue)
    eps = 1e-9
    return Comparison(metric, float(pair["a"].mean()), float(pair["b"].mean()), int((diff > eps).sum()),
                      int((diff < -eps).sum()), int((np.abs(diff) <= eps).sum()), p_t, p_rand, *ci, pair)


def comparison_table(evaluations: dict[str, Evaluation], baseline: str, metric: str = "ndcg@10") -> pd.DataFrame:
    """One row per model: its mean metrics, then against ``baseline`` on ``metric``: Δ, per-query wins, losses,
    ties and both p-values (empty for the baseline itself)."""
    rows = []
    for name, result in evaluations.items():
        row = {"model": name, **result.means()}
        if name != baseline:
            c = compare(evaluations[baseline], result, metric)
            row.update({f"Δ {metric}": c.delta, "95% CI": f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]", "wins": c.wins,
                        "losses": c.losses, "ties": c.ties, "p (t-test)": c.p_ttest,
                        "p (randomization)": c.p_randomization})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
