"""Label events (verdicts, undos, adjudications) and their annotators: an append-only history; a verdict carries
the guideline version its annotator saw (core.guidelines), or NULL."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pandas as pd

from core.store.connection import Connection, now, where


class LabelTables(Connection):
    """Queries on label_events and annotators; a verdict also closes the open suggestions on its pair."""

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

    @staticmethod
    def _insert_event(conn: sqlite3.Connection, ev: dict[str, Any]) -> int:
        """Append one event inside the caller's transaction, registering its annotator on first use."""
        conn.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?)", (ev["annotator"], now()))
        cur = conn.execute(
            """INSERT INTO label_events (dataset, query_id, doc_id, annotator, label, note, created_at,
               undoes, kind, guideline_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (ev["dataset"], ev["query_id"], ev["doc_id"], ev["annotator"], ev.get("label"),
             ev.get("note") or "", ev.get("created_at") or now(), ev.get("undoes"),
             ev.get("kind", "verdict"), ev.get("guideline_version")))
        return int(cur.lastrowid)

    def events(self, dataset: str, annotator: str | None = None) -> pd.DataFrame:
        clause, params = where({"dataset": dataset, "annotator": annotator})
        return self.frame(f"SELECT * FROM label_events{clause} ORDER BY id", params)
