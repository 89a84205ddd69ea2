"""What the annotation-tool round trips (core.label_studio, core.argilla_dataset) share: the candidates of a run
to review, per query, and the reading of a tool's JSON export with the place of every value in it.

Both tools export one JSON array (Label Studio's JSON export, Argilla's ``records.json``). A bad value is reported
with the file, the line its record starts on and the value's path inside the array (``tasks[3].annotations[0]
.completed_by``), so a record is found in a pretty-printed file and in a one-line one. Importing modules keep
this module's import free of pandas: ``core.export`` imports the writers for the CLI's help.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DatasetError
from core.validation import DuplicateKey, unique_keys

if TYPE_CHECKING:
    from core.labels import KnownIds
    from core.selection import TrainingData
    from core.store import Store

MAX_TEXT_CHARS = 1_000_000  # as core.datasets.MAX_FIELD_CHARS: one value larger than this is no id or name


@dataclass(frozen=True)
class Candidate:
    """One candidate of a query to judge, with what the reviewer sees beside it in this tool."""

    doc_id: str
    text: str
    rank: int
    score: float
    margin: float  # score − s_P, the query's positive score

    def heading(self) -> str:
        return f"#{self.rank} · {self.doc_id} · score {self.score:.4f} · margin {self.margin:+.4f}"


@dataclass(frozen=True)
class ReviewQuery:
    query_id: str
    query: str
    positives: list[str]  # the labelled positives' texts, so the reviewer compares against them
    candidates: list[Candidate]


def review_queries(store: Store, td: TrainingData) -> list[ReviewQuery]:
    """The export's selected negatives per query (raw: the run's kept negatives; curated: without resolved false
    negatives), in rank order, with the run's rank, score and margin; queries without negatives are left out."""
    candidates = store.candidates(td.run["run_id"], with_signals=False, with_risk=False)
    placed = dict(zip(zip(candidates["query_id"], candidates["doc_id"]),
                      zip(candidates["rank"].tolist(), candidates["score"].tolist(),
                          candidates["pos_score"].tolist())))
    queries = []
    for ex in td.examples:
        if not ex.negatives:
            continue
        listed = []
        for doc_id in ex.negatives:
            rank, score, pos_score = placed[ex.query_id, doc_id]
            listed.append(Candidate(doc_id, td.doc(doc_id), int(rank), float(score), float(score - pos_score)))
        queries.append(ReviewQuery(ex.query_id, td.query_text[ex.query_id], [td.doc(d) for d in ex.positives],
                                   listed))
    return queries


def write_json(path: Path, value: object) -> None:
    """Pretty-printed (one record per few lines, so errors on the way back name a useful line), UTF-8."""
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# -- reading an export back ---------------------------------------------------------------------------------------
_DECODER = json.JSONDecoder(object_pairs_hook=unique_keys)


def json_array(path: Path, name: str) -> Iterator[tuple[int, str, object]]:
    """(line, ``name[i]``, value) for each element of the JSON array in ``path``, every element decoded before
    the first is returned. A file that is not one JSON array is refused with the line of the fault."""
    from core.datasets import read_text

    text = read_text(path)
    elements: list[tuple[int, str, object]] = []
    try:
        position = _skip_space(text, 0)
        if not text.startswith("[", position):
            raise DatasetError(path, _line(text, position), None, f"expected a JSON array of {name}")
        position = _skip_space(text, position + 1)
        line, counted = 1, 0
        if text.startswith("]", position):
            position += 1
        else:
            while True:
                value, end = _DECODER.raw_decode(text, position)
                line += text.count("\n", counted, position)
                counted = position
                elements.append((line, f"{name}[{len(elements)}]", value))
                position = _skip_space(text, end)
                if text.startswith(",", position):
                    position = _skip_space(text, position + 1)
                elif text.startswith("]", position):
                    position += 1
                    break
                else:
                    raise json.JSONDecodeError("expected ',' or ']'", text, position)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, exc.lineno, None, f"invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise DatasetError(path, None, None, "invalid JSON (nested too deeply)") from None
    except DuplicateKey as exc:
        raise DatasetError(path, None, None, f"invalid JSON (the key {str(exc)!r} twice in one object)") from None
    except ValueError as exc:  # an integer longer than int() converts
        raise DatasetError(path, None, None, f"invalid JSON ({exc})") from None
    if _skip_space(text, position) != len(text):
        raise DatasetError(path, _line(text, position), None, "text after the JSON array")
    yield from elements


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


