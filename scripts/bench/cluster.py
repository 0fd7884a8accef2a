"""``python scripts/bench/cluster.py``: one node vs two nodes on Redis, and the SQLite default.

Three setups in one run, each with the same load (one room, members and senders split evenly
over the nodes): ``sqlite`` (one ``asyncchat serve`` with its default SQLite history), ``redis1``
(one node on Redis) and ``redis2`` (two nodes on Redis). Each node is pinned to a CPU with
``taskset`` (node A on CPU 0, node B and Redis on CPU 1 when there are 2), the load generator
runs unpinned. Two phases per setup:

- **throughput**: every sender keeps ``--window`` says unacknowledged, for ``--seconds``;
  reported: acked says/s, deliveries/s, CPU ms per 1,000 deliveries for each node and Redis,
  Redis calls per say (from ``INFO commandstats``);
- **latency**: the senders post at ``--rate`` says/s in total; every member timestamps what it
  receives: p50/p99 of send -> delivery, same-node and cross-node apart.

Redis runs with ``--appendonly yes --appendfsync everysec`` (``--fsync always`` to compare).
Loopback only; every process started here is ended by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

U32 = struct.Struct(">I")
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pinned(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu % (os.cpu_count() or 1))]


class Proc:
    """A process started here, ended by its pid."""

    def __init__(self, argv: list[str], **kw: Any) -> None:
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_redis(tmp: Path, fsync: str, cpu: int | None) -> tuple[Proc, int]:
    port = free_port()
    p = Proc(
        [
            *pinned(cpu),
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            fsync,
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return p, port
        time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def redis_command(port: int, *args: str) -> str:
    """One command over a plain socket (RESP), the reply as text (bulk strings only)."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        req = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        s.sendall(req.encode())
        data = b""
        while True:
            data += s.recv(65536)
            if data.startswith(b"$"):
                n = int(data[1 : data.index(b"\r\n")])
                if len(data) >= data.index(b"\r\n") + 2 + n:
                    return data.split(b"\r\n", 1)[1][:n].decode()
            elif data.endswith(b"\r\n"):
                return data.decode()


