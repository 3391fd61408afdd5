"""h11buffer.ReadBuffer parses exactly what h11's own ReceiveBuffer parses, however the bytes
are split into reads (property test against h11 itself)."""

from __future__ import annotations

from typing import Any

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from blit_shared.h11buffer import ReadBuffer


def _events(role: type[h11.CLIENT] | type[h11.SERVER], wire: bytes, cuts: list[int],
            fast: bool, request: bool) -> list[Any]:
    conn = h11.Connection(role)
    if fast:
        conn._receive_buffer = ReadBuffer()
    if not request:  # a client must send its request before it reads a response
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
    out: list[Any] = []
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                break
            if isinstance(event, h11.Data):
                out.append(("data", bytes(event.data), event.chunk_start, event.chunk_end))
            else:
                out.append(repr(event))
            if isinstance(event, h11.ConnectionClosed):
                return out
    return out


def _chunked(chunks: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    return body + b"0\r\nX-Trailer: t\r\n\r\n"


message = st.lists(st.binary(min_size=1, max_size=300), max_size=8)


@settings(max_examples=300, deadline=None)
@given(chunks=message, data=st.data())
def test_same_events_as_h11_for_a_chunked_response(chunks: list[bytes], data: st.DataObject
                                                   ) -> None:
    wire = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(chunks))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=12)))
    assert _events(h11.CLIENT, wire, cuts, True, False) == \
        _events(h11.CLIENT, wire, cuts, False, False)


@settings(max_examples=200, deadline=None)
@given(chunks=message, length=st.booleans(), data=st.data())
def test_same_events_as_h11_for_an_upload(chunks: list[bytes], length: bool,
                                          data: st.DataObject) -> None:
    body = b"".join(chunks)
    head = (b"PUT /v1/transfers/x/stream HTTP/1.1\r\nHost: h\r\n"
            + (b"Content-Length: %d\r\n\r\n" % len(body) if length
               else b"Transfer-Encoding: chunked\r\n\r\n"))
    wire = head + (body if length else _chunked(chunks))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=12)))
    assert _events(h11.SERVER, wire, cuts, True, True) == \
        _events(h11.SERVER, wire, cuts, False, True)


def test_a_whole_read_is_handed_on_without_a_copy() -> None:
    buf = ReadBuffer()
    read = b"x" * 1000
    buf += read
    assert buf.maybe_extract_at_most(5000) is read
    assert len(buf) == 0 and buf.maybe_extract_at_most(1) is None


def test_malformed_chunk_footer_is_still_refused() -> None:
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY"
    conn = h11.Connection(h11.CLIENT)
    conn._receive_buffer = ReadBuffer()
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(wire)
    assert isinstance(conn.next_event(), h11.Response)
    assert isinstance(conn.next_event(), h11.Data)
    try:
        conn.next_event()
    except h11.RemoteProtocolError as exc:
        assert "chunk footer" in str(exc)
    else:
        raise AssertionError("a bad chunk footer was accepted")
