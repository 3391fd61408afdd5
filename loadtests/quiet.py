"""Machine noise the bench holds off while it runs, and puts back after: free page reporting.

A guest with a virtio balloon that reports free pages (Firecracker VMs, like the one these
numbers come from) hands the pages it frees back to the host, and each later use of such a
page faults on the host. Every bench run deletes its destination, so each tool's next run wrote
into a random share of handed-back memory: writing a new 1 GiB file into the page cache took
0.18-2.8 s here with reporting on, 0.19-0.21 s with it held off (8 runs each). Holding it off
means raising the smallest reported block order above the largest order the kernel has.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

ORDER = Path("/sys/module/page_reporting/parameters/page_reporting_order")
NO_ORDER = 11  # above MAX_PAGE_ORDER (10): no free block is ever that large


@contextlib.contextmanager
def page_reporting_held() -> Iterator[str]:
    """Hold free page reporting off (root only); yields what was done, for the report."""
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
        yield f"free page reporting held off (page_reporting_order {before} -> {NO_ORDER}, " \
              "restored at the end)"
    finally:
        restore(before)


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
