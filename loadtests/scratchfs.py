"""Where the bench writes: filesystem facts (journal or not) and an optional scratch ext4 on loop.

Why it matters: on ext4 *without* a journal, `__ext4_new_inode` skips every inode deleted in the
last 60 s (300 s while its inode-table block is dirty) via `recently_deleted()`, so creating
files shortly after deleting many costs O(deleted) per file. perf shows ~70% of `cp -a` time in
`find_inode_bit`/`recently_deleted` there; the same `cp -a` of 5,000 files takes 0.7–4.5 s on
such a filesystem and a steady 0.18 s on a journaled ext4. A bench that deletes each
destination before the next run would measure that pathology, not the tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FsInfo:
    """The mount holding a path."""

    mount: str
    source: str
    fstype: str
    journal: bool | None  # None: not ext3/ext4, so the question does not apply

    def describe(self) -> str:
        j = {True: ", journal", False: ", NO journal", None: ""}[self.journal]
        return f"{self.fstype} on {self.source} mounted at {self.mount}{j}"


def fs_info(path: Path) -> FsInfo:
    """Longest mount-point prefix of `path` from /proc/self/mountinfo."""
    real = os.path.realpath(path)
    best = ("/", "?", "?")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mnt = left.split()[4].replace("\\040", " ")
            fstype, source = right.split()[:2]
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[0]):
                best = (mnt, source, fstype)
    mnt, source, fstype = best
    journal = None
    if fstype in ("ext3", "ext4"):
        dev = os.path.basename(source)
        try:
            journal = any(j.startswith(dev + "-") for j in os.listdir("/proc/fs/jbd2"))
        except OSError:
            journal = False
    return FsInfo(mnt, source, fstype, journal)


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def scratch_ext4(parent: Path, size_gb: int) -> Iterator[Path]:
    """A fresh journaled ext4 (sparse image on `parent`, loop device with direct I/O), mounted
    on a temp dir; unmounted, detached and deleted on exit. Needs root."""
    if os.geteuid() != 0:
        raise SystemExit("bench: --scratch-fs needs root (mount, losetup)")
    parent.mkdir(parents=True, exist_ok=True)
    image = parent / f"blit-bench-{os.getpid()}.ext4"
    mnt = Path(tempfile.mkdtemp(prefix="blit-bench-mnt-"))
    loop = ""
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(size_gb << 30)
        # Initialise inode tables and journal now: no ext4lazyinit writing behind the bench.
        _run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image))
        loop = _run("losetup", "--find", "--show", "--direct-io=on", str(image))
        _run("mount", loop, str(mnt))
        mounted = True
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(mnt, ignore_errors=True)
        image.unlink(missing_ok=True)
