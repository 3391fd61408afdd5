"""The local carrier: moves payloads between two paths of one machine without the wire codec."""

from __future__ import annotations

import errno
import os
import threading

from .manifest import Entry
from .payload import Shard
from .sink import Partial, Sink
from .source import Source, SourceChanged, describe_error
from .tuning import Tuning
from .workers import run_all

_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
# Bytes per copy_file_range call: a stream copies whole files, and progress (the -p bar, the
# first-byte time) moves once per call.
COPY_STEP = 64 << 20


def copy_local(source: Source, sink: Sink, files: list[Entry], tuning: Tuning) -> None:
    """Copy `files` from `source` into `sink` with `tuning.streams` worker threads."""
    payloads = source.queue(files, tuning)
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set() and (payload := payloads.get()) is not None:
            if isinstance(payload, Shard):
                files = []
                for e in payload.entries:
                    if stop.is_set():
                        break
                    try:
                        files.append((e, source.read_small(e)))
                    except OSError as exc:
                        sink.fail(e.path, describe_error(exc))
                sink.write_files(files)
            else:
                _copy_span(source, sink, payload.entry, payload.offset, payload.length,
                           tuning.buffer)

    # Ctrl-C: each worker finishes the file in hand, so none is left half-written as a temp
    # file when the process exits; the caller's finish() then cleans up.
    run_all([worker] * tuning.streams, on_interrupt=stop.set)


def _copy_span(source: Source, sink: Sink, e: Entry, offset: int, length: int,
               buffer: int) -> None:
    try:
        fd = source.open(e)
    except OSError as exc:
        sink.fail(e.path, describe_error(exc))
        return
    try:
        p = sink.open_span(e)
        if p is None:
            return
        if _copy_range(sink, p, fd, offset, length, buffer):
            try:
                source.check(fd, e)
            except OSError as exc:
                sink.fail(e.path, describe_error(exc))
                return
            sink.span_done(p, offset, length)
    finally:
        os.close(fd)


def _copy_range(sink: Sink, p: Partial, fd: int, offset: int, length: int,
                buffer: int) -> bool:
    """copy_file_range (in-kernel, reflink-capable), else pread/pwrite; False when it failed."""
    end = offset + length
    try:
        with sink.writing(p) as usable:  # (the descriptor is not closed under the copy)
            while usable and offset < end:
                try:
                    n = os.copy_file_range(fd, p.fd, min(end - offset, COPY_STEP), offset,
                                           offset)
                except OSError as exc:
                    if exc.errno not in _NO_COPY_RANGE:
                        raise
                    break
                if n == 0:
                    raise SourceChanged(f"{p.entry.path}: shrank while being transferred")
                offset += n
                sink.progress.add_bytes(n)
        if not usable:
            return False
        while offset < end:
            data = os.pread(fd, min(buffer, end - offset), offset)
            if not data:
                raise SourceChanged(f"{p.entry.path}: shrank while being transferred")
            sink.write_at(p, offset, data)
            offset += len(data)
    except OSError as exc:
        sink.fail(p.entry.path, describe_error(exc))
        return False
    return not p.failed
