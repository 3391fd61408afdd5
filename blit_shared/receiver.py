"""Feeds decoded records into a Sink; one Receiver per stream, any carrier."""

from __future__ import annotations

import xxhash

from . import tarshard, wire
from .errors import ProtocolError
from .hashing import digest, new_hasher
from .sink import Partial, Sink

VERIFY_FAILED = "content verification failed (xxh3-128 mismatch in transit)"


class Receiver:
    """Turns the bytes of one record stream into Sink calls (sans-IO: feed() what arrives)."""

    def __init__(self, sink: Sink, verify: bool = True) -> None:
        self.sink = sink
        self.verify = verify
        self._hasher: xxhash.xxh3_128 | None = None
        self._shard: tuple[bytearray, int] | None = None  # held until its DONE
        self.decoder = wire.Decoder()
        self._record: wire.Record | None = None
        self._partial: Partial | None = None
        self._pos = 0
        self._body = bytearray()
        # FILE spans received but not yet confirmed by their DONE: (path, offset) → length
        self._unconfirmed: dict[tuple[str, int], tuple[Partial, int, bytes]] = {}

    @property
    def finished(self) -> bool:
        return self.decoder.finished

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        d = self.decoder
        d.feed(data)
        while True:
            ev = d.next_event()
            if ev is wire.NEED_DATA:
                return
            if isinstance(ev, wire.Data):
                self._data(ev.data)
            elif isinstance(ev, wire.Record):
                self._start(ev)
            elif isinstance(ev, wire.RecordEnd):
                self._end(ev.record)

    def _start(self, rec: wire.Record) -> None:
        self._record = rec
        self._body.clear()
        if rec.type == wire.FILE:
            entry = self.sink.entry(rec.path, rec.size)
            self._partial = self.sink.open_span(entry)
            self._pos = rec.offset
            self._hasher = new_hasher() if self.verify else None

    def _data(self, view: memoryview) -> None:
        rec = self._record
        assert rec is not None
        if rec.type == wire.FILE:
            if self._partial is not None:
                self.sink.write_at(self._partial, self._pos, view)
                if self._hasher is not None:
                    self._hasher.update(view)
            self._pos += len(view)
        else:
            self._body += view

    def _end(self, rec: wire.Record) -> None:
        if rec.type == wire.FILE:
            if self._partial is not None:
                got = self._hasher.digest() if self._hasher is not None else b""
                self._unconfirmed[(rec.path, rec.offset)] = (self._partial, rec.length, got)
            self._partial = None
        elif rec.type == wire.DONE and rec.path == "":
            self._confirm_shard(bytes(self._body))
        elif rec.type == wire.DONE:
            held = self._unconfirmed.pop((rec.path, rec.offset), None)
            if held is not None:
                partial, length, got = held
                if self._mismatch(got, bytes(self._body)):
                    self.sink.fail(rec.path, VERIFY_FAILED)
                else:
                    self.sink.span_done(partial, rec.offset, length)
        elif rec.type == wire.SHARD:
            if self._shard is not None:
                raise ProtocolError("SHARD without its DONE")
            # The body is held as it is (no copy); a fresh buffer takes the next records.
            self._shard = (self._body, rec.size)
            self._body = bytearray()
        elif rec.type == wire.FAIL:
            self.sink.fail(rec.path, "source: " + self._body.decode("utf-8", "replace"))
            for key in [k for k in self._unconfirmed if k[0] == rec.path]:
                del self._unconfirmed[key]
        self._record = None
        self._body.clear()

    def _mismatch(self, got: bytes, sent: bytes) -> bool:
        return self.verify and bool(sent) and got != sent

    def _confirm_shard(self, sent: bytes) -> None:
        if self._shard is None:
            raise ProtocolError("DONE for a shard that was not sent")
        body, count = self._shard
        self._shard = None
        if self._mismatch(digest(body) if self.verify else b"", sent):
            for name, _off, _size in tarshard.decode(body):
                self.sink.fail(name, VERIFY_FAILED)
            return
        self.sink.write_shard(body, count, checked=self.verify and bool(sent))

    def close(self) -> None:
        """The carrier saw the end of its bytes: anything short of END is a truncated stream."""
        if not self.decoder.finished:
            raise ProtocolError("record stream ended early (truncated)")
