"""What every endpoint looks up: the daemon's state and the caller's module or transfer."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

from blit_shared.errors import NotFound

from .auth import authorize
from .config import DaemonConfig, Module
from .dataplane import DataPlane
from .metrics import Metrics
from .sessions import Session, Sessions


class Daemon:
    """Holds the configuration, the sessions and the data plane the endpoints use."""

    def __init__(self, config: DaemonConfig, sessions: Sessions,
                 data_plane: DataPlane | None) -> None:
        self.config = config
        self.sessions = sessions
        self.data_plane = data_plane
        self.metrics = Metrics(sessions)  # per daemon: tests run several in one process



def daemon_of(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


def session_of(request: Request) -> Session:
    daemon = daemon_of(request)
    s = daemon.sessions.get(request.path_params["id"])
    authorize(request, daemon.config, s.module)
    s.touched = time.monotonic()
    return s


def retired_summary(request: Request) -> dict[str, Any] | None:
    """The summary of a finished transfer, for a caller allowed to see it."""
    daemon = daemon_of(request)
    done = daemon.sessions.summary(request.path_params["id"])
    if done is None:
        return None
    module, summary = done
    authorize(request, daemon.config, module)
    return summary


def module_of(request: Request, name: str) -> Module:
    """The named module, for a caller allowed to use it (unknown names only tell the caller
    who passes the daemon's own check)."""
    config = daemon_of(request).config
    module = config.modules.get(name)
    if module is None:
        authorize(request, config)
        raise NotFound(f"unknown module {name!r}")
    authorize(request, config, module)
    return module
