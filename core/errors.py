"""User-facing errors.

Every problem a user can cause (bad file, unknown run, bad option) is raised as a ``UserError`` so the CLI can
print one line and exit 2, and the app can show the message instead of a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for or gave us; the message is shown as-is."""


class DatasetError(UserError):
    """A problem inside an input file, located by file, line and field."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field, self.reason = str(file), line, field, message
        where = self.file if line is None else f"{self.file}:{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")
