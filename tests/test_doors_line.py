"""The line door: chat from netcat or telnet, over real sockets on 127.0.0.1.

A line client here is what netcat is: bytes out, lines back. Each test waits only for something
that should come (bounded by ``WAIT``); "nothing came" is checked with a later sentinel line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from asyncchat import ChatServer
from asyncchat.codecs.line import LineCodec
from asyncchat.config import HistoryConfig, Listener, ServerConfig
from asyncchat.limits import Limits
from asyncchat.transports.codec import KEEPALIVE_PROBES

from .conftest import WAIT, RawClient

NO_FLOOD = {"rate": 1e6, "burst": 1_000_000}


def door_config(*, history: bool = False, **limits: Any) -> ServerConfig:
    """A native, a line and a classic listener on free ports."""
    return ServerConfig(
        listeners=(
            Listener(port=0),
            Listener(kind="line", port=0),
            Listener(kind="classic", port=0),
        ),
        limits=Limits(**limits),
        history=HistoryConfig(db=":memory:") if history else HistoryConfig(enabled=False),
    )


class LineClient:
    """netcat, as a test drives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seen: list[str] = []

    def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def line(self) -> str:
        async with asyncio.timeout(WAIT):
            raw = await self.reader.readline()
        if not raw:
            raise EOFError("the server closed the connection")
        assert raw.endswith(b"\r\n"), raw
        line = raw[:-2].decode()
        self.seen.append(line)
        return line

    async def until(self, pattern: str) -> str:
        """The next line that ``pattern`` is found in (a regular expression)."""
        while True:
            line = await self.line()
            if re.search(pattern, line):
                return line

    async def lines_until(self, pattern: str) -> list[str]:
        """Every line up to and including the first that ``pattern`` is found in."""
        out = []
        while True:
            out.append(await self.line())
            if re.search(pattern, out[-1]):
                return out

    async def closed(self) -> list[str]:
        """The lines until the server closes the connection."""
        out = []
        async with asyncio.timeout(WAIT):
            while raw := await self.reader.read(65536):
                out.extend(raw.decode().splitlines())
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def doors() -> AsyncIterator[ChatServer]:
    async with ChatServer(config=door_config()) as server:
        yield server


async def open_line(
    server: ChatServer, name: str | None = None, *, rcvbuf: int | None = None
) -> LineClient:
    """A line client; with ``name``, past the prompt and the welcome."""
    host, port = server.address_of("line")
    if rcvbuf is None:
        reader, writer = await asyncio.open_connection(host, port)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
    c = LineClient(reader, writer)
    assert "type your name" in await c.line()
    if name is not None:
        c.send(f"{name}\r\n")
        assert await c.line() == f"-- connected to asyncchat/0.1.0 as {name} (/help for commands)"
        assert await c.line() == "-> you joined #lobby"
    return c


async def open_tcp(server: ChatServer, name: str) -> RawClient:
    reader, writer = await asyncio.open_connection(*server.address_of("tcp"))
    c = RawClient(reader, writer)
    await c.hello(name)
    await c.recv_match(type="joined", name=name)
    return c


async def sentinel(c: LineClient) -> list[str]:
    """Every line until the answer to a ``/who``: what came before it."""
    c.send("/who\n")
    return (await c.lines_until(r"^-- #"))[:-1]


# ---------------------------------------------------------------- chatting


async def test_line_and_tcp_clients_chat_both_ways(doors: ChatServer) -> None:
    """A line client and a native client in lobby see each other's messages and arrivals."""
    bob = await open_tcp(doors, "bob")
    alice = await open_line(doors, "alice")
    assert (await bob.recv_match(type="joined", name="alice"))["room"] == "lobby"
    alice.send("hello bob\r\n")
    msg = await bob.recv_match(type="message")
    assert (msg["from"], msg["text"], msg["room"]) == ("alice", "hello bob", "lobby")
    bob.send({"type": "say", "room": "lobby", "text": "hi alice"})
    assert re.fullmatch(r"\d\d:\d\d #lobby <bob> hi alice", await alice.until("<bob>"))
    assert "hello bob" not in " ".join(await sentinel(alice))  # no echo of one's own line
    await alice.close()
    assert (await bob.recv_match(type="left", name="alice"))["reason"] == "disconnect"


