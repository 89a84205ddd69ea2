"""Mining with the real bundled model and FAISS on the tiny fixture: rules, seeds, cache, preview, diff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core import rules
from core.errors import UserError
from core.mining import (DIFF_CHANGES, compare_runs, compute_preview, derive_run, diff_runs, judged_mask, mine,
                         preview)
from core.rules import RuleSpec
from tests.fixtures import PLANTED_FALSE_NEGATIVES, TRAIN


def test_run_stores_every_candidate_with_rank_score_pos_score(mined):
    ws, store, result = mined
    cands = store.candidates(result.run_id)
    assert result.queries == len(TRAIN)
    assert len(cands) == result.candidates == len(TRAIN) * 20
    for query_id, group in cands.groupby("query_id"):
        assert list(group["rank"]) == list(range(1, 21))
        assert np.all(np.diff(group["score"].to_numpy()) <= 1e-6), "ranked by descending score"
        assert not set(group["doc_id"]) & set(TRAIN[query_id]), "positives are never candidates"
        assert group["pos_score"].nunique() == 1
        assert group["kept"].sum() == 3 and group.loc[group["kept"], "rank"].tolist() == [1, 2, 3]
    # q3 has two positives: s_P is the weaker one's score
    from core.encoders import load_encoder, document_text
    enc = load_encoder(cache_dir=ws.embeddings_dir)
    docs = store.documents("tiny", ["heat-1", "heat-2"])
    dvec = enc.encode_documents([document_text(t, x) for t, x in zip(docs.title, docs.text)])
    qvec = enc.encode_queries([store.queries("tiny", ["q3"]).text[0]])[0]
    assert cands[cands.query_id == "q3"]["pos_score"].iloc[0] == pytest.approx(float((dvec @ qvec).min()), abs=1e-5)
    # the planted near-duplicates of the positives are mined near the top
    top3 = {(q, d) for q, d in zip(cands[cands.kept].query_id, cands[cands.kept].doc_id)}
    assert len(top3 & PLANTED_FALSE_NEGATIVES) >= 4


def test_second_mine_encodes_nothing(mined, ws_root):
    from core.workspace import open_workspace

    first = mined[2]
    assert first.encoded > 0
    ws = open_workspace(ws_root)  # a private copy: the session's shared workspace keeps its single run
    store = ws.store()
    again = mine(store, ws, "tiny", "train", depth=20, spec=RuleSpec("percpos"))
    assert again.encoded == 0 and again.cached > 0
    assert store.run(again.run_id)["stats"]["encoded"] == 0


@pytest.mark.parametrize("spec", [
    RuleSpec("percpos", num_negatives=5),
    RuleSpec("percpos", num_negatives=5, relative_margin=0.2),
    RuleSpec("marginpos", num_negatives=5, absolute_margin=0.1),
    RuleSpec("abs", num_negatives=5, max_score=0.3),
])
def test_filters_keep_only_candidates_below_threshold(mined, spec):
    _, store, result = mined
    out = rules.apply(spec, store.candidates(result.run_id))
    kept = out[out.kept]
    s, sp = kept["score"].to_numpy(), kept["pos_score"].to_numpy()
    if spec.rule == "percpos":
        assert np.all(s < sp - np.abs(sp) * spec.relative_margin)
    if spec.rule == "marginpos":
        assert np.all(s < sp - spec.absolute_margin)
    if spec.rule == "abs":
        assert np.all(s < spec.max_score)
    filtered = out[out.rule.str.startswith("filtered:")]
    assert len(filtered) > 0, "the fixture's near-duplicates must trip the filter"
    # survivors are the best-ranked eligible candidates
    for _, group in out.groupby("query_id"):
        eligible = group[~group.rule.str.startswith("filtered:")]
        assert group[group.kept]["rank"].tolist() == eligible["rank"].tolist()[:spec.num_negatives]


def test_range_samples_inside_window(mined):
    _, store, result = mined
    out = rules.apply(RuleSpec("range", num_negatives=3, range_min=5, range_max=15, seed=1),
                      store.candidates(result.run_id))
    kept = out[out.kept]
    assert kept.groupby("query_id").size().eq(3).all()
    assert kept["rank"].between(6, 15).all()


def test_simans_seeded_and_peaks_near_positive(mined):
    _, store, result = mined
    cands = store.candidates(result.run_id)
    a = rules.apply(RuleSpec("simans", num_negatives=3, seed=7), cands)
    b = rules.apply(RuleSpec("simans", num_negatives=3, seed=7), cands)
    c = rules.apply(RuleSpec("simans", num_negatives=3, seed=8), cands)
    assert a.kept.tolist() == b.kept.tolist()
    assert a.kept.tolist() != c.kept.tolist()
    assert rules.simans_logits(np.array([0.1, 0.5, 0.9]), np.full(3, 0.5), 1.0, 0.0).argmax() == 1
    # a query's sample depends on its own candidates and the seed only, not on the other queries
    one = cands[cands.query_id == cands.query_id.iloc[0]].reset_index(drop=True)
    alone = rules.apply(RuleSpec("simans", num_negatives=3, seed=7), one)
    assert alone.kept.tolist() == a[a.query_id == one.query_id.iloc[0]].kept.tolist()
    # a sharp peak (large a) concentrates the sample at the positive's score
    sharp = rules.apply(RuleSpec("simans", num_negatives=1, simans_a=500.0, seed=0), cands)
    for _, g in sharp.groupby("query_id"):
        chosen = g[g.kept].iloc[0]
        assert abs(chosen.score - chosen.pos_score) <= np.abs(g.score - g.pos_score).min() + 0.1


def test_preview_derive_and_diff_without_reencoding(mined, ws_root):
    from core.workspace import open_workspace

    result = mined[2]
    store = open_workspace(ws_root).store()  # a private copy: the session's shared workspace keeps one run
    spec = RuleSpec("percpos", num_negatives=3)
    pv = preview(store, result.run_id, spec)
    assert pv.summary["removed"] == len(pv.flips[pv.flips.kept_before])
    assert pv.summary["removed"] > 0
    assert pv.summary["kept_before"] == int(store.candidates(result.run_id)["kept"].sum())
    assert pv.summary["kept"] - pv.summary["kept_before"] == pv.summary["added"] - pv.summary["removed"]
    derived = derive_run(store, result.run_id, spec)
    assert derived.encoded == 0
    assert store.run(derived.run_id)["parent_run"] == result.run_id
    new = store.candidates(derived.run_id)
    assert new.kept.tolist() == pv.candidates.kept.tolist()
    assert new.rule.tolist() == pv.candidates.rule.tolist()
    # scores, BM25 and risk are the parent's, copied inside SQLite
    same = ["query_id", "doc_id", "rank", "score", "pos_score", "bm25", "risk", "signals"]
    pd.testing.assert_frame_equal(new[same], store.candidates(result.run_id)[same])
    # committing the preview the user looked at gives the same run as recomputing it
    again = derive_run(store, result.run_id, spec, pv)
    assert store.candidates(again.run_id)[["kept", "rule"]].equals(new[["kept", "rule"]])
    diff = diff_runs(store, result.run_id, derived.run_id)
    assert (diff.change == "disappears").sum() >= pv.summary["removed"] - pv.summary["added"]
    assert set(diff.change) <= {"appears", "disappears", "rank changed", "same"}


def old_preview(store, run_id: str, spec: RuleSpec) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Before: the preview over the run's whole candidate frame (a string per id), kept as the oracle."""
    before = store.candidates(run_id, with_signals=False, with_risk=False)
    after = rules.apply(spec, before.drop(columns=["kept", "rule"]), judged_mask(store, "tiny", before, spec))
    after["kept_before"] = before["kept"].to_numpy()
    after["rule_before"] = before["rule"].to_numpy()
    per_query = after.groupby("query_id").agg(kept_before=("kept_before", "sum"), kept_after=("kept", "sum"))
    per_query = per_query.reset_index()
    summary = rules.summarise(after, spec)
    summary["added"] = int((after["kept"] & ~after["kept_before"]).sum())
    summary["removed"] = int((~after["kept"] & after["kept_before"]).sum())
    num_negatives = RuleSpec.from_dict(store.run(run_id)["params"]["rules"]).num_negatives
    summary["short_queries_before"] = int((per_query["kept_before"] < num_negatives).sum())
    summary["kept_before"] = int(after["kept_before"].sum())
    return after, per_query, summary


