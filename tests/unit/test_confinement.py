"""Property-based tests of core.validation.confined_path, the one check every page applies to a typed path when
the app is served ($NEGSPACE_ROOT): whatever is typed — traversal, absolute paths, links leading out, odd unicode —
the answer is a path inside the root or a one-line UserError, and nothing is ever created."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import UserError
from core.validation import (check_upload_size, configured_root, confined_path, max_upload_mb,
                             relative_to_root)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAME = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1,
               max_size=12).filter(lambda n: n not in (".", ".."))
ODD = st.text(st.characters(blacklist_categories=()), max_size=40)  # anything, lone surrogates and NUL included


@pytest.fixture(scope="module")
def layout():
    """root/ with a folder, a link inside, links leading out (to a folder, a file, nowhere, via a link chain) and
    a folder outside holding a file; built once, never changed by the tests."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        root, outside = base / "root", base / "outside"
        (root / "data").mkdir(parents=True)
        outside.mkdir()
        (outside / "secret.jsonl").write_text("{}\n")
        os.symlink(root / "data", root / "inner")
        os.symlink(outside, root / "escape")
        os.symlink(outside / "secret.jsonl", root / "secret.jsonl")
        os.symlink(base / "nowhere", root / "dangling")
        os.symlink(root / "escape", root / "chain")
        yield root, outside


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def outcome(text: str, root: Path, **kwargs) -> Path | None:
    """The confined path, or None for a UserError; any other exception fails the test."""
    try:
        path = confined_path(text, root, "workspace", **kwargs)
    except UserError as exc:
        assert "\n" not in str(exc) or "\n" in text
        return None
    assert path.is_absolute() and path.is_relative_to(root), path
    return path


@SETTINGS
@given(text=ODD)
def test_anything_typed_stays_inside_or_is_refused_and_creates_nothing(layout, text):
    root, outside = layout
    before = tree(root.parent)
    outcome(text, root)
    outcome(text, root, must_exist=True, kind="dir")
    assert tree(root.parent) == before


@SETTINGS
@given(parts=st.lists(st.one_of(NAME, st.just("..")), min_size=1, max_size=6).filter(lambda p: ".." in p),
       absolute=st.booleans())
def test_a_dotdot_component_is_always_refused(layout, parts, absolute):
    root, _ = layout
    text = ("/" if absolute else "") + "/".join(parts)
    with pytest.raises(UserError, match=r"'\.\.' is not allowed"):
        confined_path(text, root, "workspace")


@SETTINGS
@given(parts=st.lists(NAME, min_size=1, max_size=4))
def test_plain_names_land_inside_the_root_relative_or_absolute(layout, parts):
    root, _ = layout
    relative = "/".join(parts)
    if parts[0] in ("escape", "secret.jsonl", "dangling", "chain"):  # the links that lead out
        with pytest.raises(UserError, match="leads outside"):
            confined_path(relative, root, "workspace")
        return
    got = outcome(relative, root)
    if got is not None:  # None: e.g. a name the file system refuses, or a path through the file data/...
        assert got == outcome(str(root / relative), root)
        assert relative_to_root(str(got), root) == str(got.relative_to(root))


@SETTINGS
@given(link=st.sampled_from(["escape", "secret.jsonl", "dangling", "chain"]), rest=st.lists(NAME, max_size=3),
       absolute=st.booleans())
def test_links_that_lead_out_are_refused_without_saying_where(layout, link, rest, absolute):
    root, outside = layout
    text = "/".join([link, *rest])
    text = str(root / text) if absolute else text
    with pytest.raises(UserError, match="leads outside the server's folder") as caught:
        confined_path(text, root, "dataset path", must_exist=True)
    assert str(outside) not in str(caught.value) and "nowhere" not in str(caught.value)


@SETTINGS
@given(parts=st.lists(NAME, max_size=3))
def test_absolute_paths_outside_are_refused(layout, parts):
    root, outside = layout
    for base in (outside, root.parent, Path("/")):
        text = "/".join([str(base), *parts])
        if Path(os.path.realpath(text)).is_relative_to(root):
            continue  # e.g. /tmp/x/root/...: inside after all
        with pytest.raises(UserError):
            confined_path(text, root, "workspace")


def test_links_inside_the_root_are_followed(layout):
    root, _ = layout
    assert confined_path("inner", root, "workspace") == root / "data"
    assert confined_path(".", root, "workspace") == root
    assert confined_path(str(root), root, "workspace", must_exist=True, kind="dir") == root


def test_without_a_root_paths_are_not_confined(tmp_path):
    assert confined_path(str(tmp_path / ".." / "x"), None, "workspace") == tmp_path.parent / "x"


def test_the_root_and_upload_limit_come_from_the_environment(tmp_path):
    assert configured_root({}) is None
    assert configured_root({"NEGSPACE_ROOT": str(tmp_path)}) == tmp_path.resolve()
    with pytest.raises(UserError, match="NEGSPACE_ROOT.*no such"):
        configured_root({"NEGSPACE_ROOT": str(tmp_path / "missing")})
    assert not (tmp_path / "missing").exists()
    assert max_upload_mb({}) == 200 and max_upload_mb({"NEGSPACE_MAX_UPLOAD_MB": "5"}) == 5
    with pytest.raises(UserError, match="whole number of megabytes"):
        max_upload_mb({"NEGSPACE_MAX_UPLOAD_MB": "-1"})
    check_upload_size([3 * 2**20, 2 * 2**20], {"NEGSPACE_MAX_UPLOAD_MB": "5"})
    with pytest.raises(UserError, match="at most 5 MB"):
        check_upload_size([3 * 2**20, 2 * 2**20 + 1], {"NEGSPACE_MAX_UPLOAD_MB": "5"})
