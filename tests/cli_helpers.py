"""Run `python -m core …` as a user would, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: object, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


# A child that sends itself ``signum`` the (after+1)-th time a named function of a core module is entered (a
# generator counts each resume): a real interruption at a chosen point of the real code path, no hook in the product.
_SIGNAL_AT = """
import os, signal, sys
module, name, after, signum = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import pandas, sentence_transformers, sklearn, torch  # imported before watching: watching slows every call
import core.encoders
core.encoders.CACHE_BATCH = 1024  # several cache writes even in a small test corpus
entered = 0
def watch(frame, event, arg):
    global entered
    if event == "call" and frame.f_code.co_name == name and frame.f_code.co_filename.endswith(module):
        entered += 1
        if entered > after:
            sys.setprofile(None)
            os.kill(os.getpid(), signum)
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C acts as in a terminal, even if the parent ignores it
sys.setprofile(watch)
sys.argv = ["core", *sys.argv[5:]]
from core.cli import main
main()
"""


def run_cli_signalled(at: tuple[str, str, int], signum: int, *args: object,
                      timeout: int = 600) -> subprocess.CompletedProcess:
    """``run_cli`` whose process receives ``signum`` on entering ``at`` = (module path suffix, function, after)."""
    return subprocess.run([sys.executable, "-c", _SIGNAL_AT, *map(str, at), str(int(signum)), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


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
