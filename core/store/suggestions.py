"""Suggestions: verdicts propagated to similar pairs, open until a person accepts or rejects them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pandas as pd

from core.store.connection import now, where
from core.store.labels import LabelTables


class SuggestionTables(LabelTables):
    """Queries on suggestions; accepting one appends its verdict, hence the label tables underneath."""

    def add_suggestions(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert open suggestions, skipping any pair that already has an open suggestion of the same label, and
        any suggestion whose source verdict has been undone (spreading runs in the background, so an undo can
        land before it finishes)."""
        def run(conn: sqlite3.Connection) -> int:
            added = 0
            for row in rows:
                cur = conn.execute(
                    """INSERT INTO suggestions (dataset, query_id, doc_id, label, source_event, reason, similarity,
                       created_at, status) SELECT ?, ?, ?, ?, ?, ?, ?, ?, 'open' WHERE NOT EXISTS (
                       SELECT 1 FROM suggestions WHERE dataset = ? AND query_id = ? AND doc_id = ? AND label = ?
                       AND status = 'open') AND NOT EXISTS (SELECT 1 FROM label_events WHERE undoes = ?)""",
                    (row["dataset"], row["query_id"], row["doc_id"], row["label"], row.get("source_event"),
                     row["reason"], row.get("similarity"), now(),
                     row["dataset"], row["query_id"], row["doc_id"], row["label"], row.get("source_event")))
                added += cur.rowcount
            return added
        return self.write(run)

    def suggestions(self, dataset: str, query_id: str | None = None, status: str | None = None) -> pd.DataFrame:
        clause, params = where({"dataset": dataset, "query_id": query_id, "status": status})
        return self.frame(f"SELECT * FROM suggestions{clause} ORDER BY id", params)

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
