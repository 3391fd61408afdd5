"""Temp-file names: how a file in progress is named, and how a stale one is recognised."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

TEMP_MARK = ".blit-tmp."


def temp_name(final: str) -> str:
    """A hidden sibling of `final` (same directory, so os.replace() is atomic) that names the
    process writing it: `.blit-tmp.<pid>.<random>.<name>`.

    The name part is cut to 150 UTF-8 bytes, so the temp name of any legal name fits NAME_MAX.
    """
    head, sep, name = final.rpartition("/")
    if len(name) > 37:  # 37 characters are at most 148 bytes: only long names need cutting
        name = name.encode("utf-8", "surrogateescape")[:150].decode("utf-8", "ignore")
    # <random> is a per-process prefix and a counter: unique without a getrandom() per file.
    return f"{head}{sep}{TEMP_MARK}{_PID}.{_PREFIX}{next(_counter):x}.{name}"


# getpid() is a syscall per call (glibc stopped caching it): kept here, renewed on fork.
_PID = os.getpid()
_PREFIX = os.urandom(4).hex()
_counter = itertools.count()


def _reseed() -> None:  # a forked child must not reuse its parent's names
    global _PID, _PREFIX, _counter
    _PID, _PREFIX, _counter = os.getpid(), os.urandom(4).hex(), itertools.count()


os.register_at_fork(after_in_child=_reseed)


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_MARK)


def is_stale(name: str) -> bool:
    """True for a temp file whose writer process is gone (killed, crashed, or rebooted away)."""
    pid_text = name[len(TEMP_MARK):].partition(".")[0]
    if not pid_text.isdigit():
        return True  # not ours to keep: no live writer can be named
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale(remove: Callable[[str], None], rels: list[str]) -> int:
    """Delete (with `remove`) the stale temps among `rels` (files, and staged directories
    with what they hold); returns how many."""
    removed = 0
    for rel in rels:
        if is_stale(rel.rpartition("/")[2]):
            try:
                remove(rel)
                removed += 1
            except OSError:
                pass
    return removed
