"""Checks at the edge for what people type or pass on the command line: paths and short names.

Python carries undecodable bytes from argv and file names as lone surrogates and lets strings hold NUL; the file
system and SQLite then fail deep inside a call with ValueError, UnicodeEncodeError or OSError (name too long),
which the CLI would show as a traceback. Checking here turns each into a one-line ``UserError``.
"""

from __future__ import annotations

import errno
import os
import unicodedata
from pathlib import Path
from typing import Literal

from core.errors import UserError

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX: checked here because stat() reports a missing parent first


# Bidirectional controls: invisible, yet they reorder how a name is displayed, so two names that look alike
# (or a name that looks like another) would be different people or datasets.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_name(value: str, what: str) -> str:
    """Reject control characters and lone surrogates in a name (dataset, annotator), which SQLite cannot store
    as UTF-8 and which would break one-line CLI and TSV output, plus bidirectional controls and surrounding
    spaces, which make two different names look the same; returns the value unchanged (never stripped)."""
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise UserError(f"{what} must not contain control characters or undecodable bytes")
    if bidi := sorted({f"U+{ord(ch):04X}" for ch in value if ch in BIDI_CONTROLS}):
        raise UserError(f"{what} must not contain bidirectional control characters ({', '.join(bidi)})")
    if value != value.strip():
        raise UserError(f"{what} {value!r} must not start or end with spaces")
    return value


def user_path(value: str | os.PathLike[str] | None, what: str, must_exist: bool = False,
              kind: Literal["file", "dir", "any"] = "any", create_parent: bool = False) -> Path:
    """A path someone gave us as an absolute ``Path`` (``~`` expanded), or a UserError saying what is wrong.

    ``must_exist`` requires it to exist; ``kind`` requires an existing path to be a file or a folder (an output
    file that does not exist yet passes ``kind='file'``); ``create_parent`` makes the parent folder of an output
    now, so an unusable location (a file in the way, no permission) is reported here rather than mid-write.
    """
    text = os.fspath(value) if value is not None else ""
    if not str(text).strip():
        raise UserError(f"{what}: empty path")
    if "\x00" in text:
        raise UserError(f"{what}: path contains a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise UserError(f"{what}: path longer than {MAX_PATH_CHARS} characters")
    try:
        path = Path(text).expanduser().resolve()
        if any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in path.parts):
            raise OSError(errno.ENAMETOOLONG, f"a name in the path is longer than {MAX_NAME_BYTES} bytes")
        exists, is_dir = path.exists(), path.is_dir()
        nearest = path if exists else next(p for p in path.parents if p.exists())
        blocked = not exists and not nearest.is_dir()  # e.g. --out notes.txt/sub: a file where a folder must be
    except (OSError, ValueError, RuntimeError) as exc:  # name too long, undecodable, unknown ~user, link loop
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"{what}: {display(text)}: {reason}") from None
    if blocked:
        raise UserError(f"{what}: {display(nearest)} is a file, not a folder")
    if must_exist and not exists:
        raise UserError(f"{what}: {display(path)}: no such file or folder")
    if exists and kind == "file" and is_dir:
        raise UserError(f"{what}: {display(path)} is a folder; give a file")
    if exists and kind == "dir" and not is_dir:
        raise UserError(f"{what}: {display(path)} is not a folder")
    if create_parent:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{what}: cannot create {display(path.parent)} ({exc.strerror})") from None
    return path


def display(path: str | os.PathLike[str]) -> str:
    """A path as valid UTF-8 text for messages and the database (undecodable bytes spelled as escapes)."""
    return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8")
