"""Run-wide numbers for the Overview, Mine and Team pages, computed over a run's columnar snapshot.

A run of 100,000 queries at depth 100 holds 10M candidates: these functions read only the columns they need
(``Store.run_columns``: ids as integer codes over their distinct values) and aggregate with numpy, so no page
builds a frame of 10M Python strings. Charts take binned counts (``Bins``), never the candidates. What depends
only on the immutable run (histograms, kept per query, candidates above s_P) is computed once per run and
process (``run_shape``); what depends on verdicts looks the few judged pairs up in the run instead.

Scores are cosine similarities s; s_P is the query's weakest labelled positive; margin = s − s_P.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import agreement, labels

if TYPE_CHECKING:
    import pyarrow as pa

    from core.store import Store

BINS = 60  # bars per histogram, as the charts drew them before binning moved to the server
PAIR = ["query_id", "doc_id"]
_SHAPES: OrderedDict[tuple[str, str], RunShape] = OrderedDict()
_SHAPES_KEPT = 16  # runs whose shape stays cached: each is a few arrays of one value per query
_SHAPES_LOCK = threading.Lock()


@dataclass(frozen=True)
class Bins:
    """Counts per group over shared, equal-width bins (``edges`` has one more value than each count array)."""

    edges: np.ndarray
    counts: dict[str, np.ndarray]

    @property
    def width(self) -> float:
        return float(self.edges[1] - self.edges[0])

    @property
    def centres(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    def density(self, group: str) -> np.ndarray:
        """Probability density per bin of one group (its bars integrate to 1, as plotly's histnorm did)."""
        total = self.counts[group].sum()
        return self.counts[group] / (total * self.width) if total else self.counts[group].astype(float)

    def cumulative(self, group: str) -> np.ndarray:
        """Share of the group at or below each bin's upper edge: the ECDF read at the bin edges."""
        total = self.counts[group].sum()
        return np.cumsum(self.counts[group]) / total if total else np.zeros(len(self.counts[group]))


def histogram(groups: dict[str, np.ndarray], bins: int = BINS) -> Bins:
    """Bin each group's values over the same ``bins`` equal-width bins spanning all of them (empty groups kept,
    with zero counts, so every chart legend is stable)."""
    present = [np.asarray(v, dtype=float) for v in groups.values() if len(v)]
    low = min((float(v.min()) for v in present), default=0.0)
    high = max((float(v.max()) for v in present), default=1.0)
    if high - low <= 1e-9 * max(1.0, abs(low), abs(high)):
        # One value, or values so close (5e-324 apart) that equal-width bins would have no width.
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    counts = {name: np.histogram(np.asarray(v, dtype=float), bins=bins, range=(low, high))[0]
              for name, v in groups.items()}
    return Bins(edges, counts)


def kept_margins(score: np.ndarray, pos_score: np.ndarray, kept: np.ndarray) -> Bins:
    """The margin s − s_P of kept and of dropped candidates, binned."""
    margin = np.asarray(score, dtype=float) - np.asarray(pos_score, dtype=float)
    kept = np.asarray(kept, dtype=bool)
    return histogram({"kept": margin[kept], "dropped": margin[~kept]})


def codes(table: pa.Table, column: str) -> tuple[np.ndarray, pa.Array]:
    """Integer codes per row and the distinct values of a dictionary-encoded ``run_columns`` column."""
    import pyarrow as pa

    if not table.num_rows:  # an empty snapshot's dictionary may have no value type at all
        return np.zeros(0, dtype=np.int32), pa.array([], type=pa.string())
    array = table.select([column]).unify_dictionaries()[column].combine_chunks()
    return array.indices.to_numpy(zero_copy_only=False), array.dictionary


def query_starts(query_codes: np.ndarray) -> np.ndarray:
    """The first row of each query in a run's (query, rank) order."""
    return np.flatnonzero(np.r_[True, query_codes[1:] != query_codes[:-1]]) if len(query_codes) else \
        np.zeros(0, dtype=np.int64)


def per_query_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The sum of ``values`` over each query's rows (``starts`` from ``query_starts``)."""
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    return np.add.reduceat(np.asarray(values, dtype=np.int64), starts)


@dataclass(frozen=True)
class AboveWeakestPositive:
    """Candidates that score above their query's weakest labelled positive: the likeliest false negatives."""

    candidates: int
    share: float
    queries: int
    kept: int


@dataclass(frozen=True)
class RunShape:
    """What a run's immutable columns say, once per run: its size, s_P per query, kept per query, the binned
    scores (kept / dropped candidates and positives) and margins, and the candidates above s_P."""

    candidates: int
    kept: int
    pos_scores: np.ndarray  # s_P per query, in query order (for the rules' threshold lines)
    kept_per_query: np.ndarray
    scores: Bins  # groups kept, dropped, positive (s_P)
    margins: Bins  # groups kept, dropped
    above: AboveWeakestPositive


def _shape(store: Store, run_id: str) -> RunShape:
    table = store.run_columns(run_id, ["query_id", "score", "pos_score", "kept"])
    query, _ = codes(table, "query_id")
    score = table["score"].to_numpy().astype(float, copy=False)
    pos = table["pos_score"].to_numpy().astype(float, copy=False)
    kept = table["kept"].to_numpy().astype(bool, copy=False)
    starts = query_starts(query)
    above = score > pos
    n_above = int(above.sum())
    return RunShape(
        candidates=len(score), kept=int(kept.sum()), pos_scores=pos[starts],
        kept_per_query=per_query_sum(kept, starts),
        scores=histogram({"kept": score[kept], "dropped": score[~kept], "positive (s_P)": pos[starts]}),
        margins=kept_margins(score, pos, kept),
        above=AboveWeakestPositive(n_above, n_above / len(score) if len(score) else 0.0,
                                   int((per_query_sum(above, starts) > 0).sum()), int((above & kept).sum())))


SHAPE_FILE = "shape-v1.npz"  # the suffix of a run's stored RunShape (bump the version when RunShape changes)


def _save_shape(path: Path, shape: RunShape) -> None:
    """Store a shape atomically (a temporary sibling renamed into place); a full or read-only disk only costs the
    next process the recomputation, so it is not an error."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    above = shape.above
    try:
        path.parent.mkdir(exist_ok=True)
        with tmp.open("wb") as out:
            np.savez(out, candidates=shape.candidates, kept=shape.kept, pos_scores=shape.pos_scores,
                     kept_per_query=shape.kept_per_query, above=np.array([above.candidates, above.queries,
                                                                          above.kept]),
                     above_share=above.share, groups=np.array(list(shape.scores.counts)),
                     score_edges=shape.scores.edges, score_counts=np.array(list(shape.scores.counts.values())),
                     margin_groups=np.array(list(shape.margins.counts)), margin_edges=shape.margins.edges,
                     margin_counts=np.array(list(shape.margins.counts.values())))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _load_shape(path: Path) -> RunShape | None:
    """A stored shape, or None when there is none or it cannot be read (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            above = f["above"]
            return RunShape(
                candidates=int(f["candidates"]), kept=int(f["kept"]), pos_scores=f["pos_scores"],
                kept_per_query=f["kept_per_query"],
                scores=Bins(f["score_edges"], dict(zip(f["groups"].tolist(), f["score_counts"]))),
                margins=Bins(f["margin_edges"], dict(zip(f["margin_groups"].tolist(), f["margin_counts"]))),
                above=AboveWeakestPositive(int(above[0]), float(f["above_share"]), int(above[1]), int(above[2])))
    except (OSError, KeyError, ValueError):
        return None


def run_shape(store: Store, run_id: str) -> RunShape:
    """The run's ``RunShape``, computed once per run and stored beside its snapshot (runs are immutable; a derived
    run has its own kept flags, so its own file), then kept for the process: a page opened in a fresh server
    reads a few kilobytes instead of a 10M-candidate run."""
    key = (str(store.path), run_id)
    with _SHAPES_LOCK:
        if key in _SHAPES:
            _SHAPES.move_to_end(key)
            return _SHAPES[key]
    path = store.run_file(run_id, SHAPE_FILE)
    shape = _load_shape(path) if path.exists() else None
    if shape is None:
        shape = _shape(store, run_id)
        _save_shape(path, shape)
    with _SHAPES_LOCK:
        _SHAPES[key] = shape
        while len(_SHAPES) > _SHAPES_KEPT:
            _SHAPES.popitem(last=False)
    return shape


def pair_rows(table: pa.Table, pairs: pd.DataFrame) -> np.ndarray:
    """For each (query_id, doc_id) row of ``pairs``, its row in ``table`` (``run_columns`` with query_id and
    doc_id), or −1 where the pair is no candidate of the run. Queries match on integer codes; only the rows of
    the pairs' queries get their document ids decoded, so a few verdicts cost one pass over the query codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pairs.empty:
        return np.zeros(0, dtype=np.int64)
    query, query_values = codes(table, "query_id")
    found = pc.index_in(pa.array(pairs["query_id"].astype(str).tolist(), type=pa.string()),
                        value_set=query_values.cast(pa.string()))
    want_q = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    wanted = np.zeros(len(query_values), dtype=bool)
    wanted[want_q[want_q >= 0]] = True
    rows = np.flatnonzero(wanted[query])
    if not len(rows):
        return np.full(len(pairs), -1, dtype=np.int64)
    docs = table["doc_id"].take(pa.array(rows)).cast(pa.string()).to_numpy(zero_copy_only=False)
    keys = pd.MultiIndex.from_arrays([query[rows].astype(np.int64), docs])
    position = keys.get_indexer(pd.MultiIndex.from_arrays([want_q, pairs["doc_id"].astype(str).to_numpy()]))
    return np.where(position >= 0, rows[np.maximum(position, 0)], -1)


def pair_mask(table: pa.Table, pairs: pd.DataFrame) -> np.ndarray:
    """One bool per row of ``table``: whether its (query, document) is one of ``pairs``."""
    rows = pair_rows(table, pairs)
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[rows[rows >= 0]] = True
    return mask


def judged_on_run(store: Store, run_id: str, verdicts: pd.DataFrame) -> pd.DataFrame:
    """The ``verdicts`` (query_id, doc_id, label …) whose pair is a candidate of the run, with that candidate's
    kept flag, score and s_P: what joining the whole run to its verdicts kept, read one judged query at a time by
    the (run, query) index, so it costs what was judged, not the run's size."""
    columns = [*verdicts.columns, "kept", "score", "pos_score"]
    queries = verdicts["query_id"].drop_duplicates().tolist()
    found = [store.candidates(run_id, query_id, with_signals=False, with_risk=False) for query_id in queries]
    found = [frame for frame in found if len(frame)]
    if not found:
        return pd.DataFrame(columns=columns)
    candidates = pd.concat(found, ignore_index=True)[[*PAIR, "kept", "score", "pos_score"]]
    out = verdicts.merge(candidates, on=PAIR, how="inner")
    out["kept"] = out["kept"].astype(bool)
    return out[columns].reset_index(drop=True)


def verdict_table(shape: RunShape, judged: pd.DataFrame) -> pd.DataFrame:
    """Resolved verdict (rows, ``unjudged`` for the rest of the run) × kept / dropped by the run's rule, with
    totals: the crosstab of every candidate of the run, counted from the judged ones and the run's totals."""
    rows = {label: [int((~kept).sum()), int(kept.sum())]
            for label, kept in judged["kept"].astype(bool).groupby(judged["label"])}
    judged_dropped, judged_kept = (sum(row[i] for row in rows.values()) for i in (0, 1))
    rows["unjudged"] = [shape.candidates - shape.kept - judged_dropped, shape.kept - judged_kept]
    counts = pd.DataFrame.from_dict(rows, orient="index", columns=["dropped", "kept"], dtype=np.int64)
    counts = counts.loc[counts.sum(axis=1) > 0, counts.sum(axis=0) > 0].sort_index()
    counts.loc["total"] = counts.sum()
    counts["total"] = counts.sum(axis=1)
    counts.index.name, counts.columns.name = "label", "rule"
    return counts


def verdict_margins(judged: pd.DataFrame) -> Bins:
    """The margin s − s_P of the run's judged candidates (``judged_on_run``), binned per verdict."""
    margin = (judged["score"] - judged["pos_score"]).to_numpy(dtype=float)
    label = judged["label"].to_numpy()
    return histogram({name: margin[label == name] for name in sorted(set(label))})


def kept_progress(store: Store, dataset: str, run_id: str) -> tuple[pd.DataFrame, int]:
    """Each annotator's progress (``agreement.annotator_progress``) over the run's kept candidates, and how many
    those are: only the pairs someone judged are looked up in the run, never its million kept pairs; ``share``
    is done over every kept candidate of the run."""
    judged = judged_on_run(store, run_id, labels.current(store, dataset)[PAIR].drop_duplicates())
    total = run_shape(store, run_id).kept
    progress = agreement.annotator_progress(store, dataset, judged.loc[judged["kept"], PAIR])
    if not progress.empty:
        progress["share"] = progress["done"] / total if total else math.nan
    return progress, total


def survivors(kept_before: np.ndarray, kept_after: np.ndarray) -> pd.DataFrame:
    """How many queries keep 0, 1, 2 … negatives before and after a rule change: columns kept, before, after."""
    top = int(max(np.max(kept_before, initial=0), np.max(kept_after, initial=0)))
    return pd.DataFrame({"kept": np.arange(top + 1),
                         "before": np.bincount(np.asarray(kept_before, dtype=np.int64), minlength=top + 1),
                         "after": np.bincount(np.asarray(kept_after, dtype=np.int64), minlength=top + 1)})
