"""Control-plane client: one httpx.Client per daemon, JSON in and out, errors as BlitError."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from blit_shared import errors
from blit_shared.errors import BlitError

from . import h2tuning
from .endpoints import Connection

_BY_STATUS: dict[int, type[BlitError]] = {
    400: errors.ProtocolError, 401: errors.Unauthorized, 403: errors.Forbidden,
    404: errors.NotFound, 409: errors.Conflict, 413: errors.TooLarge,
}
TIMEOUT = httpx.Timeout(300.0, connect=10.0)  # a pull's first call scans the source tree


class DaemonError(BlitError):
    """An error the daemon reported, keeping its code."""


def _raise_for(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    try:
        err = orjson.loads(resp.read())["error"]
        code, message = str(err["code"]), str(err["message"])
    except Exception:
        code, message = "http", f"HTTP {resp.status_code} from daemon"
    cls = _BY_STATUS.get(resp.status_code, DaemonError)
    raise cls(f"daemon: {message}", code=code)


class DaemonClient:
    """Talks to one blitd. `http2` speaks h2c with prior knowledge (httpx needs http1=False)."""

    def __init__(self, base_url: str, conn: Connection | None = None) -> None:
        conn = conn or Connection()
        self.io_timeout = conn.io_timeout
        self.http2 = conn.http2
        h2tuning.install()
        self.tls = conn.ssl_context()
        self.base_url = base_url.replace("http://", "https://", 1) if self.tls else base_url
        self._headers = {"authorization": f"Bearer {conn.token}"} if conn.token else {}
        self._client = self._new_client()

    @property
    def _stream_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.io_timeout, connect=10.0)

    def _new_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=TIMEOUT, http1=not self.http2,
                            http2=self.http2, headers=self._headers,
                            # Plain http:// never uses a context; building the default one
                            # (loading the CA store) cost 23 ms per command.
                            verify=self.tls if self.tls is not None else False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        content = orjson.dumps(body) if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            resp = self._client.request(method, path, content=content, headers=headers, **kw)
        except httpx.TransportError as exc:
            raise BlitError(f"cannot reach daemon at {self.base_url}: {exc}",
                            code="unreachable") from None
        _raise_for(resp)
        return orjson.loads(resp.content)

    # -- the HTTP carrier: each stream on a client of its own, so streams run in parallel ------
    def put_stream(self, path: str, chunks: Iterator[bytes]) -> Any:
        with self._new_client() as client:
            try:
                resp = client.put(path, content=chunks, timeout=self._stream_timeout)
            except httpx.TransportError as exc:
                raise BlitError(f"HTTP stream to {self.base_url} failed: {exc}",
                                code="carrier") from None
            _raise_for(resp)
            return orjson.loads(resp.content)

    def get_stream(self, path: str) -> Iterator[bytes]:
        with self._new_client() as client:
            try:
                with client.stream("GET", path, timeout=self._stream_timeout) as resp:
                    _raise_for(resp)
                    yield from resp.iter_raw()  # as read: no re-chunking copies
            except httpx.TransportError as exc:
                raise BlitError(f"HTTP stream from {self.base_url} failed: {exc}",
                                code="carrier") from None
