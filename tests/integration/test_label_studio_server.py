"""The Label Studio round trip against a real Label Studio server: ours → Label Studio → ours gives back every
verdict with its annotator and time.

The server is the ``label-studio`` package in its own virtual environment (its Django stack clashes with our
pins), made by .ci/label-studio-venv at ``.cache/label-studio-venv``; without it the test is skipped. One server per session:
a temporary data folder, a free loopback port, the first user and its API token from environment variables; a
second user signs up through the server's own sign-up form and annotates with its own token. The project is
created through the REST API with our labeling config, our tasks imported, annotations submitted as both users
(and one skipped), the project exported as JSON through the export API, and that file imported here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import labels
from core.export import export
from core.label_studio import read_export
from core.verdict_import import import_verdicts
from core.workspace import open_workspace

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / "label-studio-venv"
ADMIN, ADMIN_TOKEN = "admin@negspace.test", "negspace-test-token-0123456789"
STARTUP_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Iterator[str]:
    """The base URL of a Label Studio server started for this session (stopped afterwards)."""
    requests = pytest.importorskip("requests")
    binary = VENV / "bin" / "label-studio"
    if not binary.exists():
        pytest.skip(f"no Label Studio virtual environment at {VENV} (.ci/run creates it; it may have failed to "
                    "install)")
    data = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "LABEL_STUDIO_USERNAME": ADMIN,
           "LABEL_STUDIO_PASSWORD": "negspace-test-password", "LABEL_STUDIO_USER_TOKEN": ADMIN_TOKEN,
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
           "FRONTEND_SENTRY_DSN": ""}
    log = (data / "server.log").open("w")
    server = subprocess.Popen([str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
                               str(port), "--enable-legacy-api-token"], cwd=data, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not start: {(data / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group, started above
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _signed_up_token(base: str, email: str) -> str:
    """A second user, signed up through the server's sign-up form, and its API token."""
    import requests

    session = requests.Session()
    session.get(f"{base}/user/signup/", timeout=30)
    session.post(f"{base}/user/signup/", data={"email": email, "password": "negspace-second-password",
                                               "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                 headers={"Referer": f"{base}/user/signup/"}, timeout=30)
    answer = session.get(f"{base}/api/current-user/token", timeout=30)
    answer.raise_for_status()
    return answer.json()["token"]


def test_label_studio_round_trip_gives_back_every_verdict_with_annotator(label_studio, ws_root, tmp_path):
    import requests

    base = label_studio
    store = open_workspace(ws_root).store()
    run_id = store.runs()[0]["run_id"]
    export(store, run_id, "label-studio", tmp_path / "ls", data="raw")
    admin = {"Authorization": f"Token {ADMIN_TOKEN}"}
    second = "bo@negspace.test"
    bo = {"Authorization": f"Token {_signed_up_token(base, second)}"}

    project = requests.post(f"{base}/api/projects", headers=admin, timeout=60, json={
        "title": "negspace round trip", "label_config": (tmp_path / "ls" / "label_config.xml").read_text()})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    imported = requests.post(f"{base}/api/projects/{project_id}/import", headers=admin, json=tasks, timeout=60)
    assert imported.status_code == 201 and imported.json()["task_count"] == len(tasks), imported.text
    listed = requests.get(f"{base}/api/tasks", headers=admin, timeout=60,
                          params={"project": project_id, "page_size": 1000}).json()["tasks"]
    assert len(listed) == len(tasks)

    labels_of = {ADMIN: ("false_negative", "true_negative"), second: ("unsure", "false_negative")}
    expected = {}
    for n, task in enumerate(listed):
        for who, headers in ((ADMIN, admin), (second, bo)):
            if who == second and n == 0:  # one skipped task: no verdict
                skipped = requests.post(f"{base}/api/tasks/{task['id']}/annotations/", headers=headers, timeout=60,
                                        json={"result": [], "was_cancelled": True})
                assert skipped.status_code == 201, skipped.text
                continue
            result = []
            for k, candidate in enumerate(task["data"]["candidates"]):
                label = labels_of[who][k % 2]
                expected[who, task["data"]["query_id"], candidate["doc_id"]] = label
                result.append({"from_name": f"verdict_{k}", "to_name": f"candidate_{k}", "type": "choices",
                               "value": {"choices": [label]}})
            answer = requests.post(f"{base}/api/tasks/{task['id']}/annotations/", headers=headers, timeout=60,
                                   json={"result": result})
            assert answer.status_code == 201, answer.text

    # the export snapshot API with the annotators' user objects (emails), then its JSON download
    snapshot = requests.post(f"{base}/api/projects/{project_id}/exports", headers=admin, timeout=120,
                             json={"serialization_options": {"annotations__completed_by": {"only_id": False}}})
    assert snapshot.status_code == 201 and snapshot.json()["status"] == "completed", snapshot.text
    download = requests.get(f"{base}/api/projects/{project_id}/exports/{snapshot.json()['id']}/download",
                            headers=admin, params={"exportType": "JSON"}, timeout=120)
    assert download.status_code == 200
    (tmp_path / "export.json").write_bytes(download.content)

    result = import_verdicts(store, "tiny", tmp_path / "export.json", "label-studio")
    assert (result.added, result.unchanged) == (len(expected), 0)
    got = labels.current(store, "tiny")
    assert {(r.annotator, r.query_id, r.doc_id): r.label for r in got.itertuples()} == expected
    # each verdict carries its annotation's time, as the store keeps times (UTC, milliseconds)
    times = {}
    for task in download.json():
        for annotation in task["annotations"]:
            for item in annotation["result"]:
                doc_id = task["data"]["candidates"][int(item["from_name"].removeprefix("verdict_"))]["doc_id"]
                times[annotation["completed_by"]["email"], task["data"]["query_id"], doc_id] = \
                    annotation["updated_at"][:23] + "+00:00"
    assert {(r.annotator, r.query_id, r.doc_id): r.created_at for r in got.itertuples()} == times

    # the quick export (GET …/export) names annotators by user id only
    quick = requests.get(f"{base}/api/projects/{project_id}/export", headers=admin, params={"exportType": "JSON"},
                         timeout=120)
    (tmp_path / "quick.json").write_bytes(quick.content)
    by_id = read_export(tmp_path / "quick.json", labels.known_ids(store, "tiny"))
    assert len(by_id) == len(expected) and {e["annotator"] for e in by_id} == {"label-studio:1", "label-studio:2"}
    store.close()
