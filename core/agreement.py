"""Inter-annotator agreement on false-negative verdicts, the disagreement queue and per-annotator progress.

Agreement is computed over each annotator's *current independent* verdict per (query, document): undone events
are gone and adjudications are left out, because an adjudicator's final word is a resolution, not a second
opinion. Labels (false_negative, true_negative, unsure) are nominal categories.

- Pairwise Cohen's κ: ``sklearn.metrics.cohen_kappa_score`` on the items both annotators judged.
- Overall Krippendorff's α: ``krippendorff.alpha(level_of_measurement='nominal')`` over every annotator, with
  missing verdicts as NaN; items judged by fewer than two people are unpairable and do not change α, so they are
  left out of the matrix (same value, less memory on large datasets).

Where a statistic is undefined the value is None (NaN in frames) with a reason, never a made-up number:
no items in common (no overlap), only one annotator, or only one label used on the shared items (chance
agreement is then 1 and both κ and α divide by zero, even when the annotators agree completely).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import labels

if TYPE_CHECKING:
    from core.store import Store

PAIR = ["query_id", "doc_id"]
PAIR_COLUMNS = ["a", "b", "items", "observed", "kappa", "reason"]
NO_OVERLAP = "no items judged by both"
ONE_LABEL = "only one label used on the shared items (chance agreement is 1), so it is undefined"
ONE_ANNOTATOR = "needs verdicts from at least two annotators"
NO_SHARED = "no item was judged by two or more annotators"
LABEL_CODE = {label: code for code, label in enumerate(labels.LABELS)}  # krippendorff wants numbers


@dataclass(frozen=True)
class Agreement:
    """Agreement over one set of verdicts (a dataset or one query).

    ``pairs`` has one row per annotator pair: a, b, items (judged by both), observed (share of those with the
    same label), kappa (NaN when undefined) and reason (why it is undefined, else None).
    """

    annotators: list[str]
    pairs: pd.DataFrame
    alpha: float | None
    alpha_reason: str | None
    items: int  # distinct (query, document) pairs with at least one verdict
    shared_items: int  # ... judged by two or more annotators
    own_items: dict[str, int]  # items each annotator judged

    def matrix(self, value: str = "kappa") -> pd.DataFrame:
        """Square annotator × annotator frame of ``kappa``, ``observed`` or ``items``; the diagonal is NaN for the
        ratios (self-agreement says nothing) and the annotator's own item count for ``items``."""
        names = self.annotators
        out = pd.DataFrame(np.nan, index=names, columns=names, dtype=float)
        for row in self.pairs.itertuples(index=False):
            out.loc[row.a, row.b] = out.loc[row.b, row.a] = getattr(row, value)
        if value == "items":
            for name, count in self.own_items.items():
                out.loc[name, name] = count
        return out


