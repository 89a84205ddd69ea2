"""Map: the run's queries, positives and candidates in 2-D; box/lasso a query's candidates to judge them at once.

The map is fitted on a sample and the other points placed on it in a background job (core.projection), PCA first,
then UMAP, stored once per mining run; the page shows what is placed so far and never projects on its own thread
beyond a small run's PCA, or one query's points on their own PCA while a large run's map is not placed yet. The query-anchored view reads one query by the index; the whole-dataset view draws a
stratified sample ("n of N points"). A selection is judged as one batch after a confirmation that lists what is
selected (core.judging: one undo, spread like a click on Review).
"""

from __future__ import annotations

import os

import streamlit as st

from core import charts, judging, review
from core.errors import UserError
from core.jobs import Job
from core.projection import (COLOUR_BY, MapState, RunPairs, anchored_points, dataset_points, documents_queries,
                             map_state, query_projection, run_pairs)
from pages import common

common.through_app(__file__)


@st.cache_resource(show_spinner=False, max_entries=2)
def pairs_of(workspace_root: str, run_id: str) -> RunPairs:
    """A run's pairs as integer codes (~80 MB at 10M candidates): runs are immutable, so read once per process."""
    return run_pairs(common.get_store(workspace_root), run_id)


@st.fragment(run_every=2)
def wait_for(jobs: dict[str, Job], shown: bool) -> None:
    """Poll the projection jobs: say how far they got; rerun the page when one ends, or when the first points
    are placed on a page that has none to show yet."""
    for method, job in jobs.items():
        if job.done or (not shown and job.fraction > 0):
            st.rerun(scope="app")
        note = (" (the first UMAP fit in a server process compiles numba kernels, ~35 s); showing PCA until then"
                if method == "umap" else "")
        st.caption(f"{method.upper()} is being computed in the background: {job.message}{note}.")


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
if run["stats"].get("candidates", 1) == 0:
    st.warning("This run has no candidates, so there is nothing to map.")
    st.stop()
if done := st.session_state.pop("map_done", None):
    st.toast(done)

umap_on = os.environ.get("NEGSPACE_UMAP", "1") != "0"
state: MapState = map_state(store, ws, run_id, umap=umap_on)
for method, error in state.errors.items():
    st.warning(f"{method.upper()} failed ({error}); " + ("showing PCA." if method == "umap" else "no map to show."))
if not umap_on:
    st.caption("UMAP is switched off on this server (NEGSPACE_UMAP=0); showing PCA.")
if state.jobs:
    wait_for(state.jobs, state.frame is not None)
cols = st.columns([1.2, 1, 3])
view = cols[0].segmented_control("View", ["This query", "Whole dataset"], default="This query",
                                 key="map_view", disabled=state.frame is None) or "This query"
if state.frame is None:  # the run's map is not placed yet: this query's points on their own PCA meanwhile
    st.info("The run's map is being placed (PCA on a sample first); meanwhile *This query* shows the query's own "
            "points on a PCA of those points alone, and *Whole dataset* opens once the sample is placed.")
    view = "This query"
    projection, method, placed = None, "pca of this query alone", ""
else:
    projection, method = state.frame, state.method
    placed = "" if state.complete else f" · {len(projection):,} of {state.total:,} points projected so far"
colour = cols[1].selectbox("Colour by", COLOUR_BY, key="map_colour")
judged = review.own_verdicts(store, dataset, who)
continuous = colour in ("score", "risk")
if view == "Whole dataset":
    pairs = pairs_of(str(ws.root), run_id)
    points = dataset_points(store, run_id, projection, pairs, judged, colour)
    event = st.plotly_chart(charts.map_figure(points, colour, f"{len(points):,} of {state.total:,} points · "
                                              f"{method.upper()}{placed}", continuous),
                            key="map_all", on_select="rerun", selection_mode=("box", "lasso"))
    picked = selected_ids(event)
    spread = documents_queries(pairs, picked)
    if spread.empty:
        st.caption("Box or lasso select documents to see which queries mined them.")
    else:
        st.info(f"{len(spread)} document(s) selected. A verdict belongs to a (query, document) pair and these "
                f"documents were mined for {int(spread['queries'].sum())} pair(s): a document can be a false "
                "negative for one query and a true negative for another, so judge them in the *This query* view.")
        st.dataframe(spread, hide_index=True)
    st.stop()

query_id = st.session_state.get(common.QUERY)
own = store.candidates(run_id, query_id, with_signals=False, with_risk=False) if query_id else None
if own is None or own.empty:
    query_id = store.first_query(run_id)
    own = store.candidates(run_id, query_id, with_signals=False, with_risk=False)
with cols[2]:
    st.markdown(f"Anchored on query **{common.escape_markdown(query_id)}** (change it on the Review page):")
    st.text(store.queries(dataset, [query_id])["text"].iloc[0])
if projection is None:
    projection = query_projection(store, ws, run_id, query_id)
points = anchored_points(store, run_id, projection, query_id, judged, colour)
event = st.plotly_chart(charts.map_figure(points, colour, f"Query {query_id}, its positives and candidates · "
                                          f"{method.upper()}{placed}", continuous),
                        key=f"map_q_{query_id}", on_select="rerun", selection_mode=("box", "lasso"))
selected = selected_ids(event)
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
