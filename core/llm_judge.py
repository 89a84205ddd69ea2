"""An LLM as one more annotator: verdicts on a run's riskiest unjudged candidates from a chat-completions endpoint.

RLHN (Thakur et al. 2025, "Fixing Data That Hurts Performance: Cascading LLMs to Relabel Hard Negatives for Robust
Information Retrieval", arXiv 2505.16967) asks an LLM, given a query and its labelled positive as ground truth,
whether a mined hard negative is in fact relevant, and relabels the ones that are. Here the LLM's answer is not a
relabel but a verdict of its own annotator ``llm:<model>`` (core.labels.LLM_PREFIX), recorded through
core.judging like a person's: the Team page measures it against each person (Cohen's κ), and exports count it
only when asked. People's work is never touched: pairs any person judged are neither sent nor recorded, and the
LLM's events are its own annotator's.

Any OpenAI-compatible server works (vLLM, llama.cpp's server, Ollama, hosted APIs): ``POST {endpoint}/chat/
completions``. The API key is read from an environment variable and only ever sent in the Authorization header.
Answers are cached in the workspace (``cache/llm_answers.sqlite``) by a hash of the model and the whole request,
so asking again costs nothing; each verdict is its own transaction, so an interrupted run leaves whole verdicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from core import audit, judging, labels, roles
from core.errors import UserError, environment_error
from core.jobs import Job, StageProgress, shared_job
from core.lookups import positive_qrels, require_run

if TYPE_CHECKING:
    from core.store import Store
    from core.workspace import Workspace

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
CACHE_FILE = "llm_answers.sqlite"
MAX_ATTEMPTS = 5  # per call: the first try and up to four retries on 429, 5xx, time-outs and refused connections
MAX_RETRY_AFTER = 120.0  # seconds: a longer Retry-After is capped, so a run never hangs for hours
MAX_TOKENS = 256  # a verdict and one sentence; a longer answer is cut off and read as malformed
MAX_TEXT_CHARS = 4000  # per passage in the prompt: bounds the tokens a long document costs
MAX_REASON_CHARS = 300
# RLHN's judgement (arXiv 2505.16967, section 3): the ground truth sets the bar; a candidate on the topic that does
# not answer the query as fully is not a false negative.
SYSTEM_PROMPT = ("You judge relevance for information-retrieval training data. A search query has a ground-truth "
                 "passage that answers it. Another passage was retrieved and labelled as not relevant. Decide "
                 "whether that label is wrong.")
USER_PROMPT = """Query:
{query}

Ground-truth passage (answers the query):
{positive}

Candidate passage:
{candidate}

The candidate is relevant only if it answers the query as fully as the ground-truth passage does. A passage on the
same topic that does not answer the query, or answers only part of it, is not relevant.

Reply with one JSON object and nothing else:
{{"verdict": "relevant" or "not_relevant", "reason": "one sentence"}}"""
REASK_PROMPT = ('Your reply could not be read. Reply with exactly one JSON object: {"verdict": "relevant" or '
                '"not_relevant", "reason": "one sentence"}')
VERDICTS = {"relevant": "false_negative", "not_relevant": "true_negative", "irrelevant": "true_negative"}
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)  # reasoning models' preamble
_ONE_WORD = re.compile(r"^\W*(not[ _-]?relevant|irrelevant|relevant)\b\W*(.*)$", re.DOTALL | re.IGNORECASE)


@dataclass
class JudgeReport:
    """What a judge run did: candidates taken from the queue, calls answered (the budget counts these), answers
    from the cache, unreadable answers, retried requests, tokens the endpoint reported, and verdicts by label."""

    run_id: str
    annotator: str
    budget: int
    candidates: int = 0
    calls: int = 0
    cached: int = 0
    malformed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    recorded: dict[str, int] = field(default_factory=dict)
    skipped_judged_by_people: int = 0
    skipped_no_positive: int = 0
    stopped: str = "queue empty"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdicts = ", ".join(f"{n} {label.replace('_', ' ')}" for label, n in sorted(self.recorded.items()))
        return (f"{self.annotator} judged {sum(self.recorded.values())} candidates of run {self.run_id} "
                f"({verdicts or 'none'}); {self.calls} calls of {self.budget}, {self.cached} from cache, "
                f"{self.malformed} malformed, {self.retries} retries, {self.prompt_tokens} prompt + "
                f"{self.completion_tokens} completion tokens, {self.skipped_judged_by_people} judged by people "
                f"skipped; stopped: {self.stopped}; {self.seconds:.1f}s")


@dataclass(frozen=True)
class Answer:
    """A readable verdict: the label recorded and the one-line reason kept as the verdict's note."""

    label: str
    reason: str