KAPPA_BANDS = ((0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial"),
               (1.0, "almost perfect"))  # (highest κ of the band, its name) above 0; below 0: poor
ALPHA_BANDS = ((0.667, "too low to rely on"), (0.8, "tentative"))  # (α where the next band starts, this band)


def reading(statistic: str, value: float | None) -> str | None:
    """A κ or α value in words, so the Team page's numbers say whether the verdicts can be trusted by someone who
    does not know the scales; None where the value is undefined.

    ``statistic`` is ``"kappa"`` (Cohen's κ), read with Landis & Koch's (1977) bands: below 0 poor, 0–0.20 slight,
    0.21–0.40 fair, 0.41–0.60 moderate, 0.61–0.80 substantial, 0.81–1 almost perfect agreement (a band's upper
    bound belongs to it). Or ``"alpha"`` (Krippendorff's α), read with Krippendorff's (2004, *Content Analysis*,
    2nd ed.) thresholds for relying on data: below 0.667 too low to rely on, 0.667 up to 0.8 tentative, 0.8 and
    above reliable.
    """
    if value is None or math.isnan(value):
        return None
    if statistic == "kappa":
        band = "poor" if value < 0 else next((words for top, words in KAPPA_BANDS if value <= top), "almost perfect")
        return f"{band} agreement"
    if statistic == "alpha":
        return next((words for start, words in ALPHA_BANDS if value < start), "reliable")
    raise ValueError(f"unknown statistic {statistic!r} (kappa or alpha)")


def scale(statistic: str) -> str:
    """The bands ``reading`` uses for ``"kappa"`` or ``"alpha"``, in words with their source: the legend a page
    shows beside the readings, generated here so the bands are written down once."""
    if statistic == "kappa":
        return ("Landis & Koch (1977): below 0 poor, " + ", ".join(f"up to {top:g} {words}" for top, words in
                                                                    KAPPA_BANDS) + " agreement")
    if statistic == "alpha":
        return ("Krippendorff (2004): " + ", ".join(f"below {start:g} {words}" for start, words in ALPHA_BANDS)
                + f", {ALPHA_BANDS[-1][0]:g} and above reliable")
    raise ValueError(f"unknown statistic {statistic!r} (kappa or alpha)")


def independent_verdicts(store: Store, dataset: str, query_id: str | None = None) -> pd.DataFrame:
    """Current independent verdicts: columns query_id, doc_id, annotator, label (adjudications excluded)."""
    frame = labels.current(store, dataset, kind="verdict")
    if query_id is not None:
        frame = frame[frame["query_id"] == query_id]
    return frame[PAIR + ["annotator", "label"]].reset_index(drop=True)


def kappa(a: list[str], b: list[str]) -> tuple[float | None, str | None]:
    """Cohen's κ of two aligned label lists, or (None, reason) where it is undefined."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return None, NO_OVERLAP
    if len(set(a) | set(b)) == 1:
        return None, ONE_LABEL
    return float(cohen_kappa_score(a, b, labels=list(labels.LABELS))), None


def alpha(table: pd.DataFrame) -> tuple[float | None, str | None]:
    """Krippendorff's α (nominal) of an items × annotators table of labels (NaN = not judged)."""
    import krippendorff

    if table.shape[1] < 2:
        return None, ONE_ANNOTATOR
    shared = table[table.notna().sum(axis=1) >= 2]
    if shared.empty:
        return None, NO_SHARED
    codes = shared.apply(lambda col: col.map(LABEL_CODE)).to_numpy(dtype=float).T
    if len(np.unique(codes[~np.isnan(codes)])) < 2:
        return None, ONE_LABEL
    return float(krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal")), None


def agreement(frame: pd.DataFrame) -> Agreement:
    """κ for every annotator pair and α overall, from verdicts with columns query_id, doc_id, annotator, label."""
    table = frame.pivot(index=PAIR, columns="annotator", values="label") if not frame.empty else pd.DataFrame()
    names = sorted(map(str, table.columns))
    rows = []
    for a, b in combinations(names, 2):
        both = table[[a, b]].dropna()
        value, reason = kappa(both[a].tolist(), both[b].tolist())
        observed = float((both[a] == both[b]).mean()) if len(both) else math.nan
        rows.append((a, b, len(both), observed, math.nan if value is None else value, reason))
    value, reason = alpha(table)
    shared = int((table.notna().sum(axis=1) >= 2).sum()) if names else 0
    return Agreement(names, pd.DataFrame(rows, columns=PAIR_COLUMNS), value, reason, len(table), shared,
                     {n: int(table[n].notna().sum()) for n in names})


def dataset_agreement(store: Store, dataset: str, query_id: str | None = None) -> Agreement:
    """Agreement over a whole dataset, or over one query's verdicts."""
    return agreement(independent_verdicts(store, dataset, query_id))


def llm_agreement(result: Agreement) -> pd.DataFrame:
    """Each LLM judge against each person (annotator pairs with exactly one ``llm:`` side), from ``result.pairs``:
    columns judge, person, items, observed, kappa, reason. How far a model's verdicts can stand in for a person's
    is measured here, on the pairs both judged, never assumed."""
    columns = ["judge", "person", "items", "observed", "kappa", "reason"]
    pairs = result.pairs
    a_llm, b_llm = pairs["a"].map(labels.is_llm).astype(bool), pairs["b"].map(labels.is_llm).astype(bool)
    mixed = pairs[a_llm != b_llm]
    flipped = b_llm[a_llm != b_llm]
    out = mixed.assign(judge=mixed["a"].where(~flipped, mixed["b"]), person=mixed["b"].where(~flipped, mixed["a"]))
    return out[columns].sort_values(["judge", "person"]).reset_index(drop=True)


def agreement_by_query(store: Store, dataset: str) -> pd.DataFrame:
    """One row per query with verdicts: annotators, items, shared_items, observed (mean over pairs with overlap),
    alpha and alpha_reason; least agreement first, so the page lists the queries that need attention on top."""
    columns = ["query_id", "annotators", "items", "shared_items", "observed", "alpha", "alpha_reason"]
    rows = []
    for query_id, group in independent_verdicts(store, dataset).groupby("query_id", sort=True):
        result = agreement(group)
        overlapping = result.pairs[result.pairs["items"] > 0]
        observed = float(overlapping["observed"].mean()) if len(overlapping) else math.nan
        rows.append((query_id, len(result.annotators), result.items, result.shared_items, observed,
                     math.nan if result.alpha is None else result.alpha, result.alpha_reason))
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["observed", "query_id"], na_position="last").reset_index(drop=True)


def disagreements(store: Store, dataset: str, llm: bool = True) -> pd.DataFrame:
    """The adjudication queue: pairs whose current independent verdicts differ and that no active adjudication
    settles. Columns query_id, doc_id, verdicts ({annotator: label}), notes ({annotator: note}, only those who
    wrote one: the reasons an adjudicator weighs), labels (distinct, sorted), annotators, last_at (latest verdict
    time); oldest disagreement first, so nothing waits forever. ``llm=False`` leaves LLM
    judges out (what an export that ignores their verdicts has to settle)."""
    columns = ["query_id", "doc_id", "verdicts", "notes", "labels", "annotators", "last_at"]
    current = labels.current(store, dataset, kind="verdict")
    if not llm:
        current = current[~current["annotator"].map(labels.is_llm).astype(bool)]
    if current.empty:
        return pd.DataFrame(columns=columns)
    split = current.groupby(PAIR)["label"].nunique()
    split = split[split > 1].index
    settled = labels.current(store, dataset, kind="adjudication").set_index(PAIR).index
    open_pairs = split.difference(settled)
    if open_pairs.empty:
        return pd.DataFrame(columns=columns)
    rows = current.set_index(PAIR).loc[open_pairs].reset_index().sort_values("annotator")
    grouped = rows.groupby(PAIR, sort=False)
    out = pd.DataFrame({
        "verdicts": grouped.apply(lambda g: dict(zip(g["annotator"], g["label"])), include_groups=False),
        "notes": grouped.apply(lambda g: {a: n for a, n in zip(g["annotator"], g["note"]) if isinstance(n, str)
                                          and n}, include_groups=False),
        "labels": grouped["label"].agg(lambda s: sorted(set(s))),
        "annotators": grouped.size(),
        "last_at": grouped["created_at"].max(),
    }).reset_index()
    return out.sort_values(["last_at", "query_id", "doc_id"])[columns].reset_index(drop=True)


def annotator_progress(store: Store, dataset: str, targets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per annotator: current verdicts by label, judged, events, undos, adjudications, last_at and, given
    ``targets`` (query_id, doc_id rows, e.g. a run's kept candidates), how many of them they judged (done) and
    the share (done / total)."""
    count_cols = list(labels.LABELS)
    columns = ["annotator", *count_cols, "judged", "events", "undos", "adjudications", "last_at"]
    if targets is not None:
        columns += ["done", "share"]
    events = store.events(dataset)
    if events.empty:
        return pd.DataFrame(columns=columns)
    current = labels.current(store, dataset, kind="verdict")
    counts = (current.pivot_table(index="annotator", columns="label", values="id", aggfunc="count")
              .reindex(columns=count_cols).fillna(0).astype(int))
    by_person = events.groupby("annotator")
    out = pd.DataFrame({
        "events": by_person.size(),
        "undos": by_person["kind"].agg(lambda k: int((k == "undo").sum())),
        "adjudications": by_person["kind"].agg(lambda k: int((k == "adjudication").sum())),
        "last_at": by_person["created_at"].max(),
    }).join(counts).fillna({c: 0 for c in count_cols})
    out[count_cols] = out[count_cols].astype(int)
    out["judged"] = out[count_cols].sum(axis=1)
    if targets is not None:
        wanted = pd.MultiIndex.from_frame(targets[PAIR].drop_duplicates())
        judged = current.set_index(PAIR)
        done = judged[judged.index.isin(wanted)].groupby("annotator").size()
        out["done"] = done.reindex(out.index).fillna(0).astype(int)
        out["share"] = out["done"] / len(wanted) if len(wanted) else math.nan
    return out.rename_axis("annotator").reset_index()[columns]
