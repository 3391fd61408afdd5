"""A StreamReader for Hypercorn's connections that hands each received chunk on as it came.

asyncio's StreamReader copies every byte twice on the event loop: into its bytearray when the
transport delivers it, and out again into the bytes that read() returns. For an HTTP upload
those copies (and a pause/resume of the transport per 256 KiB read, as its 64 KiB default
limit is exceeded at once) run on the one thread that also parses HTTP and feeds the ASGI
app. Hypercorn only calls read(n) and at_eof(), so a reader that queues the transport's bytes
objects and returns them whole needs nothing else. With no copy behind them, larger socket
reads pay off too (RECV_SIZE).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from hypercorn.asyncio import tcp_server

LIMIT = 4 << 20  # bytes held before the transport is paused (flow control, per connection)
# Bytes asked of the socket per read, where asyncio asks 256 KiB. Measured on a 1 GiB HTTP
# push (median of 8): 256 KiB 0.860 s, 512 KiB 0.824 s, 1 MiB 0.787 s, 4 MiB 1.277 s (each
# read allocates its size: large ones are mmap'ed and faulted in).
RECV_SIZE = 1 << 20


class ChunkReader(asyncio.StreamReader):
    """Queues received bytes objects; read(n) returns the next one (cut at `n`) uncopied.
    Bytes that reached the base class's buffer before the switch are read from it first."""

    _chunks: deque[bytes]
    _held: int

    @classmethod
    def adopt(cls, reader: asyncio.StreamReader) -> None:
        if type(reader) is asyncio.StreamReader:
            reader.__class__ = cls
            reader._chunks = deque()  # type: ignore[attr-defined]
            reader._held = 0  # type: ignore[attr-defined]
            reader._limit = LIMIT  # type: ignore[attr-defined]
            transport = reader._transport  # type: ignore[attr-defined]
            if transport is not None and hasattr(transport, "max_size"):
                transport.max_size = RECV_SIZE

    def feed_data(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(bytes(data))  # (bytes(b) is b for a bytes object)
        self._held += len(data)
        self._wakeup_waiter()  # type: ignore[attr-defined]
        transport = self._transport  # type: ignore[attr-defined]
        if transport is not None and not self._paused and self._held > 2 * self._limit:  # type: ignore[attr-defined]
            try:
                transport.pause_reading()
            except NotImplementedError:
                self._transport = None
            else:
                self._paused = True

    def _maybe_resume_transport(self) -> None:
        if self._paused and self._held + len(self._buffer) <= self._limit:  # type: ignore[attr-defined]
            self._paused = False
            self._transport.resume_reading()  # type: ignore[attr-defined]

    def at_eof(self) -> bool:
        return self._eof and not self._buffer and not self._chunks  # type: ignore[attr-defined]

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise RuntimeError("ChunkReader.read(-1): Hypercorn reads at most n bytes")
        if self._buffer or n == 0:  # type: ignore[attr-defined]
            return await super().read(n)  # bytes from before the switch come first
        if self._exception is not None:  # type: ignore[attr-defined]
            raise self._exception  # type: ignore[attr-defined]
        if not self._chunks and not self._eof:  # type: ignore[attr-defined]
            await self._wait_for_data("read")  # type: ignore[attr-defined]
        if not self._chunks:
            return b""
        data = self._chunks.popleft()
        if len(data) > n:
            self._chunks.appendleft(data[n:])
            data = data[:n]
        self._held -= len(data)
        self._maybe_resume_transport()
        return data


    def _not_here(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ChunkReader serves read(n) only (what Hypercorn calls)")

    readline = readuntil = readexactly = _not_here  # type: ignore[assignment]


def install() -> None:
    """Hypercorn's TCPServer adopts its reader as a ChunkReader (this process only)."""
    cls: Any = tcp_server.TCPServer
    if getattr(cls, "_blit_chunks", False):
        return
    original = cls.__init__

    def __init__(self: Any, app: Any, loop: Any, config: Any, context: Any, state: Any,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ChunkReader.adopt(reader)
        original(self, app, loop, config, context, state, reader, writer)

    cls.__init__ = __init__
    cls._blit_chunks = True
