"""What an idle connection keeps alive on the server, counted in objects, not bytes: one task
whose coroutine chain is the core's ``run`` over ``readexactly``, slotted per-connection objects,
no per-connection deque or bound methods (docs/performance.md, memory per connection)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import struct
from collections.abc import Callable
from typing import Any

import pytest

from asyncchat import ChatServer
from asyncchat.transports.connection import Connection

from .conftest import WAIT

IDLE = 20


def _loops() -> list[Any]:
    loops: list[Any] = [pytest.param(None, id="asyncio")]
    with contextlib.suppress(ImportError):
        import uvloop

        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return loops


def _chain(task: asyncio.Task[Any]) -> list[str]:
    """The names of the coroutines suspended in ``task``, outermost first."""
    names = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_qualname)
        coro = coro.cr_await
    return names


async def _idle_clients(port: int, n: int, rooms: list[str] | None) -> list[asyncio.StreamWriter]:
    writers = []
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        hello: dict[str, Any] = {"type": "hello", "name": f"idle{i}", "version": 1}
        if rooms is not None:
            hello["rooms"] = rooms
        payload = json.dumps(hello).encode()
        writer.write(struct.pack(">I", len(payload)) + payload)
        async with asyncio.timeout(WAIT):
            (size,) = struct.unpack(">I", await reader.readexactly(4))
            assert json.loads(await reader.readexactly(size))["type"] == "welcome"
        writers.append(writer)
    return writers


@pytest.mark.parametrize("factory", _loops())
def test_idle_connection_keeps_few_objects(factory: Callable[[], Any] | None) -> None:
    """An idle native connection is one task running ``Connection.run`` directly, suspended in
    ``readexactly`` (no listener or reader coroutine between), with slotted objects, a list for
    the stream protocol's drain waiters, and the loop's clock shared by every connection."""

    async def main() -> None:
        async with ChatServer("127.0.0.1", 0) as server:
            _, port = server.address
            writers = await _idle_clients(port, IDLE, None)
            await asyncio.sleep(0.05)
            conns = list(server.admission.connections.items())
            assert len(conns) == IDLE
            for conn, task in conns:
                assert _chain(task) == [
                    "Connection.run",
                    "StreamReader.readexactly",
                    "StreamReader._wait_for_data",
                ]
                assert not hasattr(conn, "__dict__")
                assert not hasattr(conn.session, "__dict__")
                m = conn.session.member
                assert m is not None and not hasattr(m, "__dict__")
                protocol = conn.transport.get_protocol()
                assert not isinstance(getattr(protocol, "_drain_waiters", None), collections.deque)
            first: Connection = conns[0][0]
            assert all(c._time is first._time for c, _ in conns)
            for w in writers:
                w.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


async def test_connections_are_counted_at_accept_and_released() -> None:
    """Admission counts a native connection from its accept, before its task first runs, and
    forgets it (and its address) when it ends."""
    async with ChatServer("127.0.0.1", 0) as server:
        _, port = server.address
        writers = await _idle_clients(port, 3, [])
        admission = server.admission
        assert len(admission.connections) == 3
        for w in writers:
            w.close()
        async with asyncio.timeout(WAIT):
            while admission.connections:
                await asyncio.sleep(0.01)
        assert not admission._per_ip
