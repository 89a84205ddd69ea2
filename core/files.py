"""Atomic file and folder writes: a reader never sees a half-written file or export, and whatever a killed writer
left behind is removed by the next writer of the same name.

A writer works in a temporary sibling named ``.{name}.negspace-XXXX.tmp`` and holds an exclusive ``flock`` on it
for as long as it exists. The kernel drops that lock when the process ends, however it ends (SIGKILL included),
so a temporary whose lock can be taken belongs to nobody alive and is removed; unlike a pid in the name, a lock
cannot be fooled by the pid being reused.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = "negspace-"
SIDE_SUFFIXES = ("-journal", "-wal", "-shm")  # SQLite keeps these next to a database file (a staged restore)


def _temp_name(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.name)}\.{TEMP_MARK}[A-Za-z0-9_]+\.tmp")


def _try_lock(path: Path) -> int | None:
    """A descriptor holding the exclusive lock on ``path``, or None while another descriptor holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove(path: Path) -> None:
    """Remove a file or folder tree, and the side files SQLite may have left next to it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    for suffix in SIDE_SUFFIXES:
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` (and their SQLite side files) whose writer is gone; returns them."""
    path = Path(path)
    pattern = _temp_name(path)
    try:
        entries = sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        try:
            fd = _try_lock(entry)
        except OSError:  # removed meanwhile by another writer, or not ours to open
            continue
        if fd is None:  # its writer is alive
            continue
        try:
            _remove(entry)
        finally:
            os.close(fd)
        removed.append(entry)
    return removed


@contextmanager
def locked_temp(path: Path, folder: bool = False) -> Iterator[Path]:
    """A new temporary file (or folder) next to ``path``, locked while the block runs and removed after it
    unless the block moved it into place; stale temporaries of ``path`` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    prefix, suffix = f".{path.name}.{TEMP_MARK}", ".tmp"
    while True:
        if folder:
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))
        else:
            handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
            os.close(handle)
            tmp = Path(name)
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except FileNotFoundError:  # another writer's cleanup took it before it was locked
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits out a cleanup that took the lock first
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # that cleanup removed it: make another
    try:
        yield tmp
    finally:
        try:
            _remove(tmp)
        finally:
            os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    with locked_temp(path) as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename."""
    path = Path(path)
    with locked_temp(path, folder=True) as tmp:
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.{TEMP_MARK}old{secrets.token_hex(8)}.tmp")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            _remove(old)
