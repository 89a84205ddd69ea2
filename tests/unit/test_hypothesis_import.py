"""Property-based hardening of every importer: BEIR folders, pairs JSONL/CSV and labels TSV.

Inputs are near-valid files with a few random faults (wrong types, missing fields, truncated lines, huge fields,
odd unicode such as lone surrogates, U+2028, NEL, BOM and NUL, duplicate ids, wrong column counts) or plain random
bytes. The properties:
- nothing but a ``UserError`` (``DatasetError`` included) ever escapes, so the CLI and app never show a traceback;
- a rejected import leaves the workspace byte-identical (``Store.table_checksums``);
- a valid file imports, and every text reads back exactly as written.
The fault rates are low enough that a good share of examples import successfully, so the later stages (qrels,
the write) are exercised too; run with ``--hypothesis-show-statistics`` to see the accepted/rejected mix.
Each fuzz suite runs 1,000 examples on one shared workspace with small inputs.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core import labels
from core.datasets import MAX_FIELD_CHARS, ingest
from core.errors import UserError
from core.workspace import open_workspace
from tests.fixtures import DOCS, QUERIES, make_beir

pytestmark = pytest.mark.slow  # left out of the fast lane

FUZZ = settings(max_examples=1000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
FEW = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Valid but awkward: line separators that str.splitlines() honours, BOM, RTL override, combining marks, emoji,
# characters JSON/CSV/TSV must quote or escape.
AWKWARD = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\ufeff", "\u202e", "e\u0301", "🙂", "漢", '"', "\\",
           ",", " ", "\r", "'"]
# Never valid in a stored text: NUL, and lone surrogates (JSON can spell them, UTF-8 cannot encode them).
INVALID = ["\x00", "\ud800", "\udcff"]
plain_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=10)
awkward_text = st.lists(st.one_of(st.characters(codec="utf-8", exclude_characters="\x00"),
                                  st.sampled_from(AWKWARD)), min_size=1, max_size=10).map("".join)
invalid_text = st.tuples(awkward_text, st.sampled_from(INVALID)).map("".join)
huge_text = st.integers(MAX_FIELD_CHARS - 1, MAX_FIELD_CHARS + 1).map(lambda n: "x" * n)
wrong_type = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.lists(plain_text, max_size=2),
                       st.dictionaries(plain_text, plain_text, max_size=1))


class Maker:
    """Draws one example. Half of the examples carry faults (each value then has a small chance of being wrong),
    the other half are valid files with awkward text, so imports also succeed and reach the write."""

    def __init__(self, draw: st.DrawFn):
        self.draw = draw
        self.faulty = draw(st.booleans())

    def fault(self, one_in: int) -> bool:
        return self.faulty and self.draw(st.integers(0, one_in - 1)) == 0

    def text(self) -> object:
        """A string, often with awkward characters; in a faulty example sometimes invalid, huge or a wrong type."""
        if self.fault(5):
            return self.draw(st.one_of(invalid_text, wrong_type, huge_text, st.just("")))
        return self.draw(st.one_of(plain_text, awkward_text))

    def ref(self, ids: list[str]) -> object:
        """A reference to one of ``ids``; in a faulty example sometimes dangling, blank or of a wrong type."""
        if not ids or self.fault(6):
            return self.draw(st.one_of(st.sampled_from(["", " ", "nope", "\u2028"]), invalid_text, wrong_type))
        return self.draw(st.sampled_from(ids))

    def encode(self, text: str) -> bytes:
        """UTF-8 (a lone surrogate becomes invalid bytes), maybe with a BOM; a faulty file may be cut short."""
        data = text.encode("utf-8", "surrogatepass")
        if self.draw(st.integers(0, 9)) == 0:
            data = b"\xef\xbb\xbf" + data
        if data and self.fault(8):
            data = data[:self.draw(st.integers(0, len(data) - 1))]
        return data

    def file(self, build: Callable[[], bytes]) -> bytes:
        """The near-valid file, or (faulty examples, rarely) random bytes instead."""
        return self.draw(st.binary(max_size=200)) if self.fault(12) else build()

    def jsonl(self, records: list[dict]) -> bytes:
        """JSON lines, escaping non-ASCII or not; a faulty file may hold lines that are not a JSON object."""
        ensure_ascii = self.draw(st.booleans())
        lines = [self.draw(st.sampled_from(NOT_OBJECTS)) if self.fault(8)
                 else json.dumps(obj, ensure_ascii=ensure_ascii) for obj in records]
        newline = self.draw(st.sampled_from(["\n", "\r\n"]))
        return self.encode(newline.join(lines) + (newline if self.draw(st.booleans()) else ""))

    def tsv(self, header: list[str], rows: list[list[str]]) -> bytes:
        """TSV; a faulty file may have its header shuffled or missing and rows one cell short or long."""
        if self.fault(6):
            header = self.draw(st.permutations(header))
        lines = [] if self.fault(10) else ["\t".join(header)]
        for row in rows:
            if self.fault(10):
                row = row[:-1] if self.draw(st.booleans()) else [*row, "extra"]
            lines.append("\t".join(row))
        newline = self.draw(st.sampled_from(["\n", "\r\n"]))
        return self.encode(newline.join(lines) + newline)

    def name(self) -> str:
        return self.draw(st.one_of(invalid_text, st.just(""), st.just("n" * 201))) if self.fault(10) else "fuzz"


NOT_OBJECTS = ["not json", "[1, 2]", '"a string"', "[" * 100_000, '{"_id": ' + "9" * 5000 + "}",
               '{"_id": "x", "text": "\\ud800"}', '{"a": 1,,}', "{", ""]


# -- harness ------------------------------------------------------------------------------------------------------
def workspace_with_tiny(tmp_path_factory):
    """A workspace holding the tiny dataset (for labels), and a scratch folder for inputs."""
    root = tmp_path_factory.mktemp("fuzz")
    store = open_workspace(root / "ws").store()
    ingest(store, make_beir(root / "tiny"), "tiny")
    scratch = root / "inputs"
    scratch.mkdir()
    yield store, scratch
    store.close()


# One workspace for all importer suites (it grows with accepted labels); a small one of its own for the path suite.
shared = pytest.fixture(scope="module")(workspace_with_tiny)
small = pytest.fixture(scope="module")(workspace_with_tiny)


def attempt(store, action: Callable[[], object]) -> object | None:
    """Run an import: it either succeeds, or raises a UserError and leaves every table exactly as it was."""
    before = store.table_checksums()
    try:
        result = action()
    except UserError as exc:
        event(f"rejected: {getattr(exc, 'reason', str(exc))[:30]}")
        assert store.table_checksums() == before, f"rejected import changed the workspace: {exc}"
        return None
    event("accepted")
    return result


def ingest_one_file(shared, filename: str, data: bytes, name: str) -> None:
    """Write one generated file and import it as dataset ``name`` under the ``attempt`` contract."""
    store, scratch = shared
    folder = write_files(scratch, {filename: data})
    try:
        attempt(store, lambda: ingest(store, folder / filename, name, replace=True))
    finally:
        shutil.rmtree(folder)


def write_files(scratch: Path, files: dict[str, bytes]) -> Path:
    """A fresh folder holding ``files`` (relative paths); names the file system refuses are skipped."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.write_bytes(data)
        except OSError:  # e.g. a split name longer than 255 bytes: not the importer's problem
            pass
    return folder


