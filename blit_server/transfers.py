"""Transfer endpoints: open, manifest, negotiate, status, finish, summary, abort."""

from __future__ import annotations

import bisect
import ipaddress
import logging
import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from blit_shared.errors import Conflict, ProtocolError, UsageError
from blit_shared.manifest import part_size
from blit_shared.options import Options
from blit_shared.paths import check_relpath
from blit_shared.tuning import tune

from .context import Daemon, daemon_of, module_of, retired_summary, session_of
from .http import JSON, MANIFEST_BODY, field, read_json
from .metrics import record_transfer
from .sessions import Session

log = logging.getLogger("blitd")


async def open_transfer(request: Request) -> Response:
    daemon = daemon_of(request)
    data = await read_json(request)
    direction = field(data, "direction", str)
    module = module_of(request, field(data, "module", str))
    rel = field(data, "path", str, "").strip("/")
    trailing = field(data, "trailing_slash", bool, False)
    options = Options.from_json(field(data, "options", dict, {}))
    if direction == "push":
        src = field(data, "source", dict)
        s = await run_in_threadpool(
            daemon.sessions.open_push, module, rel, trailing, field(src, "kind", str),
            field(src, "name", str), field(src, "contents", bool), options)
        assert s.destination is not None
        return JSON({"id": s.id, "direction": "push", "url": _url(request, s),
                     "single_name": s.destination.single_name, "fresh": s.fresh},
                    status_code=201)
    if direction == "pull":
        s, kind = await run_in_threadpool(daemon.sessions.open_pull, module, rel, trailing,
                                          options)
        name = os.path.basename(rel) if rel else module.name
        return JSON({"id": s.id, "direction": "pull", "url": _url(request, s),
                     "source": {"kind": kind, "name": name}}, status_code=201)
    raise UsageError("direction must be 'push' or 'pull'")


def _url(request: Request, s: Session) -> str:
    """The transfer's URL as the caller reaches it (through a proxy: X-Forwarded-Host/Proto,
    when the daemon trusts them)."""
    return str(request.url_for("status", id=s.id))


async def post_manifest(request: Request) -> Response:
    """push: the SOURCE's manifest arrives; the daemon (DESTINATION) plans."""
    s = session_of(request)
    if s.direction != "push" or s.destination is None:
        raise Conflict("only a push takes a manifest")
    data = await read_json(request, MANIFEST_BODY)
    dest = s.destination
    if isinstance(data, dict) and "same_as" in data:
        # A re-run: the SOURCE sends only its manifest's digest; equal to this tree's, the plan
        # is made from this tree's own manifest, else the SOURCE sends the whole one.
        same_as = field(data, "same_as", str)
        if same_as != await run_in_threadpool(dest.own.digest):
            return JSON({"same": False})
        plan = await run_in_threadpool(dest.plan_unchanged)
        need = plan.need
    else:
        need = await run_in_threadpool(_plan_part, s, data)
        plan = dest.plan
        assert plan is not None
    body: dict[str, Any] = {"need": need, "counts": plan.counts(),
                            "deletions_skipped": dest.deletions_skipped, "same": "same_as" in data}
    if s.options.dry_run:
        body["report"] = plan.report(dest.deletions_skipped is None)
    return JSON(body)


def _plan_part(s: Session, data: Any) -> list[int]:
    """Plan the next part of the SOURCE manifest; returns what it needs. After negotiate (a
    manifest in parts), the part's directories and links are made before the answer lets the
    SOURCE send its files."""
    dest = s.destination
    assert dest is not None
    with s.parts_lock:
        if s.summary is not None or s.aborted:
            raise Conflict(f"transfer {s.id} is already finished")
        if s.incoming.complete:
            raise Conflict("the manifest is complete; no more parts")
        entries, offset = s.incoming.add(data)
        need = dest.plan_part(entries, offset, whole=s.incoming.whole)
        if dest.sink is not None:  # negotiated
            dest.prepare()
        return need


def _prepare(s: Session) -> None:
    assert s.destination is not None
    with s.parts_lock:
        s.destination.prepare()


