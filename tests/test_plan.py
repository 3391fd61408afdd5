"""Unit tests of the diff (blit_shared.plan.diff): what to send, skip, fix, clear and delete."""

from __future__ import annotations

from blit_shared.manifest import DIR, FILE, LINK, Entry, Manifest
from blit_shared.plan import Plan, diff

T = 1_700_000_000_000_000_001


def f(path: str, size: int = 10, mtime: int = T, mode: int = 0o644,
      digest: str | None = None) -> Entry:
    return Entry(path, FILE, size, mtime, mode, None, digest)


def d(path: str, mode: int = 0o755, mtime: int = T) -> Entry:
    return Entry(path, DIR, 0, mtime, mode)


def ln(path: str, target: str, mtime: int = T) -> Entry:
    return Entry(path, LINK, 0, mtime, 0o777, target)


def m(*entries: Entry) -> Manifest:
    return Manifest(list(entries))


def paths(entries: list[Entry]) -> list[str]:
    return [e.path for e in entries]


def test_new_changed_and_unchanged_files() -> None:
    src = m(d(""), f("new"), f("same"), f("bigger", size=11), f("newer", mtime=T + 1),
            f("older", mtime=T - 1))
    dst = m(d(""), f("same"), f("bigger"), f("newer"), f("older"))
    plan = diff(src, dst)
    assert paths(plan.files) == ["new", "bigger", "newer", "older"]
    assert plan.need == [1, 3, 4, 5]  # indexes into the source manifest
    assert [src.entries[i] for i in plan.need] == plan.files
    assert plan.skipped == 1 and plan.examined == 6
    assert plan.meta == [] and plan.delete == [] and plan.clear == []
    assert plan.bytes == 10 + 11 + 10 + 10


def test_one_nanosecond_mtime_difference_is_a_change() -> None:
    plan = diff(m(d(""), f("x", mtime=T)), m(d(""), f("x", mtime=T + 1)))
    assert paths(plan.files) == ["x"]


def test_into_empty_destination_everything_is_new() -> None:
    src = m(d(""), d("a"), d("a/b"), f("a/b/x"), ln("l", "a"))
    plan = diff(src, m())
    assert paths(plan.mkdirs) == ["", "a", "a/b"]  # parents first
    assert paths(plan.files) == ["a/b/x"] and paths(plan.links) == ["l"]
    assert paths(plan.dirs) == ["", "a", "a/b"]
    assert plan.counts() == {"examined": 5, "to_transfer": 1, "bytes": 10, "links": 1,
                             "dirs": 3, "skipped": 0, "to_delete": 0}


def test_existing_dirs_are_skipped_but_still_get_metadata() -> None:
    src = m(d(""), d("a", mode=0o700, mtime=T + 5))
    plan = diff(src, m(d(""), d("a")))
    assert plan.mkdirs == [] and plan.skipped == 1  # the root is not counted
    assert paths(plan.dirs) == ["", "a"]  # finish() re-applies their mode and mtime


def test_checksum_uses_digests_not_mtime() -> None:
    src = m(d(""), f("edited", digest="new"), f("touched", mtime=T + 9, digest="same"),
            f("nodigest"))
    dst = m(d(""), f("edited", digest="old"), f("touched", digest="same"), f("nodigest"))
    plan = diff(src, dst, checksum=True)
    # Same size and mtime but another digest: sent. Same digest, other mtime: metadata only.
    assert paths(plan.files) == ["edited", "nodigest"]
    assert paths(plan.meta) == ["touched"]
    quick = diff(src, dst)
    assert paths(quick.files) == ["touched"]  # the quick check misses the edit


def test_checksum_still_compares_size() -> None:
    plan = diff(m(f("x", size=2, digest="h")), m(f("x", size=3, digest="h")), checksum=True)
    assert paths(plan.files) == ["x"]


def test_meta_only_updates() -> None:
    src = m(d(""), f("mode", mode=0o600), f("both", mode=0o755))
    dst = m(d(""), f("mode"), f("both"))
    plan = diff(src, dst)
    assert plan.files == [] and paths(plan.meta) == ["mode", "both"]
    assert plan.skipped == 2


