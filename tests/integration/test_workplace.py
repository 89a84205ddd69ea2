"""The annotators' workplace beyond assignments: guidelines (versioned, safe markdown, the version each verdict
saw), the audit log (every write with its actor and UTC time; export as TSV or JSON Lines), the role gap closed
in core (import, mine, re-rule, score, export, train a reranker, assign, edit guidelines), and their commands."""

from __future__ import annotations

import getpass
import json

import pytest
from typer.testing import CliRunner

from core import accounts, assignments, audit, guidelines, judging, roles, triage
from core.cli import app
from core.errors import UserError
from core.jobs import Job
from core.roles import NotPermitted
from core.rules import RuleSpec
from core.workspace import open_workspace

PASSWORD = "correct horse battery"


pytestmark = pytest.mark.usefixtures("cheap_hashes")


@pytest.fixture
def ws(ws_root):
    workspace = open_workspace(ws_root)
    store = workspace.store()
    yield workspace, store, store.runs("tiny")[0]["run_id"]
    store.close()


@pytest.fixture
def signed_in(monkeypatch):
    def sign(account) -> None:
        monkeypatch.setattr(roles, "_source", lambda: account)
    return sign


def test_guidelines_are_versioned_and_each_verdict_records_the_version_seen(ws):
    workspace, store, _ = ws
    assert guidelines.latest(store, "tiny") is None
    first, new = guidelines.save(store, "tiny", "# Rules\r\nA paraphrase of the positive is a **false negative**.")
    assert (first.version, new, first.text) == (1, True, "# Rules\nA paraphrase of the positive is a **false "
                                                          "negative**.")
    assert guidelines.save(store, "tiny", first.text) == (first, False)  # unchanged: no new version
    second, _ = guidelines.save(store, "tiny", first.text + "\nUnsure when in doubt.")
    assert second.version == 2 and guidelines.latest(store, "tiny", 1) == first
    assert [v["version"] for v in guidelines.versions(store, "tiny")] == [2, 1]
    for text, message in (("  \n", "empty"), ("x" * (guidelines.MAX_CHARS + 1), "at most")):
        with pytest.raises(UserError, match=message):
            guidelines.save(store, "tiny", text)
    with pytest.raises(UserError, match="no dataset"):
        guidelines.save(store, "nope", "rules")
    judging.judge(store, workspace, "tiny", [("q1", "py-join-dup")], "ana", "false_negative", guideline_version=2)
    judging.judge(store, workspace, "tiny", [("q2", "py-sort-dup")], "ana", "false_negative")
    events = store.events("tiny", "ana").set_index("doc_id")["guideline_version"]
    assert events["py-join-dup"] == 2 and events.isna()["py-sort-dup"]


def test_guidelines_render_as_markdown_without_html_or_images():
    text = "**bold** <script>alert(1)</script> <img src=x onerror=alert(1)> ![pixel](http://x/p.png) a & b"
    safe = guidelines.safe_markdown(text)
    assert "<" not in safe and ">" not in safe and "&lt;script&gt;" in safe
    assert "\\![pixel](http://x/p.png)" in safe and "**bold**" in safe and "a &amp; b" in safe


def test_an_annotator_may_not_assign_edit_guidelines_or_use_admin_actions(ws, tmp_path, signed_in):
    """The role gap: core refuses what the navigation hides, whatever page calls it."""
    from core.cross_encoder import score_job, score_run
    from core.datasets import import_qrels, ingest
    from core.export import export
    from core.mining import derive_job, derive_run, mine
    from core.run_import import import_run
    from core.train_reranker import train_reranker

    workspace, store, run_id = ws
    ana = accounts.add(store, "ana", roles.ANNOTATOR, PASSWORD)
    signed_in(ana)
    before = store.table_checksums()
    refused = {
        "assign": lambda: assignments.assign(store, run_id, ["ana"], 1),
        "unassign": lambda: assignments.clear(store, run_id),
        "guidelines": lambda: guidelines.save(store, "tiny", "rules"),
        "ingest": lambda: ingest(store, tmp_path, "other"),
        "qrels": lambda: import_qrels(store, "tiny", tmp_path / "q.trec", "dev"),
        "import run": lambda: import_run(store, tmp_path / "run.trec", "tiny", "trec"),
        "mine": lambda: mine(store, workspace, "tiny"),
        "rerule": lambda: derive_run(store, run_id, RuleSpec("top", num_negatives=1)),
        "rerule job": lambda: derive_job(store, run_id, RuleSpec("top", num_negatives=1)),
        "score": lambda: score_run(store, workspace, run_id, tmp_path),
        "score job": lambda: score_job(workspace.root, run_id, tmp_path),
        "export": lambda: export(store, run_id, "flag", tmp_path / "out"),
        "train reranker": lambda: train_reranker(store, "tiny", tmp_path / "ce"),
    }
    for what, call in refused.items():
        with pytest.raises(NotPermitted, match="ana \\(annotator\\) may not"):
            call()
    assert store.table_checksums() == before and not (tmp_path / "out").exists()


