"""Feeds an HTTP upload's chunks to its Receiver on a thread of its own, a few MiB behind the
event loop that reads them, with no thread hop per chunk."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from queue import SimpleQueue

from blit_shared.receiver import Receiver

# Bytes read but not yet written, at most (flow control: the event loop stops reading above
# AHEAD and goes on once the thread is down to half of it).
AHEAD = 16 << 20


class Feeder:
    """One upload's writer thread. put() hands it a chunk (waiting only when it is AHEAD
    behind); close() waits until it has written all of them and raises its error, if any."""

    def __init__(self, receiver: Receiver, name: str = "blit-feeder") -> None:
        self._receiver = receiver
        self._loop = asyncio.get_running_loop()
        self._chunks: SimpleQueue[bytes | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._held = 0
        self._room: asyncio.Future[None] | None = None  # the event loop waits for room
        self.done: asyncio.Future[None] = self._loop.create_future()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    async def put(self, chunk: bytes) -> None:
        """Queue `chunk`; raises the thread's error once it failed."""
        if self.done.done():
            self.done.result()  # the thread failed: its error ends the upload
            raise RuntimeError("feeder put() after close()")
        with self._lock:
            self._held += len(chunk)
            if self._held > AHEAD:
                self._room = self._loop.create_future()
            room = self._room
        self._chunks.put(chunk)
        if room is not None:
            await asyncio.wait((room, self.done), return_when=asyncio.FIRST_COMPLETED)

    async def close(self) -> None:
        """No more chunks: wait for the thread to write what it holds; raise its error."""
        self._chunks.put(None)
        await asyncio.shield(self.done)

    def _run(self) -> None:
        failed = False
        while (chunk := self._chunks.get()) is not None:
            if not failed:
                try:
                    self._receiver.feed(chunk)
                except BaseException as exc:  # raised on the event loop by put()/close()
                    failed = True  # the rest is counted, not written
                    self._tell(self.done, exc)
            with self._lock:
                self._held -= len(chunk)
                room = self._room if self._held <= AHEAD // 2 else None
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
