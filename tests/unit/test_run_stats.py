"""core.run_stats against the pandas code the pages ran before (kept here as the oracle), on the real mined run
and a run derived from it by another rule: the same numbers, from the snapshot's integer codes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core import agreement, labels, run_stats
from core.mining import derive_run
from core.rules import RuleSpec

PAIR = ["query_id", "doc_id"]


@pytest.fixture
def runs(mined, ws_root):
    """A private copy of the mined run, a percpos run derived from it, and verdicts: kept and dropped candidates
    of both, by two annotators who disagree once, plus a pair that is no candidate of the run."""
    from core.workspace import open_workspace

    store = open_workspace(ws_root).store()
    base = mined[2].run_id
    derived = derive_run(store, base, RuleSpec("percpos", num_negatives=2)).run_id
    cands = store.candidates(base, with_signals=False)
    kept, dropped = cands[cands.kept], cands[~cands.kept]
    pairs = list(zip(kept.query_id, kept.doc_id))[:4] + list(zip(dropped.query_id, dropped.doc_id))[:3]
    for pair, label in zip(pairs, ["false_negative", "true_negative", "unsure", "false_negative",
                                   "true_negative", "false_negative", "unsure"]):
        labels.record(store, "tiny", *pair, "ana", label)
    labels.record(store, "tiny", *pairs[0], "bob", "true_negative")
    labels.record(store, "tiny", "q1", "no-such-doc", "bob", "unsure")
    yield store, [base, derived]
    store.close()


def old_above(candidates: pd.DataFrame) -> tuple[int, float, int, int]:
    """Before: core.review.above_weakest_positive on the run's candidate frame."""
    above = candidates[candidates["score"] > candidates["pos_score"]]
    return (len(above), len(above) / len(candidates) if len(candidates) else 0.0, int(above["query_id"].nunique()),
            int(above["kept"].sum()))


def old_crosstab(candidates: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """Before: the Overview page's verdict breakdown over the whole run."""
    judged = candidates.merge(verdicts[["query_id", "doc_id", "label"]], on=["query_id", "doc_id"], how="left")
    judged["label"] = judged["label"].fillna("unjudged")
    return pd.crosstab(judged["label"], pd.Series(judged["kept"].map({True: "kept", False: "dropped"}), name="rule"),
                       margins=True, margins_name="total")


def test_run_shape_equals_the_pandas_computation(runs):
    store, run_ids = runs
    for run_id in run_ids:
        cands = store.candidates(run_id, with_signals=False)
        shape = run_stats.run_shape(store, run_id)
        assert (shape.candidates, shape.kept) == (len(cands), int(cands.kept.sum()))
        pos = cands.drop_duplicates("query_id")["pos_score"].to_numpy()
        np.testing.assert_array_equal(shape.pos_scores, pos)
        np.testing.assert_array_equal(shape.kept_per_query,
                                      cands.groupby("query_id", sort=True)["kept"].sum().to_numpy())
        margin = cands.score - cands.pos_score
        groups = {"scores": {"kept": cands.score[cands.kept], "dropped": cands.score[~cands.kept],
                             "positive (s_P)": pos},
                  "margins": {"kept": margin[cands.kept], "dropped": margin[~cands.kept]}}
        for name, old in groups.items():
            bins = getattr(shape, name)
            everything = np.concatenate([np.asarray(v) for v in old.values()])
            assert bins.edges[0] == everything.min() and bins.edges[-1] == pytest.approx(everything.max())
            assert len(bins.edges) == run_stats.BINS + 1
            for group, values in old.items():
                np.testing.assert_array_equal(bins.counts[group], np.histogram(values, bins.edges)[0])
                assert bins.counts[group].sum() == len(values)
                assert (bins.density(group) * bins.width).sum() == pytest.approx(1.0)
                assert bins.cumulative(group)[-1] == pytest.approx(1.0)
        above = shape.above
        assert (above.candidates, above.share, above.queries, above.kept) == pytest.approx(old_above(cands))
    assert run_stats.run_shape(store, run_ids[0]) is run_stats.run_shape(store, run_ids[0]), "cached per run"


def _same_shape(a: run_stats.RunShape, b: run_stats.RunShape) -> bool:
    bins_equal = all(np.array_equal(x.edges, y.edges) and x.counts.keys() == y.counts.keys()
                     and all(np.array_equal(x.counts[g], y.counts[g]) for g in x.counts)
                     for x, y in ((a.scores, b.scores), (a.margins, b.margins)))
    return (bins_equal and (a.candidates, a.kept, a.above) == (b.candidates, b.kept, b.above)
            and np.array_equal(a.pos_scores, b.pos_scores) and np.array_equal(a.kept_per_query, b.kept_per_query))


def test_a_run_shape_is_stored_when_the_run_is_made_and_read_back_by_a_new_process(runs, monkeypatch):
    store, run_ids = runs
    base, derived = run_ids
    assert store.run_file(derived, run_stats.SHAPE_FILE).exists(), "a run stores its shape as it is saved"
    run_stats.run_shape(store, base)  # this copy of the mined workspace has no snapshots: made on first use
    assert store.run_file(base, run_stats.SHAPE_FILE).exists()
    fresh = {run_id: run_stats._shape(store, run_id) for run_id in run_ids}
    monkeypatch.setattr(run_stats, "_SHAPES", type(run_stats._SHAPES)())  # a new process: nothing in memory
    computed = []
    monkeypatch.setattr(run_stats, "_shape", lambda *args: computed.append(args) or fresh[args[1]])
    for run_id in run_ids:
        assert _same_shape(run_stats.run_shape(store, run_id), fresh[run_id])
    assert computed == [], "read from the stored file, not recomputed"
    damaged = store.run_file(run_ids[1], run_stats.SHAPE_FILE)
    damaged.write_bytes(b"not an npz file")
    monkeypatch.setattr(run_stats, "_SHAPES", type(run_stats._SHAPES)())
    assert _same_shape(run_stats.run_shape(store, run_ids[1]), fresh[run_ids[1]])
    assert len(computed) == 1 and damaged.read_bytes() != b"not an npz file", "recomputed and stored again"


def test_above_weakest_positive_counts_ties_as_not_above(tmp_path):
    """The page's sentence on a hand-made run: q2's 0.8 ties its positive, so it is not above."""
    from core.workspace import open_workspace

    store = open_workspace(tmp_path / "ws").store()
    store.save_dataset("d", "src", "beir", "x", [("a", "", "a"), ("b", "", "b"), ("c", "", "c")],
                       [("q1", "one"), ("q2", "two"), ("q3", "three")], [])
    cands = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q3"], "doc_id": ["a", "b", "a", "c"], "rank": [1, 2, 1, 1],
                          "score": [0.9, 0.2, 0.8, 0.1], "pos_score": [0.5, 0.5, 0.8, 0.0], "bm25": 0.0,
                          "kept": [True, True, False, False], "rule": "r"})
    store.save_run({"run_id": "r1", "dataset": "d", "split": "train", "model_fingerprint": "m", "params": {},
                    "stats": {"candidates": 4}}, cands)
    above = run_stats.run_shape(store, "r1").above
    assert (above.candidates, above.share, above.queries, above.kept) == (2, 0.5, 2, 1)
    assert (above.candidates, above.share, above.queries, above.kept) == old_above(cands)


