"""Risk scoring time at 100k and 1M candidates: the vectorised core.risk against the per-query loop it replaced.

Data: a 100,000-document scale corpus (benchmarks/scale_corpus.py, 10,000 queries) mined with the static MiniLM
(benchmarks/static_model.py) at depth 10 and depth 100, i.e. 100k and 1M candidates; built on first use under
benchmarks/.cache/. Each measurement runs in a fresh process (its peak RSS is its own) and times
``signal_frame`` and the whole ``compute_risk`` (signals, model, writing risk and signals to the store); every
vector comes from the embedding cache, as on a run's first review. The old code is core/risk.py as of
``OLD_REF``, imported from git; at 1M it is stopped after ``--old-limit`` seconds.

    python3 benchmarks/bench_risk_scale.py          # writes benchmarks/results/risk_scale.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, print_table, python, timed_process, write_result  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
WORKSPACE = CACHE / "ws-risk-scale"
CORPUS = CACHE / "scale-100000-s0"
MODEL = CACHE / "static-minilm"
DEPTHS = {100_000: 10, 1_000_000: 100}  # candidates → mining depth over 10,000 queries
OLD_REF = "9e98758"  # the last commit with the per-query loop in core/risk.py


def cli(*args: str) -> str:
    return subprocess.run([python(), "-m", "core", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def prepare() -> dict[int, str]:
    """Run id per candidate count, building corpus, model, workspace and runs when missing."""
    if not (MODEL / "modules.json").exists():
        subprocess.run([python(), str(ROOT / "benchmarks" / "static_model.py")], check=True)
    if not (CORPUS / "corpus.jsonl").exists():
        subprocess.run([python(), str(ROOT / "benchmarks" / "scale_corpus.py"), "100000", "--queries", "10000",
                        "--out", str(CORPUS)], check=True)
    if not (WORKSPACE / "negspace.sqlite").exists():
        cli("ingest", str(CORPUS), "--workspace", str(WORKSPACE), "--name", "scale")
    from core.workspace import open_workspace

    runs = {}
    for run in open_workspace(WORKSPACE).store().runs():
        runs.setdefault(run["params"].get("depth"), run["run_id"])
    for depth in DEPTHS.values():
        if depth not in runs:
            out = cli("mine", "--workspace", str(WORKSPACE), "--dataset", "scale", "--model", str(MODEL),
                      "--depth", str(depth), "--json")
            runs[depth] = json.loads(out)["run"]
    return {n: runs[depth] for n, depth in DEPTHS.items()}


def load_old():
    """core/risk.py as of OLD_REF, as a module of its own."""
    import importlib.util

    path = CACHE / f"risk-{OLD_REF}.py"
    path.write_text(subprocess.run(["git", "show", f"{OLD_REF}:core/risk.py"], cwd=ROOT, check=True,
                                   capture_output=True, text=True).stdout, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_risk", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_risk"] = module
    spec.loader.exec_module(module)
    return module


def child(code: str, run_id: str) -> None:
    """Time signal_frame, then compute_risk, of one run with the old or new code; print JSON."""
    from core import risk
    from core.workspace import open_workspace

    module = load_old() if code == "old" else risk
    ws = open_workspace(WORKSPACE)
    store = ws.store()
    import sklearn.feature_extraction.text  # noqa: F401  (import time is not scoring time)

    started = time.perf_counter()
    frame = module.signal_frame(store, ws, run_id)
    signals_s = time.perf_counter() - started
    started = time.perf_counter()
    module.compute_risk(store, ws, run_id)
    print(json.dumps({"candidates": len(frame), "signals_s": round(signals_s, 1),
                      "compute_risk_s": round(time.perf_counter() - started, 1)}))


def measure(code: str, run_id: str, limit: float | None) -> dict:
    cmd = [python(), str(Path(__file__).resolve()), "--child", code, run_id]
    if limit is not None:
        cmd = ["timeout", str(int(limit)), *cmd]
    try:
        done = timed_process(cmd)
    except RuntimeError as exc:
        if "(124)" in str(exc):
            return {"code": code, "stopped_after_s": int(limit)}
        raise
    return {"code": code, **json.loads(done["stdout"].strip().splitlines()[-1]), "peak_rss_mib": done["peak_rss_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("CODE", "RUN"), help=argparse.SUPPRESS)
    parser.add_argument("--old-limit", type=float, default=600, help="stop the old code after this many seconds")
    parser.add_argument("--skip-old", action="store_true", help="time only the current code")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    runs = prepare()
    rows = []
    for n, run_id in runs.items():
        for code in ["new"] if args.skip_old else ["new", "old"]:
            row = {"target": n, "run": run_id, **measure(code, run_id, args.old_limit if code == "old" else None)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print_table(rows, ["target", "code", "candidates", "signals_s", "compute_risk_s", "peak_rss_mib",
                       "stopped_after_s"])
    path = write_result("risk_scale", {"model": "static-minilm (benchmarks/static_model.py)",
                                       "corpus": "scale_corpus.py 100000 --queries 10000 --seed 0",
                                       "old_ref": OLD_REF, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
