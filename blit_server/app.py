"""The control plane: one Starlette app of JSON endpoints under /v1, plus the HTTP carrier."""

from __future__ import annotations

import functools

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from blit_shared.errors import BlitError

from . import browse, carrier_http, files_api, metrics, openapi, transfers, watch
from .config import DaemonConfig
from .context import Daemon
from .dataplane import DataPlane
from .http import on_blit_error, on_crash, on_http_error
from .sessions import Sessions


def create_app(config: DaemonConfig, sessions: Sessions,
               data_plane: DataPlane | None) -> Starlette:
    routes = [*browse.ROUTES, *files_api.ROUTES, *transfers.ROUTES, *watch.ROUTES,
              *carrier_http.ROUTES, *metrics.ROUTES,
              *openapi.ROUTES]
    app = Starlette(routes=routes, exception_handlers={
        BlitError: on_blit_error, HTTPException: on_http_error, Exception: on_crash})
    daemon = app.state.daemon = Daemon(config, sessions, data_plane)
    sessions.on_abandoned = functools.partial(metrics.record_ended, daemon, client=None,
                                              outcome="aborted")
    return app
