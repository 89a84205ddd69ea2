"""Devices and precision: what ``--device`` and ``--precision`` resolve to, and the one-line refusals.

GPUs are simulated by setting what torch reports (``torch.cuda.is_available`` and friends); everything else is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from core import devices, encoders
from core.errors import UserError
from core.vectors import run_encoder
from tests.cli_helpers import ROOT


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(devices, "_gpu_possible", lambda: True)  # torch is asked, and says no
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(devices, "_gpu_possible", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_auto_is_cpu_here_and_decided_without_torch_where_no_gpu_can_exist():
    code = ("import json, sys; from core import devices; "
            "print(json.dumps([devices.resolve_device('auto'), devices.available_devices(), "
            "devices._gpu_possible(), 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    device, choices, gpu_possible, imported_torch = json.loads(done.stdout)
    if sys.platform != "darwin":
        assert device == "cpu" and choices == ["auto", "cpu"]
    assert imported_torch == gpu_possible  # torch is imported only where a GPU could be there to ask about


def test_cpu_and_refusals_without_a_gpu(no_gpu):
    assert devices.resolve_device("cpu") == devices.resolve_device("auto") == "cpu"
    assert devices.available_devices() == ["auto", "cpu"]
    for name, needle in (("cuda", "--device cuda: no CUDA device is visible to torch"),
                         ("cuda:0", "--device cuda:0: no CUDA device is visible to torch"),
                         ("mps", "--device mps: MPS is not available to torch"),
                         ("tpu", "--device tpu: unknown device (use auto, cpu, cuda, cuda:N or mps)"),
                         ("cuda:x", "--device cuda:x: unknown device"), ("", "--device : unknown device")):
        with pytest.raises(UserError) as exc:
            devices.resolve_device(name)
        assert one_line(exc).startswith(needle)


def test_cuda_devices_are_counted_and_plain_cuda_means_all_of_them(two_gpus):
    assert devices.resolve_device("auto") == devices.resolve_device("cuda") == "cuda"
    assert devices.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(UserError) as exc:
        devices.resolve_device("cuda:3")
    assert one_line(exc) == "--device cuda:3: only 2 CUDA devices (cuda:0..cuda:1)"
    assert devices.available_devices() == ["auto", "cpu", "cuda:0", "cuda:1"]
    assert devices.pool_devices("cuda") == ["cuda:0", "cuda:1"]
    assert devices.pool_devices("cuda:1") is None and devices.pool_devices("cpu") is None


def test_precision_follows_the_device(monkeypatch):
    def never() -> bool:
        raise AssertionError("the CPU measurement is only asked for on CPU under auto")

    assert devices.choose_precision("auto", "cpu", lambda: True) == "bf16"
    assert devices.choose_precision("auto", "cpu", lambda: False) == "fp32"
    assert devices.choose_precision("fp32", "cpu", never) == "fp32"
    assert devices.choose_precision("bf16", "cpu", never) == "bf16"
    assert devices.choose_precision("auto", "mps", never) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.choose_precision("auto", "cuda:1", never) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.choose_precision("auto", "cuda", never) == "fp16"
    assert devices.choose_precision("fp16", "cuda", never) == "fp16"
    with pytest.raises(UserError) as exc:
        devices.choose_precision("bf16", "cuda:0", never)
    assert one_line(exc).startswith("--precision bf16: cuda:0 does not support bf16")
    with pytest.raises(UserError) as exc:
        devices.choose_precision("fp16", "cpu", never)
    assert one_line(exc).startswith("--precision fp16: fp16 needs a GPU")
    with pytest.raises(UserError) as exc:
        devices.choose_precision("int8", "cpu", never)
    assert one_line(exc) == "--precision int8: unknown precision (use auto, fp32, bf16, fp16)"


def test_autocast_takes_the_device_type():
    with devices.autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with devices.autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that CUDA is absent here, and disables it
        cuda = devices.autocast("cuda:1", "fp16")
    assert (cuda.device, cuda.fast_dtype) == ("cuda", torch.float16)


def test_load_encoder_refuses_fp16_on_cpu_before_reading_the_model(tmp_path):
    with pytest.raises(UserError) as exc:
        encoders.load_encoder(tmp_path / "no-such-model", precision="fp16", device="cpu")
    assert one_line(exc).startswith("--precision fp16: fp16 needs a GPU")


def test_a_run_encoded_in_fp16_is_not_continued_on_cpu(workspace):
    run = {"run_id": "r1", "params": {}, "stats": {"precision": "fp16", "device": "cuda"}}
    with pytest.raises(UserError) as exc:
        run_encoder(workspace, run, device="cpu")
    assert one_line(exc) == "run r1: its vectors are fp16 (mined on cuda), which cpu cannot encode; " \
                            "use --device cuda or mps"


@pytest.mark.slow  # a spawned worker imports torch and sentence-transformers afresh
def test_a_pool_encodes_like_one_process_and_stops(monkeypatch, spawn, static_model, tmp_path):
    """The multi-GPU path with a CPU worker in the GPUs' place: the same vectors as in-process, the worker stopped
    by close()."""
    texts = ["heat conduction in composite slabs", "os.path.join joins path components", "x" * 300]
    expected = encoders.load_encoder(static_model, precision="fp32", device="cpu").encode(texts)
    monkeypatch.setattr(encoders, "pool_devices", lambda device: ["cpu"])
    pooled = encoders.load_encoder(static_model, cache_dir=tmp_path, precision="fp32", device="cpu")
    got = pooled.encode(texts)
    _, pool, stop = pooled._pools["fp32"]
    assert pooled.stats.encoded == 3 and len(pool["processes"]) == 1 and stop.alive
    pooled.close()
    assert not stop.alive and not pooled._pools
    np.testing.assert_allclose(got, expected, atol=1e-5)
