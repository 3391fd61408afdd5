"""Content hashes (xxh3-128): fast enough to checksum whole trees on both sides."""

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
