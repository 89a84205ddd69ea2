"""The LLM judge end to end: a real SQLite workspace and a real HTTP server started here that speaks the OpenAI
chat-completions protocol, scripted per test (good, malformed and late answers, 429 with Retry-After, 500s).

The server decides from the prompt itself: a candidate whose title is one of the planted near-copies of the query's
positive is "relevant", anything else "not_relevant", so each test can check that the right verdict landed on the
right pair. Nothing here says anything about a real LLM's quality.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import agreement, labels, llm_judge
from core.datasets import ingest
from core.errors import UserError
from core.export import export
from core.risk import signal_set
from tests.app_helpers import ROOT, finish_job
from tests.cli_helpers import assert_user_error, run_cli, run_cli_signalled
from tests.fixtures import DOCS, QUERIES

RUN = "run-llm"
MODEL = "tiny-judge"
LLM = f"llm:{MODEL}"
# riskiest first: the planted false negatives (near-copies of the positive) mixed with unrelated documents
PAIRS = [("q1", "py-join-dup"), ("q5", "geo-3"), ("q4", "bio-2"), ("q2", "py-rev"), ("q5", "geo-2"),
         ("q6", "food-3"), ("q2", "py-sort-dup"), ("q6", "food-2"), ("q1", "misc-7")]
RELEVANT_TITLES = {DOCS[d][0] for d in ("py-join-dup", "bio-2", "geo-2", "py-sort-dup", "food-2")}
EXPECTED = {p: "false_negative" if DOCS[p[1]][0] in RELEVANT_TITLES else "true_negative" for p in PAIRS}


class ChatServer:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1: answers from the prompt, or as ``script`` says for
    the next requests ("ok", "garbage", ("sleep", s), ("status", code, headers))."""

    def __init__(self) -> None:
        self.script: deque = deque()
        self.requests: list[dict] = []  # body, headers and arrival time of every request, answered or not
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers),
                                        "at": time.monotonic()})
                action = server.script.popleft() if server.script else "ok"
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = "ok"
                if isinstance(action, tuple) and action[0] == "status":
                    self.send_response(action[1])
                    for name, value in action[2].items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                content = server.answer(body) if action == "ok" else "I would rather talk about the weather."
                reply = {"id": "cmpl-1", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}}
                data = json.dumps(reply).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (a time-out test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def answer(body: dict) -> str:
        prompt = body["messages"][1]["content"]
        candidate = prompt.split("Candidate passage:\n", 1)[1].split("\n\n", 1)[0]
        relevant = any(candidate.startswith(title) for title in RELEVANT_TITLES)
        verdict = "relevant" if relevant else "not_relevant"
        return json.dumps({"verdict": verdict, "reason": f"judged {verdict} from the candidate's title"})

    def candidates_sent(self) -> list[tuple[str, str]]:
        """(query text, candidate's first line) of each request, in arrival order."""
        sent = []
        for request in self.requests:
            prompt = request["body"]["messages"][1]["content"]
            query = prompt.split("Query:\n", 1)[1].split("\n\n", 1)[0]
            sent.append((query, prompt.split("Candidate passage:\n", 1)[1].split("\n", 1)[0]))
        return sent

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    chat = ChatServer()
    yield chat
    chat.close()


@pytest.fixture
def ws(workspace, beir_dir, monkeypatch):
    """The tiny dataset and a run of PAIRS whose stored risk orders them as listed (scored by the current signal
    set, so judging scores nothing)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the default key variable: unset, no key is sent
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    candidates = pd.DataFrame([{"query_id": q, "doc_id": d, "rank": i + 1, "score": 0.8, "pos_score": 0.9,
                                "bm25": 1.0, "kept": True, "rule": "top", "risk": 1 - i / 20, "signals": "{}"}
                               for i, (q, d) in enumerate(PAIRS)])
    store.save_run({"run_id": RUN, "dataset": "tiny", "split": "train", "model_fingerprint": "test",
                    "params": {"rules": {"num_negatives": 3}}, "stats": {"kept": len(PAIRS)},
                    "signal_set": signal_set()}, candidates)
    return workspace, store


def judge(ws, server, budget: int = 100, **options) -> llm_judge.JudgeReport:
    workspace, store = ws
    return llm_judge.judge_run(store, workspace, RUN, server.url, MODEL, budget, backoff=0.01, **options)


def llm_verdicts(store) -> dict[tuple[str, str], str]:
    mine = labels.current(store, "tiny", LLM)
    return dict(zip(zip(mine["query_id"], mine["doc_id"]), mine["label"]))


def sent_pair(sent: tuple[str, str]) -> tuple[str, str]:
    query = next(q for q, text in QUERIES.items() if text == sent[0])
    return query, next(d for d, (title, _) in DOCS.items() if title and sent[1].startswith(title))


def test_verdicts_land_on_their_pairs_riskiest_first(ws, server):
    _, store = ws
    report = judge(ws, server)
    assert llm_verdicts(store) == EXPECTED
    assert [sent_pair(s) for s in server.candidates_sent()] == PAIRS  # the triage order
    assert (report.calls, report.cached, report.malformed, report.retries) == (len(PAIRS), 0, 0, 0)
    assert (report.prompt_tokens, report.completion_tokens) == (100 * len(PAIRS), 12 * len(PAIRS))
    assert report.recorded == {"false_negative": 5, "true_negative": 4} and report.stopped == "queue empty"
    notes = labels.current(store, "tiny", LLM).set_index(["query_id", "doc_id"])["note"]
    assert notes[("q1", "py-join-dup")] == "judged relevant from the candidate's title"
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["body"]["model"] == MODEL and first["body"]["temperature"] == 0
    prompt = first["body"]["messages"][1]["content"]
    assert QUERIES["q1"] in prompt and DOCS["py-join"][1] in prompt  # the query's positive is the ground truth
    assert "as fully as the ground-truth passage" in prompt
    assert "Authorization" not in first["headers"]


def test_budget_is_an_exact_number_of_calls(ws, server):
    _, store = ws
    report = judge(ws, server, budget=3)
    assert len(server.requests) == report.calls == 3 and report.stopped == "budget"
    assert llm_verdicts(store) == {p: EXPECTED[p] for p in PAIRS[:3]}
    report = judge(ws, server, budget=2)  # the next run takes the next riskiest
    assert len(server.requests) == 5 and llm_verdicts(store) == {p: EXPECTED[p] for p in PAIRS[:5]}


def test_a_persons_verdict_is_neither_sent_nor_touched(ws, server):
    workspace, store = ws
    person = PAIRS[0]
    labels.record(store, "tiny", *person, "ana", "true_negative", "looked at it")
    store.add_suggestions([{"dataset": "tiny", "query_id": PAIRS[2][0], "doc_id": PAIRS[2][1],
                            "label": "false_negative", "reason": "near-copy judged by ana", "source_event": None}])
    before = store.events("tiny", "ana")
    report = judge(ws, server)
    assert person not in [sent_pair(s) for s in server.candidates_sent()]
    assert report.skipped_judged_by_people == 1 and report.calls == len(PAIRS) - 1
    assert store.events("tiny", "ana").equals(before)
    assert person not in llm_verdicts(store)
    # an LLM verdict neither decides a suggestion meant for a person nor spreads new ones
    open_now = store.suggestions("tiny", None, "open")
    assert open_now[["query_id", "doc_id"]].values.tolist() == [list(PAIRS[2])]
    # its events are its own annotator's: people's current verdicts are what they were
    assert labels.current(store, "tiny", "ana")["label"].tolist() == ["true_negative"]
    resolved = labels.resolved(store, "tiny")
    assert resolved[["query_id", "doc_id", "label"]].values.tolist() == [[*person, "true_negative"]]


def test_malformed_answers_are_counted_reasked_once_and_never_recorded(ws, server):
    _, store = ws
    server.script.extend(["garbage", "garbage", "garbage", "ok"])
    report = judge(ws, server, budget=4)
    # pair 1: unreadable twice (nothing recorded); pair 2: unreadable, then readable on the re-ask
    assert report.calls == 4 and report.malformed == 3
    assert llm_verdicts(store) == {PAIRS[1]: EXPECTED[PAIRS[1]]}
    reask = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[3]["content"] == llm_judge.REASK_PROMPT
    judge(ws, server, budget=1)  # the unreadable one stays in the queue and is asked again
    assert llm_verdicts(store)[PAIRS[0]] == EXPECTED[PAIRS[0]]


@pytest.mark.parametrize("first", [("sleep", 1.5), ("status", 500, {}), ("status", 503, {}),
                                   ("status", 429, {"Retry-After": "1"})], ids=["timeout", "500", "503", "429"])
def test_retried_after_a_time_out_or_server_error(ws, server, first):
    _, store = ws
    server.script.append(first)
    report = judge(ws, server, budget=2, timeout=0.5)
    assert report.retries == 1 and report.calls == 2 and len(server.requests) == 3
    assert llm_verdicts(store) == {p: EXPECTED[p] for p in PAIRS[:2]}
    if first[0] == "status" and first[1] == 429:  # the server's Retry-After is honoured, not the 0.01 s back-off
        assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.95


def test_unreachable_or_refusing_endpoint_is_one_user_error(ws, server):
    _, store = ws
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(UserError, match="gave up after 5 attempts .*cannot connect"):
        llm_judge.judge_run(store, ws[0], RUN, f"http://127.0.0.1:{closed}/v1", MODEL, 3, backoff=0.01)
    server.script.extend([("status", 500, {})] * 5)
    with pytest.raises(UserError, match=r"gave up after 5 attempts \(last: HTTP 500"):
        judge(ws, server, budget=3)
    server.script.append(("status", 401, {}))
    with pytest.raises(UserError, match="HTTP 401"):
        judge(ws, server, budget=3)
    assert len(server.requests) == 6  # a 401 is not retried
    assert llm_verdicts(store) == {}


def test_cached_answers_cost_no_call(ws, server):
    workspace, store = ws
    judge(ws, server)
    assert (workspace.cache_dir / llm_judge.CACHE_FILE).is_file()
    again = judge(ws, server)  # everything judged: nothing to ask
    assert (again.candidates, again.calls, again.cached) == (0, 0, 0)
    while labels.undo(store, "tiny", LLM):  # take the LLM's verdicts back; its answers stay cached
        pass
    assert llm_verdicts(store) == {}
    rerun = judge(ws, server, budget=1)
    assert (rerun.calls, rerun.cached, len(server.requests)) == (0, len(PAIRS), len(PAIRS))
    assert llm_verdicts(store) == EXPECTED


def test_cli_sends_the_key_from_the_environment_and_stores_it_nowhere(ws, server, monkeypatch):
    workspace, store = ws
    secret = "sk-test-9f8e7d6c5b4a"
    monkeypatch.setenv("NEGSPACE_JUDGE_KEY", secret)
    done = run_cli("judge", "-w", workspace.root, "--run", RUN, "--endpoint", server.url, "--model", MODEL,
                   "--budget", 2, "--api-key-env", "NEGSPACE_JUDGE_KEY", "--timeout", 5, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["calls"], report["annotator"], report["recorded"]) == (2, LLM, {"false_negative": 1, "true_negative": 1})
    assert [r["headers"]["Authorization"] for r in server.requests] == [f"Bearer {secret}"] * 2
    store.close()
    stored = b"".join(p.read_bytes() for p in workspace.root.rglob("*") if p.is_file())
    assert secret.encode() not in stored and secret not in done.stdout + done.stderr
    assert b"judged relevant" in stored  # the reasons were stored: the search above read the right files

    text = run_cli("judge", "-w", workspace.root, "--run", RUN, "--endpoint", server.url, "--model", MODEL,
                   "--budget", 1)
    assert text.returncode == 0 and text.stdout.startswith(f"{LLM} judged 1 candidates of run {RUN}")
    for args, message in [(["--budget", 0], "error: --budget must be at least 1"),
                          (["--budget", 1, "--api-key-env", "NEGSPACE_UNSET_KEY"],
                           "error: --api-key-env: environment variable NEGSPACE_UNSET_KEY is not set"),
                          (["--budget", 1, "--endpoint", "localhost:8000"], "error: --endpoint 'localhost:8000'")]:
        failed = run_cli("judge", "-w", workspace.root, "--run", RUN, "--endpoint", server.url, "--model", MODEL,
                         *args)
        assert_user_error(failed, message)


def test_ctrl_c_leaves_whole_verdicts(ws, server):
    """Interrupted inside the third verdict's transaction: the first two stay, the third is not half-written."""
    workspace, store = ws
    done = run_cli_signalled(("core/store/labels.py", "_insert_event", 2), signal.SIGINT, "judge", "-w",
                             workspace.root, "--run", RUN, "--endpoint", server.url, "--model", MODEL, "--budget", 5)
    assert_user_error(done, "error: interrupted", code=130)
    assert len(server.requests) == 3
    assert llm_verdicts(store) == {p: EXPECTED[p] for p in PAIRS[:2]}
    rerun = judge(ws, server, budget=1)  # the third answer was cached before the interruption
    assert (rerun.calls, rerun.cached) == (1, 1) and len(server.requests) == 4
    assert llm_verdicts(store) == {p: EXPECTED[p] for p in PAIRS[:4]}


def open_page(page: str, root) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=60)
    for key, value in {"ns_app_ran": True, "ns_workspace": str(root), "ns_dataset": "tiny", "ns_run": RUN,
                       "ns_annotator": "lead"}.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_kappa_against_each_person_on_the_team_page(ws, server):
    workspace, store = ws
    judge(ws, server)
    for pair, ana, bob in zip(PAIRS[1:5], ["true_negative", "false_negative", "true_negative", "true_negative"],
                              ["true_negative", "true_negative", "false_negative", "false_negative"]):
        labels.record(store, "tiny", *pair, "ana", ana)
        labels.record(store, "tiny", *pair, "bob", bob)
    expected = agreement.llm_agreement(agreement.dataset_agreement(store, "tiny"))
    assert expected[["judge", "person", "items"]].values.tolist() == [[LLM, "ana", 4], [LLM, "bob", 4]]
    assert expected["kappa"].notna().all()

    at = open_page("team.py", workspace.root)
    table = next(d.value for d in at.dataframe if "LLM judge" in d.value.columns)
    assert table["LLM judge"].tolist() == [LLM, LLM] and table["person"].tolist() == ["ana", "bob"]
    assert table["Cohen's κ"].tolist() == pytest.approx(expected["kappa"].tolist())
    assert any(s.value == "LLM judges against people" for s in at.subheader)


