"""Cross-encoder teacher scores (core.cross_encoder): scored once per (model, query text, document text), stored,
read by the ce rules, the preview, the risk signal and the export manifest, and turned into pseudo-positive
suggestions a reviewer decides.

No cross-encoder ships with weights: the tests save one built from the bundled MiniLM with a fresh one-label head
(untrained, so its probabilities sit near 0.5, but real and deterministic once saved). They assert behaviour, not
quality, and pick thresholds from the stored scores' own distribution.
"""

from __future__ import annotations

import json
import time
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


@pytest.fixture(scope="module")
def scored_template(mined, ce_dir, tmp_path_factory) -> tuple[Path, cross_encoder.ScoreResult]:
    """The mined workspace with its run scored by the cross-encoder once per module (tests get private copies)."""
    from tests.app_helpers import copy_workspace

    ws = open_workspace(copy_workspace(mined[0].root, tmp_path_factory.mktemp("scored") / "ws"))
    store = ws.store()
    result = cross_encoder.score_run(store, ws, mined[2].run_id, ce_dir, device="cpu", batch_size=8)
    store.close()
    return ws.root, result


@pytest.fixture
def scored(scored_template, tmp_path):
    """A private copy of ``scored_template``: (workspace, store, run_id, the first ScoreResult)."""
    from tests.app_helpers import copy_workspace

    root, result = scored_template
    ws = open_workspace(copy_workspace(root, tmp_path / "scored-ws"))
    return ws, ws.store(), result.run_id, result


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
    triage.reject_suggestion(store, int(open_.iloc[1]["id"]), "ana")
    again = cross_encoder.score_run(store, ws, run_id, ce_dir, device="cpu", suggest_above=cutoff)
    assert again.suggested == 0, "accepted, rejected and still-open suggestions are not opened again"
    assert len(triage.suggestions(store, "tiny")) == 3


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
    assert_user_error(run_cli("rerule", "-w", ws_root, "--run", run_id, "--rule", "ce"), "no cross-encoder scores",
                      "python -m core score")
    assert store.table_checksums() == before
    with pytest.raises(UserError, match="no cross-encoder scores"):
        cross_encoder.rule_columns(store, run_id)


def test_scores_make_risk_stale_and_feed_the_ce_score_signal(scored):
    from core import risk

    ws, store, run_id, _ = scored
    assert store.risk_missing(run_id, risk.signal_set()), "new teacher scores: the stored risk is stale"
    assert risk.ensure_risk(store, ws, run_id) and not risk.ensure_risk(store, ws, run_id)
    frame = cross_encoder.run_ce_scores(store, run_id)
    want = frame[~frame["positive"]].set_index(["query_id", "doc_id"])["ce"]
    stored = store.candidates(run_id).set_index(["query_id", "doc_id"])
    got = risk.stored_signals(stored.reset_index()).set_axis(stored.index)["ce_score"]
    np.testing.assert_allclose(got.loc[want.index], want.round(4), atol=1e-4)
    contributions = risk.risk_model(store, run_id).contributions(risk.stored_signals(stored.reset_index()))
    np.testing.assert_allclose(contributions["ce_score"], 4.0 * got.to_numpy(), atol=1e-9)
    cross_encoder.score_run(store, ws, run_id, scored_ce_dir(store, run_id), device="cpu")
    assert not store.risk_missing(run_id, risk.signal_set()), "a score that scored nothing leaves risk current"


def scored_ce_dir(store, run_id: str) -> str:
    """The folder of the cross-encoder that last scored the run, as recorded with it."""
    return store.run_teacher(run_id)["model_path"]


def _independent_keep(cand, drop, k: int) -> set[tuple[str, str]]:
    """The pairs a ce rule must keep, recomputed from the stored scores: per query, the k best-ranked candidates
    that ``drop`` leaves (the backfill comes from the next candidates)."""
    eligible = cand[~drop].sort_values(["query_id", "rank"])
    return set(map(tuple, eligible.groupby("query_id").head(k)[["query_id", "doc_id"]].values))


