"""Feeds an HTTP upload's chunks to its Receiver on a thread of its own, a few MiB behind the
event loop that reads them, with no thread hop per chunk."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from queue import SimpleQueue

from blit_shared.receiver import Receiver

# Bytes read but not yet written, at most, for one upload (flow control: the event loop stops
# reading above it and goes on once the thread is down to half). 1 GiB push, 21 alternating
# runs: 16 MiB 0.725 s, 8 MiB 0.777 s. SESSION_AHEAD caps a session's streams together.
AHEAD = 16 << 20
SESSION_AHEAD = 64 << 20
MIN_AHEAD = 2 << 20


def ahead_for(streams: int) -> int:
    """Each of `streams` uploads' share of SESSION_AHEAD, at most AHEAD."""
    return max(MIN_AHEAD, min(AHEAD, SESSION_AHEAD // max(1, streams)))


class Feeder:
    """One upload's writer thread. put() hands it a chunk (waiting only when it is `ahead`
    bytes behind); close() waits until it has written all of them and raises its error, if
    any; stop() ends it without writing what it still holds."""

    def __init__(self, receiver: Receiver, ahead: int = AHEAD, name: str = "blit-feeder"
                 ) -> None:
        self._receiver = receiver
        self._ahead = ahead
        self._loop = asyncio.get_running_loop()
        self._chunks: SimpleQueue[bytes | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._held = 0
        self._room: asyncio.Future[None] | None = None  # the event loop waits for room
        self._dropping = False  # stop(): what is queued is counted, not written
        self.done: asyncio.Future[None] = self._loop.create_future()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    async def put(self, chunk: bytes) -> None:
        """Queue `chunk`; raises the thread's error once it failed."""
        if self.done.done():
            self.done.result()  # the thread failed: its error ends the upload
            raise RuntimeError("feeder put() after close()")
        with self._lock:
            self._held += len(chunk)
            if self._held > self._ahead:
                self._room = self._loop.create_future()
            room = self._room
        self._chunks.put(chunk)
        if room is not None:
            await asyncio.wait((room, self.done), return_when=asyncio.FIRST_COMPLETED)

    async def close(self) -> None:
        """No more chunks: wait for the thread to write what it holds; raise its error."""
        self._chunks.put(None)
        await asyncio.shield(self.done)

    async def stop(self) -> None:
        """The upload ended early: the thread finishes the chunk in hand, drops the rest and
        ends; this returns once it no longer touches the Sink, even when cancelled meanwhile
        (the cancellation is raised after)."""
        self._dropping = True
        self._chunks.put(None)
        cancelled = False
        while not self.done.done():
            try:
                await asyncio.wait((self.done,))
            except asyncio.CancelledError:
                cancelled = True
        if not self.done.cancelled():
            self.done.exception()  # (retrieved: the caller has its own error to report)
        if cancelled:
            raise asyncio.CancelledError

    def _run(self) -> None:
        failed = False
        while (chunk := self._chunks.get()) is not None:
            if not failed and not self._dropping:
                try:
                    self._receiver.feed(chunk)
                except BaseException as exc:  # raised on the event loop by put()/close()
                    failed = True  # the rest is counted, not written
                    self._tell(self.done, exc)
            with self._lock:
                self._held -= len(chunk)
                room = self._room if self._held <= self._ahead // 2 else None
                if room is not None:
                    self._room = None
            if room is not None:
                self._tell(room, None)
        self._tell(self.done, None)

    def _tell(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # (the loop is closed: no one is waiting)
            self._loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
