"""Data-plane tokens: single use, bound to one session, expiring, compared in constant time."""

from __future__ import annotations

from pathlib import Path

import pytest

from blit_server import sessions as sessions_mod
from blit_server.config import Module
from blit_server.sessions import Sessions
from blit_shared.options import Options


@pytest.fixture
def two_sessions(tmp_path: Path) -> tuple[Sessions, object, object]:
    (tmp_path / "f").write_text("x")
    reg = Sessions()
    mod = Module("m", str(tmp_path))
    (a, _), (b, _) = (reg.open_pull(mod, "", True, Options()) for _ in range(2))
    return reg, a, b


def test_token_is_single_use_and_bound(two_sessions: tuple[Sessions, object, object]) -> None:
    reg, a, b = two_sessions
    token_a, = reg.grant(a, 1)  # type: ignore[arg-type]
    raw = bytes.fromhex(token_a)
    assert len(raw) >= 32
    assert reg.claim(raw) is a
    assert reg.claim(raw) is None            # used up
    assert reg.claim(b"\0" * 32) is None     # never granted
    token_b, = reg.grant(b, 1)  # type: ignore[arg-type]
    assert reg.claim(bytes.fromhex(token_b)) is b


def test_token_expires_unused(two_sessions: tuple[Sessions, object, object],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    reg, a, _ = two_sessions
    token, = reg.grant(a, 1)  # type: ignore[arg-type]
    now = sessions_mod.time.monotonic()
    monkeypatch.setattr(sessions_mod.time, "monotonic", lambda: now + sessions_mod.TOKEN_TTL + 1)
    assert reg.claim(bytes.fromhex(token)) is None


def test_dropping_a_session_revokes_its_tokens(
        two_sessions: tuple[Sessions, object, object]) -> None:
    reg, a, _ = two_sessions
    token, = reg.grant(a, 1)  # type: ignore[arg-type]
    reg.drop(a.id)  # type: ignore[attr-defined]
    assert reg.claim(bytes.fromhex(token)) is None
