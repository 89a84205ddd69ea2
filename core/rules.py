"""The published hard-negative mining rules, as pure functions over stored candidates.

A rule is a filter (abs, marginpos, percpos, and optionally a cross-encoder) followed by a selector (top-k,
rank range, SimANS). Everything here works on the candidate table alone, so changing a rule never re-encodes.
Definitions follow PRODUCT.md: s = cosine score, s_P = the query's minimum positive score.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pandas as pd

from core.errors import UserError

FILTERS = ("abs", "marginpos", "percpos")
SELECTORS = ("top", "range", "simans")
RULES = ("top", "range", "abs", "marginpos", "percpos", "simans")
DEFAULT_RELATIVE_MARGIN = 0.05
DEFAULT_ABSOLUTE_MARGIN = 0.05


@dataclass(frozen=True)
class RuleSpec:
    """A filter+selector. ``rule`` names the headline rule; filter thresholds left as None are off."""

    rule: str = "top"
    num_negatives: int = 5
    max_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    range_min: int = 10
    range_max: int = 100
    simans_a: float = 1.0
    simans_b: float = 0.0
    seed: int = 0
    skip_judged: bool = False  # candidates resolved as false negative are never kept; the next ones refill to k

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise UserError(f"unknown rule {self.rule!r} (use one of {', '.join(RULES)})")
        if self.num_negatives < 1:
            raise UserError("--num-negatives must be at least 1")
        if not 0 <= self.range_min < self.range_max:
            raise UserError("--range-min must be ≥ 0 and below --range-max")
        if self.simans_a <= 0:
            raise UserError("--simans-a must be positive")
        # A named filter rule with no threshold gets the published default.
        if self.rule == "percpos" and self.relative_margin is None:
            object.__setattr__(self, "relative_margin", DEFAULT_RELATIVE_MARGIN)
        if self.rule == "marginpos" and self.absolute_margin is None:
            object.__setattr__(self, "absolute_margin", DEFAULT_ABSOLUTE_MARGIN)
        if self.rule == "abs" and self.max_score is None:
            raise UserError("--rule abs needs --max-score T (keep candidates with score < T)")
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise UserError("--relative-margin must be in [0, 1)")

    @property
    def selector(self) -> str:
        return self.rule if self.rule in SELECTORS else "top"

    def filters(self) -> list[str]:
        active = []
        if self.max_score is not None:
            active.append("abs")
        if self.absolute_margin is not None:
            active.append("marginpos")
        if self.relative_margin is not None:
            active.append("percpos")
        if self.skip_judged:
            active.append("judged")
        return active

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RuleSpec":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_(self, **changes) -> "RuleSpec":
        return replace(self, **changes)

    def describe(self) -> str:
        parts = []
        if self.max_score is not None:
            parts.append(f"abs s<{self.max_score:g}")
        if self.absolute_margin is not None:
            parts.append(f"marginpos s<s_P−{self.absolute_margin:g}")
        if self.relative_margin is not None:
            parts.append(f"percpos s<s_P−|s_P|·{self.relative_margin:g}")
        if self.skip_judged:
            parts.append("skip judged false negatives")
        sel = {"top": f"top-{self.num_negatives}",
               "range": f"{self.num_negatives} from ranks [{self.range_min},{self.range_max})",
               "simans": f"SimANS {self.num_negatives} (a={self.simans_a:g}, b={self.simans_b:g})"}[self.selector]
        if self.selector != "top":
            sel += f" seed {self.seed}"
        return " → ".join(parts + [sel])


def threshold(spec: RuleSpec, pos_score: np.ndarray) -> np.ndarray:
    """The score each query's candidates must stay below under the active filters (inf when none)."""
    limit = np.full(len(pos_score), np.inf)
    if spec.max_score is not None:
        limit = np.minimum(limit, spec.max_score)
    if spec.absolute_margin is not None:
        limit = np.minimum(limit, pos_score - spec.absolute_margin)
    if spec.relative_margin is not None:
        limit = np.minimum(limit, pos_score - np.abs(pos_score) * spec.relative_margin)
    return limit


