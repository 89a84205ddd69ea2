"""Every export format loads back with its consumer's library and matches the workspace."""

from __future__ import annotations

import json

import pytest

from core import labels
from core.datasets import load_beir
from core.encoders import document_text
from core.export import FORMATS, export
from core.selection import select


@pytest.fixture
def private(mined, ws_root):
    """A private copy of the mined fixture: an export writes an audit row, which the session's workspace must
    not collect."""
    from core.workspace import open_workspace

    ws = open_workspace(ws_root)
    return ws, ws.store(), mined[2]


@pytest.fixture
def labelled(mined, ws_root):
    """A private copy of the mined fixture, and two kept candidates of q1 to judge in it."""
    from core.workspace import open_workspace

    _, _, result = mined
    ws = open_workspace(ws_root)
    store = ws.store()
    kept = store.candidates(result.run_id, "q1")
    kept = kept[kept.kept]
    fn_doc, unsure_doc = kept.doc_id.iloc[0], kept.doc_id.iloc[1]
    return ws, store, result, fn_doc, unsure_doc


def _docs(store):
    d = store.documents("tiny")
    return {r.doc_id: document_text(r.title, r.text) for r in d.itertuples()}


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.startswith("st-")])
def test_sentence_transformers_formats_load_with_datasets(private, tmp_path, fmt):
    from datasets import load_dataset

    ws, store, result = private
    out = tmp_path / fmt
    manifest = export(store, result.run_id, fmt, out, data="raw")
    ds = load_dataset("json", data_files=str(out / "data.jsonl"), split="train")
    assert len(ds) == manifest["rows"] == manifest["files"]["data.jsonl"]["rows"]
    ids = [json.loads(line) for line in (out / "ids.jsonl").read_text().splitlines()]
    docs, queries = _docs(store), dict(zip(store.queries("tiny").query_id, store.queries("tiny").text))
    if fmt == "st-triplet":
        assert ds.column_names == ["anchor", "positive", "negative"]
        for row, ref in zip(ds, ids):
            assert row["anchor"] == queries[ref["query_id"]]
            assert row["positive"] == docs[ref["positive_id"]] and row["negative"] == docs[ref["negative_id"]]
        assert len(ds) == 3 * 6  # 3 kept negatives for each of the 6 train queries
    elif fmt == "st-ntuple":
        assert ds.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
        assert [row["negative_2"] for row in ds] == [docs[r["negative_ids"][1]] for r in ids]
    else:
        assert ds.column_names == ["query", "docs", "labels"]
        for row, ref in zip(ds, ids):
            assert row["docs"] == [docs[d] for d in ref["doc_ids"]]
            assert sum(row["labels"]) == len(row["labels"]) - 3
    manifest_file = json.loads((out / "manifest.json").read_text())
    assert manifest_file["run_id"] == result.run_id and manifest_file["format"] == fmt
    assert manifest_file["model_fingerprint"] == store.run(result.run_id)["model_fingerprint"]


def test_flag_and_tevatron_jsonl(private, tmp_path):
    ws, store, result = private
    docs = _docs(store)
    export(store, result.run_id, "flag", tmp_path / "flag", data="raw")
    rows = [json.loads(line) for line in (tmp_path / "flag" / "data.jsonl").read_text().splitlines()]
    ids = [json.loads(line) for line in (tmp_path / "flag" / "ids.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"query", "pos", "neg"} and len(rows) == 6
    assert all(r["neg"] == [docs[d] for d in i["neg_ids"]] for r, i in zip(rows, ids))
    m = export(store, result.run_id, "tevatron", tmp_path / "tev", data="raw")
    rows = [json.loads(line) for line in (tmp_path / "tev" / "data.jsonl").read_text().splitlines()]
    assert len(rows) == m["rows"] == 6
    cands = store.candidates(result.run_id)
    for r in rows:
        kept = cands[(cands.query_id == r["query_id"]) & cands.kept].doc_id.tolist()
        assert [p["docid"] for p in r["negative_passages"]] == kept
        assert set(r["positive_passages"][0]) == {"docid", "title", "text"}


def test_curated_drops_judged_and_beir_qrels_round_trip(labelled, tmp_path):
    ws, store, result, fn_doc, unsure_doc = labelled
    labels.record(store, "tiny", "q1", fn_doc, "ana", "false_negative")
    labels.record(store, "tiny", "q1", unsure_doc, "ana", "unsure")
    store.set_promoted("tiny", "train", "q1", fn_doc, 1)
    cur = select(store, result.run_id, "curated")
    q1 = next(e for e in cur.examples if e.query_id == "q1")
    assert fn_doc not in q1.negatives and unsure_doc not in q1.negatives
    assert fn_doc in q1.positives and fn_doc in q1.masked
    keep = select(store, result.run_id, "curated", unsure="keep")
    assert unsure_doc in next(e for e in keep.examples if e.query_id == "q1").negatives
    raw = select(store, result.run_id, "raw")
    assert fn_doc in next(e for e in raw.examples if e.query_id == "q1").negatives
    manifest = export(store, result.run_id, "beir-qrels", tmp_path / "beir")  # curated by default now
    assert manifest["data"] == "curated" and manifest["label_counts"] == {"false_negative": 1, "unsure": 1}
    back = load_beir(tmp_path / "beir")
    assert ("train", "q1", fn_doc, 1) in back.qrels
    assert len(back.qrels) == manifest["rows"] == len(store.qrels("tiny"))
    assert len(back.documents) == len(store.documents("tiny"))


def test_export_is_atomic_and_rejects_bad_format(private, tmp_path):
    from core.errors import UserError

    ws, store, result = private
    out = tmp_path / "x"
    export(store, result.run_id, "flag", out, data="raw")
    before = (out / "data.jsonl").read_bytes()
    with pytest.raises(UserError):
        export(store, result.run_id, "nope", out)
    with pytest.raises(UserError):
        export(store, "missing-run", "flag", out)
    assert (out / "data.jsonl").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folders left behind"
