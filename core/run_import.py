"""Another miner's output as a read-only mining run of a dataset already in the workspace.

sentence-transformers' ``mine_hard_negatives`` (triplet, n-tuple, labeled-pair, labeled-list; with or without
``output_scores``), FlagEmbedding's ``hn_mine`` JSONL, Tevatron JSONL and TREC run files each name their queries
and documents their own way: by text (matched here to the dataset's document and query ids) or by id. A file is
read and validated completely, every text matched, before anything is written; a text that matches no document
is an error naming its line and field (with the count and lines of the others), never a dropped negative. The run
is then saved like a mined run, in one transaction: its candidates are the listed negatives in the file's order
(rank 1 = first listed), each kept, so it can be reviewed, re-ruled and diffed.

Scores: the file's where it gives them. The store holds a score and s_P for every candidate, so a file without
scores gets −rank as score (score order = file order), and a query whose positives the file does not score gets
its best listed score as s_P (margins ≤ 0). Those placeholders only order and draw: the run's params record what
the file gave (``params.import``), and ``require_scores`` refuses a rule that would compare them, naming the run.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DatasetError, UserError
from core.validation import display, user_path

if TYPE_CHECKING:
    from core.datasets import _Table
    from core.jobs import Job
    from core.rules import RuleSpec
    from core.store import Store

UNMATCHED_SHOWN = 5  # unmatched texts named in the error besides the first


@dataclass
class Entry:
    """One document a file lists for a query: by text and/or id, in a role, with the file's score if any."""

    line: int
    field: str
    role: str  # "positive", "negative", or "labelled" (a positive when the dataset's split labels it so)
    text: str | None = None
    doc_id: str | None = None
    score: float | None = None
    order: tuple = ()  # sort key within the query (TREC's rank column); file order when empty


@dataclass
class Listing:
    """A query as a file names it (text and/or id) with the documents listed for it on one line or row."""

    line: int
    field: str
    query_text: str | None
    query_id: str | None
    entries: list[Entry] = field(default_factory=list)
    tag: str | None = None  # TREC's run tag


@dataclass(frozen=True)
class RunFormat:
    """One importable run format: the ``--format`` name, what it reads, and a reader of its listings."""

    name: str
    description: str
    read: Callable[[Path], Iterator[Listing]]


