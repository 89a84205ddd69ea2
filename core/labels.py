"""Verdicts on candidates: an append-only event log with undo, TSV import/export and the resolved verdict.

Verdicts are keyed by (dataset, query, document), not by run, so they survive re-mining. An annotator's current
verdict is their latest event that has not been undone; undo is itself an event, so history is never lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Container
from typing import TYPE_CHECKING

import pandas as pd

from core import audit
from core.datasets import lines as split_lines
from core.datasets import read_text
from core.errors import DatasetError, UserError
from core.lookups import require_dataset
from core.validation import check_name, user_path

if TYPE_CHECKING:
    from core.jobs import Job
    from core.store import Store

LABELS = ("false_negative", "true_negative", "unsure")
LABEL_ALIASES = {"fn": "false_negative", "false-negative": "false_negative", "tn": "true_negative",
                 "true-negative": "true_negative", "?": "unsure"}
TSV_COLUMNS = ["query-id", "corpus-id", "label", "annotator", "note"]
# When annotators disagree and nobody adjudicated, the cautious label wins: dropping a negative costs little,
# training on a false negative pushes a relevant document away.
CAUTION_ORDER = {"false_negative": 0, "unsure": 1, "true_negative": 2}
# An LLM judge (core.llm_judge) is one more annotator, named by this prefix and its model. Its verdicts are an
# opinion next to the people's: agreement statistics include it, but the resolved verdict (export, training,
# promotion, risk refits) leaves it out unless asked, and it neither decides nor spreads suggestions.
LLM_PREFIX = "llm:"


def check_annotator(name: str) -> str:
    """The name as given, or a UserError: surrounding spaces are refused, not stripped, so that one person's
    verdicts never end up under two names that look the same."""
    if not name or not name.strip() or len(name) > 100:
        raise UserError("annotator name must be 1-100 characters")
    return check_name(name, "annotator name")


def is_llm(annotator: str) -> bool:
    """Whether the annotator is an LLM judge (``llm:<model>``) rather than a person."""
    return annotator.startswith(LLM_PREFIX)


def normalise_label(label: str) -> str:
    value = LABEL_ALIASES.get(label.strip().lower(), label.strip().lower())
    if value not in LABELS:
        raise UserError(f"unknown label {label!r} (use {', '.join(LABELS)})")
    return value


def record(store: Store, dataset: str, query_id: str, doc_id: str, annotator: str, label: str, note: str = "",
           adjudication: bool = False) -> int:
    """Append one verdict and return its event id (closes open suggestions on the pair, see record_batch)."""
    return record_batch(store, dataset, [(query_id, doc_id)], annotator, label, note, adjudication)[0]


def record_batch(store: Store, dataset: str, pairs: list[tuple[str, str]], annotator: str, label: str, note: str = "",
                 adjudication: bool = False, guideline_version: int | None = None) -> list[int]:
    """Append the same verdict on several (query, doc) pairs as one batch in one transaction; returns event ids.

    A batch (e.g. a lasso selection on the map) is undone by a single ``undo``. Open suggestions on the judged
    pairs are closed: the person decided them directly. An LLM judge's verdicts are appended as plain events
    (never batched) and leave the suggestions open for a person. ``guideline_version``: the version of the
    dataset's guidelines (core.guidelines) the annotator saw, None when none was shown.
    """
    if not pairs:
        raise UserError("no candidates selected")
    who, value = check_annotator(annotator), normalise_label(label)
    kind = "adjudication" if adjudication else "verdict"
    append = store.add_events if is_llm(who) else store.add_verdicts
    return append([{"dataset": dataset, "query_id": q, "doc_id": d, "annotator": who, "label": value,
                    "note": note or "", "kind": kind, "guideline_version": guideline_version}
                   for q, d in dict.fromkeys(pairs)])


def undo(store: Store, dataset: str, annotator: str, query_id: str | None = None,
         doc_id: str | None = None) -> list[dict]:
    """Undo the annotator's latest still-active verdict (optionally on one pair) and, when it was given as part
    of a batch, every still-active verdict of that batch; returns the undone events, latest first (empty when
    there is nothing to undo)."""
    events = store.events(dataset, check_annotator(annotator))
    active = _active(events)
    if query_id is not None:
        mine = active[(active["query_id"] == query_id) & ((doc_id is None) | (active["doc_id"] == doc_id))]
    else:
        mine = active
    if mine.empty:
        return []
    target = mine.sort_values("id").iloc[-1]
    if pd.notna(target["batch"]) and query_id is None:
        targets = active[active["batch"] == target["batch"]].sort_values("id", ascending=False)
    else:
        targets = mine.sort_values("id").tail(1)
    records = targets.to_dict("records")
    store.undo_events(records, annotator)
    return records


def _active(events: pd.DataFrame) -> pd.DataFrame:
    """Verdict events that no undo event points at."""
    undone = set(events.loc[events["kind"] == "undo", "undoes"].dropna().astype(int))
    return events[(events["kind"] != "undo") & ~events["id"].isin(undone)]


def current(store: Store, dataset: str, annotator: str | None = None, kind: str | None = None) -> pd.DataFrame:
    """Each annotator's current verdict per (query, doc): columns query_id, doc_id, annotator, label, note, ...

    ``kind='verdict'`` ignores adjudications, so an adjudicator's own independent verdict (what agreement
    statistics need) is not hidden by the final verdict they later recorded on the same pair.
    """
    events = store.events(dataset, annotator)
    active = _active(events)
    if kind is not None:
        active = active[active["kind"] == kind]
    active = active.sort_values("id")
    return active.drop_duplicates(["annotator", "query_id", "doc_id"], keep="last").reset_index(drop=True)


def resolved(store: Store, dataset: str, llm: bool = False) -> pd.DataFrame:
    """One verdict per (query, doc): the latest adjudication if any, else the cautious majority.

    Columns: query_id, doc_id, label, annotators (how many judged it), source ('adjudicated' | 'consensus').
    ``llm``: count LLM judges' verdicts as votes too; by default only people's verdicts decide, so a pair only
    an LLM judged stays unjudged here.
    """
    verdicts = current(store, dataset)
    if not llm:
        verdicts = verdicts[~verdicts["annotator"].map(is_llm).astype(bool)]
    columns = ["query_id", "doc_id", "label", "annotators", "source"]
    if verdicts.empty:
        return pd.DataFrame(columns=columns)
    pair = ["query_id", "doc_id"]
    votes = verdicts.groupby(pair + ["label"], sort=False).size().reset_index(name="votes")
    votes["caution"] = votes["label"].map(CAUTION_ORDER)
    majority = votes.sort_values(["votes", "caution"], ascending=[False, True]).drop_duplicates(pair)
    majority = majority[pair + ["label"]].assign(source="consensus")
    adjudicated = verdicts[verdicts["kind"] == "adjudication"].sort_values("id").drop_duplicates(pair, keep="last")
    adjudicated = adjudicated[pair + ["label"]].assign(source="adjudicated")
    merged = pd.concat([adjudicated, majority]).drop_duplicates(pair, keep="first")
    counts = verdicts.groupby(pair, sort=False).size().rename("annotators").reset_index()
    return merged.merge(counts, on=pair)[columns].reset_index(drop=True)


def _require_dataset(store: Store, dataset: str) -> None:
    require_dataset(store, check_name(dataset, "dataset name"))


# Labels TSV fields are backslash-escaped (as PostgreSQL's text format and "linear TSV" do), so that any id or
# note fits one line and one column and reads back exactly; no quoting. \" is read as " because the earlier,
# csv-module exporter wrote a quote that way.
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", '"': '"'}
_TO_ESCAPE = re.compile(r"[\\\t\n\r]")
_ESCAPED = re.compile(r"\\(.?)", re.DOTALL)


def escape_field(value: str) -> str:
    return _TO_ESCAPE.sub(lambda m: _ESCAPES[m.group()], value)


def unescape_field(value: str) -> str:
    """The text of one escaped field; ValueError for a backslash that starts no known escape."""
    def one(match: re.Match) -> str:
        char = match.group(1)
        if char not in _UNESCAPES:
            raise ValueError(f"unknown escape \\{char} (a backslash is written \\\\)" if char else
                             "a backslash at the end of the field (a backslash is written \\\\)")
        return _UNESCAPES[char]
    return _ESCAPED.sub(one, value)


@dataclass
class LabelImport:
    """What a labels import did: rows appended as events, and rows equal to the annotator's current verdict."""

    dataset: str
    added: int
    unchanged: int

    def summary(self) -> str:
        return f"imported {self.added} new verdicts into {self.dataset!r} ({self.unchanged} unchanged)"


