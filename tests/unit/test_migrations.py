"""Schema migrations from every earlier version: a store built at version v (by running MIGRATIONS[:v] by hand)
opens with ``Store`` at the current version with the same schema as a fresh store and with its data intact;
a store from a newer program is refused; several processes opening a fresh store at once migrate it once."""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils

from core import labels
from core.errors import UserError
from core.store import MIGRATIONS, SCHEMA_VERSION, Store

T0 = "2025-01-01T00:00:00.000+00:00"


def seed_v1(db: sqlite_utils.Database) -> None:
    """A row in every table of schema v1, written with v1's own columns (not through today's Store)."""
    seed_tables_kept(db)
    db.execute("INSERT INTO models VALUES ('m1', 'r1', '/models/m1', '{}', ?)", (T0,))


def seed_tables_kept(db: sqlite_utils.Database) -> None:
    """A row in every table of schema v1 that later versions keep (v5 dropped models)."""
    ex = db.execute
    ex("INSERT INTO datasets VALUES ('tiny', '/data/tiny', 'beir', 'abc', ?)", (T0,))
    ex("INSERT INTO documents VALUES ('tiny', 'd1', 'Title', 'Text ünïcödé <b>')")
    ex("INSERT INTO documents VALUES ('tiny', 'd2', '', 'Another text')")
    ex("INSERT INTO queries VALUES ('tiny', 'q1', 'a query')")
    ex("INSERT INTO qrels VALUES ('tiny', 'train', 'q1', 'd1', 2, 'imported', NULL)")
    ex("INSERT INTO qrels VALUES ('tiny', 'train', 'q1', 'd2', 1, 'promoted', ?)", (T0,))
    ex("""INSERT INTO runs (run_id, dataset, split, model_fingerprint, params_json, created_at, stats_json,
          parent_run) VALUES ('r1', 'tiny', 'train', 'fp', '{}', ?, '{}', NULL)""", (T0,))
    ex("INSERT INTO candidates VALUES ('r1', 'q1', 'd2', 1, 0.9, 0.95, 3.2, 1, 'top', 0.7, '{}')")
    for name in ("ana", "bob", "lead"):
        ex("INSERT INTO annotators VALUES (?, ?)", (name, T0))
    events = [(1, "ana", "false_negative", None, "verdict"), (2, "bob", "true_negative", None, "verdict"),
              (3, "bob", "unsure", None, "verdict"), (4, "bob", None, 3, "undo"),
              (5, "lead", "false_negative", None, "adjudication")]
    for event_id, who, label, undoes, kind in events:
        ex("""INSERT INTO label_events (id, dataset, query_id, doc_id, annotator, label, note, created_at, undoes,
              kind) VALUES (?, 'tiny', 'q1', 'd2', ?, ?, 'note', ?, ?, ?)""", (event_id, who, label, T0, undoes, kind))
    ex("""INSERT INTO suggestions (dataset, query_id, doc_id, label, source_event, reason, similarity, created_at)
          VALUES ('tiny', 'q1', 'd1', 'false_negative', 1, 'near-duplicate', 0.97, ?)""", (T0,))


def seed_v3(db: sqlite_utils.Database) -> None:
    """v1's rows plus when run r1's risk was scored (v3 added risk_scored)."""
    seed_v1(db)
    db.execute("INSERT INTO risk_scored VALUES ('r1', ?)", (T0,))


def seed_v4(db: sqlite_utils.Database) -> None:
    """v3's rows plus a two-verdict batch and its undo (v4 added label_events.batch)."""
    seed_v3(db)
    seed_batch(db)


def seed_v5(db: sqlite_utils.Database) -> None:
    """v4's rows less the models table, which v5 dropped."""
    seed_tables_kept(db)
    db.execute("INSERT INTO risk_scored VALUES ('r1', ?)", (T0,))
    seed_batch(db)


def seed_v6(db: sqlite_utils.Database) -> None:
    """v5's rows with the signal set that scored r1 (v6 added risk_scored.signal_set)."""
    seed_tables_kept(db)
    db.execute("INSERT INTO risk_scored VALUES ('r1', ?, 'abc123')", (T0,))
    seed_batch(db)


