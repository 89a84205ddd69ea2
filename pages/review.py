"""Review: one query at a time, judge each mined candidate as false negative / true negative / unsure.

Keyboard: f / t / u judge the current candidate, j / k next / previous candidate, n / p next / previous query
(or queue item), z undo. Everything read here comes from stored data (core.review); writes go through core.labels.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import charts, labels, review, triage
from core.errors import UserError
from pages import common

CURSOR, NOTE, SEARCH, TRIAGE_POS, TRIAGE_ITEM = "ns_cursor", "ns_note", "ns_search", "ns_triage_pos", "ns_triage_item"
TABLE_SEEN = "ns_table_seen"
VERDICT_NAME = {"false_negative": "false negative", "true_negative": "true negative", "unsure": "unsure"}
BUTTONS = (("false_negative", "False neg.", "f", "primary"), ("true_negative", "True neg.", "t", "secondary"),
           ("unsure", "Unsure", "u", "secondary"))  # (label, button text, shortcut, style)


# -- callbacks: run before the next script run, so they may set any session key -----------------------------------
def _judge(dataset: str, query_id: str, doc_id: str, who: str, label: str, order: list[str]) -> None:
    try:
        event = labels.record(common.store(), dataset, query_id, doc_id, who, label, st.session_state.get(NOTE, ""))
        spread = triage.propagate(common.store(), common.workspace(), dataset, query_id, doc_id, label, event)
    except UserError as exc:
        st.session_state["ns_review_error"] = str(exc)
        return
    if spread:
        st.session_state["ns_review_info"] = (f"Suggested the same verdict for {spread} near-duplicate pair(s); "
                                              "they wait for confirmation under *Suggestions*.")
    st.session_state[NOTE] = ""
    position = order.index(doc_id) if doc_id in order else -1
    if 0 <= position < len(order) - 1:
        st.session_state[CURSOR] = order[position + 1]


def _undo(dataset: str, who: str) -> None:
    undone = labels.undo(common.store(), dataset, who)
    if undone is None:
        st.session_state["ns_review_error"] = "Nothing to undo."
        return
    st.session_state[common.QUERY] = undone["query_id"]
    st.session_state[CURSOR] = undone["doc_id"]


def _decide_suggestion(suggestion_id: int, who: str, accept: bool) -> None:
    try:
        if accept:
            triage.accept_suggestion(common.store(), suggestion_id, who)
        else:
            triage.reject_suggestion(common.store(), suggestion_id, who)
    except UserError as exc:
        st.session_state["ns_review_error"] = str(exc)


def _promotion(dataset: str, split: str, query_id: str, doc_id: str, promote: bool) -> None:
    try:
        (triage.promote if promote else triage.demote)(common.store(), dataset, split, query_id, doc_id)
    except UserError as exc:
        st.session_state["ns_review_error"] = str(exc)


def _move_cursor(order: list[str], current: str, step: int) -> None:
    position = order.index(current) if current in order else 0
    st.session_state[CURSOR] = order[max(0, min(len(order) - 1, position + step))]


def _goto_query(query_id: str) -> None:
    st.session_state[common.QUERY] = query_id
    st.session_state.pop(CURSOR, None)


def _move_triage(step: int, size: int) -> None:
    st.session_state[TRIAGE_POS] = max(0, min(size - 1, st.session_state.get(TRIAGE_POS, 0) + step))


def _jump() -> None:
    choice = st.session_state.get("ns_jump")
    if choice:
        _goto_query(choice)


# -- page -----------------------------------------------------------------------------------------------------------
common.through_app(__file__)
run_id = common.require_run()
who = common.annotator()
store = common.store()
run = store.run(run_id)
dataset = run["dataset"]
cands = common.candidates(run_id)
st.header("Review", anchor=False)
if cands.empty:
    st.warning("This run has no candidates (no query had a labelled positive in its split, or the corpus holds "
               "nothing but positives). Mine another split or dataset on the **Mine** page.")
    st.stop()
if error := st.session_state.pop("ns_review_error", None):
    st.toast(error, icon="⚠️")
if info := st.session_state.pop("ns_review_info", None):
    st.toast(info, icon="💡")

queries = common.run_queries(run_id)
judged = review.verdicts(store, dataset, who)
modes = ["Queries", "Triage queue"]
top = st.columns([1.2, 1.5, 0.9, 2])
mode = top[0].segmented_control("Mode", modes, default="Queries", key="ns_mode") or "Queries"
scope = top[1].segmented_control("Candidates", review.SCOPES, default="kept", key="ns_scope",
                                 format_func={"kept": "kept negatives", "all": "all mined"}.get) or "kept"
sort = top[2].segmented_control("Sort by", review.SORTS, default="rank", key="ns_sort") or "rank"
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

query_ids = list(queries["query_id"])
queue = None
if mode == "Triage queue":
    scope = "all"  # the queue ranks every mined candidate, kept or not
    queue = triage.triage_queue(store, run_id, who, limit=50)
    if queue.empty:
        st.success("The triage queue is empty: every candidate of this run has your verdict.")
        st.stop()
    pos = min(st.session_state.get(TRIAGE_POS, 0), len(queue) - 1)
    item = queue.iloc[pos]
    if st.session_state.get(TRIAGE_ITEM) != (item["query_id"], item["doc_id"]):
        st.session_state[TRIAGE_ITEM] = (item["query_id"], item["doc_id"])
        st.session_state[common.QUERY], st.session_state[CURSOR] = item["query_id"], item["doc_id"]
    with st.expander(f"Triage queue: {len(queue)} unjudged candidates, highest risk first (item {pos + 1})"):
        st.dataframe(queue, hide_index=True, height=220)

query_id = st.session_state.get(common.QUERY)
if query_id not in query_ids:
    query_id = query_ids[0]
    st.session_state[common.QUERY] = query_id
view = review.query_view(store, run_id, query_id, cands, judged, scope, sort)
order = list(view.candidates["doc_id"])
cursor = st.session_state.get(CURSOR)
if cursor not in order:
    unjudged = [d for d, lab in zip(order, view.candidates["label"]) if lab is None]
    cursor = unjudged[0] if unjudged else (order[0] if order else None)
    st.session_state[CURSOR] = cursor

# progress ---------------------------------------------------------------------------------------------------------
per_query = review.progress(cands, judged, scope)
done, total = int(per_query["judged"].sum()), int(per_query["total"].sum())
row = per_query[per_query["query_id"] == query_id]
q_done, q_total = (int(row["judged"].iloc[0]), int(row["total"].iloc[0])) if not row.empty else (0, 0)
complete = int((per_query["judged"] == per_query["total"]).sum())
index = query_ids.index(query_id)
left, right = st.columns([1.35, 1], gap="medium")

# left: the query, its positives and its candidates ----------------------------------------------------------------
with left:
    with st.container(border=True):
        st.caption(f"Query {query_id} · {index + 1} of {len(query_ids)}")
        st.text(view.text)
    pos_score = view.candidates["pos_score"].iloc[0] if len(view.candidates) else None
    with st.expander(f"Positives ({len(view.positives)})" +
                     (f" · weakest positive score s_P = {pos_score:.3f}" if pos_score is not None else ""),
                     expanded=True):
        for pos_row in view.positives.itertuples(index=False):
            common.show_document(pos_row.doc_id if pos_row.title in ("", pos_row.doc_id)
                                 else f"{pos_row.doc_id} · {pos_row.title}", pos_row.text)
    cand = view.candidates
    if cand.empty:
        st.info("No candidates in this scope for this query (the rule kept none). Switch *Candidates* to "
                "'all mined' to see everything retrieved.")
    else:
        table = pd.DataFrame({
            " ": ["▶" if d == cursor else "" for d in cand["doc_id"]],
            "rank": cand["rank"], "verdict": [VERDICT_NAME.get(lab, "") for lab in cand["label"]],
            "score": cand["score"], "margin": cand["margin"], "rule": cand["rule"], "risk": cand["risk"],
            "document": cand["doc_id"], "text": [str(t)[:140].replace("\n", " ") for t in cand["text"]],
        })
        table_key = f"ns_table_{query_id}_{scope}_{sort}"
        picked = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row",
                              key=table_key, height=min(38 + 35 * len(table), 460),
                              column_config={" ": st.column_config.TextColumn(width=20),
                                             "rank": st.column_config.NumberColumn(width=45),
                                             "score": st.column_config.NumberColumn(format="%.3f", width=60),
                                             "margin": st.column_config.NumberColumn("s − s_P", format="%+.3f",
                                                                                     width=65),
                                             "risk": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                     format="%.2f", width=80)})
        rows = picked.selection.rows if picked is not None else []
        if rows and st.session_state.get(TABLE_SEEN) != (table_key, rows[0]):
            st.session_state[TABLE_SEEN] = (table_key, rows[0])
            st.session_state[CURSOR] = order[rows[0]]
            st.rerun()
        with st.expander("Scores of this query's candidates"):
            st.plotly_chart(charts.query_scores(cand, float(pos_score)), key="rv_query_scores")

# right: navigation, the current candidate, verdicts ---------------------------------------------------------------
with right:
    nav = st.columns(2)
    if mode == "Triage queue":
        nav[0].button("Prev item", key="ns_prev_query", shortcut="p", icon=":material/arrow_back:", width="stretch",
                      on_click=_move_triage, args=(-1, len(queue)))
        nav[1].button("Next item", key="ns_next_query", shortcut="n", icon=":material/arrow_forward:",
                      width="stretch", on_click=_move_triage, args=(1, len(queue)))
    else:
        nav[0].button("Prev query", key="ns_prev_query", shortcut="p", icon=":material/arrow_back:",
                      width="stretch", disabled=index == 0,
                      on_click=_goto_query, args=(query_ids[max(0, index - 1)],))
        nav[1].button("Next query", key="ns_next_query", shortcut="n", icon=":material/arrow_forward:",
                      width="stretch", disabled=index == len(query_ids) - 1,
                      on_click=_goto_query, args=(query_ids[min(len(query_ids) - 1, index + 1)],))
    st.progress(q_done / q_total if q_total else 1.0, text=f"This query: {q_done} / {q_total} judged")
    st.progress(done / total if total else 1.0,
                text=f"Overall: {done} / {total} judged · {complete} of {len(per_query)} queries complete")
    if cursor is None:
        st.stop()
    current = cand.iloc[order.index(cursor)]
    doc_id = str(current["doc_id"])
    with st.container(border=True):
        st.caption(f"Candidate {order.index(cursor) + 1} of {len(order)} · rank {int(current['rank'])} · "
                   f"{'kept' if current['kept'] else 'dropped'} by rule ({current['rule']})")
        risk = "—" if pd.isna(current["risk"]) else f"{current['risk']:.2f}"
        st.markdown(f"score s **{current['score']:.3f}** · s − s_P **{current['margin']:+.3f}** · "
                    f"risk **{risk}** · verdict **{VERDICT_NAME.get(current['label'], '—')}**")
        common.show_document(doc_id if current["title"] in ("", doc_id) else f"{doc_id} · {current['title']}",
                             current["text"])
        if current["note"]:
            st.caption("Note:")
            st.text(current["note"])
        signals = review.signal_items(current["signals"])
        if signals:
            with st.expander("Risk signals"):
                st.dataframe(pd.DataFrame({"signal": list(signals), "value": list(signals.values())}),
                             hide_index=True)
    buttons = st.columns(3)
    for col, (label, title, key, kind) in zip(buttons, BUTTONS):
        col.button(title, key=f"ns_{label}", shortcut=key, type=kind, width="stretch", help=VERDICT_NAME[label],
                   on_click=_judge, args=(dataset, query_id, doc_id, who, label, order))
    st.text_input("Note", key=NOTE, label_visibility="collapsed", placeholder="Note (saved with the next verdict)")
    moves = st.columns(3)
    moves[0].button("Prev", key="ns_prev_cand", shortcut="k", icon=":material/keyboard_arrow_up:", width="stretch",
                    on_click=_move_cursor, args=(order, cursor, -1))
    moves[1].button("Next", key="ns_next_cand", shortcut="j", icon=":material/keyboard_arrow_down:",
                    width="stretch", on_click=_move_cursor, args=(order, cursor, 1))
    moves[2].button("Undo", key="ns_undo", shortcut="z", icon=":material/undo:", width="stretch",
                    on_click=_undo, args=(dataset, who))

# suggestions propagated from verdicts on near-duplicates, and promotion of confirmed false negatives --------------
with right:
    open_here = triage.suggestions(store, dataset, query_id)
    if not open_here.empty:
        with st.expander(f"Suggestions for this query ({len(open_here)})", expanded=True):
            for row in open_here.itertuples(index=False):
                st.text(f"{row.doc_id}: {VERDICT_NAME.get(row.label, row.label)} — {row.reason}")
                accept, reject = st.columns(2)
                accept.button("Confirm", key=f"ns_accept_{row.id}", width="stretch",
                              on_click=_decide_suggestion, args=(row.id, who, True))
                reject.button("Reject", key=f"ns_reject_{row.id}", width="stretch",
                              on_click=_decide_suggestion, args=(row.id, who, False))
    split = run["split"]
    is_promoted = doc_id in store.positives(dataset, split, query_id)
    if is_promoted:
        st.button("Demote (remove promoted positive)", key="ns_demote", width="stretch",
                  on_click=_promotion, args=(dataset, split, query_id, doc_id, False))
    elif current["label"] == "false_negative":
        st.button("Promote to positive", key="ns_promote", width="stretch", icon=":material/upgrade:",
                  help="Adds a qrels row with origin 'promoted': curated exports and training use it as a positive.",
                  on_click=_promotion, args=(dataset, split, query_id, doc_id, True))
