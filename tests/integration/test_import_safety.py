"""Dataset imports never corrupt silently: concurrent imports of one name, replaces that would orphan runs or
verdicts, pairs files whose columns would be guessed wrong, odd values, and inputs that are not regular files.
Every refusal names the file (line, field) and leaves the store's tables exactly as they were."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import labels
from core.datasets import ingest
from core.errors import DatasetError, UserError
from core.workspace import open_workspace
from tests.app_helpers import store_at
from tests.cli_helpers import ROOT, run_cli, tree
from tests.fixtures import DOCS, QUERIES, TEST, TRAIN, make_beir, reaped, write_jsonl

PATIENCE_S = 600  # children import pandas on two busy cores; this is about outcomes, not speed


def write_corpus(folder: Path, docs: dict[str, tuple[str, str]]) -> None:
    write_jsonl(folder / "corpus.jsonl", [{"_id": k, "title": t, "text": x} for k, (t, x) in docs.items()])


# -- concurrent imports of one name ---------------------------------------------------------------------------
def _ingest_child(db_path: str, folder: str, ready, out) -> None:
    """Import ``folder`` as dataset 'race' through a store of its own, as a second CLI process would."""
    try:
        from core.datasets import ingest as do_ingest
        from core.errors import UserError as Refused
        from core.store import Store

        store = Store(db_path)
        ready.put(folder)
        try:
            out.put((folder, "ok", do_ingest(store, folder, "race").status))
        except Refused as exc:
            out.put((folder, "refused", str(exc)))
        store.close()
    except BaseException:  # report everything; the test asserts there was nothing to report
        out.put((folder, "error", traceback.format_exc()))


def test_two_concurrent_ingests_of_one_name_cannot_both_succeed(workspace, tmp_path, spawn):
    """Both children start while the parent holds the write lock, so each has parsed its input and looked for
    'race' before either can write: only a check inside the write transaction lets exactly one win."""
    first, second = make_beir(tmp_path / "first"), make_beir(tmp_path / "second")
    write_jsonl(second / "queries.jsonl", [{"_id": k, "text": f"{v}, asked differently"} for k, v in QUERIES.items()])
    store = workspace.store()
    ready, out = spawn.Queue(), spawn.Queue()
    procs = [spawn.Process(target=_ingest_child, args=(str(workspace.db_path), str(folder), ready, out))
             for folder in (first, second)]
    with reaped(procs):
        with store.transaction():
            for proc in procs:
                proc.start()
            for _ in procs:
                ready.get(timeout=PATIENCE_S)
            time.sleep(3)  # give both time to parse and reach the write; the outcome must not depend on it
        results = [out.get(timeout=PATIENCE_S) for _ in procs]
    assert not [detail for _, kind, detail in results if kind == "error"], results
    assert sorted(kind for _, kind, _ in results) == ["ok", "refused"], results
    winner = Path(next(folder for folder, kind, _ in results if kind == "ok"))
    refusal = next(detail for _, kind, detail in results if kind == "refused")
    assert "dataset 'race' already exists with different content (use --replace" in refusal
    expected = dict(QUERIES) if winner == first else {k: f"{v}, asked differently" for k, v in QUERIES.items()}
    stored = store.queries("race")
    assert dict(zip(stored["query_id"], stored["text"])) == expected


# -- an import killed while it stages its rows --------------------------------------------------------------------
def staging_files(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".negspace.sqlite.negspace-")]


def test_an_import_killed_while_staging_changes_nothing_and_the_next_clears_its_file(workspace, beir_dir, tmp_path):
    """Rows are staged in a scratch file beside the store; an import killed there (SIGKILL: no cleanup of its own)
    leaves every table as it was, and the next import removes the file it left behind."""
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    before, listing = store.table_checksums(), tree(workspace.root)
    big = tmp_path / "big.jsonl"
    write_jsonl(big, [{"anchor": f"query {i}", "positive": f"passage {i} " + "lorem ipsum " * 12}
                      for i in range(50_000)])
    proc = subprocess.Popen([sys.executable, "-m", "core", "ingest", big, "--workspace", workspace.root, "--name",
                             "big"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and not staging_files(workspace.root):
            time.sleep(0.01)
        proc.kill()
    finally:
        proc.kill()
        proc.wait(timeout=PATIENCE_S)
    assert proc.returncode == -9, "the import ended before its staging file was seen"
    left = staging_files(workspace.root)
    assert len(left) == 1 and tree(workspace.root) == sorted([*listing, left[0]])
    assert store.table_checksums() == before
    assert ingest(store, beir_dir, "again").status == "imported"
    assert staging_files(workspace.root) == [] and tree(workspace.root) == listing


# -- a replace never orphans what runs and verdicts use -------------------------------------------------------
def test_replace_dropping_a_candidate_document_is_refused_and_adding_one_is_not(ws_root, tmp_path):
    store = store_at(ws_root)
    run_id = store.runs("tiny")[0]["run_id"]
    judged = {d for qrels in (TRAIN, TEST) for docs in qrels.values() for d in docs}
    dropped = next(d for d in store.candidates(run_id)["doc_id"] if d not in judged)
    folder = make_beir(tmp_path / "new")
    write_corpus(folder, {k: v for k, v in DOCS.items() if k != dropped})
    before = store.table_checksums()
    res = run_cli("ingest", folder, "--workspace", ws_root, "--name", "tiny", "--replace")
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "lacks 1 document(s) still used by 1 run(s)" in res.stderr and run_id in res.stderr
    assert store.table_checksums() == before

    write_corpus(folder, {**DOCS, "new-doc": ("New", "A document the first import did not have.")})
    res = run_cli("ingest", folder, "--workspace", ws_root, "--name", "tiny", "--replace")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("replaced dataset 'tiny'")
    out = tmp_path / "export"
    res = run_cli("export", "--workspace", ws_root, "--run", run_id, "--format", "st-triplet", "--out", out)
    assert res.returncode == 0, res.stderr
    assert (out / "data.jsonl").read_text().count("\n") > 0


@pytest.mark.parametrize("reference", ["verdict on a document", "promoted positive", "verdict on a query"])
def test_replace_dropping_judged_ids_is_refused(workspace, beir_dir, reference):
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    if reference == "verdict on a document":
        labels.record(store, "tiny", "q1", "misc-8", "ana", "true_negative")
        write_corpus(beir_dir, {k: v for k, v in DOCS.items() if k != "misc-8"})
        message = "lacks 1 document(s) still used by 1 label event(s)"
    elif reference == "promoted positive":
        store.set_promoted("tiny", "train", "q1", "misc-8", 1)
        write_corpus(beir_dir, {k: v for k, v in DOCS.items() if k != "misc-8"})
        message = "lacks 1 document(s) still used by 1 promoted positive(s)"
    else:
        labels.record(store, "tiny", "q8", "misc-8", "ana", "unsure")
        write_jsonl(beir_dir / "queries.jsonl", [{"_id": k, "text": v} for k, v in QUERIES.items() if k != "q8"])
        (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq7\tsport-1\t1\n")
        message = "lacks 1 query(ies) still used by 1 label event(s)"
    before = store.table_checksums()
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest(store, beir_dir, "tiny", replace=True)
    assert store.table_checksums() == before


# -- pairs / triplets: columns by exact name, TSV read literally ----------------------------------------------
def test_tsv_pairs_keep_quotes_literal_and_every_row(workspace, tmp_path):
    rows = [(f"query {i}", f"passage {i}") for i in range(50)]
    rows[10] = ('"open quote that never closes', 'passage "10"')
    rows[11] = ("query 11", '"a field in quotes"')
    path = tmp_path / "pairs.tsv"
    path.write_text("anchor\tpositive\n" + "".join(f"{a}\t{p}\n" for a, p in rows), encoding="utf-8")
    store = workspace.store()
    assert ingest(store, path, "p").queries == 50
    assert set(store.queries("p")["text"]) == {a for a, _ in rows}
    assert set(store.documents("p")["text"]) == {p for _, p in rows}
    with path.open("a", encoding="utf-8") as fh:
        fh.write("one more\tpassage\twith a stray tab\n")
    before = store.table_checksums()
    with pytest.raises(DatasetError, match=r"pairs.tsv:52: 3 tab-separated fields, the header has 2"):
        ingest(store, path, "p", replace=True)
    assert store.table_checksums() == before


def test_negative_columns_found_in_any_row_and_scores_ignored(workspace, tmp_path):
    path = tmp_path / "triplets.jsonl"
    rows = [{"anchor": "first query", "positive": "first passage"}]  # row 1 has no negative at all
    rows += [{"anchor": f"query {i}", "positive": f"passage {i}", "negative": f"negative {i}",
              "negative_score": i / 10} for i in range(1, 6)]
    write_jsonl(path, rows)
    store = workspace.store()
    result = ingest(store, path, "t")
    assert store.dataset("t")["format"] == "triplets"
    texts = set(store.documents("t")["text"])
    assert texts == {"first passage"} | {f"passage {i}" for i in range(1, 6)} | {f"negative {i}" for i in range(1, 6)}
    assert result.documents == 11


@pytest.mark.parametrize("suffix, header, column, reason", [
    (".csv", ["anchor", "positive", "positive"], "positive", "duplicate column"),
    (".tsv", ["anchor", "positive", "Positive"], "Positive", "duplicate column (as 'positive')"),
    (".csv", ["anchor", "query", "positive"], "query", "a second anchor column besides 'anchor'"),
    (".tsv", ["anchor", "positive", "negative_x"], "negative_x", "unknown column"),
    (".csv", ["anchor", "positive", "id"], "id", "unknown column"),
])
def test_ambiguous_or_unknown_columns_are_refused_by_name(workspace, tmp_path, suffix, header, column, reason):
    path = tmp_path / f"pairs{suffix}"
    sep = "\t" if suffix == ".tsv" else ","
    path.write_text(sep.join(header) + "\n" + sep.join(f"v{i}" for i in range(len(header))) + "\n")
    store = workspace.store()
    with pytest.raises(DatasetError) as err:
        ingest(store, path, "p")
    assert (err.value.line, err.value.field) == (1, column)
    assert f"pairs{suffix}:1: field '{column}': {reason}" in str(err.value)
    assert store.count("datasets") == 0


def test_duplicate_key_in_a_jsonl_object_is_refused(workspace, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive": "d", "positive": "e"}\n')
    with pytest.raises(DatasetError, match=r"pairs.jsonl:2: field 'positive': duplicate key"):
        ingest(workspace.store(), path, "p")


# -- property: every column gets its role, or the error names it ----------------------------------------------
ROLE_POOLS = {
    "query": ["anchor", "query", "question", "Anchor"],
    "positive": ["positive", "pos", "answer", "POSITIVE"],
    "negative": ["negative", "negatives", "neg", "negative_1", "negative_2", "neg_3", "Negative_10"],
    "ignored": ["score", "scores", "negative_score", "negative_1_score", "pos_scores", "neg_scores"],
    "unknown": ["negative_x", "negativ", "id", "text", "neg_0", "negative_01", "anchor2", " anchor", "label"],
}
ROLE_OF = {name: role for role, names in ROLE_POOLS.items() for name in names}
ROLES = settings(max_examples=300, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def pairs_file(draw: st.DrawFn) -> tuple[str, list[str], list[dict[str, object]]]:
    """A file type, its columns (random roles, order, duplicates and distractors) and rows; negative cells are
    often missing (JSONL: key absent), and the first row never has one."""
    def some(role: str, low: int, high: int) -> list[str]:
        return draw(st.lists(st.sampled_from(ROLE_POOLS[role]), min_size=low, max_size=high))

    columns = some("query", 0, 2) + some("positive", 0, 2) + some("negative", 0, 3) + some("ignored", 0, 2)
    if draw(st.integers(0, 3)) == 0:
        columns += some("unknown", 1, 1)
    columns = draw(st.permutations(columns).filter(bool))
    suffix = draw(st.sampled_from([".jsonl", ".csv", ".tsv", ".parquet"]))
    rows = []
    for i in range(draw(st.integers(1, 4))):
        row: dict[str, object] = {}
        for position, name in enumerate(columns):
            role = ROLE_OF[name]
            if role == "negative" and (i == 0 or draw(st.booleans())):
                continue  # no negative in this row
            if role == "ignored":
                value: object = draw(st.floats(-1, 1)) if suffix in (".jsonl", ".parquet") else "0.5"
            elif role == "negative" and name.lower() in ("negatives", "neg") and suffix == ".jsonl":
                value = [f'{name} {position} "list" r{i} #{k}' for k in range(draw(st.integers(1, 2)))]
            else:
                value = f'{name} {position} "{role}", r{i}'
            row[f"{position}"] = value
        rows.append(row)
    return suffix, columns, rows


def write_pairs(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    """Row values are keyed by column position, so duplicate column names survive into the file."""
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join("{" + ", ".join(f"{json.dumps(columns[int(p)])}: {json.dumps(v)}"
                                                for p, v in row.items()) + "}\n" for row in rows))
    elif suffix in (".csv", ".tsv"):
        cells = [[str(row.get(str(p), "")) for p in range(len(columns))] for row in rows]
        if suffix == ".tsv":
            path.write_text("".join("\t".join(line) + "\n" for line in [columns, *cells]))
        else:
            buffer = io.StringIO()
            csv.writer(buffer).writerows([columns, *cells])
            path.write_text(buffer.getvalue())
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = [pa.array([row.get(str(p)) for row in rows], type=pa.float64() if ROLE_OF[c] == "ignored"
                           else pa.string()) for p, c in enumerate(columns)]
        pq.write_table(pa.Table.from_arrays(arrays, names=columns), path)


def expected_faults(suffix: str, columns: list[str], rows: list[dict[str, object]]) -> set[str]:
    """Fields an error may name: duplicates, a second query or positive column, a missing role, unknowns.

    A JSONL file's columns are the keys its rows use (a key in several rows is one column); only a key twice in
    one object is an exact duplicate there."""
    twice: set[str] = set()
    if suffix == ".jsonl":
        for row in rows:
            keys = [columns[int(p)] for p in row]
            twice |= {k for k in keys if keys.count(k) > 1}
        columns = list(dict.fromkeys(columns[int(p)] for row in rows for p in row))
    faults = twice | {c for i, c in enumerate(columns) if c.lower() in [d.lower() for d in columns[:i]]}
    for role, missing in (("query", "anchor"), ("positive", "positive")):
        found = [c for c in columns if ROLE_OF[c] == role]
        faults |= set(found[1:]) if len(found) > 1 else {missing} if not found else set()
    return faults | {c for c in columns if ROLE_OF[c] == "unknown"}


@pytest.fixture(scope="module")
def roles_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("roles")
    store = open_workspace(root / "ws").store()
    yield store, root
    store.close()


@ROLES
@given(example=pairs_file())
def test_pairs_columns_get_their_role_or_the_error_names_them(roles_store, example):
    store, root = roles_store
    suffix, columns, rows = example
    folder = Path(tempfile.mkdtemp(dir=root))
    path = folder / f"pairs{suffix}"
    try:
        write_pairs(path, columns, rows)
        before = store.table_checksums()
        faults = expected_faults(suffix, columns, rows)
        if faults:
            with pytest.raises(DatasetError) as err:
                ingest(store, path, "roles", replace=True)
            assert err.value.field in faults, (columns, str(err.value))
            assert str(path) in str(err.value) and f"'{err.value.field}'" in str(err.value)
            assert store.table_checksums() == before
            return
        ingest(store, path, "roles", replace=True)
        role = {str(p): ROLE_OF[c] for p, c in enumerate(columns)}
        values = {kind: [] for kind in ROLE_POOLS}
        for row in rows:
            for position, value in row.items():
                values[role[position]] += value if isinstance(value, list) else [value]
        assert set(store.queries("roles")["text"]) == set(values["query"])
        assert set(store.documents("roles")["text"]) == set(values["positive"]) | set(values["negative"])
        assert len(store.qrels("roles")) == len(rows)
        assert store.dataset("roles")["format"] == ("triplets" if values["negative"] else "pairs")
    finally:
        shutil.rmtree(folder)


# -- values and inputs that used to slip through ------------------------------------------------------------------
@pytest.mark.parametrize("line, field, reason", [
    ('{"_id": "x1", "text": NaN}', "text", "expected a string, got the number nan"),
    ('{"_id": 1.0, "text": "one"}', "_id", "expected a string, got the number 1.0"),
    ('{"_id": "x1", "text": null}', "text", "null (expected a string)"),
    ('{"_id": "x1", "title": Infinity, "text": "t"}', "title", "expected a string, got the number inf"),
])
def test_float_and_null_values_are_refused(workspace, beir_dir, line, field, reason):
    with (beir_dir / "corpus.jsonl").open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(DatasetError) as err:
        ingest(workspace.store(), beir_dir, "tiny")
    assert (err.value.line, err.value.field, err.value.reason) == (len(DOCS) + 1, field, reason)


def test_bad_utf8_late_in_a_file_names_its_line_and_its_byte_offset(workspace, tmp_path):
    """Files are decoded a line at a time: the offset still counts from the start of the file, BOM included."""
    path = tmp_path / "pairs.tsv"
    data = codecs.BOM_UTF8 + "anchor\tpositive\r\nérste\tpassage\r\n".encode() + b"zweite\tpass\xe4ge\n"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as err:
        ingest(workspace.store(), path, "p")
    offset = data.index(b"\xe4")
    assert str(err.value) == f"{path}:3: not valid UTF-8 (byte 0xe4 at offset {offset} of the file)"


def test_integer_ids_are_taken_as_their_digits(workspace, beir_dir):
    with (beir_dir / "corpus.jsonl").open("a") as fh:
        fh.write('{"_id": 17, "text": "an integer id"}\n')
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    assert store.documents("tiny", ["17"])["text"].tolist() == ["an integer id"]


def test_qrels_suffix_in_any_case_is_read(workspace, beir_dir):
    (beir_dir / "qrels" / "test.tsv").rename(beir_dir / "qrels" / "test.TSV")
    store = workspace.store()
    assert ingest(store, beir_dir, "tiny").splits == {"train": sum(map(len, TRAIN.values())),
                                                      "test": sum(map(len, TEST.values()))}


def test_a_fifo_is_refused_at_once(tmp_path, beir_dir):
    """A FIFO is never opened (reading one waits for a writer forever): refused by its file mode."""
    ws = tmp_path / "ws"
    fifo = tmp_path / "pairs.jsonl"
    os.mkfifo(fifo)
    res = run_cli("ingest", fifo, "--workspace", ws, "--name", "p", timeout=120)
    assert res.returncode == 2
    assert res.stderr == f"error: {fifo}: is a FIFO, not a regular file\n"
    (beir_dir / "corpus.jsonl").unlink()
    os.mkfifo(beir_dir / "corpus.jsonl")
    with pytest.raises(DatasetError, match="corpus.jsonl: is a FIFO, not a regular file"):
        ingest(open_workspace(ws).store(), beir_dir, "tiny")


@pytest.mark.parametrize("name", ["a\u202eb", "\u2066tiny\u2069", "tiny\u200e", "x\u061cy", " tiny", "tiny "])
def test_dataset_names_with_bidi_controls_or_surrounding_spaces_are_refused(workspace, beir_dir, name):
    store = workspace.store()
    with pytest.raises(UserError, match="dataset name .*(bidirectional control|must not start or end with spaces)"):
        ingest(store, beir_dir, name)
    assert store.count("datasets") == 0
