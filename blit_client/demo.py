"""`make demo`: start a daemon on a temp module, push and pull a sample tree with progress."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx


def sample_tree(root: str, files: int = 2000, big: int = 64 << 20) -> None:
    """A source-checkout-like tree: many small files in nested dirs, a link, one large file."""
    rng = random.Random(7)
    for i in range(files):
        d = os.path.join(root, f"pkg{i % 20}", f"mod{i % 7}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i}.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randint(200, 16 << 10)))
    os.makedirs(os.path.join(root, "empty dir"), exist_ok=True)
    os.symlink("pkg0/mod0/file0.txt", os.path.join(root, "latest"))
    with open(os.path.join(root, "dataset.bin"), "wb") as f:
        f.write(os.urandom(big))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str) -> None:
    print(f"\n$ blit {' '.join(args)}", flush=True)
    code = subprocess.call([sys.executable, "-m", "blit_client.cli", *args])
    if code != 0:
        raise SystemExit(f"demo: blit exited {code}")


def main() -> None:
    work = tempfile.mkdtemp(prefix="blit-demo-")
    src, module, pulled = (os.path.join(work, n) for n in ("src", "module", "pulled"))
    os.makedirs(module)
    print(f"demo: building a sample tree in {src}", flush=True)
    sample_tree(src)
    port = free_port()
    daemon = subprocess.Popen([sys.executable, "-m", "blit_server.cli", "--root", module,
                               "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        print(f"demo: blitd serving {module} as module 'default' on 127.0.0.1:{port}")
        remote = f"127.0.0.1:{port}:/default/tree"
        run("copy", "-p", src + "/", remote)
        run("copy", "-p", remote + "/", pulled)
        run("mirror", "-y", src + "/", remote)
        run("ls", f"127.0.0.1:{port}:/default/tree")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    print("\ndemo: done (daemon stopped, temp files removed)")


if __name__ == "__main__":
    main()
