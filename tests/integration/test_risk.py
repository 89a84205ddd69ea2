"""False-negative risk on a hand-built fixture with the real model: signals behave as core/risk.py documents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import labels, risk, vectors
from core.datasets import ingest
from core.mining import mine
from core.rules import RuleSpec
from tests.fixtures import make_beir

ROOT = Path(__file__).resolve().parents[2]
# A near-copy of q1's labelled positive py-join (cosine ≈ 0.96 with the bundled model); nobody labelled it.
COPY_OF_POSITIVE = {"_id": "py-join-copy", "title": "os.path.join()",
                    "text": "Join one or more path components intelligently, inserting a slash between them"}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The tiny fixture plus a copy of a positive, mined at depth 20; mining leaves risk to the first review."""
    from core.workspace import open_workspace

    root = tmp_path_factory.mktemp("risk")
    folder = make_beir(root / "tiny")
    with (folder / "corpus.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(COPY_OF_POSITIVE) + "\n")
    ws = open_workspace(root / "ws")
    store = ws.store()
    ingest(store, folder, "tiny")
    result = mine(store, ws, "tiny", "train", depth=20, spec=RuleSpec("top", num_negatives=3))
    assert store.risk_missing(result.run_id) and store.risk_scored_at(result.run_id) is None
    assert risk.ensure_risk(store, ws, result.run_id) and not store.risk_missing(result.run_id)
    assert store.risk_scored_at(result.run_id) is not None, "scoring stamps the run, so app caches refresh"
    assert not risk.ensure_risk(store, ws, result.run_id), "a scored run is not scored again"
    return ws, store, result.run_id


def _signals(store, run_id: str) -> pd.DataFrame:
    cands = store.candidates(run_id)
    return pd.concat([cands[["query_id", "doc_id", "risk"]], risk.stored_signals(cands)], axis=1) \
        .set_index(["query_id", "doc_id"])


def test_mining_scores_every_candidate_with_every_signal(scored):
    _, store, run_id = scored
    cands = store.candidates(run_id)
    assert cands["risk"].between(0, 1).all()
    for row in cands.itertuples():
        values = json.loads(row.signals)
        assert list(values) == list(risk.SIGNALS)
        assert values["rank"] == row.rank
        assert values["margin"] == pytest.approx(row.score - row.pos_score, abs=1e-3)
        assert 0 <= values["bm25_norm"] <= 1
    assert all(meaning for meaning in risk.SIGNALS.values())


def test_the_model_that_scored_a_run_is_saved_and_explains_each_stored_risk(scored):
    """Review's "Why this risk": the saved model's per-signal shares plus its intercept give back the stored risk
    of every candidate, largest share first, with what each signal measures."""
    _, store, run_id = scored
    assert store.run_file(run_id, risk.MODEL_FILE).exists()
    model = risk.risk_model(store, run_id)
    assert model.to_dict() == risk.default_model().to_dict(), "no verdicts yet: the defaults scored it"
    for row in store.candidates(run_id).itertuples():
        table = risk.explain(model, json.loads(row.signals))
        assert set(table["signal"]) == set(risk.SIGNALS)
        shares = table["share of the logit"].to_numpy()
        assert (np.abs(shares[:-1]) >= np.abs(shares[1:])).all()
        logit = model.intercept + shares.sum()
        assert 1 / (1 + np.exp(-logit)) == pytest.approx(row.risk, abs=2e-3)
        assert table["what it measures"].str.len().gt(0).all()


def test_near_copy_of_positive_gets_top_risk_and_unrelated_documents_the_bottom(scored):
    _, store, run_id = scored
    frame = _signals(store, run_id)
    copy = frame.loc[("q1", "py-join-copy")]
    assert copy["pos_cosine"] >= vectors.NEAR_DUPLICATE_COSINE
    assert copy["risk"] == frame["risk"].max(), "the near-copy of a positive is the riskiest candidate of the run"
    q1 = frame.loc["q1"].sort_values("risk")
    about_python = q1.index.str.startswith("py-")  # q1 asks how to join paths; nothing else is related
    assert not about_python[0], "the bottom of q1's list is an unrelated document"
    assert q1.loc[~about_python, "risk"].max() < q1.loc[about_python, "risk"].min()
    # every planted false negative is its query's riskiest candidate
    for query_id, doc_id in [("q2", "py-sort-dup"), ("q4", "bio-2"), ("q5", "geo-2"), ("q6", "food-2")]:
        assert frame.loc[query_id]["risk"].idxmax() == doc_id


@pytest.fixture
def private(scored, tmp_path):
    """A private copy of the scored workspace, for tests that write verdicts or settings: the module's one stays
    as scored."""
    from core.workspace import open_workspace
    from tests.app_helpers import copy_workspace

    ws, _, run_id = scored
    own = open_workspace(copy_workspace(ws.root, tmp_path / "ws"))
    return own, own.store(), run_id


def test_verdicts_feed_other_candidates_signals_never_their_own(private):
    ws, store, run_id = private
    before = _signals(store, run_id)
    labels.record(store, "tiny", "q1", "py-join-dup", "ana", "false_negative")
    labels.record(store, "tiny", "q2", "py-rev", "ana", "true_negative")
    risk.compute_risk(store, ws, run_id)
    after = _signals(store, run_id)
    judged = ("q1", "py-join-dup")
    for name in ("pos_cosine", "pos_overlap", "query_fn_rate"):
        assert after.loc[judged, name] == pytest.approx(before.loc[judged, name], abs=1e-4)
    assert after.loc[("q2", "py-rev"), "tn_cosine"] == 0, "a rejected candidate is not its own neighbour"
    # the confirmed false negative now counts as a known positive of q1 ...
    q1_others = after.loc["q1"].drop(index="py-join-dup")
    assert (q1_others["pos_cosine"] >= before.loc["q1"].drop(index="py-join-dup")["pos_cosine"] - 1e-4).all()
    assert after.loc[("q1", "py-split"), "query_fn_rate"] > before.loc[("q1", "py-split"), "query_fn_rate"]
    # ... and the rejected one pulls its look-alikes under q2 down
    assert (after.loc["q2"]["tn_cosine"] >= 0).all() and (before["tn_cosine"] == 0).all()
    assert after.loc[("q2", "py-sort-dup"), "tn_cosine"] > 0.1
    assert after.loc[("q2", "py-split"), "query_fn_rate"] < after.loc[("q1", "py-split"), "query_fn_rate"]


def _synthetic(n_fn: int, n_tn: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = n_fn + n_tn
    frame = pd.DataFrame({name: rng.normal(size=n) for name in risk.SIGNALS})
    frame["rank"] = rng.integers(1, 100, size=n)
    frame["pos_cosine"] = np.r_[np.full(n_fn, 0.9), np.full(n_tn, 0.3)] + rng.normal(scale=0.1, size=n)
    frame["query_id"] = "q"
    frame["doc_id"] = [f"d{i}" for i in range(n)]
    verdicts = pd.DataFrame({"query_id": "q", "doc_id": frame["doc_id"],
                             "label": ["false_negative"] * n_fn + ["true_negative"] * n_tn})
    return frame, verdicts


def test_weights_are_refitted_only_from_enough_verdicts_of_both_kinds():
    few = risk.choose_model(*_synthetic(risk.MIN_VERDICTS_PER_CLASS - 1, 100))
    assert few is risk.DEFAULT_MODEL
    model = risk.choose_model(*_synthetic(risk.MIN_VERDICTS_PER_CLASS, 60))
    assert model.source.startswith("refitted on this workspace's 90 verdicts")
    assert model.weights["pos_cosine"] > 0
    frame, _ = _synthetic(5, 5)
    logit = model.intercept + model.contributions(frame).sum(axis=1)
    assert model.predict(frame) == pytest.approx(1 / (1 + np.exp(-logit)))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_risk_writes_every_candidate_riskiest_first(scored, tmp_path):
    ws, store, run_id = scored
    out = tmp_path / "risk.tsv"
    done = _cli("risk", "--workspace", str(ws.root), "--run", run_id, "--out", str(out))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out, sep="\t", dtype={"query-id": str, "corpus-id": str})
    assert list(table.columns) == risk.TSV_COLUMNS
    assert len(table) == len(store.candidates(run_id))
    assert (np.diff(table["risk"].to_numpy()) <= 0).all()
    assert tuple(table.iloc[0][["query-id", "corpus-id"]]) == ("q1", "py-join-copy")
    missing = _cli("risk", "--workspace", str(ws.root), "--run", "nope", "--out", str(out))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "nope" in missing.stderr


def test_second_model_opinion_is_a_signal_once_configured(private):
    from core.encoders import default_model_path
    from core.errors import UserError

    ws, store, run_id = private
    assert (_signals(store, run_id)["second_model"] == 0).all()
    with pytest.raises(UserError, match="not a folder"):
        risk.configure_second_model(ws, str(ws.root / "no-such-model"))
    assert not store.risk_missing(run_id, risk.signal_set())
    risk.configure_second_model(ws, str(default_model_path()))  # any local model; the bundled one will do
    assert store.risk_missing(run_id, risk.signal_set()), "a new second model makes every run's risk stale"
    risk.compute_risk(store, ws, run_id)
    assert not store.risk_missing(run_id, risk.signal_set())
    risk.configure_second_model(ws, str(default_model_path()))  # the same model again: nothing to redo
    assert not store.risk_missing(run_id, risk.signal_set())
    frame = _signals(store, run_id)
    cands = store.candidates(run_id).set_index(["query_id", "doc_id"])
    for query_id in ("q1", "q5"):
        # the same model as second opinion agrees with the dense ranking: its z-score falls with rank
        z = frame.loc[query_id]["second_model"]
        assert np.corrcoef(z, cands.loc[query_id, "score"].loc[z.index])[0, 1] > 0.99
