"""Export: write the selected run's training data in any supported format, show the manifest, download it."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import streamlit as st

from core.errors import UserError
from core.export import FORMATS, export
from pages import common

common.through_app(__file__)

DESCRIPTIONS = {
    "st-triplet": "sentence-transformers (anchor, positive, negative) rows",
    "st-ntuple": "sentence-transformers (anchor, positive, negative_1 … negative_n) rows",
    "st-labeled-list": "sentence-transformers (query, docs, labels) rows for listwise losses",
    "flag": 'FlagEmbedding JSONL {"query", "pos": [], "neg": []}',
    "tevatron": "Tevatron JSONL {query_id, query, positive_passages, negative_passages}",
    "beir-qrels": "BEIR folder with promoted positives added to the qrels",
}


def zipped(folder: Path) -> bytes:
    """The export folder as one zip for the browser (the folder itself stays in the workspace)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


st.title("Export")
run_id = common.require_run()
store = common.store()
cols = st.columns(3)
fmt = cols[0].selectbox("Format", FORMATS, format_func=lambda f: f"{f} — {DESCRIPTIONS[f]}", key="exp_fmt")
data = cols[1].radio("Data", ["auto", "curated", "raw"], horizontal=True, key="exp_data",
                     help="curated drops candidates judged false negative (and unsure, unless kept) and adds "
                          "promoted positives; auto picks curated once verdicts exist.")
unsure = cols[2].radio("Candidates judged *unsure*", ["drop", "keep"], horizontal=True, key="exp_unsure")
# run ids embed the user's dataset name: keep only safe characters so the name can never leave exports/
out = common.workspace().exports_dir / re.sub(r"[^A-Za-z0-9_-]+", "_", f"{run_id}-{fmt}")
st.caption(f"Written atomically to `{out}`")
if st.button("Export", type="primary", key="exp_go"):
    try:
        manifest = export(store, run_id, fmt, out, None if data == "auto" else data, unsure)
    except UserError as exc:
        common.user_error(exc)
    else:
        st.session_state["exp_last"] = (str(out), manifest)
last = st.session_state.get("exp_last")
if last and Path(last[0]).is_dir():
    folder, manifest = Path(last[0]), last[1]
    st.success(f"Exported {manifest['rows']:,} rows ({manifest['data']}) to {folder}")
    st.download_button(f"Download {folder.name}.zip", zipped(folder), file_name=f"{folder.name}.zip",
                       mime="application/zip", key="exp_download")
    st.subheader("manifest.json")
    st.json(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
