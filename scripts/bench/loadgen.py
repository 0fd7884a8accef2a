"""The load generator: its worker processes (each runs a few hundred or thousand clients on
uvloop, counts their deliveries and answers the parent's commands over a pipe) and the parent's
handle on them (Workers). The senders read the members' progress from shared arrays, to stay at
most --max-lag messages ahead of the slowest member process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing as mp
import os
import resource
import signal
import time
from array import array
from typing import TYPE_CHECKING, Any

from bench.clients import Client

if TYPE_CHECKING:
    from bench.systems import Server


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft if hard == resource.RLIM_INFINITY else hard


class Worker:
    """The state of one load-generator process, shared by its clients."""

    def __init__(self, spec: dict[str, Any], sent_arr: Any, prog_arr: Any) -> None:
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.sent_arr = sent_arr
        self.prog_arr = prog_arr
        self.idx = spec["idx"]
        self.window = spec["window"]
        self.refill = max(1, spec["window"] // 4)
        self.max_lag = spec["max_lag"]
        self.text_size = spec["text_size"]
        self.clients: list[Client] = []
        self.sent_total = 0
        self.acked_total = 0
        self.recording = False
        self.lat = array("q")
        self.lost = 0
        self.lost_during = 0
        self.going = False
        self.lag_blocked = 0.0  # seconds senders spent waiting for the slowest member process
        self.errors: collections.Counter[str] = collections.Counter()

    def add_sent(self, k: int) -> None:
        self.sent_total += k

    def add_acked(self, k: int) -> None:
        self.acked_total += k
        self.sent_arr[self.idx] = self.acked_total

    def lag(self) -> int:
        """Messages the server has accepted (acked) that the slowest member has not received:
        the backlog between the server and the members, all of it in the server's buffers or
        in the sockets."""
        prog = self.prog_arr
        if not len(prog):
            return 0
        return sum(self.sent_arr) - min(prog)

    def on_lost(self, client: Client, exc: BaseException | None) -> None:
        self.lost += 1
        if self.going:
            self.lost_during += 1
            self.errors[f"{client.role} connection lost" + (f" ({exc})" if exc else "")] += 1


async def _recv_cmd(conn: Any) -> Any:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(conn.fileno(), readable)
    try:
        await fut
    finally:
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)  # libuv's poll made it non-blocking
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _member_min(w: Worker) -> None:
    live = [c.msgs for c in w.clients if not c.closed]
    w.prog_arr[w.spec["prog_idx"]] = min(live) if live else 1 << 62
    w.loop.call_later(0.005, _member_min, w)


async def _worker(spec: dict[str, Any], conn: Any, sent_arr: Any, prog_arr: Any) -> None:
    w = Worker(spec, sent_arr, prog_arr)
    loop = w.loop
    cls: type[Client] = spec["client"]  # a class: pickled by name, imported here
    role = spec["role"]
    names = spec["names"]
    bufsize = max(4096, min(65536, (64 << 20) // max(1, len(names))))
    sem = asyncio.Semaphore(spec["concurrency"])
    timeout = spec["timeout"]
    t0 = time.monotonic()

    # A web system's members: every k-th one on the WebSocket (the web listener's port).
    member_client = spec.get("member_client") if role == "member" else None

    # More connections than one source address has ports for: each process connects from an
    # address of its own in 127.0.0.0/8 (the idle workload past ~28,000 clients).
    source = {"local_addr": (spec["source"], 0)} if spec.get("source") else {}
    welcomed: list[float] = []  # when each handshake completed (time.monotonic)

    async def connect(name: str, i: int) -> Client:
        klass, port = cls, spec["port"]
        if member_client is not None and i % member_client[1] == 0:
            klass, port = member_client[0], spec["web_port"]
        async with sem:
            last: BaseException | None = None
            for attempt in range(4):
                try:
                    _, proto = await asyncio.wait_for(
                        loop.create_connection(lambda: klass(w, name, role, bufsize),
                                               spec["host"], port, **source), timeout)
                except (OSError, TimeoutError) as exc:
                    last = exc
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                await asyncio.wait_for(proto.ready, timeout)
                welcomed.append(time.monotonic())
                return proto
            assert last is not None
            raise last

    if spec.get("hold"):  # a storm: every process connects when the parent says go
        conn.send({"armed": True})
        await _recv_cmd(conn)
        t0 = time.monotonic()

    results = await asyncio.gather(*(connect(n, i) for i, n in enumerate(names)),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    w.clients = [r for r in results if isinstance(r, Client)]
    connect_s = time.monotonic() - t0
    if role == "member":
        _member_min(w)
    conn.send({"ready": True, "ok": len(w.clients), "failed": len(failures),
               "why": f"{type(failures[0]).__name__}: {failures[0]}" if failures else None,
               "connect_s": connect_s, "loop": type(loop).__module__.split(".")[0],
               "t0": t0, "first_ready": min(welcomed, default=None),
               "last_ready": max(welcomed, default=None)})
    senders = [c for c in w.clients if c.role == "sender"]
    while True:
        cmd = await _recv_cmd(conn)
        if cmd is None or cmd[0] == "stop":
            w.going = False
            for c in w.clients:
                c.quit()
            await asyncio.sleep(0.05)
            with contextlib.suppress(OSError):
                if cmd is not None:
                    conn.send({"stopped": True})
            return
        op = cmd[0]
        if op == "probe":
            for c in senders:
                c.write(c.batch(1))
                c.after_write(1)
                c.sent += 1
                w.add_sent(1)
            conn.send({"ok": True})
        elif op == "go":
            w.going = True
            if spec["mode"] == "fanout":
                for c in senders:
                    c.pump()
            elif spec["mode"] == "latency" and senders:
                rate = spec["rate"] / max(1, spec["total_senders"])
                now = time.monotonic()  # the clock of the stamps (see Client.pace)
                for j, c in enumerate(senders):
                    c.interval = 1.0 / rate
                    c.pace_next = now + c.interval * j / len(senders)
                    loop.call_later(c.pace_next - now, c.pace)
            conn.send({"ok": True})
        elif op == "mark":
            w.recording = bool(cmd[1].get("record"))
            blocked = w.lag_blocked + sum(time.monotonic() - c.blocked_since for c in senders
                                          if c.blocked_since is not None)
            conn.send({
                "t": time.monotonic(), "cpu": time.process_time(),
                "msgs": sum(c.msgs for c in w.clients),
                "member_msgs": sum(c.msgs for c in w.clients if c.role == "member"),
                "sent": w.sent_total, "acks": sum(c.acks for c in w.clients),
                "lost": w.lost, "lost_during": w.lost_during, "lag_blocked": blocked,
                "live": sum(not c.closed for c in w.clients),
                "rx": sum(c.rx for c in w.clients),
                "errors": dict(w.errors),
            })
        elif op == "lat":
            conn.send_bytes(w.lat.tobytes())
        else:
            conn.send({"error": f"unknown command {op!r}"})


def worker_entry(spec: dict[str, Any], conn: Any, sent_arr: Any, prog_arr: Any) -> None:
    """A load-generator process (the target of multiprocessing)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    raise_nofile()
    avoid = spec.get("avoid_cpu")
    if avoid is not None:  # the server has that CPU to itself
        others = os.sched_getaffinity(0) - {avoid}
        if others:
            os.sched_setaffinity(0, others)
    factory = None
    if spec["gen_loop"] == "uvloop":
        try:
            import uvloop
            factory = uvloop.new_event_loop
        except ImportError:
            pass
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_worker(spec, conn, sent_arr, prog_arr))
    except Exception as exc:  # noqa: BLE001 - report to the parent instead of dying silently
        with contextlib.suppress(Exception):
            conn.send({"ready": False, "fatal": f"{type(exc).__name__}: {exc}"})