def _filter_reasons(spec: RuleSpec, score: np.ndarray, pos: np.ndarray, judged: np.ndarray | None) -> np.ndarray:
    reasons = np.full(len(score), "", dtype=object)
    checks = []
    if spec.skip_judged:
        if judged is None:
            raise ValueError("a skip_judged rule needs the judged mask")
        checks.append(("judged", judged))
    if spec.max_score is not None:
        checks.append(("abs", score >= spec.max_score))
    if spec.absolute_margin is not None:
        checks.append(("marginpos", score >= pos - spec.absolute_margin))
    if spec.relative_margin is not None:
        checks.append(("percpos", score >= pos - np.abs(pos) * spec.relative_margin))
    for name, failed in checks:
        reasons[(reasons == "") & failed] = f"filtered:{name}"
    return reasons


def sampling_noise(seed: int, query_ids: pd.Series, doc_ids: pd.Series) -> np.ndarray:
    """Gumbel noise that is a pure function of (seed, query, document).

    A query's sample depends only on its own candidates and the seed (never on which other queries exist or their
    order), and the whole run is sampled in a few vectorised passes instead of one random generator per query.
    """
    hash_key = hashlib.sha1(str(seed).encode()).hexdigest()[:16]
    hashed = pd.util.hash_pandas_object(pd.DataFrame({"q": query_ids.to_numpy(), "d": doc_ids.to_numpy()}),
                                        index=False, hash_key=hash_key).to_numpy()
    uniform = ((hashed >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return -np.log(-np.log(uniform))


def simans_logits(score: np.ndarray, pos_score: np.ndarray, a: float, b: float) -> np.ndarray:
    """SimANS log-weights: p ∝ exp(−a·(s − s_P − b)²)."""
    return -a * (score - pos_score - b) ** 2


def _selection_keys(spec: RuleSpec, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """A key per candidate; the selector keeps each query's k eligible candidates with the largest keys.

    top: best rank. range: uniform among the rank window (keys outside it are −inf). simans: Gumbel-top-k over
    the SimANS log-weights, which is exactly sampling k without replacement with p ∝ exp(−a·(s − s_P − b)²).
    """
    rank = frame["rank"].to_numpy(dtype=float)
    if spec.selector == "top":
        return -rank
    noise = sampling_noise(spec.seed, frame["query_id"], frame["doc_id"])
    if spec.selector == "range":
        inside = (rank - 1 >= spec.range_min) & (rank - 1 < spec.range_max)
        return np.where(inside, noise, -np.inf)
    return simans_logits(score, pos, spec.simans_a, spec.simans_b) + noise


def _top_k_per_group(groups: np.ndarray, keys: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Indices (from ``candidates``) of the k largest finite keys within each group."""
    candidates = candidates[np.isfinite(keys[candidates])]
    order = candidates[np.lexsort((-keys[candidates], groups[candidates]))]
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    position = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[position < k]


def apply(spec: RuleSpec, candidates: pd.DataFrame, judged: np.ndarray | None = None) -> pd.DataFrame:
    """Return ``candidates`` with ``kept`` and ``rule`` recomputed under ``spec`` (input order preserved).

    ``judged`` (one bool per candidate) marks documents a person judged false negative for that query; with
    ``skip_judged`` they are filtered before selection, so each query is refilled to k from its next candidates
    instead of losing the flagged negatives.
    """
    out = candidates.copy()
    score = out["score"].to_numpy(dtype=float)
    pos = out["pos_score"].to_numpy(dtype=float)
    reasons = _filter_reasons(spec, score, pos, judged)
    eligible_mask = reasons == ""
    groups = pd.factorize(out["query_id"])[0]
    keys = _selection_keys(spec, out, score, pos)
    kept = np.zeros(len(out), dtype=bool)
    kept[_top_k_per_group(groups, keys, np.flatnonzero(eligible_mask), spec.num_negatives)] = True
    reasons[eligible_mask & kept] = f"kept:{spec.selector}"
    reasons[eligible_mask & ~kept] = f"unselected:{spec.selector}"
    out["kept"] = kept
    out["rule"] = reasons
    return out


def summarise(candidates: pd.DataFrame, spec: RuleSpec, query_ids: list[str] | None = None) -> dict:
    """Counts a user needs to judge a rule: kept per query and how many queries fall short of N."""
    per_query = candidates.groupby("query_id")["kept"].sum()
    if query_ids is not None:
        per_query = per_query.reindex(query_ids, fill_value=0)
    return {
        "queries": int(len(per_query)),
        "candidates": int(len(candidates)),
        "kept": int(candidates["kept"].sum()),
        "short_queries": int((per_query < spec.num_negatives).sum()),
        "mean_kept_per_query": float(per_query.mean()) if len(per_query) else 0.0,
    }
