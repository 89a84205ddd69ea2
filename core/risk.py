"""False-negative risk: how likely a mined candidate is an unlabelled positive, from signals a reviewer can read.

Each candidate gets a handful of signals and one score in [0, 1] from a logistic model over
standardised signals. Logistic weights stay transparent: every signal's contribution to the logit can be shown
next to the score. The default weights were fitted once on a simulation (see ``DEFAULT_MODEL``); once a workspace
holds enough verdicts of both kinds on a run's candidates, the weights are refitted from those verdicts instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import labels
from core.errors import UserError
from core.files import atomic_write_text
from core.lookups import positives_by_query, require_run
from core.vectors import Vectors, run_encoder, tfidf_matrix

# Signal name → one-line meaning, in display order (the UI shows these next to the score). "Known positives" of a
# query are its qrels with score > 0 (imported or promoted) plus documents whose resolved verdict for it is
# false_negative; a candidate's own verdict never enters its own signals.
SIGNALS: dict[str, str] = {
    "rank": "dense rank among the query's non-positive candidates (1 = closest to the query)",
    "score": "dense cosine score s of the candidate for the query",
    "margin": "s − s_P: dense score minus the query's weakest labelled positive (> 0: above a positive)",
    "bm25_norm": "BM25 score over the best BM25 score among the query's candidates (lexical agreement, 0–1)",
    "pos_cosine": "highest embedding cosine to a known positive of the query (≥ 0.95: near-duplicate)",
    "pos_overlap": "highest word overlap (TF-IDF cosine) with a known positive of the query",
    "expansion": "cosine to the query moved towards its known positives and its 5 closest candidates "
                 "(relevance feedback)",
    "neighbour_query": "cosine of this query to the most similar other query that has this document as a known "
                       "positive (0: none)",
    "second_model": "the configured second model's score as a z-score among the query's candidates (0: none)",
    "tn_cosine": "highest embedding cosine to a candidate judged true negative for this query (0: none or "
                 "unrelated)",
    "query_fn_rate": "share of this query's verdicts that are false negatives, smoothed towards the share over "
                     "all queries",
}
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
    """Model inputs: the signals as shown, except rank on a log scale (rank 1 vs 5 matters, 60 vs 64 does not)."""
    out = signals[list(SIGNALS)].astype(float).fillna(0.0)
    out["rank"] = np.log(signals["rank"].astype(float))
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


# Fitted by `python benchmarks/bench_risk.py --fit-defaults` on the cranfield *train* split simulation (150 queries,
# one positive kept per query, the other positives hidden, depth-100 candidates of the bundled MiniLM); never on
# dbpedia_entity or cranfield test, where the benchmark reports. Correlated signals share weight (score, margin and
# rank together carry the dense model's view; expansion dominates), so read contributions, not single weights.
# second_model, tn_cosine and query_fn_rate are constant in that simulation (no second model, no verdicts), so
# their weights are set by hand and only matter until the workspace refits: one z unit of a second model = +1 logit;
# a rejected look-alike (cosine 1) = −2; a query whose verdicts are all false negatives vs. none = ±1.5 around 0.5.
DEFAULT_MODEL = RiskModel(
    weights={"rank": -0.2427, "score": -0.3056, "margin": 0.06454, "bm25_norm": 0.2956, "pos_cosine": -0.3552,
             "pos_overlap": 0.4184, "expansion": 1.107, "neighbour_query": -0.02824,
             "second_model": 1.0, "tn_cosine": -2.0, "query_fn_rate": 3.0},
    mean={"rank": 3.637, "score": 0.4524, "margin": -0.06665, "bm25_norm": 0.3099, "pos_cosine": 0.472,
          "pos_overlap": 0.08288, "expansion": 0.5815, "neighbour_query": 0.03555,
          "second_model": 0.0, "tn_cosine": 0.0, "query_fn_rate": 0.5},
    scale={"rank": 0.9234, "score": 0.1011, "margin": 0.1455, "bm25_norm": 0.2195, "pos_cosine": 0.1349,
           "pos_overlap": 0.06044, "expansion": 0.1115, "neighbour_query": 0.1182,
           "second_model": 1.0, "tn_cosine": 1.0, "query_fn_rate": 1.0},
    intercept=-3.795,
    source="defaults fitted on the cranfield train-split simulation",
)


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
        return DEFAULT_MODEL
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


def _verdicts(store, dataset: str) -> pd.DataFrame:
    """Resolved false/true-negative verdicts (unsure carries no evidence either way)."""
    verdicts = labels.resolved(store, dataset)
    return verdicts[verdicts["label"].isin(["false_negative", "true_negative"])]


def signal_frame(store, workspace, run_id: str, verdicts: pd.DataFrame | None = None,
                 second_model: str | None = None) -> pd.DataFrame:
    """A run's candidates with one column per signal in ``SIGNALS`` (see there for "known positives").

    ``verdicts`` (from ``_verdicts``) may be passed in when the caller already has them: resolving is the slow part.
    Every step is vectorised over the whole run (candidates paired with their query's known positives, rejected
    documents or neighbour queries), so the cost grows linearly with the number of candidates.
    """
    run = require_run(store, run_id)
    dataset = run["dataset"]
    cands = store.candidates(run_id).drop(columns=["risk", "signals"])
    if cands.empty:
        return cands.assign(**{name: pd.Series(dtype=float) for name in SIGNALS})
    verdicts = _verdicts(store, dataset) if verdicts is None else verdicts
    is_fn = (verdicts["label"] == "false_negative").to_numpy(dtype=bool)
    known = {q: set(docs) for q, docs in positives_by_query(store, dataset, run["split"]).items()}
    for q, d in zip(verdicts["query_id"][is_fn], verdicts["doc_id"][is_fn]):
        known.setdefault(q, set()).add(d)
    rejected = list(zip(verdicts["query_id"][~is_fn], verdicts["doc_id"][~is_fn]))
    known_pairs = [(q, d) for q, docs in known.items() for d in docs]

    vectors = Vectors(store, dataset, run_encoder(workspace, run))
    run_queries = pd.Index(cands["query_id"].unique())
    cand_docs = pd.Index(cands["doc_id"].unique())
    needed = set(cand_docs).union(d for q, d in known_pairs + rejected if q in run_queries)
    doc_row, doc_vecs, doc_texts = vectors.documents(sorted(needed))
    docs = pd.Index(list(doc_row))  # position = row of doc_vecs
    tfidf = tfidf_matrix(doc_texts).astype(np.float64)
    tfidf.sort_indices()  # once here, not in every block's elementwise product
    neighbour_queries = {q for q, d in known_pairs if d in cand_docs}
    query_row, query_vecs = vectors.queries(sorted(set(run_queries) | neighbour_queries))
    queries = pd.Index(list(query_row))  # position = row of query_vecs

    out = cands.copy()
    out["margin"] = out["score"] - out["pos_score"]
    out["bm25_norm"] = _within_query(out["bm25"].fillna(0.0), out["query_id"], "max")
    n = len(out)
    code = run_queries.get_indexer(out["query_id"])  # query code, 0..len(run_queries)
    rows = docs.get_indexer(out["doc_id"])
    n_q = len(run_queries)

    # a candidate against its query's known positives (itself excluded) and rejected documents
    pos_q, pos_d = _pair_codes(known_pairs, run_queries, docs)
    positives = _Groups(pos_q, pos_d, n_q)
    item, member = positives.pairs(code)
    keep = member != rows[item]
    pos_cosine = _best_match(n, item, _row_dots(doc_vecs, rows[item], member), keep)
    pos_overlap = _best_match(n, item, _row_dots(tfidf, rows[item], member), keep)
    item, member = _Groups(*_pair_codes(rejected, run_queries, docs), n_q).pairs(code)
    tn_cosine = _best_match(n, item, _row_dots(doc_vecs, rows[item], member), member != rows[item]).clip(min=0)

    # Rocchio: query + mean of the known positives other than the candidate + mean of the closest candidates
    per_query = np.bincount(code, minlength=n_q)
    by_rank = np.lexsort((out["rank"].to_numpy(), code))  # grouped by query, best rank first
    top = by_rank[np.arange(n) - np.repeat(np.cumsum(per_query) - per_query, per_query) < EXPANSION_TOP]
    centre = (_group_sums(code[top], 1.0 / np.minimum(per_query, EXPANSION_TOP)[code[top]], doc_vecs[rows[top]], n_q)
              + query_vecs[queries.get_indexer(run_queries)])
    pos_sum = _group_sums(pos_q, np.ones(len(pos_q)), doc_vecs[pos_d], n_q)
    own = np.isin(code * len(docs) + rows, pos_q * len(docs) + pos_d)
    pos_count = positives.sizes()[code] - own
    expansion = np.empty(n)
    for s in range(0, n, PAIR_CHUNK):
        block = slice(s, s + PAIR_CHUNK)
        vecs, c, o, k = doc_vecs[rows[block]].astype(np.float64), code[block], own[block, None], pos_count[block, None]
        expanded = centre[c] + np.divide(pos_sum[c] - o * vecs, k, out=np.zeros_like(vecs), where=k > 0)
        expansion[block] = np.einsum("ij,ij->i", vecs, expanded) / np.linalg.norm(expanded, axis=1)

    # the closest other query that has this candidate as a known positive
    qrow = queries.get_indexer(run_queries)[code]
    kq, kd = _pair_codes(known_pairs, queries, docs)
    item, member = _Groups(kd, kq, len(docs)).pairs(rows)  # grouped by document, members are queries
    neighbour = _best_match(n, item, _row_dots(query_vecs, member, qrow[item]), member != qrow[item])

    # leave-one-out: a judged candidate's own verdict is not part of its query's rate
    overall_rate = float(is_fn.mean()) if len(verdicts) else 0.5
    v_code, v_row = run_queries.get_indexer(verdicts["query_id"]), docs.get_indexer(verdicts["doc_id"])
    in_run = v_code >= 0
    judged = np.bincount(v_code[in_run], minlength=n_q)[code]
    fn = np.bincount(v_code[in_run], weights=is_fn[in_run], minlength=n_q)[code]
    pair, v_pair = code * len(docs) + rows, np.where(in_run & (v_row >= 0), v_code * len(docs) + v_row, -1)
    own_judged, own_fn = np.isin(pair, v_pair), np.isin(pair, v_pair[is_fn])
    query_fn_rate = (fn - own_fn + PRIOR_VERDICTS * overall_rate) / (judged - own_judged + PRIOR_VERDICTS)

    out["pos_cosine"], out["pos_overlap"], out["expansion"] = pos_cosine, pos_overlap, expansion
    out["neighbour_query"], out["tn_cosine"], out["query_fn_rate"] = neighbour, tn_cosine, query_fn_rate
    out["second_model"] = 0.0
    second_model = second_model or workspace.settings().get(SECOND_MODEL_SETTING)
    if second_model:
        second = Vectors(store, dataset, run_encoder(workspace, run, second_model))
        s_doc_row, s_doc_vecs, _ = second.documents(list(docs))
        s_query_row, s_query_vecs = second.queries(list(run_queries))
        scores = np.einsum("ij,ij->i", s_doc_vecs[pd.Index(list(s_doc_row)).get_indexer(out["doc_id"])],
                           s_query_vecs[pd.Index(list(s_query_row)).get_indexer(out["query_id"])])
        out["second_model"] = _within_query(pd.Series(scores, index=out.index), out["query_id"], "z")
    return out


def configure_second_model(workspace, model: str | None) -> None:
    """Use a second local sentence-transformers model's opinion as a signal (None turns it off)."""
    from core.encoders import resolve_model_path

    workspace.update_settings(**{SECOND_MODEL_SETTING: str(resolve_model_path(model)) if model else None})


