"""The client's HTTP/1.1 body writer (h2tuning): a file span goes as one chunk, read as it is
sent; a read error ends the request as itself, not as a write error httpcore would swallow
(it then waits for a response the daemon, still owed the chunk, never sends)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import h11
import pytest
from httpcore._backends.sync import SyncStream

from blit_client import h2tuning
from blit_shared.source import FileSpan
from blit_shared.transport import SpanChunk


class _Connection:
    """What _send_event uses of httpcore's HTTP11Connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._h11_state = h11.Connection(our_role=h11.CLIENT)
        self._network_stream = SyncStream(sock)
        self._h11_state.send(h11.Request(method="PUT", target="/", headers=[
            ("host", "x"), ("transfer-encoding", "chunked")]))


def _pair() -> tuple[Any, socket.socket]:
    a, b = socket.socketpair()
    return _Connection(a), b


def test_a_span_is_one_chunk_read_as_it_is_sent(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    conn, peer = _pair()
    try:
        span = FileSpan(fd, 1024, len(data) - 1024, verify=True)
        chunk = SpanChunk(span, 1 << 20)
        got, chunk_end = bytearray(), b"\r\n0\r\n\r\n"

        def drain() -> None:
            while chunk_end not in got:
                got.extend(peer.recv(1 << 20))

        reader = threading.Thread(target=drain)
        reader.start()
        h2tuning._send_event(conn, h11.Data(data=chunk))
        h2tuning._send_event(conn, h11.EndOfMessage())
        reader.join(10)
        size_line, _, rest = bytes(got).partition(b"\r\n")
        assert int(size_line, 16) == len(data) - 1024  # one chunk for the whole span
        assert rest == data[1024:] + chunk_end
        assert span.digest is not None  # hashed while read
    finally:
        os.close(fd)
        peer.close()


def test_a_read_error_is_raised_as_itself(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # pread on a directory: EISDIR
    conn, peer = _pair()
    try:
        chunk = SpanChunk(FileSpan(fd, 0, 4096), 1 << 20)
        with pytest.raises(IsADirectoryError):
            h2tuning._send_event(conn, h11.Data(data=chunk))
    finally:
        os.close(fd)
        peer.close()
