"""The CLI contract on the tiny fixture: outputs, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json

from tests.cli_helpers import run_cli


def test_cli_end_to_end_and_errors(tmp_path, beir_dir):
    ws = tmp_path / "ws"
    ok = run_cli("ingest", beir_dir, "--workspace", ws, "--name", "tiny")
    assert ok.returncode == 0, ok.stderr
    assert "30 documents, 8 queries" in ok.stdout

    bad = beir_dir.parent / "bad"
    bad.mkdir()
    (bad / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n')
    (bad / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    res = run_cli("ingest", bad, "--workspace", ws, "--name", "bad")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "corpus.jsonl:2" in res.stderr and "Traceback" not in res.stderr

    mined = run_cli("mine", "--workspace", ws, "--dataset", "tiny", "--device", "cpu", "--depth", "10", "--rule",
                    "simans", "--num-negatives", "2", "--seed", "3", "--json")
    assert mined.returncode == 0, mined.stderr
    out = json.loads(mined.stdout)
    assert set(out) >= {"run", "queries", "candidates", "kept", "short_queries", "encoded"}
    assert (out["queries"], out["candidates"], out["kept"]) == (6, 60, 12)

    res = run_cli("mine", "--workspace", ws, "--dataset", "tiny", "--rule", "abs")
    assert res.returncode == 2 and "rule abs needs a max score" in res.stderr and "Traceback" not in res.stderr

    exp = run_cli("export", "--workspace", ws, "--run", out["run"], "--format", "st-triplet", "--out",
                  tmp_path / "exp")
    assert exp.returncode == 0, exp.stderr
    assert json.loads((tmp_path / "exp" / "manifest.json").read_text())["rows"] == 12

    labels_in = tmp_path / "l.tsv"
    labels_in.write_text("query-id\tcorpus-id\tlabel\nq1\tpy-join-dup\tfalse_negative\n")
    assert run_cli("labels", "import", labels_in, "--workspace", ws, "--dataset", "tiny").returncode == 2
    imp = run_cli("labels", "import", labels_in, "--workspace", ws, "--dataset", "tiny", "--annotator", "ana")
    assert imp.returncode == 0, imp.stderr
    exp = run_cli("labels", "export", "--workspace", ws, "--dataset", "tiny", "--out", tmp_path / "o.tsv")
    assert exp.returncode == 0
    assert (tmp_path / "o.tsv").read_text().splitlines()[1] == "q1\tpy-join-dup\tfalse_negative\tana\t"

    # re-rule the stored candidates: the judged q1/py-join-dup is skipped and q1 refilled to 2 from its next ranks
    derived = run_cli("rerule", "--workspace", ws, "--run", out["run"], "--rule", "top", "--num-negatives", "2",
                      "--skip-judged", "--json")
    assert derived.returncode == 0, derived.stderr
    new = json.loads(derived.stdout)
    assert (new["candidates"], new["kept"], new["encoded"]) == (60, 12, 0)
    from core.workspace import open_workspace
    cands = open_workspace(ws).store().candidates(new["run"])
    q1 = cands[cands.query_id == "q1"]
    assert q1.loc[q1.doc_id == "py-join-dup", "rule"].tolist() == ["filtered:judged"]
    assert q1[q1.kept]["rank"].tolist() == q1[q1.doc_id != "py-join-dup"]["rank"].tolist()[:2]
    for args in (("--run", "nope"), ("--run", out["run"], "--rule", "range", "--range-min", "9", "--range-max", "3")):
        bad = run_cli("rerule", "--workspace", ws, *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr

    assert run_cli("export", "--workspace", ws, "--run", "nope", "--format", "flag", "--out",
                   tmp_path / "e").returncode == 2
    help_ = run_cli("mine", "--help")
    assert help_.returncode == 0 and "--relative-margin" in help_.stdout
