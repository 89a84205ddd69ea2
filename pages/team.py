"""Team: how far each annotator got (overall and on their share of the run's split), how well they agree
(Cohen's κ per pair, Krippendorff's α overall, per dataset or per query), and the disagreement queue where an
adjudicator records the final verdict; admins also split the run's queries among annotators and edit the
dataset's guidelines here, and read or download the workspace's audit trail (who wrote what, and when).

All numbers come from core.agreement and core.assignments; the writes are an adjudication through core.judging
(the same path as every other verdict, marked as an adjudication), an assignment (core.assignments), a
guidelines version (core.guidelines) and, when asked, an LLM judge's verdicts (core.llm_judge, in a background
job). Document and query text is shown literally (st.text / dataframes); guidelines as markdown without HTML.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import agreement, assignments, audit, guidelines, judging, labels, llm_judge, lookups, roles, run_stats
from core.errors import UserError
from pages import common

QUEUE_PAGE = 10
AUDIT_SHOWN = 200  # newest audit rows listed; the downloads hold them all
VERDICT_NAME = {"false_negative": "false negative", "true_negative": "true negative", "unsure": "unsure"}
MESSAGE = "ns_team_message"  # (place, kind, text): what the last action said, shown beside that action
JUDGE_JOB = "ns_team_llm_job"  # the LLM judge this session started, while it runs and until its report is shown


def _say(place: str, kind: str, text: str) -> None:
    """Keep what an action said for the next run, which shows it at ``place`` (beside the action, not on top)."""
    st.session_state[MESSAGE] = (place, kind, text)


def _said(place: str) -> None:
    """Show the last action's message here when that action belongs to ``place`` (once)."""
    message = st.session_state.get(MESSAGE)
    if message is not None and message[0] == place:
        del st.session_state[MESSAGE]
        getattr(st, message[1])(message[2])


def _adjudicate(dataset: str, query_id: str, doc_id: str, who: str, label: str) -> None:
    """Button callback: record the final verdict (runs before the next script run, which then shows the result)."""
    try:
        judging.judge(common.store(), common.workspace(), dataset, [(query_id, doc_id)], who, label,
                      adjudication=True)
    except UserError as exc:
        _say("queue", "error", str(exc))
        return
    _say("queue", "success", f"Final verdict on ({query_id}, {doc_id}): {VERDICT_NAME[label]}, recorded as an "
                             f"adjudication by {who}.")


def _assign(run_id: str, names: str, overlap: int, seed: int) -> None:
    try:
        found = assignments.assign(common.store(), run_id, assignments.parse_names(names), overlap, seed)
    except UserError as exc:
        _say("split", "error", str(exc))
        return
    _say("split", "success", f"Split the run's queries among {', '.join(found.annotators)}, each judged by "
                             f"{found.overlap}.")


def _unassign(run_id: str) -> None:
    try:
        assignments.clear(common.store(), run_id)
    except UserError as exc:
        _say("split", "error", str(exc))
        return
    _say("split", "success", "Removed the split: everyone reviews every query of the run again.")


def _save_guidelines(dataset: str, key: str) -> None:
    try:
        saved, new = guidelines.save(common.store(), dataset, st.session_state.get(key) or "")
    except UserError as exc:
        _say("guidelines", "error", str(exc))
        return
    _say("guidelines", "success", f"Saved the guidelines as version {saved.version}." if new else
                                  f"The guidelines are unchanged (version {saved.version}).")


