"""Chaos: hundreds of clients connecting, chatting and vanishing abruptly while steady clients
chat. The steady ones receive every message exactly once in seq order; nothing leaks."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct

import pytest

from asyncchat import ChatServer

from .conftest import WAIT, RawClient

CHAOS_CLIENTS = 300
CONCURRENCY = 40
STEADY = 4
STEADY_MESSAGES = 60


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _raw(server: ChatServer) -> RawClient:
    reader, writer = await asyncio.open_connection(*server.address)
    return RawClient(reader, writer)


def _reset(c: RawClient) -> None:
    sock = c.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.writer.transport.abort()


async def _chaos_client(server: ChatServer, i: int, rng: random.Random) -> None:
    c = await _raw(server)
    ending = rng.choice(["reset", "eof-header", "eof-payload", "quit", "before-hello", "close"])
    try:
        if ending == "before-hello":
            c.send_bytes(b"\x00\x00")
            _reset(c)
            return
        c.send(
            {
                "type": "hello",
                "name": f"chaos{i}",
                "version": 1,
                "rooms": rng.choice([["lobby"], ["lobby", "side"], ["side"]]),
            }
        )
        for n in range(rng.randrange(0, 5)):
            c.send({"type": "say", "room": "lobby", "text": f"chaos {i}.{n}"})
            if rng.random() < 0.5:
                await asyncio.sleep(0)
        await asyncio.sleep(rng.random() * 0.05)
        if ending == "reset":
            _reset(c)
        elif ending == "eof-header":
            c.send_bytes(b"\x00\x00\x01")
            c.writer.close()
        elif ending == "eof-payload":
            c.send_bytes(b'\x00\x00\x00\x50{"type":"say","room":"lobby","te')
            c.writer.close()
        elif ending == "quit":
            c.send({"type": "quit"})
            await c.expect_closed()
        else:
            c.writer.close()
    except (ConnectionError, OSError):
        pass  # the server may well have closed first
    finally:
        if not c.writer.transport.is_closing():
            c.writer.transport.abort()


def test_chaos_on_uvloop() -> None:
    """The same chaos on uvloop, the CLI's default loop (it raises where asyncio ignores)."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_chaos(lambda **kw: ChatServer("127.0.0.1", 0, **kw)))


async def test_chaos_while_steady_clients_chat(make_server) -> None:  # type: ignore[no-untyped-def]
    """Steady clients see contiguous seq, exactly once, while 300 others come and crash; then
    the server holds no member, connection, task or descriptor beyond the steady ones."""
    await _chaos(make_server)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _chaos(make_server) -> None:  # type: ignore[no-untyped-def]
    # Warm the loop up first: it opens descriptors of its own on first use.
    async with make_server() as warm:
        w = await _raw(warm)
        await w.close()
    errors = _Errors()
    logging.getLogger("asyncchat").addHandler(errors)
    try:
        await _chaos_run(make_server)
    finally:
        logging.getLogger("asyncchat").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


async def _chaos_run(make_server) -> None:  # type: ignore[no-untyped-def]
    fds_before = _fds()
    tasks_before = asyncio.all_tasks()
    rng = random.Random(1234)
    async with make_server(rate=1e6, burst=1_000_000) as server:
        steady = []
        for k in range(STEADY):
            c = await _raw(server)
            await c.hello(f"steady{k}")
            steady.append(c)
        seen: list[list[int]] = [[] for _ in steady]
        pongs = [asyncio.Event() for _ in steady]

        async def read(k: int) -> None:
            c = steady[k]
            while True:
                f = await c.recv(timeout=10 * WAIT)
                if f["type"] in ("message", "ack") and f.get("room") == "lobby":
                    seen[k].append(f["seq"])
                elif f["type"] == "pong":
                    pongs[k].set()
                    return

        readers = [asyncio.create_task(read(k)) for k in range(STEADY)]

        async def talk(k: int) -> None:
            for n in range(STEADY_MESSAGES):
                steady[k].send({"type": "say", "room": "lobby", "text": f"steady {k}.{n}"})
                await asyncio.sleep(0.01)

        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with sem:
                await _chaos_client(server, i, rng)

        async with asyncio.timeout(20 * WAIT):
            await asyncio.gather(
                *(talk(k) for k in range(STEADY)), *(one(i) for i in range(CHAOS_CLIENTS))
            )
            # Let the server notice every vanished client, then sync each steady reader.
            # (connections too: a chaos client still in its handshake, its hello being
            # admitted, could post after the steady readers' pongs.)
            steady_names = {f"steady{k}" for k in range(STEADY)}
            while set(server.members) != steady_names or server.connections != STEADY:
                await asyncio.sleep(0.02)
            for c in steady:
                c.send({"type": "ping"})
            await asyncio.gather(*readers)

        last = server.hub.rooms["lobby"].seq
        assert last > STEADY * STEADY_MESSAGES  # chaos clients posted too
        for k in range(STEADY):
            assert seen[k] == list(range(1, last + 1)), f"steady{k} saw a gap or a duplicate"
        assert server.connections == STEADY
        assert set(server.hub.rooms) == {"lobby"}
        for c in steady:
            await c.close()
        async with asyncio.timeout(WAIT):
            while server.connections:
                await asyncio.sleep(0.02)
        assert not server.hub.members
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
    assert leftover <= {asyncio.current_task()}
    assert _fds() <= fds_before
