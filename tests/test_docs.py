"""Runs the curl examples of docs/api.md, in order, against a real daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.daemon import running_daemon

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_api_doc_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    module = tmp_path / "demo"
    module.mkdir()
    (module / "hello.txt").write_text("hello from blit\n")
    work = tmp_path / "work"
    work.mkdir()
    with running_daemon(tmp_path, "--module", f"demo={module}") as daemon:
        script = "set -euo pipefail\n" + "\n".join(blocks)
        env = {**os.environ, "BLITD": f"http://{daemon.addr}"}
        out = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    stream = (work / "stream.bin").read_bytes()
    assert stream.startswith(b"BLIT\x01") and b"hello from blit" in stream
    assert '"files_transferred":1' in out.stdout.replace(" ", "")
    # The push walked through with curl wrote the file, whole, with its mode and mtime.
    hello, copy = module / "hello.txt", module / "copy" / "hello.txt"
    assert copy.read_bytes() == hello.read_bytes()
    assert copy.stat().st_mtime_ns == hello.stat().st_mtime_ns
    assert copy.stat().st_mode == hello.stat().st_mode
    assert '"event":"progress"' in out.stdout.replace(" ", "")
    assert "data: {" in out.stdout  # the server-sent events form
    assert "/v1/openapi.json" in out.stdout
    assert not (module / "dry").exists()  # the dry run wrote nothing
