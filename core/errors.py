"""User-facing errors.

Every problem a user can cause (bad file, unknown run, bad option) is raised as a ``UserError`` so the CLI can
print one line and exit 2, and the app can show the message instead of a traceback. The machine failing under us
(disk full, read-only file system, a damaged database) is reported the same way by ``environment_error``.
"""

from __future__ import annotations

import errno
import os
import sqlite3


class UserError(Exception):
    """A mistake in what the user asked for or gave us; the message is shown as-is."""


class DatasetError(UserError):
    """A problem inside an input file, located by file, line and field."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field, self.reason = str(file), line, field, message
        where = self.file if line is None else f"{self.file}:{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


# SQLite primary result codes (extended codes carry them in the low byte) and errnos that mean the file or its
# disk, not the program, is at fault.
_SQLITE_CAUSES = {
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_READONLY: "read-only (file system, permissions or a read-only mount)",
    sqlite3.SQLITE_PERM: "permission denied",
    sqlite3.SQLITE_CANTOPEN: "cannot open the database file",
    sqlite3.SQLITE_IOERR: "input/output error (disk failing, full or gone)",
    sqlite3.SQLITE_CORRUPT: "damaged database (restore it from a backup)",
    sqlite3.SQLITE_NOTADB: "not a SQLite database (damaged? restore it from a backup)",
}
_ERRNO_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long",
}


def environment_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> UserError | None:
    """The one-line ``UserError`` for ``exc`` when it is the machine failing (disk full, read-only, damaged
    database) rather than a bug, naming ``path`` (default: the file the OSError names); None otherwise.

    Follows ``__cause__`` so a SQLite error wrapped by pandas is recognised too.
    """
    from core.validation import display  # validation imports this module

    seen: BaseException | None = exc
    while seen is not None:
        cause = None
        if isinstance(seen, sqlite3.Error) and getattr(seen, "sqlite_errorcode", None) is not None:
            code = seen.sqlite_errorcode & 0xFF
            cause = _SQLITE_CAUSES.get(code)
            if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY) and path is not None \
                    and not os.access(os.path.dirname(os.fspath(path)) or ".", os.W_OK):
                cause = "read-only file system or folder"
        elif isinstance(seen, OSError):
            cause = _ERRNO_CAUSES.get(seen.errno)
            path = path if path is not None else seen.filename
        if cause is not None:
            return UserError(f"{display(os.fsdecode(path))}: {cause}" if path is not None else cause)
        seen = seen.__cause__
    return None
