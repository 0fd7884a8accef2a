"""The workloads, one point each: fanout (throughput and server CPU per delivery), latency
(percentiles of send-to-receipt time at a fixed rate) and idle (server memory and CPU per held
connection). Each starts its server and load generator, measures a window from /proc, and stops
every process it started."""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import socket
import statistics
import time
from array import array
from typing import Any

from bench.clients import U32
from bench.loadgen import Workers, raise_nofile
from bench.native import PROTOS, CGen
from bench.native import build as build_cgen
from bench.systems import CHATLIKE, CLIENTS, MEMBER_CLIENTS, SINGLE_THREADED, Server, kind

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(path: str) -> float:
    """utime+stime, in seconds, from a /proc stat file."""
    with open(path) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu(pid: int) -> float:
    """utime+stime of a process, all threads, in seconds."""
    return _stat_cpu(f"/proc/{pid}/stat")


def main_thread_cpu(pid: int) -> float:
    """utime+stime of a process's main thread (the event loop's, for asyncchat), in seconds:
    the rest of its CPU went to other threads (asyncchat's search index, at idle priority)."""
    return _stat_cpu(f"/proc/{pid}/task/{pid}/stat")


def proc_mem(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK_TCK


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


#: The roles of the load-generator processes that hold senders: a Python sender process, or the
#: C generator's one process (members and senders).
SENDING = ("sender", "c")


def _spec(args: argparse.Namespace, server: Server, system: str, role: str, mode: str,
          names: list[str], idx: int, prog_idx: int = 0, **extra: Any) -> dict[str, Any]:
    if kind(system) not in CLIENTS:
        raise RuntimeError(f"{system} is spoken by the C load generator only (fanout, --gen c)")
    spec = {
        "system": system, "client": CLIENTS[kind(system)], "role": role, "mode": mode,
        "names": names, "idx": idx,
        "prog_idx": prog_idx, "host": server.host, "port": server.port,
        "web_port": server.web_port, "member_client": MEMBER_CLIENTS.get(kind(system)),
        "window": args.window, "max_lag": _max_lag(args, system, len(names)),
        "text_size": args.text_size,
        "gen_loop": args.gen_loop, "concurrency": args.concurrency,
        "timeout": args.setup_timeout, "total_senders": args.senders, "rate": args.rate,
        "idle_room": args.idle_room, "avoid_cpu": args.server_cpu,
    }
    spec.update(extra)
    return spec


def _max_lag(args: argparse.Namespace, system: str, members: int) -> int:
    if args.max_lag:
        return int(args.max_lag)
    receivers = max(1, getattr(args, "_point_members", members))
    frame = args.text_size + 80  # a delivered message: text plus the protocol's envelope
    return max(2_000, min(50_000, (256 << 20) // (receivers * frame)))


def _names(system: str, prefix: str, start: int, count: int) -> list[str]:
    if system in ("select", "thread"):
        return [f"{prefix}{i:06d}" for i in range(start, start + count)]  # same length
    return [f"{prefix}{i}" for i in range(start, start + count)]


def _member_procs(args: argparse.Namespace, n: int) -> int:
    procs = args.procs or max(1, (os.cpu_count() or 2) - 1)
    per_proc_fds = max(256, raise_nofile() - 64)
    return max(1, min(n, max(procs, math.ceil(n / per_proc_fds))))


#: Connections to one server port from one source address, at most: the ephemeral port range
#: (32768-60999 by default) less a margin. Past it, each client process connects from an address
#: of its own in 127.0.0.0/8 (every one of them is the loopback interface's on Linux).
PORTS_PER_SOURCE = 25_000


def _source(clients: int, proc: int) -> dict[str, Any]:
    """The spec entry giving client process ``proc`` a source address of its own, when
    ``clients`` connections would run out of ports from one address."""
    if clients <= PORTS_PER_SOURCE:
        return {}
    return {"source": f"127.0.{1 + proc // 250}.{1 + proc % 250}"}


def fd_room(clients: int) -> str | None:
    """Why a server process started by the benchmark could not hold ``clients`` connections
    (the hard open-file limit, which only CAP_SYS_RESOURCE may raise), or None."""
    hard = raise_nofile()
    need = clients + 64 + 10  # the server's FD_RESERVE, and the bench's own probe clients
    if hard >= need:
        return None
    return (f"the open-file hard limit (RLIMIT_NOFILE) is {hard:,}: a server process can hold "
            f"at most {hard - 74:,} clients, not {clients:,} (raise it with ulimit -Hn or "
            "LimitNOFILE=, which needs CAP_SYS_RESOURCE)")


def _start_clients(args: argparse.Namespace, server: Server, system: str, mode: str,
                   members: int, senders: int) -> tuple[Workers, dict[str, Any]]:
    args._point_members = members + senders
    counts = _split(members, _member_procs(args, members)) if members else []
    ws = Workers(len(counts), 1 if senders else 0)
    info: dict[str, Any] = {"member_procs": len(counts), "sender_procs": 1 if senders else 0}
    t0 = time.monotonic()
    start = 0
    role = "idle" if mode == "idle" else "member"
    for i, c in enumerate(counts):
        ws.spawn(_spec(args, server, system, role, mode, _names(system, "m", start, c), i, i,
                       **_source(members, i)))
        start += c
    ready = ws.wait_ready(ws.procs[:], args.setup_timeout + members / 100, server)
    info["connect_s"] = time.monotonic() - t0
    info["gen_loop"] = ready[0]["loop"] if ready else None
    failed = sum(r["failed"] for r in ready)
    if failed and not server.alive():
        raise RuntimeError(f"{server.system} exited while clients connected "
                           f"({server.proc.returncode}): {server.tail()}")
    if failed:
        why = next(r["why"] for r in ready if r["why"])
        raise RuntimeError(f"{failed} of {members} members could not connect ({why})")
    if senders:
        ws.spawn(_spec(args, server, system, "sender", mode, _names(system, "s", 0, senders), 0))
        ready = ws.wait_ready(ws.role("sender"), args.setup_timeout, server)
        if ready[0]["failed"]:
            raise RuntimeError(f"senders could not connect ({ready[0]['why']})")
    return ws, info


def generator(args: argparse.Namespace, system: str) -> str:
    """The fanout load generator of a system: 'c' when asked for and it speaks the system's
    protocol (not the WebSocket systems), else 'python'."""
    if getattr(args, "gen", "python") == "c" and system in PROTOS:
        return "c"
    return "python"


def _start_cgen(args: argparse.Namespace, server: Server, system: str,
                members: int) -> tuple[CGen, dict[str, Any]]:
    args._point_members = members + args.senders
    timeout = 2 * args.setup_timeout + members / 100
    gen = CGen(build_cgen(), proto=PROTOS[system], host=server.host, port=server.port,
               members=members, senders=args.senders, window=args.window,
               max_lag=_max_lag(args, system, members + args.senders),
               text_size=args.text_size, concurrency=args.concurrency, timeout=timeout,
               avoid_cpu=args.server_cpu, say_id=getattr(args, "say_id", "on") == "on")
    try:
        ready = gen.wait_ready(server)
        if ready["failed"]:
            if not server.alive():
                raise RuntimeError(f"{server.system} exited while clients connected "
                                   f"({server.proc.returncode}): {server.tail()}")
            raise RuntimeError(f"{ready['failed']} of {members + args.senders} connections "
                               f"could not connect ({ready['why']})")
    except BaseException:
        gen.close()
        raise
    info = {"member_procs": 1, "sender_procs": 0, "connect_s": ready["connect_s"],
            "gen_loop": ready["loop"], "generator": "c"}
    if PROTOS[system] == "chat":
        info["say_id"] = getattr(args, "say_id", "on") == "on"
    return gen, info


def _barrier(ws: Workers | CGen, server: Server, timeout: float) -> None:
    """Senders post probes until every member has received at least one message: everyone is
    in the room (the textbook servers register a client only when they get to it)."""
    deadline = time.monotonic() + timeout
    while True:
        ws.command(ws.role("sender"), ("probe",))
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            if min(ws.prog_arr) >= 1:
                time.sleep(0.2)
                return
            time.sleep(0.01)
        if not server.alive():
            raise RuntimeError(f"server exited ({server.proc.returncode}): {server.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError("not every member received the probe messages "
                               f"within {timeout:.0f} s")


def _snapshot(ws: Workers | CGen, server: Server, record: bool) -> dict[str, Any]:
    entries = ws.procs[:]
    for _, conn, _ in entries:
        conn.send(("mark", {"record": record}))
    t = time.monotonic()
    try:
        cpu = proc_cpu(server.pid)
        main_cpu = main_thread_cpu(server.pid)
    except OSError:
        cpu = main_cpu = float("nan")
    busy = machine_busy()
    replies = []
    for p, conn, _ in entries:
        if not conn.poll(30):
            raise RuntimeError(f"load generator {p.name}: no answer to mark")
        replies.append(conn.recv())
    return {"t": t, "cpu": cpu, "main_cpu": main_cpu, "busy": busy, "w": replies,
            "roles": [e[2] for e in entries]}


def _window_figures(system: str, m1: dict[str, Any], m2: dict[str, Any]) -> dict[str, Any]:
    dt = m2["t"] - m1["t"]
    ncpu = os.cpu_count() or 1
    gen = []
    for a, b, role in zip(m1["w"], m2["w"], m1["roles"], strict=True):
        wdt = b["t"] - a["t"]
        gen.append({"role": role, "cpu_pct": 100 * (b["cpu"] - a["cpu"]) / wdt,
                    "msgs": b["msgs"] - a["msgs"], "rate": (b["msgs"] - a["msgs"]) / wdt,
                    "sent": b["sent"] - a["sent"],
                    "lag_blocked": b["lag_blocked"] - a["lag_blocked"],
                    "acks": b["acks"] - a["acks"],
                    "lost": b["lost_during"], "live": b["live"], "errors": b["errors"]})
    srv_cpu = m2["cpu"] - m1["cpu"]
    main_cpu = m2["main_cpu"] - m1["main_cpu"]
    gen_cpu = sum((b["cpu"] - a["cpu"]) for a, b in zip(m1["w"], m2["w"], strict=True))
    busy = m2["busy"] - m1["busy"]
    errors: collections.Counter[str] = collections.Counter()
    for g in gen:
        errors.update(g["errors"])
    return {
        "window_s": dt,
        "server_cpu_s": srv_cpu,
        "server_cpu_pct": 100 * srv_cpu / dt,
        "server_main_cpu_s": main_cpu,
        "server_main_cpu_pct": 100 * main_cpu / dt,
        "gen_cpu_pct_total": 100 * gen_cpu / dt,
        "gen_cpu_pct_max": max((g["cpu_pct"] for g in gen), default=0.0),
        "other_cpu_pct": max(0.0, 100 * (busy - srv_cpu - gen_cpu) / dt),
        "machine_cpu_pct": 100 * busy / dt,
        "ncpu": ncpu,
        "gen": gen,
        "lost": sum(g["lost"] for g in gen),
        "errors": dict(errors),
    }


def _limit(system: str, f: dict[str, Any], lag_frac: float, pinned: bool = False) -> str:
    """What limited a run: server, loadgen, cpu (every core busy, shared) or window. A server
    pinned to one CPU (--server-cpu) is saturated at 100% whatever its threads."""
    one_core = pinned or kind(system) in SINGLE_THREADED
    srv_cap = 100.0 if one_core else 100.0 * f["ncpu"]
    if f["server_cpu_pct"] >= 0.85 * srv_cap:
        return "server"
    if f["gen_cpu_pct_max"] >= 85:
        return "loadgen"
    if f["machine_cpu_pct"] >= 85 * f["ncpu"]:
        return "cpu"
    if lag_frac >= 0.25:  # the members fell behind without any process being saturated
        return "loadgen"
    return "window"


def run_fanout(args: argparse.Namespace, system: str, n: int) -> dict[str, Any]:
    server = Server(system, args)
    ws: Workers | CGen | None = None
    try:
        if generator(args, system) == "c":
            ws, info = _start_cgen(args, server, system, n)
        else:
            ws, info = _start_clients(args, server, system, "fanout", n, args.senders)
            info["generator"] = "python"
        _barrier(ws, server, args.setup_timeout)
        ws.command(ws.role("member"), ("go",))
        ws.command(ws.role("sender"), ("go",))
        time.sleep(args.warmup)
        m1 = _snapshot(ws, server, False)
        time.sleep(args.duration)
        m2 = _snapshot(ws, server, False)
        alive = server.alive()
        f = _window_figures(system, m1, m2)
        dt = f["window_s"]
        deliveries = sum(g["msgs"] for g in f["gen"])
        member_deliv = sum(b["member_msgs"] - a["member_msgs"]
                           for a, b in zip(m1["w"], m2["w"], strict=True))
        acked = sum(g["acks"] for g in f["gen"] if g["role"] in SENDING)
        receivers = n + (args.senders - 1 if kind(system) in CHATLIKE else 0)
        lag_blocked = sum(g["lag_blocked"] for g in f["gen"] if g["role"] in SENDING)
        lag_frac = lag_blocked / max(1, args.senders) / dt
        out = {
            "workload": "fanout", "system": system, "n": n, "senders": args.senders, **info,
            "deliveries": deliveries, "member_deliveries": member_deliv,
            "deliveries_per_s": deliveries / dt,
            "server_us_per_delivery": 1e6 * f["server_cpu_s"] / deliveries if deliveries else None,
            "server_main_us_per_delivery": (1e6 * f["server_main_cpu_s"] / deliveries
                                            if deliveries else None),
            # what each member got: the rate the server really got messages through
            "messages_per_s": member_deliv / n / dt,
            "acked_per_s": acked / dt if acked else None,
            # sanity (systems with replies): deliveries / (messages acked x receivers) ~ 1
            "delivery_ratio": deliveries / (acked * receivers) if acked else None,
            "lag_blocked_frac": lag_frac,
            **{k: v for k, v in f.items() if k != "gen"},
            "gen": f["gen"],
            "server_alive": alive,
        }
        out["limit"] = _limit(system, f, lag_frac, args.server_cpu is not None)
        if not deliveries:
            out["limit"] = "none"
            out["error"] = ("no deliveries in the window" + (
                f": {f['lost']} connection(s) lost, {f['errors']}" if f["lost"] else ""))
        if not alive:
            out["error"] = f"server exited ({server.proc.returncode}): {server.tail()}"
        return out
    finally:
        if ws is not None:
            ws.close()
        server.stop()


def _percentiles(samples: list[int]) -> dict[str, float]:
    s = sorted(samples)
    n = len(s)

    def q(p: float) -> float:
        return s[min(n - 1, max(0, math.ceil(p * n) - 1))] / 1e3  # µs

    return {"p50_us": q(0.50), "p90_us": q(0.90), "p99_us": q(0.99), "p999_us": q(0.999),
            "max_us": s[-1] / 1e3, "mean_us": sum(s) / n / 1e3}


def run_latency(args: argparse.Namespace, system: str) -> dict[str, Any]:
    server = Server(system, args)
    ws: Workers | None = None
    n = args.latency_members
    try:
        ws, info = _start_clients(args, server, system, "latency", n, args.senders)
        _barrier(ws, server, args.setup_timeout)
        ws.command(ws.procs[:], ("go",))
        time.sleep(args.warmup)
        m1 = _snapshot(ws, server, True)
        time.sleep(args.duration)
        m2 = _snapshot(ws, server, False)
        alive = server.alive()
        raw = ws.command(ws.role("member"), ("lat",), raw=True)
        samples: list[int] = []
        for blob in raw:
            a = array("q")
            a.frombytes(blob)
            samples.extend(a)
        f = _window_figures(system, m1, m2)
        sent = sum(g["sent"] for g in f["gen"])
        out: dict[str, Any] = {
            "workload": "latency", "system": system, "n": n, "senders": args.senders,
            "target_rate": args.rate, **info,
            "messages_per_s": sent / f["window_s"], "samples": len(samples),
            "expected_samples": sent * n,
            **{k: v for k, v in f.items() if k != "gen"}, "gen": f["gen"],
            "server_alive": alive,
        }
        if samples:
            out.update(_percentiles(samples))
            s = sorted(samples)
            step = max(1, len(s) // 2000)
            out["cdf_us"] = [v / 1e3 for v in s[::step]] + [s[-1] / 1e3]
        else:
            out["error"] = "no latency samples"
        if not alive:
            out["error"] = f"server exited ({server.proc.returncode}): {server.tail()}"
        return out
    finally:
        if ws is not None:
            ws.close()
        server.stop()


def _warmup_client(system: str, server: Server) -> None:
    """One client, handshaken and gone, so lazy first-connection allocations are in 'before'."""
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.settimeout(5)
        if system.startswith("asyncchat"):
            p = json.dumps({"type": "hello", "name": "warmup", "version": 1}).encode()
            s.sendall(U32.pack(len(p)) + p)
            data = b""
            while b'"welcome"' not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        elif system == "redis":
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            s.recv(100)
        elif system == "nats":
            s.recv(4096)
            s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            s.recv(100)
        else:
            s.sendall(b"6         warmup")
            time.sleep(0.1)


def _quiesce(pids: list[int], limit: float) -> bool:
    """Wait until each process uses under 5% CPU over 0.25 s (join storms drained, on both
    sides: the server's buffers hold what a client has not read yet). False on timeout."""
    deadline = time.monotonic() + limit

    def cpu() -> list[float]:
        out = []
        for pid in pids:
            try:
                out.append(proc_cpu(pid))
            except OSError:
                out.append(0.0)
        return out

    prev = cpu()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        cur = cpu()
        if all(c - p < 0.0125 for c, p in zip(cur, prev, strict=True)):
            return True
        prev = cur
    return False


def run_idle(args: argparse.Namespace, system: str) -> dict[str, Any]:
    m = args.idle_count
    why = fd_room(m)
    if why is not None:
        raise RuntimeError(why)
    server = Server(system, args, idle=m, keepalive_off=False)
    ws: Workers | None = None
    try:
        _warmup_client(system, server)
        time.sleep(0.3)
        _quiesce([server.pid], 5)
        rss0, _ = proc_mem(server.pid)
        cpu0 = proc_cpu(server.pid)
        ws, info = _start_clients(args, server, system, "idle", m, 0)
        quiet = _quiesce([server.pid, *(p.pid for p, _, _ in ws.procs)], 60)
        time.sleep(args.settle)
        alive = server.alive()
        if not alive:
            raise RuntimeError(f"server exited ({server.proc.returncode}): {server.tail()}")
        rss1, hwm = proc_mem(server.pid)
        cpu1 = proc_cpu(server.pid)
        # Is a new client still answered promptly with M held open? A whole handshake, timed
        # (the textbook servers answer nothing to a handshake, so there is nothing to time).
        fresh_ms = None
        if system.startswith("asyncchat") or system in ("redis", "nats"):
            samples = []
            for _ in range(5):
                t0 = time.perf_counter()
                _warmup_client(system, server)
                samples.append(1e3 * (time.perf_counter() - t0))
            fresh_ms = statistics.median(samples)
        marks = ws.command(ws.procs[:], ("mark", {"record": False}))
        live = sum(r["live"] for r in marks)
        rx = sum(r["rx"] for r in marks)
        lost = sum(r["lost"] for r in marks)
        errors: collections.Counter[str] = collections.Counter()
        for r in marks:
            errors.update(r["errors"])
        out = {
            "workload": "idle", "system": system, "n": m, **info,
            "rss_before_kib": rss0, "rss_after_kib": rss1, "rss_peak_kib": hwm,
            "rss_per_conn_kib": (rss1 - rss0) / m,
            "peak_per_conn_kib": (hwm - rss0) / m,
            "server_us_per_connect": 1e6 * (cpu1 - cpu0) / m,
            "connects_per_s": m / info["connect_s"],
            "fresh_handshake_ms": fresh_ms,
            "live": live, "lost": lost, "errors": dict(errors), "server_alive": alive,
            "client_rx_bytes": rx, "quiet": quiet,
        }
        if not quiet:
            out["error"] = "the server or the clients were still busy after 60 s"
        if live < m:
            out["error"] = f"only {live} of {m} clients still connected"
        return out
    finally:
        if ws is not None:
            ws.close()
        server.stop()


def _deliveries(m1: dict[str, Any], m2: dict[str, Any]) -> tuple[int, float]:
    """Deliveries to the fan-out's members between two snapshots, and the window's seconds."""
    got = sum(b["member_msgs"] - a["member_msgs"] for a, b in zip(m1["w"], m2["w"], strict=True))
    return got, m2["t"] - m1["t"]


def run_storm(args: argparse.Namespace, system: str) -> dict[str, Any]:
    """A connection storm under load: a room of --storm-members members under full fan-out (as
    in the fanout workload), then --storm-count clients arrive at once (connect, hello, and a
    join of their own room, as the idle workload's clients; --storm-procs processes of at most
    --storm-concurrency connections in flight each). Reports the time from the go to the last
    welcome, how many were welcomed, and the fan-out's deliveries per second during the storm
    against the window before it."""
    n, m = args.storm_members, args.storm_count
    why = fd_room(n + args.senders + m)
    if why is not None:
        raise RuntimeError(why)
    server = Server(system, args, idle=n + args.senders + m)
    ws: Workers | CGen | None = None
    storm: Workers | None = None
    try:
        if generator(args, system) == "c":  # the fan-out's load, as in the fanout workload
            ws, info = _start_cgen(args, server, system, n)
        else:
            ws, info = _start_clients(args, server, system, "fanout", n, args.senders)
            info["generator"] = "python"
        _barrier(ws, server, args.setup_timeout)
        ws.command(ws.role("member"), ("go",))
        ws.command(ws.role("sender"), ("go",))
        time.sleep(args.warmup)
        # The storm's processes start now, and connect when told (all at once).
        counts = _split(m, args.storm_procs)
        storm = Workers(len(counts), 0)
        start = 0
        for i, c in enumerate(counts):
            storm.spawn(_spec(args, server, system, "idle", "storm", _names(system, "c", start, c),
                              i, i, hold=True, concurrency=args.storm_concurrency,
                              **_source(m, i)))
            start += c
        for p, conn, _ in storm.procs:
            if not conn.poll(60):
                raise RuntimeError(f"load generator {p.name}: not armed after 60 s")
            msg = conn.recv()
            if not msg.get("armed"):
                raise RuntimeError(f"load generator {p.name}: {msg.get('fatal')}")
        m0 = _snapshot(ws, server, False)
        time.sleep(args.duration)
        m1 = _snapshot(ws, server, False)
        go = time.monotonic()
        for _, conn, _ in storm.procs:
            conn.send(("go",))
        ready = storm.wait_ready(storm.procs[:], args.setup_timeout + m / 100, server)
        m2 = _snapshot(ws, server, False)
        alive = server.alive()
        welcomed = sum(r["ok"] for r in ready)
        failed = sum(r["failed"] for r in ready)
        last = max((r["last_ready"] for r in ready if r["last_ready"] is not None), default=None)
        first = min((r["first_ready"] for r in ready if r["first_ready"] is not None),
                    default=None)
        before, before_s = _deliveries(m0, m1)
        during, during_s = _deliveries(m1, m2)
        f_before = _window_figures(system, m0, m1)
        f_during = _window_figures(system, m1, m2)
        storm_s = last - go if last is not None else None
        out: dict[str, Any] = {
            "workload": "storm", "system": system, "n": n, "senders": args.senders,
            "arriving": m, "welcomed": welcomed, "failed": failed, **info,
            "storm_procs": len(counts), "storm_concurrency": args.storm_concurrency,
            "last_welcome_s": storm_s,
            "first_welcome_s": first - go if first is not None else None,
            "welcomes_per_s": welcomed / storm_s if storm_s else None,
            "before_deliveries_per_s": before / before_s,
            "during_deliveries_per_s": during / during_s,
            "during_window_s": during_s,
            "before_server_cpu_pct": f_before["server_cpu_pct"],
            "during_server_cpu_pct": f_during["server_cpu_pct"],
            "before_gen_cpu_pct": f_before["gen_cpu_pct_total"],
            "during_gen_cpu_pct": f_during["gen_cpu_pct_total"],
            # other: the storm's own processes (during), and whatever else ran on the machine
            "before_other_cpu_pct": f_before["other_cpu_pct"],
            "during_other_cpu_pct": f_during["other_cpu_pct"],
            "lost": f_during["lost"], "errors": f_during["errors"],
            "storm_errors": [r["why"] for r in ready if r.get("why")],
            "server_alive": alive,
        }
        out["during_vs_before"] = (out["during_deliveries_per_s"] / out["before_deliveries_per_s"]
                                   if before else None)
        if failed or welcomed < m:
            out["error"] = f"only {welcomed} of {m} arriving clients were welcomed"
        if not alive:
            out["error"] = f"server exited ({server.proc.returncode}): {server.tail()}"
        return out
    finally:
        if storm is not None:
            storm.close()
        if ws is not None:
            ws.close()
        server.stop()
