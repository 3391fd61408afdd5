"""Deterministic benchmark datasets: specs, generation (cached by a stamp file), checks."""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BASE_MTIME_NS = 1_700_000_000_000_000_000  # fixed epoch so reruns build identical trees
BLOCK = 4 * MiB
GENERATOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class Spec:
    """What to build: `big` files of fixed sizes plus `small` files spread over `dirs` dirs."""

    name: str
    big: tuple[int, ...] = ()          # sizes of large files (bytes)
    small: int = 0                     # number of small files
    dirs: int = 1                      # directories the small files are spread over
    small_range: tuple[int, int] = (1 * KiB, 16 * KiB)
    checkout: bool = False             # source-checkout-like layout and size distribution
    fill_to: int = 0                   # mixed: add 10–100 MiB files until the tree is ~this big
    seed: int = 4


@dataclass(slots=True)
class Dataset:
    """A generated tree: where it is and what is in it (regular files only)."""

    spec: Spec
    path: Path
    files: int = 0
    bytes: int = 0
    links: int = 0
    samples: list[str] = field(default_factory=list)  # relpaths checked byte-for-byte


def specs(quick: bool) -> dict[str, Spec]:
    """The benchmark datasets; `quick` shrinks them so the whole run takes minutes."""
    if quick:
        return {
            "large": Spec("large", big=(256 * MiB,)),
            "large4": Spec("large4", big=(64 * MiB,) * 4),
            "small": Spec("small", small=5_000, dirs=50),
            "mixed": Spec("mixed", small=6_000, dirs=0, checkout=True, fill_to=300 * MiB),
            "many": Spec("many", small=50_000, dirs=500),
        }
    return {
        "large": Spec("large", big=(1 * GiB,)),
        "large4": Spec("large4", big=(512 * MiB,) * 4),
        "small": Spec("small", small=20_000, dirs=200),
        "mixed": Spec("mixed", small=30_000, dirs=0, checkout=True, fill_to=1536 * MiB),
        "many": Spec("many", small=200_000, dirs=2_000),
    }


def _spec_json(spec: Spec) -> str:
    return json.dumps({"v": GENERATOR_VERSION, **asdict(spec)}, sort_keys=True)


def ensure(spec: Spec, root: Path) -> Dataset:
    """Build `root/<name>` unless a stamp says an identical spec is already there."""
    path, stamp = root / spec.name, root / f"{spec.name}.stamp.json"
    if stamp.exists():
        data = json.loads(stamp.read_text())
        if data.get("spec") == _spec_json(spec) and path.is_dir():
            return Dataset(spec, path, data["files"], data["bytes"], data["links"],
                           data["samples"])
        stamp.unlink()
    if path.exists():
        import shutil

        shutil.rmtree(path)
    ds = _generate(spec, path)
    stamp.write_text(json.dumps({"spec": _spec_json(spec), "files": ds.files, "bytes": ds.bytes,
                                 "links": ds.links, "samples": ds.samples}))
    return ds


def _write(path: Path, size: int, rng: random.Random, mtime_ns: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, BLOCK)
            f.write(rng.randbytes(n))
            left -= n
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _checkout_dir(rng: random.Random) -> str:
    top = rng.choice(["src", "src", "src", "tests", "docs", "vendor", "tools", ".git/objects"])
    if top == ".git/objects":
        return f"{top}/{rng.randrange(256):02x}"
    depth = rng.choice([1, 1, 2, 2, 3, 4])
    parts = [top] + [f"{rng.choice(['core', 'net', 'io', 'util', 'ui', 'db'])}{rng.randrange(8)}"
                     for _ in range(depth)]
    return "/".join(parts)


def _generate(spec: Spec, path: Path) -> Dataset:
    rng = random.Random(f"blit-bench:{spec.name}:{spec.seed}")
    path.mkdir(parents=True)
    ds = Dataset(spec, path)
    tick = 0

    def add(rel: str, size: int) -> None:
        nonlocal tick
        full = path / rel
        full.parent.mkdir(parents=True, exist_ok=True)
        _write(full, size, rng, BASE_MTIME_NS + tick * 1_000_003)
        tick += 1
        ds.files += 1
        ds.bytes += size

    for i, size in enumerate(spec.big):
        add(f"part{i}.bin" if len(spec.big) > 1 else "big.bin", size)
    small: list[str] = []
    for i in range(spec.small):
        if spec.checkout:
            ext = rng.choice([".py", ".c", ".h", ".md", ".json", ".txt", ""])
            rel = f"{_checkout_dir(rng)}/f{i}{ext}"
            size = 0 if rng.random() < 0.01 else min(int(rng.lognormvariate(8.3, 1.2)), 512 * KiB)
        else:
            rel = f"d{i % spec.dirs:04d}/f{i:06d}.dat"
            size = rng.randint(*spec.small_range)
        add(rel, size)
        small.append(rel)
    if spec.fill_to:
        left, j = spec.fill_to - ds.bytes, 0
        while left >= 10 * MiB:
            size = min(rng.randint(10, 100) * MiB, left)
            add(f"assets/blob{j}.bin", size)
            left, j = left - size, j + 1
    if spec.checkout:
        for k in range(10):
            target = small[k * 37 % len(small)]
            link = path / f"links/l{k}"
            link.parent.mkdir(exist_ok=True)
            os.symlink(os.path.relpath(path / target, link.parent), link)
            ds.links += 1
        for k in range(5):
            (path / f"empty/e{k}").mkdir(parents=True)
    ds.samples = [f"{'part0.bin' if len(spec.big) > 1 else 'big.bin'}"] if spec.big else []
    ds.samples += [small[k] for k in range(0, len(small), max(1, len(small) // 50))]
    if spec.fill_to:
        ds.samples.append("assets/blob0.bin")
    return ds


def warm(ds: Dataset) -> None:
    """Read every file once so the source is page-cached before anything is timed."""
    for dirpath, _dirs, names in os.walk(ds.path):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                continue
            with open(p, "rb") as f:
                while f.read(BLOCK):
                    pass


def tree_stats(root: Path) -> tuple[int, int]:
    """(regular files, bytes) under `root`, not following links."""
    files = total = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    files += 1
                    total += e.stat(follow_symlinks=False).st_size
    return files, total


def _same_bytes(a: Path, b: Path) -> bool:
    size = a.stat().st_size
    if b.stat().st_size != size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for off in sorted({0, size // 3, size // 2, max(0, size - 65536)}):
            fa.seek(off)
            fb.seek(off)
            if fa.read(65536) != fb.read(65536):
                return False
    return True


def check_copy(ds: Dataset, dst: Path) -> str | None:
    """None when `dst` holds as many files and bytes as the dataset and the samples match."""
    if not dst.is_dir():
        return f"destination {dst} missing"
    files, total = tree_stats(dst)
    if (files, total) != (ds.files, ds.bytes):
        return f"destination has {files} files / {total} bytes, source {ds.files} / {ds.bytes}"
    for rel in ds.samples:
        if not _same_bytes(ds.path / rel, dst / rel):
            return f"content differs: {rel}"
    for k in range(ds.links):
        if not os.path.islink(dst / f"links/l{k}"):
            return f"symlink links/l{k} not copied as a link"
    return None
