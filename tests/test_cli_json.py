"""The `--json` output of the real CLI, line by line, against docs/json-schema/events-v1.json,
and the exit codes of docs/cli.md; also the shell completion typer provides."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.daemon import Daemon, free_port, running_daemon
from tests.helpers import assert_same_tree, blit, snapshot

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "json-schema"
                     / "events-v1.json").read_text())
EVENTS = Draft202012Validator(SCHEMA)


def validator(name: str) -> Draft202012Validator:
    """A validator for one of the schema's $defs (the one-object outputs of ls/du/rm)."""
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]})


def check_lines(stdout: str, *, finished: bool = True) -> list[dict[str, Any]]:
    """Every stdout line is one event valid against the schema; a run that finished (exit 0
    or 2) ends with the one summary, a fatal one (exit 1) prints none."""
    events = [json.loads(line) for line in stdout.splitlines()]
    for event in events:
        errors = sorted(EVENTS.iter_errors(event), key=str)
        assert not errors, f"{event} does not match the schema: {errors[0].message}"
    summaries = [e for e in events if e["event"] == "summary"]
    errors = [e for e in events if e["event"] == "error"]
    if finished:
        assert summaries == events[-1:] and summaries[0]["schema"] == 1 and not errors
    else:  # a fatal run ends with the one error event that says why
        assert summaries == [] and errors == events[-1:]
    return events


def run(*args: str, code: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    r = blit(args[0], "--json", *args[1:])
    assert r.returncode == code, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr}"
    events = check_lines(r.stdout)
    assert events, "no output"
    return events, events[-1]


def kinds(events: list[dict[str, Any]]) -> set[str]:
    return {e["event"] for e in events}


def test_schema_itself_is_valid_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    named = {ref["$ref"].rpartition("/")[2] for ref in SCHEMA["oneOf"]}
    assert named == {"phase", "scan", "plan", "file", "fail", "warning", "notice", "plan_item",
                     "progress", "summary", "error"}


def test_examples_in_docs_json_md_match_the_schema() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "json.md").read_text()
    lines = [line for block in re.findall(r"```json\n(.*?)```", doc, re.S)
             for line in block.splitlines()]
    assert len(lines) >= 10
    for line in lines:
        obj = json.loads(line)
        if "event" in obj:
            EVENTS.validate(obj)
        else:
            assert any(validator(name).is_valid(obj)
                       for name in ("ls_modules", "ls_dir", "du", "rm")), line


def test_schema_rejects_what_it_should() -> None:
    """The schema is not a rubber stamp: drift in the output would be caught."""
    assert not EVENTS.is_valid({"event": "nope"})
    assert not EVENTS.is_valid({"event": "file", "action": "copied", "path": "a"})  # no size
    assert not EVENTS.is_valid({"event": "phase", "phase": 3})
    summary = {"event": "summary", "files_examined": 0}
    assert not EVENTS.is_valid(summary)


# -- local routes ---------------------------------------------------------------------------------

def test_local_copy(small_tree: Path, tmp_path: Path) -> None:
    events, s = run("copy", f"{small_tree}/", str(tmp_path / "dst"), code=0)
    assert {"phase", "scan", "plan", "file", "summary"} <= kinds(events)
    # In order; the local route scans before it reports (no "scan" phase of its own).
    assert [e["phase"] for e in events if e["event"] == "phase"][-2:] == ["plan", "transfer"]
    assert s["carrier"] == "local" and s["files_failed"] == 0 and s["dry_run"] is False
    copied = sum(1 for e in events if e["event"] == "file" and e["action"] == "copied")
    assert copied == s["files_transferred"] > 0
    assert_same_tree(small_tree, tmp_path / "dst")


def test_progress_events_with_p(small_tree: Path, tmp_path: Path) -> None:
    events, s = run("copy", "-p", f"{small_tree}/", str(tmp_path / "dst"), code=0)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["bytes_done"] == s["bytes"]
    done = [e["bytes_done"] for e in progress]
    assert done == sorted(done)


