"""Overview: what is in the dataset and the selected run, and how its scores and margins are distributed."""

from __future__ import annotations

import streamlit as st

from core import charts, labels, run_stats
from core.mining import run_spec
from pages import common

common.through_app(__file__)

st.title("Overview")
dataset = common.require_dataset()
store = common.store()
info = next(d for d in store.datasets() if d["name"] == dataset)
cols = st.columns(5)
cols[0].metric("documents", f"{info['documents']:,}")
cols[1].metric("queries", f"{info['queries']:,}")
cols[2].metric("qrels", f"{info['qrels']:,}")
cols[3].metric("splits", ", ".join(store.splits(dataset)) or "—")
cols[4].metric("mining runs", len(store.runs(dataset)))
st.caption(f"Imported {info['imported_at'][:19].replace('T', ' ')} UTC as {info['format']} from {info['source']}")

run_id = common.require_run()
run = store.run(run_id)
spec = run_spec(run)
stats = run["stats"]
st.subheader("Selected run")
cols = st.columns(5)
cols[0].metric("mined queries", f"{stats.get('queries', 0):,}")
cols[1].metric("candidates", f"{stats.get('candidates', 0):,}")
cols[2].metric("kept negatives", f"{stats.get('kept', 0):,}")
cols[3].metric(f"queries short of {spec.num_negatives}", f"{stats.get('short_queries', 0):,}")
cols[4].metric("depth", run["params"].get("depth", "—"))
st.caption(f"{run_id} · rule: {spec.describe()} · model {run['model_fingerprint']} "
           f"({run['params'].get('model_path', '')}) · created {run['created_at'][:19].replace('T', ' ')} UTC")

shape = run_stats.run_shape(store, run_id)
if not shape.candidates:
    st.warning("This run has no candidates: no query of its split had a labelled positive with documents "
               "left to retrieve. Nothing to plot.")
    st.stop()
left, right = st.columns(2)
left.plotly_chart(charts.score_histogram(shape.scores, shape.pos_scores, spec), key="ov_scores")
right.plotly_chart(charts.margin_histogram(shape.margins, shape.pos_scores, spec), key="ov_margin")
left.plotly_chart(charts.margin_ecdf(shape.margins, shape.pos_scores, spec), key="ov_ecdf")
above = shape.above
right.markdown(f"**{above.candidates:,}** candidates ({above.share:.1%}) score above their query's weakest "
               f"positive, in **{above.queries:,}** queries; **{above.kept:,}** of "
               "them are kept as negatives by this run's rule. Those are the likeliest false negatives — "
               "start reviewing there: **Review → Triage queue** ranks every mined candidate of the run, kept or "
               "dropped, by false-negative risk, riskiest first.")

st.subheader("Verdicts")
verdicts = labels.resolved(store, dataset)
if verdicts.empty:
    st.info("No verdicts yet. Judge candidates on the **Review** page; the breakdown appears here.")
    st.stop()
judged = run_stats.judged_on_run(store, run_id, verdicts[["query_id", "doc_id", "label"]])
left, right = st.columns(2)
left.dataframe(run_stats.verdict_table(shape, judged))
left.caption(f"{len(verdicts):,} judged (query, document) pairs in this dataset, one resolved verdict each "
             "(adjudication first, else the cautious majority).")
right.plotly_chart(charts.margin_histogram(run_stats.verdict_margins(judged), shape.pos_scores, spec,
                                           colours=charts.VERDICT_COLOURS,
                                           title="Margin s − s_P of judged candidates, by verdict"),
                   key="ov_verdicts")
