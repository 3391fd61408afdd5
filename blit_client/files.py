"""The bodies of `blit du` and `blit rm`: disk usage and removal of entries on a daemon."""

from __future__ import annotations

import sys
from typing import Any

import orjson
import typer

from blit_shared.errors import EXIT_OK, EXIT_PARTIAL, Conflict, UsageError

from .endpoints import Connection, Local, Remote, parse
from .render import JSON_SCHEMA, human_bytes


def _remote(target: str, command: str) -> Remote:
    where = parse(target)
    if isinstance(where, Local):
        raise UsageError(f"blit {command} works on remote HOST:PORT:/MODULE/PATH; "
                         f"use {command} for local paths")
    if where.module is None:
        raise UsageError(f"{target} names no module: use HOST:PORT:/MODULE/PATH")
    return where


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _counts(n: dict[str, int]) -> str:
    parts = [_plural(n["files"], "file"), _plural(n["dirs"], "dir")]
    if n["links"]:
        parts.append(_plural(n["links"], "link"))
    return ", ".join(parts)


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps({**data, "schema": JSON_SCHEMA}) + b"\n")


def _usage(api: Any, where: Remote) -> dict[str, Any]:
    return api.call("GET", f"/v1/modules/{where.module}/du",  # type: ignore[no-any-return]
                    params={"path": where.path})


def disk_usage(target: str, json: bool, conn: Connection) -> int:
    """`blit du`: count what is under a remote path, without following links."""
    from .api import DaemonClient  # httpx only for the commands that talk to a daemon

    where = _remote(target, "du")
    with DaemonClient(where.base_url, conn) as api:
        data = _usage(api, where)
    if json:
        _print_json(data)
    else:
        print(f"{_counts(data)}, {human_bytes(data['bytes'])}  {where}")
    if data.get("errors"):
        print(f"blit: warning: {data['errors']:,} directories could not be read "
              "(not counted)", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def remove(target: str, recursive: bool, yes: bool, json: bool, conn: Connection) -> int:
    """`blit rm`: remove a file or link (a directory with `recursive`) on a daemon.

    Asks first on a terminal; elsewhere it needs `yes` and removes nothing without it.
    """
    where = _remote(target, "rm")
    if where.path == "":
        raise UsageError(f"refusing to remove the root of module {where.module!r}; "
                         "remove what is in it instead")
    interactive = sys.stdin.isatty() and not json
    if not yes and not interactive:
        raise UsageError("rm removes from the daemon: pass -y/--yes to confirm "
                         "(stdin is not a terminal)")
    from .api import DaemonClient

    with DaemonClient(where.base_url, conn) as api:
        if not yes:
            _confirm(_usage(api, where), where, recursive)
        data = api.call("DELETE", f"/v1/modules/{where.module}/entries",
                        params={"path": where.path, "recursive": str(recursive).lower()})
    for failure in data.get("failures", []):
        print(f"failed {failure['path']}: {failure['reason']}", file=sys.stderr)
    if json:
        _print_json(data)
    else:
        print(f"removed {_counts(data['removed'])}  {where}")
    return EXIT_PARTIAL if data.get("failures") else EXIT_OK


def _confirm(usage: dict[str, Any], where: Remote, recursive: bool) -> None:
    """Ask before removing; a directory without -r is refused before the question."""
    if usage["kind"] == "d":
        if not recursive:
            raise Conflict(f"{where} is a directory: pass -r/--recursive to remove it")
        what = (f"{where} and everything in it ({_counts(usage)}, "
                f"{human_bytes(usage['bytes'])})")
    else:
        what = f"{where} ({'symlink' if usage['kind'] == 'l' else 'file'})"
    if not typer.confirm(f"remove {what}?", default=False, err=True):
        raise UsageError("rm not confirmed; nothing removed")
