"""check_relpath's fast paths decide exactly what the plain rule (split, encode, compare) does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blit_shared.errors import UnsafePath
from blit_shared.paths import MAX_COMPONENT_BYTES, MAX_PATH_BYTES, check_relpath


def plain_rule(path: str) -> bool:
    if path == "":
        return True
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return False
    if "\x00" in path or "\\" in path or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..")
               and len(part.encode("utf-8", "surrogateescape")) <= MAX_COMPONENT_BYTES
               for part in path.split("/"))


def accepted(path: str) -> bool:
    try:
        check_relpath(path)
    except UnsafePath:
        return False
    return True


pieces = st.sampled_from(["a", "b.txt", ".", "..", "/", "\\", "\x00", "é", "\U0001f600",
                          ".hidden", "x" * 60, "é" * 70, "\udcff"])


@settings(max_examples=3000)
@given(st.lists(pieces, max_size=12).map("".join))
def test_same_verdict_as_plain_rule(path: str) -> None:
    assert accepted(path) == plain_rule(path)


@pytest.mark.parametrize("path", ["x" * 256, "a/" + "é" * 128, "/".join(["d" * 200] * 21),
                                  "a/../b", "./a", "a/.", "a//b", "a/", "/a", "a\\b", "a\x00"])
def test_rejects(path: str) -> None:
    assert not accepted(path)


@pytest.mark.parametrize("path", ["", "a", "a/b.c", ".a/..b/...", "x" * 255, "é" * 127])
def test_accepts(path: str) -> None:
    assert accepted(path)
