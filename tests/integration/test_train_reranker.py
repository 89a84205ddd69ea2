"""train-reranker: the pairs follow the data and the verdicts, the saved cross-encoder loads and has learnt, a
killed or interrupted run leaves no --out folder, and bad input is one error line."""

from __future__ import annotations

import json
import math
import signal

import pytest

from core import labels
from core.encoders import default_model_path, document_text
from core.train_reranker import RerankerOptions, train_reranker, training_pairs
from tests.cli_helpers import assert_user_error, run_cli, run_cli_signalled
from tests.fixtures import DOCS, QUERIES, TEST, TRAIN, make_beir, write_qrels

FN_VERDICT = ("q1", "py-join-dup")  # an unlabelled paraphrase of q1's positive: becomes a positive
FN_ON_POSITIVE = ("q2", "py-sort")  # already a labelled positive: not counted twice
TN_VERDICTS = [("q1", "misc-7"), ("q8", "misc-1")]  # q8 is a test-split query: every verdict of the dataset counts
UNSURE = ("q4", "bio-3")
LLM_VERDICT = ("q5", "geo-2")  # an LLM judge is not a person: ignored


@pytest.fixture(scope="module")
def judged(mined, tmp_path_factory):
    """A copy of the session's mined tiny workspace with people's and an LLM judge's verdicts, plus a dataset
    'zero' whose 'dev' split has only a grade-0 qrel."""
    from core.datasets import ingest
    from core.workspace import open_workspace
    from tests.app_helpers import copy_workspace

    source, _, result = mined
    root = tmp_path_factory.mktemp("reranker")
    ws = open_workspace(copy_workspace(source.root, root / "ws"), create=False)
    store = ws.store()
    folder = make_beir(root / "zero")
    write_qrels(folder / "qrels" / "dev.tsv", {"q3": {"heat-3": 0}})
    ingest(store, folder, "zero")
    for pair in (FN_VERDICT, FN_ON_POSITIVE):
        labels.record(store, "tiny", *pair, "alice", "false_negative")
    for pair in TN_VERDICTS:
        labels.record(store, "tiny", *pair, "alice", "true_negative")
    labels.record(store, "tiny", *UNSURE, "bob", "unsure")
    labels.record(store, "tiny", *LLM_VERDICT, "llm:judge", "false_negative")
    return ws, store, result.run_id


def _pairs(pairs) -> dict[tuple[str, str], float]:
    return dict(zip(zip(pairs.query_ids, pairs.doc_ids), pairs.labels))


def test_pairs_follow_the_labels_and_the_verdicts(judged):
    _, store, _ = judged
    pairs = training_pairs(store, "tiny", "train", negatives=4, seed=0)
    labelled = {(q, d) for q, docs in TRAIN.items() for d in docs}
    by_pair = _pairs(pairs)
    assert pairs.counts == {"queries": len(TRAIN), "positives": len(labelled), "verdict_positives": 1,
                            "run_negatives": 0, "random_negatives": 4 * len(labelled), "verdict_negatives": 2,
                            "unsure_ignored": 1, "pairs": len(labelled) + 1 + 4 * len(labelled) + 2}
    assert len(by_pair) == len(pairs.labels)  # no pair twice
    assert {p for p, y in by_pair.items() if y == 1.0} == labelled | {FN_VERDICT}
    assert all(by_pair[p] == 0.0 for p in TN_VERDICTS)
    assert UNSURE not in by_pair
    positives = {**TRAIN, **TEST}
    for (query_id, doc_id), label in by_pair.items():
        if label == 0.0 and (query_id, doc_id) not in TN_VERDICTS:
            assert doc_id not in positives.get(query_id, {}) and (query_id, doc_id) != FN_VERDICT
            assert doc_id in DOCS and query_id in TRAIN