def test_kind_change_file_to_dir() -> None:
    for mirror in (False, True):
        plan = diff(m(d(""), d("x"), f("x/y")), m(d(""), f("x")), mirror=mirror)
        assert [(e.path, e.kind) for e in plan.clear] == [("x", FILE)]
        assert paths(plan.mkdirs) == ["x"] and paths(plan.files) == ["x/y"]
        assert plan.conflicts == [] and plan.delete == []


def test_kind_change_dir_to_file_is_a_conflict_in_copy_mode() -> None:
    plan = diff(m(d(""), f("x")), m(d(""), d("x"), f("x/keep")))
    assert plan.conflicts == ["x"]
    assert plan.files == [] and plan.clear == [] and plan.delete == []


def test_kind_change_dir_to_file_in_mirror_clears_the_dir_once() -> None:
    plan = diff(m(d(""), f("x")), m(d(""), d("x"), d("x/sub"), f("x/sub/k"), f("x/k")),
                mirror=True)
    assert [(e.path, e.kind) for e in plan.clear] == [("x", DIR)]
    assert paths(plan.files) == ["x"]
    assert plan.delete == []  # x's children go with the cleared dir, not one by one


def test_kind_change_link_and_file() -> None:
    plan = diff(m(d(""), ln("a", "t"), f("b")), m(d(""), f("a"), ln("b", "t")))
    assert paths(plan.links) == ["a"] and paths(plan.files) == ["b"]
    assert plan.clear == []  # os.replace swaps a file and a link atomically


def test_kind_change_dir_and_link() -> None:
    plan = diff(m(d(""), ln("a", "t"), d("b")), m(d(""), d("a"), ln("b", "t")), mirror=True)
    assert sorted((e.path, e.kind) for e in plan.clear) == [("a", DIR), ("b", LINK)]
    assert paths(plan.links) == ["a"] and paths(plan.mkdirs) == ["b"]
    copy = diff(m(d(""), ln("a", "t")), m(d(""), d("a")))
    assert copy.conflicts == ["a"] and copy.links == []


def test_links_compared_by_target() -> None:
    src = m(d(""), ln("same", "t"), ln("moved", "new"))
    plan = diff(src, m(d(""), ln("same", "t"), ln("moved", "old")))
    assert paths(plan.links) == ["moved"] and plan.skipped == 1


def test_mirror_deletes_children_before_parents() -> None:
    src = m(d(""), f("keep"))
    dst = m(d(""), f("keep"), d("x"), d("x/y"), d("x/y/z"), f("x/y/z/1"), f("x/2"),
            ln("x/y/l", "t"), f("top"), d("e"))
    plan = diff(src, dst, mirror=True)
    gone = paths(plan.delete)
    assert sorted(gone) == sorted(["x", "x/y", "x/y/z", "x/y/z/1", "x/2", "x/y/l", "top", "e"])
    for i, p in enumerate(gone):
        later = gone[i + 1:]
        assert not any(q.startswith(p + "/") for q in later), f"{p} deleted before a child"
    assert plan.counts()["to_delete"] == 8


def test_copy_mode_never_deletes() -> None:
    dst = m(d(""), f("extra"), d("x"), f("x/y"))
    plan = diff(m(d("")), dst, mirror=False)
    assert plan.delete == [] and plan.report()["delete"] == []


def test_report_lists_planned_actions() -> None:
    src = m(d(""), d("new"), f("new/f", size=3), ln("l", "new"))
    plan = diff(src, m(d(""), f("old")), mirror=True)
    assert plan.report() == {"mkdir": [["new", 0]], "copy": [["new/f", 3]], "link": [["l", 0]],
                             "delete": [["old", 0]]}
    assert plan.report(deletions=False)["delete"] == []


def test_identical_trees_plan_nothing() -> None:
    entries = [d(""), d("a"), f("a/x"), ln("a/l", "x")]
    plan = diff(m(*entries), m(*entries), mirror=True)
    assert plan.files == plan.mkdirs == plan.links == plan.meta == plan.delete == []
    assert plan.skipped == 3 and isinstance(plan, Plan)


def test_unchanged_counts_what_diff_counts() -> None:
    from blit_shared.plan import unchanged

    tree = m(d(""), d("a"), f("a/x", mtime=T), ln("l", "t"), f("y", mtime=T))
    full, fast = diff(tree, tree), unchanged(len(tree.entries))
    assert fast.counts() == full.counts()
    assert not fast.dirs and not fast.need and not fast.mkdirs  # nothing to fix, either
