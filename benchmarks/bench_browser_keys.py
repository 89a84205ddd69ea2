"""What an annotator feels on Review: key press → page updated, in headless Chromium against the real server.

Server-side timings (bench_latency.py) leave out the browser: the websocket round trip, Streamlit's rerun of the
page and its redraw. Here a real ``streamlit run app.py`` serves the demo workspace and a 100k-candidate run
(benchmarks/.cache/latency-100000, built by latency_workspace.py; a fresh copy per invocation), and Chromium types
at it at an annotator's pace: each key is measured in the page itself from its ``keydown`` (performance.now, in a
capturing listener) until

* **row updated**: the candidate list shows the key's effect (verdict in the row, cursor moved, next query's rows);
* **stored**: for a verdict, the server has applied it (the row's pending mark "…" is gone);
* **settled**: the page's script run has ended (``data-test-script-state`` back to notRunning).

Keys per query: ``f t f`` (a verdict each, the cursor moving down), ``k`` (back one row), then ``n``.

    python3 benchmarks/bench_browser_keys.py                 # demo and 100k → results/browser_keys.json
    python3 benchmarks/bench_browser_keys.py --queries 5
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, print_table, write_result  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
VERDICT = {"f": "false negative", "t": "true negative", "u": "unsure"}

INSTALL = """() => {
  window.__nsKey = null;
  window.addEventListener("keydown", (e) => { window.__nsKey = performance.now(); }, true);
}"""
ROWS = """() => {
  // the list is a custom component: its rows may live in a shadow root (Playwright's locators pierce it)
  const find = () => document.querySelector(".ns-list") || Array.from(document.querySelectorAll("*"))
    .map((el) => el.shadowRoot && el.shadowRoot.querySelector(".ns-list")).find(Boolean);
  if (!window.__nsList || !window.__nsList.isConnected) window.__nsList = find();
  const list = window.__nsList;
  return list ? Array.from(list.querySelectorAll("tr[data-doc]")).map((tr) => [
    tr.dataset.doc, tr.className, (tr.children[2] || {}).textContent || ""]) : [];
}"""
SETTLED = """() => document.querySelector('[data-testid="stApp"]')?.getAttribute("data-test-script-state")"""


def _since_key(page, predicate: str, arg, timeout_ms: float) -> float:
    """Milliseconds from the last keydown until ``predicate(rows, arg)`` holds, polled every animation frame."""
    handle = page.wait_for_function(
        f"""([arg]) => {{
          const rows = ({ROWS})();
          return ({predicate})(rows, arg) ? performance.now() - window.__nsKey : false;
        }}""", arg=[arg], polling="raf", timeout=timeout_ms)
    return float(handle.json_value())


def _settle(page, timeout_s: float) -> float:
    """Seconds until the script run ended and stayed ended for 300 ms."""
    started, idle = time.perf_counter(), None
    while time.perf_counter() - started < timeout_s:
        if page.evaluate(SETTLED) == "notRunning":
            idle = idle or time.perf_counter()
            if time.perf_counter() - idle >= 0.3:
                return idle - started
        else:
            idle = None
        time.sleep(0.02)
    return float("nan")


def measure(url: str, queries: int, timeout_s: float) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    from tests.app_helpers import CHROMIUM, CHROMIUM_ARGS

    out: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        out.setdefault(name, []).append(value)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/review?annotator=bench")
        page.locator(".ns-list tr[data-doc]").first.wait_for(timeout=timeout_s * 1000)
        page.get_by_role("heading", name="Review").click()
        _settle(page, timeout_s)
        page.evaluate(INSTALL)
        for _ in range(queries):
            for key in "ftf":
                page.locator(".ns-list tr[data-doc]").first.wait_for(timeout=timeout_s * 1000)
                rows = page.evaluate(ROWS)
                doc = next((d for d, cls, _ in rows if "ns-cursor" in cls), rows[0][0])
                started = time.perf_counter()
                page.keyboard.press(key)
                check = "(rows, [doc, text]) => rows.some(([d, c, v]) => d === doc && v.startsWith(text))"
                add("verdict (f, t): row updated", _since_key(page, check, [doc, VERDICT[key]], timeout_s * 1000))
                stored = "(rows, [doc, text]) => rows.some(([d, c, v]) => d === doc && v === text)"
                add("verdict: stored (pending mark gone)",
                    _since_key(page, stored, [doc, VERDICT[key]], timeout_s * 1000))
                add("verdict: page settled", (time.perf_counter() - started + _settle(page, timeout_s)) * 1000)
            rows = page.evaluate(ROWS)
            at = next(i for i, (_, cls, _) in enumerate(rows) if "ns-cursor" in cls)
            page.keyboard.press("k")
            moved = "(rows, doc) => rows.some(([d, c]) => d === doc && c.includes('ns-cursor'))"
            add("previous candidate (k): row updated", _since_key(page, moved, rows[max(0, at - 1)][0],
                                                                   timeout_s * 1000))
            _settle(page, timeout_s)
            before = ",".join(d for d, _, _ in page.evaluate(ROWS))
            started = time.perf_counter()
            page.keyboard.press("n")
            changed = "(rows, before) => rows.length > 0 && rows.map(([d]) => d).join(',') !== before"
            add("next query (n): rows updated", _since_key(page, changed, before, timeout_s * 1000))
            add("next query: page settled", (time.perf_counter() - started + _settle(page, timeout_s)) * 1000)
        browser.close()
    return out


def demo_workspace(target: Path) -> Path:
    """The built-in demo (what the README's first command shows), built once into the benchmark cache."""
    from core.demo import ensure_demo
    from core.workspace import open_workspace

    built = CACHE / "browser-keys-demo"
    if not (built / "negspace.sqlite").exists():
        ensure_demo(open_workspace(built, create=True))
    shutil.copytree(built, target)
    return target


def latency_workspace(size: int, target: Path) -> Path:
    from benchmarks.latency_workspace import ensure, workspace_dir

    ensure(size)
    shutil.copytree(workspace_dir(size), target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=12, help="queries judged per workspace")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one key may take")
    args = parser.parse_args()

    from tests.app_helpers import streamlit_server

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("demo", demo_workspace), ("100k candidates", lambda t: latency_workspace(100_000, t))):
            root = make(Path(tmp) / name.replace(" ", "-"))
            print(f"== {name}", flush=True)
            with streamlit_server({"NEGSPACE_WORKSPACE": str(root)}, Path(tmp) / f"{root.name}.log") as url:
                times = measure(url, args.queries, args.timeout)
            results[name] = {step: {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 1),
                                    "p95_ms": round(float(np.percentile(v, 95)), 1)} for step, v in times.items()}
    steps = list(dict.fromkeys(s for r in results.values() for s in r))
    rows = [{"step": s, **{n: (f"{r[s]['p50_ms']:,.0f} / {r[s]['p95_ms']:,.0f} (n={r[s]['n']})" if s in r else "")
                           for n, r in results.items()}} for s in steps]
    print("p50 / p95 ms, key press to ...")
    print_table(rows, ["step", *results])
    print(write_result("browser_keys", {"queries": args.queries, "results": results}).relative_to(ROOT))


if __name__ == "__main__":
    main()
