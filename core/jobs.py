"""Work that must outlive a browser tab: a function run once in a daemon thread, with progress to poll.

Streamlit stops a script run when its tab closes; a demo build or a UMAP fit started from that run would die
half-way. A ``Job`` runs in its own thread instead, and any session can poll its message and fraction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

StageProgress = Callable[[str, float], None]  # (message, fraction done): long multi-stage work shown to a person
CountProgress = Callable[[int, int], None]  # (done, total): one counted loop such as encoding batches or training steps


class Job:
    """Runs ``fn(stage)`` once in the background; ``stage(message, fraction)`` updates what pollers see."""

    def __init__(self, name: str, fn: Callable[[StageProgress], Any]):
        self.name = name
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
        try:
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
