"""Triage queue, propagation as suggestions, and promotion of confirmed false negatives."""

from __future__ import annotations


import numpy as np
import pytest

from core import labels, triage
from core.datasets import ingest
from core.errors import UserError
from core.export import export
from core.risk import SIGNALS
from core.selection import select


def test_queue_walks_all_queries_in_risk_order_skipping_judged(mined_twins):
    _, store, run_id = mined_twins
    queue = triage.triage_queue(store, run_id, "ana", limit=12)
    assert list(queue.columns) == triage.QUEUE_COLUMNS
    assert len(queue) == 12 and queue["query_id"].nunique() > 3
    assert (np.diff(queue["risk"].to_numpy()) <= 0).all()
    assert set(queue.iloc[0]["signals"]) == set(SIGNALS)
    first = queue.iloc[0]
    labels.record(store, "tiny", first["query_id"], first["doc_id"], "ana", "false_negative")
    pair = (first["query_id"], first["doc_id"])
    assert pair not in set(zip(*triage.triage_queue(store, run_id, "ana", 200)[["query_id", "doc_id"]].T.values))
    assert pair not in set(zip(*triage.triage_queue(store, run_id, None, 200)[["query_id", "doc_id"]].T.values))
    bob = triage.triage_queue(store, run_id, "bob", 1)
    assert (bob.iloc[0]["query_id"], bob.iloc[0]["doc_id"]) == pair, "another annotator still sees it first"
    assert len(triage.triage_queue(store, run_id, "ana", limit=10_000)) == len(store.candidates(run_id)) - 1


def test_propagation_creates_open_suggestions_not_verdicts(mined_twins):
    ws, store, _ = mined_twins
    event = labels.record(store, "tiny", "q1", "py-join-dup", "ana", "false_negative")
    created = triage.propagate(store, ws, "tiny", "q1", "py-join-dup", "false_negative", event)
    open_ = triage.suggestions(store, "tiny")
    assert created == len(open_) >= 2
    pairs = set(zip(open_["query_id"], open_["doc_id"]))
    assert ("q1", "py-join-mirror") in pairs, "near-copy under the same query"
    assert ("q9", "py-join-dup") in pairs, "same document under a near-identical query"
    assert ("q1", "py-join-dup") not in pairs
    assert set(open_["label"]) == {"false_negative"} and set(open_["status"]) == {"open"}
    assert set(open_["source_event"]) == {event}
    assert open_["reason"].str.len().gt(10).all() and open_["similarity"].notna().all()
    # suggestions are not verdicts: the only verdict is the one a person made
    assert labels.current(store, "tiny")[["query_id", "doc_id"]].values.tolist() == [["q1", "py-join-dup"]]
    assert triage.propagate(store, ws, "tiny", "q1", "py-join-dup", "false_negative", event) == 0, "no duplicates"
    assert triage.propagate(store, ws, "tiny", "q1", "py-join-dup", "unsure", event) == 0


def test_accepting_makes_a_verdict_rejecting_does_not(mined_twins):
    ws, store, _ = mined_twins
    event = labels.record(store, "tiny", "q1", "py-join-dup", "ana", "false_negative")
    triage.propagate(store, ws, "tiny", "q1", "py-join-dup", "false_negative", event)
    first, second = triage.suggestions(store, "tiny")["id"].tolist()[:2]
    accepted = triage.accept_suggestion(store, first, "bob")
    verdicts = labels.current(store, "tiny", "bob")
    assert verdicts["id"].tolist() == [accepted] and verdicts["label"].tolist() == ["false_negative"]
    assert f"suggestion #{first}" in verdicts["note"].iloc[0]
    with pytest.raises(UserError, match="already accepted"):
        triage.accept_suggestion(store, first, "cy")
    triage.reject_suggestion(store, second, "bob")
    assert len(labels.current(store, "tiny")) == 2
    assert triage.suggestions(store, "tiny", status=None).set_index("id").loc[[first, second], "status"].tolist() \
        == ["accepted", "rejected"]
    with pytest.raises(UserError, match="no suggestion"):
        triage.reject_suggestion(store, 10_000, "bob")


def _train_qrels(folder) -> set[tuple[str, str, str]]:
    lines = (folder / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return {tuple(line.split("\t")) for line in lines}


def test_promotion_round_trips_through_export_and_reimport(mined_twins, tmp_path):
    ws, store, run_id = mined_twins
    with pytest.raises(UserError, match="unjudged"):
        triage.promote(store, "tiny", "train", "q2", "py-sort-dup")
    labels.record(store, "tiny", "q2", "py-sort-dup", "ana", "true_negative")
    with pytest.raises(UserError, match="true_negative"):
        triage.promote(store, "tiny", "train", "q2", "py-sort-dup")
    labels.record(store, "tiny", "q2", "py-sort-dup", "ana", "false_negative")
    triage.promote(store, "tiny", "train", "q2", "py-sort-dup")
    assert triage.promoted(store, "tiny")[["split", "query_id", "doc_id", "score"]].values.tolist() == \
        [["train", "q2", "py-sort-dup", 1]]
    with pytest.raises(UserError, match="already a positive"):
        triage.promote(store, "tiny", "train", "q2", "py-sort-dup")
    curated = {e.query_id: e for e in select(store, run_id, "curated").examples}
    assert "py-sort-dup" in curated["q2"].positives and "py-sort-dup" not in curated["q2"].negatives
    assert "py-sort-dup" not in {e.query_id: e for e in select(store, run_id, "raw").examples}["q2"].positives

    exported = tmp_path / "exported"
    export(store, run_id, "beir-qrels", exported)
    assert ("q2", "py-sort-dup", "1") in _train_qrels(exported)
    from core.workspace import open_workspace

    other = open_workspace(tmp_path / "other").store()
    ingest(other, exported, "again")
    again = other.qrels("again", "train")
    assert again[(again.query_id == "q2") & (again.doc_id == "py-sort-dup")]["score"].tolist() == [1]

    triage.demote(store, "tiny", "train", "q2", "py-sort-dup")
    assert triage.promoted(store, "tiny").empty
    export(store, run_id, "beir-qrels", exported)
    assert ("q2", "py-sort-dup", "1") not in _train_qrels(exported)
    with pytest.raises(UserError, match="not a promoted positive"):
        triage.demote(store, "tiny", "train", "q2", "py-sort-dup")
    with pytest.raises(UserError, match="not a promoted positive"):
        triage.demote(store, "tiny", "train", "q2", "py-sort")  # imported positives stay
    with pytest.raises(UserError, match="no split"):
        triage.promote(store, "tiny", "dev", "q2", "py-sort-dup")
