"""Writes stay inside the destination even when a directory turns into a symlink mid-way
(the race that a check-then-open by path cannot close)."""

from __future__ import annotations

import os
from pathlib import Path

from blit_shared.beneath import Tree, _walk, open_dir
from blit_shared.destination import Destination
from blit_shared.manifest import Entry, scan
from blit_shared.progress import Progress
from blit_shared.sink import Sink


def swap_for_link(path: Path, target: Path) -> None:
    """What a hostile local user would do between the plan and the write."""
    os.rename(path, path.with_name(path.name + ".moved"))
    os.symlink(target, path)


def test_sink_refuses_a_parent_swapped_for_a_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    entry = Entry("a/f", "f", 5, 1, 0o644)
    big = Entry("a/big", "f", 10, 1, 0o644)
    sink = Sink(str(root), [entry, big], Progress())
    swap_for_link(root / "a", outside)
    sink.write_file(entry, b"hello")
    assert sink.open_span(big) is None
    sink.close()
    assert set(sink.failed) == {"a/f", "a/big"}
    assert list(outside.iterdir()) == []


def test_destination_steps_refuse_links_too(tmp_path: Path) -> None:
    src, root, outside = tmp_path / "src", tmp_path / "root", tmp_path / "outside"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f").write_text("x")
    os.symlink("somewhere", src / "a" / "lnk")
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    progress = Progress()
    dest = Destination(str(root), progress)
    dest.make_plan(scan(str(src)))
    swap_for_link(root / "a", outside)
    dest.prepare()  # mkdir a/b and the link a/lnk must not land in `outside`
    dest.finish()
    assert list(outside.iterdir()) == []
    assert progress.failed >= 2


def test_open_dir_and_the_fallback_walk_agree(tmp_path: Path) -> None:
    (tmp_path / "t" / "x" / "y").mkdir(parents=True)
    (tmp_path / "etc").mkdir()  # what "x/../../etc" would reach if ".." were followed
    os.symlink("x", tmp_path / "t" / "lx")
    tree = Tree(str(tmp_path / "t"))
    for opener in (open_dir, _walk):
        fd = opener(tree.fd, "x/y")
        os.close(fd)
        for bad in ("lx/y", "x/../../etc"):
            try:
                fd = opener(tree.fd, bad)
            except OSError:
                continue
            os.close(fd)
            raise AssertionError(f"{opener.__name__} opened {bad}")
