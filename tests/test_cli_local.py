"""End-to-end tests of `blit copy` / `blit mirror` on local trees, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TEMP_MARK, assert_same_tree, blit, blit_on_tty, snapshot, walk

SUMMARY_KEYS = {"files_examined", "files_transferred", "files_skipped", "files_deleted",
                "bytes", "duration_s", "rate_bytes_per_s"}


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    r = blit(*args)
    assert r.returncode == 0, f"blit {' '.join(args)} → {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def run_json(*args: str, code: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run with --json; every stdout line must be a JSON object, the last one the summary."""
    r = blit(args[0], "--json", *args[1:])
    assert r.returncode == code, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert lines, "no NDJSON output"
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "event" in e for e in events)
    summary = events[-1]
    assert summary["event"] == "summary", summary
    assert set(summary) >= SUMMARY_KEYS
    return events, summary


def files_and_links(root: Path) -> tuple[set[str], set[str]]:
    tree = walk(root)
    return ({p for p, n in tree.items() if n.kind == "f"},
            {p for p, n in tree.items() if n.kind == "l"})


def action_lines(stdout: str) -> list[tuple[str, str]]:
    verbs = ("copied", "linked", "deleted")
    return [tuple(line.split(" ", 1)) for line in stdout.splitlines()  # type: ignore[misc]
            if line.split(" ", 1)[0] in verbs]


# -- the full tree of the issue ------------------------------------------------------------------

