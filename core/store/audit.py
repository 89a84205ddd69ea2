"""The audit log of writes that are not label events (core.audit says who; verdicts carry their own)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from core.store.connection import Connection, now


class AuditTables(Connection):
    """Queries on audit: append-only, one row per write, oldest first."""

    def add_audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> int:
        sql = "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)"
        params = (now(), actor, action, target, json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str))
        return int(self.write(lambda conn: conn.execute(sql, params).lastrowid))

    def audit_rows(self) -> pd.DataFrame:
        return self.frame("SELECT id, at, actor, action, target, detail FROM audit ORDER BY id")

    def label_event_log(self) -> pd.DataFrame:
        """Every label event of every dataset in the audit's terms, oldest first."""
        return self.frame("""SELECT id, created_at AS at, annotator AS actor, kind AS action, dataset, query_id,
                             doc_id, label, note, undoes, batch, guideline_version FROM label_events ORDER BY id""")
