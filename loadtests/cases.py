"""The benchmark matrix: which commands run for each dataset and what each is compared with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

RSYNCD = "rsync daemon"


@dataclass(slots=True)
class Env:
    """How to reach the tools: the blit command, the daemons' ports, the two module roots."""

    blit: list[str]
    blit_port: int
    rsync_port: int
    data: Path   # module "data" (the datasets) on both daemons
    dst: Path    # module "dst" (push destinations) and parent of local destinations


@dataclass(slots=True)
class Case:
    """One timed command. Ratios are `other seconds / my seconds` for each baseline."""

    id: str
    section: str          # main | noop | tuning | scale
    dataset: str
    route: str            # push | pull | local
    carrier: str          # tcp | http | local | rsync (protocol of the peer)
    tool: str
    argv: list[str]
    dst: Path
    blit: bool
    daemon: str | None = None                 # "blitd" | "rsyncd": whose peak RSS to watch
    expect_carrier: str | None = None         # blit summary's carrier
    noop: bool = False                        # destination pre-populated; nothing should move
    populate: list[str] | None = None         # untimed command that fills dst for a no-op run
    baselines: list[tuple[str, str]] = field(default_factory=list)  # (label, case id)
    fresh_daemon: bool = False                # restart blitd before each run (clean peak RSS)


def _blit_remote(env: Env, kind: str, path: str) -> str:
    return f"127.0.0.1:{env.blit_port}:/{kind}/{path}"


def _rsync_remote(env: Env, kind: str, path: str) -> str:
    return f"rsync://127.0.0.1:{env.rsync_port}/{kind}/{path}/"


def main_cases(env: Env, name: str) -> list[Case]:
    """Push, pull (TCP and HTTP) and local for one dataset, blit alternating with its peers."""
    src = f"{env.data / name}/"
    out: list[Case] = []

    def case(key: str, route: str, carrier: str, tool: str, argv: list[str], blit: bool,
             daemon: str | None, peers: list[tuple[str, str]] | None = None) -> None:
        cid = f"{name}-{key}"
        out.append(Case(cid, "main", name, route, carrier, tool, argv, env.dst / cid, blit,
                        daemon, carrier if blit else None,
                        baselines=[(lbl, f"{name}-{k}") for lbl, k in peers or []]))

    b = [*env.blit, "copy", "--json"]
    case("push-tcp", "push", "tcp", "blit", [*b, src, _blit_remote(env, "dst", f"{name}-push-tcp")],
         True, "blitd", [("rsyncd", "push-rsync")])
    case("push-rsync", "push", "rsync", RSYNCD,
         ["rsync", "-a", src, _rsync_remote(env, "dst", f"{name}-push-rsync")], False, "rsyncd")
    case("pull-tcp", "pull", "tcp", "blit",
         [*b, _blit_remote(env, "data", f"{name}/"), str(env.dst / f"{name}-pull-tcp")],
         True, "blitd", [("rsyncd", "pull-rsync")])
    case("pull-rsync", "pull", "rsync", RSYNCD,
         ["rsync", "-a", _rsync_remote(env, "data", name), f"{env.dst / name}-pull-rsync/"],
         False, "rsyncd")
    case("push-http", "push", "http", "blit",
         [*b, "--force-http", src, _blit_remote(env, "dst", f"{name}-push-http")],
         True, "blitd", [("rsyncd", "push-rsync")])
    case("pull-http", "pull", "http", "blit",
         [*b, "--force-http", _blit_remote(env, "data", f"{name}/"),
          str(env.dst / f"{name}-pull-http")], True, "blitd", [("rsyncd", "pull-rsync")])
    case("local-blit", "local", "local", "blit", [*b, src, str(env.dst / f"{name}-local-blit")],
         True, None, [("cp -a", "local-cp"), ("rsync -a", "local-rsync")])
    case("local-cp", "local", "local", "cp -a",
         ["cp", "-a", str(env.data / name), str(env.dst / f"{name}-local-cp")], False, None)
    case("local-rsync", "local", "local", "rsync -a",
         ["rsync", "-a", src, f"{env.dst / name}-local-rsync/"], False, None)
    return out


