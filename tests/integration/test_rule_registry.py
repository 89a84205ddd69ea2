"""A mining rule is declared once: a rule registered here (and nowhere else) shows up in the CLI options, on the
Mine page and in stored runs, and works end to end; stored rule parameters that no rule declares are refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core import charts, rules
from core.cli import app
from core.errors import UserError
from core.mining import derive_run, run_spec
from core.rules import RuleSpec
from tests.app_helpers import open_app, store_at, timed
from tests.cli_helpers import assert_user_error, run_cli


class MaxRank(rules.Filter):
    """MaxRank: keep candidates with rank ≤ R (a throwaway rule that exists only in this test)."""

    name = "maxrank"
    summary = "keep rank ≤ R"
    named_default = 4
    threshold = rules.Param("max_rank", int, None, "keep candidates ranked R or better", label="R (max rank)", low=1,
                            start=4)

    def keep(self, t: float, frame: pd.DataFrame, score: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return frame["rank"].to_numpy() <= t

    def label(self, t: float) -> str:
        return f"maxrank rank≤{t:g}"


def register_maxrank(monkeypatch) -> None:
    """Register MaxRank on a copy of the registry that monkeypatch puts back after the test."""
    monkeypatch.setattr(rules, "REGISTRY", dict(rules.REGISTRY))
    rules.register(MaxRank())


def invoke(*args: object):
    """The CLI in-process, so it is built from this process's registry."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_a_registered_rule_gets_its_cli_options_and_loses_them_when_removed(monkeypatch):
    for command in ("mine", "rerule"):
        assert "--max-rank" not in invoke(command, "--help").output
    register_maxrank(monkeypatch)
    for command in ("mine", "rerule"):
        help_ = invoke(command, "--help")
        assert help_.exit_code == 0, help_.output
        assert "--max-rank" in help_.output and "maxrank: keep candidates ranked R or better" in help_.output
        assert "--relative-margin" in help_.output and "--skip-judged" in help_.output  # the declared ones stay
    monkeypatch.undo()
    assert "--max-rank" not in invoke("mine", "--help").output
    assert "maxrank" not in rules.REGISTRY


def test_a_registered_rule_works_end_to_end_through_rerule(monkeypatch, mined, ws_root):
    register_maxrank(monkeypatch)
    run_id = mined[2].run_id
    store = store_at(ws_root)
    parent = store.candidates(run_id)
    for extra, max_rank, selector in (([], 4, "top"), (["--max-rank", "2"], 2, "top"),
                                      (["--rule", "simans", "--max-rank", "5", "--seed", "1"], 5, "simans")):
        args = ["--rule", "maxrank", *extra] if selector == "top" else extra
        res = invoke("rerule", "--workspace", ws_root, "--run", run_id, "--num-negatives", 3, *args, "--json")
        assert res.exit_code == 0, res.output
        new = json.loads(res.output)["run"]
        cands = store.candidates(new)
        assert cands[["query_id", "doc_id", "rank"]].equals(parent[["query_id", "doc_id", "rank"]])
        assert cands.loc[cands["rank"] > max_rank, "rule"].eq("filtered:maxrank").all()
        for _, group in cands.groupby("query_id"):
            eligible = group[group["rank"] <= max_rank]
            if selector == "top":
                assert group[group.kept]["rank"].tolist() == eligible["rank"].tolist()[:3]
            else:
                assert group.kept.sum() == 3 and set(group[group.kept].doc_id) <= set(eligible.doc_id)
        spec = run_spec(store.run(new))
        assert spec.max_rank == max_rank and store.run(new)["params"]["rules"]["max_rank"] == max_rank
        assert spec.describe().startswith(f"maxrank rank≤{max_rank} → ")


