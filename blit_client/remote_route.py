"""Push and pull: the same steps as the local route, with the daemon playing one role."""

from __future__ import annotations

import contextlib
import functools
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from blit_shared.destination import Destination
from blit_shared.errors import BlitError, ProtocolError, UsageError
from blit_shared.manifest import DIR, Incoming, Manifest
from blit_shared.options import Options
from blit_shared.ownscan import digest_of
from blit_shared.progress import MAX_FAILURES_KEPT, Progress
from blit_shared.receiver import Receiver
from blit_shared.source import stream_frames
from blit_shared.transport import Unreachable, dial, http_chunks, receive, send_frames
from blit_shared.tuning import Tuning
from blit_shared.workers import Refill, run_all

from .api import DaemonClient
from .endpoints import Connection, Endpoint, Local, Remote
from .local_route import (
    Confirm,
    LocalSource,
    dry_run_result,
    local_placement,
    make_destination,
    scanned,
)

REFILL_FILES = 1024  # pull, manifest in parts: fewer files due than this asks for the next part


@dataclass(frozen=True, slots=True)
class CarrierChoice:
    """How the bytes should move: `force_http` asks for HTTP; `fallback` lets an unreachable
    TCP data port turn into HTTP (else it is an error)."""

    force_http: bool = False
    fallback: bool = True


def run_remote(src: Endpoint, dst: Endpoint, dst_arg: str, opts: Options, progress: Progress,
               confirm: Confirm, *, conn: Connection,
               carrier: CarrierChoice = CarrierChoice(), early: Destination | None = None
               ) -> dict[str, Any]:
    """`early`: a pull's DESTINATION made before this module's imports (early_destination),
    used if the tree lands there; the caller stops its scan in the end."""
    if isinstance(src, Remote) and isinstance(dst, Remote):
        raise UsageError("remote to remote is not supported: one side must be local")
    remote = dst if isinstance(dst, Remote) else src
    assert isinstance(remote, Remote)
    if remote.module is None:
        raise UsageError(f"{remote} names no module: use HOST:PORT:/MODULE/PATH")
    with DaemonClient(remote.base_url, conn) as api:
        if isinstance(dst, Remote):
            assert isinstance(src, Local)
            return _push(api, src.path, dst, opts, progress, confirm, carrier)
        return _pull(api, remote, dst_arg, opts, progress, confirm, carrier, early)


