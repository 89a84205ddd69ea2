"""Importers for BEIR folders and sentence-transformers pair/triplet files, validated before any write.

Everything is parsed and checked in memory first; only a fully valid dataset reaches the store, in one
transaction, so a bad file can never leave a half-imported workspace behind.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DatasetError, UserError
from core.validation import check_name, display, user_path

if TYPE_CHECKING:
    from core.store import Store

MAX_FIELD_CHARS = 1_000_000
MAX_GRADE = 2 ** 63 - 1  # SQLite INTEGER range
PAIR_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet"}


@dataclass
class DatasetContent:
    """A parsed dataset: (doc_id, title, text), (query_id, text), (split, query_id, doc_id, score)."""

    format: str
    documents: list[tuple[str, str, str]] = field(default_factory=list)
    queries: list[tuple[str, str]] = field(default_factory=list)
    qrels: list[tuple[str, str, str, int]] = field(default_factory=list)

    def sha256(self) -> str:
        """Order-independent content hash, so re-importing the same data in another order is still a no-op."""
        digest = hashlib.sha256()
        for part in (sorted(self.documents), sorted(self.queries), sorted(self.qrels)):
            for row in part:
                digest.update(json.dumps(row, ensure_ascii=False).encode())
                digest.update(b"\n")
            digest.update(b"\x00")
        return digest.hexdigest()


def lines(text: str) -> list[str]:
    """Split on newlines only: ``str.splitlines`` also splits on U+2028, NEL and other characters that are valid
    inside a JSON string or a TSV note, which would cut a valid record in two."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def require_regular_file(path: Path) -> None:
    """Refuse a FIFO, device or socket by its file mode, without opening it: reading one blocks or never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DatasetError(path, None, None, f"cannot read file ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or other special file")
        raise DatasetError(path, None, None, f"is {kind}, not a regular file")


def read_text(path: Path) -> str:
    """A whole UTF-8 file (a leading BOM dropped); bad bytes are reported with their line and byte offset."""
    require_regular_file(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, None, None, f"cannot read file ({exc.strerror})") from None
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = raw[:offset].count(b"\n") + 1
        raise DatasetError(path, line, None, f"not valid UTF-8 (byte 0x{raw[offset]:02x} at offset {offset} "
                                             "of the file)") from None


def _text_field(obj: dict, key: str, path: Path, line: int, required: bool = True) -> str:
    """A text or id value as a string. Integers are taken as their digits (ids like 1 are common); floats are
    refused, since NaN would become the text "nan" and 1.0 the id "1.0"."""
    if obj.get(key) is None:
        if required:
            raise DatasetError(path, line, key, "missing" if key not in obj else "null (expected a string)")
        return ""
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        got = f"the number {value!r}" if isinstance(value, float) else type(value).__name__
        raise DatasetError(path, line, key, f"expected a string, got {got}")
    value = str(value)
    if len(value) > MAX_FIELD_CHARS:
        raise DatasetError(path, line, key, f"longer than {MAX_FIELD_CHARS:,} characters")
    if "\x00" in value:
        raise DatasetError(path, line, key, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. "\ud800" spelled as a JSON escape
        raise DatasetError(path, line, key, "contains an unpaired UTF-16 surrogate") from None
    return value


def _id_field(obj: dict, key: str, path: Path, line: int) -> str:
    value = _text_field(obj, key, path, line).strip()
    if not value:
        raise DatasetError(path, line, key, "empty id")
    if len(value) > 1000:
        raise DatasetError(path, line, key, "id longer than 1000 characters")
    return value


class _DuplicateKey(ValueError):
    """A JSON object names the same key twice (``json`` would silently keep the last value)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    text = read_text(path)
    seen_any = False
    for number, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise DatasetError(path, number, str(exc), "duplicate key in one JSON object") from None
        except RecursionError:
            raise DatasetError(path, number, None, "invalid JSON (nested too deeply)") from None
        except ValueError as exc:  # JSONDecodeError, or an integer longer than int() converts (4,300 digits)
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number with too many digits"
            raise DatasetError(path, number, None, f"invalid JSON ({msg})") from None
        if not isinstance(obj, dict):
            raise DatasetError(path, number, None, f"expected a JSON object, got {type(obj).__name__}")
        seen_any = True
        yield number, obj
    if not seen_any:
        raise DatasetError(path, None, None, "file is empty")


