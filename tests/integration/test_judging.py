"""One judging path: batches in one transaction, one undo per batch, suggestions closed and withdrawn."""

from __future__ import annotations

from core import judging, labels, triage

PAIR = ("q1", "py-join-dup")
MIRROR = ("q1", "py-join-mirror")


def test_batch_is_one_undo_and_single_verdicts_are_not(mined_twins):
    ws, store, run_id = mined_twins
    cands = store.candidates(run_id)
    pairs = list(zip(cands["query_id"], cands["doc_id"]))[:6]
    labels.record(store, "tiny", *pairs[0], "ana", "unsure")
    done = judging.judge(store, ws, "tiny", pairs[1:], "ana", "true_negative")
    assert len(done.events) == 5
    batches = store.events("tiny", "ana")["batch"]
    assert batches.isna().tolist() == [True] + [False] * 5 and set(batches.dropna()) == {done.events[0]}
    undone = judging.undo(store, "tiny", "ana")
    assert sorted((u["query_id"], u["doc_id"]) for u in undone) == sorted(pairs[1:])
    current = labels.current(store, "tiny", "ana")
    assert list(zip(current["query_id"], current["doc_id"], current["label"])) == [(*pairs[0], "unsure")]
    assert [(u["query_id"], u["doc_id"]) for u in judging.undo(store, "tiny", "ana")] == [pairs[0]]
    assert judging.undo(store, "tiny", "ana") == []


def test_undo_of_a_batch_skips_members_already_undone_one_by_one(mined_twins):
    ws, store, run_id = mined_twins
    cands = store.candidates(run_id)
    pairs = list(zip(cands["query_id"], cands["doc_id"]))[:3]
    judging.judge(store, ws, "tiny", pairs, "ana", "true_negative")
    labels.undo(store, "tiny", "ana", *pairs[2])  # one member taken back on its own
    assert len(judging.undo(store, "tiny", "ana")) == 2
    assert labels.current(store, "tiny", "ana").empty
    assert (store.events("tiny", "ana")["kind"] == "undo").sum() == 3


def test_direct_verdict_closes_the_open_suggestion_on_its_pair(mined_twins):
    ws, store, _ = mined_twins
    assert judging.judge(store, ws, "tiny", [PAIR], "ana", "false_negative").suggested >= 1
    open_before = triage.suggestions(store, "tiny", "q1")
    assert MIRROR[1] in set(open_before["doc_id"])
    judging.judge(store, ws, "tiny", [MIRROR], "bob", "true_negative")  # decided directly, other label
    assert MIRROR[1] not in set(triage.suggestions(store, "tiny", "q1")["doc_id"])
    closed = triage.suggestions(store, "tiny", "q1", status=None)
    assert closed.loc[closed["doc_id"] == MIRROR[1], "status"].tolist() == ["rejected"]


def test_undo_withdraws_the_suggestions_the_verdict_spread(mined_twins):
    ws, store, _ = mined_twins
    assert judging.judge(store, ws, "tiny", [PAIR], "ana", "false_negative").suggested >= 1
    judging.undo(store, "tiny", "ana")
    assert triage.suggestions(store, "tiny", status=None).empty


def test_a_batch_spreads_the_same_suggestions_as_single_verdicts(mined_twins, tmp_path):
    ws, store, _ = mined_twins
    single = judging.judge(store, ws, "tiny", [PAIR], "ana", "false_negative")
    by_click = triage.suggestions(store, "tiny")[["query_id", "doc_id", "label", "reason"]]
    judging.undo(store, "tiny", "ana")
    batch = judging.judge(store, ws, "tiny", [PAIR, ("q2", "py-sort-dup")], "ana", "false_negative")
    by_lasso = triage.suggestions(store, "tiny")[["query_id", "doc_id", "label", "reason"]]
    assert batch.suggested >= single.suggested >= 1
    assert set(map(tuple, by_click.values)) <= set(map(tuple, by_lasso.values))


def test_an_imported_verdict_closes_the_open_suggestion_on_its_pair(mined_twins, tmp_path):
    ws, store, _ = mined_twins
    judging.judge(store, ws, "tiny", [PAIR], "ana", "false_negative")
    assert MIRROR[1] in set(triage.suggestions(store, "tiny", "q1")["doc_id"])
    path = tmp_path / "verdicts.tsv"
    path.write_text(f"query-id\tcorpus-id\tlabel\tannotator\n{MIRROR[0]}\t{MIRROR[1]}\tfalse_negative\tbob\n",
                    encoding="utf-8")
    labels.import_tsv(store, "tiny", path)
    closed = triage.suggestions(store, "tiny", "q1", status=None)
    assert closed.loc[closed["doc_id"] == MIRROR[1], "status"].tolist() == ["accepted"]


def test_a_verdict_spread_in_the_background_is_stored_first_and_spreads_like_a_direct_one(mined_twins):
    ws, store, _ = mined_twins
    direct = judging.judge(store, ws, "tiny", [PAIR], "ana", "false_negative")
    columns = ["query_id", "doc_id", "label", "reason"]
    by_direct = triage.suggestions(store, "tiny")[columns]
    judging.undo(store, "tiny", "ana")
    later = judging.judge(store, ws, "tiny", [PAIR], "ana", "false_negative", spread_later=True)
    assert later.suggested == 0 and labels.current(store, "tiny", "ana")["doc_id"].tolist() == [PAIR[1]]
    assert later.spreading.wait(120) and later.spreading.error is None
    assert later.spreading.result == direct.suggested >= 1
    assert triage.suggestions(store, "tiny")[columns].equals(by_direct)


def test_an_undo_that_lands_before_the_spreading_withdraws_what_it_would_spread(mined_twins):
    ws, store, _ = mined_twins
    event = labels.record(store, "tiny", *PAIR, "ana", "false_negative")
    judging.undo(store, "tiny", "ana")  # before the verdict was spread
    assert triage.propagate(store, ws, "tiny", *PAIR, "false_negative", event) == 0
    assert triage.suggestions(store, "tiny", status=None).empty
