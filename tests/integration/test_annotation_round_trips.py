"""Round trips with annotation tools, without their servers: a run out as Label Studio tasks and as an Argilla
dataset folder, annotations and responses back as verdicts (the real Label Studio server's round trip is
tests/integration/test_label_studio_server.py)."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from core import labels
from core.errors import DatasetError, UserError
from core.export import export
from core.verdict_import import import_verdicts
from core.workspace import open_workspace
from tests.cli_helpers import workspace_state


@pytest.fixture
def mined_ws(ws_root):
    """A private copy of the mined tiny workspace: (store, run id of the mined run)."""
    store = open_workspace(ws_root).store()
    yield store, store.runs()[0]["run_id"]
    store.close()


def kept_pairs(store, run_id: str) -> list[tuple[str, str]]:
    cands = store.candidates(run_id, with_signals=False, with_risk=False)
    return list(zip(cands[cands["kept"]]["query_id"], cands[cands["kept"]]["doc_id"]))


def annotate(tasks: list[dict], who: object, label_of, when: str) -> None:
    """Add one annotation per task as Label Studio's JSON export writes it (``completed_by`` a user object or id)."""
    for i, task in enumerate(tasks):
        task.setdefault("id", i + 1)
        result = [{"from_name": f"verdict_{k}", "to_name": f"candidate_{k}", "type": "choices",
                   "value": {"choices": [label_of(task["data"]["query_id"], c["doc_id"])]}}
                  for k, c in enumerate(task["data"]["candidates"])]
        task.setdefault("annotations", []).append({"id": len(task["annotations"]) + 1, "completed_by": who,
                                                   "result": result, "was_cancelled": False,
                                                   "created_at": when, "updated_at": when})


# -- Label Studio -------------------------------------------------------------------------------------------------
def test_label_studio_tasks_hold_every_kept_candidate_in_rank_order(mined_ws, tmp_path):
    store, run_id = mined_ws
    manifest = export(store, run_id, "label-studio", tmp_path / "ls", data="raw")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    listed = [(t["data"]["query_id"], c["doc_id"]) for t in tasks for c in t["data"]["candidates"]]
    assert listed == kept_pairs(store, run_id)
    assert manifest["rows"] == len(tasks) == len({q for q, _ in listed}) and manifest["candidates"] == len(listed)
    first = tasks[0]["data"]
    assert {"dataset", "run_id", "query", "positives"} <= first.keys() and first["dataset"] == "tiny"
    assert first["candidates"][0]["heading"].startswith("#1 · ")
    config = (tmp_path / "ls" / "label_config.xml").read_text()
    assert '<Repeater on="$candidates" indexFlag="{{idx}}">' in config and 'name="verdict_{{idx}}"' in config


def test_label_studio_annotations_come_back_with_annotator_and_time(mined_ws, tmp_path):
    store, run_id = mined_ws
    export(store, run_id, "label-studio", tmp_path / "ls", data="raw")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    annotate(tasks, {"id": 2, "email": "ana@example.org", "first_name": "", "last_name": ""},
             lambda q, d: "false_negative" if d.endswith("-dup") else "true_negative", "2024-05-01T10:00:00.123456Z")
    annotate(tasks, 7, lambda q, d: "unsure", "2024-05-02T10:00:00Z")
    tasks[0]["annotations"].append({"completed_by": 9, "was_cancelled": True, "result": [],
                                    "created_at": "2024-05-03T00:00:00Z"})
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    result = import_verdicts(store, "tiny", tmp_path / "export.json", "label-studio")
    pairs = kept_pairs(store, run_id)
    assert (result.added, result.unchanged) == (2 * len(pairs), 0)
    got = labels.current(store, "tiny")
    ana = got[got["annotator"] == "ana@example.org"]
    assert sorted(zip(ana["query_id"], ana["doc_id"])) == sorted(pairs)
    assert set(ana["created_at"]) == {"2024-05-01T10:00:00.123+00:00"}
    assert set(got[got["annotator"] == "label-studio:7"]["label"]) == {"unsure"}
    assert set(got["annotator"]) == {"ana@example.org", "label-studio:7"}  # the skipped annotation is no verdict
    before = workspace_state(store.path.parent)
    again = import_verdicts(store, "tiny", tmp_path / "export.json", "label-studio")
    assert (again.added, again.unchanged) == (0, 2 * len(pairs))
    assert workspace_state(store.path.parent) == before


