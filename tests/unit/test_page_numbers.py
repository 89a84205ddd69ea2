"""The numbers pages show, computed by core functions: the run diff's per-query counts on the Mine page (Overview's
and Team's numbers: tests/unit/test_run_stats.py)."""

from __future__ import annotations

import pandas as pd

from core.mining import DIFF_CHANGES, RunDiff


def test_run_diff_counts_each_change_per_query():
    rows = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q2", "q2"],
                         "change": ["appears", "same", "disappears", "rank changed", "appears"]})
    diff = RunDiff(pd.Series(dict.fromkeys(DIFF_CHANGES, 1)), rows)
    assert diff.per_query.loc["q2"].to_dict() == {"appears": 1, "disappears": 1, "rank changed": 1}
    assert diff.per_query.loc["q1"].to_dict() == {"appears": 1, "disappears": 0, "rank changed": 0}
    assert RunDiff(diff.totals, rows[rows["change"] == "same"]).per_query.empty