async def test_taken_and_invalid_names_are_asked_again(doors: ChatServer) -> None:
    """A name that is taken, or no valid name, is refused with the reason and asked again."""
    bob = await open_tcp(doors, "bob")
    c = await open_line(doors)
    c.send("BOB\n")
    assert (await c.line()).startswith("!! name_taken: ")
    assert await c.line() == "-- your name?"
    c.send("two words\n")
    assert (await c.line()).startswith("!! name_invalid: ")
    assert await c.line() == "-- your name?"
    c.send("\n")
    assert await c.line() == "-- your name?"
    c.send("carol\nfirst words\n")  # the line after a name is chat, once the name is given
    assert (await c.line()).startswith("-- connected to asyncchat/0.1.0 as carol")
    assert doors.members == ["bob", "carol"]
    msg = await bob.recv_match(type="message")
    assert (msg["from"], msg["text"]) == ("carol", "first words")


async def test_commands_reach_the_server_and_show_their_answers() -> None:
    """/join moves the current room, /msg and /me show what was sent, /who, /rooms, /topic and
    /away answer, /nick renames, /leave falls back to another room: the terminal client's
    commands."""
    async with ChatServer(config=door_config(**NO_FLOOD)) as server:
        await _commands(server)


async def _commands(doors: ChatServer) -> None:
    bob = await open_tcp(doors, "bob")
    c = await open_line(doors, "alice")
    bob.send({"type": "join", "room": "dev"})
    await bob.recv_match(type="joined", name="bob", room="dev")
    c.send("/join dev\n")
    assert await c.until("joined") == "-> you joined #dev"
    c.send("in dev\n")
    c.send("/who\n")
    assert await c.until("^-- #dev") == "-- #dev: alice, bob"
    msg = await bob.recv_match(type="message", text="in dev")
    assert msg["room"] == "dev"
    c.send("/msg bob psst\n")
    assert await c.until("dm you") == "[dm you -> bob] psst"
    dm = await bob.recv_match(type="dm")
    assert (dm["from"], dm["text"]) == ("alice", "psst")
    c.send("/me waves\n")
    assert await c.until(r"^\* ") == "* alice waves"
    assert (await bob.recv_match(type="message", text="waves"))["action"] is True
    c.send("/rooms\n")
    assert await c.until("^-- rooms") == "-- rooms: #dev (2), #lobby (2)"
    c.send("/topic release on Friday\n")
    assert await c.until("topic") == "-- #dev topic: release on Friday (set by you)"
    assert (await bob.recv_match(type="topic"))["text"] == "release on Friday"
    c.send("/topic\n")
    assert await c.until("topic") == "-- #dev topic: release on Friday (set by you)"
    c.send("/away lunch\n")
    assert await c.until("away") == "-- you are away: lunch"
    c.send("/away\n")
    assert await c.until("back") == "-- you are back"
    c.send("/nick alicia\n")
    assert await c.until("known as") == "-- alice is now known as alicia"
    c.send("/leave\n")
    assert await c.line() == "<- you left #dev"
    assert await c.line() == "-- you are now talking in #lobby"
    c.send("back in lobby\n")
    msg = await bob.recv_match(type="message", text="back in lobby")
    assert (msg["room"], msg["from"]) == ("lobby", "alicia")
    c.send("/quit bye all\n")
    await c.closed()
    left = await bob.recv_match(type="left", name="alicia")
    assert left["reason"] == "quit"


async def test_help_usage_unknown_and_unavailable_commands_answer_a_line(
    doors: ChatServer,
) -> None:
    """/help lists the commands; a malformed, unknown or misplaced command (/login once named)
    answers one clear line, and a refused request its error code; none closes."""
    bob = await open_tcp(doors, "bob")
    c = await open_line(doors, "alice")
    c.send("/help\n")
    assert await c.line() == "commands:"
    assert (await c.until("/help"))[:7] == "  /help"
    for typed, answer in [
        ("/msg bob", "!! usage: /msg NAME TEXT"),
        ("/join", "!! usage: /join ROOM"),
        ("/frob x", "!! unknown command /frob; /help lists the commands"),
        ("/login alice secret", "!! /login only works as the first line, instead of the name"),
        ("/msg nobody hi", "!! no_such_user: nobody is called 'nobody'"),
        ("/leave nowhere", "!! not_in_room: "),
    ]:
        c.send(typed + "\n")
        assert (await c.line()).startswith(answer), typed
    c.send("//slash at the start\n")
    assert (await bob.recv_match(type="message"))["text"] == "/slash at the start"
    assert doors.members == ["alice", "bob"]


