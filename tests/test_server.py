"""The server over real sockets on 127.0.0.1: the conversation of protocol v1."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from asyncchat import ChatServer, connect
from asyncchat.events import Message

from .conftest import WAIT, Opener, RawClient


async def test_handshake_welcome_and_joined(raw: Opener) -> None:
    """hello gets welcome (name, version, server, rooms, limits), then joined for the room."""
    c = await raw()
    welcome = await c.hello("alice")
    assert welcome["name"] == "alice" and welcome["version"] == 1
    assert welcome["rooms"] == ["lobby"] and welcome["server"].startswith("asyncchat/")
    assert welcome["limits"]["max_frame"] == 65536 and welcome["limits"]["max_text"] == 4000
    assert await c.recv() == {"type": "joined", "room": "lobby", "name": "alice"}


async def test_first_frame_must_be_hello(raw: Opener) -> None:
    """Anything before hello gets hello_required and the connection closes."""
    c = await raw()
    c.send({"type": "say", "room": "lobby", "text": "hi"})
    frames = await c.expect_closed()
    assert frames[0]["type"] == "error" and frames[0]["code"] == "hello_required"


async def test_name_taken_then_retry_on_same_connection(raw: Opener) -> None:
    """A taken name (any case) gets name_taken; another hello on the same connection works."""
    await raw("bob")
    c = await raw()
    c.send({"type": "hello", "name": "BOB", "version": 1, "id": "h"})
    err = await c.recv()
    assert (err["type"], err["code"], err["ref"]) == ("error", "name_taken", "h")
    c.send({"type": "hello", "name": "#bob", "version": 1})
    assert (await c.recv())["code"] == "name_invalid"
    welcome = await c.hello("bob2")
    assert welcome["name"] == "bob2"


async def test_bad_version_and_bad_name_keep_the_connection(raw: Opener) -> None:
    """version_unsupported and name_invalid leave the connection open for another hello."""
    c = await raw()
    c.send({"type": "hello", "name": "x", "version": 2})
    assert (await c.recv())["code"] == "version_unsupported"
    c.send({"type": "hello", "name": "two words", "version": 1})
    assert (await c.recv())["code"] == "name_invalid"
    assert (await c.hello("x"))["type"] == "welcome"


async def test_say_ack_and_message_with_contiguous_seq(raw: Opener) -> None:
    """The sender gets ack(ref, seq, ts); every other member gets message, seq 1, 2, 3."""
    a = await raw("alice")
    b = await raw("bob")
    await a.recv_type("joined")  # bob's
    for i in range(3):
        a.send({"type": "say", "room": "lobby", "text": f"hello {i}", "id": f"m{i}"})
    acks = [await a.recv() for _ in range(3)]
    assert [(x["type"], x["ref"], x["seq"]) for x in acks] == [
        ("ack", "m0", 1),
        ("ack", "m1", 2),
        ("ack", "m2", 3),
    ]
    msgs = [await b.recv() for _ in range(3)]
    assert [(m["type"], m["seq"], m["from"], m["text"]) for m in msgs] == [
        ("message", i + 1, "alice", f"hello {i}") for i in range(3)
    ]
    assert msgs[0]["ts"] == acks[0]["ts"]


async def test_action_messages(raw: Opener) -> None:
    """/me: say with action=true reaches the others with action=true."""
    a = await raw("alice")
    b = await raw("bob")
    a.send({"type": "say", "room": "lobby", "text": "waves", "action": True})
    msg = await b.recv_type("message")
    assert msg["action"] is True and msg["text"] == "waves"


async def test_join_leave_notices_and_rooms(raw: Opener, server: ChatServer) -> None:
    """Joining creates a room and tells its members; leaving tells them too; empty rooms go."""
    a = await raw("alice")
    b = await raw("bob")
    a.send({"type": "join", "room": "dev", "id": 1})
    assert await a.recv_match(type="joined", room="dev") == {
        "type": "joined",
        "room": "dev",
        "name": "alice",
        "ref": 1,
    }
    b.send({"type": "join", "room": "DEV"})
    assert await a.recv_match(type="joined", room="dev") == {
        "type": "joined",
        "room": "dev",
        "name": "bob",
    }
    b.send({"type": "leave", "room": "dev", "id": 2})
    left = await b.recv_type("left")
    assert left == {"type": "left", "room": "dev", "name": "bob", "reason": "leave", "ref": 2}
    assert (await a.recv_type("left"))["name"] == "bob"
    a.send({"type": "leave", "room": "dev"})
    await a.recv_type("left")
    assert set(server.rooms) == {"lobby"}


async def test_not_in_room(raw: Opener) -> None:
    """Saying in a room one is not in gets not_in_room, and nothing is posted."""
    a = await raw("alice")
    a.send({"type": "say", "room": "elsewhere", "text": "hi", "id": 9})
    err = await a.recv()
    assert (err["code"], err["ref"]) == ("not_in_room", 9)


async def test_rename(raw: Opener) -> None:
    """nick renames: everyone sharing a room gets renamed; a taken name is refused."""
    a = await raw("alice")
    b = await raw("bob")
    b.send({"type": "nick", "name": "ALICE", "id": 1})
    assert (await b.recv_type("error"))["code"] == "name_taken"
    b.send({"type": "nick", "name": "robert", "id": 2})
    assert await b.recv_type("renamed") == {
        "type": "renamed",
        "old": "bob",
        "new": "robert",
        "ref": 2,
    }
    assert await a.recv_type("renamed") == {"type": "renamed", "old": "bob", "new": "robert"}
    b.send({"type": "say", "room": "lobby", "text": "it's me"})
    assert (await a.recv_type("message"))["from"] == "robert"


async def test_dm(raw: Opener) -> None:
    """dm reaches only its recipient; the sender gets ack; no_such_user otherwise."""
    a = await raw("alice")
    b = await raw("bob")
    c = await raw("carol")
    a.send({"type": "dm", "to": "BOB", "text": "psst", "id": 4})
    # the ack names the recipient as the server spells it (the client typed BOB)
    assert await a.recv_type("ack") == {"type": "ack", "ref": 4, "to": "bob"}
    dm = await b.recv_type("dm")
    assert (dm["from"], dm["to"], dm["text"]) == ("alice", "bob", "psst")
    a.send({"type": "dm", "to": "nobody", "text": "x", "id": 5})
    assert (await a.recv_type("error"))["code"] == "no_such_user"
    c.send({"type": "ping", "data": "sync"})
    frames = []
    while (f := await c.recv())["type"] != "pong":
        frames.append(f)
    assert all(f["type"] != "dm" for f in frames)


async def test_who_and_rooms(raw: Opener) -> None:
    """who lists a room's names; rooms lists every room with its member count."""
    a = await raw("alice")
    await raw("bob", rooms=["lobby", "dev"])
    a.send({"type": "who", "room": "lobby", "id": 1})
    assert await a.recv_type("who") == {
        "type": "who",
        "room": "lobby",
        "names": ["alice", "bob"],
        "ref": 1,
    }
    a.send({"type": "rooms", "id": 2})
    assert await a.recv_type("rooms") == {
        "type": "rooms",
        "ref": 2,
        "rooms": [{"name": "dev", "members": 1}, {"name": "lobby", "members": 2}],
    }
    a.send({"type": "who", "room": "nowhere"})
    assert (await a.recv_type("error"))["code"] == "room_invalid"


