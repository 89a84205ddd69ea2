"""Label Studio round trip: a run's candidates out as Label Studio tasks, the project's annotations back as
verdicts with each annotator's name and time.

Out (``export --format label-studio``): ``tasks.json``, one task per query (Label Studio's task format,
https://labelstud.io/guide/task_format: ``{"data": {...}}``) holding the query, its labelled positives and its
candidates to judge, and ``label_config.xml``, the labeling configuration to create the project with
(https://labelstud.io/tags/repeater: a ``Repeater`` over the task's candidates gives each candidate its own
``Choices`` control ``verdict_<i>``, false negative / true negative / unsure).

Back (``labels import FILE --from label-studio``): the project's JSON export
(https://labelstud.io/guide/export#JSON), a JSON array of tasks with their ``annotations``. Each annotation's
``result`` items name the control (``from_name`` ``verdict_<i>``: the task's i-th candidate) and the chosen
label; its author is ``completed_by`` (the user object with ``email`` when the export expands it, as the export
snapshot API's ``serialization_options.annotations__completed_by.only_id = false`` does; a bare user id
otherwise, imported as ``label-studio:<id>``), its time ``updated_at`` (else ``created_at``). Skipped
annotations (``was_cancelled``) and drafts are not verdicts. Every value is checked before anything is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DatasetError
from core.review_exchange import Place, get, json_array, person, review_queries, text, timestamp, verdict, write_json

if TYPE_CHECKING:
    from core.labels import KnownIds
    from core.selection import TrainingData
    from core.store import Store

TASKS = "tasks.json"
CONFIG = "label_config.xml"
CONTROL = "verdict_{{idx}}"  # the Choices control of the Repeater: verdict_0, verdict_1, … per task
_CONTROL = re.compile(r"verdict_(0|[1-9][0-9]{0,8})")
USER_ID_PREFIX = "label-studio:"  # annotators an export names by user id only

LABEL_CONFIG = f"""<View>
  <Header value="Query"/>
  <Text name="query" value="$query"/>
  <Header value="Labelled positives" size="5"/>
  <Text name="positives" value="$positives"/>
  <Header value="Is each candidate a false negative (it answers the query as a positive does)?" size="5"/>
  <Repeater on="$candidates" indexFlag="{{{{idx}}}}">
    <Header value="$candidates[{{{{idx}}}}].heading" size="6"/>
    <Text name="candidate_{{{{idx}}}}" value="$candidates[{{{{idx}}}}].text"/>
    <Choices name="{CONTROL}" toName="candidate_{{{{idx}}}}" choice="single" showInline="true">
      <Choice value="false negative" alias="false_negative"/>
      <Choice value="true negative" alias="true_negative"/>
      <Choice value="unsure" alias="unsure"/>
    </Choices>
  </Repeater>
</View>
"""


def write_tasks(store: Store, td: TrainingData, folder: Path, n_negatives: int) -> dict:
    """``tasks.json`` and ``label_config.xml``: the export format ``label-studio`` (core.export)."""
    tasks = [{"data": {"dataset": td.run["dataset"], "run_id": td.run["run_id"], "query_id": q.query_id,
                       "query": q.query, "positives": "\n\n".join(q.positives),
                       "candidates": [{"doc_id": c.doc_id, "text": c.text, "heading": c.heading(), "rank": c.rank,
                                       "score": c.score, "margin": c.margin} for c in q.candidates]}}
             for q in review_queries(store, td)]
    write_json(folder / TASKS, tasks)
    (folder / CONFIG).write_text(LABEL_CONFIG, encoding="utf-8")
    return {"rows": len(tasks), "queries": len(tasks), "candidates": sum(len(t["data"]["candidates"]) for t in tasks)}


def read_export(path: Path, known: KnownIds, annotator: str | None = None) -> list[dict]:
    """The verdict events of a Label Studio JSON export of a project made from ``write_tasks`` output, oldest
    first; ``annotator`` names annotations without ``completed_by``."""
    events = []
    for line, name, task in json_array(path, "tasks"):
        place = Place(path, line, name)
        data = get(task, "data", place, dict)
        at_data = place.at("data")
        if "dataset" in data and text(data, "dataset", at_data) != known.dataset:
            raise at_data.at("dataset").error(f"tasks of dataset {data['dataset']!r}, not {known.dataset!r}")
        query = (text(data, "query_id", at_data), at_data.at("query_id"))
        candidates = get(data, "candidates", at_data, list)
        docs = [(text(c, "doc_id", at_data.at("candidates").at(i)), at_data.at("candidates").at(i).at("doc_id"))
                for i, c in enumerate(candidates)]
        for j, annotation in enumerate(get(task, "annotations", place, list, required=False) or []):
            events.extend(_verdicts(known, annotation, place.at("annotations").at(j), query, docs, annotator))
    if not events:
        raise DatasetError(path, None, None, "no annotation with a verdict (skipped annotations are left out)")
    return sorted(events, key=lambda event: event["created_at"])


def _verdicts(known: KnownIds, annotation: object, place: Place, query: tuple[str, Place],
              docs: list[tuple[str, Place]], annotator: str | None) -> list[dict]:
    if get(annotation, "was_cancelled", place, bool, required=False):
        return []
    who = _author(annotation, place, annotator)
    key = "updated_at" if get(annotation, "updated_at", place, str, required=False) is not None else "created_at"
    when = timestamp(get(annotation, key, place, str), place.at(key))
    events, judged = [], set()
    for k, result in enumerate(get(annotation, "result", place, list)):
        at = place.at("result").at(k)
        control = text(result, "from_name", at)
        match = _CONTROL.fullmatch(control)
        if match is None:
            raise at.at("from_name").error(f"unknown control {control!r} (the labeling config's controls are "
                                           f"verdict_0 … verdict_<n>, one per candidate)")
        index = int(match.group(1))
        if index >= len(docs):
            raise at.at("from_name").error(f"control {control!r}, but the task has {len(docs)} candidate(s)")
        if index in judged:
            raise at.at("from_name").error(f"a second result for {control!r} in one annotation")
        judged.add(index)
        choices = get(get(result, "value", at, dict), "choices", at.at("value"), list)
        if len(choices) != 1:
            raise at.at("value").at("choices").error(f"expected one choice, got {len(choices)}")
        events.append(verdict(known, query, docs[index], who, choices[0], at.at("value").at("choices").at(0), when))
    return events


def _author(annotation: object, place: Place, annotator: str | None) -> str:
    """``completed_by``: a user object's email, a bare user id as ``label-studio:<id>``, or the fallback."""
    author = get(annotation, "completed_by", place, (dict, int), required=False)
    if isinstance(author, dict):
        return person(text(author, "email", place.at("completed_by")), place.at("completed_by").at("email"))
    if author is not None:
        return person(f"{USER_ID_PREFIX}{author}", place.at("completed_by"))
    if annotator is None:
        raise place.at("completed_by").error("missing; pass --annotator NAME for annotations without one")
    return person(annotator, place.at("completed_by"))