# -- BEIR ---------------------------------------------------------------------------------------------------------
SCORES = ["1.0", "2.5", "-1", "nan", "inf", "1e400", "1e30", "9" * 30, "١", "1_0", " 1 ", "", "x"]


@st.composite
def beir_folder(draw: st.DrawFn) -> tuple[dict[str, bytes], str]:
    """corpus.jsonl, queries.jsonl and qrels/<split>.tsv with graded judgments between them, and a dataset name."""
    make = Maker(draw)
    doc_ids = [f"d{i}" for i in range(draw(st.integers(1, 5)))]
    query_ids = [f"q{i}" for i in range(draw(st.integers(1, 3)))]
    docs = [{"_id": make.ref(doc_ids) if make.fault(8) else doc_id, "title": make.text(), "text": make.text()}
            for doc_id in doc_ids]
    queries = [{"_id": make.ref(query_ids) if make.fault(8) else query_id, "text": make.text()}
               for query_id in query_ids]
    for record in docs + queries:
        if make.fault(10):
            del record[draw(st.sampled_from(sorted(record)))]
    files = {"corpus.jsonl": make.file(lambda: make.jsonl(docs)),
             "queries.jsonl": make.file(lambda: make.jsonl(queries))}
    splits = draw(st.lists(st.sampled_from(["train", "test", "odd split", "x" * 300]), min_size=1, max_size=2,
                           unique=True))
    for split in splits:
        pairs = draw(st.lists(st.tuples(st.sampled_from(query_ids), st.sampled_from(doc_ids)), min_size=1,
                              max_size=4, unique=True))
        rows = [[str(make.ref(query_ids)) if make.fault(8) else q, str(make.ref(doc_ids)) if make.fault(8) else d,
                 draw(st.sampled_from(SCORES)) if make.fault(6) else str(draw(st.integers(0, 3)))]
                for q, d in pairs]
        files[f"qrels/{split}.tsv"] = make.file(lambda: make.tsv(["query-id", "corpus-id", "score"], rows))
    if make.fault(20):
        del files[draw(st.sampled_from(["corpus.jsonl", "queries.jsonl", f"qrels/{splits[0]}.tsv"]))]
    return files, make.name()


