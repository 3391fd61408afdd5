"""Re-runs exchange a manifest digest instead of the manifest: equal trees plan nothing, any
difference falls back to the whole manifest (and is transferred)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from blit_shared.destination import Destination
from blit_shared.errors import Conflict
from blit_shared.forkscan import ForkedScan
from blit_shared.manifest import Manifest, scan
from blit_shared.progress import Progress
from tests.daemon import running_daemon
from tests.helpers import assert_same_tree, blit, wait_for


def make(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    for i in range(30):
        (root / "d" / f"f{i}.txt").write_text(f"{i}\n")
        os.utime(root / "d" / f"f{i}.txt", ns=(10**18, 10**18 + i))


def test_digest_is_none_for_an_incomplete_scan_and_tracks_every_field(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make(a)
    make(b)
    os.utime(a, ns=(10**18, 10**18))
    os.utime(b, ns=(10**18, 10**18))
    os.utime(a / "d", ns=(10**18, 10**18))
    os.utime(b / "d", ns=(10**18, 10**18))
    ma, mb = scan(str(a)), scan(str(b))
    assert ma.digest() == mb.digest() is not None
    os.utime(b / "d" / "f3.txt", ns=(10**18, 10**18 + 99))
    assert scan(str(b)).digest() != ma.digest()
    ma.errors.append("x: Permission denied")
    assert ma.digest() is None


def test_rerun_push_and_pull_use_the_digest_and_still_see_changes(tmp_path: Path) -> None:
    src, mod, pulled = tmp_path / "src", tmp_path / "mod", tmp_path / "pulled"
    make(src)
    mod.mkdir()
    with running_daemon(tmp_path, "--module", f"m={mod}") as d:
        for args in (("mirror", "-y", f"{src}/", d.url("m", "t") + "/"),
                     ("mirror", "-y", d.url("m", "t") + "/", f"{pulled}/")):
            first = blit(*args, "--json")
            assert first.returncode == 0, first.stderr
            again = json.loads(blit(*args, "--json").stdout.splitlines()[-1])
            assert again["files_transferred"] == 0 and again["files_skipped"] == 31
            assert again["files_examined"] == 32  # root, d, 30 files: same as a full plan
        assert_same_tree(src, mod / "t")
        assert_same_tree(src, pulled)

        # A change on either side defeats the digest: the whole manifest goes, the file too.
        (src / "d" / "f1.txt").write_text("changed\n")
        push = json.loads(blit("mirror", "-y", "--json", f"{src}/",
                               d.url("m", "t") + "/").stdout.splitlines()[-1])
        assert push["files_transferred"] == 1
        (pulled / "d" / "extra.txt").write_text("not in the source")
        pull = json.loads(blit("mirror", "-y", "--json", d.url("m", "t") + "/",
                               f"{pulled}/").stdout.splitlines()[-1])
        assert pull["files_transferred"] == 1 and pull["files_deleted"] == 1
        assert_same_tree(src, pulled)

        # The protocol itself: a wrong digest plans nothing and asks for the manifest.
        base = f"http://{d.addr}/v1/transfers"
        sid = httpx.post(base, json={"direction": "push", "module": "m", "path": "t",
                                     "source": {"kind": "d", "name": "t", "contents": True},
                                     "options": {}}).json()["id"]
        assert httpx.post(f"{base}/{sid}/manifest",
                          json={"same_as": "0" * 32}).json() == {"same": False}
        right = scan(str(src)).digest()
        planned = httpx.post(f"{base}/{sid}/manifest", json={"same_as": right}).json()
        assert planned["same"] is True and planned["need"] == []
        httpx.delete(f"{base}/{sid}")

        sid = httpx.post(base, json={"direction": "pull", "module": "m", "path": "t",
                                     "trailing_slash": True, "options": {}}).json()["id"]
        assert httpx.get(f"{base}/{sid}/manifest", params={"same_as": right}).json() == {
            "same": True}
        whole = httpx.get(f"{base}/{sid}/manifest", params={"same_as": "f" * 32}).json()
        assert len(whole["entries"]) == 32
        httpx.delete(f"{base}/{sid}")


def test_local_rerun_matches_by_digest_and_still_sees_changes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make(src)
    args = ("mirror", "-y", "--json", f"{src}/", f"{dst}/")
    assert blit(*args).returncode == 0
    again = json.loads(blit(*args).stdout.splitlines()[-1])
    assert again["files_transferred"] == 0 and again["files_skipped"] == 31
    # A temp file a killed run left is removed on the digest path too (the scan's head).
    (dst / "d" / ".blit-tmp.4999999.abc.f1.txt").write_text("half")
    (src / "d" / "f1.txt").write_text("changed\n")
    (dst / "d" / "extra.txt").write_text("not in the source")
    changed = json.loads(blit(*args).stdout.splitlines()[-1])
    assert changed["files_transferred"] == 1 and changed["files_deleted"] == 1
    assert_same_tree(src, dst)
    assert not (dst / "d" / ".blit-tmp.4999999.abc.f1.txt").exists()


def test_forked_scan_sends_head_then_entries_and_reaps_its_child(tmp_path: Path) -> None:
    make(tmp_path / "t")
    root = str(tmp_path / "t")
    forked = ForkedScan(lambda: scan(root), Manifest.digest)
    head = forked.head()
    assert head is not None and head["digest"] == scan(root).digest()
    whole = forked.manifest()
    assert whole is not None and whole.entries == scan(root).entries
    assert forked.manifest() is whole  # read once, kept
    assert wait_for(_no_child_left, 10)  # the child is gone (reaped, maybe on a thread)

    unread = ForkedScan(lambda: scan(root), Manifest.digest)
    assert unread.head() is not None
    unread.close()  # the child may still be writing its entries: it is killed, and reaped
    assert wait_for(_no_child_left, 10)


def _no_child_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_failed_forked_scan_is_redone_in_process_for_its_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    def failing() -> Manifest:
        raise RuntimeError("boom")

    forked = ForkedScan(failing, Manifest.digest)
    assert forked.head() is None and forked.manifest() is None
    dest = Destination(str(tmp_path / "file"), Progress())
    dest.own.start(forked=True)
    with pytest.raises(Conflict, match="not a directory"):
        dest.own.digest()


def test_a_stale_temp_removed_on_the_digest_path_leaves_its_directory_as_it_was(
        tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make(src)
    args = ("mirror", "-y", "--json", f"{src}/", f"{dst}/")
    assert blit(*args).returncode == 0
    # As a `cp -a` of a tree with a killed run's temp in it: the directory's mtime is the
    # source's, so the digests match and nothing but the temp is to be done.
    (dst / "d" / ".blit-tmp.4999999.abc.f2.txt").write_text("half")
    stamp = (src / "d").stat().st_mtime_ns
    os.utime(dst / "d", ns=(stamp, stamp))
    again = json.loads(blit(*args).stdout.splitlines()[-1])
    assert again["files_transferred"] == 0 and again["files_skipped"] == 31
    assert_same_tree(src, dst)  # the temp is gone, d's mtime is the source's


def test_a_fork_that_fails_means_a_scan_in_process(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    make(tmp_path / "t")

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    forked = ForkedScan(lambda: scan(str(tmp_path / "t")), Manifest.digest)
    assert forked.head() is None and forked.manifest() is None
    dest = Destination(str(tmp_path / "t"), Progress())
    dest.own.start(forked=True)
    assert dest.own.count() == 32 and dest.own.matches(scan(str(tmp_path / "t")))


def test_a_forked_scan_ends_with_its_parent(tmp_path: Path) -> None:
    script = ("import os, signal, sys, time\n"
              "from blit_shared.forkscan import ForkedScan\n"
              "forked = ForkedScan(lambda: time.sleep(60), lambda m: None)\n"
              "print(forked._pid, flush=True)\n"
              "time.sleep(0.3)\n"  # the child is asleep in its 'scan'
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30)
    child = int(out.stdout.split()[0])

    def gone() -> bool:
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True

    assert wait_for(gone, 10), "the scan outlived the process that started it"


def test_a_dry_run_leaves_even_a_stale_temp_file(tmp_path: Path) -> None:
    src, mod, pulled, local = (tmp_path / n for n in ("src", "mod", "pulled", "local"))
    make(src)
    mod.mkdir()
    stale = ".blit-tmp.4999999.abc.f1.txt"
    with running_daemon(tmp_path, "--module", f"m={mod}") as d:
        for dst, landed in ((d.url("m", "t") + "/", mod / "t"), (f"{local}/", local)):
            assert blit("copy", f"{src}/", dst).returncode == 0
            (landed / "d" / stale).write_text("half")
            assert blit("mirror", "-n", f"{src}/", dst).returncode == 0
            assert (landed / "d" / stale).exists(), dst
        assert blit("copy", d.url("m", "t") + "/", f"{pulled}/").returncode == 0
        (pulled / "d" / stale).write_text("half")
        assert blit("mirror", "-n", d.url("m", "t") + "/", f"{pulled}/").returncode == 0
        assert (pulled / "d" / stale).exists()
        # A real run removes it.
        assert blit("mirror", "-y", d.url("m", "t") + "/", f"{pulled}/").returncode == 0
        assert not (pulled / "d" / stale).exists()
