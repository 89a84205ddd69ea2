"""Export: write the selected run's training data in any supported format, show the manifest, download it."""

from __future__ import annotations

import io
import json
import zipfile
from functools import partial
from pathlib import Path

import streamlit as st

from core.export import EXPORT_FORMATS, curation_warning, default_data, export_job, export_name, read_manifest
from core.selection import LLM_CHOICES
from pages import common

common.through_app(__file__)
EXPORT = "exp_job"  # this session's export, written in the background until it is reported


def zipped(folder: Path) -> bytes:
    """The export folder as one zip for the browser (the folder itself stays in the workspace)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


def exported(manifest: dict) -> None:
    """Show the finished export below until the next one, and count it: the next overwrite is asked again."""
    st.session_state["exp_last"] = (manifest["path"], manifest)
    st.session_state["exp_count"] = st.session_state.get("exp_count", 0) + 1


st.title("Export")
run_id = common.require_run()
store = common.store()
cols = st.columns(4)
fmt = cols[0].selectbox("Format", list(EXPORT_FORMATS), format_func=lambda f: f"{f} — {EXPORT_FORMATS[f].description}",
                        key="exp_fmt")
data = cols[1].radio("Data", ["auto", "curated", "raw"], horizontal=True, key="exp_data",
                     help="curated drops candidates judged false negative (and unsure, unless kept) and adds "
                          "promoted positives; auto picks curated once verdicts exist.")
unsure = cols[2].radio("Candidates judged *unsure*", ["drop", "keep"], horizontal=True, key="exp_unsure")
llm_verdicts = cols[3].radio("LLM judges' verdicts", LLM_CHOICES, horizontal=True, key="exp_llm",
                             help="curated: ignore keeps the data to people's verdicts; count lets the verdicts of "
                                  "annotators named llm:… (python -m core judge) vote like a person's.")
as_datasets = EXPORT_FORMATS[fmt].rows_file is not None and st.checkbox(
    "As a Hugging Face datasets folder", key="exp_as_datasets",
    help="The rows written with Dataset.save_to_disk into datasets/ (open with datasets.load_from_disk) instead "
         "of data.jsonl.")
chosen = default_data(store, run_id) if data == "auto" else data
out = common.workspace().exports_dir / export_name(run_id, fmt, chosen, unsure, llm_verdicts, as_datasets)
if warning := curation_warning(store, run_id, chosen, llm_verdicts):
    st.warning(warning, icon="⚖️")
st.caption(f"Written atomically to `{common.shown_path(out)}`")
confirmed = True
if (previous := read_manifest(out)) is not None:
    st.info(f"`{out.name}` already exists (created {previous.get('created_at', 'at an unknown time')}); "
            "exporting again replaces it.")
    # keyed by the folder and the exports done so far, so a confirmation never carries over to the next one
    confirmed = st.checkbox("Overwrite", key=f"exp_overwrite_{out.name}_{st.session_state.get('exp_count', 0)}")
exporting = common.job_slot(EXPORT, "Exporting (the page stays usable)", exported)
if st.button("Export", type="primary", key="exp_go", disabled=not confirmed or exporting):
    common.start(EXPORT, lambda: export_job(store, run_id, fmt, out, chosen, unsure, llm_verdicts, as_datasets))
last = st.session_state.get("exp_last")
if last and Path(last[0]).is_dir():
    folder, manifest = Path(last[0]), last[1]
    st.success(f"Exported {manifest['rows']:,} rows ({manifest['data']}) to {common.shown_path(folder)}")
    # zipped only when clicked: on every rerun, a large export was zipped into memory for nothing
    st.download_button(f"Download {folder.name}.zip", partial(zipped, folder), file_name=f"{folder.name}.zip",
                       mime="application/zip", key="exp_download")
    st.subheader("manifest.json")
    st.json(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
