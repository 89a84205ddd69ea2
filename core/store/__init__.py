"""The SQLite store: the only code that writes SQL. Other modules call ``Store`` methods.

Split by concern: ``connection`` (opening, WAL, retried writes, SQLite failures as user errors), ``schema``
(migrations), then one module per table group: ``datasets``, ``runs``, ``labels``, ``suggestions``,
``teacher`` (cross-encoder scores), ``accounts`` (a team server's accounts), ``assignments`` (who reviews which
queries of a run), ``guidelines`` (versioned per dataset) and ``audit`` (who wrote what, when).
"""

from __future__ import annotations

from core.store.accounts import AccountTables
from core.store.assignments import AssignmentTables
from core.store.audit import AuditTables
from core.store.connection import BUSY_TIMEOUT_MS, now, retrying
from core.store.datasets import DatasetTables
from core.store.guidelines import GuidelineTables
from core.store.runs import RunTables
from core.store.schema import MIGRATIONS, SCHEMA_VERSION, Schema
from core.store.suggestions import SuggestionTables
from core.store.teacher import TeacherTables

__all__ = ["BUSY_TIMEOUT_MS", "MIGRATIONS", "SCHEMA_VERSION", "Store", "now", "retrying"]


class Store(Schema, DatasetTables, RunTables, SuggestionTables, TeacherTables, AccountTables, AssignmentTables,
            GuidelineTables, AuditTables):
    """One connection to a workspace's SQLite file, at the current schema, with every table's queries;
    safe to share between threads of one process."""