# ---------------------------------------------------------------- input edge cases


async def test_crlf_and_bare_lf_both_end_a_line(doors: ChatServer) -> None:
    """CR LF and a bare LF each end one line; the CR is not part of the text."""
    bob = await open_tcp(doors, "bob")
    c = await open_line(doors, "alice")
    c.send(b"one\r\ntwo\nthree\r")
    c.send(b"\n")
    texts = [(await bob.recv_match(type="message"))["text"] for _ in range(3)]
    assert texts == ["one", "two", "three"]


async def test_telnet_negotiation_bytes_are_ignored(doors: ChatServer) -> None:
    """IAC commands (WILL/DO with their option, a subnegotiation, a two-byte command), even
    split across writes, never reach the text."""
    bob = await open_tcp(doors, "bob")
    c = await open_line(doors, "alice")
    c.send(b"\xff\xfb\x01\xff\xfd\x03he")
    await asyncio.sleep(0.05)
    c.send(b"l\xff")
    await asyncio.sleep(0.05)
    c.send(b"\xfa\x18\x00xterm\xff\xf0lo\xff\xf1\r\n")
    assert (await bob.recv_match(type="message"))["text"] == "hello"


async def test_a_line_over_the_bound_is_refused_and_the_connection_goes_on() -> None:
    """A line longer than max_frame is refused as soon as it passes the bound (its rest dropped
    up to the next LF); the next line is chat as usual."""
    async with ChatServer(config=door_config(max_frame=4096)) as server:
        bob = await open_tcp(server, "bob")
        c = await open_line(server, "alice")
        c.send(b"x" * 3000)
        await asyncio.sleep(0.05)
        c.send(b"y" * 3000)
        assert await c.line() == "!! frame_too_large: a line is limited to 4096 bytes: ignored"
        c.send(b"z" * 10_000 + b"\nafter\n")
        assert (await bob.recv_match(type="message"))["text"] == "after"
        c.send(b"w" * 5000 + b"\n")  # a whole overlong line in one read
        assert (await c.line()).startswith("!! frame_too_large")
        c.send(b"still here\n")
        assert (await bob.recv_match(type="message"))["text"] == "still here"


async def test_utf8_cut_mid_sequence_arrives_whole_and_bad_utf8_is_refused(
    doors: ChatServer,
) -> None:
    """A character split across two reads arrives whole; a line that is not UTF-8 is refused
    with a line, and the connection goes on."""
    bob = await open_tcp(doors, "bob")
    c = await open_line(doors, "alice")
    data = "café 🎉\n".encode()
    c.send(data[:4])
    await asyncio.sleep(0.05)
    c.send(data[4:9])
    await asyncio.sleep(0.05)
    c.send(data[9:])
    assert (await bob.recv_match(type="message"))["text"] == "café 🎉"
    c.send(b"caf\xe9\n")
    assert await c.line() == "!! bad_frame: the line is not UTF-8 text: ignored"
    c.send("ok\n")
    assert (await bob.recv_match(type="message"))["text"] == "ok"


async def test_peer_text_is_escaped(doors: ChatServer) -> None:
    """Control and bidi characters from a peer reach the line client visible, not raw; a
    newline in a message continues on an indented line."""
    bob = await open_tcp(doors, "bob")
    c = await open_line(doors, "alice")
    bob.send({"type": "say", "room": "lobby", "text": "\x1b[31mred\u202e\nnext"})
    assert (await c.until("<bob>")).endswith("<bob> \\x1b[31mred\\u202e")
    assert await c.line() == "      next"


# ---------------------------------------------------------------- limits


