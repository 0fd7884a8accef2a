"""Each system's wire protocol on the load generator's side: the handshake, what a sender
writes, and how deliveries are counted without decoding anything (asyncchat: 4-byte length
prefixes and one byte of the payload; textbook servers: 10-byte ASCII headers, two frames per
delivery; Redis and NATS: bytes.count of a fixed prefix across read boundaries)."""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import struct
import time
from typing import Any

from bench.clients import CHANNEL, ROOM, U32, Client, make_text

U16 = struct.Struct(">H")
U64 = struct.Struct(">Q")


class ChatClient(Client):
    """asyncchat: frames by length prefix; payload byte 9 (after '{"type":"') names the type."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.plain = self.encode(make_text(self.w.text_size))

    @staticmethod
    def frame(payload: bytes) -> bytes:
        """One client message on this wire."""
        return U32.pack(len(payload)) + payload

    def encode(self, text: bytes) -> bytes:
        return self.frame(b'{"type":"say","room":"' + ROOM.encode() + b'","text":"' + text + b'"}')

    def on_connect(self) -> None:
        hello: dict[str, Any] = {"type": "hello", "name": self.name, "version": 1}
        if self.role == "idle":
            ch = self.channel()
            hello["rooms"] = [] if ch is None else [ROOM if ch == CHANNEL else ch.decode()]
        self.write(self.frame(json.dumps(hello).encode()))

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
                self.control(t, i + 4, unpack(buf, i)[0], end)
            i += 4 + unpack(buf, i)[0]
        return self.counted(i, end, msgs, acks)

    def counted(self, i: int, end: int, msgs: int, acks: int) -> int:
        """After a count stopped at ``i``: add the tallies, keep a partial header at the front
        of the buffer (returns its length) or note the payload bytes still to skip."""
        self.msgs += msgs
        if acks:
            self.acked(acks)
        if i < end:
            k = end - i
            self.buf[:k] = self.buf[i:end]
            self.skip = 0
            return k
        self.skip = i - end
        return 0

    def control(self, t: int, start: int, n: int, end: int) -> None:
        """A frame that is neither a message nor an ack: its payload is ``n`` bytes at
        ``start`` (perhaps not all in the buffer, which ends at ``end``)."""
        if not self.ready.done() and self.buf[start : start + 9] != b'{"type":"':
            # The cheap classification reads the type from a fixed offset: it needs "type"
            # first in every object (as the server encodes them).
            self.ready.set_exception(ConnectionError(
                "server frames do not start with {\"type\": the bench must be updated"))
            return
        if t == 119:  # welcome
            if not self.ready.done():
                self.ready.set_result(None)
        elif t == 112:  # ping: answer, or keepalive drops us
            self.write(self.frame(b'{"type":"pong"}'))
        elif t in (101, 98):  # error, bye
            what = "bye" if t == 98 else "error"
            if start + n <= end:
                with contextlib.suppress(ValueError):
                    obj = json.loads(bytes(self.buf[start : start + n]))
                    what = f"{obj.get('type')} {obj.get('code') or obj.get('reason')}"
            self.w.errors[f"{self.role}: {what}"] += 1
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(f"refused: {what}"))


class WsChatClient(ChatClient):
    """asyncchat over its web listener's WebSocket (/ws): the HTTP upgrade, then one JSON
    payload per text frame. Client frames are masked with a zero key (the payload unchanged);
    server frames are counted by their 2, 4 or 10-byte header and byte 9 of the payload."""

    pre_mode = True
    web = True  # connects to the web listener's port

    @staticmethod
    def frame(payload: bytes) -> bytes:
        return ws_frame(payload)

    def on_connect(self) -> None:
        key = base64.b64encode(os.urandom(16))
        self.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                   b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def handshake(self, data: bytes) -> bytes | None:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return None
        if not head.startswith(b"HTTP/1.1 101"):
            self.ready.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
            return b""
        hello = json.dumps({"type": "hello", "name": self.name, "version": 1}).encode()
        self.write(self.frame(hello))
        return rest

    def count(self, end: int) -> int:
        buf = self.buf
        i = self.skip
        if i >= end:
            self.skip = i - end
            return 0
        msgs = 0
        acks = 0
        while i + 2 <= end:
            n = buf[i + 1] & 0x7F
            if n < 126:
                h = 2
            elif n == 126:
                h = 4
                if i + 4 > end:
                    break
                n = U16.unpack_from(buf, i + 2)[0]
            else:
                h = 10
                if i + 10 > end:
                    break
                n = U64.unpack_from(buf, i + 2)[0]
            if i + h + 10 > end:
                break
            t = buf[i + h + 9]
            if t == 109:  # 'm'essage
                msgs += 1
            elif t == 97:  # 'a'ck
                acks += 1
            elif buf[i] == 0x81:  # a text frame (not a close)
                self.control(t, i + h, n, end)
            i += h + n
        return self.counted(i, end, msgs, acks)


def ws_frame(payload: bytes) -> bytes:
    """A final text frame from a client: masked, with a zero key (so the payload is as is)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0x80 | 126)) + U16.pack(n)
    else:
        head = bytes((0x81, 0x80 | 127)) + U64.pack(n)
    return head + b"\0\0\0\0" + payload


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
        now = time.monotonic()  # the schedule's clock is the stamps' (loop.time() is in ms)
        k = 0
        while self.pace_next <= now and k < 1000:
            self.write(self.message())
            self.sent += 1
            w.add_sent(1)
            self.pace_next += self.interval
            k += 1
        w.loop.call_later(max(self.pace_next - now, 0.0002), self.pace)


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
