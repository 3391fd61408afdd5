"""Endpoints about the daemon and its modules: health, module list, directory listing."""

from __future__ import annotations

import os
import stat
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from blit_shared import __version__
from blit_shared.errors import NotFound

from .auth import authorize
from .context import daemon_of, module_of
from .http import JSON
from .sessions import module_path


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok", "version": __version__})


async def list_modules(request: Request) -> Response:
    authorize(request, daemon_of(request).config)
    mods = daemon_of(request).config.modules.values()
    return JSON({"modules": [m.to_json() for m in mods]})


async def list_dir(request: Request) -> Response:
    module = module_of(request, request.path_params["name"])
    rel = request.query_params.get("path", "").strip("/")
    path = module_path(module, rel)

    def listing() -> list[dict[str, Any]]:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{module.name}/{rel}: no such file or directory") from None
        if not stat.S_ISDIR(st.st_mode):
            return [_entry_json(os.path.basename(path), st)]
        out = []
        with os.scandir(path) as it:
            for d in sorted(it, key=lambda d: d.name):
                out.append(_entry_json(d.name, d.stat(follow_symlinks=False)))
        return out

    return JSON({"module": module.name, "path": rel, "entries": await run_in_threadpool(listing)})


def _entry_json(name: str, st: os.stat_result) -> dict[str, Any]:
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
    return {"name": name, "kind": kind, "size": st.st_size if kind == "f" else 0,
            "mtime_ns": st.st_mtime_ns, "mode": stat.S_IMODE(st.st_mode)}


ROUTES = [
    Route("/healthz", healthz),
    Route("/v1/modules", list_modules),
    Route("/v1/modules/{name}/list", list_dir),
]
