"""The connection under every store query: WAL, busy timeout, retried writes and SQLite failures as user errors.

One file per workspace, WAL so readers never block the writer, a busy timeout plus retries so several app
sessions and CLI processes can write at once.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlite_utils

from core.errors import environment_error

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
WRITE_RETRIES = 8


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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


def where(conditions: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """`` WHERE a = ? AND b = ?`` over the conditions given (None: no filter on that column) and their
    parameters, so a listing with optional filters is one statement."""
    given = {column: value for column, value in conditions.items() if value is not None}
    clause = " AND ".join(f"{column} = ?" for column in given)
    return (f" WHERE {clause}" if clause else ""), tuple(given.values())


class Connection:
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
            except BaseException:
                conn.close()
                raise
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()

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

    def count(self, table: str, **conditions: Any) -> int:
        if table not in self.db.table_names():
            raise ValueError(f"unknown table {table}")
        clause, params = where({f'"{column}"': value for column, value in conditions.items()})
        return int(self.scalar(f'SELECT COUNT(*) FROM "{table}"{clause}', params))

    def table_checksums(self) -> dict[str, str]:
        """A content hash per table, so tests and tools can prove a rejected operation changed nothing."""
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
