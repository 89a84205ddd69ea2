"""Assignments of a run's queries to annotators (core.assignments decides the split; this stores it)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from core.store.connection import Connection, now


class AssignmentTables(Connection):
    """Queries on assignment_plans (one per run: who, overlap, seed) and assignments (each person's queries)."""

    def assignment_plan(self, run_id: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM assignment_plans WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        return {**rows[0], "annotators": json.loads(rows[0]["annotators"])}

    def assigned_queries(self, run_id: str, annotator: str) -> list[str]:
        """The annotator's queries of the run, by id (empty when they have none)."""
        return [r["query_id"] for r in self.rows(
            "SELECT query_id FROM assignments WHERE run_id = ? AND annotator = ? ORDER BY query_id",
            (run_id, annotator))]

    def assignment_rows(self, run_id: str) -> list[dict[str, Any]]:
        return self.rows("SELECT annotator, query_id FROM assignments WHERE run_id = ? ORDER BY annotator, query_id",
                         (run_id,))

    def set_assignments(self, run_id: str, annotators: list[str], overlap: int, seed: int, by: str,
                        shares: Iterable[tuple[str, str]]) -> None:
        """Replace the run's plan and every (annotator, query) row of it in one transaction."""
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM assignment_plans WHERE run_id = ?", (run_id,))  # cascades to assignments
            conn.execute("INSERT INTO assignment_plans VALUES (?, ?, ?, ?, ?, ?)",
                         (run_id, json.dumps(annotators, ensure_ascii=False), overlap, seed, now(), by))
            conn.executemany("INSERT INTO assignments VALUES (?, ?, ?)",
                             ((run_id, who, query_id) for who, query_id in shares))
        self.write(run)

    def clear_assignments(self, run_id: str) -> bool:
        """Drop the run's plan and its rows; False when it had none."""
        def run(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM assignments WHERE run_id = ?", (run_id,))
            return conn.execute("DELETE FROM assignment_plans WHERE run_id = ?", (run_id,)).rowcount
        return self.write(run) == 1
