"""Server-side latency and server memory of the app on runs of 100k, 1M and 10M candidates.

Workspaces come from ``benchmarks/latency_workspace.py`` (200k documents, N/100 queries at depth 100, scored, every
vector in the embedding cache; built once into benchmarks/.cache/latency-<N>/). Each invocation times a fresh copy
of it (``latency-<N>-work``), so verdicts given here never reach the next run.

Timings are the real app.py under Streamlit's AppTest, each step one full script run: what the server does between
a click and its reply. Every scenario runs in its own process, so "cold" first renders start with empty Streamlit
caches as after a server start; "new session" opens the same page again in that process (a second browser on a warm
server). A page opens as its first page script, as a bookmarked URL does. A step that runs past ``--step-timeout``
ends its scenario and is reported as "> N s". Server RSS (the streamlit process and its children) is read from the
real server with 1 and then 4 headless Chromium sessions, each opening Review and Overview and waiting until the
page has settled.

    python3 benchmarks/bench_latency.py                                  # 100k, 1M and 10M → results/latency.json
    python3 benchmarks/bench_latency.py --sizes 100000 --repeats 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    RESULTS,
    ROOT,
    print_table,
    python,
    timed_process,
    write_result,
)
from benchmarks.latency_workspace import RUN_ID, disk_bytes, ensure, workspace_dir

SIZES = (100_000, 1_000_000, 10_000_000)
PAGES = {"Overview": "pages/overview.py", "Review": "pages/review.py", "Mine preview": "pages/mine.py",
         "Map": "pages/map.py", "Team": "pages/team.py"}
REVIEW_STEPS = ("Review rerun, no change", "next candidate (j)", "verdict click (f; spread in the background)",
                "next query (n)")
SPREAD = "spreading the verdict to near-duplicates (background job)"
RERULE_KS = (4, 6, 3, 7, 2, 8, 9, 10, 11, 12)  # a new k each time: every preview is computed, none from the cache
TRIAGE_OPEN, TRIAGE_NEXT, RERULE = "triage queue opened", "triage next (n)", "re-rule preview (a new k each time)"
WRITE = "verdict write (core.labels.record)"
MAP_PLACED = "run's map placed (PCA fit on a sample, the rest transformed; background job)"
MAP_WHOLE = ("Map whole dataset, first", "Map whole dataset rerun", "Map whole dataset by risk, first",
             "Map whole dataset by risk, rerun")
LARGE = 10_000_000  # from this size on, interactions repeat half as often (each costs seconds if a page is slow)


# -- worker: one scenario in its own process -----------------------------------------------------------------------
class Steps:
    """Times steps and appends each result to a JSON-lines file at once; a step past ``limit`` seconds is written
    as a timeout and ends the process, so the parent still has everything measured before it."""

    def __init__(self, path: Path, limit: float):
        self.out, self.limit = path.open("a", encoding="utf-8"), limit
        self.current: tuple[str, float] | None = None
        threading.Thread(target=self._watch, daemon=True).start()

    def _emit(self, event: dict) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def _watch(self) -> None:
        while True:
            time.sleep(0.2)
            current = self.current
            if current is not None and time.monotonic() > current[1]:
                self._emit({"timeout": current[0], "limit_s": self.limit})
                os._exit(3)

    def time(self, name: str, action: Callable[[], object]) -> None:
        self.current = (name, time.monotonic() + self.limit)
        started = time.perf_counter()
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - reported as the step's result; the scenario cannot go on
            self._emit({"error": name, "message": f"{type(exc).__name__}: {exc}"[:300]})
            os._exit(2)
        self.current = None
        self._emit({"step": name, "ms": (time.perf_counter() - started) * 1000})

    def record(self, name: str, ms: float) -> None:
        """A duration measured elsewhere (a background job's own clock)."""
        self._emit({"step": name, "ms": ms})


def open_on(mp, root: Path, page: str, annotator: str, limit: float):
    """An AppTest session whose first page script is ``page`` (as a bookmarked URL; ``open_app`` would render
    Overview first): opened behind the password gate, which runs no page, then the gate is lifted. Not yet run."""
    from tests.app_helpers import open_app

    at = open_app(mp, root, password="latency", annotator=annotator)
    mp.delenv("NEGSPACE_PASSWORD")
    at.switch_page(page)
    at.default_timeout = limit + 60  # the Steps watchdog, not AppTest, ends a slow step
    return at


def worker(scenario: str, root: Path, repeats: int, steps: Steps) -> None:
    import pytest

    from tests.app_helpers import timed

    mp = pytest.MonkeyPatch()
    if scenario in PAGES:
        at = open_on(mp, root, PAGES[scenario], "reviewer", steps.limit)
        steps.time(f"{scenario} first render, cold", lambda: timed(at))
        again = open_on(mp, root, PAGES[scenario], "reviewer", steps.limit)
        steps.time(f"{scenario} first render, new session", lambda: timed(again))
        if scenario == "Mine preview":
            for i in range(repeats):
                at.number_input(key="mine_num_negatives").set_value(RERULE_KS[i % len(RERULE_KS)])
                steps.time(RERULE, lambda: timed(at))
    elif scenario == "review":
        at = open_on(mp, root, PAGES["Review"], "reviewer", steps.limit)
        steps.time("Review opened, cold (before the interactions)", lambda: timed(at))
        for _ in range(repeats):
            steps.time(REVIEW_STEPS[0], lambda: timed(at))
            at.button(key="ns_next_cand").click()
            steps.time(REVIEW_STEPS[1], lambda: timed(at))
            at.button(key="ns_false_negative").click()
            steps.time(REVIEW_STEPS[2], lambda: timed(at))
            spreading = at.session_state["ns_spreading"][-1]  # finished before the next key, as a person's pace allows
            if spreading.wait(steps.limit) and spreading.error is None:
                steps.record(SPREAD, spreading.seconds * 1000)
            at.button(key="ns_next_query").click()
            steps.time(REVIEW_STEPS[3], lambda: timed(at))
        _time_writes(root, steps)
    elif scenario == "map":
        mp.setenv("NEGSPACE_UMAP", "0")  # PCA only: no UMAP fit competing for the two cores while timing
        at = open_on(mp, root, PAGES["Map"], "reviewer", steps.limit)
        steps.time("Map opened, cold (before the whole-dataset view)", lambda: timed(at))
        steps.time(MAP_PLACED, lambda: _wait_for_map(root, steps.limit))
        at.session_state["map_view"] = "Whole dataset"
        steps.time(MAP_WHOLE[0], lambda: timed(at))
        for _ in range(repeats):
            steps.time(MAP_WHOLE[1], lambda: timed(at))
        at.session_state["map_colour"] = "risk"
        steps.time(MAP_WHOLE[2], lambda: timed(at))
        for _ in range(repeats):
            steps.time(MAP_WHOLE[3], lambda: timed(at))
    elif scenario == "triage":
        at = open_on(mp, root, PAGES["Review"], "triager", steps.limit)
        steps.time("Review opened, cold (before triage)", lambda: timed(at))
        at.session_state["ns_mode"] = "Triage queue"
        steps.time(TRIAGE_OPEN, lambda: timed(at))
        for _ in range(repeats):
            at.button(key="ns_next_query").click()
            steps.time(TRIAGE_NEXT, lambda: timed(at))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    mp.undo()


def _wait_for_map(root: Path, limit: float) -> None:
    """Until the run's PCA map is placed in full (its job was started by the Map page that just opened)."""
    from core.projection import map_state
    from core.workspace import open_workspace

    workspace = open_workspace(root, create=False)
    store = workspace.store()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = map_state(store, workspace, RUN_ID, umap=False)
        if state.frame is not None and state.complete:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the run's map was not placed in {limit:g} s")


def _time_writes(root: Path, steps: Steps, n: int = 500) -> None:
    """Verdict writes alone, on the candidates of the run's last query (which the timed review never reaches)."""
    from core import labels
    from core.workspace import open_workspace

    store = open_workspace(root, create=False).store()
    run = store.run(RUN_ID)
    last = store.candidates(RUN_ID, with_signals=False, with_risk=False)["query_id"].iloc[-1]
    docs = store.candidates(RUN_ID, last, with_signals=False)["doc_id"].tolist()
    kinds = ("true_negative", "unsure", "false_negative")
    for i in range(n):
        steps.time(WRITE, lambda i=i: labels.record(store, run["dataset"], last, docs[i % len(docs)],
                                                    f"writer{i % 7}", kinds[i % 3]))


# -- parent: workspaces, scenarios, server memory, table -----------------------------------------------------------
def fresh_copy(size: int) -> Path:
    """A private copy of the built workspace; its risk is restamped with today's signal set when the registered
    signals changed since the build (the app would otherwise rescore 10M candidates on opening)."""
    from core.risk import signal_set
    from core.workspace import open_workspace

    source, work = workspace_dir(size), workspace_dir(size).with_name(f"latency-{size}-work")
    open_workspace(source, create=False).store().close()  # schema migrations run here, once, untimed
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)
    store = open_workspace(work, create=False).store()
    if store.risk_missing(RUN_ID, signal_set()):
        print(f"  signal set changed since the build: risk restamped as {signal_set()} (values kept)", flush=True)
        store.set_risk(RUN_ID, [], signal_set())
    store.close()
    return work


