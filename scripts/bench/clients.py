"""One load-generator connection: the counting hot path, the sender's window and pacing, and
the latency stamps. Each system's wire protocol is a subclass (protocols.py)."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.loadgen import Worker

ROOM = "lobby"
CHANNEL = b"bench"
STAMP = b"@T"  # + 19 decimal digits of time.monotonic_ns() at the sender
STAMP_LEN = 21
U32 = struct.Struct(">I")

LOREM = (b"Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         b"incididunt ut labore et dolore magna aliqua Ut enim ad minim veniam quis nostrud ")


def make_text(size: int, stamp: int | None = None) -> bytes:
    """ASCII text of exactly ``size`` bytes (no JSON escaping needed), optionally stamped."""
    head = b"" if stamp is None else STAMP + b"%019d" % stamp + b" "
    body = (LOREM * (size // len(LOREM) + 1))[: max(0, size - len(head))]
    return head + body


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
            # Stamped with the time it was due, not the time it went: a sender held up (by its
            # own loop or a full window) counts the delay too (no coordinated omission).
            stamp = int(self.pace_next * 1e9) if self.pace_next else time.monotonic_ns()
            return self.encode(make_text(self.w.text_size, stamp))
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
        now = time.monotonic()  # the schedule's clock is the stamps' (loop.time() is in ms)
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
        w.loop.call_later(max(self.pace_next - now, 0.0002), self.pace)

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
