"""Mine: preview a rule change on the stored candidates, commit it as a new run, mine anew, list and diff runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import charts, rules, run_stats
from core.engines import ENGINES
from core.errors import UserError
from core.cross_encoder import ScoreResult, score_job
from core.mining import DIFF_WORDS, MineResult, compare_runs, derive_job, mine_job, preview, run_spec
from core.rules import RuleSpec
from pages import common

common.through_app(__file__)
PAGE = 200  # rows shown of a long table (flips, short queries, changed negatives); the count above says how many
COMMIT = "mine_commit_job"  # the background job committing the previewed rule, while it runs
SCORING = "mine_ce_job"  # the background job scoring the selected run with a cross-encoder, until it is reported
MINING = "mine_anew_job"  # the background job mining anew, until its run is selected
MINED = "mine_done"  # what the last mining job made, shown once after the rerun that selects its run

st.title("Mine")
dataset = common.require_dataset()
store = common.store()
runs = store.runs(dataset)
run_id = st.session_state.get(common.RUN)
run = store.run(run_id) if run_id else None
base = run_spec(run) if run else RuleSpec()


def param_widget(container, param: rules.Param, value: object, disabled: bool = False):
    """The widget of one declared rule parameter, starting at ``value`` (its ``start`` while it is None)."""
    help_ = rules.param_help(param)
    key = f"mine_{param.name}"
    label = param.label or param.words
    if param.type is bool:
        return container.checkbox(label, value=bool(value), key=key, help=help_, disabled=disabled)
    value = param.start if value is None else value
    low = param.low if param.low is not None else param.above
    number = param.type
    return container.number_input(label, min_value=None if low is None else number(low),
                                  value=number(value), step=number(param.step or 1), key=key, help=help_,
                                  disabled=disabled, format="%d" if number is int else "%g")


def rule_controls(base: RuleSpec) -> RuleSpec:
    """Widgets for every registered rule parameter, starting from ``base``; raises UserError for an invalid
    combination (in parameter words)."""
    names = list(rules.REGISTRY)
    cols = st.columns(1 + len(rules.COMMON))
    rule = cols[0].selectbox("Rule", names, index=names.index(base.rule), key="mine_rule",
                             help="; ".join(f"{r.name}: {r.summary}" for r in rules.REGISTRY.values()))
    values = {p.name: param_widget(col, p, base.values[p.name]) for col, p in zip(cols[1:], rules.COMMON)}
    tuned = [r for r in rules.REGISTRY.values() if r.params]  # a column per filter and per selector with parameters
    for col, declared in zip(st.columns(len(tuned)), tuned):
        if isinstance(declared, rules.Filter):
            key = f"mine_use_{declared.name}"
            st.session_state.setdefault(key, base.values[declared.threshold.name] is not None)
            if rule == declared.name:  # the headline filter always applies
                st.session_state[key] = True
            on = col.checkbox(f"{declared.name}: {declared.summary}", key=key, disabled=rule == declared.name)
            value = param_widget(col, declared.threshold, base.values[declared.threshold.name],
                                 disabled=not on)
            values[declared.threshold.name] = value if on else None
        else:
            for param in declared.params:
                values[param.name] = param_widget(col, param, base.values[param.name],
                                                  disabled=rule != declared.name)
    return RuleSpec(rule, **values)


st.subheader("Rule")
try:
    spec = rule_controls(base)
except UserError as exc:
    common.user_error(exc)
    st.stop()
st.caption(f"Rule: **{common.escape_markdown(spec.describe())}**")


def committed(result: MineResult) -> None:
    """Select the run the commit job saved, so the preview and the sidebar move to it."""
    common.select_run(result.run_id)
    st.toast(f"New run {result.run_id}: {result.kept:,} negatives kept")
    st.rerun()


def scored(result: ScoreResult) -> None:
    """Say what the scoring job scored, and how many suggestions it left for Review."""
    st.success(f"Scored {result.scored:,} pairs ({result.cached:,} of {result.pairs:,} from the cache) "
               f"with cross-encoder {result.model} in {result.seconds:.0f} s; {result.suggested:,} "
               "pseudo-positive suggestion(s) wait on Review.")


def score_controls(run_id: str, spec: RuleSpec) -> None:
    """Score the run with a local cross-encoder in the background (cached per pair: only pairs never scored by that
    model are), so the ce rules, the preview's CE chart, risk and exports read its probabilities."""
    teacher = store.run_teacher(run_id)
    job = st.session_state.get(SCORING)
    expanded = job is not None or (teacher is None and bool(spec.reads()))
    with st.expander("Score with a cross-encoder", expanded=expanded):
        if teacher is not None:
            st.caption(f"Scored by cross-encoder {teacher['model']} ({common.escape_markdown(teacher['model_path'])}"
                       f"): {teacher['pairs']:,} pairs, {teacher['scored_at'][:19].replace('T', ' ')}.")
        cols = st.columns(3)
        folder = cols[0].text_input("Cross-encoder folder (sentence-transformers CrossEncoder)", key="mine_ce_model",
                                    placeholder="/path/to/cross-encoder")
        device = common.device_choice(cols[1], "mine_ce_device")
        batch_size = cols[2].number_input("Pairs per batch", 1, 4096, 32, key="mine_ce_batch")
        scoring = common.job_slot(SCORING, "Scoring with the cross-encoder", scored)
        if st.button("Score", key="mine_ce_go", disabled=not folder.strip() or scoring,
                     help="Scores the run's candidates and its queries' positives in the background; unjudged "
                          "candidates scored above 0.9 become suggestions on Review (RocketQA's pseudo-positives)."):
            common.start(SCORING, lambda: score_job(common.workspace().root, run_id, folder, device, int(batch_size)))


