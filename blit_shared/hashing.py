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


def new_hasher() -> xxhash.xxh3_128:
    return xxhash.xxh3_128()


def digest(data: bytes | bytearray | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(data)


def hex_digest(data: bytes | bytearray | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)