class Workers:
    """The load-generator processes of one point."""

    def __init__(self, n_member_procs: int, n_sender_procs: int) -> None:
        self.ctx = mp.get_context("spawn")
        self.sent_arr = self.ctx.Array("q", max(1, n_sender_procs), lock=False)
        self.prog_arr = self.ctx.Array("q", n_member_procs, lock=False)
        self.procs: list[tuple[Any, Any, str]] = []  # (Process, conn, role)

    def spawn(self, spec: dict[str, Any]) -> tuple[Any, Any, str]:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=worker_entry, args=(spec, child, self.sent_arr, self.prog_arr),
                             daemon=True, name=f"bench-{spec['role']}-{spec['idx']}")
        p.start()
        child.close()
        entry = (p, parent, spec["role"])
        self.procs.append(entry)
        return entry

    def role(self, role: str) -> list[tuple[Any, Any, str]]:
        return [e for e in self.procs if e[2] == role]

    def wait_ready(self, entries: list[tuple[Any, Any, str]], timeout: float,
                   server: Server | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        out = []
        for p, conn, _ in entries:
            while not conn.poll(0.2):
                if server is not None and not server.alive():
                    raise RuntimeError(f"{server.system} exited while clients connected "
                                       f"({server.proc.returncode}): {server.tail()}")
                if not p.is_alive():
                    raise RuntimeError(f"load generator {p.name} died (exit {p.exitcode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"load generator {p.name}: not connected after {timeout:.0f} s")
            msg = conn.recv()
            if not msg.get("ready"):
                raise RuntimeError(f"load generator {p.name}: {msg.get('fatal')}")
            out.append(msg)
        return out

    def command(self, entries: list[tuple[Any, Any, str]], cmd: tuple[Any, ...],
                timeout: float = 30, raw: bool = False) -> list[Any]:
        for _, conn, _ in entries:
            conn.send(cmd)
        out = []
        deadline = time.monotonic() + timeout
        for p, conn, _ in entries:
            while not conn.poll(0.2):
                if not p.is_alive():
                    raise RuntimeError(f"load generator {p.name} died (exit {p.exitcode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"load generator {p.name}: no answer to {cmd[0]}")
            out.append(conn.recv_bytes() if raw else conn.recv())
        return out

    def close(self) -> None:
        for p, conn, _ in self.procs:
            if p.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("stop",))
        deadline = time.monotonic() + 5
        for p, conn, _ in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(2)
            if p.is_alive():
                p.kill()
                p.join(2)
            conn.close()
        self.procs.clear()
