"""A manifest in parts (a fresh destination plans while the source still scans): the wire
protocol's edges against a real blitd, and the pieces it is built from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from blit_shared.destination import Destination
from blit_shared.errors import ProtocolError
from blit_shared.manifest import DIR, FILE, Entry, Incoming, Manifest, scan, scan_parts
from blit_shared.progress import Progress
from blit_shared.source import Source
from tests.daemon import running_daemon
from tests.helpers import assert_same_tree

T = 1_700_000_000_000_000_000


def d(path: str) -> list[object]:
    return [path, DIR, 0, T, 0o755, None, None]


def f(path: str, size: int = 3) -> list[object]:
    return [path, FILE, size, T, 0o644, None, None]


def part(entries: list[list[object]], offset: int, more: bool) -> dict[str, Any]:
    return {"entries": entries, "errors": [], "offset": offset, "more": more}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path, Path]]:
    """A daemon with a writable module `rw` and a readable module `src` of 700 small files."""
    rw, src = tmp_path / "rw", tmp_path / "src"
    rw.mkdir()
    for i in range(700):
        sub = src / f"d{i // 100}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}").write_bytes(b"x" * (i % 50))
    config = (f'[[module]]\nname = "rw"\npath = "{rw}"\n'
              f'[[module]]\nname = "src"\npath = "{src}"\n')
    with running_daemon(tmp_path, config=config) as daemon, \
            httpx.Client(base_url=f"http://{daemon.addr}", timeout=30) as client:
        yield client, rw, src


def _open_push(client: httpx.Client, path: str) -> dict[str, Any]:
    resp = client.post("/v1/transfers", json={
        "direction": "push", "module": "rw", "path": path, "trailing_slash": False,
        "options": {}, "source": {"kind": "d", "name": "t", "contents": True}})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_push_parts_are_planned_and_prepared_in_turn(served: tuple[httpx.Client, Path, Path]
                                                     ) -> None:
    client, rw, _src = served
    opened = _open_push(client, "fresh")
    assert opened["fresh"] is True
    url = f"/v1/transfers/{opened['id']}/manifest"
    first = client.post(url, json=part([d(""), d("a"), f("a/x")], 0, True)).json()
    assert first["need"] == [2] and first["counts"]["to_transfer"] == 1
    wrong = client.post(url, json=part([f("a/y")], 2, True))
    assert wrong.status_code == 400 and "offset 3" in wrong.text
    orphan = client.post(url, json=part([f("nowhere/z")], 3, True))
    assert orphan.status_code == 400 and "not inside a listed directory" in orphan.text
    grant = client.post(f"/v1/transfers/{opened['id']}/negotiate", json={"force_http": True})
    assert grant.status_code == 200 and grant.json()["carrier"] == "http"
    # After negotiate each part's directories exist before its answer lets files come (made
    # in place: one file each is not worth staging, blit_shared/destination.STAGE_MIN).
    assert (rw / "fresh" / "a").is_dir()
    second = client.post(url, json=part([d("b"), f("b/y", 5)], 3, True)).json()
    assert second["need"] == [4] and second["counts"]["to_transfer"] == 2
    assert (rw / "fresh" / "b").is_dir()
    early = client.post(f"/v1/transfers/{opened['id']}/finish", json={})
    assert early.status_code == 409 and "not complete" in early.text
    last = client.post(url, json=part([], 5, False)).json()
    assert last["need"] == []
    after = client.post(url, json=part([f("c")], 5, False))
    assert after.status_code == 409 and "complete" in after.text
    assert client.delete(f"/v1/transfers/{opened['id']}").status_code == 200
    assert sorted(os.listdir(rw / "fresh")) == ["a", "b"]  # no file, no temp left
    assert not os.listdir(rw / "fresh" / "b")


def test_only_a_fresh_destination_is_offered_parts(served: tuple[httpx.Client, Path, Path]
                                                   ) -> None:
    client, rw, _src = served
    (rw / "full").mkdir()
    (rw / "full" / "old").write_text("x")
    (rw / "empty").mkdir()
    assert _open_push(client, "full")["fresh"] is False
    assert _open_push(client, "empty")["fresh"] is True


def test_pull_parts_need_lists_and_end(served: tuple[httpx.Client, Path, Path]) -> None:
    client, _rw, src = served
    resp = client.post("/v1/transfers", json={"direction": "pull", "module": "src", "path": "",
                                              "trailing_slash": True, "options": {}})
    sid = resp.json()["id"]
    incoming = Incoming()
    while not incoming.complete:
        got = client.get(f"/v1/transfers/{sid}/manifest",
                         params={"offset": len(incoming.manifest.entries)})
        assert got.status_code == 200, got.text
        incoming.add(got.json())
    assert incoming.manifest.entries == scan(str(src)).entries
    beyond = client.get(f"/v1/transfers/{sid}/manifest", params={"offset": 10**6})
    assert beyond.status_code == 400
    files = [i for i, e in enumerate(incoming.manifest.entries) if e.kind == FILE]
    grant = client.post(f"/v1/transfers/{sid}/negotiate",
                        json={"need": files[:10], "more": True, "force_http": True})
    assert grant.status_code == 200, grant.text
    again = client.post(f"/v1/transfers/{sid}/need", json={"need": files[:1], "more": True})
    assert again.status_code == 400 and "repeats" in again.text
    early = client.post(f"/v1/transfers/{sid}/finish", json={})
    assert early.status_code == 409 and "need list is not complete" in early.text
    # finish ended the need list: the stream carries what was queued and then ends.
    with client.stream("GET", f"/v1/transfers/{sid}/stream") as body:
        data = b"".join(body.iter_raw())
    assert body.status_code == 200 and len(data) > 0
    late = client.post(f"/v1/transfers/{sid}/need", json={"need": files[10:], "more": False})
    assert late.status_code == 409


def test_cli_push_and_pull_through_parts(served: tuple[httpx.Client, Path, Path],
                                         tmp_path: Path) -> None:
    """700 files in 7 directories: a first part of 256+ entries, then the rest."""
    from tests.helpers import blit

    client, rw, src = served
    addr = str(client.base_url).removeprefix("http://").rstrip("/")
    pushed = blit("copy", "-v", str(src) + "/", f"{addr}:/rw/pushed")
    assert pushed.returncode == 0, pushed.stderr
    assert_same_tree(src, rw / "pushed")
    pulled = blit("copy", f"{addr}:/src/", str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stderr
    assert_same_tree(src, tmp_path / "pulled")


# -- the pieces -------------------------------------------------------------------------------
def test_scan_parts_grow_and_end_like_scan(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"d{i}").mkdir()
        for j in range(20):
            (tmp_path / f"d{i}" / f"f{j}").write_bytes(b"")
    sizes = [(len(m.entries), done) for m, done in scan_parts(str(tmp_path), first=100)]
    assert sizes[-1] == (len(scan(str(tmp_path)).entries), True)
    assert [done for _n, done in sizes].count(True) == 1
    assert 100 <= sizes[0][0] < 100 + 21  # the first part ends with the directory that fills it
    assert len(sizes) >= 3


def test_incoming_checks_the_tree_across_parts() -> None:
    incoming = Incoming()
    incoming.add(part([d(""), d("a"), f("x")], 0, True))
    incoming.add(part([f("a/y")], 3, True))  # its directory came in the part before
    with pytest.raises(ProtocolError, match="not inside a listed directory"):
        incoming.add(part([f("x/inside_a_file")], 4, True))
    with pytest.raises(ProtocolError, match="duplicate"):
        incoming.add(part([f("a/y")], 4, True))
    with pytest.raises(ProtocolError, match="boolean"):
        incoming.add({"entries": [], "offset": 4, "more": 1})
    incoming.add(part([], 4, False))
    with pytest.raises(ProtocolError, match="complete"):
        incoming.add(part([], 4, False))
    with pytest.raises(ProtocolError, match="cannot announce more"):
        Manifest.from_wire(part([d("")], 0, True))


def test_need_parts_never_repeat_a_file(tmp_path: Path) -> None:
    entries = [Entry("", DIR), Entry("a", FILE, 1), Entry("b", FILE, 1)]
    source = Source(str(tmp_path), Manifest(entries))
    from blit_shared.tuning import tune

    q = source.queue(source.resolve_need([1]), tune([1]), last=False)
    with pytest.raises(ProtocolError, match="repeats"):
        source.resolve_need([1])
    source.queue(source.resolve_need([2]), tune([1]), into=q)
    assert q.qsize() == 3  # two shards and one end mark


def test_parts_planned_mirror_never_deletes_unconfirmed(tmp_path: Path) -> None:
    """A mirror planned in parts (the destination looked fresh) whose destination filled up
    meanwhile deletes nothing: nobody was asked to confirm deletions."""
    (tmp_path / "late").write_text("appeared during the transfer")
    dest = Destination(str(tmp_path), Progress(), mirror=True)
    whole = Manifest([Entry("", DIR, mode=0o755), Entry("a", FILE, 1, mode=0o644),
                      Entry("b", FILE, 1, mode=0o644)])
    dest.plan_part(whole.entries[:2], 0)
    dest.plan_part(whole.entries[2:], 2, whole=whole)
    plan = dest.plan
    assert plan is not None
    assert [e.path for e in plan.delete] == ["late"]
    assert dest.deletions_skipped is not None and "changed" in dest.deletions_skipped
    assert dest.complete


def test_refill_runs_on_the_sending_thread_and_ends_streams_on_error(tmp_path: Path) -> None:
    from blit_shared.source import FileSpan, stream_frames
    from blit_shared.tuning import tune
    from blit_shared.workers import Refill

    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "b").write_bytes(b"2")
    source = Source(str(tmp_path), scan(str(tmp_path)))
    q = source.queue([], tune([]), last=False)
    ran: list[int] = []

    def steps() -> Iterator[None]:
        for i in (1, 2):
            ran.append(i)
            source.queue(source.resolve_need([i]), tune([1]), last=i == 2, into=q)
            yield

    low = Refill(steps(), lambda: q.qsize() < 2, lambda: None)
    frames = list(stream_frames(source, q, refill=low))
    assert ran == [1, 2] and sum(not isinstance(x, FileSpan) for x in frames) == 6
    # preamble, 2 × (SHARD, DONE), END

    def failing() -> Iterator[None]:
        raise ProtocolError("daemon said no")
        yield

    q2 = source.queue([], tune([]), last=False)
    refill = Refill(failing(), lambda: q2.qsize() < 2, lambda: source.end(q2, 2))
    with pytest.raises(ProtocolError):
        list(stream_frames(source, q2, refill=refill))
    assert list(stream_frames(source, q2, refill=refill))  # the other stream ends, no hang


def test_a_part_starts_bytes_and_served_parts_end_where_the_scan_s_did(tmp_path: Path) -> None:
    """A source checkout's first 256 entries can all be directories: a part holds a file, so
    the DESTINATION has something to ask for at once; the daemon serves parts that end where
    the scan's parts did (after a directory's listing)."""
    from blit_server.transfers import _part_end

    for i in range(300):
        (tmp_path / "empty" / f"d{i:03}").mkdir(parents=True)
    (tmp_path / "zfiles").mkdir()
    for i in range(5):
        (tmp_path / "zfiles" / f"f{i}").write_text("x")
    cuts = []
    for manifest, done in scan_parts(str(tmp_path), first=256):
        cuts.append(len(manifest.entries))
        part = manifest.entries[(cuts[-2] if len(cuts) > 1 else 0):cuts[-1]]
        assert done or any(e.kind == FILE for e in part)
    assert cuts[0] == 308  # root, 2 + 300 directories and the 5 files: the first part
    assert _part_end([300, 1200, 5000], 0, 5000) == 300  # past 256: the scan's first part
    assert _part_end([300, 1200, 5000], 300, 5000) == 1200
    assert _part_end([300, 1200, 5000], 1200, 5000) == 5000  # no cut within 3,600: the next
    assert _part_end([300, 1200, 5000], 1200, 4000) == 4000  # not past what is ready
    assert _part_end([300, 1200], 1200, 1500) == 1500  # the scan ended after its last cut
