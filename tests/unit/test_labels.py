"""Verdict events: record, undo, current, resolved, TSV round trip."""

from __future__ import annotations

import pytest

from core import labels
from core.datasets import ingest
from core.errors import DatasetError, UserError


@pytest.fixture
def store(workspace, beir_dir):
    s = workspace.store()
    ingest(s, beir_dir, "tiny")
    return s


def test_undo_is_an_event_and_restores_previous_verdict(store):
    labels.record(store, "tiny", "q1", "py-join-dup", "ana", "true_negative")
    labels.record(store, "tiny", "q1", "py-join-dup", "ana", "false_negative", note="same function")
    assert labels.current(store, "tiny").label.tolist() == ["false_negative"]
    undone = labels.undo(store, "tiny", "ana")
    assert [u["label"] for u in undone] == ["false_negative"]
    assert labels.current(store, "tiny").label.tolist() == ["true_negative"]
    labels.undo(store, "tiny", "ana")
    assert labels.current(store, "tiny").empty
    assert labels.undo(store, "tiny", "ana") == []
    events = store.events("tiny")
    assert events.kind.tolist() == ["verdict", "verdict", "undo", "undo"]


def test_resolved_prefers_adjudication_then_cautious_majority(store):
    labels.record(store, "tiny", "q1", "py-join-dup", "ana", "false_negative")
    labels.record(store, "tiny", "q1", "py-join-dup", "bob", "true_negative")
    assert labels.resolved(store, "tiny").label.tolist() == ["false_negative"]
    labels.record(store, "tiny", "q1", "py-join-dup", "cy", "true_negative")
    assert labels.resolved(store, "tiny").label.tolist() == ["true_negative"]
    labels.record(store, "tiny", "q1", "py-join-dup", "lead", "false_negative", adjudication=True)
    row = labels.resolved(store, "tiny").iloc[0]
    assert (row.label, row.source, row.annotators) == ("false_negative", "adjudicated", 4)


def test_tsv_round_trip(store, tmp_path):
    src = tmp_path / "in.tsv"
    src.write_text("query-id\tcorpus-id\tlabel\tannotator\tnote\n"
                   "q1\tpy-join-dup\tfalse_negative\tana\tre-export\n"
                   "q2\tpy-sort-dup\tunsure\t\t\n")
    assert labels.import_tsv(store, "tiny", src, annotator="bob").added == 2
    out = tmp_path / "out.tsv"
    assert labels.export_tsv(store, "tiny", out) == 2
    lines = out.read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tlabel\tannotator\tnote"
    assert set(lines[1:]) == {"q1\tpy-join-dup\tfalse_negative\tana\tre-export", "q2\tpy-sort-dup\tunsure\tbob\t"}
    before = store.table_checksums()
    again = labels.import_tsv(store, "tiny", out)  # re-importing an export is a no-op
    assert (again.added, again.unchanged) == (0, 2)
    assert store.table_checksums() == before


@pytest.mark.parametrize("body, line, field", [
    ("q1\tnope\tfalse_negative\tana\t\n", 2, "corpus-id"),
    ("q9\tpy-join\tfalse_negative\tana\t\n", 2, "query-id"),
    ("q1\tpy-join\tmaybe\tana\t\n", 2, "label"),
    ("q1\tpy-join\tunsure\tana\t\nq1\tpy-join\tunsure\t\t\n", 3, "annotator"),
])
def test_bad_label_rows_rejected_whole(store, tmp_path, body, line, field):
    path = tmp_path / "bad.tsv"
    path.write_text("query-id\tcorpus-id\tlabel\tannotator\tnote\n" + body)
    before = store.table_checksums()
    with pytest.raises(DatasetError) as err:
        labels.import_tsv(store, "tiny", path)
    assert (err.value.line, err.value.field) == (line, field)
    assert store.table_checksums() == before


def test_unknown_dataset_and_bad_annotator(store):
    with pytest.raises(UserError):
        labels.record(store, "tiny", "q1", "py-join", "", "unsure")
    with pytest.raises(UserError):
        labels.record(store, "tiny", "q1", "py-join", "ana", "relevant")
