"""Overview, Mine, Map, Export, Import and the password gate through Streamlit's AppTest, on real mined data."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from core import labels
from core.export import FORMATS
from tests.app_helpers import finish_job, open_app, outlives_a_click, store_at, timed
from tests.fixtures import make_beir


_store = store_at


def test_overview_stats_charts_and_verdict_breakdown(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, "pages/overview.py")
    metrics = {m.label: m.value for m in at.metric}
    info = _store(ws_root).datasets()[0]
    assert metrics["documents"] == str(info["documents"]) and metrics["queries"] == str(info["queries"])
    assert len(at.get("plotly_chart")) == 3  # scores, margin histogram, margin ECDF
    assert any("No verdicts yet" in i.value for i in at.info)
    store = _store(ws_root)
    labels.record(store, "tiny", "q1", "py-join-dup", "ana", "false_negative")
    timed(at)
    assert len(at.get("plotly_chart")) == 4  # + margin by verdict
    breakdown = at.dataframe[0].value
    assert breakdown.loc["false_negative", "total"] == 1
    # the numbers the page computed from the whole candidate frame before
    cands = store.candidates(store.runs("tiny")[0]["run_id"], with_signals=False)
    above = cands[cands.score > cands.pos_score]
    sentence = next(m.value for m in at.markdown if "weakest positive" in m.value)
    assert sentence.startswith(f"**{len(above):,}** candidates ({len(above) / len(cands):.1%}) score above")
    assert f"in **{above.query_id.nunique():,}** queries; **{int(above.kept.sum()):,}** of" in sentence
    assert breakdown.loc["total", "total"] == len(cands)
    assert breakdown.loc["unjudged", "kept"] == int(cands.kept.sum()) - int(
        cands[(cands.query_id == "q1") & (cands.doc_id == "py-join-dup")].kept.sum())


def test_team_progress_counts_against_the_runs_kept_candidates(monkeypatch, ws_root):
    from core import agreement

    store = _store(ws_root)
    cands = store.candidates(store.runs("tiny")[0]["run_id"], with_signals=False)
    kept, dropped = cands[cands.kept], cands[~cands.kept]
    labels.record(store, "tiny", kept.query_id.iloc[0], kept.doc_id.iloc[0], "ana", "false_negative")
    labels.record(store, "tiny", dropped.query_id.iloc[0], dropped.doc_id.iloc[0], "ana", "true_negative")
    at = open_app(monkeypatch, ws_root, "pages/team.py")
    progress = at.dataframe[0].value.set_index("annotator")
    old = agreement.annotator_progress(store, "tiny", kept[["query_id", "doc_id"]]).set_index("annotator")
    assert (progress.loc["ana", "judged"], progress.loc["ana", "done"]) == (2, 1) == \
        (old.loc["ana", "judged"], old.loc["ana", "done"])
    assert progress.loc["ana", "share"] == pytest.approx(old.loc["ana", "share"]) == pytest.approx(1 / len(kept))


def test_overview_empty_workspace(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path / "empty", "pages/overview.py")
    assert any("no dataset yet" in i.value for i in at.info)


def test_mine_preview_commit_and_diff(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, "pages/mine.py")
    before_run = at.session_state["ns_run"]
    assert {m.label for m in at.metric} >= {"kept negatives", "newly kept", "no longer kept"}
    at.checkbox(key="mine_use_percpos").check()
    timed(at)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["no longer kept"]) > 0  # percpos drops the near-duplicates the top-3 run kept
    before = len(_store(ws_root).runs("tiny"))
    commit = next(b for b in at.button if b.label == "Commit as a new run")
    commit.click().run()
    assert not at.exception
    for _ in range(120):  # the commit runs in the background; each script run polls it until the new run is selected
        if at.session_state["ns_run"] != before_run:
            break
        time.sleep(0.5)
        timed(at)
    runs = _store(ws_root).runs("tiny")
    assert len(runs) == before + 1 and runs[0]["params"]["rules"]["relative_margin"] == 0.05
    assert at.session_state["ns_run"] == runs[0]["run_id"]  # the sidebar now shows the new run
    at.toggle(key="diff_go").set_value(True).run()
    diff_metrics = {m.label: m.value for m in at.metric}
    gone, new = (int(diff_metrics[f"negatives that {w} (kept only in {r})"]) for w, r in (("disappear", "A"),
                                                                                           ("appear", "B")))
    assert gone > 0 or new > 0
    changed = at.dataframe[-1].value  # ids, short texts and "A → B" with "—" where a run does not keep the pair
    assert list(changed.columns) == ["query", "document", "change", "rank A → B", "score A → B", "query text",
                                     "document text"]
    assert changed.notna().all().all() and changed["query text"].str.len().gt(0).all()
    gone_rows = changed[changed["change"] == "disappears"]
    assert gone_rows["rank A → B"].str.endswith(" → —").all() and len(gone_rows) == gone


def test_mine_anew_runs_in_the_background_then_selects_the_new_run_and_says_what_it_made(monkeypatch, ws_root):
    """Mining runs as a background job (a click meanwhile no longer stops it half-way) whose progress the page
    polls; when it ends the new run is selected, its risk scoring has started, and the report survives the rerun
    that selects it (it was drawn, then wiped at once)."""
    from core.risk import signal_set

    at = open_app(monkeypatch, ws_root, "pages/mine.py")
    before = {r["run_id"] for r in _store(ws_root).runs("tiny")}
    at.number_input(key="mine_depth").set_value(5)
    at.button(key="mine_go").click()
    timed(at)
    assert not at.exception, [e.value for e in at.exception]
    assert at.button(key="mine_go").disabled, "one mining job per session at a time"
    at.number_input(key="mine_num_negatives").set_value(4)  # a click meanwhile: the job goes on
    timed(at)
    finish_job(at, "mine_anew_job")  # the page's poll notices the end and reruns (unless that rerun reported it)
    new = [r for r in _store(ws_root).runs("tiny") if r["run_id"] not in before]
    assert len(new) == 1 and at.session_state["ns_run"] == new[0]["run_id"]
    stats = new[0]["stats"]
    assert [s.value for s in at.success] == [
        f"Run {new[0]['run_id']}: {stats['queries']:,} queries, {stats['kept']:,} negatives kept "
        f"({stats['encoded']:,} texts encoded, {stats['cached']:,} from cache, {stats['seconds']:.0f} s)."]
    timed(at)
    assert not at.success, "shown once"
    store = _store(ws_root)  # the Mine page never asks for risk: the job started its scoring
    for _ in range(240):
        if not store.risk_missing(new[0]["run_id"], signal_set()):
            break
        time.sleep(0.5)
    assert not store.risk_missing(new[0]["run_id"], signal_set()), "risk scored without a page asking"


def test_mine_skip_judged_refills_in_the_preview(monkeypatch, ws_root):
    from core import labels

    store = _store(ws_root)
    kept = store.candidates(store.runs("tiny")[0]["run_id"])
    first = kept[kept.kept].iloc[0]
    labels.record(store, "tiny", first.query_id, first.doc_id, "ana", "false_negative")
    at = open_app(monkeypatch, ws_root, "pages/mine.py")
    at.checkbox(key="mine_skip_judged").check()
    timed(at)
    metrics = {m.label: m.value for m in at.metric}
    assert (int(metrics["no longer kept"]), int(metrics["newly kept"])) == (1, 1), metrics  # swapped, not dropped


def test_mine_invalid_rule_is_reported(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, "pages/mine.py")
    at.selectbox(key="mine_rule").set_value("range").run()
    at.number_input(key="mine_range_min").set_value(50).run()
    at.number_input(key="mine_range_max").set_value(50).run()
    assert [e.value for e in at.error] == ["range min must be below range max (got 50 and 50)"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_every_format(monkeypatch, ws_root, fmt):
    at = open_app(monkeypatch, ws_root, "pages/export.py")
    at.selectbox(key="exp_fmt").set_value(fmt).run()
    at.button(key="exp_go").click().run()
    finish_job(at, "exp_job")
    assert not at.error
    manifest = at.json[0].value
    manifest = json.loads(manifest) if isinstance(manifest, str) else manifest
    assert manifest["format"] == fmt and manifest["rows"] > 0
    assert at.get("download_button")
    assert list((ws_root / "exports").glob(f"*-{fmt}-raw/manifest.json"))


def test_export_runs_in_the_background_and_a_click_meanwhile_does_not_stop_it(monkeypatch, ws_root):
    """The export is a background job the page polls: a widget changed while it writes reruns the page, the job
    goes on, and the folder it wrote (not the one the widgets name now) is reported when it ends."""
    from core import export as export_module
    from core.export import export_name

    entered, release = threading.Event(), threading.Event()
    flag = export_module.EXPORT_FORMATS["flag"]

    def held(store, td, folder, n_negatives):  # writes only once the test has clicked meanwhile
        entered.set()
        assert release.wait(60)
        return flag.write(store, td, folder, n_negatives)

    monkeypatch.setitem(export_module.EXPORT_FORMATS, "flag", dataclasses.replace(flag, write=held))
    at = open_app(monkeypatch, ws_root, "pages/export.py")
    at.selectbox(key="exp_fmt").set_value("flag").run()
    outlives_a_click(at, "exp_go", "exp_job", entered, release,
                     lambda at: at.radio(key="exp_unsure").set_value("keep"))  # a click meanwhile: the job goes on
    folder = ws_root / "exports" / export_name(at.session_state["ns_run"], "flag", "raw", "drop")
    assert [s.value for s in at.success] == [f"Exported 6 rows (raw) to {folder}"]
    assert json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["unsure"] == "drop"


def test_import_bad_file_shows_location_and_imports_nothing(monkeypatch, ws_root, tmp_path):
    bad = make_beir(tmp_path / "bad")
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "fine"}\n{"_id": "d2"}\n', encoding="utf-8")
    at = open_app(monkeypatch, ws_root, "pages/import_data.py")
    before = _store(ws_root).table_checksums()
    at.text_input(key="imp_name").input("broken")
    at.text_input(key="imp_path").input(str(bad)).run()
    at.button(key="imp_go_path").click().run()
    finish_job(at, "imp_job", fails=True)
    message = " ".join(e.value for e in at.error)
    assert "corpus.jsonl:2" in message and "'text'" in message and "Nothing was imported" in message
    assert _store(ws_root).table_checksums() == before


def test_import_good_folder_selects_it(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path / "fresh", "pages/import_data.py")
    at.text_input(key="imp_name").input("mine")
    at.text_input(key="imp_path").input(str(make_beir(tmp_path / "good"))).run()
    at.button(key="imp_go_path").click().run()
    finish_job(at, "imp_job")
    assert any("imported dataset 'mine'" in s.value.lower() for s in at.success)
    assert at.session_state["ns_dataset"] == "mine"


def test_import_upload_runs_in_the_background_and_a_click_meanwhile_does_not_stop_it(monkeypatch, tmp_path):
    """An import is a background job the page polls: a widget changed while it runs does not stop it, the uploaded
    files it reads outlive the page run that wrote them (the job removes them when it ends), and what it imported
    is said once."""
    from core import datasets

    entered, release, read_from = threading.Event(), threading.Event(), []
    ingest = datasets.ingest

    def held(store, path, *args):  # imports only once the test has clicked meanwhile
        read_from.append(Path(path))
        entered.set()
        assert release.wait(60)
        return ingest(store, path, *args)

    monkeypatch.setattr(datasets, "ingest", held)
    beir = make_beir(tmp_path / "good")
    at = open_app(monkeypatch, tmp_path / "fresh", "pages/import_data.py")
    at.text_input(key="imp_name").input("mine")
    at.file_uploader(key="imp_files").set_value(
        [(f.name, f.read_bytes(), "application/octet-stream")
         for f in (beir / "corpus.jsonl", beir / "queries.jsonl", beir / "qrels" / "train.tsv")]).run()
    outlives_a_click(at, "imp_go_upload", "imp_job", entered, release,
                     lambda at: at.text_input(key="imp_name").input("another"),  # a click meanwhile
                     while_running=lambda: (read_from[0] / "corpus.jsonl").is_file() or pytest.fail("upload gone"))
    assert len(at.success) == 1 and "imported dataset 'mine'" in at.success[0].value.lower(), at.success
    assert at.session_state["ns_dataset"] == "mine" and not read_from[0].exists()
    timed(at)
    assert not at.success, "shown once"


def test_map_shows_projection_views(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, "pages/map.py")
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    assert any("NEGSPACE_UMAP=0" in c.value for c in at.caption)
    assert list((ws_root / "projections").glob("*-pca.parquet"))
    at.session_state["map_view"] = "Whole dataset"
    at.session_state["map_colour"] = "risk"
    timed(at)
    assert len(at.get("plotly_chart")) == 1


def test_train_page_estimates_the_time_before_training(monkeypatch, ws_root):
    """Steps × seconds per step, from the mining run's encoding speed while nothing was trained here yet."""
    at = open_app(monkeypatch, ws_root, "pages/train.py")
    at.number_input(key="tr_steps").set_value(7).run()
    said = next(c.value for c in at.caption if "training rows" in c.value)
    assert said.startswith("About ") and "for 7 steps on " in said and "an estimate, from the encoding speed" in said


def test_password_gate(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, password="s3cret")
    assert [t.value for t in at.title] == ["Negative Space"]
    assert not at.sidebar.text_input  # nothing but the prompt
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error)
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert "Overview" in [t.value for t in at.title]
