"""Checks at the edge for what people type or pass on the command line: paths and short names, and the
confinement of a served app's paths to one folder ($NEGSPACE_ROOT).

Python carries undecodable bytes from argv and file names as lone surrogates and lets strings hold NUL; the file
system and SQLite then fail deep inside a call with ValueError, UnicodeEncodeError or OSError (name too long),
which the CLI would show as a traceback. Checking here turns each into a one-line ``UserError``.
"""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Literal

from core.errors import UserError

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX: checked here because stat() reports a missing parent first
ROOT_ENV = "NEGSPACE_ROOT"
UPLOAD_ENV = "NEGSPACE_MAX_UPLOAD_MB"
DEFAULT_UPLOAD_MB = 200  # Streamlit's own default per file (server.maxUploadSize)


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


def configured_root(environ: Mapping[str, str] | None = None) -> Path | None:
    """The one folder a served app may read and write ($NEGSPACE_ROOT, resolved); None: not confined, as for one
    person on their own machine. A root that does not exist is refused rather than created."""
    value = (os.environ if environ is None else environ).get(ROOT_ENV)
    return user_path(value, f"${ROOT_ENV}", must_exist=True, kind="dir") if value else None


def confined_path(value: str | os.PathLike[str] | None, root: Path | None, what: str, must_exist: bool = False,
                  kind: Literal["file", "dir", "any"] = "any") -> Path:
    """``user_path`` for whatever a page lets people type, kept inside ``root`` when one is configured.

    Relative paths are taken from the root; an absolute one must lie inside it. A ``..`` component is refused
    outright (even one that would stay inside), and so is any path whose symbolic links lead out of the root, a
    dangling one included. Nothing is created here, and a refusal names only what was typed, never where a link
    points.
    """
    if root is None:
        return user_path(value, what, must_exist=must_exist, kind=kind)
    text = os.fspath(value) if value is not None else ""
    if not text.strip():
        raise UserError(f"{what}: empty path")
    if "\x00" in text:
        raise UserError(f"{what}: path contains a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise UserError(f"{what}: path longer than {MAX_PATH_CHARS} characters")
    if ".." in PurePosixPath(text).parts:
        raise UserError(f"{what}: {display(text)}: '..' is not allowed; give a path inside the server's folder")
    base = Path(root).resolve()
    try:
        target = Path(os.path.realpath(base / text))  # an absolute text replaces the base; links are followed
    except (OSError, ValueError) as exc:  # undecodable characters, a name the file system refuses
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"{what}: {display(text)}: {reason}") from None
    if not target.is_relative_to(base):
        raise UserError(f"{what}: {display(text)} leads outside the server's folder; give a path inside it")
    return user_path(target, what, must_exist=must_exist, kind=kind)


def max_upload_mb(environ: Mapping[str, str] | None = None) -> int:
    """The most megabytes one import may upload in all ($NEGSPACE_MAX_UPLOAD_MB, default 200): a served app's
    uploads land on the server's disk and in its memory."""
    raw = (os.environ if environ is None else environ).get(UPLOAD_ENV) or str(DEFAULT_UPLOAD_MB)
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"${UPLOAD_ENV} must be a whole number of megabytes, not {raw!r}")
    return int(raw)


def check_upload_size(sizes: list[int], environ: Mapping[str, str] | None = None) -> None:
    """Refuse uploads whose bytes add up to more than ``max_upload_mb``."""
    limit = max_upload_mb(environ)
    if sum(sizes) > limit * 2**20:
        raise UserError(f"the upload is {sum(sizes) / 2**20:.1f} MB; at most {limit} MB may be uploaded at once "
                        f"(${UPLOAD_ENV})")


def relative_to_root(text: str, root: Path | None) -> str:
    """A message or path with the server's root folder left out (``root/ws`` -> ``ws``, ``root`` -> ``.``), so a
    served page shows paths as its users may type them and nothing of the server's layout."""
    if root is None:
        return text
    base = re.escape(str(root))
    return re.sub(base + r"(?=$|[\s'\"),:;])", ".", re.sub(base + "/", "", text))


class DuplicateKey(ValueError):
    """A JSON object names the same key twice (``json`` would silently keep the last value); ``str`` is the key."""


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``object_pairs_hook`` for ``json``: the object, or ``DuplicateKey`` when a key is repeated, so an import
    never takes one of two contradicting values silently."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj
