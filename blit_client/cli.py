"""The `blit` command line: copy, mirror and ls, for local, push and pull routes alike."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import typer

try:  # typer ≥ 0.2x vendors click; older releases use the click package itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

from blit_shared import __version__
from blit_shared.errors import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, BlitError, UsageError
from blit_shared.options import IO_TIMEOUT, Options
from blit_shared.progress import Progress
from blit_shared.receiver import VERIFY_FAILED

from .endpoints import Connection, Local, parse
from .local_route import early_destination, run_local
from .render import Renderer

app = typer.Typer(
    add_completion=True, no_args_is_help=True, rich_markup_mode=None,
    help="blit: fast, safe copy and mirror of directory trees — local, push and pull.",
)

ProgressOpt = Annotated[bool, typer.Option("-p", "--progress", help="Show a progress bar.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="One line per file acted on.")]
DryRunOpt = Annotated[bool, typer.Option("-n", "--dry-run", help="Print the plan; write nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="NDJSON events on stdout, summary last.")]
ChecksumOpt = Annotated[bool, typer.Option("-c", "--checksum",
                                           help="Compare content hashes, not size+mtime.")]
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="PATTERN", help="Skip paths matching a gitignore-style pattern.")]
YesOpt = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask before deleting.")]
StreamsOpt = Annotated[int | None, typer.Option(
    "--streams", min=1, max=32, help="Override the tuned number of parallel streams.")]
ForceHttpOpt = Annotated[bool, typer.Option(
    "--force-http", help="Move bytes over the HTTP carrier, not the TCP data plane.")]
NoFallbackOpt = Annotated[bool, typer.Option(
    "--no-fallback", help="Fail when the TCP data port is unreachable instead of moving the "
    "bytes over HTTP.")]
Http2Opt = Annotated[bool, typer.Option(
    "--http2", help="Speak HTTP/2 (h2c) to the daemon instead of HTTP/1.1.")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=0.1, metavar="SECONDS",
    help="Remote: give up on a data stream that makes no progress this long.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="BLIT_TOKEN", show_default=False,
    help="Bearer token for the daemon (or set BLIT_TOKEN).")]
TlsOpt = Annotated[bool, typer.Option("--tls", help="Speak TLS to the daemon.")]
CaOpt = Annotated[str | None, typer.Option(
    "--ca", envvar="BLIT_CA", metavar="FILE", help="Trust this CA bundle (implies --tls).")]
NoVerifyOpt = Annotated[bool, typer.Option(
    "--no-verify", help="Remote: skip the end-to-end xxh3-128 check of what was sent.")]
MaxDeleteOpt = Annotated[int | None, typer.Option(
    "--max-delete", min=0, metavar="N", help="Delete nothing when more than N would go.")]
EmptyOpt = Annotated[bool, typer.Option(
    "--allow-empty-source", help="Let mirror delete everything when the source is empty.")]


@app.command()
def copy(src: str, dst: str, progress: ProgressOpt = False, verbose: VerboseOpt = False,
         dry_run: DryRunOpt = False, json: JsonOpt = False, checksum: ChecksumOpt = False,
         exclude: ExcludeOpt = None, yes: YesOpt = False, streams: StreamsOpt = None,
         force_http: ForceHttpOpt = False, no_fallback: NoFallbackOpt = False,
         http2: Http2Opt = False,
         timeout: TimeoutOpt = IO_TIMEOUT, token: TokenOpt = None, tls: TlsOpt = False,
         ca: CaOpt = None, no_verify: NoVerifyOpt = False) -> None:
    """Copy SRC to DST (files that differ by size or mtime; nothing is deleted)."""
    opts = Options(mirror=False, checksum=checksum, dry_run=dry_run, excludes=exclude or [],
                   streams=streams, verify=not no_verify)
    conn = Connection(http2, timeout, token, tls, ca)
    raise typer.Exit(_transfer(src, dst, opts, progress, verbose, json, yes,
                               (force_http, not no_fallback), conn))


@app.command()
def mirror(src: str, dst: str, progress: ProgressOpt = False, verbose: VerboseOpt = False,
           dry_run: DryRunOpt = False, json: JsonOpt = False, checksum: ChecksumOpt = False,
           exclude: ExcludeOpt = None, yes: YesOpt = False, streams: StreamsOpt = None,
           force_http: ForceHttpOpt = False, no_fallback: NoFallbackOpt = False,
           http2: Http2Opt = False,
           timeout: TimeoutOpt = IO_TIMEOUT, token: TokenOpt = None, tls: TlsOpt = False,
           ca: CaOpt = None, allow_empty_source: EmptyOpt = False,
           max_delete: MaxDeleteOpt = None, no_verify: NoVerifyOpt = False) -> None:
    """Make DST an exact copy of SRC: copy, then delete what SRC does not have."""
    opts = Options(mirror=True, checksum=checksum, dry_run=dry_run, excludes=exclude or [],
                   streams=streams, allow_empty_source=allow_empty_source,
                   max_delete=max_delete, verify=not no_verify)
    conn = Connection(http2, timeout, token, tls, ca)
    raise typer.Exit(_transfer(src, dst, opts, progress, verbose, json, yes,
                               (force_http, not no_fallback), conn))


@app.command()
def ls(target: str, json: JsonOpt = False, http2: Http2Opt = False, token: TokenOpt = None,
       tls: TlsOpt = False, ca: CaOpt = None) -> None:
    """List a daemon's modules (HOST:PORT) or a remote directory (HOST:PORT:/MODULE/PATH)."""
    from .api import DaemonClient
    from .render import JSON_SCHEMA, human_bytes

    remote = parse(target)
    if isinstance(remote, Local):
        raise UsageError("ls wants a remote HOST:PORT or HOST:PORT:/MODULE/PATH")
    with DaemonClient(remote.base_url, Connection(http2, IO_TIMEOUT, token, tls, ca)) as api:
        if remote.module is None:
            data = api.call("GET", "/v1/modules")
            rows = [f"{m['name']}\t{'ro' if m['read_only'] else 'rw'}\t{m['comment']}"
                    for m in data["modules"]]
        else:
            data = api.call("GET", f"/v1/modules/{remote.module}/list",
                            params={"path": remote.path})
            marks = {"d": "/", "l": "@", "f": ""}
            rows = [f"{e['kind']} {oct(e['mode'])[2:]:>4} {human_bytes(e['size']):>9}  "
                    f"{e['name']}{marks[e['kind']]}" for e in data["entries"]]
    if json:
        sys.stdout.buffer.write(orjson.dumps({**data, "schema": JSON_SCHEMA}) + b"\n")
    else:
        print("\n".join(rows))


ResultJsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
RecursiveOpt = Annotated[bool, typer.Option(
    "-r", "--recursive", help="Remove a directory and everything in it.")]


@app.command()
def du(target: str, json: ResultJsonOpt = False, http2: Http2Opt = False,
       token: TokenOpt = None, tls: TlsOpt = False, ca: CaOpt = None) -> None:
    """Count files, dirs, links and bytes under a remote path (HOST:PORT:/MODULE/PATH)."""
    from .files import disk_usage

    raise typer.Exit(disk_usage(target, json, Connection(http2, IO_TIMEOUT, token, tls, ca)))


@app.command()
def rm(target: str, recursive: RecursiveOpt = False, yes: YesOpt = False,
       json: ResultJsonOpt = False, http2: Http2Opt = False, token: TokenOpt = None,
       tls: TlsOpt = False, ca: CaOpt = None) -> None:
    """Remove a remote file or link (a directory with -r); asks first, or needs -y."""
    from .files import remove

    raise typer.Exit(remove(target, recursive, yes, json,
                            Connection(http2, IO_TIMEOUT, token, tls, ca)))


@app.command()
def version() -> None:
    """Print the version."""
    print(f"blit {__version__}")


def _transfer(src: str, dst: str, opts: Options, bar: bool, verbose: bool, json: bool,
              yes: bool, carrier: tuple[bool, bool], conn: Connection) -> int:
    """`carrier`: (force HTTP, allow falling back to HTTP)."""
    renderer = Renderer(bar=bar, verbose=verbose, json=json)
    interactive = sys.stdin.isatty() and not json
    if opts.mirror and not opts.dry_run and not yes and not interactive:
        raise UsageError("mirror deletes from DST: pass -y/--yes to confirm "
                         "(stdin is not a terminal)")
    progress = Progress(listener=renderer)

    def confirm(counts: dict[str, int]) -> None:
        if not opts.mirror or yes or not counts["to_delete"]:
            return
        renderer.stop()
        if not typer.confirm(f"mirror will delete {counts['to_delete']:,} entries from {dst}. "
                             "Continue?", default=False, err=True):
            raise UsageError("mirror not confirmed; nothing written")
        renderer.start(progress)

    source, dest = parse(src), parse(dst)

    def run(progress: Progress, confirm: Callable[[dict[str, int]], None]) -> dict[str, Any]:
        renderer.start(progress)
        try:
            if isinstance(source, Local) and isinstance(dest, Local):
                return run_local(src, dst, opts, progress, confirm)
            early = early_destination(source, dest, dst, opts, progress)  # before these imports
            try:
                from .remote_route import CarrierChoice, run_remote

                return run_remote(source, dest, dst, opts, progress, confirm, conn=conn,
                                  carrier=CarrierChoice(*carrier), early=early)
            finally:
                if early is not None:
                    early.own.drop()
        finally:
            renderer.stop()

    result = run(progress, confirm)
    damaged = [f for f in result["summary"]["failures"] if f["reason"] == VERIFY_FAILED]
    if damaged:
        # Corrupted in transit: send those files once more (the re-plan finds only them).
        renderer({"event": "notice", "message": f"{len(damaged)} files failed verification; "
                  "sending them again"})
        again = run(Progress(listener=renderer), lambda counts: None)
        result = {"summary": merge_retry(result["summary"], again["summary"], len(damaged))}
    return _report(renderer, result)


