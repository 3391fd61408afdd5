"""Terminal output for every route: rich progress bar, verbose lines, NDJSON events, summary."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from blit_shared.progress import Progress

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

# The version of the --json output (docs/json.md); the summary line carries it as "schema".
JSON_SCHEMA = 1
DRY_VERBS = {"mkdir": "would create", "copy": "would copy", "link": "would link",
             "delete": "would delete"}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


EVENT_INTERVAL = 0.5  # seconds between `progress` events (--json -p)
BAR_INTERVAL = 0.1


class Renderer:
    """Listens to Progress events and draws them; `json` wins over the human forms."""

    def __init__(self, *, bar: bool, verbose: bool, json: bool) -> None:
        self.json = json
        self.verbose = verbose and not json
        self._lock = threading.Lock()
        self._bar: Bar | None = None
        self._task: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Progress | None = None
        self._want_bar = bar and not json
        self._want_events = bar and json
        self._shown = 0

    # -- events ------------------------------------------------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        if self.json:
            line = orjson.dumps(event) + b"\n"
            with self._lock:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            return
        kind = event["event"]
        if kind == "fail":
            self._print(f"failed {event['path']}: {event['reason']}", err=True, style="red")
        elif kind == "warning":
            self._print(f"warning: {event['message']}", err=True, style="yellow")
        elif kind == "file" and self.verbose:
            verb = event["action"]
            self._print(f"{verb} {event['path']}")
        elif kind == "notice" and not self.json:
            self._print(event["message"], err=True)

    def _print(self, text: str, err: bool = False, style: str | None = None) -> None:
        """Plain lines; rich only while the bar is drawn or to colour a terminal (its import
        costs ~25 ms of start-up, and plain writes keep `-v` fast on big trees)."""
        stream = sys.stderr if err else sys.stdout
        with self._lock:
            if self._bar is not None:
                self._bar.console.print(text, style=style, markup=False, highlight=False)
            elif style and stream.isatty():
                from rich.console import Console

                Console(file=stream).print(text, style=style, markup=False, highlight=False)
            else:
                stream.write(text + "\n")

    # -- progress: a bar, or `progress` events with --json -p -----------------------------------
    def start(self, progress: Progress) -> None:
        """Poll `progress` on a thread: draw the bar (-p), or print its `progress` events
        (--json -p: the same events the daemon streams at /v1/transfers/{id}/events)."""
        self._progress = progress
        self._stop.clear()  # start() follows stop() around the mirror confirmation
        if self._want_events:
            show, every = self, EVENT_INTERVAL
        elif self._want_bar:
            self._bar = _new_bar()
            self._task = self._bar.add_task("scanning…", total=None, files="")
            self._bar.start()
            show, every = self._draw, BAR_INTERVAL
        else:
            return
        self._thread = threading.Thread(target=self._tick, args=(show, every), daemon=True)
        self._thread.start()

    def _tick(self, show: Callable[[dict[str, Any]], None], every: float) -> None:
        while True:
            stopping = self._stop.wait(every)
            show(self._progress.snapshot().to_event())  # type: ignore[union-attr]
            if stopping:
                return

    def _draw(self, event: dict[str, Any]) -> None:
        bar = self._bar
        assert bar is not None
        self._shown = max(self._shown, event["bytes_done"])  # never backwards
        if event["bytes_total"] is None:
            bar.update(self._task, description="scanning…", completed=self._shown)
        else:
            files = f"{event['files_done']}/{event['files_total']} files"
            bar.update(self._task, description="copying", completed=self._shown,
                       total=max(event["bytes_total"], self._shown), files=files)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- end of run ----------------------------------------------------------------------------
    def plan_report(self, report: dict[str, list[list[Any]]]) -> None:
        """Dry-run output: one line (or event) per planned action."""
        for action, items in report.items():
            for path, size in items:
                if self.json:
                    self({"event": "plan_item", "action": action, "path": path, "size": size})
                else:
                    self._print(f"{DRY_VERBS[action]} {path or '.'}")

    def summary(self, summary: dict[str, Any]) -> None:
        if self.json:
            self({**summary, "event": "summary", "schema": JSON_SCHEMA})
            return
        s = summary
        head = "dry run: would transfer" if s.get("dry_run") else "transferred"
        line1 = (f"{head} {s['files_transferred']:,} files, {human_bytes(s['bytes'])} "
                 f"in {s['duration_s']:.2f} s ({human_bytes(s['rate_bytes_per_s'])}/s)")
        line2 = (f"examined {s['files_examined']:,} · skipped {s['files_skipped']:,} · "
                 f"deleted {s['files_deleted']:,} · failed {s['files_failed']:,}")
        extra = [f"carrier {s['carrier']}"] if s.get("carrier") else []
        if s.get("zero_copy"):
            extra.append("zero-copy")
        if s.get("fallback"):
            extra.append("fell back to http")
        if extra:
            line2 += " · " + " · ".join(extra)
        self._print(line1)
        self._print(line2)


def _new_bar() -> Bar:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    return Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TaskProgressColumn(), TextColumn("{task.fields[files]}"), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn(),
               console=Console(file=sys.stderr, highlight=False), transient=False)
