"""Shared helpers for benchmark scripts: timed subprocesses with peak memory, result files, tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"


def timed_process(cmd: list[str], env: dict[str, str | None] | None = None, cwd: Path = ROOT,
                  timeout: float | None = None, check: bool = True) -> dict:
    """Run a command; return its wall seconds, its own peak RSS (MiB, from wait4), exit code and output.

    ``env`` overrides the inherited environment (None unsets a variable). After ``timeout`` seconds the process is
    killed and ``timed_out`` is set. With ``check`` any failure raises; without it the caller reports the exit code.
    """
    import tempfile
    import threading

    env = {**os.environ, **(env or {})}
    finished, killed = threading.Event(), threading.Event()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env={k: v for k, v in env.items() if v is not None}, stdout=out,
                                stderr=err, text=True)

        def kill_when_late() -> None:
            if not finished.wait(timeout):
                killed.set()
                proc.kill()

        if timeout is not None:
            threading.Thread(target=kill_when_late, daemon=True).start()
        _, status, usage = os.wait4(proc.pid, 0)
        finished.set()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if check and proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}): {stderr[-2000:]}")
    return {"seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "stdout": stdout,
            "stderr": stderr, "returncode": proc.returncode, "timed_out": killed.is_set()}


def machine() -> dict:
    """Where a result was measured; bf16 instructions decide whether bf16 encoding pays off (see BENCHMARKS.md)."""
    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "cpu": cpu, "bf16_instructions": sorted(flags & {"avx512_bf16", "amx_bf16"})}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def python() -> str:
    return sys.executable
