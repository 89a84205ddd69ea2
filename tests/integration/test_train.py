"""Training: judged false negatives never reach the loss as negatives, leakage is counted, models save and load."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from core import labels, leakage
from core.encoders import default_model_path, document_text, text_key
from core.selection import select
from core.train import FalseNegativeMask, build_rows, make_loss, masked_texts, trained_models
from core.workspace import open_workspace as open_workspace_at
from tests.cli_helpers import run_cli
from tests.fixtures import DOCS, PLANTED_FALSE_NEGATIVES, QUERIES, TRAIN, make_beir, write_jsonl, write_qrels

pytestmark = pytest.mark.slow  # left out of the fast lane

LEAKY_TEST = {"q2": {"py-sort": 1}, "q7": {"sport-1": 1}, "q9": {"py-join": 1}}
Q9 = "How do I JOIN path-components?"  # q1's text, differently written


@pytest.fixture(scope="module")
def model():
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    m.max_seq_length = 32
    return m


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """The tiny dataset with a test split that shares q2 (by id) and q1 (by normalised text, as q9) with train,
    mined (top 3 of 20), and every planted false negative judged by a reviewer."""
    from core.datasets import ingest
    from core.mining import mine
    from core.rules import RuleSpec
    from core.workspace import open_workspace

    root = tmp_path_factory.mktemp("train")
    folder = make_beir(root / "leaky")
    write_jsonl(folder / "queries.jsonl", [{"_id": k, "text": v} for k, v in {**QUERIES, "q9": Q9}.items()])
    write_qrels(folder / "qrels" / "test.tsv", LEAKY_TEST)
    ws = open_workspace(root / "ws")
    store = ws.store()
    ingest(store, folder, "leaky")
    run = mine(store, ws, "leaky", "train", depth=20, spec=RuleSpec("top", num_negatives=3)).run_id
    for query_id, doc_id in sorted(PLANTED_FALSE_NEGATIVES):
        labels.record(store, "leaky", query_id, doc_id, "alice", "false_negative")
    return ws, store, run


def _features(model, columns: list[list[str]]) -> list[dict]:
    return [model.preprocess(texts) for texts in columns]


@pytest.mark.parametrize("loss_name", ["mnrl", "cmnrl", "gist"])
def test_masked_documents_never_count_as_negatives(model, loss_name):
    """Two rows whose every other candidate (hard negatives and the other row's documents) is judged a false
    negative: with the mask only each row's own positive is left, so the contrastive loss is exactly 0."""
    rows = [("q1", "py-join", "misc-7"), ("q2", "py-sort", "heat-3")]
    texts = {d: document_text(*DOCS[d]) for _, p, n in rows for d in (p, n)}
    keys = [(text_key(texts[p], None), text_key(texts[n], None)) for _, p, n in rows]
    everything = {k for pair in keys for k in pair}
    columns = [[QUERIES[q] for q, _, _ in rows], [texts[p] for _, p, _ in rows], [texts[n] for _, _, n in rows]]
    labels_ = torch.tensor([0, 1])
    # a soft temperature keeps the unmasked loss clearly above 0; chunks of one query make CMNRL advance the mask
    kwargs = {"mnrl": {"scale": 1.0}, "cmnrl": {"scale": 1.0, "mini_batch_size": 1},
              "gist": {"contrast_anchors": False, "contrast_positives": False, "temperature": 1.0}}[loss_name]

    def loss_value(blocked: dict) -> float:
        mask = FalseNegativeMask([q for q, _, _ in rows], keys, blocked)
        loss = make_loss(loss_name, model, mask, guide=model if loss_name == "gist" else None, **kwargs)
        return float(loss(_features(model, columns), labels_).detach())

    own_positive = {"q1": everything - {keys[0][0]}, "q2": everything - {keys[1][0]}}
    assert loss_value({q: set() for q in own_positive}) > 0.01
    # blocking a query's own positive too must not mask the diagonal
    assert loss_value(own_positive) == pytest.approx(0.0, abs=1e-6)
    assert loss_value({q: everything for q in own_positive}) == pytest.approx(0.0, abs=1e-6)


def test_mask_layout_follows_the_loss_columns():
    a, b, c = b"a", b"b", b"c"
    mask = FalseNegativeMask(["q1", "q2", "q3"], [(a, b), (b, c), (c, a)], {"q1": {b}, "q3": {c}})
    matrix = mask.matrix(torch.tensor([2, 0]), columns=2)  # batch = rows 2, 0; columns = [pos2, pos0, neg2, neg0]
    assert matrix.tolist() == [[False, False, False, False],  # q3 blocks c: its own positive stays
                               [False, False, False, True]]  # q1 blocks b: row 0's negative


def _negative_pairs(rows) -> set[tuple[str, str]]:
    return {(q, n) for column in rows.negatives for q, n in zip(rows.queries, column)}


@pytest.mark.parametrize("layout", ["triplet", "ntuple"])
def test_curated_rows_and_mask_exclude_judged_false_negatives(leaky, layout):
    ws, store, run = leaky
    raw, _ = build_rows(select(store, run, "raw"), {}, layout=layout)
    planted = {(q, document_text(*DOCS[d])) for q, d in PLANTED_FALSE_NEGATIVES}
    assert len(_negative_pairs(raw) & planted) >= 4, "raw data trains on the planted false negatives"

    training = select(store, run, "curated")
    rows, mask = build_rows(training, masked_texts(store, training), layout=layout)
    assert not _negative_pairs(rows) & planted
    if layout == "triplet":
        assert len(rows.anchor) == sum(len(e.positives) * max(1, len(e.negatives)) for e in training.examples)
    else:  # one row per (query, positive), k = 3 negative columns, short queries topped up with distinct documents
        assert len(rows.negatives) == 3 and len(rows.anchor) == sum(len(e.positives) for e in training.examples)
        assert (rows.anchor, rows.positive) == (raw.anchor, raw.positive), "raw and curated rows pair up"
        assert rows.filled > 0 and all(len(set(keys)) == len(keys) for keys in rows.doc_keys)
        assert list(rows.dataset().column_names) == ["anchor", "positive", "negative_1", "negative_2",
                                                     "negative_3", "label"]
    # one batch holding every row: wherever a planted false negative of query i sits, the mask is set
    size = len(rows.anchor)
    matrix = mask.matrix(torch.arange(size), columns=1 + len(rows.negatives))
    for i, query in enumerate(rows.queries):
        for c, column in enumerate((rows.positive, *rows.negatives)):
            for j, text in enumerate(column):
                if (query, text) in planted:
                    assert matrix[i, c * size + j]
        assert not matrix[i, i], "a row's own positive is never masked"


def test_leakage_counts_by_id_and_normalised_text(leaky):
    _, store, run = leaky
    training = select(store, run, "raw")
    report = leakage.check(store, training, "test")
    assert report.queries == 2 and set(report.leaked_queries) == {"q1", "q2"}
    assert report.positives == 2  # py-join (q9's test positive) and py-sort (q2's)
    test_docs = {d for ds in LEAKY_TEST.values() for d in ds}
    assert report.negatives == sum(d in test_docs for e in training.examples for d in e.negatives)
    assert "2 training queries" in report.summary()
    kept = leakage.exclude(training, report)
    assert {e.query_id for e in kept.examples} == set(TRAIN) - {"q1", "q2"}
    assert not {d for e in kept.examples for d in (*e.positives, *e.negatives)} & test_docs
    assert report.excluded


def test_cli_train_saves_a_loadable_model_with_manifest(leaky, tmp_path):
    from sentence_transformers import SentenceTransformer

    from core.encoders import load_encoder

    ws, store, run = leaky
    out = ws.models_dir / "curated-mnrl"
    res = run_cli("train", "--workspace", ws.root, "--run", run, "--out", out, "--data", "curated",
                  "--max-steps", "2", "--batch-size", "4", "--max-seq-length", "32", "--seed", "1",
                  "--exclude-leaks", "--rows", "ntuple")
    assert res.returncode == 0, res.stderr
    assert "warning: leakage" in res.stderr and "2 training queries" in res.stderr
    manifest = json.loads((out / "negspace_training.json").read_text())
    assert {k: manifest[k] for k in ("run", "data", "loss", "steps", "seed", "base_model")} == \
        {"run": run, "data": "curated", "loss": "mnrl", "steps": 2, "seed": 1, "base_model": "default"}
    assert manifest["leakage"]["excluded"] and manifest["masked_false_negatives"] >= 3
    assert manifest["row_layout"] == "ntuple" and manifest["rows"] == sum(map(len, TRAIN.values())) - 2
    assert manifest["seconds"] > 0 and manifest["finished"]
    assert [m["path"] for m in trained_models(ws)] == [str(out)]
    loaded = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert loaded.max_seq_length == 256, "trained at 32 tokens, saved with the base model's length"
    vec = load_encoder(out, cache_dir=tmp_path / "emb").encode_queries(["heat conduction"])
    assert vec.shape == (1, 384) and abs(float((vec ** 2).sum()) - 1) < 1e-4

    again = run_cli("train", "--workspace", ws.root, "--run", run, "--out", out, "--max-steps", "1")
    assert again.returncode == 2 and "not empty" in again.stderr
    for args in (("--loss", "triplet"), ("--data", "cleaned"), ("--batch-size", "1"), ("--rows", "pairs")):
        bad = run_cli("train", "--workspace", ws.root, "--run", run, "--out", tmp_path / "x", *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    bad = run_cli("train", "--workspace", ws.root, "--run", "nope", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_train_page_trains_then_compares_with_the_base_model(leaky, monkeypatch, tmp_path):
    from tests.app_helpers import copy_workspace, finish_job, open_app

    ws, _, _ = leaky
    root = tmp_path / "ws"
    copy_workspace(ws.root, root)
    for model in (root / "models").iterdir():  # models the CLI test may have trained: start from none
        shutil.rmtree(model)
    at = open_app(monkeypatch, root, "pages/train.py")
    assert any("leakage into split 'test'" in w.value for w in at.warning)
    assert any("No model trained" in i.value for i in at.info)
    at.number_input(key="tr_steps").set_value(1)
    at.number_input(key="tr_batch").set_value(4)
    at.number_input(key="tr_len").set_value(32)
    at.checkbox(key="tr_exclude").check()
    at.button(key="tr_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.button(key="tr_go").disabled, "training runs in the background, one at a time per session"
    finish_job(at, "tr_job")
    assert any("Trained 1 steps" in s.value for s in at.success)
    at.run()  # the same settings again: the estimate now reads the training just timed
    assert any("1 steps on" in c.value and "an estimate, measured: the last training with these settings" in c.value
               for c in at.caption)
    manifest = trained_models(open_workspace_at(root))[0]
    assert manifest["data"] == "curated" and manifest["leakage"]["excluded"]
    at.button(key="tr_eval").click().run()
    assert not at.exception, [e.value for e in at.exception]
    finish_job(at, "tr_eval_job")
    table = at.dataframe[0].value
    assert list(table.index)[0] == "base" and len(table) == 2
    assert {"ndcg@10", "mrr@10", "recall@100", "wins", "losses", "p (t-test)", "95% CI"} <= set(table.columns)
    assert len(at.get("plotly_chart")) == 2
    trained = list(table.index)[1]
    at.selectbox(key="tr_baseline").set_value(trained).run()  # compare against the trained model instead
    flipped = at.dataframe[0].value
    assert flipped.loc["base", "Δ ndcg@10"] == pytest.approx(-table.loc[trained, "Δ ndcg@10"])
    assert at.selectbox(key="tr_pick").options == ["base"]


def test_train_page_without_a_run(monkeypatch, tmp_path):
    from core.datasets import ingest
    from tests.app_helpers import open_app

    root = tmp_path / "ws"
    ingest(open_workspace_at(root).store(), make_beir(tmp_path / "tiny"), "tiny")
    at = open_app(monkeypatch, root, "pages/train.py")
    assert any("no mining run yet" in i.value for i in at.info)
    assert not [b for b in at.button if (b.key or "").startswith("tr_")]


def test_the_estimate_from_a_bf16_mining_run_is_in_fp32_terms(mined, tmp_path):
    """A run encoded under bf16 autocast ran its measured speed-up faster than fp32 training will: the estimate
    from its encoding speed is scaled by that speed-up, and says so; a bf16 training keeps the run's speed."""
    from core.train import TrainOptions, estimate
    from tests.app_helpers import copy_workspace

    ws, _, result = mined
    workspace = open_workspace_at(copy_workspace(ws.root, tmp_path / "ws"))
    store = workspace.store()
    training = select(store, result.run_id, "raw")
    for model in workspace.root.joinpath("models").glob("*"):  # no trained model: the estimate reads the run
        shutil.rmtree(model)

    def with_stats(**stats) -> None:
        stored = {**store.run(result.run_id)["stats"], **stats}
        store.write(lambda conn: conn.execute("UPDATE runs SET stats_json = ? WHERE run_id = ?",
                                              (json.dumps(stored), result.run_id)))

    options = TrainOptions(max_steps=5, device="cpu")
    with_stats(precision="fp32", bf16_speedup=None)
    fp32 = estimate(store, workspace, training, options)
    with_stats(precision="bf16", bf16_speedup=2.5)
    bf16 = estimate(store, workspace, training, options)
    assert bf16.seconds_per_step == pytest.approx(2.5 * fp32.seconds_per_step)
    assert "in bf16" in bf16.basis and "in fp32" in bf16.basis and "in bf16" not in fp32.basis
    same = estimate(store, workspace, training, TrainOptions(max_steps=5, device="cpu", precision="bf16"))
    assert same.seconds_per_step == pytest.approx(fp32.seconds_per_step)
    store.close()
