"""Import: bring your own BEIR folder or sentence-transformers pairs/triplets file, uploaded or from a path.

Uploads are written under fixed names into a temporary folder (the browser's file names never become paths);
the importer validates everything before writing, and its file / line / field errors are shown as given,
with the temporary path replaced by the name you uploaded.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import streamlit as st

from core.datasets import PAIR_SUFFIXES, ingest
from core.errors import UserError
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


def run_import(path: Path, name: str, fmt: str, replace: bool, renames: dict[str, str] | None = None) -> None:
    try:
        result = ingest(common.store(), path, name.strip(), fmt, replace)
    except UserError as exc:
        message = str(exc)
        for tmp, original in sorted((renames or {}).items(), key=lambda kv: -len(kv[0])):
            message = message.replace(tmp, original)
        st.error(f"Nothing was imported. {message}", icon="⚠️")
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
fmt = cols[1].selectbox("Format", ["auto", "beir", "pairs", "triplets"], key="imp_fmt")
replace = cols[2].checkbox("Replace a dataset of the same name (labels are kept)", key="imp_replace")
upload_tab, path_tab = st.tabs(["Upload files", "Path on this server"])
with upload_tab:
    files = st.file_uploader("Files", accept_multiple_files=True, key="imp_files",
                             type=["jsonl", "json", "csv", "tsv", "parquet"])
    if st.button("Import upload", type="primary", disabled=not files, key="imp_go_upload"):
        if not name.strip():
            st.error("Give the dataset a name first.")
        else:
            with tempfile.TemporaryDirectory(prefix="negspace-upload-") as tmp:
                try:
                    staged, renames = stage_upload(Path(tmp), files)
                except UserError as exc:
                    common.user_error(exc)
                else:
                    run_import(staged, name, fmt, replace, renames)
with path_tab:
    path = st.text_input("Folder or file on the machine running the app", key="imp_path")
    if st.button("Import path", type="primary", disabled=not path, key="imp_go_path"):
        if not name.strip():
            st.error("Give the dataset a name first.")
        else:
            run_import(Path(path).expanduser(), name, fmt, replace)
