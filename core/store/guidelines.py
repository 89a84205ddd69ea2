"""Guideline texts per dataset, one row per saved version (core.guidelines decides what may be saved)."""

from __future__ import annotations

import sqlite3
from typing import Any

from core.store.connection import Connection, now


class GuidelineTables(Connection):
    """Queries on guidelines: versions are numbered 1, 2, … per dataset and never change once written."""

    def guideline(self, dataset: str, version: int | None = None) -> dict[str, Any] | None:
        """A version of the dataset's guidelines (the latest when ``version`` is None), or None."""
        if version is None:
            rows = self.rows("SELECT * FROM guidelines WHERE dataset = ? ORDER BY version DESC LIMIT 1", (dataset,))
        else:
            rows = self.rows("SELECT * FROM guidelines WHERE dataset = ? AND version = ?", (dataset, version))
        return rows[0] if rows else None

    def guideline_versions(self, dataset: str) -> list[dict[str, Any]]:
        """Every version's number, time and author (not the texts), newest first."""
        return self.rows("SELECT version, created_at, created_by, length(text) AS characters FROM guidelines "
                         "WHERE dataset = ? ORDER BY version DESC", (dataset,))

    def add_guideline(self, dataset: str, text: str, by: str) -> tuple[int, bool]:
        """Save ``text`` as the next version unless it equals the latest; returns (version, whether it is new).
        Numbered inside the write transaction, so two admins saving at once get two versions."""
        def run(conn: sqlite3.Connection) -> tuple[int, bool]:
            latest = conn.execute("SELECT version, text FROM guidelines WHERE dataset = ? ORDER BY version DESC "
                                  "LIMIT 1", (dataset,)).fetchone()
            if latest is not None and latest[1] == text:
                return int(latest[0]), False
            version = 1 if latest is None else int(latest[0]) + 1
            conn.execute("INSERT INTO guidelines VALUES (?, ?, ?, ?, ?)", (dataset, version, text, now(), by))
            return version, True
        return self.write(run)
