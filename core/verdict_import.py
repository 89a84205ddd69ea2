"""Verdicts from files: our labels TSV and the annotation tools' exports, each one declaration.

Every format is read and checked whole (pairs the dataset has, known labels, storable names) into verdict events
before anything is written; ``core.labels.append_verdicts`` then appends them in one transaction, leaving out
those equal to the annotator's current verdict, so importing a file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core import argilla_dataset, label_studio
from core.errors import UserError
from core.validation import user_path

if TYPE_CHECKING:  # core.labels imports pandas; the CLI reads VERDICT_FORMATS for its help
    from core.labels import KnownIds, LabelImport
    from core.store import Store


@dataclass(frozen=True)
class VerdictFormat:
    """A verdict file format: its ``--from`` name, what it is, its reader (path, the dataset's ids, the fallback
    annotator → events) and whether it is a file or a folder."""

    name: str
    description: str
    read: Callable[[Path, KnownIds, str | None], list[dict]]
    kind: Literal["file", "any"] = "file"


def _read_tsv(path: Path, known: KnownIds, annotator: str | None) -> list[dict]:
    from core.labels import read_tsv

    return read_tsv(path, known, annotator)


VERDICT_FORMATS: dict[str, VerdictFormat] = {f.name: f for f in (
    VerdictFormat("tsv", "labels TSV (query-id, corpus-id, label[, annotator, note])", _read_tsv),
    VerdictFormat("label-studio", "Label Studio JSON export of a project made from export --format label-studio",
                  label_studio.read_export),
    VerdictFormat("argilla", "Argilla dataset folder (rg.Dataset.to_disk) of export --format argilla, with "
                             "responses", argilla_dataset.read_responses, "any"),
)}


def import_verdicts(store: Store, dataset: str, path: str | Path, fmt: str = "tsv",
                    annotator: str | None = None) -> LabelImport:
    """Read ``path`` as ``fmt`` against the dataset's ids, then append its verdicts (``annotator``: the name of
    rows or annotations that name none)."""
    from core.labels import append_verdicts, known_ids

    if fmt not in VERDICT_FORMATS:
        raise UserError(f"unknown verdict format {fmt!r} (use {', '.join(VERDICT_FORMATS)})")
    spec = VERDICT_FORMATS[fmt]
    path = user_path(path, "labels file", must_exist=True, kind=spec.kind)
    events = spec.read(path, known_ids(store, dataset), annotator)
    return append_verdicts(store, dataset, events, path)
