"""blit_server.chunkreader: Hypercorn's reads get the transport's bytes uncopied, in order, with
asyncio's flow control and end-of-stream behaviour."""

from __future__ import annotations

import asyncio

import pytest

from blit_server.chunkreader import LIMIT, RECV_SIZE, ChunkReader


class Transport:
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def adopted(before: bytes = b"") -> tuple[asyncio.StreamReader, Transport]:
    reader = asyncio.StreamReader()
    transport = Transport()
    reader.set_transport(transport)  # type: ignore[arg-type]
    reader.feed_data(before)  # what arrived before Hypercorn adopted the reader
    ChunkReader.adopt(reader)
    return reader, transport


def test_chunks_come_out_whole_cut_at_n_and_in_order() -> None:
    async def run() -> None:
        reader, _ = adopted(b"head")
        big = bytes(range(256)) * 1000
        reader.feed_data(big)
        reader.feed_data(b"tail")
        assert await reader.read(100) == b"head"  # the base buffer first
        first = await reader.read(1 << 20)
        assert first is big  # not copied
        assert await reader.read(2) == b"ta" and await reader.read(10) == b"il"
        waiting = asyncio.ensure_future(reader.read(10))
        await asyncio.sleep(0)
        assert not waiting.done()
        reader.feed_data(b"late")
        assert await waiting == b"late"
        reader.feed_eof()
        assert await reader.read(10) == b"" and reader.at_eof()

    asyncio.run(run())


def test_flow_control_and_errors() -> None:
    async def run() -> None:
        reader, transport = adopted()
        for _ in range(3):
            reader.feed_data(bytes(LIMIT))
        assert transport.paused  # more than twice the limit held
        await reader.read(LIMIT)
        assert transport.paused  # still above the limit
        await reader.read(LIMIT)
        assert not transport.paused
        reader.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ConnectionResetError):
            await reader.read(10)
        with pytest.raises(RuntimeError):
            await reader.read(-1)

    asyncio.run(run())


def test_adopted_transports_read_larger_pieces() -> None:
    class Socketish(Transport):
        max_size = 256 * 1024

    async def run() -> None:
        reader = asyncio.StreamReader()
        transport = Socketish()
        reader.set_transport(transport)  # type: ignore[arg-type]
        ChunkReader.adopt(reader)
        assert transport.max_size == RECV_SIZE

    asyncio.run(run())
