"""The daemon's edges: read-only modules, unknown modules, ls, single files, curl on both HTTP
versions, bad input on the control plane and on the data port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, running_daemon
from tests.helpers import assert_same_tree, blit, snapshot

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def daemon(small_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("api")
    rw = tmp / "rw"
    rw.mkdir()
    config = (f'[[module]]\nname = "ro"\npath = "{small_tree}"\nread_only = true\n'
              f'comment = "the small tree"\n'
              f'[[module]]\nname = "rw"\npath = "{rw}"\n')
    with running_daemon(tmp, config=config) as d:
        d.rw = rw  # type: ignore[attr-defined]
        yield d


def test_read_only_module_refuses_push(daemon: Daemon, small_tree: Path) -> None:
    before = snapshot(small_tree)
    out = blit("copy", str(small_tree / "a") + "/", daemon.url("ro", "a"))
    assert out.returncode == 1
    assert "read-only" in out.stderr
    mirror = blit("mirror", "-y", str(small_tree / "a") + "/", daemon.url("ro"))
    assert mirror.returncode == 1 and "read-only" in mirror.stderr
    assert snapshot(small_tree) == before


def test_unknown_module_is_a_clear_error(daemon: Daemon, tmp_path: Path) -> None:
    out = blit("copy", daemon.url("nope", "x/"), str(tmp_path / "out"))
    assert out.returncode == 1
    assert "unknown module 'nope'" in out.stderr
    assert not (tmp_path / "out").exists()


def test_missing_remote_path(daemon: Daemon, tmp_path: Path) -> None:
    out = blit("copy", daemon.url("ro", "does/not/exist"), str(tmp_path / "out"))
    assert out.returncode == 1 and "no such file" in out.stderr


def test_unreachable_daemon(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = blit("copy", str(tmp_path) + "/", f"127.0.0.1:{port}:/m/x")
    assert out.returncode == 1 and "cannot reach daemon" in out.stderr


def test_ls_modules_and_dirs(daemon: Daemon) -> None:
    mods = blit("ls", daemon.addr)
    assert mods.returncode == 0, mods.stderr
    assert "ro\tro\tthe small tree" in mods.stdout and "rw\trw" in mods.stdout
    listing = blit("ls", daemon.url("ro", "a"))
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[-1] for line in listing.stdout.splitlines()]
    assert "top.txt" in names and "b/" in names
    as_json = json.loads(blit("ls", "--json", daemon.url("ro")).stdout)
    assert {e["name"] for e in as_json["entries"]} >= {"a", "empty", "small"}
    assert blit("ls", "/local/path").returncode == 3


def test_single_file_push_and_pull(daemon: Daemon, small_tree: Path, tmp_path: Path) -> None:
    big = small_tree / "big" / "big.bin"
    pushed = blit("copy", str(big), daemon.url("rw", "one.bin"))
    assert pushed.returncode == 0, pushed.stderr
    got = daemon.rw / "one.bin"  # type: ignore[attr-defined]
    assert got.read_bytes() == big.read_bytes()
    assert got.stat().st_mtime_ns == big.stat().st_mtime_ns
    (tmp_path / "into").mkdir()
    pulled = blit("copy", daemon.url("ro", "big/big.bin"), str(tmp_path / "into"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "into" / "big.bin").read_bytes() == big.read_bytes()


def test_nesting_rule_remote(daemon: Daemon, small_tree: Path, tmp_path: Path) -> None:
    """`SRC` without a slash nests under an existing DST on the daemon too."""
    rw: Path = daemon.rw  # type: ignore[attr-defined]
    (rw / "nest").mkdir()
    out = blit("copy", str(small_tree / "a"), daemon.url("rw", "nest"))
    assert out.returncode == 0, out.stderr
    assert_same_tree(small_tree / "a", rw / "nest" / "a")
    out = blit("copy", daemon.url("ro", "a"), str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert_same_tree(small_tree / "a", tmp_path / "a")


def test_push_cannot_escape_module(daemon: Daemon, small_tree: Path, tmp_path: Path) -> None:
    rw: Path = daemon.rw  # type: ignore[attr-defined]
    (rw / "escape").symlink_to(tmp_path)
    out = blit("copy", str(small_tree / "a") + "/", daemon.url("rw", "escape/x"))
    assert out.returncode == 1 and "leaves module" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(CURL is None, reason="curl not installed")
@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2c"])
def test_endpoints_answer_curl(daemon: Daemon, http2: bool) -> None:
    flags = ["--http2-prior-knowledge"] if http2 else ["--http1.1"]
    base = f"http://{daemon.addr}"

    def curl(*args: str) -> tuple[int, str, str]:
        cmd = [CURL, "-sS", *flags, "-w", "\n%{http_code} %{http_version}", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
        body, _, status = out.rpartition("\n")
        code, version = status.split()
        return int(code), version, body

    code, version, body = curl(f"{base}/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"
    assert version == ("2" if http2 else "1.1")
    code, _, body = curl(f"{base}/v1/modules")
    assert code == 200 and {m["name"] for m in json.loads(body)["modules"]} == {"ro", "rw"}
    code, _, body = curl("-X", "POST", "-H", "content-type: application/json",
                         "--data", "{not json", f"{base}/v1/transfers")
    assert code == 400 and json.loads(body)["error"]["code"] == "protocol"
    code, _, body = curl("-X", "POST", "--data",
                         '{"direction":"pull","module":"ro","path":"../../etc"}',
                         f"{base}/v1/transfers")
    assert code == 400 and json.loads(body)["error"]["code"] == "unsafe_path"
    code, _, body = curl(f"{base}/v1/transfers/nope")
    assert code == 404 and "error" in json.loads(body)


def test_garbage_on_data_port_harms_nothing(daemon: Daemon, small_tree: Path,
                                            tmp_path: Path) -> None:
    """A stray connection with a wrong token is dropped; transfers keep working."""
    import httpx

    opened = httpx.post(f"http://{daemon.addr}/v1/transfers", json={
        "direction": "pull", "module": "ro", "path": "a", "trailing_slash": True}).json()
    grant = httpx.post(f"http://{daemon.addr}/v1/transfers/{opened['id']}/negotiate",
                       json={"need": []}).json()
    assert grant["carrier"] == "tcp"
    with socket.create_connection(("127.0.0.1", grant["port"]), timeout=5) as s:
        s.sendall(b"BLTK" + b"\0" * 32)
        assert s.recv(1) == b""  # closed without an ACK
    out = blit("copy", daemon.url("ro", "a/"), str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    assert_same_tree(small_tree / "a", tmp_path / "a")


def test_sigterm_mid_push_leaves_no_partial_file(tmp_path: Path) -> None:
    """Stopping the daemon during a push: the file is either complete or absent, never half."""
    import os
    import sys
    import time

    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(1 << 20) * 300
    (src / "big.bin").write_bytes(data)
    module = tmp_path / "module"
    module.mkdir()
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        push = subprocess.Popen(
            [sys.executable, "-m", "blit_client.cli", "copy", "--streams", "1",
             str(src) + "/", d.url("m", "x")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not (module / "x").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        d.proc.terminate()
        assert d.proc.wait(timeout=20) == 0
        push.communicate(timeout=60)
    left = [p.name for p in module.rglob("*")]
    assert not [n for n in left if ".blit-tmp." in n], left
    final = module / "x" / "big.bin"
    assert not final.exists() or final.read_bytes() == data
