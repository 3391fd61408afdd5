"""Unit tests of the scan (blit_shared.manifest.scan), excludes and the manifest wire form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from blit_shared.errors import ProtocolError
from blit_shared.excludes import Excludes
from blit_shared.manifest import DIR, FILE, LINK, Entry, Manifest, scan

NS = 1_700_000_000_987_654_321


def _tree(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "f.txt").write_bytes(b"hello")
    os.chmod(root / "d" / "f.txt", 0o640)
    os.utime(root / "d" / "f.txt", ns=(NS, NS))
    (root / "zero").write_bytes(b"")
    os.chmod(root / "zero", 0o755)
    os.symlink("d", root / "to_dir")
    os.symlink("d/f.txt", root / "to_file")
    os.symlink("/nonexistent/abs", root / "abs")
    os.utime(root / "abs", ns=(NS + 1, NS + 1), follow_symlinks=False)
    os.chmod(root / "d" / "e", 0o711)
    os.utime(root / "d" / "e", ns=(NS + 2, NS + 2))


def test_scan_kinds_sizes_modes_mtimes(tmp_path: Path) -> None:
    _tree(tmp_path)
    m = scan(str(tmp_path))
    by = m.by_path()
    assert m.complete and m.errors == []
    assert set(by) == {"", "d", "d/e", "d/f.txt", "zero", "to_dir", "to_file", "abs"}
    assert by[""].kind == DIR
    f = by["d/f.txt"]
    assert (f.kind, f.size, f.mode, f.mtime_ns) == (FILE, 5, 0o640, NS)
    assert (by["zero"].kind, by["zero"].size, by["zero"].mode) == (FILE, 0, 0o755)
    e = by["d/e"]
    assert (e.kind, e.size, e.mode, e.mtime_ns) == (DIR, 0, 0o711, NS + 2)
    assert by["abs"].kind == LINK and by["abs"].target == "/nonexistent/abs"
    assert by["abs"].mtime_ns == NS + 1
    assert by["to_dir"].target == "d" and by["to_file"].target == "d/f.txt"
    assert all(x.target is None for x in m.entries if x.kind != LINK)
    assert all(x.digest is None for x in m.entries)


def test_scan_does_not_follow_links(tmp_path: Path) -> None:
    _tree(tmp_path)
    paths = [e.path for e in scan(str(tmp_path)).entries]
    assert not any(p.startswith(("to_dir/", "abs/")) for p in paths)
    assert scan(str(tmp_path)).by_path()["to_dir"].size == 0


def test_scan_parents_come_before_children(tmp_path: Path) -> None:
    for rel in ("b/x/1", "a/y/z/2", "a/3", "c"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    seen: set[str] = set()
    for e in scan(str(tmp_path)).entries:
        parent = e.path.rpartition("/")[0]
        assert e.path == "" or parent in seen, f"{e.path} before its parent"
        seen.add(e.path)


def test_scan_missing_root_is_empty_and_complete(tmp_path: Path) -> None:
    m = scan(str(tmp_path / "nope"))
    assert m.entries == [] and m.complete


def test_scan_single_file_and_link(tmp_path: Path) -> None:
    _tree(tmp_path)
    m = scan(str(tmp_path / "d" / "f.txt"), name="renamed")
    assert [(e.path, e.kind, e.size, e.mtime_ns) for e in m.entries] == [
        ("renamed", FILE, 5, NS)]
    m = scan(str(tmp_path / "to_dir"), name="to_dir")
    assert [(e.path, e.kind, e.target) for e in m.entries] == [("to_dir", LINK, "d")]
    m = scan(str(tmp_path / "to_file"))
    assert [(e.path, e.kind, e.target) for e in m.entries] == [("to_file", LINK, "d/f.txt")]


def test_scan_root_link_to_dir_is_walked_as_the_dir(tmp_path: Path) -> None:
    """`SRC/` through a link, or a DST that is a link: the tree is the directory it names."""
    _tree(tmp_path)
    via = scan(str(tmp_path / "to_dir"))
    direct = scan(str(tmp_path / "d"))
    assert via.entries == direct.entries
    assert {e.path for e in via.entries} == {"", "e", "f.txt"}


def test_scan_skips_fifo_inside_tree_but_flags_fifo_root(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "f").write_text("x")
    m = scan(str(tmp_path))
    assert {e.path for e in m.entries} == {"", "f"} and m.complete
    single = scan(str(tmp_path / "pipe"))
    assert single.entries == [] and not single.complete


def test_scan_reports_names_that_cannot_travel_and_keeps_the_rest(tmp_path: Path) -> None:
    """Names a manifest cannot carry are scan errors (the scan is then incomplete, so a
    mirror deletes nothing); long, dotted and non-ASCII UTF-8 names are ordinary entries."""
    deep = tmp_path / "x" / ("d" * 200) / ("e" * 200) / ("f" * 200) / ("g" * 200) / ("h" * 200) \
        / ("i" * 200)
    deep.mkdir(parents=True)
    (deep / "long.txt").write_bytes(b"1")
    kept = {"n" * 255, ".hidden", "é-ü", "日本語" * 20, "a b", ".blit-tmpx"}
    for name in kept:
        (tmp_path / "x" / name).write_bytes(b"2")
    (tmp_path / "x" / "a\\b").write_bytes(b"3")
    os.mkdir(os.path.join(os.fsencode(tmp_path), b"x", b"bad\xff"))
    (tmp_path / "x" / ".blit-tmp.1.a.f").write_bytes(b"4")
    m = scan(str(tmp_path / "x"))
    paths = set(m.by_path())
    assert {n for n in kept} <= paths
    assert str(deep.relative_to(tmp_path / "x") / "long.txt") in paths
    assert "a\\b" not in paths and not any(p.startswith("bad") for p in paths)
    assert sorted(m.errors) == ["'a\\\\b': name cannot be transferred",
                                "'bad\\udcff': name cannot be transferred"]
    assert m.temps == [".blit-tmp.1.a.f"]
    assert not m.complete


def test_scan_checksum_fills_digests(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "same").write_bytes(b"hello")
    by = scan(str(tmp_path), checksum=True).by_path()
    assert by["d/f.txt"].digest is not None
    assert by["d/f.txt"].digest == by["same"].digest
    assert by["zero"].digest != by["same"].digest
    assert by["d"].digest is None and by["to_file"].digest is None
    one = scan(str(tmp_path / "same"), checksum=True)
    assert one.entries[0].digest == by["same"].digest


# -- excludes (gitignore semantics) -------------------------------------------------------------

def _exclude_tree(root: Path) -> None:
    for rel in ("keep.txt", "x.log", "keep.log", "sub/y.log", "sub/ok.txt", "build/out.o",
                "sub/build/deep.o", "src/build", "top.txt", "sub/top.txt", "cache/a/b.txt",
                "docs/a/tmp/z.txt", "docs/tmp/q.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "emptydir").mkdir()


def _scan_paths(root: Path, *patterns: str) -> set[str]:
    return {e.path for e in scan(str(root), Excludes(patterns)).entries}


def test_exclude_glob_matches_at_any_depth(tmp_path: Path) -> None:
    _exclude_tree(tmp_path)
    got = _scan_paths(tmp_path, "*.log")
    assert not {"x.log", "keep.log", "sub/y.log"} & got
    assert {"keep.txt", "sub/ok.txt"} <= got


def test_exclude_dir_pattern_matches_only_dirs(tmp_path: Path) -> None:
    _exclude_tree(tmp_path)
    got = _scan_paths(tmp_path, "build/")
    assert not {"build", "build/out.o", "sub/build", "sub/build/deep.o"} & got
    assert "src/build" in got  # a file named build is not a directory
    assert "src" in got


def test_exclude_anchored_pattern(tmp_path: Path) -> None:
    _exclude_tree(tmp_path)
    got = _scan_paths(tmp_path, "/top.txt")
    assert "top.txt" not in got and "sub/top.txt" in got


def test_exclude_negation(tmp_path: Path) -> None:
    _exclude_tree(tmp_path)
    got = _scan_paths(tmp_path, "*.log", "!keep.log")
    assert "keep.log" in got
    assert not {"x.log", "sub/y.log"} & got


def test_exclude_dir_drops_whole_subtree_and_negation_cannot_reinclude(tmp_path: Path) -> None:
    _exclude_tree(tmp_path)
    got = _scan_paths(tmp_path, "cache/", "!cache/a/b.txt")
    assert not any(p == "cache" or p.startswith("cache/") for p in got)


def test_exclude_double_star(tmp_path: Path) -> None:
    _exclude_tree(tmp_path)
    got = _scan_paths(tmp_path, "docs/**/tmp")
    assert not {"docs/a/tmp", "docs/a/tmp/z.txt", "docs/tmp", "docs/tmp/q.txt"} & got
    assert {"docs", "docs/a"} <= got


def test_no_excludes_keeps_everything(tmp_path: Path) -> None:
    _exclude_tree(tmp_path)
    assert not Excludes()
    assert "emptydir" in _scan_paths(tmp_path)
    assert Excludes(["*"]).match("", True) is False  # the root itself is never excluded


# -- wire form ----------------------------------------------------------------------------------

def test_manifest_wire_round_trip(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "ünï cödé").mkdir()
    (tmp_path / "ünï cödé" / "fïlé ñame").write_text("x")
    m = scan(str(tmp_path), checksum=True)
    m.errors.append("something: Permission denied")
    back = Manifest.from_wire(json.loads(json.dumps(m.to_wire())))
    assert back.entries == m.entries
    assert back.errors == m.errors
    assert not back.complete


GOOD = ["a/b", FILE, 1, 2, 0o644, None, None]


def _bad(index: int, value: object) -> list[object]:
    item = list(GOOD)
    item[index] = value
    return item


@pytest.mark.parametrize("item", [
    pytest.param(_bad(0, "/etc/passwd"), id="absolute"),
    pytest.param(_bad(0, "../escape"), id="dotdot"),
    pytest.param(_bad(0, "a/../../b"), id="inner-dotdot"),
    pytest.param(_bad(0, "a/./b"), id="dot"),
    pytest.param(_bad(0, "a//b"), id="empty-component"),
    pytest.param(_bad(0, "a\x00b"), id="nul"),
    pytest.param(_bad(0, "a\\b"), id="backslash"),
    pytest.param(_bad(0, "x" * 256), id="long-component"),
    pytest.param(_bad(0, 7), id="path-not-str"),
    pytest.param(_bad(1, "x"), id="unknown-kind"),
    pytest.param(_bad(2, -1), id="negative-size"),
    pytest.param(_bad(2, True), id="bool-size"),
    pytest.param(_bad(3, False), id="bool-mtime"),
    pytest.param(_bad(4, True), id="bool-mode"),
    pytest.param(_bad(2, 1.5), id="float-size"),
    pytest.param(_bad(2, "1"), id="str-size"),
    pytest.param(_bad(4, 0o10000), id="mode-too-big"),
    pytest.param(_bad(4, -1), id="negative-mode"),
    pytest.param(_bad(5, "target"), id="target-on-file"),
    pytest.param(["l", LINK, 0, 0, 0o777, None, None], id="link-without-target"),
    pytest.param(["l", LINK, 0, 0, 0o777, "a\x00b", None], id="link-target-nul"),
    pytest.param(["l", LINK, 0, 0, 0o777, 5, None], id="link-target-not-str"),
    pytest.param(_bad(6, 5), id="digest-not-str"),
    pytest.param(GOOD[:6], id="six-items"),
    pytest.param({"path": "a"}, id="not-a-list"),
])
def test_entry_from_wire_rejects(item: object) -> None:
    with pytest.raises(ProtocolError):
        Manifest.from_wire({"entries": [["a", DIR, 0, 0, 0o755, None, None], item]})


def test_manifest_from_wire_rejects_duplicates() -> None:
    e = ["a", FILE, 1, 2, 0o644, None, None]
    with pytest.raises(ProtocolError, match="duplicate"):
        Manifest.from_wire({"entries": [e, list(e)]})


@pytest.mark.parametrize("data", [
    None, [], {"entries": "x"}, {"entries": [], "errors": "x"}, {"entries": [], "errors": [1]},
])
def test_manifest_from_wire_rejects_bad_shapes(data: object) -> None:
    with pytest.raises(ProtocolError):
        Manifest.from_wire(data)


@pytest.mark.parametrize("entries", [
    pytest.param([["l", LINK, 0, 0, 0o777, "/etc", None], ["l/passwd", FILE, 1, 0, 0o644, None,
                                                            None]], id="file-under-link"),
    pytest.param([["f", FILE, 1, 0, 0o644, None, None], ["f/x", FILE, 1, 0, 0o644, None, None]],
                 id="file-under-file"),
    pytest.param([["a/b", FILE, 1, 0, 0o644, None, None]], id="parent-missing"),
    pytest.param([["a/b", FILE, 1, 0, 0o644, None, None], ["a", DIR, 0, 0, 0o755, None, None]],
                 id="parent-after-child"),
    pytest.param([["", FILE, 1, 0, 0o644, None, None]], id="root-not-a-dir"),
])
def test_manifest_from_wire_rejects_entries_outside_a_tree(entries: list[object]) -> None:
    """A child of a link (or of anything but a listed directory) would be written through it."""
    with pytest.raises(ProtocolError):
        Manifest.from_wire({"entries": entries})


def test_manifest_from_wire_accepts_single_file_and_scanned_tree(tmp_path: Path) -> None:
    one = Manifest.from_wire({"entries": [["name.txt", FILE, 3, 1, 0o600, None, "ab"]]})
    assert one.entries == [Entry("name.txt", FILE, 3, 1, 0o600, None, "ab")]
    _tree(tmp_path)
    m = scan(str(tmp_path))
    assert Manifest.from_wire(m.to_wire()).entries == m.entries