def test_a_registered_rule_is_offered_and_previewed_on_the_mine_page(monkeypatch, ws_root):
    register_maxrank(monkeypatch)
    at = open_app(monkeypatch, ws_root, "pages/mine.py")
    assert "maxrank" in at.selectbox(key="mine_rule").options
    at.selectbox(key="mine_rule").set_value("maxrank").run()  # which enables its widget
    at.number_input(key="mine_max_rank").set_value(2)
    timed(at)
    assert not at.error
    assert any("maxrank rank≤2 → top" in c.value for c in at.caption)  # the caption escapes "-"
    metrics = {m.label: m.value for m in at.metric}
    store = store_at(ws_root)
    queries = store.candidates(store.runs("tiny")[0]["run_id"]).query_id.nunique()
    assert (metrics["kept negatives"], metrics["no longer kept"]) == (str(2 * queries), str(queries))  # rank 3 goes
    next(b for b in at.button if b.label == "Commit as a new run").click().run()
    assert not at.exception
    assert store_at(ws_root).runs("tiny")[0]["params"]["rules"]["max_rank"] == 2


def test_validation_messages_on_the_mine_page_use_parameter_words(monkeypatch, ws_root):
    at = open_app(monkeypatch, ws_root, "pages/mine.py")
    at.selectbox(key="mine_rule").set_value("simans").run()
    at.number_input(key="mine_simans_a").set_value(0.0)
    timed(at)
    assert [e.value for e in at.error] == ["simans a must be above 0 (got 0)"]
    at.number_input(key="mine_simans_a").set_value(1.0)
    at.selectbox(key="mine_rule").set_value("percpos").run()
    at.number_input(key="mine_relative_margin").set_value(1.0)
    timed(at)
    assert [e.value for e in at.error] == ["relative margin must be at least 0 and below 1 (got 1)"]


OLD_STORED = {"rule": "percpos", "num_negatives": 5, "max_score": None, "absolute_margin": None,
              "relative_margin": 0.05, "range_min": 10, "range_max": 100, "simans_a": 1.0, "simans_b": 0.0, "seed": 0,
              "skip_judged": False}  # what runs stored before the cross-encoder rules: exactly these keys


def test_stored_rules_load_and_unknown_keys_are_refused(monkeypatch, mined, ws_root):
    # runs stored before the ce rules existed load with those filters off
    assert RuleSpec.from_dict(OLD_STORED).to_dict() == {**OLD_STORED, "ce_threshold": None, "ce_margin": None}
    older = {k: v for k, v in OLD_STORED.items() if k != "skip_judged"}  # stored before skip_judged existed
    assert RuleSpec.from_dict(older) == RuleSpec("percpos", num_negatives=5)
    with pytest.raises(UserError, match="unknown rule parameter 'relative_margn'"):
        RuleSpec.from_dict({**OLD_STORED, "relative_margn": 0.1})
    with pytest.raises(UserError, match="num negatives must be a number, not '5'"):
        RuleSpec.from_dict({**OLD_STORED, "num_negatives": "5"})
    with pytest.raises(UserError, match="num negatives must be a whole number, not 2.5"):
        RuleSpec.from_dict({**OLD_STORED, "num_negatives": 2.5})
    with pytest.raises(UserError, match="num negatives must be at least 1"):
        RuleSpec("top", num_negatives=0)
    # a run made with a rule that is no longer registered names the run and the parameter
    store = store_at(ws_root)
    register_maxrank(monkeypatch)
    orphan = derive_run(store, mined[2].run_id, RuleSpec("top", max_rank=3)).run_id
    monkeypatch.undo()
    with pytest.raises(UserError, match=f"run {orphan}: stored rule: unknown rule parameter 'max_rank'"):
        run_spec(store.run(orphan))
    assert_user_error(run_cli("runs", "--workspace", ws_root), f"run {orphan}: stored rule", "'max_rank'")


def test_threshold_lines_come_from_the_declarations():
    pos = np.array([0.5, 0.6, 0.8])
    spec = RuleSpec("percpos", max_score=0.7, absolute_margin=0.1)
    xs, labels = zip(*charts.threshold_lines(spec, pos, "score"))
    assert xs == pytest.approx((0.7, 0.5, 0.57))
    assert labels == ("abs s<0.7", "marginpos −0.1 (median query)", "percpos 0.05 (median query)")
    xs, labels = zip(*charts.threshold_lines(spec, pos, "margin"))
    assert xs == pytest.approx((0.1, -0.1, -0.03))
    assert labels == ("abs s<0.7 (median query)", "marginpos −0.1", "percpos 0.05 (median query)")
    assert charts.threshold_lines(RuleSpec("simans"), pos, "score") == []
