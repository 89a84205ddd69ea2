"""The Team page through Streamlit's AppTest on a real workspace: progress, κ/α as core computes them, the
disagreement queue's adjudicate buttons writing kind='adjudication', the own/all verdicts toggle, literal text."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import agreement, labels, lookups
from core.datasets import ingest
from tests.app_helpers import ROOT
from tests.fixtures import DOCS

PAGE = str(ROOT / "pages" / "team.py")
RUN = "run-team"
MARKUP_DOC = "misc-5"  # "<script>alert('x')</script> **not bold** and a [link](...)"
NOTE = "reads like os.path.join's own docs"  # ana's reason on her (q1, MARKUP_DOC) verdict


@pytest.fixture
def ws(workspace, beir_dir):
    """Tiny dataset, a run with four kept candidates, and ana/bob disagreeing on two of them."""
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    kept = [("q1", "py-join-dup"), ("q1", MARKUP_DOC), ("q2", "py-sort-dup"), ("q4", "bio-2")]
    candidates = pd.DataFrame([{"query_id": q, "doc_id": d, "rank": i + 1, "score": 0.9 - i / 10, "pos_score": 0.95,
                                "bm25": 1.0, "kept": True, "rule": "top", "risk": None, "signals": None}
                               for i, (q, d) in enumerate(kept)])
    store.save_run({"run_id": RUN, "dataset": "tiny", "split": "train", "model_fingerprint": "test",
                    "params": {}, "stats": {"kept": len(kept)}}, candidates)
    for (q, d), ana, bob in zip(kept, ["false_negative", "true_negative", "unsure", "true_negative"],
                                ["false_negative", "false_negative", "true_negative", "true_negative"]):
        labels.record(store, "tiny", q, d, "ana", ana, note=NOTE if d == MARKUP_DOC else "")
        labels.record(store, "tiny", q, d, "bob", bob)
    return workspace, store


def open_page(root, annotator: str = "lead", dataset: str = "tiny") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["ns_app_ran"] = True
    at.session_state["ns_workspace"] = str(root)
    at.session_state["ns_dataset"] = dataset
    at.session_state["ns_run"] = RUN
    at.session_state["ns_annotator"] = annotator
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def adjudicate_buttons(at: AppTest) -> list:
    return [b for b in at.button if str(b.key).startswith("ns_adj|")]


def test_agreement_progress_and_queue_show_core_numbers(ws):
    workspace, store = ws
    at = open_page(workspace.root)
    expected = agreement.dataset_agreement(store, "tiny")
    assert metric(at, "Krippendorff's α") == f"{expected.alpha:.3f}"
    assert metric(at, "annotators") == "2" and metric(at, "judged by 2+") == "4"
    progress = at.dataframe[0].value.set_index("annotator")
    assert progress.loc["ana", "judged"] == 4 and progress.loc["ana", "share"] == pytest.approx(1.0)
    assert any("Disagreements to adjudicate (2)" in s.value for s in at.subheader)
    assert len(adjudicate_buttons(at)) == 2 * len(labels.LABELS)
    assert all(not b.disabled for b in adjudicate_buttons(at))


def test_agreement_reads_in_words(ws):
    """α and every pair's κ come with core.agreement.reading's words and the scale they are read on."""
    workspace, store = ws
    at = open_page(workspace.root)
    expected = agreement.dataset_agreement(store, "tiny")
    assert any(f"α reads: **{agreement.reading('alpha', expected.alpha)}**" == c.value for c in at.caption)
    pairs = next(d.value for d in at.dataframe if "shared items" in d.value.columns)
    assert pairs["κ reads"].tolist() == [agreement.reading("kappa", expected.pairs["kappa"].iloc[0])]
    assert any("Landis & Koch (1977)" in c.value for c in at.caption)


def test_adjudication_card_shows_positive_and_notes(ws):
    workspace, _ = ws
    at = open_page(workspace.root)
    texts = [t.value for t in at.text]
    join, sort = (f"{d}: {lookups.snippet(' '.join(DOCS[d]), 160)}" for d in ("py-join", "py-sort"))
    assert join in texts and sort in texts and texts.index(join) < texts.index(sort)  # q1's card, then q2's
    assert f"ana: true negative — note: {NOTE}" in texts and "bob: false negative" in texts  # q1's verdicts


def test_per_query_scope(ws):
    workspace, store = ws
    at = open_page(workspace.root)
    at.selectbox(key="ns_team_scope").select("q1").run()
    assert not at.exception
    one = agreement.dataset_agreement(store, "tiny", "q1")
    assert metric(at, "judged pairs") == "2" and one.items == 2
    assert metric(at, "Krippendorff's α") == ("—" if one.alpha is None else f"{one.alpha:.3f}")


def test_adjudicate_button_records_final_verdict(ws):
    workspace, store = ws
    at = open_page(workspace.root)
    key = next(b.key for b in adjudicate_buttons(at) if b.key.endswith("|true_negative"))
    _, query_id, doc_id, _ = key.split("|")
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    events = store.events("tiny", "lead")
    assert events[["query_id", "doc_id", "label", "kind"]].values.tolist() == [
        [query_id, doc_id, "true_negative", "adjudication"]]
    final = labels.resolved(store, "tiny").set_index(["query_id", "doc_id"]).loc[(query_id, doc_id)]
    assert (final["label"], final["source"]) == ("true_negative", "adjudicated")
    assert any("Disagreements to adjudicate (1)" in s.value for s in at.subheader)
    shown = [e for e in at.main if e.type in ("subheader", "success")]  # the page's elements in order
    said = next(i for i, e in enumerate(shown) if "recorded as an adjudication by lead" in e.value)
    assert "Disagreements to adjudicate" in shown[said - 1].value  # beside the queue, not on top of the page


def test_own_verdicts_unless_asked_for_all(ws):
    workspace, _ = ws
    at = open_page(workspace.root, annotator="ana")
    own = at.dataframe[-1].value
    assert set(own["annotator"]) == {"ana"} and len(own) == 4
    at.toggle(key="ns_team_all").set_value(True).run()
    assert set(at.dataframe[-1].value["annotator"]) == {"ana", "bob"}


def test_document_text_is_literal(ws):
    workspace, _ = ws
    at = open_page(workspace.root)
    assert DOCS[MARKUP_DOC][1] in [t.value for t in at.text]  # st.text: shown as-is, never rendered as HTML


def test_without_annotator_buttons_are_disabled(ws):
    workspace, store = ws
    at = open_page(workspace.root, annotator="  ")
    assert adjudicate_buttons(at) and all(b.disabled for b in adjudicate_buttons(at))
    assert any("annotator name" in w.value for w in at.warning)
    assert len(store.events("tiny")) == 8


def test_empty_dataset_and_single_annotator(workspace, beir_dir):
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    at = open_page(workspace.root)
    assert any("No verdicts in this dataset yet" in i.value for i in at.info)
    assert metric(at, "Krippendorff's α") == "—"
    labels.record(store, "tiny", "q1", "py-join-dup", "ana", "false_negative")
    at = open_page(workspace.root)
    assert any("at least two annotators" in i.value for i in at.info)
    assert any("No open disagreements" in s.value for s in at.success)


def test_split_progress_overlap_and_kappa_over_shared_items_only(ws):
    """The run split between ana and bob with overlap 2: each one's progress on their share and the overlap
    reached; a verdict only ana gave leaves κ and the 'judged by 2+' count at the shared items."""
    from core import assignments

    workspace, store = ws
    assignments.assign(store, RUN, ["ana", "bob"], overlap=2)
    labels.record(store, "tiny", "q5", "geo-2", "ana", "false_negative")  # judged by ana alone
    at = open_page(workspace.root)
    assert any("Assignments" == s.value for s in at.subheader)
    people = next(d.value for d in at.dataframe if "queries" in d.value.columns).set_index("annotator")
    assert people.loc["ana", "judged"] == people.loc["bob", "judged"] == 4 and people.loc["ana", "queries"] == 3
    assert metric(at, "kept candidates judged by 2") == "4 of 4"
    assert metric(at, "judged pairs") == "5" and metric(at, "judged by 2+") == "4"
    assert any("count only the 4 shared items" in c.value for c in at.caption)
    pairs = next(d.value for d in at.dataframe if "shared items" in d.value.columns)
    assert pairs["shared items"].tolist() == [4]


def test_an_admin_splits_the_run_and_edits_guidelines_on_the_page(ws):
    workspace, store = ws
    at = open_page(workspace.root)
    at.text_input(key="ns_assign_names").input("ana, bob")
    at.number_input(key="ns_assign_overlap").set_value(1)
    at.button[[b.label for b in at.button].index("Assign")].click().run()
    assert not at.exception, [e.value for e in at.exception]
    from core import assignments, guidelines
    plan = assignments.plan(store, RUN)
    assert (plan.annotators, plan.overlap) == (["ana", "bob"], 1)
    at.text_area(key="ns_guidelines_text").input("Judge the <b>document</b>.")
    at.button(key="ns_guidelines_save").click().run()
    assert guidelines.latest(store, "tiny").text == "Judge the <b>document</b>."
    assert any("version 1" in s.value for s in at.success)


def test_the_audit_trail_lists_the_newest_writes_first_when_asked(ws):
    """Who wrote what, and when: read only when the toggle asks (it holds every verdict), newest first, the same rows
    core.audit exports; the page's own writes (a guidelines version) join it."""
    from core import audit

    workspace, store = ws
    at = open_page(workspace.root)
    assert not any("rows; the newest" in c.value for c in at.caption), "not read until asked"
    at.text_area(key="ns_guidelines_text").input("Judge the document.")
    at.button(key="ns_guidelines_save").click().run()
    at.toggle(key="ns_team_audit").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    trail = audit.log(store)
    assert any(c.value.startswith(f"{len(trail):,} rows; the newest") for c in at.caption)
    shown = next(d.value for d in at.dataframe if list(d.value.columns) == audit.COLUMNS)
    for column in ("at", "actor", "action", "target"):
        assert shown[column].tolist() == trail[column].tolist()[::-1], column
    assert shown["action"].iloc[0] == "guidelines" and shown["target"].iloc[0] == "tiny"
    assert (shown["actor"] == "ana").sum() == 4 and (shown["actor"] == "bob").sum() == 4
    assert [b.label for b in at.get("download_button")] == [f"Download the whole trail ({f.upper()})"
                                                           for f in audit.FORMATS]
