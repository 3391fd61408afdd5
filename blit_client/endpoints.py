"""Parse SRC/DST arguments: local paths and remote `HOST:PORT:/MODULE/PATH` or blit:// URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from blit_shared.errors import UsageError
from blit_shared.options import IO_TIMEOUT
from blit_shared.paths import check_relpath

if TYPE_CHECKING:
    import ssl

DEFAULT_PORT = 9031
_HOSTPATH = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
    r":(?:(?P<port>\d{1,5})(?::(?P<path>/.*)?)?|(?P<path2>/.*))$"
)


@dataclass(frozen=True, slots=True)
class Local:
    path: str


@dataclass(frozen=True, slots=True)
class Remote:
    host: str            # without IPv6 brackets
    port: int
    module: str | None   # None: the daemon itself (blit ls HOST:PORT)
    path: str            # relative POSIX path inside the module ("" = module root)
    trailing_slash: bool

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        mod = f"/{self.module}" if self.module else ""
        path = f"/{self.path}" if self.path else ""
        return f"{host}:{self.port}:{mod}{path}{'/' if self.trailing_slash and path else ''}"


Endpoint = Local | Remote


def parse(arg: str) -> Endpoint:
    """A remote spec when it looks like one (as rsync decides: host and colon first)."""
    if arg.startswith("blit://"):
        u = urlsplit(arg)
        if not u.hostname:
            raise UsageError(f"no host in {arg!r}")
        return _remote(u.hostname, u.port or DEFAULT_PORT, unquote(u.path))
    m = _HOSTPATH.match(arg)
    if m is None:
        if not arg:
            raise UsageError("empty path")
        return Local(arg)
    host = m["host"].strip("[]")
    port = int(m["port"]) if m["port"] else DEFAULT_PORT
    if not 0 < port < 65536:
        raise UsageError(f"bad port in {arg!r}")
    return _remote(host, port, m["path"] or m["path2"] or "")


def _remote(host: str, port: int, path: str) -> Remote:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return Remote(host, port, None, "", False)
    rel = "/".join(parts[1:])
    check_relpath(rel)
    # A module root has no name of its own to nest under: it always means its contents.
    return Remote(host, port, parts[0], rel, path.endswith("/") or rel == "")


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach a daemon: HTTP version, TLS trust, bearer token, stall timeout."""

    http2: bool = False
    io_timeout: float = IO_TIMEOUT
    token: str | None = None
    tls: bool = False
    ca: str | None = None  # a CA bundle to trust (implies TLS)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls or self.ca):
            return None
        import ssl  # only TLS users pay for loading it

        try:
            return ssl.create_default_context(cafile=self.ca)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load CA file {self.ca}: {exc}") from None
