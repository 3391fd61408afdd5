"""Turn bench results into the printed report and the markdown for docs/benchmarks.md."""

from __future__ import annotations

import argparse

from . import report
from .report import Results

READING = [
    "Source trees are page-cached (read once before timing); no cache is dropped. Each run "
    "starts after `sync` with a fresh (deleted) destination on the same filesystem; no tool "
    "fsyncs, so times exclude writeback to disk.",
    "s = median wall time of the whole command (process start to exit, including Python "
    "start-up for blit); MB/s = dataset bytes / 1e6 / s; files/s = regular files / s.",
    "speed vs peer = peer seconds / blit seconds (> 1: blit is faster). Remote rows compare "
    "with the rsync daemon (`rsync -a` to/from rsync://127.0.0.1), local rows with `cp -a` "
    "and `rsync -a`.",
    "first-byte s = blit's own `first_byte_s`: from its clock start (after its imports) to the "
    "first payload byte written at the destination; for push that is the daemon's write, mapped "
    "onto the client's clock (blit ≥ 4356ff8; before, it was the client's first send). "
    "blit in-proc s = blit's `duration_s`, same clock.",
    "client / daemon CPU s = user+system CPU of the command (with its children) and of the "
    "daemon during the run; other CPU s = the machine's busy CPU minus both: other processes and "
    "kernel threads (incl. this run's writeback and softirqs). A large value means the run "
    "shared the 2 cores with someone else; spread = (slowest − fastest) / median.",
    "client RSS = peak RSS of the command (wait4 rusage, includes forked children); daemon "
    "RSS = blitd's VmHWM (reset before each run) or the rsync daemon's per-connection child.",
    "HTTP rows use the client's --force-http against the same blitd. One long-running blitd "
    "serves every section except scale, whose remote runs each start a fresh (warmed) blitd; "
    "`(at start)` is the daemon's RSS when the peak run began.",
]


def _sections(res: Results, md: bool) -> list[tuple[str, str]]:
    out = []
    for section, title in (("main", "Throughput"), ("noop", "No-op re-run (mirror of an "
                           "identical tree; files/s = files examined / s)"),
                           ("tuning", "Auto-tuning vs fixed stream counts (speed vs = fixed "
                            "seconds / auto seconds)"),
                           ("scale", "Scale: file count vs time and memory")):
        body = report.rows(res, section)
        if body:
            out.append((title, report.render(report.HEADERS, body, md)))
    body = report.parity_rows(res)
    if body:
        out.append(("Direction parity and HTTP vs TCP (speed ratios; first-byte as time ratio)",
                    report.render(report.PARITY_HEADERS, body, md)))
    body = report.scale_rows(res)
    if body:
        out.append(("Scale summary", report.render(report.SCALE_HEADERS, body, md)))
    tg = [list(t) for t in report.targets(res) if t[2] != "n/a"]  # only what this run measured
    if tg:
        out.append(("Issue 4 targets", report.render(["target", "measured", "verdict"], tg, md)))
    return out


def _facts(facts: dict[str, str], repeat: int, wall: float) -> list[str]:
    return [f"{k}: {v}" for k, v in facts.items()] + [
        f"runs per case: {repeat} (median shown)", f"bench wall time: {wall:.0f} s"]


def text(res: Results, facts: dict[str, str], repeat: int, notes: list[str], wall: float) -> str:
    """The plain-text report printed at the end of a run."""
    parts = ["=" * 100, "RESULTS", *("  " + f for f in _facts(facts, repeat, wall))]
    for title, table in _sections(res, False):
        parts += ["", f"-- {title} --", table]
    parts += ["", "How to read:", *("  - " + r for r in READING)]
    errors = [f"  - {r.case.id}: {r.error}\n      {' '.join(r.case.argv)}"
              for r in res.values() if r.error]
    if notes:
        parts += ["", "Notes:", *("  - " + n for n in notes)]
    if errors:
        parts += ["", "FAILED runs:", *errors]
    return "\n".join(parts)


def command_line(args: argparse.Namespace) -> str:
    """The bench command that reproduces this run (output-file flags left out)."""
    flags = " --quick" * args.quick + " --tuning" * args.tuning + " --scale" * args.scale
    if args.scratch_fs:
        flags += f" --scratch-fs {args.scratch_fs}"
    if args.repeat:
        flags += f" --repeat {args.repeat}"
    if args.only:
        flags += " --only " + " ".join(args.only)
    return f"python -m loadtests.bench{flags}"


def markdown(res: Results, facts: dict[str, str], repeat: int, notes: list[str],
             command: str, wall: float) -> str:
    """The same report as markdown, ready to paste into docs/benchmarks.md."""
    parts = [f"Command: `{command}`", "",
             *(f"- {f}" for f in _facts(facts, repeat, wall))]
    for title, table in _sections(res, True):
        parts += ["", f"#### {title}", "", table]
    parts += ["", "How to read:", "", *(f"- {r}" for r in READING)]
    if notes:
        parts += ["", "Notes:", "", *(f"- {n}" for n in notes)]
    errors = [f"- `{r.case.id}`: {r.error} (`{' '.join(r.case.argv)}`)"
              for r in res.values() if r.error]
    if errors:
        parts += ["", "Failed runs:", "", *errors]
    return "\n".join(parts) + "\n"
