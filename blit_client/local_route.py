"""The local route: SOURCE and DESTINATION in this process, bytes by the local carrier."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from blit_shared.destination import Destination
from blit_shared.errors import NotFound
from blit_shared.excludes import Excludes
from blit_shared.layout import existing_kind, place
from blit_shared.localcopy import copy_local
from blit_shared.manifest import DIR, FILE, scan
from blit_shared.options import Options
from blit_shared.plan import Plan
from blit_shared.progress import Progress
from blit_shared.source import Source
from blit_shared.tuning import tune

Confirm = Callable[[Plan], None]


def dry_run_result(plan: Plan, progress: Progress, deletions_skipped: str | None,
                   extra: dict[str, Any]) -> dict[str, Any]:
    report = plan.report(deletions_skipped is None)
    summary = progress.summary(**extra, files_transferred=len(plan.files), bytes=plan.bytes,
                               files_deleted=len(report["delete"]))
    return {"summary": summary, "report": report}


def run_local(src: str, dst: str, opts: Options, progress: Progress,
              confirm: Confirm) -> dict[str, Any]:
    """Copy/mirror `src` to `dst`; returns the summary, or the plan report on --dry-run."""
    contents = src.endswith("/") and src.strip("/") != ""
    src_path = src.rstrip("/") or "/"
    try:
        st = os.stat(src_path) if contents else os.lstat(src_path)
    except FileNotFoundError:
        raise NotFound(f"source does not exist: {src}") from None
    src_kind = DIR if stat.S_ISDIR(st.st_mode) else FILE
    where = place(dst, existing_kind(dst.rstrip("/") or "/"), src_kind=src_kind,
                  src_name=os.path.basename(src_path), contents=contents)
    excludes = Excludes(opts.excludes)

    progress.set_phase("scan")
    if src_kind == DIR:
        manifest = scan(src_path, excludes, checksum=opts.checksum)
        source = Source(src_path, manifest)
    else:
        manifest = scan(src_path, name=where.single_name, checksum=opts.checksum)
        source = Source(os.path.dirname(src_path), manifest, single_file=src_path)
    progress.scanned(len(manifest.entries), manifest.complete, manifest.errors)
    for err in manifest.errors:
        progress.file_failed(err.partition(":")[0], err)

    dest = Destination(where.root, progress, excludes=excludes, mirror=opts.mirror,
                       checksum=opts.checksum, single_name=where.single_name,
                       allow_empty_source=opts.allow_empty_source)
    progress.set_phase("plan")
    plan = dest.make_plan(manifest)
    extra = {"carrier": "local", "zero_copy": True, "dry_run": opts.dry_run,
             "deletions_skipped": dest.deletions_skipped}
    if opts.dry_run:
        return dry_run_result(plan, progress, dest.deletions_skipped, extra)
    confirm(plan)
    progress.set_phase("transfer")
    sink = dest.prepare()
    try:
        copy_local(source, sink, plan.files, tune([e.size for e in plan.files],
                                                  streams=opts.streams))
    finally:
        dest.finish()
    extra["deletions_skipped"] = dest.deletions_skipped
    return {"summary": progress.summary(**extra)}