@dataclass(frozen=True)
class KnownIds:
    """A dataset's query and document ids, against which every imported verdict's pair is checked before
    anything is written (a verdict on a pair the dataset lacks could never be shown or exported)."""

    dataset: str
    queries: Container[str]
    docs: Container[str]


def known_ids(store: Store, dataset: str) -> KnownIds:
    _require_dataset(store, dataset)
    return KnownIds(dataset, set(store.queries(dataset)["query_id"]), set(store.documents(dataset)["doc_id"]))


def import_tsv(store: Store, dataset: str, path: str | Path, annotator: str | None = None) -> LabelImport:
    """Validate a whole labels TSV, then append its verdicts in one transaction (``import_verdicts`` with
    format ``tsv``)."""
    from core.verdict_import import import_verdicts

    return import_verdicts(store, dataset, path, "tsv", annotator)


def import_verdicts_job(store: Store, dataset: str, path: str | Path, fmt: str = "tsv", annotator: str | None = None,
                        upload: Path | None = None) -> Job:
    """``core.verdict_import.import_verdicts`` as a ``core.datasets.import_job`` (``Job.result`` is its
    ``LabelImport``): a large project's export takes a while to check, which a click on the page would otherwise
    stop half-way. No role is checked, as the import itself checks none."""
    from core.datasets import import_job
    from core.verdict_import import import_verdicts

    return import_job(f"verdicts:{dataset}", None, upload,
                      lambda: import_verdicts(store, dataset, path, fmt, annotator))