def scenario(name: str, root: Path, repeats: int, limit: float) -> list[dict]:
    """Run one scenario in a child process; its events, with a crash of the child reported on its last step."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as fh:
        events_path = Path(fh.name)
    proc = timed_process([python(), __file__, "--worker", name, "--workspace", str(root), "--repeats", str(repeats),
                          "--step-timeout", str(limit), "--events", str(events_path)],
                         env={"PYTHONPATH": str(ROOT)}, check=False, timeout=limit * (4 * repeats + 20))
    events = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines() if line]
    events_path.unlink()
    if proc["returncode"] not in (0, 2, 3):
        events.append({"error": name, "message": f"worker exited {proc['returncode']}: {proc['stderr'][-300:]}"})
    return events


def summarise(events: list[dict]) -> dict[str, dict]:
    """Per step: p50 / p95 / max in ms and n, or what stopped it (a timeout, an error)."""
    samples: dict[str, list[float]] = {}
    stopped: dict[str, str] = {}
    for e in events:
        if "step" in e:
            samples.setdefault(e["step"], []).append(e["ms"])
        elif "timeout" in e:
            stopped[e["timeout"]] = f"> {e['limit_s']:g} s"
        elif "error" in e:
            stopped[e["error"]] = "error: " + e["message"]
    out = {step: {"p50_ms": round(float(np.percentile(v, 50)), 1), "p95_ms": round(float(np.percentile(v, 95)), 1),
                  "max_ms": round(max(v), 1), "n": len(v)} for step, v in samples.items()}
    for step, why in stopped.items():
        out.setdefault(step, {})["stopped"] = why
    return out


def server_rss(root: Path, settle_timeout: float) -> dict:
    """RSS of the real server (with its children) idle, with 1 and with 4 Chromium sessions that each open Review and
    Overview (in either order) and wait until the page has settled; peak sampled every 0.2 s throughout."""
    import psutil
    from playwright.sync_api import sync_playwright

    from tests.app_helpers import CHROMIUM, CHROMIUM_ARGS, streamlit_server

    def rss(proc: psutil.Process) -> float:
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    result: dict = {"settle_s": {}}
    with tempfile.TemporaryDirectory() as tmp, \
            streamlit_server({"NEGSPACE_WORKSPACE": str(root)}, Path(tmp) / "streamlit.log") as url:
        server = next(p for p in psutil.Process().children(recursive=True)
                      if "streamlit" in " ".join(p.cmdline()) and "run" in p.cmdline())
        peak, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], rss(server))

        threading.Thread(target=sample, daemon=True).start()
        result["idle_mib"] = round(rss(server))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, "--headless"])
            try:
                for i in range(4):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    order = ("review", "Overview") if i % 2 == 0 else ("", "Review")
                    started = time.perf_counter()
                    page.goto(f"{url}/{order[0]}?annotator=rss{i}")
                    first = settle(page, settle_timeout, started)
                    result["settle_s"][f"session {i + 1}: {order[0] or 'overview'}"] = first
                    if isinstance(first, str):  # a page that never settles: more sessions would only queue
                        result["stopped_mib"] = round(rss(server))
                        break
                    started = time.perf_counter()
                    page.locator('[data-testid="stSidebarNav"] a', has_text=order[1]).first.click()
                    result["settle_s"][f"session {i + 1}: {order[1].lower()}"] = settle(page, settle_timeout,
                                                                                       started)
                    result["one_session_mib" if i == 0 else "four_sessions_mib"] = round(rss(server))
            finally:
                browser.close()
        done.set()
        result["peak_mib"] = round(max(peak[0], rss(server)))
    return result


def settle(page, timeout: float, started: float) -> float | str:
    """Seconds until the app has finished its script run and stayed idle for a second ("> N s" past ``timeout``)."""
    idle_since = None
    while time.perf_counter() - started < timeout:
        state = page.locator('[data-testid="stApp"]').first.get_attribute("data-test-script-state")
        if state == "notRunning":
            idle_since = idle_since or time.perf_counter()
            if time.perf_counter() - idle_since >= 1.0:
                return round(idle_since - started, 2)
        else:
            idle_since = None
        time.sleep(0.1)
    return f"> {timeout:g} s"


def commit() -> str:
    """The commit measured, with "+ uncommitted" when the app's code differs from it in the working tree."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "core", "pages", "app.py"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    return head.strip() + (" + uncommitted changes in core/pages" if dirty else "")


