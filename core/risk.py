"""False-negative risk: how likely a mined candidate is an unlabelled positive, from signals a reviewer can read.

Each candidate gets a handful of signals and one score in [0, 1] from a logistic model over
standardised signals. Logistic weights stay transparent: every signal's contribution to the logit can be shown
next to the score. The default weights were fitted once on a simulation (declared with each signal); once a workspace
holds enough verdicts of both kinds on a run's candidates, the weights are refitted from those verdicts instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import labels
from core.cross_encoder import pair_scores
from core.errors import UserError
from core.files import atomic_write_text
from core.jobs import Job, StageProgress, shared_job
from core.lookups import positives_by_query, require_run
from core.vectors import Vectors, run_encoder, tfidf_matrix

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

# A signal is declared once, below, as a small function of a SignalContext with its name, one-line meaning and
# default logistic weight; the UI, the stored JSON, the model and the frame all follow the registry's order.
# "Known positives" of a query are its qrels with score > 0 (imported or promoted) plus documents whose resolved
# verdict for it is false_negative; a candidate's own verdict never enters its own signals.


@dataclass(frozen=True)
class Signal:
    """One false-negative risk signal: ``compute(context)`` returns one value per candidate of the run.

    ``weight``, ``mean`` and ``scale`` are the default model's logistic weight and standardisation for it (until
    a workspace refits them from its own verdicts); ``log_scale`` feeds the model log(value); bump ``version``
    when the computation changes, so runs scored by the old one are scored again.
    """

    name: str
    description: str
    compute: Callable[[SignalContext], np.ndarray | pd.Series]
    weight: float
    mean: float = 0.0
    scale: float = 1.0
    log_scale: bool = False
    version: int = 1


SIGNALS: dict[str, Signal] = {}


def register(signal: Signal) -> Signal:
    """Add (or replace) a signal: every later score, frame, stored JSON and explanation includes it."""
    SIGNALS[signal.name] = signal
    return signal


def signal_set() -> str:
    """A short fingerprint of the registered signals and their versions, stored with every scored run."""
    key = json.dumps([(s.name, s.version) for s in SIGNALS.values()])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


EXPANSION_TOP = 5  # candidates averaged into the expanded query (pseudo-relevance feedback)
PRIOR_VERDICTS = 2.0  # strength of the smoothing prior of query_fn_rate, in verdicts
MIN_VERDICTS_PER_CLASS = 30  # refit from the workspace's own verdicts once both classes have this many
SECOND_MODEL_SETTING = "risk_second_model"


@dataclass(frozen=True)
class RiskModel:
    """Logistic regression over standardised signals: risk = σ(b + Σ wᵢ·(fᵢ − μᵢ)/σᵢ), fᵢ = signal (log for rank)."""

    weights: Mapping[str, float]
    mean: Mapping[str, float]
    scale: Mapping[str, float]
    intercept: float
    source: str

    def contributions(self, signals: pd.DataFrame) -> pd.DataFrame:
        """Each signal's additive share of the logit, one column per signal (rows align with ``signals``)."""
        feats = features(signals)
        return pd.DataFrame({name: self.weights[name] * (feats[name] - self.mean[name]) / self.scale[name]
                             for name in SIGNALS}, index=signals.index)

    def predict(self, signals: pd.DataFrame) -> np.ndarray:
        logit = self.intercept + self.contributions(signals).sum(axis=1).to_numpy()
        return 1.0 / (1.0 + np.exp(-logit))

    def to_dict(self) -> dict:
        return {"source": self.source, "intercept": self.intercept, "weights": dict(self.weights),
                "mean": dict(self.mean), "scale": dict(self.scale)}


def features(signals: pd.DataFrame) -> pd.DataFrame:
    """Model inputs: the signals as shown, those declared ``log_scale`` (rank: 1 vs 5 matters, 60 vs 64 does not)
    as their logarithm."""
    out = signals[list(SIGNALS)].astype(float).fillna(0.0)
    for signal in SIGNALS.values():
        if signal.log_scale:
            out[signal.name] = np.log(signals[signal.name].astype(float))
    return out


