"""The CLI's failure contract, end to end in a subprocess: a usage error, a user error, Ctrl-C or the machine
failing (disk full, read-only, damaged store, impossible path) prints one ``error:`` line, exits 2 (130 for
Ctrl-C), shows no traceback and leaves the workspace exactly as it was, creating no folder or file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.datasets import ingest
from core.errors import UserError
from core.workspace import MAX_ROOT_BYTES, open_workspace
from tests.cli_helpers import ROOT, assert_user_error, run_cli, run_cli_signalled, tree, workspace_state
from tests.fixtures import write_jsonl


@pytest.fixture
def tiny_ws(tmp_path, beir_dir) -> Path:
    """A workspace holding the tiny dataset (imported in-process: no model, no mining)."""
    store = open_workspace(tmp_path / "ws").store()
    ingest(store, beir_dir, "tiny")
    store.close()
    return tmp_path / "ws"


def pairs_file(path: Path, rows: int) -> Path:
    write_jsonl(path, [{"anchor": f"query {i} on topic {i % 97}", "positive": f"document {i} " + "lorem ipsum " * 12}
                       for i in range(rows)])
    return path


def test_usage_errors_are_one_line_and_exit_2(tiny_ws):
    for args, needle in ((("nope",), "No such command 'nope'"),
                         (("mine", "--workspace", tiny_ws, "--dataset", "tiny", "--depth", "abc"), "'--depth'"),
                         (("mine", "--workspace", tiny_ws), "'--dataset'"),
                         (("labels", "import", "--workspace", tiny_ws, "--dataset", "tiny"), "argument 'file'")):
        assert_user_error(run_cli(*args), needle)
    # no command at all: typer's no_args_is_help prints the help on stdout and exits 2, as click does
    bare = run_cli()
    assert (bare.returncode, bare.stderr) == (2, "") and "Usage:" in bare.stdout
    help_ = run_cli("--help")
    assert help_.returncode == 0 and "ingest" in help_.stdout and help_.stderr == ""


def test_ctrl_c_mid_import_exits_130_and_rolls_back(tiny_ws, tmp_path):
    """Ctrl-C inside the import's write transaction (the corpus already staged) exits 130 and changes nothing."""
    before = workspace_state(tiny_ws)
    big = pairs_file(tmp_path / "big.jsonl", 3_000)
    # SIGINT on entering the body of save_staged's write transaction
    result = run_cli_signalled(("core/store/datasets.py", "run", 0), signal.SIGINT,
                               "ingest", big, "--workspace", tiny_ws, "--name", "big")
    assert_user_error(result, "interrupted", code=130)
    assert workspace_state(tiny_ws) == before


COMMANDS_NEEDING_DATA = [
    ("runs",), ("diff", "r1", "r2"), ("labels", "export", "--dataset", "tiny", "--out", "{tmp}/out.tsv"),
    ("labels", "import", "{tmp}/l.tsv", "--dataset", "tiny"), ("mine", "--dataset", "tiny"),
    ("rerule", "--run", "r1"), ("risk", "--run", "r1", "--out", "{tmp}/risk.tsv"),
    ("export", "--run", "r1", "--format", "flag", "--out", "{tmp}/exp"), ("backup", "--out", "{tmp}/b.sqlite"),
    ("train", "--run", "r1", "--out", "{tmp}/model")]


@pytest.mark.parametrize("command, target", [(c, ("new/ws", "empty")[i % 2])
                                             for i, c in enumerate(COMMANDS_NEEDING_DATA)])
def test_commands_needing_data_refuse_a_missing_workspace_and_create_nothing(command, target, tmp_path):
    """Pointed at a folder that does not exist, or exists without a store, every command but ingest refuses."""
    (tmp_path / "l.tsv").write_text("query-id\tcorpus-id\tlabel\nq1\tpy-join\ttrue_negative\n")
    (tmp_path / "empty").mkdir()
    listing = tree(tmp_path)
    cause = "no negspace.sqlite" if target == "empty" else "does not exist"
    res = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in command], "--workspace", tmp_path / target)
    assert_user_error(res, f"no workspace at {tmp_path / target}", cause)
    assert tree(tmp_path) == listing


