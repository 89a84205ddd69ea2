"""Datasets as imported: their documents, queries and qrels (imported and promoted positives)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import UserError, environment_error
from core.files import locked_temp
from core.store.connection import Connection, now, where

STAGED_COLUMNS = {"documents": ("doc_id", "title", "text"), "queries": ("query_id", "text"),
                  "qrels": ("split", "query_id", "doc_id", "score")}
STAGED_KEYS = {"documents": "doc_id", "queries": "query_id", "qrels": "split, query_id, doc_id"}  # unique once valid


class StagedDataset:
    """A dataset being imported, held in a scratch SQLite file next to the store instead of in memory: the
    importer adds each row once it is valid, the store copies them in once the whole input is, and the file is
    removed either way. The machine failing under it (disk full) is reported against the store."""

    BATCH_ROWS, BATCH_CHARS = 2_000, 2_000_000  # rows held before they are written: few, even if texts are long

    def __init__(self, path: Path, conn: sqlite3.Connection,
                 environment: Callable[[], AbstractContextManager[None]]):
        self.path, self.conn, self._environment = path, conn, environment
        self.counts = dict.fromkeys(STAGED_COLUMNS, 0)
        self.splits: dict[str, int] = {}
        self._pending: dict[str, list[tuple]] = {table: [] for table in STAGED_COLUMNS}
        self._pending_chars = 0
        with self._environment():
            conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to recover after a crash
            conn.execute("PRAGMA synchronous = OFF")
            for table, columns in STAGED_COLUMNS.items():
                conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
            conn.execute("BEGIN")  # one transaction while rows come in: much faster than one per batch

    def add_document(self, doc_id: str, title: str, text: str) -> None:
        self._add("documents", (doc_id, title, text), len(title) + len(text))

    def add_query(self, query_id: str, text: str) -> None:
        self._add("queries", (query_id, text), len(text))

    def add_qrel(self, split: str, query_id: str, doc_id: str, score: int) -> None:
        self._add("qrels", (split, query_id, doc_id, score), 0)
        self.splits[split] = self.splits.get(split, 0) + 1

    def _add(self, table: str, row: tuple, chars: int) -> None:
        pending = self._pending[table]
        pending.append(row)
        self.counts[table] += 1
        self._pending_chars += chars
        if len(pending) >= self.BATCH_ROWS or self._pending_chars >= self.BATCH_CHARS:
            self._flush()

    def _flush(self) -> None:
        with self._environment():
            for table, rows in self._pending.items():
                if rows:
                    marks = ", ".join("?" * len(STAGED_COLUMNS[table]))
                    self.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                    rows.clear()
        self._pending_chars = 0

    def finish(self) -> None:
        """Write the rows still pending and end the staging transaction, so the rows can be read and attached."""
        self._flush()
        if self.conn.in_transaction:
            with self._environment():
                self.conn.execute("COMMIT")

    def sorted_rows(self, table: str) -> Iterator[tuple]:
        """A table's rows sorted as Python sorts the tuples (SQLite compares text as UTF-8 bytes, which orders
        like code points). An index on the ids does the sorting; the other columns only order equal ids."""
        self.finish()
        columns = ", ".join(STAGED_COLUMNS[table])
        with self._environment():
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_ids ON {table} ({STAGED_KEYS[table]})")
            yield from self.conn.execute(f"SELECT {columns} FROM {table} ORDER BY {columns}")


class DatasetTables(Connection):
    """Queries on datasets, documents, queries and qrels."""

    def dataset(self, name: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM datasets WHERE name = ?", (name,))
        return rows[0] if rows else None

    def datasets(self) -> list[dict[str, Any]]:
        return self.rows("""SELECT d.*, (SELECT COUNT(*) FROM documents WHERE dataset = d.name) AS documents,
                                   (SELECT COUNT(*) FROM queries WHERE dataset = d.name) AS queries,
                                   (SELECT COUNT(*) FROM qrels WHERE dataset = d.name) AS qrels
                            FROM datasets d ORDER BY imported_at""")

    @contextmanager
    def staged_dataset(self) -> Iterator[StagedDataset]:
        """A scratch file next to the store to stage an import in (see ``StagedDataset``); removed on leaving."""
        with ExitStack() as stack:
            try:
                scratch = stack.enter_context(locked_temp(self.path))
            except OSError as exc:  # a read-only or full workspace folder, named as the store
                translated = environment_error(exc, self.path)
                if translated is None:
                    raise
                raise translated from exc
            with self._environment():
                conn = stack.enter_context(closing(sqlite3.connect(scratch, isolation_level=None)))
                staged = StagedDataset(scratch, conn, self._environment)
            yield staged

    def save_dataset(self, name: str, source: str, fmt: str, sha: str, documents: Iterable[tuple],
                     queries: Iterable[tuple], qrels: Iterable[tuple], replace: bool = False) -> str:
        """``save_staged`` for rows already in memory (tools that build a dataset in code)."""
        with self.staged_dataset() as staged:
            for add, rows in ((staged.add_document, documents), (staged.add_query, queries), (staged.add_qrel, qrels)):
                for row in rows:
                    add(*row)
            return self.save_staged(name, source, fmt, sha, staged, replace)

    def save_staged(self, name: str, source: str, fmt: str, sha: str, staged: StagedDataset,
                    replace: bool = False) -> str:
        """Import a staged dataset, or replace its imported content, in one transaction; returns 'imported',
        'unchanged' or 'replaced'. The rows are copied by SQLite from the attached staging file, in the order they
        were staged, so the write lock is held only for the copy.

        Whether the name exists, and with which content, is read inside the write transaction, so two processes
        importing one name cannot both see it missing. A replace keeps promoted qrels and labels, and is rolled
        back when the new content lacks documents or queries that runs, positives or label events still use.
        """
        def run(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT content_sha256 FROM datasets WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] == sha:
                return "unchanged"
            if row is not None and not replace:
                raise UserError(f"dataset {name!r} already exists with different content (use --replace to "
                                "overwrite it; labels and promoted positives are kept)")
            conn.execute("""INSERT INTO datasets VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET
                            source = excluded.source, format = excluded.format,
                            content_sha256 = excluded.content_sha256, imported_at = excluded.imported_at""",
                         (name, source, fmt, sha, now()))
            conn.execute("DELETE FROM documents WHERE dataset = ?", (name,))
            conn.execute("DELETE FROM queries WHERE dataset = ?", (name,))
            conn.execute("INSERT INTO documents SELECT ?, doc_id, title, text FROM staged.documents ORDER BY rowid",
                         (name,))
            conn.execute("INSERT INTO queries SELECT ?, query_id, text FROM staged.queries ORDER BY rowid", (name,))
            if row is not None:  # checked before the old qrels go: the positives runs were mined with count too
                self._refuse_dangling_references(conn, name)
            conn.execute("DELETE FROM qrels WHERE dataset = ? AND origin = 'imported'", (name,))
            # WHERE true: without it SQLite would read ON CONFLICT as a join constraint of the SELECT
            conn.execute("""INSERT INTO qrels SELECT ?, split, query_id, doc_id, score, 'imported', NULL
                            FROM staged.qrels WHERE true ORDER BY rowid
                            ON CONFLICT DO UPDATE SET score = excluded.score, origin = 'imported'""", (name,))
            return "imported" if row is None else "replaced"

        staged.finish()
        with self._lock, self._environment():  # ATTACH is refused inside a transaction: no other thread's may run
            self.conn.execute("ATTACH DATABASE ? AS staged", (str(staged.path),))
            try:
                return self.write(run)
            finally:
                self.conn.execute("DETACH DATABASE staged")

    @staticmethod
    def _refuse_dangling_references(conn: sqlite3.Connection, name: str) -> None:
        """Raise (rolling the replace back) if a dataset's new documents and queries lack ids still used by its
        runs' candidates, the qrels of a split a run was mined on, promoted positives or label events: exports,
        training and review would fail on them."""
        no_doc = "NOT EXISTS (SELECT 1 FROM documents d WHERE d.dataset = :name AND d.doc_id = x.doc_id)"
        no_query = "NOT EXISTS (SELECT 1 FROM queries q WHERE q.dataset = :name AND q.query_id = x.query_id)"
        missing = f"({no_doc} OR {no_query})"
        used = """SELECT c.query_id, c.doc_id FROM candidates c JOIN runs r ON r.run_id = c.run_id
                  WHERE r.dataset = :name
                  UNION SELECT query_id, doc_id FROM qrels WHERE dataset = :name AND (origin = 'promoted'
                        OR split IN (SELECT split FROM runs WHERE dataset = :name))
                  UNION SELECT query_id, doc_id FROM label_events WHERE dataset = :name"""
        params = {"name": name}
        docs, queries = conn.execute(f"""SELECT COUNT(DISTINCT CASE WHEN {no_doc} THEN x.doc_id END),
                                                COUNT(DISTINCT CASE WHEN {no_query} THEN x.query_id END)
                                         FROM ({used}) x""", params).fetchone()
        if not docs and not queries:
            return
        runs = [r[0] for r in conn.execute(f"""SELECT run_id FROM runs r WHERE dataset = :name AND (
            EXISTS (SELECT 1 FROM candidates x WHERE x.run_id = r.run_id AND {missing})
            OR EXISTS (SELECT 1 FROM qrels x WHERE x.dataset = :name AND x.split = r.split AND {missing}))
            ORDER BY created_at, run_id""", params)]
        events = conn.execute(f"SELECT COUNT(*) FROM label_events x WHERE dataset = :name AND {missing}",
                              params).fetchone()[0]
        promoted = conn.execute(f"""SELECT COUNT(*) FROM qrels x WHERE dataset = :name AND origin = 'promoted'
                                    AND {missing}""", params).fetchone()[0]
        users = []
        if runs:
            more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
            users.append(f"{len(runs)} run(s) ({', '.join(runs[:3])}{more})")
        if events:
            users.append(f"{events} label event(s)")
        if promoted:
            users.append(f"{promoted} promoted positive(s)")
        lacks = " and ".join(f"{n} {what}" for n, what in ((docs, "document(s)"), (queries, "query(ies)")) if n)
        raise UserError(f"dataset {name!r}: the new content lacks {lacks} still used by {', '.join(users)}; "
                        "nothing was replaced (keep those ids, or import under another name)")

    def documents(self, dataset: str, ids: Sequence[str] | None = None) -> pd.DataFrame:
        if ids is None:
            return self.frame("SELECT doc_id, title, text FROM documents WHERE dataset = ? ORDER BY rowid",
                              (dataset,))
        return self._by_ids("SELECT doc_id, title, text FROM documents WHERE dataset = ? AND doc_id IN ({})",
                            dataset, ids)

    def iter_documents(self, dataset: str, chunk: int = 50_000) -> Iterator[pd.DataFrame]:
        """A dataset's documents in import order, ``chunk`` at a time (doc_id, title, text): a corpus of millions is
        read without holding it all. ``+dataset`` walks the rowid range: through the (dataset, doc_id) index
        SQLite would sort every remaining document in memory for each chunk."""
        last = -1
        while True:
            frame = self.frame("SELECT rowid AS row, doc_id, title, text FROM documents WHERE +dataset = ? "
                               "AND rowid > ? ORDER BY rowid LIMIT ?", (dataset, last, chunk))
            if frame.empty:
                return
            last = int(frame["row"].iloc[-1])
            yield frame.drop(columns="row")

    def document_count(self, dataset: str) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM documents WHERE dataset = ?", (dataset,)))

    def queries(self, dataset: str, ids: Sequence[str] | None = None) -> pd.DataFrame:
        if ids is None:
            return self.frame("SELECT query_id, text FROM queries WHERE dataset = ? ORDER BY rowid", (dataset,))
        return self._by_ids("SELECT query_id, text FROM queries WHERE dataset = ? AND query_id IN ({})",
                            dataset, ids)

    def _by_ids(self, sql: str, dataset: str, ids: Sequence[str]) -> pd.DataFrame:
        ids = list(dict.fromkeys(ids))
        parts = []
        for start in range(0, len(ids), 900):  # stay under SQLite's parameter limit
            chunk = ids[start:start + 900]
            parts.append(self.frame(sql.format(",".join("?" * len(chunk))), (dataset, *chunk)))
        return pd.concat(parts, ignore_index=True) if parts else self.frame(sql.format("NULL"), (dataset,))

    def splits(self, dataset: str) -> list[str]:
        return [r["split"] for r in self.rows("SELECT DISTINCT split FROM qrels WHERE dataset = ? ORDER BY split",
                                                (dataset,))]

    def qrels(self, dataset: str, split: str | None = None) -> pd.DataFrame:
        clause, params = where({"dataset": dataset, "split": split})
        return self.frame(f"SELECT split, query_id, doc_id, score, origin FROM qrels{clause} "
                          "ORDER BY split, query_id, doc_id", params)

    def positives(self, dataset: str, split: str | None, query_id: str) -> list[str]:
        """One query's positive documents (grade > 0, imported or promoted) in ``split`` (None: any split), via the
        (dataset, query) index."""
        clause, params = where({"dataset": dataset, "query_id": query_id, "split": split})
        return [r["doc_id"] for r in self.rows(
            f"SELECT DISTINCT doc_id FROM qrels{clause} AND score > 0 ORDER BY doc_id", params)]

    def set_promoted(self, dataset: str, split: str, query_id: str, doc_id: str, score: int | None) -> None:
        """Add (score given) or remove (None) a promoted positive; imported judgments are never touched."""
        def run(conn: sqlite3.Connection) -> None:
            if score is None:
                conn.execute("""DELETE FROM qrels WHERE dataset = ? AND split = ? AND query_id = ? AND doc_id = ?
                                AND origin = 'promoted'""", (dataset, split, query_id, doc_id))
            else:
                conn.execute("""INSERT INTO qrels VALUES (?, ?, ?, ?, ?, 'promoted', ?) ON CONFLICT DO UPDATE
                                SET score = excluded.score, origin = 'promoted', created_at = excluded.created_at
                                WHERE origin = 'promoted' OR qrels.score <= 0""",
                             (dataset, split, query_id, doc_id, score, now()))
        self.write(run)
