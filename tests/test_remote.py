"""Push and pull against a real blitd: every carrier × copy/mirror/dry-run, checked file by file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, running_daemon
from tests.helpers import assert_same_tree, blit, snapshot

# carrier id → (daemon flags, client flags, carrier the summary must name)
CARRIERS = {
    "tcp": ([], [], "tcp"),
    "client-http": ([], ["--force-http"], "http"),
    "client-h2c": ([], ["--force-http", "--http2"], "http"),
    "daemon-http": (["--force-http"], [], "http"),
}


@pytest.fixture(scope="module", params=list(CARRIERS))
def served(request: pytest.FixtureRequest, big_tree: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path, str]]:
    """A daemon exporting the big tree read-only as `src` and an empty `dst` module."""
    daemon_flags, client_flags, carrier = CARRIERS[request.param]
    tmp = tmp_path_factory.mktemp(f"daemon-{request.param}")
    dst = tmp / "dst"
    dst.mkdir()
    config = (f'[[module]]\nname = "src"\npath = "{big_tree.parent}"\nread_only = true\n'
              f'[[module]]\nname = "dst"\npath = "{dst}"\n')
    with running_daemon(tmp, *daemon_flags, config=config) as daemon:
        daemon.client_flags = client_flags  # type: ignore[attr-defined]
        daemon.carrier = carrier  # type: ignore[attr-defined]
        yield daemon, dst, carrier


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and lines[-1]["event"] == "summary", proc.stdout
    return lines[-1]


def transfer(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return blit(*args, *daemon.client_flags)  # type: ignore[attr-defined]


def messy(dst: Path, big_tree: Path) -> None:
    """A destination that mirror must fix: extra files/dirs/links, a changed file."""
    shutil.copytree(big_tree, dst, symlinks=True)
    (dst / "extra.txt").write_text("not in source")
    (dst / "extra_dir" / "sub").mkdir(parents=True)
    (dst / "extra_dir" / "sub" / "f").write_text("x")
    os.symlink("nowhere", dst / "extra_link")
    (dst / "a" / "top.txt").write_text("changed content, different size")


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_copy_then_nothing_to_do(served: tuple[Daemon, Path, str], big_tree: Path,
                                 tmp_path: Path, direction: str) -> None:
    daemon, dst_module, carrier = served
    if direction == "push":
        src, dst, landed = str(big_tree) + "/", daemon.url("dst", f"copy-{tmp_path.name}"), \
            dst_module / f"copy-{tmp_path.name}"
    else:
        src, dst, landed = daemon.url("src", "src/"), str(tmp_path / "out"), tmp_path / "out"
    first = summary_of(transfer(daemon, "copy", "--json", src, dst))
    assert_same_tree(big_tree, landed)
    assert first["carrier"] == carrier
    assert first["files_transferred"] == sum(1 for p in big_tree.rglob("*")
                                             if p.is_file() and not p.is_symlink())
    assert first["zero_copy"] is (carrier == "tcp")
    again = summary_of(transfer(daemon, "copy", "--json", src, dst))
    assert again["files_transferred"] == 0
    assert again["bytes"] == 0
    assert_same_tree(big_tree, landed)


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_mirror_fixes_and_deletes(served: tuple[Daemon, Path, str], big_tree: Path,
                                  tmp_path: Path, direction: str) -> None:
    daemon, dst_module, carrier = served
    if direction == "push":
        landed = dst_module / f"mirror-{tmp_path.name}"
        src, dst = str(big_tree) + "/", daemon.url("dst", f"mirror-{tmp_path.name}")
    else:
        landed = tmp_path / "out"
        src, dst = daemon.url("src", "src/"), str(landed)
    messy(landed, big_tree)
    refused = transfer(daemon, "mirror", src, dst)
    assert refused.returncode == 3, refused.stderr
    assert (landed / "extra.txt").exists()
    done = summary_of(transfer(daemon, "mirror", "-y", "--json", src, dst))
    assert done["files_deleted"] == 5  # extra.txt, extra_dir, extra_dir/sub, .../f, extra_link
    assert done["files_transferred"] == 1
    assert done["carrier"] == carrier
    assert_same_tree(big_tree, landed)


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_dry_run_touches_nothing(served: tuple[Daemon, Path, str], big_tree: Path,
                                 tmp_path: Path, direction: str) -> None:
    daemon, dst_module, _ = served
    if direction == "push":
        landed = dst_module / f"dry-{tmp_path.name}"
        src, dst = str(big_tree) + "/", daemon.url("dst", f"dry-{tmp_path.name}")
    else:
        landed = tmp_path / "out"
        src, dst = daemon.url("src", "src/"), str(landed)
    messy(landed, big_tree)
    before = snapshot(landed)
    out = transfer(daemon, "mirror", "--dry-run", "-v", src, dst)
    assert out.returncode == 0, out.stderr
    assert "would copy a/top.txt" in out.stdout
    assert "would delete extra.txt" in out.stdout
    assert "would delete extra_dir/sub/f" in out.stdout
    summary = summary_of(transfer(daemon, "mirror", "--dry-run", "--json", src, dst))
    assert summary["dry_run"] is True and summary["files_transferred"] == 1
    assert summary["files_deleted"] == 5
    assert snapshot(landed) == before


def test_push_and_pull_report_the_same(served: tuple[Daemon, Path, str], big_tree: Path,
                                       tmp_path: Path) -> None:
    """Parity: the same summary fields and the same -v lines for either direction."""
    daemon, dst_module, _ = served
    name = f"parity-{tmp_path.name}"
    push = transfer(daemon, "copy", "-v", str(big_tree / "a") + "/", daemon.url("dst", name))
    pull = transfer(daemon, "copy", "-v", daemon.url("src", "src/a/"), str(tmp_path / "a"))
    assert push.returncode == pull.returncode == 0, push.stderr + pull.stderr
    def acted(proc: subprocess.CompletedProcess[str]) -> list[str]:
        return sorted(x for x in proc.stdout.splitlines() if x.startswith(("copied", "linked")))

    assert acted(push) == acted(pull) and acted(push)
    pj = summary_of(transfer(daemon, "copy", "--json", str(big_tree / "a") + "/",
                             daemon.url("dst", name + "-j")))
    lj = summary_of(transfer(daemon, "copy", "--json", daemon.url("src", "src/a/"),
                             str(tmp_path / "a-j")))
    assert set(pj) == set(lj)
    for key in ("files_examined", "files_transferred", "files_skipped", "bytes", "carrier"):
        assert pj[key] == lj[key], key
