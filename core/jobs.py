"""Work that must outlive a browser tab: a function run once in a daemon thread, with progress to poll.

Streamlit stops a script run when its tab closes; a demo build or a UMAP fit started from that run would die
half-way. A ``Job`` runs in its own thread instead, and any session can poll its message and fraction.
``shared_job`` keeps one job per name in the process: the second browser session that opens an unscored run
waits on the scoring the first one started instead of starting its own.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

StageProgress = Callable[[str, float], None]  # (message, fraction done): long multi-stage work shown to a person
CountProgress = Callable[[int, int], None]  # (done, total): one counted loop such as encoding batches or training steps


class Job:
    """Runs ``fn(stage)`` once in the background; ``stage(message, fraction)`` updates what pollers see."""

    def __init__(self, name: str, fn: Callable[[StageProgress], Any]):
        from core import audit

        self.name = name
        self.by = audit.who()  # the job's writes are audited as its starter's: its thread has no page run to ask
        self.message, self.fraction = "starting", 0.0
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.seconds: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"job:{name}", daemon=True)
        self._thread.start()

    def _stage(self, message: str, fraction: float) -> None:
        self.message, self.fraction = message, max(0.0, min(1.0, fraction))

    def _run(self, fn: Callable[[StageProgress], Any]) -> None:
        from core import audit

        try:
            with audit.acting_as(self.by):
                self.result = fn(self._stage)
        except BaseException as exc:  # surfaced to the UI through .error; a thread has no one else to tell
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - self.started
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


def counted(stage: StageProgress, what: str) -> CountProgress:
    """A ``CountProgress`` (training steps, encoded batches) told to a job's ``stage`` as "what i/n"."""
    return lambda done, total: stage(f"{what} {done}/{total}", done / max(total, 1))


_JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()


def shared_job(name: str, fn: Callable[[StageProgress], Any]) -> Job:
    """The job called ``name`` that is running in this process, or a new one running ``fn`` when none is.

    A finished job is not reused: whoever asks again after it ended (e.g. the run needs scoring again) starts
    a fresh one. Callers poll the returned job; they never wait on it in a page.
    """
    with _JOBS_LOCK:
        job = _JOBS.get(name)
        if job is None or job.done:
            job = _JOBS[name] = Job(name, fn)
        return job


def running_job(name: str) -> Job | None:
    """The job called ``name`` if it is still running in this process."""
    with _JOBS_LOCK:
        job = _JOBS.get(name)
    return job if job is not None and not job.done else None


class StageClock:
    """A ``StageProgress`` that passes messages on and adds up the seconds spent in each stage.

    A stage is named by its message without a trailing ``done/total`` count, so "encoding documents 5/9" and
    "encoding documents 9/9" are one stage; the time until the next message is charged to it. ``seconds`` is
    what a run's stats record, so a slow million-document mine says which stage was slow.
    """

    def __init__(self, inner: StageProgress | None = None):
        self.inner = inner
        self.seconds: dict[str, float] = {}
        self._stage: str | None = None
        self._since = time.perf_counter()

    def __call__(self, message: str, fraction: float) -> None:
        self.lap(re.sub(r"\s*\d+/\d+$", "", message))
        if self.inner is not None:
            self.inner(message, fraction)

    def lap(self, stage: str | None) -> None:
        """Charge the time since the last message to the current stage and start ``stage``."""
        now = time.perf_counter()
        if self._stage is not None:
            self.seconds[self._stage] = round(self.seconds.get(self._stage, 0.0) + now - self._since, 3)
        self._stage, self._since = stage, now
