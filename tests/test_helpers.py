"""Self-tests of tests/helpers.py: the tree has what it promises, and the comparison has teeth."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import assert_same_tree, blit, make_tree, snapshot, walk


def test_make_tree_has_every_kind_of_entry(small_tree: Path) -> None:
    tree = walk(small_tree)
    kinds = {k: {p for p, n in tree.items() if n.kind == k} for k in ("f", "d", "l")}
    assert max(p.count("/") for p in kinds["d"]) >= 3
    empty = [p for p in kinds["d"] if not any(q.startswith(p + "/") for q in tree) and p]
    assert {"empty", "nest_empty/x/y"} <= set(empty)
    targets = {tree[p].target for p in kinds["l"]}
    assert "/etc/hostname" in targets  # absolute
    assert not os.path.exists(small_tree / "dangling")  # dangling
    assert os.path.isdir(small_tree / "a" / "link_to_dir")  # a relative link to a dir
    assert os.path.isfile(small_tree / "link_to_file")
    assert "ünï cödé/fïlé ñame.txt" in kinds["f"] and "with space" in kinds["d"]
    assert {tree[p].size for p in kinds["f"]} >= {0}
    assert {0o600, 0o755, 0o644, 0o400} <= {tree[p].mode for p in kinds["f"]}
    small = [p for p in kinds["f"] if p.startswith("small/")]
    assert len(small) == 120 and len({p.rpartition("/")[0] for p in small}) == 50
    assert all(1024 <= tree[p].size <= 16 * 1024 for p in small)
    assert tree["big/big.bin"].size == 20 << 20
    assert all(tree[p].mtime_ns % 1_000_000_000 for p in kinds["d"])  # explicit ns mtimes
    assert all(tree[p].mtime_ns % 1_000_000_000 for p in kinds["l"])


def test_make_tree_is_deterministic_in_shape(tmp_path: Path) -> None:
    make_tree(tmp_path / "one", small_files=30, big_bytes=1000)
    make_tree(tmp_path / "two", small_files=30, big_bytes=1000)
    a, b = walk(tmp_path / "one"), walk(tmp_path / "two")
    assert a.keys() == b.keys()
    for p in a:
        assert (a[p].kind, a[p].size, a[p].mode, a[p].target) == (
            b[p].kind, b[p].size, b[p].mode, b[p].target), p
        if a[p].kind != "f":  # dirs and links all get explicit mtimes
            assert a[p].mtime_ns == b[p].mtime_ns, p
    assert (tmp_path / "one" / "a" / "top.txt").read_bytes() == (
        tmp_path / "two" / "a" / "top.txt").read_bytes()


def _mtime(path: Path, delta: int) -> None:
    st = os.lstat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + delta), follow_symlinks=False)


def _flip_byte(path: Path) -> None:
    st = os.lstat(path)
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _in_place(path: Path, change: Callable[[Path], None]) -> None:
    """Apply `change` to `path`, then restore its own and its parent's mtime."""
    parent = os.lstat(path.parent)
    st = os.lstat(path)
    change(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    os.utime(path.parent, ns=(parent.st_atime_ns, parent.st_mtime_ns))


def _retarget(path: Path) -> None:
    path.unlink()
    os.symlink("elsewhere", path)


def _to_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


MUTATIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "content": (lambda r: _flip_byte(r / "a" / "top.txt"), "a/top.txt: content"),
    "file-mode": (lambda r: os.chmod(r / "a" / "top.txt", 0o604), "a/top.txt: mode"),
    "file-mtime": (lambda r: _mtime(r / "a" / "top.txt", 1), "a/top.txt: mtime"),
    "dir-mode": (lambda r: os.chmod(r / "empty", 0o700), "empty: mode"),
    "dir-mtime": (lambda r: _mtime(r / "nest_empty" / "x", 1), "nest_empty/x: mtime"),
    "root-mtime": (lambda r: _mtime(r, -5), ".: mtime"),
    "link-mtime": (lambda r: _mtime(r / "dangling", 1), "dangling: mtime"),
    "link-target": (lambda r: _in_place(r / "dangling", _retarget), "dangling: link target"),
    "missing": (lambda r: (r / "zero.bin").unlink(), "missing"),
    "extra": (lambda r: (r / "extra").write_text("x"), "unexpected"),
    "kind": (lambda r: _in_place(r / "zero.bin", _to_dir), "zero.bin: kind"),
    "temp": (lambda r: (r / "a" / ".blit-tmp.top.txt.0123abcd").write_text(""), "temp files"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_assert_same_tree_catches(name: str, small_tree: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small_tree, copy, symlinks=True)
    assert_same_tree(small_tree, copy)
    mutate, message = MUTATIONS[name]
    mutate(copy)
    with pytest.raises(AssertionError, match=message):
        assert_same_tree(small_tree, copy)


def test_snapshot_sees_every_change(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    before = snapshot(tmp_path)
    _mtime(tmp_path / "f", 1)
    assert snapshot(tmp_path) != before
    assert snapshot(tmp_path / "missing") == {}


def test_blit_helper_is_non_interactive_and_merges_env(tmp_path: Path) -> None:
    r = blit("version", env={"BLIT_TEST_MARKER": "1"}, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("blit ")
    r = blit("mirror", "a", "b", cwd=tmp_path)  # stdin is not a TTY: mirror refuses without -y
    assert r.returncode == 3
