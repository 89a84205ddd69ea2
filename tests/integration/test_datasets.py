"""Importers: formats, validation before write, idempotence."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.datasets import ingest
from core.errors import DatasetError, UserError
from tests.fixtures import DOCS, QUERIES, TEST, TRAIN, triplet_rows, write_jsonl


def test_beir_import_counts_grades_unicode(workspace, beir_dir):
    store = workspace.store()
    result = ingest(store, beir_dir, "tiny")
    assert result.status == "imported"
    assert (result.documents, result.queries) == (len(DOCS), len(QUERIES))
    assert result.splits == {"train": sum(map(len, TRAIN.values())), "test": sum(map(len, TEST.values()))}
    docs = store.documents("tiny").set_index("doc_id")
    assert docs.loc["misc-3", "text"].endswith("漢字 must survive import and export.")
    assert docs.loc["misc-4", "title"] == ""
    qrels = store.qrels("tiny", "train")
    assert qrels.set_index(["query_id", "doc_id"]).loc[("q3", "heat-1"), "score"] == 2
    assert sorted(qrels[qrels.query_id == "q3"].doc_id) == ["heat-1", "heat-2"]
    assert set(qrels.origin) == {"imported"}


def test_reimport_identical_is_noop_and_different_needs_replace(workspace, beir_dir):
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    before = store.table_checksums()
    assert ingest(store, beir_dir, "tiny").status == "unchanged"
    assert store.table_checksums() == before
    lines = (beir_dir / "corpus.jsonl").read_text().splitlines()
    (beir_dir / "corpus.jsonl").write_text("\n".join(reversed(lines)) + "\n")  # same content, other order
    assert ingest(store, beir_dir, "tiny").status == "unchanged"
    write_jsonl(beir_dir / "queries.jsonl", [{"_id": k, "text": v + "?"} for k, v in QUERIES.items()])
    with pytest.raises(UserError, match="--replace"):
        ingest(store, beir_dir, "tiny")
    assert store.table_checksums() == before
    assert ingest(store, beir_dir, "tiny", replace=True).status == "replaced"
    assert store.queries("tiny", ["q1"]).text[0].endswith("?")


@pytest.mark.parametrize("damage, file, line, field", [
    (lambda d: d.joinpath("corpus.jsonl").write_text(
        d.joinpath("corpus.jsonl").read_text().replace('{"_id": "geo-2"', '{"_id": "geo-2",,', 1)),
     "corpus.jsonl", 14, None),
    (lambda d: d.joinpath("qrels", "test.tsv").write_text("query-id\tcorpus-id\tscore\nq7\tnope\t1\n"),
     "test.tsv", 2, "corpus-id"),
    (lambda d: d.joinpath("qrels", "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tpy-join\thigh\n"),
     "train.tsv", 2, "score"),
    (lambda d: d.joinpath("corpus.jsonl").write_text(""), "corpus.jsonl", None, None),
    (lambda d: d.joinpath("corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n'),
     "corpus.jsonl", 2, "_id"),
    (lambda d: d.joinpath("queries.jsonl").write_text('{"_id": "q1"}\n'), "queries.jsonl", 1, "text"),
    (lambda d: d.joinpath("queries.jsonl").write_text('{"_id": "q1", "text": ["a"]}\n'),
     "queries.jsonl", 1, "text"),
    (lambda d: d.joinpath("corpus.jsonl").write_bytes(b'{"_id": "a", "text": "\xff"}\n'), "corpus.jsonl", 1, None),
])
def test_bad_input_names_file_line_field_and_changes_nothing(workspace, beir_dir, tmp_path, damage, file, line,
                                                             field):
    store = workspace.store()
    good = tmp_path / "good"
    import shutil

    shutil.copytree(beir_dir, good)
    ingest(store, good, "kept")  # something already stored must survive
    before = store.table_checksums()
    damage(beir_dir)
    with pytest.raises(DatasetError) as err:
        ingest(store, beir_dir, "tiny")
    assert err.value.file.endswith(file)
    assert err.value.line == line
    assert err.value.field == field
    assert file in str(err.value)
    assert store.table_checksums() == before


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_triplets_in_each_file_type(workspace, tmp_path, suffix):
    rows = triplet_rows()
    path = tmp_path / f"triplets{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    store = workspace.store()
    result = ingest(store, path, "trip")
    assert store.dataset("trip")["format"] == "triplets"
    assert result.queries == len(TRAIN)
    assert result.qrels == len(rows)
    texts = set(store.documents("trip")["text"])
    assert DOCS["misc-7"][1] in texts and DOCS["heat-2"][1] in texts
    assert ingest(store, path, "trip").status == "unchanged"


def test_pairs_missing_column_and_empty_value(workspace, tmp_path):
    store = workspace.store()
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [{"anchor": "a", "positive": "b"}, {"anchor": "c", "positive": "  "}])
    with pytest.raises(DatasetError, match=r"pairs.jsonl:2: field 'positive': empty text"):
        ingest(store, path, "p")
    write_jsonl(path, [{"question": "a", "text": "b"}])
    with pytest.raises(DatasetError, match="field 'positive': missing"):
        ingest(store, path, "p")
    path.write_text(json.dumps({"anchor": "a", "positive": "b"}) + "\n")
    assert ingest(store, path, "p").status == "imported"
    assert store.dataset("p")["format"] == "pairs"