async def test_rate_limit_applies_to_line_clients() -> None:
    """Lines past the burst are refused with rate_limited, as for any member."""
    async with ChatServer(config=door_config(rate=0.01, burst=2)) as server:
        c = await open_line(server, "alice")
        c.send("one\ntwo\nthree\n")
        assert (await c.line()).startswith("!! rate_limited: slow down")


async def test_a_line_client_is_never_pinged_and_keeps_its_name() -> None:
    """Silent past ping_interval + ping_timeout, a line client stays (it cannot answer a
    ping: TCP keepalive is on, from the same limits), and its name is not reclaimed by a new
    connection asking for it."""
    config = door_config(ping_interval=0.2, ping_timeout=0.4)
    async with ChatServer(config=config) as server:
        c = await open_line(server, "alice")
        await asyncio.sleep(1.5)  # > ping_interval + ping_timeout, and > RECLAIM_QUIET
        (conn,) = server.admission.connections
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPCNT"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_PROBES
        reader, writer = await asyncio.open_connection(*server.address_of("tcp"))
        raw = RawClient(reader, writer)
        raw.send({"type": "hello", "name": "alice", "version": 1})
        assert (await raw.recv())["code"] == "name_taken"
        assert server.members == ["alice"]
        c.send("still here\n")
        assert await sentinel(c) == []


async def test_a_line_client_that_asks_without_reading_is_a_slow_consumer() -> None:
    """A client that keeps asking for /help and never reads is evicted once its backlog
    passes max_outbox; the others see it leave as slow_consumer."""
    async with ChatServer(config=door_config(max_outbox=8192, **NO_FLOOD)) as server:
        bob = await open_tcp(server, "bob")
        c = await open_line(server, "sloth", rcvbuf=4096)
        c.send("/help\n" * 20_000)  # ~14 MB of answers: past the kernel's buffers too
        left = await bob.recv_match(type="left", name="sloth", timeout=4 * WAIT)
        assert left["reason"] == "slow_consumer"


async def test_a_line_client_that_stops_reading_is_evicted() -> None:
    """A line member that accepts nothing for write_timeout while the room talks is evicted,
    like a native one."""
    config = door_config(write_timeout=0.3, max_outbox=64 * 1024 * 1024, **NO_FLOOD)
    async with ChatServer(config=config) as server:
        bob = await open_tcp(server, "bob")
        watcher = await open_tcp(server, "watcher")
        sloth = await open_line(server, "sloth", rcvbuf=4096)  # never reads again
        await watcher.recv_match(type="joined", name="sloth")
        for _ in range(8000):
            bob.send({"type": "say", "room": "lobby", "text": "y" * 1000})
        left = await watcher.recv_match(type="left", name="sloth", timeout=8 * WAIT)
        assert left["reason"] == "slow_consumer"
        await sloth.close()


async def test_a_full_server_refuses_a_line_client_with_a_line() -> None:
    """max_connections counts every listener: a line client over it is told why in text."""
    async with ChatServer(config=door_config(max_connections=1)) as server:
        await open_tcp(server, "bob")
        reader, writer = await asyncio.open_connection(*server.address_of("line"))
        lines = await LineClient(reader, writer).closed()
        assert lines[0].startswith("!! too_many_connections: the server is full")


async def test_history_is_replayed_to_a_line_client_as_lines() -> None:
    """With history, a line client joining lobby sees what was said before, as lines."""
    async with ChatServer(config=door_config(history=True)) as server:
        bob = await open_tcp(server, "bob")
        bob.send({"type": "say", "room": "lobby", "text": "earlier", "id": 1})
        await bob.recv_match(type="ack")
        c = await open_line(server)
        c.send("alice\n")
        assert (await c.until("earlier")).endswith("#lobby <bob> earlier")


def test_line_codec_sans_io_keeps_lines_split_anywhere() -> None:
    """Fed one byte at a time, with telnet commands between, the codec makes the same hello."""
    codec = LineCodec(Limits())
    for b in b"al\xff\xfd\x01ice\r\n":
        codec.receive(bytes([b]), 100)
    payload = codec.next_payload()
    assert payload is not None and b'"name":"alice"' in payload
    assert codec.next_payload() is None


