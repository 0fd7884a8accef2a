"""Fuzz a live server with hypothesis-generated frame sequences (valid, truncated, garbage,
oversize): it never crashes, never logs a traceback, and always serves a fresh client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncchat import ChatServer

from .conftest import WAIT


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@contextlib.contextmanager
def serving(**options: Any) -> Iterator[tuple[tuple[str, int], _Tracebacks, list[ChatServer]]]:
    """A server with ``options`` on its own loop in a thread (the examples use blocking
    sockets, as a foreign client would), the tracebacks it logs, and the server (in a list)."""
    handler = _Tracebacks()
    logger = logging.getLogger("asyncchat")
    logger.addHandler(handler)
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    address: list[tuple[str, int]] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    servers: list[ChatServer] = []

    async def serve() -> None:
        async with ChatServer("127.0.0.1", 0, rate=1e6, burst=1_000_000, **options) as server:
            servers.append(server)
            address.append(server.address)
            loop_box.append(asyncio.get_running_loop())
            stop.append(asyncio.Event())
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(WAIT)
    try:
        yield address[0], handler, servers
    finally:
        loop_box[0].call_soon_threadsafe(stop[0].set)
        thread.join(WAIT)
        logger.removeHandler(handler)
        assert not thread.is_alive()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[tuple[str, int], _Tracebacks]]:
    """One server for the whole module."""
    with serving() as (address, tracebacks, _):
        yield address, tracebacks


def _frame(obj: object) -> bytes:
    payload = json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)
_valid = st.one_of(
    st.builds(
        lambda n: {"type": "hello", "name": n, "version": 1},
        st.sampled_from(["fz", "fz2", "FZ", "#bad", "x" * 40]),
    ),
    st.builds(
        lambda r, t: {"type": "say", "room": r, "text": t},
        st.sampled_from(["lobby", "nowhere"]),
        st.text(min_size=1, max_size=30),
    ),
    st.builds(lambda r: {"type": "join", "room": r}, st.sampled_from(["lobby", "fuzz", ""])),
    st.builds(lambda r: {"type": "leave", "room": r}, st.sampled_from(["lobby", "fuzz"])),
    st.builds(lambda n: {"type": "nick", "name": n}, st.text(max_size=8)),
    st.just({"type": "rooms"}),
    st.just({"type": "who", "room": "lobby"}),
    st.just({"type": "ping", "data": 1}),
    st.just({"type": "quit"}),
    st.builds(
        lambda t, d: {"type": t, **d},
        st.sampled_from(["say", "dm", "hello", "history", "zap"]),
        st.dictionaries(
            st.sampled_from(["room", "text", "to", "name", "id", "version"]), _value, max_size=4
        ),
    ),
)
_chunk = st.one_of(
    _valid.map(_frame),
    st.binary(min_size=1, max_size=40).map(lambda b: struct.pack(">I", len(b)) + b),  # garbage
    st.binary(min_size=1, max_size=12),  # garbage across frame boundaries
    st.integers(65_537, 2**32 - 1).map(lambda n: struct.pack(">I", n)),  # oversize header
    _valid.map(_frame).flatmap(lambda f: st.integers(1, len(f) - 1).map(lambda k: f[:k])),
)


def _exchange(address: tuple[str, int], data: bytes) -> None:
    with socket.create_connection(address, timeout=WAIT) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except (ConnectionError, TimeoutError):
            pass


def _fresh_client_chats(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=WAIT) as s:
        s.sendall(
            _frame({"type": "hello", "name": "probe", "version": 1})
            + _frame({"type": "ping", "data": "alive"})
        )
        buf = b""
        while b'"pong"' not in buf:
            chunk = s.recv(65536)
            assert chunk, "the server closed on a well-behaved client"
            buf += chunk
        assert b'"welcome"' in buf


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(_chunk, min_size=1, max_size=12))
def test_fuzzed_frame_sequences_never_hurt_the_server(
    live, greet: bool, chunks: list[bytes]
) -> None:  # type: ignore[no-untyped-def]
    """Whatever bytes a client sends, the server answers or closes it, and goes on serving."""
    address, tracebacks = live
    # Half the sequences start with a good hello, so that what follows reaches the session.
    hello = _frame({"type": "hello", "name": "fz", "version": 1}) if greet else b""
    _exchange(address, hello + b"".join(chunks))
    _fresh_client_chats(address)
    assert not tracebacks.records, tracebacks.records[0].getMessage()
