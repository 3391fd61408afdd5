"""Operating a real blitd: JSON logs with one line per transfer, SIGHUP reloads of the modules
while a transfer runs, and the systemd unit of docs/deploy (its ExecStart really starts blitd)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.daemon import Daemon, running_daemon
from tests.helpers import assert_same_tree, blit, wait_for

UNIT = Path(__file__).resolve().parent.parent / "docs" / "deploy" / "blitd.service"
MiB = 1 << 20


def log_lines(d: Daemon) -> list[str]:
    return [line for line in d.log.read_text().splitlines() if line.strip()]


def modules(d: Daemon) -> list[str]:
    return [m["name"] for m in httpx.get(f"http://{d.addr}/v1/modules").json()["modules"]]


# -- logs ------------------------------------------------------------------------------------
def test_json_log_has_one_line_per_transfer(tmp_path: Path) -> None:
    module, src, out = tmp_path / "m", tmp_path / "src", tmp_path / "out"
    module.mkdir()
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(200_000))
    (src / "g.txt").write_text("g\n")
    with running_daemon(tmp_path, "--module", f"m={module}", "--log-format", "json") as d:
        assert blit("copy", str(src) + "/", d.url("m", "x")).returncode == 0
        assert blit("copy", "--force-http", d.url("m", "x/"), str(out)).returncode == 0
        opened = httpx.post(f"http://{d.addr}/v1/transfers",
                            json={"direction": "pull", "module": "m", "path": "x"}).json()
        httpx.delete(f"http://{d.addr}/v1/transfers/{opened['id']}").raise_for_status()
        httpx.get(f"http://{d.addr}/v1/modules/nope/list")
        d.proc.send_signal(signal.SIGHUP)  # no --config: a warning line, also JSON
        assert wait_for(lambda: "nothing to reload" in d.log.read_text())
    assert_same_tree(src, out)
    records = [json.loads(line) for line in log_lines(d)]  # every line, start to stop
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert {"info", "warning"} <= {r["level"] for r in records}
    assert any(r["logger"].startswith("hypercorn") for r in records)  # not only our own lines
    assert records[-1]["message"] == "blitd stopped"
    transfers = [r for r in records if r.get("event") == "transfer"]
    assert [(t["direction"], t["carrier"], t["outcome"]) for t in transfers] == [
        ("push", "tcp", "ok"), ("pull", "http", "ok"), ("pull", "none", "aborted")]
    push, pull, aborted = transfers
    assert push["files"] == pull["files"] == 2 and push["bytes"] == pull["bytes"] == 200_002
    assert aborted["id"] == opened["id"] and aborted["files"] == 0
    for t in transfers:
        assert t["module"] == "m" and t["client"] == "127.0.0.1" and t["failed"] == 0
        assert t["duration_s"] >= 0 and len(t["id"]) == 32


def test_human_log_by_default_and_log_format_in_config(tmp_path: Path) -> None:
    module, src = tmp_path / "m", tmp_path / "src"
    module.mkdir()
    src.mkdir()
    (src / "f").write_text("f\n")
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        assert blit("copy", str(src) + "/", d.url("m")).returncode == 0
        assert wait_for(lambda: " transfer " in d.log.read_text())
        line = next(x for x in log_lines(d) if " transfer " in x)
        assert " push m from 127.0.0.1: ok, 1 files, 2 bytes, 0 failed, carrier tcp, " in line
        with pytest.raises(json.JSONDecodeError):
            json.loads(log_lines(d)[0])
    config = f'[daemon]\nlog_format = "json"\n[[module]]\nname = "m"\npath = "{module}"\n'
    with running_daemon(tmp_path, config=config) as d:
        assert json.loads(log_lines(d)[0])["logger"] == "blitd"
    bad = subprocess.run([sys.executable, "-m", "blit_server.cli", "--module", f"m={module}",
                          "--log-format", "xml"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 3 and "log format" in bad.stderr


# -- SIGHUP ----------------------------------------------------------------------------------
class HoldingRelay:
    """A TCP relay in front of blitd that stops passing client bytes on once `hold_after` of
    them went through, until released: a push through it is then mid-stream for as long as
    the test needs, however fast the machine."""

    def __init__(self, target: int, hold_after: int) -> None:
        self.target, self.hold_after, self.passed = target, hold_after, 0
        self.held, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if from_client:
                    with self._lock:
                        self.passed += len(data)
                        hold = self.passed > self.hold_after
                    if hold:
                        self.held.set()
                        self.release.wait()
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.release.set()
        self._listener.close()


def reload_failures(d: Daemon) -> int:
    return d.log.read_text().count("reload failed, keeping the old config")


def module_config(**mods: Path) -> str:
    return "".join(f'[[module]]\nname = "{n}"\npath = "{p}"\n' for n, p in mods.items())


def test_sighup_reloads_modules_without_dropping_a_running_transfer(tmp_path: Path) -> None:
    a, b, keep, src = (tmp_path / n for n in ("a", "b", "keep", "src"))
    for p in (a, b, keep, src):
        p.mkdir()
    (src / "big.bin").write_bytes(os.urandom(24 * MiB))
    (src / "small.txt").write_text("small\n")
    config = tmp_path / "blitd.toml"
    config.write_text(module_config(a=a))
    with running_daemon(tmp_path, "--config", str(config), "--module", f"keep={keep}") as d:
        assert sorted(modules(d)) == ["a", "keep"]
        relay = HoldingRelay(d.port, hold_after=1 * MiB)
        # The CLI's whole conversation (HTTP carrier) passes the relay, which holds the push
        # mid-body: the transfer is running for certain when SIGHUP arrives.
        push = subprocess.Popen(
            [sys.executable, "-m", "blit_client.cli", "copy", "--json", "--force-http",
             str(src) + "/", f"127.0.0.1:{relay.port}:/a/dst"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert relay.held.wait(60), "the push never started streaming"
            metrics = httpx.get(f"http://{d.addr}/metrics").text
            assert "blit_active_sessions 1.0" in metrics

            # Module a removed, b added; the command-line module stays.
            config.write_text(module_config(b=b))
            d.proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: "reloaded config: modules b=" in d.log.read_text())
            assert sorted(modules(d)) == ["b", "keep"]
            refused = blit("copy", str(src / "small.txt"), d.url("a", "late.txt"))
            assert refused.returncode != 0 and "unknown module 'a'" in refused.stderr
            opened = httpx.post(f"http://{d.addr}/v1/transfers", json={
                "direction": "pull", "module": "a", "path": ""})
            assert opened.status_code == 404
            assert blit("copy", str(src / "small.txt"), d.url("b", "new.txt")).returncode == 0

            # A broken config, then one naming a missing directory: the old modules stay.
            for broken in ("[[module]\nname = ", module_config(c=tmp_path / "missing")):
                failures = reload_failures(d)
                config.write_text(broken)
                d.proc.send_signal(signal.SIGHUP)
                assert wait_for(lambda: reload_failures(d) > failures)  # noqa: B023
                assert sorted(modules(d)) == ["b", "keep"]
            assert d.proc.poll() is None
            assert not relay.release.is_set() and push.poll() is None  # still held
        finally:
            relay.close()
        out, err = push.communicate(timeout=120)
        assert push.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["files_transferred"] == 2
    assert_same_tree(src, a / "dst")
    assert (b / "new.txt").read_text() == "small\n"
    assert not (a / "late.txt").exists()
    line = next(x for x in log_lines(d) if " push a from " in x)
    assert ": ok, 2 files, " in line


# -- systemd ---------------------------------------------------------------------------------
def unit_keys(text: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file (keys may repeat, as systemd allows)."""
    keys: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, val = line.partition("=")
            keys.setdefault(key.strip(), []).append(val.strip())
    return keys