async def test_ping_is_answered_with_the_same_data(raw: Opener) -> None:
    """A client ping gets pong with the same data."""
    a = await raw("alice")
    a.send({"type": "ping", "data": {"n": [1, 2]}})
    assert await a.recv_type("pong") == {"type": "pong", "data": {"n": [1, 2]}}


async def test_malformed_frames_get_errors_and_the_connection_stays(raw: Opener) -> None:
    """Bad JSON, bad UTF-8, wrong types, unknown type, empty frame: an error each, and the
    connection goes on serving."""
    a = await raw("alice")
    b = await raw("bob")
    cases = [
        (b"{nope", "bad_frame"),
        (b'{"type":"say","room":"lobby","text":"\xff"}', "bad_frame"),
        (b'{"type":"say","room":"lobby","text":"\\udc00"}', "bad_frame"),
        (b"[1]", "bad_frame"),
        (b"", "bad_frame"),
        (b'{"type":"say","room":"lobby","text":5}', "bad_request"),
        (b'{"type":"say","room":"lobby","text":"a\\u0000b"}', "bad_request"),
        (b'{"type":"say","room":"lobby","text":""}', "bad_request"),
        (b'{"type":"fly"}', "unknown_type"),
        (b'{"type":"hello","name":"again","version":1}', "bad_request"),
        (b'{"type":"say","room":"lobby","text":"' + b"x" * 4001 + b'"}', "text_too_long"),
        (b"[" * 3000 + b"]" * 3000, "bad_frame"),
    ]
    for payload, code in cases:
        a.send_payload(payload)
        err = await a.recv_type("error")
        assert err["code"] == code, payload[:40]
    a.send({"type": "say", "room": "lobby", "text": "still here", "id": 1})
    assert (await a.recv_type("ack"))["seq"] == 1
    assert (await b.recv_type("message"))["text"] == "still here"


async def test_oversize_header_gets_frame_too_large_and_close(raw: Opener) -> None:
    """A length above max_frame is refused before reading the payload, and the server closes."""
    a = await raw("alice")
    a.send_bytes(struct.pack(">I", 65537))
    frames = await a.expect_closed()
    assert [f["type"] for f in frames][-2:] == ["error", "bye"]
    assert frames[-2]["code"] == "frame_too_large"


async def test_hello_timeout(make_server) -> None:  # type: ignore[no-untyped-def]
    """A client that sends no complete hello within handshake_timeout is closed."""
    async with make_server(handshake_timeout=0.3) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        c = RawClient(reader, writer)
        c.send_bytes(b"\x00\x00\x00\x30{")  # half a frame, then nothing
        frames = await c.expect_closed()
        assert frames and frames[0]["code"] == "timeout"
        await c.close()


