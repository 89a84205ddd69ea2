"""The hard-negative mining rules, each declared once, applied as pure functions over stored candidates.

A rule is a *filter* (abs, marginpos, percpos: drop candidates scored too close to the positive; ce, cemargin: drop
candidates a cross-encoder teacher scores as relevant) or a *selector*
(top-k, rank range, SimANS: pick k of the candidates left). A ``RuleSpec`` names a headline rule and gives every
registered parameter a value: all filters whose threshold is set apply (the headline filter always does), then one
selector (the headline rule if it is one, else top-k). Everything works on the candidate table alone, so changing a
rule never re-encodes.

Each declaration below holds a rule's parameters (types, defaults, ranges), its formula, a one-line summary, its
chart threshold lines and its description; the ``mine`` / ``rerule`` options, the Mine page widgets, the charts and
``RuleSpec.describe`` are generated from them, so adding a rule is one declaration passed to ``register``.

Notation: s = a candidate's cosine score, s_P = its query's weakest labelled positive score, rank = 1 for the best
candidate that is not a positive, k = ``num_negatives``.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from core.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_SELECTOR = "top"
_HOLDS = {"at least": operator.ge, "above": operator.gt, "below": operator.lt}


@dataclass(frozen=True)
class Param:
    """One rule parameter. Its CLI option is ``--name-with-dashes``; widgets and messages use ``words``.

    ``default`` is the value when it is not given (None for a filter threshold: the filter is off). Bounds are
    checked for every spec: ``low`` inclusive, ``above`` and ``below`` exclusive. ``step`` and ``start`` (the
    widget's value while the parameter is None) only shape the Mine page widget.
    """

    name: str
    type: type
    default: object
    help: str
    label: str = ""
    low: float | None = None
    above: float | None = None
    below: float | None = None
    step: float | None = None
    start: float | None = None

    @property
    def words(self) -> str:
        return self.name.replace("_", " ")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, value: object) -> object:
        """``value`` as this parameter's type, or a UserError in parameter words; None stays None (off)."""
        if value is None:
            if self.default is not None:
                raise UserError(f"{self.words} must be given")
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                raise UserError(f"{self.words} must be true or false, not {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN ≠ NaN
            raise UserError(f"{self.words} must be a number, not {value!r}")
        if self.type is int:
            if not float(value).is_integer():
                raise UserError(f"{self.words} must be a whole number, not {value!r}")
            value = int(value)
        else:
            value = float(value)
        limits = [(word, bound) for word, bound in (("at least", self.low), ("above", self.above),
                                                    ("below", self.below)) if bound is not None]
        if not all(_HOLDS[word](value, bound) for word, bound in limits):
            raise UserError(f"{self.words} must be {' and '.join(f'{w} {b:g}' for w, b in limits)} (got {value:g})")
        return value


class Rule:
    """A mining rule: ``name`` (what ``--rule`` takes), a one-line ``summary`` and its ``params``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    params: tuple[Param, ...] = ()

    def check(self, values: dict) -> None:
        """Refuse a combination of parameter values (each value is already within its own bounds)."""

    def option_help(self, param: Param) -> str:
        """What ``param`` (one of this rule's) does, for ``param_help``."""
        return f"{self.name}: {param.help}."


class Filter(Rule):
    """A rule that drops candidates. It applies whenever its threshold is set, with any selector."""

    threshold: ClassVar[Param]
    named_default: ClassVar[float | None] = None  # the threshold when this is the headline rule (None: must be given)
    reads: ClassVar[tuple[str, ...]] = ()  # candidate columns beyond score and s_P, joined by core.mining (e.g. ce)
    reads_scores: ClassVar[tuple[str, ...]] = ("score", "pos_score")  # of score and s_P, which it compares (a run
    # imported without them refuses it: core.run_import.require_scores)

    @property
    def params(self) -> tuple[Param, ...]:
        return (self.threshold,)

    def keep(self, t: float, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Mask of the candidates that pass under threshold ``t``."""
        raise NotImplementedError

    def label(self, t: float) -> str:
        """This filter's part of ``RuleSpec.describe``."""
        raise NotImplementedError

    def lines(self, t: float, pos: np.ndarray, axis: str) -> list[tuple[float, str]]:
        """(x, label) of the cut on the ``score``, ``margin`` or ``ce`` axis, for queries whose s_P are ``pos``."""
        return []

    def option_help(self, param: Param) -> str:
        default = "" if self.named_default is None else f" ({self.named_default:g} when the rule is {self.name})"
        return f"{self.name}: {param.help}{default}."


class Selector(Rule):
    """A rule that keeps each query's k eligible candidates with the largest keys."""

    samples: ClassVar[bool] = True  # whether the choice is random (then the seed is part of the description)
    reads_scores: ClassVar[tuple[str, ...]] = ()  # of score and s_P, which its keys read (rank-only: none)

    def keys(self, spec: RuleSpec, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """A key per candidate; −inf never selected."""
        raise NotImplementedError

    def label(self, spec: RuleSpec) -> str:
        """This selector's part of ``RuleSpec.describe``."""
        raise NotImplementedError


COMMON = (
    Param("num_negatives", int, 5, "negatives kept per query (k)", label="Negatives per query", low=1),
    Param("seed", int, 0, "seed of the sampling selectors (range, simans)", label="Seed"),
    Param("skip_judged", bool, False, "never keep a candidate judged false negative; refill from the next ones",
          label="Skip judged false negatives"),
)

REGISTRY: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Add a rule; its parameter names must be new (they become CLI options and stored keys)."""
    taken = {p.name for p in parameters()} | {"rule"}
    clash = [p.name for p in rule.params if p.name in taken]
    if rule.name in REGISTRY or clash:
        raise ValueError(f"rule {rule.name!r} or its parameters {clash} are already registered")
    REGISTRY[rule.name] = rule
    return rule


def get(name: str) -> Rule:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown rule {name!r} (use one of {', '.join(REGISTRY)})") from None


def filters() -> list[Filter]:
    return [r for r in REGISTRY.values() if isinstance(r, Filter)]


def parameters() -> list[Param]:
    """Every parameter a RuleSpec holds: the common ones, then each rule's in registration order."""
    return [*COMMON, *(p for rule in REGISTRY.values() for p in rule.params)]


def param_help(param: Param) -> str:
    """What ``param`` does, for its CLI option and its Mine page widget."""
    declared_by = next((r for r in REGISTRY.values() if param in r.params), None)
    return declared_by.option_help(param) if declared_by else f"{param.help[:1].upper()}{param.help[1:]}."


class RuleSpec:
    """A headline rule and a value for every registered parameter, e.g. ``RuleSpec("percpos", num_negatives=3)``.

    Parameters read as attributes (``spec.relative_margin``); unknown parameters, out-of-range values and
    impossible combinations are refused with a UserError in parameter words. A named filter rule without a
    threshold gets its published default. ``to_dict`` / ``from_dict`` are the form stored with each run.
    """

    __slots__ = ("rule", "values")

    def __init__(self, rule: str = DEFAULT_SELECTOR, **values: object) -> None:
        headline = get(rule)
        params = {p.name: p for p in parameters()}
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise UserError(f"unknown rule parameter {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(params)})")
        parsed = {name: p.parse(values.get(name, p.default)) for name, p in params.items()}
        if isinstance(headline, Filter) and parsed[headline.threshold.name] is None:
            if headline.named_default is None:
                raise UserError(f"rule {rule} needs a {headline.threshold.words} ({headline.summary})")
            parsed[headline.threshold.name] = headline.threshold.parse(headline.named_default)
        for declared in REGISTRY.values():
            declared.check(parsed)
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "values", MappingProxyType(parsed))

    def __getattr__(self, name: str) -> object:
        if name != "values" and name in self.values:
            return self.values[name]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a RuleSpec is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    def __repr__(self) -> str:
        return f"RuleSpec({self.describe()!r})"

    @property
    def selector(self) -> Selector:
        headline = REGISTRY[self.rule]
        return headline if isinstance(headline, Selector) else REGISTRY[DEFAULT_SELECTOR]

    def active_filters(self) -> list[tuple[Filter, float]]:
        """The filters that apply, each with its threshold, in registration order."""
        return [(f, self.values[f.threshold.name]) for f in filters() if self.values[f.threshold.name] is not None]

    def reads(self) -> set[str]:
        """The candidate columns beyond score and s_P that the active filters read (``Filter.reads``)."""
        return {column for f, _ in self.active_filters() for column in f.reads}

    def reads_scores(self) -> set[str]:
        """Which of score and s_P (``pos_score``) the rule reads (``reads_scores`` of its filters and selector)."""
        return {c for rule in (self.selector, *(f for f, _ in self.active_filters())) for c in rule.reads_scores}

    def to_dict(self) -> dict:
        return {"rule": self.rule, **self.values}

    @classmethod
    def from_dict(cls, data: dict) -> RuleSpec:
        """The spec stored as ``data``; a key that names no parameter is refused, not ignored."""
        data = dict(data)
        return cls(data.pop("rule", DEFAULT_SELECTOR), **data)

    def describe(self) -> str:
        parts = [f.label(t) for f, t in self.active_filters()]
        if self.skip_judged:
            parts.append("skip judged false negatives")
        selector = self.selector
        parts.append(selector.label(self) + (f" seed {self.seed}" if selector.samples else ""))
        return " → ".join(parts)


def sampling_noise(seed: int, query_ids: pd.Series, doc_ids: pd.Series) -> np.ndarray:
    """Gumbel noise that is a pure function of (seed, query, document).

    A query's sample depends only on its own candidates and the seed (never on which other queries exist or their
    order), and the whole run is sampled in a few vectorised passes instead of one random generator per query.
    """
    import pandas as pd  # here, not at the top: the CLI reads the declarations to build its options

    hash_key = hashlib.sha1(str(seed).encode()).hexdigest()[:16]
    # ``.array`` keeps categorical ids categorical: pandas hashes their distinct values once and takes the hashes by
    # code, the same hashes as for the plain strings, without ten million Python strings at 10M candidates
    hashed = pd.util.hash_pandas_object(pd.DataFrame({"q": query_ids.array, "d": doc_ids.array}, copy=False),
                                        index=False, hash_key=hash_key).to_numpy()
    uniform = ((hashed >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return -np.log(-np.log(uniform))


def simans_logits(score: np.ndarray, pos_score: np.ndarray, a: float, b: float) -> np.ndarray:
    """SimANS log-weights: p ∝ exp(−a·(s − s_P − b)²)."""
    return -a * (score - pos_score - b) ** 2


class TopK(Selector):
    """Top-k: keep each query's k best-ranked eligible candidates.

    The classic hard-negative baseline (DPR, ANCE): the hardest negatives the retriever finds, and so the ones
    most often unlabelled positives. Inputs: rank. Example: ``--rule top --num-negatives 5`` keeps ranks 1–5 of
    every query (of those the filters leave).
    """

    name = "top"
    summary = "the k best-ranked candidates"
    samples = False

    def keys(self, spec: RuleSpec, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return -frame["rank"].to_numpy(dtype=float)

    def label(self, spec: RuleSpec) -> str:
        return f"top-{spec.num_negatives}"


class RankRange(Selector):
    """Rank range: k sampled uniformly from the 0-based positions [range_min, range_max).

    The classic baseline of FlagEmbedding's ``hn_mine``: skipping the top ranks trades hardness for fewer false
    negatives. Inputs: rank, seed. Example: ``--rule range --range-min 10 --range-max 100`` draws k negatives
    from ranks 11–100.
    """

    name = "range"
    summary = "k sampled uniformly from rank positions [range min, range max)"
    params = (Param("range_min", int, 10, "first 0-based rank position sampled", label="range min", low=0),
              Param("range_max", int, 100, "rank position where sampling stops (excluded)", label="range max",
                    low=1))

    def check(self, values: dict) -> None:
        if not values["range_min"] < values["range_max"]:
            raise UserError(f"range min must be below range max (got {values['range_min']} and "
                            f"{values['range_max']})")

    def keys(self, spec: RuleSpec, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        position = frame["rank"].to_numpy(dtype=float) - 1
        inside = (position >= spec.range_min) & (position < spec.range_max)
        return np.where(inside, sampling_noise(spec.seed, frame["query_id"], frame["doc_id"]), -np.inf)

    def label(self, spec: RuleSpec) -> str:
        return f"{spec.num_negatives} from ranks [{spec.range_min},{spec.range_max})"


class Abs(Filter):
    """TopK-Abs: keep candidates with s < τ.

    NV-Retriever (Moreira et al., 2024, arXiv 2407.15831): an absolute ceiling on the score, blind to how well the
    query's positive scores. Inputs: score. Example: ``--rule abs --max-score 0.7`` drops every candidate scored
    0.7 or more.
    """

    name = "abs"
    reads_scores = ("score",)
    summary = "keep s < τ"
    threshold = Param("max_score", float, None, "keep candidates with score s < τ", label="τ (max score)",
                      step=0.01, start=0.8)

    def keep(self, t: float, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return score < t

    def label(self, t: float) -> str:
        return f"abs s<{t:g}"

    def lines(self, t: float, pos: np.ndarray, axis: str) -> list[tuple[float, str]]:
        if axis == "score":
            return [(t, f"abs s<{t:g}")]
        return [(float(np.median(t - pos)), f"abs s<{t:g} (median query)")]


class MarginPos(Filter):
    """TopK-MarginPos: keep candidates with s < s_P − m.

    NV-Retriever (Moreira et al., 2024, arXiv 2407.15831): a negative must score at least m below the query's
    weakest positive. Inputs: score, s_P. Example: ``--rule marginpos --absolute-margin 0.05`` with s_P = 0.8
    keeps s < 0.75.
    """

    name = "marginpos"
    summary = "keep s < s_P − m"
    named_default = 0.05
    threshold = Param("absolute_margin", float, None, "keep s < s_P − m", label="m (absolute margin)",
                      step=0.005, start=named_default)

    def keep(self, t: float, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return score < pos - t

    def label(self, t: float) -> str:
        return f"marginpos s<s_P−{t:g}"

    def lines(self, t: float, pos: np.ndarray, axis: str) -> list[tuple[float, str]]:
        if axis == "margin":
            return [(-t, f"marginpos −{t:g}")]
        return [(float(np.median(pos)) - t, f"marginpos −{t:g} (median query)")]


class PercPos(Filter):
    """TopK-PercPos: keep candidates with s < s_P − |s_P|·m.

    NV-Retriever (Moreira et al., 2024, arXiv 2407.15831), its recommended rule: the margin is a fraction of the
    positive's score (m = 0.05 keeps s < 95 % of s_P; |s_P| keeps the cut below s_P when s_P < 0). Inputs: score,
    s_P. Example: ``--rule percpos`` with s_P = 0.8 keeps s < 0.76.
    """

    name = "percpos"
    summary = "keep s < s_P − |s_P|·m"
    named_default = 0.05
    threshold = Param("relative_margin", float, None, "keep s < s_P − |s_P|·m", label="m (relative margin)", low=0,
                      below=1, step=0.005, start=named_default)

    def keep(self, t: float, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return score < pos - np.abs(pos) * t

    def label(self, t: float) -> str:
        return f"percpos s<s_P−|s_P|·{t:g}"

    def lines(self, t: float, pos: np.ndarray, axis: str) -> list[tuple[float, str]]:
        cut = -np.abs(pos) * t
        return [(float(np.median(cut if axis == "margin" else pos + cut)), f"percpos {t:g} (median query)")]


def teacher_scores(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A cross-encoder column of the candidates (``ce`` or ``ce_pos``, joined by core.mining from the stored
    scores), or a UserError when the run has none, or not for every candidate: the rule never guesses a score."""
    if column not in frame:
        raise UserError("the ce rules read cross-encoder scores and this run has none: score it first with "
                        "`python -m core score --run RUN --cross-encoder DIR` (or the Mine page)")
    values = frame[column].to_numpy(dtype=float)
    missing = int(np.isnan(values).sum())
    if missing:
        what = "candidates have" if column == "ce" else "candidates' queries have no scored positive and"
        raise UserError(f"{missing} {what} no cross-encoder score: score the run again with `python -m core "
                        "score` (pairs added since it was scored, e.g. a promoted positive)")
    return values


class CrossEncoderAbs(Filter):
    """RocketQA denoising: keep candidates whose cross-encoder probability p ≤ τ.

    RocketQA (Qu et al., NAACL 2021, "denoised hard negatives"): a cross-encoder, far more accurate than the
    retriever, rescores the mined candidates and those it finds relevant are dropped as likely false negatives;
    the paper keeps only candidates scored below 0.1 (and treats unlabelled ones above 0.9 as positives: here
    suggestions, see core.cross_encoder). p is the stored probability (sigmoid of the logit), so the run must be
    scored first (``python -m core score``). Inputs: p. Example: ``--rule ce --ce-threshold 0.1``.
    """

    name = "ce"
    summary = "keep cross-encoder p ≤ τ"
    named_default = 0.1
    reads = ("ce",)
    reads_scores = ()
    threshold = Param("ce_threshold", float, None, "keep candidates whose cross-encoder probability p ≤ τ",
                      label="τ (max CE probability)", low=0, below=1, step=0.01, start=named_default)

    def keep(self, t: float, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return teacher_scores(frame, "ce") <= t

    def label(self, t: float) -> str:
        return f"ce p≤{t:g}"

    def lines(self, t: float, pos: np.ndarray, axis: str) -> list[tuple[float, str]]:
        return [(t, f"ce p≤{t:g}")] if axis == "ce" else []


class CrossEncoderMargin(Filter):
    """Cross-encoder margin to the positive: keep candidates with p < p_P − m.

    The positive-relative form of RocketQA's filter, as sentence-transformers' ``mine_hard_negatives`` applies its
    margin to cross-encoder scores: a negative must score at least m below its query's weakest labelled positive
    (p_P, the lowest probability among the query's scored positives). Inputs: p, p_P. Example:
    ``--rule cemargin --ce-margin 0.05`` with p_P = 0.9 keeps p < 0.85.
    """

    name = "cemargin"
    summary = "keep cross-encoder p < p_P − m"
    reads = ("ce", "ce_pos")
    reads_scores = ()
    threshold = Param("ce_margin", float, None, "keep candidates whose cross-encoder probability p < p_P − m",
                      label="m (CE margin to p_P)", above=-1, below=1, step=0.01, start=0.05)

    def keep(self, t: float, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return teacher_scores(frame, "ce") < teacher_scores(frame, "ce_pos") - t

    def label(self, t: float) -> str:
        return f"cemargin p<p_P−{t:g}"


class SimANS(Selector):
    """SimANS: k sampled without replacement with p ∝ exp(−a·(s − s_P − b)²).

    SimANS (Zhou et al., EMNLP 2022): favours ambiguous negatives scored near the positive over both the easy
    ones and the (likely false) ones far above it; a sharpens the peak, b shifts it. Sampled as Gumbel-top-k over
    the log-weights. Inputs: score, s_P, seed. Example: ``--rule simans --simans-a 1 --simans-b 0``.
    """

    name = "simans"
    summary = "k sampled with p ∝ exp(−a·(s − s_P − b)²)"
    reads_scores = ("score", "pos_score")
    params = (Param("simans_a", float, 1.0, "peak sharpness a", label="SimANS a", above=0, step=0.1),
              Param("simans_b", float, 0.0, "peak offset b from s_P", label="SimANS b", step=0.01))

    def keys(self, spec: RuleSpec, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        noise = sampling_noise(spec.seed, frame["query_id"], frame["doc_id"])
        return simans_logits(score, pos, spec.simans_a, spec.simans_b) + noise

    def label(self, spec: RuleSpec) -> str:
        return f"SimANS {spec.num_negatives} (a={spec.simans_a:g}, b={spec.simans_b:g})"


for _rule in (TopK(), RankRange(), Abs(), MarginPos(), PercPos(), CrossEncoderAbs(), CrossEncoderMargin(),
              SimANS()):
    register(_rule)


def _filter_reasons(spec: RuleSpec, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray,
                    judged: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """The first filter each candidate fails (judged first) as a code into the returned reasons
    (``filtered:<name>``); code 0 (reason "") marks the eligible ones. Codes, not strings: a 10M-candidate preview
    would otherwise build ten million Python strings."""
    reasons = [""]
    codes = np.zeros(len(score), dtype=np.int8)
    checks = []
    if spec.skip_judged:
        if judged is None:
            raise ValueError("a skip_judged rule needs the judged mask")
        checks.append(("judged", judged))
    checks += [(f.name, ~f.keep(t, frame, score, pos)) for f, t in spec.active_filters()]
    for name, failed in checks:
        reasons.append(f"filtered:{name}")
        codes[(codes == 0) & failed] = len(reasons) - 1
    return codes, reasons


def _top_k_rows(keys: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k largest finite values of each row of ``keys``; of equal values the leftmost win (what a
    stable sort by descending key picks)."""
    if keys.shape[1] == 0:
        return np.zeros(keys.shape, dtype=bool)
    kth = -np.partition(-keys, min(k, keys.shape[1]) - 1, axis=1)[:, min(k, keys.shape[1]) - 1, None]
    above = keys > kth
    tie = keys == kth
    need = k - above.sum(axis=1, keepdims=True)
    return (above | (tie & (np.cumsum(tie, axis=1) <= need))) & np.isfinite(keys)


def _top_k_per_group(groups: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k largest finite keys within each group (``groups``: an integer code per row; ties: the earlier
    row wins).

    Candidates are stored query by query, so each group is a contiguous block: the keys are laid out as one padded
    row per group and cut at each row's k-th largest value (a partition, O(n)), about 20x faster at 10M candidates
    than sorting the run by (group, key). Unordered or very uneven groups are sorted instead.
    """
    n = len(keys)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if n else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, n])
    contiguous = bool(np.all(groups[1:] >= groups[:-1]))  # blocks in ascending code order (else sorted below)
    if n and contiguous and (sizes == sizes[0]).all():  # every query has the same depth: no padding
        return _top_k_rows(keys.reshape(len(starts), sizes[0]), k).ravel()
    if n and contiguous and len(starts) * sizes.max() <= 4 * n:
        row = np.repeat(np.arange(len(starts)), sizes)
        col = np.arange(n) - np.repeat(starts, sizes)
        padded = np.full((len(starts), sizes.max()), -np.inf)
        padded[row, col] = keys
        return _top_k_rows(padded, k)[row, col]
    candidates = np.flatnonzero(np.isfinite(keys))
    order = candidates[np.lexsort((-keys[candidates], groups[candidates]))]
    sorted_groups = groups[order]
    first = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    position = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    mask = np.zeros(n, dtype=bool)
    mask[order[position < k]] = True
    return mask


def apply(spec: RuleSpec, candidates: pd.DataFrame, judged: np.ndarray | None = None) -> pd.DataFrame:
    """Return ``candidates`` with ``kept`` and ``rule`` recomputed under ``spec`` (input order preserved; ``rule``
    is a categorical over the few reasons).

    ``judged`` (one bool per candidate) marks documents a person judged false negative for that query; with
    ``skip_judged`` they are filtered before selection, so each query is refilled to k from its next candidates
    instead of losing the flagged negatives.
    """
    import pandas as pd  # see sampling_noise

    score = candidates["score"].to_numpy(dtype=float)
    pos = candidates["pos_score"].to_numpy(dtype=float)
    codes, reasons = _filter_reasons(spec, candidates, score, pos, judged)
    eligible = codes == 0
    ids = candidates["query_id"]
    groups = ids.cat.codes.to_numpy() if isinstance(ids.dtype, pd.CategoricalDtype) else pd.factorize(ids)[0]
    selector = spec.selector
    keys = np.where(eligible, selector.keys(spec, candidates, score, pos), -np.inf)
    kept = _top_k_per_group(groups, keys, spec.num_negatives)
    reasons += [f"kept:{selector.name}", f"unselected:{selector.name}"]
    codes[eligible] = np.where(kept[eligible], len(reasons) - 2, len(reasons) - 1)
    # every code is now >= 1 (no candidate is left without a reason); pandas copies on write, so the new columns
    # never touch the caller's frame
    return candidates.assign(kept=kept, rule=pd.Categorical.from_codes(codes - 1, categories=reasons[1:]))


def summarise(candidates: pd.DataFrame, spec: RuleSpec, query_ids: list[str] | None = None) -> dict:
    """Counts a user needs to judge a rule: kept per query and how many queries fall short of N."""
    per_query = candidates.groupby("query_id", observed=True)["kept"].sum()
    if query_ids is not None:
        per_query = per_query.reindex(query_ids, fill_value=0)
    return summary_of(per_query.to_numpy(), len(candidates), spec)


def summary_of(kept_per_query: np.ndarray, candidates: int, spec: RuleSpec) -> dict:
    """``summarise``'s counts from each query's number of kept candidates."""
    kept_per_query = np.asarray(kept_per_query)
    return {
        "queries": int(len(kept_per_query)),
        "candidates": int(candidates),
        "kept": int(kept_per_query.sum()),
        "short_queries": int((kept_per_query < spec.num_negatives).sum()),
        "mean_kept_per_query": float(kept_per_query.mean()) if len(kept_per_query) else 0.0,
    }
