"""Import: bring your own BEIR folder, sentence-transformers pairs/triplets file or Hugging Face datasets folder,
another miner's negatives as a run (core.run_import), TREC qrels as a split, or verdicts from a labels TSV or an
annotation tool's export (core.verdict_import); uploaded or from a path.

Uploads are written under fixed names into a temporary folder (the browser's file names never become paths);
the importer validates everything before writing, and its file / line / field errors are shown as given,
with the temporary path replaced by the name you uploaded.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from core.datasets import FORMATS, PAIR_SUFFIXES, import_qrels, ingest
from core.errors import UserError
from core.run_import import RUN_FORMATS, import_run
from core.validation import check_upload_size, confined_path, max_upload_mb
from core.verdict_import import VERDICT_FORMATS, import_verdicts
from pages import common

common.through_app(__file__)

SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,50}$")


def stage_upload(folder: Path, files: list) -> tuple[Path, dict[str, str]]:
    """Write uploads into ``folder`` as a BEIR folder or one pairs file; returns (import path, tmp→upload names)."""
    names = {f.name: f for f in files}
    if "corpus.jsonl" in names or "queries.jsonl" in names:
        renames = {}
        for upload in files:
            if upload.name in ("corpus.jsonl", "queries.jsonl"):
                target = folder / upload.name
            elif upload.name.endswith(".tsv") and SPLIT_NAME.match(upload.name[:-4]):
                (folder / "qrels").mkdir(exist_ok=True)
                target = folder / "qrels" / upload.name
            else:
                raise UserError(f"{upload.name}: not part of a BEIR folder (expected corpus.jsonl, queries.jsonl "
                                "and qrels files named <split>.tsv)")
            target.write_bytes(upload.getvalue())
            renames[str(target)] = upload.name
        return folder, renames
    if len(files) != 1:
        raise UserError("upload either one pairs/triplets file, or corpus.jsonl + queries.jsonl + <split>.tsv")
    upload = files[0]
    suffix = Path(upload.name).suffix.lower()
    if suffix not in PAIR_SUFFIXES:
        raise UserError(f"{upload.name}: expected one of {', '.join(sorted(PAIR_SUFFIXES))}")
    target = folder / f"upload{suffix}"
    target.write_bytes(upload.getvalue())
    return target, {str(target): upload.name}


def show_refusal(exc: UserError, renames: dict[str, str] | None) -> None:
    """The importer's file / line / field error, with temporary upload paths replaced by the uploaded names."""
    message = common.shown_path(exc)
    for tmp, original in sorted((renames or {}).items(), key=lambda kv: -len(kv[0])):
        message = message.replace(tmp, original)
    st.error(f"Nothing was imported. {message}", icon="⚠️")


def run_import(path: Path, name: str, fmt: str, replace: bool, renames: dict[str, str] | None = None) -> None:
    try:
        result = ingest(common.store(), path, name.strip(), fmt, replace)
    except UserError as exc:
        show_refusal(exc, renames)
        return
    st.session_state["imp_done"] = result.summary().capitalize() + ". Next: mine it on the **Mine** page."
    common.select_dataset(result.name)
    st.rerun()  # so the sidebar shows the new dataset


st.title("Import")
st.write("A BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv` with graded scores) or a "
         "sentence-transformers pairs/triplets file (`anchor`, `positive`[, `negative` …] columns; JSONL, CSV "
         "or Parquet). Bad input is rejected whole, with the file, line and field; re-importing identical "
         "content changes nothing.")
if done := st.session_state.pop("imp_done", None):
    st.success(done)
cols = st.columns(3)
name = cols[0].text_input("Dataset name", key="imp_name", max_chars=200)
fmt = cols[1].selectbox("Format", list(FORMATS), key="imp_fmt")
replace = cols[2].checkbox("Replace a dataset of the same name (labels are kept)", key="imp_replace")
upload_tab, path_tab = st.tabs(["Upload files", "Path on this server"])
with upload_tab:
    files = st.file_uploader("Files", accept_multiple_files=True, key="imp_files", max_upload_size=max_upload_mb(),
                             type=["jsonl", "json", "csv", "tsv", "parquet"])
    if st.button("Import upload", type="primary", disabled=not files, key="imp_go_upload"):
        if not name.strip():
            st.error("Give the dataset a name first.")
        else:
            with tempfile.TemporaryDirectory(prefix="negspace-upload-") as tmp:
                try:
                    check_upload_size([upload.size for upload in files])
                    staged, renames = stage_upload(Path(tmp), files)
                except UserError as exc:
                    common.user_error(exc)
                else:
                    run_import(staged, name, fmt, replace, renames)
with path_tab:
    root = common.server_root()
    path = st.text_input("Folder or file on the machine running the app" if root is None else
                         "Folder or file inside the server's folder (relative to it)", key="imp_path")
    if st.button("Import path", type="primary", disabled=not path, key="imp_go_path"):
        if not name.strip():
            st.error("Give the dataset a name first.")
        else:
            try:  # with $NEGSPACE_ROOT: only inside it, no '..', no link leading out
                chosen = confined_path(path, root, "dataset path", must_exist=True)
            except UserError as exc:
                common.user_error(exc)
            else:
                run_import(chosen, name, fmt, replace)


UPLOAD_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