# -- values -------------------------------------------------------------------------------------------------------
def _number(value: object, path: Path, line: int, name: str) -> float:
    """A finite score: ints and floats only (a bool or a string is a mistake, NaN an unscored pair in disguise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(path, line, name, f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise DatasetError(path, line, name, f"expected a finite number, got {value!r}")
    return number


def _list(row: dict, key: str, path: Path, line: int, required: bool = True) -> list | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list):
        got = "missing" if key not in row else f"expected a list, got {type(value).__name__}"
        raise DatasetError(path, line, key, got)
    return value


def _scores(row: dict, key: str, count: int, path: Path, line: int) -> list[float | None]:
    """A list of ``count`` scores from column ``key``, or ``count`` Nones when the row has none."""
    values = _list(row, key, path, line, required=False)
    if values is None:
        return [None] * count
    if len(values) != count:
        raise DatasetError(path, line, key, f"{len(values)} scores for {count} documents")
    return [_number(v, path, line, f"{key}[{i}]") for i, v in enumerate(values)]


def _text(row: dict, key: str, path: Path, line: int, name: str | None = None) -> str:
    from core.datasets import _text_field

    value = _text_field(row, key, path, line)
    if not value.strip():
        raise DatasetError(path, line, name or key, "empty text")
    return value


# -- sentence-transformers ----------------------------------------------------------------------------------------
_ST_NEGATIVE = re.compile(r"negative(?:_([1-9][0-9]*))?")
_ST_DOCUMENTS = ("document", "documents", "docs")  # besides the positive column names: labeled rows' documents
_ST_LABELS = ("label", "labels")
_ST_SCORES = ("score", "scores")


def _st_columns(path: Path, columns: list[tuple[str, int | None]]) -> tuple[str, str, list[str], str | None,
                                                                              str | None]:
    """(anchor, positive/document, negative columns in order, label column, score column) of an ST output."""
    from core.datasets import POSITIVE_COLUMNS, QUERY_COLUMNS

    first_line = dict(columns)
    names = [name for name, _ in columns]
    roles: dict[str, list[str]] = {"anchor": [], "positive": [], "label": [], "score": []}
    negatives: list[tuple[int, str]] = []
    for name in names:
        lower = name.lower()
        match = _ST_NEGATIVE.fullmatch(lower)
        role = ("anchor" if lower in QUERY_COLUMNS else "positive" if lower in POSITIVE_COLUMNS + _ST_DOCUMENTS else
                "label" if lower in _ST_LABELS else "score" if lower in _ST_SCORES else None)
        if match:
            negatives.append((int(match.group(1) or 0), name))
        elif role is None:
            raise DatasetError(path, first_line[name], name,
                               "unknown column (mine_hard_negatives writes anchor, positive, negative or negative_N, "
                               "label(s) or score(s))")
        elif roles[role]:
            raise DatasetError(path, first_line[name], name, f"a second {role} column besides {roles[role][0]!r}")
        else:
            roles[role].append(name)
    for role in ("anchor", "positive"):
        if not roles[role]:
            raise DatasetError(path, None, role, f"missing column (columns are {names})")
    if not negatives and not roles["label"] and not roles["score"]:
        raise DatasetError(path, None, "negative", "no negative, label(s) or score(s) column: no negatives listed")
    if negatives and roles["label"]:
        raise DatasetError(path, first_line[roles["label"][0]], roles["label"][0],
                           "a label column beside negative columns (a labeled output has no negative columns)")
    return (roles["anchor"][0], roles["positive"][0], [name for _, name in sorted(negatives)],
            (roles["label"] or [None])[0], (roles["score"] or [None])[0])


def _read_st(path: Path) -> Iterator[Listing]:
    """Rows of ``mine_hard_negatives`` output (JSONL, CSV, Parquet, or a ``datasets`` folder): triplet and n-tuple
    rows list a positive then negatives, with ``scores`` = [positive, negative…]; labeled-pair and labeled-list
    rows list documents with 1/0 ``label(s)``, or with ``score(s)`` only (then the dataset's qrels say which
    document is the positive)."""
    from core.datasets import pair_tables

    for _, file, opened in pair_tables(path):
        with opened as table:
            yield from _st_listings(file, table)


def _st_listings(path: Path, table: _Table) -> Iterator[Listing]:
    """The listings of one ST output file (or ``datasets`` shard), after its columns are checked."""
    anchor, positive, negatives, label, score = _st_columns(path, table.columns)
    for number, row in table.rows:
        listing = Listing(number, anchor, _text(row, anchor, path, number), None)
        if negatives:
            present = [key for key in negatives if row.get(key) is not None]
            docs = [(positive, "positive")] + [(key, "negative") for key in present]
            scores = _scores(row, score, len(negatives) + 1, path, number) if score else [None] * (
                len(negatives) + 1)
            by_column = dict(zip([positive, *negatives], scores))
            for key, role in docs:
                listing.entries.append(Entry(number, key, role, _text(row, key, path, number),
                                             score=by_column[key]))
        elif isinstance(row.get(positive), list):  # labeled-list
            texts = row[positive]
            values = _list(row, label or score, path, number)
            if len(values) != len(texts):
                raise DatasetError(path, number, label or score,
                                   f"{len(values)} values for {len(texts)} documents in {positive!r}")
            for i, text in enumerate(texts):
                name = f"{positive}[{i}]"
                value = _number(values[i], path, number, f"{label or score}[{i}]")
                role = ("positive" if value > 0 else "negative") if label else "labelled"
                listing.entries.append(Entry(number, name, role, _text({name: text}, name, path, number),
                                             score=None if label else value))
        else:  # labeled-pair
            value = _number(row.get(label or score), path, number, label or score)
            role = ("positive" if value > 0 else "negative") if label else "labelled"
            listing.entries.append(Entry(number, positive, role, _text(row, positive, path, number),
                                         score=None if label else value))
        yield listing


# -- FlagEmbedding and Tevatron JSONL -----------------------------------------------------------------------------
def _read_flag(path: Path) -> Iterator[Listing]:
    """FlagEmbedding ``hn_mine`` lines ``{"query", "pos": [...], "neg": [...]}``, optionally ``pos_scores`` and
    ``neg_scores`` (its reranker-score step); other keys (``prompt``, ``type``, ids) are the miner's and ignored."""
    from core.datasets import _jsonl_objects

    for number, obj in _jsonl_objects(path):
        listing = Listing(number, "query", _text(obj, "query", path, number), None)
        for key, role in (("pos", "positive"), ("neg", "negative")):
            texts = _list(obj, key, path, number)
            for i, (text, score) in enumerate(zip(texts, _scores(obj, f"{key}_scores", len(texts), path, number))):
                name = f"{key}[{i}]"
                listing.entries.append(Entry(number, name, role, _text({name: text}, name, path, number),
                                             score=score))
        yield listing