def _scores_with_rank(store, run_id):
    frame = cross_encoder.run_ce_scores(store, run_id)
    ranks = store.candidates(run_id, with_signals=False, with_risk=False)[["query_id", "doc_id", "rank"]]
    cand = frame[~frame["positive"]].merge(ranks, on=["query_id", "doc_id"])
    weakest = frame[frame["positive"]].groupby("query_id")["ce"].min().rename("ce_pos")
    return frame, cand.merge(weakest, on="query_id", how="left")


def test_the_ce_rule_drops_exactly_the_candidates_above_tau_and_backfills(scored):
    from core.mining import derive_run, preview
    from core.rules import RuleSpec

    ws, store, run_id, _ = scored
    _, cand = _scores_with_rank(store, run_id)
    tau = float(cand["ce"].quantile(0.4))  # the head is untrained: a cutoff from its own scores
    spec = RuleSpec("ce", ce_threshold=tau, num_negatives=3)
    derived = derive_run(store, run_id, spec)
    got = store.candidates(derived.run_id, with_signals=False, with_risk=False).merge(
        cand[["query_id", "doc_id", "ce"]], on=["query_id", "doc_id"])
    dropped = got["ce"] > tau
    assert dropped.any() and (~dropped).any()
    assert (got.loc[dropped, "rule"] == "filtered:ce").all() and not got.loc[~dropped, "rule"].str.startswith(
        "filtered").any()
    assert set(map(tuple, got.loc[got["kept"], ["query_id", "doc_id"]].values)) == \
        _independent_keep(got, dropped, 3)
    per_query = got.groupby("query_id").apply(lambda g: (g["kept"].sum(), min(3, (g["ce"] <= tau).sum())))
    assert all(kept == want for kept, want in per_query), "each query is refilled to k where it can be"
    assert store.run(derived.run_id)["stats"]["cross_encoder"] == store.run_teacher(run_id)["model"]
    assert spec.describe().startswith(f"ce p≤{tau:g}")

    margin = 0.002  # the positive-relative form, sentence-transformers' margin on cross-encoder scores
    result = preview(store, run_id, RuleSpec("top", ce_margin=margin, num_negatives=3))
    shown = result.candidates.assign(doc_id=store.candidates(run_id, with_signals=False, with_risk=False)["doc_id"])
    shown = shown.merge(cand[["query_id", "doc_id", "ce", "ce_pos"]], on=["query_id", "doc_id"], suffixes=("", "_"))
    drop = shown["ce_"] >= shown["ce_pos_"] - margin
    assert drop.any() and (~drop).any()
    assert ((shown["rule"] == "filtered:cemargin") == drop).all()
    assert result.ce is not None and sum(c.sum() for c in result.ce.counts.values()) == len(shown)
    flips = result.flip_table(store, 5)
    assert "ce p" in flips and len(flips) and not flips["ce p"].isna().any()


def test_the_ce_rules_refuse_a_run_without_scores_and_mine_refuses_them(mined):
    from core.mining import derive_run, mine, preview
    from core.rules import RuleSpec

    ws, store, result = mined
    for spec in (RuleSpec("ce"), RuleSpec("top", ce_margin=0.1)):
        with pytest.raises(UserError, match="no cross-encoder scores.*score"):
            preview(store, result.run_id, spec)
        with pytest.raises(UserError, match="no cross-encoder scores"):
            derive_run(store, result.run_id, spec)
    with pytest.raises(UserError, match="exist only once a run is mined.*score.*rerule"):
        mine(store, ws, "tiny", "train", depth=20, spec=RuleSpec("ce"))
    assert preview(store, result.run_id, RuleSpec("top")).ce is None, "no teacher: no CE chart, nothing read"


