"""The data-plane record format: a sans-IO encoder and incremental decoder (bytes in, events out).

A stream is MAGIC + VERSION, then records, then an END record. Each record is a fixed 32-byte
header, a UTF-8 path, and `length` body bytes:

    type u8 | flags u8 | path_len u16 | reserved u32 | size u64 | offset u64 | length u64

FILE   bytes [offset, offset+length) of the file `path`, whose full size is `size`.
SHARD  a tar archive of `size` small files, `length` bytes; path is empty.
FAIL   the SOURCE could not send `path`; the body is a UTF-8 reason.
DONE   the FILE span of `path` at `offset` (or, with an empty path, the SHARD just before)
       was read intact; only then may the DESTINATION count it. Body: empty, or the xxh3-128
       digest of what was sent, which the DESTINATION compares with what it received.
END    no more records; `size` is the number of records sent before it.

Every length field has a hard cap, checked before any body byte is accepted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import ProtocolError
from .paths import MAX_PATH_BYTES, check_relpath

MAGIC = b"BLIT"
VERSION = 1
PREAMBLE = MAGIC + bytes([VERSION])

FILE, SHARD, FAIL, END, DONE = 1, 2, 3, 4, 5
TYPES = {FILE: "FILE", SHARD: "SHARD", FAIL: "FAIL", END: "END", DONE: "DONE"}

HEADER = struct.Struct("!BBHIQQQ")
MAX_FILE_SIZE = 1 << 62
MAX_SHARD_BYTES = 256 << 20
MAX_SHARD_FILES = 100_000
MAX_FAIL_BYTES = 4096
MAX_DIGEST_BYTES = 64


@dataclass(frozen=True, slots=True)
class Record:
    type: int
    path: str = ""
    size: int = 0
    offset: int = 0
    length: int = 0


def encode_header(rec: Record) -> bytes:
    """Header + path bytes for `rec`; the caller sends `rec.length` body bytes after it."""
    path = rec.path.encode("utf-8")
    _validate(rec, len(path))
    return HEADER.pack(rec.type, 0, len(path), 0, rec.size, rec.offset, rec.length) + path


def encode_fail(path: str, reason: str) -> bytes:
    body = reason.encode("utf-8", "replace")[:MAX_FAIL_BYTES]
    return encode_header(Record(FAIL, path, 0, 0, len(body))) + body


def encode_done(path: str, size: int, offset: int, digest: bytes = b"") -> bytes:
    return encode_header(Record(DONE, path, size, offset, len(digest))) + digest


def encode_end(count: int) -> bytes:
    return encode_header(Record(END, "", count))


def _validate(rec: Record, path_len: int) -> None:
    t = rec.type
    if t not in TYPES:
        raise ProtocolError(f"unknown record type {t}")
    if path_len > MAX_PATH_BYTES:
        raise ProtocolError("record path too long")
    if t == FILE:
        if rec.size > MAX_FILE_SIZE or rec.offset + rec.length > rec.size:
            raise ProtocolError(f"FILE record range out of bounds for {rec.path!r}")
        check_relpath(rec.path)
        if rec.path == "":
            raise ProtocolError("FILE record without a path")
    elif t == SHARD:
        if rec.length > MAX_SHARD_BYTES or rec.size > MAX_SHARD_FILES or rec.path or rec.offset:
            raise ProtocolError("SHARD record over its caps")
    elif t == DONE:  # path "" confirms the SHARD just before it (size = its member count)
        if rec.length > MAX_DIGEST_BYTES or rec.offset > rec.size or rec.size > MAX_FILE_SIZE:
            raise ProtocolError("DONE record over its caps")
        check_relpath(rec.path)
    elif t == FAIL:
        if rec.length > MAX_FAIL_BYTES or rec.size or rec.offset:
            raise ProtocolError("FAIL record over its caps")
        check_relpath(rec.path)
    elif rec.length or rec.path or rec.offset:  # END
        raise ProtocolError("END record carries data")


@dataclass(frozen=True, slots=True)
class Data:
    """A slice of the current record's body; only valid until the next feed()."""

    data: memoryview


@dataclass(frozen=True, slots=True)
class RecordEnd:
    record: Record


class NeedData:
    """Sentinel: feed more bytes."""


NEED_DATA = NeedData()
Event = Record | Data | RecordEnd | NeedData


class Decoder:
    """Incremental decoder. feed() bytes, then call next_event() until it returns NEED_DATA.

    Events: the Record (its header), Data slices of its body, RecordEnd; after END, `finished`
    is true and any further byte is a protocol error.
    """

    def __init__(self) -> None:
        self._buf = bytearray()     # partial preamble/header bytes
        self._view = memoryview(b"")
        self._pos = 0
        self._started = False
        self._record: Record | None = None
        self._remaining = 0
        self.finished = False
        self.records = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos < len(self._view):
            raise RuntimeError("feed() before the previous data was consumed")
        self._view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        self._pos = 0
        if self.finished and len(data):
            raise ProtocolError("data after END record")

    def _take(self, n: int) -> bytes | None:
        """Accumulate exactly n bytes across feeds into a header buffer."""
        need = n - len(self._buf)
        chunk = self._view[self._pos:self._pos + need]
        self._buf += chunk
        self._pos += len(chunk)
        if len(self._buf) < n:
            return None
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def next_event(self) -> Event:
        if not self._started:
            pre = self._take(len(PREAMBLE))
            if pre is None:
                return NEED_DATA
            if pre[:4] != MAGIC:
                raise ProtocolError("not a blit record stream (bad magic)")
            if pre[4] != VERSION:
                raise ProtocolError(f"unsupported record stream version {pre[4]}")
            self._started = True
        rec = self._record
        if rec is not None:
            if self._remaining == 0:
                self._record = None
                self.records += 1
                return RecordEnd(rec)
            avail = len(self._view) - self._pos
            if avail == 0:
                return NEED_DATA
            n = min(avail, self._remaining)
            out = self._view[self._pos:self._pos + n]
            self._pos += n
            self._remaining -= n
            return Data(out)
        if self.finished:
            if self._pos < len(self._view):
                raise ProtocolError("data after END record")
            return NEED_DATA
        if len(self._buf) < HEADER.size:
            head = self._take(HEADER.size)
            if head is None:
                return NEED_DATA
            self._buf += head  # keep until the path is complete too
        t, _flags, path_len, _res, size, offset, length = HEADER.unpack_from(self._buf)
        if path_len > MAX_PATH_BYTES:
            raise ProtocolError("record path too long")
        full = self._take(HEADER.size + path_len)
        if full is None:
            return NEED_DATA
        try:
            path = full[HEADER.size:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("record path is not UTF-8") from None
        rec = Record(t, path, size, offset, length)
        _validate(rec, path_len)
        if t == END:
            if size != self.records:
                raise ProtocolError(f"END says {size} records, received {self.records}")
            self.finished = True
            return rec
        self._record = rec
        self._remaining = length
        return rec
