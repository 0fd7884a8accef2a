"""What one hostile client can cost the server, over real loopback sockets: each attack of
issue 14 is refused or bounded, other members keep chatting, and nothing logs a traceback."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asyncchat import ChatServer
from asyncchat.framing import MAX_ID, MAX_JSON_DEPTH

from .conftest import RawClient
from .test_limits import NO_FLOOD, _open, _still_chats


def _nested(depth: int) -> Any:
    data: Any = 1
    for _ in range(depth):
        data = [data]
    return data


@pytest.fixture
def no_traceback(caplog: pytest.LogCaptureFixture) -> Any:
    """Fails the test if the server logged anything with a traceback."""
    caplog.set_level(logging.INFO, logger="asyncchat")
    yield caplog
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_deep_json_is_bad_frame_and_the_connection_stays(
    make_server: Any, no_traceback: Any
) -> None:
    """A ping whose data nests past MAX_JSON_DEPTH is bad_frame (not a traceback); one within
    the bound is echoed in the pong."""
    async with make_server() as server:
        c = await _open(server, "deep")
        c.send({"type": "ping", "data": _nested(300), "id": "p"})
        err = await c.recv_type("error")
        assert err["code"] == "bad_frame" and err["ref"] == "p"
        c.send({"type": "ping", "data": _nested(MAX_JSON_DEPTH - 1)})
        assert (await c.recv_type("pong"))["data"] == _nested(MAX_JSON_DEPTH - 1)
        await _still_chats(server)


async def test_a_long_request_id_is_refused_and_nothing_is_posted(make_server: Any) -> None:
    """An id longer than MAX_ID is bad_request without a ref (it is not echoed), and the say
    is not posted; an id of MAX_ID characters is fine."""
    async with make_server() as server:
        a = await _open(server, "alice")
        b = await _open(server, "bob")
        a.send({"type": "say", "room": "lobby", "text": "x", "id": "i" * (MAX_ID + 1)})
        err = await a.recv_type("error")
        assert err["code"] == "bad_request" and "ref" not in err
        a.send({"type": "say", "room": "lobby", "text": "ok", "id": "i" * MAX_ID})
        assert (await a.recv_type("ack"))["ref"] == "i" * MAX_ID
        assert (await b.recv_type("message"))["text"] == "ok"  # the refused one never came


async def test_a_nick_storm_is_rate_limited(make_server: Any) -> None:
    """nick has a bucket of its own: past nick_burst, rate_limited with retry_after, and the
    name does not change; says are not affected."""
    async with make_server(nick_burst=2, nick_rate=0.1) as server:
        c = await _open(server, "n0")
        for i in (1, 2):
            c.send({"type": "nick", "name": f"n{i}", "id": i})
            assert (await c.recv_type("renamed"))["new"] == f"n{i}"
        c.send({"type": "nick", "name": "n3", "id": 3})
        err = await c.recv_type("error")
        assert err["code"] == "rate_limited" and err["ref"] == 3 and err["retry_after"] > 5
        assert server.members == ["n2"]
        c.send({"type": "say", "room": "lobby", "text": "still talking", "id": "s"})
        assert (await c.recv_type("ack"))["ref"] == "s"


async def test_join_and_leave_share_a_bucket_and_a_flooder_is_disconnected(
    make_server: Any, no_traceback: Any
) -> None:
    """join and leave share join_burst; refusals in a row of any kind count toward
    max_rate_violations, after which the flooder is disconnected."""
    async with make_server(join_burst=3, join_rate=0.01, max_rate_violations=4) as server:
        c = await _open(server, "hopper")
        c.send({"type": "join", "room": "a", "id": 1})
        c.send({"type": "leave", "room": "a", "id": 2})
        c.send({"type": "join", "room": "b", "id": 3})
        assert (await c.recv_match(type="joined", ref=3))["room"] == "b"
        for i in range(3):
            c.send({"type": "join", "room": f"r{i}", "id": 10 + i})
            assert (await c.recv_type("error"))["code"] == "rate_limited"
        c.send({"type": "nick", "name": "hopper2", "id": 20})  # its own bucket: allowed
        await c.recv_match(type="renamed", ref=20)
        c.send({"type": "leave", "room": "b", "id": 21})  # the 4th refusal in a row? no:
        # the nick in between was accepted, so the count started over.
        assert (await c.recv_type("error"))["code"] == "rate_limited"
        for i in range(3):
            c.send({"type": "join", "room": f"s{i}", "id": 30 + i})
        frames = await c.expect_closed()
        assert [f.get("code") for f in frames if f["type"] == "error"][-1] == "rate_limited"
        assert frames[-1]["type"] == "bye"
        await _still_chats(server)


async def test_renames_in_a_large_room_are_not_broadcast(make_server: Any) -> None:
    """Above quiet_room_size, a room's members are not told of others' renames (as for
    joined/left); the renamer itself is."""
    async with make_server(quiet_room_size=2, **NO_FLOOD) as server:
        members: list[RawClient] = [await _open(server, f"m{i}") for i in range(3)]
        members[0].send({"type": "nick", "name": "renamed0", "id": "r"})
        assert (await members[0].recv_match(type="renamed", ref="r"))["new"] == "renamed0"
        members[1].send({"type": "ping", "data": "mark"})
        frames = []
        while (f := await members[1].recv())["type"] != "pong":
            frames.append(f)
        assert not [f for f in frames if f["type"] == "renamed"]


async def test_welcome_announces_the_request_rates(server: ChatServer) -> None:
    """welcome.limits carries nick_rate/nick_burst and join_rate/join_burst, so clients can pace
    themselves."""
    c = await _open(server)
    welcome = await c.hello("pacer")
    limits = server.limits
    for name in ("nick_rate", "nick_burst", "join_rate", "join_burst"):
        assert welcome["limits"][name] == getattr(limits, name)
