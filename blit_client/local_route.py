"""The local route (SOURCE and DESTINATION in this process) and the local-tree helpers that
push and pull share with it."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from blit_shared.destination import Destination
from blit_shared.errors import NotFound
from blit_shared.excludes import Excludes
from blit_shared.layout import Placement, existing_kind, place
from blit_shared.localcopy import copy_local
from blit_shared.manifest import DIR, FILE, FIRST_PART, MAX_ENTRIES
from blit_shared.options import Options
from blit_shared.progress import Progress
from blit_shared.source import Source, scan_source
from blit_shared.tuning import tune

from .endpoints import Endpoint, Local, Remote

Confirm = Callable[[dict[str, int]], None]


@dataclass(frozen=True, slots=True)
class LocalSource:
    """A local SRC argument: its path, kind, and whether it means 'the contents of'."""

    path: str
    kind: str
    contents: bool

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @classmethod
    def parse(cls, src: str) -> LocalSource:
        contents = src.endswith("/") and src.strip("/") != ""
        path = src.rstrip("/") or "/"
        try:
            st = os.stat(path) if contents else os.lstat(path)
        except FileNotFoundError:
            raise NotFound(f"source does not exist: {src}") from None
        return cls(path, DIR if stat.S_ISDIR(st.st_mode) else FILE, contents)

    def scan(self, opts: Options, progress: Progress, name: str | None) -> Source:
        """Scan into a Source; a single file is named `name` (the DESTINATION's choice)."""
        *_, (source, _done) = self.scan_parts(opts, progress, name, streamed=False)
        return source

    def scan_parts(self, opts: Options, progress: Progress, name: str | None, *,
                   streamed: bool = True) -> Iterator[tuple[Source, bool]]:
        """scan(), yielding the Source whenever its growing manifest has a new part (when
        `streamed`, for a directory), and with True once the scan is done."""
        progress.set_phase("scan")
        for source, done in scan_source(self.path, self.kind == DIR, progress,
                                        excludes=Excludes(opts.excludes),
                                        checksum=opts.checksum, verify=opts.verify, name=name,
                                        first=FIRST_PART if streamed else MAX_ENTRIES):
            if done:
                scanned(progress, source.manifest.errors, len(source.manifest.entries))
            yield source, done


def early_destination(src: Endpoint, dst: Endpoint, dst_arg: str, opts: Options,
                      progress: Progress) -> Destination | None:
    """A pull's DESTINATION, where its tree most likely lands, with its own scan started in a
    forked child: at command start, before the remote route's imports (httpx, h2: ~50 ms) and
    the session's opening, which tells where the tree lands. (A push's SOURCE scan started so
    gained nothing: the DESTINATION's scan, which starts at the opening, is the longer.)"""
    if isinstance(src, Remote) and isinstance(dst, Local) and src.trailing_slash:
        # `SRC/` of a directory lands in DST itself, whatever the directory is named.
        return make_destination(local_placement(dst_arg, DIR, "", contents=True), opts,
                                progress, prescan=True)
    return None


def scanned(progress: Progress, errors: list[str], entries: int) -> None:
    """Report a finished source scan; unreadable entries count as failed files."""
    progress.scanned(entries, not errors, errors)
    for err in errors:
        progress.file_failed(err.partition(":")[0], err)


def local_placement(dst: str, src_kind: str, src_name: str, contents: bool) -> Placement:
    return place(dst, existing_kind(dst.rstrip("/") or "/"), src_kind=src_kind,
                 src_name=src_name, contents=contents)


def make_destination(where: Placement, opts: Options, progress: Progress, *,
                     prescan: bool = False) -> Destination:
    """`prescan`: a tree already there is scanned from now on, in a forked child (this
    process scans the SOURCE or imports meanwhile; a thread would share the GIL)."""
    dest = Destination(where.root, progress, excludes=Excludes(opts.excludes),
                       mirror=opts.mirror, checksum=opts.checksum,
                       single_name=where.single_name,
                       allow_empty_source=opts.allow_empty_source,
                       max_delete=opts.max_delete, dry_run=opts.dry_run)
    if prescan and where.single_name is None and not where.fresh():
        dest.own.start(forked=True)
    return dest


def dry_run_result(report: dict[str, Any], counts: dict[str, int], progress: Progress,
                   extra: dict[str, Any]) -> dict[str, Any]:
    summary = progress.summary(**extra, files_transferred=counts["to_transfer"],
                               bytes=counts["bytes"], files_deleted=len(report["delete"]))
    return {"summary": summary, "report": report}


def run_local(src: str, dst: str, opts: Options, progress: Progress,
              confirm: Confirm) -> dict[str, Any]:
    """Copy/mirror `src` to `dst`; returns the summary (and the plan report on --dry-run)."""
    origin = LocalSource.parse(src)
    where = local_placement(dst, origin.kind, origin.name, origin.contents)
    dest = make_destination(where, opts, progress, prescan=True)
    try:
        return _copy_local(origin, where, dest, opts, progress, confirm)
    finally:
        dest.own.drop()  # (a forked scan whose entries were not needed, or an error)


def _copy_local(origin: LocalSource, where: Placement, dest: Destination, opts: Options,
                progress: Progress, confirm: Confirm) -> dict[str, Any]:
    source = origin.scan(opts, Progress(), where.single_name)  # the Sink feeds `progress`
    scanned(progress, source.manifest.errors, len(source.manifest.entries))
    progress.set_phase("plan")
    plan = (dest.plan_unchanged() if dest.own.matches(source.manifest)
            else dest.make_plan(source.manifest))
    extra = {"carrier": "local", "zero_copy": True, "dry_run": opts.dry_run,
             "fallback": False, "deletions_skipped": dest.deletions_skipped}
    if opts.dry_run:
        return dry_run_result(plan.report(dest.deletions_skipped is None), plan.counts(),
                              progress, extra)
    confirm(plan.counts())
    progress.set_phase("transfer")
    try:
        sink = dest.prepare()
        copy_local(source, sink, plan.files, tune([e.size for e in plan.files],
                                                  streams=opts.streams, in_kernel=True))
    finally:
        dest.finish()
    extra["deletions_skipped"] = dest.deletions_skipped
    return {"summary": progress.summary(**extra)}
