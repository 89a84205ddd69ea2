"""Round trips with other tools: other miners' output as runs (sentence-transformers, FlagEmbedding, Tevatron,
TREC), TREC qrels, and Hugging Face ``datasets`` folders in and out."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.datasets import import_qrels, ingest
from core.errors import DatasetError, UserError
from core.export import export
from core.mining import compare_runs, derive_run
from core.rules import RuleSpec
from core.run_import import import_run
from core.workspace import open_workspace
from tests.cli_helpers import workspace_state
from tests.fixtures import DOCS, QUERIES, write_jsonl


@pytest.fixture
def mined_ws(ws_root):
    """A private copy of the mined tiny workspace: (store, run id of the mined run)."""
    store = open_workspace(ws_root).store()
    run_id = store.runs()[0]["run_id"]
    yield store, run_id
    store.close()


def kept(store, run_id: str) -> list[tuple[str, str, int]]:
    cands = store.candidates(run_id, with_signals=False, with_risk=False)
    cands = cands[cands["kept"]]
    return sorted(zip(cands["query_id"], cands["doc_id"], cands["rank"]))


@pytest.mark.parametrize("export_format, run_format", [("flag", "flag"), ("tevatron", "tevatron"),
                                                       ("st-triplet", "st"), ("st-ntuple", "st"),
                                                       ("st-labeled-list", "st")])
def test_exported_negatives_come_back_as_the_same_kept_negatives(mined_ws, tmp_path, export_format, run_format):
    """Our export read as another miner's output: texts matched back to ids, every kept negative at its rank."""
    store, run_id = mined_ws
    export(store, run_id, export_format, tmp_path / "out", data="raw")
    result = import_run(store, tmp_path / "out" / "data.jsonl", "tiny", run_format)
    ours = kept(store, run_id)
    if export_format == "st-ntuple":  # short queries are skipped by the format
        listed = {q for q, _, _ in kept(store, result.run_id)}
        ours = [row for row in ours if row[0] in listed]
    assert kept(store, result.run_id) == ours
    totals = compare_runs(store, run_id, result.run_id).totals
    assert totals["same"] == len(ours) and totals["rank changed"] == 0
    run = store.run(result.run_id)
    assert run["params"]["import"]["format"] == run_format and len(run["params"]["import"]["sha256"]) == 64
    assert run["params"]["import"]["file"].endswith("data.jsonl")


def test_st_scores_are_stored_and_rules_read_them(mined_ws, tmp_path):
    """n-tuple rows with ``scores`` = [positive, negatives…]: scores and s_P as given, so a margin rule re-rules."""
    store, run_id = mined_ws
    cands = store.candidates(run_id, with_signals=False, with_risk=False)
    cands = cands[cands["kept"]]
    queries = dict(zip(store.queries("tiny")["query_id"], store.queries("tiny")["text"]))
    texts = {d: f"{t} {x}".strip() for d, (t, x) in DOCS.items()}
    positives = store.qrels("tiny", "train")
    first_positive = positives.groupby("query_id")["doc_id"].first()
    rows = []
    for query_id, group in cands.groupby("query_id"):
        row = {"anchor": queries[query_id], "positive": texts[first_positive[query_id]]}
        row.update({f"negative_{i}": texts[d] for i, d in enumerate(group["doc_id"], start=1)})
        row["scores"] = [0.9, *group["score"].tolist()]
        rows.append(row)
    write_jsonl(tmp_path / "ntuple.jsonl", rows)
    result = import_run(store, tmp_path / "ntuple.jsonl", "tiny", "st")
    assert result.scores and result.positive_scores
    got = store.candidates(result.run_id, with_signals=False, with_risk=False)
    assert got["score"].tolist() == cands["score"].tolist()
    assert set(got["pos_score"]) == {0.9}
    derived = derive_run(store, result.run_id, RuleSpec("marginpos", absolute_margin=0.3, num_negatives=3))
    expected = int((cands["score"] < 0.9 - 0.3).sum())
    assert derived.kept == expected


