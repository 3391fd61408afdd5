"""Transfer sessions held by the daemon, and the one-time data-plane tokens that open them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from blit_shared.destination import Destination
from blit_shared.errors import Conflict, Forbidden, NotFound, UsageError
from blit_shared.excludes import Excludes
from blit_shared.layout import existing_kind, place
from blit_shared.manifest import DIR, FILE, Entry, Incoming
from blit_shared.options import Options
from blit_shared.paths import check_relpath, join
from blit_shared.payload import Payload
from blit_shared.progress import Progress
from blit_shared.source import Source, scan_source
from blit_shared.transport import TOKEN_BYTES
from blit_shared.tuning import Tuning

from .config import Module

TOKEN_TTL = 60.0
# A session nobody asked about and whose streams moved nothing for this long is abandoned.
SESSION_IDLE = 3600.0
KEEP_SUMMARIES = 1000

log = logging.getLogger("blitd")


@dataclass
class Session:
    """One transfer; the daemon is its SOURCE (pull) or its DESTINATION (push)."""

    id: str
    direction: str
    module: Module
    options: Options
    progress: Progress
    destination: Destination | None = None
    source: Source | None = None
    files: list[Entry] = field(default_factory=list)
    tuning: Tuning | None = None
    queue: SimpleQueue[Payload | None] | None = None
    carrier: str | None = None
    streams_expected: int = 0
    streams_done: int = 0
    stream_errors: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    aborted: bool = False
    fallback: bool = False  # granted TCP, moved to HTTP because the client could not reach it
    negotiating: bool = False
    scanning: Future[Source] | None = None  # pull: the SOURCE scan, running in the background
    incoming: Incoming = field(default_factory=Incoming)  # push: the manifest, part by part
    # pull: (entries the background scan has ready, whether it ended), one tuple so a reader
    # never pairs a new count with an old flag
    scanned: tuple[int, bool] = (0, False)
    cuts: list[int] = field(default_factory=list)  # pull: where the scan's parts ended
    need_more: bool = False  # pull: the DESTINATION sends its need list in parts, not all yet
    fresh: bool = False  # push: nothing at the destination yet, so the manifest may come in parts
    parts_lock: threading.Lock = field(default_factory=threading.Lock)
    created: float = field(default_factory=time.monotonic)
    touched: float = field(default_factory=time.monotonic)  # the last request for it (or byte)
    _moved: tuple[int, int] = (0, 0)  # (bytes done, streams done) when last looked at
    events: list[dict[str, Any]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    async def ready_source(self) -> Source:
        """The pull's SOURCE, once its background scan is done."""
        if self.scanning is not None:
            # shield: one waiter cancelled (a client gone) must not cancel the shared scan
            await asyncio.shield(asyncio.wrap_future(self.scanning))
        if self.source is None:
            raise Conflict("only a pull has a SOURCE")
        return self.source

    def scan_part(self, entries: int, done: bool) -> None:
        """The background scan has `entries` ready (all of them when `done`)."""
        if entries > (self.cuts[-1] if self.cuts else 0):
            self.cuts.append(entries)
        self.scanned = (entries, done)

    async def wait_part(self, offset: int, timeout: float) -> tuple[int, bool]:
        """Wait, without holding a worker thread, until the scan has entries past `offset`
        or has ended: (ready, ended). Polls: a scan yields a part every few milliseconds."""
        deadline = time.monotonic() + timeout
        while True:
            ready, ended = self.scanned
            if ready > offset or ended or time.monotonic() > deadline:
                return ready, ended
            await asyncio.sleep(0.002)

    def record(self, event: dict[str, Any]) -> None:
        """Progress listener: keep what the client shows in -v (links, deletions, failures)."""
        if event["event"] == "fail" or event.get("action") in ("linked", "deleted"):
            with self.cond:
                self.events.append(event)

    def drain_events(self) -> list[dict[str, Any]]:
        with self.cond:
            out, self.events = self.events, []
        return out

    @property
    def role(self) -> str:
        return "destination" if self.direction == "push" else "source"

    def idle_for(self, now: float) -> float:
        """Seconds since the last request for this session or the last move of its streams
        (a long transfer is not idle, however old)."""
        moved = (self.progress.bytes_done, self.streams_done)
        if moved != self._moved:
            self._moved, self.touched = moved, now
        return now - self.touched

    def end_need(self) -> None:
        """No more need parts will come: the SOURCE's streams end after what is queued."""
        with self.parts_lock:
            if self.need_more and self.queue is not None and self.tuning is not None:
                self.need_more = False
                Source.end(self.queue, self.tuning.streams)

    def abandon(self) -> None:
        """Stop a transfer whose client gave up (DELETE) or went away: its SOURCE streams end,
        and a DESTINATION keeps what is complete and drops the rest (Destination.interrupt:
        temps removed, staged directories put in place)."""
        self.aborted = True
        self.end_need()
        if self.destination is not None and self.summary is None:
            self.destination.interrupt()

    def stream_finished(self, error: str | None = None) -> None:
        with self.cond:
            self.streams_done += 1
            if error:
                self.stream_errors.append(error)
            self.cond.notify_all()
            ended = self.streams_done >= self.streams_expected
        if ended and self.stream_errors and self.destination is not None:
            # The SOURCE went away mid-stream: drop incomplete temp files now, not at finish,
            # which may never come.
            self.destination.interrupt()

    async def wait_streams(self, stall: float) -> bool:
        """Wait, without holding a worker thread, until every stream ended; False once no byte
        moved for `stall` seconds (e.g. a client that never opened its streams)."""
        last, moved_at = -1, time.monotonic()
        while self.streams_done < self.streams_expected:
            if self.aborted:
                return False
            done = self.progress.bytes_done
            if done != last:
                last, moved_at = done, time.monotonic()
            elif time.monotonic() - moved_at > stall:
                return False
            await asyncio.sleep(0.02)
        return True

    def status(self) -> dict[str, Any]:
        snap = self.progress.snapshot()
        return {"id": self.id, "direction": self.direction, "module": self.module.name,
                "role": self.role, "phase": snap.phase, "carrier": self.carrier,
                "files_total": snap.files_total, "bytes_total": snap.bytes_total,
                "files_done": snap.files_done, "bytes_done": snap.bytes_done,
                "elapsed_s": round(snap.elapsed, 3), "finished": self.summary is not None}


