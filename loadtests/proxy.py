"""`python -m loadtests.proxy`: push and pull throughput through nginx (docs/deploy/nginx.conf)
next to the same transfers straight to blitd, both carriers, one table with ratios.

Uses the test suite's launchers (tests/daemon.py, tests/nginx.py), so the proxy measured is
exactly the one the tests run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.daemon import running_daemon
from tests.nginx import running_nginx

MiB = 1 << 20


def _blit(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "blit_client.cli", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="one file of this size [1024]")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row, median [3]")
    ap.add_argument("--work", default=None, help="parent of the temp work dir [/tmp]")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="blit-proxy-", dir=args.work))
    try:
        src = work / "src"
        src.mkdir()
        block = os.urandom(MiB)
        with open(src / "big.bin", "wb") as f:
            for _ in range(args.size_mib):
                f.write(block)
        mod = work / "mod"
        mod.mkdir()
        size = args.size_mib * MiB
        rows: list[tuple[str, str, str, float]] = []
        with running_daemon(work, "--module", f"m={mod}", "--proxy-hops", "1") as d, \
                running_nginx(work, d.port) as proxy:
            for carrier, flags in (("tcp", []), ("http", ["--force-http"])):
                for direction in ("push", "pull"):
                    times: dict[str, list[float]] = {"direct": [], "nginx": []}
                    for _ in range(args.repeat):  # alternating, so drift hits both alike
                        for via, target in (("direct", d), ("nginx", proxy)):
                            shutil.rmtree(mod / "in", ignore_errors=True)
                            shutil.rmtree(work / "out", ignore_errors=True)
                            subprocess.run(["sync"], check=True)
                            if direction == "pull":
                                _blit("copy", f"{src}/", f"{d.url('m', 'in')}/")
                                subprocess.run(["sync"], check=True)
                                times[via].append(_blit("copy", *flags,
                                                        f"{target.url('m', 'in')}/",
                                                        f"{work / 'out'}/"))
                            else:
                                times[via].append(_blit("copy", *flags, f"{src}/",
                                                        f"{target.url('m', 'in')}/"))
                    for via, samples in times.items():
                        rows.append((carrier, direction, via, statistics.median(samples)))
            spooled = proxy.spooled()
        print(f"blit through nginx: one {args.size_mib} MiB file, median of {args.repeat}, "
              "whole command (start-up included)\n")
        print("carrier  direction  direct MB/s  nginx MB/s  nginx/direct")
        for carrier in ("tcp", "http"):
            for direction in ("push", "pull"):
                t = {via: s for c, dr, via, s in rows if c == carrier and dr == direction}
                direct, nginx = size / t["direct"] / 1e6, size / t["nginx"] / 1e6
                print(f"{carrier:7}  {direction:9}  {direct:11,.0f}  {nginx:10,.0f}  "
                      f"{nginx / direct:12.2f}")
        print(f"\nrequest bodies nginx spooled to disk: {len(spooled)}")
        print("(tcp rows: the control plane goes through nginx, the bytes over the data port)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
