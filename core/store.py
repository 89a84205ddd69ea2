"""The SQLite store: schema, migrations and every SQL statement the product runs.

One file per workspace, WAL so readers never block the writer, a busy timeout plus retries so several app
sessions and CLI processes can write at once. Other modules call these functions and never write SQL.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlite_utils

from core.errors import UserError, environment_error

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
WRITE_RETRIES = 8


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _v1(db: sqlite_utils.Database) -> None:
    """The data model of ARCHITECTURE.md."""
    db.execute("""CREATE TABLE datasets (
        name TEXT PRIMARY KEY, source TEXT NOT NULL, format TEXT NOT NULL,
        content_sha256 TEXT NOT NULL, imported_at TEXT NOT NULL)""")
    db.execute("""CREATE TABLE documents (
        dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
        doc_id TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', text TEXT NOT NULL,
        PRIMARY KEY (dataset, doc_id))""")
    db.execute("""CREATE TABLE queries (
        dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
        query_id TEXT NOT NULL, text TEXT NOT NULL,
        PRIMARY KEY (dataset, query_id))""")
    db.execute("""CREATE TABLE qrels (
        dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
        split TEXT NOT NULL, query_id TEXT NOT NULL, doc_id TEXT NOT NULL, score INTEGER NOT NULL,
        origin TEXT NOT NULL DEFAULT 'imported' CHECK (origin IN ('imported', 'promoted')),
        created_at TEXT,
        PRIMARY KEY (dataset, split, query_id, doc_id))""")
    db.execute("""CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, dataset TEXT NOT NULL REFERENCES datasets(name),
        split TEXT NOT NULL, model_fingerprint TEXT NOT NULL, params_json TEXT NOT NULL,
        created_at TEXT NOT NULL, stats_json TEXT NOT NULL, parent_run TEXT)""")
    db.execute("""CREATE TABLE candidates (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        query_id TEXT NOT NULL, doc_id TEXT NOT NULL, rank INTEGER NOT NULL, score REAL NOT NULL,
        pos_score REAL NOT NULL, bm25 REAL, kept INTEGER NOT NULL, rule TEXT NOT NULL, risk REAL,
        signals TEXT,
        PRIMARY KEY (run_id, query_id, doc_id))""")
    db.execute("""CREATE TABLE annotators (name TEXT PRIMARY KEY, created_at TEXT NOT NULL)""")
    db.execute("""CREATE TABLE label_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, query_id TEXT NOT NULL,
        doc_id TEXT NOT NULL, annotator TEXT NOT NULL REFERENCES annotators(name),
        label TEXT CHECK (label IS NULL OR label IN ('false_negative', 'true_negative', 'unsure')),
        note TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
        undoes INTEGER REFERENCES label_events(id),
        kind TEXT NOT NULL DEFAULT 'verdict' CHECK (kind IN ('verdict', 'undo', 'adjudication')))""")
    db.execute("""CREATE TABLE suggestions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, query_id TEXT NOT NULL,
        doc_id TEXT NOT NULL, label TEXT NOT NULL, source_event INTEGER REFERENCES label_events(id),
        reason TEXT NOT NULL, similarity REAL, created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'rejected')))""")
    db.execute("""CREATE TABLE models (
        model_id TEXT PRIMARY KEY, run_id TEXT, path TEXT NOT NULL, manifest_json TEXT NOT NULL,
        created_at TEXT NOT NULL)""")
    db.execute("CREATE INDEX idx_qrels_query ON qrels(dataset, query_id)")
    db.execute("CREATE INDEX idx_runs_dataset ON runs(dataset, created_at)")
    db.execute("CREATE INDEX idx_candidates_query ON candidates(run_id, query_id, rank)")
    db.execute("CREATE INDEX idx_candidates_risk ON candidates(run_id, risk DESC)")
    db.execute("CREATE INDEX idx_events_pair ON label_events(dataset, query_id, doc_id)")
    db.execute("CREATE INDEX idx_events_annotator ON label_events(dataset, annotator, id)")
    db.execute("CREATE INDEX idx_suggestions_pair ON suggestions(dataset, query_id, doc_id, status)")


def _v2(db: sqlite_utils.Database) -> None:
    """Drop the candidates' risk index: no query orders or filters by risk in SQL (pages sort the cached frame),
    and saving or re-ruling a scored run paid a random B-tree insert per row for it."""
    db.execute("DROP INDEX IF EXISTS idx_candidates_risk")


def _v3(db: sqlite_utils.Database) -> None:
    """When each run's risk was last scored: the app caches a run's candidates until this changes, instead of
    re-reading 100k rows every minute in case another process re-scored them."""
    db.execute("""CREATE TABLE risk_scored (run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
                  scored_at TEXT NOT NULL)""")
    db.execute("INSERT INTO risk_scored SELECT DISTINCT run_id, ? FROM candidates WHERE risk IS NOT NULL", (now(),))


def _v4(db: sqlite_utils.Database) -> None:
    """Verdicts given together (a lasso selection) share a batch id, so one undo takes the whole batch back."""
    db.execute("ALTER TABLE label_events ADD COLUMN batch INTEGER")


# Forward migrations: MIGRATIONS[i] takes a store at version i to version i + 1. Never edit a released one.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4]
SCHEMA_VERSION = len(MIGRATIONS)


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc))


def retrying(fn: Callable[[], T]) -> T:
    """Run a write, retrying with jittered backoff when another process holds the lock past the busy timeout."""
    for attempt in range(WRITE_RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


class Store:
    """One connection to a workspace's SQLite file; safe to share between threads of one process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._environment():  # a damaged file, a read-only or full disk: one line naming the file
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                                   isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"))
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA temp_store = MEMORY")  # derived runs stage their decisions in a temp table
                self.conn = conn
                self.db = sqlite_utils.Database(conn)
                self._lock = threading.RLock()
                self.migrate()
            except BaseException:  # e.g. a store from a newer program: don't leak the connection
                conn.close()
                raise

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _environment(self) -> Iterator[None]:
        """Turn SQLite failing on this file (disk full, read-only, damaged) into a UserError naming it."""
        try:
            yield
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            translated = environment_error(exc, self.path)
            if translated is None:
                raise
            raise translated from exc

    # -- transactions -----------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE so a writer takes the lock up front instead of failing to upgrade mid-transaction.

        Whatever stops the body or the COMMIT (an error, Ctrl-C, a full disk) rolls everything back. SQLite has
        already rolled back after some errors (SQLITE_FULL among them), so ROLLBACK runs only while a transaction
        is still open, and a failing ROLLBACK never hides the error that caused it.
        """
        with self._lock, self._environment():
            retrying(lambda: self.conn.execute("BEGIN IMMEDIATE"))
            try:
                yield self.conn
                retrying(lambda: self.conn.execute("COMMIT"))
            except BaseException:
                if self.conn.in_transaction:
                    with suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one immediate transaction, retried as a whole if the database stays locked."""
        def attempt() -> T:
            with self.transaction() as conn:
                return fn(conn)
        return retrying(attempt)

    def version(self) -> int:
        if "schema_version" not in self.db.table_names():
            return 0
        row = self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
            current = self.version()
            if current > SCHEMA_VERSION:
                raise UserError(f"{self.path} has schema version {current}, newer than this program "
                                f"({SCHEMA_VERSION}); upgrade Negative Space")
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](self.db)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version + 1, now()))
        if self.version() != SCHEMA_VERSION:  # older: migrate; newer: run() refuses it
            self.write(run)

    # -- reading ----------------------------------------------------------------------------------------------
    def frame(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> pd.DataFrame:
        with self._environment():
            return pd.read_sql_query(sql, self.conn, params=params)

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._environment():
            cur = self.conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._environment():
            row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def table_checksums(self) -> dict[str, str]:
        """A content hash per table, so tests and tools can prove a rejected operation changed nothing."""
        import hashlib

        out = {}
        for table in sorted(self.db.table_names()):
            digest = hashlib.sha256()
            if table == "schema_version":
                sql = 'SELECT version FROM schema_version'
            else:
                sql = f'SELECT * FROM "{table}"'
            for row in sorted(repr(r) for r in self.conn.execute(sql)):
                digest.update(row.encode())
            out[table] = digest.hexdigest()
        return out

    # -- datasets ---------------------------------------------------------------------------------------------
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
        sql = "SELECT split, query_id, doc_id, score, origin FROM qrels WHERE dataset = ?"
        params: tuple = (dataset,)
        if split is not None:
            sql += " AND split = ?"
            params += (split,)
        return self.frame(sql + " ORDER BY split, query_id, doc_id", params)

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

    # -- runs -------------------------------------------------------------------------------------------------
    @staticmethod
    def _insert_run(conn: sqlite3.Connection, run: dict[str, Any]) -> None:
        conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (run["run_id"], run["dataset"], run["split"], run["model_fingerprint"],
                      json.dumps(run["params"], sort_keys=True), run.get("created_at") or now(),
                      json.dumps(run["stats"], sort_keys=True), run.get("parent_run")))

    def save_run(self, run: dict[str, Any], candidates: pd.DataFrame) -> None:
        cols = ["query_id", "doc_id", "rank", "score", "pos_score", "bm25", "kept", "rule", "risk", "signals"]
        frame = candidates.reindex(columns=cols)
        records = [(run["run_id"], *row) for row in frame.astype(object).where(frame.notna(), None)
                   .itertuples(index=False, name=None)]

        def write(conn: sqlite3.Connection) -> None:
            self._insert_run(conn, run)
            if frame["risk"].notna().any():  # a run saved with its risk (an import, a benchmark) is scored
                conn.execute("INSERT INTO risk_scored VALUES (?, ?)", (run["run_id"], now()))
            conn.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
        self.write(write)

    def save_derived_run(self, run: dict[str, Any], decisions: pd.DataFrame) -> None:
        """A run that re-rules its parent's candidates: ``decisions`` holds query_id, doc_id, kept, rule per row;
        everything else is copied from the parent inside SQLite, which is ~10x cheaper than a round trip."""
        rows = list(zip(decisions["query_id"].tolist(), decisions["doc_id"].tolist(),
                        decisions["kept"].astype(int).tolist(), decisions["rule"].tolist()))

        def write(conn: sqlite3.Connection) -> None:
            self._insert_run(conn, run)
            conn.execute("""CREATE TEMP TABLE IF NOT EXISTS decisions (query_id TEXT, doc_id TEXT, kept INTEGER,
                            rule TEXT, PRIMARY KEY (query_id, doc_id)) WITHOUT ROWID""")
            conn.execute("DELETE FROM temp.decisions")
            conn.executemany("INSERT INTO temp.decisions VALUES (?, ?, ?, ?)", rows)
            copied = conn.execute(
                """INSERT INTO candidates SELECT ?, c.query_id, c.doc_id, c.rank, c.score, c.pos_score, c.bm25,
                   d.kept, d.rule, c.risk, c.signals
                   FROM candidates c JOIN temp.decisions d ON d.query_id = c.query_id AND d.doc_id = c.doc_id
                   WHERE c.run_id = ?""", (run["run_id"], run["parent_run"])).rowcount
            conn.execute("DELETE FROM temp.decisions")
            conn.execute("INSERT INTO risk_scored SELECT ?, scored_at FROM risk_scored WHERE run_id = ?",
                         (run["run_id"], run["parent_run"]))
            if copied != len(rows):
                raise ValueError(f"derived run: {len(rows)} decisions but {copied} parent candidates matched")
        self.write(write)

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        row = rows[0]
        row["params"] = json.loads(row.pop("params_json"))
        row["stats"] = json.loads(row.pop("stats_json"))
        return row

    def runs(self, dataset: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT run_id FROM runs" + (" WHERE dataset = ?" if dataset else "") + " ORDER BY created_at DESC"
        return [self.run(r["run_id"]) for r in self.rows(sql, (dataset,) if dataset else ())]

    def candidates(self, run_id: str, query_id: str | None = None, with_signals: bool = True) -> pd.DataFrame:
        """A run's candidates in (query, rank) order; ``with_signals=False`` skips the bulky risk-signal JSON."""
        sql = f"""SELECT query_id, doc_id, rank, score, pos_score, bm25, kept, rule, risk
                  {", signals" if with_signals else ""} FROM candidates WHERE run_id = ?"""
        params: tuple = (run_id,)
        if query_id is not None:
            sql += " AND query_id = ?"
            params += (query_id,)
        frame = self.frame(sql + " ORDER BY query_id, rank", params)
        frame["kept"] = frame["kept"].astype(bool)
        return frame

    def risk_missing(self, run_id: str) -> bool:
        """Whether any candidate of the run still lacks a risk score."""
        return bool(self.scalar("SELECT EXISTS(SELECT 1 FROM candidates WHERE run_id = ? AND risk IS NULL)",
                                (run_id,)))

    def set_risk(self, run_id: str, rows: Iterable[tuple[str, str, float, str]]) -> None:
        """Store (query_id, doc_id, risk, signals_json); risk is derived data, the only candidate field updated."""
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE candidates SET risk = ?, signals = ? WHERE run_id = ? AND query_id = ? AND doc_id = ?",
                ((risk, signals, run_id, q, d) for q, d, risk, signals in rows))
            conn.execute("INSERT OR REPLACE INTO risk_scored VALUES (?, ?)", (run_id, now()))
        self.write(write)

    def risk_scored_at(self, run_id: str) -> str | None:
        """When the run's risk was last written (None: never); a cheap key for caches of its candidates."""
        return self.scalar("SELECT scored_at FROM risk_scored WHERE run_id = ?", (run_id,))

    # -- labels -----------------------------------------------------------------------------------------------
    def ensure_annotator(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?)", (name, now()))

    def annotators(self) -> list[str]:
        return [r["name"] for r in self.rows("SELECT name FROM annotators ORDER BY name")]

    def add_events(self, events: Sequence[dict[str, Any]]) -> list[int]:
        """Append label events atomically; returns their ids."""
        return self.write(lambda conn: [self._insert_event(conn, ev) for ev in events])

    def add_verdicts(self, events: Sequence[dict[str, Any]]) -> list[int]:
        """Append verdicts given together as one batch, in one transaction, and close the open suggestions on
        their pairs: a person's direct verdict decides a suggestion (accepted when the labels agree, rejected
        otherwise). Every event of a batch of two or more carries the first event's id as ``batch``."""
        def run(conn: sqlite3.Connection) -> list[int]:
            ids = [self.insert_verdict(conn, ev) for ev in events]
            if len(ids) > 1:
                conn.execute(f"UPDATE label_events SET batch = ? WHERE id IN ({','.join('?' * len(ids))})",
                             (ids[0], *ids))
            return ids
        return self.write(run)

    def insert_verdict(self, conn: sqlite3.Connection, ev: dict[str, Any]) -> int:
        """Append one verdict inside the caller's transaction and close the open suggestions on its pair."""
        conn.execute("""UPDATE suggestions SET status = CASE WHEN label = ? THEN 'accepted' ELSE 'rejected' END
                        WHERE dataset = ? AND query_id = ? AND doc_id = ? AND status = 'open'""",
                     (ev["label"], ev["dataset"], ev["query_id"], ev["doc_id"]))
        return self._insert_event(conn, ev)

    def undo_events(self, targets: Sequence[dict[str, Any]], annotator: str) -> list[int]:
        """Append an undo event for each target event in one transaction, and withdraw the open suggestions
        those verdicts had spread (nobody decided them yet, and their reason no longer holds)."""
        def run(conn: sqlite3.Connection) -> list[int]:
            ids = [self._insert_event(conn, {"dataset": t["dataset"], "query_id": t["query_id"],
                                             "doc_id": t["doc_id"], "annotator": annotator, "label": None,
                                             "kind": "undo", "undoes": int(t["id"])}) for t in targets]
            undone = [int(t["id"]) for t in targets]
            conn.execute(f"DELETE FROM suggestions WHERE status = 'open' AND source_event IN "
                         f"({','.join('?' * len(undone))})", undone)
            return ids
        return self.write(run)

    def _insert_event(self, conn: sqlite3.Connection, ev: dict[str, Any]) -> int:
        self.ensure_annotator(conn, ev["annotator"])
        cur = conn.execute(
            """INSERT INTO label_events (dataset, query_id, doc_id, annotator, label, note, created_at,
               undoes, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (ev["dataset"], ev["query_id"], ev["doc_id"], ev["annotator"], ev.get("label"),
             ev.get("note") or "", ev.get("created_at") or now(), ev.get("undoes"),
             ev.get("kind", "verdict")))
        return int(cur.lastrowid)

    def events(self, dataset: str, annotator: str | None = None) -> pd.DataFrame:
        sql = "SELECT * FROM label_events WHERE dataset = ?"
        params: tuple = (dataset,)
        if annotator is not None:
            sql += " AND annotator = ?"
            params += (annotator,)
        return self.frame(sql + " ORDER BY id", params)

    # -- suggestions (propagated verdicts awaiting a person) -------------------------------------------------------
    def candidate_pairs(self, dataset: str, query_id: str | None = None, doc_id: str | None = None) -> pd.DataFrame:
        """Distinct (query_id, doc_id) mined in any run of a dataset, optionally for one query or one document."""
        sql = """SELECT DISTINCT c.query_id, c.doc_id FROM candidates c JOIN runs r ON r.run_id = c.run_id
                 WHERE r.dataset = ?"""
        params: tuple = (dataset,)
        if query_id is not None:
            sql += " AND c.query_id = ?"
            params += (query_id,)
        if doc_id is not None:
            sql += " AND c.doc_id = ?"
            params += (doc_id,)
        return self.frame(sql + " ORDER BY c.query_id, c.doc_id", params)

    def add_suggestions(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert open suggestions, skipping any pair that already has an open suggestion of the same label."""
        def run(conn: sqlite3.Connection) -> int:
            added = 0
            for row in rows:
                cur = conn.execute(
                    """INSERT INTO suggestions (dataset, query_id, doc_id, label, source_event, reason, similarity,
                       created_at, status) SELECT ?, ?, ?, ?, ?, ?, ?, ?, 'open' WHERE NOT EXISTS (
                       SELECT 1 FROM suggestions WHERE dataset = ? AND query_id = ? AND doc_id = ? AND label = ?
                       AND status = 'open')""",
                    (row["dataset"], row["query_id"], row["doc_id"], row["label"], row.get("source_event"),
                     row["reason"], row.get("similarity"), now(),
                     row["dataset"], row["query_id"], row["doc_id"], row["label"]))
                added += cur.rowcount
            return added
        return self.write(run)

    def suggestions(self, dataset: str, query_id: str | None = None, status: str | None = None) -> pd.DataFrame:
        sql = "SELECT * FROM suggestions WHERE dataset = ?"
        params: tuple = (dataset,)
        if query_id is not None:
            sql += " AND query_id = ?"
            params += (query_id,)
        if status is not None:
            sql += " AND status = ?"
            params += (status,)
        return self.frame(sql + " ORDER BY id", params)

    def suggestion(self, suggestion_id: int) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM suggestions WHERE id = ?", (suggestion_id,))
        return rows[0] if rows else None

    def decide_suggestion(self, suggestion_id: int, status: str, event: dict[str, Any] | None = None) -> int | None:
        """Close an open suggestion and, when accepting, append its verdict in the same transaction.

        Returns the new event id (None without an event); raises LookupError if the suggestion is no longer open,
        so two people deciding the same suggestion at once cannot both succeed.
        """
        def run(conn: sqlite3.Connection) -> int | None:
            cur = conn.execute("UPDATE suggestions SET status = ? WHERE id = ? AND status = 'open'",
                               (status, suggestion_id))
            if cur.rowcount != 1:
                raise LookupError(f"suggestion {suggestion_id} is not open")
            return self._insert_event(conn, event) if event is not None else None
        return self.write(run)

    def count(self, table: str, **where: Any) -> int:
        if table not in self.db.table_names():
            raise ValueError(f"unknown table {table}")
        clause = " AND ".join(f'"{k}" = ?' for k in where)
        sql = f'SELECT COUNT(*) FROM "{table}"' + (f" WHERE {clause}" if clause else "")
        return int(self.scalar(sql, tuple(where.values())))