# -- BEIR ---------------------------------------------------------------------------------------------------------
def load_beir(folder: Path) -> DatasetContent:
    folder = Path(folder)
    corpus_path, queries_path, qrels_dir = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels"
    for needed in (corpus_path, queries_path):
        if not needed.exists():
            raise DatasetError(needed, None, None, "missing (a BEIR folder needs corpus.jsonl and queries.jsonl)")
    content = DatasetContent("beir")
    doc_lines: dict[str, int] = {}
    for number, obj in _jsonl_objects(corpus_path):
        doc_id = _id_field(obj, "_id", corpus_path, number)
        if doc_id in doc_lines:
            raise DatasetError(corpus_path, number, "_id", f"duplicate id {doc_id!r} (first on line {doc_lines[doc_id]})")
        doc_lines[doc_id] = number
        title = _text_field(obj, "title", corpus_path, number, required=False)
        text = _text_field(obj, "text", corpus_path, number)
        content.documents.append((doc_id, title, text))
    query_lines: dict[str, int] = {}
    for number, obj in _jsonl_objects(queries_path):
        query_id = _id_field(obj, "_id", queries_path, number)
        if query_id in query_lines:
            raise DatasetError(queries_path, number, "_id",
                               f"duplicate id {query_id!r} (first on line {query_lines[query_id]})")
        query_lines[query_id] = number
        content.queries.append((query_id, _text_field(obj, "text", queries_path, number)))
    # Any case of the suffix: a split saved as test.TSV must not be dropped without a word.
    qrel_files = sorted(p for p in qrels_dir.iterdir() if p.suffix.lower() == ".tsv") if qrels_dir.is_dir() else []
    if not qrel_files:
        raise DatasetError(qrels_dir, None, None, "no qrels/<split>.tsv file found")
    split_files: dict[str, Path] = {}
    for qrel_path in qrel_files:
        if qrel_path.stem in split_files:
            raise DatasetError(qrel_path, None, None,
                               f"split {qrel_path.stem!r} is also in {split_files[qrel_path.stem].name}")
        split_files[qrel_path.stem] = qrel_path
        content.qrels.extend(_load_qrels(qrel_path, qrel_path.stem, doc_lines, query_lines))
    return content


def _load_qrels(path: Path, split: str, docs: dict[str, int], queries: dict[str, int]) -> list[tuple]:
    rows: list[tuple[str, str, str, int]] = []
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines(read_text(path)), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if number == 1 and [p.strip().lower() for p in parts[:2]] == ["query-id", "corpus-id"]:
            continue
        if len(parts) == 4:  # TREC style: qid iteration docid score
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise DatasetError(path, number, None,
                               f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}")
        query_id, doc_id, score_text = (p.strip() for p in parts)
        if query_id not in queries:
            raise DatasetError(path, number, "query-id", f"unknown query id {query_id!r}")
        if doc_id not in docs:
            raise DatasetError(path, number, "corpus-id", f"unknown corpus id {doc_id!r}")
        try:
            score = int(float(score_text)) if float(score_text).is_integer() else None
        except ValueError:
            score = None
        if score is None or abs(score) > MAX_GRADE:
            raise DatasetError(path, number, "score", f"expected an integer grade, got {score_text!r}")
        if (query_id, doc_id) in seen:
            raise DatasetError(path, number, None,
                               f"duplicate judgment for ({query_id}, {doc_id}) (first on line {seen[query_id, doc_id]})")
        seen[query_id, doc_id] = number
        rows.append((split, query_id, doc_id, score))
    if not rows:
        raise DatasetError(path, None, None, "file has no judgments")
    return rows


# -- sentence-transformers pairs / triplets ------------------------------------------------------------------------
# Column roles come from these exact names (any case), across the whole file: a guessed role turns a score
# column into documents, and a column that only some rows have must not be missed.
QUERY_COLUMNS = ("anchor", "query", "question")
POSITIVE_COLUMNS = ("positive", "pos", "answer")
NEGATIVE_COLUMN = re.compile(r"negatives|(?:negative|neg)(?:_[1-9][0-9]*)?")
# Teacher scores have no place in a dataset (the miner scores candidates itself): such columns are ignored.
SCORE_COLUMN = re.compile(r"scores?|(?:positive|pos|negative|neg)(?:_[1-9][0-9]*)?_scores?")
COLUMN_HELP = ("anchor|query|question, positive|pos|answer, negative|negatives|neg|negative_N|neg_N, "
               "or an ignored score column (score, negative_score, ...)")


