"""The numbers pages show, computed by core functions: Review's progress, Overview's candidates above the weakest
positive, and the run diff's totals on the Mine page."""

from __future__ import annotations

import pandas as pd

from core.mining import DIFF_CHANGES, diff_summary
from core.review import above_weakest_positive, progress_summary


def test_progress_summary_counts_the_run_the_query_and_complete_queries():
    per_query = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "judged": [3, 1, 0], "total": [3, 4, 2]})
    done = progress_summary(per_query, "q2")
    assert (done.done, done.total, done.query_done, done.query_total) == (4, 9, 1, 4)
    assert (done.complete, done.queries) == (1, 3)
    unknown = progress_summary(per_query, "nope")
    assert (unknown.query_done, unknown.query_total) == (0, 0)


def test_above_weakest_positive_counts_candidates_share_queries_and_kept():
    cands = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q3"], "score": [0.9, 0.2, 0.8, 0.1],
                          "pos_score": [0.5, 0.5, 0.8, 0.0], "kept": [True, True, False, False]})
    above = above_weakest_positive(cands)
    assert (above.candidates, above.queries, above.kept) == (2, 2, 1)  # q2's 0.8 ties its positive: not above
    assert above.share == 0.5
    assert above_weakest_positive(cands.head(0)).share == 0.0


def test_diff_summary_lists_every_change_and_counts_per_query():
    diff = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q2", "q2"],
                         "change": ["appears", "same", "disappears", "rank changed", "appears"]})
    totals, per_query = diff_summary(diff)
    assert list(totals.index) == list(DIFF_CHANGES)
    assert totals.to_dict() == {"appears": 2, "disappears": 1, "rank changed": 1, "same": 1}
    assert per_query.loc["q2"].to_dict() == {"appears": 1, "disappears": 1, "rank changed": 1}
    assert per_query.loc["q1"].to_dict() == {"appears": 1, "disappears": 0, "rank changed": 0}
    assert diff_summary(diff[diff["change"] == "same"])[0].sum() == 1
