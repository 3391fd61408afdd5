"""`python -m loadtests.bench`: blit vs rsync daemon, cp -a and rsync -a on loopback, one table."""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from . import report
from .cases import Case, Env, main_cases, noop_cases, scale_cases, tuning_cases
from .datasets import Dataset, ensure, specs, warm
from .procs import Daemon, run_timed, start_blitd, start_rsyncd, stop
from .quiet import WARM_MOST, meminfo, page_reporting_held
from .render import command_line, markdown, text
from .runner import Bench
from .scratchfs import fs_info, scratch_ext4

MAIN = ("large", "large4", "small", "mixed")
SECTIONS = (*MAIN, "noop", "tuning", "scale")
REPO = Path(__file__).resolve().parent.parent


def _sh(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.rstrip()
    except OSError:
        return ""


def machine_facts() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.machine())
    changed = [ln[3:] for ln in _sh("git", "-C", str(REPO), "status", "--porcelain").splitlines()
               if not ln[3:].startswith("loadtests/")]
    dirty = f" + uncommitted: {', '.join(changed[:5])}" if changed else ""
    return {
        "nproc": str(os.cpu_count()), "cpu": cpu, "ram": f"{meminfo('MemTotal') / 2**30:.1f} GiB",
        "kernel": platform.release(), "python": platform.python_version(),
        "rsync": (_sh("rsync", "--version").splitlines() or ["?"])[0],
        "blit": _sh("git", "-C", str(REPO), "rev-parse", "--short", "HEAD") + dirty,
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def blit_command() -> list[str]:
    script = Path(sys.executable).parent / "blit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "blit_client.cli"]


def compile_blit() -> None:
    """Byte-compile blit's modules, as a regular (non-editable) install does: under
    PYTHONDONTWRITEBYTECODE an editable install compiles them again on every command
    (+25 ms a run), which no user of an installed blit pays."""
    for package in ("blit_shared", "blit_client", "blit_server"):
        compileall.compile_dir(REPO / package, quiet=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small datasets, 1 repeat (minutes)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, metavar="NAME",
                   help=f"run only these of {', '.join(SECTIONS)}")
    p.add_argument("--tuning", action="store_true", help="add auto-tuning vs --streams 1/8")
    p.add_argument("--scale", action="store_true", help="add 20k vs 200k files (time, memory)")
    p.add_argument("--repeat", type=int, help="runs per case, median reported [3; quick 1]")
    p.add_argument("--data", type=Path, help="keep generated datasets here (reused next time)")
    p.add_argument("--work", type=Path, help="parent dir for the temp work dir [/tmp]")
    p.add_argument("--scratch-fs", type=int, metavar="GB",
                   help="run on a fresh journaled ext4 of GB (sparse image under --work or "
                        "/tmp, loop device); needs root")
    p.add_argument("--page-reporting", action="store_true",
                   help="leave the VM's free page reporting as it is (by default it is held "
                        "off while the bench runs, when there is any and this is root)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write all samples as JSON")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the tables as markdown")
    p.add_argument("--timeout", type=float, default=1800, help="per-run timeout, seconds")
    p.add_argument("--from-json", type=Path, metavar="FILE",
                   help="run nothing: reprint (and --markdown) the report of a --json file")
    return p.parse_args(argv)


def _datasets(names: list[str], quick: bool, root: Path) -> dict[str, Dataset]:
    spec = specs(quick)
    data: dict[str, Dataset] = {}
    print(f"datasets in {root} (deterministic; reused when the stamp matches):", flush=True)
    for name in dict.fromkeys(names):
        t0 = time.perf_counter()
        ds = data[name] = ensure(spec[name], root)
        t1 = time.perf_counter()
        warm(ds)
        print(f"  {name}: {ds.files:,} files, {ds.bytes / 2**20:,.0f} MiB, {ds.links} links "
              f"(ready in {t1 - t0:.1f} s, read into page cache in "
              f"{time.perf_counter() - t1:.1f} s)", flush=True)
    return data


def _cases(env: Env, section: str) -> list[Case]:
    if section in MAIN:
        return main_cases(env, section)
    if section == "noop":
        return noop_cases(env)
    if section == "tuning":
        return tuning_cases(env, "large") + tuning_cases(env, "small")
    return scale_cases(env)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return rerender(args)
    if shutil.which("rsync") is None:
        print("bench: rsync not found (apt-get install -y rsync)", file=sys.stderr)
        return 2
    sections = list(args.only or [*MAIN, "noop"] + ["tuning"] * args.tuning
                    + ["scale"] * args.scale)
    needed: list[str] = []
    for s in sections:
        needed += {"noop": ["small"], "tuning": ["large", "small"],
                   "scale": ["small", "many"]}.get(s, [s])
    repeat = args.repeat or (1 if args.quick else 3)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # cleanup (daemons, scratch fs, sysfs) runs
        signal.signal(sig, _exit_on_signal)
    compile_blit()
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        parent = args.work
        if args.scratch_fs:
            parent = stack.enter_context(scratch_ext4(args.work or Path(tempfile.gettempdir()),
                                                      args.scratch_fs))
        work = Path(tempfile.mkdtemp(prefix="blit-bench-", dir=parent))
        stack.callback(shutil.rmtree, work, True)  # datasets survive only under --data
        memory = ("free page reporting left as it is (--page-reporting)" if args.page_reporting
                  else stack.enter_context(page_reporting_held(
                      (2 << 30) if args.quick else WARM_MOST)))
        bench = _run(args, sections, needed, repeat, work, stack, memory)
        wall = time.perf_counter() - t_start
        code = finish(bench.results, bench.facts, bench.notes, command_line(args), repeat, wall,
                      args)
        if bench.defer_deletes:
            t0 = time.perf_counter()
            bench.purge()
            print(f"(deferred deletes purged in {time.perf_counter() - t0:.0f} s)", flush=True)
    return code


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(args: argparse.Namespace, sections: list[str], needed: list[str], repeat: int,
         work: Path, stack: contextlib.ExitStack, memory: str) -> Bench:
    data_root = (args.data or work / "data").resolve()
    data_root.mkdir(parents=True, exist_ok=True)
    dst_root = work / "dst"
    dst_root.mkdir()
    facts = machine_facts()
    fs = fs_info(work)
    facts["/tmp fs"] = fs_info(Path(tempfile.gettempdir())).describe()
    facts["work fs"] = f"{fs.describe()} ({work})"
    if data_root != work / "data":
        facts["data fs"] = fs_info(data_root).describe()
    facts["memory"] = memory
    print("blit benchmark" + (" (--quick)" if args.quick else ""), flush=True)
    for k, v in facts.items():
        print(f"  {k:<9} {v}", flush=True)
    if fs.journal is False:
        print("  WARNING: ext4 without a journal: creating files soon after deleting many is "
              "slow (ext4 recently_deleted()); many-file destinations are parked and deleted "
              "at the end, but other processes' deletes still add noise. --scratch-fs GB "
              "avoids it.", flush=True)
    data = _datasets(needed, args.quick, data_root)
    modules = {"data": data_root, "dst": dst_root}
    daemons: dict[str, Daemon] = {}

    def stop_all() -> None:
        for d in daemons.values():
            stop(d.proc)

    stack.callback(stop_all)
    daemons["blitd"] = start_blitd(work, modules)
    daemons["rsyncd"] = start_rsyncd(work, modules)
    env = Env(blit_command(), daemons["blitd"].port, daemons["rsyncd"].port, data_root, dst_root)
    bench = Bench(env, work, daemons, modules, args.timeout, defer_deletes=fs.journal is False)
    bench.facts = facts
    bench.warm_up()
    startup = sorted(run_timed([*env.blit, "version"], work, 60).seconds for _ in range(3))[1]
    facts["blit startup"] = f"{startup:.3f} s (`blit version`, median of 3)"
    print(f"  blit startup (`blit version`): {startup:.3f} s", flush=True)
    for s in sections:
        print(f"\n== {s} (repeat {repeat}) ==", flush=True)
        if s == "scale":
            print("  (remote runs each start a fresh blitd: memory vs file count is measured "
                  "without what earlier transfers left behind)", flush=True)
        bench.run_group(_cases(env, s), data, repeat)
    facts["load average"] = f"{facts.pop('load average')} at start, " + \
        " ".join(f"{x:.2f}" for x in os.getloadavg()) + " at end"
    return bench


def finish(res: report.Results, facts: dict[str, str], notes: list[str], command: str,
           repeat: int, wall: float, args: argparse.Namespace) -> int:
    """Print the tables (and write --markdown / --json); exit 1 if any run failed."""
    print("\n" + text(res, facts, repeat, notes, wall), flush=True)
    if args.markdown:
        args.markdown.write_text(markdown(res, facts, repeat, notes, command, wall))
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "facts": facts, "repeat": repeat, "wall_s": wall,
            "notes": notes, "targets": report.targets(res),
            "cases": [{"id": r.case.id, "section": r.case.section, "dataset": r.case.dataset,
                       "route": r.case.route, "carrier": r.case.carrier, "tool": r.case.tool,
                       "argv": r.case.argv, "files": r.files, "bytes": r.bytes,
                       "error": r.error, "samples": [asdict(s) for s in r.samples]}
                      for r in res.values()],
        }, indent=1))
    return 1 if any(r.error for r in res.values()) else 0


def rerender(args: argparse.Namespace) -> int:
    """--from-json: rebuild the report of an earlier run from its --json file."""
    saved = json.loads(args.from_json.read_text())
    env = Env(["blit"], 0, 0, Path("data"), Path("dst"))
    known = {c.id: c for s in SECTIONS for c in _cases(env, s)}
    res: report.Results = {}
    for d in saved["cases"]:
        case = known[d["id"]]
        case.argv = d["argv"]
        res[case.id] = report.Result(case, d["files"], d["bytes"],
                                     [report.Sample(**x) for x in d["samples"]], d["error"])
    if args.json == args.from_json:
        args.json = None
    return finish(res, saved["facts"], saved["notes"],
                  saved.get("command", "python -m loadtests.bench"), saved["repeat"],
                  saved["wall_s"], args)


if __name__ == "__main__":
    sys.exit(main())