def _push(api: DaemonClient, src_arg: str, dst: Remote, opts: Options, progress: Progress,
          confirm: Confirm, carrier: CarrierChoice) -> dict[str, Any]:
    """This process is the SOURCE; the daemon is the DESTINATION."""
    origin = LocalSource.parse(src_arg)
    opened_at = time.monotonic() - progress.started  # the daemon's clocks start about here
    opened = api.call("POST", "/v1/transfers", {
        "direction": "push", "module": dst.module, "path": dst.path,
        "trailing_slash": dst.trailing_slash, "options": opts.to_json(),
        "source": {"kind": origin.kind, "name": origin.name, "contents": origin.contents}})
    sid = opened["id"]
    with _SessionGuard(api, sid):
        # A fresh DESTINATION compares and deletes nothing: it plans each part of the manifest
        # while the rest is scanned, and bytes flow meanwhile. Otherwise the scan goes first
        # (a re-run of a mirror may then match by digest).
        parts = origin.scan_parts(opts, progress, opened.get("single_name"),
                                  streamed=bool(opened.get("fresh")) and not opts.dry_run
                                  and not opts.checksum)
        source, done = next(parts)
        progress.set_phase("plan")
        planned = (_plan_remote(api, sid, source.manifest) if done
                   else _send_part(api, sid, source.manifest, 0, more=True))
        given = len(source.manifest.entries)
        progress.planned(planned["counts"])
        extra = {"dry_run": opts.dry_run, "fallback": False,
                 "deletions_skipped": planned["deletions_skipped"]}
        if opts.dry_run:
            api.call("POST", f"/v1/transfers/{sid}/finish", {})
            return dry_run_result(planned["report"], planned["counts"], progress,
                                  {**extra, "carrier": "none", "zero_copy": False})
        confirm(planned["counts"])
        grant = api.call("POST", f"/v1/transfers/{sid}/negotiate",
                         {"force_http": carrier.force_http})
        _replay(progress, grant.get("events", []))
        grant, first = _first_stream(api, sid, grant, progress, carrier)
        extra["fallback"] = bool(grant.get("fallback"))
        progress.set_phase("transfer")
        tuning = Tuning(**grant["tuning"])
        payloads = source.queue(source.resolve_need(planned["need"]), tuning, last=done)

        def rest() -> Iterator[None]:
            """The manifest's later parts, planned by the DESTINATION as the streams send."""
            nonlocal given
            for _source, last in parts:
                planned = _send_part(api, sid, source.manifest, given, more=not last)
                given = len(source.manifest.entries)
                progress.planned(planned["counts"])
                source.queue(source.resolve_need(planned["need"]), tuning, last=last,
                             into=payloads)
                yield

        refill = None if done else Refill(rest(), lambda: payloads.qsize() < 2,
                                          lambda: source.end(payloads, tuning.streams))

        def tcp(sock: socket.socket) -> None:
            with sock:
                send_frames(sock, stream_frames(source, payloads, refill=refill))

        def http(_: str) -> None:
            api.put_stream(f"/v1/transfers/{sid}/stream",
                           http_chunks(stream_frames(source, payloads, refill=refill),
                                       spans=not api.http2))  # (h2 slices what it sends)

        _run_streams(api, grant, first, tcp, http)
        summary = api.call("POST", f"/v1/transfers/{sid}/finish", {})
        _replay(progress, summary.pop("events", []))
    # The counts are the DESTINATION's, but for what this SOURCE could not even scan (already
    # shown here; a pull's DESTINATION counts those itself). The times, like a pull's, run from
    # this command's start.
    unscanned = len(source.manifest.errors)
    if unscanned:  # scanned() reported them first, so they lead progress.failures
        summary["files_failed"] += unscanned
        summary["failures"] = (progress.failures[:unscanned]
                               + summary["failures"])[:MAX_FAILURES_KEPT]
    elapsed = time.monotonic() - progress.started
    first = summary.get("first_byte_s")
    summary.update(duration_s=round(elapsed, 6), fallback=extra["fallback"],
                   rate_bytes_per_s=int(summary["bytes"] / elapsed) if elapsed > 0 else 0,
                   first_byte_s=None if first is None else round(opened_at + first, 6))
    return {"summary": summary}


def _plan_remote(api: DaemonClient, sid: str, manifest: Manifest) -> dict[str, Any]:
    """Send the SOURCE manifest for planning: first only its digest (a re-run of a mirror finds
    the DESTINATION identical and skips the 1.5 MB per 20,000 entries), then, if it differs,
    the whole manifest."""
    url = f"/v1/transfers/{sid}/manifest"
    mine = digest_of(manifest)
    if mine is not None:
        try:
            planned: dict[str, Any] = api.call("POST", url, {"same_as": mine})
        except ProtocolError:
            planned = {}  # a daemon from before same_as: it wants the manifest itself
        if planned.get("same"):
            return planned
    return api.call("POST", url, manifest.to_wire())  # type: ignore[no-any-return]


def _send_part(api: DaemonClient, sid: str, manifest: Manifest, offset: int,
               more: bool) -> dict[str, Any]:
    """The SOURCE manifest's entries from `offset` on, for the DESTINATION to plan."""
    planned: dict[str, Any] = api.call("POST", f"/v1/transfers/{sid}/manifest",
                                       manifest.part_to_wire(offset, more))
    return planned


def _replay(progress: Progress, events: list[dict[str, Any]]) -> None:
    """Show what the daemon's DESTINATION did (links, deletions, failures) as if local."""
    if progress.listener is not None:
        for event in events:
            progress.listener(event)