async def get_manifest(request: Request) -> Response:
    """pull: the daemon (SOURCE) hands its manifest to the client (DESTINATION)."""
    s = session_of(request)
    if s.direction != "pull":
        raise Conflict("only a pull has a manifest to fetch")
    if "offset" in request.query_params:
        return await _manifest_part(request, s)
    manifest = (await s.ready_source()).manifest
    same_as = request.query_params.get("same_as")
    if same_as is not None and same_as == await run_in_threadpool(manifest.digest):
        return JSON({"same": True})  # the DESTINATION already holds exactly this tree
    return JSON(manifest.to_wire())


async def _manifest_part(request: Request, s: Session) -> Response:
    """The next part of the manifest while the scan goes on (a fresh DESTINATION plans and
    receives meanwhile); waits up to the stall timeout for entries past `offset`."""
    try:
        offset = int(request.query_params["offset"])
    except ValueError:
        raise ProtocolError("offset must be an integer") from None
    ready, ended = await s.wait_part(offset, daemon_of(request).config.timeout)
    source = await s.ready_source() if ended else s.source
    if source is None:
        raise Conflict("the source scan has not started yet; ask again")
    if not 0 <= offset <= ready:
        raise ProtocolError(f"offset must be between 0 and {ready}")
    end = _part_end(s.cuts, offset, ready)
    return JSON(source.manifest.part_to_wire(offset, more=not ended or end < ready, end=end))


def _part_end(cuts: list[int], offset: int, ready: int) -> int:
    """Where the part served from `offset` ends: at the furthest end of a scan part within
    part_size(offset) (parts grow as the scan's do even when the scan is further on, so the
    DESTINATION plans a small first part at once), else at the next one. Scan parts end
    after a directory's listing and hold a file."""
    limit = offset + part_size(offset)
    i = bisect.bisect_right(cuts, limit)
    if i and cuts[i - 1] > offset:
        return min(cuts[i - 1], ready)
    j = bisect.bisect_right(cuts, offset)
    return min(cuts[j], ready) if j < len(cuts) else ready


async def post_need(request: Request) -> Response:
    """pull, the manifest in parts: the DESTINATION's need list for its next part."""
    daemon = daemon_of(request)
    s = session_of(request)
    daemon.sessions.check_open(s)
    data = await read_json(request, MANIFEST_BODY)
    await run_in_threadpool(_queue_need, s, field(data, "need", list),
                            field(data, "more", bool, False))
    return JSON({"ok": True})


def _queue_need(s: Session, need: list[Any], more: bool) -> None:
    with s.parts_lock:
        if s.source is None or s.queue is None or s.tuning is None:
            raise Conflict("negotiate first")
        if not s.need_more:
            raise Conflict("the need list is complete")
        s.source.queue(s.source.resolve_need(need), s.tuning, last=not more, into=s.queue)
        s.need_more = more


async def negotiate(request: Request) -> Response:
    daemon = daemon_of(request)
    s = session_of(request)
    daemon.sessions.check_open(s)
    data = await read_json(request, MANIFEST_BODY)
    if field(data, "fallback", bool, False):
        return _fall_back(daemon, s)
    if s.carrier is not None or s.negotiating:
        raise Conflict("transfer already negotiated")
    s.negotiating = True  # the awaits below must not let a second negotiate in
    force_http = field(data, "force_http", bool, False) or daemon.config.force_http
    grant_events: list[dict[str, Any]] = []
    more = field(data, "more", bool, False)  # pull: more of the need list follows (post_need)
    source = None
    if s.direction == "pull":
        source = s.source if more else await s.ready_source()
        if source is None:
            raise Conflict("fetch the manifest first")
        name = field(data, "name", (str, type(None)), None)
        if name is not None and source.single_file is not None:
            check_relpath(name)
            if "/" in name or not name:
                raise ProtocolError("name must be one path component")
            source.manifest.entries[0].path = name  # the DESTINATION names a lone file
        need = field(data, "need", list)
        s.files = await run_in_threadpool(source.resolve_need, need)
    else:
        assert s.destination is not None
        if s.destination.plan is None:
            raise Conflict("send the manifest first")
        await run_in_threadpool(_prepare, s)
        s.files = s.destination.plan.files
        grant_events = s.drain_events()
    s.tuning = tune([e.size for e in s.files], streams=s.options.streams,
                    same_host=_loopback(request))
    if source is not None:
        s.queue = source.queue(s.files, s.tuning, last=not more)
        s.need_more = more
    s.streams_expected = s.tuning.streams
    s.progress.set_phase("transfer")
    grant: dict[str, Any] = {"streams": s.tuning.streams, "tuning": s.tuning.to_json(),
                             "events": grant_events}
    if force_http or daemon.data_plane is None:
        s.carrier = "http"
        return JSON({"carrier": "http", **grant})
    s.carrier = "tcp"
    host = daemon.config.advertise_host or request.url.hostname or daemon.config.bind
    port = daemon.config.advertise_port or daemon.data_plane.port
    tokens = daemon.sessions.grant(s, s.tuning.streams)
    return JSON({"carrier": "tcp", "host": host, "port": port,
                 "tokens": tokens, "tls": daemon.data_plane.tls is not None, **grant})