def test_run_negatives_come_from_the_run_and_the_seed_decides(judged):
    _, store, run = judged
    pairs = training_pairs(store, "tiny", "train", run, negatives=2, seed=0)
    candidates = store.candidates(run, with_signals=False, with_risk=False)
    mined = set(zip(candidates["query_id"], candidates["doc_id"]))
    hard = [p for p, y in _pairs(pairs).items() if y == 0.0 and p not in TN_VERDICTS]
    assert pairs.counts["run_negatives"] == len(hard) == 2 * sum(len(d) for d in TRAIN.values())
    assert set(hard) <= mined and FN_VERDICT not in hard and UNSURE not in hard
    again = training_pairs(store, "tiny", "train", run, negatives=2, seed=0)
    other = training_pairs(store, "tiny", "train", run, negatives=2, seed=1)
    assert (again.query_ids, again.doc_ids) == (pairs.query_ids, pairs.doc_ids)
    assert other.doc_ids != pairs.doc_ids


@pytest.mark.parametrize(("args", "needles"), [
    (["--dataset", "nope"], ["no dataset named 'nope'"]),
    (["--dataset", "tiny", "--split", "validation"], ["no split 'validation'", "test, train"]),
    (["--dataset", "zero", "--split", "dev"], ["split 'dev'", "no positives"]),
    (["--dataset", "tiny", "--run", "no-such-run"], ["no run 'no-such-run'"]),
    (["--dataset", "tiny", "--max-steps", "0"], ["--max-steps"]),
])
def test_bad_input_is_one_error_line(judged, tmp_path, args, needles):
    ws, _, _ = judged
    out = tmp_path / "ce"
    result = run_cli("train-reranker", "--workspace", ws.root, "--out", out, "--device", "cpu", *args)
    assert_user_error(result, *needles)
    assert not out.exists()


