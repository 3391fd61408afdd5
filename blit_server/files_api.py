"""Endpoints that inspect and remove entries inside a module: disk usage (du) and remove (rm)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from blit_shared.beneath import Tree
from blit_shared.errors import BlitError, Conflict, Forbidden, NotFound, ProtocolError
from blit_shared.paths import check_relpath

from .config import Module
from .context import module_of
from .http import JSON
from .sessions import module_path

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_FAILURES = 100  # listed in a partial rm's answer; the count is always complete


def _target(module: Module, request: Request) -> str:
    """The `path` query parameter as a relative path whose parent stays inside the module.

    Only the parent is resolved: the last component is acted on without following it, so a
    symlink that points out of the module can be measured or removed as the link it is.
    """
    rel = check_relpath(request.query_params.get("path", "").strip("/"))
    module_path(module, rel.rpartition("/")[0])
    return rel


def _refuse(exc: OSError, module: Module, rel: str) -> BlitError:
    """An OSError from a confined step as the API error a caller can act on."""
    where = f"{module.name}/{rel}"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"{where}: no such file or directory")
    if exc.errno in (errno.ELOOP, errno.EXDEV):  # Tree refuses symlinks on the way
        return Forbidden(f"{where}: the path passes through a symbolic link")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Forbidden(f"{where}: {exc.strerror}")
    return BlitError(f"{where}: {exc.strerror or exc}", code="io")


def count(tree: Tree, rel: str) -> dict[str, int]:
    """Entries beneath directory `rel` (not `rel` itself), never following a link.

    Each directory is opened by its parent's handle with O_NOFOLLOW (the parent itself through
    Tree, beneath the root), so a directory swapped for a link mid-walk is counted as
    unreadable, never entered. Only the relative paths wait on the stack, not open handles:
    a wide tree does not run the process out of descriptors.
    """
    n = {"files": 0, "dirs": 0, "links": 0, "bytes": 0, "errors": 0}
    stack = [rel]
    while stack:
        here = stack.pop()
        try:
            if here:
                with tree.at(here) as (parent, name):
                    fd = os.open(name, _OPEN_DIR, dir_fd=parent)
            else:
                fd = os.open(".", _OPEN_DIR, dir_fd=tree.fd)
        except OSError:
            n["errors"] += 1
            continue
        try:
            with os.scandir(fd) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        n["dirs"] += 1
                        stack.append(f"{here}/{e.name}" if here else e.name)
                    elif e.is_symlink():
                        n["links"] += 1
                    else:
                        n["files"] += 1
                        if e.is_file(follow_symlinks=False):
                            n["bytes"] += e.stat(follow_symlinks=False).st_size
        except OSError:
            n["errors"] += 1
        finally:
            os.close(fd)
    return n


def _usage(module: Module, rel: str) -> dict[str, Any]:
    tree = Tree(module.path)
    try:
        try:
            st = tree.lstat(rel)
        except OSError as exc:
            raise _refuse(exc, module, rel) from None
        if stat.S_ISDIR(st.st_mode):
            return {"kind": "d", **count(tree, rel)}
        if stat.S_ISLNK(st.st_mode):
            return {"kind": "l", "files": 0, "dirs": 0, "links": 1, "bytes": 0, "errors": 0}
        size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        return {"kind": "f", "files": 1, "dirs": 0, "links": 0, "bytes": size, "errors": 0}
    finally:
        tree.close()


async def du(request: Request) -> Response:
    module = module_of(request, request.path_params["name"])
    rel = _target(module, request)
    usage = await run_in_threadpool(_usage, module, rel)
    return JSON({"module": module.name, "path": rel, **usage})


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ProtocolError(f"{name} must be true or false")
    return value in ("true", "1")


def _remove(module: Module, rel: str, recursive: bool) -> dict[str, Any]:
    tree = Tree(module.path)
    try:
        try:
            st = tree.lstat(rel)
            if not stat.S_ISDIR(st.st_mode):
                tree.unlink(rel)  # a link goes, never what it points at
                kind = "links" if stat.S_ISLNK(st.st_mode) else "files"
                return {"removed": {"files": 0, "dirs": 0, "links": 0, kind: 1}, "failures": []}
        except OSError as exc:
            raise _refuse(exc, module, rel) from None
        if not recursive:
            raise Conflict(f"{module.name}/{rel} is a directory: remove it recursively "
                           "(recursive=true, blit rm -r)")
        return _remove_tree(tree, module, rel)
    finally:
        tree.close()


def _remove_tree(tree: Tree, module: Module, rel: str) -> dict[str, Any]:
    """shutil.rmtree on a handle beneath the module root: its fd-based walk never follows a
    link. It goes on past entries it cannot remove; those are reported, the rest is gone."""
    before = count(tree, rel)
    failures: list[dict[str, str]] = []
    head = rel.rpartition("/")[0]

    def failed(func: Any, path: str, exc: BaseException) -> None:
        if len(failures) < MAX_FAILURES:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            failures.append({"path": f"{head}/{path}" if head else path, "reason": reason})

    with tree.at(rel) as (parent, name):
        if sys.version_info >= (3, 12):
            shutil.rmtree(name, dir_fd=parent, onexc=failed)
        else:  # 3.11 only has onerror (exc_info), deprecated from 3.12 on
            shutil.rmtree(name, dir_fd=parent,
                          onerror=lambda f, p, info: failed(f, p, info[1]))
    removed = {"files": before["files"], "dirs": before["dirs"] + 1, "links": before["links"]}
    if failures:  # what is still there was not removed
        try:
            tree.lstat(rel)
        except FileNotFoundError:
            pass
        else:
            left = count(tree, rel)
            left["dirs"] += 1
            removed = {k: removed[k] - left[k] for k in removed}
    return {"removed": removed, "failures": failures}


async def remove(request: Request) -> Response:
    module = module_of(request, request.path_params["name"])
    if module.read_only:
        raise Forbidden(f"module {module.name!r} is read-only")
    rel = _target(module, request)
    if rel == "":
        raise Conflict(f"the root of module {module.name!r} cannot be removed "
                       "(remove what is in it instead)")
    recursive = _flag(request, "recursive")
    done = await run_in_threadpool(_remove, module, rel, recursive)
    return JSON({"module": module.name, "path": rel, **done})


ROUTES = [
    Route("/v1/modules/{name}/du", du, methods=["GET"]),
    Route("/v1/modules/{name}/entries", remove, methods=["DELETE"]),
]