@pytest.mark.slow
def test_round_trip_score_rerule_preview_export_and_a_second_score_scores_nothing(monkeypatch, ws_root, ce_dir,
                                                                                 tmp_path):
    from tests.app_helpers import open_app

    store = open_workspace(ws_root).store()
    run_id = store.runs("tiny")[0]["run_id"]
    first = run_cli("score", "-w", ws_root, "--run", run_id, "--cross-encoder", ce_dir, "--device", "cpu", "--json")
    assert first.returncode == 0, first.stderr
    scored = json.loads(first.stdout)
    assert scored["scored"] == scored["pairs"] > 0 and scored["cached"] == 0
    tau = float(np.quantile(cross_encoder.run_ce_scores(store, run_id)["ce"], 0.5))
    rerule = run_cli("rerule", "-w", ws_root, "--run", run_id, "--rule", "ce", "--ce-threshold", f"{tau:.6f}",
                     "--num-negatives", "3", "--json")
    assert rerule.returncode == 0, rerule.stderr
    derived = json.loads(rerule.stdout)["run"]
    refused = run_cli("mine", "-w", ws_root, "--dataset", "tiny", "--rule", "ce")
    assert_user_error(refused, "exist only once a run is mined", "score", "rerule")

    at = open_app(monkeypatch, ws_root, "pages/mine.py", url={"dataset": "tiny", "run": derived})
    assert at.selectbox(key="mine_rule").value == "ce" and not at.error
    assert at.number_input(key="mine_ce_threshold").value == pytest.approx(tau, abs=1e-6)
    charts = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]
    assert "Cross-encoder probability p under the previewed rule" in charts
    at.text_input(key="mine_ce_model").set_value(str(tmp_path / "nowhere")).run()
    next(b for b in at.button if b.label == "Score").click().run()
    assert [e.value for e in at.error] == [f"--cross-encoder: {tmp_path / 'nowhere'}: no such file or folder"]
    at.text_input(key="mine_ce_model").set_value(str(ce_dir)).run()
    next(b for b in at.button if b.label == "Score").click().run()
    for _ in range(120):  # scoring runs in the background; each script run polls it until it reports
        if at.success or at.exception or at.error:
            break
        time.sleep(0.5)
        at.run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success if s.value.startswith("Scored 0 pairs")], [s.value for s in at.success]

    out = tmp_path / "export"
    exported = run_cli("export", "-w", ws_root, "--run", derived, "--format", "st-triplet", "--out", out)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    teacher = manifest["cross_encoder"]
    assert teacher["model_fingerprint"] == scored["model"] == teacher["rule_read_model"]
    assert teacher["ce_threshold"] == pytest.approx(tau, abs=1e-6) and teacher["ce_margin"] is None
    assert cross_encoder.EXPORT_SCORES in manifest["files"]
    ids = [json.loads(line) for line in (out / "ids.jsonl").read_text().splitlines()]
    ce = {(r["query_id"], r["doc_id"], r["role"]): r["ce"]
          for r in map(json.loads, (out / cross_encoder.EXPORT_SCORES).read_text().splitlines())}
    assert ids and all(ce[(r["query_id"], r["negative_id"], "negative")] <= tau + 1e-6 for r in ids)
    assert all(ce[(r["query_id"], r["positive_id"], "positive")] is not None for r in ids)

    second = run_cli("score", "-w", ws_root, "--run", derived, "--cross-encoder", ce_dir, "--device", "cpu", "--json")
    assert json.loads(second.stdout)["scored"] == 0 and json.loads(second.stdout)["cached"] == scored["pairs"]


def test_the_diff_shows_the_teachers_score(scored):
    from core.mining import compare_runs, derive_run
    from core.rules import RuleSpec

    ws, store, run_id, _ = scored
    derived = derive_run(store, run_id, RuleSpec("top", num_negatives=5)).run_id
    diff = compare_runs(store, run_id, derived)
    assert list(diff.rows.columns)[-2:] == ["ce", "change"] and len(diff.rows)
    frame = cross_encoder.run_ce_scores(store, run_id).set_index(["query_id", "doc_id"])["ce"]
    frame = frame[~frame.index.duplicated()]
    np.testing.assert_allclose(diff.rows["ce"], frame.loc[list(zip(diff.rows["query_id"], diff.rows["doc_id"]))])
