"""Review and triage at scale give today's numbers: the navigation list, progress, query view, triage queue and
propagation computed from indexes and snapshot columns equal the whole-run pandas computations they replaced
(kept below as oracles) on small mined and derived runs; two sessions opening an unscored run score it once."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest

from core import labels, review, risk, triage
from core.lookups import positive_qrels, require_run
from core.mining import derive_run
from core.rules import RuleSpec
from core.vectors import NEAR_DUPLICATE_COSINE, Vectors, run_encoder, tfidf_matrix

# -- oracles: the whole-run pandas code the app used before ----------------------------------------------------------


def old_run_queries(store, run_id: str, candidates: pd.DataFrame) -> pd.DataFrame:
    run = require_run(store, run_id)
    counts = candidates.groupby("query_id", sort=True).agg(candidates=("doc_id", "size"), kept=("kept", "sum"))
    texts = store.queries(run["dataset"], list(counts.index))
    out = counts.reset_index().merge(texts, on="query_id", how="left")
    return out[["query_id", "text", "candidates", "kept"]]


def old_judged_per_query(candidates: pd.DataFrame, judged: pd.DataFrame, scope: str) -> pd.DataFrame:
    frame = review.in_scope(candidates, scope)[["query_id", "doc_id"]]
    marks = judged[["query_id", "doc_id"]].drop_duplicates().assign(judged=True)
    frame = frame.merge(marks, on=["query_id", "doc_id"], how="left")
    frame["judged"] = frame["judged"].fillna(False).astype(bool)
    return frame.groupby("query_id").agg(judged=("judged", "sum"), total=("doc_id", "size")).reset_index()


def old_progress(per_query: pd.DataFrame, query_id: str) -> review.Progress:
    row = per_query[per_query["query_id"] == query_id]
    query_done, query_total = (int(row["judged"].iloc[0]), int(row["total"].iloc[0])) if not row.empty else (0, 0)
    return review.Progress(int(per_query["judged"].sum()), int(per_query["total"].sum()), query_done, query_total,
                           int((per_query["judged"] == per_query["total"]).sum()), len(per_query))


def old_query_candidates(candidates: pd.DataFrame, query_id: str, judged: pd.DataFrame, scope: str,
                         sort: str) -> pd.DataFrame:
    own = review.in_scope(candidates[candidates["query_id"] == query_id], scope)
    own = own.merge(judged[judged["query_id"] == query_id].drop(columns="query_id"), on="doc_id", how="left")
    own["margin"] = own["score"] - own["pos_score"]
    return review.sort_candidates(own, sort).reset_index(drop=True)


def old_triage_queue(store, run_id: str, annotator: str | None, limit: int) -> tuple[pd.DataFrame, int]:
    run = require_run(store, run_id)
    cands = store.candidates(run_id)
    judged = labels.current(store, run["dataset"], annotator)
    done = set(zip(judged["query_id"], judged["doc_id"]))
    todo = cands[[pair not in done for pair in zip(cands["query_id"], cands["doc_id"])]]
    count = len(todo)
    todo = todo.sort_values(["risk", "query_id", "rank"], ascending=[False, True, True], na_position="last",
                            kind="stable").head(limit).reset_index(drop=True)
    todo = todo.assign(signals=[json.loads(s) if isinstance(s, str) else {} for s in todo["signals"]])
    return todo[triage.QUEUE_COLUMNS], count


def old_propagation(store, workspace, dataset: str, query_id: str, doc_id: str, label: str) -> list[tuple]:
    """The suggestions the old propagate would add: (query_id, doc_id, similarity, reason), before de-duplication
    against open suggestions (the store does that for both)."""
    runs = store.runs(dataset)
    vectors = Vectors(store, dataset, run_encoder(workspace, runs[0]))
    positives = positive_qrels(store.qrels(dataset))
    skip = set(zip(positives["query_id"], positives["doc_id"]))
    verdicts = labels.current(store, dataset)
    skip |= set(zip(verdicts["query_id"], verdicts["doc_id"]))
    skip.add((query_id, doc_id))
    rows = []
    siblings = [d for d in store.candidate_pairs(dataset, query_id=query_id)["doc_id"] if (query_id, d) not in skip]
    if siblings:
        row, vecs, texts = vectors.documents([doc_id, *siblings])
        if doc_id in row:
            cosine = vecs @ vecs[row[doc_id]]
            tfidf = tfidf_matrix(texts)
            overlap = (tfidf @ tfidf[row[doc_id]].T).toarray().ravel()
            for d in siblings:
                i = row[d]
                if cosine[i] >= NEAR_DUPLICATE_COSINE or overlap[i] >= triage.NEAR_DUPLICATE_OVERLAP:
                    reason = (f"near-copy of {doc_id} (cosine {cosine[i]:.2f}, word overlap {overlap[i]:.2f}) "
                              f"judged {label.replace('_', ' ')} for this query")
                    rows.append((query_id, d, float(cosine[i]), reason))
    others = [q for q in store.candidate_pairs(dataset, doc_id=doc_id)["query_id"] if (q, doc_id) not in skip]
    if others:
        row, vecs = vectors.queries([query_id, *others])
        if query_id in row:
            cosine = vecs @ vecs[row[query_id]]
            for q in others:
                if cosine[row[q]] >= triage.SIMILAR_QUERY_COSINE:
                    rows.append((q, doc_id, float(cosine[row[q]]),
                                 f"judged {label.replace('_', ' ')} for the similar query {query_id} (cosine {cosine[row[q]]:.2f})"))
    return rows


# -- helpers ---------------------------------------------------------------------------------------------------------


def _verdicts(store, run_id: str) -> None:
    """Verdicts of two annotators: kept and dropped candidates, a whole query, an undone verdict, a changed
    verdict and a pair that no run mined."""
    cands = store.candidates(run_id, with_signals=False)
    first_query = cands[cands["query_id"] == cands["query_id"].iloc[0]]
    for doc in first_query["doc_id"]:
        labels.record(store, "tiny", first_query["query_id"].iloc[0], doc, "ana", "true_negative")
    others = cands[cands["query_id"] != cands["query_id"].iloc[0]]
    for _, row in others.iloc[::4].iterrows():
        labels.record(store, "tiny", row["query_id"], row["doc_id"], "ana", "false_negative")
    row = others.iloc[1]
    labels.record(store, "tiny", row["query_id"], row["doc_id"], "ana", "unsure")
    labels.undo(store, "tiny", "ana")
    labels.record(store, "tiny", others.iloc[4]["query_id"], others.iloc[4]["doc_id"], "ana", "true_negative")
    labels.record(store, "tiny", "q1", "py-join", "ana", "false_negative")  # a positive: never a candidate
    labels.record(store, "tiny", others.iloc[2]["query_id"], others.iloc[2]["doc_id"], "bob", "unsure")


@pytest.fixture
def runs(mined_twins):
    """The twins workspace with a derived run (another rule over the same rows) and verdicts."""
    ws, store, run_id = mined_twins
    derived = derive_run(store, run_id, RuleSpec("range", range_min=2, range_max=9)).run_id
    _verdicts(store, run_id)
    return ws, store, [run_id, derived]


def test_navigation_list_and_progress_equal_the_whole_run_computation(runs):
    _, store, run_ids = runs
    for run_id in run_ids:
        cands = store.candidates(run_id, with_signals=False)
        outline = review.run_outline(store, run_id)
        pd.testing.assert_frame_equal(outline.queries, old_run_queries(store, run_id, cands))
        for who in ("ana", "bob", "cy"):
            judged = review.own_verdicts(store, "tiny", who)
            for scope in review.SCOPES:
                per_query = old_judged_per_query(cands, judged, scope)
                for query_id in [*outline.queries["query_id"], "no-such-query"]:
                    assert review.progress(outline, judged, scope, query_id) == old_progress(per_query, query_id), \
                        (run_id, who, scope, query_id)
    assert review.progress(outline, judged, "kept", "q1").total < review.progress(outline, judged, "all", "q1").total


def test_query_view_reads_one_query_and_equals_the_whole_run_filter(runs):
    _, store, run_ids = runs
    judged = review.own_verdicts(store, "tiny", "ana")
    for run_id in run_ids:
        cands = store.candidates(run_id)
        for query_id in cands["query_id"].unique():
            for scope in review.SCOPES:
                for sort in review.SORTS:
                    view = review.query_view(store, run_id, query_id, judged, scope, sort)
                    expected = old_query_candidates(cands, query_id, judged, scope, sort)
                    for column in ("label", "note"):
                        expected[column] = expected[column].astype(object).where(expected[column].notna(), None)
                    pd.testing.assert_frame_equal(view.candidates[expected.columns], expected, check_dtype=False)


def test_neighbour_steps_through_the_list_and_stops_at_its_ends(runs):
    _, store, run_ids = runs
    outline = review.run_outline(store, run_ids[0])
    ids = outline.queries["query_id"].tolist()
    assert [outline.neighbour(q, 1) for q in ids] == ids[1:] + ids[-1:]
    assert [outline.neighbour(q, -1) for q in ids] == ids[:1] + ids[:-1]
    assert outline.neighbour("no-such-query", 1) == ids[1]
    for run_id in run_ids:  # what the Map opens on without a chosen query: the list's first, by the index
        assert store.first_query(run_id) == review.run_outline(store, run_id).queries["query_id"].iat[0]
    assert store.first_query("no-such-run") is None


@pytest.mark.parametrize("limit", [1, 5, 12, 70, 10_000])
def test_triage_queue_and_its_count_equal_sorting_the_whole_run(runs, limit):
    _, store, run_ids = runs
    for run_id in run_ids:
        for who in ("ana", "bob", None):
            expected, count = old_triage_queue(store, run_id, who, limit)
            queue = triage.triage_queue(store, run_id, who, limit)
            pd.testing.assert_frame_equal(queue, expected, check_dtype=False)
            assert triage.unjudged(store, run_id, who) == count


def test_triage_pages_past_many_judged_candidates_and_puts_unscored_ones_last(runs):
    """More verdicts than the first page holds (the queue fetches further pages); a run saved without risk
    comes in (query, rank) order."""
    _, store, run_ids = runs
    size = len(store.candidates(run_ids[0]))
    assert size - 5 > 64, "more verdicts than the queue's first page"
    riskiest = triage.triage_queue(store, run_ids[0], "dan", limit=size - 5)
    labels.record_batch(store, "tiny", list(zip(riskiest["query_id"], riskiest["doc_id"])), "dan", "true_negative")
    expected, count = old_triage_queue(store, run_ids[0], "dan", 10)
    queue = triage.triage_queue(store, run_ids[0], "dan", 10)
    pd.testing.assert_frame_equal(queue, expected, check_dtype=False)
    assert len(queue) == triage.unjudged(store, run_ids[0], "dan") == count == 5

    unscored = {**store.run(run_ids[0]), "run_id": "tiny-unscored"}
    store.save_run(unscored, store.candidates(run_ids[0]).assign(risk=None, signals=None))
    expected, count = old_triage_queue(store, "tiny-unscored", "ana", 30)
    pd.testing.assert_frame_equal(triage.triage_queue(store, "tiny-unscored", "ana", 30), expected,
                                  check_dtype=False)
    assert triage.unjudged(store, "tiny-unscored", "ana") == count


def test_propagation_suggests_what_the_whole_run_scan_did(mined_twins):
    ws, store, run_id = mined_twins
    derive_run(store, run_id, RuleSpec("range", range_min=2, range_max=9))  # a derived run: same rows, no duplicates
    cands = store.candidates(run_id, with_signals=False)
    pairs = [("q1", "py-join-dup"), ("q9", "py-join-dup"), ("q9", "py-join-mirror"), ("q5", "geo-2"),
             *zip(cands["query_id"].iloc[::7], cands["doc_id"].iloc[::7])]
    found = 0
    for number, (query_id, doc_id) in enumerate(pairs):
        label = "false_negative" if number % 2 == 0 else "true_negative"
        event = labels.record(store, "tiny", query_id, doc_id, "ana", label)  # judge records, then propagates
        expected = old_propagation(store, ws, "tiny", query_id, doc_id, label)
        open_ = triage.suggestions(store, "tiny")
        already = set(zip(open_["query_id"], open_["doc_id"], open_["label"]))
        expected = [r for r in expected if (r[0], r[1], label) not in already]
        before = set(triage.suggestions(store, "tiny", status=None)["id"])
        created = triage.propagate(store, ws, "tiny", query_id, doc_id, label, event)
        made = triage.suggestions(store, "tiny", status=None)
        made = made[~made["id"].isin(before)]
        assert created == len(made) == len(expected), (query_id, doc_id)
        assert list(zip(made["query_id"], made["doc_id"], made["reason"])) == [(q, d, r) for q, d, _, r in expected]
        assert np.allclose(made["similarity"].to_numpy(), [s for _, _, s, _ in expected], atol=1e-6)
        found += created
    assert found >= 2, "the pairs tried include planted near-copies and a near-identical query"


def test_two_sessions_opening_an_unscored_run_start_one_scoring_job(mined, tmp_path, monkeypatch):
    from core.workspace import open_workspace
    from tests.app_helpers import copy_workspace

    ws0, _, result = mined
    root = copy_workspace(ws0.root, tmp_path / "ws")
    calls = []
    real = risk.compute_risk

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(risk, "compute_risk", counted)
    stores = [open_workspace(root).store() for _ in range(2)]
    assert stores[0].risk_missing(result.run_id, risk.signal_set())
    start, jobs = threading.Barrier(2), [None, None]

    def session(i: int) -> None:
        start.wait()
        jobs[i] = risk.scoring_job(stores[i], root, result.run_id)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert jobs[0] is not None and jobs[0] is jobs[1], "the second session polls the first one's job"
    assert jobs[0].wait(timeout=300) and jobs[0].error is None and jobs[0].result is True
    assert calls == [result.run_id]
    assert not stores[0].risk_missing(result.run_id, risk.signal_set())
    assert risk.scoring_job(stores[1], root, result.run_id) is None, "a scored run starts nothing"
    assert calls == [result.run_id]
    for store in stores:
        store.close()