async def test_doors_serve_tls_with_their_own_certificate(tmp_path: Path) -> None:
    """A line door and a classic door with TLS (as ``openssl s_client`` or ``ncat --ssl``
    would connect): the greeting and chat come over a verified TLS 1.2+ connection."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, cafile = (str(tmp_path / f"{n}.pem") for n in ("chain", "key", "ca"))
    cert.private_key_and_cert_chain_pem.write_to_path(chain)
    cert.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(cafile)
    tls = {"tls_cert": chain, "tls_key": key}
    config = ServerConfig(
        listeners=(
            Listener(port=0),
            Listener(kind="line", port=0, **tls),
            Listener(kind="classic", port=0, **tls),
        ),
        history=HistoryConfig(enabled=False),
    )
    ctx = ssl.create_default_context(cafile=cafile)
    async with ChatServer(config=config) as server:
        bob = await open_tcp(server, "bob")
        reader, writer = await asyncio.open_connection(*server.address_of("line"), ssl=ctx)
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        c = LineClient(reader, writer)
        assert "type your name" in await c.line()
        c.send("alice\nover tls\n")
        assert (await bob.recv_match(type="message"))["text"] == "over tls"
        reader, writer = await asyncio.open_connection(*server.address_of("classic"), ssl=ctx)
        writer.write(b"5         carol4         hey!")
        msg = await bob.recv_match(type="message")
        assert (msg["from"], msg["text"]) == ("carol", "hey!")
        writer.close()
        await c.close()


async def test_a_codec_that_fails_costs_only_its_connection(
    doors: ChatServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A render that raises (a bug) closes that one line connection with a logged traceback;
    the fan-out it was part of still reaches everyone else."""
    show = LineCodec._show

    def broken(self: LineCodec, event: Any) -> list[str]:
        if self.me == "alice" and getattr(event, "text", None) == "boom":
            raise RuntimeError("a bug")
        return show(self, event)

    monkeypatch.setattr(LineCodec, "_show", broken)
    bob = await open_tcp(doors, "bob")
    alice = await open_line(doors, "alice")
    carol = await open_line(doors, "carol")
    bob.send({"type": "say", "room": "lobby", "text": "boom"})
    assert (await carol.until("boom")).endswith("<bob> boom")
    await alice.closed()
    assert (await bob.recv_match(type="left", name="alice"))["reason"] == "disconnect"
    assert "the codec cannot render a frame" in caplog.text


async def test_login_at_the_name_prompt_for_a_registered_name(tmp_path: Path) -> None:
    """A registered name is refused without its password and asked again; /login NAME
    PASSWORD at the prompt (here from loopback) names the member; a wrong password is refused;
    other commands at the prompt say what the prompt takes."""
    from asyncchat.auth import LOGIN_DELAY
    from asyncchat.config import AuthConfig

    from .test_auth import PASSWORD, make_accounts

    db = tmp_path / "chat.db"
    make_accounts(db, "alice")
    config = dataclasses.replace(door_config(login_failures=10), auth=AuthConfig(db=str(db)))
    async with ChatServer(config=config) as server:
        c = await open_line(server)
        c.send("alice\n")
        assert (await c.line()).startswith("!! ")
        assert await c.line() == "-- your name?"
        c.send("/join dev\n")
        assert await c.line() == "!! type your name, or /login NAME PASSWORD for a registered one"
        c.send("/login alice\n")
        assert await c.line() == "!! usage: /login NAME PASSWORD"
        c.send("/login alice wrong password\n")
        assert (await c.line()).startswith("!! auth_failed: wrong name, password or token")
        assert await c.line() == "-- your name?"
        await asyncio.sleep(4 * LOGIN_DELAY)  # the login throttle's wait after two failures
        c.send(f"/login alice {PASSWORD}\n")
        assert (await c.line()).startswith("-- connected to asyncchat/0.1.0 as alice")
        assert server.members == ["alice"]
        assert await c.line() == "-> you joined #lobby"
        c.send("/login bob x\n")
        assert await c.line() == "!! /login only works as the first line, instead of the name"