def show_split(store, run_id: str) -> None:
    """The run's split (core.assignments): each person's progress on their share and the overlap reached; admins
    make, replace or remove it."""
    plan = assignments.plan(store, run_id)
    if plan is not None:
        done = assignments.progress(store, run_id, common.outline(run_id))
        st.subheader("Assignments", anchor=False)
        cols = st.columns(3)
        cols[0].metric("annotators", len(plan.annotators))
        cols[1].metric("overlap (judges per query)", plan.overlap)
        cols[2].metric(f"kept candidates judged by {plan.overlap}", f"{done.reached:,} of {done.candidates:,}")
        st.dataframe(done.people, hide_index=True, column_config={
            "queries": st.column_config.NumberColumn("queries in share"),
            "candidates": st.column_config.NumberColumn("kept candidates in share"),
            "share": st.column_config.ProgressColumn("done", min_value=0.0, max_value=1.0, format="percent"),
            "complete": st.column_config.NumberColumn("queries complete")})
        st.caption(f"Split {plan.created_at[:16].replace('T', ' ')} UTC by {plan.created_by} (seed {plan.seed}). "
                   "Each person's Review and triage queue hold only their queries; others see the whole run. "
                   "Judged by: " + ", ".join(f"{i}{'+' if i == plan.overlap else ''} people: {n:,}"
                                             for i, n in enumerate(done.by_count)) + ".")
    if not common.may(roles.ASSIGN):  # core.assignments refuses other roles anyway
        return
    _said("split")
    with st.expander("Split this run's queries among annotators" if plan is None else "Split the run again"):
        st.caption("Each query goes to *overlap* of the named annotators (2 or more gives κ and α something to "
                   "measure); shares differ by at most one query and the same names, overlap and seed give the "
                   "same split. A new split replaces the old one; verdicts are kept.")
        with st.form("ns_assign_form"):
            names = st.text_input("Annotators (comma-separated)", key="ns_assign_names",
                                  value=", ".join(plan.annotators) if plan else "")
            cols = st.columns(2)
            overlap = cols[0].number_input("Overlap", min_value=1, value=plan.overlap if plan else 2,
                                           key="ns_assign_overlap")
            seed = cols[1].number_input("Seed", min_value=0, value=plan.seed if plan else 0, key="ns_assign_seed")
            if st.form_submit_button("Assign"):
                _assign(run_id, names, int(overlap), int(seed))
                st.rerun()
        if plan is not None:
            st.button("Remove the split", key="ns_unassign", on_click=_unassign, args=(run_id,))


def guideline_editor(store, dataset: str) -> None:
    """Admins edit the dataset's guidelines; every save is a new version, shown beside Review."""
    current = guidelines.latest(store, dataset)
    title = "Guidelines" + (f" (version {current.version})" if current else " (none yet)")
    _said("guidelines")
    with st.expander(title):
        st.caption("Markdown, shown beside the Review page without HTML or images; each verdict records the "
                   "version its annotator saw. Saving makes a new version (earlier ones are kept).")
        key = "ns_guidelines_text"
        st.text_area("Guidelines", value=current.text if current else "", key=key, height=240)
        st.button("Save as a new version", key="ns_guidelines_save", on_click=_save_guidelines, args=(dataset, key))
        history = guidelines.versions(store, dataset)
        if history:
            st.dataframe(pd.DataFrame(history), hide_index=True)


def shown(annotator: str) -> str:
    """An annotator's name as the page shows it: LLM judges are marked, so nobody mistakes one for a colleague."""
    return f"{annotator} (LLM)" if labels.is_llm(annotator) else annotator


def kappa_heatmap(result: agreement.Agreement) -> go.Figure:
    """κ per annotator pair, with the number of shared items in each cell; blank where κ is undefined."""
    kappa, items = result.matrix("kappa"), result.matrix("items")
    kappa = kappa.rename(index=shown, columns=shown)
    text = [[("" if math.isnan(k) else f"κ {k:.2f}<br>") + f"{int(n)} items" if not math.isnan(n) else ""
             for k, n in zip(krow, nrow)] for krow, nrow in zip(kappa.to_numpy(), items.to_numpy())]
    fig = go.Figure(go.Heatmap(z=kappa.to_numpy(), x=kappa.columns, y=kappa.index, text=text,
                               texttemplate="%{text}", zmin=-1, zmax=1, colorscale="RdBu",
                               colorbar=dict(title="κ"), hoverongaps=False))
    fig.update_layout(height=120 + 60 * len(result.annotators), margin=dict(l=10, r=10, t=30, b=10),
                      title="Cohen's κ per annotator pair", yaxis=dict(autorange="reversed"))
    return fig


