"""Daemon configuration: TOML file (tomllib) plus command-line overrides."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field

from blit_shared.errors import UsageError

DEFAULT_PORT = 9031
LOG_FORMATS = ("human", "json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: str
    read_only: bool = False
    comment: str = ""
    token: str | None = None  # bearer token for this module (the daemon's token works too)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "read_only": self.read_only, "comment": self.comment}


@dataclass(slots=True)
class DaemonConfig:
    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_port: int = 0                 # 0: an ephemeral port chosen at start
    advertise_host: str | None = None  # what data-plane grants point clients at
    advertise_port: int | None = None  # ...and the port (a NAT or port forward in between)
    proxy_hops: int = 0                # reverse proxies whose X-Forwarded-* headers we trust
    force_http: bool = False           # never grant the TCP data plane
    timeout: float = 60.0              # seconds a data stream may make no progress
    token: str | None = None           # bearer token every request needs (but /healthz)
    certfile: str | None = None        # TLS for the control plane and the data plane
    keyfile: str | None = None
    log_format: str = "human"          # or "json": one JSON object per log line
    modules: dict[str, Module] = field(default_factory=dict)

    def add_module(self, module: Module) -> None:
        if not _NAME.match(module.name):
            raise UsageError(f"bad module name {module.name!r}")
        path = os.path.realpath(module.path)
        if not os.path.isdir(path):
            raise UsageError(f"module {module.name!r}: {module.path} is not a directory")
        self.modules[module.name] = Module(module.name, path, module.read_only, module.comment,
                                           module.token)


def load(path: str | None) -> DaemonConfig:
    cfg = DaemonConfig()
    if path is None:
        return cfg
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from None
    daemon = data.get("daemon", {})
    for key in ("bind", "port", "data_port", "advertise_host", "advertise_port", "proxy_hops",
                "force_http", "timeout", "token", "certfile", "keyfile", "log_format"):
        if key in daemon:
            setattr(cfg, key, daemon[key])
    check_log_format(cfg.log_format)
    if "token_file" in daemon:
        cfg.token = read_token(daemon["token_file"])
    for m in data.get("module", []):
        try:
            token = read_token(m["token_file"]) if "token_file" in m else m.get("token")
            cfg.add_module(Module(m["name"], m["path"], bool(m.get("read_only", False)),
                                  str(m.get("comment", "")), token))
        except KeyError as exc:
            raise UsageError(f"module in {path} lacks {exc}") from None
    return cfg


def load_modules(path: str, fixed: Iterable[Module]) -> dict[str, Module]:
    """The modules of config file `path` plus `fixed` ones (from the command line, which win),
    for a reload; raises UsageError, leaving the caller's modules alone, when it is unusable."""
    modules = {**load(path).modules, **{m.name: m for m in fixed}}
    if not modules:
        raise UsageError(f"no modules in {path}")
    return modules


def check_log_format(fmt: object) -> None:
    if fmt not in LOG_FORMATS:
        raise UsageError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise UsageError(f"token file {path} is empty")
    return token


def parse_module_flag(flag: str) -> Module:
    name, sep, path = flag.partition("=")
    if not sep or not path:
        raise UsageError(f"--module wants NAME=DIR, got {flag!r}")
    return Module(name, path)
