"""Property-based hardening of the round-trip importers: Hugging Face ``datasets`` folders, other miners' runs
(sentence-transformers, FlagEmbedding, Tevatron, TREC) and TREC qrels.

Inputs are near-valid files built from the tiny dataset's own query and document texts and ids (so a good share
import, and matching, scoring and the write are exercised) with a few random faults from ``Maker`` (wrong types,
missing fields, texts that match nothing, truncated files, odd unicode, random bytes). The properties are those of
tests/unit/test_hypothesis_import.py: only a ``UserError`` escapes, and a rejected import leaves every table as it
was; an accepted run keeps every candidate it lists. Each suite runs 1,000 examples, like the other fuzz suites.
"""

from __future__ import annotations

import io
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.datasets import import_qrels, ingest
from core.run_import import import_run
from tests.fixtures import DOCS, QUERIES, TRAIN
from tests.unit.test_hypothesis_import import (
    FEW,
    FUZZ,
    Maker,
    attempt,
    pairs_rows,
    workspace_with_tiny,
    write_files,
)

pytestmark = pytest.mark.slow  # left out of the fast lane

# A fresh workspace per suite (not per example): an accepted import adds a run, and every example hashes all tables
# before and after, so a workspace shared by all suites made the last suites several times slower than the first.
shared = pytest.fixture(workspace_with_tiny)
FUZZ = settings(FUZZ, suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture])
FEW = settings(FEW, suppress_health_check=[*FEW.suppress_health_check, HealthCheck.function_scoped_fixture])

QUERY_TEXTS = list(QUERIES.values())
DOC_TEXTS = [f"{title} {text}".strip() for title, text in DOCS.values()]
WRONG_SCORES = [float("nan"), float("inf"), "0.5", True, None, [0.5]]


def texts(make: Maker, pool: list[str]) -> object:
    """One of ``pool`` (a text the dataset has); in a faulty example sometimes a text it lacks or a wrong type."""
    return make.text() if make.fault(6) else make.draw(st.sampled_from(pool))


def score(make: Maker) -> object:
    return make.draw(st.sampled_from(WRONG_SCORES)) if make.fault(10) else make.draw(st.floats(-1, 1))


def accepted_run_keeps_everything(store, result) -> None:
    if result is not None:
        cands = store.candidates(result.run_id, with_signals=False, with_risk=False)
        assert len(cands) == result.candidates and cands["kept"].all()


# -- Hugging Face datasets folders --------------------------------------------------------------------------------
@st.composite
def hf_folder(draw: st.DrawFn) -> dict[str, bytes]:
    """A ``save_to_disk`` folder (``state.json`` + an Arrow stream) or a DatasetDict of two, with pairs rows like
    the Parquet suite's; faulty ones have a damaged state, a shard name outside the folder or a cut shard."""
    import pyarrow as pa

    make = Maker(draw)
    header, rows = pairs_rows(make)
    def storable(value: object) -> str | None:  # Arrow strings are UTF-8: a lone surrogate cannot be written
        return value if isinstance(value, str) and not any("\ud800" <= c <= "\udfff" for c in value) else None

    columns = {c: [storable(row[i]) for row in rows] for i, c in enumerate(header)}
    if "negative" in columns and rows and draw(st.booleans()):
        columns["negative"] = [[make.draw(st.sampled_from(DOC_TEXTS))] for _ in rows]
    sink = io.BytesIO()
    table = pa.table(columns) if columns else pa.table({"anchor": pa.array([], pa.string())})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    shard = sink.getvalue()
    if make.fault(8):
        shard = shard[:draw(st.integers(0, len(shard) - 1))]
    name = draw(st.sampled_from(["../x.arrow", "", "sub/x.arrow"])) if make.fault(10) else "data-00000-of-00001.arrow"
    state = {"_data_files": [{"filename": name}], "_split": None}
    state_bytes = make.file(lambda: make.encode(json.dumps(state)))
    if draw(st.booleans()):
        return {"state.json": state_bytes, "data-00000-of-00001.arrow": shard}
    splits = ["train", "test"] if not make.fault(10) else [draw(st.sampled_from(["..", "a/b", ""]))]
    files = {"dataset_dict.json": make.file(lambda: make.encode(json.dumps({"splits": splits})))}
    for split in ("train", "test"):
        files[f"{split}/state.json"] = state_bytes
        files[f"{split}/data-00000-of-00001.arrow"] = shard
    return files