def noop_cases(env: Env, name: str = "small") -> list[Case]:
    """Re-run over an identical tree: `blit mirror -y` vs `rsync -a --delete`, each direction."""
    src = f"{env.data / name}/"
    copy, mirror = [*env.blit, "copy", "--json"], [*env.blit, "mirror", "-y", "--json"]
    out: list[Case] = []

    def pair(route: str, blit_src: str, blit_dst: str, rs_src: str, rs_dst: str,
             daemon: str | None, carrier: str, peer: str, peer_carrier: str) -> None:
        bid, rid = f"noop-{route}-blit", f"noop-{route}-rsync"
        out.append(Case(bid, "noop", name, route, carrier, "blit", [*mirror, blit_src, blit_dst],
                        env.dst / bid, True, "blitd" if daemon else None, carrier, True,
                        [*copy, blit_src, blit_dst], [(peer, rid)]))
        out.append(Case(rid, "noop", name, route, peer_carrier, peer,
                        ["rsync", "-a", "--delete", rs_src, rs_dst], env.dst / rid, False,
                        "rsyncd" if daemon else None, None, True, ["rsync", "-a", rs_src, rs_dst]))

    pair("push", src, _blit_remote(env, "dst", "noop-push-blit"), src,
         _rsync_remote(env, "dst", "noop-push-rsync"), "yes", "tcp", "rsyncd", "rsync")
    pair("pull", _blit_remote(env, "data", f"{name}/"), str(env.dst / "noop-pull-blit"),
         _rsync_remote(env, "data", name), f"{env.dst}/noop-pull-rsync/", "yes", "tcp", "rsyncd",
         "rsync")
    pair("local", src, str(env.dst / "noop-local-blit"), src, f"{env.dst}/noop-local-rsync/",
         None, "local", "rsync -a", "local")
    return out


def tuning_cases(env: Env, name: str) -> list[Case]:
    """blit over TCP with auto-tuning vs fixed `--streams 1` and `--streams 8`, push and pull."""
    src = f"{env.data / name}/"
    out: list[Case] = []
    for route in ("push", "pull"):
        ids = {s: f"tune-{name}-{route}-{s}" for s in ("auto", "1", "8")}
        for s, cid in ids.items():
            flags = [] if s == "auto" else ["--streams", s]
            if route == "push":
                ends = [src, _blit_remote(env, "dst", cid)]
            else:
                ends = [_blit_remote(env, "data", f"{name}/"), str(env.dst / cid)]
            tool = "blit (auto)" if s == "auto" else f"blit --streams {s}"
            base = [("--streams 1", ids["1"]), ("--streams 8", ids["8"])] if s == "auto" else []
            out.append(Case(cid, "tuning", name, route, "tcp", tool,
                            [*env.blit, "copy", "--json", *flags, *ends], env.dst / cid, True,
                            "blitd", "tcp", baselines=base))
    return out


def scale_cases(env: Env, names: tuple[str, ...] = ("small", "many")) -> list[Case]:
    """blit push, pull and local on the 20k- and 200k-file trees (time and memory vs count)."""
    out: list[Case] = []
    for name in names:
        src = f"{env.data / name}/"
        b = [*env.blit, "copy", "--json"]
        for route, carrier, ends in (
            ("push", "tcp", [src, _blit_remote(env, "dst", f"scale-{name}-push")]),
            ("pull", "tcp", [_blit_remote(env, "data", f"{name}/"),
                             str(env.dst / f"scale-{name}-pull")]),
            ("local", "local", [src, str(env.dst / f"scale-{name}-local")]),
        ):
            cid = f"scale-{name}-{route}"
            remote = route != "local"
            out.append(Case(cid, "scale", name, route, carrier, "blit", [*b, *ends],
                            env.dst / cid, True, "blitd" if remote else None, carrier,
                            fresh_daemon=remote))
    return out
