"""Load test: 16+ concurrent `blit` clients push, pull and mirror against one blitd, then verify.

Run as `python -m loadtests.load [--clients 16] [--seconds 60] [--quick]`.

One blitd on 127.0.0.1 exports a writable module `load` and a read-only module `shared`. Each
client worker is a thread that runs the real CLI (`python -m blit_client.cli`) as subprocesses,
over and over until the time is up (every loop is bounded in iterations and in time):

- push:        a distinct tree to a distinct destination on every iteration;
- pull:        the shared tree to a distinct local directory on every iteration;
- overlap:     up to four workers push the SAME tree to the SAME destination at once (copy);
- mirror-push: `mirror -y` alternating between two trees into one destination (deletions);
- mirror-pull: `mirror -y` of the shared tree into one local directory seeded with junk.

Iterations alternate between the TCP data plane and `--force-http`. Afterwards every
destination is compared byte for byte (plus modes, mtimes, links) with its source using
tests.helpers.assert_same_tree. The report gives transfers completed, bytes moved, errors (each
failing command with its stderr), wall time and the peak RSS of the daemon (VmHWM polled from
/proc) and of the largest client (wait4 rusage). The exit code is 1 when any command failed or
any tree differs, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.procs import free_port, status_kib
from loadtests.procs import stop as stop_process
from tests.helpers import assert_same_tree

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
KiB, MiB = 1 << 10, 1 << 20
BASE_NS = 1_700_000_000_000_000_007
ROLES = ("push", "pull", "overlap", "mirror-push", "push", "pull", "overlap", "mirror-pull")
MAX_ITERATIONS = 10_000           # per worker, on top of the time bound
COMMAND_TIMEOUT = 180.0           # seconds for one CLI run before it is killed (and an error)
OVERLAP_GROUP = 4                 # overlap workers sharing one destination


# -- trees -----------------------------------------------------------------------------------

def make_load_tree(root: Path, seed: int, *, small: int, big: tuple[int, ...]) -> int:
    """A deterministic tree: `small` files of 1-16 KiB over nested dirs, the `big` file sizes,
    an empty dir, a relative symlink and explicit mtimes; returns its file bytes."""
    rng = random.Random(seed)
    tick = iter(range(10**9))
    total = 0

    def stamp(path: Path) -> None:
        ns = BASE_NS + next(tick) * 1_000_003_001 + seed
        os.utime(path, ns=(ns, ns), follow_symlinks=False)

    def write(path: Path, data: bytes, mode: int = 0o644) -> None:
        nonlocal total
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
        stamp(path)
        total += len(data)

    root.mkdir(parents=True)
    for i in range(small):
        depth = "/".join(f"d{(i + k) % 7}" for k in range(i % 4))
        write(root / "small" / depth / f"f{seed}-{i:04d}.dat",
              rng.randbytes(rng.randint(KiB, 16 * KiB)), 0o600 if i % 11 == 0 else 0o644)
    for j, size in enumerate(big):
        write(root / "big" / f"big{j}.bin", rng.randbytes(size), 0o640)
    write(root / f"tree-{seed}.txt", f"tree {seed}\n".encode())
    (root / "empty").mkdir()
    os.symlink(f"tree-{seed}.txt", root / "link")
    stamp(root / "link")
    dirs = [Path(d) for d, _, _ in os.walk(root)]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        stamp(d)
    return total


# -- the daemon ------------------------------------------------------------------------------

@dataclass
class Blitd:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    peak_kib: int = 0
    start_fds: int = 0

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return 0

    def url(self, module: str, path: str = "") -> str:
        return f"{HOST}:{self.port}:/{module}" + (f"/{path}" if path else "")


@contextlib.contextmanager
def running_blitd(work: Path, load: Path, shared: Path) -> Iterator[Blitd]:
    """blitd on 127.0.0.1 exporting `load` (writable) and `shared` (read-only); its peak RSS
    is polled every 50 ms; it is always stopped, by its PID, on the way out."""
    port = free_port()
    config = work / "blitd.toml"
    config.write_text(f'[daemon]\nbind = "{HOST}"\n'
                      f'[[module]]\nname = "load"\npath = "{load}"\n'
                      f'[[module]]\nname = "shared"\npath = "{shared}"\nread_only = true\n')
    log = work / "blitd.log"
    cmd = [sys.executable, "-m", "blit_server.cli", "--bind", HOST, "--port", str(port),
           "--config", str(config)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    daemon = Blitd(proc, port, log)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.05):
            daemon.peak_kib = max(daemon.peak_kib, status_kib(proc.pid))

    poller = threading.Thread(target=poll, daemon=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"blitd exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("blitd did not start") from None
                time.sleep(0.05)
        poller.start()
        daemon.start_fds = daemon.fds()
        yield daemon
    finally:
        stop.set()
        if poller.is_alive():
            poller.join()
        daemon.peak_kib = max(daemon.peak_kib, status_kib(proc.pid))
        stop_process(proc)


# -- running clients -------------------------------------------------------------------------

@dataclass
class Outcome:
    argv: list[str]
    code: int
    seconds: float
    rss_kib: int
    stdout: str
    stderr: str


def run_cli(args: list[str], scratch: Path, timeout: float = COMMAND_TIMEOUT) -> Outcome:
    """Run `python -m blit_client.cli ARGS`; peak RSS from wait4, killed (its own process
    group only) after `timeout` seconds. Output goes to files, so no pipe can fill up."""
    argv = [sys.executable, "-m", "blit_client.cli", *args]
    out_path, err_path = scratch / "out", scratch / "err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=ROOT, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - t0
    stderr = err_path.read_text(errors="replace")
    if killed.is_set():
        stderr += f"\n[load] killed after {timeout:.0f} s"
    return Outcome(argv, proc.returncode, seconds, int(usage.ru_maxrss),
                   out_path.read_text(errors="replace"), stderr)


@dataclass
class Stats:
    """Shared by all workers (under `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    transfers: int = 0
    files: int = 0
    bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: list[Outcome] = field(default_factory=list)
    client_peak_kib: int = 0
    slowest: float = 0.0
    checks: list[tuple[Path, Path, str]] = field(default_factory=list)  # (source, copy, what)

    def record(self, kind: str, o: Outcome) -> bool:
        summary: dict[str, Any] = {}
        for line in reversed(o.stdout.splitlines()):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "summary":
                    summary = event
                    break
        ok = o.code == 0 and bool(summary) and summary.get("files_failed") == 0
        with self.lock:
            self.client_peak_kib = max(self.client_peak_kib, o.rss_kib)
            self.slowest = max(self.slowest, o.seconds)
            if not ok:
                self.errors.append(o)
                return False
            self.transfers += 1
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self.files += int(summary.get("files_transferred", 0))
            self.bytes += int(summary.get("bytes", 0))
        return True


@dataclass
class Plan:
    daemon: Blitd
    load: Path            # the daemon's writable module root
    shared: Path          # the daemon's read-only module root (the shared tree)
    trees: list[Path]     # distinct source trees on the client side
    local: Path           # where pulls land
    scratch: Path
    deadline: float


def carrier_flags(worker: int, iteration: int) -> list[str]:
    return ["--force-http"] if (worker + iteration) % 2 else []


def worker(k: int, role: str, plan: Plan, stats: Stats) -> None:
    """One client: runs its role's command until the deadline (or MAX_ITERATIONS)."""
    scratch = plan.scratch / f"w{k:02d}"
    scratch.mkdir(parents=True)
    ntrees = len(plan.trees)
    last_mirrored: Path | None = None
    for i in range(MAX_ITERATIONS):
        if time.monotonic() >= plan.deadline:
            break
        flags = ["--json", *carrier_flags(k, i)]
        if role == "push":
            src = plan.trees[(k + i) % ntrees]
            rel = f"push/w{k:02d}/{i:04d}"
            o = run_cli(["copy", *flags, f"{src}/", plan.daemon.url("load", rel)], scratch)
            if stats.record(role, o):
                with stats.lock:
                    stats.checks.append((src, plan.load / rel, f"push w{k} #{i}"))
        elif role == "pull":
            dst = plan.local / "pull" / f"w{k:02d}" / f"{i:04d}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            o = run_cli(["copy", *flags, plan.daemon.url("shared") + "/", str(dst)], scratch)
            if stats.record(role, o):
                with stats.lock:
                    stats.checks.append((plan.shared, dst, f"pull w{k} #{i}"))
        elif role == "overlap":
            # Even iterations: the group's long-lived destination (idempotent re-copies);
            # odd ones: a fresh destination per iteration number, which the group's workers
            # reach at about the same time, so their writes of the same files really overlap.
            group = overlap_group(k)
            rel = f"overlap/g{group}/" + ("same" if i % 2 == 0 else f"round-{i:04d}")
            o = run_cli(["copy", *flags, f"{plan.trees[group % ntrees]}/",
                         plan.daemon.url("load", rel)], scratch)
            stats.record(role, o)
        elif role == "mirror-push":
            src = plan.trees[(k + i) % 2 % ntrees]
            o = run_cli(["mirror", "-y", *flags, f"{src}/",
                         plan.daemon.url("load", f"mirror/w{k:02d}")], scratch)
            if stats.record(role, o):
                last_mirrored = src
        elif role == "mirror-pull":
            dst = plan.local / "mirror" / f"w{k:02d}"
            (dst / "junk").mkdir(parents=True, exist_ok=True)
            (dst / "junk" / f"junk-{i}.txt").write_text("to be deleted\n")
            o = run_cli(["mirror", "-y", *flags, plan.daemon.url("shared") + "/", str(dst)],
                        scratch)
            if stats.record(role, o):
                last_mirrored = plan.shared
        else:
            raise ValueError(role)
    with stats.lock:
        if role == "mirror-push" and last_mirrored is not None:
            stats.checks.append((last_mirrored, plan.load / "mirror" / f"w{k:02d}",
                                 f"mirror-push w{k}"))
        if role == "mirror-pull" and last_mirrored is not None:
            stats.checks.append((plan.shared, plan.local / "mirror" / f"w{k:02d}",
                                 f"mirror-pull w{k}"))


def overlap_group(k: int) -> int:
    """Overlap workers are numbered in order of appearance and grouped OVERLAP_GROUP at a time."""
    index = sum(1 for j in range(k) if ROLES[j % len(ROLES)] == "overlap")
    return index // OVERLAP_GROUP


# -- main ------------------------------------------------------------------------------------

def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtests.load",
                                 description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--clients", type=int, default=16, help="concurrent client workers (16)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long clients run (60)")
    ap.add_argument("--quick", action="store_true", help="a ~20 s run (sets --seconds 20)")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a new one "
                    "under $TMPDIR, removed after a clean run)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir")
    args = ap.parse_args(argv)
    if args.clients < 1:
        ap.error("--clients must be at least 1")
    seconds = 20.0 if args.quick else args.seconds

    work = args.work or Path(tempfile.mkdtemp(prefix="blit-load-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"blit load test: {args.clients} clients for {seconds:g} s, scratch {work}", flush=True)
    t_setup = time.monotonic()
    trees = []
    source_bytes = 0
    for t in range(4):
        root = work / "src" / f"tree{t}"
        source_bytes += make_load_tree(root, seed=t + 1, small=120 + 40 * t,
                                       big=(1 * MiB + t * 4099, (2 + t % 2) * MiB + 17))
        trees.append(root)
    shared = work / "shared"
    make_load_tree(shared, seed=99, small=200, big=(3 * MiB + 5, 1 * MiB + 3, 512 * KiB))
    load, local = work / "daemon", work / "local"
    load.mkdir()
    local.mkdir()
    print(f"trees: 4 distinct ({fmt_bytes(source_bytes)}) + shared, built in "
          f"{time.monotonic() - t_setup:.1f} s", flush=True)

    stats = Stats()
    failures: list[str] = []
    with running_blitd(work, load, shared) as daemon:
        roles = [ROLES[k % len(ROLES)] for k in range(args.clients)]
        t0 = time.monotonic()
        plan = Plan(daemon, load, shared, trees, local, work / "scratch", t0 + seconds)
        threads = [threading.Thread(target=worker, args=(k, role, plan, stats),
                                    name=f"client-{k}-{role}") for k, role in enumerate(roles)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.monotonic() - t0
        healthy = daemon.proc.poll() is None
        end_rss_kib, end_fds = status_kib(daemon.proc.pid, "VmRSS:"), daemon.fds()
        # Overlap destinations: every worker of a group pushed the same tree there.
        for group in sorted({overlap_group(k) for k, r in enumerate(roles) if r == "overlap"}):
            gdir = load / "overlap" / f"g{group}"
            for dst in sorted(gdir.iterdir()) if gdir.is_dir() else []:
                stats.checks.append((trees[group % len(trees)], dst,
                                     f"overlap group {group} {dst.name}"))
        t_verify = time.monotonic()
        for src, dst, what in stats.checks:
            try:
                assert_same_tree(src, dst)
            except AssertionError as exc:
                failures.append(f"{what}: {dst} differs from {src}: {exc}")
        verify_s = time.monotonic() - t_verify
        log_text = daemon.log.read_text(errors="replace")
    tracebacks = log_text.count("Traceback")

    print(f"\nroles: {', '.join(f'{r}x{roles.count(r)}' for r in dict.fromkeys(roles))}")
    print(f"transfers completed: {stats.transfers} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(stats.by_kind.items()))})")
    print(f"files transferred:   {stats.files}")
    print(f"bytes moved:         {stats.bytes} ({fmt_bytes(stats.bytes)}, "
          f"{fmt_bytes(stats.bytes / wall)}/s)")
    print(f"errors:              {len(stats.errors)}")
    print(f"trees verified:      {len(stats.checks)} (in {verify_s:.1f} s), "
          f"mismatches: {len(failures)}")
    print(f"wall time:           {wall:.1f} s (slowest command {stats.slowest:.1f} s)")
    print(f"peak RSS daemon:     {daemon.peak_kib / 1024:.1f} MiB (VmHWM; "
          f"{end_rss_kib / 1024:.1f} MiB at the end; open fds {daemon.start_fds} -> {end_fds})")
    print(f"peak RSS client:     {stats.client_peak_kib / 1024:.1f} MiB (largest of all runs)")
    print(f"daemon alive at end: {healthy}; tracebacks in its log: {tracebacks}")
    for o in stats.errors:
        print(f"\nFAILED (exit {o.code}, {o.seconds:.1f} s): {' '.join(o.argv[2:])}\n"
              f"{o.stderr.strip()[-2000:]}")
    for line in failures:
        print(f"\nMISMATCH {line[:2000]}")
    bad = bool(stats.errors or failures or not healthy or tracebacks or not stats.transfers)
    if bad or args.keep:
        print(f"\nscratch kept: {work}")
    else:
        t_clean = time.monotonic()
        shutil.rmtree(work, ignore_errors=True)
        print(f"scratch removed in {time.monotonic() - t_clean:.1f} s")
    print("RESULT:", "FAIL" if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