@FUZZ
@given(files=hf_folder())
def test_hf_folder_never_crashes_and_rejections_change_nothing(shared, files):
    store, scratch = shared
    folder = write_files(scratch, files)
    try:
        attempt(store, lambda: ingest(store, folder, "fuzz-hf", fmt="hf", replace=True))
    finally:
        shutil.rmtree(folder)


# -- other miners' runs -------------------------------------------------------------------------------------------
@st.composite
def st_output(draw: st.DrawFn) -> bytes:
    """mine_hard_negatives rows: n-tuple (with or without scores) or labeled-list (labels or scores)."""
    make = Maker(draw)
    records = []
    for _ in range(draw(st.integers(0 if make.fault(10) else 1, 3))):
        row = {"anchor": texts(make, QUERY_TEXTS)}
        if draw(st.booleans()):
            row["positive"] = texts(make, DOC_TEXTS)
            count = draw(st.integers(1, 3))
            row.update({f"negative_{i}": texts(make, DOC_TEXTS) for i in range(1, count + 1)})
            if draw(st.booleans()):
                row["scores"] = [score(make) for _ in range(count + 1 - make.fault(10))]
        else:
            docs = [texts(make, DOC_TEXTS) for _ in range(draw(st.integers(1, 3)))]
            row["positive"] = docs
            key = draw(st.sampled_from(["labels", "scores"]))
            row[key] = [(draw(st.integers(0, 1)) if key == "labels" else score(make)) for _ in docs]
        if make.fault(12):
            row[draw(st.sampled_from(["id", "label", "negative_x"]))] = 1
        records.append(row)
    return make.file(lambda: make.jsonl(records))


@st.composite
def flag_output(draw: st.DrawFn) -> bytes:
    make = Maker(draw)
    records = []
    for _ in range(draw(st.integers(0 if make.fault(10) else 1, 3))):
        row = {"query": texts(make, QUERY_TEXTS), "pos": [texts(make, DOC_TEXTS)],
               "neg": [texts(make, DOC_TEXTS) for _ in range(draw(st.integers(0, 3)))]}
        if draw(st.booleans()):
            row["pos_scores"] = [score(make)]
            row["neg_scores"] = [score(make) for _ in range(len(row["neg"]) + make.fault(10))]
        if make.fault(12):
            row["neg"] = make.text()
        records.append(row)
    return make.file(lambda: make.jsonl(records))


@st.composite
def tevatron_output(draw: st.DrawFn) -> bytes:
    make = Maker(draw)

    def passage() -> object:
        doc_id = draw(st.sampled_from(list(DOCS)))
        item = {"docid": make.ref(list(DOCS)) if make.fault(6) else doc_id, "title": DOCS[doc_id][0],
                "text": make.text() if make.fault(6) else DOCS[doc_id][1]}
        if make.fault(10):
            del item[draw(st.sampled_from(sorted(item)))]
        return make.text() if make.fault(15) else item
    records = [{"query_id": make.ref(list(QUERIES)), "query": texts(make, QUERY_TEXTS),
                "positive_passages": [passage()], "negative_passages": [passage() for _ in range(draw(st.integers(0, 3)))]}
               for _ in range(draw(st.integers(0 if make.fault(10) else 1, 3)))]
    return make.file(lambda: make.jsonl(records))


TREC_SCORES = ["0.5", "-1e3", "nan", "inf", "x", "1e400", ""]


@st.composite
def trec_output(draw: st.DrawFn) -> bytes:
    make = Maker(draw)
    lines = []
    for query_id in draw(st.lists(st.sampled_from(list(QUERIES)), min_size=0 if make.fault(10) else 1, max_size=3,
                                  unique=True)):
        for rank, doc_id in enumerate(draw(st.lists(st.sampled_from(list(DOCS)), min_size=1, max_size=4,
                                                    unique=not make.fault(10))), start=1):
            fields = [str(make.ref(list(QUERIES))) if make.fault(10) else query_id, "Q0",
                      str(make.ref(list(DOCS))) if make.fault(10) else doc_id,
                      draw(st.sampled_from(["one", "1.5", ""])) if make.fault(10) else str(rank),
                      draw(st.sampled_from(TREC_SCORES)) if make.fault(10) else repr(draw(st.floats(-5, 5))),
                      "tag"]
            if make.fault(10):
                fields = fields[:draw(st.integers(0, 5))]
            lines.append(" ".join(fields))
    return make.file(lambda: make.encode("\n".join(lines) + "\n"))


