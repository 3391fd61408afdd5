"""Test helpers shared by every test module: build real trees, compare them, run the `blit` CLI."""

from __future__ import annotations

import hashlib
import os
import pty
import random
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

TEMP_MARK = ".blit-tmp."
BASE_NS = 1_600_000_000_123_456_789  # a fixed epoch (2020-09-13) with a nanosecond part
CHUNK = 4 << 20


def _mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def _write(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    if mtime_ns is not None:
        _mtime(path, mtime_ns)


def make_tree(root: Path, *, small_files: int = 5000, big_bytes: int = 50 * 2**20) -> None:
    """Build a deterministic tree under `root` with every kind of entry blit must preserve.

    Layout: nested dirs (a/b/c/d), empty dirs (empty/, nest_empty/x/y/), relative symlinks to a
    file and to a dir, a dangling link, an absolute link, unicode and space-laden names, 0-byte
    files, files with modes 0o600/0o755/0o644/0o400, `small_files` files of 1–16 KiB spread over
    50 dirs under small/, and big/big.bin of `big_bytes` random bytes. Explicit nanosecond mtimes
    are set on files, links and (last, children first) on every directory.
    """
    rng = random.Random(20260101)
    root.mkdir(parents=True, exist_ok=True)
    tick = iter(range(10**9))

    def ns() -> int:
        return BASE_NS + next(tick) * 1_000_003_007  # distinct values, odd nanoseconds

    # Nested directories, at least four levels deep.
    _write(root / "a" / "top.txt", b"top level\n", mtime_ns=ns())
    _write(root / "a" / "b" / "mid.txt", b"middle\n" * 100, mtime_ns=ns())
    _write(root / "a" / "b" / "c" / "deep.txt", b"deep file\n" * 10, mtime_ns=ns())
    _write(root / "a" / "b" / "c" / "d" / "deeper.bin", rng.randbytes(3000), mtime_ns=ns())

    # Empty directories, one of them nested.
    (root / "empty").mkdir()
    (root / "nest_empty" / "x" / "y").mkdir(parents=True)

    # Unicode and spaces.
    _write(root / "ünï cödé" / "fïlé ñame.txt", "ünïcödé cöntént\n".encode(), mtime_ns=ns())
    _write(root / "with space" / "file with space.txt", b"spaced\n", mtime_ns=ns())
    _write(root / "日本語" / "ファイル.txt", "こんにちは\n".encode(), mtime_ns=ns())

    # 0-byte files.
    _write(root / "zero.bin", b"", mtime_ns=ns())
    _write(root / "a" / "b" / "zero too", b"", mtime_ns=ns())

    # Permission bits.
    for mode in (0o600, 0o755, 0o644, 0o400):
        _write(root / "perm" / f"mode_{mode:o}", f"mode {mode:o}\n".encode(), mode, ns())
    (root / "perm" / "dir_750").mkdir(mode=0o750)
    os.chmod(root / "perm" / "dir_750", 0o750)
    _write(root / "perm" / "dir_750" / "inside", b"inside\n", mtime_ns=ns())

    # Symlinks: relative to a file and to a dir, dangling, absolute (never followed).
    links = {
        "link_to_file": "a/b/c/deep.txt",
        "a/link_to_dir": "../with space",
        "a/b/link_up": "../top.txt",
        "dangling": "does/not/exist",
        "abs_link": "/etc/hostname",
        "ünï cödé/lïnk": "fïlé ñame.txt",
    }
    for rel, target in links.items():
        os.symlink(target, root / rel)
        _mtime(root / rel, ns())

    # Many small files, 1–16 KiB, over 50 directories.
    for i in range(small_files):
        size = rng.randint(1024, 16 * 1024)
        path = root / "small" / f"d{i % 50:02d}" / f"f{i:05d}.dat"
        _write(path, rng.randbytes(size), mtime_ns=ns() if i % 7 == 0 else None)

    # One big file of random bytes.
    big = root / "big" / "big.bin"
    big.parent.mkdir(parents=True, exist_ok=True)
    with open(big, "wb") as f:
        left = big_bytes
        while left:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n
    os.chmod(big, 0o640)
    _mtime(big, ns())

    # Directory mtimes last, children before parents, so nothing disturbs them afterwards.
    dirs = [Path(d) for d, _, _ in os.walk(root)]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        _mtime(d, ns())


@dataclass(frozen=True, slots=True)
class Node:
    """What assert_same_tree compares for one entry."""

    kind: str               # "f", "d", "l"
    mode: int
    mtime_ns: int
    size: int
    target: str | None


def walk(root: Path) -> dict[str, Node]:
    """Every entry under `root` (root itself as ""), by relative POSIX path; links not followed."""
    out: dict[str, Node] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        path = root / rel if rel else root
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            kind, target = "d", None
            with os.scandir(path) as it:
                stack.extend(f"{rel}/{d.name}" if rel else d.name for d in it)
        elif stat.S_ISLNK(st.st_mode):
            kind, target = "l", os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            kind, target = "f", None
        else:
            kind, target = "other", None
        out[rel] = Node(kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                        st.st_size if kind == "f" else 0, target)
    return out


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def assert_same_tree(src: Path, dst: Path) -> None:
    """Assert that `dst` is an exact copy of `src`: paths, kinds, bytes, modes, mtimes, links.

    Also asserts that no blit temp file (a name containing ".blit-tmp.") is left in `dst`.
    """
    a, b = walk(src), walk(dst)
    temps = sorted(p for p in b if TEMP_MARK in p.rpartition("/")[2])
    assert not temps, f"temp files left in {dst}: {temps[:10]}"
    missing = sorted(set(a) - set(b))
    extra = sorted(set(b) - set(a))
    assert not missing, f"missing in {dst}: {missing[:20]} ({len(missing)} in all)"
    assert not extra, f"unexpected in {dst}: {extra[:20]} ({len(extra)} in all)"
    for rel in sorted(a):
        x, y = a[rel], b[rel]
        name = rel or "."
        assert x.kind == y.kind, f"{name}: kind {x.kind!r} != {y.kind!r}"
        assert y.mtime_ns == x.mtime_ns, f"{name}: mtime_ns {y.mtime_ns} != {x.mtime_ns}"
        if x.kind == "l":
            assert y.target == x.target, f"{name}: link target {y.target!r} != {x.target!r}"
            continue
        assert y.mode == x.mode, f"{name}: mode {y.mode:o} != {x.mode:o}"
        if x.kind == "f":
            assert y.size == x.size, f"{name}: size {y.size} != {x.size}"
            assert _same_bytes(src / rel, dst / rel), f"{name}: content differs"


def snapshot(root: Path) -> dict[str, tuple[Node, str | None]]:
    """Full state of a tree (metadata plus a content hash per file), to prove nothing changed."""
    out: dict[str, tuple[Node, str | None]] = {}
    if not os.path.lexists(root):
        return out
    for rel, node in walk(root).items():
        digest = None
        if node.kind == "f":
            digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        out[rel] = (node, digest)
    return out


def blit(*args: str, input: str | None = None, cwd: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m blit_client.cli ARGS`) non-interactively; no return-code check.

    `env` entries are added to (not substituted for) the current environment.
    """
    full_env = {**os.environ, **env} if env is not None else None
    return subprocess.run(
        [sys.executable, "-m", "blit_client.cli", *args],
        input=input, stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True, text=True, timeout=300, cwd=cwd, env=full_env, check=False,
    )


def blit_on_tty(args: list[str], answer: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI with a terminal on stdin that has `answer` typed in (confirmations)."""
    master, slave = pty.openpty()
    try:
        os.write(master, answer.encode())
        return subprocess.run([sys.executable, "-m", "blit_client.cli", *args], stdin=slave,
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        os.close(slave)
        os.close(master)


def wait_for(cond: Callable[[], bool], seconds: float = 20.0) -> bool:
    """Poll `cond` until it holds (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False
