"""The tar shard codec: round trips, interoperability with tarfile both ways, bad input."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blit_shared import tarshard
from blit_shared.errors import ProtocolError

component = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                    min_size=1, max_size=40).filter(lambda s: s not in (".", ".."))
paths = st.lists(component, min_size=1, max_size=12).map("/".join)
members = st.lists(st.tuples(paths, st.binary(max_size=2000)), max_size=8,
                   unique_by=lambda m: m[0])


def shard(items: list[tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for name, data in items:
        tarshard.encode_member(out, name, data, 0o644, 1_700_000_000)
    tarshard.finish(out)
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(members)
def test_round_trip_and_tarfile_reads_it(items: list[tuple[str, bytes]]) -> None:
    blob = shard(items)
    got = [(name, blob[off:off + size]) for name, off, size in tarshard.decode(blob)]
    assert got == items
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == items  # type: ignore[union-attr]


@settings(max_examples=100, deadline=None)
@given(members)
def test_reads_what_tarfile_writes(items: list[tuple[str, bytes]]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    assert [(n, blob[o:o + s]) for n, o, s in tarshard.decode(blob)] == items


def test_rejects_links_devices_and_dirs() -> None:
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            info = tarfile.TarInfo("x")
            info.type = kind
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        with pytest.raises(ProtocolError, match="not a regular file"):
            list(tarshard.decode(buf.getvalue()))


@settings(max_examples=300, deadline=None)
@given(members, st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_corruption_is_a_protocol_error_or_harmless(items: list[tuple[str, bytes]], at: int,
                                                    value: int) -> None:
    blob = bytearray(shard(items))
    blob[at % len(blob)] = value
    try:
        for _name, off, size in tarshard.decode(bytes(blob)):
            assert off >= 0 and off + size <= len(blob)
    except ProtocolError:
        pass


def test_truncated_shard() -> None:
    blob = shard([("a", b"x" * 600)])
    for cut in (10, 511, 512, 1100, 1536):  # 1536: all members, but no end-of-archive block
        with pytest.raises(ProtocolError):
            list(tarshard.decode(blob[:cut]))
