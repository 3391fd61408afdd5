"""httpcore tuning it has no settings for: larger HTTP/2 windows and frames (with 64 KiB stream
windows an h2c pull stalls on every WINDOW_UPDATE round trip), 1 MiB socket reads for both
HTTP versions (64 KiB reads held an HTTP/1.1 pull near 0.6 GB/s), and HTTP/1.1 request bodies
whose file spans are one chunk each, read as they are sent (transport.SpanChunk)."""

from __future__ import annotations

import socket
from typing import Any

import h2.settings
import h11
from httpcore._backends import sync as core_sync
from httpcore._exceptions import WriteError, WriteTimeout, map_exceptions
from httpcore._sync import http2 as core_h2
from httpcore._sync import http11 as core_h11

from blit_shared import h11buffer
from blit_shared.transport import SpanChunk
from blit_shared.tuning import H2_FRAME, H2_WINDOW

READ_BYTES = 1 << 20


def install() -> None:
    core_h11.HTTP11Connection.READ_NUM_BYTES = READ_BYTES
    core_h11.HTTP11Connection._send_event = _send_event  # type: ignore[method-assign]
    h11buffer.install()
    cls = core_h2.HTTP2Connection
    if getattr(cls, "_blit_tuned", False):
        return
    original = cls._send_connection_init

    def _send_connection_init(self: Any, request: Any) -> None:
        state = self._h2_state
        real_initiate = state.initiate_connection

        def initiate() -> None:
            values = dict(state.local_settings.items())
            values[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = H2_WINDOW
            values[h2.settings.SettingCodes.MAX_FRAME_SIZE] = H2_FRAME
            state.local_settings = h2.settings.Settings(client=True, initial_values=values)
            state.max_inbound_frame_size = H2_FRAME
            real_initiate()

        state.initiate_connection = initiate
        original(self, request)

    cls._send_connection_init = _send_connection_init  # type: ignore[method-assign]
    cls.READ_NUM_BYTES = READ_BYTES
    cls._blit_tuned = True  # type: ignore[attr-defined]


_WRITE_ERRORS: Any = {socket.timeout: WriteTimeout, OSError: WriteError}


def _send_event(self: Any, event: h11.Event, timeout: float | None = None) -> None:
    """HTTP11Connection._send_event, which h11 lets pass a SpanChunk through as the data of
    its chunk (size line, data, CRLF): the span is read and sent piece by piece, each piece
    with what comes before it in one sendmsg (no join; a plain socket)."""
    pieces = self._h11_state.send_with_data_passthrough(event)
    if not pieces:
        return
    stream = self._network_stream
    sock = getattr(stream, "_sock", None)
    if type(stream) is not core_sync.SyncStream or type(sock) is not socket.socket:
        for piece in pieces:  # TLS: no sendmsg
            for data in piece.pieces() if isinstance(piece, SpanChunk) else (piece,):
                stream.write(data, timeout=timeout)
        return
    views: list[memoryview] = []  # (a SpanChunk's size line goes with its first piece)
    for piece in pieces:
        if not isinstance(piece, SpanChunk):
            views.append(memoryview(piece))
            continue
        # Read outside the write-error mapping: httpcore swallows a WriteError to wait for
        # the response, which a daemon still owed this chunk never sends (a read error must
        # end the request at once, as itself).
        for data in piece.pieces():
            views.append(memoryview(data))
            _send_views(sock, views, timeout)
            views = []
    _send_views(sock, views, timeout)


def _send_views(sock: socket.socket, views: list[memoryview], timeout: float | None) -> None:
    with map_exceptions(_WRITE_ERRORS):
        sock.settimeout(timeout)
        while views:
            sent = sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if sent:
                views[0] = views[0][sent:]
