"""The command line of the round-trip importers: ``import-run``, ``qrels import`` and ``ingest`` of a datasets
folder succeed with one line, and a bad file exits 2 with one line naming file, line and field, leaving the
workspace as it was."""

from __future__ import annotations

import json

from tests.cli_helpers import assert_user_error, run_cli, workspace_state


def test_cli_import_run_and_bad_files_exit_2_leaving_the_workspace(ws_root, tmp_path):
    good = tmp_path / "run.txt"
    good.write_text("q1 Q0 py-split 1 0.5 t\n", encoding="utf-8")
    result = run_cli("import-run", good, "--workspace", ws_root, "--dataset", "tiny", "--format", "trec", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["candidates"] == 1
    before = workspace_state(ws_root)
    run = ["--dataset", "tiny", "--format"]
    bad_files = [  # one bad file per importer: (command, options, file name, content, what the error line names)
        (["import-run"], [*run, "st"], "st.jsonl", '{"anchor": "a", "positive": "p", "negative": "n", "scores": [0.5]}',
         "st.jsonl:1: field 'scores'"),
        (["import-run"], [*run, "flag"], "flag.jsonl", '{"query": "q", "pos": [], "neg": [1.5]}',
         "flag.jsonl:1: field 'neg[0]'"),
        (["import-run"], [*run, "tevatron"], "tevatron.jsonl",
         '{"query": "q", "positive_passages": [], "negative_passages": ["x"]}',
         "tevatron.jsonl:1: field 'negative_passages[0]'"),
        (["import-run"], [*run, "trec"], "run.trec", "q1 Q0 py-split 1 0.5 t\nq1 Q0 py-rev one 0.4 t",
         "run.trec:2: field 'rank'"),
        (["qrels", "import"], ["--dataset", "tiny", "--split", "dev"], "dev.qrels", "q1 0 py-join 1\nq1 0 py-rev two",
         "dev.qrels:2: field 'grade'"),
    ]
    for command, options, name, content, needle in bad_files:
        (tmp_path / name).write_text(content + "\n", encoding="utf-8")
        assert_user_error(run_cli(*command, tmp_path / name, "--workspace", ws_root, *options), needle)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "state.json").write_text('{"_data_files": []}', encoding="utf-8")
    assert_user_error(run_cli("ingest", tmp_path / "hf", "--workspace", ws_root, "--name", "hf"),
                      "state.json: field '_data_files'")
    assert workspace_state(ws_root) == before