def redis_calls(port: int) -> dict[str, int]:
    """Calls Redis counted per command (INFO commandstats; the commands a script runs count
    too), plus ``round_trips``: the commands clients sent (EVALSHA, XREAD and the rest, without
    those run inside scripts)."""
    calls: dict[str, int] = {}
    for line in redis_command(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name = line.split(":", 1)[0].removeprefix("cmdstat_")
            calls[name] = int(line.split("calls=")[1].split(",")[0])
    inside = ("hincrby", "hset", "xadd", "set", "get", "exists")
    calls["round_trips"] = sum(n for k, n in calls.items() if k not in inside and k != "info")
    return calls


def start_node(tmp: Path, redis_port: int | None, cpu: int | None, n: int) -> tuple[Proc, int]:
    store = (
        ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
        if redis_port
        else ["--db", str(tmp / f"h{n}.db")]
    )
    p = Proc(
        [
            *pinned(cpu),
            sys.executable,
            "-m",
            "asyncchat",
            "serve",
            "--port",
            "0",
            "--no-web",
            "--rate",
            "1000000",
            "--burst",
            "1000000",
            "--max-outbox",
            str(8 << 20),
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            *store,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    # The port: asked from the process's listening sockets (it logs at warning only).
    for _ in range(500):
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"pid={p.pid}," in line:
                return p, int(line.split()[3].rsplit(":", 1)[1])
        if p.popen.poll() is not None:
            raise RuntimeError(
                f"node did not start: {p.popen.stderr.read() if p.popen.stderr else ''}"
            )
        time.sleep(0.02)
    raise RuntimeError("node did not start")


class Conn:
    """One client connection of the load generator."""

    def __init__(self, name: str, node: int) -> None:
        self.name = name
        self.node = node
        self.acks = 0
        self.msgs = 0
        self.lat: list[tuple[int, float]] = []  # (sender's node, seconds)
        self.inflight = 0
        self.can_send = asyncio.Event()
        self.can_send.set()

    async def open(self, port: int) -> None:
        self.r, self.w = await asyncio.open_connection("127.0.0.1", port)
        self.send({"type": "hello", "name": self.name, "version": 1})
        await self.recv()

    def send(self, obj: dict[str, Any]) -> None:
        data = orjson.dumps(obj)
        self.w.write(U32.pack(len(data)) + data)

    async def recv(self) -> dict[str, Any]:
        (n,) = U32.unpack(await self.r.readexactly(4))
        return orjson.loads(await self.r.readexactly(n))  # type: ignore[no-any-return]

    async def pump(self, window: int, record: bool) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                f = await self.recv()
                t = f["type"]
                if t == "message" and not f.get("history"):
                    self.msgs += 1
                    if record:
                        node, sent = f["text"].split(" ", 2)[:2]
                        self.lat.append((int(node), time.perf_counter() - float(sent)))
                elif t == "ack":
                    self.acks += 1
                    self.inflight -= 1
                    if self.inflight < window:
                        self.can_send.set()


async def run_load(ports: list[int], args: argparse.Namespace, paced: bool) -> dict[str, Any]:
    conns: list[Conn] = []
    for i in range(args.members):
        node = i % len(ports)
        c = Conn(f"m{i}", node)
        await c.open(ports[node])
        conns.append(c)
    senders = conns[: args.senders]
    window = args.window if not paced else 1_000_000
    pumps = [asyncio.create_task(c.pump(window, paced)) for c in conns]
    await asyncio.sleep(0.5)
    stop = time.perf_counter() + args.seconds
    counter = 0

    async def sender(c: Conn) -> None:
        nonlocal counter
        interval = len(senders) / args.rate if paced else 0.0
        nxt = time.perf_counter()
        while time.perf_counter() < stop:
            if paced:
                nxt += interval
                await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
            else:
                await c.can_send.wait()
            counter += 1
            c.inflight += 1
            if c.inflight >= window:
                c.can_send.clear()
            c.send(
                {
                    "type": "say",
                    "room": "lobby",
                    "text": f"{c.node} {time.perf_counter()!r} x",
                    "id": counter,
                }
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(sender(c) for c in senders))
    await asyncio.sleep(0.5)  # the last acks
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.w.close()
    for p in pumps:
        p.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
    result: dict[str, Any] = {
        "acked_per_s": sum(c.acks for c in conns) / elapsed,
        "deliveries_per_s": sum(c.msgs for c in conns) / elapsed,
        "acked": sum(c.acks for c in conns),
        "deliveries": sum(c.msgs for c in conns),
    }
    if paced:
        for label, same in (("same_node", True), ("cross_node", False)):
            lat = sorted(s for c in conns for node, s in c.lat if (node == c.node) == same)
            if lat:
                result[f"{label}_p50_ms"] = 1000 * lat[len(lat) // 2]
                result[f"{label}_p99_ms"] = 1000 * lat[int(len(lat) * 0.99)]
    return result


def setup(name: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    procs: list[tuple[str, Proc]] = []
    redis_port = None
    try:
        if name != "sqlite":
            rp, redis_port = start_redis(tmp, args.fsync, 1)
            procs.append(("redis", rp))
        count = 2 if name == "redis2" else 1
        ports = []
        for cpu in range(count):
            p, port = start_node(tmp, redis_port, cpu, cpu)
            procs.append((f"node{cpu}", p))
            ports.append(port)
        out: dict[str, Any] = {"setup": name}
        for phase, paced in (("throughput", False), ("latency", True)):
            cpu0 = {label: cpu_seconds(p.pid) for label, p in procs}
            calls0 = redis_calls(redis_port) if redis_port else {}
            r = asyncio.run(run_load(ports, args, paced))
            per_k = 1000 / max(1, r["deliveries"])
            r["cpu_ms_per_1k_deliveries"] = {
                label: round(1000 * (cpu_seconds(p.pid) - cpu0[label]) * per_k, 2)
                for label, p in procs
            }
            if redis_port:
                calls = redis_calls(redis_port)
                says = max(1, r["acked"])
                r["redis_per_say"] = {
                    k: round((calls[k] - calls0.get(k, 0)) / says, 3)
                    for k in ("evalsha", "xread", "round_trips")
                    if k in calls
                }
            out[phase] = r
        return out
    finally:
        for _, p in reversed(procs):
            p.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=40, help="connections in the room")
    ap.add_argument("--senders", type=int, default=8, help="of them, how many post")
    ap.add_argument("--window", type=int, default=32, help="unacked says per sender")
    ap.add_argument("--rate", type=float, default=500.0, help="says/s in the latency phase")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    ap.add_argument("--fsync", choices=("everysec", "always"), default="everysec")
    ap.add_argument("--setups", default="sqlite,redis1,redis2")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON too")
    args = ap.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("redis-server is not installed", file=sys.stderr)
        return 1
    results = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.setups.split(","):
            tmp = Path(d) / name
            tmp.mkdir()
            results.append(setup(name, tmp, args))
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
