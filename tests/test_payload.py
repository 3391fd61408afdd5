"""Unit tests of the payload planner and the tuning function."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from blit_shared.manifest import FILE, Entry
from blit_shared.payload import Shard, Span, plan_payloads
from blit_shared.tuning import MAX_STREAMS, MiB, Tuning, tune

KiB = 1 << 10


def entries(sizes: list[int]) -> list[Entry]:
    return [Entry(f"d{i % 7}/f{i:05d}", FILE, s, 0, 0o644) for i, s in enumerate(sizes)]


def check_coverage(files: list[Entry], tuning: Tuning) -> tuple[list[Shard], list[Span]]:
    """Every byte of every file is in exactly one payload; returns the payloads by type."""
    payloads = list(plan_payloads(files, tuning))
    shards = [p for p in payloads if isinstance(p, Shard)]
    spans = [p for p in payloads if isinstance(p, Span)]
    assert len(shards) + len(spans) == len(payloads)
    in_shards = [e.path for s in shards for e in s.entries]
    assert len(in_shards) == len(set(in_shards)), "a file is in two shards"
    ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for s in spans:
        assert s.length > 0 and s.offset >= 0
        ranges[s.entry.path].append((s.offset, s.length))
    assert not set(in_shards) & set(ranges), "a file is both in a shard and in spans"
    assert set(in_shards) | set(ranges) == {e.path for e in files}
    for e in files:
        if e.path in ranges:
            pos = 0
            for off, length in sorted(ranges[e.path]):
                assert off == pos, f"{e.path}: gap or overlap at {pos}"
                pos += length
            assert pos == e.size, f"{e.path}: covered {pos} of {e.size}"
            assert e.size >= tuning.small_file
        else:
            assert e.size < tuning.small_file
    for s in shards:
        assert 0 < len(s.entries) <= tuning.shard_files
        # A shard closes as soon as it reaches its byte target: all but its last file fit under.
        assert sum(e.size + 1024 for e in s.entries[:-1]) < tuning.shard_bytes
    return shards, spans


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 300 * KiB), st.integers(0, 400 * MiB)), max_size=60),
       st.integers(1, 40))
def test_every_byte_covered_exactly_once(sizes: list[int], streams: int) -> None:
    check_coverage(entries(sizes), tune(sizes, streams=streams))


def test_small_files_are_sharded_within_caps() -> None:
    sizes = [4 * KiB] * 5000 + [0] * 10
    t = tune(sizes)
    shards, spans = check_coverage(entries(sizes), t)
    assert spans == []
    assert len(shards) >= 5010 * (4 * KiB + 1024) // t.shard_bytes
    assert all(len(s.entries) <= t.shard_files for s in shards)
    # Small files are batched in path order, so a directory's files travel together.
    flat = [e.path for s in shards for e in s.entries]
    assert flat == sorted(flat)


def test_shard_file_count_cap() -> None:
    t = Tuning(streams=1, small_file=256 * KiB, shard_bytes=1 << 40, shard_files=100,
               range_bytes=8 * MiB, buffer=MiB)
    shards, _ = check_coverage(entries([1] * 1000), t)
    assert [len(s.entries) for s in shards] == [100] * 10


def test_large_file_striped_over_every_stream() -> None:
    size = 200 * MiB + 12345
    t = tune([size], cpus=2)
    assert t.streams >= 2
    _, spans = check_coverage(entries([size]), t)
    assert len(spans) >= t.streams  # every stream gets a piece of the one large file
    assert all(s.length <= t.range_bytes for s in spans)


def test_medium_file_travels_whole() -> None:
    t = tune([MiB], cpus=2)
    _, spans = check_coverage(entries([MiB]), t)
    assert [(s.offset, s.length) for s in spans] == [(0, MiB)]


def test_large_ranges_come_first() -> None:
    sizes = [KiB] * 10 + [100 * MiB, 300 * KiB]
    payloads = list(plan_payloads(entries(sizes), tune(sizes, cpus=2)))
    kinds = [isinstance(p, Span) for p in payloads]
    assert kinds == sorted(kinds, reverse=True)  # all spans, then all shards
    assert payloads[0].entry.size == 100 * MiB  # type: ignore[union-attr]


def test_tune_stream_count() -> None:
    assert tune([]).streams == 1
    assert tune([KiB] * 100, cpus=8).streams == 1  # few bytes: setup would dominate
    assert tune([50 * MiB], cpus=2).streams == 1  # one mid-size file: no striping
    assert tune([100 * MiB], cpus=2).streams == 3
    assert tune([MiB] * 100, cpus=2).streams == 3
    # Many small files, however many bytes: one stream (threads only contend for the GIL).
    assert tune([16 * KiB] * 20_000, cpus=2).streams == 1
    assert tune([16 * KiB] * 20_000 + [100 * MiB], cpus=2).streams == 3
    assert tune([MiB] * 100, cpus=64).streams == MAX_STREAMS
    assert tune([MiB] * 100, streams=5).streams == 5
    assert tune([MiB], streams=1000).streams == MAX_STREAMS * 4
    assert tune([MiB], streams=0).streams == 1


def test_tune_range_bytes_bounds() -> None:
    for size in (0, KiB, 10 * MiB, 100 * MiB, 10 * 1024 * MiB):
        t = tune([size], cpus=2)
        assert 8 * MiB <= t.range_bytes <= 128 * MiB
        assert t.small_file < t.range_bytes and t.buffer > 0 and t.shard_files > 0
    assert set(tune([MiB]).to_json()) == {"streams", "small_file", "shard_bytes", "shard_files",
                                          "range_bytes", "buffer"}


def test_tune_same_host_shares_the_cores() -> None:
    """SOURCE and DESTINATION on one machine: one stream per pair of cores for large files."""
    assert tune([1 << 30], cpus=2, same_host=True).streams == 1
    assert tune([1 << 30], cpus=8, same_host=True).streams == 4
    assert tune([16 * KiB] * 20_000, cpus=8, same_host=True).streams == 1
    assert tune([1 << 30], cpus=2, same_host=True, streams=3).streams == 3  # the expert wins
    assert tune([1 << 30], cpus=2, in_kernel=True).streams == 2  # local: one per core
    assert tune([1 << 30], cpus=8, in_kernel=True).streams == 8


def test_local_copies_whole_files_per_stream() -> None:
    """copy_file_range from two threads into one inode contends: the local route never cuts a
    file into ranges; its streams take whole files."""
    t = tune([1 << 30, 512 * MiB, 512 * MiB], cpus=2, in_kernel=True)
    payloads = list(plan_payloads([Entry(f"f{i}", FILE, s, 0, 0o644)
                                   for i, s in enumerate([1 << 30, 512 * MiB, 512 * MiB])], t))
    assert [(p.offset, p.length) for p in payloads] == [(0, 1 << 30), (0, 512 * MiB),
                                                         (0, 512 * MiB)]
    assert tune([1 << 30], cpus=2).range_bytes < 1 << 30  # remote routes still stripe