def seed_v7(db: sqlite_utils.Database) -> None:
    """v6's rows plus a run derived from r1 that stores only its decisions (v7 added runs.base_run and
    run_decisions)."""
    seed_v6(db)
    db.execute("""INSERT INTO runs (run_id, dataset, split, model_fingerprint, params_json, created_at, stats_json,
                  parent_run, base_run) VALUES ('r2', 'tiny', 'train', 'fp', '{}', ?, '{}', 'r1', 'r1')""", (T0,))
    db.execute("""INSERT INTO run_decisions VALUES ('r2', 'q1', X'00', X'00', '["unselected:top"]')""")


def seed_v9(db: sqlite_utils.Database) -> None:
    """v7's rows plus a cross-encoder score of (q1, d2) and the teacher that scored r1 (v9 added ce_scores and
    run_teacher)."""
    seed_v7(db)
    db.execute("INSERT INTO ce_scores VALUES ('cefp', ?, ?, 0.93)", (b"q" * 32, b"d" * 32))
    db.execute("INSERT INTO run_teacher VALUES ('r1', 'cefp', '/models/ce', 2, ?)", (T0,))


def seed_v10(db: sqlite_utils.Database) -> None:
    """v9's rows plus an account (v10 added accounts)."""
    seed_v9(db)
    db.execute("INSERT INTO accounts VALUES ('ana', 'annotator', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', ?, ?)",
               (T0, T0))


def seed_v11(db: sqlite_utils.Database) -> None:
    """v10's rows plus a split of r1, a guidelines version, ana's verdict again having seen it, and an audit row (v11 added
    assignment_plans, assignments, guidelines, label_events.guideline_version and audit)."""
    seed_v10(db)
    db.execute("""INSERT INTO assignment_plans VALUES ('r1', '["ana", "bob"]', 2, 0, ?, 'lead')""", (T0,))
    db.execute("INSERT INTO assignments VALUES ('r1', 'ana', 'q1'), ('r1', 'bob', 'q1')")
    db.execute("INSERT INTO guidelines VALUES ('tiny', 1, '# Rules', ?, 'lead')", (T0,))
    db.execute("""INSERT INTO label_events (id, dataset, query_id, doc_id, annotator, label, note, created_at, kind,
                  guideline_version) VALUES (10, 'tiny', 'q1', 'd2', 'ana', 'false_negative', '', ?, 'verdict', 1)""",
               (T0,))
    db.execute("INSERT INTO audit (at, actor, action, target, detail) VALUES (?, 'lead', 'assign', 'r1', '{}')", (T0,))


def seed_batch(db: sqlite_utils.Database) -> None:
    """A two-verdict batch and its undo, in label_events.batch (added by v4)."""
    for event_id, doc, label, undoes, kind, batch in ((6, "d1", "true_negative", None, "verdict", 6),
                                                      (7, "d2", "true_negative", None, "verdict", 6),
                                                      (8, "d2", None, 7, "undo", None),
                                                      (9, "d1", None, 6, "undo", None)):
        db.execute("""INSERT INTO label_events (id, dataset, query_id, doc_id, annotator, label, note, created_at,
                      undoes, kind, batch) VALUES (?, 'tiny', 'q1', ?, 'ana', ?, 'map selection', ?, ?, ?, ?)""",
                   (event_id, doc, label, T0, undoes, kind, batch))


# Data for each schema version, in that version's columns. A new migration adds its seed here, so the test below
# proves the upgrade from the previous version keeps data (it fails until one exists).
SEEDS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: seed_v1, 2: seed_v1,  # v2 dropped an index
                                                              3: seed_v3, 4: seed_v4, 5: seed_v5, 6: seed_v6,
                                                              7: seed_v7, 8: seed_v7,  # v8 added an index
                                                              9: seed_v9, 10: seed_v10, 11: seed_v11}
# Tables a migration dropped on purpose, with their rows: nothing used them.
DROPPED = {"models"}


