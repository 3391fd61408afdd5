"""The diff: what the DESTINATION needs from the SOURCE, what it skips and what it deletes."""

from __future__ import annotations

from dataclasses import dataclass, field

from .manifest import DIR, FILE, LINK, Entry, Manifest


@dataclass(slots=True)
class Plan:
    """Actions that make the destination tree match the source manifest."""

    need: list[int] = field(default_factory=list)      # source-manifest indexes of files to send
    files: list[Entry] = field(default_factory=list)   # the entries `need` points at
    mkdirs: list[Entry] = field(default_factory=list)  # dirs to create, parents first
    links: list[Entry] = field(default_factory=list)   # symlinks to (re)create
    meta: list[Entry] = field(default_factory=list)    # same content, mode/mtime to fix
    dirs: list[Entry] = field(default_factory=list)    # every source dir (metadata applied last)
    clear: list[Entry] = field(default_factory=list)   # dest entries in the way of a new kind
    delete: list[Entry] = field(default_factory=list)  # mirror: dest entries absent at source
    conflicts: list[str] = field(default_factory=list)  # paths that cannot be written (copy mode)
    examined: int = 0
    skipped: int = 0

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.files)

    def counts(self) -> dict[str, int]:
        return {
            "examined": self.examined, "to_transfer": len(self.files), "bytes": self.bytes,
            "links": len(self.links), "dirs": len(self.mkdirs), "skipped": self.skipped,
            "to_delete": len(self.delete),
        }


    def report(self, deletions: bool = True) -> dict[str, list[list[object]]]:
        """The planned actions as JSON-ready lists (what --dry-run prints, on any route)."""
        return {
            "mkdir": [[e.path, 0] for e in self.mkdirs if e.path],
            "copy": [[e.path, e.size] for e in self.files],
            "link": [[e.path, 0] for e in self.links],
            "delete": [[e.path, 0] for e in self.delete] if deletions else [],
        }


def _same_content(src: Entry, dst: Entry, checksum: bool) -> bool:
    if src.size != dst.size:
        return False
    if checksum:
        return src.digest is not None and src.digest == dst.digest
    return src.mtime_ns == dst.mtime_ns


def diff(source: Manifest, dest: Manifest, *, mirror: bool = False,
         checksum: bool = False) -> Plan:
    """Compare the SOURCE manifest with the DESTINATION's own scan (rsync's quick check)."""
    plan = Plan()
    diff_part(plan, source.entries, 0, dest.by_path(), mirror=mirror, checksum=checksum)
    if mirror:
        plan_deletions(plan, {e.path for e in source.entries}, dest)
    return plan


def unchanged(examined: int) -> Plan:
    """The plan for a SOURCE manifest of `examined` entries equal to the DESTINATION's own
    scan (equal digests, which only a tree, its root a directory, has): nothing to send or
    fix, not even a directory's metadata; what diff() would count, without the entries."""
    return Plan(examined=examined, skipped=examined - 1)


def diff_part(plan: Plan, entries: list[Entry], offset: int, have: dict[str, Entry], *,
              mirror: bool = False, checksum: bool = False) -> Plan:
    """Add to `plan` what `entries` (the SOURCE manifest's, from index `offset` on) need; a
    manifest that arrives in parts is planned part by part, deletions once at its end."""
    for index, src in enumerate(entries, offset):
        plan.examined += 1
        dst = have.get(src.path)
        if dst is not None and dst.kind != src.kind:
            if dst.kind == DIR and not mirror:
                plan.conflicts.append(src.path)
                continue
            if dst.kind == DIR or src.kind == DIR:
                plan.clear.append(dst)
            dst = None if (dst.kind == DIR or src.kind == DIR) else dst
        if src.kind == DIR:
            plan.dirs.append(src)
            if dst is None:
                plan.mkdirs.append(src)
            else:
                plan.skipped += src.path != ""
        elif src.kind == LINK:
            if dst is None or dst.kind != LINK or dst.target != src.target:
                plan.links.append(src)
            else:
                plan.skipped += 1
        elif dst is None or dst.kind != FILE or not _same_content(src, dst, checksum):
            plan.need.append(index)
            plan.files.append(src)
        else:
            plan.skipped += 1
            if dst.mode != src.mode or dst.mtime_ns != src.mtime_ns:
                plan.meta.append(src)
    return plan


def plan_deletions(plan: Plan, wanted: set[str], dest: Manifest) -> None:
    """Mirror: the DESTINATION entries absent from the whole SOURCE manifest (`wanted` paths)."""
    gone = [e for e in dest.entries if e.path not in wanted]
    cleared = tuple(e.path + "/" for e in plan.clear if e.kind == DIR)
    if cleared:
        gone = [e for e in gone if not e.path.startswith(cleared)]
    # Children before parents, so directories are empty when their turn comes.
    plan.delete = sorted(gone, key=lambda e: e.path.count("/"), reverse=True)
