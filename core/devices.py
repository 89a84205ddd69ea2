"""Which device a model runs on and in which precision: the one place that knows devices.

``auto`` is CUDA, then MPS, then CPU. Deciding must stay cheap: a warm re-run whose vectors are all cached never
imports torch, so ``auto`` answers "cpu" without torch wherever no GPU can exist (no ``/dev/nvidia*`` device files
and not macOS on arm64). Precision follows the device: bf16 on CUDA where the card supports it (else fp16), fp16
on MPS, and on CPU bf16 only where a measurement shows it agrees with fp32 and is faster (the caller measures).
"""

from __future__ import annotations

import glob
import platform
import re
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

from core.errors import UserError

DEVICE_HELP = "auto|cpu|cuda|cuda:N|mps (auto: CUDA, then MPS, then CPU)"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = ("auto|fp32|bf16|fp16 (auto: bf16 on CUDA where supported, else fp16; fp16 on MPS; on CPU bf16 "
                  "when it keeps cosine ≥ 0.999 to fp32 and is faster here; fp16 needs a GPU)")
_CUDA = re.compile(r"cuda(?::(\d+))?")


def _gpu_possible() -> bool:
    """Whether torch could see a GPU here at all, answered without importing torch."""
    return bool(glob.glob("/dev/nvidia*")) or (sys.platform == "darwin" and platform.machine() == "arm64")


def _mps_available() -> bool:
    import torch

    return bool(torch.backends.mps.is_available())


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: str = "auto") -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as the device to use: ``cpu``, ``cuda`` (every visible
    CUDA device), ``cuda:N`` or ``mps``. A device torch cannot see, or a name it does not know, is a one-line
    UserError."""
    if name == "cpu":
        return "cpu"
    if name == "auto":
        if not _gpu_possible():
            return "cpu"
        return "cuda" if _cuda_count() else "mps" if _mps_available() else "cpu"
    if match := _CUDA.fullmatch(name):
        count = _cuda_count()
        if not count:
            raise UserError(f"--device {name}: no CUDA device is visible to torch (torch.cuda.is_available() is "
                            f"False); use --device cpu or auto")
        if match.group(1) is None:
            return "cuda"
        index = int(match.group(1))
        if index >= count:
            devices = "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"
            raise UserError(f"--device {name}: only {count} CUDA device{'s' if count > 1 else ''} ({devices})")
        return f"cuda:{index}"
    if name == "mps":
        if not _mps_available():
            raise UserError("--device mps: MPS is not available to torch (torch.backends.mps.is_available() is "
                            "False); use --device cpu or auto")
        return "mps"
    raise UserError(f"--device {name}: unknown device (use auto, cpu, cuda, cuda:N or mps)")


def available_devices() -> list[str]:
    """What a user can pick here: auto first, then cpu, each visible cuda:N, then mps."""
    if not _gpu_possible():
        return ["auto", "cpu"]
    return ["auto", "cpu", *(f"cuda:{i}" for i in range(_cuda_count())), *(["mps"] if _mps_available() else [])]


def device_type(device: str) -> str:
    """torch's device type of a resolved device (``cuda:1`` → ``cuda``), what autocast needs."""
    return device.split(":", 1)[0]


def pool_devices(device: str) -> list[str] | None:
    """Every visible CUDA device when ``device`` is plain ``cuda`` and there are several (one encoding process
    each); None when one process on one device does the work."""
    if device != "cuda":
        return None
    count = _cuda_count()
    return [f"cuda:{i}" for i in range(count)] if count > 1 else None


def check_precision(requested: str, device: str) -> None:
    """Refuse a precision that does not exist, or fp16 on CPU, before any model is read."""
    if requested not in PRECISIONS:
        raise UserError(f"--precision {requested}: unknown precision (use {', '.join(PRECISIONS)})")
    if requested == "fp16" and device_type(device) == "cpu":
        raise UserError("--precision fp16: fp16 needs a GPU (--device cuda or mps); on cpu use auto, bf16 or fp32")


def choose_precision(requested: str, device: str, cpu_bf16_pays: Callable[[], bool]) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a resolved ``device``; ``auto`` follows the device (see the module doc),
    asking ``cpu_bf16_pays`` (a measurement) only on CPU. Precisions the device cannot run are refused."""
    check_precision(requested, device)
    kind = device_type(device)
    if kind == "cuda" and requested in ("auto", "bf16"):
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16"
        if requested == "bf16":
            raise UserError(f"--precision bf16: {device} does not support bf16; use fp16, fp32 or auto")
        return "fp16"
    if requested != "auto":
        return requested
    if kind == "mps":
        return "fp16"
    return "bf16" if cpu_bf16_pays() else "fp32"


def autocast(device: str, precision: str) -> AbstractContextManager:
    """torch autocast on ``device``'s type in ``precision`` (off for fp32)."""
    import torch

    return torch.autocast(device_type(device), dtype=torch_dtype(precision), enabled=precision != "fp32")


def torch_dtype(precision: str):
    """The torch dtype whose weights compute in ``precision`` (a process that cannot inherit autocast)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
