"""Evaluation: metrics equal ir-measures and hand computation, significance, the real retrieval path, the CLI."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from core.errors import UserError
from core.evaluate import (METRICS, Evaluation, collection_from_beir, compare, evaluate, run_model, score)
from tests.cli_helpers import run_cli
from tests.fixtures import TEST

# q1 has graded judgments (2, 1) and a judged non-relevant doc; q2's only relevant doc is ranked second;
# q3 is judged but absent from the run and must count as 0, not be skipped.
QRELS = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d4": 1}, "q3": {"d9": 1}}
RUN = {"q1": {"d2": 0.9, "d3": 0.85, "d1": 0.8, "d5": 0.7}, "q2": {"d6": 0.9, "d4": 0.5}}


def test_metrics_match_hand_computation_and_ir_measures():
    import ir_measures

    per_query = score(QRELS, RUN)
    # trec_eval's ndcg_cut: linear gains, log2(rank + 1) discounts
    dcg_q1 = 1 / math.log2(2) + 2 / math.log2(4)
    idcg_q1 = 2 / math.log2(2) + 1 / math.log2(3)
    expected = pd.DataFrame({"ndcg@10": [dcg_q1 / idcg_q1, 1 / math.log2(3), 0.0],
                             "mrr@10": [1.0, 0.5, 0.0], "recall@100": [1.0, 1.0, 0.0]},
                            index=pd.Index(["q1", "q2", "q3"], name="query_id"))
    pd.testing.assert_frame_equal(per_query, expected, atol=1e-9)
    reference = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.R @ 100],
                                           QRELS, {**RUN, "q3": {"d0": 1.0}})
    assert per_query["ndcg@10"].mean() == pytest.approx(reference[ir_measures.nDCG @ 10])
    assert per_query["mrr@10"].mean() == pytest.approx(reference[ir_measures.RR @ 10])
    assert per_query["recall@100"].mean() == pytest.approx(reference[ir_measures.R @ 100])


def _evaluation(values: list[float]) -> Evaluation:
    frame = pd.DataFrame({m: values for m in METRICS}, index=pd.Index([f"q{i}" for i in range(len(values))],
                                                                      name="query_id"))
    return Evaluation("m", "c", "test", frame)


def test_compare_counts_wins_and_matches_scipy():
    from scipy import stats

    a = _evaluation([0.1, 0.5, 0.3, 0.9, 0.4, 0.2, 0.6, 0.7])
    b = _evaluation([0.3, 0.5, 0.6, 0.8, 0.7, 0.5, 0.9, 0.9])
    result = compare(a, b)
    assert (result.wins, result.losses, result.ties) == (6, 1, 1)
    assert result.delta == pytest.approx(0.1875)
    assert result.p_ttest == pytest.approx(stats.ttest_rel(b.per_query["ndcg@10"], a.per_query["ndcg@10"]).pvalue)
    assert 0 < result.p_randomization < 0.1
    diff = b.per_query["ndcg@10"] - a.per_query["ndcg@10"]
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / len(diff) ** 0.5
    assert (result.ci_low, result.ci_high) == pytest.approx((diff.mean() - half, diff.mean() + half))
    same = compare(a, a)
    assert (same.p_ttest, same.p_randomization, same.ties) == (1.0, 1.0, 8)
    with pytest.raises(UserError):
        compare(a, _evaluation([0.1, 0.2]))


def test_evaluate_uses_mining_retrieval_and_cache(beir_dir, embedding_cache):
    from core.encoders import load_encoder

    collection = collection_from_beir(beir_dir, "test")
    assert set(collection.queries["query_id"]) == set(TEST) and collection.qrels == TEST
    result = evaluate("default", collection, cache_dir=embedding_cache)
    assert result.queries == len(TEST) and set(result.to_dict()) == {*METRICS, "queries"}
    # q7 has two graded positives, q8 one; the bundled model finds all of them in the top 100 of 30 docs
    assert result.means()["recall@100"] == 1.0 and 0 < result.means()["ndcg@10"] <= 1
    encoder = load_encoder("default", cache_dir=embedding_cache)
    run = run_model(encoder, collection)
    assert encoder.stats.encoded == 0, "the second retrieval reads every vector from the cache"
    assert all(len(docs) == 30 for docs in run.values())
    pd.testing.assert_frame_equal(score(collection.qrels, run), result.per_query)
    with pytest.raises(UserError, match="no positive judgments"):
        collection_from_beir(beir_dir, "dev")


def test_cli_evaluate_json_and_errors(beir_dir, embedding_cache, monkeypatch):
    monkeypatch.setenv("NEGSPACE_EMBEDDINGS", str(embedding_cache))
    res = run_cli("evaluate", "--model", "default", "--beir", beir_dir, "--split", "test", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"ndcg@10", "mrr@10", "recall@100", "queries"} and out["queries"] == 2
    for args in (("--model", "default", "--beir", beir_dir / "missing"),
                 ("--model", beir_dir, "--beir", beir_dir),  # a folder that is not a model
                 ("--model", "default", "--beir", beir_dir, "--split", "dev")):
        bad = run_cli("evaluate", *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
