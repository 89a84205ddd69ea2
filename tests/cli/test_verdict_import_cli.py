"""``labels import --from``: the annotation tools' exports through the command line, under its exit contract."""

from __future__ import annotations

import json

from core.export import export
from core.workspace import open_workspace
from tests.cli_helpers import assert_user_error, run_cli, workspace_state


def test_label_studio_and_argilla_exports_import_and_bad_ones_exit_2(ws_root, tmp_path):
    store = open_workspace(ws_root).store()
    run_id = store.runs()[0]["run_id"]
    export(store, run_id, "label-studio", tmp_path / "ls", data="raw")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())[:1]
    tasks[0]["annotations"] = [{"completed_by": {"email": "ana@example.org"}, "created_at": "2024-05-01T00:00:00Z",
                                "result": [{"from_name": "verdict_0", "value": {"choices": ["unsure"]}}]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks, indent=1))
    ok = run_cli("labels", "import", tmp_path / "ls.json", "--workspace", ws_root, "--dataset", "tiny", "--from",
                 "label-studio")
    assert ok.returncode == 0 and ok.stdout == "imported 1 new verdicts into 'tiny' (0 unchanged)\n", ok.stderr

    tasks[0]["annotations"][0]["result"][0]["value"]["choices"] = ["maybe"]
    (tmp_path / "bad.json").write_text(json.dumps(tasks, indent=1))
    (tmp_path / "ar").mkdir()
    (tmp_path / "ar" / "records.json").write_text('[{"metadata": {"query_id": "q1"}}]')
    before = workspace_state(ws_root)
    bad = run_cli("labels", "import", tmp_path / "bad.json", "--workspace", ws_root, "--dataset", "tiny", "--from",
                  "label-studio")
    assert_user_error(bad, f"{tmp_path / 'bad.json'}:2: field 'tasks[0].annotations[0].result[0].value.choices[0]'",
                      "unknown label 'maybe'")
    bad = run_cli("labels", "import", tmp_path / "ar", "--workspace", ws_root, "--dataset", "tiny", "--from", "argilla")
    assert_user_error(bad, "records.json:1: field 'records[0].metadata.doc_id': missing")
    bad = run_cli("labels", "import", tmp_path / "ar", "--workspace", ws_root, "--dataset", "tiny", "--from", "csv")
    assert_user_error(bad, "unknown verdict format 'csv'")
    assert workspace_state(ws_root) == before
    store.close()
