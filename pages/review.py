"""Review: one query at a time, judge each mined candidate as false negative / true negative / unsure.

Keyboard: f / t / u judge the current candidate (after a query's last candidate, the next query opens), j / k
next / previous candidate, n / p next / previous query (or queue item), z undo, a / r accept / reject the query's
first open suggestion, ? the list of keys; the keys live in pages/candidate_list.js, which names the (query,
document or suggestion) each key meant. Everything read here comes from stored data (core.review); verdicts go
through core.judging, each with the version of the dataset's guidelines shown beside it (core.guidelines). A
person the run's split (core.assignments) names reviews only their share: the query list, the triage queue and
progress are theirs.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from core import assignments, charts, guidelines, judging, review, roles, triage
from core.errors import UserError
from core.risk import explain, risk_model
from core.store import Store
from core.workspace import Workspace
from pages import candidate_list, common

CURSOR, NOTE, SEARCH, TRIAGE_POS, TRIAGE_ITEM = "ns_cursor", "ns_note", "ns_search", "ns_triage_pos", "ns_triage_item"
QUEUE_SHOWN = 50  # triage queue items read per page run: those n / p walk through before the queue is read again
TOKEN = "ns_keys_token"  # names this browser session's stream of key events (pages/candidate_list.py)
VERDICT_NAME = {"false_negative": "false negative", "true_negative": "true negative", "unsure": "unsure"}
BUTTONS = (("false_negative", "False neg. (f)", "primary"), ("true_negative", "True neg. (t)", "secondary"),
           ("unsure", "Unsure (u)", "secondary"))  # (label, button text, style); keys: pages/candidate_list.js


# -- actions: each takes the session-state mapping it reads and writes, so a button click (st.session_state) and a
# key event (a plain dict, see pages/candidate_list.py) run the same code ----------------------------------------
State = MutableMapping[str, Any]
ERROR, INFO = "ns_review_error", "ns_review_info"
NOTICE = "ns_review_notice"  # what an undo or a suggestion decision did, said beside the list (it shows no toast)
SPREADING, SPREAD_TOLD = "ns_spreading", "ns_spread_told"  # this session's verdicts being spread; those told of


@st.fragment(run_every=1.0)
def _spreading_news() -> None:
    """Say what the background spreading of this session's verdicts suggested (core.judging), once per verdict,
    and rerun the page when there is something new to confirm."""
    told = st.session_state.setdefault(SPREAD_TOLD, set())
    finished = [job for job in st.session_state.get(SPREADING) or [] if job.done and job.name not in told]
    if not finished:
        return
    told.update(job.name for job in finished)
    suggested = sum(job.result or 0 for job in finished if job.error is None)
    failed = [job.error for job in finished if job.error is not None]
    if failed:
        st.session_state[ERROR] = f"Spreading a verdict to near-duplicates failed: {failed[0]}"
    if suggested:
        st.session_state[INFO] = (f"Suggested the same verdict for {suggested} near-duplicate pair(s); they wait "
                                  "for confirmation under *Suggestions*.")
    if failed or suggested:
        st.rerun(scope="app")


def _judge(state: State, store: Store, ws: Workspace, run_id: str, dataset: str, guideline: int | None, query_id: str,
           doc_id: str, who: str, label: str, cursor_after: str | None, outline: review.RunOutline | None) -> None:
    """Record a verdict on exactly this (query, document) with the guidelines version on screen, spread it, and
    move the cursor where the screen did. ``cursor_after`` None: that was the query's last candidate, so the next
    query of ``outline`` opens instead of the last candidate staying under the cursor to be judged again (None
    in the triage queue, which moves on to its next item by itself)."""
    if store.candidates(run_id, query_id, with_signals=False)["doc_id"].eq(doc_id).sum() != 1:
        state[ERROR] = f"{doc_id} is not a candidate of query {query_id} in this run."
        return
    try:
        done = judging.judge(store, ws, dataset, [(query_id, doc_id)], who, label, state.get(NOTE) or "",
                             spread_later=True, guideline_version=guideline)
    except UserError as exc:
        state[ERROR] = str(exc)
        return
    state[SPREADING] = [*(state.get(SPREADING) or []), done.spreading]  # news of it: _spreading_news
    if state.get(NOTE):  # clear only a note that was used: re-setting an empty box erases typing in flight
        state[NOTE] = ""
    state[common.QUERY] = query_id
    if cursor_after is not None:
        state[CURSOR] = cursor_after
    elif outline is not None:
        if outline.neighbour(query_id, 1) == query_id:
            state[INFO] = "That was the last candidate of the last query in the list."
        else:
            _step_query(state, outline, query_id, 1)


def _undo(state: State, store: Store, dataset: str, who: str) -> None:
    """Undo the latest verdict (or its batch), go back to it and say what was undone: the list alone cannot show
    it when the undone verdict was on another query or the candidate was already judged before."""
    undone = judging.undo(store, dataset, who)
    if not undone:
        state[ERROR] = "Nothing to undo."
        return
    last = undone[0]
    what = f"{VERDICT_NAME.get(last['label'], last['label'])} on {last['doc_id']} (query {last['query_id']})"
    state[NOTICE] = (f"Undid: {what}" if len(undone) == 1
                     else f"Undid a batch of {len(undone)} verdicts, the last {what}")
    state[common.QUERY], state[CURSOR] = undone[-1]["query_id"], undone[-1]["doc_id"]


def _goto_query(state: State, query_id: str) -> None:
    state[common.QUERY] = query_id
    state[CURSOR] = None


def _step_query(state: State, outline: review.RunOutline, query_id: str, step: int) -> None:
    _goto_query(state, outline.neighbour(query_id, step))


def _move_triage(state: State, step: int, size: int) -> None:
    state[TRIAGE_POS] = max(0, min(size - 1, (state.get(TRIAGE_POS) or 0) + step))


def _decide_suggestion(state: State, store: Store, suggestion_id: int, who: str, accept: bool) -> None:
    """Accept (a verdict) or reject one suggestion, by its id: the one on screen when the key or button was used."""
    try:
        found = store.suggestion(suggestion_id)
        if accept:
            triage.accept_suggestion(store, suggestion_id, who)
        else:
            triage.reject_suggestion(store, suggestion_id, who)
    except UserError as exc:
        state[ERROR] = str(exc)
        return
    state[NOTICE] = (f"{'Accepted' if accept else 'Rejected'} the suggestion "
                     f"{VERDICT_NAME.get(found['label'], found['label'])} on {found['doc_id']}")


def _key_event(store: Store, ws: Workspace, run_id: str, dataset: str, guideline: int | None, who: str,
               outline: review.RunOutline, queue_size: int | None, state: State, event: dict) -> None:
    """One key from the candidate list; it names the (query, document) or the suggestion that was on screen when
    it was pressed."""
    query_id, action = str(event.get("query_id")), event["action"]
    if action == "verdict":
        _judge(state, store, ws, run_id, dataset, guideline, query_id, str(event.get("doc_id")), who,
               str(event.get("label")), event.get("cursor"), outline if queue_size is None else None)
    elif action == "move" and event.get("cursor"):
        state[common.QUERY], state[CURSOR] = query_id, str(event["cursor"])
    elif action == "query":
        step = 1 if event.get("step") == 1 else -1
        if queue_size is None:
            _step_query(state, outline, query_id, step)
        else:
            _move_triage(state, step, queue_size)
    elif action == "undo":
        _undo(state, store, dataset, who)
    elif action == "suggestion" and isinstance(event.get("id"), int):
        _decide_suggestion(state, store, event["id"], who, event.get("accept") is True)


# -- button callbacks: run before the next script run, so they may set any session key --------------------------
def _promotion(dataset: str, split: str, query_id: str, doc_id: str, promote: bool) -> None:
    try:
        (triage.promote if promote else triage.demote)(common.store(), dataset, split, query_id, doc_id)
    except UserError as exc:
        st.session_state[ERROR] = str(exc)


def _move_cursor(order: list[str], current: str, step: int) -> None:
    position = order.index(current) if current in order else 0
    st.session_state[CURSOR] = order[max(0, min(len(order) - 1, position + step))]


def _next_in(order: list[str], doc_id: str) -> str | None:
    position = order.index(doc_id) if doc_id in order else -1
    return order[position + 1] if 0 <= position < len(order) - 1 else None


@st.cache_resource(show_spinner=False, max_entries=32)
def _share(root: str, run_id: str, who: str, split_at: str) -> review.RunOutline:
    """``who``'s share of the run as an outline (core.assignments), once per split (``split_at`` is when it was
    made, so a new split is read again)."""
    return common.outline(run_id).subset(assignments.share(common.get_store(root), run_id, who) or [])


def _jump() -> None:
    choice = st.session_state.get("ns_jump")
    if choice:
        _goto_query(st.session_state, choice)


# -- page -----------------------------------------------------------------------------------------------------------
common.through_app(__file__)
run_id = common.require_run()
who = common.annotator()
st.session_state.setdefault(TOKEN, uuid.uuid4().hex)
candidate_list.catch_up(st.session_state[TOKEN])
store = common.store()
ws = common.workspace()
run = store.run(run_id)
dataset = run["dataset"]
outline = common.outline(run_id)
assigned = assignments.plan(store, run_id)
share = None  # this person's part of the run when its split names them; None: the whole run
if assigned is not None and who in assigned.annotators:
    share = outline = _share(str(ws.root), run_id, who, assigned.created_at)
queries = outline.queries
guide = guidelines.latest(store, dataset)
guide_version = guide.version if guide else None
st.header("Review", anchor=False)
if share is not None:
    st.caption(f"Your share of this run: {len(queries):,} of {len(common.outline(run_id).queries):,} queries "
               f"(split among {len(assigned.annotators)} annotators, each query judged by {assigned.overlap}).")
if queries.empty:
    if share is not None:
        st.info("The run's split gives you no queries (more annotators than queries × overlap). Ask an admin to "
                "split it again.")
    else:
        st.warning("This run has no candidates (no query had a labelled positive in its split, or the corpus holds "
                   "nothing but positives). Mine another split or dataset on the **Mine** page.")
    st.stop()
if error := st.session_state.pop(ERROR, None):
    st.toast(error, icon="⚠️")
if info := st.session_state.pop(INFO, None):
    st.toast(info, icon="💡")
notice = st.session_state.pop(NOTICE, None)
scored = common.risk_ready(run_id)  # if not, scoring runs in the background and the page shows rank order

judged = review.own_verdicts(store, dataset, who)
modes = ["Queries", "Triage queue"]
top = st.columns([1.2, 1.5, 0.9, 2])
mode = top[0].segmented_control("Mode", modes, default="Queries", key="ns_mode") or "Queries"
scope = top[1].segmented_control("Candidates", review.SCOPES, default="kept", key="ns_scope",
                                 format_func={"kept": "kept negatives", "all": "all mined"}.get,
                                 disabled=mode == "Triage queue",  # the queue ranks all mined candidates
                                 help="The candidates a query shows in *Queries* mode; the triage queue always "
                                      "ranks all mined candidates.") or "kept"
sort = top[2].segmented_control("Sort by", review.SORTS, default="rank", key="ns_sort", disabled=not scored,
                                help=None if scored else "Sorting by risk waits until risk is scored.") or "rank"
if not scored:
    sort = "rank"
with top[3]:
    needle = st.text_input("Jump to query (id or text)", key=SEARCH, placeholder="e.g. q0042 or 'path'")
    if needle:
        matches = review.find_queries(queries, needle)
        if matches.empty:
            st.caption("No query matches.")
        else:
            labels_by_id = dict(zip(matches["query_id"], matches["text"]))
            st.selectbox(f"{len(matches)} match(es)", list(labels_by_id), index=None, key="ns_jump",
                         placeholder="Pick a query…", on_change=_jump,
                         format_func=lambda q: f"{q} — {labels_by_id[q][:90]}")

queue = None
if mode == "Triage queue":
    if not scored:
        st.info("The triage queue orders every candidate by false-negative risk, which is still being scored; "
                "it opens by itself when scoring is done. Review query by query meanwhile.")
        st.stop()
    scope = "all"  # the queue ranks every mined candidate, kept or not (the caption below says so)
    queue = triage.triage_queue(store, run_id, who, limit=QUEUE_SHOWN, share=share)
    if queue.empty:
        st.success("The triage queue is empty: every candidate of " + ("your share" if share is not None
                                                                        else "this run") + " has your verdict.")
        st.stop()
    pos = min(st.session_state.get(TRIAGE_POS, 0), len(queue) - 1)
    item = queue.iloc[pos]
    if st.session_state.get(TRIAGE_ITEM) != (item["query_id"], item["doc_id"]):
        st.session_state[TRIAGE_ITEM] = (item["query_id"], item["doc_id"])
        st.session_state[common.QUERY], st.session_state[CURSOR] = item["query_id"], item["doc_id"]
    left_to_judge = triage.unjudged(store, run_id, who, share)
    st.caption(f"The triage queue ranks **all mined candidates** of {'your share' if share is not None else 'this run'}"
               f" (kept by the rule or dropped; the *Candidates* choice does not apply) by false-negative risk, "
               f"riskiest first. This is item {pos + 1} of the {left_to_judge:,} you have not judged.")
    with st.expander(f"The next {len(queue)} of the {left_to_judge:,} in the queue, and why their risk is high"):
        st.dataframe(triage.readable(queue, risk_model(store, run_id)), hide_index=True, height=220,
                     column_config={"score": st.column_config.NumberColumn(format="%.3f"),
                                    "pos_score": st.column_config.NumberColumn("s_P", format="%.3f"),
                                    "risk": st.column_config.NumberColumn(format="%.3f"),
                                    "raised most by": st.column_config.TextColumn(width="large")})

query_id = st.session_state.get(common.QUERY)
if query_id not in outline.position:
    query_id = str(queries["query_id"].iat[0])
    st.session_state[common.QUERY] = query_id
view = review.query_view(store, run_id, query_id, judged, scope, sort)
cand = view.candidates if scored else view.candidates.assign(risk=float("nan"), signals=None)
order = list(cand["doc_id"])
cursor = st.session_state.get(CURSOR)
open_here = triage.suggestions(store, dataset, query_id)
suggestion_rows = [{"id": int(row.id), "doc_id": str(row.doc_id), "label": VERDICT_NAME.get(row.label, row.label),
                    "reason": str(row.reason)} for row in open_here.itertuples(index=False)]
if cursor not in order:
    unjudged = [d for d, lab in zip(order, cand["label"]) if lab is None]
    cursor = unjudged[0] if unjudged else (order[0] if order else None)
    st.session_state[CURSOR] = cursor

# progress ---------------------------------------------------------------------------------------------------------
done = review.progress(outline, judged, scope, query_id)
index = outline.position[query_id]
left, right = st.columns([1.35, 1], gap="medium")

# left: the query, its positives and its candidates ----------------------------------------------------------------
with left:
    with st.container(border=True):
        st.caption(f"Query {query_id} · {index + 1:,} of {len(queries):,}")
        st.text(view.text)
    pos_score = cand["pos_score"].iloc[0] if len(cand) else None
    with st.expander(f"Positives ({len(view.positives)})" +
                     (f" · weakest positive score s_P = {pos_score:.3f}" if pos_score is not None else ""),
                     expanded=True):
        for pos_row in view.positives.itertuples(index=False):
            common.show_document(pos_row.doc_id if pos_row.title in ("", pos_row.doc_id)
                                 else f"{pos_row.doc_id} · {pos_row.title}", pos_row.text)
    candidate_list.show(cand, query_id, cursor, st.session_state[TOKEN],
                        partial(_key_event, store, ws, run_id, dataset, guide_version, who, outline,
                                None if queue is None else len(queue)),
                        tracked=(common.QUERY, CURSOR, NOTE, TRIAGE_POS, ERROR, INFO, NOTICE, SPREADING),
                        verdicts_wait=queue is not None,
                        risk_pending=not scored, suggestions=suggestion_rows, notice=notice)
    if cand.empty:
        st.info("No candidates in this scope for this query (the rule kept none). Switch *Candidates* to "
                "'all mined' to see everything retrieved.")
    else:
        # drawn only when asked: building the figure is a fifth of a Review rerun, and every key reruns the page
        if st.toggle("Chart this query's scores", key="rv_show_scores"):
            st.plotly_chart(charts.query_scores(cand, float(pos_score)), key="rv_query_scores")
# after the list, never above it: an element that comes and goes above the list moves it in the page's element
# tree, and Streamlit then mounts it anew (a key pressed meanwhile meets no list)
if any(job.name not in st.session_state.get(SPREAD_TOLD, ()) for job in st.session_state.get(SPREADING) or []):
    _spreading_news()

# right: guidelines, navigation, the current candidate, verdicts --------------------------------------------------
with right:
    if guide is not None:  # markdown without HTML or images (core.guidelines.safe_markdown); never unsafe_allow_html
        with st.expander(f"Guidelines · version {guide.version} ({guide.created_at[:10]})"):
            st.markdown(guidelines.safe_markdown(guide.text))
    nav = st.columns(2)
    if mode == "Triage queue":
        nav[0].button("Prev item (p)", key="ns_prev_query", icon=":material/arrow_back:", width="stretch",
                      on_click=_move_triage, args=(st.session_state, -1, len(queue)))
        nav[1].button("Next item (n)", key="ns_next_query", icon=":material/arrow_forward:",
                      width="stretch", on_click=_move_triage, args=(st.session_state, 1, len(queue)))
    else:
        nav[0].button("Prev query (p)", key="ns_prev_query", icon=":material/arrow_back:",
                      width="stretch", disabled=index == 0,
                      on_click=_step_query, args=(st.session_state, outline, query_id, -1))
        nav[1].button("Next query (n)", key="ns_next_query", icon=":material/arrow_forward:",
                      width="stretch", disabled=index == len(queries) - 1,
                      on_click=_step_query, args=(st.session_state, outline, query_id, 1))
    st.progress(done.query_done / done.query_total if done.query_total else 1.0,
                text=f"This query: {done.query_done:,} / {done.query_total:,} judged")
    st.progress(done.done / done.total if done.total else 1.0,
                text=f"Overall ({'all mined' if scope == 'all' else 'kept negatives'}): {done.done:,} / {done.total:,} "
                     f"judged · {done.complete:,} of {done.queries:,} queries complete")
    if cursor is None:
        st.stop()
    current = cand.iloc[order.index(cursor)]
    doc_id = str(current["doc_id"])
    with st.container(border=True):
        st.caption(f"Candidate {order.index(cursor) + 1} of {len(order)} · rank {int(current['rank'])} · "
                   f"{'kept' if current['kept'] else 'dropped'} by rule ({current['rule']})")
        risk = "being scored" if not scored else "—" if pd.isna(current["risk"]) else f"{current['risk']:.2f}"
        st.markdown(f"score s **{current['score']:.3f}** · s − s_P **{current['margin']:+.3f}** · "
                    f"risk **{risk}** · verdict **{VERDICT_NAME.get(current['label'], '—')}**")
        common.show_document(doc_id if current["title"] in ("", doc_id) else f"{doc_id} · {current['title']}",
                             current["text"])
        if current["note"]:
            st.caption("Note:")
            st.text(current["note"])
        signals = review.signal_items(current["signals"])
        if signals:
            with st.expander("Why this risk"):
                model = risk_model(store, run_id)
                st.caption(f"Each signal's share of the risk's logit (positive raises it) under the model that "
                           f"scored this run: {model.source}.")
                why = explain(model, signals)
                st.dataframe(why.drop(columns="what it measures"), hide_index=True)
                # under the table, not in it: a table cell in this narrow column cuts the words off
                st.markdown("\n".join(f"- **{name}**: {measures}"
                                       for name, measures in zip(why["signal"], why["what it measures"])))
    buttons = st.columns(3)
    for col, (label, title, kind) in zip(buttons, BUTTONS):
        col.button(title, key=f"ns_{label}", type=kind, width="stretch", help=VERDICT_NAME[label],
                   on_click=_judge, args=(st.session_state, store, ws, run_id, dataset, guide_version, query_id, doc_id,
                                          who, label, _next_in(order, doc_id), outline if queue is None else None))
    st.text_input("Note", key=NOTE, label_visibility="collapsed",
                  placeholder="Note (saved with the next verdict; Esc returns to the keys)")
    moves = st.columns(3)
    moves[0].button("Prev (k)", key="ns_prev_cand", icon=":material/keyboard_arrow_up:", width="stretch",
                    on_click=_move_cursor, args=(order, cursor, -1))
    moves[1].button("Next (j)", key="ns_next_cand", icon=":material/keyboard_arrow_down:",
                    width="stretch", on_click=_move_cursor, args=(order, cursor, 1))
    moves[2].button("Undo (z)", key="ns_undo", icon=":material/undo:", width="stretch",
                    on_click=_undo, args=(st.session_state, store, dataset, who))

# suggestions propagated from verdicts on near-duplicates, and promotion of confirmed false negatives --------------
with right:
    if suggestion_rows:
        with st.expander(f"Suggestions for this query ({len(suggestion_rows)}) · a / r decide the first",
                         expanded=True):
            for i, row in enumerate(suggestion_rows):  # the keys decide the first, as the list marks it
                st.text(f"{row['doc_id']}: {row['label']} — {row['reason']}")
                accept, reject = st.columns(2)
                accept.button("Accept (a)" if i == 0 else "Accept", key=f"ns_accept_{row['id']}", width="stretch",
                              on_click=_decide_suggestion, args=(st.session_state, store, row["id"], who, True))
                reject.button("Reject (r)" if i == 0 else "Reject", key=f"ns_reject_{row['id']}", width="stretch",
                              on_click=_decide_suggestion, args=(st.session_state, store, row["id"], who, False))
    split = run["split"]
    is_promoted = doc_id in store.positives(dataset, split, query_id)
    promoter = common.may(roles.PROMOTE)  # other roles see no button, and core.triage refuses them anyway
    if promoter and is_promoted:
        st.button("Demote (remove promoted positive)", key="ns_demote", width="stretch",
                  on_click=_promotion, args=(dataset, split, query_id, doc_id, False))
    elif promoter and current["label"] == "false_negative":
        st.button("Promote to positive", key="ns_promote", width="stretch", icon=":material/upgrade:",
                  help="Adds a qrels row with origin 'promoted': curated exports and training use it as a positive.",
                  on_click=_promotion, args=(dataset, split, query_id, doc_id, True))
