"""Staged directories (blit_shared.staging): a directory the transfer creates appears only once
every file planned in it is settled, with nothing half-written in it, whatever happens."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from blit_shared.destination import Destination
from blit_shared.manifest import DIR, FILE, Entry, Manifest
from blit_shared.progress import Progress
from blit_shared.temps import TEMP_MARK

NS = 1_650_000_000_111_222_333


def d(path: str) -> Entry:
    return Entry(path, DIR, 0, NS, 0o755)


def f(path: str, size: int = 3) -> Entry:
    return Entry(path, FILE, size, NS, 0o644)


def visible(root: Path) -> list[str]:
    """What a user sees at the final names (staged directories are hidden temp names)."""
    paths = (str(p.relative_to(root)) for p in root.rglob("*"))
    return sorted(p for p in paths if TEMP_MARK not in p)


def staged(root: Path) -> list[str]:
    return [n for n in os.listdir(root) if n.startswith(TEMP_MARK)]


def planned(root: Path, entries: list[Entry]) -> tuple[Destination, Progress]:
    progress = Progress()
    dest = Destination(str(root), progress)
    dest.make_plan(Manifest([d(""), *entries]))
    return dest, progress


def test_a_directory_appears_when_its_last_file_is_written(tmp_path: Path) -> None:
    root = tmp_path / "dst"
    dest, _ = planned(root, [d("a"), d("a/b"), f("a/x"), f("a/y"), f("a/b/z"), f("a/b/w")])
    sink = dest.prepare()
    assert visible(root) == [] and len(staged(root)) == 1
    files = {e.path: e for e in dest.plan.files}  # type: ignore[union-attr]
    sink.write_file(files["a/x"], b"xxx")
    assert visible(root) == []  # a/y is still due
    sink.write_file(files["a/y"], b"yyy")
    # "a" is in place; "a/b" waits for its own file, hidden inside it.
    assert visible(root) == ["a", "a/x", "a/y"]
    assert [n for n in os.listdir(root / "a") if n.startswith(TEMP_MARK)]
    sink.write_file(files["a/b/z"], b"zzz")
    sink.write_file(files["a/b/w"], b"www")
    dest.finish()
    assert visible(root) == ["a", "a/b", "a/b/w", "a/b/z", "a/x", "a/y"]
    assert (root / "a" / "b" / "z").read_bytes() == b"zzz"
    assert os.stat(root / "a").st_mtime_ns == NS and os.stat(root / "a" / "b").st_mtime_ns == NS


def test_an_interrupt_puts_only_complete_files_in_place(tmp_path: Path) -> None:
    root = tmp_path / "dst"
    dest, progress = planned(root, [d("a"), f("a/x"), f("a/y"), d("empty")])
    sink = dest.prepare()
    files = {e.path: e for e in dest.plan.files}  # type: ignore[union-attr]
    sink.write_file(files["a/x"], b"xxx")
    dest.interrupt()  # a/y never came
    assert visible(root) == ["a", "a/x", "empty"] and not staged(root)
    assert progress.failed == 1


def test_a_writer_in_hand_keeps_its_directory_hidden_until_it_lets_go(tmp_path: Path) -> None:
    root = tmp_path / "dst"
    dest, _ = planned(root, [d("a"), f("a/x"), f("a/y")])
    sink = dest.prepare()
    files = {e.path: e for e in dest.plan.files}  # type: ignore[union-attr]
    entered, release = threading.Event(), threading.Event()
    create = sink.tree.create

    def slow_create(rel: str, mode: int) -> int:
        fd = create(rel, mode)
        entered.set()
        release.wait(10)  # the file exists, empty, under its final name
        return fd

    sink.tree.create = slow_create  # type: ignore[method-assign]
    writer = threading.Thread(target=sink.write_file, args=(files["a/x"], b"xxx"))
    writer.start()
    assert entered.wait(10)
    dest.interrupt()  # a/y fails now; a/x is still being written
    assert visible(root) == []
    release.set()
    writer.join(10)
    assert visible(root) == ["a", "a/x"] and (root / "a" / "x").read_bytes() == b"xxx"
    dest.finish(streams_ended=True)
    assert not staged(root)


def test_a_name_taken_meanwhile(tmp_path: Path) -> None:
    root = tmp_path / "dst"
    dest, progress = planned(root, [d("a"), f("a/x"), f("a/y"), d("b"), f("b/x"), f("b/y")])
    sink = dest.prepare()
    (root / "a").mkdir()
    (root / "a" / "mine").write_text("theirs")  # a directory: the new files are moved in
    (root / "b").write_text("a file")           # anything else: the files fail, nothing lost
    for e in dest.plan.files:  # type: ignore[union-attr]
        sink.write_file(e, b"new")
    dest.finish()
    assert sorted(os.listdir(root / "a")) == ["mine", "x", "y"]
    assert (root / "b").read_text() == "a file" and not staged(root)
    assert sorted(x["path"] for x in progress.failures) == ["b/x", "b/y"]


def test_a_killed_transfer_leaves_a_stale_staged_directory_the_next_removes(
        tmp_path: Path) -> None:
    root = tmp_path / "dst"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = root / f"{TEMP_MARK}{dead}.0.a"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "x").write_text("half")
    dest, _ = planned(root, [f("y")])
    dest.prepare().write_file(dest.plan.files[0], b"yyy")  # type: ignore[union-attr]
    dest.finish()
    assert visible(root) == ["y"]


@pytest.mark.parametrize("parts", [1, 3])
def test_parts_list_a_directory_before_it_is_put_in_place(tmp_path: Path, parts: int) -> None:
    """A manifest in parts: directories of the first part whose files come later stay staged
    until those files are written (they would not be staged any more otherwise)."""
    root = tmp_path / "dst"
    entries = [d(""), d("a"), d("b"), f("a/x"), f("b/x"), f("b/y")]
    progress = Progress()
    dest = Destination(str(root), progress)
    cuts = [0, 3, 4, 6] if parts == 3 else [0, 6]  # as a SOURCE cuts: after a listing
    for start, end in zip(cuts, cuts[1:], strict=False):
        dest.plan_part(entries[start:end], start,
                       whole=Manifest(entries) if end == len(entries) else None)
        sink = dest.prepare()
        assert not (root / "b").exists()  # its files are not written yet
        for e in dest.plan.files[len(sink.done):]:  # type: ignore[union-attr]
            sink.write_file(e, b"abc")
    dest.finish()
    assert visible(root) == ["a", "a/x", "b", "b/x", "b/y"] and not staged(root)


def test_a_span_file_being_renamed_is_not_settled_twice(tmp_path: Path) -> None:
    """The last span of a file is done and it is being finished when an interrupt fails the
    rest: its directory waits for it, and counts it once."""
    root = tmp_path / "dst"
    dest, _ = planned(root, [d("a"), f("a/big", 6), f("a/small")])
    sink = dest.prepare()
    files = {e.path: e for e in dest.plan.files}  # type: ignore[union-attr]
    inside, release = threading.Event(), threading.Event()
    finish = sink._finish

    def slow_finish(fd: int, temp: str, entry: Entry) -> None:
        inside.set()
        release.wait(10)
        finish(fd, temp, entry)

    sink._finish = slow_finish  # type: ignore[method-assign]
    p = sink.open_span(files["a/big"])
    assert p is not None
    sink.write_at(p, 0, b"bigbig")
    writer = threading.Thread(target=sink.span_done, args=(p, 0, 6))
    writer.start()
    assert inside.wait(10)
    dest.interrupt()  # fails a/small; a/big is in hand
    assert visible(root) == []
    release.set()
    writer.join(10)
    assert visible(root) == ["a", "a/big"] and (root / "a" / "big").read_bytes() == b"bigbig"
    assert os.stat(root / "a" / "big").st_mtime_ns == NS


def test_a_fail_record_for_an_unplanned_path_settles_nothing(tmp_path: Path) -> None:
    root = tmp_path / "dst"
    dest, _ = planned(root, [d("a"), f("a/x"), f("a/y")])
    sink = dest.prepare()
    sink.fail("a/not-planned", "source: said so")  # a SOURCE may name anything
    sink.fail("a/not-planned-either", "source: said so")
    assert visible(root) == []
    for e in dest.plan.files:  # type: ignore[union-attr]
        sink.write_file(e, b"abc")
    assert visible(root) == ["a", "a/x", "a/y"]


def test_a_parent_dropped_takes_its_staged_children_along(tmp_path: Path) -> None:
    root = tmp_path / "dst"
    dest, progress = planned(root, [d("p"), d("p/d"), f("p/x"), f("p/w"), f("p/d/y"),
                                    f("p/d/z")])
    sink = dest.prepare()
    (root / "p").write_text("theirs")  # a file took the name of the staged parent
    files = {e.path: e for e in dest.plan.files}  # type: ignore[union-attr]
    sink.write_file(files["p/x"], b"xxx")
    sink.write_file(files["p/w"], b"www")  # p cannot go in place: dropped, with p/d
    sink.write_file(files["p/d/y"], b"yyy")  # its directory is gone: fails, raises nothing
    sink.write_file(files["p/d/z"], b"zzz")
    dest.finish()
    assert (root / "p").read_text() == "theirs" and not staged(root)
    assert {x["path"] for x in progress.failures} == {"p/x", "p/w", "p/d/y", "p/d/z"}


def test_a_directory_of_fewer_than_two_files_is_not_staged(tmp_path: Path) -> None:
    """Staging costs a rename of the directory: one listed with 0 or 1 files is made in
    place (its file then goes through a temp name and a rename, as always)."""
    root = tmp_path / "dst"
    dest, _ = planned(root, [d("one"), d("none"), f("one/x")])
    sink = dest.prepare()
    assert visible(root) == ["none", "one"] and not staged(root)
    sink.write_file(dest.plan.files[0], b"xxx")  # type: ignore[union-attr]
    dest.finish()
    assert visible(root) == ["none", "one", "one/x"]
