"""The classic door: the 10-byte-header protocol of the socket-chat course exercise, over real
sockets on 127.0.0.1.

:class:`ClassicClient` is written from the issue's description of the protocol alone (blocking
sockets, nothing of asyncchat), as a student's client would be; it runs in a thread while the
server runs on the test's loop. The textbook servers' clients' exact byte sequences
(``scripts/baselines``, ``scripts/bench/protocols.py``) are sent raw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from asyncchat import ChatServer
from asyncchat.config import Listener

from .conftest import WAIT, RawClient
from .test_doors_line import NO_FLOOD, door_config, open_line, open_tcp

HEADER_LENGTH = 10


class ClassicClient:
    """A client of the exercise: every message is a 10-byte header (the payload's length in
    ASCII decimal, left-aligned, space-padded) and the payload in UTF-8; the first message is
    the username; each message received is a pair, the sender's name then the text."""

    def __init__(self, host: str, port: int, username: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.send(username)

    def send(self, text: str) -> None:
        data = text.encode("utf-8")
        self.sock.sendall(f"{len(data):<{HEADER_LENGTH}}".encode() + data)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("connection closed by the server")
            data += chunk
        return data

    def receive_message(self) -> str:
        length = int(self._exactly(HEADER_LENGTH).decode("utf-8").strip())
        return self._exactly(length).decode("utf-8")

    def receive(self) -> tuple[str, str]:
        """The next (username, text) pair."""
        return self.receive_message(), self.receive_message()

    def receive_until_closed(self) -> list[tuple[str, str]]:
        pairs = []
        try:
            while True:
                pairs.append(self.receive())
        except (EOFError, ConnectionError):
            return pairs

    def close(self) -> None:
        self.sock.close()


def frame(payload: bytes) -> bytes:
    return f"{len(payload):<10}".encode() + payload


@pytest.fixture
async def doors() -> AsyncIterator[ChatServer]:
    async with ChatServer(config=door_config()) as server:
        yield server


async def classic(server: ChatServer, username: str) -> ClassicClient:
    """A classic client, past its welcome notice."""
    host, port = server.address_of("classic")
    c = await asyncio.to_thread(ClassicClient, host, port, username)
    sender, text = await asyncio.to_thread(c.receive)
    assert sender == "*server" and text.startswith("-- connected to asyncchat/0.1.0 as "), text
    return c


async def receive(c: ClassicClient) -> tuple[str, str]:
    return await asyncio.to_thread(c.receive)


async def test_classic_client_and_tcp_client_exchange_messages(doors: ChatServer) -> None:
    """A classic client's texts reach a native client in lobby under its username; the native
    client's come back as (name, text) pairs; its own messages never come back to it."""
    bob = await open_tcp(doors, "bob")
    carol = await classic(doors, "carol")
    await bob.recv_match(type="joined", name="carol")
    await asyncio.to_thread(carol.send, "hi from the exercise")
    msg = await bob.recv_match(type="message")
    assert (msg["room"], msg["from"], msg["text"]) == ("lobby", "carol", "hi from the exercise")
    bob.send({"type": "say", "room": "lobby", "text": "hi carol"})
    assert await receive(carol) == ("bob", "hi carol")
    await asyncio.to_thread(carol.send, "second")
    await bob.recv_match(type="message", text="second")
    bob.send({"type": "say", "room": "lobby", "text": "sentinel"})
    assert await receive(carol) == ("bob", "sentinel")  # nothing of carol's own before it
    bob.send({"type": "dm", "to": "carol", "text": "psst"})
    assert await receive(carol) == ("bob (dm)", "psst")
    bob.send({"type": "say", "room": "lobby", "text": "waves", "action": True})
    assert await receive(carol) == ("bob", "* bob waves")
    carol.close()
    assert (await bob.recv_match(type="left", name="carol"))["reason"] == "disconnect"


async def test_textbook_clients_byte_sequences_are_accepted(doors: ChatServer) -> None:
    """The bytes the textbook servers' clients send are accepted: the benchmark's client writes
    its username frame and text frames back to back in one write; the tutorial client sends
    the username frame, then each text frame with its own sendall."""
    bob = await open_tcp(doors, "bob")
    host, port = doors.address_of("classic")
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(frame(b"bench-1") + frame(b"x" * 100) + frame("ünï 🎉".encode()))
    for text in ("x" * 100, "ünï 🎉"):
        msg = await bob.recv_match(type="message")
        assert (msg["from"], msg["text"]) == ("bench-1", text)

    with socket.create_connection((host, port), timeout=WAIT) as sock:
        await asyncio.to_thread(sock.sendall, f"{len(b'tutor'):<10}".encode() + b"tutor")
        await bob.recv_match(type="joined", name="tutor")
        for text in (b"one", b"two"):
            await asyncio.to_thread(sock.sendall, f"{len(text):<10}".encode() + text)
            msg = await bob.recv_match(type="message")
            assert (msg["from"], msg["text"]) == ("tutor", text.decode())
    writer.close()


async def test_a_bad_header_closes_that_client_only(
    doors: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A header that is not a decimal number closes that classic client with a notice and a
    log line, no traceback; another classic client goes on talking."""
    caplog.set_level(logging.INFO, logger="asyncchat")
    bob = await open_tcp(doors, "bob")
    carol = await classic(doors, "carol")
    dave = await classic(doors, "dave")
    assert await receive(carol) == ("*server", "-> dave joined #lobby")
    await asyncio.to_thread(dave.sock.sendall, b"hello, wor")
    pairs = await asyncio.to_thread(dave.receive_until_closed)
    assert pairs[0][0] == "*server" and pairs[0][1].startswith("!! bad_frame: ")
    assert pairs[-1] == ("*server", "!! the server closed the connection: bad_frame")
    assert await receive(carol) == ("*server", "<- dave left #lobby (disconnect)")
    await asyncio.to_thread(carol.send, "still here")
    assert (await bob.recv_match(type="message"))["text"] == "still here"
    assert any("dave disconnected (bad_frame" in r.getMessage() for r in caplog.records)
    assert "Traceback" not in caplog.text


async def test_lengths_over_max_frame_close_and_bad_utf8_is_refused() -> None:
    """A header announcing more than max_frame closes the connection before the payload is
    read; a text that is not UTF-8 is refused with a notice and the connection goes on."""
    async with ChatServer(config=door_config(max_frame=4096)) as server:
        bob = await open_tcp(server, "bob")
        carol = await classic(server, "carol")
        await asyncio.to_thread(carol.sock.sendall, frame(b"caf\xe9"))
        assert await receive(carol) == (
            "*server",
            "!! bad_frame: your message is not UTF-8 text: not posted",
        )
        await asyncio.to_thread(carol.send, "fine")
        assert (await bob.recv_match(type="message"))["text"] == "fine"
        await asyncio.to_thread(carol.sock.sendall, b"99999     ")
        pairs = await asyncio.to_thread(carol.receive_until_closed)
        assert pairs[0] == ("*server", "!! frame_too_large: message of 99999 bytes exceeds "
                            "max_frame=4096")  # fmt: skip
        assert (await bob.recv_match(type="left", name="carol"))["reason"] == "disconnect"


async def test_a_taken_username_gets_a_suffix(doors: ChatServer) -> None:
    """A username that is taken becomes NAME_2, NAME_3...; the welcome notice says which, and
    the others see that name."""
    bob = await open_tcp(doors, "bob")
    host, port = doors.address_of("classic")
    second = await asyncio.to_thread(ClassicClient, host, port, "Bob")
    assert await receive(second) == ("*server", "-- connected to asyncchat/0.1.0 as Bob_2")
    third = await asyncio.to_thread(ClassicClient, host, port, "bob")
    assert await receive(third) == ("*server", "-- connected to asyncchat/0.1.0 as bob_3")
    await asyncio.to_thread(third.send, "which bob?")
    assert (await bob.recv_match(type="message"))["from"] == "bob_3"
    assert doors.members == ["bob", "Bob_2", "bob_3"]


async def test_an_unusable_username_is_refused_with_a_notice(doors: ChatServer) -> None:
    """A username that is no valid name (a space in it) is answered with a notice saying
    why, then the connection is closed."""
    host, port = doors.address_of("classic")
    c = await asyncio.to_thread(ClassicClient, host, port, "two words")
    pairs = await asyncio.to_thread(c.receive_until_closed)
    assert pairs[0][0] == "*server"
    assert pairs[0][1].startswith("!! name_invalid: the username 'two words' cannot be used")
    assert doors.members == []


async def test_classic_line_and_tcp_members_share_lobby(doors: ChatServer) -> None:
    """Members of every door are ordinary members of lobby: arrivals and departures reach the
    classic client as notices from *server, and line and classic clients talk."""
    carol = await classic(doors, "carol")
    alice = await open_line(doors, "alice")
    assert await receive(carol) == ("*server", "-> alice joined #lobby")
    alice.send("hi carol\n")
    assert await receive(carol) == ("alice", "hi carol")
    await asyncio.to_thread(carol.send, "hi alice")
    assert (await alice.until("<carol>")).endswith("#lobby <carol> hi alice")
    reader, writer = await asyncio.open_connection(*doors.address_of("tcp"))
    raw = RawClient(reader, writer)
    await raw.hello("bob")
    assert await receive(carol) == ("*server", "-> bob joined #lobby")
    raw.send({"type": "nick", "name": "robert"})
    assert await receive(carol) == ("*server", "-- bob is now known as robert")
    raw.send({"type": "topic", "room": "lobby", "text": "release day"})
    assert await receive(carol) == ("*server", "-- #lobby topic: release day (set by robert)")
    raw.send({"type": "away", "message": "lunch"})
    assert await receive(carol) == ("*server", "-- robert is away: lunch")
    await raw.close()
    assert await receive(carol) == ("*server", "<- robert left #lobby (disconnect)")


async def test_websocket_line_classic_and_tcp_users_share_one_room() -> None:
    """A message from each door reaches the three others: a WebSocket, a line, a classic and a
    native TCP user are ordinary members of one lobby."""
    from .webhelpers import ws_open

    config = dataclasses.replace(
        door_config(history=True, **NO_FLOOD),
        listeners=(*door_config().listeners, Listener(kind="web", port=0)),
    )
    async with ChatServer(config=config) as server:
        tess = await open_tcp(server, "tess")
        wendy = await ws_open(server, "wendy")
        lena = await open_line(server, "lena")
        carl = await classic(server, "carl")
        tess.send({"type": "say", "room": "lobby", "text": "from tcp"})
        await wendy.send({"type": "say", "room": "lobby", "text": "from ws"})
        lena.send("from line\n")
        await asyncio.to_thread(carl.send, "from classic")
        texts = {"from tcp", "from ws", "from line", "from classic"}

        async def native(c: RawClient, own: str) -> set[str]:
            got: set[str] = set()
            while got != texts - {own}:
                got.add((await c.recv_match(type="message"))["text"])
            return got

        async def line() -> set[str]:
            got: set[str] = set()
            while got != texts - {"from line"}:
                got.add((await lena.until(r"> from ")).rpartition("> ")[2])
            return got

        async def pairs() -> set[str]:
            got: set[str] = set()
            while got != texts - {"from classic"}:
                sender, text = await receive(carl)
                if sender != "*server":
                    got.add(text)
            return got

        async with asyncio.timeout(WAIT):
            await asyncio.gather(
                native(tess, "from tcp"), native(wendy, "from ws"), line(), pairs()
            )