@FUZZ
@given(example=beir_folder())
def test_beir_folder_never_crashes_and_rejections_change_nothing(shared, example):
    store, scratch = shared
    files, name = example
    folder = write_files(scratch, files)
    try:
        attempt(store, lambda: ingest(store, folder, name, replace=True))
    finally:
        shutil.rmtree(folder)


# -- pairs / triplets ---------------------------------------------------------------------------------------------
PAIR_HEADERS = [["anchor", "positive"], ["anchor", "positive", "negative"], ["query", "pos", "neg_1", "neg_2"],
                ["question", "answer"], ["Anchor", "Positive"]]
BAD_PAIR_HEADERS = [["anchor", "other"], ["text"], ["positive"]]


def pairs_rows(make: Maker) -> tuple[list[str], list[list[object]]]:
    header = make.draw(st.sampled_from(BAD_PAIR_HEADERS if make.fault(10) else PAIR_HEADERS))
    rows = [[make.text() for _ in header] for _ in range(make.draw(st.integers(0 if make.fault(10) else 1, 4)))]
    return header, rows


@st.composite
def pairs_jsonl(draw: st.DrawFn) -> tuple[bytes, str]:
    make = Maker(draw)
    header, rows = pairs_rows(make)
    records = [dict(zip(header, row)) for row in rows]
    for record in records:
        if "negative" in record and draw(st.booleans()):  # n-tuple style: a list of negatives
            record["negative"] = [make.text() for _ in range(draw(st.integers(0, 3)))]
    return make.file(lambda: make.jsonl(records)), make.name()


@FUZZ
@given(example=pairs_jsonl())
def test_pairs_jsonl_never_crashes_and_rejections_change_nothing(shared, example):
    data, name = example
    ingest_one_file(shared, "pairs.jsonl", data, name)


@st.composite
def pairs_csv(draw: st.DrawFn) -> bytes:
    """csv-module output (quoting, embedded newlines); faulty files may hand-join cells so quoting breaks, or hold
    a cell above the csv module's default 131,072-character field limit."""
    make = Maker(draw)
    header, rows = pairs_rows(make)
    cells = [[value if isinstance(value, str) else json.dumps(value) for value in row] for row in rows]
    if cells and make.fault(10):
        cells[0][-1] = "y" * 200_000
    if make.fault(6):
        text = "\n".join(",".join(row) for row in [header, *cells])
    else:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([header, *cells])
        text = buffer.getvalue()
    return make.file(lambda: make.encode(text))


@FUZZ
@given(data=pairs_csv())
def test_pairs_csv_never_crashes_and_rejections_change_nothing(shared, data):
    ingest_one_file(shared, "pairs.csv", data, "fuzz")


