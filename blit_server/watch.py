"""Live progress of a transfer for curl: a JSON snapshot, or a stream of progress events
(NDJSON, or server-sent events when asked with `Accept: text/event-stream`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from blit_shared.errors import NotFound, UsageError

from .context import daemon_of, retired_summary, session_of
from .http import JSON

DEFAULT_INTERVAL = 0.5
MIN_INTERVAL = 0.05


async def progress(request: Request) -> Response:
    """One `progress` event now (or the `summary` once the transfer has finished)."""
    done = retired_summary(request)
    if done is not None:
        return JSON(done)
    return JSON(session_of(request).progress.snapshot().to_event())


async def events(request: Request) -> Response:
    """`progress` events every `interval` seconds until the transfer ends, then its `summary`
    (or an `aborted` event); the stream closes after that."""
    try:
        interval = max(MIN_INTERVAL, float(request.query_params.get("interval",
                                                                    DEFAULT_INTERVAL)))
    except ValueError:
        raise UsageError("interval must be a number of seconds") from None
    sid = request.path_params["id"]
    done = retired_summary(request)
    session = None if done is not None else session_of(request)
    sessions = daemon_of(request).sessions
    sse = "text/event-stream" in request.headers.get("accept", "")

    def line(event: dict[str, Any]) -> bytes:
        body = orjson.dumps(event)
        return b"data: " + body + b"\n\n" if sse else body + b"\n"

    def live(sid: str) -> bool:
        try:
            sessions.get(sid)
        except NotFound:
            return False
        return True

    async def stream() -> AsyncIterator[bytes]:
        if session is not None:
            while True:
                yield line(session.progress.snapshot().to_event())
                if session.summary is not None or session.aborted or not live(sid):
                    break
                await asyncio.sleep(interval)
        finished = sessions.summary(sid)
        yield line(finished[1] if finished else {"event": "aborted", "id": sid})

    media = "text/event-stream" if sse else "application/x-ndjson"
    return StreamingResponse(stream(), media_type=media,
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


ROUTES = [
    Route("/v1/transfers/{id}/progress", progress, methods=["GET"]),
    Route("/v1/transfers/{id}/events", events, methods=["GET"]),
]
