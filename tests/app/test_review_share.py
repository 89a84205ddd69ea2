"""Review for a person named in the run's split: only their share of the queries, with the dataset's guidelines
beside it (markdown, no HTML), and each verdict recording the guidelines version shown."""

from __future__ import annotations

from core import assignments, guidelines, labels
from tests.app_helpers import candidate_list, open_app, store_at

PAGE = "pages/review.py"


def test_review_walks_only_the_share_and_records_the_guidelines_version(monkeypatch, ws_root):
    store = store_at(ws_root)
    run_id = store.runs("tiny")[0]["run_id"]
    assignments.assign(store, run_id, ["reviewer", "other"], overlap=1)
    own = assignments.share(store, run_id, "reviewer")
    guidelines.save(store, "tiny", "Judge the **document**. <img src=x onerror=alert(1)>")
    at = open_app(monkeypatch, ws_root, PAGE)
    assert any(f"Your share of this run: {len(own)} of 6 queries" in c.value for c in at.caption)
    assert candidate_list(at)["query_id"] == own[0]
    shown = [m.value for m in at.markdown if "Judge the" in m.value]
    assert shown == ["Judge the **document**. &lt;img src=x onerror=alert(1)&gt;"]
    for _ in own[1:]:  # next query to the end of the share: never a query of someone else's share
        at.button(key="ns_next_query").click().run()
        assert at.session_state["ns_query"] in own
    assert at.session_state["ns_query"] == own[-1] and at.button(key="ns_next_query").disabled
    at.button(key="ns_true_negative").click().run()
    assert not at.exception, [e.value for e in at.exception]
    event = labels.current(store, "tiny", "reviewer")
    assert event["query_id"].tolist() == [own[-1]] and event["guideline_version"].tolist() == [1]
