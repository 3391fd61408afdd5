"""Unit tests of the receiver (blit_shared.sink.Sink): atomic placement, spans, failures, shards."""

from __future__ import annotations

import contextlib
import io
import os
import random
import stat
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blit_shared.errors import ProtocolError
from blit_shared.manifest import FILE, Entry
from blit_shared.progress import Progress
from blit_shared.sink import Partial, Sink
from blit_shared.temps import TEMP_MARK, temp_name

NS = 1_650_000_000_111_222_333


def temps(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(f"*{TEMP_MARK}*")]


def entry(path: str, size: int, mode: int = 0o640) -> Entry:
    return Entry(path, FILE, size, NS, mode)


def events() -> tuple[Progress, list[dict[str, object]]]:
    seen: list[dict[str, object]] = []
    return Progress(listener=seen.append), seen


def test_write_file_places_file_with_metadata(tmp_path: Path) -> None:
    e = entry("f.bin", 5, 0o751)
    progress, seen = events()
    sink = Sink(str(tmp_path), [e], progress)
    sink.write_file(e, b"hello")
    st_ = os.lstat(tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == b"hello"
    assert stat.S_IMODE(st_.st_mode) == 0o751 and st_.st_mtime_ns == NS
    assert sink.done == {"f.bin"} and not temps(tmp_path)
    assert progress.files_done == 1 and progress.bytes_done == 5
    assert [x["event"] for x in seen] == ["file"]


def test_spans_out_of_order_from_many_threads(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * (1 << 20) + 12345)
    e = entry("sub/big.bin", len(data))
    (tmp_path / "sub").mkdir()
    progress, _ = events()
    sink = Sink(str(tmp_path), [e], progress)
    step = 64 * 1024
    spans = [(off, min(step, len(data) - off)) for off in range(0, len(data), step)]
    random.Random(2).shuffle(spans)
    work = iter(spans)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                with lock:
                    span = next(work, None)
                if span is None:
                    return
                off, length = span
                p = sink.open_span(e)
                assert p is not None
                # Write each span in two pieces, second half first.
                half = length // 2
                sink.write_at(p, off + half, data[off + half:off + length])
                sink.write_at(p, off, data[off:off + half])
                sink.span_done(p, off, length)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (tmp_path / "sub" / "big.bin").read_bytes() == data
    st_ = os.lstat(tmp_path / "sub" / "big.bin")
    assert stat.S_IMODE(st_.st_mode) == 0o640 and st_.st_mtime_ns == NS
    assert sink.done == {"sub/big.bin"} and sink.failed == {}
    assert progress.files_done == 1 and progress.bytes_done == len(data)
    assert not temps(tmp_path)


def test_file_appears_only_after_last_span(tmp_path: Path) -> None:
    e = entry("f", 30)
    (tmp_path / "f").write_bytes(b"old")
    sink = Sink(str(tmp_path), [e], Progress())
    p = sink.open_span(e)
    assert p is not None
    for off in (20, 0):
        sink.write_at(p, off, bytes([off]) * 10)
        sink.span_done(p, off, 10)
        assert (tmp_path / "f").read_bytes() == b"old"  # readers still see the old file
        assert len(temps(tmp_path)) == 1
    sink.write_at(p, 10, b"\x0a" * 10)
    sink.span_done(p, 10, 10)
    assert (tmp_path / "f").read_bytes() == b"\x00" * 10 + b"\x0a" * 10 + b"\x14" * 10
    assert not temps(tmp_path)


def test_span_sent_twice_is_a_protocol_error(tmp_path: Path) -> None:
    e = entry("f", 20)
    sink = Sink(str(tmp_path), [e], Progress())
    p = sink.open_span(e)
    assert p is not None
    sink.write_at(p, 0, b"x" * 10)
    sink.span_done(p, 0, 10)
    with pytest.raises(ProtocolError):
        sink.span_done(p, 0, 10)
    sink.close()
    assert not temps(tmp_path) and not (tmp_path / "f").exists()


def test_failure_removes_temp_and_keeps_existing_file(tmp_path: Path) -> None:
    e = entry("f", 20)
    (tmp_path / "f").write_bytes(b"precious")
    before = os.lstat(tmp_path / "f")
    progress, seen = events()
    sink = Sink(str(tmp_path), [e], progress)
    p = sink.open_span(e)
    assert p is not None
    sink.write_at(p, 0, b"n" * 10)
    sink.span_done(p, 0, 10)
    sink.fail("f", "source changed")
    assert not temps(tmp_path)
    # Late spans from other streams are ignored, and nothing is renamed into place.
    sink.write_at(p, 10, b"n" * 10)
    sink.span_done(p, 10, 10)
    assert sink.open_span(e) is None
    sink.write_file(e, b"n" * 20)
    sink.close()
    assert (tmp_path / "f").read_bytes() == b"precious"
    assert os.lstat(tmp_path / "f").st_mtime_ns == before.st_mtime_ns
    assert sink.failed == {"f": "source changed"} and sink.done == set()
    assert progress.failed == 1 and progress.files_done == 0
    assert [x for x in seen if x["event"] == "fail"] == [
        {"event": "fail", "path": "f", "reason": "source changed"}]
    assert not temps(tmp_path)


def test_write_failure_is_per_file(tmp_path: Path) -> None:
    good, bad = entry("good", 2), entry("missing_dir/bad", 2)
    progress, _ = events()
    sink = Sink(str(tmp_path), [good, bad], progress)
    sink.write_file(bad, b"xx")
    assert sink.open_span(bad) is None
    sink.write_file(good, b"ok")
    sink.close()
    assert set(sink.failed) == {"missing_dir/bad"} and sink.done == {"good"}
    assert (tmp_path / "good").read_bytes() == b"ok" and progress.failed == 1


def test_close_discards_incomplete_files(tmp_path: Path) -> None:
    half, never, whole = entry("half", 20), entry("never", 5), entry("whole", 2)
    (tmp_path / "half").write_bytes(b"old half")
    progress, seen = events()
    sink = Sink(str(tmp_path), [half, never, whole], progress)
    p = sink.open_span(half)
    assert p is not None
    sink.write_at(p, 0, b"h" * 10)
    sink.span_done(p, 0, 10)
    sink.write_file(whole, b"ok")
    assert len(temps(tmp_path)) == 1
    sink.close()
    assert not temps(tmp_path)
    assert (tmp_path / "half").read_bytes() == b"old half"
    assert not (tmp_path / "never").exists()
    assert (tmp_path / "whole").read_bytes() == b"ok"
    assert set(sink.failed) == {"half", "never"} and sink.done == {"whole"}
    assert progress.failed == 2
    assert {x["path"] for x in seen if x["event"] == "fail"} == {"half", "never"}


@pytest.mark.parametrize("name", ["é" * 127, "a" * 255, "日" * 85, "😀" * 63, "x"])
def test_temp_name_fits_name_max(tmp_path: Path, name: str) -> None:
    assert len(name.encode()) <= 255
    temp = temp_name(f"{tmp_path}/{name}")
    head, _, base = temp.rpartition("/")
    assert head == str(tmp_path) and base.startswith(TEMP_MARK)
    assert len(base.encode()) <= 255
    assert temp != temp_name(f"{tmp_path}/{name}")  # unique per call
    e = entry(name, 3)
    sink = Sink(str(tmp_path), [e], Progress())
    p = sink.open_span(e)
    assert p is not None
    sink.write_at(p, 0, b"abc")
    sink.span_done(p, 0, 3)
    assert (tmp_path / name).read_bytes() == b"abc"


# -- tar shards ---------------------------------------------------------------------------------

def tar_of(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_shard_writes_expected_files(tmp_path: Path) -> None:
    files = {"a": b"alpha", "ünï cödé/b": b"beta", "e": b""}
    (tmp_path / "ünï cödé").mkdir()
    expected = [entry(k, len(v), 0o604) for k, v in files.items()]
    sink = Sink(str(tmp_path), expected, Progress())
    sink.write_shard(tar_of([reg(k, v) for k, v in files.items()]), 3)
    for k, v in files.items():
        assert (tmp_path / k).read_bytes() == v
        st_ = os.lstat(tmp_path / k)
        # Metadata comes from the plan, never from the tar header.
        assert stat.S_IMODE(st_.st_mode) == 0o604 and st_.st_mtime_ns == NS
    assert sink.done == set(files)


def _special(kind: bytes, name: str = "a") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    return info, b""


@pytest.mark.parametrize("members", [
    pytest.param([_special(tarfile.SYMTYPE)], id="symlink"),
    pytest.param([_special(tarfile.LNKTYPE)], id="hardlink"),
    pytest.param([_special(tarfile.DIRTYPE)], id="dir"),
    pytest.param([_special(tarfile.FIFOTYPE)], id="fifo"),
    pytest.param([_special(tarfile.CHRTYPE)], id="chardev"),
    pytest.param([reg("unexpected", b"x")], id="unexpected-name"),
    pytest.param([reg("../a", b"x")], id="dotdot-name"),
    pytest.param([reg("/a", b"x")], id="absolute-name"),
    pytest.param([reg("a", b"longer")], id="size-differs-from-plan"),
])
def test_shard_rejects_bad_members(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]
                                   ) -> None:
    sink = Sink(str(tmp_path), [entry("a", 1)], Progress())
    with pytest.raises(ProtocolError):
        sink.write_shard(tar_of(members), len(members))
    assert os.listdir(tmp_path) == []
    assert not (tmp_path.parent / "a").exists()  # nothing written outside the root


def test_shard_count_mismatch_and_corrupt_tar(tmp_path: Path) -> None:
    sink = Sink(str(tmp_path), [entry("a", 1), entry("b", 1)], Progress())
    with pytest.raises(ProtocolError):
        sink.write_shard(tar_of([reg("a", b"1")]), 2)
    with pytest.raises(ProtocolError):
        sink.write_shard(b"\x01" * 1024, 1)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096), st.data())
