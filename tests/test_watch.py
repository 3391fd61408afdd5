"""Live progress with curl (snapshot, NDJSON and SSE streams) and the OpenAPI description."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from blit_server.app import create_app
from blit_server.config import DaemonConfig
from blit_server.openapi import OPERATIONS
from blit_server.sessions import Sessions
from tests.daemon import running_daemon


@pytest.fixture
def module(tmp_path: Path) -> Path:
    mod = tmp_path / "mod"
    (mod / "d").mkdir(parents=True)
    for i in range(50):
        (mod / "d" / f"f{i}.txt").write_text(f"{i}\n" * 100)
    return mod


def test_events_stream_while_a_transfer_runs(tmp_path: Path, module: Path) -> None:
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        base = f"http://{d.addr}/v1/transfers"
        opened = httpx.post(base, json={"direction": "pull", "module": "m", "path": "d",
                                        "trailing_slash": True, "options": {}}).json()
        sid = opened["id"]
        manifest = httpx.get(f"{base}/{sid}/manifest").json()
        need = list(range(1, len(manifest["entries"])))
        watcher = subprocess.Popen(["curl", "-fsSN", f"{base}/{sid}/events?interval=0.05"],
                                   stdout=subprocess.PIPE, text=True)
        try:
            snap = httpx.get(f"{base}/{sid}/progress").json()
            assert snap["event"] == "progress" and snap["phase"] in ("scan", "plan", "starting")
            httpx.post(f"{base}/{sid}/negotiate", json={"need": need, "force_http": True})
            body = httpx.get(f"{base}/{sid}/stream").content
            assert body.startswith(b"BLIT")
            live = httpx.get(f"{base}/{sid}").json()
            assert live["files_done"] == len(need) and live["phase"] == "transfer"
            summary = httpx.post(f"{base}/{sid}/finish", json={}).json()
            out, _ = watcher.communicate(timeout=20)
        finally:
            watcher.kill()
            watcher.wait()
        events = [json.loads(line) for line in out.splitlines()]
        assert watcher.returncode == 0
        assert events[-1]["event"] == "summary"
        assert events[-1]["files_transferred"] == summary["files_transferred"]
        progress = [e for e in events[:-1] if e["event"] == "progress"]
        assert progress and len(progress) == len(events) - 1
        done = [e["bytes_done"] for e in progress]
        assert done == sorted(done)  # counters never go backwards

        # Finished: the snapshot and both stream forms answer with the summary at once.
        assert httpx.get(f"{base}/{sid}/progress").json()["event"] == "summary"
        sse = subprocess.run(["curl", "-fsSN", "-H", "Accept: text/event-stream",
                              f"{base}/{sid}/events"], capture_output=True, text=True,
                             timeout=20)
        frames = [f for f in sse.stdout.split("\n\n") if f]
        assert len(frames) == 1 and frames[0].startswith("data: ")
        assert json.loads(frames[0][len("data: "):])["event"] == "summary"


def test_events_end_when_a_transfer_is_aborted(tmp_path: Path, module: Path) -> None:
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        base = f"http://{d.addr}/v1/transfers"
        sid = httpx.post(base, json={"direction": "pull", "module": "m", "path": "d",
                                     "options": {}}).json()["id"]
        watcher = subprocess.Popen(["curl", "-fsSN", f"{base}/{sid}/events?interval=0.05"],
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert watcher.stdout is not None
            first = watcher.stdout.readline()  # connected and streaming before the abort
            assert json.loads(first)["event"] == "progress"
            httpx.delete(f"{base}/{sid}")
            out, _ = watcher.communicate(timeout=20)
        finally:
            watcher.kill()
            watcher.wait()
        assert json.loads(out.splitlines()[-1]) == {"event": "aborted", "id": sid}
        bad = httpx.get(f"{base}/{sid}/events", params={"interval": "soon"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "usage"


def test_openapi_describes_every_route(tmp_path: Path, module: Path) -> None:
    app = create_app(DaemonConfig(), Sessions(), None)
    routes = {(m, r.path) for r in app.routes for m in (r.methods or set()) - {"HEAD"}}
    assert routes == set(OPERATIONS), "route without an OpenAPI entry (or a stale entry)"
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        out = subprocess.run(["curl", "-fsS", f"http://{d.addr}/v1/openapi.json"],
                             capture_output=True, text=True, timeout=20, check=True)
    spec = json.loads(out.stdout)
    assert spec["openapi"].startswith("3.")
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert described == routes
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["responses"]
            names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert names == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
