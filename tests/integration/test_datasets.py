"""Importers: formats, validation before write, idempotence."""

from __future__ import annotations

import json
import tracemalloc

import pandas as pd
import pytest

from core.datasets import ingest, load_beir
from core.errors import DatasetError, UserError
from tests.cli_helpers import tree
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


# Content hashes the in-memory importer stored for these inputs before imports were streamed: workspaces compare
# them to recognise an identical re-import, so they must never change.
TINY_SHA256 = "466bd6157302889e189e19c1c2ea5c94305b099377252194c31af8f8b088c356"
PAIRS = [{"anchor": "wie heißt du?", "positive": "Ich heiße Ada 🙂",
          "negative": ["Ich heiße Bob", "Grüße\u2028aus Köln"]},
         {"anchor": "b", "positive": "c", "negative": []},
         {"anchor": "wie heißt du?", "positive": "Ada", "negative": ["c"]},
         {"anchor": "b", "positive": "c", "negative": []}]
PAIRS_SHA256 = "3831928cb873d97b00bc21081dc1046e51bd4b7b458f180780ed8bf7f3356600"


def test_streamed_content_hash_is_the_in_memory_one(workspace, beir_dir, tmp_path):
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    assert store.dataset("tiny")["content_sha256"] == load_beir(beir_dir).sha256() == TINY_SHA256
    write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    pd.DataFrame(PAIRS).to_parquet(tmp_path / "pairs.parquet")
    for suffix in ("jsonl", "parquet"):
        ingest(store, tmp_path / f"pairs.{suffix}", suffix)
        assert store.dataset(suffix)["content_sha256"] == PAIRS_SHA256


def test_bad_last_line_of_a_large_corpus_stores_nothing(workspace, beir_dir):
    """The first bad line aborts the import however late it comes: it is named, and the workspace (its tables
    and its folder, where the import was staged) is left as it was."""
    store = workspace.store()
    ingest(store, beir_dir, "kept")
    before, listing = store.table_checksums(), tree(workspace.root)
    corpus = beir_dir / "corpus.jsonl"
    with corpus.open("a", encoding="utf-8") as out:
        out.writelines(json.dumps({"_id": f"gen-{i}", "text": f"generated document {i}"}) + "\n"
                       for i in range(20_000))
        out.write('{"_id": "gen-last", "text": "cut short\n')
    with pytest.raises(DatasetError) as err:
        ingest(store, beir_dir, "big")
    assert str(err.value).startswith(f"{corpus}:{len(DOCS) + 20_001}: invalid JSON (Unterminated string")
    assert store.table_checksums() == before and tree(workspace.root) == listing


def test_a_corpus_is_never_held_whole(workspace, beir_dir):
    """Documents stream through a staging file in small batches, however long their texts: the Python heap never
    holds a quarter of the corpus, and the documents keep the corpus's order."""
    corpus = beir_dir / "corpus.jsonl"
    with corpus.open("a", encoding="utf-8") as out:
        out.writelines(json.dumps({"_id": f"long-{i}", "text": f"{i} " + "x" * 100_000}) + "\n" for i in range(200))
    store = workspace.store()
    tracemalloc.start()
    try:
        result = ingest(store, beir_dir, "long")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.documents == len(DOCS) + 200
    assert peak < corpus.stat().st_size / 4, (peak, corpus.stat().st_size)
    stored = pd.concat(store.iter_documents("long", chunk=70))
    assert stored["doc_id"].tolist() == [*DOCS, *(f"long-{i}" for i in range(200))]
    assert stored["text"].iloc[-1] == "199 " + "x" * 100_000
