"""Content hashes (xxh3-128): --checksum for whole files, and end-to-end verification of
what each stream carried."""

from __future__ import annotations

import os

import xxhash

_CHUNK = 1 << 20


def file_digest(path: str) -> str:
    h = xxhash.xxh3_128()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def span_digest(fd: int, offset: int, length: int) -> bytes:
    """xxh3-128 of bytes [offset, offset+length) of `fd`, zero-padded where the file ends
    early (as read_span sends it). Read into one reused buffer: faster than through mmap
    (1 GiB: 0.085-0.09 s against 0.13 s, and 1.06 s the first time), and a file truncated
    meanwhile cannot kill the process with SIGBUS, as a read through a mapping would."""
    h = xxhash.xxh3_128()
    buf = bytearray(min(_CHUNK, length))
    view = memoryview(buf)
    end = offset + length
    while offset < end:
        n = os.preadv(fd, [view[:end - offset]], offset)
        if n == 0:  # shrank: the bytes sent in its place are zeros
            while offset < end:
                n = min(len(buf), end - offset)
                h.update(bytes(n))
                offset += n
            break
        h.update(view[:n])
        offset += n
    return h.digest()


def new_hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


def digest(data: bytes | bytearray | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(data)


def hex_digest(data: bytes | bytearray | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)
