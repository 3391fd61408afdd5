"""Faults with a real daemon: killed and stalled peers, truncated streams, bad tokens,
sources that change while being sent, deletion caps. Each fails without its protection."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from blit_shared import wire
from blit_shared.manifest import scan
from blit_shared.progress import Progress
from blit_shared.receiver import Receiver
from blit_shared.sink import Sink
from blit_shared.source import FileSpan, Source
from blit_shared.temps import TEMP_MARK
from blit_shared.transport import HELLO
from tests.daemon import Daemon, running_daemon
from tests.helpers import assert_same_tree, blit, wait_for

MiB = 1 << 20


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMP_MARK in p.name]


def big_source(tmp: Path, size: int = 1024 * MiB) -> Path:
    """A large, sparse (so cheap) file: long enough to interrupt mid-stream."""
    src = tmp / "src"
    src.mkdir()
    with open(src / "big.bin", "wb") as f:
        f.truncate(size)
        f.seek(size // 2)
        f.write(b"middle")
    (src / "small.txt").write_text("small\n")
    return src


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "blit_client.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("carrier", [[], ["--force-http"]], ids=["tcp", "http"])
def test_client_killed_mid_push_then_rerun(tmp_path: Path, carrier: list[str]) -> None:
    src = big_source(tmp_path)
    module = tmp_path / "module"
    module.mkdir()
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        push = cli("copy", "--streams", "1", *carrier, str(src) + "/", d.url("m", "dst"))
        assert wait_for(lambda: bool(temps(module))), "transfer never started"
        push.kill()
        push.wait()
        # The daemon notices the dead stream and drops the temp file at once.
        assert wait_for(lambda: not temps(module), 10), temps(module)
        assert not (module / "dst" / "big.bin").exists()
        missing = [p for p in src.rglob("*") if p.is_file()
                   and not (module / "dst" / p.relative_to(src)).exists()]
        again = blit("copy", "--json", str(src) + "/", d.url("m", "dst"))
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout.splitlines()[-1])["files_transferred"] == len(missing)
    assert_same_tree(src, module / "dst")


@pytest.mark.parametrize("carrier", [[], ["--force-http"]], ids=["tcp", "http"])
def test_daemon_killed_mid_pull_then_rerun(tmp_path: Path, carrier: list[str]) -> None:
    module = tmp_path / "module"
    module.mkdir()
    src = big_source(module)
    dst = tmp_path / "dst"
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        pull = cli("copy", "--streams", "1", *carrier, d.url("m", "src/"), str(dst))
        assert wait_for(lambda: dst.exists() and bool(temps(dst))), "transfer never started"
        d.proc.kill()
        _, err = pull.communicate(timeout=60)
        assert pull.returncode == 1, err
        assert not temps(dst) and not (dst / "big.bin").exists()
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        again = blit("copy", d.url("m", "src/"), str(dst))
        assert again.returncode == 0, again.stderr
    assert_same_tree(src, dst)


def test_client_killed_mid_pull_leaves_temps_that_the_next_run_removes(tmp_path: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    src = big_source(module)
    dst = tmp_path / "dst"
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        pull = cli("copy", "--streams", "1", d.url("m", "src/"), str(dst))
        assert wait_for(lambda: dst.exists() and bool(temps(dst))), "transfer never started"
        pull.kill()
        pull.wait()
        left = temps(dst)
        assert left, "SIGKILL leaves the temp file (nothing can run in a killed process)"
        assert not (dst / "big.bin").exists()
        again = blit("copy", "--json", d.url("m", "src/"), str(dst))
        assert again.returncode == 0, again.stderr
    assert not temps(dst)
    assert_same_tree(src, dst)


def test_stalled_daemon_times_out_the_pull(tmp_path: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    big_source(module)
    dst = tmp_path / "dst"
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        pull = cli("copy", "--timeout", "2", "--streams", "1", d.url("m", "src/"), str(dst))
        assert wait_for(lambda: dst.exists() and bool(temps(dst))), "transfer never started"
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            _, err = pull.communicate(timeout=30)
            waited = time.monotonic() - started
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        assert pull.returncode == 1 and "stalled" in err, err
        assert waited < 15
        assert not temps(dst) and not (dst / "big.bin").exists()


def test_stalled_client_times_out_the_push(tmp_path: Path) -> None:
    src = big_source(tmp_path)
    module = tmp_path / "module"
    module.mkdir()
    with running_daemon(tmp_path, "--timeout", "2", "--module", f"m={module}") as d:
        baseline = threads(d.proc.pid)
        push = cli("copy", "--streams", "1", str(src) + "/", d.url("m", "dst"))
        assert wait_for(lambda: bool(temps(module))), "transfer never started"
        os.kill(push.pid, signal.SIGSTOP)
        try:
            assert wait_for(lambda: not temps(module), 15), "daemon kept the stalled stream"
            assert "stalled" in d.log.read_text()
            # The stream's thread ended with it: no thread leak (idle worker threads of the
            # event loop's pool may stay, a few at most).
            assert wait_for(lambda: threads(d.proc.pid) <= baseline + 2, 10), \
                (baseline, threads(d.proc.pid))
        finally:
            push.kill()
            push.wait()
        assert httpx.get(f"http://{d.addr}/healthz").status_code == 200


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def open_push(d: Daemon, module: str, files: list[tuple[str, int]]) -> dict[str, object]:
    base = f"http://{d.addr}/v1/transfers"
    opened = httpx.post(base, json={"direction": "push", "module": module, "path": "up",
                                    "source": {"kind": "d", "name": "up", "contents": True}})
    sid = opened.json()["id"]
    entries = [["", "d", 0, 0, 0o755, None, None]]
    entries += [[name, "f", size, 0, 0o644, None, None] for name, size in files]
    httpx.post(f"{base}/{sid}/manifest", json={"entries": entries, "errors": []})
    grant = httpx.post(f"{base}/{sid}/negotiate", json={}).json()
    grant["id"] = sid
    return grant


def test_truncated_and_corrupt_streams_write_nothing(tmp_path: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        for garbage in (
            wire.PREAMBLE + wire.encode_header(wire.Record(wire.FILE, "a.bin", 100, 0, 100))
            + b"x" * 40,                                             # truncated body
            wire.PREAMBLE + b"\x09" + bytes(31),                     # unknown record type
            wire.PREAMBLE + wire.encode_header(wire.Record(wire.FILE, "b.bin", 100, 0, 100))
            + b"y" * 100 + wire.encode_end(7),                       # END count mismatch
            b"GET / HTTP/1.1\r\n\r\n",                               # not a record stream
        ):
            grant = open_push(d, "m", [("a.bin", 100), ("b.bin", 100)])
            with socket.create_connection(("127.0.0.1", grant["port"]), timeout=10) as s:
                s.sendall(HELLO + bytes.fromhex(grant["tokens"][0]))  # type: ignore[index]
                assert s.recv(1) == b"\x01"
                s.sendall(garbage)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)
            summary = httpx.post(f"http://{d.addr}/v1/transfers/{grant['id']}/finish",
                                 json={}).json()
            assert summary["files_transferred"] == 0 and summary["files_failed"] == 2
            assert not (module / "up" / "a.bin").exists()
            assert not (module / "up" / "b.bin").exists()
            assert not temps(module)


def refused(port: int, token: bytes) -> bool:
    """True when the data port closes on `token` without its one-byte ACK."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(HELLO + token)
            return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_bad_tokens_are_throttled_without_harming_transfers(tmp_path: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("data")
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        grant = open_push(d, "m", [("f", 4)])
        port = grant["port"]
        for _ in range(25):
            assert refused(port, os.urandom(32))  # type: ignore[arg-type]
        assert "throttled" in d.log.read_text()
        # A good token from that address is refused too while throttled: guessing stays slow.
        assert refused(port, bytes.fromhex(grant["tokens"][0]))  # type: ignore[arg-type,index]
        # The HTTP carrier is not throttled: real transfers still work.
        out = blit("copy", "--force-http", str(tmp_path / "src") + "/", d.url("m", "x"))
        assert out.returncode == 0, out.stderr


def test_source_changing_while_sent_is_reported_not_mixed(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    path = root / "f.bin"
    path.write_bytes(b"a" * MiB)
    manifest = scan(str(root))
    source = Source(str(root), manifest)
    entry = next(e for e in manifest.entries if e.path == "f.bin")
    dest = tmp_path / "dst"
    dest.mkdir()
    (dest / "f.bin").write_bytes(b"old")
    sink = Sink(str(dest), [entry], Progress())
    receiver = Receiver(sink)
    receiver.feed(wire.PREAMBLE)
    frames = source.frames(__import__("blit_shared.payload").payload.Span(entry, 0, entry.size))
    count = 0
    for frame in frames:
        if isinstance(frame, FileSpan):
            with open(path, "r+b") as f:  # the file changes mid-send
                f.write(b"b" * 10)
            os.utime(path, ns=(1, 1))
            receiver.feed(os.pread(frame.fd, frame.length, frame.offset))
        else:
            count += 1
            receiver.feed(frame)
    receiver.feed(wire.encode_end(count))
    receiver.close()
    sink.close()
    assert "f.bin" in sink.failed and "changed" in sink.failed["f.bin"]
    assert (dest / "f.bin").read_bytes() == b"old"
    assert not temps(dest)


def test_mirror_max_delete_caps_deletions(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "keep").write_text("k")
    dst.mkdir()
    for i in range(5):
        (dst / f"extra{i}").write_text("x")
    out = blit("mirror", "-y", "--max-delete", "3", str(src) + "/", str(dst))
    assert out.returncode == 2 and "max-delete" in out.stderr
    assert len(list(dst.glob("extra*"))) == 5 and (dst / "keep").exists()
    out = blit("mirror", "-y", "--max-delete", "5", str(src) + "/", str(dst))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in dst.iterdir()) == ["keep"]


@pytest.mark.parametrize("empty_ok", [False, True])
def test_mirror_of_empty_source_deletes_only_when_allowed(tmp_path: Path,
                                                          empty_ok: bool) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (dst / "precious").write_text("p")
    flags = ["--allow-empty-source"] if empty_ok else []
    out = blit("mirror", "-y", *flags, str(src) + "/", str(dst))
    assert (dst / "precious").exists() is (not empty_ok)
    assert out.returncode == (0 if empty_ok else 2), out.stderr
