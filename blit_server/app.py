"""The control plane: a Starlette app of JSON endpoints under /v1, plus the HTTP carrier."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from blit_shared import __version__
from blit_shared.errors import BlitError, Conflict, NotFound, ProtocolError, UsageError
from blit_shared.manifest import Manifest
from blit_shared.options import Options
from blit_shared.paths import check_relpath
from blit_shared.receiver import Receiver
from blit_shared.source import stream_frames
from blit_shared.transport import http_chunks
from blit_shared.tuning import tune

from .auth import authorize
from .config import DaemonConfig, Module
from .dataplane import DataPlane
from .http import (
    JSON,
    MANIFEST_BODY,
    error_response,
    field,
    on_blit_error,
    on_crash,
    on_http_error,
    read_json,
)
from .sessions import Session, Sessions, module_path

log = logging.getLogger("blitd")
FEED_BATCH = 1 << 20
DISCARD_CAP = 256 << 20  # body bytes read and dropped after an early error, at most
DISCARD_IDLE = 0.5       # ...and for no longer than this without a new chunk


class Daemon:
    """Holds the configuration, the sessions and the data plane the endpoints use."""

    def __init__(self, config: DaemonConfig, sessions: Sessions,
                 data_plane: DataPlane | None) -> None:
        self.config = config
        self.sessions = sessions
        self.data_plane = data_plane



def _daemon(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


def _session(request: Request) -> Session:
    daemon = _daemon(request)
    s = daemon.sessions.get(request.path_params["id"])
    authorize(request, daemon.config, s.module)
    return s


def _retired(request: Request) -> dict[str, Any] | None:
    """The summary of a finished transfer, for a caller allowed to see it."""
    daemon = _daemon(request)
    done = daemon.sessions.summary(request.path_params["id"])
    if done is None:
        return None
    module, summary = done
    authorize(request, daemon.config, module)
    return summary


def _module(request: Request, name: str) -> Module:
    """The named module, for a caller allowed to use it (unknown names only tell the caller
    who passes the daemon's own check)."""
    config = _daemon(request).config
    module = config.modules.get(name)
    if module is None:
        authorize(request, config)
        raise NotFound(f"unknown module {name!r}")
    authorize(request, config, module)
    return module


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok", "version": __version__})


async def list_modules(request: Request) -> Response:
    authorize(request, _daemon(request).config)
    mods = _daemon(request).config.modules.values()
    return JSON({"modules": [m.to_json() for m in mods]})


async def list_dir(request: Request) -> Response:
    module = _module(request, request.path_params["name"])
    rel = request.query_params.get("path", "").strip("/")
    path = module_path(module, rel)

    def listing() -> list[dict[str, Any]]:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{module.name}/{rel}: no such file or directory") from None
        if not stat.S_ISDIR(st.st_mode):
            return [_entry_json(os.path.basename(path), st)]
        out = []
        with os.scandir(path) as it:
            for d in sorted(it, key=lambda d: d.name):
                out.append(_entry_json(d.name, d.stat(follow_symlinks=False)))
        return out

    return JSON({"module": module.name, "path": rel, "entries": await run_in_threadpool(listing)})


def _entry_json(name: str, st: os.stat_result) -> dict[str, Any]:
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
    return {"name": name, "kind": kind, "size": st.st_size if kind == "f" else 0,
            "mtime_ns": st.st_mtime_ns, "mode": stat.S_IMODE(st.st_mode)}


async def open_transfer(request: Request) -> Response:
    daemon = _daemon(request)
    data = await read_json(request)
    direction = field(data, "direction", str)
    module = _module(request, field(data, "module", str))
    rel = field(data, "path", str, "").strip("/")
    trailing = field(data, "trailing_slash", bool, False)
    options = Options.from_json(field(data, "options", dict, {}))
    if direction == "push":
        src = field(data, "source", dict)
        s = await run_in_threadpool(
            daemon.sessions.open_push, module, rel, trailing, field(src, "kind", str),
            field(src, "name", str), field(src, "contents", bool), options)
        assert s.destination is not None
        return JSON({"id": s.id, "direction": "push",
                     "single_name": s.destination.single_name}, status_code=201)
    if direction == "pull":
        s = await run_in_threadpool(daemon.sessions.open_pull, module, rel, trailing, options)
        assert s.source is not None
        entries = s.source.manifest.entries
        kind = "d" if entries and entries[0].path == "" else "f"
        name = os.path.basename(rel) if rel else module.name
        return JSON({"id": s.id, "direction": "pull", "source": {"kind": kind, "name": name}},
                    status_code=201)
    raise UsageError("direction must be 'push' or 'pull'")


async def post_manifest(request: Request) -> Response:
    """push: the SOURCE's manifest arrives; the daemon (DESTINATION) plans."""
    s = _session(request)
    if s.direction != "push" or s.destination is None:
        raise Conflict("only a push takes a manifest")
    manifest = Manifest.from_wire(await read_json(request, MANIFEST_BODY))
    dest = s.destination
    plan = await run_in_threadpool(dest.make_plan, manifest)
    body: dict[str, Any] = {"need": plan.need, "counts": plan.counts(),
                            "deletions_skipped": dest.deletions_skipped}
    if s.options.dry_run:
        body["report"] = plan.report(dest.deletions_skipped is None)
    return JSON(body)


async def get_manifest(request: Request) -> Response:
    """pull: the daemon (SOURCE) hands its manifest to the client (DESTINATION)."""
    s = _session(request)
    if s.source is None:
        raise Conflict("only a pull has a manifest to fetch")
    return JSON(s.source.manifest.to_wire())


async def negotiate(request: Request) -> Response:
    daemon = _daemon(request)
    s = _session(request)
    daemon.sessions.check_open(s)
    if s.carrier is not None:
        raise Conflict("transfer already negotiated")
    data = await read_json(request, MANIFEST_BODY)
    force_http = field(data, "force_http", bool, False) or daemon.config.force_http
    grant_events: list[dict[str, Any]] = []
    if s.source is not None:
        name = field(data, "name", (str, type(None)), None)
        if name is not None and s.source.single_file is not None:
            check_relpath(name)
            if "/" in name or not name:
                raise ProtocolError("name must be one path component")
            s.source.manifest.entries[0].path = name  # the DESTINATION names a lone file
        need = field(data, "need", list)
        s.files = await run_in_threadpool(s.source.resolve_need, need)
    else:
        assert s.destination is not None
        if s.destination.plan is None:
            raise Conflict("send the manifest first")
        await run_in_threadpool(s.destination.prepare)
        s.files = s.destination.plan.files
        grant_events = s.drain_events()
    s.tuning = tune([e.size for e in s.files], streams=s.options.streams)
    if s.source is not None:
        s.queue = s.source.queue(s.files, s.tuning)
    s.streams_expected = s.tuning.streams
    s.progress.set_phase("transfer")
    grant: dict[str, Any] = {"streams": s.tuning.streams, "tuning": s.tuning.to_json(),
                             "events": grant_events}
    if force_http or daemon.data_plane is None:
        s.carrier = "http"
        return JSON({"carrier": "http", **grant})
    s.carrier = "tcp"
    host = daemon.config.advertise_host or request.url.hostname or daemon.config.bind
    tokens = daemon.sessions.grant(s, s.tuning.streams)
    return JSON({"carrier": "tcp", "host": host, "port": daemon.data_plane.port,
                 "tokens": tokens, "tls": daemon.data_plane.tls is not None, **grant})


async def put_stream(request: Request) -> Response:
    """HTTP carrier, push: one record stream as the request body."""
    timeout = _daemon(request).config.timeout
    try:
        return await _receive_stream(request, timeout)
    except BlitError as exc:
        # Refused before (or while) reading the body: answer now, then read the rest and drop
        # it, so the connection ends in a state Hypercorn can close (an unread body hangs it).
        await _discard_body(request, DISCARD_IDLE)
        return error_response(request, exc.code, exc.message, exc.status)


async def _discard_body(request: Request, timeout: float) -> None:
    with contextlib.suppress(Exception):
        discarded = 0
        async for chunk in _stalling(request.stream(), timeout):
            discarded += len(chunk)
            if discarded > DISCARD_CAP:
                return


async def _receive_stream(request: Request, timeout: float) -> Response:
    s = _session(request)
    if s.carrier != "http" or s.destination is None or s.destination.sink is None:
        raise Conflict("this transfer has no HTTP stream to receive")
    receiver = Receiver(s.destination.sink, s.options.verify)
    error = None
    try:
        # Chunks go to the worker thread as they came, in batches: joining them first copied
        # every byte twice more on the event loop, which is what limits an HTTP upload.
        batch: list[bytes] = []
        size = 0
        async for chunk in _stalling(request.stream(), timeout):
            batch.append(chunk)
            size += len(chunk)
            if size >= FEED_BATCH:
                await run_in_threadpool(_feed, receiver, batch)
                batch, size = [], 0
        if batch:
            await run_in_threadpool(_feed, receiver, batch)
        receiver.close()
    except BlitError as exc:
        error = exc.message
        raise
    finally:
        s.stream_finished(error)
    return JSON({"ok": True, "records": receiver.decoder.records})


def _feed(receiver: Receiver, chunks: list[bytes]) -> None:
    for chunk in chunks:
        receiver.feed(chunk)


async def _stalling(chunks: AsyncIterator[bytes], timeout: float) -> AsyncIterator[bytes]:
    """`chunks`, ending with a clear error when none arrives for `timeout` seconds (hypercorn's
    read_timeout would also cut long pull responses, whose client sends nothing). The deadline
    covers only the wait for a chunk (never the consumer's work), and asyncio.timeout is a
    timer where wait_for made a task per chunk."""
    it = chunks.__aiter__()
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await it.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ProtocolError(f"HTTP stream stalled: nothing for {timeout:g} s") from None
        yield chunk


async def get_stream(request: Request) -> Response:
    """HTTP carrier, pull: one record stream as the response body."""
    s = _session(request)
    if s.carrier != "http" or s.source is None or s.queue is None:
        raise Conflict("this transfer has no HTTP stream to send")
    source, payloads = s.source, s.queue

    def body() -> Iterator[bytes]:
        error = "stream aborted"
        try:
            yield from http_chunks(stream_frames(source, payloads))
            error = None
        finally:
            s.stream_finished(error)

    return StreamingResponse(body(), media_type="application/octet-stream")


async def status(request: Request) -> Response:
    done = _retired(request)
    if done is not None:
        return JSON({"id": request.path_params["id"], "phase": "done", "finished": True,
                     "summary": done})
    return JSON(_session(request).status())


async def finish(request: Request) -> Response:
    """End a transfer: wait for its streams, let the DESTINATION finish, return the summary."""
    daemon = _daemon(request)
    done = _retired(request)
    if done is not None:
        return JSON(done)
    s = _session(request)
    data = await read_json(request)
    if s.streams_expected and not await s.wait_streams(daemon.config.timeout):
        raise Conflict("data streams stalled or never started; transfer not finished")
    tls = daemon.data_plane is not None and daemon.data_plane.tls is not None
    extra = {"carrier": s.carrier or "none", "zero_copy": s.carrier == "tcp" and not tls,
             "dry_run": s.options.dry_run}
    for error in s.stream_errors:
        log.warning("transfer %s: stream error: %s", s.id, error)
    if s.destination is not None:
        if s.destination.plan is not None and not s.options.dry_run and s.carrier:
            await run_in_threadpool(s.destination.finish)
        extra["deletions_skipped"] = s.destination.deletions_skipped
        s.summary = s.progress.summary(**extra, events=s.drain_events())
    else:
        # pull: the client is the DESTINATION; it reports the outcome it scored.
        reported = field(data, "summary", dict, {})
        s.summary = {**s.progress.summary(**extra), **_scalar_fields(reported)}
    s.progress.set_phase("done")
    log.info("transfer %s %s %s: %s files, %s bytes, %s failed, carrier %s", s.id,
             s.direction, s.module.name, s.summary.get("files_transferred"),
             s.summary.get("bytes"), s.summary.get("files_failed"), s.carrier)
    daemon.sessions.retire(s)
    return JSON(s.summary)


def _scalar_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in list(data.items())[:50]
            if isinstance(k, str) and isinstance(v, int | float | str | bool | None)}


