"""Datasets as imported: their documents, queries and qrels (imported and promoted positives)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd

from core.errors import UserError
from core.store.connection import Connection, now, where


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

    def save_dataset(self, name: str, source: str, fmt: str, sha: str, documents: Sequence[tuple],
                     queries: Sequence[tuple], qrels: Sequence[tuple], replace: bool = False) -> str:
        """Import a dataset, or replace its imported content, in one transaction; returns 'imported', 'unchanged'
        or 'replaced'.

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
            conn.executemany("INSERT INTO documents VALUES (?, ?, ?, ?)", ((name, *d) for d in documents))
            conn.executemany("INSERT INTO queries VALUES (?, ?, ?)", ((name, *q) for q in queries))
            if row is not None:  # checked before the old qrels go: the positives runs were mined with count too
                self._refuse_dangling_references(conn, name)
            conn.execute("DELETE FROM qrels WHERE dataset = ? AND origin = 'imported'", (name,))
            conn.executemany("""INSERT INTO qrels VALUES (?, ?, ?, ?, ?, 'imported', NULL)
                                ON CONFLICT DO UPDATE SET score = excluded.score, origin = 'imported'""",
                             ((name, *r) for r in qrels))
            return "imported" if row is None else "replaced"
        return self.write(run)

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

    def positives(self, dataset: str, split: str, query_id: str) -> list[str]:
        """One query's positive documents (grade > 0, imported or promoted), via the (dataset, query) index."""
        return [r["doc_id"] for r in self.rows(
            "SELECT doc_id FROM qrels WHERE dataset = ? AND query_id = ? AND split = ? AND score > 0 ORDER BY doc_id",
            (dataset, query_id, split))]

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