def parse_answer(text: str) -> Answer | None:
    """The verdict in a model's reply, or None when it is not readable: a JSON object with ``verdict`` (anywhere in
    the reply, after any <think> block), else a reply that starts with the verdict word, e.g. ``not relevant: ...``.
    """
    text = _THINKING.sub("", text or "").strip()
    decoder = json.JSONDecoder(strict=False)  # a raw newline inside the reason is common
    for brace in re.finditer(r"\{", text):  # the first JSON object with a verdict, whatever surrounds it
        try:
            obj, _ = decoder.raw_decode(text, brace.start())
        except ValueError:
            continue
        if isinstance(obj, dict) and "verdict" in obj:
            verdict = obj["verdict"]
            label = VERDICTS.get(re.sub(r"[\s-]+", "_", verdict.strip().lower())) if isinstance(verdict, str) else None
            reason = obj.get("reason", "")
            return Answer(label, _one_line(reason if isinstance(reason, str) else "")) if label else None
    if match := _ONE_WORD.match(text):
        word = re.sub(r"[\s-]+", "_", match.group(1).lower()).replace("notrelevant", "not_relevant")
        return Answer(VERDICTS[word], _one_line(match.group(2)))
    return None


def _one_line(reason: str) -> str:
    return " ".join(reason.split())[:MAX_REASON_CHARS]


@contextmanager
def _machine_failures(path: Path) -> Iterator[None]:
    """A full disk, a read-only mount or a damaged cache file is one line naming the file, not a traceback."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        error = environment_error(exc, path)
        if error is None:
            raise
        raise error from None


class AnswerCache:
    """Model replies keyed by sha256 of the request (model, messages, sampling): a re-run asks nothing twice.

    Only readable replies are kept, so a malformed one is asked again next time. One small SQLite file in the
    workspace's cache folder, not the store: it is a cache of bought answers, not the project's record.
    """

    def __init__(self, workspace: Workspace):
        self.path = workspace.cache_dir / CACHE_FILE
        with _machine_failures(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.conn.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                              "answer TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")

    def get(self, key: str) -> str | None:
        with _machine_failures(self.path):
            row = self.conn.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, model: str, answer: str) -> None:
        with _machine_failures(self.path):
            self.conn.execute("INSERT OR REPLACE INTO answers (key, model, answer) VALUES (?, ?, ?)",
                              (key, model, answer))

    def close(self) -> None:
        self.conn.close()


def request_key(body: dict) -> str:
    """The cache key of a chat request: the model, the messages and the sampling settings, nothing secret."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class ChatClient:
    """POSTs chat-completion requests with bounded, exponentially backed-off retries on 429 (honouring
    Retry-After), 5xx, time-outs and refused connections; any other failure is a UserError at once."""

    def __init__(self, endpoint: str, api_key: str | None, timeout: float, backoff: float, report: JudgeReport,
                 sleep: Callable[[float], None] = time.sleep):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.timeout, self.backoff, self.report, self.sleep = timeout, backoff, report, sleep
        self._secret = api_key
        self.session: requests.Session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _clean(self, text: str) -> str:
        """A message safe to print: one line, short, and never the key (a server may echo it back)."""
        text = " ".join(str(text).split())[:200]
        return text.replace(self._secret, "***") if self._secret else text

    def complete(self, body: dict) -> dict:
        """The endpoint's JSON reply to one request (retried as described), or a UserError."""
        last = ""
        for attempt in range(MAX_ATTEMPTS):
            wait = None
            try:
                response = self.session.post(self.url, json=body, timeout=self.timeout)
            except requests.Timeout:
                last = f"no answer within {self.timeout:g}s"
            except requests.ConnectionError as exc:
                cause = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
                last = f"cannot connect ({cause.group(1) if cause else 'connection failed'})"
            except requests.RequestException as exc:  # an invalid URL and the like: retrying cannot help
                raise UserError(f"--endpoint {self._clean(self.url)}: {self._clean(exc)}") from None
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        return {}  # read as a malformed answer by the caller
                last = f"HTTP {response.status_code} {self._clean(response.text)}"
                if response.status_code != 429 and response.status_code < 500:
                    raise UserError(f"--endpoint {self._clean(self.url)}: {last}")
                wait = _retry_after(response.headers.get("Retry-After"))
            if attempt + 1 < MAX_ATTEMPTS:
                self.report.retries += 1
                self.sleep(wait if wait is not None else self.backoff * 2 ** attempt)
        raise UserError(f"--endpoint {self._clean(self.url)}: gave up after {MAX_ATTEMPTS} attempts (last: {last}); "
                        f"{sum(self.report.recorded.values())} verdicts recorded before")

    def close(self) -> None:
        self.session.close()


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " …"