def old_diff(store, run_a: str, run_b: str) -> pd.DataFrame:
    """Before: the outer merge of both runs' kept candidates, kept as the oracle."""
    a = store.candidates(run_a, with_signals=False, with_risk=False)
    b = store.candidates(run_b, with_signals=False, with_risk=False)
    a = a[a["kept"]][["query_id", "doc_id", "rank", "score"]]
    b = b[b["kept"]][["query_id", "doc_id", "rank", "score"]]
    merged = a.merge(b, on=["query_id", "doc_id"], how="outer", suffixes=("_a", "_b"), indicator=True)
    merged["change"] = merged["_merge"].map({"left_only": "disappears", "right_only": "appears",
                                             "both": "same"}).astype(str)
    moved = (merged["change"] == "same") & (merged["rank_a"] != merged["rank_b"])
    merged.loc[moved, "change"] = "rank changed"
    return merged.drop(columns="_merge").sort_values(["query_id", "change", "rank_b", "rank_a"]) \
        .reset_index(drop=True)


def test_preview_and_diff_equal_the_pandas_computation(mined, ws_root):
    """Preview from the snapshot's codes and the diff over integer keys give the numbers and rows the pandas code
    gave, for filters, sampling selectors and skip-judged, on a mined run, a derived run and a second mined run."""
    from core import labels
    from core.workspace import open_workspace

    ws = open_workspace(ws_root)
    store = ws.store()
    base = mined[2].run_id
    derived = derive_run(store, base, RuleSpec("percpos", num_negatives=3)).run_id
    cands = store.candidates(base)
    for query_id, doc_id in cands.loc[cands.kept, ["query_id", "doc_id"]].head(4).itertuples(index=False):
        labels.record(store, "tiny", query_id, doc_id, "ana", "false_negative")
    specs = [RuleSpec("percpos", num_negatives=2), RuleSpec("range", num_negatives=2, range_min=1, range_max=9, seed=4),
             RuleSpec("simans", num_negatives=3, seed=2, max_score=0.9), RuleSpec("top", num_negatives=3, skip_judged=True)]
    for run_id in (base, derived):
        for spec in specs:
            pv = preview(store, run_id, spec)
            after, per_query, summary = old_preview(store, run_id, spec)
            assert pv.summary == summary
            pd.testing.assert_frame_equal(pv.per_query, per_query, check_dtype=False)
            for column in ("kept", "rule", "kept_before"):
                assert pv.candidates[column].astype(object).tolist() == after[column].tolist(), (spec, column)
            flips = after[after.kept != after.kept_before]
            table = pv.flip_table(store, len(flips) + 1)
            for shown, column in [("query", "query_id"), ("document", "doc_id"), ("rank", "rank"),
                                  ("now", "rule_before"), ("preview", "rule")]:
                assert table[shown].tolist() == flips[column].tolist(), (spec, column)
            assert pv.flip_table(store, 2)["document"].tolist() == flips["doc_id"].head(2).tolist()
            assert len(pv.short_queries) == summary["short_queries"]
            margin = after.score - after.pos_score
            for group, mask in (("kept", after.kept), ("dropped", ~after.kept)):
                np.testing.assert_array_equal(pv.margins.counts[group], np.histogram(margin[mask], pv.margins.edges)[0])
            table = pv.survivors.set_index("kept")
            assert table["after"].tolist() == [int((per_query.kept_after == n).sum()) for n in table.index]
            assert table["before"].tolist() == [int((per_query.kept_before == n).sum()) for n in table.index]
    other = mine(store, ws, "tiny", "train", depth=10, spec=RuleSpec("top", num_negatives=4)).run_id
    for a, b in [(base, derived), (derived, base), (base, other), (other, derived), (base, base)]:
        old = old_diff(store, a, b)
        new = compare_runs(store, a, b)
        pd.testing.assert_frame_equal(diff_runs(store, a, b), old, check_dtype=False)
        assert new.totals.to_dict() == old["change"].value_counts().reindex(list(DIFF_CHANGES), fill_value=0).to_dict()
        changed = old[old["change"] != "same"]
        pd.testing.assert_frame_equal(new.rows, changed.reset_index(drop=True), check_dtype=False)
        pd.testing.assert_frame_equal(new.per_query, changed.groupby(["query_id", "change"]).size()
                                      .unstack(fill_value=0), check_index_type=False)
    assert compare_runs(store, base, other).totals["appears"] > 0, "the top-4 run keeps a 4th negative per query"
    store.close()