def agreement_table(pairs: pd.DataFrame) -> None:
    """Annotator pairs (core.agreement's columns items, observed, kappa, reason) as a table with readable headers
    and κ in words (core.agreement.reading)."""
    pairs = pairs.copy()
    pairs.insert(pairs.columns.get_loc("kappa") + 1, "κ reads",
                 [agreement.reading("kappa", k) or "" for k in pairs["kappa"]])
    st.dataframe(pairs.rename(columns={"items": "shared items", "observed": "observed agreement", "kappa": "Cohen's κ",
                                       "reason": "why undefined"}).fillna({"why undefined": ""}),
                 hide_index=True, column_config={
                     "observed agreement": st.column_config.NumberColumn(format="percent"),
                     "Cohen's κ": st.column_config.NumberColumn(format="%.3f")})


def show_agreement(result: agreement.Agreement, key: str) -> None:
    cols = st.columns(4)
    cols[0].metric("annotators", len(result.annotators))
    cols[1].metric("judged pairs", f"{result.items:,}")
    cols[2].metric("judged by 2+", f"{result.shared_items:,}")
    cols[3].metric("Krippendorff's α", "—" if result.alpha is None else f"{result.alpha:.3f}",
                   help=agreement.scale("alpha") + ".")
    if result.alpha is not None:
        cols[3].caption(f"α reads: **{agreement.reading('alpha', result.alpha)}**")
    st.caption(f"κ and α count only the {result.shared_items:,} shared items (pairs judged by two or more "
               "annotators): a pair's κ uses the items both judged, α leaves out items one person judged alone.")
    if result.alpha_reason:
        st.caption(f"α undefined: {result.alpha_reason}.")
    if len(result.annotators) < 2:
        st.info("Agreement needs verdicts from at least two annotators on the same (query, document) pairs.")
        return
    st.plotly_chart(kappa_heatmap(result), key=f"team_kappa_{key}")
    agreement_table(result.pairs)
    st.caption(f"κ in words after {agreement.scale('kappa')}.")
    judges = agreement.llm_agreement(result)
    if not judges.empty:
        st.subheader("LLM judges against people", anchor=False)
        st.caption("Annotators named `llm:<model>` are LLM judges (`python -m core judge`): a chat model asked, as "
                   "in RLHN (Thakur et al. 2025), whether a candidate answers the query as fully as its labelled "
                   "positive. Their κ against each person, on the pairs both judged, is the measure of how far "
                   "their verdicts can be trusted here. Exports ignore their verdicts unless told to count them.")
        agreement_table(judges.rename(columns={"judge": "LLM judge"}))


def positive_lines(store, dataset: str, doc_ids: list[str]) -> list[str]:
    """A query's labelled positives as "id: short text" lines: what the candidate is weighed against when
    adjudicating."""
    docs = store.documents(dataset, doc_ids)
    return [f"{d}: {lookups.snippet(t, 160)}" for d, t in zip(docs["doc_id"], lookups.document_texts(docs))]


