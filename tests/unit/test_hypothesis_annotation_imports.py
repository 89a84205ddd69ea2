"""Property-based hardening of the annotation tools' importers: Label Studio JSON exports and Argilla
``records.json``.

The readers are pure (a file and the dataset's ids in, verdict events out; ``core.verdict_import`` writes only
what they return), so each example runs the reader alone on a small file, with the tiny dataset's ids, and no
workspace: 1,000 examples take seconds. Inputs are near-valid exports built from the tiny dataset's ids with
``Maker``'s faults (wrong types, missing keys, dangling ids, unknown controls and questions, bad labels, times and
authors, odd unicode, cut or random files). The properties: nothing but a ``UserError`` escapes, and it names the
file; an accepted file yields only verdicts on pairs the dataset has, with known labels and storable names; a
valid file yields exactly the verdicts it holds. That a refusal leaves the workspace unchanged is tested on the
real import in tests/integration/test_annotation_round_trips.py.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from core.argilla_dataset import read_responses
from core.errors import DatasetError, UserError
from core.label_studio import read_export
from core.labels import LABELS, KnownIds, check_annotator
from tests.fixtures import DOCS, QUERIES
from tests.unit.test_hypothesis_import import FUZZ, Maker

pytestmark = pytest.mark.slow  # left out of the fast lane

KNOWN = KnownIds("tiny", frozenset(QUERIES), frozenset(DOCS))
PEOPLE = ["ana@example.org", "bo", "Chloé Dupont", "漢字@example.org"]
SHOWN = {"false_negative": "false negative", "true_negative": "true negative", "unsure": "unsure"}
NOT_ELEMENTS = [3, "x", None, [], True]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("annotation-fuzz")


def value(make: Maker, good: object) -> object:
    """``good``, or in a faulty example sometimes a text or a value of the wrong type."""
    return make.text() if make.fault(12) else good


def label(make: Maker) -> tuple[str, str | None]:
    """(value written, label expected): a label, its alias with spaces, or in a faulty example anything."""
    chosen = make.draw(st.sampled_from(LABELS))
    if make.fault(10):
        return make.draw(st.sampled_from(["maybe", "", "FN?", "false  negative"])), None
    return (SHOWN[chosen] if make.draw(st.booleans()) else chosen), chosen


def as_file(make: Maker, elements: list) -> bytes:
    """A JSON array, pretty or on one line; a faulty file may hold elements that are no objects."""
    elements = [make.draw(st.sampled_from(NOT_ELEMENTS)) if make.fault(15) else e for e in elements]
    indent = make.draw(st.sampled_from([None, 1, 2]))
    return make.file(lambda: make.encode(json.dumps(elements, indent=indent, ensure_ascii=make.draw(st.booleans()))))


def check(path, read, expected: Counter | None, faulty: bool) -> None:
    """Only a UserError naming the file; accepted verdicts are sound; a valid file gives what it holds."""
    try:
        events = read(path, KNOWN, None)
    except UserError as exc:
        event(f"rejected: {getattr(exc, 'field', None) or getattr(exc, 'reason', str(exc))[:30]}")
        assert isinstance(exc, DatasetError) and exc.file == str(path), exc
        assert faulty or not expected, f"a valid file was refused: {exc}"
        return
    event("accepted")
    for ev in events:
        assert ev["query_id"] in QUERIES and ev["doc_id"] in DOCS and ev["label"] in LABELS
        assert check_annotator(ev["annotator"]) == ev["annotator"] and ev["dataset"] == "tiny"
    if not faulty:
        assert Counter((e["annotator"], e["query_id"], e["doc_id"], e["label"]) for e in events) == expected


# -- Label Studio -------------------------------------------------------------------------------------------------
@st.composite
def label_studio_export(draw: st.DrawFn) -> tuple[bytes, Counter, bool]:
    make = Maker(draw)
    expected: Counter = Counter()
    tasks = []
    for n in range(draw(st.integers(0 if make.fault(10) else 1, 3))):
        query_id = make.ref(list(QUERIES))
        docs = [make.ref(list(DOCS)) for _ in range(draw(st.integers(1, 3)))]
        data = {"dataset": "tiny" if not make.fault(15) else make.text(), "query_id": query_id,
                "candidates": [{"doc_id": d, "text": "t"} for d in docs]}
        if make.fault(15):
            data["candidates"] = value(make, {"doc_id": "py-join"})
        annotations = []
        for _ in range(draw(st.integers(0, 2))):
            who = draw(st.sampled_from(PEOPLE))
            author = {"id": 1, "email": value(make, who)} if draw(st.booleans()) else value(make, draw(
                st.integers(1, 99)))
            name = who if isinstance(author, dict) else f"label-studio:{author}"
            cancelled = draw(st.booleans()) and draw(st.booleans())
            result = []
            for k in draw(st.lists(st.integers(0, len(docs) - 1), unique=True, max_size=len(docs))):
                written, chosen = label(make)
                control = f"verdict_{k}" if not make.fault(12) else make.draw(st.sampled_from(
                    ["verdict_9", "note", "verdict_01", "verdict_-1", ""]))
                result.append({"from_name": control, "to_name": f"candidate_{k}", "type": "choices",
                               "value": {"choices": [written]} if not make.fault(15) else value(make, {})})
                if not cancelled and not make.faulty:  # a faulty example's values may not even be hashable
                    expected[name, query_id, docs[k], chosen] += 1
            when = "2024-05-01T10:00:00.5Z" if not make.fault(12) else make.draw(st.sampled_from(
                ["2024-13-01", "", "yesterday", "9999-12-31T23:59:59-23:59"]))
            annotation = {"id": n, "completed_by": author, "result": result, "was_cancelled": cancelled,
                          "created_at": when, "updated_at": when}
            if make.fault(12):
                del annotation[draw(st.sampled_from(sorted(annotation)))]
            annotations.append(annotation)
        tasks.append({"id": n + 1, "data": data, "annotations": annotations, "predictions": []})
    return as_file(make, tasks), expected, make.faulty


@FUZZ
@given(example=label_studio_export())
def test_label_studio_exports_never_crash_and_valid_ones_give_their_verdicts(scratch, example):
    data, expected, faulty = example
    path = scratch / "export.json"
    path.write_bytes(data)
    check(path, read_export, expected, faulty)


# -- Argilla ------------------------------------------------------------------------------------------------------
@st.composite
def argilla_records(draw: st.DrawFn) -> tuple[bytes, Counter, bool]:
    make = Maker(draw)
    expected: Counter = Counter()
    records = []
    for _ in range(draw(st.integers(0 if make.fault(10) else 1, 4))):
        query_id, doc_id = make.ref(list(QUERIES)), make.ref(list(DOCS))
        responses = []
        for _ in range(draw(st.integers(0, 2))):
            user = draw(st.sampled_from(["3f0c…", "u-1", "6d1e0c52-3c1b-4e0b-a4b3-4a1b2c3d4e5f"]))
            written, chosen = label(make)
            discarded = draw(st.integers(0, 4)) == 0
            response = {"value": None if discarded else written, "user_id": value(make, user)}
            if make.fault(12):
                response["status"] = make.draw(st.sampled_from(["draft", "submitted", 3]))
            responses.append(response)
            if not discarded and not make.faulty:
                expected[f"argilla:{user}", query_id, doc_id, chosen] += 1
        record = {"id": json.dumps([query_id, doc_id]), "fields": {"query": "q", "candidate": "c"},
                  "metadata": {"query_id": query_id, "doc_id": doc_id, "rank": 1, "score": 0.5},
                  "responses": {"verdict": responses} if responses or draw(st.booleans()) else {},
                  "suggestions": {}, "vectors": {}, "status": "pending", "_server_id": None}
        if make.fault(15):
            record["responses"] = value(make, {"note": [{"value": "x", "user_id": "u"}]})
        if make.fault(15):
            record["metadata"] = value(make, {"query_id": query_id})
        records.append(record)
    return as_file(make, records), expected, make.faulty


@FUZZ
@given(example=argilla_records())
def test_argilla_records_never_crash_and_valid_ones_give_their_verdicts(scratch, example):
    data, expected, faulty = example
    path = scratch / "records.json"
    path.write_bytes(data)
    check(path, read_responses, expected, faulty)
