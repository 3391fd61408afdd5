"""Bench results: per-case medians, the tables (text and markdown), ratios, issue-4 targets."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .cases import Case

MB = 1e6  # decimal megabytes: MB/s and GB/s as network gear counts them


@dataclass(slots=True)
class Sample:
    """One timed run."""

    seconds: float
    client_kib: int
    daemon_kib: int
    daemon_start_kib: int = 0         # daemon RSS when the run began
    cpu_s: float = 0.0                # client user+system CPU seconds
    first_byte: float | None = None   # blit summary first_byte_s (blit's own clock)
    inproc: float | None = None       # blit summary duration_s
    daemon_cpu_s: float = 0.0         # daemon user+system CPU during the run
    other_cpu_s: float = 0.0          # everything else on the machine (noise indicator)
    steal_s: float = 0.0              # CPU the hypervisor took from this VM


@dataclass(slots=True)
class Result:
    """All runs of one case, with the dataset size its rates are computed from."""

    case: Case
    files: int
    bytes: int
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    def _median(self, attr: str) -> float | None:
        vals = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return statistics.median(vals) if vals else None

    @property
    def first_byte(self) -> float | None:
        return self._median("first_byte")

    @property
    def inproc(self) -> float | None:
        return self._median("inproc")

    @property
    def client_mb(self) -> float:
        return max(s.client_kib for s in self.samples) * 1024 / MB

    @property
    def daemon_mb(self) -> float | None:
        peak = max(s.daemon_kib for s in self.samples)
        return peak * 1024 / MB if peak else None

    @property
    def daemon_start_mb(self) -> float | None:
        """RSS at the start of the run that reached the highest peak."""
        top = max(self.samples, key=lambda s: s.daemon_kib)
        return top.daemon_start_kib * 1024 / MB if top.daemon_start_kib else None

    @property
    def cpu_s(self) -> float:
        return statistics.median(s.cpu_s for s in self.samples)

    @property
    def daemon_cpu_s(self) -> float:
        return statistics.median(s.daemon_cpu_s for s in self.samples)

    @property
    def other_cpu_s(self) -> float:
        return statistics.median(s.other_cpu_s for s in self.samples)

    @property
    def spread(self) -> str:
        """(slowest − fastest) / median, as a percentage: how noisy the runs were."""
        if len(self.samples) < 2:
            return "-"
        times = [s.seconds for s in self.samples]
        return f"{(max(times) - min(times)) / self.seconds * 100:.0f}%"

    @property
    def mbps(self) -> float:
        return self.bytes / MB / self.seconds

    @property
    def fps(self) -> float:
        return self.files / self.seconds


Results = dict[str, Result]


def _f(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def ratio(results: Results, me: str, other: str) -> float | None:
    """other seconds / my seconds (> 1: `me` is faster), None when either did not run."""
    a, b = results.get(me), results.get(other)
    if a is None or b is None or not a.ok or not b.ok:
        return None
    return b.seconds / a.seconds


def _daemon(r: Result) -> str:
    if r.daemon_mb is None:
        return "-"
    start = f" ({r.daemon_start_mb:,.0f})" if r.daemon_start_mb else ""
    return f"{r.daemon_mb:,.0f}{start}"


def _vs(results: Results, r: Result) -> str:
    parts = []
    for label, other in r.case.baselines:
        x = ratio(results, r.case.id, other)
        parts.append(f"{_f(x)}× {label}" if x is not None else f"- {label}")
    return ", ".join(parts)


HEADERS = ["dataset", "route", "carrier", "tool", "s", "spread", "MB/s", "files/s",
           "first-byte s",
           "blit in-proc s", "speed vs peer", "client CPU s", "daemon CPU s", "other CPU s",
           "client RSS MB", "daemon RSS MB (at start)"]


def rows(results: Results, section: str) -> list[list[str]]:
    """One row per case of `section`, in run order."""
    out = []
    for r in results.values():
        if r.case.section != section:
            continue
        c = r.case
        if not r.ok:
            out.append([c.dataset, c.route, c.carrier, c.tool, "FAILED", "-", "-", "-", "-",
                        "-", (r.error or "no run")[:60], "-", "-", "-", "-", "-"])
            continue
        mbps = "-" if c.noop else _f(r.mbps, 0)
        out.append([c.dataset, c.route, c.carrier, c.tool, _f(r.seconds, 3), r.spread, mbps,
                    _f(r.fps, 0 if r.fps >= 10 else 1), _f(r.first_byte, 3), _f(r.inproc, 3),
                    _vs(results, r),
                    _f(r.cpu_s, 2), _f(r.daemon_cpu_s, 2) if c.daemon else "-",
                    _f(r.other_cpu_s, 2), _f(r.client_mb, 0), _daemon(r)])
    return out


def render(headers: list[str], body: list[list[str]], markdown: bool) -> str:
    """A fixed-width text table, or a GitHub markdown table."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:{'<' if i < 4 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r) for r in body)])


