"""The Import page offers the round-trip imports: another miner's run of a dataset already here, and TREC qrels as
a split; a bad file shows its line and field and imports nothing."""

from __future__ import annotations

from tests.app_helpers import finish_job, open_app, store_at


def test_import_page_imports_a_trec_run_and_selects_it(monkeypatch, ws_root, tmp_path):
    run_file = tmp_path / "bm25.trec"
    run_file.write_text("q1 Q0 py-split 1 0.5 bm25\nq1 Q0 misc-1 2 0.1 bm25\n", encoding="utf-8")
    at = open_app(monkeypatch, ws_root, "pages/import_data.py")
    assert "trec" in at.selectbox(key="imp_run_fmt").options[-1]
    at.selectbox(key="imp_run_fmt").set_value("trec")
    at.text_input(key="imp_run_path").input(str(run_file)).run()
    at.button(key="imp_run_go_path").click().run()
    finish_job(at, "imp_run_job")
    assert not at.error, [e.value for e in at.error]
    assert any("imported run" in s.value for s in at.success)
    run_id = at.session_state["ns_run"]
    assert store_at(ws_root).run(run_id)["params"]["import"]["format"] == "trec"


def test_import_page_shows_a_bad_run_files_line_and_a_qrels_split(monkeypatch, ws_root, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "how do I join path components", "pos": [], "neg": ["no such text"]}\n',
                   encoding="utf-8")
    at = open_app(monkeypatch, ws_root, "pages/import_data.py")
    before = store_at(ws_root).table_checksums()
    at.selectbox(key="imp_run_fmt").set_value("flag")
    at.text_input(key="imp_run_path").input(str(bad)).run()
    at.button(key="imp_run_go_path").click().run()
    finish_job(at, "imp_run_job", fails=True)
    message = " ".join(e.value for e in at.error)
    assert "bad.jsonl:1" in message and "'neg[0]'" in message and "Nothing was imported" in message
    assert store_at(ws_root).table_checksums() == before

    qrels = tmp_path / "dev.qrels"
    qrels.write_text("q1 0 py-join 1\n", encoding="utf-8")
    at.text_input(key="imp_qrels_split").input("dev")
    at.text_input(key="imp_qrels_path").input(str(qrels)).run()
    at.button(key="imp_qrels_go_path").click().run()
    finish_job(at, "imp_qrels_job")
    assert not at.error, [e.value for e in at.error]
    assert "dev" in store_at(ws_root).splits("tiny")


def test_export_page_writes_a_datasets_folder(monkeypatch, ws_root):
    from datasets import load_from_disk

    at = open_app(monkeypatch, ws_root, "pages/export.py")
    at.selectbox(key="exp_fmt").set_value("flag").run()
    at.checkbox(key="exp_as_datasets").check().run()
    at.button(key="exp_go").click().run()
    finish_job(at, "exp_job")
    assert not at.exception and not at.error
    folder = next((ws_root / "exports").glob("*-flag-datasets-raw"))
    assert len(load_from_disk(str(folder / "datasets"))) == 6  # a row per train query of the fixture
    at.selectbox(key="exp_fmt").set_value("trec-run").run()
    assert not at.get("checkbox") or "exp_as_datasets" not in [c.key for c in at.checkbox]


def test_an_uploaded_run_file_lives_until_its_job_ends_and_a_refusal_names_it_as_uploaded(monkeypatch, ws_root,
                                                                                           tmp_path):
    """The upload's temporary copy is read by the import job after the page run that wrote it ended, and removed
    when the job ends; a refusal names the file as uploaded, not its temporary copy."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    at = open_app(monkeypatch, ws_root, "pages/import_data.py")
    at.selectbox(key="imp_run_fmt").set_value("flag")
    at.file_uploader(key="imp_run_file").set_value(
        ("mined.jsonl", b'{"query": "how do I join path components", "pos": [], "neg": ["no such text"]}\n',
         "application/json")).run()
    at.button(key="imp_run_go_upload").click().run()
    finish_job(at, "imp_run_job", fails=True)
    message = " ".join(e.value for e in at.error)
    assert "mined.jsonl:1" in message and "'neg[0]'" in message and "Nothing was imported" in message
    assert str(scratch) not in message and not list(scratch.iterdir())

    at.selectbox(key="imp_run_fmt").set_value("trec")
    at.file_uploader(key="imp_run_file").set_value(
        ("bm25.trec", b"q1 Q0 py-split 1 0.5 bm25\n", "text/plain")).run()
    at.button(key="imp_run_go_upload").click().run()
    finish_job(at, "imp_run_job")
    assert not at.error and any("imported run" in s.value for s in at.success)
    assert not list(scratch.iterdir())
