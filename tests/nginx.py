"""A real nginx in front of a blitd, run from docs/deploy/nginx.conf; stopped by PID on exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.daemon import free_port, stop

CONF = Path(__file__).resolve().parent.parent / "docs" / "deploy" / "nginx.conf"


def nginx_binary() -> str:
    """The nginx executable; skipped where it is missing unless BLIT_REQUIRE_NGINX is set
    (.ci/run installs nginx and sets it, so CI can never skip these tests)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)
    if found is None:
        if os.environ.get("BLIT_REQUIRE_NGINX"):
            raise RuntimeError("nginx is required (BLIT_REQUIRE_NGINX) but not installed")
        pytest.skip("nginx not installed (apt-get install nginx)")
    return found


@dataclass(frozen=True)
class Proxy:
    port: int
    prefix: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, module: str, path: str = "") -> str:
        return f"127.0.0.1:{self.port}:/{module}" + (f"/{path}" if path else "")

    def error_log(self) -> str:
        return (self.prefix / "blit.error.log").read_text(errors="replace")

    def spooled(self) -> list[Path]:
        """Request bodies nginx buffered to disk (there must be none)."""
        return [p for p in (self.prefix / "client_body_temp").rglob("*") if p.is_file()]


def render_conf(upstream_port: int, listen_port: int, logs: Path) -> str:
    """docs/deploy/nginx.conf with this test's ports and log directory, nothing else changed."""
    text = CONF.read_text()
    for old, new in (("server 127.0.0.1:9031;", f"server 127.0.0.1:{upstream_port};"),
                     ("listen 8080;", f"listen 127.0.0.1:{listen_port};"),
                     ("/var/log/nginx/", f"{logs}/")):
        assert old in text, f"{CONF} no longer contains {old!r}"
        text = text.replace(old, new)
    # Debian builds nginx with temp paths under /var/lib/nginx: keep them where we can look.
    temps = (f"    client_body_temp_path {logs}/client_body_temp;\n"
             f"    proxy_temp_path {logs}/proxy_temp;\n")
    return text.replace("http {\n", "http {\n" + temps, 1)


@contextmanager
def running_nginx(tmp: Path, upstream_port: int) -> Iterator[Proxy]:
    binary = nginx_binary()
    prefix = tmp / f"nginx-{upstream_port}"
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render_conf(upstream_port, port, prefix))
    cmd = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "startup.log"),
           "-g", f"daemon off; pid {prefix}/nginx.pid;"]
    with open(prefix / "stderr.log", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited {proc.returncode}: "
                                   f"{(prefix / 'stderr.log').read_text()}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.05)
        yield Proxy(port, prefix)
    finally:
        stop(proc)  # SIGTERM: nginx's fast shutdown of master and workers