def test_labeled_pair_with_scores_tells_positives_by_the_qrels(mined_ws, tmp_path):
    store, _ = mined_ws
    write_jsonl(tmp_path / "pairs.jsonl", [
        {"anchor": QUERIES["q1"], "positive": " ".join(DOCS["py-join"]), "score": 0.8},
        {"anchor": QUERIES["q1"], "positive": " ".join(DOCS["py-split"]), "score": 0.5},
        {"anchor": QUERIES["q1"], "positive": DOCS["misc-1"][1], "score": 0.1}])  # bare text, no title
    result = import_run(store, tmp_path / "pairs.jsonl", "tiny", "st")
    got = store.candidates(result.run_id, with_signals=False, with_risk=False)
    assert got[["doc_id", "rank", "score", "pos_score"]].values.tolist() == [["py-split", 1, 0.5, 0.8],
                                                                             ["misc-1", 2, 0.1, 0.8]]


def test_runs_without_scores_refuse_rules_that_read_them(mined_ws, tmp_path):
    store, run_id = mined_ws
    export(store, run_id, "flag", tmp_path / "flag", data="raw")
    unscored = import_run(store, tmp_path / "flag" / "data.jsonl", "tiny", "flag")
    assert not unscored.scores
    for spec in (RuleSpec("percpos"), RuleSpec("abs", max_score=0.5), RuleSpec("simans")):
        with pytest.raises(UserError, match="without scores, which rule .* reads"):
            derive_run(store, unscored.run_id, spec)
    assert derive_run(store, unscored.run_id, RuleSpec("top", num_negatives=1)).kept == 6
    export(store, run_id, "trec-run", tmp_path / "trec", data="raw")
    trec = import_run(store, tmp_path / "trec" / "run.trec", "tiny", "trec")
    assert trec.scores and not trec.positive_scores
    derive_run(store, trec.run_id, RuleSpec("abs", max_score=0.5))  # reads the score only: allowed
    with pytest.raises(UserError, match=r"without the positives' scores \(s_P\)"):
        derive_run(store, trec.run_id, RuleSpec("marginpos"))


def test_trec_run_exported_and_reimported_is_identical(mined_ws, tmp_path):
    store, run_id = mined_ws
    export(store, run_id, "trec-run", tmp_path / "a", data="raw")
    first = (tmp_path / "a" / "run.trec").read_text()
    result = import_run(store, tmp_path / "a" / "run.trec", "tiny", "trec")
    export(store, result.run_id, "trec-run", tmp_path / "b", data="raw")
    assert (tmp_path / "b" / "run.trec").read_text() == first
    columns = ["query_id", "doc_id", "rank", "score"]
    ours = store.candidates(run_id, with_signals=False, with_risk=False)
    theirs = store.candidates(result.run_id, with_signals=False, with_risk=False)
    assert theirs[columns].values.tolist() == ours[ours["kept"]][columns].values.tolist()
    assert theirs["kept"].all()


def test_trec_run_leaves_out_positives_and_orders_by_rank(mined_ws, tmp_path):
    store, _ = mined_ws
    (tmp_path / "run.txt").write_text("q1 Q0 py-split 2 0.5 bm25\nq1 Q0 py-join 1 0.9 bm25\n"
                                      "q1 Q0 misc-1 3 0.1 bm25\n", encoding="utf-8")
    result = import_run(store, tmp_path / "run.txt", "tiny", "trec")
    got = store.candidates(result.run_id, with_signals=False, with_risk=False)
    assert got[["doc_id", "rank", "score", "pos_score"]].values.tolist() == [["py-split", 1, 0.5, 0.9],
                                                                             ["misc-1", 2, 0.1, 0.9]]
    assert store.run(result.run_id)["params"]["import"]["tag"] == "bm25"


def test_whitespace_differences_still_match(mined_ws, tmp_path):
    store, _ = mined_ws
    write_jsonl(tmp_path / "flag.jsonl", [{"query": "  how do I join   path components ",
                                           "pos": [], "neg": ["Paris  " + DOCS["geo-1"][1].replace(" ", "\n ", 2)]}])
    result = import_run(store, tmp_path / "flag.jsonl", "tiny", "flag")
    assert kept(store, result.run_id) == [("q1", "geo-1", 1)]


def test_unmatched_texts_are_listed_with_lines_and_nothing_is_written(mined_ws, tmp_path):
    store, run_id = mined_ws
    export(store, run_id, "flag", tmp_path / "flag", data="raw")
    rows = [json.loads(line) for line in (tmp_path / "flag" / "data.jsonl").read_text().splitlines()]
    rows[2]["neg"][1] = "a text no document has"
    rows[4]["neg"][0] = "another"
    write_jsonl(tmp_path / "bad.jsonl", rows)
    before = workspace_state(store.path.parent)
    with pytest.raises(DatasetError) as err:
        import_run(store, tmp_path / "bad.jsonl", "tiny", "flag")
    assert (err.value.line, err.value.field) == (3, "neg[1]")
    assert "2 unmatched in all; also line 5 field 'neg[0]'" in str(err.value)
    assert workspace_state(store.path.parent) == before


