"""Exports never destroy what they were not asked to replace: the workspace, a folder holding it, or a folder of
someone else's files; a killed export leaves nothing a later one does not clean up; the Export page names exports
by their selection, asks before replacing one, and warns when a curated export rests on open disagreements."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from core import labels
from core.export import EXPORT_FORMATS, FORMATS, curation_warning, disagreement_rule, export_name
from core.files import locked_temp, remove_stale_temps
from tests.app_helpers import finish_job, open_app, store_at
from tests.cli_helpers import ROOT, assert_user_error, run_cli, tree, workspace_state


def first_run(root: Path) -> str:
    store = store_at(root)
    try:
        return store.runs("tiny")[0]["run_id"]
    finally:
        store.close()


def export_cli(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("export", "--workspace", root, "--run", first_run(root), "--format", "flag", "--data", "raw",
                   "--out", out, *extra)


def hidden(folder: Path) -> list[str]:
    """Temporary leftovers (dot entries) in a folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_complete(folder: Path) -> dict:
    """A finished export: its manifest lists every file with the right hash and line count."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for name, entry in manifest["files"].items():
        content = (folder / name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"] and content.count(b"\n") == entry["rows"]
    return manifest


def test_export_never_replaces_the_workspace_or_a_folder_holding_it(ws_root):
    before = workspace_state(ws_root)
    for target, extra in ((ws_root, ()), (ws_root, ("--force",)), (ws_root.parent, ("--force",))):
        assert_user_error(export_cli(ws_root, target, *extra), target, "workspace")
    # the workspace's own folders are not exports either
    assert_user_error(export_cli(ws_root, ws_root / "embeddings", "--force"), ws_root / "embeddings", "inside")
    assert workspace_state(ws_root) == before
    ok = export_cli(ws_root, ws_root / "exports" / "mine")
    assert ok.returncode == 0, ok.stderr
    assert_complete(ws_root / "exports" / "mine")


def test_export_refuses_a_folder_of_other_files_and_a_path_under_a_file(ws_root, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine, keep\n")
    assert_user_error(export_cli(ws_root, folder), folder, "--force")
    # `--out .` from inside that folder: the same folder, as a user types it
    dot = subprocess.run([sys.executable, "-m", "core", "export", "--workspace", str(ws_root), "--run",
                          first_run(ws_root), "--format", "flag", "--out", "."], cwd=folder, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert_user_error(dot, folder, "--force")
    assert tree(folder) == ["notes.txt"] and (folder / "notes.txt").read_text() == "mine, keep\n"

    under_file = folder / "notes.txt" / "sub"
    assert_user_error(export_cli(ws_root, under_file), folder / "notes.txt", "not a folder")
    assert tree(folder) == ["notes.txt"]

    forced = export_cli(ws_root, folder, "--force")  # asked for in so many words: replaced whole
    assert forced.returncode == 0, forced.stderr
    first = assert_complete(folder)
    assert not (folder / "notes.txt").exists()
    again = export_cli(ws_root, folder)  # an earlier export is replaced without --force
    assert again.returncode == 0, again.stderr
    assert assert_complete(folder)["rows"] == first["rows"] and hidden(tmp_path) == []


CHILD = """
import sys, time
from core import export
from core.workspace import open_workspace

write = export._jsonl
def slow(path, rows):  # write one row, say where, then hang until killed
    write(path, rows[:1])
    print(path, flush=True)
    time.sleep(3600)