def fit(signals: pd.DataFrame, is_false_negative: np.ndarray, source: str) -> RiskModel:
    """Fit logistic weights on standardised signals (L2, C = 1) with scikit-learn."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = features(signals)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    pipe.fit(feats.to_numpy(), np.asarray(is_false_negative, dtype=int))
    scaler, logreg = pipe[0], pipe[1]
    names = list(SIGNALS)
    return RiskModel(weights=dict(zip(names, map(float, logreg.coef_[0]))),
                     mean=dict(zip(names, map(float, scaler.mean_))),
                     scale=dict(zip(names, map(float, scaler.scale_))),
                     intercept=float(logreg.intercept_[0]), source=source)


DEFAULT_INTERCEPT = -3.795  # with the default weights declared on each signal below


@functools.lru_cache(maxsize=8)
def _default_model(fingerprint: str) -> RiskModel:
    return RiskModel(weights={n: s.weight for n, s in SIGNALS.items()}, mean={n: s.mean for n, s in SIGNALS.items()},
                     scale={n: s.scale for n, s in SIGNALS.items()}, intercept=DEFAULT_INTERCEPT,
                     source="defaults fitted on the cranfield train-split simulation")


def default_model() -> RiskModel:
    """The model of the registered signals' default weights (one object per signal set)."""
    return _default_model(signal_set())


def choose_model(signals: pd.DataFrame, verdicts: pd.DataFrame) -> RiskModel:
    """The workspace's own weights once ≥ MIN_VERDICTS_PER_CLASS false and true negatives are judged, else defaults.

    ``signals`` holds the run's candidates (query_id, doc_id and every signal); ``verdicts`` is labels.resolved().
    Verdicts come mostly from the top of a risk-ordered queue, so the refitted scores are calibrated to what
    reviewers judged, not to the whole run; the ranking is what matters for triage.
    """
    judged = signals.merge(verdicts[["query_id", "doc_id", "label"]], on=["query_id", "doc_id"])
    judged = judged[judged["label"].isin(["false_negative", "true_negative"])]
    counts = judged["label"].value_counts()
    if min(counts.get("false_negative", 0), counts.get("true_negative", 0)) < MIN_VERDICTS_PER_CLASS:
        return default_model()
    return fit(judged, (judged["label"] == "false_negative").to_numpy(),
               f"refitted on this workspace's {len(judged)} verdicts "
               f"({counts['false_negative']} false / {counts['true_negative']} true negatives)")


def _within_query(values: pd.Series, by: pd.Series, how: str) -> pd.Series:
    """Per-query z-score (``z``) or share of the query's maximum (``max``)."""
    grouped = values.groupby(by)
    if how == "z":
        std = grouped.transform("std").fillna(0.0)
        return ((values - grouped.transform("mean")) / std.where(std > 0, 1.0)).fillna(0.0)
    top = grouped.transform("max")
    return (values / top.where(top > 0, 1.0)).clip(lower=0.0).fillna(0.0)


PAIR_CHUNK = 1 << 15  # rows per block of vectorised work: bounds memory at ~100 MB whatever the run's size


