"""Hypercorn tuning it has no settings for: HTTP/2 windows and frame sizes, HTTP/1.1 reads.
Its h2 defaults (64 KiB windows, 16 KiB frames) hold an h2c push to ~0.1 GB/s."""

from __future__ import annotations

from typing import Any

import h2.settings
from hypercorn.asyncio import tcp_server as hyper_tcp
from hypercorn.protocol import h2 as hyper_h2

from blit_shared import h11buffer
from blit_shared.tuning import H2_FRAME, H2_WINDOW

from . import chunkreader

HTTP_READ = 1 << 20


def install() -> None:
    # HTTP/1.1 too: Hypercorn reads 64 KiB at a time, each read a wait_for task and a trip
    # through h11 and the ASGI queue; 1 MiB reads cut the daemon's CPU for an upload.
    hyper_tcp.MAX_RECV = HTTP_READ
    chunkreader.install()
    h11buffer.install()
    cls = hyper_h2.H2Protocol
    if getattr(cls, "_blit_tuned", False):
        return
    original_init = cls.__init__
    original_initiate = cls.initiate

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        conn = self.connection
        values = dict(conn.local_settings.items())
        values[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = H2_WINDOW
        values[h2.settings.SettingCodes.MAX_FRAME_SIZE] = H2_FRAME
        # Initial values are in force at once and go out in the first SETTINGS frame.
        conn.local_settings = h2.settings.Settings(client=False, initial_values=values)
        conn.max_inbound_frame_size = H2_FRAME

    async def initiate(self: Any, *args: Any, **kwargs: Any) -> None:
        await original_initiate(self, *args, **kwargs)
        self.connection.increment_flow_control_window(H2_WINDOW)
        await self._flush()

    cls.__init__ = __init__  # type: ignore[method-assign]
    cls.initiate = initiate  # type: ignore[method-assign]
    cls._blit_tuned = True  # type: ignore[attr-defined]