def compute_risk(store, workspace, run_id: str) -> None:
    """Fill candidates.risk and candidates.signals (JSON of every signal) for every candidate of a run."""
    verdicts = _verdicts(store, require_run(store, run_id)["dataset"])
    frame = signal_frame(store, workspace, run_id, verdicts)
    if frame.empty:
        return
    model = choose_model(frame, verdicts)
    risk = model.predict(frame)
    # one JSON object per line in one C pass (json.dumps per row costs ~30 µs, half a minute at a million)
    signals = frame[list(SIGNALS)].astype(float).round(4).to_json(orient="records", lines=True,
                                                                  double_precision=15).splitlines()
    store.set_risk(run_id, list(zip(frame["query_id"].to_numpy(), frame["doc_id"].to_numpy(), risk.tolist(),
                                    signals)))


def ensure_risk(store, workspace, run_id: str) -> bool:
    """Score a run's risk if any candidate has none yet (first review of a fresh run); True when it scored."""
    missing = store.risk_missing(run_id)
    if missing:
        compute_risk(store, workspace, run_id)
    return bool(missing)


def stored_signals(candidates: pd.DataFrame) -> pd.DataFrame:
    """Expand the stored signals JSON of ``store.candidates()`` rows into one column per signal."""
    parsed = [json.loads(s) if isinstance(s, str) else {} for s in candidates["signals"]]
    return pd.DataFrame(parsed, index=candidates.index).reindex(columns=list(SIGNALS))