def import_one_run(shared, filename: str, data: bytes, fmt: str) -> None:
    store, scratch = shared
    folder = write_files(scratch, {filename: data})
    try:
        result = attempt(store, lambda: import_run(store, folder / filename, "tiny", fmt))
        accepted_run_keeps_everything(store, result)
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(data=st_output())
def test_st_output_never_crashes_and_rejections_change_nothing(shared, data):
    import_one_run(shared, "st.jsonl", data, "st")


@FUZZ
@given(data=flag_output())
def test_flag_output_never_crashes_and_rejections_change_nothing(shared, data):
    import_one_run(shared, "flag.jsonl", data, "flag")


@FUZZ
@given(data=tevatron_output())
def test_tevatron_output_never_crashes_and_rejections_change_nothing(shared, data):
    import_one_run(shared, "tevatron.jsonl", data, "tevatron")


@FUZZ
@given(data=trec_output())
def test_trec_run_never_crashes_and_rejections_change_nothing(shared, data):
    import_one_run(shared, "run.trec", data, "trec")


# -- TREC qrels ---------------------------------------------------------------------------------------------------
@st.composite
def trec_qrels(draw: st.DrawFn) -> bytes:
    make = Maker(draw)
    pairs = draw(st.lists(st.tuples(st.sampled_from(list(QUERIES)), st.sampled_from(list(DOCS))),
                          min_size=0 if make.fault(10) else 1, max_size=5, unique=not make.fault(10)))
    lines = []
    for query_id, doc_id in pairs:
        fields = [str(make.ref(list(QUERIES))) if make.fault(10) else query_id, "0",
                  str(make.ref(list(DOCS))) if make.fault(10) else doc_id,
                  draw(st.sampled_from(["1.5", "x", "nan", "9" * 30])) if make.fault(10) else str(draw(st.integers(0, 3)))]
        if make.fault(10):
            fields = fields[:draw(st.integers(0, 3))] if draw(st.booleans()) else [*fields, "extra"]
        lines.append(" ".join(fields))
    return make.file(lambda: make.encode("\n".join(lines) + "\n"))


@FUZZ
@given(data=trec_qrels())
def test_trec_qrels_never_crash_and_rejections_change_nothing(shared, data):
    store, scratch = shared
    folder = write_files(scratch, {"fuzz.qrels": data})
    try:
        attempt(store, lambda: import_qrels(store, "tiny", folder / "fuzz.qrels", "fuzz", replace=True))
    finally:
        shutil.rmtree(folder)


# -- valid runs are taken exactly ---------------------------------------------------------------------------------
@FEW
@given(ranking=st.dictionaries(st.sampled_from(sorted(TRAIN)),
                               st.lists(st.tuples(st.sampled_from(list(DOCS)), st.floats(-1e6, 1e6)), min_size=1,
                                        max_size=6, unique_by=lambda pair: pair[0]), min_size=1, max_size=4))
def test_valid_trec_runs_keep_every_non_positive_in_rank_order_with_exact_scores(shared, ranking):
    store, scratch = shared
    lines = [f"{q} Q0 {d} {rank} {s!r} t" for q, docs in ranking.items() for rank, (d, s) in enumerate(docs, 1)]
    expected = [(q, d, s) for q, docs in ranking.items() for d, s in docs if d not in TRAIN[q]]
    folder = write_files(scratch, {"run.trec": ("\n".join(lines) + "\n").encode()})
    try:
        result = attempt(store, lambda: import_run(store, folder / "run.trec", "tiny", "trec"))
        if not expected:
            assert result is None
            return
        cands = store.candidates(result.run_id, with_signals=False, with_risk=False)
        got = sorted(zip(cands["query_id"], cands["rank"], cands["doc_id"], cands["score"]))
        ranks = {}
        want = []
        for q, d, s in expected:
            ranks[q] = ranks.get(q, 0) + 1
            want.append((q, ranks[q], d, s))
        assert got == sorted(want)
    finally:
        shutil.rmtree(folder)