class _Groups:
    """Members of numbered groups in CSR form (``members[start[g]:start[g + 1]]``), for expanding pairs."""

    def __init__(self, groups: np.ndarray, members: np.ndarray, n_groups: int):
        order = np.argsort(groups, kind="stable")
        self.members = members[order]
        self.start = np.zeros(n_groups + 1, dtype=np.int64)
        np.cumsum(np.bincount(groups, minlength=n_groups), out=self.start[1:])

    def sizes(self) -> np.ndarray:
        return np.diff(self.start)

    def pairs(self, group_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(item, member) for every item and every member of the item's group."""
        counts = self.sizes()[group_of]
        item = np.repeat(np.arange(len(group_of)), counts)
        offset = np.arange(len(item)) - np.repeat(np.cumsum(counts) - counts, counts)
        return item, self.members[self.start[group_of[item]] + offset]


def _row_dots(matrix, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``matrix[left[k]] · matrix[right[k]]`` for every k, in float64, block by block (dense or sparse rows)."""
    out = np.empty(len(left))
    for s in range(0, len(left), PAIR_CHUNK):
        x, y = matrix[left[s:s + PAIR_CHUNK]], matrix[right[s:s + PAIR_CHUNK]]
        if isinstance(x, np.ndarray):
            out[s:s + PAIR_CHUNK] = np.einsum("ij,ij->i", x.astype(np.float64), y.astype(np.float64))
        else:
            out[s:s + PAIR_CHUNK] = np.asarray(x.multiply(y).sum(axis=1)).ravel()
    return out


def _group_sums(groups: np.ndarray, weights: np.ndarray, vecs: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the weighted sum of the rows of ``vecs`` that belong to it (``groups[k]``: row k's group)."""
    from scipy.sparse import csr_matrix

    members = csr_matrix((weights, (groups, np.arange(len(groups)))), shape=(n_groups, len(groups)))
    return members @ vecs.astype(np.float64)


def _best_match(n: int, item: np.ndarray, sims: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per item, the highest of its kept pair similarities (0 where it has none)."""
    best = np.full(n, -np.inf)
    np.maximum.at(best, item[keep], sims[keep])
    return np.where(np.isfinite(best), best, 0.0)


def _pair_codes(pairs: list[tuple[str, str]], queries: pd.Index, docs: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """(query code, document row) of (query_id, doc_id) pairs whose query and document are both known."""
    q = queries.get_indexer([p[0] for p in pairs]) if pairs else np.zeros(0, dtype=np.int64)
    d = docs.get_indexer([p[1] for p in pairs]) if pairs else np.zeros(0, dtype=np.int64)
    ok = (q >= 0) & (d >= 0)
    return q[ok], d[ok]


def _verdicts(store: Store, dataset: str) -> pd.DataFrame:
    """Resolved false/true-negative verdicts (unsure carries no evidence either way)."""
    verdicts = labels.resolved(store, dataset)
    return verdicts[verdicts["label"].isin(["false_negative", "true_negative"])]


class _computed_once:
    """A cached property that several threads may ask for at once: the first computes, the others wait for it.

    ``functools.cached_property`` stopped locking in Python 3.12, and signals run on a thread pool here. One lock
    per (instance, property), so independent parts (TF-IDF rows, positive pairs) are computed at the same time.
    """

    def __init__(self, func: Callable) -> None:
        self.func, self.name = func, func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        cache = instance.__dict__
        if self.name not in cache:
            with instance._locks_guard:
                lock = instance._locks.setdefault(self.name, threading.Lock())
            with lock:
                if self.name not in cache:
                    cache[self.name] = self.func(instance)
        return cache[self.name]


class SignalContext:
    """What every signal of one run may read, each part computed once on first use: the candidates, known
    positives and rejected documents, embeddings, TF-IDF rows and integer codes for vectorised pair work.

    Every step is vectorised over the whole run (candidates paired with their query's known positives, rejected
    documents or neighbour queries, in fixed-size blocks), so the cost grows linearly with the candidates.
    """

    def __init__(self, store: Store, workspace: Workspace, run: dict, candidates: pd.DataFrame,
                 verdicts: pd.DataFrame, second_model: str | None, device: str = "auto"):
        self.store, self.workspace, self.run, self.frame = store, workspace, run, candidates
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.verdicts, self.second_model, self.device = verdicts, second_model, device
        self.is_fn = (verdicts["label"] == "false_negative").to_numpy(dtype=bool)
        known = {q: set(docs) for q, docs in positives_by_query(store, run["dataset"], run["split"]).items()}
        for q, d in zip(verdicts["query_id"][self.is_fn], verdicts["doc_id"][self.is_fn]):
            known.setdefault(q, set()).add(d)
        self.rejected = list(zip(verdicts["query_id"][~self.is_fn], verdicts["doc_id"][~self.is_fn]))
        self.known_pairs = [(q, d) for q, docs in known.items() for d in docs]
        self.run_queries = pd.Index(candidates["query_id"].unique())
        self.n, self.n_q = len(candidates), len(self.run_queries)
        self.code = self.run_queries.get_indexer(candidates["query_id"])  # query code, 0..n_q

    @_computed_once
    def vectors(self) -> Vectors:
        return Vectors(self.store, self.run["dataset"], run_encoder(self.workspace, self.run, device=self.device))

    @_computed_once
    def _documents(self) -> tuple[pd.Index, np.ndarray, list[str]]:
        cand_docs = set(self.frame["doc_id"])
        needed = cand_docs.union(d for q, d in self.known_pairs + self.rejected if q in self.run_queries)
        doc_row, doc_vecs, doc_texts = self.vectors.documents(sorted(needed))
        return pd.Index(list(doc_row)), doc_vecs, doc_texts  # position in the index = row of the vectors

    @property
    def docs(self) -> pd.Index:
        return self._documents[0]

    @property
    def doc_vecs(self) -> np.ndarray:
        return self._documents[1]

    @_computed_once
    def tfidf(self):
        tfidf = tfidf_matrix(self._documents[2]).astype(np.float64)
        tfidf.sort_indices()  # once here, not in every block's elementwise product
        return tfidf

    @_computed_once
    def _queries(self) -> tuple[pd.Index, np.ndarray]:
        cand_docs = set(self.frame["doc_id"])
        neighbours = {q for q, d in self.known_pairs if d in cand_docs}
        query_row, query_vecs = self.vectors.queries(sorted(set(self.run_queries) | neighbours))
        return pd.Index(list(query_row)), query_vecs  # position in the index = row of query_vecs

    @property
    def queries(self) -> pd.Index:
        return self._queries[0]

    @property
    def query_vecs(self) -> np.ndarray:
        return self._queries[1]

    @_computed_once
    def rows(self) -> np.ndarray:
        """Each candidate's row in ``doc_vecs``."""
        return self.docs.get_indexer(self.frame["doc_id"])

    @_computed_once
    def positives(self) -> tuple[_Groups, np.ndarray, np.ndarray]:
        """Known positives grouped by query code, with their (query code, document row) pairs."""
        pos_q, pos_d = _pair_codes(self.known_pairs, self.run_queries, self.docs)
        return _Groups(pos_q, pos_d, self.n_q), pos_q, pos_d

    @_computed_once
    def positive_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(candidate, positive row, keep): every candidate against its query's known positives, itself excluded."""
        item, member = self.positives[0].pairs(self.code)
        return item, member, member != self.rows[item]


def _rank(ctx: SignalContext) -> pd.Series:
    return ctx.frame["rank"]


def _score(ctx: SignalContext) -> pd.Series:
    return ctx.frame["score"]


def _margin(ctx: SignalContext) -> pd.Series:
    return ctx.frame["score"] - ctx.frame["pos_score"]


def _bm25_norm(ctx: SignalContext) -> pd.Series:
    return _within_query(ctx.frame["bm25"].fillna(0.0), ctx.frame["query_id"], "max")


def _pos_cosine(ctx: SignalContext) -> np.ndarray:
    item, member, keep = ctx.positive_pairs
    return _best_match(ctx.n, item, _row_dots(ctx.doc_vecs, ctx.rows[item], member), keep)


def _pos_overlap(ctx: SignalContext) -> np.ndarray:
    item, member, keep = ctx.positive_pairs
    return _best_match(ctx.n, item, _row_dots(ctx.tfidf, ctx.rows[item], member), keep)


def _expansion(ctx: SignalContext) -> np.ndarray:
    """Rocchio: query + mean of the known positives other than the candidate + mean of the closest candidates."""
    n, n_q, code, rows, doc_vecs = ctx.n, ctx.n_q, ctx.code, ctx.rows, ctx.doc_vecs
    positives, pos_q, pos_d = ctx.positives
    per_query = np.bincount(code, minlength=n_q)
    by_rank = np.lexsort((ctx.frame["rank"].to_numpy(), code))  # grouped by query, best rank first
    top = by_rank[np.arange(n) - np.repeat(np.cumsum(per_query) - per_query, per_query) < EXPANSION_TOP]
    centre = (_group_sums(code[top], 1.0 / np.minimum(per_query, EXPANSION_TOP)[code[top]], doc_vecs[rows[top]], n_q)
              + ctx.query_vecs[ctx.queries.get_indexer(ctx.run_queries)])
    pos_sum = _group_sums(pos_q, np.ones(len(pos_q)), doc_vecs[pos_d], n_q)
    own = np.isin(code * len(ctx.docs) + rows, pos_q * len(ctx.docs) + pos_d)
    pos_count = positives.sizes()[code] - own
    expansion = np.empty(n)
    for s in range(0, n, PAIR_CHUNK):
        block = slice(s, s + PAIR_CHUNK)
        vecs, c, o, k = doc_vecs[rows[block]].astype(np.float64), code[block], own[block, None], pos_count[block, None]
        expanded = centre[c] + np.divide(pos_sum[c] - o * vecs, k, out=np.zeros_like(vecs), where=k > 0)
        expansion[block] = np.einsum("ij,ij->i", vecs, expanded) / np.linalg.norm(expanded, axis=1)
    return expansion


def _neighbour_query(ctx: SignalContext) -> np.ndarray:
    """The closest other query that has this candidate as a known positive."""
    qrow = ctx.queries.get_indexer(ctx.run_queries)[ctx.code]
    kq, kd = _pair_codes(ctx.known_pairs, ctx.queries, ctx.docs)
    item, member = _Groups(kd, kq, len(ctx.docs)).pairs(ctx.rows)  # grouped by document, members are queries
    return _best_match(ctx.n, item, _row_dots(ctx.query_vecs, member, qrow[item]), member != qrow[item])


def _second_model(ctx: SignalContext) -> np.ndarray | pd.Series:
    model = ctx.second_model or ctx.workspace.settings().get(SECOND_MODEL_SETTING)
    if not model:
        return np.zeros(ctx.n)
    second = Vectors(ctx.store, ctx.run["dataset"], run_encoder(ctx.workspace, ctx.run, model, ctx.device))
    s_doc_row, s_doc_vecs, _ = second.documents(list(ctx.docs))
    s_query_row, s_query_vecs = second.queries(list(ctx.run_queries))
    scores = np.einsum("ij,ij->i", s_doc_vecs[pd.Index(list(s_doc_row)).get_indexer(ctx.frame["doc_id"])],
                       s_query_vecs[pd.Index(list(s_query_row)).get_indexer(ctx.frame["query_id"])])
    return _within_query(pd.Series(scores, index=ctx.frame.index), ctx.frame["query_id"], "z")


def _ce_score(ctx: SignalContext) -> np.ndarray:
    """The run's stored cross-encoder probability of each candidate (``core.cross_encoder``; 0 where none)."""
    scores = pair_scores(ctx.store, ctx.run["run_id"], ctx.frame["query_id"], ctx.frame["doc_id"])
    return np.zeros(ctx.n) if scores is None else np.nan_to_num(scores, nan=0.0)


def _tn_cosine(ctx: SignalContext) -> np.ndarray:
    item, member = _Groups(*_pair_codes(ctx.rejected, ctx.run_queries, ctx.docs), ctx.n_q).pairs(ctx.code)
    sims = _row_dots(ctx.doc_vecs, ctx.rows[item], member)
    return _best_match(ctx.n, item, sims, member != ctx.rows[item]).clip(min=0)


def _query_fn_rate(ctx: SignalContext) -> np.ndarray:
    """Leave-one-out: a judged candidate's own verdict is not part of its query's rate."""
    verdicts, is_fn, code, n_docs = ctx.verdicts, ctx.is_fn, ctx.code, len(ctx.docs)
    overall_rate = float(is_fn.mean()) if len(verdicts) else 0.5
    v_code, v_row = ctx.run_queries.get_indexer(verdicts["query_id"]), ctx.docs.get_indexer(verdicts["doc_id"])
    in_run = v_code >= 0
    judged = np.bincount(v_code[in_run], minlength=ctx.n_q)[code]
    fn = np.bincount(v_code[in_run], weights=is_fn[in_run], minlength=ctx.n_q)[code]
    pair, v_pair = code * n_docs + ctx.rows, np.where(in_run & (v_row >= 0), v_code * n_docs + v_row, -1)
    own_judged, own_fn = np.isin(pair, v_pair), np.isin(pair, v_pair[is_fn])
    return (fn - own_fn + PRIOR_VERDICTS * overall_rate) / (judged - own_judged + PRIOR_VERDICTS)


# The default weights were fitted by `python benchmarks/bench_risk.py --fit-defaults` on the cranfield *train* split
# simulation (150 queries, one positive kept per query, the other positives hidden, depth-100 candidates of the
# bundled MiniLM); never on dbpedia_entity or cranfield test, where the benchmark reports. Correlated signals share
# weight (score, margin and rank together carry the dense model's view; expansion dominates), so read
# contributions, not single weights. second_model, ce_score, tn_cosine and query_fn_rate are constant in that
# simulation (no second model, no cross-encoder, no verdicts), so their weights are set by hand and only matter until
# the workspace refits: one z unit of a second model = +1 logit; a cross-encoder probability p = +4·p logits (0 for a
# run no cross-encoder scored, so its risk is unchanged; RocketQA's pseudo-positive cut 0.9 adds +3.6, about
# cancelling the intercept); a rejected look-alike (cosine 1) = −2; a query whose verdicts are all false negatives
# vs. none = ±1.5 around 0.5.
for _signal in (
    Signal("rank", "dense rank among the query's non-positive candidates (1 = closest to the query)", _rank,
           -0.2427, 3.637, 0.9234, log_scale=True),
    Signal("score", "dense cosine score s of the candidate for the query", _score, -0.3056, 0.4524, 0.1011),
    Signal("margin", "s − s_P: dense score minus the query's weakest labelled positive (> 0: above a positive)",
           _margin, 0.06454, -0.06665, 0.1455),
    Signal("bm25_norm", "BM25 score over the best BM25 score among the query's candidates (lexical agreement, "
           "0–1)", _bm25_norm, 0.2956, 0.3099, 0.2195),
    Signal("pos_cosine", "highest embedding cosine to a known positive of the query (≥ 0.95: near-duplicate)",
           _pos_cosine, -0.3552, 0.472, 0.1349),
    Signal("pos_overlap", "highest word overlap (TF-IDF cosine) with a known positive of the query", _pos_overlap,
           0.4184, 0.08288, 0.06044),
    Signal("expansion", "cosine to the query moved towards its known positives and its 5 closest candidates "
           "(relevance feedback)", _expansion, 1.107, 0.5815, 0.1115),
    Signal("neighbour_query", "cosine of this query to the most similar other query that has this document as a "
           "known positive (0: none)", _neighbour_query, -0.02824, 0.03555, 0.1182),
    Signal("second_model", "the configured second model's score as a z-score among the query's candidates "
           "(0: none)", _second_model, 1.0),
    Signal("ce_score", "the cross-encoder's probability that the candidate answers the query (0: no cross-encoder "
           "scored the run)", _ce_score, 4.0),
    Signal("tn_cosine", "highest embedding cosine to a candidate judged true negative for this query (0: none or "
           "unrelated)", _tn_cosine, -2.0),
    Signal("query_fn_rate", "share of this query's verdicts that are false negatives, smoothed towards the share "
           "over all queries", _query_fn_rate, 3.0, 0.5),
):
    register(_signal)
DEFAULT_MODEL = default_model()  # the built-in signals' defaults (default_model() follows later registrations)


SIGNAL_THREADS = max(2, min(4, os.cpu_count() or 2))


def signal_frame(store: Store, workspace: Workspace, run_id: str, verdicts: pd.DataFrame | None = None,
                 second_model: str | None = None, device: str = "auto",
                 progress: StageProgress | None = None) -> pd.DataFrame:
    """A run's candidates with one column per registered signal, in registry order.

    ``verdicts`` (from ``_verdicts``) may be passed in when the caller already has them: resolving is the slow part.
    ``progress`` hears of each signal as it is collected (the fraction runs to 0.8; writing takes the rest).
    """
    run = require_run(store, run_id)
    cands = store.candidates(run_id).drop(columns=["risk", "signals"])
    if cands.empty:
        return cands.assign(**{name: pd.Series(dtype=float) for name in SIGNALS})
    verdicts = _verdicts(store, run["dataset"]) if verdicts is None else verdicts
    ctx = SignalContext(store, workspace, run, cands, verdicts, second_model, device)
    out = cands.copy()
    # Signals run on a pool so that TF-IDF's tokenising (Python, one core) overlaps the vector and sparse algebra
    # of the others (numpy and SQLite release the GIL): both cores of a laptop work.
    with ThreadPoolExecutor(max_workers=min(SIGNAL_THREADS, len(SIGNALS))) as pool:
        computed = {name: pool.submit(signal.compute, ctx) for name, signal in SIGNALS.items()}
        for done, (name, future) in enumerate(computed.items(), start=1):
            out[name] = future.result()
            if progress is not None:
                progress(f"signals {done}/{len(computed)}", 0.8 * done / len(computed))
    return out


def configure_second_model(workspace: Workspace, model: str | None) -> None:
    """Use a second local sentence-transformers model's opinion as a signal (None turns it off); admins only,
    once accounts exist (core.roles), as it changes every run's risk: a change marks every scored run for
    scoring again (pages rescore in the background when a run is opened)."""
    from core import roles
    from core.encoders import resolve_model_path

    roles.require(roles.TRAIN)

    value = str(resolve_model_path(model)) if model else None
    if workspace.settings().get(SECOND_MODEL_SETTING) == value:
        return
    workspace.update_settings(**{SECOND_MODEL_SETTING: value})
    store = workspace.store()
    try:
        store.mark_risk_stale()  # every run's second_model signal read the old opinion (or none)
    finally:
        store.close()


def compute_risk(store: Store, workspace: Workspace, run_id: str, device: str = "auto",
                 progress: StageProgress | None = None) -> None:
    """Fill candidates.risk and candidates.signals (JSON of every signal) for every candidate of a run, encoding
    any vector the cache lacks on ``device``; ``progress`` hears of each stage (a background job shows it)."""
    stage = progress or (lambda message, fraction: None)
    stage("reading candidates and vectors", 0.0)
    verdicts = _verdicts(store, require_run(store, run_id)["dataset"])
    frame = signal_frame(store, workspace, run_id, verdicts, device=device, progress=progress)
    if frame.empty:
        return
    stage("writing risk", 0.85)
    model = choose_model(frame, verdicts)
    risk = model.predict(frame)
    # one JSON object per line in one C pass (json.dumps per row costs ~30 µs, half a minute at a million)
    signals = frame[list(SIGNALS)].astype(float).round(4).to_json(orient="records", lines=True,
                                                                  double_precision=15).splitlines()
    store.set_risk(run_id, list(zip(frame["query_id"].to_numpy(), frame["doc_id"].to_numpy(), risk.tolist(),
                                    signals)), signal_set())
    atomic_write_text(store.run_file(store.rows_of(run_id), MODEL_FILE), json.dumps(model.to_dict()))


def ensure_risk(store: Store, workspace: Workspace, run_id: str, device: str = "auto",
                progress: StageProgress | None = None) -> bool:
    """Score a run's risk if any candidate has none yet (first review of a fresh run) or the run was scored by
    another set of signals (one was added or changed since); True when it scored."""
    missing = store.risk_missing(run_id, signal_set())
    if missing:
        compute_risk(store, workspace, run_id, device, progress)
    return bool(missing)


def scoring_job(store: Store, workspace_root: str | Path, run_id: str) -> Job | None:
    """The background job scoring a run whose risk is missing or stale, None when its risk is current.

    Pages never wait for scoring (a 10M-candidate run takes minutes): they show what is ready and poll this job.
    It is named after the candidate rows it scores, so every session opening the run (or a run derived from it)
    shares one job, and it opens its own store connection because it outlives the page run that started it.
    ``ensure_risk`` checks again inside the job, so a session that asked just as scoring finished scores nothing.
    """
    if not store.risk_missing(run_id, signal_set()):
        return None
    root, rows_of = str(Path(workspace_root).resolve()), store.rows_of(run_id)

    def work(stage: StageProgress) -> bool:
        from core.workspace import open_workspace

        workspace = open_workspace(root)
        own = workspace.store()
        try:
            return ensure_risk(own, workspace, rows_of, progress=stage)
        finally:
            own.close()
    return shared_job(f"risk:{root}:{rows_of}", work)


def stored_signals(candidates: pd.DataFrame) -> pd.DataFrame:
    """Expand the stored signals JSON of ``store.candidates()`` rows into one column per signal."""
    parsed = [json.loads(s) if isinstance(s, str) else {} for s in candidates["signals"]]
    return pd.DataFrame(parsed, index=candidates.index).reindex(columns=list(SIGNALS))


MODEL_FILE = "risk-model.json"  # beside a run's snapshot: the model that scored its stored risk


def risk_model(store: Store, run_id: str) -> RiskModel:
    """The model that scored the run's stored risk (defaults or a refit), saved when it scored: what Review's
    explanation splits into each signal's share. A run scored before models were saved gets the defaults."""
    path = store.run_file(store.rows_of(require_run(store, run_id)["run_id"]), MODEL_FILE)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if set(saved["weights"]) == set(SIGNALS):
            return RiskModel(weights=saved["weights"], mean=saved["mean"], scale=saved["scale"],
                             intercept=float(saved["intercept"]), source=saved["source"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return default_model()


def explain(model: RiskModel, signals: Mapping[str, float]) -> pd.DataFrame:
    """One candidate's stored signals in words: per signal its value, its share of the logit under ``model``
    (positive raises the risk) and what it measures, the largest shares first."""
    row = pd.DataFrame([{name: signals.get(name, np.nan) for name in SIGNALS}])
    share = model.contributions(row).iloc[0]
    table = pd.DataFrame({"signal": list(SIGNALS), "value": [signals.get(name) for name in SIGNALS],
                          "share of the logit": share.round(3).to_numpy(),
                          "what it measures": [s.description for s in SIGNALS.values()]})
    return table.iloc[np.argsort(-np.abs(share.to_numpy()), kind="stable")].reset_index(drop=True)


TSV_COLUMNS = ["query-id", "corpus-id", "rank", "score", "pos-score", "risk"]


def write_tsv(store: Store, run_id: str, out: str | Path) -> int:
    """Every candidate of a run, riskiest first (ties by query and rank), as TSV; returns rows."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path")
    cands = store.candidates(require_run(store, run_id)["run_id"])
    cands = cands.sort_values(["risk", "query_id", "rank"], ascending=[False, True, True], na_position="last",
                              kind="stable")
    table = pd.DataFrame(dict(zip(TSV_COLUMNS, (cands[c] for c in ["query_id", "doc_id", "rank", "score",
                                                                   "pos_score", "risk"]))))
    atomic_write_text(out, table.to_csv(sep="\t", index=False, float_format="%.6f", na_rep="", lineterminator="\n"))
    return len(cands)
