"""The receiver: writes file bytes to temp names and renames them into place only when complete."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import tarshard
from .beneath import KEEP_DIRS, Tree
from .errors import ProtocolError
from .manifest import Entry
from .paths import check_relpath
from .progress import Progress
from .staging import Staging
from .temps import temp_name
from .workers import on_two_threads


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()


@dataclass(slots=True)
class Partial:
    """A file being assembled from spans, possibly by several streams at once."""

    entry: Entry
    temp: str
    fd: int
    received: int = 0
    spans: set[int] = field(default_factory=set)
    failed: bool = False
    complete: bool = False  # every byte counted: to be renamed into place (no new writer)
    # Streams writing to `fd` now (Sink.writing): the last one out closes a failed file's fd,
    # or settles a complete one.
    writers: int = 0
    closed: bool = False


class Sink:
    """Writes the files of one plan under `root`; thread-safe, shared by every stream."""

    def __init__(self, root: str, expected: list[Entry], progress: Progress,
                 staging: Staging | None = None) -> None:
        self.root = root
        # Every write resolves beneath this handle, never via a link.
        self.tree = Tree(root, keep_dirs=KEEP_DIRS, staging=staging)
        self.staging = staging
        self._writing: set[str] = set()  # files being written in a staged directory
        self.expected = {e.path: e for e in expected}
        self.progress = progress
        self.done: set[str] = set()
        self.failed: dict[str, str] = {}
        self._partials: dict[str, Partial] = {}
        self._dead: list[Partial] = []
        self._lock = threading.Lock()

    def expect(self, files: list[Entry]) -> None:
        """More files of the plan (the next part of a manifest), before any of them is sent."""
        with self._lock:
            self.expected.update((e.path, e) for e in files)

    # -- lookups -----------------------------------------------------------------------------
    def entry(self, path: str, size: int) -> Entry:
        check_relpath(path)
        e = self.expected.get(path)
        if e is None:
            raise ProtocolError(f"unexpected file in stream: {path!r}")
        if e.size != size:
            raise ProtocolError(f"size of {path!r} differs from the plan")
        return e

    def outstanding(self) -> int:
        """Files expected that are neither written nor failed yet."""
        return len(self.expected) - len(self.done) - len(self.failed)

    def wanted(self, path: str) -> bool:
        return path not in self.failed and path not in self.done

    def _staged(self, path: str) -> bool:
        """`path` goes in a staged directory: written under its final name (staging.py)."""
        return self.staging is not None and self.staging.holds(path)

    # -- whole small files -------------------------------------------------------------------
    def write_file(self, entry: Entry, data: bytes | memoryview) -> None:
        path = entry.path
        if not self._staged(path):
            if self.wanted(path):
                self._write_whole(entry, data, temp_name(path))
            return
        # In a staged directory the file is written under its final name; the directory is
        # put in place only after this writer lets go of it (close() leaves it to the writer).
        with self._lock:
            if path in self.failed or path in self.done or path in self._writing:
                return
            self._writing.add(path)
        try:
            self._write_whole(entry, data, path)
        finally:
            self._release(path)

    def _release(self, path: str) -> None:
        """A writer lets go of `path` (written or failed): it is settled, exactly once."""
        with self._lock:
            self._writing.discard(path)
        if self.staging is not None:
            self.staging.settle(path)

    def _write_whole(self, entry: Entry, data: bytes | memoryview, temp: str) -> None:
        try:
            fd = self.tree.create(temp, entry.mode & 0o777)
        except OSError as exc:
            self.fail(entry.path, exc.strerror or str(exc))
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            self._discard(fd, temp)
            self.fail(entry.path, exc.strerror or str(exc))
            return
        try:
            self._finish(fd, temp, entry)
        except OSError as exc:
            self.fail(entry.path, exc.strerror or str(exc))
            return
        self.progress.add_bytes(entry.size)
        self._completed(entry)

    def write_shard(self, tar_bytes: bytes | bytearray, count: int,
                    checked: bool = False) -> None:
        """Unpack a tar shard; members must be regular files that the plan expects.
        `checked`: its digest matched the SOURCE's (tarshard.decode skips header sums)."""
        view = memoryview(tar_bytes)
        files = [(self.entry(name, size), view[offset:offset + size])
                 for name, offset, size in tarshard.decode(view, checked)]
        if len(files) != count:
            raise ProtocolError(f"tar shard holds {len(files)} files, header said {count}")
        self.write_files(files)

    def write_files(self, files: list[tuple[Entry, bytes | memoryview]]) -> None:
        """Write whole small files, on this thread and a helper at once (workers.on_two_threads:
        each file is five GIL-free syscalls)."""
        on_two_threads(self._write_one, files, self.tree.release_thread)

    def _write_one(self, item: tuple[Entry, bytes | memoryview]) -> None:
        self.write_file(*item)

    # -- spans of larger files ---------------------------------------------------------------
    def open_span(self, entry: Entry) -> Partial | None:
        """The shared Partial for `entry`, created on first use; None when it already failed."""
        with self._lock:
            if not self.wanted(entry.path):
                return None
            p = self._partials.get(entry.path)
            if p is None:
                temp = entry.path if self._staged(entry.path) else temp_name(entry.path)
                try:
                    fd = self.tree.create(temp, entry.mode & 0o777)
                except OSError as exc:
                    self._fail_locked(entry.path, exc.strerror or str(exc))
                    return None
                p = self._partials[entry.path] = Partial(entry, temp, fd)
            return p

    def write_at(self, p: Partial, offset: int, data: bytes | memoryview) -> None:
        with self.writing(p) as usable:
            if not usable:
                return
            try:
                view = memoryview(data)
                while view:
                    n = os.pwrite(p.fd, view, offset)
                    view, offset = view[n:], offset + n
            except OSError as exc:
                self.fail(p.entry.path, exc.strerror or str(exc))
                return
        self.progress.add_bytes(len(data))

    @contextmanager
    def writing(self, p: Partial) -> Iterator[bool]:
        """Hold `p.fd` for writing; yields False (write nothing) once the file failed or is
        complete. Its descriptor is closed, or the file renamed into place, only once no
        writer holds it: an interrupt (close()) or overlapping spans must not close it under
        a write, whose number could by then name another file."""
        with self._lock:
            usable = not (p.failed or p.complete)
            if usable:
                p.writers += 1
        try:
            yield usable
        finally:
            if usable:
                with self._lock:
                    p.writers -= 1
                    if p.failed:
                        self._close_unused(p)
                    # Once: no writer enters a complete file, and span_done settles it only
                    # when none was inside.
                    settle = p.complete and not p.writers
                if settle:
                    self._settle(p)

    def span_done(self, p: Partial, offset: int, length: int) -> None:
        """Count a finished span; the last one renames the file into place."""
        with self._lock:
            if p.failed:
                return
            if offset in p.spans:
                raise ProtocolError(f"span at {offset} of {p.entry.path!r} sent twice")
            p.spans.add(offset)
            p.received += length
            if p.received < p.entry.size:
                return
            del self._partials[p.entry.path]
            self._writing.add(p.entry.path)  # in hand until renamed: settled once, below
            p.complete = True
            if p.writers:  # (overlapping spans, never sent by blit): the last writer settles
                return
        self._settle(p)

    def _settle(self, p: Partial) -> None:
        """Rename a complete file into place (or fail it), once."""
        try:
            self._finish(p.fd, p.temp, p.entry)
        except OSError as exc:
            self.fail(p.entry.path, exc.strerror or str(exc))
        else:
            self._completed(p.entry)
        finally:
            self._release(p.entry.path)

    # -- outcomes ----------------------------------------------------------------------------
    def _finish(self, fd: int, temp: str, entry: Entry) -> None:
        """Apply metadata, close and rename; owns `fd` and `temp` from here on."""
        try:
            if entry.mode & (UMASK | 0o7000):  # created with `mode & ~umask`: fix what it lost
                os.fchmod(fd, entry.mode)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        except OSError:
            self._discard(fd, temp)
            raise
        os.close(fd)
        if temp == entry.path:  # in a staged directory: in place once the directory is
            return
        try:
            self.tree.rename(temp, entry.path)
        except OSError:
            self._unlink(temp)
            raise

    def _completed(self, entry: Entry) -> None:
        with self._lock:
            self.done.add(entry.path)
        self.progress.file_done(entry.path, entry.size)

    def fail(self, path: str, reason: str) -> None:
        with self._lock:
            self._fail_locked(path, reason)

    def _fail_locked(self, path: str, reason: str) -> None:
        if path in self.failed:
            return
        self.failed[path] = reason
        p = self._partials.pop(path, None)
        if p is not None:
            # Another stream may be writing to p.fd right now: unlink the name at once, but
            # close the descriptor only in close(), so the number cannot be reused under it.
            p.failed = True
            self._unlink(p.temp)
            self._dead.append(p)
        if (self.staging is not None and path in self.expected and path not in self._writing
                and path not in self.done):  # a writer in hand settles its file when it lets go
            self.staging.settle(path)
        self.progress.file_failed(path, reason)

    def close(self) -> None:
        """Abort what is still incomplete: temp files go, the final names stay untouched. A
        descriptor a stream is writing to is closed by that stream as it leaves write_at."""
        with self._lock:
            partials, self._partials = list(self._partials.values()), {}
            dead, self._dead = self._dead, []
            for p in partials:
                p.failed = True
                self._close_unused(p)
            for p in dead:  # unlinked when they failed: in a staged directory that name is final
                self._close_unused(p)
        for p in partials:
            self._unlink(p.temp)
        for path in self.expected:  # (a file in hand settles itself: done, or failed)
            if path not in self.done and path not in self.failed and path not in self._writing:
                self.fail(path, "not received")

    @staticmethod
    def _close_unused(p: Partial) -> None:
        """Close a failed Partial's descriptor once no stream is writing to it (under _lock)."""
        if not p.closed and p.writers == 0:
            p.closed = True
            with contextlib.suppress(OSError):
                os.close(p.fd)

    def _discard(self, fd: int, temp: str) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)
        self._unlink(temp)

    def _unlink(self, temp: str) -> None:
        with contextlib.suppress(OSError):
            self.tree.unlink(temp)
