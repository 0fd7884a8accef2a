"""Shared test helpers: servers on 127.0.0.1 port 0, and a raw client that speaks bytes.

``UNIT`` (seconds, scaled by ASYNCCHAT_TEST_UNIT) is only ever used to wait for something that
should happen; no test asserts how fast anything is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from asyncchat import ChatServer

UNIT = float(os.environ.get("ASYNCCHAT_TEST_UNIT", "1.0"))
#: How long to wait for something that should arrive (generous: CI machines are shared).
WAIT = 5.0 * UNIT


class RawClient:
    """A client that speaks the wire format by hand, for exercising the server with anything."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    def send_payload(self, payload: bytes) -> None:
        self.writer.write(struct.pack(">I", len(payload)) + payload)

    def send(self, obj: dict[str, Any]) -> None:
        self.send_payload(json.dumps(obj).encode())

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            (n,) = struct.unpack(">I", await self.reader.readexactly(4))
            return json.loads(await self.reader.readexactly(n))  # type: ignore[no-any-return]

    async def recv_type(self, type_: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame of ``type_``, skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["type"] == type_:
                    return frame

    async def recv_match(self, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        """The next frame whose members include ``fields``, skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if all(frame.get(k) == v for k, v in fields.items()):
                    return frame

    async def expect_closed(self, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Read until EOF; returns the frames that came before it."""
        frames = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    frames.append(await self.recv(timeout))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return frames

    async def hello(self, name: str, **extra: Any) -> dict[str, Any]:
        """Say hello and return the welcome (skipping nothing: it must come first)."""
        self.send({"type": "hello", "name": name, "version": 1, **extra})
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


Opener = Callable[..., Awaitable[RawClient]]


_DATA_HOME = tempfile.TemporaryDirectory(prefix="asyncchat-test-data-")


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is imported: servers started by the tests (the CLI's default
    history file included) write under a temporary XDG_DATA_HOME, never the user's own; the
    terminal client keeps its input history under a temporary XDG_STATE_HOME."""
    os.environ["XDG_DATA_HOME"] = _DATA_HOME.name
    os.environ["XDG_STATE_HOME"] = os.path.join(_DATA_HOME.name, "state")


def pytest_unconfigure(config: pytest.Config) -> None:
    _DATA_HOME.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each test's outcome on it (``item.rep_call``), for fixtures that save evidence of
    a failure (the browser tests' screenshots)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


@pytest.fixture
async def server() -> AsyncIterator[ChatServer]:
    """A server with default limits on 127.0.0.1, port 0."""
    async with ChatServer("127.0.0.1", 0) as s:
        yield s


@pytest.fixture
def make_server() -> Callable[..., Any]:
    """Start a server with the given limits: ``async with make_server(rate=100) as s``."""
    return lambda **kw: ChatServer("127.0.0.1", 0, **kw)


@pytest.fixture
async def raw(server: ChatServer) -> AsyncIterator[Opener]:
    """Open raw connections to ``server``; ``await raw()`` or ``await raw("alice")`` (after
    hello and the first joined)."""
    opened: list[RawClient] = []

    async def open_(name: str | None = None, **hello: Any) -> RawClient:
        host, port = server.address
        reader, writer = await asyncio.open_connection(host, port)
        c = RawClient(reader, writer)
        opened.append(c)
        if name is not None:
            await c.hello(name, **hello)
            for _ in hello.get("rooms", ["lobby"]):
                await c.recv_type("joined")
        return c

    yield open_
    for c in opened:
        await c.close()
