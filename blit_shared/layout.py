"""rsync's placement rules: where a source lands given trailing slashes and what exists."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .manifest import DIR


@dataclass(frozen=True, slots=True)
class Placement:
    """The DESTINATION root, and for a single-file source the file name under it."""

    root: str
    single_name: str | None = None

    def fresh(self) -> bool:
        """A tree lands where nothing is yet (or in an empty directory): its plan compares and
        deletes nothing, so it can be made part by part while the SOURCE still scans."""
        if self.single_name is not None:
            return False
        try:
            if not stat.S_ISDIR(os.lstat(self.root).st_mode):
                return False
            with os.scandir(self.root) as it:
                return next(it, None) is None
        except FileNotFoundError:
            return True
        except OSError:
            return False


def existing_kind(path: str) -> str | None:
    """'d' for a directory (or a link to one, as rsync follows a destination link), 'f' for
    anything else that exists, None when nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return "f" if os.path.islink(path) else None
    return DIR if stat.S_ISDIR(st.st_mode) else "f"


def place(dst: str, dst_kind: str | None, *, src_kind: str, src_name: str,
          contents: bool) -> Placement:
    """Resolve the DESTINATION for a source of `src_kind` named `src_name`.

    `SRC/` (contents) copies into DST; `SRC` nests as DST/SRC when DST is a directory, else DST
    becomes the copy. A single file goes into DST when DST is a directory (or ends in '/'),
    else it is written as DST.
    """
    into_dir = dst_kind == DIR or dst.endswith("/")
    base = dst.rstrip("/") or "/"
    if src_kind == DIR:
        if contents or not into_dir:
            return Placement(base)
        return Placement(os.path.join(base, src_name))
    if into_dir:
        return Placement(base, src_name)
    head, name = os.path.split(base)
    return Placement(head or ".", name)
