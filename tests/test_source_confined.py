"""The SOURCE reads beneath its root: a directory swapped for a link after the scan cannot make
blit send a file from elsewhere, even one with the scanned size and mtime."""

from __future__ import annotations

import os
from pathlib import Path

from blit_shared import wire
from blit_shared.manifest import FILE, scan
from blit_shared.source import Source, stream_frames
from blit_shared.tuning import tune


def test_parent_swapped_for_a_link_after_the_scan_is_not_followed(tmp_path: Path) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "a").mkdir(parents=True)
    outside.mkdir()
    (src / "a" / "f").write_text("inner")
    (outside / "f").write_text("SECRT")  # same size
    mtime = (src / "a" / "f").stat().st_mtime_ns
    os.utime(outside / "f", ns=(mtime, mtime))  # and the same mtime: only the path differs
    manifest = scan(str(src))
    (src / "a").rename(tmp_path / "moved")
    os.symlink(outside, src / "a")

    files = [e for e in manifest.entries if e.kind == FILE]
    source = Source(str(src), manifest)
    stream = b"".join(f for f in stream_frames(source, source.queue(files, tune([5])))
                      if isinstance(f, bytes))
    assert b"SECRT" not in stream
    decoder = wire.Decoder()
    decoder.feed(stream)
    records = []
    while (ev := decoder.next_event()) is not wire.NEED_DATA:
        if isinstance(ev, wire.Record):
            records.append((ev.type, ev.path))
    assert (wire.FAIL, "a/f") in records
