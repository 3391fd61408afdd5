"""Regressions found in review: descriptors kept per thread stay bounded on deep trees, and a
client falls back to the whole manifest when a daemon predates the digest exchange."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import httpx
import respx

from blit_client.api import DaemonClient
from blit_client.remote_route import _plan_remote
from blit_shared.manifest import scan
from tests.helpers import assert_same_tree

FD_LIMIT = 256


def wide_tree(root: Path, depth: int = 7, fanout: int = 3) -> int:
    """fanout ** depth leaves: every level has many distinct parents (3,279 directories)."""
    level = [root]
    root.mkdir()
    count = 0
    for k in range(depth):
        nxt = []
        for parent in level:
            for i in range(fanout):
                d = parent / f"d{i}"
                d.mkdir()
                (d / "f.txt").write_text(f"{k}.{i}\n")
                nxt.append(d)
        level = nxt
        count += len(level)
    for n, d in enumerate(root.rglob("d*")):
        os.utime(d, ns=(10**18, 10**18 + n))
    return count


def test_deep_tree_copies_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    """Each depth round's helper thread used to keep its own 64 parent handles for good
    (hundreds of descriptors: "Too many open files", or directory times silently wrong)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    assert wide_tree(src) == 3279
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))

    out = subprocess.run([sys.executable, "-m", "blit_client.cli", "copy", f"{src}/", f"{dst}/"],
                         capture_output=True, text=True, timeout=120, preexec_fn=low_limit)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_same_tree(src, dst)  # mtimes of every directory included


def test_old_daemon_without_same_as_gets_the_whole_manifest(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    manifest = scan(str(tmp_path))
    calls: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.content)
        if b"same_as" in request.content:  # what a daemon before the digest exchange says
            return httpx.Response(400, json={"error": {
                "code": "protocol", "message": "manifest must be an object with an 'entries' "
                "list"}})
        return httpx.Response(200, json={"need": [1, 2], "counts": {}, "same": False})

    with respx.mock(base_url="http://daemon.test") as mock:
        mock.post("/v1/transfers/t1/manifest").mock(side_effect=answer)
        with DaemonClient("http://daemon.test") as api:
            planned = _plan_remote(api, "t1", manifest)
    assert planned["need"] == [1, 2]
    assert len(calls) == 2 and b"entries" in calls[1]
