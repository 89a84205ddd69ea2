"""A workspace is one folder holding everything a user did, so copying the folder moves the project."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.validation import user_path

DEFAULT_WORKSPACE = Path(__file__).resolve().parent.parent / "data" / "workspace"
DB_NAME = "negspace.sqlite"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def embeddings_dir(self) -> Path:
        """Embedding cache; $NEGSPACE_EMBEDDINGS shares one cache between workspaces (keys are content hashes)."""
        shared = os.environ.get("NEGSPACE_EMBEDDINGS")
        return Path(shared).expanduser().resolve() if shared else self.root / "embeddings"

    @property
    def projections_dir(self) -> Path:
        return self.root / "projections"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.json"

    def settings(self) -> dict:
        if not self.settings_path.exists():
            return {}
        return json.loads(self.settings_path.read_text(encoding="utf-8"))

    def update_settings(self, **values) -> dict:
        merged = {**self.settings(), **values}
        tmp = self.settings_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(merged, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.settings_path)
        return merged

    def store(self):
        """Open (creating and migrating if needed) this workspace's SQLite store."""
        from core.store import Store

        return Store(self.db_path)


def resolve_path(path: str | os.PathLike | None) -> Path:
    """The workspace folder the user meant: explicit path, then $NEGSPACE_WORKSPACE, then data/workspace."""
    chosen = path or os.environ.get("NEGSPACE_WORKSPACE") or DEFAULT_WORKSPACE
    return user_path(chosen, "workspace")


def open_workspace(path: str | os.PathLike | None = None, create: bool = True) -> Workspace:
    root = resolve_path(path)
    if root.exists() and not root.is_dir():
        raise UserError(f"workspace path {root} exists and is not a folder")
    if not root.exists():
        if not create:
            raise UserError(f"workspace {root} does not exist")
        root.mkdir(parents=True)
    ws = Workspace(root)
    for sub in (ws.embeddings_dir, ws.projections_dir, ws.models_dir, ws.exports_dir):
        sub.mkdir(parents=True, exist_ok=True)  # a shared embedding cache (NEGSPACE_EMBEDDINGS) may be new
    return ws


def is_empty(root: Path) -> bool:
    """True when a folder holds no store with content (used by restore to refuse overwrites)."""
    if not root.exists():
        return True
    return not any(p for p in root.iterdir() if p.name not in {"embeddings", "projections", "models", "exports"}
                   or any(p.iterdir()))
