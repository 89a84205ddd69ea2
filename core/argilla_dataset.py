"""Argilla 2.x round trip: a run's candidates out as an Argilla dataset on disk, its responses back as verdicts.

Out (``export --format argilla``): the folder ``rg.Dataset.to_disk`` writes and ``rg.Dataset.from_disk`` reads
(https://docs.argilla.io/latest/how_to_guides/import_export/#disk): ``.argilla/dataset.json`` (the dataset
model), ``.argilla/settings.json`` (``rg.Settings``: text fields ``query``, ``positives``, ``candidate``; one
label question ``verdict`` with false negative / true negative / unsure; metadata ``query_id`` and ``doc_id``
(terms, so the UI filters by query), ``rank`` (integer), ``score`` and ``margin`` (float, so it sorts by
them)) and ``records.json``, one record per (query, candidate): a label question per record rather than one
per candidate of a query, since a dataset's questions are fixed while queries have different numbers of
candidates.

Back (``labels import FOLDER --from argilla``): ``records.json`` of such a folder after the team answered
(``rg.Dataset.from_hub``/``from_disk`` on a server, then ``to_disk``): each record's
``responses.verdict`` lists ``{"value", "user_id"}``. The layout keeps neither user names nor response times,
so a verdict's annotator is ``argilla:<user id>`` and its time the import's; a response without a value
(discarded) or with a ``status`` other than submitted is not a verdict (``to_disk`` drops the status, so a
draft with a value reads as submitted). Every value is checked before anything is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DatasetError
from core.review_exchange import Place, get, json_array, person, review_queries, text, verdict, write_json

if TYPE_CHECKING:
    from core.labels import KnownIds
    from core.selection import TrainingData
    from core.store import Store

RECORDS = "records.json"
CONFIG_DIR = ".argilla"
QUESTION = "verdict"
USER_PREFIX = "argilla:"
LABELS = {"false_negative": "false negative", "true_negative": "true negative", "unsure": "unsure"}


def _field(name: str, title: str) -> dict:
    return {"id": None, "inserted_at": None, "updated_at": None, "name": name, "title": title, "required": True,
            "description": None, "dataset_id": None, "type": "text",
            "settings": {"type": "text", "use_markdown": False}}


def _metadata(name: str, kind: str) -> dict:
    bounds = {"values": None} if kind == "terms" else {"min": None, "max": None}
    return {"id": None, "inserted_at": None, "updated_at": None, "name": name, "title": name,
            "visible_for_annotators": True, "dataset_id": None,
            "settings": {"visible_for_annotators": True, "type": kind, **bounds}}


GUIDELINES = ("Each record is one candidate negative of a query. Answer **false negative** when the candidate "
              "answers the query as well as its labelled positives do, **true negative** when it does not, "
              "**unsure** when you cannot tell.")
DISTRIBUTION = {"strategy": "overlap", "min_submitted": 1}
SETTINGS = {
    "guidelines": GUIDELINES,
    "fields": [_field("query", "Query"), _field("positives", "Labelled positives"),
               _field("candidate", "Candidate")],
    "questions": [{"id": None, "inserted_at": None, "updated_at": None, "name": QUESTION,
                   "title": "Is the candidate a false negative?", "description": None, "required": True,
                   "dataset_id": None, "type": "label_selection",
                   "settings": {"type": "label_selection", "visible_options": len(LABELS),
                                "options": [{"value": value, "text": shown} for value, shown in LABELS.items()]}}],
    "vectors": [],
    "metadata": [_metadata("query_id", "terms"), _metadata("doc_id", "terms"), _metadata("rank", "integer"),
                 _metadata("score", "float"), _metadata("margin", "float")],
    "allow_extra_metadata": False,
    "distribution": DISTRIBUTION,
    "mapping": None,
}


def write_dataset(store: Store, td: TrainingData, folder: Path, n_negatives: int) -> dict:
    """The ``rg.Dataset.to_disk`` layout of a run's candidates: the export format ``argilla`` (core.export)."""
    records = []
    for q in review_queries(store, td):
        positives = "\n\n".join(q.positives)
        for c in q.candidates:
            records.append({"id": json.dumps([q.query_id, c.doc_id], ensure_ascii=False),
                            "fields": {"query": q.query, "positives": positives, "candidate": c.text},
                            "metadata": {"query_id": q.query_id, "doc_id": c.doc_id, "rank": c.rank,
                                         "score": c.score, "margin": c.margin},
                            "suggestions": {}, "responses": {}, "vectors": {}, "status": "pending",
                            "_server_id": None})
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", f"negspace-{td.run['run_id']}")[:200]
    (folder / CONFIG_DIR).mkdir()
    write_json(folder / CONFIG_DIR / "dataset.json",
               {"id": None, "inserted_at": None, "updated_at": None, "name": name, "status": "draft",
                "guidelines": GUIDELINES, "allow_extra_metadata": False, "distribution": DISTRIBUTION,
                "workspace_id": None, "last_activity_at": None})
    write_json(folder / CONFIG_DIR / "settings.json", SETTINGS)
    write_json(folder / RECORDS, records)
    return {"rows": len(records), "queries": len({r["metadata"]["query_id"] for r in records})}


def read_responses(path: Path, known: KnownIds, annotator: str | None = None) -> list[dict]:
    """The verdict events of the answered records of an Argilla dataset folder (or its ``records.json``), in file
    order. ``annotator`` is not used: every response names its user."""
    records = path / RECORDS if path.is_dir() else path
    if not records.is_file():
        raise DatasetError(path, None, None, f"no {RECORDS} (expected a folder written by rg.Dataset.to_disk)")
    events = []
    for line, name, record in json_array(records, "records"):
        place = Place(records, line, name)
        metadata = get(record, "metadata", place, dict)
        at_meta = place.at("metadata")
        query = (text(metadata, "query_id", at_meta), at_meta.at("query_id"))
        doc = (text(metadata, "doc_id", at_meta), at_meta.at("doc_id"))
        responses = get(record, "responses", place, dict, required=False) or {}
        for question in responses:
            if question != QUESTION:
                raise place.at("responses").at(question).error(f"unknown question (the dataset asks {QUESTION!r})")
        at = place.at("responses").at(QUESTION)
        for i, response in enumerate(get(responses, QUESTION, place.at("responses"), list, required=False) or []):
            who = person(USER_PREFIX + text(response, "user_id", at.at(i)), at.at(i).at("user_id"))
            status = get(response, "status", at.at(i), str, required=False)
            value = get(response, "value", at.at(i), str, required=False)
            if value is None or status not in (None, "submitted"):
                continue
            events.append(verdict(known, query, doc, who, value, at.at(i).at("value")))
    if not events:
        raise DatasetError(records, None, None, f"no submitted response to {QUESTION!r}")
    return events
