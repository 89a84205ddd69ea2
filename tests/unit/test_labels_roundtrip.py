"""Labels TSV: export then import is exact (ids and notes with tabs, newlines, quotes, backslashes), importing
the same verdicts again adds nothing, and bad files or names are refused with file, line and field."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import labels
from core.datasets import ingest
from core.errors import DatasetError, UserError
from core.validation import BIDI_CONTROLS
from core.workspace import open_workspace
from tests.cli_helpers import run_cli
from tests.fixtures import write_jsonl, write_qrels

HEADER = "query-id\tcorpus-id\tlabel\tannotator\tnote\n"


@pytest.fixture
def store(workspace, beir_dir):
    with (beir_dir / "corpus.jsonl").open("a", encoding="utf-8") as fh:  # ids the old exporter could not return
        fh.write('{"_id": "doc \\"7\\"", "text": "an id with quotes"}\n{"_id": "C:\\\\doc", "text": "a backslash"}\n')
    s = workspace.store()
    ingest(s, beir_dir, "tiny")
    return s


def verdicts(store) -> set[tuple]:
    frame = labels.current(store, "tiny")
    return set(zip(frame.query_id, frame.doc_id, frame.annotator, frame.label, frame.note))


def test_reimporting_the_same_file_adds_no_events(store, tmp_path, workspace):
    src = tmp_path / "in.tsv"
    src.write_text(HEADER + "q1\tpy-join-dup\tfn\tana\tsame function\nq2\tpy-sort-dup\tunsure\tbob\t\n")
    assert labels.import_tsv(store, "tiny", src).added == 2
    before = store.table_checksums()
    res = run_cli("labels", "import", src, "--workspace", workspace.root, "--dataset", "tiny")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "imported 0 new verdicts into 'tiny' (2 unchanged)\n"
    assert store.table_checksums() == before
    src.write_text(HEADER + "q1\tpy-join-dup\tfn\tana\tsame function\nq1\tpy-join-dup\ttn\tana\tsame function\n")
    result = labels.import_tsv(store, "tiny", src)  # a changed verdict is one new event; the equal row is not
    assert (result.added, result.unchanged) == (1, 1)
    assert ("q1", "py-join-dup", "ana", "true_negative", "same function") in verdicts(store)


def test_export_import_round_trip_is_exact_for_quotes_and_backslashes(store, tmp_path, beir_dir):
    note = 'C:\\data\\x "quotes"\tand a tab\nand a line\r\\n'
    labels.record(store, "tiny", "q1", 'doc "7"', "ana", "unsure", note=note)
    labels.record(store, "tiny", "q2", "C:\\doc", 'o"brien', "false_negative", note="\\")
    out = tmp_path / "labels.tsv"
    assert labels.export_tsv(store, "tiny", out) == 2
    assert out.read_text(encoding="utf-8").count("\n") == 3  # one line per verdict, whatever the note holds
    fresh = open_workspace(tmp_path / "fresh").store()
    ingest(fresh, beir_dir, "tiny")
    assert labels.import_tsv(fresh, "tiny", out).added == 2
    assert verdicts(fresh) == verdicts(store)
    assert ("q1", 'doc "7"', "ana", "unsure", note) in verdicts(fresh)


def test_files_of_the_earlier_exporter_still_read(store, tmp_path):
    """The csv-module exporter escaped quotes and backslashes with a backslash and had no other escapes."""
    old = tmp_path / "old.tsv"
    old.write_text(HEADER + 'q1\tdoc \\"7\\"\tunsure\tana\tsaid \\"no\\" at C:\\\\tmp\n')
    labels.import_tsv(store, "tiny", old)
    assert verdicts(store) == {("q1", 'doc "7"', "ana", "unsure", 'said "no" at C:\\tmp')}


@pytest.mark.parametrize("row, field, reason", [
    ("q1\tpy-join\tunsure\tana\tC:\\data\n", "note", "unknown escape \\d"),
    ("q1\tpy-join\tunsure\tana\ttrailing \\\n", "note", "a backslash at the end of the field"),
    ("q1\tpy-join\tunsure\tana \t\n", "annotator", "must not start or end with spaces"),
    ("q1\tpy-join\tunsure\ta\u202eb\t\n", "annotator", "bidirectional control characters (U+202E)"),
])
def test_bad_cells_are_refused_with_line_and_field(store, tmp_path, row, field, reason):
    path = tmp_path / "bad.tsv"
    path.write_text(HEADER + "q2\tpy-sort\tunsure\tana\tfine\n" + row, encoding="utf-8")
    before = store.table_checksums()
    with pytest.raises(DatasetError) as err:
        labels.import_tsv(store, "tiny", path)
    assert (err.value.line, err.value.field) == (3, field)
    assert reason in err.value.reason
    assert store.table_checksums() == before


def test_invalid_utf8_names_line_and_byte_offset(store, tmp_path):
    path = tmp_path / "bad.tsv"
    head = (HEADER + "q1\tpy-join\tunsure\tana\tok\n").encode() + b"q2\tpy-sort\tunsure\tana\tbad "
    path.write_bytes(head + b"\xff byte\n")
    with pytest.raises(DatasetError) as err:
        labels.import_tsv(store, "tiny", path)
    assert err.value.line == 3
    assert f"byte 0xff at offset {len(head)} of the file" in err.value.reason


def test_a_fifo_labels_file_is_refused_at_once(store, tmp_path, workspace):
    fifo = tmp_path / "labels.tsv"
    os.mkfifo(fifo)
    res = run_cli("labels", "import", fifo, "--workspace", workspace.root, "--dataset", "tiny", timeout=120)
    assert res.returncode == 2
    assert res.stderr == f"error: {fifo}: is a FIFO, not a regular file\n"


@pytest.mark.parametrize("name", ["ana ", " ana", "an\u202ea", "\u2067ana", "ana\u200f"])
def test_annotator_names_are_refused_not_stripped(store, name):
    before = store.table_checksums()
    with pytest.raises(UserError, match="annotator name"):
        labels.record(store, "tiny", "q1", "py-join", name, "unsure")
    assert store.table_checksums() == before


# -- property: export -> import into a fresh workspace is the identity ------------------------------------------
AWKWARD = ["\t", "\n", "\r", "\\", '"', "\\t", "\\n", "'", "\u2028", "\x85", "\ufeff", "🙂", " "]
awkward = st.lists(st.one_of(st.characters(codec="utf-8"), st.sampled_from(AWKWARD)), max_size=8).map("".join)
# Ids as BEIR stores them: no NUL (refused on import), no surrounding whitespace (stripped on import).
ids = awkward.filter(lambda s: s and s == s.strip() and "\x00" not in s)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=6).filter(
    lambda s: s == s.strip() and not set(s) & BIDI_CONTROLS)
ROUND_TRIP = settings(max_examples=150, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
counter = itertools.count()


@pytest.fixture(scope="module")
def two_workspaces(tmp_path_factory):
    root = tmp_path_factory.mktemp("roundtrip")
    source, target = open_workspace(root / "a").store(), open_workspace(root / "b").store()
    yield source, target, root
    source.close()
    target.close()


@ROUND_TRIP
@given(doc_ids=st.lists(ids, min_size=1, max_size=4, unique=True),
       query_ids=st.lists(ids, min_size=1, max_size=3, unique=True),
       judged=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), names, st.sampled_from(labels.LABELS),
                                 awkward), min_size=1, max_size=6))
def test_export_then_import_into_a_fresh_workspace_is_the_identity(two_workspaces, doc_ids, query_ids, judged):
    source, target, root = two_workspaces
    dataset = f"rt{next(counter)}"
    folder = Path(tempfile.mkdtemp(dir=root))
    try:
        # The random ids are extra documents and queries; the qrels use two plain ones (qrels TSV has no escapes).
        write_jsonl(folder / "corpus.jsonl", [{"_id": d, "text": "t"} for d in ["plain-doc", *doc_ids]])
        write_jsonl(folder / "queries.jsonl", [{"_id": q, "text": "t"} for q in ["plain-q", *query_ids]])
        (folder / "qrels").mkdir()
        write_qrels(folder / "qrels" / "train.tsv", {"plain-q": {"plain-doc": 1}})
        for store in (source, target):
            ingest(store, folder, dataset)
        for q, d, who, label, note in judged:
            labels.record(source, dataset, query_ids[q % len(query_ids)], doc_ids[d % len(doc_ids)], who, label,
                          note=note)
        labels.export_tsv(source, dataset, folder / "labels.tsv")
        labels.import_tsv(target, dataset, folder / "labels.tsv")

        def current(store) -> set[tuple]:
            frame = labels.current(store, dataset)
            return set(zip(frame.query_id, frame.doc_id, frame.annotator, frame.label, frame.note))
        assert current(target) == current(source)
        assert labels.import_tsv(target, dataset, folder / "labels.tsv").added == 0
    finally:
        shutil.rmtree(folder)
