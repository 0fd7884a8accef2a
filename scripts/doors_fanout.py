#!/usr/bin/env python3
"""Fan-out through a door: one native sender, N receivers on one listener kind, M messages of
100 characters to lobby; the seconds until every receiver has every message.

    python scripts/doors_fanout.py {tcp,line,classic} [N] [M]

The server and the receivers share this process and its loop (the receivers' reading is in the
figure too), on 127.0.0.1, history off, flood control off. It measures what a door costs over
the native frames: the hub encodes each message once; a door renders it for each member.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time
from collections.abc import Awaitable, Callable

import orjson

from asyncchat import ChatServer
from asyncchat.config import HistoryConfig, Listener, ServerConfig
from asyncchat.limits import Limits

Reader = Callable[[], Awaitable[None]]

#: Every connection's writer, kept: a StreamWriter that is garbage-collected closes its socket.
_WRITERS: list[asyncio.StreamWriter] = []


def _frame(obj: dict[str, object]) -> bytes:
    payload = orjson.dumps(obj)
    return struct.pack(">I", len(payload)) + payload


async def _receiver(server: ChatServer, door: str, name: str, m: int) -> Reader:
    """Connect ``name`` through ``door``; returns the coroutine function that reads ``m``
    messages of the sender."""
    r, w = await asyncio.open_connection(*server.address_of(door))
    _WRITERS.append(w)
    if door == "tcp":
        w.write(_frame({"type": "hello", "version": 1, "name": name}))

        async def read() -> None:
            got = 0
            while got < m:
                (n,) = struct.unpack(">I", await r.readexactly(4))
                if b'"type":"message"' in await r.readexactly(n):
                    got += 1

    elif door == "line":
        await r.readline()
        w.write(f"{name}\n".encode())

        async def read() -> None:
            got = 0
            while got < m:
                if b"<sender>" in await r.readline():
                    got += 1

    else:
        w.write(f"{len(name):<10}{name}".encode())

        async def read() -> None:
            got = 0
            while got < m:
                sender = await r.readexactly(int(await r.readexactly(10)))
                await r.readexactly(int(await r.readexactly(10)))
                got += sender == b"sender"

    return read


async def run(door: str, n: int, m: int) -> float:
    """Seconds for ``m`` messages to reach ``n`` receivers on ``door``."""
    limits = Limits(rate=1e6, burst=1_000_000, max_outbox=64 << 20, quiet_room_size=1 << 20)
    config = ServerConfig(
        listeners=(
            Listener(port=0),
            Listener(kind="line", port=0),
            Listener(kind="classic", port=0),
        ),
        history=HistoryConfig(enabled=False),
        limits=limits,
    )
    async with ChatServer(config=config) as server:
        readers = [await _receiver(server, door, f"r{i}", m) for i in range(n)]
        _, w = await asyncio.open_connection(*server.address_of("tcp"))
        w.write(_frame({"type": "hello", "version": 1, "name": "sender"}))
        while len(server.members) < n + 1:  # noqa: ASYNC110 - polling the server's state
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the joined notices are out of the way
        tasks = [asyncio.create_task(read()) for read in readers]
        say = _frame({"type": "say", "room": "lobby", "text": "x" * 100})
        start = time.perf_counter()
        for k in range(m):
            w.write(say)
            if k % 100 == 99:
                await w.drain()
        await asyncio.gather(*tasks)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("door", choices=("tcp", "line", "classic"))
    parser.add_argument("n", type=int, nargs="?", default=100, help="receivers (default 100)")
    parser.add_argument("m", type=int, nargs="?", default=2000, help="messages (default 2000)")
    args = parser.parse_args()
    seconds = asyncio.run(run(args.door, args.n, args.m))
    deliveries = args.n * args.m
    print(
        f"{args.door}: {args.n} receivers x {args.m} messages: {seconds:.2f} s, "
        f"{deliveries / seconds:,.0f} deliveries/s"
    )


if __name__ == "__main__":
    main()