def mined(result: MineResult) -> None:
    """Select the run the mining job saved and say, above the tabs after the rerun that selects it, what it made."""
    common.select_run(result.run_id)
    st.session_state[MINED] = (f"Run {result.run_id}: {result.queries:,} queries, {result.kept:,} negatives kept "
                               f"({result.encoded:,} texts encoded, {result.cached:,} from cache, "
                               f"{result.seconds:.0f} s).")
    st.rerun()


def change(delta: int) -> str | None:
    """A metric's delta against the current run; none when nothing changes (a "+0" would still get an arrow)."""
    return f"{delta:+,}" if delta else None


def show_preview(run_id: str, spec: RuleSpec) -> None:
    try:
        result = preview(store, run_id, spec)
    except UserError as exc:  # e.g. a ce rule on a run no cross-encoder scored yet
        common.user_error(exc)
        return
    s = result.summary
    cols = st.columns(5)
    cols[0].metric("kept negatives", f"{s['kept']:,}", change(s["kept"] - s["kept_before"]))
    cols[1].metric("newly kept", f"{s['added']:,}")
    cols[2].metric("no longer kept", f"{s['removed']:,}")
    cols[3].metric(f"queries short of {spec.num_negatives}", f"{s['short_queries']:,}",
                   change(s["short_queries"] - s["short_queries_before"]), delta_color="inverse")
    cols[4].metric("mean kept / query", f"{s['mean_kept_per_query']:.2f}")
    pos_scores = run_stats.run_shape(store, run_id).pos_scores
    left, right = st.columns(2)
    left.plotly_chart(charts.survivors_histogram(result.survivors, spec.num_negatives), key="mine_surv")
    right.plotly_chart(charts.margin_histogram(result.margins, pos_scores, spec,
                                               title="Margin s − s_P under the previewed rule"),
                       key="mine_margin_chart")
    if result.ce is not None:
        left.plotly_chart(charts.ce_histogram(result.ce, pos_scores, spec,
                                              title="Cross-encoder probability p under the previewed rule"),
                          key="mine_ce_chart")
    short = result.short_queries
    left.markdown(f"**Queries left short of {spec.num_negatives} negatives:** {len(short):,}"
                  + (f" (the first {PAGE:,} shown)" if len(short) > PAGE else ""))
    if not short.empty:
        shown = short.head(PAGE)
        left.dataframe(shown.merge(store.queries(dataset, list(shown["query_id"])), on="query_id"),
                       hide_index=True, height=240)
    flips = result.flips
    right.markdown(f"**Candidates that flip versus the current run:** {len(flips):,}"
                   + (f" (the first {PAGE:,} shown)" if len(flips) > PAGE else ""))
    if not flips.empty:
        right.dataframe(result.flip_table(store, PAGE), hide_index=True, height=240)
    if st.button("Commit as a new run", type="primary", disabled=spec == base or COMMIT in st.session_state,
                 help="Saves the previewed rule as a new immutable run that reuses these candidates "
                      "(in the background: the page stays usable)."):
        common.start(COMMIT, lambda: derive_job(store, run_id, spec))