async def get_summary(request: Request) -> Response:
    done = _retired(request)
    if done is not None:
        return JSON(done)
    _session(request)  # 404 when unknown
    raise Conflict("transfer not finished")


async def abort(request: Request) -> Response:
    daemon = _daemon(request)
    if _retired(request) is not None:
        return JSON({"ok": True, "finished": True})
    s = _session(request)
    s.aborted = True
    if s.destination is not None and s.destination.sink is not None and s.summary is None:
        await run_in_threadpool(s.destination.sink.close)
    daemon.sessions.drop(s.id)
    return JSON({"ok": True})


def create_app(config: DaemonConfig, sessions: Sessions,
               data_plane: DataPlane | None) -> Starlette:
    routes = [
        Route("/healthz", healthz),
        Route("/v1/modules", list_modules),
        Route("/v1/modules/{name}/list", list_dir),
        Route("/v1/transfers", open_transfer, methods=["POST"]),
        Route("/v1/transfers/{id}", status, methods=["GET"]),
        Route("/v1/transfers/{id}", abort, methods=["DELETE"]),
        Route("/v1/transfers/{id}/manifest", post_manifest, methods=["POST"]),
        Route("/v1/transfers/{id}/manifest", get_manifest, methods=["GET"]),
        Route("/v1/transfers/{id}/negotiate", negotiate, methods=["POST"]),
        Route("/v1/transfers/{id}/stream", put_stream, methods=["PUT"]),
        Route("/v1/transfers/{id}/stream", get_stream, methods=["GET"]),
        Route("/v1/transfers/{id}/finish", finish, methods=["POST"]),
        Route("/v1/transfers/{id}/summary", get_summary, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        BlitError: on_blit_error, HTTPException: on_http_error, Exception: on_crash})
    app.state.daemon = Daemon(config, sessions, data_plane)
    return app