def test_verdict_table_and_margins_equal_the_whole_run_joined_to_its_verdicts(runs):
    store, run_ids = runs
    verdicts = labels.resolved(store, "tiny")
    for run_id in run_ids:
        cands = store.candidates(run_id, with_signals=False)
        judged = run_stats.judged_on_run(store, run_id, verdicts[["query_id", "doc_id", "label"]])
        assert len(judged) == len(verdicts) - 1, "the pair that is no candidate is left out"
        table = run_stats.verdict_table(run_stats.run_shape(store, run_id), judged)
        pd.testing.assert_frame_equal(table, old_crosstab(cands, verdicts), check_dtype=False,
                                      check_index_type=False, check_column_type=False)
        on_run = cands.merge(verdicts[["query_id", "doc_id", "label"]], on=PAIR)  # the old chart's rows
        bins = run_stats.verdict_margins(judged)
        assert set(bins.counts) == set(on_run.label)
        for label, group in on_run.groupby("label"):
            np.testing.assert_array_equal(bins.counts[label],
                                          np.histogram(group.score - group.pos_score, bins.edges)[0])
    empty = run_stats.judged_on_run(store, run_ids[0], verdicts.head(0)[["query_id", "doc_id", "label"]])
    table = run_stats.verdict_table(run_stats.run_shape(store, run_ids[0]), empty)
    cands = store.candidates(run_ids[0], with_signals=False)
    pd.testing.assert_frame_equal(table, old_crosstab(cands, verdicts.head(0)), check_dtype=False,
                                  check_index_type=False, check_column_type=False)


def test_kept_progress_equals_progress_over_the_runs_kept_pairs(runs):
    store, run_ids = runs
    for run_id in run_ids:
        cands = store.candidates(run_id, with_signals=False)
        old = agreement.annotator_progress(store, "tiny", cands.loc[cands["kept"], PAIR])
        new, total = run_stats.kept_progress(store, "tiny", run_id)
        assert total == int(cands.kept.sum())
        pd.testing.assert_frame_equal(new, old)
        assert new["done"].sum() > 0


def test_pair_rows_finds_candidates_and_only_them(runs):
    store, run_ids = runs
    table = store.run_columns(run_ids[1], ["query_id", "doc_id"])
    cands = store.candidates(run_ids[1], with_signals=False)
    pairs = pd.DataFrame({"query_id": [cands.query_id.iloc[7], "q1", "nope", cands.query_id.iloc[0]],
                          "doc_id": [cands.doc_id.iloc[7], "no-such-doc", cands.doc_id.iloc[0],
                                     cands.doc_id.iloc[0]]})
    assert run_stats.pair_rows(table, pairs).tolist() == [7, -1, -1, 0]
    assert run_stats.pair_mask(table, pairs).sum() == 2
    assert run_stats.pair_rows(table, pairs.iloc[[2]]).tolist() == [-1], "no row of the run has that query"


def test_survivors_count_queries_per_kept_number():
    before, after = np.array([3, 3, 3, 1]), np.array([0, 3, 2, 2])
    old = pd.concat([pd.Series(before).value_counts().rename("before"), pd.Series(after).value_counts().rename("after")],
                    axis=1).reindex(range(4), fill_value=0).fillna(0).astype(int)  # what the old px histogram counted
    table = run_stats.survivors(before, after).set_index("kept")
    pd.testing.assert_frame_equal(table, old, check_names=False)
    assert math.isclose(table["after"].sum(), len(after))


@pytest.mark.parametrize("values", [[0.0, 5e-324], [0.3, 0.3], [1e9, 1e9 + 1e-7], [-2.0, -2.0 + 1e-15]])
def test_histogram_of_values_too_close_for_equal_width_bins_counts_every_value(values):
    """A run whose scores differ by a denormal (an imported TREC run with scores 0 and 5e-324) must still chart:
    numpy refuses 60 bins over such a range, so the range is widened around the values."""
    bins = run_stats.histogram({"kept": np.array(values), "dropped": np.array([])})
    assert np.all(np.diff(bins.edges) > 0)
    assert bins.counts["kept"].sum() == len(values) and bins.counts["dropped"].sum() == 0