def test_shard_garbage_raises_only_protocol_error(tmp_path: Path, junk: bytes,
                                                  data: st.DataObject) -> None:
    valid = tar_of([reg("a", b"hello"), reg("b", b"world")])
    mode = data.draw(st.sampled_from(["junk", "flip", "truncate"]))
    if mode == "junk":
        blob = junk
    elif mode == "flip":
        pos = data.draw(st.integers(0, len(valid) - 1))
        blob = valid[:pos] + bytes([valid[pos] ^ data.draw(st.integers(1, 255))]) + valid[pos + 1:]
    else:
        blob = valid[:data.draw(st.integers(0, len(valid) - 1))]
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    sink = Sink(str(root), [entry("a", 5), entry("b", 5)], Progress())
    with contextlib.suppress(ProtocolError):
        sink.write_shard(blob, 2)
    sink.close()
    assert not temps(root)
    for name in os.listdir(root):
        assert name in ("a", "b")


def test_close_leaves_a_descriptor_a_stream_is_writing_to_for_that_stream_to_close(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt closes the Sink while streams still run: a descriptor closed under a
    pwrite could be reused by the next open, and the stream's bytes would land there."""
    e = Entry("big.bin", FILE, 2 << 20, 1, 0o644)
    sink = Sink(str(tmp_path), [e], Progress())
    p = sink.open_span(e)
    assert p is not None
    release, writer = _writer_held_in_pwrite(monkeypatch, sink, p, b"x" * 1024)
    sink.close()  # the interrupt, mid-write
    os.fstat(p.fd)  # still open: the writer is inside
    assert not [n for n in os.listdir(tmp_path) if TEMP_MARK in n]  # the name is gone already
    release.set()
    writer.join(10)
    with pytest.raises(OSError):
        os.fstat(p.fd)  # closed by the writer as it left
    sink.write_at(p, 1024, b"y")  # a later write is refused, not sent to a stale number
    assert sink.failed == {"big.bin": "not received"}


def test_a_file_completed_under_a_writer_is_finished_by_that_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlapping spans (never sent by blit, possible from a hostile SOURCE) can complete a
    file while another stream still writes to it: it is renamed and its descriptor closed
    only when that write is over."""
    e = Entry("f.bin", FILE, 2048, 1, 0o644)
    sink = Sink(str(tmp_path), [e], Progress())
    p = sink.open_span(e)
    assert p is not None
    release, writer = _writer_held_in_pwrite(monkeypatch, sink, p, b"a" * 1024)
    sink.write_at(p, 1024, b"b" * 1024)
    sink.span_done(p, 1024, 1024)
    sink.span_done(p, 0, 2048)  # overlaps: counts the file complete, the writer still inside
    os.fstat(p.fd)  # not closed under the writer
    assert not (tmp_path / "f.bin").exists()
    release.set()
    writer.join(10)
    assert (tmp_path / "f.bin").read_bytes() == b"a" * 1024 + b"b" * 1024
    assert sink.done == {"f.bin"}
    with pytest.raises(OSError):
        os.fstat(p.fd)
    sink.close()
    assert sink.failed == {}


def _writer_held_in_pwrite(monkeypatch: pytest.MonkeyPatch, sink: Sink, p: Partial,
                           data: bytes) -> tuple[threading.Event, threading.Thread]:
    """A stream writing `data` at offset 0 of `p`, held inside its pwrite until released."""
    inside, release = threading.Event(), threading.Event()
    real_pwrite = os.pwrite

    def held_pwrite(fd: int, view: memoryview, offset: int) -> int:
        if offset == 0:
            inside.set()
            release.wait(10)
        return real_pwrite(fd, view, offset)

    monkeypatch.setattr(os, "pwrite", held_pwrite)
    writer = threading.Thread(target=sink.write_at, args=(p, 0, data))
    writer.start()
    assert inside.wait(10)
    return release, writer
