"""Train: fine-tune the retriever on the selected run's raw or curated data, then compare models side by side."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core import leakage, risk
from core.errors import UserError
from core.evaluate import METRICS, comparison_table, evaluate_job
from core.selection import TrainingData, select
from core.train import LOSSES, TrainOptions, default_out, estimate, train_job, trained_models
from core.train_reranker import RerankerOptions, train_reranker_job, trained_rerankers
from core.train_reranker import default_out as reranker_out
from pages import common

common.through_app(__file__)
TRAINING, RERANKER, EVALUATION = "tr_job", "rr_job", "tr_eval_job"  # this session's background jobs, until reported
RESCORED = "rs_done"  # the second model just set: said once, after the rerun that starts the rescoring


@st.cache_resource(ttl=common.CACHE_TTL_S, show_spinner=False, max_entries=4)
def training_data(path: str, run_id: str, data: str) -> TrainingData:
    """The run's raw or curated training data (core.selection), read once for the leakage check and the estimate;
    shared, not copied: nothing here changes it."""
    return select(common.get_store(path), run_id, data)


@st.cache_data(ttl=common.CACHE_TTL_S, show_spinner=False, max_entries=16)
def leakage_report(path: str, run_id: str, data: str, split: str) -> leakage.LeakageReport:
    return leakage.check(common.get_store(path), training_data(path, run_id, data), split)


def model_label(manifest: dict) -> str:
    return (f"{manifest['data']} · {manifest['loss']} · {manifest['steps']} steps · seed {manifest['seed']} · "
            f"{manifest['finished'][:16].replace('T', ' ')}")


st.title("Train")
run_id = common.require_run()
store, ws = common.store(), common.workspace()
path = str(ws.root)
run = store.run(run_id)
dataset = run["dataset"]
eval_splits = [s for s in store.splits(dataset) if s != run["split"]]
st.caption(f"Run `{run_id}` · dataset **{common.escape_markdown(dataset)}** · split {run['split']}")

cols = st.columns(4)
data = cols[0].radio("Data", ["curated", "raw"], horizontal=True, key="tr_data",
                     help="raw = the run's kept negatives as mined; curated = minus every candidate judged false "
                          "negative (and unsure, unless kept), plus promoted positives. Judged false negatives "
                          "are also masked as in-batch negatives.")
layout = cols[0].radio("Rows", ["triplet", "ntuple"], horizontal=True, key="tr_rows",
                       help="triplet = one row per negative; ntuple = one row per positive carrying all the "
                            "query's negatives (raw and curated then train on the same rows in the same order).")
loss = cols[1].selectbox("Loss", LOSSES, key="tr_loss",
                         format_func={"mnrl": "MultipleNegativesRanking", "cmnrl": "Cached MNRL (GradCache)",
                                      "gist": "GISTEmbed (base model as guide)"}.get)
epochs = cols[2].number_input("Epochs", 0.1, 20.0, 1.0, 0.5, key="tr_epochs")
batch_size = cols[3].number_input("Batch size", 2, 512, 32, key="tr_batch")
cols = st.columns(4)
max_steps = cols[0].number_input("Max steps (0 = all epochs)", 0, 100_000, 0, key="tr_steps")
seed = cols[1].number_input("Seed", 0, 2**31 - 1, 0, key="tr_seed")
max_seq_length = cols[2].number_input("Training tokens per text (0 = model's)", 0, 512, 0, 32, key="tr_len",
                                      help="Shorter trains faster on CPU; the saved model keeps the base length.")
eval_split = cols[3].selectbox("Evaluation split", eval_splits or [None], key="tr_split",
                               format_func=lambda s: s or "(no other split)")
device = common.device_choice(st.columns(4)[0], "tr_device")

exclude = False
if eval_split:
    report = leakage_report(path, run_id, data, eval_split)
    if report.any:
        st.warning(report.summary(), icon="⚠️")
        exclude = st.checkbox("Exclude the leaked queries and documents from training", key="tr_exclude")

options = TrainOptions(data=data, loss=loss, row_layout=layout, epochs=float(epochs), batch_size=int(batch_size),
                       max_steps=int(max_steps) or None, seed=int(seed), max_seq_length=int(max_seq_length) or None,
                       eval_split=eval_split, exclude_leaks=exclude, device=device)
try:
    st.caption(estimate(store, ws, training_data(path, run_id, data), options).describe())
except UserError as exc:  # e.g. a device torch cannot see: the same error training would stop with
    common.user_error(exc)
training = common.job_slot(TRAINING, "Training (minutes on a CPU; the page stays usable)",
                           lambda manifest: st.success(
                               f"Trained {manifest['steps']:,} steps on {manifest['rows']:,} rows in "
                               f"{manifest['seconds']:.0f}s on {manifest['device']}; saved to {manifest['path']}"))
if st.button("Train", type="primary", key="tr_go", disabled=training):
    common.start(TRAINING, lambda: train_job(store, run_id, default_out(ws, run_id, options), options))

st.subheader("Train a reranker")
st.caption("A cross-encoder teacher for the ce rules and the ce_score risk signal (RocketQA): the split's labelled "
           "positives against sampled negatives, plus every verdict on this dataset (false negatives as positives, "
           "true negatives as negatives, unsure left out). Score a run with it on the Mine page.")
splits = store.splits(dataset)
cols = st.columns(4)
rr_split = cols[0].selectbox("Split", splits, index=splits.index(run["split"]) if run["split"] in splits else 0,
                             key="rr_split")
rr_from = cols[1].radio("Negatives from", ["this run", "random documents"], key="rr_from",
                        help="this run: drawn from each query's mined candidates (hard, as RocketQA draws them); "
                             "random: any document that is not a positive or judged")
rr_negatives = cols[2].number_input("Negatives per positive", 1, 50, 4, key="rr_neg")
rr_steps = cols[3].number_input("Max steps (0 = all epochs)", 0, 100_000, 0, key="rr_steps")
cols = st.columns(4)
rr_epochs = cols[0].number_input("Epochs", 0.1, 20.0, 1.0, 0.5, key="rr_epochs")
rr_batch = cols[1].number_input("Batch size", 1, 512, 32, key="rr_batch")
rr_length = cols[2].number_input("Tokens per pair", 16, 512, 256, 32, key="rr_len",
                                 help="Kept by the saved model; 128 halves the time on a CPU.")
rr_device = common.device_choice(cols[3], "rr_device")
reranking = common.job_slot(RERANKER, "Training a cross-encoder (minutes on a CPU; the page stays usable)",
                            lambda manifest: st.success(
                                f"Trained a cross-encoder for {manifest['steps']:,} steps on "
                                f"{manifest['counts']['pairs']:,} pairs in {manifest['seconds']:.0f}s on "
                                f"{manifest['device']}; saved to {manifest['path']}"))
if st.button("Train reranker", key="rr_go", disabled=reranking):
    rr_options = RerankerOptions(split=rr_split, run=run_id if rr_from == "this run" else None,
                                 negatives=int(rr_negatives), epochs=float(rr_epochs), batch_size=int(rr_batch),
                                 max_steps=int(rr_steps) or None, max_length=int(rr_length), seed=int(seed),
                                 device=rr_device)
    common.start(RERANKER,
                 lambda: train_reranker_job(store, dataset, reranker_out(ws, dataset, rr_options), rr_options))
rerankers = [m for m in trained_rerankers(ws) if m["dataset"] == dataset]
if rerankers:
    st.dataframe(pd.DataFrame([{"finished": m["finished"], "split": m["split"], **m["counts"], "steps": m["steps"],
                                "folder": m["path"]} for m in rerankers]), width="stretch", hide_index=True)

st.subheader("Second model for false-negative risk")
current = ws.settings().get(risk.SECOND_MODEL_SETTING)
st.caption(f"Its score (a z-score among each query's candidates) is the second_model risk signal. Now: "
           f"{common.escape_markdown(current) if current else 'none'}.")
cols = st.columns([2, 2, 1])
retrievers = {m["path"]: m for m in trained_models(ws)}
picked = cols[0].selectbox("Model", [None, *retrievers], key="rs_model",
                           format_func=lambda p: "none" if p is None else model_label(retrievers[p]))
folder = cols[1].text_input("…or another local sentence-transformers folder", key="rs_folder")
if cols[2].button("Use and re-score this run", key="rs_go"):
    try:
        risk.configure_second_model(ws, folder.strip() or picked)
    except UserError as exc:
        common.user_error(exc)
    else:
        st.session_state[RESCORED] = (f"Second model now {ws.settings().get(risk.SECOND_MODEL_SETTING) or 'none'}: "
                                      f"run {run_id} is scored again in the background; other runs when opened.")
        st.rerun()
if rescored := st.session_state.pop(RESCORED, None):
    st.success(rescored)
    common.risk_ready(run_id)  # starts the scoring as the shared job every page polls, and shows its progress

st.subheader("Compare")
models = [m for m in trained_models(ws) if m["dataset"] == dataset]
if not models:
    st.info("No model trained on this dataset yet.")
    st.stop()
if not eval_splits:
    st.info(f"Dataset {dataset!r} has no split besides {run['split']!r} to evaluate on.")
    st.stop()
by_path = {m["path"]: m for m in models}
chosen = st.multiselect("Models (compared with the base model)", list(by_path),
                        default=list(by_path)[:3], format_func=lambda p: model_label(by_path[p]), key="tr_models")
evaluating = common.job_slot(EVALUATION, f"Encoding the corpus and retrieving the top 100 for split {eval_split!r}",
                             lambda results: st.session_state.update(tr_results=(dataset, eval_split, results)))
if st.button("Evaluate", key="tr_eval", disabled=evaluating or not chosen):
    models = [("base", "default"), *[(model_label(by_path[m]), m) for m in chosen]]
    common.start(EVALUATION, lambda: evaluate_job(store, dataset, eval_split, models, ws.embeddings_dir, device))

stored = st.session_state.get("tr_results")
if stored and stored[:2] == (dataset, eval_split):
    results = stored[2]
    baseline = st.selectbox("Compare against", list(results), key="tr_baseline",
                            help="e.g. pick the raw-trained model to see whether curating helped")
    table = comparison_table(results, baseline)
    st.dataframe(table, width="stretch",
                 column_config={m: st.column_config.NumberColumn(format="%.4f") for m in
                                [*METRICS, "Δ ndcg@10", "p (t-test)", "p (randomization)"]})
    st.caption(f"Δ, the 95 % confidence interval of the mean difference, per-query wins/losses and p-values "
               f"compare nDCG@10 with **{common.escape_markdown(baseline)}** over the same queries (paired two-sided "
               f"t-test; sign-flip randomization test).")
    means = table[list(METRICS)].reset_index().melt("model", var_name="metric", value_name="value")
    st.plotly_chart(px.bar(means, x="metric", y="value", color="model", barmode="group"), width="stretch")
    trained_names = [name for name in results if name != baseline]
    pick = st.selectbox("Per-query change of", trained_names, key="tr_pick")
    diff = (results[pick].per_query["ndcg@10"] - results[baseline].per_query["ndcg@10"]).sort_values()
    frame = pd.DataFrame({"query": diff.index, "Δ nDCG@10": diff.to_numpy(),
                          "outcome": ["win" if d > 1e-9 else "loss" if d < -1e-9 else "tie" for d in diff]})
    st.plotly_chart(px.bar(frame, x="query", y="Δ nDCG@10", color="outcome",
                           color_discrete_map={"win": "#2e7d32", "loss": "#c62828", "tie": "#9e9e9e"}),
                    width="stretch")
