"""Cluster mode: what the nodes share besides room messages (docs/cluster.md): rooms and their
member counts, direct messages, topics, away messages, names on rename, and bans; over a real
Redis (free loopback port, started and ended here) with the nodes in process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncchat.events import BanRequest, Unban

from .conftest import WAIT, RawClient
from .redis_fixture import RedisProcess, needs_redis, redis_process
from .test_cluster import Client, node, room_log

pytestmark = needs_redis


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A fresh redis-server with an append-only file."""
    (tmp_path / "redis").mkdir()
    with redis_process(tmp_path / "redis") as r:
        yield r


async def test_rooms_and_who_answer_for_every_node(redis: RedisProcess) -> None:
    """rooms on one node lists the rooms with members on any node, with the members of all
    nodes counted; who answers for a room that has members on another node only."""
    async with node(redis.url) as a, node(redis.url) as b:
        alice = await Client.open(a.address, "alice", rooms=["lobby", "Kitchen"])
        bob = await Client.open(b.address, "bob")
        async with asyncio.timeout(WAIT):
            while True:  # alice's joins come to B through the feed
                bob.send({"type": "rooms", "id": "r"})
                rooms = (await bob.until("rooms", ref="r"))["rooms"]
                if {"name": "Kitchen", "members": 1} in rooms:
                    break
                await asyncio.sleep(0.02)
        assert sorted(rooms, key=lambda r: r["name"]) == [
            {"name": "Kitchen", "members": 1},
            {"name": "lobby", "members": 2},
        ]
        bob.send({"type": "who", "room": "kitchen", "id": "w"})
        who = await bob.until("who", ref="w")
        assert (who["room"], who["names"]) == ("Kitchen", ["alice"])
        alice.send({"type": "leave", "room": "Kitchen"})
        async with asyncio.timeout(WAIT):
            while True:
                bob.send({"type": "rooms", "id": "r2"})
                rooms = (await bob.until("rooms", ref="r2"))["rooms"]
                if all(r["name"] != "Kitchen" for r in rooms):
                    break
                await asyncio.sleep(0.02)
        for c in (alice, bob):
            await c.close()


async def test_a_dm_reaches_a_member_of_another_node(redis: RedisProcess) -> None:
    """A dm to a member connected to another node is delivered there, and acknowledged to the
    sender with the recipient's name; a name nobody has is still no_such_user."""
    async with node(redis.url) as a, node(redis.url) as b:
        bob = await Client.open(b.address, "bob")
        alice = await Client.open(a.address, "alice")
        alice.send({"type": "dm", "to": "BOB", "text": "psst", "id": 1})
        ack = await alice.until("ack", ref=1)
        assert ack["to"] == "bob"
        dm = await bob.until("dm")
        assert (dm["from"], dm["to"], dm["text"]) == ("alice", "bob", "psst")
        bob.send({"type": "dm", "to": "alice", "text": "hi back", "id": 2})
        await bob.until("ack", ref=2)
        assert (await alice.until("dm"))["text"] == "hi back"
        alice.send({"type": "dm", "to": "nobody", "text": "?", "id": 3})
        assert (await alice.until("error", ref=3))["code"] == "no_such_user"
        for c in (alice, bob):
            await c.close()


async def test_a_topic_set_on_one_node_reaches_the_others_at_once(redis: RedisProcess) -> None:
    """A topic set on node A is pushed to the room's members on node B, and B gives it to a
    member who joins there afterwards; clearing it is pushed too."""
    async with node(redis.url) as a, node(redis.url) as b:
        bob = await Client.open(b.address, "bob")
        alice = await Client.open(a.address, "alice")
        alice.send({"type": "topic", "room": "lobby", "text": "soup day", "id": "t"})
        await alice.until("topic", ref="t")
        pushed = await bob.until("topic", room="lobby")
        assert (pushed["text"], pushed["by"]) == ("soup day", "alice")
        carol = await Client.open(b.address, "carol")
        assert (await carol.until("topic", room="lobby"))["text"] == "soup day"
        alice.send({"type": "topic", "room": "lobby", "text": "", "id": "c"})
        await alice.until("topic", ref="c")
        assert "text" not in await bob.until("topic", room="lobby")
        alice.send({"type": "join", "room": "Kitchen"})
        alice.send({"type": "topic", "room": "Kitchen", "text": "knives", "id": "k"})
        await alice.until("topic", ref="k")
        async with asyncio.timeout(WAIT):
            while True:  # a room with members on A only: B answers from the cluster
                bob.send({"type": "topic", "room": "kitchen", "id": "q"})
                f = await bob.recv()
                while f.get("ref") != "q":
                    f = await bob.recv()
                if f["type"] == "topic" and f.get("text") == "knives":
                    break
                await asyncio.sleep(0.02)
        assert f["room"] == "Kitchen" and f["by"] == "alice"
        for c in (alice, bob, carol):
            await c.close()


async def test_away_is_seen_on_every_node(redis: RedisProcess) -> None:
    """An away message set on node A is pushed to those sharing a room on node B, listed by
    who there, and returned in the ack of a dm sent from B."""
    async with node(redis.url) as a, node(redis.url) as b:
        bob = await Client.open(b.address, "bob")
        alice = await Client.open(a.address, "alice")
        await bob.until("joined", name="alice")
        alice.send({"type": "away", "message": "at lunch", "id": "a"})
        await alice.until("away", ref="a")
        assert (await bob.until("away", name="alice"))["message"] == "at lunch"
        bob.send({"type": "who", "room": "lobby", "id": "w"})
        assert (await bob.until("who", ref="w"))["away"] == {"alice": "at lunch"}
        bob.send({"type": "dm", "to": "alice", "text": "there?", "id": "d"})
        assert (await bob.until("ack", ref="d"))["away"] == "at lunch"
        alice.send({"type": "away", "id": "b"})
        await alice.until("away", ref="b")
        assert "message" not in await bob.until("away", name="alice")
        for c in (alice, bob):
            await c.close()


