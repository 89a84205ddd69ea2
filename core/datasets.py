"""Importers for BEIR folders, sentence-transformers pair/triplet files and Hugging Face ``datasets`` folders,
validated as they stream.

A parser reads its input a line (or a Parquet record batch) at a time and hands each validated row to a sink:
``DatasetContent`` in memory, or the store's staging file for ``ingest``. The first bad line aborts the import
before the workspace is touched; only a fully valid dataset reaches it, in one transaction, so a bad file can
never leave a half-imported workspace behind, and a corpus of millions of documents is never held whole.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.errors import DatasetError, UserError
from core.jobs import Job, StageProgress
from core.validation import DuplicateKey, check_name, display, user_path, unique_keys

if TYPE_CHECKING:
    from core.store import Store

MAX_FIELD_CHARS = 1_000_000
MAX_GRADE = 2 ** 63 - 1  # SQLite INTEGER range
PAIR_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet"}
PARQUET_BATCH_ROWS = 10_000


class RowSink(Protocol):
    """Where a parser puts each row it has validated: memory, or a store's staging file."""

    def add_document(self, doc_id: str, title: str, text: str) -> None: ...

    def add_query(self, query_id: str, text: str) -> None: ...

    def add_qrel(self, split: str, query_id: str, doc_id: str, score: int) -> None: ...


_ROW_JSON = json.JSONEncoder(ensure_ascii=False)  # what json.dumps(row, ensure_ascii=False) builds on every call


def content_sha256(parts: Iterable[Iterable[tuple]]) -> str:
    """The content hash of a dataset given as its documents, queries and qrels, each part sorted by its whole
    row: independent of the input's order, so re-importing the same data in another order is still a no-op.
    Workspaces store it, so these bytes must never change."""
    digest = hashlib.sha256()
    for part in parts:
        for row in part:
            digest.update(_ROW_JSON.encode(row).encode())
            digest.update(b"\n")
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass
class DatasetContent:
    """A parsed dataset in memory: (doc_id, title, text), (query_id, text), (split, query_id, doc_id, score)."""

    format: str
    documents: list[tuple[str, str, str]] = field(default_factory=list)
    queries: list[tuple[str, str]] = field(default_factory=list)
    qrels: list[tuple[str, str, str, int]] = field(default_factory=list)

    def add_document(self, doc_id: str, title: str, text: str) -> None:
        self.documents.append((doc_id, title, text))

    def add_query(self, query_id: str, text: str) -> None:
        self.queries.append((query_id, text))

    def add_qrel(self, split: str, query_id: str, doc_id: str, score: int) -> None:
        self.qrels.append((split, query_id, doc_id, score))

    def sha256(self) -> str:
        return content_sha256((sorted(self.documents), sorted(self.queries), sorted(self.qrels)))


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