@st.composite
def pairs_parquet(draw: st.DrawFn) -> bytes:
    """A pyarrow table of pairs/triplets; faulty ones hold nulls, numbers, nested lists or structs in text columns,
    or are cut short (a truncated footer) or replaced by random bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def storable(value: object) -> str | None:  # Parquet strings are UTF-8: a lone surrogate cannot be written
        return value if isinstance(value, str) and not any("\ud800" <= c <= "\udfff" for c in value) else None

    make = Maker(draw)
    header, rows = pairs_rows(make)
    columns = {}
    for i, column in enumerate(header):
        values = [storable(row[i]) for row in rows]
        if make.fault(6):
            values = draw(st.sampled_from([[None] * len(rows), list(range(len(rows))),
                                           [[v] for v in values], [{"x": v} for v in values]]))
        if column == "negative" and rows and draw(st.booleans()):  # n-tuple style: a list of negatives
            values = [[storable(make.text()) for _ in range(draw(st.integers(0, 3)))] for _ in rows]
        columns[column] = values

    def build() -> bytes:
        buffer = io.BytesIO()
        pq.write_table(pa.table(columns) if columns else pa.table({}), buffer)
        data = buffer.getvalue()
        return data[:draw(st.integers(0, len(data) - 1))] if make.fault(8) else data
    return make.file(build)


@FUZZ
@given(data=pairs_parquet())
def test_pairs_parquet_never_crashes_and_rejections_change_nothing(shared, data):
    ingest_one_file(shared, "pairs.parquet", data, "fuzz")


# -- labels TSV ---------------------------------------------------------------------------------------------------
LABEL_HEADERS = [labels.TSV_COLUMNS, labels.TSV_COLUMNS[:3], labels.TSV_COLUMNS[:4],
                 ["Query-ID", "corpus-id", "label", "note", "extra"]]
LABEL_VALUES = {"query-id": list(QUERIES), "corpus-id": list(DOCS), "label": [*labels.LABELS, *labels.LABEL_ALIASES,
                                                                             " FN "], "annotator": ["ana", " cy "]}


@st.composite
def labels_tsv(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """Rows over the tiny dataset's ids with labels, aliases, names and notes; and an --annotator value."""
    make = Maker(draw)
    header = draw(st.sampled_from(LABEL_HEADERS + ([["query-id", "label"]] if make.fault(10) else [])))
    rows = []
    for _ in range(draw(st.integers(0 if make.fault(10) else 1, 4))):
        row = []
        for column in header:
            pool = LABEL_VALUES.get(column.lower())
            if make.fault(10) or pool is None:
                value = draw(st.one_of(plain_text, awkward_text, invalid_text, st.just("x" * 101), st.just("")))
            else:
                value = draw(st.sampled_from(pool))
            row.append(value if make.fault(10) else value.replace("\t", " ").replace("\n", " "))
        rows.append(row)
    annotator = (draw(st.one_of(st.sampled_from(["", " ", "a\tb", "x" * 101]), invalid_text)) if make.fault(10)
                 else draw(st.sampled_from([None, "ana"])))
    return make.file(lambda: make.tsv(header, rows)), annotator


@FUZZ
@given(example=labels_tsv())
def test_labels_tsv_never_crashes_and_rejections_change_nothing(shared, example):
    store, scratch = shared
    data, annotator = example
    folder = write_files(scratch, {"labels.tsv": data})
    try:
        before = len(store.events("tiny"))
        result = attempt(store, lambda: labels.import_tsv(store, "tiny", folder / "labels.tsv", annotator))
        if result is not None:
            assert len(store.events("tiny")) == before + result.added
    finally:
        shutil.rmtree(folder)


# -- valid input is accepted exactly ------------------------------------------------------------------------------
clean_id = st.text(st.characters(exclude_categories=("C", "Z")), min_size=1, max_size=8)
any_text = st.one_of(plain_text, awkward_text, st.just(""))
note_text = st.one_of(any_text, st.sampled_from(["\t", "\n", "\r", "\\", "\\t", 'C:\\x "q"']))


@FEW
@given(docs=st.dictionaries(clean_id, st.tuples(any_text, any_text), min_size=1, max_size=5),
       queries=st.dictionaries(clean_id, any_text, min_size=1, max_size=3), ascii_json=st.booleans())