def _loopback(request: Request) -> bool:
    """The client runs on this machine (through a trusted proxy: the real client)."""
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def _fall_back(daemon: Daemon, s: Session) -> Response:
    """The client could not reach the granted data port: same streams, over HTTP instead.
    Only while no stream has claimed its token, so no byte can travel both ways."""
    if s.carrier != "tcp" or s.tuning is None:
        raise Conflict("only a transfer granted the TCP data plane can fall back to HTTP")
    if not daemon.sessions.revoke_all(s, s.streams_expected):
        raise Conflict("data streams already started on the TCP data plane")
    s.carrier = "http"
    s.fallback = True
    log.info("transfer %s: client cannot reach the data port; HTTP carrier instead", s.id)
    return JSON({"carrier": "http", "streams": s.tuning.streams, "tuning": s.tuning.to_json(),
                 "events": [], "fallback": True})


async def status(request: Request) -> Response:
    done = retired_summary(request)
    if done is not None:
        return JSON({"id": request.path_params["id"], "phase": "done", "finished": True,
                     "summary": done})
    return JSON(session_of(request).status())


async def finish(request: Request) -> Response:
    """End a transfer: wait for its streams, let the DESTINATION finish, return the summary."""
    daemon = daemon_of(request)
    done = retired_summary(request)
    if done is not None:
        return JSON(done)
    s = session_of(request)
    data = await read_json(request)
    if s.need_more:
        s.end_need()
        raise Conflict("the need list is not complete: send its last part first")
    dest = s.destination
    if dest is not None and dest.plan is not None and not dest.complete:
        raise Conflict("the manifest is not complete: send its last part first")
    if s.streams_expected and not await s.wait_streams(daemon.config.timeout):
        raise Conflict("data streams stalled or never started; transfer not finished")
    tls = daemon.data_plane is not None and daemon.data_plane.tls is not None
    extra = {"carrier": s.carrier or "none", "zero_copy": s.carrier == "tcp" and not tls,
             "dry_run": s.options.dry_run, "fallback": s.fallback}
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
    record_transfer(request, s)
    daemon.sessions.retire(s)
    return JSON(s.summary)


def _scalar_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in list(data.items())[:50]
            if isinstance(k, str) and isinstance(v, int | float | str | bool | None)}


async def get_summary(request: Request) -> Response:
    done = retired_summary(request)
    if done is not None:
        return JSON(done)
    session_of(request)  # 404 when unknown
    raise Conflict("transfer not finished")


async def abort(request: Request) -> Response:
    daemon = daemon_of(request)
    if retired_summary(request) is not None:
        return JSON({"ok": True, "finished": True})
    s = session_of(request)
    await run_in_threadpool(s.abandon)
    record_transfer(request, s, "aborted")
    daemon.sessions.drop(s.id)
    return JSON({"ok": True})


ROUTES = [
    Route("/v1/transfers", open_transfer, methods=["POST"]),
    Route("/v1/transfers/{id}", status, methods=["GET"]),
    Route("/v1/transfers/{id}", abort, methods=["DELETE"]),
    Route("/v1/transfers/{id}/manifest", post_manifest, methods=["POST"]),
    Route("/v1/transfers/{id}/manifest", get_manifest, methods=["GET"]),
    Route("/v1/transfers/{id}/negotiate", negotiate, methods=["POST"]),
    Route("/v1/transfers/{id}/need", post_need, methods=["POST"]),
    Route("/v1/transfers/{id}/finish", finish, methods=["POST"]),
    Route("/v1/transfers/{id}/summary", get_summary, methods=["GET"]),
]
