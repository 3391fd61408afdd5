"""Run benchmark cases: fresh destinations, timing, RSS, correctness checks, sample collection."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from . import report
from .cases import Case, Env
from .datasets import Dataset, check_copy
from .procs import CpuWatch, Daemon, RssWatch, run_timed, start_blitd, stop


class BenchError(Exception):
    """A run that failed or produced a wrong destination: reported, never timed."""


def _summary(stdout: bytes) -> dict[str, object]:
    for line in reversed(stdout.splitlines()):
        if line.strip():
            event = json.loads(line)
            if event.get("event") == "summary":
                return dict(event)
            break
    raise BenchError(f"no --json summary line; stdout ends {stdout[-300:]!r}")


class Bench:
    """Runs cases against running daemons and collects their results."""

    def __init__(self, env: Env, work: Path, daemons: dict[str, Daemon], modules: dict[str, Path],
                 timeout: float, defer_deletes: bool) -> None:
        self.env, self.work, self.daemons, self.timeout = env, work, daemons, timeout
        self.modules = modules
        self.defer_deletes = defer_deletes
        self.results: report.Results = {}
        self.facts: dict[str, str] = {}
        self.notes: list[str] = []
        self._populated: set[str] = set()
        self._trash = work / "trash"
        self._trashed = 0

    def retire(self, dst: Path) -> None:
        """Remove a destination. On ext4 without a journal, deleting many files slows every
        file created in the next minute (see scratchfs), so there only files ≥ 1 MiB go now
        and the rest is parked in trash/ until purge()."""
        if not dst.exists():
            return
        if not self.defer_deletes:
            shutil.rmtree(dst)
            return
        for dirpath, _dirs, names in os.walk(dst):
            for n in names:
                p = os.path.join(dirpath, n)
                if not os.path.islink(p) and os.path.getsize(p) >= 1 << 20:
                    os.unlink(p)
        self._trash.mkdir(exist_ok=True)
        self._trashed += 1
        os.rename(dst, self._trash / str(self._trashed))

    def purge(self) -> None:
        shutil.rmtree(self._trash, ignore_errors=True)

    def _check(self, case: Case, ds: Dataset, stdout: bytes) -> tuple[float | None, float | None]:
        if not case.blit:
            return None, None
        s = _summary(stdout)
        if s.get("files_failed"):
            raise BenchError(f"blit reported failures: {s.get('failures')}")
        if s.get("carrier") != case.expect_carrier:
            raise BenchError(f"carrier {s.get('carrier')!r}, expected {case.expect_carrier!r}")
        moved = int(s.get("files_transferred", -1))  # type: ignore[call-overload]
        if case.noop and moved:
            raise BenchError(f"no-op re-run transferred {moved} files")
        if not case.noop and not ds.files <= moved <= ds.files + ds.links:
            raise BenchError(f"blit transferred {moved} files of {ds.files}")
        if not case.noop and s.get("bytes") != ds.bytes:
            self.notes.append(f"{case.id}: summary bytes {s.get('bytes')} vs dataset {ds.bytes}")
        fb, dur = s.get("first_byte_s"), s.get("duration_s")
        return (float(fb) if fb is not None else None,  # type: ignore[arg-type]
                float(dur) if dur is not None else None)  # type: ignore[arg-type]

    def execute(self, case: Case, ds: Dataset) -> report.Sample:
        """One timed run of `case` into a fresh (or, for a no-op, pre-filled) destination."""
        if case.noop:
            if case.id not in self._populated:
                self.retire(case.dst)
                assert case.populate is not None
                pre = run_timed(case.populate, self.work, self.timeout)
                if pre.code != 0:
                    raise BenchError(f"populate exited {pre.code}: {pre.stderr[-500:]!r}")
                self._populated.add(case.id)
        else:
            self.retire(case.dst)
        if case.fresh_daemon:
            self.restart_blitd()
        os.sync()  # earlier runs' dirty pages are written back before the clock starts
        daemon = self.daemons[case.daemon].proc.pid if case.daemon else None
        watch = RssWatch(daemon)
        with CpuWatch(watch) as cpu, watch:  # watch exits first: its last poll counts
            run = run_timed(case.argv, self.work, self.timeout)
        if run.timed_out:
            raise BenchError(f"timed out after {self.timeout:.0f} s")
        if run.code != 0:
            err = run.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"exit {run.code}: {' | '.join(err)}")
        fb, dur = self._check(case, ds, run.stdout)
        problem = check_copy(ds, case.dst)
        if problem:
            raise BenchError(problem)
        if not case.noop:
            self.retire(case.dst)
        return report.Sample(run.seconds, run.rss_kib, watch.peak_kib, watch.start_kib,
                             run.cpu_s, fb, dur, cpu.daemon_s, cpu.other_s(run.cpu_s),
                             cpu.steal_s)

    def run_group(self, cases: list[Case], data: dict[str, Dataset], repeat: int) -> None:
        """`repeat` rounds; each round runs every case once, blit alternating with its peers."""
        for c in cases:
            ds = data[c.dataset]
            self.results[c.id] = report.Result(c, ds.files, ds.bytes)
        for rep in range(1, repeat + 1):
            for c in cases:
                res = self.results[c.id]
                if res.error:
                    continue
                try:
                    sample = self.execute(c, data[c.dataset])
                except (BenchError, OSError, ValueError) as exc:
                    res.error = str(exc)
                    print(f"  [{rep}/{repeat}] {c.id:<26} FAILED: {exc}", flush=True)
                    print(f"      command: {' '.join(c.argv)}", flush=True)
                    continue
                res.samples.append(sample)
                rate = "" if c.noop else f"{res.bytes / 1e6 / sample.seconds:9.0f} MB/s"
                print(f"  [{rep}/{repeat}] {c.id:<26} {sample.seconds:8.3f} s {rate}"
                      f" {res.files / sample.seconds:9.0f} files/s  rss client "
                      f"{sample.client_kib / 1024:.0f} MiB daemon {sample.daemon_kib / 1024:.0f}"
                      " MiB", flush=True)
        for c in cases:
            if c.noop:
                self.retire(c.dst)

    def restart_blitd(self) -> None:
        """A fresh blitd on the same port, warmed by a tiny push and pull."""
        stop(self.daemons["blitd"].proc)
        self.daemons["blitd"] = start_blitd(self.work, self.modules, port=self.env.blit_port)
        self.warm_up(blit_tcp_only=True)

    def warm_up(self, blit_tcp_only: bool = False) -> None:
        """Untimed: one tiny transfer per route and tool, so no measured run pays first-use
        costs (daemon imports, thread pools, rsync's first fork). Any failure stops the bench."""
        src = self.env.dst / "_warmup_src"
        for i in range(20):
            (src / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
            (src / f"d{i % 4}" / f"f{i}").write_bytes(os.urandom(1000 + 100 * i))
        (src / "big").write_bytes(os.urandom(4 << 20))
        e, b = self.env, [*self.env.blit, "copy", "--json"]
        remote = f"127.0.0.1:{e.blit_port}:/dst/"
        rsync = f"rsync://127.0.0.1:{e.rsync_port}/dst/"
        commands = [
            [*b, f"{src}/", remote + "_w1"], [*b, remote + "_warmup_src/", str(e.dst / "_w2")],
            [*b, "--force-http", f"{src}/", remote + "_w3"],
            [*b, "--force-http", remote + "_warmup_src/", str(e.dst / "_w4")],
            [*b, f"{src}/", str(e.dst / "_w5")], ["rsync", "-a", f"{src}/", rsync + "_w6/"],
            ["rsync", "-a", rsync + "_warmup_src/", f"{e.dst}/_w7/"],
        ]
        if blit_tcp_only:
            commands = commands[:2]
        for argv in commands:
            run = run_timed(argv, self.work, 120)
            if run.code != 0:
                raise BenchError(f"warm-up failed (exit {run.code}): {' '.join(argv)}\n"
                                 f"{run.stderr.decode(errors='replace')[-2000:]}")
        for p in [src, *(e.dst / f"_w{i}" for i in range(1, 8))]:
            shutil.rmtree(p, ignore_errors=True)
