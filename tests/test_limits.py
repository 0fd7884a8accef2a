"""Every limit, over real loopback sockets: the exact error code, whether the connection is
kept or closed, and that a well-behaved client on the same server still chats afterwards."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from asyncchat import ChatServer, connect
from asyncchat.client import Client

from .conftest import WAIT, RawClient

# Lifts flood control for tests that are about something else.
NO_FLOOD = {"rate": 1e6, "burst": 1_000_000}


async def _open(
    server: ChatServer, name: str | None = None, *, rcvbuf: int | None = None, **hello: Any
) -> RawClient:
    host, port = server.address
    sock = None
    if rcvbuf is not None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
    else:
        reader, writer = await asyncio.open_connection(host, port)
    c = RawClient(reader, writer)
    if name is not None:
        await c.hello(name, **hello)
        await c.recv_match(type="joined", name=name)
    return c


async def _still_chats(server: ChatServer) -> None:
    """Two fresh well-behaved clients can talk on ``server``."""
    a = await _open(server, "probe-a")
    b = await _open(server, "probe-b")
    a.send({"type": "say", "room": "lobby", "text": "still fine?", "id": "p"})
    assert (await a.recv_match(type="ack"))["ref"] == "p"
    assert (await b.recv_match(type="message", text="still fine?"))["from"] == "probe-a"
    await a.close()
    await b.close()


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")  # pragma: no cover


# ---------------------------------------------------------------- slow consumers


async def test_reader_that_never_reads_is_evicted_and_others_get_everything(make_server) -> None:  # type: ignore[no-untyped-def]
    """A member that stops reading is evicted (left slow_consumer) once its backlog passes
    max_outbox; the others receive every message in order with contiguous seq; memory stays
    bounded."""
    async with make_server(**NO_FLOOD) as server:
        sender = await _open(server, "sender")
        steady = await _open(server, "steady")
        sloth = await _open(server, "sloth", rcvbuf=4096)  # never reads again
        rss_before = _rss_kib()
        text = "x" * 1000
        total = 10_000  # ~10 MB owed to the sloth: past max_outbox and the kernel's buffers
        received: list[int] = []
        left_reason = None

        async def read_steady() -> None:
            nonlocal left_reason
            while len(received) < total:
                f = await steady.recv()
                if f["type"] == "message":
                    received.append(f["seq"])
                elif f["type"] == "left" and f["name"] == "sloth":
                    left_reason = f["reason"]

        async def read_acks() -> None:
            for _ in range(total):
                await sender.recv_match(type="ack")

        reader = asyncio.create_task(read_steady())
        acks = asyncio.create_task(read_acks())
        for i in range(total):
            sender.send({"type": "say", "room": "lobby", "text": text})
            if i % 50 == 49:  # chat at the pace the steady member reads, as people do
                await sender.writer.drain()
                async with asyncio.timeout(WAIT):
                    while len(received) < i - 50:
                        await asyncio.sleep(0.001)
        async with asyncio.timeout(6 * WAIT):
            await reader
            await acks
        assert left_reason == "slow_consumer"
        assert sloth.writer.transport is not None
        assert received == list(range(1, total + 1))
        assert "sloth" not in server.members
        # Everything the sloth was never sent is not held anywhere: growth is far below the
        # 6 MB it was owed (the bound is max_outbox plus the senders' in-flight frames).
        assert _rss_kib() - rss_before < 32 * 1024
        await _still_chats(server)


async def test_reader_that_stalls_is_evicted_after_write_timeout(make_server) -> None:  # type: ignore[no-untyped-def]
    """A member that accepts nothing for write_timeout is evicted even under max_outbox."""
    async with make_server(write_timeout=0.3, max_outbox=64 * 1024 * 1024, **NO_FLOOD) as server:
        sender = await _open(server, "sender")
        watcher = await _open(server, "watcher")
        stalled = await _open(server, "stalled", rcvbuf=4096)
        for _ in range(8000):  # fills the kernel buffers; the rest stays in the transport
            sender.send({"type": "say", "room": "lobby", "text": "y" * 1000})
        left = await watcher.recv_match(type="left", name="stalled", timeout=8 * WAIT)
        assert left["reason"] == "slow_consumer"
        await stalled.close()
        await _still_chats(server)


# ---------------------------------------------------------------- keepalive


async def test_silent_client_is_pinged_then_dropped(make_server) -> None:  # type: ignore[no-untyped-def]
    """A client that answers nothing gets ping after ping_interval and is dropped ping_timeout
    later: error timeout, bye, and its rooms see left(timeout)."""
    async with make_server(ping_interval=0.2, ping_timeout=0.3) as server:
        mute = await _open(server, "mute")
        watcher = Client  # the library client answers pings by itself
        async with connect(*server.address, name="watcher") as w:
            assert isinstance(w, watcher)
            frames = await mute.expect_closed(timeout=4 * WAIT)
            types = [f["type"] for f in frames]
            assert "ping" in types and types[-2:] == ["error", "bye"]
            assert frames[-2]["code"] == "timeout"
            async with asyncio.timeout(WAIT):
                async for event in w:
                    if getattr(event, "name", None) == "mute" and event.TYPE == "left":
                        assert event.reason == "timeout"  # type: ignore[union-attr]
                        break
            await asyncio.sleep(0.8)  # several intervals: the library answered its pings
            assert not w.closed
            assert (await w.say("lobby", "alive")).seq == 1


async def test_client_library_detects_a_dead_server() -> None:
    """A server that stops answering is detected by the client's own ping."""

    async def zombie(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = int.from_bytes(await reader.readexactly(4), "big")
        await reader.readexactly(n)
        welcome = (
            b'{"type":"welcome","name":"bob","version":1,"server":"zombie","rooms":[],'
            b'"limits":{"max_frame":65536,"max_text":4000,"ping_interval":0.2,'
            b'"ping_timeout":0.3}}'
        )
        writer.write(len(welcome).to_bytes(4, "big") + welcome)
        await asyncio.sleep(30)  # alive at TCP level, silent at ours

    zserver = await asyncio.start_server(zombie, "127.0.0.1", 0)
    try:
        client = await connect(*zserver.sockets[0].getsockname()[:2], name="bob")
        async with asyncio.timeout(4 * WAIT):
            async for _ in client:
                pass
        assert client.closed and "ping" in (client.close_reason or "")
        await client.close()
    finally:
        zserver.close()
        for w in list(getattr(zserver, "_clients", ())):  # pragma: no cover - 3.12+ only
            w.abort()


# ---------------------------------------------------------------- flood control


async def test_flood_gets_rate_limited_with_retry_after_and_is_not_posted(
    server: ChatServer,
) -> None:
    """Over burst, say gets rate_limited with retry_after and is not posted; the connection
    stays and can send again later."""
    a = await _open(server, "flood")
    b = await _open(server, "calm")
    for i in range(8):
        a.send({"type": "say", "room": "lobby", "text": f"m{i}", "id": i})
    replies = [await a.recv_match(ref=i) for i in range(8)]
    assert [r["type"] for r in replies] == ["ack"] * 5 + ["error"] * 3
    assert all(r["code"] == "rate_limited" and 0 < r["retry_after"] <= 1 for r in replies[5:])
    await asyncio.sleep(replies[-1]["retry_after"] + 0.05)
    a.send({"type": "dm", "to": "calm", "text": "later", "id": "d"})
    assert (await a.recv_match(ref="d"))["type"] == "ack"
    b.send({"type": "ping", "data": 1})
    seen = []
    while (f := await b.recv())["type"] != "pong":
        seen.append(f)
    assert [f["text"] for f in seen if f["type"] == "message"] == [f"m{i}" for i in range(5)]


async def test_sustained_flood_disconnects(make_server) -> None:  # type: ignore[no-untyped-def]
    """After max_rate_violations refusals in a row the flooder is disconnected (left kicked)."""
    async with make_server(burst=2, rate=1.0, max_rate_violations=3) as server:
        a = await _open(server, "flood")
        b = await _open(server, "calm")
        for _ in range(10):
            a.send({"type": "say", "room": "lobby", "text": "spam"})
        frames = await a.expect_closed()
        assert [f["code"] for f in frames if f["type"] == "error"] == ["rate_limited"] * 3
        assert frames[-1]["type"] == "bye"
        assert (await b.recv_match(type="left", name="flood"))["reason"] == "kicked"
        await _still_chats(server)


async def test_pre_handshake_frames_are_bounded(server: ChatServer) -> None:
    """Before hello, a frame over 16 KiB is frame_too_large (close), and endless failed hellos
    are cut off."""
    big = await _open(server)
    big.send_bytes((20_000).to_bytes(4, "big"))
    frames = await big.expect_closed()
    assert frames[0]["code"] == "frame_too_large"
    holder = await _open(server, "taken")
    guesser = await _open(server)
    for _ in range(20):
        guesser.send({"type": "hello", "name": "taken", "version": 1})
    frames = await guesser.expect_closed()
    assert [f["code"] for f in frames if f["type"] == "error"][-1] == "bad_request"
    assert len(frames) <= 18
    await holder.close()
    await _still_chats(server)


# ---------------------------------------------------------------- connection limits


async def test_max_connections(make_server) -> None:  # type: ignore[no-untyped-def]
    """Past max_connections a new connection gets too_many_connections and is closed."""
    async with make_server(max_connections=3) as server:
        kept = [await _open(server, f"u{i}") for i in range(3)]
        extra = await _open(server)
        frames = await extra.expect_closed()
        assert [(f["type"], f.get("code") or f.get("reason")) for f in frames] == [
            ("error", "too_many_connections"),
            ("bye", "too_many_connections"),
        ]
        await kept[0].close()
        await asyncio.sleep(0.1)
        c = await _open(server, "room-again")  # a slot is free again
        await c.close()


async def test_max_per_ip_with_and_without_the_loopback_exemption(make_server) -> None:  # type: ignore[no-untyped-def]
    """max_per_ip refuses the extra connection from one address; loopback is exempt unless
    the exemptions are emptied."""
    async with make_server(max_per_ip=2, per_ip_exempt=()) as server:
        kept = [await _open(server) for _ in range(2)]
        extra = await _open(server)
        assert (await extra.expect_closed())[0]["code"] == "too_many_connections"
        assert server.connections == len(kept)
    async with make_server(max_per_ip=2) as server:
        many = [await _open(server, f"u{i}") for i in range(4)]
        assert server.connections == 4 and len(many) == 4


async def test_max_rooms_per_client(make_server) -> None:  # type: ignore[no-untyped-def]
    """Joining past max_rooms_per_client is too_many_rooms; the connection stays."""
    async with make_server(max_rooms_per_client=2) as server:
        c = await _open(server)
        c.send({"type": "hello", "name": "greedy", "version": 1, "rooms": ["a", "b", "c"]})
        assert (await c.recv())["code"] == "too_many_rooms"
        await c.hello("greedy", rooms=["a", "b"])
        c.send({"type": "join", "room": "c", "id": 1})
        err = await c.recv_match(type="error")
        assert (err["code"], err["ref"]) == ("too_many_rooms", 1)
        c.send({"type": "say", "room": "a", "text": "still here", "id": 2})
        assert (await c.recv_match(ref=2))["type"] == "ack"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"type":"say","room":"lobby","text":"a","text":5}', "bad_request"),  # duplicate key:
        # the last one wins (as in most JSON parsers) and is then checked like any other
        (
            b'{"type":"say","room":"lobby","text":"x","id":123456789012345678901234567890}',
            "bad_request",
        ),  # a number out of range for an id
        (b'{"type":"say","room":"lobby","text":"x","n":1' + b"0" * 400 + b"}", "bad_frame"),
        (b"\xef\xbb\xbf{}", "bad_frame"),  # a BOM
        (b"null", "bad_frame"),
        (b'{"type":"say","room":["lobby"],"text":"x"}', "bad_request"),
        (b'{"type":"join","room":"a room"}', "room_invalid"),
        (b'{"type":"nick","name":"\\u202eevil"}', "name_invalid"),
        (b'{"type":"dm","to":"x","text":"' + b"x" * 4001 + b'"}', "text_too_long"),
        (b'{"type":"history","room":"lobby"}', "history_unavailable"),
    ],
)
async def test_bad_input_classes(server: ChatServer, payload: bytes, code: str, caplog) -> None:  # type: ignore[no-untyped-def]
    """Each class of bad input gets its code, the connection stays, nothing logs a traceback."""
    caplog.set_level(logging.INFO, logger="asyncchat")
    c = await _open(server, "fuzzy")
    c.send_payload(payload)
    err = await c.recv_match(type="error")
    assert err["code"] == code
    c.send({"type": "say", "room": "lobby", "text": "ok", "id": "after"})
    assert (await c.recv_match(ref="after"))["type"] == "ack"
    assert not [r for r in caplog.records if r.exc_info]