async def test_a_nick_to_a_name_held_on_another_node_is_refused(redis: RedisProcess) -> None:
    """nick to a name a member of another node has (any case) is answered name_taken at once;
    the member keeps its name and its connection."""
    async with node(redis.url) as a, node(redis.url) as b:
        bob = await Client.open(b.address, "bob")
        alice = await Client.open(a.address, "alice")
        await bob.until("joined", name="alice")
        alice.send({"type": "nick", "name": "BOB", "id": "n"})
        assert (await alice.until("error", ref="n"))["code"] == "name_taken"
        alice.send({"type": "say", "room": "lobby", "text": "still here", "id": "s"})
        await alice.until("ack", ref="s")
        assert (await bob.until("message"))["from"] == "alice"
        bob.send({"type": "quit"})
        await bob.expect_closed()
        async with asyncio.timeout(WAIT):
            while True:  # free once bob's leaving reached A
                alice.send({"type": "nick", "name": "bob", "id": "m"})
                f = await alice.recv()
                while f.get("ref") != "m":
                    f = await alice.recv()
                if f["type"] == "renamed":
                    break
                if f["code"] == "rate_limited":  # this loop's own retries, on a slow machine
                    await asyncio.sleep(f["retry_after"])
                    continue
                assert f["code"] == "name_taken"
                await asyncio.sleep(0.02)
        await alice.close()


async def _hello(address: tuple[str, int], name: str) -> dict[str, object]:
    reader, writer = await asyncio.open_connection(*address)
    c = RawClient(reader, writer)
    c.send({"type": "hello", "name": name, "version": 1})
    try:
        return await c.recv()
    finally:
        await c.close()


async def test_a_ban_on_one_node_is_enforced_by_every_node(redis: RedisProcess) -> None:
    """A ban made on node A disconnects the banned member on node B at once, B refuses its
    hello, a node started afterwards refuses it too, and lifting the ban on A frees it on
    B."""
    async with node(redis.url) as a, node(redis.url) as b:
        mallory = await Client.open(b.address, "mallory")
        await a.moderation.handle(BanRequest(name="Mallory", reason="spam"), by="op", operator=True)
        frames = await mallory.expect_closed(timeout=WAIT)
        assert frames[-1]["type"] == "bye" and frames[-1]["reason"] == "banned"
        refused = await _hello(b.address, "mallory")
        assert refused["type"] == "error" and refused["code"] == "banned"
        async with node(redis.url) as c:
            assert (await _hello(c.address, "mallory"))["code"] == "banned"
            [ban] = a.moderation.bans.active()
            await a.moderation.handle(Unban(ban=ban.id), by="op", operator=True)
            async with asyncio.timeout(WAIT):
                while b.moderation.bans.active() or c.moderation.bans.active():
                    await asyncio.sleep(0.02)
            assert (await _hello(b.address, "mallory"))["type"] == "welcome"


async def test_history_days_drops_old_messages_in_redis_and_every_mirror(
    redis: RedisProcess,
) -> None:
    """With history_days, a node drops the messages older than that from its mirror and from
    the room's log in Redis: a joiner on another node no longer gets them, and a resume from
    before them is answered truncated."""
    days = 1.0 / 86400  # one second
    async with node(redis.url, history_days=days) as a, node(redis.url, history_days=days) as b:
        alice = await Client.open(a.address, "alice")
        alice.send({"type": "say", "room": "lobby", "text": "old", "id": 1})
        await alice.until("ack", ref=1)
        await asyncio.sleep(1.5)
        alice.send({"type": "say", "room": "lobby", "text": "new", "id": 2})
        await alice.until("ack", ref=2)
        async with asyncio.timeout(WAIT):
            while await room_log(redis.url) != {2: ("alice", "new")}:
                await asyncio.sleep(0.05)
        bob = await Client.open(b.address, "bob", resume={"lobby": 0})
        end = await bob.until("history_end", room="lobby")
        assert sorted(bob.seen) == [2] and end["truncated"] is True
        for c in (alice, bob):
            await c.close()


async def test_what_members_do_while_redis_is_away_reaches_the_other_nodes_after(
    redis: RedisProcess,
) -> None:
    """Redis killed and restarted on its files within the lease: a join and an away message
    made on node B meanwhile are told to node A once Redis is back (kept, not dropped)."""
    async with node(redis.url, lease=5 * WAIT) as a, node(redis.url, lease=5 * WAIT) as b:
        alice = await Client.open(a.address, "alice")
        bob = await Client.open(b.address, "bob")
        redis.kill()
        bob.send({"type": "join", "room": "Kitchen"})
        await bob.until("joined", room="Kitchen")
        bob.send({"type": "away", "message": "brb", "id": "a"})
        await bob.until("away", ref="a")
        await asyncio.sleep(0.3)  # B tried to tell the cluster, and could not
        redis.start()
        async with asyncio.timeout(3 * WAIT):
            while True:
                alice.send({"type": "rooms", "id": "r"})
                rooms = (await alice.until("rooms", ref="r"))["rooms"]
                if {"name": "Kitchen", "members": 1} in rooms:
                    break
                await asyncio.sleep(0.05)
        alice.send({"type": "who", "room": "lobby", "id": "w"})
        assert (await alice.until("who", ref="w"))["away"] == {"bob": "brb"}
        for c in (alice, bob):
            await c.close()