def test_the_runs_own_rule_previews_from_its_stored_shape_with_the_computed_numbers(mined, ws_root):
    """The Mine page opens on the run's own rule: that preview comes from the run's stored shape (no rule applied
    to every candidate) and gives the numbers applying the rule gives, on mined and derived runs of several rules;
    committing still applies the rule."""
    from core.mining import run_spec
    from core.workspace import open_workspace

    store = open_workspace(ws_root).store()
    base = mined[2].run_id
    runs = [base] + [derive_run(store, base, spec).run_id for spec in (
        RuleSpec("percpos", num_negatives=3), RuleSpec("range", num_negatives=2, range_min=1, range_max=9, seed=4),
        RuleSpec("simans", num_negatives=3, seed=2, max_score=0.9))]
    for run_id in runs:
        spec = run_spec(store.run(run_id))
        stored, computed = preview(store, run_id, spec), compute_preview(store, run_id, spec)
        assert stored.candidates.empty and not computed.candidates.empty, "the stored preview applied no rule"
        assert stored.summary == computed.summary and computed.summary["added"] == computed.summary["removed"] == 0
        pd.testing.assert_frame_equal(stored.per_query, computed.per_query, check_dtype=False)
        pd.testing.assert_frame_equal(stored.survivors, computed.survivors)
        np.testing.assert_array_equal(stored.margins.edges, computed.margins.edges)
        for group in ("kept", "dropped"):
            np.testing.assert_array_equal(stored.margins.counts[group], computed.margins.counts[group])
        assert stored.flips.empty and computed.flips.empty
        assert stored.short_queries["query_id"].tolist() == computed.short_queries["query_id"].tolist()
    again = derive_run(store, runs[1], run_spec(store.run(runs[1])), preview(store, runs[1], RuleSpec("percpos",
                                                                                                      num_negatives=3)))
    assert store.candidates(again.run_id)["kept"].tolist() == store.candidates(runs[1])["kept"].tolist()
    store.close()