def test_label_studio_later_annotation_of_one_person_wins(mined_ws, tmp_path):
    store, run_id = mined_ws
    export(store, run_id, "label-studio", tmp_path / "ls", data="raw")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())[:1]
    annotate(tasks, 3, lambda q, d: "unsure", "2024-06-01T00:00:00Z")  # later, yet listed first
    annotate(tasks, 3, lambda q, d: "true_negative", "2024-01-01T00:00:00+02:00")
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    import_verdicts(store, "tiny", tmp_path / "export.json", "label-studio")
    assert set(labels.current(store, "tiny")["label"]) == {"unsure"}


def ls_export(**changes) -> list[dict]:
    task = {"id": 1, "data": {"dataset": "tiny", "query_id": "q1", "candidates": [{"doc_id": "py-split"},
                                                                                  {"doc_id": "misc-1"}]},
            "annotations": [{"completed_by": {"email": "ana@example.org"}, "created_at": "2024-05-01T00:00:00Z",
                             "was_cancelled": False,
                             "result": [{"from_name": "verdict_1", "value": {"choices": ["false negative"]}}]}]}
    for path, value in changes.items():
        *parents, last = path.split("__")
        obj = task
        for key in parents:
            obj = obj[int(key)] if isinstance(obj, list) else obj[key]
        obj[int(last) if isinstance(obj, list) else last] = value
    return [task]


@pytest.mark.parametrize("changes, field", [
    ({"data__query_id": "q99"}, "tasks[0].data.query_id"),
    ({"data__candidates__1__doc_id": "nope"}, "tasks[0].data.candidates[1].doc_id"),
    ({"data__dataset": "other"}, "tasks[0].data.dataset"),
    ({"data__candidates": "x"}, "tasks[0].data.candidates"),
    ({"annotations__0__result__0__from_name": "verdict_2"}, "tasks[0].annotations[0].result[0].from_name"),
    ({"annotations__0__result__0__from_name": "note"}, "tasks[0].annotations[0].result[0].from_name"),
    ({"annotations__0__result__0__value": {"choices": ["maybe"]}},
     "tasks[0].annotations[0].result[0].value.choices[0]"),
    ({"annotations__0__result__0__value": {"choices": []}}, "tasks[0].annotations[0].result[0].value.choices"),
    ({"annotations__0__completed_by": {"id": 3}}, "tasks[0].annotations[0].completed_by.email"),
    ({"annotations__0__completed_by": True}, "tasks[0].annotations[0].completed_by"),
    ({"annotations__0__created_at": "yesterday"}, "tasks[0].annotations[0].created_at"),
])
def test_bad_label_studio_exports_name_line_and_field_and_change_nothing(mined_ws, tmp_path, changes, field):
    store, _ = mined_ws
    path = tmp_path / "export.json"
    path.write_text(json.dumps(ls_export(**changes), indent=1))
    before = workspace_state(store.path.parent)
    with pytest.raises(DatasetError) as err:
        import_verdicts(store, "tiny", path, "label-studio")
    assert (err.value.line, err.value.field) == (2, field), str(err.value)
    assert workspace_state(store.path.parent) == before


def test_label_studio_export_without_author_takes_the_annotator_option(mined_ws, tmp_path):
    store, _ = mined_ws
    tasks = ls_export()
    del tasks[0]["annotations"][0]["completed_by"]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    with pytest.raises(DatasetError, match="pass --annotator"):
        import_verdicts(store, "tiny", tmp_path / "e.json", "label-studio")
    assert import_verdicts(store, "tiny", tmp_path / "e.json", "label-studio", annotator="bo").added == 1
    assert labels.current(store, "tiny")[["annotator", "doc_id", "label"]].values.tolist() == [
        ["bo", "misc-1", "false_negative"]]


# -- Argilla ------------------------------------------------------------------------------------------------------
NOW = "2024-01-01T00:00:00"


