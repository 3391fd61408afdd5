"""One progress model for every route: thread-safe counters plus an event stream for renderers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Listener = Callable[[dict[str, Any]], None]
MAX_FAILURES_KEPT = 1000


@dataclass(slots=True)
class Snapshot:
    phase: str
    files_total: int | None
    bytes_total: int | None
    files_done: int
    bytes_done: int
    elapsed: float

    def to_event(self) -> dict[str, Any]:
        """The `progress` event: what `blit -p` draws, `--json -p` prints and the daemon's
        /v1/transfers/{id}/events streams (one model everywhere)."""
        return {"event": "progress", "phase": self.phase, "files_done": self.files_done,
                "files_total": self.files_total, "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "elapsed_s": round(self.elapsed, 3)}


@dataclass
class Progress:
    """Counters fed by whichever role runs in this process (SOURCE sends, DESTINATION writes).

    `listener` receives event dicts (scan, plan, file, delete, fail, summary); byte counts are
    only polled through snapshot(), because per-chunk events would cost more than the copy.
    """

    listener: Listener | None = None
    phase: str = "starting"
    files_total: int | None = None
    bytes_total: int | None = None
    files_done: int = 0
    bytes_done: int = 0
    examined: int = 0
    skipped: int = 0
    deleted: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    first_byte_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.listener is not None:
            self.listener(event)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self._emit({"event": "phase", "phase": phase})

    def scanned(self, entries: int, complete: bool, errors: list[str]) -> None:
        self._emit({"event": "scan", "entries": entries, "complete": complete,
                    "errors": errors[:20]})

    def planned(self, counts: dict[str, int]) -> None:
        with self._lock:
            self.files_total = counts["to_transfer"]
            self.bytes_total = counts["bytes"]
            self.examined = counts["examined"]
            self.skipped = counts["skipped"]
        self._emit({"event": "plan", **counts})

    def add_bytes(self, n: int) -> None:
        with self._lock:
            if self.first_byte_at is None:
                self.first_byte_at = time.monotonic()
            self.bytes_done += n

    def file_done(self, path: str, size: int, action: str = "copied") -> None:
        with self._lock:
            if action == "copied":
                self.files_done += 1
        self._emit({"event": "file", "action": action, "path": path, "size": size})

    def file_failed(self, path: str, reason: str) -> None:
        with self._lock:
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append({"path": path, "reason": reason})
        self._emit({"event": "fail", "path": path, "reason": reason})

    def notice(self, message: str) -> None:
        """Something the user should know that is neither a failure nor a file action."""
        self._emit({"event": "notice", "message": message})

    def entry_deleted(self, path: str) -> None:
        with self._lock:
            self.deleted += 1
        self._emit({"event": "file", "action": "deleted", "path": path, "size": 0})

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self.phase, self.files_total, self.bytes_total, self.files_done,
                            self.bytes_done, time.monotonic() - self.started)

    def summary(self, **extra: Any) -> dict[str, Any]:
        """The summary object; `extra` adds route facts (carrier, zero_copy, dry_run, ...)."""
        elapsed = time.monotonic() - self.started
        first = None if self.first_byte_at is None else self.first_byte_at - self.started
        with self._lock:
            out: dict[str, Any] = {
                "event": "summary",
                "files_examined": self.examined,
                "files_transferred": self.files_done,
                "files_skipped": self.skipped,
                "files_deleted": self.deleted,
                "files_failed": self.failed,
                "bytes": self.bytes_done,
                "duration_s": round(elapsed, 6),
                "rate_bytes_per_s": int(self.bytes_done / elapsed) if elapsed > 0 else 0,
                "first_byte_s": None if first is None else round(first, 6),
                "failures": list(self.failures),
            }
        out.update(extra)
        return out
