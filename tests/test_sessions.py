"""The daemon's session registry: a transfer nobody asks about and whose streams move nothing is
abandoned (its DESTINATION interrupted), however young; a long transfer that still moves is
kept, however old."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blit_server import sessions as registry
from blit_server.config import Module
from blit_shared.errors import NotFound
from blit_shared.manifest import DIR, FILE, Entry, Manifest
from blit_shared.options import Options
from blit_shared.temps import TEMP_MARK


def test_an_idle_session_is_abandoned_and_a_long_busy_one_kept(tmp_path: Path) -> None:
    mod = tmp_path / "mod"
    mod.mkdir()
    module = Module("m", str(mod))
    sessions = registry.Sessions()
    busy = sessions.open_push(module, "busy", True, DIR, "x", True, Options())
    idle = sessions.open_push(module, "idle", True, DIR, "x", True, Options())
    assert idle.destination is not None
    manifest = Manifest([Entry("", DIR, mode=0o755), Entry("a", DIR, mode=0o755),
                         Entry("a/f1", FILE, 3, 1, 0o644), Entry("a/f2", FILE, 3, 1, 0o644)])
    idle.destination.make_plan(manifest)
    idle.destination.prepare()  # "a" is made under a temp name, to appear with its files
    assert any(TEMP_MARK in p.name for p in (mod / "idle").iterdir())

    long_ago = time.monotonic() - 2 * registry.SESSION_IDLE
    for s in (busy, idle):
        s.created = s.touched = long_ago
    busy.progress.add_bytes(1)  # its streams moved since the registry last looked

    sessions.open_push(module, "new", True, DIR, "x", True, Options())  # sweeps
    assert sessions.get(busy.id) is busy
    with pytest.raises(NotFound):
        sessions.get(idle.id)
    assert idle.aborted
    assert not [p for p in (mod / "idle").rglob("*") if TEMP_MARK in p.name]
    assert not (mod / "idle" / "a" / "f1").exists()  # nothing half-written appeared


def test_abandoning_an_idle_session_never_fails_a_new_one(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    module = Module("m", str(tmp_path))
    sessions = registry.Sessions()
    idle = sessions.open_push(module, "idle", True, DIR, "x", True, Options())
    idle.created = idle.touched = time.monotonic() - 2 * registry.SESSION_IDLE

    def broken() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(idle, "abandon", broken)
    new = sessions.open_push(module, "new", True, DIR, "x", True, Options())
    assert sessions.get(new.id) is new
    with pytest.raises(NotFound):
        sessions.get(idle.id)


def test_an_abandoned_transfer_is_counted_and_logged_as_aborted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from blit_server.app import create_app
    from blit_server.config import DaemonConfig

    module = Module("m", str(tmp_path))
    sessions = registry.Sessions()
    app = create_app(DaemonConfig(), sessions, None)
    idle = sessions.open_push(module, "idle", True, DIR, "x", True, Options())
    idle.created = idle.touched = time.monotonic() - 2 * registry.SESSION_IDLE
    caplog.set_level("INFO")
    sessions.open_push(module, "new", True, DIR, "x", True, Options())
    exposition = app.state.daemon.metrics.exposition().decode()
    assert ('blit_transfers_total{carrier="none",direction="push",outcome="aborted"} 1.0'
            in exposition)
    assert any(idle.id in r.getMessage() and "aborted" in r.getMessage()
               for r in caplog.records)