def test_mirror_with_deletions_and_a_notice(small_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    run("copy", f"{small_tree}/", str(dst), code=0)
    (dst / "extra.txt").write_text("x")
    (dst / "old").mkdir()
    (dst / "old" / "keep.log").write_text("excluded: keeps old/ alive")
    events, s = run("mirror", "-y", "--exclude", "*.log", f"{small_tree}/", str(dst), code=0)
    deleted = {e["path"] for e in events if e["event"] == "file" and e["action"] == "deleted"}
    assert deleted == {"extra.txt"} and s["files_deleted"] == 1
    notices = [e["message"] for e in events if e["event"] == "notice"]
    assert any("kept non-empty directory old" in m for m in notices)


def test_dry_run(small_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "extra.txt").write_text("x")
    before = snapshot(dst)
    events, s = run("mirror", "-n", f"{small_tree}/", str(dst), code=0)
    assert snapshot(dst) == before
    items = {(e["action"], e["path"]) for e in events if e["event"] == "plan_item"}
    assert ("copy", "big/big.bin") in items and ("delete", "extra.txt") in items
    assert ("link", "link_to_file") in items and ("mkdir", "empty") in items
    assert s["dry_run"] is True and "file" not in kinds(events)


def test_failing_file_and_a_mirror_that_keeps_what_it_should_delete(src_tree: Path,
                                                                    tmp_path: Path) -> None:
    # As root chmod 000 does not stop reads: a name blit refuses (a backslash) fails instead.
    dst = tmp_path / "dst"
    run("copy", f"{src_tree}/", str(dst), code=0)
    (dst / "extra.txt").write_text("x")
    (src_tree / "bad\\name").write_text("b")
    events, s = run("mirror", "-y", f"{src_tree}/", str(dst), code=2)
    fails = [e for e in events if e["event"] == "fail"]
    assert len(fails) == 1 and "bad" in fails[0]["path"] and s["files_failed"] == 1
    assert s["failures"] == [{"path": f["path"], "reason": f["reason"]} for f in fails]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert warnings == [s["deletions_skipped"]] and (dst / "extra.txt").exists()


# -- exit codes without a summary ----------------------------------------------------------------

@pytest.mark.parametrize(("args", "code"), [
    (["copy", "--json", "--no-such-flag", "a", "b"], 3),
    (["copy", "--json", "only-one-arg"], 3),
    (["copy", "--json", "--streams", "99", "a", "b"], 3),
])
def test_usage_errors_exit_3(args: list[str], code: int) -> None:
    r = blit(*args)
    assert r.returncode == code, r.stderr
    assert r.stdout == ""


def test_mirror_without_yes_off_a_terminal_exits_3_having_written_nothing(
        small_tree: Path, tmp_path: Path) -> None:
    r = blit("mirror", "--json", f"{small_tree}/", str(tmp_path / "dst"))
    assert r.returncode == 3 and "-y" in r.stderr
    assert r.stdout == "" and not (tmp_path / "dst").exists()


def test_missing_source_exits_1(tmp_path: Path) -> None:
    r = blit("copy", "--json", str(tmp_path / "nope"), str(tmp_path / "dst"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    error = check_lines(r.stdout, finished=False)[-1]
    assert error["exit_code"] == 1 and error["code"] == "not_found"
    assert "does not exist" in error["message"]


def test_unreachable_daemon_exits_1(small_tree: Path, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    for args in (["copy", f"{small_tree}/", f"127.0.0.1:{port}:/m/x"],
                 ["copy", f"127.0.0.1:{port}:/m/x", str(tmp_path / "dst")],
                 ["ls", f"127.0.0.1:{port}"], ["du", f"127.0.0.1:{port}:/m"]):
        r = blit(args[0], "--json", *args[1:])
        assert r.returncode == 1, (args, r.stderr)
        assert "cannot reach daemon" in r.stderr
        error = check_lines(r.stdout, finished=False)[-1]  # all valid, error last
        assert error["exit_code"] == 1 and "cannot reach daemon" in error["message"]


# -- push and pull ------------------------------------------------------------------------------

@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    root = tmp_path / "module"
    root.mkdir()
    with running_daemon(tmp_path, "--module", f"m={root}") as d:
        yield d, root


@pytest.mark.parametrize("carrier", ["tcp", "http"])
def test_push_and_pull(daemon: tuple[Daemon, Path], small_tree: Path, tmp_path: Path,
                       carrier: str) -> None:
    d, root = daemon
    flags = ["--force-http"] if carrier == "http" else []
    events, s = run("copy", *flags, f"{small_tree}/", d.url("m", "tree"), code=0)
    assert s["carrier"] == carrier and s["files_failed"] == 0
    assert {"phase", "scan", "plan", "file"} <= kinds(events)
    assert_same_tree(small_tree, root / "tree")

    (root / "tree" / "extra.txt").write_text("x")  # the daemon deletes; its events replay here
    events, s = run("mirror", "-y", *flags, f"{small_tree}/", d.url("m", "tree"), code=0)
    assert {e["path"] for e in events if e.get("action") == "deleted"} == {"extra.txt"}

    events, s = run("copy", *flags, d.url("m", "tree") + "/", str(tmp_path / "pulled"), code=0)
    assert s["carrier"] == carrier and s["files_transferred"] > 0
    assert_same_tree(small_tree, tmp_path / "pulled")

    events, s = run("mirror", "-n", d.url("m", "tree") + "/", str(tmp_path / "pulled"), code=0)
    assert s["dry_run"] is True and s["carrier"] == "none"


def test_pull_with_a_failing_file_exits_2(daemon: tuple[Daemon, Path], tmp_path: Path) -> None:
    d, root = daemon
    (root / "ok.txt").write_text("ok")
    (root / "bad\\name").write_text("b")
    events, s = run("copy", d.url("m") + "/", str(tmp_path / "pulled"), code=2)
    assert len([e for e in events if e["event"] == "fail"]) == 1 and s["files_failed"] == 1
    assert (tmp_path / "pulled" / "ok.txt").read_text() == "ok"


def test_push_with_a_failing_file_exits_2(daemon: tuple[Daemon, Path], src_tree: Path) -> None:
    d, root = daemon
    (src_tree / "bad\\name").write_text("b")
    events, s = run("copy", f"{src_tree}/", d.url("m", "tree"), code=2)
    assert len([e for e in events if e["event"] == "fail"]) == 1
    assert s["files_failed"] == 1 and (root / "tree" / "a" / "top.txt").exists()


def test_ls_du_rm_json_match_their_schemas(daemon: tuple[Daemon, Path]) -> None:
    d, root = daemon
    (root / "dir").mkdir()
    (root / "dir" / "f.txt").write_text("12345")
    outputs = {
        "ls_modules": blit("ls", "--json", d.addr),
        "ls_dir": blit("ls", "--json", d.url("m", "dir")),
        "du": blit("du", "--json", d.url("m")),
        "rm": blit("rm", "--json", "-y", "-r", d.url("m", "dir")),
    }
    for name, r in outputs.items():
        assert r.returncode == 0, (name, r.stderr)
        lines = r.stdout.splitlines()
        assert len(lines) == 1, (name, r.stdout)
        validator(name).validate(json.loads(lines[0]))
        assert not EVENTS.is_valid(json.loads(lines[0]))  # not to be mistaken for an event


# -- shell completion ---------------------------------------------------------------------------

def test_completion_scripts_as_docs_cli_md_shows() -> None:
    for shell in ("bash", "zsh", "fish"):
        r = blit(env={"_BLIT_COMPLETE": f"source_{shell}"})
        assert r.returncode == 0, r.stderr
        assert "_BLIT_COMPLETE=complete_" in r.stdout and "blit" in r.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_show_completion_detects_the_shell(tmp_path: Path) -> None:
    """`blit --show-completion`, run from bash, prints bash's script (typer + shellingham)."""
    # The console script next to this interpreter (make test does not activate the venv).
    exe = str(Path(sys.executable).parent / "blit")
    assert os.access(exe, os.X_OK), f"no blit console script at {exe}"
    r = subprocess.run(["bash", "-c", f"{exe} --show-completion"], capture_output=True,
                       text=True, timeout=60, check=False, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "complete -o default -F _blit_completion blit" in r.stdout


def test_completion_completes_commands() -> None:
    env = {"_BLIT_COMPLETE": "complete_bash", "COMP_WORDS": "blit m", "COMP_CWORD": "1"}
    assert blit(env=env).stdout.split() == ["mirror"]
    env["COMP_WORDS"] = "blit r"
    assert blit(env=env).stdout.split() == ["rm"]
    env["COMP_WORDS"], env["COMP_CWORD"] = "blit rm --re", "2"
    assert blit(env=env).stdout.split() == ["--recursive"]