@pytest.mark.parametrize("fmt, content, line, field", [
    ("st", '{"anchor": "how do I join path components", "positive": "x", "negative": 3.5}\n', 1, "negative"),
    ("st", '{"anchor": "a", "positive": "x", "negative": "y", "scores": [1, 2, 3]}\n', 1, "scores"),
    ("st", '{"anchor": "a", "positive": ["x", "y"], "labels": [1, "no"]}\n', 1, "labels[1]"),
    ("st", '{"anchor": "a", "document": "x", "id": 1}\n', 1, "id"),
    ("flag", '{"query": "q", "pos": [], "neg": ["a"]}\n{"query": "q", "pos": [], "neg": "a"}\n', 2, "neg"),
    ("flag", '{"query": "q", "pos": [], "neg": ["a"], "neg_scores": [NaN]}\n', 1, "neg_scores[0]"),
    ("tevatron", '{"query": "q", "positive_passages": [], "negative_passages": [{"title": "t"}]}\n', 1, "text"),
    ("trec", "q1 Q0 py-split 1 0.5 t\nq1 Q0 py-rev one 0.4 t\n", 2, "rank"),
    ("trec", "q1 Q0 py-split 1 0.5 t\nq1 Q0 py-split 2 0.4 t\n", 2, "docid"),
    ("trec", "q1 Q0 nope 1 0.5 t\n", 1, "docid"),
    ("trec", "q99 Q0 py-split 1 0.5 t\n", 1, "qid"),
])
def test_bad_run_files_name_line_and_field(mined_ws, tmp_path, fmt, content, line, field):
    store, _ = mined_ws
    path = tmp_path / ("run.txt" if fmt == "trec" else "run.jsonl")
    path.write_text(content, encoding="utf-8")
    before = workspace_state(store.path.parent)
    with pytest.raises(DatasetError) as err:
        import_run(store, path, "tiny", fmt)
    assert (err.value.line, err.value.field) == (line, field), str(err.value)
    assert workspace_state(store.path.parent) == before


# -- TREC qrels ---------------------------------------------------------------------------------------------------
def test_trec_qrels_import_into_a_split_and_export(mined_ws, tmp_path):
    store, run_id = mined_ws
    (tmp_path / "dev.qrels").write_text("q1 0 py-join 1\nq2 0 py-sort 2\nq2 0 py-rev 0\n", encoding="utf-8")
    result = import_qrels(store, "tiny", tmp_path / "dev.qrels", "dev")
    assert result.splits["dev"] == 3 and result.splits["train"] == 7
    with pytest.raises(UserError, match="already has split 'dev'"):
        import_qrels(store, "tiny", tmp_path / "dev.qrels", "dev")
    assert import_qrels(store, "tiny", tmp_path / "dev.qrels", "dev", replace=True).status == "unchanged"
    export(store, run_id, "trec-qrels", tmp_path / "out", data="raw")
    exported = (tmp_path / "out" / "qrels" / "dev.txt").read_text().splitlines()
    assert sorted(exported) == sorted((tmp_path / "dev.qrels").read_text().splitlines())
    (tmp_path / "bad.qrels").write_text("q1 0 py-join 1\nq1 0 py-join x\n", encoding="utf-8")
    before = workspace_state(store.path.parent)
    with pytest.raises(DatasetError) as err:
        import_qrels(store, "tiny", tmp_path / "bad.qrels", "dev2")
    assert (err.value.line, err.value.field) == (2, "grade")
    assert workspace_state(store.path.parent) == before


# -- Hugging Face datasets ----------------------------------------------------------------------------------------
def test_datasets_folders_import(workspace, tmp_path):
    from datasets import Dataset, DatasetDict

    store = workspace.store()
    rows = {"query": ["how do I join paths", "sort a list"], "pos": [["os.path.join joins", "posixpath.join"],
                                                                    ["sorted() sorts"]],
            "neg": [["chess"], []]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "two"))
    (tmp_path / "shards" / "data").mkdir(parents=True)
    pd.DataFrame({"anchor": ["a", "b"], "positive": ["p", "q"]}).to_parquet(
        tmp_path / "shards" / "data" / "validation-00000-of-00001.parquet")
    one = ingest(store, tmp_path / "one", "one")
    assert (one.documents, one.queries, one.splits) == (4, 2, {"train": 3})
    assert store.dataset("one")["format"] == "hf"
    assert ingest(store, tmp_path / "two", "two", fmt="hf").splits == {"train": 3, "test": 3}
    assert ingest(store, tmp_path / "shards", "shards").splits == {"validation": 2}
    with pytest.raises(UserError, match="looks like hf, not beir"):
        ingest(store, tmp_path / "one", "x", fmt="beir")