def risk_model(store, run_id: str) -> RiskModel:
    """The model that scores a run right now (defaults or a refit), from stored signals: what the UI explains."""
    run = require_run(store, run_id)
    cands = store.candidates(run_id)
    signals = pd.concat([cands[["query_id", "doc_id"]], stored_signals(cands)], axis=1).dropna()
    return choose_model(signals, _verdicts(store, run["dataset"]))


TSV_COLUMNS = ["query-id", "corpus-id", "rank", "score", "pos-score", "risk"]


def write_tsv(store, run_id: str, out: str | Path) -> int:
    """Every candidate of a run, riskiest first (ties by query and rank), as TSV; returns rows."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path")
    cands = store.candidates(require_run(store, run_id)["run_id"])
    cands = cands.sort_values(["risk", "query_id", "rank"], ascending=[False, True, True], na_position="last",
                              kind="stable")
    lines = ["\t".join(TSV_COLUMNS)]
    lines += [f"{q}\t{d}\t{rank}\t{score:.6f}\t{pos:.6f}\t{'' if pd.isna(r) else f'{r:.6f}'}"
              for q, d, rank, score, pos, r in zip(cands["query_id"], cands["doc_id"], cands["rank"],
                                                   cands["score"], cands["pos_score"], cands["risk"])]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(cands)