def cell(step: dict | None) -> str:
    if not step:
        return "not reached"
    if "stopped" in step:
        return step["stopped"]
    def ms(value: float) -> str:
        return f"{value:,.1f}" if value < 10 else f"{value:,.0f}"

    if step["n"] == 1:
        return ms(step["p50_ms"])
    return f"{ms(step['p50_ms'])} / {ms(step['p95_ms'])} (n={step['n']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="candidates per run")
    parser.add_argument("--repeats", type=int, default=40, help=f"per interaction (half from {LARGE:,} on)")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds one step may take")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="seconds a browser page may take")
    parser.add_argument("--no-browser", action="store_true", help="skip the server RSS part")
    parser.add_argument("--markdown", action="store_true", help="only print results/latency.json as markdown")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.workspace, args.repeats, Steps(args.events, args.step_timeout))
        return

    previous = RESULTS / "latency.json"
    sizes = json.loads(previous.read_text()).get("sizes", {}) if previous.exists() else {}  # merged per size
    if args.markdown:
        report(sizes, markdown=True)
        return
    measured = commit()
    for size in args.sizes:
        print(f"== {size:,} candidates", flush=True)
        build = ensure(size)
        work = fresh_copy(size)
        repeats = args.repeats if size < LARGE else max(1, args.repeats // 2)
        steps: dict[str, dict] = {}
        for name in [*PAGES, "review", "triage", "map"]:
            started = time.perf_counter()
            found = summarise(scenario(name, work, repeats if name != "Mine preview" else min(repeats, 10),
                                       args.step_timeout))
            steps.update(found)
            stopped = {s: v["stopped"] for s, v in found.items() if "stopped" in v}
            print(f"  {name}: {time.perf_counter() - started:.0f} s {stopped or ''}", flush=True)
        rss = {} if args.no_browser else server_rss(work, args.settle_timeout)
        sizes[str(size)] = {"commit": measured, "repeats": repeats, "build": build,
                            "disk_mib": round(disk_bytes(workspace_dir(size)) / 2**20), "steps": steps,
                            "server_rss": rss}
        shutil.rmtree(work, ignore_errors=True)
        write_result("latency", {"sizes": sizes, "step_timeout_s": args.step_timeout,
                                 "targets": {"interaction_p95_ms": 300, "first_render_s": 3, "rss_4_sessions_gb": 3}})
    report(sizes)


def report(sizes: dict, markdown: bool = False) -> None:
    """One row per step and per memory reading, one column per size (p50 / p95 ms, or ms for a single render);
    ``markdown`` prints it as the table in docs/BENCHMARKS.md."""
    names = sorted(sizes, key=int)
    steps = list(dict.fromkeys(s for size in names for s in sizes[size]["steps"]))
    rows = [{"step": s, **{f"{int(n):,}": cell(sizes[n]["steps"].get(s)) for n in names}} for s in steps]
    for key in ("idle_mib", "one_session_mib", "four_sessions_mib", "peak_mib", "stopped_mib"):
        if not any(key in sizes[n]["server_rss"] for n in names):
            continue
        rows.append({"step": f"server RSS MiB, {key.removesuffix('_mib').replace('_', ' ')}",
                     **{f"{int(n):,}": sizes[n]["server_rss"].get(key, "") for n in names}})
    rows.append({"step": "build s / disk MiB",
                 **{f"{int(n):,}": f"{sizes[n]['build']['build_seconds']:,.0f} / {sizes[n]['disk_mib']:,}"
                    for n in names}})
    columns = ["step", *[f"{int(n):,}" for n in names]]
    if markdown:
        print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
        return
    print_table(rows, columns)
    for n in names:
        print(f"{int(n):,}: commit {sizes[n]['commit']}; browser settle s: {sizes[n]['server_rss'].get('settle_s')}")


if __name__ == "__main__":
    main()
