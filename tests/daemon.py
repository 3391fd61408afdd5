"""A real `blitd` process on 127.0.0.1 for tests, always stopped (by PID) on teardown."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Daemon:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, module: str, path: str = "") -> str:
        """The CLI's remote syntax HOST:PORT:/MODULE/PATH."""
        return f"127.0.0.1:{self.port}:/{module}" + (f"/{path}" if path else "")


@contextmanager
def running_daemon(tmp: Path, *args: str, config: str | None = None,
                   ca: Path | None = None) -> Iterator[Daemon]:
    """Start blitd with `args` (and an optional TOML config text); wait until it answers.
    With `ca`, the daemon speaks TLS and is checked against that CA."""
    port = free_port()
    cmd = [sys.executable, "-m", "blit_server.cli", "--port", str(port), *args]
    if config is not None:
        cfg = tmp / f"blitd-{port}.toml"
        cfg.write_text(config)
        cmd += ["--config", str(cfg)]
    log = tmp / f"blitd-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"blitd exited {proc.returncode}: {log.read_text()}")
            try:
                scheme = "https" if ca else "http"
                verify = ssl.create_default_context(cafile=str(ca)) if ca else True
                httpx.get(f"{scheme}://127.0.0.1:{port}/healthz", timeout=1,
                          verify=verify).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"blitd did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield Daemon(proc, port, log)
    finally:
        stop(proc)
