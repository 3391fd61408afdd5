"""`GET /metrics` of a real blitd, scraped with the real curl and parsed by prometheus-client's
own parser after real pushes and pulls by the CLI: counters move by exactly what moved."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon, running_daemon
from tests.helpers import assert_same_tree, blit

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl not installed")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", *args], capture_output=True, text=True, timeout=30,
                          check=False)


def scrape(d: Daemon, *headers: str) -> Samples:
    out = curl("-f", *[a for h in headers for a in ("-H", h)], f"http://{d.addr}/metrics")
    assert out.returncode == 0, out.stderr
    samples: Samples = {}
    for family in text_string_to_metric_families(out.stdout):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    assert last["event"] == "summary"
    return last


def tree(root: Path) -> tuple[int, int]:
    """A few files of known sizes (one big enough for whole-file records); (files, bytes)."""
    sizes = {"a.txt": 10, "sub/b.bin": 70_000, "sub/deep/c.bin": 3 << 20, "empty": 0}
    for rel, size in sizes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes(i % 251 for i in range(size)))
    return len(sizes), sum(sizes.values())


@pytest.mark.parametrize("carrier", ["tcp", "http"])
def test_transfers_move_the_counters_by_what_moved(tmp_path: Path, carrier: str) -> None:
    src, dst, out = tmp_path / "src", tmp_path / "dst", tmp_path / "out"
    for p in (src, dst):
        p.mkdir()
    files, size = tree(src)
    flags = ["--force-http"] if carrier == "http" else []
    config = f'[[module]]\nname = "dst"\npath = "{dst}"\n'
    with running_daemon(tmp_path, config=config) as d:
        zero = scrape(d)
        assert value(zero, "blit_active_sessions") == 0
        # Every label set exists from the start, at 0, so rate() has a first sample.
        assert ("blit_transfers_total", frozenset({"direction": "pull", "carrier": carrier,
                                                   "outcome": "failed"}.items())) in zero

        push = summary(blit("copy", "--json", *flags, str(src) + "/", d.url("dst", "x")))
        after_push = scrape(d)
        pull = summary(blit("copy", "--json", *flags, d.url("dst", "x/"), str(out)))
        after_pull = scrape(d)
        again = summary(blit("copy", "--json", *flags, str(src) + "/", d.url("dst", "x")))
        after_again = scrape(d)
    assert_same_tree(src, dst / "x")
    assert_same_tree(src, out)
    assert push["files_transferred"] == pull["files_transferred"] == files
    assert push["bytes"] == pull["bytes"] == size
    assert again["files_transferred"] == 0

    for direction, before, after in (("push", zero, after_push), ("pull", after_push, after_pull)):
        labels = {"direction": direction, "carrier": carrier}
        assert moved(before, after, "blit_transfers_total", **labels, outcome="ok") == 1
        for outcome in ("partial", "failed", "aborted"):
            assert moved(before, after, "blit_transfers_total", **labels, outcome=outcome) == 0
        assert moved(before, after, "blit_transfer_bytes_total", **labels) == size
        assert moved(before, after, "blit_transfer_files_total", **labels) == files
        assert moved(before, after, "blit_transfer_duration_seconds_count",
                     direction=direction) == 1
        assert moved(before, after, "blit_transfer_duration_seconds_sum",
                     direction=direction) > 0
        other = {"direction": "pull" if direction == "push" else "push", "carrier": carrier}
        assert moved(before, after, "blit_transfers_total", **other, outcome="ok") == 0
    # A re-run with nothing to send is an ok transfer of 0 files and 0 bytes.
    labels = {"direction": "push", "carrier": carrier}
    assert moved(after_pull, after_again, "blit_transfers_total", **labels, outcome="ok") == 1
    assert moved(after_pull, after_again, "blit_transfer_bytes_total", **labels) == 0
    assert moved(after_pull, after_again, "blit_transfer_files_total", **labels) == 0
    assert value(after_again, "blit_active_sessions") == 0


def test_errors_and_active_sessions(tmp_path: Path) -> None:
    module = tmp_path / "m"
    module.mkdir()
    (module / "f.txt").write_text("data\n")
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        base = f"http://{d.addr}"
        before = scrape(d)
        assert curl("-o", "/dev/null", "-w", "%{http_code}",
                    f"{base}/v1/modules/nope/list").stdout == "404"
        assert curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data", "{not json",
                    f"{base}/v1/transfers").stdout == "400"
        after = scrape(d)
        assert moved(before, after, "blit_errors_total", code="not_found") == 1
        assert moved(before, after, "blit_errors_total", code="protocol") == 1

        # A transfer opened with curl is an active session until it is aborted.
        opened = curl("-X", "POST", "--json", '{"direction": "pull", "module": "m", "path": ""}',
                      f"{base}/v1/transfers")
        sid = json.loads(opened.stdout)["id"]
        assert value(scrape(d), "blit_active_sessions") == 1
        assert curl("-f", "-X", "DELETE", f"{base}/v1/transfers/{sid}").returncode == 0
        done = scrape(d)
        assert value(done, "blit_active_sessions") == 0
        assert moved(after, done, "blit_transfers_total", direction="pull", carrier="none",
                     outcome="aborted") == 1
        assert moved(after, done, "blit_transfer_duration_seconds_count", direction="pull") == 1


def test_metrics_want_the_daemon_token(tmp_path: Path) -> None:
    module = tmp_path / "m"
    module.mkdir()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with running_daemon(tmp_path, "--module", f"m={module}", "--token-file", str(token)) as d:
        refused = curl("-w", "%{http_code}", "-o", "/dev/null", f"http://{d.addr}/metrics")
        assert refused.stdout == "401"
        samples = scrape(d, "Authorization: Bearer s3cret")
        assert value(samples, "blit_errors_total", code="unauthorized") == 1