class FakeArgilla:
    """The routes of an Argilla 2.x server that ``rg.Dataset.from_disk`` and ``to_disk`` call, in memory, as an
    ``httpx`` transport: each created resource comes back with an id, the records the SDK upserts are kept (for
    the test to answer), and listed back. It checks nothing a real server would (names, types, values)."""

    def __init__(self) -> None:
        self.workspace = {"id": str(uuid.uuid4()), "name": "argilla", "inserted_at": NOW, "updated_at": NOW}
        self.datasets: dict[str, dict] = {}
        self.settings: dict[str, list[dict]] = {"fields": [], "questions": [], "metadata-properties": []}
        self.records: list[dict] = []

    @staticmethod
    def _created(body: dict, **extra: object) -> dict:
        return {**body, "id": str(uuid.uuid4()), "inserted_at": NOW, "updated_at": NOW, **extra}

    def __call__(self, request):
        import httpx

        path, method = request.url.path, request.method
        body = json.loads(request.content) if request.content else None
        if path == "/api/v1/me":
            return httpx.Response(200, json=self._created({"username": "owner", "role": "owner"}))
        if path == "/api/v1/me/workspaces":
            return httpx.Response(200, json={"items": [self.workspace]})
        if path == f"/api/v1/workspaces/{self.workspace['id']}":
            return httpx.Response(200, json=self.workspace)
        if path == "/api/v1/me/datasets":
            return httpx.Response(200, json={"items": list(self.datasets.values())})
        if path == "/api/v1/datasets" and method == "POST":
            dataset = self._created(body, status="draft")
            self.datasets[dataset["id"]] = dataset
            return httpx.Response(201, json=dataset)
        match = re.fullmatch(r"/api/v1/(?:me/)?datasets/([^/]+)(?:/(.+))?", path)
        dataset_id, rest = match.groups() if match else (None, None)
        if match and rest is None and method in ("GET", "PATCH"):
            self.datasets[dataset_id].update(body or {})
            return httpx.Response(200, json=self.datasets[dataset_id])
        if match and rest == "publish":
            self.datasets[dataset_id]["status"] = "ready"
            return httpx.Response(200, json=self.datasets[dataset_id])
        if match and rest in self.settings:
            if method == "POST":
                self.settings[rest].append(self._created(body, dataset_id=dataset_id))
                return httpx.Response(201, json=self.settings[rest][-1])
            return httpx.Response(200, json={"items": self.settings[rest]})
        if match and rest == "vectors-settings":
            return httpx.Response(200, json={"items": []})
        if match and rest == "records/bulk" and method == "PUT":
            created = [self._created(record, dataset_id=dataset_id) for record in body["items"]]
            self.records.extend(created)
            return httpx.Response(200, json={"items": created, "updated_item_ids": []})
        if match and rest == "records" and method == "GET":
            offset, limit = int(request.url.params.get("offset", 0)), int(request.url.params.get("limit", 100))
            return httpx.Response(200, json={"items": self.records[offset:offset + limit], "total": len(self.records)})
        return httpx.Response(404, json={"detail": f"{method} {path}: not a route of this fake"})


def argilla_client(rg, fake: FakeArgilla):
    import httpx

    return rg.Argilla(api_url="http://argilla.invalid", api_key="test", mounts={"all://": httpx.MockTransport(fake)})


