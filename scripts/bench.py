#!/usr/bin/env python3
"""Benchmark asyncchat against Redis pub/sub, NATS and two textbook chat servers, in one run.

Every system is started by this script on a free loopback port (never the machine's own Redis or
NATS), measured with the same load generator, and stopped by pid when its point is done.

Workloads
  fanout   N members in one room and S senders posting ~100-byte texts as fast as the server takes
           them (pipelined, at most --window unanswered per sender, and never more than --max-lag
           messages ahead of the slowest member process). Reports deliveries per second, the
           server's CPU time per delivery (utime+stime from /proc/PID/stat, all threads), the
           server's and the load generator's CPU use, and what limited the run.
  latency  --latency-members members and S senders posting at a fixed total rate; each text
           carries its send time (CLOCK_MONOTONIC, shared by all processes); p50/p90/p99/p99.9 of
           the end-to-end latency measured at the members.
  idle     M connected, handshaken, idle clients; the server's RSS per connection
           ((VmRSS after - VmRSS before) / M), its peak RSS and its CPU time per connection set-up.

Delivery: one message received by one connection other than its sender. In asyncchat and the
textbook servers the senders are room members too, so they also receive the other senders'
messages, and those count; Redis and NATS publishers do not subscribe. Deliveries are counted
without decoding anything: asyncchat frames by their 4-byte length prefix (one byte of the
payload tells a message from an ack), the textbook servers' frames by their 10-byte ASCII header
(two frames per delivery), Redis by the fixed RESP prefix of a pub/sub message and NATS by its
"MSG <subject> " line, both with bytes.count (C speed) across read boundaries.

Systems
  asyncchat  sys.executable -m asyncchat serve (this venv), with the flood limits lifted:
             --rate 1e6 --burst 1e6 --max-outbox 64 MiB, --max-connections above M, (fanout,
             latency) keepalive pings pushed out of the way, and its history (see --history) in a
             temporary directory: the user's own history file is never touched.
  redis      redis-server --save "" --appendonly no: members SUBSCRIBE, senders PUBLISH.
  nats       nats-server -a 127.0.0.1: members SUB, senders PUB (plain text protocol).
  select     scripts/baselines/select_server.py (textbook select() loop).
  thread     scripts/baselines/thread_server.py (textbook thread per client).

The load generator runs in worker processes on uvloop (--procs member processes plus one sender
process) and reports its own CPU use. A point where it, and not the server, was the limit is
flagged in the table ("limit" column) and in a note under it; such a figure is a lower bound for
the server. The machine's other CPU load during the window is reported too ("other").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import importlib.util
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "baselines"

SYSTEMS = ("asyncchat", "redis", "nats", "select", "thread", "asyncchat-nohist")
#: asyncchat with --no-history, in the same run: its column in the ratio tables is the ratio of
#: history on (--history, default file) to history off. Not run unless asked for by name.
DEFAULT_SYSTEMS = ("asyncchat", "redis", "nats", "select", "thread")
WORKLOADS = ("fanout", "latency", "idle")
#: Systems where a sender is a room member and receives the other senders' messages.
CHATLIKE = {"asyncchat", "asyncchat-nohist", "select", "thread"}
#: Systems whose server process runs on one core (the limit test compares with 100% of a core).
SINGLE_THREADED = {"asyncchat", "asyncchat-nohist", "redis", "select", "thread"}

ROOM = "lobby"
CHANNEL = b"bench"
STAMP = b"@T"  # + 19 decimal digits of time.monotonic_ns() at the sender
STAMP_LEN = 21
U32 = struct.Struct(">I")
CLK_TCK = os.sysconf("SC_CLK_TCK")

LOREM = (b"Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         b"incididunt ut labore et dolore magna aliqua Ut enim ad minim veniam quis nostrud ")


def make_text(size: int, stamp: int | None = None) -> bytes:
    """ASCII text of exactly ``size`` bytes (no JSON escaping needed), optionally stamped."""
    head = b"" if stamp is None else STAMP + b"%019d" % stamp + b" "
    body = (LOREM * (size // len(LOREM) + 1))[: max(0, size - len(head))]
    return head + body


# ====================================================================== load generator: clients


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


class Client(asyncio.BufferedProtocol):
    """One connection. Subclasses speak a system's protocol: ``on_connect`` (handshake),
    ``count(end)`` (the hot path: count deliveries in ``buf[:end]``, return the bytes kept at the
    front for the next read), and ``batch(k)`` (k messages for a sender)."""

    has_acks = True
    pre_mode = False  # the handshake reply is parsed from bytes before counting starts

    def __init__(self, w: Worker, name: str, role: str, bufsize: int) -> None:
        self.w = w
        self.name = name
        self.role = role  # member, sender or idle
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)
        self.keep = 0
        self.skip = 0
        self.rx = 0
        self.msgs = 0
        self.acks = 0
        self.outstanding = 0
        self.sent = 0
        self.pre = b""
        self.ready: asyncio.Future[None] = w.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closed = False
        self.scheduled = False
        self.blocked_since: float | None = None
        self.lat_tail = b""
        self.pace_next = 0.0
        self.pace_k = 0
        self.interval = 0.0

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.on_connect()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection closed during handshake ({exc})"))
        if self.w.going or self.w.spec["mode"] == "idle":
            self.w.on_lost(self, exc)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.mv[self.keep:]

    def buffer_updated(self, nbytes: int) -> None:
        self.rx += nbytes
        start = self.keep
        end = start + nbytes
        if self.w.recording and self.role == "member":
            self.scan_stamps(start, end)
        if self.pre_mode:
            self.pre += self.buf[start:end]
            rest = self.handshake(self.pre)
            if rest is None:
                self.keep = 0
                return
            self.pre_mode = False
            self.pre = b""
            end = len(rest)
            self.buf[:end] = rest
        self.keep = self.count(end)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    # -- latency
    def scan_stamps(self, start: int, end: int) -> None:
        now = time.monotonic_ns()
        data = self.lat_tail + self.buf[start:end]
        find = data.find
        out = self.w.lat
        n = len(data)
        i = 0
        while True:
            j = find(STAMP, i)
            if j < 0:
                self.lat_tail = data[-1:] if data.endswith(STAMP[:1]) else b""
                return
            if j + STAMP_LEN > n:
                self.lat_tail = bytes(data[j:])
                return
            out.append(now - int(data[j + 2 : j + STAMP_LEN]))
            i = j + STAMP_LEN

    # -- sending
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def message(self) -> bytes:
        """One message's bytes; stamped in the latency workload."""
        if self.w.spec["mode"] == "latency":
            return self.encode(make_text(self.w.text_size, time.monotonic_ns()))
        return self.plain

    def encode(self, text: bytes) -> bytes:
        raise NotImplementedError

    def batch(self, k: int) -> bytes:
        return self.plain * k

    def after_write(self, k: int) -> None:
        self.outstanding += k

    def acked(self, n: int) -> None:
        self.acks += n
        self.outstanding -= n
        self.w.add_acked(n)
        if self.outstanding <= self.w.window - self.w.refill:
            self.pump()

    def schedule(self, delay: float) -> None:
        if not self.scheduled:
            self.scheduled = True
            if delay <= 0:
                self.w.loop.call_soon(self._scheduled_pump)
            else:
                self.w.loop.call_later(delay, self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self.scheduled = False
        self.pump()

    def pump(self) -> None:
        """Send as much as the window, the transport and the slowest member allow (fanout)."""
        w = self.w
        if not w.going or self.closed or self.paused or self.role != "sender":
            return
        if w.spec["mode"] != "fanout":
            return
        if not self.has_acks:
            # No replies in this protocol: the transport's flow control (pause_writing) is the
            # window, and a blocking server cannot build a backlog of its own.
            self.write(self.batch(w.window))
            self.sent += w.window
            w.add_sent(w.window)
            self.schedule(0)
            return
        room = w.window - self.outstanding
        if room < w.refill:
            return
        lag_room = w.max_lag - w.lag()
        now = time.monotonic()
        if lag_room <= 0:
            if self.blocked_since is None:
                self.blocked_since = now
            self.schedule(0.0005)
            return
        if self.blocked_since is not None:
            w.lag_blocked += now - self.blocked_since
            self.blocked_since = None
        k = min(room, lag_room)
        self.write(self.batch(k))
        self.after_write(k)
        self.sent += k
        w.add_sent(k)

    def pace(self) -> None:
        """The latency workload's sender: messages at fixed intervals, each stamped when sent."""
        w = self.w
        if not w.going or self.closed:
            return
        now = w.loop.time()
        k = 0
        while self.pace_next <= now and k < 1000:
            if self.has_acks and self.outstanding >= w.window:
                w.errors["latency: sender window full, sends delayed"] += 1
                break
            self.write(self.message())
            self.after_write(1)
            self.sent += 1
            w.add_sent(1)
            self.pace_k += 1
            self.pace_next += self.interval
            k += 1
        w.loop.call_at(max(self.pace_next, now + 0.0002), self.pace)

    def channel(self) -> bytes | None:
        """The room/channel this client subscribes to: None for a sender, and for an idle
        client as --idle-room says (none, its own, or the shared one)."""
        if self.role == "sender":
            return None
        if self.role == "idle":
            mode = self.w.spec.get("idle_room", "own")
            if mode == "none":
                return None
            if mode == "own":
                return b"r-" + self.name.encode()
        return CHANNEL

    # -- protocol hooks
    def on_connect(self) -> None:
        raise NotImplementedError

    def handshake(self, data: bytes) -> bytes | None:
        raise NotImplementedError

    def count(self, end: int) -> int:
        raise NotImplementedError

    def quit(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class ChatClient(Client):
    """asyncchat: frames by length prefix; payload byte 9 (after '{"type":"') names the type."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.plain = self.encode(make_text(self.w.text_size))

    def encode(self, text: bytes) -> bytes:
        payload = b'{"type":"say","room":"' + ROOM.encode() + b'","text":"' + text + b'"}'
        return U32.pack(len(payload)) + payload

    def on_connect(self) -> None:
        hello: dict[str, Any] = {"type": "hello", "name": self.name, "version": 1}
        if self.role == "idle":
            ch = self.channel()
            hello["rooms"] = [] if ch is None else [ROOM if ch == CHANNEL else ch.decode()]
        payload = json.dumps(hello).encode()
        self.write(U32.pack(len(payload)) + payload)

    def count(self, end: int) -> int:
        buf = self.buf
        i = self.skip
        if i >= end:
            self.skip = i - end
            return 0
        unpack = U32.unpack_from
        msgs = 0
        acks = 0
        while i + 14 <= end:
            t = buf[i + 13]
            if t == 109:  # 'm'essage
                msgs += 1
            elif t == 97:  # 'a'ck
                acks += 1
            else:
                self.other(t, i, end)
            i += 4 + unpack(buf, i)[0]
        self.msgs += msgs
        if acks:
            self.acked(acks)
        if i < end:
            k = end - i
            buf[:k] = buf[i:end]
            self.skip = 0
            return k
        self.skip = i - end
        return 0

    def other(self, t: int, i: int, end: int) -> None:
        if not self.ready.done() and self.buf[i + 4 : i + 13] != b'{"type":"':
            # The cheap classification reads the type from a fixed offset: it needs "type"
            # first in every object (as the server encodes them).
            self.ready.set_exception(ConnectionError(
                "server frames do not start with {\"type\": the bench must be updated"))
            return
        if t == 119:  # welcome
            if not self.ready.done():
                self.ready.set_result(None)
        elif t == 112:  # ping: answer, or keepalive drops us
            payload = b'{"type":"pong"}'
            self.write(U32.pack(len(payload)) + payload)
        elif t in (101, 98):  # error, bye
            (n,) = U32.unpack_from(self.buf, i)
            what = "bye" if t == 98 else "error"
            if i + 4 + n <= end:
                with contextlib.suppress(ValueError):
                    obj = json.loads(bytes(self.buf[i + 4 : i + 4 + n]))
                    what = f"{obj.get('type')} {obj.get('code') or obj.get('reason')}"
            self.w.errors[f"{self.role}: {what}"] += 1
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"refused: {what}"))


class RedisClient(Client):
    """Redis pub/sub over RESP2."""

    pre_mode = True
    PAT = b"*3\r\n$7\r\nmessage\r\n$" + str(len(CHANNEL)).encode() + b"\r\n" + CHANNEL + b"\r\n"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.plain = self.encode(make_text(self.w.text_size))

    def encode(self, text: bytes) -> bytes:
        return (b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(CHANNEL), CHANNEL, len(text))
                + text + b"\r\n")

    def on_connect(self) -> None:
        ch = self.channel()
        if ch is None:
            self.write(b"*1\r\n$4\r\nPING\r\n")
        else:
            self.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(ch), ch))

    def handshake(self, data: bytes) -> bytes | None:
        ch = self.channel()
        marker = b"+PONG\r\n" if ch is None else ch + b"\r\n:1\r\n"
        j = data.find(marker)
        if j < 0:
            if data.startswith(b"-"):
                self.w.errors[f"{self.role}: {data.splitlines()[0].decode(errors='replace')}"] += 1
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(data.splitlines()[0].decode()))
            return None
        if not self.ready.done():
            self.ready.set_result(None)
        return bytes(data[j + len(marker):])

    def count(self, end: int) -> int:
        buf = self.buf
        if self.role == "sender":  # integer replies, one line each
            n = buf.count(b"\n", 0, end)
            if buf.find(b"-", 0, end) >= 0:
                self.w.errors["sender: redis error reply"] += 1
            if n:
                self.acked(n)
            return 0
        self.msgs += buf.count(self.PAT, 0, end)
        keep = min(end, len(self.PAT) - 1)
        buf[:keep] = buf[end - keep : end]
        return keep


class NatsClient(Client):
    """NATS text protocol; a sender's window is kept with PING/PONG after each batch."""

    pre_mode = True
    PAT = b"MSG " + CHANNEL + b" "

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.plain = self.encode(make_text(self.w.text_size))
        self.pings: collections.deque[int] = collections.deque()

    def encode(self, text: bytes) -> bytes:
        return b"PUB %s %d\r\n%s\r\n" % (CHANNEL, len(text), text)

    def batch(self, k: int) -> bytes:
        return self.plain * k + b"PING\r\n"

    def after_write(self, k: int) -> None:
        self.outstanding += k
        self.pings.append(k)

    def on_connect(self) -> None:
        out = b'CONNECT {"verbose":false,"pedantic":false,"name":"%s"}\r\n' % self.name.encode()
        ch = self.channel()
        if ch is not None:
            out += b"SUB %s 1\r\n" % ch
        self.write(out + b"PING\r\n")

    def handshake(self, data: bytes) -> bytes | None:
        j = data.find(b"PONG\r\n")
        if j < 0:
            k = data.find(b"-ERR")
            if k >= 0:
                line = data[k:].split(b"\r\n")[0].decode(errors="replace")
                self.w.errors[f"{self.role}: {line}"] += 1
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(line))
            return None
        if not self.ready.done():
            self.ready.set_result(None)
        return bytes(data[j + 6:])

    def count(self, end: int) -> int:
        buf = self.buf
        if buf.find(b"PING\r\n", 0, end) >= 0:
            self.write(b"PONG\r\n")
        k = buf.find(b"-ERR", 0, end)
        if k >= 0:
            line = bytes(buf[k:end]).split(b"\r\n")[0].decode(errors="replace")
            self.w.errors[f"{self.role}: {line}"] += 1
        if self.role == "sender":
            pongs = buf.count(b"PONG\r\n", 0, end)
            if pongs:
                n = 0
                for _ in range(min(pongs, len(self.pings))):
                    n += self.pings.popleft()
                if n:
                    self.acked(n)
            keep = min(end, 5)
        else:
            self.msgs += buf.count(self.PAT, 0, end)
            keep = min(end, len(self.PAT) - 1)
        buf[:keep] = buf[end - keep : end]
        return keep

    def acked(self, n: int) -> None:
        self.acks += n
        self.outstanding -= n
        self.w.add_acked(n)
        if self.outstanding <= self.w.window - self.w.refill:
            self.pump()

    def pace(self) -> None:  # latency: plain PUBs, no window
        w = self.w
        if not w.going or self.closed:
            return
        now = w.loop.time()
        k = 0
        while self.pace_next <= now and k < 1000:
            self.write(self.message())
            self.sent += 1
            w.add_sent(1)
            self.pace_next += self.interval
            k += 1
        w.loop.call_at(max(self.pace_next, now + 0.0002), self.pace)


class TextbookClient(Client):
    """The textbook servers: 10-byte ASCII length headers; each delivery is two frames."""

    has_acks = False

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.frames = 0
        self.plain = self.encode(make_text(self.w.text_size))

    def encode(self, text: bytes) -> bytes:
        return f"{len(text):<10}".encode() + text

    def after_write(self, k: int) -> None:
        pass

    def on_connect(self) -> None:
        self.write(self.encode(self.name.encode()))
        self.ready.set_result(None)

    def count(self, end: int) -> int:
        buf = self.buf
        i = self.skip
        if i >= end:
            self.skip = i - end
            return 0
        frames = 0
        while i + 10 <= end:
            i += 10 + int(buf[i : i + 10])
            frames += 1
        self.frames += frames
        self.msgs = self.frames >> 1
        if i < end:
            k = end - i
            buf[:k] = buf[i:end]
            self.skip = 0
            return k
        self.skip = i - end
        return 0


CLIENTS: dict[str, type[Client]] = {
    "asyncchat": ChatClient,
    "asyncchat-nohist": ChatClient,
    "redis": RedisClient,
    "nats": NatsClient,
    "select": TextbookClient,
    "thread": TextbookClient,
}


# ====================================================================== load generator: process


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
    cls = CLIENTS[spec["system"]]
    role = spec["role"]
    names = spec["names"]
    bufsize = max(4096, min(65536, (64 << 20) // max(1, len(names))))
    sem = asyncio.Semaphore(spec["concurrency"])
    timeout = spec["timeout"]
    t0 = time.monotonic()

    async def connect(name: str) -> Client:
        async with sem:
            last: BaseException | None = None
            for attempt in range(4):
                try:
                    _, proto = await asyncio.wait_for(
                        loop.create_connection(lambda: cls(w, name, role, bufsize),
                                               spec["host"], spec["port"]), timeout)
                except (OSError, TimeoutError) as exc:
                    last = exc
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                await asyncio.wait_for(proto.ready, timeout)
                return proto
            assert last is not None
            raise last

    results = await asyncio.gather(*(connect(n) for n in names), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    w.clients = [r for r in results if isinstance(r, Client)]
    connect_s = time.monotonic() - t0
    if role == "member":
        _member_min(w)
    conn.send({"ready": True, "ok": len(w.clients), "failed": len(failures),
               "why": f"{type(failures[0]).__name__}: {failures[0]}" if failures else None,
               "connect_s": connect_s, "loop": type(loop).__module__.split(".")[0]})
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
                now = loop.time()
                for j, c in enumerate(senders):
                    c.interval = 1.0 / rate
                    c.pace_next = now + c.interval * j / len(senders)
                    loop.call_at(c.pace_next, c.pace)
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
    _raise_nofile()
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


# ====================================================================== process control (main)


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft if hard == resource.RLIM_INFINITY else hard


try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _LIBC = None


def _server_preexec() -> None:
    """In the server's child: a high fd limit, and die with the benchmark (PR_SET_PDEATHSIG)."""
    _raise_nofile()
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """utime+stime of a process, all threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


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


_SERVE_FLAGS: set[str] | None = None


def serve_flags() -> set[str]:
    """The options 'asyncchat serve' has (the server grows features; the bench adapts)."""
    global _SERVE_FLAGS
    if _SERVE_FLAGS is None:
        try:
            out = subprocess.run([sys.executable, "-m", "asyncchat", "serve", "--help"],
                                 capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _SERVE_FLAGS = {w.strip("[],") for w in out.split() if w.startswith(("--", "[--"))}
    return _SERVE_FLAGS


class Server:
    """One server process started by the benchmark; stopped by its pid."""

    def __init__(self, system: str, args: argparse.Namespace, *, idle: int = 0,
                 keepalive_off: bool = True) -> None:
        self.system = system
        self.tmpdir: str | None = None
        self.port = free_port()
        self.host = "127.0.0.1"
        p = str(self.port)
        maxconn = max(10_000, idle + 1_000)
        if system.startswith("asyncchat"):
            cmd = [sys.executable, "-m", "asyncchat", "serve", "--host", self.host, "--port", p,
                   "--log-level", "warning", "--loop", args.loop,
                   "--rate", "1000000", "--burst", "1000000", "--max-outbox", "67108864",
                   "--max-connections", str(maxconn)]
            if keepalive_off:
                cmd += ["--ping-interval", "3600", "--ping-timeout", "3600"]
            flags = serve_flags()
            history = "off" if system == "asyncchat-nohist" else args.history
            if "--db" in flags:  # a server with history: never the user's own database
                if history == "off":
                    cmd += ["--no-history"]
                elif history == "memory":
                    cmd += ["--db", ":memory:"]
                else:
                    self.tmpdir = tempfile.mkdtemp(prefix="asyncchat-bench-")
                    cmd += ["--db", os.path.join(self.tmpdir, "history.db")]
            cmd += args.server_arg or []
        elif system == "redis":
            cmd = ["redis-server", "--port", p, "--bind", self.host, "--save", "",
                   "--appendonly", "no", "--maxclients", str(maxconn)]
        elif system == "nats":
            cmd = ["nats-server", "-a", self.host, "-p", p]
        else:
            cmd = [sys.executable, str(BASELINES / f"{system}_server.py"), "--host", self.host,
                   "--port", p]
        self.cmd = cmd
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT, preexec_fn=_server_preexec,
                                         start_new_session=True)
        except BaseException:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{system} exited at start ({self.proc.returncode}): "
                                   f"{self.tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{system} is not listening after 15 s: {self.tail()}") from None
                time.sleep(0.05)
        time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 1) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.log.seek(0)
            lines = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln]
            return " | ".join(lines[-n:]) or "(no output)"
        return "(no output)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


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


def _split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _spec(args: argparse.Namespace, server: Server, system: str, role: str, mode: str,
          names: list[str], idx: int, prog_idx: int = 0, **extra: Any) -> dict[str, Any]:
    spec = {
        "system": system, "role": role, "mode": mode, "names": names, "idx": idx,
        "prog_idx": prog_idx, "host": server.host, "port": server.port,
        "window": args.window, "max_lag": _max_lag(args, system, len(names)),
        "text_size": args.text_size,
        "gen_loop": args.gen_loop, "concurrency": args.concurrency,
        "timeout": args.setup_timeout, "total_senders": args.senders, "rate": args.rate,
        "idle_room": args.idle_room,
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
    per_proc_fds = max(256, _raise_nofile() - 64)
    return max(1, min(n, max(procs, math.ceil(n / per_proc_fds))))


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
        ws.spawn(_spec(args, server, system, role, mode, _names(system, "m", start, c), i, i))
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


def _barrier(ws: Workers, server: Server, timeout: float) -> None:
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


def _snapshot(ws: Workers, server: Server, record: bool) -> dict[str, Any]:
    entries = ws.procs[:]
    for _, conn, _ in entries:
        conn.send(("mark", {"record": record}))
    t = time.monotonic()
    try:
        cpu = proc_cpu(server.pid)
    except OSError:
        cpu = float("nan")
    busy = machine_busy()
    replies = []
    for p, conn, _ in entries:
        if not conn.poll(30):
            raise RuntimeError(f"load generator {p.name}: no answer to mark")
        replies.append(conn.recv())
    return {"t": t, "cpu": cpu, "busy": busy, "w": replies, "roles": [e[2] for e in entries]}


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
                    "lost": b["lost_during"], "live": b["live"], "errors": b["errors"]})
    srv_cpu = m2["cpu"] - m1["cpu"]
    gen_cpu = sum((b["cpu"] - a["cpu"]) for a, b in zip(m1["w"], m2["w"], strict=True))
    busy = m2["busy"] - m1["busy"]
    errors: collections.Counter[str] = collections.Counter()
    for g in gen:
        errors.update(g["errors"])
    return {
        "window_s": dt,
        "server_cpu_s": srv_cpu,
        "server_cpu_pct": 100 * srv_cpu / dt,
        "gen_cpu_pct_total": 100 * gen_cpu / dt,
        "gen_cpu_pct_max": max((g["cpu_pct"] for g in gen), default=0.0),
        "other_cpu_pct": max(0.0, 100 * (busy - srv_cpu - gen_cpu) / dt),
        "machine_cpu_pct": 100 * busy / dt,
        "ncpu": ncpu,
        "gen": gen,
        "lost": sum(g["lost"] for g in gen),
        "errors": dict(errors),
    }


def _limit(system: str, f: dict[str, Any], lag_frac: float) -> str:
    """What limited a run: server, loadgen, cpu (every core busy, shared) or window."""
    srv_cap = 100.0 if system in SINGLE_THREADED else 100.0 * f["ncpu"]
    if f["server_cpu_pct"] >= 0.85 * srv_cap:
        return "server"
    if f["gen_cpu_pct_max"] >= 85:
        return "loadgen"
    if f["machine_cpu_pct"] >= 85 * f["ncpu"]:
        return "cpu"
    if lag_frac >= 0.25:  # the members fell behind without any process being saturated
        return "loadgen"
    return "window"


# ====================================================================== workloads (main)


def run_fanout(args: argparse.Namespace, system: str, n: int) -> dict[str, Any]:
    server = Server(system, args)
    ws: Workers | None = None
    try:
        ws, info = _start_clients(args, server, system, "fanout", n, args.senders)
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
        acked = sum(b["acks"] - a["acks"] for a, b, role in zip(m1["w"], m2["w"], m1["roles"],
                    strict=True) if role == "sender")
        receivers = n + (args.senders - 1 if system in CHATLIKE else 0)
        lag_blocked = sum(g["lag_blocked"] for g in f["gen"] if g["role"] == "sender")
        lag_frac = lag_blocked / max(1, args.senders) / dt
        out = {
            "workload": "fanout", "system": system, "n": n, "senders": args.senders, **info,
            "deliveries": deliveries, "member_deliveries": member_deliv,
            "deliveries_per_s": deliveries / dt,
            "server_us_per_delivery": 1e6 * f["server_cpu_s"] / deliveries if deliveries else None,
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
        out["limit"] = _limit(system, f, lag_frac)
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


# ====================================================================== report


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
                    ": it could not outrun the server; the figure is a lower bound.")
            elif r["limit"] == "cpu":
                notes.append(
                    f"fanout {r['system']} N={r['n']}: every core was busy (machine "
                    f"{r['machine_cpu_pct']:.0f}% of {r['ncpu']}00%: server "
                    f"{r['server_cpu_pct']:.0f}%, load generator {r['gen_cpu_pct_total']:.0f}%, "
                    f"other {r['other_cpu_pct']:.0f}%)"
                    ": the server shared its cores with the load generator, which could not outrun "
                    "it; CPU per delivery is the comparable figure.")
            if r["lost"] or r.get("errors"):
                notes.append(f"fanout {r['system']} N={r['n']}: {r['lost']} connection(s) lost "
                             f"during the window; errors: {r.get('errors') or '-'}")
            if r.get("delivery_ratio") is not None and not 0.9 <= r["delivery_ratio"] <= 1.1:
                notes.append(f"fanout {r['system']} N={r['n']}: deliveries are "
                             f"{r['delivery_ratio']:.2f} of messages sent x receivers")
            if r.get("error"):
                notes.append(f"fanout {r['system']} N={r['n']}: {r['error']}")
        out.append(_table(["system", "N", "deliveries/s", "srv us/deliv", "msgs/s", "srv CPU",
                           "gen CPU (max proc)", "other", "lost", "limit"], rows))
        peers = [s for s in args.systems if s != "asyncchat"]
        mine = {r["n"]: r for r in fan if r["system"] == "asyncchat" and "deliveries_per_s" in r}
        if mine and peers:
            out.append("\nasyncchat / peer, fanout: deliveries/s ratio (>1: asyncchat faster); "
                       "CPU-per-delivery ratio (<1: asyncchat cheaper)")
            rows = []
            for n in args.sizes:
                a = mine.get(n)
                row = [_n(n)]
                for p in peers:
                    b = next((r for r in fan if r["system"] == p and r["n"] == n
                              and "deliveries_per_s" in r), None)
                    if a is None or b is None:
                        row.append("-")
                    else:
                        tput = _ratio(a["deliveries_per_s"], b["deliveries_per_s"])
                        cpu = _ratio(a["server_us_per_delivery"], b["server_us_per_delivery"])
                        row.append(f"{tput} / {cpu}")
                rows.append(row)
            out.append(_table(["N", *[f"vs {p}" for p in peers]], rows))
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
    loops = {r.get("gen_loop") for w in ("fanout", "latency", "idle")
             for r in results.get(w) or [] if r.get("gen_loop")}
    if loops - {"uvloop"}:
        notes.append(f"the load generator ran on {', '.join(sorted(map(str, loops)))} "
                     "(uvloop not importable or --gen-loop asyncio)")
    if not (fan or lat or idle):
        out.append("no point was completed")
    skipped = results.get("skipped") or []
    for s in skipped:
        notes.append(f"{s['system']}: not run ({s['why']})")
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


# ====================================================================== main


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
        prog="bench.py",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) + "\n\nExample (a quick check):\n"
        "  python scripts/bench.py --duration 2 --sizes 10,100 --idle-count 1000\n"
        "Full run: python scripts/bench.py --plot bench.png (about 5 s per point plus set-up).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what to run")
    g.add_argument("--workload", type=_csv(str, WORKLOADS), default=list(WORKLOADS),
                   metavar="LIST", help="comma-separated: fanout,latency,idle (default: all)")
    g.add_argument("--systems", type=_csv(str, SYSTEMS), default=list(DEFAULT_SYSTEMS),
                   metavar="LIST",
                   help="comma-separated: asyncchat,redis,nats,select,thread (default: all; a "
                   "peer whose binary is not installed is skipped and said so), and "
                   "asyncchat-nohist: asyncchat with --no-history in the same run, whose ratio "
                   "column is then history on vs off")
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
    s = p.add_argument_group("servers")
    s.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop of the asyncchat server (default: %(default)s)")
    s.add_argument("--history", choices=("file", "memory", "off"), default="file",
                   help="asyncchat's message history, where the server has one: 'file' is the "
                   "server's default (SQLite, acknowledged and fanned out once committed) in a "
                   "temporary directory removed after each point; 'memory' is --db :memory:; "
                   "'off' is --no-history, like Redis/NATS pub/sub, which keep nothing "
                   "(default: %(default)s). The user's own history file is never used.")
    s.add_argument("--server-arg", action="append", metavar="ARG",
                   help="extra argument for 'asyncchat serve' (repeatable; e.g. "
                   "--server-arg=--max-outbox --server-arg=1048576)")
    lg = p.add_argument_group("load generator")
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


def available(system: str) -> str | None:
    """None when the system can run here, else why not."""
    if system.startswith("asyncchat"):
        return None if importlib.util.find_spec("asyncchat") else \
            f"asyncchat is not importable by {sys.executable}"
    if system == "redis":
        return None if shutil.which("redis-server") else "redis-server is not installed"
    if system == "nats":
        return None if shutil.which("nats-server") else "nats-server is not installed"
    path = BASELINES / f"{system}_server.py"
    return None if path.exists() else f"{path} is missing"


def _version(system: str) -> str:
    try:
        if system.startswith("asyncchat"):
            out = subprocess.run([sys.executable, "-m", "asyncchat", "--version"],
                                 capture_output=True, text=True, timeout=10).stdout
        elif system == "redis":
            out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        elif system == "nats":
            out = subprocess.run(["nats-server", "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        else:
            out = f"textbook {system} server (python {platform.python_version()})"
        return out.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


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
    nofile = _raise_nofile()
    results: dict[str, Any] = {"fanout": [], "latency": [], "idle": [], "skipped": []}
    systems = []
    for s in args.systems:
        why = available(s)
        if why:
            results["skipped"].append({"system": s, "why": why})
            print(f"skipping {s}: {why}", file=sys.stderr)
        else:
            systems.append(s)
    args.systems = systems
    if "idle" in args.workload and nofile < args.idle_count + 200:
        print(f"note: RLIMIT_NOFILE hard limit is {nofile}; idle clients are spread over "
              "processes, but the server needs ~M descriptors", file=sys.stderr)
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv,
        "cpus": os.cpu_count(), "loadavg_before": os.getloadavg(),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "nofile": nofile, "versions": {s: _version(s) for s in systems},
        "config": {k: v for k, v in vars(args).items()},
    }
    results["meta"] = meta

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        for workload in args.workload:
            for system in systems:
                points: list[Any] = args.sizes if workload == "fanout" else [None]
                for n in points:
                    label = f"[{workload}] {system}" + (f" N={n}" if n else "")
                    progress(f"{label} ...")
                    t0 = time.monotonic()
                    try:
                        if workload == "fanout":
                            r = run_fanout(args, system, n)
                        elif workload == "latency":
                            r = run_latency(args, system)
                        else:
                            r = run_idle(args, system)
                    except Exception as exc:  # noqa: BLE001 - a failed point is a result
                        r = {"workload": workload, "system": system, "n": n or (
                            args.latency_members if workload == "latency" else args.idle_count),
                            "error": f"{type(exc).__name__}: {exc}"}
                    results[workload].append(r)
                    progress(f"{label}: {_brief(r)} ({time.monotonic() - t0:.1f} s)")
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


def _brief(r: dict[str, Any]) -> str:
    if "deliveries_per_s" in r:
        return (f"{r['deliveries_per_s']:,.0f} deliveries/s, {_us(r['server_us_per_delivery'])} us"
                f"/delivery, server {r['server_cpu_pct']:.0f}%, gen {r['gen_cpu_pct_total']:.0f}%,"
                f" limit {r['limit']}" + (f", ERROR {r['error']}" if r.get("error") else ""))
    if "p50_us" in r:
        return f"p50 {_us(r['p50_us'])} us, p99 {_us(r['p99_us'])} us, {r['samples']:,} samples"
    if "rss_per_conn_kib" in r:
        return f"{r['rss_per_conn_kib']:.2f} KiB/conn"
    return f"FAILED: {r.get('error')}"


if __name__ == "__main__":
    sys.exit(main())
