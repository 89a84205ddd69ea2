"""Run `python -m core …` as a user would, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: object, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> None:
    """The CLI's failure contract: exit ``code``, exactly one ``error:`` line on stderr naming each needle."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert str(needle) in result.stderr, result.stderr


def tree(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (relative), or [] when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def workspace_state(root: Path) -> tuple[list[str], dict[str, str]]:
    """What a failed command must leave unchanged: the file listing and every table's content hash."""
    from core.workspace import open_workspace

    listing = tree(root)
    store = open_workspace(root, create=False).store()
    try:
        return listing, store.table_checksums()
    finally:
        store.close()
