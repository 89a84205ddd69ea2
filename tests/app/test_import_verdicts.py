"""The Import page brings verdicts back from an annotation tool's export (the same core.verdict_import the CLI
calls), and shows a bad file's place without importing anything."""

from __future__ import annotations

import json

from core import labels
from core.export import export
from tests.app_helpers import finish_job, open_app, store_at


def test_label_studio_export_imports_from_the_import_page(monkeypatch, ws_root, tmp_path):
    store = store_at(ws_root)
    export(store, store.runs("tiny")[0]["run_id"], "label-studio", tmp_path / "ls", data="raw")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())[:1]
    tasks[0]["annotations"] = [{"completed_by": {"email": "ana@example.org"}, "created_at": "2024-05-01T00:00:00Z",
                                "result": [{"from_name": "verdict_0", "value": {"choices": ["false_negative"]}}]}]
    (tmp_path / "good.json").write_text(json.dumps(tasks, indent=1))
    tasks[0]["annotations"][0]["result"][0]["from_name"] = "verdict_99"
    (tmp_path / "bad.json").write_text(json.dumps(tasks, indent=1))

    at = open_app(monkeypatch, ws_root, "pages/import_data.py")
    at.selectbox(key="imp_lab_fmt").set_value("label-studio")
    at.text_input(key="imp_lab_path").input(str(tmp_path / "bad.json")).run()
    at.button(key="imp_lab_go_path").click().run()
    finish_job(at, "imp_lab_job", fails=True)
    assert "bad.json:2: field 'tasks[0].annotations[0].result[0].from_name'" in at.error[0].value
    assert labels.current(store, "tiny").empty

    at.text_input(key="imp_lab_path").input(str(tmp_path / "good.json")).run()
    at.button(key="imp_lab_go_path").click().run()
    finish_job(at, "imp_lab_job")
    assert not at.error
    assert "Imported 1 new verdicts into 'tiny'" in at.success[0].value
    got = labels.current(store, "tiny")
    assert got[["annotator", "query_id", "label"]].values.tolist() == [["ana@example.org", tasks[0]["data"]["query_id"],
                                                                        "false_negative"]]