@pytest.mark.parametrize("fmt", ["st-triplet", "st-ntuple", "st-labeled-list", "flag", "tevatron"])
def test_export_as_datasets_folder_loads_the_same_rows(mined_ws, tmp_path, fmt):
    from datasets import load_from_disk

    store, run_id = mined_ws
    export(store, run_id, fmt, tmp_path / "plain", data="raw")
    manifest = export(store, run_id, fmt, tmp_path / "ds", data="raw", as_datasets=True)
    rows = [json.loads(line) for line in (tmp_path / "plain" / "data.jsonl").read_text().splitlines()]
    assert load_from_disk(str(tmp_path / "ds" / "datasets")).to_list() == rows
    assert not (tmp_path / "ds" / "data.jsonl").exists() and manifest["as_datasets"]
    assert "datasets/state.json" in manifest["files"]
    if fmt == "st-triplet":  # and it imports again, as a dataset and as a run
        assert ingest(store, tmp_path / "ds" / "datasets", "again").queries == len({r["anchor"] for r in rows})
        assert kept(store, import_run(store, tmp_path / "ds" / "datasets", "tiny", "st").run_id) == kept(
            store, run_id)


def test_as_datasets_refused_for_formats_without_rows(mined_ws, tmp_path):
    store, run_id = mined_ws
    with pytest.raises(UserError, match="has no rows to write as a datasets folder"):
        export(store, run_id, "trec-run", tmp_path / "x", as_datasets=True)
    assert not (tmp_path / "x").exists()


# -- sentence-transformers' own miner on SciFact ------------------------------------------------------------------
@pytest.mark.shared_data
def test_st_mine_hard_negatives_on_scifact_becomes_a_run_with_the_same_kept_negatives(workspace, shared_datasets,
                                                                                       static_model, tmp_path):
    """sentence-transformers' ``mine_hard_negatives`` on every SciFact train query over the whole corpus (n-tuple
    with scores, saved with ``save_to_disk``) imported as a run of SciFact: its kept negatives are exactly ST's,
    with ST's scores. The model is the static one built from the bundled MiniLM's token embeddings (conftest):
    the transformer takes minutes for the corpus on two cores, and matching does not depend on the model."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from core.lookups import document_texts, positives_by_query

    store = workspace.store()
    ingest(store, shared_datasets / "scifact", "scifact")
    positives = positives_by_query(store, "scifact", "train")
    docs = store.documents("scifact")
    text = dict(zip(docs["doc_id"], document_texts(docs)))
    queries = store.queries("scifact")
    query_text = dict(zip(queries["query_id"], queries["text"]))
    pairs = Dataset.from_dict({"anchor": [query_text[q] for q, ds in positives.items() for _ in ds],
                               "positive": [text[d] for ds in positives.values() for d in ds]})
    model = SentenceTransformer(str(static_model), device="cpu")
    mined = mine_hard_negatives(pairs, model, corpus=list(dict.fromkeys(text.values())), num_negatives=5,
                                output_format="n-tuple", output_scores=True, batch_size=64, verbose=False)
    mined.save_to_disk(str(tmp_path / "st-mined"))

    result = import_run(store, tmp_path / "st-mined", "scifact", "st")
    assert result.scores and result.positive_scores
    assert result.listed_positives == 0 and result.queries_without_positives == 0

    theirs = {}
    for row in mined.to_list():
        for i in range(1, 6):
            theirs.setdefault((row["anchor"], row[f"negative_{i}"]), row["scores"][i])
    cands = store.candidates(result.run_id, with_signals=False, with_risk=False)
    assert cands["kept"].all() and len(cands) == len(theirs)
    ours = {(query_text[q], text[d]): s for q, d, s in zip(cands["query_id"], cands["doc_id"], cands["score"])}
    assert ours.keys() == theirs.keys()
    assert all(abs(ours[k] - theirs[k]) < 1e-6 for k in ours)