def test_valid_beir_round_trips_every_character(shared, docs, queries, ascii_json):
    store, scratch = shared

    def jsonl(rows: list[dict]) -> bytes:
        return "".join(json.dumps(r, ensure_ascii=ascii_json) + "\n" for r in rows).encode()

    qrels = [(q, d) for q in queries for d in docs]
    folder = write_files(scratch, {
        "corpus.jsonl": jsonl([{"_id": k, "title": t, "text": x} for k, (t, x) in docs.items()]),
        "queries.jsonl": jsonl([{"_id": k, "text": v} for k, v in queries.items()]),
        "qrels/train.tsv": ("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels)).encode()})
    try:
        ingest(store, folder, "valid", replace=True)
        stored = store.documents("valid")
        assert {r.doc_id: (r.title, r.text) for r in stored.itertuples()} == docs
        stored_queries = store.queries("valid")
        assert dict(zip(stored_queries.query_id, stored_queries.text)) == queries
        assert len(store.qrels("valid")) == len(qrels)
    finally:
        shutil.rmtree(folder)


@FEW
@given(rows=st.lists(st.tuples(st.sampled_from(list(QUERIES)), st.sampled_from(list(DOCS)),
                               st.sampled_from(labels.LABELS), clean_id, note_text), min_size=1, max_size=5))
def test_valid_labels_tsv_round_trips_notes(shared, rows):
    """Notes written with the documented backslash escapes read back exactly; each row ends up as its
    annotator's current verdict on the pair (the last row wins when a file judges a pair twice)."""
    store, scratch = shared

    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")

    body = "\t".join(labels.TSV_COLUMNS) + "\n" + "".join("\t".join(map(escaped, row)) + "\n" for row in rows)
    folder = write_files(scratch, {"labels.tsv": body.encode()})
    try:
        result = labels.import_tsv(store, "tiny", folder / "labels.tsv")
        assert result.added + result.unchanged == len(rows)
        now = labels.current(store, "tiny").set_index(["annotator", "query_id", "doc_id"])
        expected = {(who, q, d): (label, note) for q, d, label, who, note in rows}
        assert {key: tuple(now.loc[key, ["label", "note"]]) for key in expected} == expected
    finally:
        shutil.rmtree(folder)


# -- paths given by users -----------------------------------------------------------------------------------------
segment = st.one_of(plain_text, awkward_text, invalid_text, st.just("x" * 300)).map(lambda s: s.replace("/", "_"))
SPECIAL_PATHS = ["", " ", "\x00", "a\x00b", "x/" * 2100, "~nobody-such-user/x", ".", "sub/", "\udcff.jsonl"]


@FEW
@given(relative=st.one_of(st.lists(segment, min_size=1, max_size=3).map("/".join), st.sampled_from(SPECIAL_PATHS)))
def test_user_paths_are_validated(small, relative):
    """Every command that takes a path answers a bad one with a UserError; a good one, however odd, works."""
    from core.backup import backup, restore

    store, scratch = small
    folder = write_files(scratch, {})
    # Blank and ~user paths as given; everything else inside this example's folder, never elsewhere on disk.
    given_path = relative if relative.startswith("~") or not relative.strip() else str(folder / relative)
    workspace = open_workspace(store.path.parent)
    try:
        for action in (lambda: labels.export_tsv(store, "tiny", given_path),
                       lambda: labels.import_tsv(store, "tiny", given_path),
                       lambda: ingest(store, given_path, "fuzz-path", replace=True),
                       lambda: backup(workspace, given_path),
                       lambda: restore(given_path, folder / "restored", force=True),
                       lambda: open_workspace(given_path)):
            attempt(store, action)
        dataset_file = Path(given_path + ".jsonl")
        if given_path.startswith(str(folder)) and write_fixture(dataset_file):
            attempt(store, lambda: ingest(store, dataset_file, "fuzz-path", replace=True))
            source = store.dataset("fuzz-path")["source"]
            assert source.encode("utf-8") and source.endswith(".jsonl")  # stored as valid UTF-8 text
    finally:
        shutil.rmtree(folder)


def write_fixture(path: Path) -> bool:
    """A valid pairs file at ``path``, if the file system accepts the name (NUL, too long, ...)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"anchor": "a query", "positive": "a passage"}\n', encoding="utf-8")
    except (OSError, ValueError):
        event("fixture file refused by the file system")
        return False
    return True
