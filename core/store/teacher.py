"""Teacher scores: cross-encoder probabilities cached by content, and which cross-encoder scored each run.

A score is keyed by (model fingerprint, sha256 of the query text, sha256 of the document text), not by ids: the
same pair mined by another run, or by another dataset holding the same texts, is never scored twice by one model.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from core.store.connection import Connection, now

_IN_CHUNK = 900  # bound parameters per IN (...) list, under SQLite's limit


class TeacherTables(Connection):
    """Queries on ce_scores and run_teacher."""

    def ce_known(self, model: str, query_shas: Sequence[bytes]) -> pd.DataFrame:
        """The cached scores of ``model`` for pairs whose query text hashes to one of ``query_shas``: columns
        query_sha, doc_sha (bytes) and score, read by the primary key's (model, query_sha) prefix."""
        parts = []
        unique = list(dict.fromkeys(query_shas))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start:start + _IN_CHUNK]
            parts.append(self.frame(f"""SELECT query_sha, doc_sha, score FROM ce_scores WHERE model = ?
                                        AND query_sha IN ({','.join('?' * len(chunk))})""", [model, *chunk]))
        if not parts:
            return pd.DataFrame({"query_sha": pd.Series(dtype=object), "doc_sha": pd.Series(dtype=object),
                                 "score": pd.Series(dtype=float)})
        return pd.concat(parts, ignore_index=True)

    def add_ce_scores(self, model: str, rows: Iterable[tuple[bytes, bytes, float]]) -> None:
        """Store (query_sha, doc_sha, probability) scored by ``model`` in one transaction; a pair already stored
        keeps its score (the same model and texts give the same score)."""
        rows = [(model, q, d, float(score)) for q, d, score in rows]
        self.write(lambda conn: conn.executemany("INSERT OR IGNORE INTO ce_scores VALUES (?, ?, ?, ?)", rows))

    def set_run_teacher(self, run_id: str, model: str, model_path: str, pairs: int, changed: bool) -> None:
        """Record that ``model`` scored the candidate rows of ``run_id`` (a mined run: a derived run's rows are its
        base's). When the scores the run reads ``changed``, its stored risk is marked stale (its signal set
        cleared), so the next ``ensure_risk`` scores it again with the teacher's signal."""
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO run_teacher VALUES (?, ?, ?, ?, ?)",
                         (run_id, model, model_path, int(pairs), now()))
            if changed:
                conn.execute("UPDATE risk_scored SET signal_set = NULL WHERE run_id = ?", (run_id,))
        self.write(write)

    def run_teacher(self, run_id: str) -> dict[str, Any] | None:
        """Which cross-encoder last scored the run's candidate rows (model, model_path, pairs, scored_at), or None.
        ``run_id`` may be a derived run: the answer is its base run's."""
        rows = self.rows("SELECT * FROM run_teacher WHERE run_id = (SELECT COALESCE(base_run, run_id) FROM runs "
                         "WHERE run_id = ?)", (run_id,))
        return rows[0] if rows else None
