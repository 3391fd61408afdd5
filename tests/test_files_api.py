"""`blit du` / `blit rm` and their endpoints, against a real daemon with the real CLI and curl."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from blit_client.render import human_bytes
from tests.daemon import Daemon, running_daemon
from tests.helpers import blit, blit_on_tty, snapshot, walk

TOKEN = "locked-module-token"


@dataclass
class Setup:
    daemon: Daemon
    rw: Path        # module "m"
    ro: Path        # module "ro", read-only
    locked: Path    # module "locked", needs TOKEN
    outside: Path   # not exported: must survive everything

    @property
    def base(self) -> str:
        return f"http://{self.daemon.addr}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    top = tmp_path_factory.mktemp("files_api")
    dirs = {name: top / name for name in ("rw", "ro", "locked", "outside")}
    for d in dirs.values():
        d.mkdir()
    (dirs["outside"] / "precious.txt").write_text("precious")
    (dirs["outside"] / "sub").mkdir()
    (dirs["outside"] / "sub" / "deep.txt").write_text("deep")
    (dirs["ro"] / "keep.txt").write_text("keep")
    (dirs["locked"] / "keep.txt").write_text("keep")
    config = (f'[[module]]\nname = "m"\npath = "{dirs["rw"]}"\n'
              f'[[module]]\nname = "ro"\npath = "{dirs["ro"]}"\nread_only = true\n'
              f'[[module]]\nname = "locked"\npath = "{dirs["locked"]}"\ntoken = "{TOKEN}"\n')
    with running_daemon(top, config=config) as d:
        yield Setup(d, dirs["rw"], dirs["ro"], dirs["locked"], dirs["outside"])


@pytest.fixture
def area(setup: Setup, request: pytest.FixtureRequest) -> Path:
    """A fresh directory of module "m" for one test (the daemon is shared)."""
    d = setup.rw / re.sub(r"\W", "_", request.node.name)
    d.mkdir()
    return d


def url(setup: Setup, path: str, module: str = "m") -> str:
    return setup.daemon.url(module, path)


def rel(setup: Setup, path: Path) -> str:
    return path.relative_to(setup.rw).as_posix()


def out_json(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def tree_counts(root: Path) -> dict[str, int]:
    """What `du` must report for directory `root`: a walk of it (without root itself)."""
    nodes = {p: n for p, n in walk(root).items() if p}
    return {"files": sum(n.kind in ("f", "other") for n in nodes.values()),
            "dirs": sum(n.kind == "d" for n in nodes.values()),
            "links": sum(n.kind == "l" for n in nodes.values()),
            "bytes": sum(n.size for n in nodes.values())}


# -- du -----------------------------------------------------------------------------------------

def test_du_equals_a_walk_of_the_tree(setup: Setup, area: Path, small_tree: Path) -> None:
    shutil.copytree(small_tree, area / "tree", symlinks=True)
    tree = area / "tree"
    got = out_json(blit("du", "--json", url(setup, rel(setup, tree))))
    assert got["kind"] == "d" and got["errors"] == 0 and got["module"] == "m"
    assert {k: got[k] for k in ("files", "dirs", "links", "bytes")} == tree_counts(tree)
    sub = out_json(blit("du", "--json", url(setup, rel(setup, tree / "a"))))
    assert {k: sub[k] for k in ("files", "dirs", "links", "bytes")} == tree_counts(tree / "a")

    big = out_json(blit("du", "--json", url(setup, rel(setup, tree / "big" / "big.bin"))))
    assert (big["kind"], big["files"], big["bytes"]) == ("f", 1, 20 << 20)
    # A link is counted as a link, never followed (abs_link points at /etc/hostname).
    link = out_json(blit("du", "--json", url(setup, rel(setup, tree / "abs_link"))))
    assert (link["kind"], link["links"], link["files"], link["bytes"]) == ("l", 1, 0, 0)

    r = blit("du", url(setup, rel(setup, tree)))
    want = tree_counts(tree)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{want['files']:,} files, {want['dirs']:,} dirs, "
                               f"{want['links']:,} links, {human_bytes(want['bytes'])}  ")
    assert r.stdout.rstrip().endswith(f":/m/{rel(setup, tree)}")


def test_du_of_a_read_only_module_works(setup: Setup) -> None:
    got = out_json(blit("du", "--json", url(setup, "", "ro")))
    assert (got["files"], got["bytes"], got["path"]) == (1, 4, "")


def test_du_of_a_missing_path_exits_1(setup: Setup) -> None:
    r = blit("du", url(setup, "no/such/thing"))
    assert r.returncode == 1 and "no such file or directory" in r.stderr


# -- rm -----------------------------------------------------------------------------------------

def test_rm_a_file(setup: Setup, area: Path) -> None:
    (area / "f.txt").write_text("f")
    (area / "g.txt").write_text("g")
    r = blit("rm", "-y", url(setup, rel(setup, area / "f.txt")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("removed 1 file, 0 dirs  ")
    assert not (area / "f.txt").exists() and (area / "g.txt").read_text() == "g"
    got = out_json(blit("rm", "-y", "--json", url(setup, rel(setup, area / "g.txt"))))
    assert got["removed"] == {"files": 1, "dirs": 0, "links": 0} and got["failures"] == []
    assert list(area.iterdir()) == []


def test_rm_a_directory_needs_recursive(setup: Setup, area: Path, small_tree: Path) -> None:
    shutil.copytree(small_tree, area / "tree", symlinks=True)
    (area / "sibling.txt").write_text("s")
    before = snapshot(area)
    r = blit("rm", "-y", url(setup, rel(setup, area / "tree")))
    assert r.returncode == 1 and "is a directory" in r.stderr and "-r" in r.stderr
    assert snapshot(area) == before
    want = tree_counts(area / "tree")
    got = out_json(blit("rm", "-r", "-y", "--json", url(setup, rel(setup, area / "tree"))))
    assert got["removed"] == {"files": want["files"], "dirs": want["dirs"] + 1,
                              "links": want["links"]}
    assert not os.path.lexists(area / "tree") and (area / "sibling.txt").read_text() == "s"


@pytest.mark.parametrize("flags", [[], ["-r"], ["--json"], ["-r", "--json"]])
def test_rm_off_a_terminal_without_yes_exits_3(setup: Setup, area: Path,
                                               flags: list[str]) -> None:
    (area / "d").mkdir()
    (area / "d" / "f").write_text("f")
    before = snapshot(area)
    for target in ("d", "d/f"):
        r = blit("rm", *flags, url(setup, rel(setup, area / target)))
        assert r.returncode == 3 and "-y" in r.stderr and r.stdout == ""
    assert snapshot(area) == before


@pytest.mark.parametrize(("answer", "code"), [("n\n", 3), ("y\n", 0)])
def test_rm_asks_on_a_terminal(setup: Setup, area: Path, answer: str, code: int) -> None:
    (area / "d" / "e").mkdir(parents=True)
    (area / "d" / "e" / "f").write_text("12345")
    before = snapshot(area)
    r = blit_on_tty(["rm", "-r", url(setup, rel(setup, area / "d"))], answer)
    assert r.returncode == code, r.stderr
    assert "and everything in it (1 file, 1 dir, 5 B)?" in r.stderr
    assert (snapshot(area) == before) == (code == 3)
    assert os.path.exists(area / "d") == (code == 3)


def test_rm_on_a_terminal_refuses_a_directory_without_r_before_asking(setup: Setup,
                                                                      area: Path) -> None:
    (area / "d").mkdir()
    r = blit_on_tty(["rm", url(setup, rel(setup, area / "d"))], "y\n")
    assert r.returncode == 1 and "-r/--recursive" in r.stderr and "?" not in r.stderr
    assert (area / "d").is_dir()


def test_rm_in_a_read_only_module_is_refused(setup: Setup) -> None:
    before = snapshot(setup.ro)
    for args in (["rm", "-y", url(setup, "keep.txt", "ro")],
                 ["rm", "-y", "-r", url(setup, "keep.txt", "ro")]):
        r = blit(*args)
        assert r.returncode == 1 and "read-only" in r.stderr
    assert snapshot(setup.ro) == before


def test_rm_refuses_paths_that_leave_the_module(setup: Setup, area: Path) -> None:
    before = snapshot(setup.outside)
    os.symlink(setup.outside, area / "out_dir")
    for path in (f"{rel(setup, area)}/../../outside/precious.txt", "../outside",
                 f"{rel(setup, area)}/out_dir/precious.txt",
                 f"{rel(setup, area)}/out_dir/sub"):
        r = blit("rm", "-r", "-y", url(setup, path))
        assert r.returncode in (1, 3), (path, r.returncode, r.stderr)
        assert "removed" not in r.stdout
    assert snapshot(setup.outside) == before and os.path.islink(area / "out_dir")


def test_rm_of_a_link_removes_the_link_never_its_target(setup: Setup, area: Path) -> None:
    before = snapshot(setup.outside)
    os.symlink(setup.outside, area / "to_dir")
    os.symlink(setup.outside / "precious.txt", area / "to_file")
    (area / "holder").mkdir()
    os.symlink(setup.outside, area / "holder" / "inner")
    for name in ("to_dir", "to_file"):
        got = out_json(blit("rm", "-y", "--json", url(setup, rel(setup, area / name))))
        assert got["removed"] == {"files": 0, "dirs": 0, "links": 1}
        assert not os.path.lexists(area / name)
    # Even with -r and a trailing slash: the link goes, the directory it names stays.
    got = out_json(blit("rm", "-r", "-y", "--json", url(setup, rel(setup, area / "holder"))))
    assert got["removed"] == {"files": 0, "dirs": 1, "links": 1}
    os.symlink(setup.outside, area / "again")
    out_json(blit("rm", "-r", "-y", "--json", url(setup, rel(setup, area / "again")) + "/"))
    assert not os.path.lexists(area / "again")
    assert snapshot(setup.outside) == before


def test_rm_of_the_module_root_is_refused(setup: Setup) -> None:
    (setup.rw / "stays.txt").write_text("stays")
    for target in (url(setup, ""), url(setup, "") + "/", f"127.0.0.1:{setup.daemon.port}:/m"):
        r = blit("rm", "-r", "-y", target)
        assert r.returncode == 3 and "root of module" in r.stderr
    assert (setup.rw / "stays.txt").read_text() == "stays"


def test_local_targets_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "local.txt").write_text("local")
    for args in (["rm", "-y", "local.txt"], ["rm", "-y", "-r", "."], ["du", "local.txt"]):
        r = blit(*args, cwd=tmp_path)
        assert r.returncode == 3 and "for local paths" in r.stderr
    assert (tmp_path / "local.txt").read_text() == "local"


def test_rm_that_cannot_remove_everything_exits_2(setup: Setup, area: Path) -> None:
    (area / "d" / "locked").mkdir(parents=True)
    (area / "d" / "locked" / "stuck.txt").write_text("stuck")
    (area / "d" / "free.txt").write_text("free")
    if os.geteuid() != 0 or shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(area / "d" / "locked")], capture_output=True).returncode:
        pytest.skip("chattr +i not available here (needs root and ext4/xfs)")
    try:
        r = blit("rm", "-r", "-y", "--json", url(setup, rel(setup, area / "d")))
    finally:
        subprocess.run(["chattr", "-i", str(area / "d" / "locked")], check=False)
    assert r.returncode == 2, r.stderr
    got = json.loads(r.stdout)
    assert got["removed"] == {"files": 1, "dirs": 0, "links": 0}
    assert f"{rel(setup, area)}/d/locked/stuck.txt" in {f["path"] for f in got["failures"]}
    assert "failed " in r.stderr
    assert (area / "d" / "locked" / "stuck.txt").exists() and not (area / "d" / "free.txt").exists()


# -- the endpoints, raw -------------------------------------------------------------------------

def test_endpoint_error_codes(setup: Setup, area: Path) -> None:
    (area / "d").mkdir()
    (area / "d" / "f").write_text("f")
    os.symlink(setup.outside, area / "out")
    d = rel(setup, area / "d")
    cases: list[tuple[str, str, dict[str, str], int, str]] = [
        ("GET", "/v1/modules/m/du", {"path": "no/such"}, 404, "not_found"),
        ("GET", "/v1/modules/nope/du", {"path": ""}, 404, "not_found"),
        ("GET", "/v1/modules/m/du", {"path": "../rw"}, 400, "unsafe_path"),
        ("GET", "/v1/modules/m/du", {"path": f"{rel(setup, area)}/out/sub"}, 403, "forbidden"),
        ("GET", "/v1/modules/locked/du", {"path": ""}, 401, "unauthorized"),
        ("DELETE", "/v1/modules/m/entries", {"path": d}, 409, "conflict"),
        ("DELETE", "/v1/modules/m/entries", {"path": ""}, 409, "conflict"),
        ("DELETE", "/v1/modules/m/entries", {"path": "/"}, 409, "conflict"),
        ("DELETE", "/v1/modules/m/entries", {"path": "no/such"}, 404, "not_found"),
        ("DELETE", "/v1/modules/m/entries", {"path": f"{d}/../../x"}, 400, "unsafe_path"),
        ("DELETE", "/v1/modules/m/entries", {"path": f"{rel(setup, area)}/out/precious.txt"},
         403, "forbidden"),
        ("DELETE", "/v1/modules/m/entries", {"path": d, "recursive": "yes"}, 400, "protocol"),
        ("DELETE", "/v1/modules/ro/entries", {"path": "keep.txt"}, 403, "forbidden"),
        ("DELETE", "/v1/modules/locked/entries", {"path": "keep.txt"}, 401, "unauthorized"),
        ("POST", "/v1/modules/m/entries", {"path": d}, 405, "method_not_allowed"),
    ]
    with httpx.Client(base_url=setup.base, timeout=10) as c:
        for method, path, params, status, code in cases:
            resp = c.request(method, path, params=params)
            assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), \
                (method, path, params, resp.text)
        # With the module's token the locked module answers.
        ok = c.get("/v1/modules/locked/du", params={"path": ""},
                   headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["files"] == 1
    assert (area / "d" / "f").exists() and (setup.outside / "precious.txt").exists()
    assert (setup.ro / "keep.txt").exists() and (setup.locked / "keep.txt").exists()
    r = blit("rm", "-y", url(setup, "keep.txt", "locked"))
    assert r.returncode == 1 and (setup.locked / "keep.txt").exists()
    r = blit("du", "--token", TOKEN, url(setup, "", "locked"))
    assert r.returncode == 0 and r.stdout.startswith("1 file, 0 dirs, 4 B")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_endpoints_with_curl(setup: Setup, area: Path) -> None:
    (area / "d").mkdir()
    (area / "d" / "f").write_text("hello")
    d = rel(setup, area / "d")

    def curl(*args: str) -> tuple[int, Any]:
        r = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True,
                           text=True, timeout=30, check=True)
        body, _, status = r.stdout.rpartition("\n")
        return int(status), json.loads(body)

    status, body = curl(f"{setup.base}/v1/modules/m/du?path={d}")
    assert status == 200 and (body["files"], body["bytes"]) == (1, 5)
    status, body = curl("-X", "DELETE", f"{setup.base}/v1/modules/m/entries?path={d}")
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body = curl("-X", "DELETE",
                        f"{setup.base}/v1/modules/m/entries?path={d}&recursive=true")
    assert status == 200 and body["removed"] == {"files": 1, "dirs": 1, "links": 0}
    assert not (area / "d").exists()
