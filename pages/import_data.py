"""Import: bring your own BEIR folder, sentence-transformers pairs/triplets file or Hugging Face datasets folder,
another miner's negatives as a run (core.run_import), TREC qrels as a split, or verdicts from a labels TSV or an
annotation tool's export (core.verdict_import); uploaded or from a path.

Uploads are written under fixed names into a temporary folder (the browser's file names never become paths);
the importer validates everything before writing, and its file / line / field errors are shown as given,
with the temporary path replaced by the name you uploaded. Every import runs as a background job the page polls
(a click meanwhile would stop a page run half-way); the job removes the temporary folder when it ends.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from core.datasets import FORMATS, PAIR_SUFFIXES, ImportResult, import_qrels_job, ingest_job
from core.errors import UserError
from core.jobs import Job
from core.labels import LabelImport, import_verdicts_job
from core.run_import import RUN_FORMATS, ImportedRun, import_run_job
from core.validation import check_upload_size, confined_path, max_upload_mb
from core.verdict_import import VERDICT_FORMATS
from pages import common

common.through_app(__file__)
DATASET_JOB = "imp_job"  # this session's dataset import; one_file's imports run under "<its key>_job"
MakeJob = Callable[[Path, Path | None], Job]  # (path to import, temporary upload folder or None) -> the import job

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


def staged_upload(sizes: list[int], write: Callable[[Path], tuple[Path, dict[str, str]]]
                  ) -> tuple[Path, dict[str, str], Path] | None:
    """``write(folder)`` into a new temporary folder: (import path, tmp→upload names, folder), the folder to be
    handed to the import job, which removes it when it ends (this run ends long before the job reads it). None,
    with the folder removed and the refusal shown, when the upload is refused."""
    try:
        check_upload_size(sizes)
    except UserError as exc:
        common.user_error(exc)
        return None
    folder = Path(tempfile.mkdtemp(prefix="negspace-upload-"))
    try:
        return (*write(folder), folder)
    except BaseException as exc:  # no job will own the folder: remove it now
        shutil.rmtree(folder, ignore_errors=True)
        if not isinstance(exc, UserError):
            raise
        common.user_error(exc)
        return None


def start_import(key: str, make: MakeJob, path: Path, renames: dict[str, str], upload: Path | None = None) -> None:
    """Start ``make(path, upload)`` as this session's import job under ``key``; ``renames`` are kept until it is
    reported, so its refusal names uploaded files as they were uploaded."""
    st.session_state[f"{key}_names"] = renames
    common.start(key, lambda: make(path, upload), refused=lambda exc: show_refusal(exc, renames))


def import_slot(key: str, what: str, report: Callable[[Any], None]) -> bool:
    """``common.job_slot`` for an import job: its refusal names uploaded files as they were uploaded."""
    return common.job_slot(key, what, report,
                           refused=lambda exc: show_refusal(exc, st.session_state.get(f"{key}_names")))


def dataset_imported(result: ImportResult) -> None:
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


def dataset_job(path: Path, upload: Path | None) -> Job:
    return ingest_job(common.store(), path, name.strip(), fmt, replace, upload)


importing = import_slot(DATASET_JOB, "Importing the dataset (the page stays usable)", dataset_imported)
upload_tab, path_tab = st.tabs(["Upload files", "Path on this server"])
with upload_tab:
    files = st.file_uploader("Files", accept_multiple_files=True, key="imp_files", max_upload_size=max_upload_mb(),
                             type=["jsonl", "json", "csv", "tsv", "parquet"])
    if st.button("Import upload", type="primary", disabled=not files or importing, key="imp_go_upload"):
        if not name.strip():
            st.error("Give the dataset a name first.")
        elif staged := staged_upload([upload.size for upload in files], lambda folder: stage_upload(folder, files)):
            start_import(DATASET_JOB, dataset_job, *staged)
with path_tab:
    root = common.server_root()
    path = st.text_input("Folder or file on the machine running the app" if root is None else
                         "Folder or file inside the server's folder (relative to it)", key="imp_path")
    if st.button("Import path", type="primary", disabled=not path or importing, key="imp_go_path"):
        if not name.strip():
            st.error("Give the dataset a name first.")
        else:
            try:  # with $NEGSPACE_ROOT: only inside it, no '..', no link leading out
                chosen = confined_path(path, root, "dataset path", must_exist=True)
            except UserError as exc:
                common.user_error(exc)
            else:
                start_import(DATASET_JOB, dataset_job, chosen, {})


UPLOAD_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


def one_file(key: str, what: str, make: MakeJob, report: Callable[[Any], None]) -> None:
    """Upload and path tabs for one input file: once a button is pressed, the import job ``make(path, upload
    folder)`` starts on the upload (under a fixed name in a temporary folder the job removes) or on the path typed
    (confined like the dataset path), and ``report(result)`` says what it imported once it ended."""
    job_key = f"{key}_job"
    importing = import_slot(job_key, f"Importing the {what.lower()} (the page stays usable)", report)
    upload_tab, server_tab = st.tabs(["Upload a file", "Path on this server"])
    with upload_tab:
        upload = st.file_uploader(what, key=f"{key}_file", max_upload_size=max_upload_mb())
        if st.button(f"Import uploaded {what.lower()}", disabled=upload is None or importing,
                     key=f"{key}_go_upload"):
            suffix = Path(upload.name).suffix.lower()

            def write(folder: Path) -> tuple[Path, dict[str, str]]:
                target = folder / ("upload" + (suffix if UPLOAD_SUFFIX.fullmatch(suffix) else ""))
                target.write_bytes(upload.getvalue())
                return target, {str(target): upload.name}

            if staged := staged_upload([upload.size], write):
                start_import(job_key, make, *staged)
    with server_tab:
        typed = st.text_input(f"{what} on the machine running the app", key=f"{key}_path")
        if st.button(f"Import {what.lower()} from the path", disabled=not typed or importing, key=f"{key}_go_path"):
            try:
                chosen = confined_path(typed, common.server_root(), what.lower(), must_exist=True)
            except UserError as exc:
                common.user_error(exc)
            else:
                start_import(job_key, make, chosen, {})


def foreign_run_job(path: Path, upload: Path | None) -> Job:
    return import_run_job(common.store(), path, st.session_state["imp_run_dataset"], st.session_state["imp_run_fmt"],
                          st.session_state["imp_run_split"], upload)


def foreign_run_imported(imported: ImportedRun) -> None:
    st.session_state["imp_done"] = f"{imported.summary()}. Next: review it on the **Review** page."
    common.select_dataset(common.store().run(imported.run_id)["dataset"])
    common.select_run(imported.run_id)
    st.rerun()


def split_job(path: Path, upload: Path | None) -> Job:
    return import_qrels_job(common.store(), st.session_state["imp_qrels_dataset"], path,
                            st.session_state["imp_qrels_split"], st.session_state["imp_qrels_replace"], upload)


def verdicts_job(path: Path, upload: Path | None) -> Job:
    return import_verdicts_job(common.store(), st.session_state["imp_lab_dataset"], path,
                               st.session_state["imp_lab_fmt"], st.session_state["imp_lab_annotator"] or None, upload)


def imported(result: ImportResult | LabelImport) -> None:
    st.session_state["imp_done"] = result.summary().capitalize() + "."
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
    one_file("imp_run", "Run file", foreign_run_job, foreign_run_imported)

    st.subheader("TREC qrels, as a split")
    cols = st.columns(3)
    cols[0].selectbox("Dataset", datasets, key="imp_qrels_dataset")
    cols[1].text_input("Split", key="imp_qrels_split", max_chars=200)
    cols[2].checkbox("Replace the split's qrels if it exists", key="imp_qrels_replace")
    one_file("imp_qrels", "Qrels file", split_job, imported)

    st.subheader("Verdicts: a labels TSV, Label Studio or Argilla")
    st.write("A Label Studio project's JSON export (made from *Export → label-studio*) or an Argilla dataset folder "
             "written by `to_disk` (made from *Export → argilla*; upload its `records.json`) brings each annotator's "
             "verdicts back; the whole file is checked first, and a file imported again adds nothing.")
    cols = st.columns(3)
    cols[0].selectbox("Dataset", datasets, key="imp_lab_dataset")
    cols[1].selectbox("Verdict format", list(VERDICT_FORMATS), key="imp_lab_fmt",
                      format_func=lambda n: f"{n}: {VERDICT_FORMATS[n].description}")
    cols[2].text_input("Annotator of rows that name none", key="imp_lab_annotator", max_chars=100)
    one_file("imp_lab", "Verdicts file", verdicts_job, imported)