def show_queue(store, dataset: str, who: str) -> None:
    queue = agreement.disagreements(store, dataset)
    st.subheader(f"Disagreements to adjudicate ({len(queue)})", anchor=False)
    _said("queue")  # the last adjudication's outcome: its card has left the queue
    if queue.empty:
        st.success("No open disagreements: every pair judged differently has a final verdict.")
        return
    if not who:
        st.warning("Enter your annotator name in the sidebar to record final verdicts.")
    st.caption("Pairs whose annotators' current verdicts differ and that nobody has adjudicated yet, oldest first. "
               "Your choice is recorded as an adjudication: it becomes the pair's final verdict (export, training) "
               "and stays in the history; undo it on the Review page like any verdict.")
    pages = max(1, math.ceil(len(queue) / QUEUE_PAGE))
    page = st.number_input("Page", 1, pages, 1, key="ns_team_page") if pages > 1 else 1
    on_page = queue.iloc[(page - 1) * QUEUE_PAGE: page * QUEUE_PAGE]
    queries = store.queries(dataset, list(on_page["query_id"])).set_index("query_id")["text"]
    docs = store.documents(dataset, list(on_page["doc_id"])).set_index("doc_id")
    for item in on_page.itertuples(index=False):
        with st.container(border=True):
            left, right = st.columns([3, 2])
            with left:
                st.caption(f"query {item.query_id}")
                st.text(queries.get(item.query_id, "(query no longer in the dataset)"))
                positives = store.positives(dataset, None, item.query_id)
                st.caption(f"labelled positive{'s' if len(positives) > 1 else ''} of the query"
                           if positives else "no labelled positive")
                for line in positive_lines(store, dataset, positives):
                    st.text(line)
                st.caption(f"document {item.doc_id}")
                if item.doc_id in docs.index:
                    common.show_document(docs.at[item.doc_id, "title"], docs.at[item.doc_id, "text"])
                else:
                    st.text("(document no longer in the dataset)")
            with right:
                for annotator, verdict in item.verdicts.items():  # st.text: notes shown literally, wrapped
                    note = item.notes.get(annotator)
                    st.text(f"{shown(annotator)}: {VERDICT_NAME[verdict]}" + (f" — note: {note}" if note else ""))
                buttons = st.columns(len(labels.LABELS))
                for column, label in zip(buttons, labels.LABELS):
                    column.button(VERDICT_NAME[label], key=f"ns_adj|{item.query_id}|{item.doc_id}|{label}",
                                  disabled=not who, on_click=_adjudicate,
                                  args=(dataset, item.query_id, item.doc_id, who, label),
                                  help=f"Final verdict: {VERDICT_NAME[label]}")


def show_verdicts(store, dataset: str, who: str) -> None:
    st.subheader("Verdicts", anchor=False)
    everyone = st.toggle("Show all annotators' verdicts", key="ns_team_all",
                         help="Off: only your own verdicts, so others' choices don't sway yours.")
    if not everyone and not who:
        st.info("Enter your annotator name in the sidebar to see your verdicts, or show everyone's.")
        return
    frame = labels.current(store, dataset, None if everyone else who)
    if frame.empty:
        st.info("No verdicts yet." if everyone else f"No verdicts by {who} yet.")
        return
    st.dataframe(frame[["query_id", "doc_id", "annotator", "label", "kind", "note", "created_at"]],
                 hide_index=True, height=300)


def llm_judge_controls(run_id: str) -> None:
    """Ask an LLM judge for verdicts on the run's riskiest candidates nobody has judged (the same as `python -m core
    judge`): it runs in the background; the key is read from the server's environment, never typed here."""
    if common.job_slot(JUDGE_JOB, "Asking the LLM judge", lambda report: st.success(report.summary())):
        return
    with st.expander("Ask an LLM judge (one more annotator)"):
        st.caption("Sends this run's riskiest candidates that no person judged to an OpenAI-compatible chat endpoint "
                   "(vLLM, llama.cpp's server, Ollama, …) with RLHN's question and records the answers as annotator "
                   "`llm:<model>`. The budget counts answered calls; cached answers are free.")
        with st.form("ns_llm_form"):
            endpoint = st.text_input("Endpoint", placeholder="http://localhost:8000/v1", key="ns_llm_endpoint")
            model = st.text_input("Model", key="ns_llm_model", help="The name the endpoint serves.")
            budget = st.number_input("Budget (calls)", min_value=1, value=50, step=10, key="ns_llm_budget")
            key_env = st.text_input("API key environment variable", key="ns_llm_key_env",
                                    placeholder=f"{llm_judge.DEFAULT_KEY_ENV} (used when set)",
                                    help="Read from the app server's environment; the key itself is never typed "
                                         "here or stored.")
            if st.form_submit_button("Ask the LLM judge"):
                common.start(JUDGE_JOB, lambda: llm_judge.judge_job(common.workspace().root, run_id, endpoint.strip(),
                                                                    model.strip(), int(budget),
                                                                    key_env.strip() or None))


