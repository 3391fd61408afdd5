"""Property tests of the sans-IO record codec (blit_shared.wire): round trips and hostile input."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blit_shared import wire
from blit_shared.errors import ProtocolError
from blit_shared.wire import (
    END,
    FAIL,
    FILE,
    HEADER,
    NEED_DATA,
    PREAMBLE,
    SHARD,
    Data,
    Decoder,
    Record,
    RecordEnd,
)

Item = tuple[Record, bytes]
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------------

component = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00"),
                    min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
relpath = st.lists(component, min_size=1, max_size=4).map("/".join)
body = st.binary(max_size=600)


@st.composite
def file_item(draw: st.DrawFn) -> Item:
    data = draw(body)
    offset = draw(st.integers(0, 1 << 40))
    size = offset + len(data) + draw(st.integers(0, 1 << 20))
    return Record(FILE, draw(relpath), size, offset, len(data)), data


@st.composite
def shard_item(draw: st.DrawFn) -> Item:
    data = draw(body)
    return Record(SHARD, "", draw(st.integers(0, wire.MAX_SHARD_FILES)), 0, len(data)), data


@st.composite
def fail_item(draw: st.DrawFn) -> Item:
    reason = draw(st.text(max_size=200)).encode("utf-8", "replace")
    return Record(FAIL, draw(relpath), 0, 0, len(reason)), reason


items = st.lists(st.one_of(file_item(), shard_item(), fail_item()), max_size=12)


def encode(recs: list[Item]) -> bytes:
    out = bytearray(PREAMBLE)
    for rec, data in recs:
        if rec.type == FAIL:
            out += wire.encode_fail(rec.path, data.decode("utf-8"))
        else:
            out += wire.encode_header(rec) + data
    out += wire.encode_end(len(recs))
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    pos = 0
    for c in sorted({min(c, len(data)) for c in cuts}):
        yield data[pos:c]
        pos = c
    yield data[pos:]


def decode(chunks: Iterator[bytes] | list[bytes]) -> tuple[list[Item], Record | None, Decoder]:
    """Feed chunks, drain events after each; returns records with bodies, the END, the decoder."""
    dec = Decoder()
    out: list[Item] = []
    current: Record | None = None
    buf = bytearray()
    end: Record | None = None
    for chunk in chunks:
        dec.feed(chunk)
        while (ev := dec.next_event()) is not NEED_DATA:
            if isinstance(ev, Record):
                assert current is None and end is None
                if ev.type == END:
                    end = ev
                else:
                    current = ev
            elif isinstance(ev, Data):
                assert current is not None
                buf += bytes(ev.data)  # only valid until the next feed()
            else:
                assert isinstance(ev, RecordEnd) and ev.record == current
                out.append((current, bytes(buf)))
                current, buf = None, bytearray()
    return out, end, dec


# -- round trips --------------------------------------------------------------------------------

@SETTINGS
@given(items, st.lists(st.integers(0, 20_000), max_size=30))
def test_round_trip_in_random_chunks(recs: list[Item], cuts: list[int]) -> None:
    data = encode(recs)
    got, end, dec = decode(split(data, cuts))
    assert got == recs
    assert end == Record(END, "", len(recs))
    assert dec.finished and dec.records == len(recs)


@SETTINGS
@given(items)
def test_round_trip_byte_by_byte(recs: list[Item]) -> None:
    data = encode(recs)
    got, end, _ = decode(data[i:i + 1] for i in range(len(data)))
    assert got == recs and end is not None


def test_empty_feed_and_empty_stream() -> None:
    got, end, dec = decode([b"", PREAMBLE, b"", wire.encode_end(0), b""])
    assert got == [] and end == Record(END) and dec.finished


def test_unicode_path_round_trip() -> None:
    rec = Record(FILE, "ünï cödé/fïlé ñame.txt", 3, 0, 3)
    got, _, _ = decode([PREAMBLE + wire.encode_header(rec) + b"abc" + wire.encode_end(1)])
    assert got == [(rec, b"abc")]


def test_fail_reason_is_capped() -> None:
    frame = wire.encode_fail("x", "é" * 10_000)
    got, _, _ = decode([PREAMBLE + frame + wire.encode_end(1)])
    assert got[0][0].length == wire.MAX_FAIL_BYTES


# -- hostile input ------------------------------------------------------------------------------

def feed_all(chunks: list[bytes]) -> tuple[list[object], Decoder]:
    """Decode, letting only ProtocolError escape (anything else fails the test)."""
    dec = Decoder()
    events: list[object] = []
    for chunk in chunks:
        dec.feed(chunk)
        while (ev := dec.next_event()) is not NEED_DATA:
            events.append(bytes(ev.data) if isinstance(ev, Data) else ev)
    return events, dec


@SETTINGS
@given(st.binary(max_size=2000), st.booleans(), st.lists(st.integers(0, 2000), max_size=8))
def test_garbage_raises_only_protocol_error(junk: bytes, preamble: bool,
                                            cuts: list[int]) -> None:
    data = (PREAMBLE if preamble else b"") + junk
    try:
        events, dec = feed_all(list(split(data, cuts)))
    except ProtocolError:
        return
    check_grammar(events, dec)


def check_grammar(events: list[object], dec: Decoder) -> None:
    """Events follow (Record Data* RecordEnd)* [END]; every decoded header is a valid record."""
    open_rec: Record | None = None
    for i, ev in enumerate(events):
        if isinstance(ev, Record):
            assert open_rec is None
            wire.encode_header(ev)  # what the decoder accepted, the encoder accepts too
            if ev.type == END:
                assert i == len(events) - 1 and dec.finished
            else:
                open_rec = ev
        elif isinstance(ev, bytes):
            assert open_rec is not None and len(ev) <= open_rec.length
        else:
            assert isinstance(ev, RecordEnd) and ev.record == open_rec
            open_rec = None


@SETTINGS
@given(st.binary(min_size=HEADER.size, max_size=HEADER.size), st.binary(max_size=300))
def test_random_headers_raise_only_protocol_error(header: bytes, tail: bytes) -> None:
    try:
        events, dec = feed_all([PREAMBLE + header + tail])
    except ProtocolError:
        return
    check_grammar(events, dec)


@SETTINGS
@given(items, st.data())
def test_truncation_never_yields_a_wrong_event(recs: list[Item], data: st.DataObject) -> None:
    full = encode(recs)
    cut = data.draw(st.integers(0, len(full) - 1))
    events, dec = feed_all([full[:cut]])
    complete, _ = feed_all([full])
    assert not dec.finished
    # What was decoded is a prefix of the whole stream's events (the last body may be partial).
    assert len(events) <= len(complete)
    for i, (got, want) in enumerate(zip(events, complete, strict=False)):
        if isinstance(got, bytes) and i == len(events) - 1:
            assert isinstance(want, bytes) and want.startswith(got)
        elif isinstance(got, bytes):
            assert got == want or (isinstance(want, bytes) and want.startswith(got))
        else:
            assert got == want


@SETTINGS
@given(items, st.integers(0, 255), st.data())
def test_flipped_byte_never_raises_anything_but_protocol_error(recs: list[Item], xor: int,
                                                               data: st.DataObject) -> None:
    full = bytearray(encode(recs))
    pos = data.draw(st.integers(0, len(full) - 1))
    full[pos] ^= xor or 1
    try:
        events, dec = feed_all([bytes(full)])
    except ProtocolError:
        return
    check_grammar(events, dec)


def header(t: int, path: bytes = b"", size: int = 0, offset: int = 0, length: int = 0) -> bytes:
    return HEADER.pack(t, 0, len(path), 0, size, offset, length) + path


@pytest.mark.parametrize("stream", [
    pytest.param(b"NOPE\x01", id="bad-magic"),
    pytest.param(b"BLIT\x02", id="wrong-version"),
    pytest.param(b"BLIT\x00", id="version-zero"),
    pytest.param(PREAMBLE + header(9), id="unknown-type"),
    pytest.param(PREAMBLE + header(0), id="type-zero"),
    pytest.param(PREAMBLE + header(SHARD, size=1, length=wire.MAX_SHARD_BYTES + 1),
                 id="shard-over-cap"),
    pytest.param(PREAMBLE + header(SHARD, size=wire.MAX_SHARD_FILES + 1, length=1),
                 id="shard-too-many-files"),
    pytest.param(PREAMBLE + header(SHARD, b"x", 1, 0, 1), id="shard-with-path"),
    pytest.param(PREAMBLE + header(FAIL, b"x", length=wire.MAX_FAIL_BYTES + 1),
                 id="fail-over-cap"),
    pytest.param(PREAMBLE + header(FILE, b"x", 10, 5, 6), id="file-range-past-size"),
    pytest.param(PREAMBLE + header(FILE, b"x", wire.MAX_FILE_SIZE + 1, 0, 1),
                 id="file-over-cap"),
    pytest.param(PREAMBLE + header(FILE, b"", 1, 0, 1), id="file-without-path"),
    pytest.param(PREAMBLE + header(FILE, b"../etc/passwd", 1, 0, 1), id="file-dotdot"),
    pytest.param(PREAMBLE + header(FILE, b"/etc/passwd", 1, 0, 1), id="file-absolute"),
    pytest.param(PREAMBLE + header(FILE, b"a\\b", 1, 0, 1), id="file-backslash"),
    pytest.param(PREAMBLE + header(FILE, b"a\x00b", 1, 0, 1), id="file-nul"),
    pytest.param(PREAMBLE + header(FAIL, b"../x", 0, 0, 1), id="fail-dotdot"),
    pytest.param(PREAMBLE + header(FILE, b"\xff\xfe", 1, 0, 1), id="path-not-utf8"),
    pytest.param(PREAMBLE + struct.pack("!BBH", FILE, 0, wire.MAX_PATH_BYTES + 1) + bytes(28),
                 id="path-over-cap"),
    pytest.param(PREAMBLE + header(END, size=1), id="end-count-too-high"),
    pytest.param(PREAMBLE + header(FAIL, b"x") + header(END, size=2), id="end-count-mismatch"),
    pytest.param(PREAMBLE + header(END, b"x"), id="end-with-path"),
    pytest.param(PREAMBLE + header(END, length=1), id="end-with-body"),
    pytest.param(PREAMBLE + header(END) + b"\x00", id="data-after-end"),
    pytest.param(PREAMBLE + header(END) + PREAMBLE, id="second-stream-after-end"),
])
def test_malformed_streams_raise_protocol_error(stream: bytes) -> None:
    with pytest.raises(ProtocolError):
        feed_all([stream])
    # Byte by byte, the same error and no event that a valid stream would not have produced.
    with pytest.raises(ProtocolError):
        feed_all([stream[i:i + 1] for i in range(len(stream))])


def test_data_after_end_in_a_later_feed() -> None:
    dec = Decoder()
    dec.feed(PREAMBLE + wire.encode_end(0))
    assert dec.next_event() == Record(END)
    assert dec.next_event() is NEED_DATA and dec.finished
    dec.feed(b"")  # an empty read after the end is harmless
    with pytest.raises(ProtocolError):
        dec.feed(b"x")


def test_over_cap_rejected_before_any_body_byte() -> None:
    dec = Decoder()
    dec.feed(PREAMBLE + header(SHARD, size=1, length=wire.MAX_SHARD_BYTES + 1))
    with pytest.raises(ProtocolError):
        dec.next_event()


@pytest.mark.parametrize("rec", [
    Record(FILE, "", 1, 0, 1), Record(FILE, "x", 1, 1, 1), Record(FILE, "../x", 1, 0, 1),
    Record(SHARD, "x", 1, 0, 1), Record(SHARD, "", 1, 0, wire.MAX_SHARD_BYTES + 1),
    Record(FAIL, "x", 1, 0, 0), Record(END, "", 0, 0, 1), Record(7),
    Record(FILE, "a/" * 2100, 1, 0, 1),
])
def test_encoder_refuses_invalid_records(rec: Record) -> None:
    with pytest.raises(ProtocolError):
        wire.encode_header(rec)
