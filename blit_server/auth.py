"""Bearer-token authentication for the control plane: per daemon and per module."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from blit_shared.errors import Unauthorized

from .config import DaemonConfig, Module


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authorize(request: Request, config: DaemonConfig, module: Module | None = None) -> None:
    """Pass when no token guards this request, or it bears one that does (the module's own
    token or the daemon's); compared in constant time."""
    accepted = [t for t in (config.token, module.token if module else None) if t]
    if not accepted:
        return
    got = _bearer(request)
    if got is None:
        raise Unauthorized("this daemon wants a bearer token (blit --token or BLIT_TOKEN)")
    if not any(hmac.compare_digest(got.encode(), t.encode()) for t in accepted):
        raise Unauthorized("wrong bearer token")
