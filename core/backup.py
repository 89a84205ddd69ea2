"""Whole-store backup with SQLite's online backup API, and restore into a workspace."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from core.errors import UserError
from core.files import SIDE_SUFFIXES, locked_temp
from core.store import BUSY_TIMEOUT_MS, SCHEMA_VERSION
from core.validation import user_path
from core.workspace import DB_NAME, open_workspace, resolve_path

if TYPE_CHECKING:
    from core.workspace import Workspace


def _copy(src: sqlite3.Connection, target: Path) -> None:
    """SQLite's online backup of ``src`` into a new database file at ``target``."""
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()


def backup(workspace: Workspace, out: str | Path) -> Path:
    out = user_path(out, "--out", kind="file", create_parent=True)
    src = sqlite3.connect(workspace.db_path)
    try:
        with locked_temp(out) as tmp:
            _copy(src, tmp)
            tmp.replace(out)
    except (OSError, sqlite3.OperationalError) as exc:  # disk full, no permission, a name refused
        raise UserError(f"--out: cannot write {out} ({getattr(exc, 'strerror', None) or exc})") from None
    finally:
        src.close()
    return out


def _check_backup(src: sqlite3.Connection, file: Path) -> None:
    """Refuse anything but an intact Negative Space store this program can read, before the workspace is touched."""
    try:
        problems = [row[0] for row in src.execute("PRAGMA integrity_check")]
        names = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = (src.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
                   if "schema_version" in names else None)
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{file}: not a SQLite backup, or a damaged one ({exc})") from None
    if problems != ["ok"]:
        raise UserError(f"{file}: damaged SQLite backup ({' '.join(problems[0].split())})")
    if version is None or "label_events" not in names:
        raise UserError(f"{file}: not a Negative Space backup (no schema_version/label_events tables)")
    if version > SCHEMA_VERSION:
        raise UserError(f"{file} has schema version {version}, newer than this program ({SCHEMA_VERSION}); "
                        "upgrade Negative Space")


def _has_content(db_path: Path) -> bool:
    """Whether a workspace store holds datasets or verdicts; an unreadable store counts as content (keep it)."""
    if not db_path.exists():
        return False
    probe = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return any(probe.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                   for t in ("datasets", "label_events") if t in tables)
    except sqlite3.DatabaseError:
        return True
    finally:
        probe.close()


def _read_only(file: Path) -> sqlite3.Connection:
    # A URI so the file opens read-only; quoted so '#', '?' or '%' in its name are not read as URI syntax.
    return sqlite3.connect(f"file:{quote(os.fsencode(file))}?mode=ro", uri=True)


def _replace_store(staged: sqlite3.Connection, db_path: Path) -> Path | None:
    """Copy the verified staged store over the workspace's in one SQLite transaction: a crash leaves the old
    store whole, its WAL is SQLite's to handle, and connections other processes hold see the new content.
    A store too damaged to be written that way is moved aside (returned, never deleted) and replaced."""
    dst = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        staged.backup(dst)
        return None
    except sqlite3.OperationalError:  # busy, disk full, read-only: rolled back, the old store is untouched
        raise
    except sqlite3.DatabaseError:  # the workspace's store is no database any more
        pass
    finally:
        dst.close()
    aside = db_path.with_name(f"{db_path.name}.damaged-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
    with locked_temp(db_path) as tmp:
        _copy(staged, tmp)
        for suffix in ("", *SIDE_SUFFIXES):  # the damaged store's journal belongs with it
            if (side := db_path.with_name(db_path.name + suffix)).exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        os.replace(tmp, db_path)
    return aside


@dataclass(frozen=True)
class Restored:
    root: Path  # the workspace restored into
    damaged: Path | None  # where its unreadable store was kept, if it had one


def restore(file: str | Path, workspace: str | Path | None, force: bool = False) -> Restored:
    """Copy a backup into a workspace (refusing one with content unless ``force``), then migrate it forward.

    The backup is verified, copied into a temporary file in the workspace and verified again there before the
    workspace's store is replaced, so a damaged or foreign file never costs the store it would replace.
    """
    file = user_path(file, "backup file", must_exist=True, kind="file")
    root = resolve_path(workspace)
    src = _read_only(file)
    try:
        _check_backup(src, file)
        if not force and _has_content(root / DB_NAME):
            raise UserError(f"workspace {root} already has data; pass --force to overwrite it")
        ws = open_workspace(root)
        with locked_temp(ws.db_path) as tmp:
            staged = sqlite3.connect(tmp)
            try:
                src.backup(staged)
                staged.execute("PRAGMA journal_mode = DELETE")  # a single file, whatever the backup's mode
                _check_backup(staged, file)
                damaged = _replace_store(staged, ws.db_path)
            except sqlite3.Error as exc:  # disk full, the store busy past the timeout: nothing was replaced
                raise UserError(f"{ws.db_path}: cannot restore {file} into it, the store is unchanged "
                                f"({exc})") from None
            finally:
                staged.close()
    finally:
        src.close()
    ws.store().close()  # migrate an older backup forward
    return Restored(root, damaged)
