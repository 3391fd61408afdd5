"""Carriers for record streams: raw TCP sockets (token handshake, sendfile) and HTTP bodies."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
from collections.abc import Iterable, Iterator

from .errors import BlitError, ProtocolError
from .options import IO_TIMEOUT
from .receiver import Receiver
from .source import FLUSH, FileSpan, Frame, read_span
from .workers import Refill

HELLO = b"BLTK"
TOKEN_BYTES = 32
ACK = b"\x01"
HTTP_CHUNK = 1 << 20
BIG_FRAME = 64 << 10  # a frame this long is sent as it is, not gathered with others


class CarrierError(BlitError):
    code = "carrier"
    status = 502


class Unreachable(CarrierError):
    """The granted data port did not answer at all (nothing was sent): HTTP can take over."""


# -- TCP ------------------------------------------------------------------------------------------
def dial(host: str, port: int, token: bytes, timeout: float = 10.0,
         io_timeout: float = IO_TIMEOUT, tls: ssl.SSLContext | None = None) -> socket.socket:
    """Connect to a data port and present a one-time token; returns once the daemon accepted.

    Afterwards every send or receive that makes no progress for `io_timeout` seconds raises
    TimeoutError, so a stalled peer ends the stream instead of hanging it.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise Unreachable(f"data port {host}:{port} unreachable: {exc.strerror or exc}") from None
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        sock.sendall(HELLO + token)
        if sock.recv(1) != ACK:
            raise CarrierError(f"data port {host}:{port} refused the token")
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise CarrierError(f"data port {host}:{port} handshake failed: {exc}") from None
    except CarrierError:
        sock.close()
        raise
    sock.settimeout(io_timeout)
    _tune(sock)
    return sock


def read_hello(sock: socket.socket) -> bytes:
    """Server side: the token a new data connection presents (ProtocolError on garbage)."""
    want = len(HELLO) + TOKEN_BYTES
    buf = bytearray()
    while len(buf) < want:
        chunk = sock.recv(want - len(buf))
        if not chunk:
            raise ProtocolError("data connection closed before its token")
        buf += chunk
    if bytes(buf[:4]) != HELLO:
        raise ProtocolError("data connection did not start with a blit hello")
    return bytes(buf[4:])


def _tune(sock: socket.socket) -> None:
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def send_frames(sock: socket.socket, frames: Iterable[Frame]) -> None:
    """Write a record stream to a socket: buffers with sendall, file spans with sendfile."""
    pending = bytearray()
    encrypted = isinstance(sock, ssl.SSLSocket)  # sendfile would bypass the encryption
    for frame in frames:
        if isinstance(frame, FileSpan):
            if pending:
                sock.sendall(pending)
                pending.clear()
            if frame is FLUSH:
                continue
            if encrypted:
                for data in read_span(frame, HTTP_CHUNK, reuse=True):  # (sent at once)
                    sock.sendall(data)
            else:
                _sendfile(sock, frame)
        elif len(frame) >= BIG_FRAME:  # a shard: as packed, not copied into `pending`
            if pending:
                sock.sendall(pending)
                pending.clear()
            sock.sendall(frame)
        else:
            pending += frame
            if len(pending) >= HTTP_CHUNK:
                sock.sendall(pending)
                pending.clear()
    if pending:
        sock.sendall(pending)
    sock.shutdown(socket.SHUT_WR)


def _sendfile(sock: socket.socket, span: FileSpan) -> None:
    """os.sendfile, waiting for the socket as its timeout allows (a socket with a timeout is
    non-blocking underneath, so sendfile reports EAGAIN instead of blocking)."""
    offset, left = span.offset, span.length
    out = sock.fileno()
    poller = select.poll()
    poller.register(out, select.POLLOUT)
    timeout = sock.gettimeout()
    wait_ms = None if timeout is None else int(timeout * 1000)
    while left:
        try:
            n = os.sendfile(out, span.fd, offset, min(left, 1 << 30))
        except BlockingIOError:
            if not poller.poll(wait_ms):
                raise TimeoutError("data stream stalled: peer stopped reading") from None
            continue
        if n == 0:  # the file shrank: keep the framing; the SOURCE reports the file as FAIL
            sock.sendall(bytes(min(left, HTTP_CHUNK)))
            n = min(left, HTTP_CHUNK)
        offset += n
        left -= n


def receive(sock: socket.socket, receiver: Receiver, bufsize: int = 1 << 20,
            refill: Refill | None = None) -> None:
    """Read a record stream from a socket into `receiver` (recv_into a reused buffer);
    `refill` is called after each buffer, and while it is due no recv waits for a full one
    (the peer may have nothing more to send until it runs)."""
    buf = bytearray(bufsize)
    view = memoryview(buf)
    flags = 0 if isinstance(sock, ssl.SSLSocket) else socket.MSG_WAITALL
    while True:
        try:
            n = sock.recv_into(buf, bufsize, 0 if refill is not None and refill.due() else flags)
        except TimeoutError:
            raise TimeoutError("data stream stalled: peer stopped sending") from None
        if n == 0:
            break
        receiver.feed(view[:n])
        if refill is not None:
            refill()
    receiver.close()


# -- HTTP -----------------------------------------------------------------------------------------
class SpanChunk:
    """A file span as one HTTP body chunk, read as it is sent (read_span: `chunk` bytes at a
    time, hashed as they go) by a body writer that knows it (the client's HTTP/1.1 writer,
    h2tuning). One chunk per span rather than per read: the receiving daemon's socket reads
    then fall inside one chunk and are handed on whole, where a chunk boundary in every read
    made h11 cut (copy) both sides of it."""

    __slots__ = ("span", "chunk")

    def __init__(self, span: FileSpan, chunk: int) -> None:
        self.span, self.chunk = span, chunk

    def __len__(self) -> int:
        return self.span.length

    def pieces(self) -> Iterator[bytes | memoryview]:
        """Views of one reused buffer: each must be sent before the next is asked for."""
        return read_span(self.span, self.chunk, reuse=True)


def http_chunks(frames: Iterable[Frame], chunk: int = HTTP_CHUNK, *,
                spans: bool = False) -> Iterator[bytes | SpanChunk]:
    """A record stream as body chunks of about `chunk` bytes (headers coalesced with data).
    `spans`: a file span of BIG_FRAME or more is one SpanChunk (its writer reads it)."""
    pending = bytearray()
    for frame in frames:
        if frame is FLUSH:
            if pending:
                yield bytes(pending)
                pending.clear()
        elif spans and isinstance(frame, FileSpan) and frame.length >= BIG_FRAME:
            if pending:
                yield bytes(pending)
                pending.clear()
            yield SpanChunk(frame, chunk)
        elif isinstance(frame, FileSpan):
            for data in read_span(frame, chunk):
                if pending:
                    pending += data
                    if len(pending) >= chunk:
                        yield bytes(pending)
                        pending.clear()
                else:
                    yield data
        elif len(frame) >= BIG_FRAME:
            if pending:
                yield bytes(pending)
                pending.clear()
            yield bytes(frame)
        else:
            pending += frame
            if len(pending) >= chunk:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)
