"""`python -m core users add|passwd|remove|list`: accounts from the command line (the machine's operator, never
restricted by roles), passwords from stdin or a prompt typed twice, never printed; every mistake one `error:`
line and exit 2. Property-based over names, roles and passwords given through stdin."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import accounts, roles
from core.errors import UserError
from core.store import Store
from tests.cli_helpers import ROOT, assert_user_error, run_cli, tree

PASSWORD = "correct horse battery"


def users(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "users", *map(str, args)], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_add_list_passwd_remove(tmp_path):
    ws = tmp_path / "ws"
    added = users("add", "ana", "--role", "annotator", "-w", ws, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0 and added.stdout == "added annotator ana\n", added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    assert users("add", "lead", "--role", "adjudicator", "-w", ws, stdin=f"{PASSWORD}\n{PASSWORD}\n").returncode == 0
    listed = users("list", "-w", ws)
    assert [line.split("\t")[:2] for line in listed.stdout.splitlines()] == [["ana", "annotator"],
                                                                            ["lead", "adjudicator"]]
    as_json = json.loads(users("list", "-w", ws, "--json").stdout)
    assert [sorted(row) for row in as_json] == [["created_at", "name", "role"]] * 2
    assert "argon2" not in listed.stdout + json.dumps(as_json)

    assert users("passwd", "ana", "-w", ws, "--password-stdin", stdin="a new password\r\n").returncode == 0
    store = Store(ws / "negspace.sqlite")
    assert accounts.verify(store, "ana", "a new password") is not None  # the line ending is not part of it
    assert users("remove", "lead", "-w", ws).stdout == "removed lead\n"
    assert [a.name for a in accounts.listing(store)] == ["ana"]
    store.close()


@pytest.mark.parametrize("args, stdin, needles", [
    (("add", "ana", "--role", "boss", "--password-stdin"), PASSWORD, ["unknown role 'boss'"]),
    (("add", "llm:gpt", "--role", "admin", "--password-stdin"), PASSWORD, ["reserved for LLM judges"]),
    (("add", "ana", "--role", "admin", "--password-stdin"), "short\n", ["too short"]),
    (("add", "ana", "--role", "admin"), f"{PASSWORD}\nsomething else\n", ["the two passwords differ"]),
    (("add", "ana", "--role", "admin"), "", ["no password given"]),
    (("add", "ana", "--password-stdin"), PASSWORD, ["--role"]),
])
def test_a_refused_add_leaves_no_workspace(tmp_path, args, stdin, needles):
    ws = tmp_path / "ws"
    result = users(*args, "-w", ws, stdin=stdin)
    assert result.returncode == 2 and result.stderr.splitlines()[-1].startswith("error: ")
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1
    for needle in needles:
        assert needle in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert tree(tmp_path) == []


def test_errors_on_existing_workspaces(tmp_path):
    ws = tmp_path / "ws"
    users("add", "ana", "--role", "annotator", "-w", ws, "--password-stdin", stdin=PASSWORD)
    assert_user_error(users("add", "ana", "--role", "admin", "-w", ws, "--password-stdin", stdin=PASSWORD),
                      "already exists")
    assert_user_error(users("passwd", "bob", "-w", ws, "--password-stdin", stdin=PASSWORD), "no account 'bob'")
    assert_user_error(users("remove", "bob", "-w", ws), "no account 'bob'")
    assert_user_error(users("list", "-w", tmp_path / "none"), "no workspace")
    assert not (tmp_path / "none").exists()
    assert_user_error(run_cli("users", "frobnicate"), "No such command")


# -- properties, in-process (the same main() and exit contract, without a process per example) ------------------
def main(args: list[str], stdin: str) -> tuple[int, str, str]:
    """Run ``python -m core ARGS`` in this process with ``stdin``: (exit code, stdout, stderr)."""
    from core.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_stdin = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["core", *args], io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli_main()
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        sys.argv, sys.stdin = old_argv, old_stdin
    return code, out.getvalue(), err.getvalue()


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LINE = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=40)


def expect(check, *args) -> str | None:
    """The UserError message core gives for these arguments, or None when they are fine."""
    try:
        check(*args)
    except UserError as exc:
        return str(exc)
    return None


@PROPERTY
@given(name=st.text(max_size=30), role=st.one_of(st.sampled_from(roles.ROLES), st.text(max_size=12)),
       password=LINE)
def test_any_name_role_and_password_is_an_account_or_one_error_line(cheap_hashes, name, role, password):
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        code, out, err = main(["users", "add", name, "--role", role, "-w", str(ws), "--password-stdin"],
                              password + "\n")
        problem = (expect(accounts.check_account_name, name) or expect(roles.check_role, role)
                   or expect(accounts.check_new_password, password))
        if name.startswith("-") or not name:  # typer reads it as an option, or misses the argument
            assert code == 2 and err.count("error:") == 1
            return
        if problem is not None:
            assert (code, out) == (2, "") and err == f"error: {' '.join(problem.splitlines())}\n", err
            assert not ws.exists()
            return
        assert code == 0, err
        assert out == f"added {role} {name}\n" and err == ""
        code, listed, _ = main(["users", "list", "-w", str(ws), "--json"], "")
        assert json.loads(listed)[0]["name"] == name and json.loads(listed)[0]["role"] == role
        store = Store(ws / "negspace.sqlite")
        try:
            assert accounts.verify(store, name, password).name == name  # the password exactly as given
            assert accounts.verify(store, name, password + " ") is None
        finally:
            store.close()


@PROPERTY
@given(password=LINE)
def test_passwd_from_stdin_takes_the_line_exactly(cheap_hashes, password):
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        assert main(["users", "add", "ana", "--role", "admin", "-w", str(ws), "--password-stdin"], PASSWORD)[0] == 0
        code, out, err = main(["users", "passwd", "ana", "-w", str(ws), "--password-stdin"], password + "\n")
        store = Store(ws / "negspace.sqlite")
        try:
            if expect(accounts.check_new_password, password) is None:
                assert code == 0 and accounts.verify(store, "ana", password) is not None
            else:
                assert code == 2 and err.startswith("error: password") and err.count("\n") == 1
                assert accounts.verify(store, "ana", PASSWORD) is not None  # unchanged
        finally:
            store.close()