export._jsonl = slow
root, run_id, out = sys.argv[1:]
export.export(open_workspace(root).store(), run_id, "flag", out, data="raw")
"""


def test_killed_export_is_never_visible_and_the_next_export_cleans_up(ws_root, tmp_path):
    out = tmp_path / "exports" / "flag"
    with (tmp_path / "child.log").open("w") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(ws_root), first_run(ws_root), str(out)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            partial = child.stdout.readline().strip()
        finally:
            child.kill()  # SIGKILL: no cleanup code of the child runs
            child.wait()
    assert partial, (tmp_path / "child.log").read_text()
    assert Path(partial).is_file() and not out.exists()
    assert hidden(out.parent), "the killed export left its temporary folder"

    ok = export_cli(ws_root, out)
    assert ok.returncode == 0, ok.stderr
    assert hidden(out.parent) == []
    assert assert_complete(out)["rows"] == 6


def test_a_live_writers_temporary_is_never_taken_for_a_leftover(tmp_path):
    target = tmp_path / "out"
    with locked_temp(target, folder=True) as live:
        assert remove_stale_temps(target) == [] and live.is_dir()
    assert not live.exists()


def test_export_names_say_the_selection():
    names = {export_name("tiny-20250101-000000-abc123", fmt, data, unsure)
             for fmt in FORMATS for data in ("raw", "curated") for unsure in ("drop", "keep")}
    assert len(names) == len(FORMATS) * 3  # raw ignores the unsure policy; everything else differs
    assert export_name("tiny-20250101-000000-abc123", "flag", "curated", "drop") == \
        "tiny-20250101-000000-abc123-flag-curated-unsure-drop"
    name = export_name("../" + "ä" * 300 + "-20250101-000000-abc123", "st-triplet", "raw", "drop")
    assert "/" not in name and not name.startswith(".") and len(name.encode()) <= 200
    assert name.endswith("-20250101-000000-abc123-st-triplet-raw")  # the run's unique end survives


def test_every_format_is_declared_once_with_a_description():
    assert FORMATS == tuple(EXPORT_FORMATS) and all(EXPORT_FORMATS[f].description for f in FORMATS)
    help_text = run_cli("export", "--help").stdout
    assert all(f in help_text for f in FORMATS)


def test_curation_warning_counts_open_disagreements_and_states_the_rule(ws_root):
    store = store_at(ws_root)
    run_id = first_run(ws_root)
    kept = store.candidates(run_id)
    (q1, d1), (q2, d2) = kept[kept.kept][["query_id", "doc_id"]].head(2).itertuples(index=False)
    assert curation_warning(store, run_id, "curated") is None
    labels.record(store, "tiny", q1, d1, "ana", "false_negative")
    labels.record(store, "tiny", q1, d1, "bob", "true_negative")
    labels.record(store, "tiny", q2, d2, "ana", "unsure")
    labels.record(store, "tiny", q2, d2, "bob", "true_negative")
    warning = curation_warning(store, run_id, "curated")
    assert warning.startswith("2 open disagreements between annotators in dataset 'tiny'")
    assert warning.endswith(disagreement_rule())
    assert "false negative > unsure > true negative" in disagreement_rule() and "Team page" in warning
    assert curation_warning(store, run_id, "raw") is None
    labels.record(store, "tiny", q1, d1, "lead", "true_negative", adjudication=True)
    assert curation_warning(store, run_id, "curated").startswith("1 open disagreement between")


def disagree(root: Path, second: str):
    """Ana and Bob disagree (false negative vs ``second``) on the first kept candidate of the first run."""
    store = store_at(root)
    kept = store.candidates(first_run(root))
    q, d = kept[kept.kept][["query_id", "doc_id"]].iloc[0]
    labels.record(store, "tiny", q, d, "ana", "false_negative")
    labels.record(store, "tiny", q, d, "bob", second)
    return store


def test_cli_warns_about_open_disagreements_on_curated_export(ws_root, tmp_path):
    store = disagree(ws_root, "true_negative")
    result = run_cli("export", "--workspace", ws_root, "--run", first_run(ws_root), "--format", "flag",
                     "--out", tmp_path / "curated")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"warning: {curation_warning(store, first_run(ws_root), 'curated')}"
    assert "1 open disagreement" in result.stderr and "(curated)" in result.stdout


# -- the Export page --------------------------------------------------------------------------------------------

def export_on_page(at, fmt: str, data: str) -> None:
    at.selectbox(key="exp_fmt").set_value(fmt)
    at.radio(key="exp_data").set_value(data).run()
    at.button(key="exp_go").click().run()
    finish_job(at, "exp_job")
    assert not at.error, [e.value for e in at.error]


def test_page_names_exports_by_selection(monkeypatch, ws_root):
    run_id = first_run(ws_root)
    at = open_app(monkeypatch, ws_root, "pages/export.py")
    export_on_page(at, "flag", "raw")
    export_on_page(at, "flag", "curated")
    raw = ws_root / "exports" / export_name(run_id, "flag", "raw", "drop")
    curated = ws_root / "exports" / export_name(run_id, "flag", "curated", "drop")
    assert assert_complete(raw)["data"] == "raw" and assert_complete(curated)["data"] == "curated"
    assert at.get("download_button")[0].proto.label == f"Download {curated.name}.zip"


def test_page_asks_before_replacing_an_export(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, "pages/export.py")
    export_on_page(at, "flag", "raw")
    folder = ws_root / "exports" / export_name(first_run(ws_root), "flag", "raw", "drop")
    (folder / "marker").write_text("from the first export")
    created = json.loads((folder / "manifest.json").read_text())["created_at"]
    at.run()
    assert any(folder.name in i.value and created in i.value for i in at.info), [i.value for i in at.info]
    assert at.button(key="exp_go").disabled and (folder / "marker").exists()
    next(c for c in at.checkbox if c.label == "Overwrite").check().run()
    at.button(key="exp_go").click().run()
    finish_job(at, "exp_job")
    assert not at.error
    assert not (folder / "marker").exists() and assert_complete(folder)
    at.run()
    assert not next(c for c in at.checkbox if c.label == "Overwrite").value  # the next replace asks again


def test_page_warns_about_open_disagreements_on_curated_export(monkeypatch, ws_root):
    store = disagree(ws_root, "unsure")
    at = open_app(monkeypatch, ws_root, "pages/export.py")
    at.radio(key="exp_data").set_value("curated").run()
    assert [w.value for w in at.warning] == [curation_warning(store, first_run(ws_root), "curated")]
    assert "1 open disagreement" in at.warning[0].value and "false negative > unsure" in at.warning[0].value
    at.radio(key="exp_data").set_value("raw").run()
    assert not at.warning