def one_file(key: str, what: str, act: Callable[[Path, dict[str, str]], None]) -> None:
    """Upload and path tabs for one input file: once a button is pressed, ``act(path, tmp→upload names)`` runs on
    the upload (under a fixed name in a temporary folder, removed afterwards) or on the path typed (confined like
    the dataset path)."""
    upload_tab, server_tab = st.tabs(["Upload a file", "Path on this server"])
    with upload_tab:
        upload = st.file_uploader(what, key=f"{key}_file", max_upload_size=max_upload_mb())
        if st.button(f"Import uploaded {what.lower()}", disabled=upload is None, key=f"{key}_go_upload"):
            suffix = Path(upload.name).suffix.lower()
            with tempfile.TemporaryDirectory(prefix="negspace-upload-") as tmp:
                target = Path(tmp) / ("upload" + (suffix if UPLOAD_SUFFIX.fullmatch(suffix) else ""))
                try:
                    check_upload_size([upload.size])
                    target.write_bytes(upload.getvalue())
                except UserError as exc:
                    common.user_error(exc)
                else:
                    act(target, {str(target): upload.name})
    with server_tab:
        typed = st.text_input(f"{what} on the machine running the app", key=f"{key}_path")
        if st.button(f"Import {what.lower()} from the path", disabled=not typed, key=f"{key}_go_path"):
            try:
                chosen = confined_path(typed, common.server_root(), what.lower(), must_exist=True)
            except UserError as exc:
                common.user_error(exc)
            else:
                act(chosen, {})


def import_foreign_run(path: Path, renames: dict[str, str]) -> None:
    try:
        imported = import_run(common.store(), path, st.session_state["imp_run_dataset"],
                              st.session_state["imp_run_fmt"], st.session_state["imp_run_split"])
    except UserError as exc:
        show_refusal(exc, renames)
        return
    st.session_state["imp_done"] = f"{imported.summary()}. Next: review it on the **Review** page."
    common.select_dataset(st.session_state["imp_run_dataset"])
    common.select_run(imported.run_id)
    st.rerun()


def import_split(path: Path, renames: dict[str, str]) -> None:
    try:
        imported = import_qrels(common.store(), st.session_state["imp_qrels_dataset"], path,
                                st.session_state["imp_qrels_split"], st.session_state["imp_qrels_replace"])
    except UserError as exc:
        show_refusal(exc, renames)
        return
    st.session_state["imp_done"] = imported.summary().capitalize() + "."
    st.rerun()


def import_verdict_file(path: Path, renames: dict[str, str]) -> None:
    try:
        imported = import_verdicts(common.store(), st.session_state["imp_lab_dataset"], path,
                                   st.session_state["imp_lab_fmt"], st.session_state["imp_lab_annotator"] or None)
    except UserError as exc:
        show_refusal(exc, renames)
        return
    st.session_state["imp_done"] = imported.summary().capitalize() + "."
    st.rerun()


st.divider()
st.subheader("Another miner's negatives, as a run")
st.write("Output of sentence-transformers' `mine_hard_negatives`, FlagEmbedding's `hn_mine`, Tevatron or a TREC "
         "run becomes a read-only run of a dataset already here: texts are matched to its documents and queries "
         "(a text that matches nothing is an error naming its line), every listed negative is kept at the file's "
         "rank, with its scores where the file has them. Review, re-rule and diff it like a mined run.")
datasets = [d["name"] for d in common.store().datasets()]
if not datasets:
    st.info("Import the dataset the negatives were mined from first.")
else:
    cols = st.columns(3)
    run_dataset = cols[0].selectbox("Dataset they were mined from", datasets, key="imp_run_dataset")
    cols[1].selectbox("Run format", list(RUN_FORMATS), key="imp_run_fmt",
                      format_func=lambda n: f"{n}: {RUN_FORMATS[n].description}")
    splits = common.store().splits(run_dataset)
    cols[2].selectbox("Split", splits, index=splits.index("train") if "train" in splits else 0, key="imp_run_split")
    one_file("imp_run", "Run file", import_foreign_run)

    st.subheader("TREC qrels, as a split")
    cols = st.columns(3)
    cols[0].selectbox("Dataset", datasets, key="imp_qrels_dataset")
    cols[1].text_input("Split", key="imp_qrels_split", max_chars=200)
    cols[2].checkbox("Replace the split's qrels if it exists", key="imp_qrels_replace")
    one_file("imp_qrels", "Qrels file", import_split)

    st.subheader("Verdicts: a labels TSV, Label Studio or Argilla")
    st.write("A Label Studio project's JSON export (made from *Export → label-studio*) or an Argilla dataset folder "
             "written by `to_disk` (made from *Export → argilla*; upload its `records.json`) brings each annotator's "
             "verdicts back; the whole file is checked first, and a file imported again adds nothing.")
    cols = st.columns(3)
    cols[0].selectbox("Dataset", datasets, key="imp_lab_dataset")
    cols[1].selectbox("Verdict format", list(VERDICT_FORMATS), key="imp_lab_fmt",
                      format_func=lambda n: f"{n}: {VERDICT_FORMATS[n].description}")
    cols[2].text_input("Annotator of rows that name none", key="imp_lab_annotator", max_chars=100)
    one_file("imp_lab", "Verdicts file", import_verdict_file)
