"""A full destination and a destination that refuses writes: per-file errors, exit code 2,
the other files complete, nothing half-written. Needs root (tmpfs mount, chattr)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from blit_shared.temps import TEMP_MARK
from tests.daemon import running_daemon
from tests.helpers import blit

MiB = 1 << 20


def _can(cmd: list[str]) -> bool:
    return os.geteuid() == 0 and shutil.which(cmd[0]) is not None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a destination that fills up."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not _can(["mount"]) or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def source_tree(root: Path) -> Path:
    root.mkdir()
    for i in range(6):
        (root / f"big{i}.bin").write_bytes(os.urandom(MiB))  # 6 MiB: cannot all fit
    (root / "small").mkdir()
    for i in range(20):
        (root / "small" / f"s{i}.txt").write_text(f"small file {i}\n")
    return root


def check_partial(src: Path, dst: Path, out: subprocess.CompletedProcess[str]) -> None:
    """Exit 2; the failures are named; every file that did arrive is whole and exact."""
    assert out.returncode == 2, out.stdout + out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["files_failed"] >= 1 and summary["files_transferred"] >= 1
    assert summary["failures"] and all(f["path"] for f in summary["failures"])
    arrived = [p for p in dst.rglob("*") if p.is_file()]
    assert not [p for p in arrived if TEMP_MARK in p.name], "temp files left behind"
    for p in arrived:
        assert p.read_bytes() == (src / p.relative_to(dst)).read_bytes(), p


def test_full_destination_local(tmp_path: Path, small_disk: Path) -> None:
    src = source_tree(tmp_path / "src")
    out = blit("copy", "--json", str(src) + "/", str(small_disk / "dst"))
    check_partial(src, small_disk / "dst", out)
    assert "No space left on device" in out.stdout


def test_full_destination_push(tmp_path: Path, small_disk: Path) -> None:
    src = source_tree(tmp_path / "src")
    with running_daemon(tmp_path, "--module", f"m={small_disk}") as d:
        out = blit("copy", "--json", str(src) + "/", d.url("m", "dst"))
    check_partial(src, small_disk / "dst", out)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A destination directory in which nothing can be created (chattr +i)."""
    d = tmp_path / "dst" / "locked"
    d.mkdir(parents=True)
    if not _can(["chattr"]) or subprocess.run(["chattr", "+i", str(d)],
                                              capture_output=True).returncode != 0:
        pytest.skip("chattr +i not available here (needs root and ext4/xfs)")
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=False)


@pytest.mark.parametrize("route", ["local", "pull"])
def test_permission_denied_fails_only_those_files(tmp_path: Path, immutable: Path,
                                                  route: str) -> None:
    src = tmp_path / "src"
    (src / "locked").mkdir(parents=True)
    (src / "locked" / "a.txt").write_text("a")
    (src / "locked" / "big.bin").write_bytes(os.urandom(MiB))
    (src / "open").mkdir()
    (src / "open" / "b.txt").write_text("b")
    dst = tmp_path / "dst"
    if route == "local":
        out = blit("copy", "--json", str(src) + "/", str(dst))
    else:
        with running_daemon(tmp_path, "--module", f"m={src}") as d:
            out = blit("copy", "--json", d.url("m") + "/", str(dst))
    assert out.returncode == 2, out.stdout + out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    failed = {f["path"] for f in summary["failures"]}
    assert {"locked/a.txt", "locked/big.bin"} <= failed
    assert (dst / "open" / "b.txt").read_text() == "b"
    assert list(immutable.iterdir()) == []
