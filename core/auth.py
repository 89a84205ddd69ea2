"""The optional shared password for the app: where it is configured and how a guess is checked.

Kept free of Streamlit so the rule is testable on its own; ``app.py`` only draws the prompt.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

PASSWORD_ENV = "NEGSPACE_PASSWORD"
PASSWORD_SECRET = "password"


def configured_password(environ: Mapping[str, str] | None = None,
                        secrets: Mapping[str, object] | None = None) -> str | None:
    """The password the app must ask for: $NEGSPACE_PASSWORD first, then the ``password`` secret; None = open.

    An empty value counts as not set, so exporting an empty variable never locks everyone out with "".
    """
    environ = os.environ if environ is None else environ
    value = environ.get(PASSWORD_ENV) or (secrets or {}).get(PASSWORD_SECRET)
    return str(value) if value else None


def check_password(given: str | None, expected: str) -> bool:
    """Constant-time comparison of UTF-8 bytes, so response time leaks nothing about the password."""
    return hmac.compare_digest((given or "").encode("utf-8"), expected.encode("utf-8"))
