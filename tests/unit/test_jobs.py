"""Background jobs: one job per name at a time, however many sessions ask for it."""

from __future__ import annotations

import threading

from core.jobs import running_job, shared_job


def test_sessions_asking_at_once_share_one_running_job_and_a_finished_one_is_started_afresh():
    release, calls = threading.Event(), []

    def work(stage):
        calls.append(threading.current_thread().name)
        stage("working", 0.5)
        release.wait(10)
        return len(calls)

    jobs: list = []
    askers = [threading.Thread(target=lambda: jobs.append(shared_job("score:run-a", work))) for _ in range(8)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    assert len({id(job) for job in jobs}) == 1
    job = jobs[0]
    assert running_job("score:run-a") is job and running_job("score:run-b") is None
    assert shared_job("score:run-b", lambda stage: "other") is not job  # another name, another job
    release.set()
    assert job.wait(10) and job.result == 1 and calls == ["job:score:run-a"]
    assert running_job("score:run-a") is None
    again = shared_job("score:run-a", work)
    assert again is not job and again.wait(10) and again.result == 2