def test_rejected_ingest_leaves_no_workspace_behind(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": \n')
    (tmp_path / "empty").mkdir()
    listing = tree(tmp_path)
    assert_user_error(run_cli("ingest", bad, "--workspace", tmp_path / "new" / "ws", "--name", "x"), "bad.jsonl:2")
    assert_user_error(run_cli("ingest", bad, "--workspace", tmp_path / "empty", "--name", "x"), "bad.jsonl:2")
    assert tree(tmp_path) == listing


def test_a_damaged_store_is_named_and_kept(tiny_ws):
    db = tiny_ws / "negspace.sqlite"
    intact = db.read_bytes()
    for damaged, cause in ((bytes(range(256)) * (len(intact) // 256), "not a SQLite database"),
                           (intact[:len(intact) // 2], "damaged database")):
        db.write_bytes(damaged)
        listing = tree(tiny_ws)
        assert_user_error(run_cli("runs", "--workspace", tiny_ws), db, cause)
        assert db.read_bytes() == damaged and tree(tiny_ws) == listing


def test_a_file_where_a_folder_belongs_is_named(tiny_ws, tmp_path, beir_dir):
    before = workspace_state(tiny_ws)
    note = tmp_path / "notes.txt"
    note.write_text("a file, not a folder\n")
    for args in (("labels", "export", "--workspace", tiny_ws, "--dataset", "tiny", "--out", note / "sub.tsv"),
                 ("backup", "--workspace", tiny_ws, "--out", note / "sub.sqlite")):
        assert_user_error(run_cli(*args), f"{note} is a file, not a folder")
    shutil.rmtree(tiny_ws / "embeddings")
    (tiny_ws / "embeddings").write_text("")
    assert_user_error(run_cli("ingest", beir_dir, "--workspace", tiny_ws, "--name", "again"),
                      f"{tiny_ws / 'embeddings'} exists and is not a folder")
    (tiny_ws / "embeddings").unlink()
    (tiny_ws / "embeddings").mkdir()
    assert workspace_state(tiny_ws) == before


def test_a_workspace_path_too_long_for_sqlite_creates_nothing(tmp_path, beir_dir):
    parts, length = [], len(str(tmp_path))
    while length <= MAX_ROOT_BYTES:  # folders of 100 characters: each name is legal, the whole path is not
        parts.append("d" * 100)
        length += 101
    deep, listing = tmp_path.joinpath(*parts), tree(tmp_path)
    assert_user_error(run_cli("ingest", beir_dir, "--workspace", deep, "--name", "tiny"), "path too long")
    assert tree(tmp_path) == listing


def test_full_disk_rolls_back_names_the_store_and_keeps_it_usable(tiny_ws, tmp_path):
    """SQLite rolls a transaction back itself on SQLITE_FULL; the store's own ROLLBACK must not then hide the
    cause. A page quota is the disk filling up, in-process; the next test fills a real file system."""
    store = open_workspace(tiny_ws, create=False).store()
    before = store.table_checksums()
    store.conn.execute(f"PRAGMA max_page_count = {store.scalar('PRAGMA page_count') + 2}")
    with pytest.raises(UserError, match=f"^{re.escape(str(store.path))}: disk full$"):
        ingest(store, pairs_file(tmp_path / "big.jsonl", 3000), "big")
    assert store.table_checksums() == before
    store.conn.execute("PRAGMA max_page_count = 1073741823")
    assert ingest(store, tmp_path / "big.jsonl", "big").status == "imported"  # no transaction left open
    store.close()


def run_cli_in_mount_namespace(script: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``script`` (sh; ``"$PYTHON" -m core`` is the CLI) in a private user and mount namespace, where mounting
    a small tmpfs or a read-only bind needs no privileges; skips where the kernel refuses such namespaces."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("user and mount namespaces are not available here")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHON": sys.executable})


def test_full_file_system_is_one_line_and_rolls_back(tiny_ws, tmp_path):
    before = workspace_state(tiny_ws)
    big, mnt, after = pairs_file(tmp_path / "big.jsonl", 5000), tmp_path / "mnt", tmp_path / "after"
    mnt.mkdir()
    ws, q = mnt / "ws", shlex.quote
    res = run_cli_in_mount_namespace(  # a 512 KiB file system holding the 124 KiB workspace: 1.4 MB will not fit
        f"mount -t tmpfs -o size=512k tmpfs {q(str(mnt))} && cp -a {q(str(tiny_ws))} {q(str(ws))} && "
        f"\"$PYTHON\" -m core ingest {q(str(big))} --workspace {q(str(ws))} --name big; rc=$?; "
        f"cp -a {q(str(ws))} {q(str(after))}; exit $rc")
    assert_user_error(res, f"{ws / 'negspace.sqlite'}: disk full")
    assert workspace_state(after) == before


def test_read_only_file_system_is_one_line_and_changes_nothing(tiny_ws, beir_dir):
    before = workspace_state(tiny_ws)
    ws, q = str(tiny_ws), shlex.quote
    res = run_cli_in_mount_namespace(
        f"mount --bind {q(ws)} {q(ws)} && mount -o remount,bind,ro {q(ws)} && "
        f"exec \"$PYTHON\" -m core ingest {q(str(beir_dir))} --workspace {q(ws)} --name again")
    assert_user_error(res, f"{tiny_ws}/negspace.sqlite: read-only")
    assert workspace_state(tiny_ws) == before


def test_embedding_cache_failures_are_one_line_and_keep_whole_batches(tmp_path):
    import numpy as np

    from core.encoders import EmbeddingCache

    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(UserError, match=re.escape(f"{damaged}: not a SQLite database")):
        EmbeddingCache(damaged, 4).get([b"k"])
    cache = EmbeddingCache(tmp_path / "cache.sqlite", 4)
    cache.put([b"a", b"b"], np.ones((2, 4), dtype=np.float32))
    pages = cache.conn.execute("PRAGMA page_count").fetchone()[0]
    cache.conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # the disk fills up during the next batch
    keys = [i.to_bytes(4, "big") for i in range(2000)]
    with pytest.raises(UserError, match="cache.sqlite: disk full"):
        cache.put(keys, np.ones((len(keys), 4), dtype=np.float32))
    assert len(cache) == 2 and set(cache.get([b"a", b"b", keys[0]])) == {b"a", b"b"}  # no half batch


def test_a_broken_model_folder_is_a_user_error_but_a_bug_keeps_its_type(tmp_path, monkeypatch):
    import sentence_transformers

    from core import encoders

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # no model_type: transformers cannot tell what it is
    (folder / "modules.json").write_text("not json")
    with pytest.raises(UserError, match="cannot be loaded as a sentence-transformers model"):
        encoders._load_st_model(folder)

    def bug(*args, **kwargs):
        raise TypeError("a bug in the loading code")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", bug)
    with pytest.raises(TypeError, match="a bug in the loading code"):
        encoders._load_st_model(tmp_path / "other")


def test_a_device_torch_cannot_see_is_one_line_and_mines_nothing(tiny_ws, beir_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no CUDA device, even on a machine that has one
    before = workspace_state(tiny_ws)
    cause = "no CUDA device is visible to torch (torch.cuda.is_available() is False); use --device cpu or auto"
    assert_user_error(run_cli("mine", "--workspace", tiny_ws, "--dataset", "tiny", "--device", "cuda"),
                      f"--device cuda: {cause}")
    assert_user_error(run_cli("train", "--workspace", tiny_ws, "--run", "any", "--out", tmp_path / "model",
                              "--device", "cuda:1"), f"--device cuda:1: {cause}")
    assert_user_error(run_cli("evaluate", "--model", "default", "--beir", beir_dir, "--device", "cuda"), cause)
    assert workspace_state(tiny_ws) == before and not (tmp_path / "model").exists()
