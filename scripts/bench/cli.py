"""The command line: the options, and the run (every workload, system and point in turn,
then the report and the JSON)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from typing import Any

import bench
from bench.loadgen import raise_nofile
from bench.native import BuildError
from bench.native import build as build_cgen
from bench.report import brief, plot, report
from bench.systems import (
    BASE_SYSTEMS,
    DEFAULT_SYSTEMS,
    DURABLE_SYSTEMS,
    SYSTEMS,
    available,
    version,
)
from bench.workloads import run_fanout, run_idle, run_latency, run_storm

#: The workloads run by default; storm only when named.
DEFAULT_WORKLOADS = ("fanout", "latency", "idle")
WORKLOADS = (*DEFAULT_WORKLOADS, "storm")
DOC = bench.__doc__ or ""


def _csv(kind: type, choices: tuple[str, ...] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        if choices is not None:
            bad = [x for x in items if x not in choices]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown: {', '.join(bad)} (choose from {', '.join(choices)})")
        try:
            return [kind(x) for x in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of {kind.__name__}: {text!r}") from None

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description=DOC.split("\n\n")[0],
        epilog="\n\n".join(DOC.split("\n\n")[1:]) + "\n\nExample (a quick check):\n"
        "  python scripts/bench --duration 2 --sizes 10,100 --idle-count 1000\n"
        "Full run: python scripts/bench --plot bench.png (about 5 s per point plus set-up).\n"
        "Before / after: git worktree add ../old HEAD~1, then\n"
        "  python scripts/bench --workload fanout --baseline ../old \\\n"
        "      --systems asyncchat,asyncchat-nohist,asyncchat-base,asyncchat-nohist-base",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what to run")
    g.add_argument("--workload", type=_csv(str, WORKLOADS), default=list(DEFAULT_WORKLOADS),
                   metavar="LIST", help="comma-separated: fanout,latency,idle,storm (default: "
                   "fanout,latency,idle)")
    g.add_argument("--systems", type=_csv(str, SYSTEMS), default=list(DEFAULT_SYSTEMS),
                   metavar="LIST",
                   help="comma-separated: asyncchat,redis,nats,select,thread (default: all; a "
                   "peer whose binary is not installed is skipped and said so), and "
                   "asyncchat-power: asyncchat with --durability power; "
                   "asyncchat-nohist: asyncchat with --no-history in the same run, whose ratio "
                   "column is then history on vs off; with --baseline, asyncchat-base and "
                   "asyncchat-nohist-base")
    g.add_argument("--sizes", type=_csv(int), default=[10, 100, 1000], metavar="LIST",
                   help="fanout room sizes N (default: 10,100,1000)")
    g.add_argument("--senders", type=int, default=4, help="senders S (default: %(default)s)")
    g.add_argument("--duration", type=float, default=5.0,
                   help="measured seconds per point (default: %(default)s)")
    g.add_argument("--warmup", type=float, default=0.5,
                   help="seconds of load before the measured window (default: %(default)s)")
    g.add_argument("--text-size", type=int, default=100,
                   help="bytes of each text (default: %(default)s)")
    g.add_argument("--rate", type=float, default=1000.0,
                   help="latency: total messages per second (default: %(default)s)")
    g.add_argument("--latency-members", type=int, default=100,
                   help="latency: members N (default: %(default)s)")
    g.add_argument("--idle-count", type=int, default=10_000,
                   help="idle: connected clients M (default: %(default)s)")
    g.add_argument("--idle-room", choices=("own", "none", "lobby"), default="own",
                   help="idle: each client in a room (Redis/NATS: a channel) of its own, in "
                   "none, or all in one (asyncchat announces each join to everyone in the room: "
                   "O(M^2) frames to fill it, minutes at 10,000); the textbook servers have one "
                   "room only (default: %(default)s)")
    g.add_argument("--settle", type=float, default=1.0,
                   help="idle: seconds after the server goes quiet before RSS is read "
                   "(default: %(default)s)")
    g.add_argument("--storm-count", type=int, default=10_000,
                   help="storm: clients arriving at once (default: %(default)s)")
    g.add_argument("--storm-members", type=int, default=1_000,
                   help="storm: members of the room under fan-out load (default: %(default)s)")
    g.add_argument("--storm-procs", type=int, default=2,
                   help="storm: processes the arriving clients connect from (default: "
                   "%(default)s)")
    g.add_argument("--storm-concurrency", type=int, default=1_000,
                   help="storm: connections in flight per storm process (default: %(default)s)")
    s = p.add_argument_group("servers")
    s.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop of the asyncchat server (default: %(default)s)")
    s.add_argument("--history", choices=("file", "memory", "off"), default="file",
                   help="asyncchat's message history, where the server has one: 'file' is the "
                   "server's default (SQLite, acknowledged and fanned out once committed) in a "
                   "temporary directory removed after each point; 'memory' is --db :memory:; "
                   "'off' is --no-history, like Redis/NATS pub/sub, which keep nothing "
                   "(default: %(default)s). The user's own history file is never used.")
    s.add_argument("--baseline", metavar="PATH",
                   help="an older asyncchat source tree (a checkout or git worktree): the systems "
                   "asyncchat-base and asyncchat-nohist-base run their server from PATH/src "
                   "(PYTHONPATH), and the report adds an after / before table for fanout")
    s.add_argument("--server-cpu", type=int, metavar="CPU",
                   help="run the server process (all its threads) on this CPU alone, and the "
                   "load generator on the others (as taskset -c CPU would)")
    s.add_argument("--server-arg", action="append", metavar="ARG",
                   help="extra argument for 'asyncchat serve' (repeatable; e.g. "
                   "--server-arg=--max-outbox --server-arg=1048576)")
    lg = p.add_argument_group("load generator")
    lg.add_argument("--gen", choices=("c", "python"), default="c",
                    help="fanout's load generator: 'c' is scripts/bench/cgen/gen.c (one epoll "
                    "process, built with cc -O2 on first use into ~/.cache/asyncchat-bench, "
                    "pinned off --server-cpu), for every system but the WebSocket ones; "
                    "'python' the uvloop worker processes (the latency and idle workloads "
                    "always use these; default: %(default)s)")
    lg.add_argument("--say-id", choices=("on", "off"), default="on",
                    help="fanout, C generator, asyncchat: each say carries a unique id, as a "
                    "client that can re-send does (the server remembers it for idempotent "
                    "re-sends); 'off' sends none, as the Python generator (default: %(default)s)")
    lg.add_argument("--procs", type=int, default=0,
                    help="member processes (default: CPUs - 1, at least 1); senders run in one "
                    "more process")
    lg.add_argument("--gen-loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="event loop of the load generator (default: %(default)s)")
    lg.add_argument("--window", type=int, default=200,
                    help="fanout: unanswered messages per sender (asyncchat acks, Redis "
                    "replies, NATS PONGs; default: %(default)s)")
    lg.add_argument("--max-lag", type=int, default=0,
                    help="fanout: messages the senders may be ahead of the slowest member "
                    "process (bounds the servers' buffers when the load generator is the "
                    "limit; default 0: 256 MiB of backlog over all receivers, clamped to "
                    "2,000..50,000 messages)")
    lg.add_argument("--concurrency", type=int, default=64,
                    help="connections opened at once per process (default: %(default)s)")
    lg.add_argument("--setup-timeout", type=float, default=60.0,
                    help="seconds for connecting and joining, per point (default: %(default)s)")
    o = p.add_argument_group("output")
    o.add_argument("--json", default="bench-results.json", metavar="PATH",
                   help="write every figure as JSON (default: %(default)s; '' for none)")
    o.add_argument("--plot", metavar="PATH",
                   help="write a PNG: throughput by N and latency CDF (needs matplotlib)")
    return p


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Ctrl-C, or SIGTERM, stops the run through the finally blocks that stop every process this
    # script started (also when started in the background, where SIGINT comes ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.senders < 1 or args.duration <= 0 or args.window < 1 or args.max_lag < 0:
        parser().error("--senders, --duration and --window must be positive")
    if args.gen == "c" and "fanout" in args.workload:
        try:
            build_cgen()
        except BuildError as exc:
            parser().error(str(exc))
    nofile = raise_nofile()
    results: dict[str, Any] = {"fanout": [], "latency": [], "idle": [], "storm": [],
                               "skipped": []}
    systems = []
    for s in args.systems:
        why = available(s, args.baseline)
        if why:
            results["skipped"].append({"system": s, "why": why})
            print(f"skipping {s}: {why}", file=sys.stderr)
        else:
            systems.append(s)
    args.systems = systems
    if args.baseline and not any(s in BASE_SYSTEMS for s in systems):
        print(f"note: --baseline is used by the systems {', '.join(BASE_SYSTEMS)} only, and "
              "none of them is in --systems", file=sys.stderr)
    if "idle" in args.workload and nofile < args.idle_count + 200:
        print(f"note: RLIMIT_NOFILE hard limit is {nofile}; idle clients are spread over "
              "processes, but the server needs ~M descriptors", file=sys.stderr)
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv,
        "cpus": os.cpu_count(), "loadavg_before": os.getloadavg(),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "nofile": nofile, "versions": {s: version(s, args.baseline) for s in systems},
        "config": {k: v for k, v in vars(args).items()},
    }
    results["meta"] = meta

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        for workload in args.workload:
            for system in systems:
                points: list[Any] = args.sizes if workload == "fanout" else [None]
                if workload != "fanout" and system in DURABLE_SYSTEMS:
                    why = "measured by the fanout workload's C generator only"
                    results["skipped"].append({"system": system, "workload": workload,
                                               "why": why})
                    progress(f"[{workload}] {system}: skipped ({why})")
                    continue
                for n in points:
                    label = f"[{workload}] {system}" + (f" N={n}" if n else "")
                    progress(f"{label} ...")
                    t0 = time.monotonic()
                    try:
                        if workload == "fanout":
                            r = run_fanout(args, system, n)
                        elif workload == "latency":
                            r = run_latency(args, system)
                        elif workload == "storm":
                            r = run_storm(args, system)
                        else:
                            r = run_idle(args, system)
                    except Exception as exc:  # noqa: BLE001 - a failed point is a result
                        r = {"workload": workload, "system": system, "n": n or (
                            args.latency_members if workload == "latency" else args.idle_count),
                            "error": f"{type(exc).__name__}: {exc}"}
                    results[workload].append(r)
                    progress(f"{label}: {brief(r)} ({time.monotonic() - t0:.1f} s)")
    except KeyboardInterrupt:
        progress("interrupted: reporting what was measured")
    meta["loadavg_after"] = os.getloadavg()
    print(report(results, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
        print(f"\nresults written to {args.json}")
    if args.plot:
        print(plot(results, args.plot))
    return 0
