"""End-to-end verification: what the DESTINATION received must hash like what the SOURCE sent;
a mismatch fails the file and the CLI resends it once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from blit_shared import tarshard, wire
from blit_shared.hashing import digest
from blit_shared.manifest import Entry
from blit_shared.progress import Progress
from blit_shared.receiver import VERIFY_FAILED, Receiver
from blit_shared.sink import Sink
from tests.daemon import running_daemon
from tests.helpers import assert_same_tree, blit

MiB = 1 << 20


def feed_all(receiver: Receiver, *records: bytes) -> None:
    receiver.feed(wire.PREAMBLE)
    for rec in records:
        receiver.feed(rec)
    receiver.feed(wire.encode_end(len(records)))
    receiver.close()


def test_a_span_changed_in_transit_fails_its_file(tmp_path: Path) -> None:
    data = os.urandom(4096)
    entry = Entry("f.bin", "f", len(data), 1, 0o644)
    sink = Sink(str(tmp_path), [entry], Progress())
    tampered = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]  # (b"X" was it 1 in 256)
    feed_all(Receiver(sink),
             wire.encode_header(wire.Record(wire.FILE, "f.bin", 4096, 0, 4096)) + tampered,
             wire.encode_done("f.bin", 4096, 0, digest(data)))
    sink.close()
    assert sink.failed == {"f.bin": VERIFY_FAILED}
    assert not (tmp_path / "f.bin").exists()


def test_a_shard_changed_in_transit_fails_its_members(tmp_path: Path) -> None:
    entries = [Entry(f"s{i}", "f", 10, 1, 0o644) for i in range(3)]
    body = bytearray()
    for e in entries:
        tarshard.encode_member(body, e.path, b"0123456789", e.mode, 0)
    tarshard.finish(body)
    sent = digest(body)
    body[600] ^= 0xFF  # a bit flip inside the first member's data
    sink = Sink(str(tmp_path), entries, Progress())
    feed_all(Receiver(sink),
             wire.encode_header(wire.Record(wire.SHARD, "", 3, 0, len(body))) + bytes(body),
             wire.encode_done("", 3, 0, sent))
    assert set(sink.failed) == {"s0", "s1", "s2"}
    assert not list(tmp_path.iterdir())


def test_without_verify_the_same_stream_is_accepted(tmp_path: Path) -> None:
    data = os.urandom(4096)
    entry = Entry("f.bin", "f", len(data), 1, 0o644)
    sink = Sink(str(tmp_path), [entry], Progress())
    feed_all(Receiver(sink, verify=False),
             wire.encode_header(wire.Record(wire.FILE, "f.bin", 4096, 0, 4096)) + data,
             wire.encode_done("f.bin", 4096, 0, digest(b"other")))
    assert sink.done == {"f.bin"}


def tree(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    for i in range(3):
        (root / f"big{i}.bin").write_bytes(os.urandom(3 * MiB))
    (root / "d" / "small.txt").write_text("small")
    return root


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_corruption_is_detected_and_resent_once(tmp_path: Path, direction: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    failpoint = tmp_path / "failpoint"
    failpoint.mkdir()
    module = tmp_path / "module"
    module.mkdir()
    if direction == "pull":
        src = tree(module / "src")
        monkeypatch.setenv("BLIT_FAILPOINT_CORRUPT", str(failpoint))  # the daemon sends
    else:
        src = tree(tmp_path / "src")
    with running_daemon(tmp_path, "--module", f"m={module}") as d:
        monkeypatch.delenv("BLIT_FAILPOINT_CORRUPT", raising=False)
        env = {"BLIT_FAILPOINT_CORRUPT": str(failpoint)} if direction == "push" else {}
        if direction == "push":
            args, landed = [str(src) + "/", d.url("m", "dst")], module / "dst"
        else:
            args, landed = [d.url("m", "src/"), str(tmp_path / "dst")], tmp_path / "dst"
        out = blit("copy", "--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    summary = lines[-1]
    assert summary["resent"] == 3 and summary["files_failed"] == 0
    assert summary["files_transferred"] == 4
    assert any(x.get("reason") == VERIFY_FAILED for x in lines if x["event"] == "fail")
    assert len(list(failpoint.iterdir())) == 3
    assert_same_tree(src, landed)


def test_a_span_read_by_its_carrier_is_hashed_once_and_alike(tmp_path: Path) -> None:
    """The HTTP carrier reads a span to send it: the DONE digest comes from that read, and is
    the one the SOURCE would compute by reading the span again."""
    from blit_shared.source import FileSpan, read_span, span_digest

    data = os.urandom(3 * MiB + 123)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        span = FileSpan(fd, MiB - 7, 2 * MiB, verify=True)
        assert b"".join(read_span(span, 64 * 1024)) == data[MiB - 7:3 * MiB - 7]
        assert span.digest == span_digest(fd, MiB - 7, 2 * MiB) == digest(data[MiB - 7:3 * MiB - 7])
        unverified = FileSpan(fd, 0, MiB)
        assert len(b"".join(read_span(unverified, MiB))) == MiB and unverified.digest is None
    finally:
        os.close(fd)


def test_the_digest_of_a_span_past_the_end_is_of_what_is_sent_for_it(tmp_path: Path) -> None:
    """A file truncated under a transfer: the carrier sends zeros for the missing bytes, and
    the span's digest is theirs (computed by reading, never through a mapping, which would
    kill the process with SIGBUS)."""
    from blit_shared.source import FileSpan, read_span, span_digest

    data = os.urandom(MiB + 5)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        os.truncate(tmp_path / "f", MiB // 2)
        span = FileSpan(fd, 100, MiB, verify=True)
        sent = b"".join(read_span(span, 64 * 1024))
        assert sent == data[100:MiB // 2] + bytes(MiB - (MiB // 2 - 100))
        assert span_digest(fd, 100, MiB) == span.digest == digest(sent)
        assert span_digest(fd, 0, 0) == digest(b"")
    finally:
        os.close(fd)
