"""The Review page through Streamlit's AppTest: judging, undo, navigation, search, sorting, error paths."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
from streamlit.testing.v1.element_tree import ElementTree

from core import labels, risk, triage
from tests.app_helpers import candidate_list, open_app, store_at, timed

PAGE = "pages/review.py"


_store = store_at


def _wait_until_scored(root, run_id: str, timeout: float = 180.0) -> None:
    """Wait (up to a deadline) for the background job to store the run's risk."""
    store = _store(root)
    deadline = time.monotonic() + timeout
    while store.risk_missing(run_id, risk.signal_set()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not store.risk_missing(run_id, risk.signal_set()), "risk was not scored in time"


def _texts(at) -> list[str]:
    return [t.value for t in at.text]


def _keys(monkeypatch, at, *events: dict) -> None:
    """Run the page with ``events`` from the candidate list, numbered after those it acknowledged, as the browser
    sends them (the component's "events" state): they reach the page through the exactly-once path
    (pages/candidate_list.py), which AppTest has no widget for."""
    shown = candidate_list(at)
    mounted = next(e for e in at.get("bidi_component") if e.proto.component_name == "ns_candidate_list")
    sent = [{**event, "seq": shown["acked"] + i} for i, event in enumerate(events, 1)]
    real = ElementTree.get_widget_states

    def with_keys(tree):
        states = real(tree)
        state = states.widgets.add()
        state.id = mounted.proto.id
        state.json_value = json.dumps({"events": {"token": shown["token"], "events": sent}})
        return states

    with monkeypatch.context() as patched:
        patched.setattr(ElementTree, "get_widget_states", with_keys)
        timed(at)


def test_review_shows_query_positives_and_candidates(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    assert "how do I join path components" in _texts(at)  # q1, the first train query
    shown = candidate_list(at)
    table = pd.DataFrame(shown["rows"])
    assert shown["query_id"] == "q1" and shown["cursor"] == table["doc_id"].iloc[0]
    assert list(table["rank"]) == sorted(table["rank"])
    assert {"score", "margin", "rule", "risk", "label", "text"} <= set(table.columns)
    assert "Join one or more path components intelligently, inserting a slash between them." in _texts(at)


def test_verdict_then_undo_round_trip(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    first = at.session_state["ns_cursor"]
    at.text_input(key="ns_note").input("duplicate of the positive")
    at.button(key="ns_false_negative").click()
    timed(at)
    store = _store(ws_root)
    current = labels.current(store, "tiny", "reviewer")
    assert list(zip(current["query_id"], current["doc_id"], current["label"], current["note"])) == \
        [("q1", first, "false_negative", "duplicate of the positive")]
    assert at.session_state["ns_cursor"] != first  # moved on to the next candidate
    assert any("1 / 3 judged" in p.proto.text for p in at.get("progress"))
    at.button(key="ns_undo").click()
    timed(at)
    assert labels.current(store, "tiny", "reviewer").empty
    assert at.session_state["ns_cursor"] == first  # undo returns to the undone candidate


def test_a_verdict_on_a_querys_last_candidate_opens_the_next_query(monkeypatch, ws_root):
    """The list sends no cursor after the last candidate (pages/candidate_list.js); the server opens the next query
    rather than leaving the last candidate under the cursor to be judged again, by key and by button alike."""
    at = open_app(monkeypatch, ws_root, PAGE)
    store = _store(ws_root)
    last = candidate_list(at)["rows"][-1]["doc_id"]
    _keys(monkeypatch, at, {"action": "verdict", "label": "true_negative", "query_id": "q1", "doc_id": last,
                            "cursor": None})
    assert labels.current(store, "tiny", "reviewer")["doc_id"].tolist() == [last]
    shown = candidate_list(at)
    assert shown["query_id"] == "q2" and shown["cursor"] == shown["rows"][0]["doc_id"]
    at.session_state["ns_cursor"] = shown["rows"][-1]["doc_id"]
    timed(at)
    at.button(key="ns_true_negative").click()
    timed(at)
    assert candidate_list(at)["query_id"] == "q3"
    assert labels.current(store, "tiny", "reviewer")["query_id"].tolist() == ["q1", "q2"]


def test_undo_says_what_it_undid_beside_the_list(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    first = candidate_list(at)["rows"][0]["doc_id"]
    _keys(monkeypatch, at, {"action": "verdict", "label": "true_negative", "query_id": "q1", "doc_id": first,
                            "cursor": candidate_list(at)["rows"][1]["doc_id"]},
          {"action": "undo", "query_id": "q1"})
    assert labels.current(_store(ws_root), "tiny", "reviewer").empty
    shown = candidate_list(at)
    assert shown["notice"] == f"Undid: true negative on {first} (query q1)" and shown["cursor"] == first
    timed(at)
    assert candidate_list(at)["notice"] is None, "said once, beside the list, until the next key"


def test_next_previous_query_and_candidate(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    order = [row["doc_id"] for row in candidate_list(at)["rows"]]
    at.button(key="ns_next_cand").click().run()
    assert at.session_state["ns_cursor"] == order[1]
    at.button(key="ns_prev_cand").click().run()
    assert at.session_state["ns_cursor"] == order[0]
    at.button(key="ns_next_query").click().run()
    assert at.session_state["ns_query"] == "q2"
    assert "sort a list in ascending order" in _texts(at)
    at.button(key="ns_prev_query").click().run()
    assert at.session_state["ns_query"] == "q1"


def test_jump_to_query_by_text(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    at.text_input(key="ns_search").input("capital").run()
    jump = at.selectbox(key="ns_jump")
    assert jump.options and "q5" in jump.options[0]
    jump.set_value("q5").run()
    assert at.session_state["ns_query"] == "q5"
    assert "what is the capital of France" in _texts(at)


def test_sort_by_risk_and_all_candidates(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    _wait_until_scored(ws_root, at.session_state["ns_run"])
    at.session_state["ns_scope"] = "all"
    at.session_state["ns_sort"] = "risk"
    at.run()
    table = pd.DataFrame(candidate_list(at)["rows"])
    assert len(table) > 3  # every mined candidate, not only the kept three
    risk = table["risk"].astype(float).to_numpy()
    assert (risk[:-1] >= risk[1:]).all()


def test_markup_in_documents_renders_literally(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    at.session_state["ns_scope"] = "all"
    at.session_state["ns_cursor"] = "misc-5"
    at.run()
    assert at.session_state["ns_cursor"] == "misc-5"
    assert any("<script>alert('x')</script> **not bold**" in t for t in _texts(at))
    assert not any("<script>" in m.value for m in at.markdown)  # never passed to markdown unescaped
    assert not any(getattr(m.proto, "allow_html", False) for m in at.markdown)


def test_no_verdict_until_an_annotator_is_chosen_and_the_choice_lives_in_the_url(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE, annotator=None)
    assert at.text_input(key="ns_annotator").value == ""  # no default name stands in for a person
    assert any("annotator name" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "ns_false_negative"]
    run_id = at.session_state["ns_run"]
    at.text_input(key="ns_annotator").input("ana").run()
    assert at.query_params["annotator"] == "ana" and at.query_params["run"] == run_id
    assert any("Judging as **ana**" in c.value for c in at.caption)


def test_a_reload_restores_annotator_and_run_from_the_url(monkeypatch, ws_root):
    store = _store(ws_root)
    newest, older = store.runs("tiny")[0]["run_id"], "tiny-older"
    parent = store.runs("tiny")[0]
    store.save_run({**parent, "run_id": older, "created_at": "2000-01-01T00:00:00"}, store.candidates(newest))
    assert store.runs("tiny")[0]["run_id"] == newest
    at = open_app(monkeypatch, ws_root, annotator=None, url={"annotator": "ana", "dataset": "tiny", "run": older})
    assert at.session_state["ns_annotator"] == "ana" and at.session_state["ns_run"] == older
    at.switch_page(PAGE).run()
    at.button(key="ns_false_negative").click().run()
    assert labels.current(store, "tiny", "ana")["query_id"].tolist() == ["q1"]
    assert labels.current(store, "tiny", "reviewer").empty


def test_blank_annotator_blocks_judging(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    at.text_input(key="ns_annotator").input("  ").run()
    assert any("annotator name" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "ns_false_negative"]


def test_run_without_candidates_says_so(monkeypatch, ws_root):
    store = _store(ws_root)
    parent = store.runs("tiny")[0]
    store.save_run({"run_id": "tiny-empty", "dataset": "tiny", "split": "train",
                    "model_fingerprint": parent["model_fingerprint"], "params": parent["params"],
                    "stats": {"queries": 0, "candidates": 0, "kept": 0, "short_queries": 0}},
                   pd.DataFrame(columns=["query_id", "doc_id", "rank", "score", "pos_score", "kept", "rule"]))
    at = open_app(monkeypatch, ws_root)
    at.selectbox(key="ns_run").set_value("tiny-empty").run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception
    assert any("no candidates" in w.value for w in at.warning)


def test_empty_workspace_points_to_import(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path / "empty", PAGE)
    assert any("no dataset yet" in i.value for i in at.info)


def _spread(at) -> None:
    """Wait for the background spreading of the session's verdicts (core.judging), then rerun as the page's
    polling fragment would."""
    for job in at.session_state["ns_spreading"]:
        assert job.wait(120) and job.error is None
    timed(at)


def _judge_twin_spread(monkeypatch, root):
    """Review open on q1's near-copy pair, judged a false negative by click, its spreading waited for."""
    at = open_app(monkeypatch, root, PAGE)
    at.session_state["ns_cursor"] = "py-join-dup"
    timed(at)
    at.button(key="ns_false_negative").click()
    timed(at)
    _spread(at)
    return at


def test_verdict_propagates_as_suggestion_and_promotion_round_trip(monkeypatch, mined_twins):
    """Judging q1's near-copy pair on Review stores the verdict at once and spreads it as a suggestion in the
    background; confirming it records a verdict; a false negative can be promoted and demoted."""
    ws, store, _ = mined_twins
    at = open_app(monkeypatch, ws.root, PAGE)
    at.session_state["ns_cursor"] = "py-join-dup"
    timed(at)
    assert triage.suggestions(store, "tiny").empty
    at.button(key="ns_false_negative").click()
    timed(at)
    assert labels.current(store, "tiny", "reviewer")["doc_id"].tolist() == ["py-join-dup"]
    _spread(at)
    spread = triage.suggestions(store, "tiny")
    assert ("q1", "py-join-mirror") in set(zip(spread["query_id"], spread["doc_id"]))
    assert set(spread["source_event"]) == set(store.events("tiny", "reviewer")["id"])
    assert len(labels.current(store, "tiny")) == 1  # a suggestion is not a verdict until confirmed
    confirm = [b for b in at.button if b.key == f"ns_accept_{spread.loc[spread.doc_id == 'py-join-mirror', 'id'].iloc[0]}"]
    assert len(confirm) == 1
    confirm[0].click()
    timed(at)
    current = labels.current(store, "tiny", "reviewer").set_index("doc_id")["label"].to_dict()
    assert current == {"py-join-dup": "false_negative", "py-join-mirror": "false_negative"}
    at.session_state["ns_cursor"] = "py-join-dup"
    timed(at)
    at.button(key="ns_promote").click()
    timed(at)
    assert "py-join-dup" in store.positives("tiny", "train", "q1")
    at.button(key="ns_demote").click()
    timed(at)
    assert "py-join-dup" not in store.positives("tiny", "train", "q1")


def test_suggestions_are_decided_by_key_and_read_in_words(monkeypatch, mined_twins):
    """The list carries the query's open suggestions with their labels in words; `a` accepts the first one it
    showed (by id), through the same exactly-once path as a verdict key, and says so beside the list."""
    ws, store, _ = mined_twins
    at = _judge_twin_spread(monkeypatch, ws.root)
    shown = candidate_list(at)["suggestions"]
    first = shown[0]
    assert first["doc_id"] == "py-join-mirror" and first["label"] == "false negative"
    assert "judged false negative" in first["reason"] and "false_negative" not in first["reason"]
    _keys(monkeypatch, at, {"action": "suggestion", "query_id": "q1", "id": first["id"], "accept": True})
    current = labels.current(store, "tiny", "reviewer").set_index("doc_id")["label"].to_dict()
    assert current == {"py-join-dup": "false_negative", "py-join-mirror": "false_negative"}
    assert candidate_list(at)["notice"] == "Accepted the suggestion false negative on py-join-mirror"
    assert first["id"] not in [s["id"] for s in candidate_list(at)["suggestions"]]
    _keys(monkeypatch, at, {"action": "suggestion", "query_id": "q1", "id": first["id"], "accept": False})
    assert labels.current(store, "tiny", "reviewer")["doc_id"].tolist().count("py-join-mirror") == 1
    assert triage.suggestions(store, "tiny", status="accepted")["id"].tolist() == [first["id"]], \
        "a key on a suggestion decided meanwhile changes nothing"


def test_the_triage_queue_says_its_scope_its_count_and_why_in_words(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, PAGE)
    run_id = at.session_state["ns_run"]
    _wait_until_scored(ws_root, run_id)
    at.session_state["ns_mode"] = "Triage queue"
    timed(at)
    store = _store(ws_root)
    total = triage.unjudged(store, run_id, "reviewer")
    assert total == len(store.candidates(run_id)) > 50, "the count is the queue's length, not the 50 read"
    assert any("all mined candidates" in c.value and f"item 1 of the {total:,}" in c.value for c in at.caption)
    assert at.button_group(key="ns_scope").disabled, "the Candidates choice does not apply to the queue"
    queue = next(d.value for d in at.dataframe if "raised most by" in d.value.columns)
    assert "signals" not in queue.columns and len(queue) == 50
    descriptions = [s.description for s in risk.SIGNALS.values()]
    assert all(any(d in why for d in descriptions) for why in queue["raised most by"])
    assert not any("{" in why for why in queue["raised most by"])


def test_a_map_lasso_verdict_spreads_the_same_suggestions_as_a_review_click(monkeypatch, mined_twins):
    ws, store, _ = mined_twins
    columns = ["query_id", "doc_id", "label", "reason"]
    at = _judge_twin_spread(monkeypatch, ws.root)
    by_click = triage.suggestions(store, "tiny")[columns]
    assert not by_click.empty
    at.button(key="ns_undo").click()
    timed(at)
    assert labels.current(store, "tiny").empty and triage.suggestions(store, "tiny", status=None).empty

    at.switch_page("pages/map.py")
    timed(at)
    at.session_state["map_q_q1"] = {"selection": {"points": [{"customdata": ["py-join-dup"]}]}}  # a lasso
    timed(at)
    at.button(key="map_false_negative").click()
    timed(at)
    assert labels.current(store, "tiny").empty, "nothing is recorded before the confirmation"
    at.button(key="map_confirm_yes").click()
    timed(at)
    assert labels.current(store, "tiny", "reviewer")["doc_id"].tolist() == ["py-join-dup"]
    by_lasso = triage.suggestions(store, "tiny")[columns]
    assert sorted(map(tuple, by_lasso.values)) == sorted(map(tuple, by_click.values))


def test_an_unscored_run_is_reviewed_in_rank_order_while_one_background_job_scores_it(monkeypatch, ws_root):
    """Two sessions open a freshly mined run: both show its first query at once, in rank order with risk marked as
    being scored (sorting by risk waits), and share one scoring job; once it is stored, risk is on the page."""
    gate, calls = threading.Event(), []

    def gated(ctx):  # a signal that holds scoring until the test has looked at the page
        gate.wait(timeout=120)
        return np.zeros(ctx.n)

    real = risk.compute_risk

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setitem(risk.SIGNALS, "test_gate", risk.Signal("test_gate", "waits for the test", gated, 0.0))
    monkeypatch.setattr(risk, "compute_risk", counted)
    try:
        sessions = [open_app(monkeypatch, ws_root, PAGE) for _ in range(2)]
        run_id = sessions[0].session_state["ns_run"]
        for at in sessions:
            at.session_state["ns_sort"] = "risk"
            timed(at)
            shown = candidate_list(at)
            assert shown["query_id"] == "q1" and shown["risk_pending"]
            assert [r["risk"] for r in shown["rows"]] == [None] * len(shown["rows"])
            ranks = [r["rank"] for r in shown["rows"]]
            assert ranks == sorted(ranks), "rank order until risk exists"
            assert any("being scored" in m.value for m in at.markdown)
        assert _store(ws_root).risk_missing(run_id, risk.signal_set()), "still scoring while the pages showed"
    finally:
        gate.set()
    _wait_until_scored(ws_root, run_id)
    assert calls == [run_id], "one scoring job for both sessions"
    at = sessions[0]
    timed(at)
    shown = candidate_list(at)
    assert not shown["risk_pending"]
    risks = np.array([r["risk"] for r in shown["rows"]], dtype=float)
    assert np.isfinite(risks).all() and (risks[:-1] >= risks[1:]).all(), "sorted by risk once it exists"
    assert "Why this risk" in [e.label for e in at.expander]
    why = [d.value for d in at.dataframe if "share of the logit" in d.value.columns]
    assert len(why) == 1 and set(why[0]["signal"]) == set(risk.SIGNALS), "each signal's share"
    # what each measures, whole, under the table (a cell of the narrow column cut it off), in the table's order
    words = next(m.value for m in at.markdown if m.value.startswith("- **"))
    assert words.splitlines() == [f"- **{name}**: {risk.SIGNALS[name].description}" for name in why[0]["signal"]]