def build_store(path: Path, version: int) -> None:
    """A database exactly as a program at ``version`` left it: MIGRATIONS[:version] plus their version rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    if version:
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
        for v in range(version):
            MIGRATIONS[v](db)
            db.execute("INSERT INTO schema_version VALUES (?, ?)", (v + 1, T0))
        SEEDS[version](db)
    conn.close()


def schema(path: Path) -> dict[str, list[tuple]]:
    """Every table's columns (name, type, not-null, default, pk) and every index's columns."""
    conn = sqlite3.connect(path)
    try:
        out = {}
        for kind, name in conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
            pragma = "table_info" if kind == "table" else "index_info"
            out[f"{kind}:{name}"] = [tuple(r[1:]) for r in conn.execute(f'PRAGMA {pragma}("{name}")')]
        return out
    finally:
        conn.close()


def rows(path: Path, table: str, columns: list[str]) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute(f'SELECT {", ".join(columns)} FROM "{table}"').fetchall(), key=repr)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fresh_schema(tmp_path_factory) -> dict[str, list[tuple]]:
    path = tmp_path_factory.mktemp("fresh") / "negspace.sqlite"
    Store(path).close()
    return schema(path)


def test_every_version_has_seed_data():
    assert set(SEEDS) == set(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("start", ["missing file", "empty file"])
def test_version_0_becomes_current(tmp_path, fresh_schema, start):
    path = tmp_path / "negspace.sqlite"
    if start == "empty file":
        path.write_bytes(b"")
    store = Store(path)
    assert store.version() == SCHEMA_VERSION
    assert sorted(rows(path, "schema_version", ["version"])) == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    store.close()
    assert schema(path) == fresh_schema


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_upgrade_from_each_version_keeps_data(tmp_path, fresh_schema, version):
    path = tmp_path / "negspace.sqlite"
    build_store(path, version)
    old = schema(path)
    before = {name.split(":", 1)[1]: rows(path, name.split(":", 1)[1], [c[0] for c in columns])
              for name, columns in old.items() if name.startswith("table:") and name != "table:schema_version"}
    store = Store(path)
    assert store.version() == SCHEMA_VERSION
    verdicts = labels.current(store, "tiny")
    assert set(zip(verdicts.annotator, verdicts.label)) == {("ana", "false_negative"), ("bob", "true_negative"),
                                                            ("lead", "false_negative")}
    assert labels.resolved(store, "tiny")["source"].tolist() == ["adjudicated"]
    store.close()
    assert schema(path) == fresh_schema
    assert {table for table in before if f"table:{table}" not in fresh_schema} <= DROPPED
    for table, old_rows in before.items():  # every row of a kept table, in the columns it had, is still there
        if table not in DROPPED:
            assert rows(path, table, [c[0] for c in old[f"table:{table}"]]) == old_rows, table


def test_verdicts_from_before_v11_saw_no_guidelines(tmp_path):
    """A workspace from before guidelines opens with every verdict unchanged and no guideline version (NULL), an
    empty split, guidelines and audit log."""
    path = tmp_path / "negspace.sqlite"
    build_store(path, 10)
    before = rows(path, "label_events", ["id", "annotator", "label", "kind", "created_at"])
    store = Store(path)
    events = store.events("tiny")
    assert events["guideline_version"].isna().all()
    assert store.assignment_plan("r1") is None and store.guideline("tiny") is None and store.audit_rows().empty
    store.close()
    assert rows(path, "label_events", ["id", "annotator", "label", "kind", "created_at"]) == before


def test_fresh_store_has_no_models_table(fresh_schema):
    assert not {f"table:{table}" for table in DROPPED} & set(fresh_schema)


def test_reopening_a_current_store_changes_nothing(tmp_path):
    path = tmp_path / "negspace.sqlite"
    build_store(path, SCHEMA_VERSION)
    store = Store(path)
    before = store.table_checksums()
    store.close()
    again = Store(path)
    assert again.table_checksums() == before
    assert again.count("schema_version") == SCHEMA_VERSION
    again.close()


def test_store_from_a_newer_program_is_refused_untouched(tmp_path):
    path = tmp_path / "negspace.sqlite"
    build_store(path, SCHEMA_VERSION)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, T0))
    conn.close()
    events = rows(path, "label_events", ["*"])
    with pytest.raises(UserError, match="newer than this program"):
        Store(path)
    assert rows(path, "label_events", ["*"]) == events
    assert max(rows(path, "schema_version", ["version"]))[0] == SCHEMA_VERSION + 1


def _open(path: str, start, out) -> None:
    try:
        start.wait()
        Store(path).close()
        out.put("ok")
    except BaseException:
        out.put(traceback.format_exc())


def test_concurrent_first_open_migrates_once(tmp_path, spawn):
    """Several app sessions / CLI processes starting on a new workspace at the same moment."""
    path = tmp_path / "negspace.sqlite"
    ctx = spawn
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(str(path), start, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert results == ["ok"] * 4, results
    assert sorted(rows(path, "schema_version", ["version"])) == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
