"""Backup → delete the workspace → restore gives back every label (compared by `labels export`, current and full
history), through the CLI contract; restore refuses to overwrite a workspace with data unless --force, and
refuses files that are not Negative Space backups, all with exit code 2 and one line on stderr."""

from __future__ import annotations

import random
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from core import backup, labels
from core.datasets import ingest
from core.errors import UserError
from core.store import SCHEMA_VERSION
from core.workspace import open_workspace
from tests.cli_helpers import run_cli, workspace_state


@pytest.fixture
def labelled(workspace, beir_dir):
    """A workspace with three annotators' verdicts, a change of mind, an undo, an adjudication and odd notes."""
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    for who, label in (("ana", "false_negative"), ("bob", "true_negative"), ("cy", "unsure")):
        labels.record(store, "tiny", "q1", "py-join-dup", who, label, note=f"{who}: ünïcödé 🙂 <b>x</b>")
        labels.record(store, "tiny", "q2", "py-sort-dup", who, "false_negative")
    labels.record(store, "tiny", "q5", "geo-2", "bob", "unsure")
    labels.record(store, "tiny", "q5", "geo-2", "bob", "false_negative")
    labels.undo(store, "tiny", "bob")
    labels.record(store, "tiny", "q1", "py-join-dup", "lead", "false_negative", adjudication=True)
    store.close()
    return workspace.root


def export(ws, out, *history: str) -> bytes:
    result = run_cli("labels", "export", "--workspace", ws, "--dataset", "tiny", "--out", out, *history)
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def assert_user_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_backup_delete_restore_gives_back_every_label(labelled, tmp_path):
    current = export(labelled, tmp_path / "before.tsv")
    history = export(labelled, tmp_path / "before-history.tsv", "--history")
    assert current.count(b"\n") == 1 + 8 and history.count(b"\n") == 1 + 10

    ok = run_cli("backup", "--workspace", labelled, "--out", tmp_path / "keep" / "ws.sqlite")
    assert ok.returncode == 0, ok.stderr
    shutil.rmtree(labelled)
    ok = run_cli("restore", tmp_path / "keep" / "ws.sqlite", "--workspace", labelled)
    assert ok.returncode == 0, ok.stderr

    assert export(labelled, tmp_path / "after.tsv") == current
    assert export(labelled, tmp_path / "after-history.tsv", "--history") == history
    store = open_workspace(labelled).store()
    assert store.version() == SCHEMA_VERSION
    assert labels.resolved(store, "tiny").set_index("doc_id").loc["py-join-dup", "source"] == "adjudicated"


def test_restore_refuses_a_workspace_with_data_unless_forced(labelled, tmp_path):
    file = tmp_path / "ws.sqlite"
    assert run_cli("backup", "--workspace", labelled, "--out", file).returncode == 0
    store = open_workspace(labelled).store()
    labels.record(store, "tiny", "q3", "heat-3", "dan", "true_negative")
    before = store.table_checksums()

    refused = run_cli("restore", file, "--workspace", labelled)
    assert_user_error(refused, "--force")
    assert store.table_checksums() == before

    forced = run_cli("restore", file, "--workspace", labelled, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "dan" not in set(labels.current(store, "tiny")["annotator"])


def test_restore_into_a_new_or_empty_workspace(labelled, tmp_path):
    file = tmp_path / "odd #name?%.sqlite"  # URI syntax in the name must not confuse the read-only open
    backup.backup(open_workspace(labelled), file)
    open_workspace(tmp_path / "empty").store().close()  # a workspace that exists but holds nothing
    for target in (tmp_path / "new", tmp_path / "empty"):
        backup.restore(file, target)
        assert len(open_workspace(target).store().events("tiny")) == 10


def test_cli_rejects_bad_backup_and_restore_arguments(labelled, tmp_path):
    assert_user_error(run_cli("restore", tmp_path / "missing.sqlite", "--workspace", tmp_path / "w1"),
                      "no such file")
    (tmp_path / "notes.txt").write_text("not a database at all, just text\n" * 10)
    assert_user_error(run_cli("restore", tmp_path / "notes.txt", "--workspace", tmp_path / "w2"), "not a SQLite")
    assert_user_error(run_cli("backup", "--workspace", labelled, "--out", tmp_path), "is a folder")
    assert_user_error(run_cli("backup", "--workspace", tmp_path / "nowhere", "--out", tmp_path / "b.sqlite"),
                      "does not exist")
    assert not (tmp_path / "w1").exists() and not (tmp_path / "w2").exists()


def test_restore_refuses_foreign_and_newer_backups_before_touching_anything(labelled, tmp_path):
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE things (x)")
    conn.close()
    with pytest.raises(UserError, match="not a Negative Space backup"):
        backup.restore(foreign, tmp_path / "target")

    newer = tmp_path / "newer.sqlite"
    backup.backup(open_workspace(labelled), newer)
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_version VALUES (?, 'later')", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    empty = open_workspace(tmp_path / "empty").store()
    before = empty.table_checksums()
    with pytest.raises(UserError, match="newer than this program"):
        backup.restore(newer, tmp_path / "empty")
    assert empty.table_checksums() == before


def damaged_backups(good: Path, tmp_path: Path) -> dict[str, Path]:
    """Backups a restore must refuse, each made from ``good``: cut short, overwritten in the middle, random bytes,
    another program's database, and one from a newer Negative Space."""
    data = good.read_bytes()
    made = {"truncated": data[: len(data) // 2], "damaged page": data[:4096 * 3] + b"\xff" * 4096 + data[4096 * 4:],
            "random bytes": random.Random(0).randbytes(len(data))}
    files = {}
    for kind, content in made.items():
        files[kind] = tmp_path / f"{kind}.sqlite"
        files[kind].write_bytes(content)
    files["foreign"] = tmp_path / "foreign.sqlite"
    with closing(sqlite3.connect(files["foreign"])) as conn:
        conn.execute("CREATE TABLE datasets (name)")
        conn.execute("INSERT INTO datasets VALUES ('theirs')")
        conn.commit()
    files["newer"] = tmp_path / "newer.sqlite"
    shutil.copy(good, files["newer"])
    with closing(sqlite3.connect(files["newer"])) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'later')", (SCHEMA_VERSION + 1,))
        conn.commit()
    return files


def test_forced_restore_of_a_damaged_or_foreign_backup_keeps_the_store(labelled, tmp_path):
    good = backup.backup(open_workspace(labelled), tmp_path / "good.sqlite")
    before = workspace_state(labelled)
    for kind, file in damaged_backups(good, tmp_path).items():
        result = run_cli("restore", file, "--workspace", labelled, "--force")
        assert_user_error(result, str(file))
        assert workspace_state(labelled) == before, kind  # same files, same content, and it still opens
    assert len(open_workspace(labelled).store().events("tiny")) == 10


def test_restore_replaces_an_unreadable_store_and_keeps_it_aside(labelled, tmp_path):
    file = backup.backup(open_workspace(labelled), tmp_path / "good.sqlite")
    db = labelled / "negspace.sqlite"
    garbage = random.Random(1).randbytes(8192)
    db.write_bytes(garbage)
    result = run_cli("restore", file, "--workspace", labelled, "--force")
    assert result.returncode == 0, result.stderr
    assert len(open_workspace(labelled).store().events("tiny")) == 10
    kept = [p for p in labelled.iterdir() if p.name.startswith("negspace.sqlite.damaged-")]
    assert [p.read_bytes() for p in kept] == [garbage] and str(kept[0]) in result.stderr
    assert not [p for p in labelled.iterdir() if p.name.startswith(".")], "no staged copy left behind"