def test_full_tree_copy_rerun_and_mirror(big_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    files, links = files_and_links(big_tree)
    assert len(files) > 5000 and (big_tree / "big" / "big.bin").stat().st_size == 50 << 20

    _, s = run_json("copy", f"{big_tree}/", str(dst))
    assert s["files_transferred"] == len(files) and s["files_failed"] == 0
    assert s["bytes"] == sum((big_tree / f).stat().st_size for f in files)
    assert s["files_examined"] == len(walk(big_tree))
    assert_same_tree(big_tree, dst)

    _, s = run_json("copy", f"{big_tree}/", str(dst))
    assert s["files_transferred"] == 0 and s["bytes"] == 0 and s["files_failed"] == 0
    assert_same_tree(big_tree, dst)

    # Extra entries of every kind, a changed file and a changed mode: mirror fixes them all.
    (dst / "extra.txt").write_text("extra")
    (dst / "extra_dir" / "deeper").mkdir(parents=True)
    (dst / "extra_dir" / "deeper" / "f").write_text("f")
    (dst / "extra_empty").mkdir()
    os.symlink("a", dst / "extra_link")
    os.symlink("nowhere", dst / "a" / "b" / "extra_dangling")
    (dst / "small" / "d03" / "f00003.dat").write_bytes(b"changed")
    os.chmod(dst / "perm" / "mode_755", 0o600)
    events, s = run_json("mirror", f"{big_tree}/", str(dst), "-y")
    assert s["files_deleted"] == 7 and s["files_transferred"] == 1 and s["files_failed"] == 0
    deleted = {e["path"] for e in events if e["event"] == "file" and e["action"] == "deleted"}
    assert deleted == {"extra.txt", "extra_dir", "extra_dir/deeper", "extra_dir/deeper/f",
                       "extra_empty", "extra_link", "a/b/extra_dangling"}
    assert_same_tree(big_tree, dst)

    _, s = run_json("mirror", f"{big_tree}/", str(dst), "-y")
    assert s["files_transferred"] == 0 and s["files_deleted"] == 0


# -- rsync's trailing-slash rules ----------------------------------------------------------------

def test_contents_into_new_and_existing_dir(small_tree: Path, tmp_path: Path) -> None:
    ok("copy", f"{small_tree}/", str(tmp_path / "new"))
    assert_same_tree(small_tree, tmp_path / "new")
    (tmp_path / "existing").mkdir()
    ok("copy", f"{small_tree}/", str(tmp_path / "existing"))
    assert_same_tree(small_tree, tmp_path / "existing")


def test_no_slash_becomes_dst_when_dst_is_missing(small_tree: Path, tmp_path: Path) -> None:
    ok("copy", str(small_tree), str(tmp_path / "copy"))
    assert_same_tree(small_tree, tmp_path / "copy")


def test_no_slash_nests_when_dst_exists(small_tree: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("mine")
    ok("copy", str(small_tree), str(tmp_path / "out"))
    assert_same_tree(small_tree, tmp_path / "out" / small_tree.name)
    assert sorted(os.listdir(tmp_path / "out")) == ["mine.txt", small_tree.name]


def test_no_slash_nests_when_dst_is_spelled_as_dir(small_tree: Path, tmp_path: Path) -> None:
    ok("copy", str(small_tree), f"{tmp_path / 'made'}/")
    assert_same_tree(small_tree, tmp_path / "made" / small_tree.name)


def test_relative_paths_from_cwd(small_tree: Path, tmp_path: Path) -> None:
    shutil.copytree(small_tree, tmp_path / "s", symlinks=True)
    r = blit("copy", "s/", "d", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_same_tree(small_tree, tmp_path / "d")


def test_single_file_into_dir_and_to_new_name(small_tree: Path, tmp_path: Path) -> None:
    src = small_tree / "perm" / "mode_755"
    (tmp_path / "dir").mkdir()
    ok("copy", str(src), str(tmp_path / "dir"))
    ok("copy", str(src), str(tmp_path / "dir" / "renamed"))
    ok("copy", str(src), f"{tmp_path / 'newdir'}/")
    for got in (tmp_path / "dir" / "mode_755", tmp_path / "dir" / "renamed",
                tmp_path / "newdir" / "mode_755"):
        a, b = os.lstat(src), os.lstat(got)
        assert got.read_bytes() == src.read_bytes()
        assert (b.st_mode, b.st_mtime_ns) == (a.st_mode, a.st_mtime_ns), got
    assert sorted(os.listdir(tmp_path / "dir")) == ["mode_755", "renamed"]
    _, s = run_json("copy", str(src), str(tmp_path / "dir" / "renamed"))
    assert s["files_transferred"] == 0


def test_single_file_overwrites_existing_file(small_tree: Path, tmp_path: Path) -> None:
    src = small_tree / "a" / "top.txt"
    (tmp_path / "old.txt").write_text("an older, longer content")
    ok("copy", str(src), str(tmp_path / "old.txt"))
    assert (tmp_path / "old.txt").read_bytes() == src.read_bytes()
    assert os.lstat(tmp_path / "old.txt").st_mtime_ns == os.lstat(src).st_mtime_ns


def test_symlink_source_without_slash_is_copied_as_link(small_tree: Path, tmp_path: Path) -> None:
    ok("copy", str(small_tree / "a" / "link_to_dir"), str(tmp_path / "l"))
    assert os.readlink(tmp_path / "l") == "../with space"
    assert os.lstat(tmp_path / "l").st_mtime_ns == os.lstat(
        small_tree / "a" / "link_to_dir").st_mtime_ns


def test_symlink_to_dir_with_slash_copies_its_contents(small_tree: Path, tmp_path: Path) -> None:
    os.symlink(small_tree, tmp_path / "via_link")
    ok("copy", f"{tmp_path / 'via_link'}/", str(tmp_path / "dst"))
    assert_same_tree(small_tree, tmp_path / "dst")


def test_destination_link_to_dir_is_followed(small_tree: Path, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "dst")
    ok("copy", f"{small_tree}/", str(tmp_path / "dst"))
    assert os.path.islink(tmp_path / "dst")
    assert_same_tree(small_tree, tmp_path / "real")
    _, s = run_json("copy", f"{small_tree}/", str(tmp_path / "dst"))
    assert s["files_transferred"] == 0
    (tmp_path / "real" / "extra").write_text("x")
    _, s = run_json("mirror", f"{small_tree}/", str(tmp_path / "dst"), "-y")
    assert s["files_deleted"] == 1 and s["files_transferred"] == 0
    assert_same_tree(small_tree, tmp_path / "real")


# -- mirror --------------------------------------------------------------------------------------

def _add_extras(dst: Path) -> None:
    (dst / "extra.txt").write_text("extra")
    (dst / "xdir" / "sub").mkdir(parents=True)
    (dst / "xdir" / "sub" / "f").write_text("f")
    os.symlink("a", dst / "xlink")


def test_mirror_without_yes_is_refused_and_touches_nothing(small_tree: Path,
                                                            tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{small_tree}/", str(dst))
    _add_extras(dst)
    (dst / "a" / "top.txt").write_text("changed")
    before = snapshot(dst)
    r = blit("mirror", f"{small_tree}/", str(dst))
    assert r.returncode == 3, r.stderr
    assert "-y" in r.stderr
    assert snapshot(dst) == before
    r = blit("mirror", f"{small_tree}/", str(tmp_path / "fresh"))
    assert r.returncode == 3 and not os.path.lexists(tmp_path / "fresh")


def test_mirror_deletes_extras_only_with_yes(small_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{small_tree}/", str(dst))
    _add_extras(dst)
    r = ok("mirror", f"{small_tree}/", str(dst), "-y", "-v")
    assert sorted(action_lines(r.stdout)) == [
        ("deleted", "extra.txt"), ("deleted", "xdir"), ("deleted", "xdir/sub"),
        ("deleted", "xdir/sub/f"), ("deleted", "xlink")]
    assert_same_tree(small_tree, dst)


def test_copy_never_deletes(small_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{small_tree}/", str(dst))
    _add_extras(dst)
    _, s = run_json("copy", f"{small_tree}/", str(dst), "-y")
    assert s["files_deleted"] == 0
    assert (dst / "extra.txt").exists() and (dst / "xdir" / "sub" / "f").exists()
    assert os.path.islink(dst / "xlink")


def test_mirror_with_exclude_protects_excluded_dest_files(src_tree: Path, tmp_path: Path) -> None:
    (src_tree / "src.log").write_text("log at the source")
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.log").write_text("keep")
    (dst / "a").mkdir()
    (dst / "a" / "keep2.log").write_text("keep too")
    (dst / "gone.txt").write_text("gone")
    _, s = run_json("mirror", f"{src_tree}/", str(dst), "--exclude", "*.log", "-y")
    assert s["files_failed"] == 0
    assert (dst / "keep.log").read_text() == "keep"
    assert (dst / "a" / "keep2.log").read_text() == "keep too"
    assert not (dst / "gone.txt").exists()
    assert not (dst / "src.log").exists()  # excluded at the source too
    assert {p for p in walk(dst) if not p.endswith(".log")} == set(walk(src_tree)) - {"src.log"}


def test_mirror_keeps_extra_dir_holding_excluded_files(small_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{small_tree}/", str(dst))
    (dst / "old" / "logs").mkdir(parents=True)
    (dst / "old" / "logs" / "keep.log").write_text("keep")
    (dst / "old" / "gone.txt").write_text("gone")
    os.mkfifo(dst / "old" / "fifo")  # special files are not managed either
    (dst / "pipes").mkdir()
    os.mkfifo(dst / "pipes" / "p")
    r = blit("mirror", f"{small_tree}/", str(dst), "--exclude", "*.log", "-y")
    assert r.returncode == 0, r.stderr
    assert (dst / "old" / "logs" / "keep.log").read_text() == "keep"
    assert not (dst / "old" / "gone.txt").exists()
    assert os.path.exists(dst / "old" / "fifo") and os.path.exists(dst / "pipes" / "p")
    assert "kept non-empty directory old" in r.stderr
    assert "failed" not in r.stderr


def test_awkward_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = ["é" * 127, "a" * 255, "日" * 85, "new\nline", "-dash", "--exclude", " lead space",
             "trail space ", "tab\tname", "percent%20x", "star*?[x]", "'quote\"", "emoji 😀"]
    for i, name in enumerate(names):
        (src / name).write_bytes(name.encode() * (1 if i % 2 else 30_000))  # shards and spans
    (src / ("д" * 127)).mkdir()
    (src / ("д" * 127) / ("ж" * 127)).write_text("deep")
    os.symlink("é" * 127, src / ("l" * 255))
    _, s = run_json("copy", f"{src}/", str(tmp_path / "dst"))
    assert s["files_failed"] == 0
    assert_same_tree(src, tmp_path / "dst")
    _, s = run_json("mirror", "-y", "--", f"{src}/", str(tmp_path / "dst"))
    assert s["files_transferred"] == 0 and s["files_deleted"] == 0


def test_mirror_replaces_kinds(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst))
    # file → dir, dir → file, link → file, file → link
    os.unlink(src_tree / "zero.bin")
    (src_tree / "zero.bin").mkdir()
    (src_tree / "zero.bin" / "inside").write_text("in")
    shutil.rmtree(src_tree / "nest_empty")
    (src_tree / "nest_empty").write_text("now a file")
    os.unlink(src_tree / "link_to_file")
    (src_tree / "link_to_file").write_text("now a file too")
    os.unlink(src_tree / "a" / "top.txt")
    os.symlink("b/mid.txt", src_tree / "a" / "top.txt")
    _, s = run_json("mirror", f"{src_tree}/", str(dst), "-y")
    assert s["files_failed"] == 0
    assert_same_tree(src_tree, dst)


def test_mirror_replaces_a_dir_that_copy_refuses_to_replace(src_tree: Path,
                                                           tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst))
    (dst / "extra.txt").write_text("extra")
    (src_tree / "now_a_file").write_text("x")
    (dst / "now_a_file").mkdir()
    (dst / "now_a_file" / "old").write_text("old")
    r = blit("copy", f"{src_tree}/", str(dst))
    assert r.returncode == 2 and "now_a_file" in r.stderr
    assert (dst / "now_a_file" / "old").exists()
    _, s = run_json("mirror", f"{src_tree}/", str(dst), "-y")
    assert s["files_failed"] == 0 and s["files_deleted"] == 1
    assert_same_tree(src_tree, dst)


def test_mirror_deletes_nothing_when_a_file_failed(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst))
    (dst / "extra.txt").write_text("extra")
    # A name blit refuses to transfer (backslash): a failed entry even for root.
    (src_tree / "a" / "back\\slash").write_text("b")
    (src_tree / "a" / "new.txt").write_text("new")
    events, s = run_json("mirror", f"{src_tree}/", str(dst), "-y", code=2)
    assert s["files_failed"] == 1 and s["files_deleted"] == 0
    assert "nothing deleted" in (s["deletions_skipped"] or "")
    assert (dst / "extra.txt").read_text() == "extra"
    assert (dst / "a" / "new.txt").read_text() == "new"  # the rest still arrives
    assert not os.path.lexists(dst / "a" / "back\\slash")
    r = blit("mirror", f"{src_tree}/", str(dst), "-y")
    assert r.returncode == 2 and "nothing deleted" in r.stderr
    assert events


def test_special_file_in_the_way_fails_only_its_entries(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst))
    (src_tree / "newdir").mkdir()
    (src_tree / "newdir" / "f").write_text("f")
    (src_tree / "other.txt").write_text("o")
    os.mkfifo(dst / "newdir")  # a FIFO where a directory must go
    _, s = run_json("copy", f"{src_tree}/", str(dst), code=2)
    assert {f["path"] for f in s["failures"]} >= {"newdir/f"}
    assert (dst / "other.txt").read_text() == "o"
    assert not any(TEMP_MARK in p for p in walk(dst))


def test_mirror_of_an_empty_source_deletes_only_when_allowed(small_tree: Path,
                                                             tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{small_tree}/", str(dst))
    (tmp_path / "empty").mkdir()
    before = {p for p in snapshot(dst) if p}
    r = blit("mirror", f"{tmp_path / 'empty'}/", str(dst), "-y")
    assert r.returncode == 2 and "--allow-empty-source" in r.stderr  # mirror left undone
    assert {p for p in snapshot(dst) if p} == before
    _, s = run_json("mirror", f"{tmp_path / 'empty'}/", str(dst), "-y", "--allow-empty-source")
    assert s["files_deleted"] == len(before) and os.listdir(dst) == []


@pytest.mark.parametrize("phase", ["linked", "copied"])
def test_interrupt_leaves_no_temp_files(big_tree: Path, tmp_path: Path, phase: str) -> None:
    dst = tmp_path / "dst"
    p = subprocess.Popen([sys.executable, "-m", "blit_client.cli", "copy", "--json",
                          f"{big_tree}/", str(dst)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    for line in p.stdout:  # wait until bytes are moving, then press Ctrl-C
        if json.loads(line).get("action") == phase:
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode in (0, 130), err  # 0 only if it finished first
    assert not [x for x in walk(dst) if TEMP_MARK in x]
    for rel, node in walk(dst).items():  # whatever arrived is complete
        if node.kind == "f":
            assert (dst / rel).read_bytes() == (big_tree / rel).read_bytes(), rel


# -- flags ---------------------------------------------------------------------------------------

def test_dry_run_touches_nothing_and_prints_the_plan(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst))
    _add_extras(dst)
    (src_tree / "a" / "top.txt").write_text("new content, longer")
    (src_tree / "new dir").mkdir()
    (src_tree / "new dir" / "new file").write_text("n")
    os.symlink("a", src_tree / "new link")
    before = snapshot(dst)
    for cmd in ("copy", "mirror"):
        r = ok(cmd, f"{src_tree}/", str(dst), "--dry-run")
        assert snapshot(dst) == before
        lines = set(r.stdout.splitlines())
        assert {"would copy a/top.txt", "would copy new dir/new file", "would link new link",
                "would create new dir"} <= lines
        deletes = {x for x in lines if x.startswith("would delete")}
        if cmd == "mirror":
            assert deletes == {"would delete extra.txt", "would delete xdir",
                               "would delete xdir/sub", "would delete xdir/sub/f",
                               "would delete xlink"}
        else:
            assert deletes == set()
        assert not any(TEMP_MARK in p for p in walk(dst))
    events, s = run_json("mirror", f"{src_tree}/", str(dst), "-n")
    assert snapshot(dst) == before
    assert s["dry_run"] is True and s["files_transferred"] == 2 and s["files_deleted"] == 5
    planned = {(e["action"], e["path"]) for e in events if e["event"] == "plan_item"}
    assert ("copy", "a/top.txt") in planned and ("delete", "xdir/sub/f") in planned


def test_dry_run_into_missing_dst_creates_nothing(small_tree: Path, tmp_path: Path) -> None:
    r = ok("copy", f"{small_tree}/", str(tmp_path / "nope"), "--dry-run")
    assert not os.path.lexists(tmp_path / "nope")
    assert "would copy big/big.bin" in r.stdout.splitlines()


def test_json_is_ndjson_with_summary_last(small_tree: Path, tmp_path: Path) -> None:
    events, s = run_json("copy", f"{small_tree}/", str(tmp_path / "dst"))
    files, links = files_and_links(small_tree)
    assert s["files_transferred"] == len(files) and s["files_skipped"] == 0
    assert s["files_deleted"] == 0 and s["files_failed"] == 0
    assert s["files_examined"] == len(walk(small_tree))
    assert isinstance(s["duration_s"], float) and s["duration_s"] > 0
    assert isinstance(s["rate_bytes_per_s"], int) and s["rate_bytes_per_s"] > 0
    assert s["bytes"] == sum((small_tree / f).stat().st_size for f in files)
    copied = [e["path"] for e in events if e["event"] == "file" and e["action"] == "copied"]
    assert sorted(copied) == sorted(files)
    assert [e for e in events if e["event"] == "summary"] == [s]
    _, s2 = run_json("copy", f"{small_tree}/", str(tmp_path / "dst"))
    assert s2["files_transferred"] == 0 and s2["files_skipped"] == len(walk(small_tree)) - 1


def test_verbose_prints_one_line_per_file_acted_on(small_tree: Path, tmp_path: Path) -> None:
    r = ok("copy", f"{small_tree}/", str(tmp_path / "dst"), "-v")
    files, links = files_and_links(small_tree)
    acted = action_lines(r.stdout)
    assert sorted(p for v, p in acted if v == "copied") == sorted(files)
    assert sorted(p for v, p in acted if v == "linked") == sorted(links)
    assert len(acted) == len(files) + len(links)
    assert "transferred" in r.stdout  # the human summary follows
    r = ok("copy", f"{small_tree}/", str(tmp_path / "dst"), "-v")
    assert action_lines(r.stdout) == []
    quiet = ok("copy", f"{small_tree}/", str(tmp_path / "dst2"))
    assert action_lines(quiet.stdout) == []


def test_progress_bar(small_tree: Path, tmp_path: Path) -> None:
    r = ok("copy", f"{small_tree}/", str(tmp_path / "dst"), "-p")
    assert r.stderr.strip()
    assert "files" in r.stderr
    assert "transferred" in r.stdout
    assert_same_tree(small_tree, tmp_path / "dst")
    r = ok("mirror", f"{small_tree}/", str(tmp_path / "dst"), "--progress", "-y")
    assert r.stderr.strip()


def test_checksum_catches_same_size_same_mtime_change(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst))
    target = src_tree / "a" / "b" / "mid.txt"
    st = os.lstat(target)
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, s = run_json("copy", f"{src_tree}/", str(dst))
    assert s["files_transferred"] == 0  # the quick check cannot see it
    assert (dst / "a" / "b" / "mid.txt").read_bytes() != bytes(data)
    events, s = run_json("copy", f"{src_tree}/", str(dst), "--checksum")
    assert s["files_transferred"] == 1
    assert [e["path"] for e in events if e["event"] == "file"] == ["a/b/mid.txt"]
    assert_same_tree(src_tree, dst)
    _, s = run_json("copy", f"{src_tree}/", str(dst), "-c")
    assert s["files_transferred"] == 0


def test_changed_sources_are_updated(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst))
    (src_tree / "a" / "top.txt").write_text("a different size")
    st = os.lstat(src_tree / "zero.bin")
    os.utime(src_tree / "zero.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # mtime only
    os.chmod(src_tree / "perm" / "mode_644", 0o604)  # mode only: no transfer needed
    _, s = run_json("copy", f"{src_tree}/", str(dst))
    assert s["files_transferred"] == 2
    assert_same_tree(src_tree, dst)


def test_exclude_patterns(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{src_tree}/", str(dst), "--exclude", "*.dat", "--exclude", "!f00007.dat",
       "--exclude", "big/", "--exclude", "/zero.bin", "--exclude", "ünï cödé")
    got = set(walk(dst))
    want = {p for p in walk(src_tree)
            if not (p.endswith(".dat") and not p.endswith("f00007.dat"))
            and p != "big" and not p.startswith("big/") and p != "zero.bin"
            and not p.startswith("ünï cödé")}
    assert got == want
    assert "small/d07/f00007.dat" in got and "a/b/zero too" in got


def test_streams_override(small_tree: Path, tmp_path: Path) -> None:
    ok("copy", f"{small_tree}/", str(tmp_path / "dst"), "--streams", "5")
    assert_same_tree(small_tree, tmp_path / "dst")


def test_source_fifo_is_skipped(src_tree: Path, tmp_path: Path) -> None:
    os.mkfifo(src_tree / "a" / "fifo")
    _, s = run_json("copy", f"{src_tree}/", str(tmp_path / "dst"))
    assert s["files_failed"] == 0
    assert not os.path.lexists(tmp_path / "dst" / "a" / "fifo")
    assert (tmp_path / "dst" / "a" / "top.txt").exists()


# -- exit codes ----------------------------------------------------------------------------------

def test_partial_failure_exits_2_and_the_rest_arrives(src_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    (dst / "a" / "top.txt").mkdir(parents=True)  # a directory where a file must go
    (dst / "a" / "top.txt" / "precious").write_text("p")
    os.makedirs(dst / "link_to_file")  # and where a link must go
    events, s = run_json("copy", f"{src_tree}/", str(dst), code=2)
    assert {f["path"] for f in s["failures"]} == {"a/top.txt", "link_to_file"}
    assert s["files_failed"] == 2
    assert {e["path"] for e in events if e["event"] == "fail"} == {"a/top.txt", "link_to_file"}
    assert (dst / "a" / "top.txt" / "precious").read_text() == "p"
    skip = {"a/top.txt", "link_to_file", "a", ""}  # a/ and the root: their mtimes change
    src, got = walk(src_tree), walk(dst)
    for rel, node in src.items():
        if rel in skip:
            continue
        assert rel in got, rel
        assert got[rel] == node, rel
    r = blit("copy", f"{src_tree}/", str(dst))
    assert r.returncode == 2
    assert "a/top.txt" in r.stderr and "failed" in r.stderr


@pytest.mark.parametrize("args", [
    ("copy", "--bogus", "a", "b"), ("copy",), ("copy", "a"), ("mirror", "a"), ("nosuchcmd",),
    ("copy", "a", "b", "--streams", "0"), ("copy", "a", "b", "c"),
])
def test_usage_errors_exit_3(args: tuple[str, ...], tmp_path: Path) -> None:
    r = blit(*args, cwd=tmp_path)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stderr.strip()
    assert os.listdir(tmp_path) == []


def test_missing_source_exits_1(tmp_path: Path) -> None:
    r = blit("copy", str(tmp_path / "missing"), str(tmp_path / "dst"))
    assert r.returncode == 1 and "missing" in r.stderr
    assert not os.path.lexists(tmp_path / "dst")
    r = blit("mirror", f"{tmp_path / 'missing'}/", str(tmp_path / "dst"), "-y")
    assert r.returncode == 1


def test_tree_onto_a_file_exits_1_and_keeps_the_file(small_tree: Path, tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("keep me")
    os.chmod(f, 0o600)
    before = snapshot(tmp_path)
    for cmd in (("copy",), ("mirror", "-y")):
        r = blit(*cmd, f"{small_tree}/", str(f))
        assert r.returncode == 1, r.stderr
        assert "not a directory" in r.stderr
        assert snapshot(tmp_path) == before


def test_version_and_help() -> None:
    r = ok("version")
    assert r.stdout.startswith("blit ")
    r = ok("copy", "--help")
    for flag in ("--progress", "--verbose", "--dry-run", "--json", "--checksum", "--exclude",
                 "--yes"):
        assert flag in r.stdout


# -- interactive confirmation --------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "code"), [("n\n", 3), ("y\n", 0)])
def test_mirror_asks_on_a_tty(small_tree: Path, tmp_path: Path, answer: str, code: int) -> None:
    dst = tmp_path / "dst"
    ok("copy", f"{small_tree}/", str(dst))
    _add_extras(dst)
    before = snapshot(dst)
    r = blit_on_tty(["mirror", f"{small_tree}/", str(dst)], answer)
    assert r.returncode == code, r.stderr
    assert "delete 5 entries" in r.stderr
    if code:
        assert snapshot(dst) == before
    else:
        assert_same_tree(small_tree, dst)
