"""HTTP helpers for the control plane: capped JSON bodies and JSON error responses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from blit_shared.errors import BlitError, ProtocolError, TooLarge

from .metrics import count_error

SMALL_BODY = 1 << 20
MANIFEST_BODY = 512 << 20


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def read_json(request: Request, cap: int = SMALL_BODY) -> Any:
    """The request body as JSON, refusing bodies over `cap` bytes before buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"request body over {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise TooLarge(f"request body over {cap} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None


def error_response(request: Request, code: str, message: str, status: int) -> JSON:
    count_error(request, code)
    resp = JSON({"error": {"code": code, "message": message}}, status_code=status)
    if request.method in ("PUT", "POST") and request.scope.get("http_version") == "1.1":
        # The body may be unread (an upload refused early): Hypercorn would then neither read
        # on nor close, leaving the connection hung. Closing it is the only safe end.
        resp.headers["connection"] = "close"
    return resp


async def on_blit_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BlitError)
    return error_response(request, exc.code, exc.message, exc.status)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
    return error_response(request, code, str(exc.detail), exc.status_code)


async def on_crash(request: Request, exc: Exception) -> Response:
    return error_response(request, "internal", f"internal error: {type(exc).__name__}", 500)


def field(data: Any, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """A typed field of a JSON object, or a 400 naming what is wrong."""
    if not isinstance(data, dict):
        raise ProtocolError("request body must be a JSON object")
    if name not in data:
        if default is ...:
            raise ProtocolError(f"missing field {name!r}")
        return default
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise ProtocolError(f"field {name!r} has the wrong type")
    if isinstance(value, str) and len(value) > 4096:
        raise TooLarge(f"field {name!r} is too long")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