def test_every_write_is_audited_with_its_actor_and_utc_time(ws, tmp_path, signed_in):
    workspace, store, run_id = ws
    cli = f"cli:{getpass.getuser()}"
    # the session's mined workspace may already log writes of other tests made before this copy was taken
    earlier = list(map(tuple, audit.log(store)[["actor", "action"]].values.tolist()))
    assert (cli, "ingest") in earlier and (cli, "mine") in earlier
    boss = accounts.add(store, "boss", roles.ADMIN, PASSWORD)  # the command line: no account signed in
    for name in ("ana", "bob"):  # a team workspace splits work among its accounts
        accounts.add(store, name, roles.ANNOTATOR, PASSWORD)
    signed_in(boss)
    assignments.assign(store, run_id, ["ana", "bob"], 2)
    guidelines.save(store, "tiny", "rules")
    judging.judge(store, workspace, "tiny", [("q1", "py-join-dup")], "boss", "false_negative")
    triage.promote(store, "tiny", "train", "q1", "py-join-dup")
    triage.demote(store, "tiny", "train", "q1", "py-join-dup")
    judging.undo(store, "tiny", "boss")
    accounts.set_role(store, "boss", roles.ADMIN)
    from core.export import export
    export(store, run_id, "flag", tmp_path / "out", data="raw")
    signed_in(None)
    job = Job("audited", lambda stage: audit.record(store, "job write"))  # acts for whoever started it
    assert job.wait(30) and job.error is None
    with audit.acting_as("starter"):
        assignments.clear(store, run_id)
    log = audit.log(store)
    assert sorted(map(tuple, log[["actor", "action"]].values.tolist())) == sorted([*earlier,  # in time order
        *[(cli, "account add")] * 3, ("boss", "assign"), ("boss", "guidelines"),
        ("boss", "verdict"), ("boss", "promote"), ("boss", "demote"), ("boss", "undo"), ("boss", "account role"),
        ("boss", "export"), (cli, "job write"), ("starter", "unassign")])
    assert log["at"].str.endswith("+00:00").all() and log["at"].is_monotonic_increasing
    new = log.iloc[len(earlier):]  # the earlier rows are older: they come first
    assert new.loc[new["action"] == "verdict", "target"].item() == "tiny/q1/py-join-dup"
    assert new.loc[new["action"] == "assign", "detail"].item()["overlap"] == 2
    assert not any(PASSWORD in json.dumps(d) for d in log["detail"])

    text, count = audit.render(store, "tsv")
    lines = text.splitlines()
    assert lines[0] == "at\tactor\taction\ttarget\tdetail" and len(lines) == count + 1 == len(log) + 1
    out = tmp_path / "audit.jsonl"
    assert audit.export(store, out, "jsonl") == len(log)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assigned = next(row for row in rows if row["action"] == "assign")
    assert assigned["detail"]["annotators"] == ["ana", "bob"] and assigned["actor"] == "boss"
    with pytest.raises(UserError, match="unknown audit format"):
        audit.render(store, "xml")


def test_assign_guidelines_and_audit_commands(ws, tmp_path):
    workspace, _, run_id = ws
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, [*args, "--workspace", str(workspace.root)])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    assert "no split" in cli("assign", "--run", run_id)
    shown = cli("assign", "--run", run_id, "--annotators", "ana, bob,cy", "--overlap", "2")
    assert "3 annotators, overlap 2" in shown and shown.count(" queries\t") == 3
    assert "removed the split" in cli("assign", "--run", run_id, "--clear")
    rules = tmp_path / "rules.md"
    rules.write_text("# Rules\nJudge the document, not the title.\n", encoding="utf-8")
    assert "saved version 1" in cli("guidelines", "set", "--dataset", "tiny", "--file", str(rules))
    assert "unchanged: version 1" in cli("guidelines", "set", "--dataset", "tiny", "--file", str(rules))
    assert "Judge the document, not the title." in cli("guidelines", "show", "--dataset", "tiny")
    out = tmp_path / "audit.tsv"
    cli("audit", "export", "--out", str(out))
    actions = [line.split("\t")[2] for line in out.read_text(encoding="utf-8").splitlines()[1:]]
    assert actions == ["ingest", "mine", "assign", "unassign", "guidelines"]  # the fixture's import and mine first
    assert cli("audit", "export", "--format", "jsonl").count("\n") == 5
