"""The payload planner: needed files → tar shards, whole files and byte ranges of large files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .manifest import Entry
from .tuning import Tuning


@dataclass(slots=True)
class Shard:
    """Many small files sent as one tar archive."""

    entries: list[Entry]


@dataclass(slots=True)
class Span:
    """Bytes [offset, offset+length) of one file; a whole file when it covers all of it."""

    entry: Entry
    offset: int
    length: int


Payload = Shard | Span


def plan_payloads(files: list[Entry], tuning: Tuning) -> Iterator[Payload]:
    """Yield payloads, large ranges first so the long poles start early and streams stay busy."""
    small: list[Entry] = []
    for e in sorted(files, key=lambda e: e.size, reverse=True):
        if e.size >= tuning.small_file:
            step = tuning.range_bytes
            if e.size <= step * 1.5:
                yield Span(e, 0, e.size)
                continue
            for off in range(0, e.size, step):
                yield Span(e, off, min(step, e.size - off))
        else:
            small.append(e)
    # Small files go back to manifest order: neighbours in a directory land together.
    small.sort(key=lambda e: e.path)
    batch: list[Entry] = []
    batch_bytes = 0
    for e in small:
        batch.append(e)
        batch_bytes += e.size + 1024
        if batch_bytes >= tuning.shard_bytes or len(batch) >= tuning.shard_files:
            yield Shard(batch)
            batch, batch_bytes = [], 0
    if batch:
        yield Shard(batch)