def read_tsv(path: Path, known: KnownIds, annotator: str | None = None) -> list[dict]:
    """The verdict events of a labels TSV (query-id, corpus-id, label[, annotator, note]), every row checked;
    ``annotator`` names the rows that name none."""
    lines = split_lines(read_text(path))
    if not lines or not lines[0].strip():
        raise DatasetError(path, 1, None, "file is empty (expected header query-id, corpus-id, label)")
    header = [h.strip().lower() for h in lines[0].split("\t")]
    for position, name in enumerate(header):
        if name in header[:position]:
            raise DatasetError(path, 1, name, "duplicate column")
    for needed in ("query-id", "corpus-id", "label"):
        if needed not in header:
            raise DatasetError(path, 1, needed, f"missing column (header is {header})")
    col = {name: header.index(name) for name in TSV_COLUMNS if name in header}
    events = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) > len(header):
            raise DatasetError(path, number, None, f"{len(cells)} columns, header has {len(header)}")
        cells += [""] * (len(header) - len(cells))
        parts = []
        for name, cell in zip(header, cells):
            try:
                parts.append(unescape_field(cell))
            except ValueError as exc:
                raise DatasetError(path, number, name, str(exc)) from None
        query_id, doc_id = parts[col["query-id"]].strip(), parts[col["corpus-id"]].strip()
        check_pair(known, query_id, doc_id, path, number, ("query-id", "corpus-id"))
        try:
            label = normalise_label(parts[col["label"]])
        except UserError as exc:
            raise DatasetError(path, number, "label", str(exc)) from None
        who = (parts[col["annotator"]] if "annotator" in col else "") or annotator
        if not who:
            raise DatasetError(path, number, "annotator", "empty; pass --annotator NAME for rows without one")
        try:
            who = check_annotator(who)
        except UserError as exc:
            raise DatasetError(path, number, "annotator", str(exc)) from None
        note = parts[col["note"]] if "note" in col else ""
        events.append({"dataset": known.dataset, "query_id": query_id, "doc_id": doc_id, "annotator": who,
                       "label": label, "note": note})
    if not events:
        raise DatasetError(path, None, None, "no label rows")
    return events


def check_pair(known: KnownIds, query_id: str, doc_id: str, path: Path, line: int | None,
               fields: tuple[str, str]) -> None:
    """Refuse a verdict on a query or document the dataset lacks, naming the file's field for each."""
    if query_id not in known.queries:
        raise DatasetError(path, line, fields[0], f"unknown query id {query_id!r} in dataset {known.dataset!r}")
    if doc_id not in known.docs:
        raise DatasetError(path, line, fields[1], f"unknown corpus id {doc_id!r} in dataset {known.dataset!r}")


def append_verdicts(store: Store, dataset: str, events: list[dict], source: Path) -> LabelImport:
    """Append validated verdict events read from ``source`` in one transaction. An event equal to that
    annotator's current verdict on the pair (same label and note) adds nothing, so importing the same file (or
    an export) again changes nothing; events are taken in the order given (oldest first, so the latest becomes
    the current verdict)."""
    def write(conn) -> LabelImport:
        # Compared with the current verdicts inside the write transaction, so a concurrent import of the same
        # file cannot slip its copies in between.
        latest = {(r.annotator, r.query_id, r.doc_id): (r.label, r.note)
                  for r in current(store, dataset).itertuples(index=False)}
        added = 0
        for event in events:
            key = (event["annotator"], event["query_id"], event["doc_id"])
            if latest.get(key) != (event["label"], event["note"]):
                latest[key] = (event["label"], event["note"])
                store.insert_verdict(conn, event)
                added += 1
        return LabelImport(dataset, added, len(events) - added)
    result = store.write(write)
    if result.added:  # importing the same file again changes nothing, the audit log included
        audit.record(store, "labels import", dataset, source=str(source), added=result.added,
                     unchanged=result.unchanged)
    return result


def export_tsv(store: Store, dataset: str, out: str | Path, history: bool = False) -> int:
    """Write current verdicts (or, with ``history``, every event incl. undos) as TSV; returns rows written."""
    from core.files import atomic_write_text

    out = user_path(out, "--out", kind="file", create_parent=True)
    _require_dataset(store, dataset)
    frame = store.events(dataset) if history else current(store, dataset)
    columns = TSV_COLUMNS + (["id", "kind", "undoes", "created_at"] if history else [])
    rows = ["\t".join(columns)]
    for row in frame.itertuples(index=False):
        values = [row.query_id, row.doc_id, row.label or "", row.annotator, row.note or ""]
        if history:
            values += [row.id, row.kind, "" if pd.isna(row.undoes) else int(row.undoes), row.created_at]
        rows.append("\t".join(escape_field(str(value)) for value in values))
    try:
        atomic_write_text(out, "".join(row + "\n" for row in rows))
    except OSError as exc:  # disk full, no permission, a name the file system refuses
        raise UserError(f"--out: cannot write {out} ({exc.strerror})") from None
    return len(frame)
