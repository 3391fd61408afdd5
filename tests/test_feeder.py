"""Unit tests of blit_server.feeder: an upload's chunks written on a thread, in order, with
flow control and the first error raised on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from blit_server import feeder
from blit_server.feeder import Feeder
from blit_shared.errors import ProtocolError


class Recording:
    """A Receiver stand-in: records what it is fed, slowly if asked, failing on b"bad"."""

    def __init__(self, delay: float = 0.0) -> None:
        self.fed: list[bytes] = []
        self.threads: set[str] = set()
        self.delay = delay

    def feed(self, chunk: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        if chunk == b"bad":
            raise ProtocolError("bad chunk")
        time.sleep(self.delay)
        self.fed.append(chunk)


def _feeder(receiver: Recording, ahead: int = feeder.AHEAD) -> Feeder:
    return Feeder(receiver, ahead)  # type: ignore[arg-type]


def test_chunks_are_fed_in_order_on_the_feeder_thread() -> None:
    async def main() -> Recording:
        receiver = Recording()
        f = _feeder(receiver)
        for i in range(200):
            await f.put(b"%d" % i)
        await f.close()
        return receiver

    receiver = asyncio.run(main())
    assert receiver.fed == [b"%d" % i for i in range(200)]
    assert receiver.threads == {"blit-feeder"}


def test_the_event_loop_waits_when_the_thread_is_ahead_bytes_behind() -> None:
    most = 0

    async def main() -> Recording:
        nonlocal most
        receiver = Recording(delay=0.002)
        f = _feeder(receiver, ahead=10)
        for i in range(50):
            await f.put(b"x" * 4)
            most = max(most, 4 * (i + 1) - 4 * len(receiver.fed))
        await f.close()
        return receiver

    receiver = asyncio.run(main())
    assert len(receiver.fed) == 50
    # put() returns with at most `ahead` bytes (plus the chunk that crossed it) unwritten.
    assert 0 < most <= 10 + 4


def test_an_error_is_raised_by_put_then_close_and_nothing_after_it_is_fed() -> None:
    async def main() -> tuple[Recording, list[str]]:
        receiver = Recording()
        f = _feeder(receiver)
        raised: list[str] = []
        await f.put(b"one")
        await f.put(b"bad")
        try:
            for _ in range(1000):
                await f.put(b"later")
                await asyncio.sleep(0.001)
        except ProtocolError as exc:
            raised.append(f"put: {exc.message}")
        try:
            await f.close()
        except ProtocolError as exc:
            raised.append(f"close: {exc.message}")
        return receiver, raised

    receiver, raised = asyncio.run(main())
    assert receiver.fed == [b"one"]
    assert raised == ["put: bad chunk", "close: bad chunk"]


def test_a_waiting_put_wakes_when_the_thread_fails() -> None:
    class Stuck(Recording):
        def feed(self, chunk: bytes) -> None:
            time.sleep(0.05)
            raise ProtocolError("disk gone")

    async def main() -> Any:
        f = _feeder(Stuck(), ahead=1)
        await asyncio.wait_for(f.put(b"xx"), 10)  # over AHEAD: waits for room or the error
        with pytest.raises(ProtocolError, match="disk gone"):
            await f.put(b"yy")
        with pytest.raises(ProtocolError, match="disk gone"):
            await f.close()

    asyncio.run(main())


def test_stop_drops_what_is_queued_and_returns_once_the_thread_is_done() -> None:
    async def main() -> tuple[Recording, Feeder]:
        receiver = Recording(delay=0.02)
        f = _feeder(receiver)
        for i in range(20):
            await f.put(b"%d" % i)
        await asyncio.sleep(0.03)  # the thread is at the first chunks
        await f.stop()
        return receiver, f

    receiver, f = asyncio.run(main())
    fed = len(receiver.fed)
    assert 0 < fed < 20 and receiver.fed == [b"%d" % i for i in range(fed)]
    time.sleep(0.1)
    assert len(receiver.fed) == fed  # nothing written after stop() returned
    assert f.done.done()


def test_stop_outlasts_a_cancellation_then_raises_it() -> None:
    """A handler cancelled twice (once while reading, once while stopping) must still not
    return while the thread writes."""
    async def main() -> tuple[Recording, int]:
        receiver = Recording(delay=0.1)
        f = _feeder(receiver)
        for i in range(20):
            await f.put(b"%d" % i)
        await asyncio.sleep(0.01)  # the thread is inside the first chunk's feed
        stopping = asyncio.ensure_future(f.stop())
        await asyncio.sleep(0.005)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        return receiver, len(receiver.fed)

    receiver, fed_at_return = asyncio.run(main())
    time.sleep(0.1)
    assert len(receiver.fed) == fed_at_return < 20


def test_ahead_is_shared_by_a_sessions_streams() -> None:
    assert feeder.ahead_for(1) == feeder.AHEAD
    assert feeder.ahead_for(32) == feeder.MIN_AHEAD
    assert feeder.ahead_for(8) * 8 <= feeder.SESSION_AHEAD
