"""Feeds decoded records into a Sink; one Receiver per stream, any carrier."""

from __future__ import annotations

from . import wire
from .errors import ProtocolError
from .sink import Partial, Sink


class Receiver:
    """Turns the bytes of one record stream into Sink calls (sans-IO: feed() what arrives)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.decoder = wire.Decoder()
        self._record: wire.Record | None = None
        self._partial: Partial | None = None
        self._pos = 0
        self._body = bytearray()
        # FILE spans received but not yet confirmed by their DONE: (path, offset) → length
        self._unconfirmed: dict[tuple[str, int], tuple[Partial, int]] = {}

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

    def _data(self, view: memoryview) -> None:
        rec = self._record
        assert rec is not None
        if rec.type == wire.FILE:
            if self._partial is not None:
                self.sink.write_at(self._partial, self._pos, view)
            self._pos += len(view)
        else:
            self._body += view

    def _end(self, rec: wire.Record) -> None:
        if rec.type == wire.FILE:
            if self._partial is not None:
                self._unconfirmed[(rec.path, rec.offset)] = (self._partial, rec.length)
            self._partial = None
        elif rec.type == wire.DONE:
            held = self._unconfirmed.pop((rec.path, rec.offset), None)
            if held is not None:
                self.sink.span_done(held[0], rec.offset, held[1])
        elif rec.type == wire.SHARD:
            self.sink.write_shard(bytes(self._body), rec.size)
        elif rec.type == wire.FAIL:
            self.sink.fail(rec.path, "source: " + self._body.decode("utf-8", "replace"))
            for key in [k for k in self._unconfirmed if k[0] == rec.path]:
                del self._unconfirmed[key]
        self._record = None
        self._body.clear()

    def close(self) -> None:
        """The carrier saw the end of its bytes: anything short of END is a truncated stream."""
        if not self.decoder.finished:
            raise ProtocolError("record stream ended early (truncated)")
