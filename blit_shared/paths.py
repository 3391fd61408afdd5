"""Validation of the relative POSIX paths that travel in manifests, records and API calls."""

from __future__ import annotations

from .errors import UnsafePath

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255


def check_relpath(path: str) -> str:
    """Return `path` if it is a safe relative POSIX path inside a tree, else raise UnsafePath.

    "" names the tree root itself. Rejected: absolute paths, "." or ".." components, empty
    components, NUL, backslashes, and over-long names. Manifests carry one path per entry, so
    the common case (short, no dot component) is decided without splitting or encoding.
    """
    if path == "":
        return path
    if "\x00" in path or "\\" in path:
        raise UnsafePath(f"forbidden character in path: {path!r}")
    if path[0] == "/":
        raise UnsafePath(f"absolute path: {path!r}")
    if path[-1] == "/" or "//" in path:
        raise UnsafePath(f"bad path component in {path!r}")
    # UTF-8 takes at most 4 bytes per character: shorter strings cannot be over a limit.
    if len(path) * 4 > MAX_PATH_BYTES and _nbytes(path) > MAX_PATH_BYTES:
        raise UnsafePath(f"path too long: {path[:80]!r}...")
    if "/." in "/" + path or len(path) * 4 > MAX_COMPONENT_BYTES:
        for part in path.split("/"):
            if part in (".", ".."):
                raise UnsafePath(f"bad path component in {path!r}")
            if len(part) * 4 > MAX_COMPONENT_BYTES and _nbytes(part) > MAX_COMPONENT_BYTES:
                raise UnsafePath(f"path component too long in {path!r}")
    return path


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def join(root: str, rel: str) -> str:
    """Join a validated relative path onto an OS root path."""
    if rel == "":
        return root
    return f"{root.rstrip('/')}/{rel}"