def parity_rows(results: Results) -> list[list[str]]:
    """Per dataset and carrier: pull speed / push speed, HTTP / TCP speed, first-byte pull/push."""
    out = []
    names = dict.fromkeys(r.case.dataset for r in results.values() if r.case.section == "main")
    for name in names:
        for carrier, tool in (("tcp", "blit"), ("http", "blit"), ("rsync", "rsync daemon")):
            push, pull = f"{name}-push-{carrier}", f"{name}-pull-{carrier}"
            pp = ratio(results, pull, push)
            vs_tcp_push = ratio(results, push, f"{name}-push-tcp") if carrier == "http" else None
            vs_tcp_pull = ratio(results, pull, f"{name}-pull-tcp") if carrier == "http" else None
            fb = None
            a, b = results.get(push), results.get(pull)
            if a and b and a.ok and b.ok and a.first_byte and b.first_byte:
                fb = b.first_byte / a.first_byte
            out.append([name, carrier, tool, _f(pp), _f(vs_tcp_push), _f(vs_tcp_pull), _f(fb)])
    return out


PARITY_HEADERS = ["dataset", "carrier", "tool", "pull/push speed", "http/tcp push",
                  "http/tcp pull", "first-byte pull/push"]


def scale_rows(results: Results) -> list[list[str]]:
    """20k vs 200k files: seconds, µs per file, growth vs file-count growth, peak RSS."""
    out = []
    for route in ("push", "pull", "local"):
        a, b = results.get(f"scale-small-{route}"), results.get(f"scale-many-{route}")
        if not (a and b and a.ok and b.ok):
            continue
        growth = b.seconds / a.seconds
        out.append([route, f"{a.files:,} → {b.files:,}", f"{_f(a.seconds, 2)} → {_f(b.seconds, 2)}",
                    f"{a.seconds / a.files * 1e6:.0f} → {b.seconds / b.files * 1e6:.0f}",
                    f"{growth:.2f}× for {b.files / a.files:.0f}× files",
                    f"{_f(a.client_mb, 0)} → {_f(b.client_mb, 0)}",
                    f"{_f(a.daemon_mb, 0)} → {_f(b.daemon_mb, 0)}"])
    return out


SCALE_HEADERS = ["route", "files", "s", "µs/file", "time growth", "client RSS MB",
                 "daemon RSS MB"]


def targets(results: Results) -> list[tuple[str, str, str]]:
    """Issue 4's targets, each (target, measured, met / NOT MET / n/a)."""
    out: list[tuple[str, str, str]] = []

    def judge(name: str, value: float | None, ok: bool | None, shown: str) -> None:
        verdict = "n/a" if value is None else ("met" if ok else "NOT MET")
        out.append((name, shown if value is not None else "-", verdict))

    def speed(cid: str) -> float | None:
        r = results.get(cid)
        return r.mbps if r and r.ok else None

    for name in ("large", "large4"):
        for route in ("push", "pull"):
            v = speed(f"{name}-{route}-tcp")
            judge(f"{name} {route} tcp ≥ 1250 MB/s", v, v is not None and v >= 1250,
                  f"{_f(v, 1)} MB/s")
        for carrier in ("tcp", "http"):
            x = ratio(results, f"{name}-pull-{carrier}", f"{name}-push-{carrier}")
            judge(f"{name} {carrier} pull/push in 0.9–1.1", x, x is not None and 0.9 <= x <= 1.1,
                  _f(x))
        for route in ("push", "pull"):
            x = ratio(results, f"{name}-{route}-http", f"{name}-{route}-tcp")
            judge(f"{name} {route} http ≥ 0.40 × tcp", x, x is not None and x >= 0.4, _f(x))
        x = ratio(results, f"{name}-local-blit", f"{name}-local-cp")
        judge(f"{name} local ≥ 0.9 × cp -a", x, x is not None and x >= 0.9, f"{_f(x)}×")
    for name, need in (("small", 1.0), ("mixed", 1.0)):
        for route in ("push", "pull"):
            x = ratio(results, f"{name}-{route}-tcp", f"{name}-{route}-rsync")
            aim = " (aim 2×)" if name == "small" else ""
            judge(f"{name} {route} tcp > rsync daemon{aim}", x, x is not None and x > need,
                  f"{_f(x)}×")
    x = ratio(results, "small-local-blit", "small-local-rsync")
    judge("small local ≥ rsync -a (aim 2×)", x, x is not None and x >= 1.0, f"{_f(x)}×")
    for route in ("push", "pull", "local"):
        x = ratio(results, f"noop-{route}-blit", f"noop-{route}-rsync")
        judge(f"no-op mirror {route} ≥ rsync", x, x is not None and x >= 1.0, f"{_f(x)}×")
    for name in ("large", "large4", "small", "mixed"):
        a, b = results.get(f"{name}-push-tcp"), results.get(f"{name}-pull-tcp")
        if a and b and a.ok and b.ok and a.first_byte and b.first_byte:
            x = max(a.first_byte, b.first_byte) / min(a.first_byte, b.first_byte)
            judge(f"{name} first-byte push vs pull within 20%", x, x <= 1.2,
                  f"push {a.first_byte:.3f} s, pull {b.first_byte:.3f} s")
    for route in ("push", "pull", "local"):
        r = results.get(f"scale-many-{route}")
        if r and r.ok:
            peak = max(r.client_mb, r.daemon_mb or 0)
            judge(f"{r.files:,} files {route}: peak RSS < 250 MB", peak, peak < 250,
                  f"client {_f(r.client_mb, 0)} MB, daemon {_f(r.daemon_mb, 0)} MB")
            s = results.get(f"scale-small-{route}")
            if s and s.ok:
                g, n = r.seconds / s.seconds, r.files / s.files
                judge(f"{route} time linear in file count", g, g <= 1.25 * n,
                      f"{g:.1f}× time for {n:.0f}× files")
    return out
