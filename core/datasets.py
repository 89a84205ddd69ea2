"""Importers for BEIR folders and sentence-transformers pair/triplet files, validated before any write.

Everything is parsed and checked in memory first; only a fully valid dataset reaches the store, in one
transaction, so a bad file can never leave a half-imported workspace behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DatasetError, UserError
from core.validation import check_name, display, user_path

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


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, None, None, f"cannot read file ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DatasetError(path, line, None, "not valid UTF-8") from None


def _text_field(obj: dict, key: str, path: Path, line: int, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise DatasetError(path, line, key, "missing")
        return ""
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DatasetError(path, line, key, f"expected a string, got {type(value).__name__}")
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


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    text = _read_text(path)
    seen_any = False
    for number, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
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
        if not needed.is_file():
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
    qrel_files = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if not qrel_files:
        raise DatasetError(qrels_dir, None, None, "no qrels/<split>.tsv file found")
    for qrel_path in qrel_files:
        content.qrels.extend(_load_qrels(qrel_path, qrel_path.stem, doc_lines, query_lines))
    return content


def _load_qrels(path: Path, split: str, docs: dict[str, int], queries: dict[str, int]) -> list[tuple]:
    rows: list[tuple[str, str, str, int]] = []
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines(_read_text(path)), start=1):
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
ANCHOR_NAMES = ("anchor", "query", "question")
POSITIVE_NAMES = ("positive", "pos", "answer")


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """Rows of a JSONL/CSV/TSV/Parquet file with a 1-based line number (data row number for Parquet)."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json"}:
        yield from _jsonl_objects(path)
        return
    if suffix in {".csv", ".tsv"}:
        text = _read_text(path)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        any_row = False
        try:
            for row in reader:
                if None in row:
                    raise DatasetError(path, reader.line_num, None, "more values than header columns")
                any_row = True
                yield reader.line_num, row
        except csv.Error as exc:
            raise DatasetError(path, reader.line_num, None, f"malformed CSV ({exc})") from None
        if not any_row:
            raise DatasetError(path, None, None, "file is empty")
        return
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise DatasetError(path, None, None, f"not a readable Parquet file ({exc})") from None
        if table.num_rows == 0:
            raise DatasetError(path, None, None, "file is empty")
        for number, row in enumerate(table.to_pylist(), start=1):
            yield number, row
        return
    raise DatasetError(path, None, None, f"unsupported file type {suffix!r} (use .jsonl, .csv, .tsv or .parquet)")


def _stable_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def load_pairs(path: Path) -> DatasetContent:
    """Pairs/triplets/n-tuples: anchor + positive (+ negative columns); ids are content hashes of the texts.

    Given negatives become documents (so the miner and reviewer see them); they are not judgments.
    """
    path = Path(path)
    content = DatasetContent("pairs")
    docs: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: set[tuple[str, str]] = set()
    anchor_key = positive_key = None
    negative_keys: list[str] = []
    has_negatives = False
    for number, row in _records(path):
        if anchor_key is None:
            keys = list(row)
            anchor_key = next((k for k in keys if k.lower() in ANCHOR_NAMES), None)
            positive_key = next((k for k in keys if k.lower() in POSITIVE_NAMES), None)
            if anchor_key is None:
                raise DatasetError(path, number, "anchor", f"missing (columns are {keys})")
            if positive_key is None:
                raise DatasetError(path, number, "positive", f"missing (columns are {keys})")
            negative_keys = [k for k in keys if k.lower().startswith("neg")]
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


def ingest(store, path: str | Path, name: str, fmt: str = "auto", replace: bool = False) -> ImportResult:
    """Validate the whole input, then write it in one transaction (or do nothing if the content is unchanged)."""
    if not name or not name.strip() or len(name) > 200:
        raise UserError("dataset name must be 1-200 characters")
    check_name(name, "dataset name")
    path = user_path(path, "dataset path", must_exist=True)
    content = load(path, fmt)
    sha = content.sha256()
    existing = store.dataset(name)
    splits: dict[str, int] = {}
    for split, *_ in content.qrels:
        splits[split] = splits.get(split, 0) + 1
    result = ImportResult(name, "imported", len(content.documents), len(content.queries), len(content.qrels), splits)
    if existing is not None:
        if existing["content_sha256"] == sha:
            result.status = "unchanged"
            return result
        if not replace:
            raise UserError(f"dataset {name!r} already exists with different content; "
                            "pass --replace to overwrite it (labels and promoted positives are kept)")
        result.status = "replaced"
    store.save_dataset(name, display(path), content.format, sha, content.documents,
                       content.queries, content.qrels)
    return result
