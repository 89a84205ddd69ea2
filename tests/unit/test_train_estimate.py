"""The Train page's estimate: rows and steps as the trainer will count them, seconds per step only from a timing
made on the same device (a past training with the same settings first, else the mining run's encoding speed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from core.selection import Example
from core.train import MANIFEST, TrainOptions, estimate

EXAMPLES = [Example("q1", ["p1"], ["n1", "n2", "n3"]), Example("q2", ["p2", "p3"], ["n4"]), Example("q3", ["p4"], [])]


class Runs:
    def __init__(self, runs: list[dict]):
        self._runs = runs

    def runs(self, dataset: str) -> list[dict]:
        return self._runs


def setup(tmp_path, runs: list[dict]):
    training = SimpleNamespace(examples=EXAMPLES, run={"dataset": "tiny"})
    return Runs(runs), SimpleNamespace(models_dir=tmp_path / "models"), training


MINED = {"run_id": "r1", "stats": {"device": "cpu", "encoded": 1000, "encode_seconds": 10.0}}


def test_rows_and_steps_as_the_trainer_counts_them(tmp_path):
    store, ws, training = setup(tmp_path, [MINED])
    triplets = estimate(store, ws, training, TrainOptions(batch_size=2, epochs=2.0, device="cpu"))
    assert (triplets.rows, triplets.steps) == (3 + 2 + 1, 6)  # q3 gets one random negative; 3 batches × 2 epochs
    ntuples = estimate(store, ws, training, TrainOptions(row_layout="ntuple", batch_size=2, device="cpu"))
    assert (ntuples.rows, ntuples.steps) == (4, 2)
    capped = estimate(store, ws, training, TrainOptions(batch_size=2, max_steps=50, device="cpu"))
    assert capped.steps == 50
    # 0.01 s per text × 2 rows × (query, positive, negative) × 3 passes (forward + backward)
    assert triplets.seconds_per_step == pytest.approx(0.01 * 2 * 3 * 3) and "an estimate" in triplets.describe()


def test_a_past_training_with_the_same_settings_is_the_measure(tmp_path):
    store, ws, training = setup(tmp_path, [MINED])
    options = TrainOptions(batch_size=2, device="cpu")
    folder = tmp_path / "models" / "m1"
    folder.mkdir(parents=True)
    manifest = {"device": "cpu", "steps": 10, "seconds": 25.0, "finished": "2026-01-01T10:00:00+00:00",
                "loss": "mnrl", "row_layout": "triplet", "batch_size": 2, "max_seq_length": None}
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    found = estimate(store, ws, training, options)
    assert found.seconds_per_step == 2.5 and found.basis.startswith("measured")
    other = estimate(store, ws, training, TrainOptions(batch_size=4, device="cpu"))
    assert other.basis.startswith("from the encoding speed")


def test_no_timing_on_the_device_means_no_time(tmp_path):
    store, ws, training = setup(tmp_path, [{**MINED, "stats": {**MINED["stats"], "device": "cuda"}}, {"run_id": "r2"}])
    found = estimate(store, ws, training, TrainOptions(device="cpu"))
    assert found.seconds is None and "no time estimate" in found.describe()
