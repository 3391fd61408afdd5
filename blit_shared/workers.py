"""Run blocking work on threads: jobs (streams, copy workers) surfacing the first failure, and
batches of single-syscall steps split over two threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
PARALLEL_MIN = 16  # batches smaller than this stay on the calling thread


def run_all(jobs: list[Callable[[], None]], on_interrupt: Callable[[], None] | None = None,
            meanwhile: Callable[[], None] | None = None) -> None:
    """Run each job on its own thread and wait for all; then raise the first job's exception.

    `meanwhile` runs on this thread while the jobs run (it feeds them work). If it or the wait
    fails (Ctrl-C too), `on_interrupt` asks the jobs to stop, they are waited for once more
    (so none is killed mid-file), and the exception propagates.
    """
    errors: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # surfaced to the caller after join()
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs]
    for t in threads:
        t.start()
    try:
        if meanwhile is not None:
            meanwhile()
        for t in threads:
            t.join()
    except BaseException:
        if on_interrupt is not None:
            on_interrupt()
            for t in threads:
                t.join()
        raise
    if errors:
        raise errors[0]


def on_two_threads(step: Callable[[T], None], items: Sequence[T],
                   release: Callable[[], None] | None = None) -> None:
    """`step` for every item, half of them on a helper thread. For steps that are mostly
    GIL-free syscalls (a small file's create/write/futimens/close/rename, a mkdir, a
    utimensat): two threads overlap them (20,000 files on journaled ext4: 30 -> 17-23 us per
    file). `release` runs on the helper before it ends (a Tree gives back its handles)."""
    if len(items) < PARALLEL_MIN:
        for item in items:
            step(item)
        return
    half = len(items) // 2

    def helper_part() -> None:
        try:
            for item in items[half:]:
                step(item)
        finally:
            if release is not None:
                release()

    with ThreadPoolExecutor(1, thread_name_prefix="blit-helper") as helper:
        other = helper.submit(helper_part)
        for item in items[:half]:
            step(item)
        other.result()
