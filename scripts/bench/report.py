"""The report: the tables and ratios printed after a run, the one-line progress summary of a
point, and the plot (throughput by N, latency CDF)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from bench.systems import BASE_SYSTEMS, kind, serve_flags


def _n(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def _us(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def _hist_note(args: argparse.Namespace) -> str:
    if "--db" not in serve_flags():
        return ""
    return {"file": ", history in SQLite (temp file)", "memory": ", history in SQLite :memory:",
            "off": ", --no-history"}[args.history]


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    out: list[str] = []
    notes: list[str] = []
    fan = results.get("fanout") or []
    if fan:
        out.append(f"\nFANOUT: N members in one room, {args.senders} senders, "
                   f"{args.text_size}-byte texts, {args.duration:g} s per point "
                   f"(asyncchat --loop {args.loop}{_hist_note(args)})")
        rows = []
        for r in fan:
            if r.get("error") and "deliveries_per_s" not in r:
                rows.append([r["system"], str(r["n"]), "FAILED", "-", "-", "-", "-", "-", "-", "-"])
                notes.append(f"fanout {r['system']} N={r['n']}: {r['error']}")
                continue
            rows.append([
                r["system"], _n(r["n"]), _n(r["deliveries_per_s"]),
                _us(r["server_us_per_delivery"]), _n(r["messages_per_s"]),
                f"{r['server_cpu_pct']:.0f}%",
                f"{r['gen_cpu_pct_total']:.0f}% ({r['gen_cpu_pct_max']:.0f}%)",
                f"{r['other_cpu_pct']:.0f}%", str(r["lost"]), r["limit"],
            ])
            if r["limit"] == "loadgen":
                notes.append(
                    f"fanout {r['system']} N={r['n']}: the LOAD GENERATOR was the limit (busiest "
                    f"process {r['gen_cpu_pct_max']:.0f}% of a core, senders waited for members "
                    f"{100 * r['lag_blocked_frac']:.0f}% of the time, server "
                    f"{r['server_cpu_pct']:.0f}%)"
                    ": it could not outrun the server; the figure is a lower bound, and server "
                    f"CPU per delivery ({_us(r['server_us_per_delivery'])} us) the comparable "
                    "one.")
            elif r["limit"] == "cpu":
                notes.append(
                    f"fanout {r['system']} N={r['n']}: every core was busy (machine "
                    f"{r['machine_cpu_pct']:.0f}% of {r['ncpu']}00%: server "
                    f"{r['server_cpu_pct']:.0f}%, load generator {r['gen_cpu_pct_total']:.0f}%, "
                    f"other {r['other_cpu_pct']:.0f}%)"
                    + (": the server shared its cores with the load generator, which could not "
                       "outrun it" if r["gen_cpu_pct_total"] > r["other_cpu_pct"] else
                       ": processes outside the benchmark took the CPU the server did not get")
                    + "; CPU per delivery is the comparable figure.")
            other = r["server_cpu_pct"] - r.get("server_main_cpu_pct", r["server_cpu_pct"])
            if other >= 5 and r["system"].startswith("asyncchat"):
                notes.append(
                    f"fanout {r['system']} N={r['n']}: the event loop's thread used "
                    f"{r['server_main_cpu_pct']:.0f}% of a core "
                    f"({_us(r['server_main_us_per_delivery'])} us/delivery), other threads "
                    f"{other:.0f}% (the search index, at idle priority: CPU the loop left)")
            if r["lost"] or r.get("errors"):
                notes.append(f"fanout {r['system']} N={r['n']}: {r['lost']} connection(s) lost "
                             f"during the window; errors: {r.get('errors') or '-'}")
            if r.get("delivery_ratio") is not None and not 0.9 <= r["delivery_ratio"] <= 1.1:
                notes.append(f"fanout {r['system']} N={r['n']}: deliveries are "
                             f"{r['delivery_ratio']:.2f} of messages sent x receivers")
            if r.get("error"):
                notes.append(f"fanout {r['system']} N={r['n']}: {r['error']}")
        gens = {g: sorted({r["system"] for r in fan if r.get("generator") == g})
                for g in ("c", "python")}
        if gens["c"]:
            notes.append("load generator: C (scripts/bench/cgen/gen.c, one epoll process"
                         + (f" pinned off CPU {args.server_cpu}" if args.server_cpu is not None
                            else "") + f") for {', '.join(gens['c'])}"
                         + (f"; Python (uvloop processes) for {', '.join(gens['python'])}"
                            if gens["python"] else ""))
        out.append(_table(["system", "N", "deliveries/s", "srv us/deliv", "msgs/s", "srv CPU",
                           "gen CPU (max proc)", "other", "lost", "limit"], rows))
        # The -base systems are compared with their own after / before table, not as peers.
        peers = [s for s in args.systems if s != "asyncchat" and s not in BASE_SYSTEMS]
        mine = any(r["system"] == "asyncchat" and "deliveries_per_s" in r for r in fan)
        if mine and peers:
            out.append("\nasyncchat / peer, fanout: deliveries/s ratio (>1: asyncchat faster); "
                       "CPU-per-delivery ratio (<1: asyncchat cheaper)")
            out.append(_fan_ratios(fan, args.sizes, [("asyncchat", p) for p in peers],
                                   [f"vs {p}" for p in peers]))
        pairs = [(kind(b), b) for b in args.systems
                 if b in BASE_SYSTEMS and kind(b) in args.systems]
        if pairs:
            out.append(f"\nafter / before (--baseline {args.baseline}), fanout: deliveries/s "
                       "ratio (>1: faster now); CPU-per-delivery ratio (<1: cheaper now)")
            out.append(_fan_ratios(fan, args.sizes, pairs, [f"{a} / {b}" for a, b in pairs]))
    lat = results.get("latency") or []
    if lat:
        out.append(f"\nLATENCY: {args.latency_members} members, {args.senders} senders, "
                   f"{args.rate:g} msg/s in all, {args.duration:g} s; microseconds, send to receipt"
                   f" (asyncchat --loop {args.loop}{_hist_note(args)})")
        rows = []
        for r in lat:
            if "p50_us" not in r:
                rows.append([r["system"], "FAILED", "-", "-", "-", "-", "-", "-", "-"])
                notes.append(f"latency {r['system']}: {r.get('error')}")
                continue
            rows.append([r["system"], _n(r["messages_per_s"]), _us(r["p50_us"]), _us(r["p90_us"]),
                         _us(r["p99_us"]), _us(r["p999_us"]), _us(r["max_us"]),
                         f"{r['samples']:,}/{r['expected_samples']:,}",
                         f"{r['server_cpu_pct']:.0f}%"])
            if r.get("error"):
                notes.append(f"latency {r['system']}: {r['error']}")
            if r.get("gen_cpu_pct_max", 0) >= 85:
                notes.append(f"latency {r['system']}: a load-generator process was at "
                             f"{r['gen_cpu_pct_max']:.0f}% of a core: its own queueing is in "
                             "these figures")
            if r.get("lost") or r.get("errors"):
                notes.append(f"latency {r['system']}: {r.get('lost')} connection(s) lost; "
                             f"errors: {r.get('errors') or '-'}")
        out.append(_table(["system", "msgs/s", "p50", "p90", "p99", "p99.9", "max",
                           "samples/expected", "srv CPU"], rows))
        a = next((r for r in lat if r["system"] == "asyncchat" and "p50_us" in r), None)
        if a is not None:
            rows = []
            for b in lat:
                if b["system"] == "asyncchat" or "p50_us" not in b:
                    continue
                rows.append([b["system"], *(_ratio(a[k], b[k]) for k in
                                            ("p50_us", "p90_us", "p99_us", "p999_us"))])
            if rows:
                out.append("\nasyncchat / peer, latency (<1: asyncchat lower)")
                out.append(_table(["vs", "p50", "p90", "p99", "p99.9"], rows))
    idle = results.get("idle") or []
    if idle:
        out.append(f"\nIDLE: {args.idle_count:,} connected, handshaken, idle clients "
                   f"(--idle-room {args.idle_room}; asyncchat --loop {args.loop}"
                   f"{_hist_note(args)})")
        rows = []
        for r in idle:
            if "rss_per_conn_kib" not in r:
                rows.append([r["system"], "FAILED", "-", "-", "-", "-", "-"])
                notes.append(f"idle {r['system']}: {r.get('error')}")
                continue
            rows.append([r["system"], _n(r["rss_per_conn_kib"], 2), _n(r["peak_per_conn_kib"], 2),
                         _n(r["rss_after_kib"] / 1024, 1), _us(r["server_us_per_connect"]),
                         _n(r["connects_per_s"]),
                         "-" if r.get("fresh_handshake_ms") is None
                         else _n(r["fresh_handshake_ms"], 2)])
            if r.get("error") or r.get("errors"):
                notes.append(f"idle {r['system']}: {r.get('error') or ''} {r.get('errors') or ''}")
        out.append(_table(["system", "KiB RSS/conn", "peak KiB/conn", "RSS MiB after",
                           "srv us/connect", "connects/s", "new client ms"], rows))
        a = next((r for r in idle if r["system"] == "asyncchat" and "rss_per_conn_kib" in r), None)
        if a is not None:
            rows = [[b["system"], _ratio(a["rss_per_conn_kib"], b["rss_per_conn_kib"]),
                     _ratio(a["server_us_per_connect"], b["server_us_per_connect"])]
                    for b in idle if b["system"] != "asyncchat" and "rss_per_conn_kib" in b]
            if rows:
                out.append("\nasyncchat / peer, idle (<1: asyncchat smaller/cheaper)")
                out.append(_table(["vs", "RSS/conn", "CPU/connect"], rows))
    storm = results.get("storm") or []
    if storm:
        out.append(_storm_table(storm, args, notes))
    loops = {r.get("gen_loop") for w in ("fanout", "latency", "idle")
             for r in results.get(w) or [] if r.get("gen_loop")}
    if loops - {"uvloop", "c-epoll"}:
        odd = sorted(map(str, loops - {"c-epoll"}))
        notes.append(f"the load generator ran on {', '.join(odd)} "
                     "(uvloop not importable or --gen-loop asyncio)")
    if not (fan or lat or idle or storm):
        out.append("no point was completed")
    skipped = results.get("skipped") or []
    for s in skipped:
        where = f" in {s['workload']}" if s.get("workload") else ""
        notes.append(f"{s['system']}: not run{where} ({s['why']})")
    if notes:
        out.append("\nNotes:")
        out.extend(f"  - {x}" for x in notes)
    if fan:
        out.append(
            "\nlimit: server = the server used a whole core; loadgen = the load generator could "
            "not outrun\nthe server (the figure is a lower bound); cpu = every core was busy, "
            "shared by the server and\nthe load generator; window = neither was saturated. "
            "srv us/deliv = server CPU time per delivery.\nother = CPU used by processes outside "
            "this benchmark during the window (a shared machine).")
    return "\n".join(out)



def _fan_ratios(fan: list[dict[str, Any]], sizes: list[int], pairs: list[tuple[str, str]],
                headers: list[str]) -> str:
    """A table by N of "deliveries/s ratio / CPU-per-delivery ratio" of each pair (a, b)."""
    points = {(r["system"], r["n"]): r for r in fan if "deliveries_per_s" in r}
    rows = []
    for n in sizes:
        row = [_n(n)]
        for x, y in pairs:
            a, b = points.get((x, n)), points.get((y, n))
            if a is None or b is None:
                row.append("-")
            else:
                tput = _ratio(a["deliveries_per_s"], b["deliveries_per_s"])
                cpu = _ratio(a["server_us_per_delivery"], b["server_us_per_delivery"])
                row.append(f"{tput} / {cpu}")
        rows.append(row)
    return _table(["N", *headers], rows)


def plot(results: dict[str, list[dict[str, Any]]], path: str) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"--plot {path}: matplotlib is not importable, no plot written"
    fan = [r for r in results.get("fanout") or [] if "deliveries_per_s" in r]
    lat = [r for r in results.get("latency") or [] if "cdf_us" in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for system in dict.fromkeys(r["system"] for r in fan):
        pts = sorted((r["n"], r["deliveries_per_s"]) for r in fan if r["system"] == system)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("members in the room (N)")
    ax.set_ylabel("deliveries / s")
    ax.set_title("fan-out throughput")
    ax.grid(True, which="both", alpha=0.3)
    if fan:
        ax.legend()
    ax = axes[1]
    for r in lat:
        xs = r["cdf_us"]
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.plot([x / 1e3 for x in xs], ys, label=r["system"])
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title("end-to-end latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    if lat:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"plot written to {path}"


def _storm_table(storm: list[dict[str, Any]], args: argparse.Namespace,
                 notes: list[str]) -> str:
    """The storm workload: arrivals welcomed, time to the last welcome, fan-out before and
    during the storm."""
    head = (f"\nSTORM: {args.storm_count:,} clients arrive (connect, hello, join a room of their "
            f"own; {args.storm_procs} processes, {args.storm_concurrency:,} in flight each) while "
            f"{args.storm_members:,} members and {args.senders} senders fan out in one room "
            f"(asyncchat --loop {args.loop}{_hist_note(args)})")
    rows = []
    for r in storm:
        if "last_welcome_s" not in r:
            rows.append([r["system"], "FAILED", *["-"] * 7])
            notes.append(f"storm {r['system']}: {r.get('error')}")
            continue
        rows.append([
            r["system"], f"{r['welcomed']:,}/{r['arriving']:,}", _n(r["last_welcome_s"], 2),
            _n(r["welcomes_per_s"]), _n(r["before_deliveries_per_s"]),
            _n(r["during_deliveries_per_s"]),
            _ratio(r["during_deliveries_per_s"], r["before_deliveries_per_s"]),
            f"{r['before_server_cpu_pct']:.0f}% / {r['during_server_cpu_pct']:.0f}%",
            str(r["lost"]),
        ])
        if r.get("error") or r.get("storm_errors"):
            notes.append(f"storm {r['system']}: {r.get('error') or ''} "
                         f"{r.get('storm_errors') or ''}")
    return head + "\n" + _table(
        ["system", "welcomed", "last welcome s", "welcomes/s", "deliveries/s before",
         "during", "during/before", "srv CPU before/during", "lost"], rows)


def brief(r: dict[str, Any]) -> str:
    """One line on a finished point, for the progress output."""
    if "last_welcome_s" in r:
        return (f"{r['welcomed']:,}/{r['arriving']:,} welcomed, last after "
                f"{_n(r['last_welcome_s'], 2)} s; deliveries/s {_n(r['before_deliveries_per_s'])}"
                f" before, {_n(r['during_deliveries_per_s'])} during"
                + (f", ERROR {r['error']}" if r.get("error") else ""))
    if "deliveries_per_s" in r:
        return (f"{r['deliveries_per_s']:,.0f} deliveries/s, {_us(r['server_us_per_delivery'])} us"
                f"/delivery, server {r['server_cpu_pct']:.0f}%, gen {r['gen_cpu_pct_total']:.0f}%,"
                f" limit {r['limit']}" + (f", ERROR {r['error']}" if r.get("error") else ""))
    if "p50_us" in r:
        return f"p50 {_us(r['p50_us'])} us, p99 {_us(r['p99_us'])} us, {r['samples']:,} samples"
    if "rss_per_conn_kib" in r:
        return f"{r['rss_per_conn_kib']:.2f} KiB/conn"
    return f"FAILED: {r.get('error')}"
