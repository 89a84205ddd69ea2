"""The schema: forward migrations from every released version, applied once when a store is opened."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from core.errors import UserError
from core.store.connection import Connection, now


def _v1(db: sqlite_utils.Database) -> None:
    """The first data model: imported datasets (documents, queries, qrels), mining runs and their candidates,
    annotators and their append-only label events, and suggestions spread from those events."""
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


def _v5(db: sqlite_utils.Database) -> None:
    """Drop the models table: nothing ever wrote or read it; a trained model is described by the manifest saved
    in its own folder."""
    db.execute("DROP TABLE IF EXISTS models")


def _v6(db: sqlite_utils.Database) -> None:
    """Which set of risk signals scored each run, so a run scored before a signal was added or changed is scored
    again (NULL: scored before signal sets were recorded, i.e. by an older set)."""
    db.execute("ALTER TABLE risk_scored ADD COLUMN signal_set TEXT")


def _v7(db: sqlite_utils.Database) -> None:
    """A run derived by re-ruling another stores only its decisions, one row per query (which candidates it keeps,
    as bits, and the rule's reason for each, as codes into that row's names), over the candidate rows of the mined
    run it descends from (``base_run``): scores, BM25 and risk live there once, so re-ruling a million candidates
    writes ten thousand small rows instead of copying a million. Runs derived before keep their own rows."""
    db.execute("ALTER TABLE runs ADD COLUMN base_run TEXT REFERENCES runs(run_id)")
    db.execute("""CREATE TABLE run_decisions (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, query_id TEXT NOT NULL,
        kept BLOB NOT NULL, rules BLOB NOT NULL, rule_names TEXT NOT NULL,
        PRIMARY KEY (run_id, query_id)) WITHOUT ROWID""")


def _v8(db: sqlite_utils.Database) -> None:
    """Index the candidates by risk again: the triage queue takes the next riskiest unjudged candidates of a 10M
    run from it with a LIMIT instead of sorting the run (risk is written once per scoring, so its upkeep is paid
    there and when a scored run is saved)."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_candidates_risk ON candidates(run_id, risk DESC)")


def _v9(db: sqlite_utils.Database) -> None:
    """Teacher scores: a cross-encoder's probability per (model fingerprint, sha256 of the query text, sha256 of
    the document text), so a pair is never scored twice by one model whichever run or dataset mined it, and which
    cross-encoder last scored each run's candidate rows (a derived run reads its base run's)."""
    db.execute("""CREATE TABLE ce_scores (
        model TEXT NOT NULL, query_sha BLOB NOT NULL, doc_sha BLOB NOT NULL, score REAL NOT NULL,
        PRIMARY KEY (model, query_sha, doc_sha)) WITHOUT ROWID""")
    db.execute("""CREATE TABLE run_teacher (
        run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE, model TEXT NOT NULL,
        model_path TEXT NOT NULL, pairs INTEGER NOT NULL, scored_at TEXT NOT NULL)""")


def _v10(db: sqlite_utils.Database) -> None:
    """Accounts of a team server (core.accounts): a name (the annotator of the account's verdicts), a role
    (core.roles) and the argon2 hash of the password, never the password; ``password_changed_at`` ends the sessions
    signed in before a password change. A workspace without accounts keeps today's behaviour."""
    db.execute("""CREATE TABLE accounts (
        name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN ('annotator', 'adjudicator', 'admin')),
        password_hash TEXT NOT NULL, created_at TEXT NOT NULL, password_changed_at TEXT NOT NULL)""")


def _v11(db: sqlite_utils.Database) -> None:
    """The annotators' workplace (core.assignments, core.guidelines, core.audit): a run's queries split among named
    annotators with an overlap (``assignment_plans`` says who, with which overlap and seed; ``assignments`` lists
    each person's queries), a guideline text per dataset whose every save is a new version, the version each
    verdict's annotator saw (``label_events.guideline_version``, NULL for verdicts given without guidelines and for
    every verdict from before), and an audit log of the writes that are not label events (who and when, in UTC).
    A workspace from before gains empty tables and keeps its verdicts unchanged."""
    db.execute("""CREATE TABLE assignment_plans (
        run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE, annotators TEXT NOT NULL,
        overlap INTEGER NOT NULL CHECK (overlap >= 1), seed INTEGER NOT NULL, created_at TEXT NOT NULL,
        created_by TEXT NOT NULL)""")
    db.execute("""CREATE TABLE assignments (
        run_id TEXT NOT NULL REFERENCES assignment_plans(run_id) ON DELETE CASCADE, annotator TEXT NOT NULL,
        query_id TEXT NOT NULL,
        PRIMARY KEY (run_id, annotator, query_id)) WITHOUT ROWID""")
    db.execute("""CREATE TABLE guidelines (
        dataset TEXT NOT NULL, version INTEGER NOT NULL CHECK (version >= 1), text TEXT NOT NULL,
        created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        PRIMARY KEY (dataset, version))""")
    db.execute("ALTER TABLE label_events ADD COLUMN guideline_version INTEGER")
    db.execute("""CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{}')""")


# Forward migrations: MIGRATIONS[i] takes a store at version i to version i + 1. Never edit a released one.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10,
                                                          _v11]
SCHEMA_VERSION = len(MIGRATIONS)


class Schema(Connection):
    """A connection whose file is at SCHEMA_VERSION: opening migrates an older store and refuses a newer one."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        try:
            with self._environment():
                self.migrate()
        except BaseException:  # e.g. a store from a newer program: don't leak the connection
            self.close()
            raise

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