def test_a_derived_run_stores_only_its_decisions_and_shares_its_base_rows(mined, ws_root):
    """Re-ruling writes one small row per query, never a copy of the candidates; a run derived from a derived run
    reads the same base rows; risk written through any of them is theirs; a lost or damaged snapshot is rebuilt."""
    import pyarrow as pa

    from core.workspace import open_workspace

    base = mined[2].run_id
    store = open_workspace(ws_root).store()
    first = derive_run(store, base, RuleSpec("percpos", num_negatives=3)).run_id
    second = derive_run(store, first, RuleSpec("range", num_negatives=2, range_min=2, range_max=12, seed=3)).run_id
    for run_id in (first, second):
        assert store.scalar("SELECT COUNT(*) FROM candidates WHERE run_id = ?", (run_id,)) == 0
        assert store.scalar("SELECT COUNT(*) FROM run_decisions WHERE run_id = ?", (run_id,)) == len(TRAIN)
        assert store.run(run_id)["base_run"] == base
    expected = preview(store, first, RuleSpec("range", num_negatives=2, range_min=2, range_max=12, seed=3))
    got = store.candidates(second)
    assert got["kept"].tolist() == expected.candidates["kept"].tolist()
    assert got["rule"].tolist() == expected.candidates["rule"].tolist()
    one_query = store.candidates(second, "q3")
    pd.testing.assert_frame_equal(one_query.reset_index(drop=True),
                                  got[got.query_id == "q3"].reset_index(drop=True))

    store.set_risk(second, [("q3", one_query.doc_id.iloc[0], 0.75, "{}")], signal_set="test")
    for run_id in (base, first, second):
        row = store.candidates(run_id, "q3").iloc[0]
        assert row["risk"] == 0.75 and not store.risk_missing(run_id, "test")

    snapshot = ws_root / "snapshots" / f"{base}.parquet"
    assert snapshot.exists(), "mining left a snapshot of the run's immutable columns"
    whole = store.candidates(second, with_signals=False)

    def columns_match(run_id: str) -> None:
        """run_columns: dictionary-encoded ids and rules, the run's own decisions, the same rows as candidates()."""
        table = store.run_columns(run_id, ["query_id", "doc_id", "score", "kept", "rule"])
        assert all(pa.types.is_dictionary(table[c].type) for c in ["query_id", "doc_id", "rule"])
        frame = table.to_pandas()
        want = store.candidates(run_id, with_signals=False, with_risk=False)
        for column in ["query_id", "doc_id", "rule"]:
            assert frame[column].astype(str).tolist() == want[column].tolist()
        assert frame["kept"].tolist() == want["kept"].tolist() and frame["score"].tolist() == want["score"].tolist()

    for run_id in (base, first, second):
        columns_match(run_id)
    snapshot.write_bytes(b"not parquet")
    columns_match(second)
    snapshot.write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(store.candidates(second, with_signals=False), whole)
    snapshot.unlink()
    pd.testing.assert_frame_equal(store.candidates(second, with_signals=False), whole)
    assert snapshot.exists()
    # document ids are stored once each beside the rows, which hold an index into them
    assert "doc_code" in pq.ParquetFile(snapshot).schema_arrow.names
    docs = store.run_file(base, store.DOCS)
    assert pq.read_table(docs).num_rows == whole["doc_id"].nunique()
    for damage in (lambda: docs.write_bytes(b"not parquet"), docs.unlink):
        damage()  # a snapshot whose ids are unreadable or gone is rebuilt like a damaged one
        columns_match(second)
        pd.testing.assert_frame_equal(store.candidates(second, with_signals=False), whole)
        assert docs.exists()
    store.close()


