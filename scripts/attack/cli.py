"""The command line: run the chosen attacks in turn, print the table, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import attack
from attack.attacks import ATTACKS
from attack.measure import run_one

NAMES = [a.name for a in ATTACKS]


def _only(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown attack(s) {bad}: choose from {NAMES}")
    return names


def main(argv: list[str] | None = None) -> int:
    doc = (attack.__doc__ or "").strip()
    parser = argparse.ArgumentParser(
        prog="python scripts/attack", description=doc.split("\n\n", 1)[0],
        epilog=doc.split("\n\n", 2)[-1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--only", type=_only, default=NAMES, metavar="NAME[,NAME]",
                        help=f"run these attacks only ({', '.join(NAMES)})")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller counts, shorter waits")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    parser.add_argument("--stall-ms", type=float, default=1000.0, metavar="MS",
                        help="flag an attack during which a probe message or hello took "
                        "longer than this (default 1000)")  # fmt: skip
    parser.add_argument("--logs", type=Path, metavar="DIR",
                        help="keep each server's log in DIR/NAME.log")  # fmt: skip
    parser.add_argument(
        "--baseline",
        type=float,
        default=None,
        metavar="S",
        help="seconds of probe before each attack (default 2; quick 1)",
    )
    args = parser.parse_args(argv)
    baseline = args.baseline if args.baseline is not None else (1.0 if args.quick else 2.0)
    started = time.monotonic()
    results = asyncio.run(_run(args.only, quick=args.quick, baseline=baseline, logs=args.logs))
    took = time.monotonic() - started
    print(table(results, args.stall_ms))
    print(f"\n{len(results)} attack(s) in {took:.0f} s on {platform.node()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} (a shared machine: "
          "latencies are noisy)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "baseline_s": baseline, "seconds": round(took),
                       "load": os.getloadavg(), "results": results}, f, indent=2)  # fmt: skip
    broken = [r["attack"] for r in results if verdict(r, args.stall_ms)]
    if broken:
        print(f"BOUND BROKEN: {', '.join(broken)}", file=sys.stderr)
    return 1 if broken else 0


async def _run(
    names: list[str], *, quick: bool, baseline: float, logs: Path | None
) -> list[dict[str, Any]]:
    out = []
    for a in ATTACKS:
        if a.name in names:
            print(f"-- {a.title}", file=sys.stderr, flush=True)
            out.append(await run_one(a, quick=quick, baseline=baseline, logs=logs))
    return out


def verdict(r: dict[str, Any], stall_ms: float) -> list[str]:
    """What went wrong: an error of the suite, a member dropped, a traceback, a look-alike
    welcomed, or others stalled for more than ``stall_ms``."""
    bad = []
    during = r.get("probe_during") or {}
    slowest = max(during.get("max_ms") or 0, during.get("hello_max_ms") or 0)
    if slowest > stall_ms or during.get("lost"):
        bad.append(f"others stalled: {slowest:.0f} ms, {during.get('lost')} message(s) lost")
    if "error" in r:
        bad.append(r["error"])
    if r.get("others_dropped"):
        bad.append(f"dropped: {r['others_dropped']}")
    if r.get("tracebacks"):
        bad.append(f"{r['tracebacks']} traceback/ERROR lines")
    if r.get("extra", {}).get("accepted"):
        accepted = r["extra"]["accepted"]
        bad.append(f"{len(accepted)} look-alikes welcomed, e.g. {'; '.join(accepted[:3])}")
    return bad


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def _lat(w: dict[str, Any]) -> str:
    if not w or w.get("p50_ms") is None:
        return "-"
    return f"{w['p50_ms']:.0f}/{w['p99_ms']:.0f}/{w['max_ms']:.0f}"


def table(results: list[dict[str, Any]], stall_ms: float) -> str:
    head = ["attack", "s", "RSS MiB b/peak/a", "fds b/peak/a", "CPU s",
            "probe ms p50/p99/max before", "during", "lost", "hello max ms",
            "dropped", "tb", "log lines"]  # fmt: skip
    rows = [head]
    for r in results:
        if "rss_kib" not in r:
            rows.append([r["attack"], "-", "-", "-", "-", "-", "-", "-", "-", "-",
                         str(r.get("tracebacks", "?")), "-"])  # fmt: skip
            continue
        rss, fds = r["rss_kib"], r["fds"]
        before, during = r["probe_before"], r["probe_during"]
        rows.append([
            r["attack"], f"{r['seconds']:.0f}",
            f"{_mib(rss['before'])}/{_mib(rss['peak'])}/{_mib(rss['after'])}",
            f"{fds['before']}/{fds['peak']}/{fds['after']}", f"{r['server_cpu_s']:.1f}",
            _lat(before), _lat(during), str(during["lost"]),
            f"{before['hello_max_ms'] or 0:.0f} -> {during['hello_max_ms'] or 0:.0f}",
            str(len(r["others_dropped"])), str(r["tracebacks"]), str(r["log_lines"]),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for r in results:
        lines.append(f"{r['title']}: {r.get('attacker_got') or '-'}")
        for problem in verdict(r, stall_ms):
            lines.append(f"    !! {problem}")
        extra = {k: v for k, v in r.get("extra", {}).items() if k != "accepted"}
        if "restart" in r:
            extra["restart"] = r["restart"]
        if extra:
            lines.append(f"    {json.dumps(extra)}")
    return "\n".join(lines)
