"""Annotation guidelines: one text per dataset, edited by admins, every save a new version.

Annotators judge by rules ("a paraphrase of the positive is a false negative; a document that only mentions the
topic is not"); written down beside the Review screen, they are what makes two people's verdicts comparable. Each
verdict records the version its annotator saw (``label_events.guideline_version``; NULL without guidelines), so
a changed rule can be traced to the verdicts given before and after it.

The text is markdown shown by the app, but never as HTML: ``safe_markdown`` escapes every ``<`` and ``>`` (so no
tag, comment or autolink survives) and turns images into links (no request leaves the annotator's browser
for a picture); Streamlit renders the rest without ``unsafe_allow_html``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import audit, roles
from core.errors import UserError
from core.lookups import require_dataset

if TYPE_CHECKING:
    from core.store import Store

MAX_CHARS = 100_000  # about 30 printed pages: guidelines longer than that are not read beside a verdict
_IMAGE = re.compile(r"!(?=\[)")


@dataclass(frozen=True)
class Guideline:
    dataset: str
    version: int
    text: str
    created_at: str
    created_by: str


def save(store: Store, dataset: str, text: str) -> tuple[Guideline, bool]:
    """Save ``text`` as the dataset's next version (unchanged text adds none); returns it and whether it is new.
    Admins only."""
    roles.require(roles.GUIDELINES)
    require_dataset(store, dataset)
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise UserError("the guidelines are empty; write the rules annotators should follow")
    if len(text) > MAX_CHARS:
        raise UserError(f"the guidelines are {len(text):,} characters; at most {MAX_CHARS:,}")
    if "\x00" in text:
        raise UserError("the guidelines contain a NUL character")
    version, new = store.add_guideline(dataset, text, audit.who())
    if new:
        audit.record(store, "guidelines", dataset, version=version, characters=len(text))
    return latest(store, dataset, version), new


def read_file(path: str | Path) -> str:
    """A guidelines file's text (UTF-8), for ``guidelines set --file``."""
    from core.datasets import read_text
    from core.validation import user_path

    return read_text(user_path(path, "--file", must_exist=True, kind="file"))


def latest(store: Store, dataset: str, version: int | None = None) -> Guideline | None:
    """The dataset's guidelines (a given ``version``, else the newest), or None when there are none."""
    row = store.guideline(dataset, version)
    return Guideline(**row) if row else None


def versions(store: Store, dataset: str) -> list[dict]:
    """Every version's number, time, author and length, newest first."""
    return store.guideline_versions(dataset)


def safe_markdown(text: str) -> str:
    """Markdown that renders no HTML and loads no image: ``&``, ``<`` and ``>`` become entities (shown as the
    characters themselves), and the ``!`` of an image ``![alt](url)`` is escaped, leaving the link ``[alt](url)``."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _IMAGE.sub(r"\\!", escaped)