def test_simans_samples_with_the_published_probabilities():
    """Over many seeds, how often each candidate is drawn first matches p ∝ exp(−a·(s − s_P − b)²)."""
    frame = pd.DataFrame({"query_id": "q", "doc_id": ["d1", "d2", "d3", "d4"], "rank": [1, 2, 3, 4],
                          "score": [0.9, 0.7, 0.5, 0.2], "pos_score": 0.7})
    spec = dict(num_negatives=1, simans_a=5.0, simans_b=0.0)
    counts = np.zeros(4)
    for seed in range(3000):
        counts += rules.apply(RuleSpec("simans", seed=seed, **spec), frame).kept.to_numpy()
    logits = rules.simans_logits(frame.score.to_numpy(), frame.pos_score.to_numpy(), 5.0, 0.0)
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.03)
    # k = 2 without replacement: two distinct documents every time
    two = rules.apply(RuleSpec("simans", seed=1, num_negatives=2, simans_a=5.0), frame)
    assert two.kept.sum() == 2


def test_bad_requests_are_user_errors(mined):
    ws, store, _ = mined
    with pytest.raises(UserError, match="no dataset"):
        mine(store, ws, "nope")
    with pytest.raises(UserError, match="split 'dev'"):
        mine(store, ws, "tiny", "dev")
    with pytest.raises(UserError, match="rule abs needs a max score"):
        RuleSpec("abs")
    with pytest.raises(UserError, match="unknown rule"):
        RuleSpec("best")


def test_skip_judged_refills_each_query_from_its_next_candidates(mined, ws_root):
    from core import labels
    from core.workspace import open_workspace

    result = mined[2]
    store = open_workspace(ws_root).store()
    before = store.candidates(result.run_id)
    kept = before[before.kept]
    judged = {(q, d) for q, d in zip(kept.query_id, kept.doc_id)} & PLANTED_FALSE_NEGATIVES
    assert len(judged) >= 4
    for query_id, doc_id in sorted(judged):
        labels.record(store, "tiny", query_id, doc_id, "alice", "false_negative")
    labels.record(store, "tiny", "q9", "misc-1", "alice", "false_negative")  # a pair of no candidate: ignored
    spec = RuleSpec("top", num_negatives=3, skip_judged=True)
    pv = preview(store, result.run_id, spec)
    derived = store.candidates(derive_run(store, result.run_id, spec, pv).run_id)
    now = derived[derived.kept]
    assert not {(q, d) for q, d in zip(now.query_id, now.doc_id)} & judged
    assert now.groupby("query_id").size().eq(3).all(), "every query is refilled to k"
    for query_id, group in derived.groupby("query_id"):
        flagged = {d for q, d in judged if q == query_id}
        assert set(group.loc[group.rule == "filtered:judged", "doc_id"]) == flagged
        unjudged = group[~group.doc_id.isin(flagged)]
        assert group[group.kept]["rank"].tolist() == unjudged["rank"].tolist()[:3]
    assert "skip judged" in spec.describe()
    # without the option the same verdicts leave the rule untouched
    plain = compute_preview(store, result.run_id, RuleSpec("top", num_negatives=3))
    assert plain.candidates.kept.tolist() == before.kept.tolist()


def test_a_preview_is_kept_until_what_it_read_changes(mined, ws_root):
    """The Mine page reruns on every widget: the same rule on the same run is not applied again, while a new
    verdict gives a skip-judged rule a fresh preview that honours it."""
    from core import labels
    from core.workspace import open_workspace

    result = mined[2]
    store = open_workspace(ws_root).store()
    spec = RuleSpec("top", num_negatives=3, skip_judged=True)
    first = preview(store, result.run_id, spec)
    assert preview(store, result.run_id, spec) is first
    assert preview(store, result.run_id, RuleSpec("top", num_negatives=4)) is not first
    kept = first.candidates[first.candidates.kept]
    query_id, doc_id = str(kept.query_id.iloc[0]), None
    docs = store.candidates(result.run_id, query_id, with_signals=False)
    doc_id = docs.loc[docs.kept, "doc_id"].iloc[0]
    labels.record(store, "tiny", query_id, doc_id, "alice", "false_negative")
    after = preview(store, result.run_id, spec)
    assert after is not first and after.summary["removed"] == first.summary["removed"] + 1