async def test_abrupt_disconnect_mid_frame_while_others_chat(
    raw: Opener, server: ChatServer, caplog
) -> None:  # type: ignore[no-untyped-def]
    """A client that vanishes mid-frame is removed cleanly: left(disconnect), one log line,
    no traceback; the others keep chatting."""
    caplog.set_level(logging.INFO, logger="asyncchat")
    a = await raw("alice")
    b = await raw("bob")
    gone = await raw("gone")
    gone.send_bytes(b'\x00\x00\x00\x40{"type":"say"')  # mid-payload
    sock = gone.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    gone.writer.transport.abort()
    left = await a.recv_type("left")
    assert left == {"type": "left", "room": "lobby", "name": "gone", "reason": "disconnect"}
    a.send({"type": "say", "room": "lobby", "text": "anyone?", "id": 1})
    assert (await b.recv_type("message"))["text"] == "anyone?"
    assert "gone" not in server.members
    assert not [r for r in caplog.records if r.exc_info]
    assert any("gone disconnected" in r.getMessage() for r in caplog.records)


async def test_graceful_shutdown_sends_bye(make_server) -> None:  # type: ignore[no-untyped-def]
    """Closing the server sends bye(shutdown) to every client, then closes."""
    server = make_server()
    await server.start()
    reader, writer = await asyncio.open_connection(*server.address)
    c = RawClient(reader, writer)
    await c.hello("alice")
    await server.close()
    frames = await c.expect_closed()
    assert frames[-1] == {"type": "bye", "reason": "shutdown"}
    await c.close()


async def test_announce_and_kick(raw: Opener, server: ChatServer) -> None:
    """The host application posts as *server; a kicked user is told bye and the room left."""
    a = await raw("alice")
    b = await raw("bob")
    seq = await server.announce("lobby", "maintenance at noon")
    msg = await a.recv_type("message")
    assert (msg["from"], msg["seq"], msg["text"]) == ("*server", seq, "maintenance at noon")
    assert server.kick("BOB")
    frames = await b.expect_closed()
    assert frames[-1]["type"] == "bye" and frames[-1]["reason"] == "kicked"
    assert (await a.recv_type("left")) == {
        "type": "left",
        "room": "lobby",
        "name": "bob",
        "reason": "kicked",
    }
    assert not server.kick("nobody")


async def test_client_library(server: ChatServer) -> None:
    """The client library: requests return the server's answer; events arrive by iteration."""
    host, port = server.address
    async with connect(host, port, name="alice") as a, connect(host, port, name="bob") as b:
        ack = await a.say("lobby", "hello bob")
        async for event in b:
            if isinstance(event, Message):
                assert (event.seq, event.sender, event.text) == (ack.seq, "alice", "hello bob")
                break
        assert await a.who("lobby") == ["alice", "bob"]
        assert (await a.join("dev")).room == "dev"
        assert "dev" in a.joined
        assert (await b.nick("robert")).new == "robert" and b.name == "robert"
        assert (await a.dm("robert", "psst")).ref is not None
        assert [r.name for r in await b.rooms()] == ["dev", "lobby"]
    assert server.members == []


async def test_client_reports_server_going_away(make_server) -> None:  # type: ignore[no-untyped-def]
    """When the server shuts down, iteration ends and close_reason says bye."""
    server = make_server()
    await server.start()
    client = await connect(*server.address, name="alice")
    await server.close()
    async with asyncio.timeout(WAIT):
        async for _ in client:
            pass
    assert client.closed and client.bye is not None and client.bye.reason == "shutdown"
    assert "bye" in (client.close_reason or "")
    await client.close()


async def test_replies_queued_before_quit_are_delivered(raw: Opener) -> None:
    """A say and a quit in one write: the say is posted and its ack still reaches the sender."""
    a = await raw("alice")
    b = await raw("bob")
    a.send_bytes(
        b"".join(
            struct.pack(">I", len(p)) + p
            for p in (
                b'{"type":"say","room":"lobby","text":"last words","id":1}',
                b'{"type":"dm","to":"bob","text":"bye bob","id":2}',
                b'{"type":"quit"}',
            )
        )
    )
    frames = await a.expect_closed()
    assert [(f["type"], f.get("ref")) for f in frames if f["type"] == "ack"] == [
        ("ack", 1),
        ("ack", 2),
    ]
    assert (await b.recv_match(type="message"))["text"] == "last words"
    assert (await b.recv_match(type="left"))["reason"] == "quit"


async def test_malformed_first_frame_is_hello_required(raw: Opener) -> None:
    """A first frame that is not even JSON is not a hello: hello_required, then close."""
    c = await raw()
    c.send_payload(b"\xff\xfe garbage")
    frames = await c.expect_closed()
    assert frames[0]["code"] == "hello_required"