def build_request(model: str, query: str, positive: str, candidate: str) -> dict:
    """The chat request for one candidate: RLHN's question with the query's positive as the bar to meet."""
    user = USER_PROMPT.format(query=_truncate(query), positive=_truncate(positive), candidate=_truncate(candidate))
    return {"model": model, "temperature": 0, "max_tokens": MAX_TOKENS,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]}


def _content(reply: dict) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def _add_usage(report: JudgeReport, reply: dict) -> None:
    usage = reply.get("usage") if isinstance(reply, dict) else None
    if isinstance(usage, dict):
        for name in ("prompt_tokens", "completion_tokens"):
            if isinstance(count := usage.get(name), int):
                setattr(report, name, getattr(report, name) + count)


def annotator_name(model: str) -> str:
    """``llm:<model>``, checked like any annotator name."""
    if not model or not model.strip():
        raise UserError("--model: give the model name the endpoint serves")
    return labels.check_annotator(labels.LLM_PREFIX + model)


def api_key(env_var: str | None) -> str | None:
    """The key from ``env_var`` (which must then be set), or from $OPENAI_API_KEY when set; local servers need none."""
    if env_var is None:
        return os.environ.get(DEFAULT_KEY_ENV) or None
    value = os.environ.get(env_var)
    if not value:
        raise UserError(f"--api-key-env: environment variable {env_var} is not set")
    return value


