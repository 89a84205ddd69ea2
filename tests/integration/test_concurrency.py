"""Eight processes write 500 verdicts each through core at the same time while a ninth reads continuously:
every event arrives, nobody sees 'database is locked' (or any other error), readers never see data go back."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from multiprocessing.synchronize import Event

from core.datasets import ingest
from tests.fixtures import DOCS, QUERIES, reaped

WRITERS, PER_WRITER = 8, 500
LABELS = ("false_negative", "true_negative", "unsure")
PATIENCE_S = 600  # generous: this test is about lost writes and lock errors, not speed


def _writer(db_path: str, who: str, start: Event, ready: mp.Queue, out: mp.Queue) -> None:
    """Open a store of its own (as a separate app session or CLI process would) and record PER_WRITER verdicts."""
    try:
        from core import labels
        from core.store import Store

        ready.put(who)
        start.wait()
        store = Store(db_path)
        docs, queries = list(DOCS), list(QUERIES)
        for i in range(PER_WRITER):
            labels.record(store, "tiny", queries[i % len(queries)], docs[i % len(docs)], who, LABELS[i % 3],
                          note=f"{who}-{i}")
        store.close()
        out.put((who, "ok", PER_WRITER))
    except BaseException:  # report everything, the test asserts there was nothing to report
        out.put((who, "error", traceback.format_exc()))


def _reader(db_path: str, start: Event, stop: Event, ready: mp.Queue, out: mp.Queue) -> None:
    """Read the event count and the current verdicts in a loop; the count must never go down."""
    try:
        from core import labels
        from core.store import Store

        ready.put("reader")
        start.wait()
        store = Store(db_path)
        reads, last = 0, 0
        while not stop.is_set():
            labels.current(store, "tiny")
            count = store.count("label_events")
            if count < last:
                raise AssertionError(f"event count went back from {last} to {count}")
            last, reads = count, reads + 1
        store.close()
        out.put(("reader", "ok", reads))
    except BaseException:
        out.put(("reader", "error", traceback.format_exc()))


def test_eight_writers_and_a_reader_lose_nothing(workspace, beir_dir, spawn):
    store = workspace.store()
    ingest(store, beir_dir, "tiny")
    ctx = spawn
    start, stop, ready, out = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    db = str(workspace.db_path)
    writers = [ctx.Process(target=_writer, args=(db, f"w{i}", start, ready, out)) for i in range(WRITERS)]
    reader = ctx.Process(target=_reader, args=(db, start, stop, ready, out))
    procs = [*writers, reader]
    with reaped(procs):
        for proc in procs:
            proc.start()
        # Nine interpreters importing pandas on two cores can take minutes on a busy CI machine: wait until
        # every child has imported core, then release them together so the writes really overlap.
        for _ in procs:
            ready.get(timeout=PATIENCE_S)
        start.set()
        results = []
        try:
            for _ in writers:
                results.append(out.get(timeout=PATIENCE_S))
        finally:
            stop.set()
        results.append(out.get(timeout=PATIENCE_S))
    errors = [r[2] for r in results if r[1] != "ok"]
    assert not errors, "\n".join(errors)
    assert all(proc.exitcode == 0 for proc in procs)
    assert dict((who, n) for who, _, n in results)["reader"] > 0
    events = store.events("tiny")
    assert len(events) == WRITERS * PER_WRITER == 4000
    assert events["id"].is_unique
    for i in range(WRITERS):
        notes = events.loc[events["annotator"] == f"w{i}", "note"]
        assert sorted(notes) == sorted(f"w{i}-{n}" for n in range(PER_WRITER))
