"""Processes for the bench: blitd and rsync daemons, timed child runs, peak-RSS measurement."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# One way to pick a port and to stop what we started, shared with the tests.
from tests.daemon import free_port, stop


def _wait_port(proc: subprocess.Popen[bytes], port: int, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}") from None
            time.sleep(0.05)


@dataclass(slots=True)
class Daemon:
    """A running daemon process: what it is, where it listens, its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def start_blitd(work: Path, modules: dict[str, Path], *extra: str, port: int = 0) -> Daemon:
    """blitd on 127.0.0.1 (on `port`, or a free one) with the TCP data plane, exporting
    `modules`."""
    port = port or free_port()
    log = work / f"blitd-{port}.log"
    cmd = [sys.executable, "-m", "blit_server.cli", "--bind", "127.0.0.1", "--port", str(port),
           *extra]
    for name, path in modules.items():
        cmd += ["--module", f"{name}={path}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(proc, port, log, "blitd")
    except BaseException:
        stop(proc)
        raise
    return Daemon("blitd", proc, port, log)


def start_rsyncd(work: Path, modules: dict[str, Path]) -> Daemon:
    """`rsync --daemon --no-detach` on 127.0.0.1; runs as root when we are root (DESIGN.md)."""
    port = free_port()
    log, conf = work / f"rsyncd-{port}.log", work / f"rsyncd-{port}.conf"
    lines = ["use chroot = no", "max connections = 0", f"log file = {log}"]
    if os.geteuid() == 0:
        lines[:0] = ["uid = root", "gid = root"]
    for name, path in modules.items():
        lines += [f"[{name}]", f"    path = {path}", "    read only = no"]
    conf.write_text("\n".join(lines) + "\n")
    cmd = ["rsync", "--daemon", "--no-detach", "--port", str(port), "--address", "127.0.0.1",
           "--config", str(conf)]
    with open(work / f"rsyncd-{port}.out", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(proc, port, work / f"rsyncd-{port}.out", "rsync daemon")
    except BaseException:
        stop(proc)
        raise
    return Daemon("rsyncd", proc, port, log)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def status_kib(pid: int, key: str = "VmHWM:") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssWatch:
    """Peak RSS of a daemon and its forked children during one run.

    The daemon's own high-water mark is reset (clear_refs "5") at start, so VmHWM read at the
    end is the peak of this run; forked children (rsync's per-connection process) are polled
    every 20 ms while the run lasts. `start_kib` is the daemon's RSS when the run began (what
    it kept from earlier transfers).
    """

    def __init__(self, pid: int | None) -> None:
        self.pid, self.peak_kib, self.start_kib = pid, 0, 0
        self.child_cpu: dict[int, float] = {}  # forked children's CPU, last seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssWatch:
        if self.pid is None:
            return self
        self.start_kib = status_kib(self.pid, "VmRSS:")
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        assert self.pid is not None
        todo, seen = [self.pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            self.peak_kib = max(self.peak_kib, status_kib(pid))
            if pid != self.pid:
                cpu = _process_cpu(pid, own_only=True)
                if cpu:
                    self.child_cpu[pid] = cpu
            todo += _children(pid)

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()


_TICK = os.sysconf("SC_CLK_TCK")


def _system_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


def _process_cpu(pid: int | None, own_only: bool = False) -> float:
    """utime + stime (+ reaped children's unless `own_only`), in seconds; 0 if no process."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:13 if own_only else 15]) / _TICK


class CpuWatch:
    """CPU used during one run: by the daemon (and the children `watch` polled), by the whole
    machine, and stolen by the host.

    `other_s` (machine busy − client − daemon) is everything else: other processes on the box
    and kernel threads (some of them doing this run's writeback and loopback softirqs). A run
    with a large `other_s` shared the two cores with someone else and is noisy.
    """

    def __init__(self, watch: RssWatch) -> None:
        self.pid, self.watch = watch.pid, watch
        self.daemon_s = self.busy_s = self.steal_s = 0.0

    def __enter__(self) -> CpuWatch:
        (self._busy0, self._steal0) = _system_cpu()
        self._d0 = _process_cpu(self.pid, own_only=True)
        return self

    def __exit__(self, *exc: object) -> None:
        busy, steal = _system_cpu()
        self.busy_s, self.steal_s = busy - self._busy0, steal - self._steal0
        # The daemon itself plus its per-connection children (rsync), as last polled.
        self.daemon_s = (_process_cpu(self.pid, own_only=True) - self._d0
                         + sum(self.watch.child_cpu.values()))

    def other_s(self, client_s: float) -> float:
        return max(0.0, self.busy_s - client_s - self.daemon_s)


@dataclass(slots=True)
class Run:
    """One finished child process: exit code, wall seconds, peak RSS, captured output."""

    code: int
    seconds: float
    rss_kib: int
    cpu_s: float      # user + system CPU of the child (and its reaped children)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


def run_timed(argv: list[str], work: Path, timeout: float) -> Run:
    """Run argv, timing it from spawn to reap; peak RSS comes from wait4's rusage.

    Output goes to files (not pipes) so a chatty child never blocks on a full pipe.
    """
    out_path, err_path = work / "run.stdout", work / "run.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group of the child we started

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, seconds, int(usage.ru_maxrss), usage.ru_utime + usage.ru_stime,
               out_path.read_bytes(),
               err_path.read_bytes(), timed_out.is_set())
