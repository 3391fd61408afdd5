"""rsync placement rules (blit_shared.layout) and SRC/DST parsing (blit_client.endpoints)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blit_client.endpoints import DEFAULT_PORT, Local, Remote, parse
from blit_shared.errors import BlitError, UsageError
from blit_shared.layout import Placement, existing_kind, place
from blit_shared.manifest import DIR, FILE

# -- place() ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dst", "dst_kind", "contents", "want"), [
    # SRC/ : the contents go into DST, whether it exists or not.
    ("out", DIR, True, Placement("out")),
    ("out", None, True, Placement("out")),
    ("out/", None, True, Placement("out")),
    # SRC : nests as DST/SRC when DST is a directory (or is spelled as one) ...
    ("out", DIR, False, Placement("out/src")),
    ("out/", DIR, False, Placement("out/src")),
    ("out/", None, False, Placement("out/src")),
    # ... else DST becomes the copy.
    ("out", None, False, Placement("out")),
    ("/abs/out", None, False, Placement("/abs/out")),
    ("/", DIR, False, Placement("/src")),
])
def test_place_directory_source(dst: str, dst_kind: str | None, contents: bool,
                                want: Placement) -> None:
    assert place(dst, dst_kind, src_kind=DIR, src_name="src", contents=contents) == want


@pytest.mark.parametrize(("dst", "dst_kind", "want"), [
    ("dir", DIR, Placement("dir", "f.txt")),         # into an existing dir
    ("dir/", None, Placement("dir", "f.txt")),       # into a dir to be created
    ("new.txt", None, Placement(".", "new.txt")),    # a new name in the cwd
    ("a/b/new.txt", None, Placement("a/b", "new.txt")),
    ("old.txt", FILE, Placement(".", "old.txt")),    # overwrite an existing file
    ("/abs/x", None, Placement("/abs", "x")),
])
def test_place_single_file(dst: str, dst_kind: str | None, want: Placement) -> None:
    assert place(dst, dst_kind, src_kind=FILE, src_name="f.txt", contents=False) == want


def test_existing_kind(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    os.symlink("d", tmp_path / "to_d")
    os.symlink("f", tmp_path / "to_f")
    os.symlink("nowhere", tmp_path / "dangling")
    assert existing_kind(str(tmp_path / "d")) == DIR
    assert existing_kind(str(tmp_path / "to_d")) == DIR  # rsync follows a destination link
    assert existing_kind(str(tmp_path / "f")) == "f"
    assert existing_kind(str(tmp_path / "to_f")) == "f"
    assert existing_kind(str(tmp_path / "dangling")) == "f"
    assert existing_kind(str(tmp_path / "missing")) is None


# -- endpoints.parse() --------------------------------------------------------------------------


@pytest.mark.parametrize(("arg", "want"), [
    ("host:9031:/mod/path", Remote("host", 9031, "mod", "path", False)),
    ("host:8000:/mod/a/b/", Remote("host", 8000, "mod", "a/b", True)),
    ("host:/mod/path", Remote("host", DEFAULT_PORT, "mod", "path", False)),
    ("host.example.com:/mod/x", Remote("host.example.com", 9031, "mod", "x", False)),
    ("10.0.0.1:1:/m/p", Remote("10.0.0.1", 1, "m", "p", False)),
    ("[::1]:9031:/m/p", Remote("::1", 9031, "m", "p", False)),
    ("[::1]:/m/p/", Remote("::1", 9031, "m", "p", True)),
    ("host:/mod", Remote("host", 9031, "mod", "", True)),     # a module root means its contents
    ("host:/mod/", Remote("host", 9031, "mod", "", True)),
    ("host:9031", Remote("host", 9031, None, "", False)),     # the daemon itself (ls)
    ("host:9031:", Remote("host", 9031, None, "", False)),
    ("host:9031:/", Remote("host", 9031, None, "", False)),
    ("blit://host:9031/m/p", Remote("host", 9031, "m", "p", False)),
    ("blit://host/m/p/", Remote("host", DEFAULT_PORT, "m", "p", True)),
    ("blit://[::1]:7000/m", Remote("::1", 7000, "m", "", True)),
    ("blit://host/m/with%20space", Remote("host", 9031, "m", "with space", False)),
])
def test_parse_remote(arg: str, want: Remote) -> None:
    assert parse(arg) == want


@pytest.mark.parametrize("arg", [
    "plain", "rel/path", "rel/path/", "/abs/path", "/abs/path/", ".", "./", "/",
    "./host:/x", "ünï cödé/fïlé", "with space", "name:with:colons", "a:b",
])
def test_parse_local(arg: str) -> None:
    assert parse(arg) == Local(arg)


def test_remote_base_url_and_str() -> None:
    r = parse("[::1]:9031:/m/p/")
    assert isinstance(r, Remote)
    assert r.base_url == "http://[::1]:9031"
    assert str(r) == "[::1]:9031:/m/p/"
    assert parse(str(r)) == r
    assert parse("h:/m/p").base_url == "http://h:9031"  # type: ignore[union-attr]


@pytest.mark.parametrize("arg", ["", "host:0:/m", "host:99999:/m", "blit://", "blit:///m"])
def test_parse_usage_errors(arg: str) -> None:
    with pytest.raises(UsageError):
        parse(arg)


@pytest.mark.parametrize("arg", ["host:/m/../etc", "host:/m/a/./b", "blit://h/m/%2e%2e/x"])
def test_parse_rejects_unsafe_remote_paths(arg: str) -> None:
    with pytest.raises(BlitError):
        parse(arg)
