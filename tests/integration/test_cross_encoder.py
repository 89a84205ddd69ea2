"""Cross-encoder teacher scores (core.cross_encoder): scored once per (model, query text, document text), stored,
read by the ce rules, the preview, the risk signal and the export manifest, and turned into pseudo-positive
suggestions a reviewer decides.

No cross-encoder ships with weights: the tests save one built from the bundled MiniLM with a fresh one-label head
(untrained, so its probabilities sit near 0.5, but real and deterministic once saved). They assert behaviour, not
quality, and pick thresholds from the stored scores' own distribution.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core import cross_encoder, labels, triage
from core.errors import UserError
from core.lookups import positives_by_query
from core.workspace import open_workspace
from tests.cli_helpers import assert_user_error, run_cli


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory) -> Path:
    """A one-label sentence-transformers CrossEncoder built from the bundled MiniLM, saved to a folder."""
    from sentence_transformers import CrossEncoder

    from core.encoders import default_model_path

    folder = tmp_path_factory.mktemp("ce") / "minilm-ce"
    CrossEncoder(str(default_model_path()), num_labels=1, device="cpu").save(str(folder))
    return folder


@pytest.fixture
def scored(ws_root, ce_dir):
    """A private mined workspace whose run the cross-encoder scored: (workspace, store, run_id, ScoreResult)."""
    ws = open_workspace(ws_root)
    store = ws.store()
    run_id = store.runs("tiny")[0]["run_id"]
    return ws, store, run_id, cross_encoder.score_run(store, ws, run_id, ce_dir, device="cpu", batch_size=8)


def test_scores_candidates_and_positives_once_as_the_models_probability(scored, ce_dir):
    ws, store, run_id, result = scored
    run = store.run(run_id)
    candidates = store.candidates(run_id, with_signals=False, with_risk=False)
    positives = positives_by_query(store, "tiny", run["split"])
    expected = {*zip(candidates["query_id"], candidates["doc_id"]),
                *((q, d) for q in candidates["query_id"].unique() for d in positives.get(q, []))}
    assert (result.pairs, result.scored, result.cached) == (len(expected), len(expected), 0)
    assert result.model == store.run_teacher(run_id)["model"]

    frame = cross_encoder.run_ce_scores(store, run_id)
    assert list(frame.columns) == ["query_id", "doc_id", "ce", "positive"]
    assert set(zip(frame["query_id"], frame["doc_id"])) == expected and not frame["ce"].isna().any()
    assert frame.loc[~frame["positive"], ["query_id", "doc_id"]].values.tolist() == \
        candidates[["query_id", "doc_id"]].values.tolist()  # candidates first, in run order
    assert {(q, d) for q, d in frame.loc[frame["positive"], ["query_id", "doc_id"]].values} == \
        {(q, d) for q in candidates["query_id"].unique() for d in positives.get(q, [])}

    # the stored value is CrossEncoder.predict's default output: the sigmoid of the one logit
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(ce_dir), device="cpu")
    sample = frame.iloc[[0, 5, len(frame) - 1]]
    queries = store.queries("tiny", list(sample["query_id"])).set_index("query_id")["text"]
    docs = store.documents("tiny", list(sample["doc_id"])).set_index("doc_id")
    texts = [(queries[q], f"{docs.loc[d, 'title']} {docs.loc[d, 'text']}".strip())
             for q, d in zip(sample["query_id"], sample["doc_id"])]
    logits = model.predict(texts, activation_fn=lambda x: x)  # identity: the raw logits
    np.testing.assert_allclose(sample["ce"], 1 / (1 + np.exp(-np.asarray(logits))), rtol=1e-4)
    np.testing.assert_allclose(sample["ce"], model.predict(texts), rtol=1e-4)

    again = cross_encoder.score_run(store, ws, run_id, ce_dir, device="cpu")
    assert (again.pairs, again.scored, again.cached) == (result.pairs, 0, result.pairs)


def test_the_cache_serves_another_run_of_the_same_texts(scored, ce_dir):
    from core.mining import mine
    from core.rules import RuleSpec

    ws, store, run_id, first = scored
    known = set(map(tuple, cross_encoder.run_ce_scores(store, run_id)[["query_id", "doc_id"]].values))
    deeper = mine(store, ws, "tiny", "train", depth=25, spec=RuleSpec("top", num_negatives=3))
    pairs = cross_encoder.run_pairs(store, deeper.run_id)
    wanted = set(zip(np.asarray(pairs.queries)[pairs.query], np.asarray(pairs.docs)[pairs.doc]))
    result = cross_encoder.score_run(store, ws, deeper.run_id, ce_dir, device="cpu")
    assert result.cached == len(wanted & known) > 0
    assert result.scored == len(wanted - known) > 0
    assert cross_encoder.score_run(store, ws, deeper.run_id, ce_dir, device="cpu").scored == 0


def test_confident_unjudged_candidates_become_suggestions_never_verdicts(ws_root, ce_dir):
    ws = open_workspace(ws_root)
    store = ws.store()
    run_id = store.runs("tiny")[0]["run_id"]
    cross_encoder.score_run(store, ws, run_id, ce_dir, device="cpu", suggest_above=1.0)  # scores, suggests none
    assert store.suggestions("tiny").empty
    frame = cross_encoder.run_ce_scores(store, run_id)
    candidates = frame[~frame["positive"]].sort_values("ce", ascending=False)
    cutoff = float(candidates["ce"].iloc[5] + candidates["ce"].iloc[6]) / 2  # the six most confident
    judged_q, judged_d = candidates.iloc[0][["query_id", "doc_id"]]
    labels.record(store, "tiny", judged_q, judged_d, "ana", "true_negative")

    result = cross_encoder.score_run(store, ws, run_id, ce_dir, device="cpu", suggest_above=cutoff)
    assert result.scored == 0 and result.suggested == 5
    open_ = triage.suggestions(store, "tiny")
    assert set(zip(open_["query_id"], open_["doc_id"])) == \
        set(map(tuple, candidates.iloc[1:6][["query_id", "doc_id"]].values))
    assert (open_["label"] == "false_negative").all() and open_["reason"].str.contains("RocketQA").all()
    assert len(labels.current(store, "tiny")) == 1 and store.count("qrels", origin="promoted") == 0
    first = open_.iloc[0]
    triage.accept_suggestion(store, int(first["id"]), "ana")
    verdicts = labels.current(store, "tiny")
    assert ((verdicts["query_id"] == first["query_id"]) & (verdicts["doc_id"] == first["doc_id"])
            & (verdicts["label"] == "false_negative")).sum() == 1
    again = cross_encoder.score_run(store, ws, run_id, ce_dir, device="cpu", suggest_above=cutoff)
    assert again.suggested == 0, "decided and still-open suggestions are not opened twice"


def test_bad_input_is_one_line(tmp_path, ws_root, ce_dir):
    from core.encoders import default_model_path

    store = open_workspace(ws_root).store()
    run_id = store.runs("tiny")[0]["run_id"]
    before = store.table_checksums()
    (tmp_path / "empty").mkdir()
    config = tmp_path / "three-labels"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"],
                                                     "id2label": {"0": "a", "1": "b", "2": "c"}}))
    for folder, needle in ((tmp_path / "missing", "no such file or folder"), (tmp_path / "empty", "no config.json"),
                           (default_model_path(), "not a cross-encoder"), (config, "3 labels")):
        assert_user_error(run_cli("score", "-w", ws_root, "--run", run_id, "--cross-encoder", folder), needle)
    assert_user_error(run_cli("score", "-w", ws_root, "--run", "nope", "--cross-encoder", ce_dir), "no run 'nope'")
    assert_user_error(run_cli("score", "-w", ws_root, "--run", run_id, "--cross-encoder", ce_dir,
                              "--batch-size", "0"), "--batch-size")
    assert_user_error(run_cli("score", "-w", ws_root, "--run", run_id, "--cross-encoder", ce_dir,
                              "--device", "warp"), "--device warp")
    assert store.table_checksums() == before
    with pytest.raises(UserError, match="no cross-encoder scores"):
        cross_encoder.rule_columns(store, run_id)
