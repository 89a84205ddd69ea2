"""Map: the run's queries, positives and candidates in 2-D; box/lasso a query's candidates to judge them at once.

PCA shows at once; UMAP (better neighbourhoods) is computed once per mining run in a background job and replaces
PCA when stored. Both come from cached embeddings, never re-encoded. A selection is judged as one batch after a
confirmation that lists what is selected (core.judging: one undo, spread like a click on Review).
"""

from __future__ import annotations

import os

import streamlit as st

from core import charts, judging, review
from core.errors import UserError
from core.jobs import Job
from core.lookups import positives_by_query
from core.projection import (COLOUR_BY, anchored_points, best_projection, dataset_points, documents_queries,
                             ensure_projection, root_run)
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


def _judge_selection(dataset: str, pairs: list[tuple[str, str]], who: str, label: str) -> None:
    """One batch: a single undo (z on Review) takes the whole selection back; spread like a click on Review."""
    st.session_state.pop(CONFIRM, None)
    try:
        done = judging.judge(common.store(), common.workspace(), dataset, pairs, who, label, "map selection")
    except UserError as exc:
        st.session_state["map_done"] = f"Nothing recorded: {exc}"
        return
    st.session_state["map_done"] = (f"{len(done.events)} candidate(s) marked {label.replace('_', ' ')} as one "
                                    f"batch (one undo takes it back); {done.suggested} suggestion(s) spread")


def _ask(label: str | None) -> None:
    if label is None:
        st.session_state.pop(CONFIRM, None)
    else:
        st.session_state[CONFIRM] = label


def selected_ids(event) -> list[str]:
    """The ids (customdata) of the points a box or lasso selected, in selection order."""
    points = ((event or {}).get("selection") or {}).get("points") or []
    return [p["customdata"][0] for p in points if p.get("customdata")]


CONFIRM = "map_confirm"  # the verdict waiting for confirmation on the current selection
VERDICTS = [("false_negative", "False negative"), ("true_negative", "True negative"), ("unsure", "Unsure")]

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
judged = review.own_verdicts(store, dataset, who)
positives = positives_by_query(store, dataset, run["split"])
continuous = colour in ("score", "risk")
if view == "Whole dataset":
    points = dataset_points(projection, cands, {d for ds in positives.values() for d in ds}, judged, colour)
    event = st.plotly_chart(charts.map_figure(points, colour, f"{len(points):,} points · {method.upper()}",
                                              continuous),
                            key="map_all", on_select="rerun", selection_mode=("box", "lasso"))
    picked = selected_ids(event)
    spread = documents_queries(cands, picked)
    if spread.empty:
        st.caption("Box or lasso select documents to see which queries mined them.")
    else:
        st.info(f"{len(spread)} document(s) selected. A verdict belongs to a (query, document) pair and these "
                f"documents were mined for {int(spread['queries'].sum())} pair(s): a document can be a false "
                "negative for one query and a true negative for another, so judge them in the *This query* view.")
        st.dataframe(spread, hide_index=True)
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
selected = selected_ids(event)
own = cands.loc[cands["query_id"] == query_id, ["doc_id"]]
chosen = [d for d in dict.fromkeys(selected) if d in set(own["doc_id"])]
if not chosen:
    st.session_state.pop(CONFIRM, None)
    st.caption("Use box or lasso select on the chart to pick candidates of this query, then judge them at once.")
    st.stop()
st.write(f"**{len(chosen)}** candidate(s) of this query selected:")
st.dataframe(store.documents(dataset, chosen).set_index("doc_id").loc[chosen].reset_index()[["doc_id", "title",
                                                                                          "text"]],
             hide_index=True, height=min(38 + 35 * len(chosen), 300))
pending = st.session_state.get(CONFIRM)
if pending is None:
    buttons = st.columns(3)
    for col, (label, title) in zip(buttons, VERDICTS):
        col.button(f"Mark {len(chosen)} selected: {title}", key=f"map_{label}", on_click=_ask, args=(label,))
else:
    title = dict(VERDICTS)[pending].lower()
    st.warning(f"Mark all **{len(chosen)}** selected candidates of query {common.escape_markdown(query_id)} as "
               f"**{title}**? One undo (z on Review) takes the whole batch back.")
    yes, no = st.columns(2)
    yes.button(f"Confirm: {len(chosen)} × {title}", key="map_confirm_yes", type="primary",
               on_click=_judge_selection, args=(dataset, [(query_id, d) for d in chosen], who, pending))
    no.button("Cancel", key="map_confirm_no", on_click=_ask, args=(None,))