@dataclass
class _Table:
    """A pairs file: its columns (each with the line that first names it; None for Parquet) and its rows."""

    columns: list[tuple[str, int | None]]
    rows: list[tuple[int, dict]]


def _delimited(path: Path, text: str, tab: bool) -> _Table:
    """CSV with the csv module's quoting; TSV literally (no quoting, no escapes): one field per tab-separated
    cell, so a '"' inside a TSV field stays a character. Every row needs exactly the header's number of fields."""
    if tab:
        records = [(number, line.split("\t")) for number, line in enumerate(lines(text), start=1) if line]
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            records = [(reader.line_num, row) for row in reader if row]
        except csv.Error as exc:
            raise DatasetError(path, reader.line_num, None, f"malformed CSV ({exc})") from None
    if not records:
        raise DatasetError(path, None, None, "file is empty")
    (header_line, header), body = records[0], records[1:]
    kind = "tab-separated fields" if tab else "comma-separated fields"
    for number, row in body:
        if len(row) != len(header):
            raise DatasetError(path, number, None, f"{len(row)} {kind}, the header has {len(header)}")
    return _Table([(name, header_line) for name in header], [(number, dict(zip(header, row))) for number, row in body])


def _table(path: Path) -> _Table:
    """Columns and rows of a JSONL/CSV/TSV/Parquet file, rows with a 1-based line (data row for Parquet)."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        rows = list(_jsonl_objects(path))
        first_seen: dict[str, int] = {}
        for number, row in rows:
            for key in row:
                first_seen.setdefault(key, number)
        return _Table(list(first_seen.items()), rows)
    if suffix in {".csv", ".tsv"}:
        return _delimited(path, read_text(path), tab=suffix == ".tsv")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        require_regular_file(path)
        try:  # ParquetFile keeps duplicate column names (read_table refuses them), so they get our message
            with pq.ParquetFile(path) as parquet:
                table = parquet.read()
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(path, None, None, f"not a readable Parquet file ({reason})") from None
        if table.num_rows == 0:
            raise DatasetError(path, None, None, "file is empty")
        return _Table([(name, None) for name in table.column_names], list(enumerate(table.to_pylist(), start=1)))
    raise DatasetError(path, None, None, f"unsupported file type {suffix!r} (use .jsonl, .csv, .tsv or .parquet)")


def _roles(path: Path, columns: list[tuple[str, int | None]]) -> tuple[str, str, list[str]]:
    """(query column, positive column, negative columns), or an error naming the first column that does not fit:
    a duplicate, a second query or positive column, a missing one, or a name with no role."""
    seen: dict[str, str] = {}
    for name, line in columns:
        if name.lower() in seen:
            also = "" if seen[name.lower()] == name else f" (as {seen[name.lower()]!r})"
            raise DatasetError(path, line, name, f"duplicate column{also}")
        seen[name.lower()] = name
    first_line = dict(columns)
    names = [name for name, _ in columns]
    chosen = []
    for role, pool in (("anchor", QUERY_COLUMNS), ("positive", POSITIVE_COLUMNS)):
        found = [name for name in names if name.lower() in pool]
        if len(found) > 1:
            raise DatasetError(path, first_line[found[1]], found[1],
                               f"a second {role} column besides {found[0]!r} (use one of {', '.join(pool)})")
        if not found:
            raise DatasetError(path, None, role, f"missing column (one of {', '.join(pool)}; columns are {names})")
        chosen.append(found[0])
    negatives = [name for name in names if NEGATIVE_COLUMN.fullmatch(name.lower())]
    for name in names:
        if name not in chosen and name not in negatives and not SCORE_COLUMN.fullmatch(name.lower()):
            raise DatasetError(path, first_line[name], name, f"unknown column (expected {COLUMN_HELP})")
    return chosen[0], chosen[1], negatives


def _stable_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def load_pairs(path: Path) -> DatasetContent:
    """Pairs/triplets/n-tuples: anchor + positive (+ negative columns); ids are content hashes of the texts.

    Given negatives become documents (so the miner and reviewer see them); they are not judgments. A row without
    a value in a negative column (an empty cell, null, or a JSONL row without the key) has no negative there.
    """
    path = Path(path)
    table = _table(path)
    anchor_key, positive_key, negative_keys = _roles(path, table.columns)
    if not table.rows:
        raise DatasetError(path, None, None, "file has a header but no rows")
    content = DatasetContent("pairs")
    docs: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: set[tuple[str, str]] = set()
    has_negatives = False
    for number, row in table.rows:
        query = _text_field(row, anchor_key, path, number)
        positive = _text_field(row, positive_key, path, number)
        if not query.strip():
            raise DatasetError(path, number, anchor_key, "empty text")
        if not positive.strip():
            raise DatasetError(path, number, positive_key, "empty text")
        query_id = _stable_id("q", query)
        queries.setdefault(query_id, query)
        doc_id = _stable_id("d", positive)
        docs.setdefault(doc_id, positive)
        qrels.add((query_id, doc_id))
        for key in negative_keys:
            values = row.get(key)
            values = values if isinstance(values, list) else [values]
            for value in values:
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue
                negative = _text_field({key: value}, key, path, number)
                docs.setdefault(_stable_id("d", negative), negative)
                has_negatives = True
    content.format = "triplets" if has_negatives else "pairs"
    content.documents = [(doc_id, "", text) for doc_id, text in docs.items()]
    content.queries = list(queries.items())
    content.qrels = [("train", q, d, 1) for q, d in sorted(qrels)]
    return content


# -- entry point --------------------------------------------------------------------------------------------------
def detect_format(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            return "beir"
        raise UserError(f"{path}: folder has no corpus.jsonl (expected a BEIR folder)")
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    require_regular_file(path)
    if path.suffix.lower() in PAIR_SUFFIXES:
        return "pairs"
    raise UserError(f"{path}: cannot tell the format (expected a BEIR folder or a .jsonl/.csv/.parquet file)")


def load(path: str | Path, fmt: str = "auto") -> DatasetContent:
    path = user_path(path, "dataset path", must_exist=True)
    if fmt not in {"auto", "beir", "pairs", "triplets"}:
        raise UserError(f"unknown format {fmt!r} (use auto, beir, pairs or triplets)")
    detected = detect_format(path)
    if fmt == "beir" and detected != "beir" or fmt in {"pairs", "triplets"} and detected == "beir":
        raise UserError(f"{path}: looks like {detected}, not {fmt}")
    content = load_beir(path) if detected == "beir" else load_pairs(path)
    if not content.documents:
        raise DatasetError(path, None, None, "no documents")
    return content


@dataclass
class ImportResult:
    name: str
    status: str  # "imported", "unchanged", "replaced"
    documents: int
    queries: int
    qrels: int
    splits: dict[str, int]

    def summary(self) -> str:
        splits = ", ".join(f"{k}: {v}" for k, v in sorted(self.splits.items()))
        return (f"{self.status} dataset {self.name!r}: {self.documents} documents, {self.queries} queries, "
                f"{self.qrels} qrels ({splits})")


def ingest(store: Store, path: str | Path, name: str, fmt: str = "auto", replace: bool = False) -> ImportResult:
    """Validate the whole input, then write it in one transaction (or do nothing if the content is unchanged).

    Whether the name exists, and with which content, is decided inside that transaction, so of two imports of
    one name with different content only one can succeed."""
    if not name or not name.strip() or len(name) > 200:
        raise UserError("dataset name must be 1-200 characters")
    check_name(name, "dataset name")
    path = user_path(path, "dataset path", must_exist=True)
    content = load(path, fmt)
    splits: dict[str, int] = {}
    for split, *_ in content.qrels:
        splits[split] = splits.get(split, 0) + 1
    status = store.save_dataset(name, display(path), content.format, content.sha256(), content.documents,
                                content.queries, content.qrels, replace=replace)
    return ImportResult(name, status, len(content.documents), len(content.queries), len(content.qrels), splits)