def test_argilla_round_trip_through_the_sdk(mined_ws, tmp_path):
    """Our folder through the Argilla SDK, a fake server in place of Argilla's: ``rg.Dataset.from_disk`` creates the
    dataset (settings validated by the SDK, each record converted to what it uploads), the fake records two users'
    responses (one discarded), ``Dataset.to_disk`` writes them back, and they import as verdicts of
    ``argilla:<user id>``. A real server's checks of names, types and values are not exercised."""
    rg = pytest.importorskip("argilla")
    store, run_id = mined_ws
    manifest = export(store, run_id, "argilla", tmp_path / "ar", data="raw")
    fake = FakeArgilla()
    dataset = rg.Dataset.from_disk(str(tmp_path / "ar"), client=argilla_client(rg, fake))
    assert dataset.name.startswith("negspace-") and [q.name for q in dataset.settings.questions] == ["verdict"]
    assert dataset.settings.questions[0].labels == ["false_negative", "true_negative", "unsure"]
    assert [f["name"] for f in fake.settings["fields"]] == ["query", "positives", "candidate"]
    assert {m["name"] for m in fake.settings["metadata-properties"]} == {"query_id", "doc_id", "rank", "score",
                                                                         "margin"}
    pairs = kept_pairs(store, run_id)
    assert [(r["metadata"]["query_id"], r["metadata"]["doc_id"]) for r in fake.records] == pairs
    assert manifest["rows"] == len(pairs) and all(r["fields"]["candidate"] for r in fake.records)

    ana, bo = str(uuid.uuid4()), str(uuid.uuid4())
    expected = {}
    for i, record in enumerate(fake.records):
        label = "false_negative" if i % 2 else "true_negative"
        expected[f"argilla:{ana}", record["metadata"]["query_id"], record["metadata"]["doc_id"]] = label
        record["responses"] = [
            {**FakeArgilla._created({"values": {"verdict": {"value": label}}}), "status": "submitted", "user_id": ana},
            {**FakeArgilla._created({"values": {}}), "status": "discarded", "user_id": bo}]
    (tmp_path / "answered").mkdir()
    dataset.to_disk(str(tmp_path / "answered"))
    result = import_verdicts(store, "tiny", tmp_path / "answered", "argilla")
    assert (result.added, result.unchanged) == (len(pairs), 0)
    got = labels.current(store, "tiny")
    assert {(r.annotator, r.query_id, r.doc_id): r.label for r in got.itertuples()} == expected
    assert import_verdicts(store, "tiny", tmp_path / "answered" / "records.json", "argilla").added == 0


def test_argilla_responses_without_value_or_submission_are_no_verdicts(mined_ws, tmp_path):
    store, _ = mined_ws
    responses = [{"value": "unsure", "user_id": "a"}, {"value": None, "user_id": "b"},
                 {"value": "unsure", "user_id": "c", "status": "draft"}, {"value": "fn", "user_id": "d",
                                                                          "status": "submitted"}]
    (tmp_path / "records.json").write_text(json.dumps([{"metadata": {"query_id": "q1", "doc_id": "misc-1"},
                                                        "responses": {"verdict": responses}}]))
    assert import_verdicts(store, "tiny", tmp_path, "argilla").added == 2
    assert sorted(labels.current(store, "tiny")["annotator"]) == ["argilla:a", "argilla:d"]


@pytest.mark.parametrize("change, field", [
    (lambda r: r["metadata"].update(doc_id="nope"), "records[0].metadata.doc_id"),
    (lambda r: r["metadata"].pop("query_id"), "records[0].metadata.query_id"),
    (lambda r: r["responses"].update(note=[]), "records[0].responses.note"),
    (lambda r: r["responses"]["verdict"][0].update(value="maybe"), "records[0].responses.verdict[0].value"),
    (lambda r: r["responses"]["verdict"][0].update(value=3), "records[0].responses.verdict[0].value"),
    (lambda r: r["responses"]["verdict"][0].pop("user_id"), "records[0].responses.verdict[0].user_id"),
])
def test_bad_argilla_records_name_line_and_field_and_change_nothing(mined_ws, tmp_path, change, field):
    store, _ = mined_ws
    record = {"id": "x", "fields": {}, "metadata": {"query_id": "q1", "doc_id": "misc-1"},
              "responses": {"verdict": [{"value": "unsure", "user_id": "u-1"}]}}
    change(record)
    (tmp_path / "records.json").write_text(json.dumps([record], indent=1))
    before = workspace_state(store.path.parent)
    with pytest.raises(DatasetError) as err:
        import_verdicts(store, "tiny", tmp_path, "argilla")
    assert (err.value.line, err.value.field) == (2, field), str(err.value)
    assert workspace_state(store.path.parent) == before


def test_verdict_import_refuses_unknown_formats_and_folders_without_records(mined_ws, tmp_path):
    store, _ = mined_ws
    with pytest.raises(UserError, match="unknown verdict format 'csv'"):
        import_verdicts(store, "tiny", tmp_path, "csv")
    with pytest.raises(DatasetError, match="no records.json"):
        import_verdicts(store, "tiny", tmp_path, "argilla")
