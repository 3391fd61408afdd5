"""Run a few blocking jobs on threads (streams, copy workers) and surface the first failure."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_all(jobs: list[Callable[[], None]], on_interrupt: Callable[[], None] | None = None) -> None:
    """Run each job on its own thread and wait for all; then raise the first job's exception.

    If the wait itself is interrupted (Ctrl-C), `on_interrupt` asks the jobs to stop, they are
    waited for once more (so none is killed mid-file), and the interrupt propagates.
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