def test_a_non_empty_out_is_refused(judged, tmp_path):
    ws, _, _ = judged
    (tmp_path / "ce").mkdir()
    (tmp_path / "ce" / "keep.txt").write_text("mine")
    result = run_cli("train-reranker", "--workspace", ws.root, "--dataset", "tiny", "--out", tmp_path / "ce")
    assert_user_error(result, "exists and is not empty")
    assert [p.name for p in (tmp_path / "ce").iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_cli_trains_saves_a_loadable_cross_encoder_with_its_manifest(judged, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    ws, store, run = judged
    out = tmp_path / "ce"
    result = run_cli("train-reranker", "--workspace", ws.root, "--dataset", "tiny", "--run", run, "--out", out,
                     "--max-steps", 2, "--batch-size", 8, "--negatives", 2, "--seed", 3, "--max-length", 64, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "saved to" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == training_pairs(store, "tiny", "train", run, negatives=2, seed=3).counts
    assert manifest["counts"]["verdict_positives"] == 1 and manifest["counts"]["verdict_negatives"] == 2
    assert (manifest["dataset"], manifest["split"], manifest["run"], manifest["steps"], manifest["seed"],
            manifest["device"], manifest["base_model"]) == ("tiny", "train", run, 2, 3, "cpu", "default")
    import sentence_transformers

    assert manifest["sentence_transformers"] == sentence_transformers.__version__ and manifest["seconds"] > 0
    assert manifest["max_length"] == 64
    model = CrossEncoder(str(out), device="cpu", local_files_only=True)
    assert model.max_seq_length == 64  # the training length is the saved model's
    scores = model.predict([(QUERIES["q1"], DOCS["py-join"][1]), (QUERIES["q1"], DOCS["misc-8"][1])])
    assert len(scores) == 2 and all(math.isfinite(float(s)) and 0.0 <= float(s) <= 1.0 for s in scores)
    assert not [p for p in tmp_path.iterdir() if p.name != "ce"]  # no temporary sibling left


@pytest.mark.slow
def test_a_killed_run_leaves_no_out_folder_and_the_next_run_cleans_up(judged, tmp_path):
    ws, _, _ = judged
    out = tmp_path / "ce"
    args = ["train-reranker", "--workspace", ws.root, "--dataset", "tiny", "--out", out, "--max-steps", 1,
            "--batch-size", 4, "--device", "cpu"]
    killed = run_cli_signalled(("safetensors/torch.py", "save_file", 0), signal.SIGKILL, *args)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()]  # the killed writer's half-written temporary sibling
    interrupted = run_cli_signalled(("transformers/trainer.py", "training_step", 0), signal.SIGINT, *args)
    assert interrupted.returncode == 130 and "Traceback" not in interrupted.stderr, interrupted.stderr
    assert interrupted.stderr.splitlines()[-1] == "error: interrupted"  # after the model's loading messages
    assert not out.exists()
    assert run_cli(*args).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["ce"]  # the stale sibling was removed by the next writer
    assert (out / "manifest.json").exists() and (out / "model.safetensors").exists()


def _pairwise_accuracy(model, store, pairs) -> float:
    """Share of (labelled positive, sampled negative) pairs of one query that the model orders correctly."""
    queries = dict(zip(*store.queries("tiny")[["query_id", "text"]].to_numpy().T))
    docs = {d: document_text(t, x) for d, (t, x) in DOCS.items()}
    scores = model.predict([(queries[q], docs[d]) for q, d in zip(pairs.query_ids, pairs.doc_ids)])
    by_query: dict[str, tuple[list, list]] = {}
    for q, y, s in zip(pairs.query_ids, pairs.labels, scores):
        by_query.setdefault(q, ([], []))[0 if y == 1.0 else 1].append(float(s))
    wins = [p > n for pos, neg in by_query.values() for p in pos for n in neg]
    return sum(wins) / len(wins)


@pytest.mark.slow
def test_training_teaches_the_model_to_put_positives_above_sampled_negatives(judged, tmp_path):
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    _, store, run = judged
    torch.manual_seed(0)
    untrained = CrossEncoder(str(default_model_path()), num_labels=1, device="cpu", local_files_only=True)
    options = RerankerOptions(run=run, negatives=2, batch_size=8, max_steps=30, learning_rate=5e-5, device="cpu")
    train_reranker(store, "tiny", tmp_path / "ce", options)
    trained = CrossEncoder(str(tmp_path / "ce"), device="cpu", local_files_only=True)
    pairs = training_pairs(store, "tiny", "train", run, negatives=2, seed=0)
    before, after = _pairwise_accuracy(untrained, store, pairs), _pairwise_accuracy(trained, store, pairs)
    assert after >= 0.9 and after > before + 0.2, (before, after)


@pytest.mark.slow
def test_train_page_trains_a_reranker_and_sets_the_second_model(judged, monkeypatch, tmp_path):
    from core.risk import SECOND_MODEL_SETTING
    from core.train_reranker import trained_rerankers
    from core.workspace import open_workspace
    from tests.app_helpers import copy_workspace, finish_job, open_app

    ws, _, _ = judged
    root = copy_workspace(ws.root, tmp_path / "ws")
    at = open_app(monkeypatch, root, "pages/train.py")
    at.number_input(key="rr_steps").set_value(1)
    at.number_input(key="rr_batch").set_value(4)
    at.number_input(key="rr_len").set_value(32)
    at.button(key="rr_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    finish_job(at, "rr_job")
    assert any("Trained a cross-encoder for 1 steps" in s.value for s in at.success)
    (reranker,) = trained_rerankers(open_workspace(root, create=False))
    assert (reranker["run"], reranker["max_length"], reranker["counts"]["verdict_positives"]) == (judged[2], 32, 1)
    assert at.dataframe[0].value["folder"].tolist() == [reranker["path"]]

    at.text_input(key="rs_folder").set_value(str(default_model_path()))
    at.button(key="rs_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert open_workspace(root, create=False).settings()[SECOND_MODEL_SETTING] == str(default_model_path())
    assert any("is scored again in the background" in s.value for s in at.success)
    from core.risk import scoring_job, signal_set
    store = open_workspace(root, create=False).store()
    rescoring = scoring_job(store, root, judged[2])  # the job the page started, shared by name
    assert rescoring is None or (rescoring.wait(600) and rescoring.error is None)
    assert not store.risk_missing(judged[2], signal_set())