def _read_tevatron(path: Path) -> Iterator[Listing]:
    """Tevatron lines ``{"query_id"?, "query", "positive_passages": [{"docid"?, "title"?, "text", "score"?}],
    "negative_passages": [...]}``: a passage's ``docid`` is used when the dataset has it, else its text."""
    from core.datasets import _jsonl_objects, _text_field
    from core.encoders import document_text

    for number, obj in _jsonl_objects(path):
        query_id = _text_field(obj, "query_id", path, number, required=False).strip() or None
        listing = Listing(number, "query", _text(obj, "query", path, number), query_id)
        for key, role in (("positive_passages", "positive"), ("negative_passages", "negative")):
            for i, passage in enumerate(_list(obj, key, path, number)):
                name = f"{key}[{i}]"
                if not isinstance(passage, dict):
                    raise DatasetError(path, number, name, f"expected an object, got {type(passage).__name__}")
                text = document_text(_text_field(passage, "title", path, number, required=False),
                                     _text_field(passage, "text", path, number))
                if not text.strip():
                    raise DatasetError(path, number, f"{name}.text", "empty text")
                score = passage.get("score")
                listing.entries.append(Entry(
                    number, name, role, text,
                    _text_field(passage, "docid", path, number, required=False).strip() or None,
                    None if score is None else _number(score, path, number, f"{name}.score")))
        yield listing


# -- TREC run files -----------------------------------------------------------------------------------------------
TREC_FIELDS = ("qid", "Q0", "docid", "rank", "score", "tag")


def _read_trec(path: Path) -> Iterator[Listing]:
    """``qid Q0 docid rank score tag`` lines, whitespace-separated; a query's documents are ordered by rank (ties
    by line), and any document the dataset's split labels positive for the query is left out, as mining does."""
    from core.datasets import _text_lines, require_regular_file

    require_regular_file(path)
    listings: dict[str, Listing] = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != len(TREC_FIELDS):
            raise DatasetError(path, number, None, f"expected {len(TREC_FIELDS)} whitespace-separated fields "
                                                   f"({' '.join(TREC_FIELDS)}), got {len(parts)}")
        qid, _, docid, rank_text, score_text, tag = parts
        try:
            rank = int(rank_text)
        except ValueError:
            raise DatasetError(path, number, "rank", f"expected an integer, got {rank_text!r}") from None
        try:
            score = _number(float(score_text), path, number, "score")
        except ValueError:
            raise DatasetError(path, number, "score", f"expected a number, got {score_text!r}") from None
        if (qid, docid) in seen:
            raise DatasetError(path, number, "docid", f"document {docid!r} listed twice for query {qid!r} (first on "
                                                      f"line {seen[qid, docid]})")
        seen[qid, docid] = number
        listing = listings.setdefault(qid, Listing(number, "qid", None, qid, tag=tag))
        listing.entries.append(Entry(number, "docid", "labelled", doc_id=docid, score=score, order=(rank, number)))
    if not listings:
        raise DatasetError(path, None, None, "file is empty")
    for listing in listings.values():
        listing.entries.sort(key=lambda entry: entry.order)
        yield listing


