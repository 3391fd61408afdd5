"""Authentication (bearer tokens per daemon and per module) and TLS on both planes."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from blit_shared.transport import HELLO
from tests.daemon import running_daemon
from tests.helpers import assert_same_tree, blit

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is its own CA)."""
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt, key


def tree(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("secret data\n")
    (root / "big.bin").write_bytes(bytes(range(256)) * 40_000)
    return root


def test_bearer_tokens_per_daemon_and_module(tmp_path: Path) -> None:
    src = tree(tmp_path / "src")
    (tmp_path / "daemon.tok").write_text("daemon-secret\n")
    (tmp_path / "a.tok").write_text("module-a-secret\n")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    config = (f'[daemon]\ntoken_file = "{tmp_path / "daemon.tok"}"\n'
              f'[[module]]\nname = "a"\npath = "{a}"\ntoken_file = "{tmp_path / "a.tok"}"\n'
              f'[[module]]\nname = "b"\npath = "{b}"\n')
    with running_daemon(tmp_path, config=config) as d:
        base = f"http://{d.addr}"
        assert httpx.get(f"{base}/healthz").status_code == 200  # health stays open
        r = httpx.get(f"{base}/v1/modules")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = httpx.post(f"{base}/v1/transfers", json={"direction": "pull", "module": "nope"})
        assert r.status_code == 401  # unknown names are not revealed either

        no_token = blit("copy", str(src) + "/", d.url("a", "x"))
        assert no_token.returncode == 1 and "bearer token" in no_token.stderr
        wrong = blit("copy", "--token", "guess", str(src) + "/", d.url("a", "x"))
        assert wrong.returncode == 1 and "wrong bearer token" in wrong.stderr
        assert not (a / "x").exists()

        ok = blit("copy", "--token", "module-a-secret", str(src) + "/", d.url("a", "x"))
        assert ok.returncode == 0, ok.stderr
        assert_same_tree(src, a / "x")
        other = blit("copy", "--token", "module-a-secret", str(src) + "/", d.url("b", "x"))
        assert other.returncode == 1 and not (b / "x").exists()

        env = {"BLIT_TOKEN": "daemon-secret"}
        ok = blit("copy", str(src) + "/", d.url("b", "x"), env=env)
        assert ok.returncode == 0, ok.stderr
        pulled = blit("copy", "--force-http", d.url("a", "x/"), str(tmp_path / "back"), env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert_same_tree(src, tmp_path / "back")
        listing = blit("ls", d.addr, env=env)
        assert listing.returncode == 0 and "a\trw" in listing.stdout


@pytest.mark.parametrize("carrier", [[], ["--force-http"]], ids=["tcp", "http"])
def test_tls_on_control_and_data_planes(tmp_path: Path, cert: tuple[Path, Path],
                                        carrier: list[str]) -> None:
    crt, key = cert
    src = tree(tmp_path / "src")
    module = tmp_path / "m"
    module.mkdir()
    with running_daemon(tmp_path, "--certfile", str(crt), "--keyfile", str(key),
                        "--module", f"m={module}", ca=crt) as d:
        untrusted = blit("copy", "--tls", *carrier, str(src) + "/", d.url("m", "x"))
        assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        plain = blit("copy", *carrier, str(src) + "/", d.url("m", "x"))
        assert plain.returncode == 1
        assert not (module / "x").exists()

        push = blit("copy", "--json", "--ca", str(crt), *carrier, str(src) + "/",
                    d.url("m", "x"))
        assert push.returncode == 0, push.stderr
        assert '"zero_copy":false' in push.stdout  # sendfile would bypass the encryption
        assert_same_tree(src, module / "x")
        pull = blit("copy", "--ca", str(crt), *carrier, d.url("m", "x/"), str(tmp_path / "b"))
        assert pull.returncode == 0, pull.stderr
        assert_same_tree(src, tmp_path / "b")

        if not carrier:  # the TCP data port itself refuses plaintext
            grant_port = None
            for line in d.log.read_text().splitlines():
                if "data port" in line and "modules" in line:
                    grant_port = int(line.split("data port ")[1].split(",")[0])
            assert grant_port is not None
            with socket.create_connection(("127.0.0.1", grant_port), timeout=5) as s:
                s.sendall(HELLO + bytes(32))
                with contextlib.suppress(ConnectionResetError):
                    assert s.recv(1) in (b"", b"\x15")  # closed or a TLS alert, never an ACK
