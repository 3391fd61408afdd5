"""Prometheus metrics of one daemon (`GET /metrics`) and the record of how each transfer ended."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import authorize
from .logs import log_transfer

if TYPE_CHECKING:
    from .context import Daemon
    from .sessions import Session, Sessions

# No `_created` series: Prometheus would store them as one more series per label set, of
# start timestamps nobody queries.
disable_created_metrics()

DIRECTIONS = ("push", "pull")
CARRIERS = ("tcp", "http")
OUTCOMES = ("ok", "partial", "failed", "aborted")
# Transfers last from milliseconds (a no-op re-run) to hours (terabytes).
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                    3600.0, 14400.0)


class Metrics:
    """The metrics of one daemon, on a registry of its own: several apps live in one process
    in tests, and the global default registry would mix them (and refuse the second set)."""

    def __init__(self, sessions: Sessions) -> None:
        self.registry = r = CollectorRegistry()
        self.transfers = Counter("blit_transfers", "Transfers ended, by outcome.",
                                 ["direction", "carrier", "outcome"], registry=r)
        self.bytes = Counter("blit_transfer_bytes",
                             "Bytes this daemon received (push) or sent (pull).",
                             ["direction", "carrier"], registry=r)
        self.files = Counter("blit_transfer_files",
                             "Files this daemon received (push) or sent (pull) in full.",
                             ["direction", "carrier"], registry=r)
        self.errors = Counter("blit_errors", "Error responses of the API, by error code.",
                              ["code"], registry=r)
        self.duration = Histogram("blit_transfer_duration_seconds",
                                  "Time from opening a transfer to its end.", ["direction"],
                                  buckets=DURATION_BUCKETS, registry=r)
        active = Gauge("blit_active_sessions", "Transfers open right now.", registry=r)
        active.set_function(lambda: len(sessions.active()))
        # Series that exist from the start, at 0: rate() and alerts need a first sample.
        for direction in DIRECTIONS:
            self.duration.labels(direction)
            for carrier in CARRIERS:
                self.bytes.labels(direction, carrier)
                self.files.labels(direction, carrier)
                for outcome in OUTCOMES:
                    self.transfers.labels(direction, carrier, outcome)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def record_transfer(request: Request, session: Session, outcome: str | None = None) -> None:
    """Count a transfer that ended (finish, or abort with outcome "aborted") and log its line."""
    record_ended(request.app.state.daemon, session,
                 request.client.host if request.client else None, outcome)


def record_ended(daemon: Daemon, session: Session, client: str | None,
                 outcome: str | None = None) -> None:
    """record_transfer without a request (a session abandoned when idle: no client to name).

    Files and bytes are what this daemon moved itself; failures come from the summary (for a
    pull the client, being the DESTINATION, reports them)."""
    summary = session.summary or {}
    snap = session.progress.snapshot()
    failed = _count(summary.get("files_failed"))
    if outcome is None:
        done = _count(summary.get("files_transferred", snap.files_done))
        outcome = "ok" if not failed and not session.stream_errors else \
            "partial" if done else "failed"
    carrier = session.carrier or "none"
    duration = time.monotonic() - session.created
    m = daemon.metrics
    m.transfers.labels(session.direction, carrier, outcome).inc()
    m.bytes.labels(session.direction, carrier).inc(snap.bytes_done)
    m.files.labels(session.direction, carrier).inc(snap.files_done)
    m.duration.labels(session.direction).observe(duration)
    log_transfer({"event": "transfer", "id": session.id, "direction": session.direction,
                  "module": session.module.name,
                  "client": client,
                  "carrier": carrier, "files": snap.files_done, "bytes": snap.bytes_done,
                  "failed": failed, "duration_s": round(duration, 3), "outcome": outcome})


def count_error(request: Request, code: str) -> None:
    """Count one error response (every error the API answers passes here)."""
    daemon: Daemon | None = getattr(request.app.state, "daemon", None)
    if daemon is not None:
        daemon.metrics.errors.labels(code).inc()


def _count(value: Any) -> int:
    # A pull's summary holds what the client reported: only a sane count may move a counter.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def get_metrics(request: Request) -> Response:
    daemon: Daemon = request.app.state.daemon
    authorize(request, daemon.config)
    return Response(daemon.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


ROUTES = [Route("/metrics", get_metrics, methods=["GET"])]