@st.fragment
def show_diff(ids: list[str]) -> None:
    """Runs A and B compared (a fragment: picking runs reruns only the diff, not the rule preview)."""
    cols = st.columns(2)
    a = cols[0].selectbox("Run A (before)", ids, index=1, key="diff_a")
    b = cols[1].selectbox("Run B (after)", ids, index=0, key="diff_b")
    if not st.toggle("Compare them", key="diff_go", help="Matches every kept negative of both runs: seconds on a "
                                                         "run of millions of candidates, so only when asked."):
        return
    diff = compare_runs(store, a, b)
    cols = st.columns(4)
    for col, (change, count) in zip(cols, diff.totals.items()):
        col.metric(f"negatives that {DIFF_WORDS[change]}", f"{count:,}")
    st.markdown("**Per query**")
    st.dataframe(diff.per_query, height=240)
    st.markdown(f"**Changed negatives:** {len(diff.rows):,}"
                + (f" (the first {PAGE:,} shown)" if len(diff.rows) > PAGE else ""))
    st.dataframe(diff.table(store, dataset, PAGE), hide_index=True, height=300)


if report := st.session_state.pop(MINED, None):
    st.success(report)
mining = common.job_slot(MINING, "Mining (the page stays usable)", mined)  # above the tabs: seen from each of them
tab_preview, tab_new, tab_runs = st.tabs(["Preview on the selected run", "Mine anew", "Runs & diff"])
with tab_preview:
    if run is None:
        st.info("No run yet for this dataset: mine it in the *Mine anew* tab.")
    elif not run_stats.run_shape(store, run_id).candidates:
        st.warning("The selected run has no candidates, so there is nothing to re-threshold.")
    else:
        common.job_slot(COMMIT, "Committing the new run", committed)
        score_controls(run_id, spec)
        show_preview(run_id, spec)

with tab_new:
    st.write("Encode (cached: texts already encoded are never encoded again), retrieve with FAISS and apply the "
             "rule above. Leave the model empty for the bundled all-MiniLM-L6-v2.")
    cols = st.columns(4)
    model = cols[0].text_input("Model folder (sentence-transformers)", key="mine_model", placeholder="default")
    depth = cols[1].number_input("Depth", 1, 10_000, 100, key="mine_depth")
    splits = store.splits(dataset)
    split = cols[2].selectbox("Split", splits or ["train"], index=splits.index("train") if "train" in splits else 0,
                              key="mine_split")
    bm25_depth = cols[3].number_input("BM25 candidates fused in", 0, 1000, 0, key="mine_bm25")
    device = common.device_choice(cols[0], "mine_device")
    engine = cols[1].selectbox("Engine", list(ENGINES), key="mine_engine",
                               help="; ".join(f"**{name}**: {what}" for name, what in ENGINES.items()))
    if st.button("Mine", type="primary", key="mine_go", disabled=mining,
                 help="Runs in the background: the page stays usable, and the new run is selected when it is saved."):
        common.start(MINING, lambda: mine_job(store, common.workspace(), dataset, split, model or None, int(depth),
                                              spec, int(bm25_depth), device, engine))

with tab_runs:
    if not runs:
        st.info("No runs yet.")
    else:
        st.dataframe(pd.DataFrame([{
            "run": r["run_id"], "created": r["created_at"][:19].replace("T", " "),
            "rule": run_spec(r).describe(), "depth": r["params"].get("depth"), "split": r["split"],
            "model": r["model_fingerprint"], "queries": r["stats"].get("queries"),
            "candidates": r["stats"].get("candidates"), "kept": r["stats"].get("kept"),
            "short": r["stats"].get("short_queries"), "from": r.get("parent_run") or "",
        } for r in runs]), hide_index=True)
        if len(runs) < 2:
            st.caption("Diffs need two runs: commit a previewed rule or mine again.")
        else:
            show_diff([r["run_id"] for r in runs])