def _pull(api: DaemonClient, src: Remote, dst_arg: str, opts: Options, progress: Progress,
          confirm: Confirm, carrier: CarrierChoice, early: Destination | None
          ) -> dict[str, Any]:
    """The daemon is the SOURCE; this process is the DESTINATION. `early`: a DESTINATION
    whose scan started already, where the tree most likely lands (used if it does)."""
    progress.set_phase("scan")
    opened = api.call("POST", "/v1/transfers", {
        "direction": "pull", "module": src.module, "path": src.path,
        "trailing_slash": src.trailing_slash, "options": opts.to_json()})
    sid = opened["id"]
    with _SessionGuard(api, sid):
        kind, name = opened["source"]["kind"], opened["source"]["name"]
        where = local_placement(dst_arg, kind, name, src.trailing_slash)
        if early is not None and (early.root, early.single_name) == (where.root, where.single_name):
            dest = early
        else:
            if early is not None:
                early.own.drop()  # the tree lands elsewhere: not a scan to keep running
            dest = make_destination(where, opts, progress)
        # A fresh DESTINATION compares and deletes nothing: it plans each part of the manifest
        # while the daemon still scans, and bytes flow meanwhile. Otherwise the whole manifest
        # first (a re-run of a mirror may then match by digest).
        incoming = Incoming()
        if kind == DIR and not opts.dry_run and not opts.checksum and where.fresh():
            need = _next_part(api, sid, incoming, dest, progress)
        else:
            need = _whole_manifest(api, sid, incoming, dest, where.single_name, progress)
        plan = dest.plan
        assert plan is not None
        progress.set_phase("plan")
        extra = {"dry_run": opts.dry_run, "fallback": False,
                 "deletions_skipped": dest.deletions_skipped}
        if opts.dry_run:
            api.call("POST", f"/v1/transfers/{sid}/finish", {})
            return dry_run_result(plan.report(dest.deletions_skipped is None), plan.counts(),
                                  progress, {**extra, "carrier": "none", "zero_copy": False})
        confirm(plan.counts())
        grant = api.call("POST", f"/v1/transfers/{sid}/negotiate", {
            "need": need, "more": not incoming.complete, "force_http": carrier.force_http,
            "name": where.single_name})
        grant, first = _first_stream(api, sid, grant, progress, carrier)
        extra["fallback"] = bool(grant.get("fallback"))
        progress.set_phase("transfer")
        ended = False
        try:
            sink = dest.prepare()

            def rest() -> Iterator[None]:
                """The manifest's later parts, planned here as the streams receive."""
                while not incoming.complete:
                    need = _next_part(api, sid, incoming, dest, progress)
                    dest.prepare()
                    api.call("POST", f"/v1/transfers/{sid}/need",
                             {"need": need, "more": not incoming.complete})
                    yield

            # The next part is asked for when fewer than REFILL_FILES asked-for files are due.
            refill = None if incoming.complete else Refill(
                rest(), lambda: sink.outstanding() < REFILL_FILES,
                functools.partial(_abort, api, sid))  # the daemon's streams end with it

            def tcp(sock: socket.socket) -> None:
                with sock:
                    receive(sock, Receiver(sink, opts.verify), refill=refill)

            def http(_: str) -> None:
                receiver = Receiver(sink, opts.verify)
                for chunk in api.get_stream(f"/v1/transfers/{sid}/stream"):
                    receiver.feed(chunk)
                    if refill is not None:
                        refill()
                receiver.close()

            _run_streams(api, grant, first, tcp, http)
            ended = True  # run_all joined every stream (it raises only after that, too)
        finally:
            dest.finish(streams_ended=ended)
        summary = progress.summary(carrier=grant["carrier"],
                                   zero_copy=grant["carrier"] == "tcp", **extra)
        summary["deletions_skipped"] = dest.deletions_skipped
        api.call("POST", f"/v1/transfers/{sid}/finish", {"summary": summary})
    return {"summary": summary}