RUN_FORMATS: dict[str, RunFormat] = {f.name: f for f in (
    RunFormat("st", "sentence-transformers mine_hard_negatives output (triplet, n-tuple, labeled-pair, labeled-list; "
                    "JSONL, CSV, Parquet or a datasets folder)", _read_st),
    RunFormat("flag", 'FlagEmbedding hn_mine JSONL {"query", "pos": [], "neg": []}', _read_flag),
    RunFormat("tevatron", "Tevatron JSONL {query_id, query, positive_passages, negative_passages}", _read_tevatron),
    RunFormat("trec", "TREC run file: qid Q0 docid rank score tag", _read_trec),
)}


# -- matching texts to ids ----------------------------------------------------------------------------------------
def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).digest()


def _normalised(text: str) -> str:
    return " ".join(text.split())


class _TextIndex:
    """Ids by text: exact first, then with whitespace runs collapsed; the first id wins for texts several share.
    Keys are 12-byte hashes, so a corpus's texts are never held."""

    def __init__(self) -> None:
        self.exact: dict[bytes, str] = {}
        self.loose: dict[bytes, str] = {}

    def add(self, text: str, item_id: str) -> None:
        self.exact.setdefault(_key(text), item_id)
        self.loose.setdefault(_key(_normalised(text)), item_id)

    def find(self, text: str) -> str | None:
        return self.exact.get(_key(text)) or self.loose.get(_key(_normalised(text)))


@dataclass
class _Corpus:
    """A dataset's document ids in store order, its texts by hash, and its BM25 weights (for the bm25 column)."""

    ids: dict[str, int]
    texts: _TextIndex
    bm25: object


def _corpus(store: Store, dataset: str) -> _Corpus:
    """One pass over the documents: ids, the text index (``document_text`` and the bare text) and BM25."""
    from core.lexical import Bm25Builder
    from core.lookups import document_texts
    from core.mining import DOCUMENT_CHUNK

    ids: dict[str, int] = {}
    index = _TextIndex()
    lexical = Bm25Builder()
    for frame in store.iter_documents(dataset, DOCUMENT_CHUNK):
        texts = document_texts(frame)
        lexical.add(texts)
        for doc_id, full, bare in zip(frame["doc_id"], texts, frame["text"]):
            ids[doc_id] = len(ids)
            index.add(full, doc_id)
            index.add(bare, doc_id)
    return _Corpus(ids, index, lexical.build())


@dataclass
class _Unmatched:
    """Texts or ids that match nothing, counted, the first few kept with their place for the error."""

    count: int = 0
    first: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, line: int, name: str, what: str) -> None:
        self.count += 1
        if len(self.first) <= UNMATCHED_SHOWN:
            self.first.append((line, name, what))

    def raise_if_any(self, path: Path, dataset: str) -> None:
        if not self.count:
            return
        (line, name, what), rest = self.first[0], self.first[1:]
        others = "; ".join(f"line {n} field '{f}'" for n, f, _ in rest)
        more = f" ({self.count} unmatched in all; also {others}{', …' if self.count > len(self.first) else ''})" \
            if self.count > 1 else ""
        raise DatasetError(path, line, name, f"{what} in dataset {dataset!r}{more}; nothing was imported")


def _query_ids(store: Store, dataset: str, first: Container[str]) -> tuple[set[str], _TextIndex]:
    """The dataset's query ids, and its queries by text: of queries that share a text (SciFact has such), the
    ones in ``first`` (those with positives in the run's split) win, since only they can be a run's queries."""
    queries = store.queries(dataset)
    index = _TextIndex()
    for preferred in (True, False):
        for query_id, text in zip(queries["query_id"], queries["text"]):
            if (query_id in first) == preferred:
                index.add(text, query_id)
    return set(queries["query_id"]), index


