"""blitd behind a real nginx (docs/deploy/nginx.conf): push and pull on both carriers, no
spooling, forwarded headers, and the client's fallback when the data port is unreachable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from blit_shared.transport import dial
from tests.daemon import Daemon, free_port, running_daemon
from tests.helpers import assert_same_tree, blit
from tests.nginx import Proxy, running_nginx

BIG = 48 << 20  # big enough that a spooling proxy would write a temp file


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(200):
        (src / "sub" / f"f{i:03d}.txt").write_bytes(f"file {i}\n".encode() * (i + 1))
    (src / "big.bin").write_bytes(bytes(range(256)) * (BIG // 256))
    return src


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Daemon, Proxy, Path]]:
    mod = tmp_path / "mod"
    mod.mkdir()
    with running_daemon(tmp_path, "--module", f"m={mod}", "--proxy-hops", "1") as d, \
            running_nginx(tmp_path, d.port) as proxy:
        yield d, proxy, mod


def summary_of(out: str) -> dict[str, object]:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("carrier", ["tcp", "http"])
def test_push_and_pull_through_nginx(proxied: tuple[Daemon, Proxy, Path], tree: Path,
                                     tmp_path: Path, carrier: str) -> None:
    _daemon, proxy, mod = proxied
    flags = ["--force-http"] if carrier == "http" else []
    push = blit("copy", "--json", *flags, f"{tree}/", proxy.url("m", "in") + "/")
    assert push.returncode == 0, push.stderr
    assert summary_of(push.stdout)["carrier"] == carrier
    assert_same_tree(tree, mod / "in")

    pulled = tmp_path / "pulled"
    pull = blit("copy", "--json", *flags, proxy.url("m", "in") + "/", f"{pulled}/")
    assert pull.returncode == 0, pull.stderr
    assert summary_of(pull.stdout)["carrier"] == carrier
    assert_same_tree(tree, pulled)

    # Mirror through the proxy as well: nothing to send, one deletion.
    (pulled / "extra.txt").write_text("not in the source")
    again = blit("mirror", "-y", "--json", *flags, proxy.url("m", "in") + "/", f"{pulled}/")
    assert again.returncode == 0, again.stderr
    assert summary_of(again.stdout)["files_deleted"] == 1
    assert_same_tree(tree, pulled)

    assert proxy.spooled() == [], "nginx buffered a request body to disk"
    assert "buffered to a temporary file" not in proxy.error_log()


def test_forwarded_host_and_proto_shape_the_urls(proxied: tuple[Daemon, Proxy, Path]) -> None:
    daemon, proxy, _mod = proxied
    body = {"direction": "pull", "module": "m", "path": "", "trailing_slash": True,
            "options": {}}
    via_proxy = httpx.post(f"http://{proxy.addr}/v1/transfers", json=body).json()
    assert via_proxy["url"] == f"http://{proxy.addr}/v1/transfers/{via_proxy['id']}"
    direct = httpx.post(f"http://{daemon.addr}/v1/transfers", json=body).json()
    assert direct["url"] == f"http://{daemon.addr}/v1/transfers/{direct['id']}"
    for opened in (via_proxy, direct):
        httpx.delete(opened["url"].replace(proxy.addr, daemon.addr))


def test_untrusted_forwarded_headers_are_ignored(tmp_path: Path) -> None:
    mod = tmp_path / "mod"
    mod.mkdir()
    with running_daemon(tmp_path, "--module", f"m={mod}") as d:  # proxy_hops = 0
        opened = httpx.post(f"http://{d.addr}/v1/transfers", headers={
            "x-forwarded-host": "evil.example:1", "x-forwarded-proto": "https"},
            json={"direction": "pull", "module": "m", "path": "", "options": {}}).json()
        assert opened["url"].startswith(f"http://{d.addr}/")
        httpx.delete(opened["url"])


@pytest.fixture
def unreachable_data_port(tmp_path: Path) -> Iterator[tuple[Daemon, Proxy, Path]]:
    """Grants point at a port nobody listens on, as when a firewall or proxy is in between."""
    mod = tmp_path / "mod"
    mod.mkdir()
    closed = free_port()
    with running_daemon(tmp_path, "--module", f"m={mod}", "--proxy-hops", "1",
                        "--advertise-port", str(closed)) as d, \
            running_nginx(tmp_path, d.port) as proxy:
        yield d, proxy, mod


def test_falls_back_to_http_and_says_so_once(unreachable_data_port: tuple[Daemon, Proxy, Path],
                                            tree: Path, tmp_path: Path) -> None:
    _daemon, proxy, mod = unreachable_data_port
    push = blit("copy", f"{tree}/", proxy.url("m", "in") + "/")
    assert push.returncode == 0, push.stderr
    assert push.stderr.count("falling back to the HTTP carrier") == 1, push.stderr
    assert "fell back to http" in push.stdout
    assert_same_tree(tree, mod / "in")

    pulled = tmp_path / "pulled"
    pull = blit("copy", "--json", proxy.url("m", "in") + "/", f"{pulled}/")
    assert pull.returncode == 0, pull.stderr
    events = [json.loads(line) for line in pull.stdout.splitlines()]
    notices = [e for e in events if e.get("event") == "notice"]
    assert len(notices) == 1 and "unreachable" in notices[0]["message"]
    summary = events[-1]
    assert summary["fallback"] is True and summary["carrier"] == "http"
    assert_same_tree(tree, pulled)


def test_no_fallback_is_an_error(unreachable_data_port: tuple[Daemon, Proxy, Path],
                                 tree: Path, tmp_path: Path) -> None:
    _daemon, proxy, mod = unreachable_data_port
    push = blit("copy", "--no-fallback", f"{tree}/", proxy.url("m", "in") + "/")
    assert push.returncode == 1
    assert "--no-fallback" in push.stderr and "unreachable" in push.stderr
    assert not any(p.is_file() for p in mod.rglob("*")), "no file may be written"

    pulled = tmp_path / "pulled"
    pull = blit("copy", "--no-fallback", proxy.url("m", "in") + "/", f"{pulled}/")
    assert pull.returncode == 1
    assert "--no-fallback" in pull.stderr
    assert not pulled.exists() or not any(p.is_file() for p in pulled.rglob("*"))


def test_fallback_only_before_any_stream_started(tmp_path: Path) -> None:
    """The daemon re-grants over HTTP only while every TCP token is unclaimed, so no byte can
    travel over both carriers."""
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "a.txt").write_text("a")
    with running_daemon(tmp_path, "--module", f"m={mod}") as d:
        base = f"http://{d.addr}/v1/transfers"

        def granted() -> tuple[str, dict[str, object]]:
            sid = httpx.post(base, json={"direction": "pull", "module": "m", "path": "",
                                         "trailing_slash": True, "options": {}}).json()["id"]
            r = httpx.post(f"{base}/{sid}/negotiate", json={"fallback": True})
            assert r.status_code == 409  # nothing granted yet: nothing to fall back from
            grant = httpx.post(f"{base}/{sid}/negotiate", json={"need": [1]}).json()
            assert grant["carrier"] == "tcp"
            return sid, grant

        sid, grant = granted()
        again = httpx.post(f"{base}/{sid}/negotiate", json={"fallback": True}).json()
        assert again["carrier"] == "http" and again["fallback"] is True
        body = httpx.get(f"{base}/{sid}/stream").content
        assert b"a" in body
        httpx.delete(f"{base}/{sid}")

        sid, grant = granted()
        tokens = grant["tokens"]
        assert isinstance(tokens, list)
        with dial("127.0.0.1", int(str(grant["port"])), bytes.fromhex(tokens[0])):
            r = httpx.post(f"{base}/{sid}/negotiate", json={"fallback": True})
            assert r.status_code == 409 and "already started" in r.text
        httpx.delete(f"{base}/{sid}")


def test_logs_name_the_client_behind_the_proxy(tmp_path: Path) -> None:
    """With proxy_hops = 2 (a client-side proxy, then nginx), the transfer line names the
    address the first proxy reported; without trust it would say 127.0.0.1 (nginx)."""
    mod = tmp_path / "mod"
    mod.mkdir()
    with running_daemon(tmp_path, "--module", f"m={mod}", "--proxy-hops", "2",
                        "--log-format", "json") as d, running_nginx(tmp_path, d.port) as proxy:
        opened = httpx.post(f"http://{proxy.addr}/v1/transfers",
                            headers={"x-forwarded-for": "203.0.113.7"},
                            json={"direction": "pull", "module": "m", "path": "",
                                  "options": {}}).json()
        httpx.delete(f"http://{proxy.addr}/v1/transfers/{opened['id']}",
                     headers={"x-forwarded-for": "203.0.113.7"})
    lines = [json.loads(line) for line in d.log.read_text().splitlines() if line.strip()]
    transfers = [e for e in lines if e.get("event") == "transfer"]
    assert [(e["id"], e["client"], e["outcome"]) for e in transfers] == [
        (opened["id"], "203.0.113.7", "aborted")]