def _raw_lines(path: Path) -> Iterator[tuple[int, str]]:
    """A UTF-8 file a line at a time (1-based number, text with its line end; a leading BOM dropped), split at
    '\\n' only, since no UTF-8 sequence contains that byte; bad bytes are reported with their line and their
    byte offset in the file."""
    require_regular_file(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(path, None, None, f"cannot read file ({exc.strerror})") from None
    with handle:
        offset = 0
        try:
            for number, raw in enumerate(handle, start=1):
                skip = len(codecs.BOM_UTF8) if number == 1 and raw.startswith(codecs.BOM_UTF8) else 0
                try:
                    text = raw[skip:].decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad = skip + exc.start
                    raise DatasetError(path, number, None, f"not valid UTF-8 (byte 0x{raw[bad]:02x} at offset "
                                                           f"{offset + bad} of the file)") from None
                offset += len(raw)
                yield number, text
        except OSError as exc:
            raise DatasetError(path, None, None, f"cannot read file ({exc.strerror})") from None


def read_text(path: Path) -> str:
    """A whole UTF-8 file (a leading BOM dropped); bad bytes are reported with their line and byte offset."""
    return "".join(text for _, text in _raw_lines(path))


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """A UTF-8 file's lines as ``lines`` splits them (no line end, a CR before it dropped), read as they come."""
    for number, text in _raw_lines(path):
        yield number, text.removesuffix("\n").removesuffix("\r")


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


_LINE_JSON = json.JSONDecoder(object_pairs_hook=unique_keys)


def _json_line(line: str) -> object:
    """``json.loads(line, object_pairs_hook=unique_keys)`` without building a decoder for every line."""
    if line.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", line, 0)
    return _LINE_JSON.decode(line)


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    seen_any = False
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        try:
            obj = _json_line(line)
        except DuplicateKey as exc:
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
def _read_beir(folder: Path, sink: RowSink) -> str:
    """Stream a BEIR folder into ``sink``: corpus, queries, then each qrels split; returns the format."""
    corpus_path, queries_path, qrels_dir = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels"
    for needed in (corpus_path, queries_path):
        if not needed.exists():
            raise DatasetError(needed, None, None, "missing (a BEIR folder needs corpus.jsonl and queries.jsonl)")
    doc_lines: dict[str, int] = {}
    for number, obj in _jsonl_objects(corpus_path):
        doc_id = _id_field(obj, "_id", corpus_path, number)
        if doc_id in doc_lines:
            raise DatasetError(corpus_path, number, "_id", f"duplicate id {doc_id!r} (first on line {doc_lines[doc_id]})")
        doc_lines[doc_id] = number
        title = _text_field(obj, "title", corpus_path, number, required=False)
        sink.add_document(doc_id, title, _text_field(obj, "text", corpus_path, number))
    query_lines: dict[str, int] = {}
    for number, obj in _jsonl_objects(queries_path):
        query_id = _id_field(obj, "_id", queries_path, number)
        if query_id in query_lines:
            raise DatasetError(queries_path, number, "_id",
                               f"duplicate id {query_id!r} (first on line {query_lines[query_id]})")
        query_lines[query_id] = number
        sink.add_query(query_id, _text_field(obj, "text", queries_path, number))
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
        _read_qrels(qrel_path, qrel_path.stem, doc_lines, query_lines, sink)
    return "beir"


def load_beir(folder: Path) -> DatasetContent:
    """A BEIR folder in memory, for callers that need its rows at hand (evaluation); ``ingest`` streams."""
    content = DatasetContent("beir")
    _read_beir(Path(folder), content)
    return content


def _read_qrels(path: Path, split: str, docs: Container[str], queries: Container[str], sink: RowSink,
                trec: bool = False) -> None:
    """A BEIR qrels TSV (``query-id corpus-id score``, tab-separated, or four columns TREC style), or with ``trec``
    a TREC qrels file (``qid iteration docid grade``, whitespace-separated), into ``sink`` as split ``split``."""
    query_field, doc_field, grade_field = ("qid", "docid", "grade") if trec else ("query-id", "corpus-id", "score")
    seen: dict[tuple[str, str], int] = {}
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        parts = line.split() if trec else line.split("\t")
        if not trec and number == 1 and [p.strip().lower() for p in parts[:2]] == ["query-id", "corpus-id"]:
            continue
        if len(parts) == 4:  # TREC style: qid iteration docid score
            parts = [parts[0], parts[2], parts[3]]
        elif trec:
            raise DatasetError(path, number, None,
                               f"expected 4 whitespace-separated fields (qid iteration docid grade), got {len(parts)}")
        if len(parts) != 3:
            raise DatasetError(path, number, None,
                               f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(parts)}")
        query_id, doc_id, score_text = (p.strip() for p in parts)
        if query_id not in queries:
            raise DatasetError(path, number, query_field, f"unknown query id {query_id!r}")
        if doc_id not in docs:
            raise DatasetError(path, number, doc_field, f"unknown corpus id {doc_id!r}")
        try:
            score = int(float(score_text)) if float(score_text).is_integer() else None
        except ValueError:
            score = None
        if score is None or abs(score) > MAX_GRADE:
            raise DatasetError(path, number, grade_field, f"expected an integer grade, got {score_text!r}")
        if (query_id, doc_id) in seen:
            raise DatasetError(path, number, None,
                               f"duplicate judgment for ({query_id}, {doc_id}) (first on line {seen[query_id, doc_id]})")
        seen[query_id, doc_id] = number
        sink.add_qrel(split, query_id, doc_id, score)
    if not seen:
        raise DatasetError(path, None, None, "file has no judgments")


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
    """A pairs file: its columns (each with the line that first names it; None for Parquet) and its rows, read
    as they are iterated."""

    columns: list[tuple[str, int | None]]
    rows: Iterable[tuple[int, dict]]


_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def _universal_lines(path: Path) -> Iterator[str]:
    """The file's lines with their ends, split where ``io.StringIO(text, newline="")`` splits them (CR, LF or
    CRLF), which is what the csv module is fed: a lone CR ends a record too."""
    for _, text in _raw_lines(path):
        if "\r" in text:
            yield from filter(None, _LONE_CR.split(text))
        else:
            yield text


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(_universal_lines(path))
    try:
        for row in reader:
            if row:
                yield reader.line_num, row
    except csv.Error as exc:
        raise DatasetError(path, reader.line_num, None, f"malformed CSV ({exc})") from None


def _delimited(path: Path, tab: bool) -> _Table:
    """CSV with the csv module's quoting; TSV literally (no quoting, no escapes): one field per tab-separated
    cell, so a '"' inside a TSV field stays a character. Every row needs exactly the header's number of fields."""
    if tab:
        records: Iterator[tuple[int, list[str]]] = ((number, line.split("\t")) for number, line in _text_lines(path)
                                                    if line)
    else:
        records = _csv_records(path)
    first = next(records, None)
    if first is None:
        raise DatasetError(path, None, None, "file is empty")
    header_line, header = first
    kind = "tab-separated fields" if tab else "comma-separated fields"

    def rows() -> Iterator[tuple[int, dict]]:
        for number, row in records:
            if len(row) != len(header):
                raise DatasetError(path, number, None, f"{len(row)} {kind}, the header has {len(header)}")
            yield number, dict(zip(header, row))
    return _Table([(name, header_line) for name in header], rows())


@contextmanager
def _parquet_errors(path: Path, kind: str = "Parquet") -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(path, None, None, f"not a readable {kind} file ({reason})") from None


@contextmanager
def _parquet(path: Path) -> Iterator[_Table]:
    """A Parquet file's columns, and its rows read a record batch at a time; the file is closed on leaving."""
    import pyarrow.parquet as pq

    require_regular_file(path)
    with _parquet_errors(path):  # ParquetFile keeps duplicate column names (read_table refuses them): our message
        parquet = pq.ParquetFile(path)
    with parquet:
        with _parquet_errors(path):
            names, count = parquet.schema_arrow.names, parquet.metadata.num_rows
        if count == 0:
            raise DatasetError(path, None, None, "file is empty")

        def rows() -> Iterator[tuple[int, dict]]:
            number = 0
            batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
            while True:
                with _parquet_errors(path):
                    batch = next(batches, None)
                    values = None if batch is None else batch.to_pylist()
                if values is None:
                    return
                for row in values:
                    number += 1
                    yield number, row
        yield _Table([(name, None) for name in names], rows())


@contextmanager
def _arrow(path: Path) -> Iterator[_Table]:
    """A ``save_to_disk`` shard (an Arrow IPC stream): its columns, and its rows a record batch at a time."""
    import pyarrow as pa

    require_regular_file(path)
    with _parquet_errors(path, "Arrow"):
        source = pa.memory_map(str(path))
    with source:
        with _parquet_errors(path, "Arrow"):
            reader = pa.ipc.open_stream(source)
            names = reader.schema.names

        def rows() -> Iterator[tuple[int, dict]]:
            number = 0
            while True:
                with _parquet_errors(path, "Arrow"):
                    try:
                        values = reader.read_next_batch().to_pylist()
                    except StopIteration:
                        return
                for row in values:
                    number += 1
                    yield number, row
        yield _Table([(name, None) for name in names], rows())


_HF_SHARD = re.compile(r"(.+)-[0-9]+-of-[0-9]+")  # the Hub's Parquet shard names: <split>-00000-of-00003.parquet


def _json_file(path: Path) -> dict:
    try:
        obj = _json_line(read_text(path))
    except (ValueError, RecursionError):
        raise DatasetError(path, None, None, "not a readable JSON file") from None
    if not isinstance(obj, dict):
        raise DatasetError(path, None, None, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _saved_shards(folder: Path) -> list[Path]:
    """The Arrow files a ``Dataset.save_to_disk`` folder's ``state.json`` lists, each a plain name inside it."""
    state_path = folder / "state.json"
    files = _json_file(state_path).get("_data_files")
    if not isinstance(files, list) or not files:
        raise DatasetError(state_path, None, "_data_files", "expected a non-empty list of {\"filename\": ...}")
    shards = []
    for i, entry in enumerate(files):
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or name != Path(name).name or name in {".", ".."}:
            raise DatasetError(state_path, None, f"_data_files[{i}]", "expected a file name inside the folder")
        shards.append(folder / name)
    return shards


def hf_shards(folder: Path) -> list[tuple[str, Path]]:
    """(split, shard) of a Hugging Face ``datasets`` folder: ``Dataset.save_to_disk`` (one split, ``train`` unless
    its state names one), ``DatasetDict.save_to_disk`` (``dataset_dict.json`` naming a subfolder per split), or
    Parquet shards in the folder or its ``data/`` (split from a ``<split>-00000-of-00001.parquet`` name, else
    ``train``)."""
    if (folder / "dataset_dict.json").is_file():
        splits = _json_file(folder / "dataset_dict.json").get("splits")
        if not isinstance(splits, list) or not splits or not all(isinstance(x, str) and x and x == Path(x).name
                                                                 and x not in {".", ".."} for x in splits):
            raise DatasetError(folder / "dataset_dict.json", None, "splits", "expected a list of split folder names")
        return [(split, shard) for split in splits for shard in _saved_shards(folder / split)]
    if (folder / "state.json").is_file():
        split = _json_file(folder / "state.json").get("_split")
        return [(split if isinstance(split, str) and split else "train", shard) for shard in _saved_shards(folder)]
    shards = sorted(p for base in (folder, folder / "data") if base.is_dir() for p in base.iterdir()
                    if p.suffix.lower() == ".parquet")
    if not shards:
        raise DatasetError(folder, None, None, "no dataset_dict.json, state.json or .parquet shards: not a datasets "
                                               "folder")
    return [((_HF_SHARD.fullmatch(p.stem) or [None, "train"])[1], p) for p in shards]


def is_hf_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a ``datasets`` folder (what ``hf_shards`` reads)."""
    return any((folder / name).is_file() for name in ("dataset_dict.json", "state.json")) or any(
        p.suffix.lower() == ".parquet" for base in (folder, folder / "data") if base.is_dir() for p in base.iterdir())


def pair_tables(path: Path) -> Iterator[tuple[str, Path, AbstractContextManager[_Table]]]:
    """(split, file, its table) of a pairs file (split ``train``) or of each shard of a ``datasets`` folder."""
    if path.is_dir():
        for split, shard in hf_shards(path):
            yield split, shard, (_arrow(shard) if shard.suffix.lower() == ".arrow" else _parquet(shard))
    else:
        yield "train", path, _table(path)


@contextmanager
def _table(path: Path) -> Iterator[_Table]:
    """Columns and rows of a JSONL/CSV/TSV/Parquet file, rows with a 1-based line (data row for Parquet).

    A JSONL file is read twice: its columns are every key of every row (with the line that first has it), which
    must be known before the first row is checked, and the rows are read again instead of being kept."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        first_seen: dict[str, int] = {}
        for number, row in _jsonl_objects(path):
            for key in row:
                first_seen.setdefault(key, number)
        yield _Table(list(first_seen.items()), _jsonl_objects(path))
    elif suffix in {".csv", ".tsv"}:
        yield _delimited(path, tab=suffix == ".tsv")
    elif suffix == ".parquet":
        with _parquet(path) as table:
            yield table
    else:
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


def _read_pairs(path: Path, sink: RowSink) -> str:
    """Stream pairs/triplets/n-tuples (anchor + positive (+ negative columns)) from a file, or from every shard of a
    ``datasets`` folder (``pair_tables``), into ``sink``; ids are content hashes of the texts, each text stored
    once. Returns the format: triplets when any row has a negative (``hf`` for a folder).

    A positive cell holds a text or a list of texts (FlagEmbedding-style ``query``/``pos``/``neg`` rows), each a
    qrel of the row's split. Given negatives become documents (so the miner and reviewer see them); they are not
    judgments. A row without a value in a negative column (an empty cell, null, or a JSONL row without the key) has
    no negative there.
    """
    doc_ids: set[str] = set()
    query_ids: set[str] = set()
    qrels: set[tuple[str, str, str]] = set()

    def document(text: str) -> str:
        doc_id = _stable_id("d", text)
        if doc_id not in doc_ids:
            doc_ids.add(doc_id)
            sink.add_document(doc_id, "", text)
        return doc_id

    has_rows = has_negatives = False
    for split, file, opened in pair_tables(path):
        with opened as table:
            anchor_key, positive_key, negative_keys = _roles(file, table.columns)
            for number, row in table.rows:
                has_rows = True
                query = _text_field(row, anchor_key, file, number)
                if not query.strip():
                    raise DatasetError(file, number, anchor_key, "empty text")
                values = row.get(positive_key)
                if isinstance(values, list) and not values:
                    raise DatasetError(file, number, positive_key, "empty list (a row needs a positive)")
                named = ([(f"{positive_key}[{i}]", v) for i, v in enumerate(values)] if isinstance(values, list)
                         else [(positive_key, values)])
                positives = [_text_field({name: value} if name != positive_key else row, name, file, number)
                             for name, value in named]
                for (name, _), positive in zip(named, positives):
                    if not positive.strip():
                        raise DatasetError(file, number, name, "empty text")
                query_id = _stable_id("q", query)
                if query_id not in query_ids:
                    query_ids.add(query_id)
                    sink.add_query(query_id, query)
                for positive in positives:
                    qrels.add((split, query_id, document(positive)))
                for key in negative_keys:
                    values = row.get(key)
                    values = values if isinstance(values, list) else [values]
                    for value in values:
                        if value is None or (isinstance(value, str) and not value.strip()):
                            continue
                        document(_text_field({key: value}, key, file, number))
                        has_negatives = True
    if not has_rows:
        raise DatasetError(path, None, None, "file has a header but no rows" if path.is_file() else "no rows")
    for split, query_id, doc_id in sorted(qrels):
        sink.add_qrel(split, query_id, doc_id, 1)
    return "hf" if path.is_dir() else "triplets" if has_negatives else "pairs"


# -- entry point --------------------------------------------------------------------------------------------------
def detect_format(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            return "beir"
        if is_hf_folder(path):
            return "hf"
        raise UserError(f"{path}: folder has no corpus.jsonl, dataset_dict.json, state.json or .parquet shards "
                        "(expected a BEIR or a Hugging Face datasets folder)")
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    require_regular_file(path)
    if path.suffix.lower() in PAIR_SUFFIXES:
        return "pairs"
    raise UserError(f"{path}: cannot tell the format (expected a BEIR folder or a .jsonl/.csv/.parquet file)")


FORMATS = ("auto", "beir", "pairs", "triplets", "hf")  # what ``ingest --format`` takes


def _reader(path: Path, fmt: str) -> Callable[[Path, RowSink], str]:
    """The parser for ``path`` read as ``fmt`` (auto: what the path looks like)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    detected = detect_format(path)
    if fmt in {"beir", "hf"} and detected != fmt or fmt in {"pairs", "triplets"} and detected != "pairs":
        raise UserError(f"{path}: looks like {detected}, not {fmt}")
    return _read_beir if detected == "beir" else _read_pairs


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


def import_job(name: str, action: str | None, upload: Path | None, work: Callable[[], object]) -> Job:
    """``work`` (one import: a dataset, qrels, another miner's run, verdicts) in a background thread; ``Job.result``
    is what it returns. Checking a file of millions of lines takes minutes, which a click on the page would
    otherwise stop half-way. The role ``action`` (None: none needed) is checked here, as the job's thread has no
    signed-in account. ``upload``: the temporary folder a page wrote an uploaded file into; the job removes it when
    it ends (the page's run ends long before the job reads it), and a refusal here removes it at once."""
    from core import roles

    try:
        if action is not None:
            roles.require(action)
    except UserError:
        if upload is not None:
            shutil.rmtree(upload, ignore_errors=True)
        raise

    def run(stage: StageProgress) -> object:
        stage("checking every line, then saving", 0.0)
        try:
            return work()
        finally:
            if upload is not None:
                shutil.rmtree(upload, ignore_errors=True)

    return Job(name, run)


def ingest_job(store: Store, path: str | Path, name: str, fmt: str = "auto", replace: bool = False,
               upload: Path | None = None) -> Job:
    """``ingest`` as an ``import_job`` (``Job.result`` is its ``ImportResult``)."""
    from core import roles

    return import_job(f"ingest:{name}", roles.DATASETS, upload, lambda: ingest(store, path, name, fmt, replace))


def import_qrels_job(store: Store, dataset: str, path: str | Path, split: str, replace: bool = False,
                     upload: Path | None = None) -> Job:
    """``import_qrels`` as an ``import_job`` (``Job.result`` is its ``ImportResult``)."""
    from core import roles

    return import_job(f"qrels:{dataset}:{split}", roles.DATASETS, upload,
                      lambda: import_qrels(store, dataset, path, split, replace))


def ingest(store: Store, path: str | Path, name: str, fmt: str = "auto", replace: bool = False) -> ImportResult:
    """Validate the input as it streams into a staging file next to the store, then write it in one transaction
    (or do nothing if the content is unchanged); the staging file goes away either way.

    Whether the name exists, and with which content, is decided inside that transaction, so of two imports of
    one name with different content only one can succeed; parsing holds no lock on the workspace. Admins only,
    once accounts exist (core.roles)."""
    from core import audit, roles

    roles.require(roles.DATASETS)
    if not name or not name.strip() or len(name) > 200:
        raise UserError("dataset name must be 1-200 characters")
    check_name(name, "dataset name")
    path = user_path(path, "dataset path", must_exist=True)
    read = _reader(path, fmt)
    with store.staged_dataset() as staged:
        kind = read(path, staged)
        sha = content_sha256(staged.sorted_rows(table) for table in ("documents", "queries", "qrels"))
        status = store.save_staged(name, display(path), kind, sha, staged, replace=replace)
        counts = staged.counts
        if status != "unchanged":  # an identical re-import changes nothing, the audit log included
            audit.record(store, "ingest", name, status=status, source=display(path), format=kind, **counts)
        return ImportResult(name, status, counts["documents"], counts["queries"], counts["qrels"], staged.splits)


def import_qrels(store: Store, dataset: str, path: str | Path, split: str, replace: bool = False) -> ImportResult:
    """TREC qrels (``qid iteration docid grade``) as split ``split`` of a dataset already in the workspace, every
    line checked against its queries and documents first; the dataset is then replaced by its own content with
    that split's qrels, in one transaction (``Store.save_staged``: promoted positives and labels are kept, and a
    replace that runs still depend on is refused). An existing split is replaced only with ``replace``. Admins
    only, once accounts exist (core.roles)."""
    from core import audit, roles
    from core.lookups import require_dataset

    roles.require(roles.DATASETS)
    found = require_dataset(store, dataset)
    check_name(split, "split name")
    if not split or len(split) > 200 or "/" in split:
        raise UserError(f"split name {split!r}: 1-200 characters, no '/'")
    if split in store.splits(dataset) and not replace:
        raise UserError(f"dataset {dataset!r} already has split {split!r} (use --replace to replace its qrels)")
    path = user_path(path, "qrels file", must_exist=True)
    require_regular_file(path)
    with store.staged_dataset() as staged:
        doc_ids: set[str] = set()
        for frame in store.iter_documents(dataset):
            for doc_id, title, text in zip(frame["doc_id"], frame["title"], frame["text"]):
                doc_ids.add(doc_id)
                staged.add_document(doc_id, title, text)
        queries = store.queries(dataset)
        for query_id, text in zip(queries["query_id"], queries["text"]):
            staged.add_query(query_id, text)
        _read_qrels(path, split, doc_ids, set(queries["query_id"]), staged, trec=True)
        qrels = store.qrels(dataset)
        for row in qrels[(qrels["origin"] == "imported") & (qrels["split"] != split)].itertuples(index=False):
            staged.add_qrel(row.split, row.query_id, row.doc_id, int(row.score))
        sha = content_sha256(staged.sorted_rows(table) for table in ("documents", "queries", "qrels"))
        status = store.save_staged(dataset, found["source"], found["format"], sha, staged, replace=True)
        counts = staged.counts
        if status != "unchanged":
            audit.record(store, "qrels import", dataset, split=split, status=status, source=display(path))
        return ImportResult(dataset, status, counts["documents"], counts["queries"], counts["qrels"], staged.splits)