_SCANS = ThreadPoolExecutor(4, thread_name_prefix="blit-source-scan")


def _recorder(session: Session) -> Callable[[dict[str, Any]], None]:
    """The session's progress listener, holding it weakly: Session -> Progress -> Session
    was a cycle, so a finished session (its Trees' descriptors too) waited for the cyclic
    GC instead of going when its last reference did."""
    ref = weakref.ref(session)

    def record(event: dict[str, Any]) -> None:
        live = ref()
        if live is not None:
            live.record(event)

    return record


def module_path(module: Module, rel: str) -> str:
    """`rel` inside the module, refusing paths that escape it through symlinks."""
    check_relpath(rel)
    path = join(module.path, rel)
    probe = path
    while not os.path.lexists(probe) and probe != module.path:
        probe = os.path.dirname(probe)
    real = os.path.realpath(probe)
    if real != module.path and not real.startswith(module.path + os.sep):
        raise Forbidden(f"path {rel!r} leaves module {module.name!r}")
    return path


class Sessions:
    """The daemon's open sessions and outstanding tokens (thread-safe)."""

    def __init__(self) -> None:
        # Told of each session abandoned when idle (the daemon counts and logs it as aborted).
        self.on_abandoned: Callable[[Session], None] | None = None
        self._sessions: dict[str, Session] = {}
        self._tokens: dict[bytes, tuple[bytes, str, float]] = {}
        self._summaries: dict[str, tuple[Module, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> Session:
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            raise NotFound(f"no transfer {sid!r}")
        return s

    def drop(self, sid: str) -> None:
        with self._lock:
            self._drop_locked({sid})

    def _drop_locked(self, sids: set[str]) -> None:
        """Forget these sessions and their unclaimed tokens (under _lock)."""
        for sid in sids:
            self._sessions.pop(sid, None)
        self._tokens = {k: v for k, v in self._tokens.items() if v[1] not in sids}

    def retire(self, session: Session) -> None:
        """A finished session gives back its memory (manifest, plan); its summary stays."""
        assert session.summary is not None
        self.drop(session.id)
        with self._lock:
            self._summaries[session.id] = (session.module, session.summary)
            while len(self._summaries) > KEEP_SUMMARIES:
                self._summaries.pop(next(iter(self._summaries)))

    def summary(self, sid: str) -> tuple[Module, dict[str, Any]] | None:
        with self._lock:
            return self._summaries.get(sid)

    def active(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def _add(self, session: Session) -> Session:
        with self._lock:
            now = time.monotonic()
            idle = [s for s in self._sessions.values() if s.idle_for(now) > SESSION_IDLE]
            if idle:  # taken out here: a concurrent open cannot abandon one twice
                self._drop_locked({s.id for s in idle})
            self._sessions[session.id] = session
        for s in idle:  # (outside the lock: a DESTINATION's interrupt touches its files)
            log.warning("transfer %s abandoned: idle for %.0f s", s.id, now - s.touched)
            try:
                s.abandon()
                if self.on_abandoned is not None:
                    self.on_abandoned(s)
            except Exception:  # never the new session's failure
                log.exception("transfer %s: abandoning it failed", s.id)
        return session

    # -- opening -----------------------------------------------------------------------------
    def open_push(self, module: Module, rel: str, trailing: bool, src_kind: str, src_name: str,
                  contents: bool, options: Options) -> Session:
        if module.read_only:
            raise Forbidden(f"module {module.name!r} is read-only")
        if src_kind not in (DIR, FILE):
            raise UsageError("source kind must be 'd' or 'f'")
        check_relpath(src_name)
        if not src_name or "/" in src_name:
            raise UsageError("source name must be one path component")
        base = module_path(module, rel)
        where = place(base + ("/" if trailing else ""), existing_kind(base), src_kind=src_kind,
                      src_name=src_name, contents=contents)
        # The name the source adds (DST/NAME) may itself be a link out of the module.
        inner = os.path.relpath(where.root, module.path)
        module_path(module, "" if inner == "." else inner)
        progress = Progress()
        session = Session(secrets.token_hex(16), "push", module, options, progress)
        progress.listener = _recorder(session)
        dest = Destination(where.root, progress, excludes=Excludes(options.excludes),
                           mirror=options.mirror, checksum=options.checksum,
                           single_name=where.single_name,
                           allow_empty_source=options.allow_empty_source,
                           max_delete=options.max_delete, dry_run=options.dry_run)
        session.destination = dest
        session.fresh = where.fresh()
        self._add(session)
        dest.own.start()  # overlaps the client's own SOURCE scan
        return session

    def open_pull(self, module: Module, rel: str, trailing: bool,
                  options: Options) -> tuple[Session, str]:
        """A pull session and its source kind ("d" or "f"). The scan runs in the background:
        the client places and scans its own destination meanwhile (Session.ready_source)."""
        path = module_path(module, rel)
        try:
            st = os.stat(path) if trailing or rel == "" else os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{module.name}/{rel}: no such file or directory") from None
        progress = Progress()
        progress.set_phase("scan")
        is_dir = stat.S_ISDIR(st.st_mode)
        session = Session(secrets.token_hex(16), "pull", module, options, progress)

        # A lone file (or link) is named as itself: a link is sent as a link, never followed.
        parts = scan_source(path, is_dir, progress, excludes=Excludes(options.excludes),
                            checksum=options.checksum, verify=options.verify,
                            name=os.path.basename(path))

        def publish(source: Source, done: bool) -> None:
            session.source = source
            session.scan_part(len(source.manifest.entries), done)

        if is_dir and not options.checksum:
            # The first part before answering, as a push's client scans its own first part
            # right after opening: a fresh DESTINATION can plan at once (first byte parity).
            publish(*next(parts))

        def run() -> Source:
            try:
                for source, done in parts:
                    publish(source, done)
            finally:
                session.scan_part(session.scanned[0], True)  # a failed scan ends too
            return session.source

        self._add(session)
        # A few scans at a time (a --checksum scan hashes the whole tree): more opens queue.
        session.scanning = _SCANS.submit(run)
        return session, DIR if is_dir else FILE

    # -- tokens ------------------------------------------------------------------------------
    def grant(self, session: Session, count: int) -> list[str]:
        tokens = []
        with self._lock:
            expiry = time.monotonic() + TOKEN_TTL
            for _ in range(count):
                token = secrets.token_bytes(TOKEN_BYTES)
                self._tokens[hashlib.sha256(token).digest()] = (token, session.id, expiry)
                tokens.append(token.hex())
        return tokens

    def revoke_all(self, session: Session, granted: int) -> bool:
        """Withdraw every token of the session if none was claimed yet (a client falling back
        to HTTP); False, withdrawing nothing, once a stream has started."""
        with self._lock:
            keys = [k for k, (_t, sid, _e) in self._tokens.items() if sid == session.id]
            if len(keys) != granted:
                return False
            for k in keys:
                del self._tokens[k]
        return True

    def claim(self, token: bytes) -> Session | None:
        """The session a token opens; single use, expiring, compared in constant time."""
        key = hashlib.sha256(token).digest()
        with self._lock:
            held = self._tokens.pop(key, None)
            session = self._sessions.get(held[1]) if held else None
        if held is None or session is None:
            return None
        stored, _sid, expiry = held
        if not hmac.compare_digest(stored, token) or time.monotonic() > expiry:
            return None
        return session

    def check_open(self, session: Session) -> None:
        if session.summary is not None:
            raise Conflict(f"transfer {session.id} is already finished")