def show_audit(store) -> None:
    """The audit trail (core.audit: audited writes and label events merged, oldest first), read only when asked:
    it holds every verdict of the workspace. The downloads are what ``python -m core audit export`` writes,
    rendered when clicked."""
    st.subheader("Audit trail", anchor=False)
    if not st.toggle("Show who wrote what, and when", key="ns_team_audit",
                     help="Every promotion, import, mining run, export, account change … and every verdict, "
                          "with its actor and UTC time."):
        return
    trail = audit.log(store)
    st.caption(f"{len(trail):,} rows; the newest {min(len(trail), AUDIT_SHOWN):,} first.")
    newest = trail.tail(AUDIT_SHOWN).iloc[::-1]
    st.dataframe(newest.assign(detail=[json.dumps(d, ensure_ascii=False, sort_keys=True) for d in newest["detail"]]),
                 hide_index=True, height=300)
    for col, fmt in zip(st.columns(len(audit.FORMATS)), audit.FORMATS):
        col.download_button(f"Download the whole trail ({fmt.upper()})", lambda fmt=fmt: audit.render(store, fmt)[0],
                            file_name=f"audit.{fmt}", mime="text/plain", key=f"ns_team_audit_{fmt}")


# -- page -----------------------------------------------------------------------------------------------------------
common.through_app(__file__)
st.header("Team", anchor=False)
dataset = common.require_dataset()
store = common.store()
who = (st.session_state.get(common.ANNOTATOR) or "").strip()

st.subheader("Progress", anchor=False)
run_id = st.session_state.get(common.RUN)
kept = None
if run_id:
    progress, kept = run_stats.kept_progress(store, dataset, run_id)
else:
    progress = agreement.annotator_progress(store, dataset)
if progress.empty:
    st.info("No verdicts in this dataset yet. Judge candidates on the **Review** page.")
else:
    config = {"last_at": st.column_config.TextColumn("last activity")}
    if kept is not None:
        config["share"] = st.column_config.ProgressColumn(f"of {kept:,} kept in this run", min_value=0.0,
                                                          max_value=1.0, format="percent")
    st.dataframe(progress, hide_index=True, column_config=config)
    st.caption("Counts are current verdicts (undone ones excluded); adjudications are counted separately.")
if run_id:
    show_split(store, run_id)

st.subheader("Agreement", anchor=False)
by_query = agreement.agreement_by_query(store, dataset)
scope = st.selectbox("Over", [None, *by_query["query_id"]], key="ns_team_scope",
                     format_func=lambda q: "the whole dataset" if q is None else f"query {q}")
show_agreement(agreement.dataset_agreement(store, dataset, scope), "all" if scope is None else "query")
if not by_query.empty:
    with st.expander(f"Agreement per query ({len(by_query)} queries with verdicts, least agreement first)"):
        by_query.insert(by_query.columns.get_loc("alpha") + 1, "α reads",
                        [agreement.reading("alpha", a) or "" for a in by_query["alpha"]])
        st.dataframe(by_query, hide_index=True, column_config={
            "observed": st.column_config.NumberColumn("observed agreement", format="percent"),
            "alpha": st.column_config.NumberColumn("α", format="%.3f")})

if common.may(roles.GUIDELINES):  # core.guidelines refuses other roles anyway
    guideline_editor(store, dataset)
if common.may(roles.ADJUDICATE):  # core.judging refuses an adjudication by other roles anyway
    show_queue(store, dataset, who)
show_verdicts(store, dataset, who)
if run_id and common.may(roles.RUNS):
    llm_judge_controls(run_id)
if common.may(roles.ACCOUNTS):  # who did what is the admins' to read
    show_audit(store)