# -- the run ------------------------------------------------------------------------------------------------------
@dataclass
class ImportedRun:
    run_id: str
    format: str
    queries: int
    candidates: int
    scores: bool
    positive_scores: bool
    listed_positives: int  # negatives the file lists that the split labels positive: not candidates, as in mining
    queries_without_positives: int
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        scores = ("with scores" if self.scores else "without scores (rules reading scores are refused)") + (
            "" if self.positive_scores or not self.scores else ", without the positives' scores (s_P)")
        notes = ""
        if self.listed_positives:
            notes += f"; {self.listed_positives} listed negative(s) are labelled positives of their query, left out"
        if self.queries_without_positives:
            notes += f"; {self.queries_without_positives} query(ies) have no positive in the split"
        return (f"imported run {self.run_id} ({self.format}): {self.queries} queries, {self.candidates} kept "
                f"negatives, {scores}{notes}")


def file_sha256(path: Path) -> str:
    """The input's content hash for the run's provenance: a file's bytes, or a folder's files (relative name and
    bytes, in name order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode("utf-8", "surrogateescape") + b"\x00")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def import_run_job(store: Store, path: str | Path, dataset: str, fmt: str, split: str = "train",
                   upload: Path | None = None) -> Job:
    """``import_run`` as a ``core.datasets.import_job`` (``Job.result`` is its ``ImportedRun``): matching a run of
    millions of lines to the corpus takes minutes, which a click on the page would otherwise stop half-way."""
    from core import roles
    from core.datasets import import_job

    return import_job(f"import-run:{dataset}:{split}", roles.RUNS, upload,
                      lambda: import_run(store, path, dataset, fmt, split))


def import_run(store: Store, path: str | Path, dataset: str, fmt: str, split: str = "train") -> ImportedRun:
    """Read ``path`` as ``fmt``, match it to ``dataset`` and save it as a run of ``split``; nothing is written
    unless every listed query and document was found. Admins only, once accounts exist (core.roles)."""
    import numpy as np
    import pandas as pd

    from core import audit, roles, rules, run_stats
    from core.lookups import positives_by_query, require_dataset
    from core.mining import new_run_id
    from core.rules import RuleSpec

    roles.require(roles.RUNS)
    started = time.perf_counter()
    if fmt not in RUN_FORMATS:
        raise UserError(f"unknown run format {fmt!r} (use {', '.join(RUN_FORMATS)})")
    require_dataset(store, dataset)
    if split not in store.splits(dataset):
        raise UserError(f"dataset {dataset!r} has no split {split!r} (splits: {store.splits(dataset)})")
    path = user_path(path, "run file", must_exist=True)
    listings = list(RUN_FORMATS[fmt].read(path))  # every line validated before any matching
    corpus = _corpus(store, dataset)
    positives = {q: set(docs) for q, docs in positives_by_query(store, dataset, split).items()}
    known_queries, query_texts = _query_ids(store, dataset, positives)
    unmatched = _Unmatched()
    order: list[str] = []
    negatives: dict[str, dict[str, float | None]] = {}
    pos_scores: dict[str, list[float]] = {}
    listed_positives = 0
    scored = unscored = None  # the first (line, field) of a negative with and without a score
    for listing in listings:
        query_id = listing.query_id if listing.query_id in known_queries else None
        if query_id is None and listing.query_text is not None:
            query_id = query_texts.find(listing.query_text)
        if query_id is None:
            what = (f"no query with id {listing.query_id!r}" if listing.query_text is None
                    else "no query has this text")
            unmatched.add(listing.line, listing.field, what)
            continue
        if query_id not in negatives:
            order.append(query_id)
            negatives[query_id] = {}
        for entry in listing.entries:
            doc_id = entry.doc_id if entry.doc_id in corpus.ids else None
            if doc_id is None and entry.text is not None:
                doc_id = corpus.texts.find(entry.text)
            if doc_id is None:
                unmatched.add(entry.line, entry.field, f"no document with id {entry.doc_id!r}" if entry.text is None
                              else "no document has this text (exact, title + text, or whitespace normalised)")
                continue
            labelled = doc_id in positives.get(query_id, ())
            role = ("positive" if labelled else "negative") if entry.role == "labelled" else entry.role
            if role == "positive":
                if entry.score is not None:
                    pos_scores.setdefault(query_id, []).append(entry.score)
                continue
            if labelled:
                listed_positives += 1
                continue
            if entry.score is None:
                unscored = unscored or (entry.line, entry.field)
            else:
                scored = scored or (entry.line, entry.field)
            negatives[query_id].setdefault(doc_id, entry.score)
    unmatched.raise_if_any(path, dataset)
    if scored and unscored:
        raise DatasetError(path, unscored[0], unscored[1], f"no score, while line {scored[0]} field '{scored[1]}' "
                                                           "has one (scores must be given for every negative or none)")
    rows = [(q, d, rank, -float(rank) if s is None else s) for q in order
            for rank, (d, s) in enumerate(negatives[q].items(), start=1)]
    if not rows:
        raise DatasetError(path, None, None, "lists no negatives (after leaving out the split's labelled positives)")
    query_row = {q: i for i, q in enumerate(order)}
    pos_score = {q: min(v) for q, v in pos_scores.items() if scored}  # rank placeholders: no s_P either
    best = {}
    for q, _, _, s in rows:
        best[q] = max(best.get(q, s), s)
    query_frame = store.queries(dataset, order).set_index("query_id")
    q_rows = np.fromiter((query_row[q] for q, *_ in rows), dtype=np.int64, count=len(rows))
    d_rows = np.fromiter((corpus.ids[d] for _, d, *_ in rows), dtype=np.int64, count=len(rows))
    bm25 = corpus.bm25.pair_scores(corpus.bm25.query_matrix(query_frame.loc[order, "text"].tolist()), q_rows, d_rows)
    candidates = pd.DataFrame({
        "query_id": [q for q, *_ in rows], "doc_id": [d for _, d, *_ in rows],
        "rank": np.fromiter((r for _, _, r, _ in rows), dtype=np.int64, count=len(rows)),
        "score": np.array([s for *_, s in rows], dtype=float),
        "pos_score": np.array([pos_score.get(q, best[q]) for q, *_ in rows], dtype=float),
        "bm25": bm25.astype(float)})
    spec = RuleSpec("top", num_negatives=int(max(len(v) for v in negatives.values())))
    candidates = rules.apply(spec, candidates)  # top-k with k = the longest list: every listed negative is kept
    has_scores = bool(scored)
    has_pos = has_scores and all(q in pos_score for q in order)
    tags = sorted({listing.tag for listing in listings if listing.tag is not None})
    source = {"file": display(path), "format": fmt, "sha256": file_sha256(path), "scores": has_scores,
              "positive_scores": has_pos, **({"tag": tags[0]} if tags else {})}
    run_id = new_run_id(dataset)
    summary = rules.summarise(candidates, spec, order)
    without = sum(1 for q in order if not positives.get(q))
    stats = {**summary, "encoded": 0, "cached": 0, "seconds": round(time.perf_counter() - started, 3),
             "listed_positives": listed_positives, "queries_without_positives": without}
    params = {"depth": spec.num_negatives, "bm25_depth": 0, "model_path": None, "query_prompt": None,
              "document_prompt": None, "rules": spec.to_dict(), "import": source}
    store.save_run({"run_id": run_id, "dataset": dataset, "split": split, "model_fingerprint": f"import:{fmt}",
                    "params": params, "stats": stats}, candidates)
    run_stats.run_shape(store, run_id)
    audit.record(store, "import run", run_id, dataset=dataset, format=fmt, source=display(path),
                 candidates=len(candidates))
    return ImportedRun(run_id, fmt, len(order), len(candidates), has_scores, has_pos, listed_positives, without,
                       round(time.perf_counter() - started, 3))


def require_scores(run: dict, spec: RuleSpec) -> None:
    """Refuse a rule that reads scores or s_P (``RuleSpec.reads_scores``) on a run imported without them: it would
    compare the placeholders and keep or drop negatives for no reason."""
    source = run["params"].get("import")
    if not source:
        return
    absent = {name for name, given in (("score", source["scores"]), ("pos_score", source["positive_scores"]))
              if not given}
    if not absent & spec.reads_scores():
        return
    missing = "scores" if not source["scores"] else "the positives' scores (s_P)"
    raise UserError(f"run {run['run_id']} was imported from {source['file']} ({source['format']}) without "
                    f"{missing}, which rule {spec.describe()} reads; use --rule top or range, or import the "
                    "miner's output with scores")
