from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.fixtures import make_beir  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def pytest_collection_modifyitems(config, items):
    """Skip shared-data tests when ../shared is absent; browser and shared-data tests are slow (the fast lane,
    ``-m "not slow"``, leaves them out)."""
    skip_shared = pytest.mark.skip(reason=f"{SHARED} not present")
    for item in items:
        if "shared_data" in item.keywords and not SHARED.is_dir():
            item.add_marker(skip_shared)
        if "browser" in item.keywords or "shared_data" in item.keywords:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def static_model(tmp_path_factory) -> Path:
    """A static-embedding model built from the bundled MiniLM's token embeddings (benchmarks/static_model.py):
    a real sentence-transformers model ~20x faster than MiniLM, for tests that mine whole real corpora."""
    from benchmarks.static_model import build

    return build(tmp_path_factory.mktemp("static") / "static-minilm")


@pytest.fixture
def cheap_hashes(monkeypatch) -> None:
    """Argon2 at its cheapest parameters: tests of accounts are about what is stored and checked, not about cost."""
    from argon2 import PasswordHasher
    from argon2.profiles import CHEAPEST

    from core import accounts

    monkeypatch.setattr(accounts, "HASHER", PasswordHasher.from_parameters(CHEAPEST))


@pytest.fixture
def beir_dir(tmp_path) -> Path:
    return make_beir(tmp_path / "tiny")


@pytest.fixture
def workspace(tmp_path):
    from core.workspace import open_workspace

    return open_workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    """One embedding cache for the session: the real model encodes each fixture text once."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="session")
def mined(tmp_path_factory):
    """A workspace with the tiny dataset imported and mined (top rule, depth 20) with the bundled model."""
    from core.datasets import ingest
    from core.mining import mine
    from core.rules import RuleSpec
    from core.workspace import open_workspace

    root = tmp_path_factory.mktemp("mined")
    ws = open_workspace(root / "ws")
    store = ws.store()
    ingest(store, make_beir(root / "tiny"), "tiny")
    result = mine(store, ws, "tiny", "train", depth=20, spec=RuleSpec("top", num_negatives=3))
    return ws, store, result


@pytest.fixture
def ws_root(mined, tmp_path) -> Path:
    """A private copy of the mined workspace, for tests that write verdicts through the app."""
    from tests.app_helpers import copy_workspace

    ws, _, _ = mined
    return copy_workspace(ws.root, tmp_path / "ws")


@pytest.fixture
def spawn(monkeypatch):
    """A spawn multiprocessing context whose children start from a bare ``__main__``.

    Spawned children re-run the parent's ``__main__``; after an AppTest that is app.py, which would make every
    child build the demo workspace. The children only need functions they import by module name.
    """
    import multiprocessing as mp
    import sys
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    return mp.get_context("spawn")


# py-join-dup's near-copy (same title, text differs by a full stop) and a near-paraphrase of q1.
MIRROR = {"_id": "py-join-mirror", "title": "posixpath.join",
          "text": "Join one or more path segments intelligently, inserting a '/' between them"}
TWIN_QUERY = {"_id": "q9", "text": "how can I join path components"}


@pytest.fixture(scope="session")
def twins_template(tmp_path_factory) -> tuple[Path, str]:
    """The tiny fixture plus a near-copy document and a near-identical query, mined at depth 20 and scored once
    per session; tests get private copies (``mined_twins``)."""
    import json

    from core.datasets import ingest
    from core.mining import mine
    from core.risk import ensure_risk
    from core.rules import RuleSpec
    from core.workspace import open_workspace

    tmp_path = tmp_path_factory.mktemp("twins")
    folder = make_beir(tmp_path / "tiny")
    with (folder / "corpus.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(MIRROR) + "\n")
    with (folder / "queries.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(TWIN_QUERY) + "\n")
    with (folder / "qrels" / "train.tsv").open("a", encoding="utf-8") as fh:
        fh.write("q9\tpy-join\t1\n")
    ws = open_workspace(tmp_path / "ws")
    store = ws.store()
    ingest(store, folder, "tiny")
    result = mine(store, ws, "tiny", "train", depth=20, spec=RuleSpec("top", num_negatives=3))
    ensure_risk(store, ws, result.run_id)
    store.close()
    return ws.root, result.run_id


@pytest.fixture
def mined_twins(twins_template, tmp_path):
    """A private copy of ``twins_template``: (workspace, store, run_id)."""
    from core.workspace import open_workspace
    from tests.app_helpers import copy_workspace

    root, run_id = twins_template
    ws = open_workspace(copy_workspace(root, tmp_path / "twins-ws"))
    return ws, ws.store(), run_id