def judge_run(store: Store, workspace: Workspace, run_id: str, endpoint: str, model: str, budget: int,
              api_key_env: str | None = None, timeout: float = 60.0, backoff: float = 1.0,
              device: str = "auto", progress: StageProgress | None = None) -> JudgeReport:
    """Ask the endpoint's ``model`` for a verdict on the run's unjudged candidates, riskiest first (core.triage's
    queue; risk is scored first if missing), until ``budget`` calls were answered or the queue is empty.

    Skipped: pairs this LLM already judged, and pairs any person judged (never sent, never recorded). A cached
    answer costs no call. A reply that cannot be read counts as malformed and is asked once more with a reminder
    of the format (that second call counts against the budget too); if it still cannot be read, nothing is
    recorded and the candidate stays in the queue for the next run. ``backoff`` is the first retry's wait in
    seconds, doubled on each further retry unless the server names one (Retry-After). ``progress`` hears of risk
    scoring and then of each candidate (the Team page's background job shows it).
    """
    from core.encoders import document_text
    from core.risk import ensure_risk
    from core.triage import triage_queue

    roles.require(roles.RUNS)
    started = time.perf_counter()
    if budget < 1:
        raise UserError("--budget must be at least 1 call")
    if timeout <= 0:
        raise UserError("--timeout must be more than 0 seconds")
    if not re.match(r"^https?://[^/\s]+", endpoint or ""):
        raise UserError(f"--endpoint {endpoint!r}: give an http(s) URL such as http://localhost:8000/v1")
    who = annotator_name(model)
    key = api_key(api_key_env)
    run = require_run(store, run_id)
    dataset = run["dataset"]
    ensure_risk(store, workspace, run_id, device, progress)
    qrels = positive_qrels(store.qrels(dataset, run["split"])).sort_values("score", ascending=False, kind="stable")
    ground_truth = qrels.drop_duplicates("query_id").set_index("query_id")["doc_id"].to_dict()
    report = JudgeReport(run_id, who, budget)
    cache, client = AnswerCache(workspace), ChatClient(endpoint, key, timeout, backoff, report)
    seen: set[tuple[str, str]] = set()
    try:
        while report.calls < budget:
            # the queue skips pairs this LLM judged; people's pairs (read again: they may be judging right now)
            # and pairs tried in this run are skipped here
            by_people = _judged_by_people(store, dataset)
            want = budget - report.calls + len(by_people) + len(seen)
            queue = triage_queue(store, run_id, who, limit=want)
            pairs = [p for p in zip(queue["query_id"], queue["doc_id"]) if p not in seen]
            todo = [p for p in pairs if p not in by_people]
            report.skipped_judged_by_people += len(pairs) - len(todo)
            seen.update(pairs)
            if not todo:
                break
            for query_id, doc_id in todo:
                if report.calls >= budget:
                    break
                report.candidates += 1
                positive = ground_truth.get(query_id)
                if positive is None:
                    report.skipped_no_positive += 1
                    continue
                docs = store.documents(dataset, [positive, doc_id]).set_index("doc_id")
                text = {d: document_text(docs.at[d, "title"], docs.at[d, "text"]) for d in docs.index}
                query = store.queries(dataset, [query_id])["text"].iloc[0]
                body = build_request(model, query, text[positive], text[doc_id])
                answer = _ask(body, cache, client, report, budget)
                if answer is not None:
                    judging.judge(store, workspace, dataset, [(query_id, doc_id)], who, answer.label, answer.reason)
                    report.recorded[answer.label] = report.recorded.get(answer.label, 0) + 1
                if progress is not None:
                    progress(f"{report.calls}/{budget} calls, {sum(report.recorded.values())} verdicts",
                             report.calls / budget)
        if report.calls >= budget:
            report.stopped = "budget"
    finally:
        cache.close()
        client.close()
        report.seconds = time.perf_counter() - started
    audit.record(store, "llm judge", run_id, annotator=who, endpoint=endpoint, calls=report.calls,
                 recorded=report.recorded)
    return report


def judge_job(workspace_root: str | Path, run_id: str, endpoint: str, model: str, budget: int,
              api_key_env: str | None = None, timeout: float = 60.0) -> Job:
    """``judge_run`` in a background thread for the app: a judge of many calls outlives the page run that started
    it, one per workspace, run and model in the process (a second session asking sees the first one's progress),
    with its own store connection. ``Job.result`` is the JudgeReport; a UserError is ``Job.error``. Admins only,
    once accounts exist (core.roles): it is checked here, as the job's thread has no signed-in account."""
    roles.require(roles.RUNS)
    root = str(Path(workspace_root).resolve())

    def work(stage: StageProgress) -> JudgeReport:
        from core.workspace import open_workspace

        workspace = open_workspace(root, create=False)
        own = workspace.store()
        try:
            return judge_run(own, workspace, run_id, endpoint, model, budget, api_key_env, timeout, progress=stage)
        finally:
            own.close()
    return shared_job(f"judge:{root}:{run_id}:{model}", work)


def _judged_by_people(store: Store, dataset: str) -> set[tuple[str, str]]:
    verdicts = labels.current(store, dataset)
    people = verdicts[~verdicts["annotator"].map(labels.is_llm).astype(bool)]
    return set(zip(people["query_id"], people["doc_id"]))


def _ask(body: dict, cache: AnswerCache, client: ChatClient, report: JudgeReport, budget: int) -> Answer | None:
    """One candidate's answer: from the cache, else asked (and re-asked once if unreadable, budget permitting)."""
    key = request_key(body)
    if (cached := cache.get(key)) is not None and (answer := parse_answer(cached)) is not None:
        report.cached += 1
        return answer
    messages = body["messages"]
    while report.calls < budget:
        reply = client.complete({**body, "messages": messages})
        report.calls += 1
        _add_usage(report, reply)
        text = _content(reply)
        if (answer := parse_answer(text)) is not None:
            cache.put(key, body["model"], text)
            return answer
        report.malformed += 1
        if len(messages) > len(body["messages"]):
            return None
        messages = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": REASK_PROMPT}]
    return None