def merge_retry(first: dict[str, Any], second: dict[str, Any], resent: int) -> dict[str, Any]:
    """One summary for a run and its retry: work adds up, the outcome is the retry's."""
    out = dict(second)
    for key in ("files_transferred", "files_deleted", "bytes", "duration_s"):
        out[key] = first[key] + second[key]
    out["files_examined"] = first["files_examined"]
    out["files_skipped"] = first["files_skipped"]
    out["rate_bytes_per_s"] = int(out["bytes"] / out["duration_s"]) if out["duration_s"] else 0
    out["resent"] = resent
    return out


def _report(renderer: Renderer, result: dict[str, Any]) -> int:
    summary = result["summary"]
    if "report" in result:
        renderer.plan_report(result["report"])
    if summary.get("deletions_skipped"):
        renderer({"event": "warning", "message": summary["deletions_skipped"]})
    renderer.summary(summary)
    # A mirror that kept what it should have deleted did not finish its job.
    incomplete = summary["files_failed"] or summary.get("deletions_skipped")
    return EXIT_PARTIAL if incomplete else EXIT_OK


def _fatal(code: str, message: str, exit_code: int) -> int:
    """With --json, a run that ends without a summary says why as its last line (usage
    errors, exit 3, stay off stdout: nothing was started)."""
    if exit_code != EXIT_USAGE and "--json" in sys.argv[1:]:
        event = {"event": "error", "code": code, "message": message, "exit_code": exit_code}
        with contextlib.suppress(OSError):
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    return exit_code


def main() -> None:
    """Entry point: maps usage errors to exit 3 and BlitError to its code (see docs/cli.md)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="blit", standalone_mode=False)
    except click_errors.UsageError as exc:
        exc.show()
        code = EXIT_USAGE
    except typer.Abort:
        print("blit: aborted", file=sys.stderr)
        code = _fatal("aborted", "aborted", EXIT_FATAL)
    except BlitError as exc:
        print(f"blit: error: {exc.message}", file=sys.stderr)
        code = _fatal(exc.code, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        print("blit: interrupted", file=sys.stderr)
        code = _fatal("interrupted", "interrupted", 130)
    except OSError as exc:
        print(f"blit: error: {exc}", file=sys.stderr)
        code = _fatal("io", str(exc), EXIT_FATAL)
    code = code if isinstance(code, int) else EXIT_OK
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # (a reader that went away: nothing more can be said)
        code = code or EXIT_FATAL
    if sys.gettrace() is not None or sys.getprofile() is not None:
        sys.exit(code)  # (a profiler or coverage reports at exit)
    # Everything the run opened is closed: skip the interpreter's teardown, which frees every
    # object one by one (no-op re-runs of 20,000 files: local 0.165 -> 0.152 s, pull 0.248 ->
    # 0.226 s, push 0.270 -> 0.247 s).
    os._exit(code)


if __name__ == "__main__":
    main()