def test_systemd_unit_is_hardened_and_its_commands_work(tmp_path: Path) -> None:
    keys = unit_keys(UNIT.read_text())
    for key, want in {"User": "blit", "Group": "blit", "ProtectSystem": "strict",
                      "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                      "Restart": "on-failure", "ExecReload": "/bin/kill -HUP $MAINPID"}.items():
        assert keys.get(key) == [want], (key, keys.get(key))
    assert keys["ReadWritePaths"] and keys["ReadWritePaths"][0].startswith("/")
    assert "/etc/blit/blitd.toml" in keys["ExecStart"][0]

    # ExecStart's arguments, with the config path pointed at a temp config, start blitd.
    module = tmp_path / "srv"
    module.mkdir()
    config = tmp_path / "blitd.toml"
    config.write_text(module_config(files=module))
    argv = shlex.split(keys["ExecStart"][0])
    assert Path(argv[0]).name == "blitd"
    args = [str(config) if a == "/etc/blit/blitd.toml" else a for a in argv[1:]]
    with running_daemon(tmp_path, *args) as d:
        assert modules(d) == ["files"]
        # ExecReload, as systemd runs it, reloads.
        config.write_text(module_config(files=module, more=module))
        reload = shlex.split(keys["ExecReload"][0].replace("$MAINPID", str(d.proc.pid)))
        subprocess.run(reload, check=True, timeout=10)
        assert wait_for(lambda: "reloaded config" in d.log.read_text())
        assert modules(d) == ["files", "more"]

    # systemd's own parser finds no unknown key or bad value (where systemd is installed).
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        blitd = Path(sys.executable).with_name("blitd")
        unit = tmp_path / "blitd.service"
        unit.write_text(UNIT.read_text().replace(argv[0], str(blitd)))
        checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True,
                                 text=True, timeout=60)
        assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
