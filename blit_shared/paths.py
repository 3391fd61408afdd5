"""Validation of the relative POSIX paths that travel in manifests, records and API calls."""

from __future__ import annotations

from .errors import UnsafePath

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255


def check_relpath(path: str) -> str:
    """Return `path` if it is a safe relative POSIX path inside a tree, else raise UnsafePath.

    "" names the tree root itself. Rejected: absolute paths, "." or ".." components, empty
    components, NUL, backslashes, and over-long names.
    """
    if path == "":
        return path
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise UnsafePath(f"path too long: {path[:80]!r}...")
    if "\x00" in path or "\\" in path:
        raise UnsafePath(f"forbidden character in path: {path!r}")
    if path.startswith("/"):
        raise UnsafePath(f"absolute path: {path!r}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePath(f"bad path component in {path!r}")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise UnsafePath(f"path component too long in {path!r}")
    return path


def join(root: str, rel: str) -> str:
    """Join a validated relative path onto an OS root path."""
    if rel == "":
        return root
    return f"{root.rstrip('/')}/{rel}"
