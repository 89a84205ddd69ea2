from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.fixtures import make_beir  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def pytest_collection_modifyitems(config, items):
    skip_shared = pytest.mark.skip(reason=f"{SHARED} not present")
    for item in items:
        if "shared_data" in item.keywords and not SHARED.is_dir():
            item.add_marker(skip_shared)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    return SHARED


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