def ask(at: AppTest) -> None:
    """Submit the Team page's LLM judge form and let its background job end (the page polls it every second)."""
    next(b for b in at.button if b.label == "Ask the LLM judge").click().run()
    assert not at.exception, [e.value for e in at.exception]
    if "ns_team_llm_job" in at.session_state:  # still running when the page reran
        assert at.session_state["ns_team_llm_job"].wait(60)
        at.run()


def test_the_team_page_runs_the_judge_in_the_background(ws, server):
    workspace, store = ws
    at = open_page("team.py", workspace.root)
    at.text_input(key="ns_llm_endpoint").input(server.url)
    at.text_input(key="ns_llm_model").input(MODEL)
    at.number_input(key="ns_llm_budget").set_value(4)
    ask(at)
    assert not at.exception and not at.error
    assert any(s.value.startswith(f"{LLM} judged 4 candidates") for s in at.success)
    assert llm_verdicts(store) == {p: EXPECTED[p] for p in PAIRS[:4]} and len(server.requests) == 4
    at.text_input(key="ns_llm_endpoint").input("not a url")
    ask(at)
    assert any("--endpoint 'not a url'" in e.value for e in at.error)


def test_exports_ignore_llm_verdicts_unless_counted(ws, server, tmp_path):
    workspace, store = ws
    judge(ws, server)
    out = workspace.exports_dir
    ignored = export(store, RUN, "flag", out / "ignored", "curated")
    counted = export(store, RUN, "flag", out / "counted", "curated", llm_verdicts="count")
    assert (ignored["llm_verdicts"], counted["llm_verdicts"]) == ("ignore", "count")
    assert ignored["removed_negatives"] == 0 and ignored["label_counts"] == {}
    assert counted["removed_negatives"] == 5 and counted["label_counts"] == {"false_negative": 5, "true_negative": 4}

    def negatives(folder) -> set[tuple[str, str]]:
        rows = [json.loads(line) for line in (folder / "ids.jsonl").read_text().splitlines()]
        return {(r["query_id"], d) for r in rows for d in r["neg_ids"]}
    assert negatives(out / "ignored") == set(PAIRS)
    assert negatives(out / "counted") == {p for p in PAIRS if EXPECTED[p] == "true_negative"}
    with pytest.raises(UserError, match="unknown LLM verdicts policy"):
        export(store, RUN, "flag", out / "bad", "curated", llm_verdicts="maybe")

    store.close()
    done = run_cli("export", "-w", workspace.root, "--run", RUN, "--format", "flag", "--out", out / "cli",
                   "--data", "curated", "--llm-verdicts", "count")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "cli" / "manifest.json").read_text())["removed_negatives"] == 5


def test_export_page_counts_llm_verdicts_when_asked(ws, server):
    workspace, store = ws
    judge(ws, server)
    at = open_page("export.py", workspace.root)
    at.radio(key="exp_data").set_value("curated")
    at.radio(key="exp_llm").set_value("count").run()
    at.button(key="exp_go").click().run()
    finish_job(at, "exp_job")
    assert not at.error
    folder = next(workspace.exports_dir.glob("*-curated-unsure-drop-llm-count"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["llm_verdicts"], manifest["removed_negatives"]) == ("count", 5)
