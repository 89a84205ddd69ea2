"""Map: the run's queries, positives and candidates in 2-D; box/lasso a query's candidates to judge them at once.

PCA shows at once; UMAP (better neighbourhoods) is computed once per mining run in a background job and replaces
PCA when stored. Both come from cached embeddings, never re-encoded.
"""

from __future__ import annotations

import os

import streamlit as st

from core import charts, labels, review
from core.jobs import Job
from core.mining import positives_by_query
from core.projection import COLOUR_BY, anchored_points, best_projection, dataset_points, ensure_projection, root_run
from core.workspace import open_workspace
from pages import common

common.through_app(__file__)


@st.cache_resource(show_spinner=False)
def umap_job(workspace_root: str, root: str) -> Job:
    """One UMAP fit per mining run per process, in its own thread with its own store connection."""
    def work(stage) -> None:
        store = open_workspace(workspace_root).store()
        try:
            ensure_projection(store, open_workspace(workspace_root), root, "umap")
        finally:
            store.close()
    return Job(f"umap:{root}", work)


@st.fragment(run_every=2)
def wait_for_umap(job: Job) -> None:
    """Poll the UMAP job; rerun the whole page once it is stored so the map switches from PCA."""
    if job.done:
        st.rerun(scope="app")
    st.caption(f"UMAP is being computed in the background ({job.message}; the first fit in a server process "
               "compiles numba kernels, ~35 s). Showing PCA until then.")


def _judge_selection(dataset: str, query_id: str, doc_ids: list[str], who: str, label: str) -> None:
    for doc_id in doc_ids:
        labels.record(common.store(), dataset, query_id, doc_id, who, label, "map selection")
    st.session_state["map_done"] = f"{len(doc_ids)} candidate(s) marked {label.replace('_', ' ')}"


st.title("Map")
run_id = common.require_run()
who = common.annotator()
store = common.store()
ws = common.workspace()
run = store.run(run_id)
dataset = run["dataset"]
cands = common.candidates(run_id)
if cands.empty:
    st.warning("This run has no candidates, so there is nothing to map.")
    st.stop()
if done := st.session_state.pop("map_done", None):
    st.toast(done)

with st.spinner("Projecting cached embeddings (PCA)…"):
    projection, method = best_projection(store, ws, run_id)
if method == "pca":
    if os.environ.get("NEGSPACE_UMAP", "1") == "0":
        st.caption("UMAP is switched off on this server (NEGSPACE_UMAP=0); showing PCA.")
    else:
        job = umap_job(str(ws.root), root_run(store, run_id))
        if job.error is not None:
            st.warning(f"UMAP failed ({job.error}); showing PCA.")
        else:
            wait_for_umap(job)

cols = st.columns([1.2, 1, 3])
view = cols[0].segmented_control("View", ["This query", "Whole dataset"], default="This query",
                                 key="map_view") or "This query"
colour = cols[1].selectbox("Colour by", COLOUR_BY, key="map_colour")
judged = review.verdicts(store, dataset, who)
positives = positives_by_query(store, dataset, run["split"])
continuous = colour in ("score", "risk")
if view == "Whole dataset":
    points = dataset_points(projection, cands, {d for ds in positives.values() for d in ds}, judged, colour)
    st.plotly_chart(charts.map_figure(points, colour, f"{len(points):,} points · {method.upper()}", continuous),
                    key="map_all")
    st.stop()

query_ids = list(dict.fromkeys(cands["query_id"]))
query_id = st.session_state.get(common.QUERY)
if query_id not in query_ids:
    query_id = query_ids[0]
with cols[2]:
    st.markdown(f"Anchored on query **{common.escape_markdown(query_id)}** (change it on the Review page):")
    st.text(store.queries(dataset, [query_id])["text"].iloc[0])
points = anchored_points(projection, cands, positives.get(query_id, []), query_id, judged, colour)
event = st.plotly_chart(charts.map_figure(points, colour, f"Query {query_id}, its positives and candidates · "
                                          f"{method.upper()}", continuous),
                        key=f"map_q_{query_id}", on_select="rerun", selection_mode=("box", "lasso"))
selected = [p["customdata"][0] for p in (event.selection.points if event else []) if p.get("customdata")]
own = set(cands.loc[cands["query_id"] == query_id, "doc_id"])
chosen = [d for d in dict.fromkeys(selected) if d in own]
if chosen:
    st.write(f"**{len(chosen)}** candidate(s) of this query selected: {common.escape_markdown(', '.join(chosen[:12]))}"
             + (" …" if len(chosen) > 12 else ""))
    buttons = st.columns(3)
    for col, (label, title) in zip(buttons, [("false_negative", "False negative"),
                                             ("true_negative", "True negative"), ("unsure", "Unsure")]):
        col.button(f"Mark selected: {title}", key=f"map_{label}", on_click=_judge_selection,
                   args=(dataset, query_id, chosen, who, label))
else:
    st.caption("Use box or lasso select on the chart to pick candidates of this query, then judge them at once.")
