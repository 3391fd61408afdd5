"""The HTTP carrier: a transfer's record stream as a PUT body (push) or a GET body (pull)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from blit_shared.errors import BlitError, Conflict, ProtocolError
from blit_shared.receiver import Receiver
from blit_shared.source import stream_frames
from blit_shared.transport import http_chunks

from .context import daemon_of, session_of
from .feeder import Feeder, ahead_for
from .http import JSON, error_response

DISCARD_CAP = 256 << 20  # body bytes read and dropped after an early error, at most
DISCARD_IDLE = 0.5       # ...and for no longer than this without a new chunk


async def put_stream(request: Request) -> Response:
    """HTTP carrier, push: one record stream as the request body."""
    timeout = daemon_of(request).config.timeout
    try:
        return await _receive_stream(request, timeout)
    except BlitError as exc:
        # Refused before (or while) reading the body: answer now, then read the rest and drop
        # it, so the connection ends in a state Hypercorn can close (an unread body hangs it).
        await _discard_body(request, DISCARD_IDLE)
        return error_response(request, exc.code, exc.message, exc.status)


async def _discard_body(request: Request, timeout: float) -> None:
    with contextlib.suppress(Exception):
        discarded = 0
        async for chunk in _stalling(request.stream(), timeout):
            discarded += len(chunk)
            if discarded > DISCARD_CAP:
                return


async def _receive_stream(request: Request, timeout: float) -> Response:
    s = session_of(request)
    if s.carrier != "http" or s.destination is None or s.destination.sink is None:
        raise Conflict("this transfer has no HTTP stream to receive")
    receiver = Receiver(s.destination.sink, s.options.verify)
    # Until the stream ends well, it ended early: a client gone mid-body (ClientDisconnect) or
    # a cancelled request must not count as a finished stream, which would leave the partial
    # files as temps until the session expires.
    error: str | None = "HTTP stream ended early"
    feeder: Feeder | None = None
    try:
        feeder = Feeder(receiver, ahead_for(s.streams_expected))
        async for chunk in _stalling(request.stream(), timeout):
            await feeder.put(chunk)
        await feeder.close()
        receiver.close()
        error = None
    except BlitError as exc:
        error = exc.message
        raise
    except Exception as exc:
        error = f"HTTP stream ended early ({type(exc).__name__})"
        raise
    finally:
        try:
            if feeder is not None and error is not None:
                await feeder.stop()  # nothing else may touch the Sink's files before
        finally:
            s.stream_finished(error)
    return JSON({"ok": True, "records": receiver.decoder.records})


async def _stalling(chunks: AsyncIterator[bytes], timeout: float) -> AsyncIterator[bytes]:
    """`chunks`, ending with a clear error when none arrives for `timeout` seconds (hypercorn's
    read_timeout would also cut long pull responses, whose client sends nothing). The deadline
    covers only the wait for a chunk (never the consumer's work), and asyncio.timeout is a
    timer where wait_for made a task per chunk."""
    it = chunks.__aiter__()
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await it.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ProtocolError(f"HTTP stream stalled: nothing for {timeout:g} s") from None
        yield chunk


async def get_stream(request: Request) -> Response:
    """HTTP carrier, pull: one record stream as the response body."""
    s = session_of(request)
    if s.carrier != "http" or s.source is None or s.queue is None:
        raise Conflict("this transfer has no HTTP stream to send")
    source, payloads = s.source, s.queue
    wait = daemon_of(request).config.timeout

    def body() -> Iterator[bytes]:
        error = "stream aborted"
        try:
            yield from http_chunks(stream_frames(source, payloads, wait))
            error = None
        finally:
            s.stream_finished(error)

    return StreamingResponse(body(), media_type="application/octet-stream")


ROUTES = [
    Route("/v1/transfers/{id}/stream", put_stream, methods=["PUT"]),
    Route("/v1/transfers/{id}/stream", get_stream, methods=["GET"]),
]
