"""Machine noise the bench holds off while it runs, and puts back after: free page reporting.

A guest with a virtio balloon that reports free pages (Firecracker VMs, like the one these
numbers come from) hands the pages it frees back to the host, and each later use of such a
page faults on the host. Every bench run deletes its destination, so each tool's next run wrote
into a random share of handed-back memory: writing a new 1 GiB file into the page cache took
0.18-2.8 s here with reporting on, 0.19-0.21 s with it held off (8 runs each). Holding it off
means raising the smallest reported block order above the largest order the kernel has.

Memory reported before that is still the host's, and the kernel hands out free pages from
anywhere: with 6 GiB faulted back in first, a 1 GiB HTTP push still took 1.2-2.1 s in some
runs (its pwrites' system time four times the usual), against 0.54-0.57 s once 80% of the
free memory had been faulted in (about 3 s per GiB when cold). So the bench faults in that
much once, before any run, and frees it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ORDER = Path("/sys/module/page_reporting/parameters/page_reporting_order")
NO_ORDER = 11  # above MAX_PAGE_ORDER (10): no free block is ever that large
WARM_MOST = 64 << 30  # bytes to fault in, at most: in effect, 80% of the free memory


@contextlib.contextmanager
def page_reporting_held(warm: int = WARM_MOST) -> Iterator[str]:
    """Hold free page reporting off (root only), then fault in up to `warm` bytes of free
    memory once; yields what was done, for the report."""
    try:
        before = ORDER.read_text().strip()
    except OSError:
        yield "no free page reporting here"
        return
    if before == str(NO_ORDER):
        yield f"free page reporting already off (page_reporting_order {before})"
        return
    try:
        ORDER.write_text(str(NO_ORDER))
    except OSError as exc:
        yield f"free page reporting ON (page_reporting_order {before}; {exc.strerror}): " \
              "large writes are noisy"
        return
    try:
        size, seconds = warm_up(warm)
        yield f"free page reporting held off (page_reporting_order {before} -> {NO_ORDER}, " \
              f"restored at the end); {size / 2**30:.1f} GiB of free memory faulted in first " \
              f"({seconds:.1f} s)"
    finally:
        restore(before)


def meminfo(key: str) -> int:
    """A /proc/meminfo field in bytes (0 where there is none)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    return 0


def warm_up(limit: int) -> tuple[int, float]:
    """Fault in (MAP_POPULATE) and free up to `limit` bytes, at most 80% of the free memory
    (not the page cache: that is in use, so backed): (bytes, seconds)."""
    size = min(limit, meminfo("MemFree") * 4 // 5) & ~((1 << 20) - 1)
    started = time.perf_counter()
    if size > 0:
        # In a child: a process's peak RSS goes on to the children it forks later (Linux
        # copies it at fork and keeps it over exec), and every run's client RSS is one.
        pid = os.fork()
        if pid == 0:
            try:
                mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                          | mmap.MAP_POPULATE).close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    return size, time.perf_counter() - started


def restore(before: str) -> None:
    """Put the order back, and say so loudly when that did not work."""
    with contextlib.suppress(OSError):
        ORDER.write_text(before)
    try:
        now = ORDER.read_text().strip()
    except OSError:
        now = "?"
    if now != before:
        print(f"bench: WARNING: could not restore {ORDER} to {before} (it is {now}); "
              f"as root: echo {before} > {ORDER}", file=sys.stderr, flush=True)
