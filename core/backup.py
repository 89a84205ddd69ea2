"""Whole-store backup with SQLite's online backup API, and restore into a workspace."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.errors import UserError
from core.workspace import open_workspace, resolve_path


def backup(workspace, out: str | Path) -> Path:
    out = Path(out).expanduser().resolve()
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    src = sqlite3.connect(workspace.db_path)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    tmp.replace(out)
    return out


def restore(file: str | Path, workspace: str | Path | None, force: bool = False) -> Path:
    file = Path(file).expanduser().resolve()
    if not file.is_file():
        raise UserError(f"{file}: no such backup file")
    try:
        src = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        names = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        raise UserError(f"{file}: not a SQLite backup") from None
    if "schema_version" not in names or "label_events" not in names:
        src.close()
        raise UserError(f"{file}: not a Negative Space backup (no schema_version/label_events tables)")
    root = resolve_path(workspace)
    db_path = root / "negspace.sqlite"
    if db_path.exists() and not force:
        probe = sqlite3.connect(db_path)
        try:
            has_content = any(probe.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                              for t in ("datasets", "label_events")
                              if probe.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (t,)).fetchone())
        finally:
            probe.close()
        if has_content:
            src.close()
            raise UserError(f"workspace {root} already has data; pass --force to overwrite it")
    ws = open_workspace(root)
    dst = sqlite3.connect(ws.db_path)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    ws.store().close()  # migrate an older backup forward
    return root
