"""Mining runs, their candidates and when their risk was last scored."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

from core.store.connection import Connection, now, where


class RunTables(Connection):
    """Queries on runs, candidates and risk_scored."""

    @staticmethod
    def _insert_run(conn: sqlite3.Connection, run: dict[str, Any]) -> None:
        conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (run["run_id"], run["dataset"], run["split"], run["model_fingerprint"],
                      json.dumps(run["params"], sort_keys=True), run.get("created_at") or now(),
                      json.dumps(run["stats"], sort_keys=True), run.get("parent_run")))

    def save_run(self, run: dict[str, Any], candidates: pd.DataFrame) -> None:
        cols = ["query_id", "doc_id", "rank", "score", "pos_score", "bm25", "kept", "rule", "risk", "signals"]
        frame = candidates.reindex(columns=cols)

        def records() -> Iterator[tuple]:  # converted a slice at a time: a million rows never exist as tuples
            for start in range(0, len(frame), 50_000):
                part = frame.iloc[start:start + 50_000]
                part = part.astype(object).where(part.notna(), None)
                yield from ((run["run_id"], *row) for row in part.itertuples(index=False, name=None))

        def write(conn: sqlite3.Connection) -> None:
            self._insert_run(conn, run)
            if frame["risk"].notna().any():  # a run saved with its risk (an import, a benchmark) is scored
                conn.execute("INSERT INTO risk_scored (run_id, scored_at, signal_set) VALUES (?, ?, ?)",
                             (run["run_id"], now(), run.get("signal_set")))
            conn.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records())
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
            conn.execute("""INSERT INTO risk_scored (run_id, scored_at, signal_set)
                            SELECT ?, scored_at, signal_set FROM risk_scored WHERE run_id = ?""",
                         (run["run_id"], run["parent_run"]))
            if copied != len(rows):
                raise ValueError(f"derived run: {len(rows)} decisions but {copied} parent candidates matched")
        self.write(write)

    @staticmethod
    def _decoded(row: dict[str, Any]) -> dict[str, Any]:
        """A runs row with its params and stats as dicts, as callers use them."""
        row["params"] = json.loads(row.pop("params_json"))
        row["stats"] = json.loads(row.pop("stats_json"))
        return row

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return self._decoded(rows[0]) if rows else None

    def runs(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Every run (or a dataset's), newest first, in one query."""
        clause, params = where({"dataset": dataset})
        return [self._decoded(row) for row in self.rows(f"SELECT * FROM runs{clause} ORDER BY created_at DESC",
                                                        params)]

    def candidates(self, run_id: str, query_id: str | None = None, with_signals: bool = True) -> pd.DataFrame:
        """A run's candidates in (query, rank) order; ``with_signals=False`` skips the bulky risk-signal JSON."""
        clause, params = where({"run_id": run_id, "query_id": query_id})
        frame = self.frame(f"""SELECT query_id, doc_id, rank, score, pos_score, bm25, kept, rule, risk
                               {", signals" if with_signals else ""} FROM candidates{clause}
                               ORDER BY query_id, rank""", params)
        frame["kept"] = frame["kept"].astype(bool)
        return frame

    def candidate_pairs(self, dataset: str, query_id: str | None = None, doc_id: str | None = None) -> pd.DataFrame:
        """Distinct (query_id, doc_id) mined in any run of a dataset, optionally for one query or one document."""
        clause, params = where({"r.dataset": dataset, "c.query_id": query_id, "c.doc_id": doc_id})
        return self.frame(f"""SELECT DISTINCT c.query_id, c.doc_id
                              FROM candidates c JOIN runs r ON r.run_id = c.run_id{clause}
                              ORDER BY c.query_id, c.doc_id""", params)

    def risk_missing(self, run_id: str, signal_set: str | None = None) -> bool:
        """Whether the run needs (re)scoring: never scored and some candidate lacks a risk, or scored by a set of
        signals other than ``signal_set``. One primary-key read for a run already scored by this set."""
        scored = self.rows("SELECT signal_set FROM risk_scored WHERE run_id = ?", (run_id,))
        if not scored:
            return bool(self.scalar("SELECT EXISTS(SELECT 1 FROM candidates WHERE run_id = ? AND risk IS NULL)",
                                    (run_id,)))
        if signal_set is None or scored[0]["signal_set"] == signal_set:
            return False
        return bool(self.scalar("SELECT EXISTS(SELECT 1 FROM candidates WHERE run_id = ?)", (run_id,)))

    def set_risk(self, run_id: str, rows: Iterable[tuple[str, str, float, str]], signal_set: str | None = None) -> None:
        """Store (query_id, doc_id, risk, signals_json) scored by ``signal_set``; risk is derived data, the only
        candidate field updated."""
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE candidates SET risk = ?, signals = ? WHERE run_id = ? AND query_id = ? AND doc_id = ?",
                ((risk, signals, run_id, q, d) for q, d, risk, signals in rows))
            conn.execute("INSERT OR REPLACE INTO risk_scored (run_id, scored_at, signal_set) VALUES (?, ?, ?)",
                         (run_id, now(), signal_set))
        self.write(write)

    def risk_scored_at(self, run_id: str) -> str | None:
        """When the run's risk was last written (None: never); a cheap key for caches of its candidates."""
        return self.scalar("SELECT scored_at FROM risk_scored WHERE run_id = ?", (run_id,))