def _whole_manifest(api: DaemonClient, sid: str, incoming: Incoming, dest: Destination,
                    single_name: str | None, progress: Progress) -> list[int]:
    """Fetch the SOURCE's whole manifest (its digest first, against this DESTINATION's own
    scan), plan it here; returns the need list."""
    mine = dest.own.digest()
    got = api.call("GET", f"/v1/transfers/{sid}/manifest",
                   params={"same_as": mine} if mine else None)
    if got.get("same"):  # the SOURCE holds exactly this tree (a re-run): nothing to compare
        incoming.complete = True
        scanned(progress, [], dest.own.count())
        return dest.plan_unchanged().need
    incoming.add(got)
    if not incoming.complete:
        raise ProtocolError("the daemon sent part of a manifest")
    manifest = incoming.manifest
    if single_name is not None and manifest.entries:
        manifest.entries[0].path = single_name
    scanned(progress, manifest.errors, len(manifest.entries))
    return dest.make_plan(manifest).need


def _next_part(api: DaemonClient, sid: str, incoming: Incoming, dest: Destination,
               progress: Progress) -> list[int]:
    """Fetch the next part of the SOURCE's manifest and plan it here; returns its need list."""
    offset = len(incoming.manifest.entries)
    got = api.call("GET", f"/v1/transfers/{sid}/manifest", params={"offset": offset})
    entries, _ = incoming.add(got)
    need = dest.plan_part(entries, offset, whole=incoming.whole)
    if incoming.complete:
        scanned(progress, incoming.manifest.errors, len(incoming.manifest.entries))
    return need


def _dial(api: DaemonClient, grant: dict[str, Any], token: str) -> socket.socket:
    if grant.get("tls") and api.tls is None:
        raise UsageError("the daemon's data plane speaks TLS: pass --tls or --ca FILE")
    return dial(grant["host"], grant["port"], bytes.fromhex(token), io_timeout=api.io_timeout,
                tls=api.tls if grant.get("tls") else None)


def _first_stream(api: DaemonClient, sid: str, grant: dict[str, Any], progress: Progress,
                  carrier: CarrierChoice) -> tuple[dict[str, Any], socket.socket | None]:
    """Dial the first TCP stream before any thread starts: when the granted data port does not
    answer (a proxy or firewall in between), the daemon re-grants the same streams over HTTP
    before a byte was sent. Says so once; the summary records `fallback`."""
    if grant["carrier"] != "tcp":
        return grant, None
    try:
        return grant, _dial(api, grant, grant["tokens"][0])
    except Unreachable as exc:
        if not carrier.fallback:
            raise Unreachable(f"{exc.message} (--no-fallback: not switching to HTTP)") from None
        progress.notice(f"{exc.message}; falling back to the HTTP carrier through the "
                        "control plane")
        return api.call("POST", f"/v1/transfers/{sid}/negotiate", {"fallback": True}), None


def _run_streams(api: DaemonClient, grant: dict[str, Any], first: socket.socket | None,
                 tcp: Callable[[socket.socket], None], http: Callable[[str], None]) -> None:
    """Run one thread per granted stream; the first carrier error is raised after all end."""
    if grant["carrier"] == "tcp":
        tokens = grant["tokens"]

        def dialled(token: str) -> None:
            tcp(first if first is not None and token == tokens[0] else _dial(api, grant, token))

        jobs = [functools.partial(dialled, token) for token in tokens]
    else:
        jobs = [functools.partial(http, str(i)) for i in range(grant["streams"])]
    try:
        run_all(jobs)
    except BlitError:
        raise
    except Exception as exc:
        raise BlitError(f"data stream failed: {exc}", code="carrier") from exc


class _SessionGuard:
    """Deletes the daemon-side session when the route fails part-way (best effort)."""

    def __init__(self, api: DaemonClient, sid: str) -> None:
        self.api, self.sid = api, sid

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            _abort(self.api, self.sid)


def _abort(api: DaemonClient, sid: str) -> None:
    """Delete the daemon-side session, best effort."""
    with contextlib.suppress(BlitError):  # short: the daemon may be what failed
        api.call("DELETE", f"/v1/transfers/{sid}", timeout=5.0)

