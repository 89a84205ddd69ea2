"""A workspace is one folder holding everything a user did, so copying the folder moves the project."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import UserError
from core.validation import display, user_path

if TYPE_CHECKING:
    from core.store import Store

DEFAULT_WORKSPACE = Path(__file__).resolve().parent.parent / "data" / "workspace"
DB_NAME = "negspace.sqlite"
# SQLite's unix VFS opens no path over 512 bytes, and the longest file it opens in a workspace is an embedding
# cache's rollback journal: embeddings/<16-hex fingerprint>-<precision>.sqlite-journal.
MAX_ROOT_BYTES = 512 - len("/embeddings/0123456789abcdef-fp32.sqlite-journal")


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
    def cache_dir(self) -> Path:
        """Answers bought from remote services (an LLM judge's, core.llm_judge), made when first written."""
        return self.root / "cache"

    @property
    def subfolders(self) -> tuple[Path, ...]:
        return self.embeddings_dir, self.projections_dir, self.models_dir, self.exports_dir

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

    def store(self) -> Store:
        """Open (creating and migrating if needed) this workspace's SQLite store."""
        from core.store import Store

        return Store(self.db_path)


def resolve_path(path: str | os.PathLike | None) -> Path:
    """The workspace folder the user meant: explicit path, then $NEGSPACE_WORKSPACE, then data/workspace."""
    chosen = path or os.environ.get("NEGSPACE_WORKSPACE") or DEFAULT_WORKSPACE
    return user_path(chosen, "workspace")


def open_workspace(path: str | os.PathLike | None = None, create: bool = True) -> Workspace:
    """The workspace at ``path``. ``create`` makes a missing one (folder, subfolders; the store follows on first
    open) for commands that may write the first data; without it a folder holding no store is refused, so
    commands that only read or need existing data never leave a folder or file behind."""
    root = resolve_path(path)
    size = len(os.fsencode(root))
    if size > MAX_ROOT_BYTES:
        raise UserError(f"workspace: {display(root)}: path too long ({size} bytes; SQLite allows at most "
                        f"{MAX_ROOT_BYTES} here)")
    ws = Workspace(root)
    for folder in (root, *ws.subfolders):
        if folder.exists() and not folder.is_dir():
            raise UserError(f"workspace: {display(folder)} exists and is not a folder")
    if ws.db_path.exists() and not ws.db_path.is_file():
        raise UserError(f"workspace: {display(ws.db_path)} is not a file")
    if not create:
        if not root.exists():
            raise UserError(f"no workspace at {display(root)} (the folder does not exist)")
        if not ws.db_path.exists():
            raise UserError(f"no workspace at {display(root)} (it holds no {DB_NAME})")
        return ws
    for sub in ws.subfolders:
        try:
            sub.mkdir(parents=True, exist_ok=True)  # a shared embedding cache (NEGSPACE_EMBEDDINGS) may be new
        except OSError as exc:
            raise UserError(f"workspace: cannot create {display(sub)} ({exc.strerror})") from None
    return ws


@contextmanager
def creating_workspace(path: str | os.PathLike | None = None) -> Iterator[Workspace]:
    """The workspace for a command that may be its first writer; if the command fails, what this call created
    (folders, an empty store) is removed again, so a rejected input or a full disk leaves nothing behind."""
    root = resolve_path(path)
    ws = Workspace(root)
    made = [p for p in (*reversed(root.parents), root, ws.db_path, *ws.subfolders) if not p.exists()]
    open_workspace(root)
    try:
        yield ws
    except BaseException:
        for item in reversed(made):  # files first, then folders deepest first; a folder with content stays
            with suppress(OSError):
                if item == ws.db_path:
                    for suffix in ("", "-wal", "-shm", "-journal"):
                        Path(f"{item}{suffix}").unlink(missing_ok=True)
                else:
                    item.rmdir()
        raise