@dataclass(frozen=True)
class Place:
    """Where a value sits in the file: the line its record starts on and its path inside the array."""

    path: Path
    line: int
    field: str

    def at(self, key: str | int) -> Place:
        return Place(self.path, self.line, f"{self.field}[{key}]" if isinstance(key, int) else f"{self.field}.{key}")

    def error(self, message: str) -> DatasetError:
        return DatasetError(self.path, self.line, self.field, message)


def get(obj: object, key: str, place: Place, kind: type | tuple[type, ...], required: bool = True) -> object:
    """``obj[key]`` of the expected JSON type (a bool is not an int here), None when absent and not required."""
    if not isinstance(obj, dict):
        raise place.error(f"expected an object, got {_json_type(obj)}")
    value = obj.get(key)
    if value is None and not required:
        return None
    if value is None or isinstance(value, bool) and bool not in _types(kind) or not isinstance(value, kind):
        wanted = " or ".join(_json_name(t) for t in _types(kind))
        got = "missing" if key not in obj else f"expected {wanted}, got {_json_type(value)}"
        raise place.at(key).error(got)
    return value


def text(obj: object, key: str, place: Place) -> str:
    """A non-empty string value (an id or a name), storable as UTF-8 and without NUL."""
    value = get(obj, key, place, str)
    if not value.strip():
        raise place.at(key).error("empty")
    if len(value) > MAX_TEXT_CHARS or "\x00" in value:
        raise place.at(key).error(f"contains NUL or is longer than {MAX_TEXT_CHARS:,} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise place.at(key).error("contains an unpaired UTF-16 surrogate") from None
    return value


def timestamp(value: str, place: Place) -> str:
    """An ISO 8601 time (``2024-05-01T12:00:00.123456Z``, with or without offset) in the store's form: UTC,
    milliseconds (core.store.connection.now); a time without offset is taken as UTC, as Label Studio writes."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise place.error(f"expected an ISO 8601 time, got {value[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    except OverflowError:
        raise place.error(f"time {value[:40]!r} is out of range") from None


def person(name: str, place: Place) -> str:
    """An annotator's name as the store takes it (core.labels.check_annotator), or an error at its place."""
    from core.errors import UserError
    from core.labels import check_annotator

    try:
        return check_annotator(name)
    except UserError as exc:
        raise place.error(str(exc)) from None


def verdict(known: KnownIds, query_id: tuple[str, Place], doc_id: tuple[str, Place], annotator: str,
            label: object, place: Place, created_at: str | None = None) -> dict:
    """One checked verdict event of a checked annotator (``person``): a pair the dataset has (each id with its
    place) and a known label at ``place`` (the tools' choice values may be written with spaces: ``false
    negative``)."""
    from core.errors import UserError
    from core.labels import check_pair, normalise_label

    (query, query_place), (doc, doc_place) = query_id, doc_id
    check_pair(known, query, doc, place.path, place.line, (query_place.field, doc_place.field))
    if not isinstance(label, str):
        raise place.error(f"expected a label, got {_json_type(label)}")
    try:
        value = normalise_label(label.replace(" ", "_"))
    except UserError as exc:
        raise place.error(str(exc)) from None
    return {"dataset": known.dataset, "query_id": query, "doc_id": doc, "annotator": annotator, "label": value,
            "note": "", "created_at": created_at}


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
               bool: "true or false", type(None): "null"}


def _json_name(kind: type) -> str:
    return _JSON_NAMES.get(kind, kind.__name__)


def _json_type(value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return _json_name(type(value))
