"""Whole-store backup with SQLite's online backup API, and restore into a workspace."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from core.errors import UserError
from core.store import SCHEMA_VERSION
from core.validation import user_path
from core.workspace import DB_NAME, open_workspace, resolve_path


def backup(workspace, out: str | Path) -> Path:
    out = user_path(out, "--out", kind="file", create_parent=True)
    tmp = out.with_name(out.name + ".tmp")
    src = sqlite3.connect(workspace.db_path)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
        tmp.replace(out)
    except (OSError, sqlite3.OperationalError) as exc:  # disk full, no permission, a name refused
        tmp.unlink(missing_ok=True)
        raise UserError(f"--out: cannot write {out} ({getattr(exc, 'strerror', None) or exc})") from None
    finally:
        src.close()
    return out


def _check_backup(src: sqlite3.Connection, file: Path) -> None:
    """Refuse anything but a Negative Space store this program can read, before the workspace is touched."""
    try:
        names = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = (src.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
                   if "schema_version" in names else None)
    except sqlite3.DatabaseError:
        raise UserError(f"{file}: not a SQLite backup") from None
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


def restore(file: str | Path, workspace: str | Path | None, force: bool = False) -> Path:
    """Copy a backup into a workspace (refusing one with content unless ``force``), then migrate it forward."""
    file = user_path(file, "backup file", must_exist=True, kind="file")
    root = resolve_path(workspace)
    # A URI so the backup opens read-only; quoted so '#', '?' or '%' in its name are not read as URI syntax.
    src = sqlite3.connect(f"file:{quote(os.fsencode(file))}?mode=ro", uri=True)
    try:
        _check_backup(src, file)
        if not force and _has_content(root / DB_NAME):
            raise UserError(f"workspace {root} already has data; pass --force to overwrite it")
        ws = open_workspace(root)
        dst = sqlite3.connect(ws.db_path)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    ws.store().close()  # migrate an older backup forward
    return root