async def test_frames_after_quit_are_ignored(server: ChatServer) -> None:
    """After quit the server closes; frames that follow in the same write are dropped."""
    a = await _open(server, "leaver")
    b = await _open(server, "stayer")
    a.send({"type": "quit", "reason": "done"})
    a.send({"type": "say", "room": "lobby", "text": "ghost"})
    await a.expect_closed()
    left = await b.recv_match(type="left", name="leaver")
    assert left["reason"] == "quit"
    b.send({"type": "ping"})
    seen = []
    while (f := await b.recv())["type"] != "pong":
        seen.append(f)
    assert not [f for f in seen if f["type"] == "message"]


# ---------------------------------------------------------------- shutdown under load


async def test_shutdown_under_load_with_clients_that_do_not_read(make_server) -> None:  # type: ignore[no-untyped-def]
    """Shutdown finishes (aborting after shutdown_grace) even when clients do not read, and
    leaves no connection or task behind."""
    server = make_server(shutdown_grace=0.3, max_outbox=64 * 1024 * 1024, **NO_FLOOD)
    await server.start()
    tasks_before = asyncio.all_tasks()
    sender = await _open(server, "sender")
    sloths = [await _open(server, f"sloth{i}", rcvbuf=4096) for i in range(3)]
    for _ in range(3000):
        sender.send({"type": "say", "room": "lobby", "text": "z" * 1000})
    await sender.writer.drain()
    await asyncio.sleep(0.2)
    async with asyncio.timeout(4 * WAIT):
        await server.close()
    assert server.connections == 0
    leftover = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
    assert leftover <= {asyncio.current_task()}
    for c in [sender, *sloths]:
        await c.close()
