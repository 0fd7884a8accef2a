"""Room topics, away messages and search, over real sockets (and a real SQLite file)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from asyncchat import ChatServer, connect
from asyncchat.backends.sqlite import MIGRATIONS
from asyncchat.errors import ServerError

from .conftest import Opener, RawClient

NO_FLOOD: dict[str, Any] = {"rate": 1e6, "burst": 1_000_000}


async def _raw(server: ChatServer, name: str, **hello: Any) -> RawClient:
    reader, writer = await asyncio.open_connection(*server.address)
    c = RawClient(reader, writer)
    await c.hello(name, **hello)
    return c


async def _say_all(c: RawClient, texts: list[str], room: str = "lobby") -> None:
    for i, text in enumerate(texts):
        c.send({"type": "say", "room": room, "text": text, "id": f"s{i}"})
    for _ in texts:
        await c.recv_type("ack")


# ---------------------------------------------------------------- topic


async def test_topic_is_announced_given_on_join_and_readable(raw: Opener) -> None:
    """Setting a topic tells every member (the setter with its ref); a joiner gets it right
    after its joined; anyone may read it."""
    alice = await raw("alice")
    bob = await raw("bob")
    alice.send({"type": "topic", "room": "lobby", "text": "release day", "id": "t1"})
    mine = await alice.recv_type("topic")
    assert mine["ref"] == "t1" and mine["text"] == "release day" and mine["by"] == "alice"
    theirs = await bob.recv_type("topic")
    assert theirs["text"] == "release day" and "ref" not in theirs
    carol = await raw()
    await carol.hello("carol")
    assert (await carol.recv())["type"] == "joined"
    joined_topic = await carol.recv()
    assert joined_topic["type"] == "topic" and joined_topic["text"] == "release day"
    carol.send({"type": "topic", "room": "LOBBY", "id": 2})
    got = await carol.recv_type("topic")
    assert got["ref"] == 2 and got["text"] == "release day" and got["room"] == "lobby"


async def test_topic_cleared_refused_and_errors(raw: Opener) -> None:
    """An empty text clears the topic; setting needs membership and one line; reading a room
    that does not exist is room_invalid."""
    alice = await raw("alice")
    alice.send({"type": "join", "room": "dev", "id": 0})
    await alice.recv_match(type="joined", room="dev")
    alice.send({"type": "topic", "room": "dev", "text": "x", "id": 1})
    await alice.recv_match(type="topic", ref=1)
    alice.send({"type": "topic", "room": "dev", "text": "", "id": 2})
    cleared = await alice.recv_match(type="topic", ref=2)
    assert "text" not in cleared
    bob = await raw("bob")
    bob.send({"type": "topic", "room": "dev", "text": "mine now", "id": 3})
    assert (await bob.recv_type("error"))["code"] == "not_in_room"
    bob.send({"type": "topic", "room": "lobby", "text": "two\nlines", "id": 4})
    err = await bob.recv_type("error")
    assert err["code"] == "bad_request" and err["ref"] == 4
    bob.send({"type": "topic", "room": "nowhere", "id": 5})
    assert (await bob.recv_type("error"))["code"] == "room_invalid"


async def test_topic_outlives_the_room_and_a_restart_with_history(tmp_path: Path) -> None:
    """With history, a topic is stored with the room: it is there after the last member left
    and after the server restarted."""
    db = str(tmp_path / "t.db")
    async with (
        ChatServer("127.0.0.1", 0, db=db) as server,
        connect(*server.address, name="alice", rooms=["dev"]) as alice,
    ):
        topic = await alice.topic("dev", "ship it")
        assert topic.text == "ship it" and topic.by == "alice"
        await alice.leave("dev")
        again = await alice.join("dev")
        assert again.room == "dev"
        assert (await alice.topic("dev")).text == "ship it"
    async with ChatServer("127.0.0.1", 0, db=db) as server:
        c = await _raw(server, "bob", rooms=["dev"])
        await c.recv_type("joined")
        after = await c.recv()
        assert after["type"] == "topic" and after["text"] == "ship it" and after["by"] == "alice"
        await c.close()


# ---------------------------------------------------------------- away


async def test_away_is_announced_listed_by_who_and_returned_to_a_dm(raw: Opener) -> None:
    """away tells those who share a room, who lists the message, a dm to an away user gets
    it in its ack; away without a message is back."""
    alice = await raw("alice")
    bob = await raw("bob")
    bob.send({"type": "away", "message": "at lunch", "id": "a"})
    assert await bob.recv_type("away") == {
        "type": "away",
        "name": "bob",
        "message": "at lunch",
        "ref": "a",
    }
    assert await alice.recv_type("away") == {"type": "away", "name": "bob", "message": "at lunch"}
    alice.send({"type": "who", "room": "lobby", "id": 1})
    who = await alice.recv_type("who")
    assert who["names"] == ["alice", "bob"] and who["away"] == {"bob": "at lunch"}
    alice.send({"type": "dm", "to": "BOB", "text": "ping", "id": 2})
    ack = await alice.recv_type("ack")
    assert ack == {"type": "ack", "ref": 2, "to": "bob", "away": "at lunch"}
    bob.send({"type": "away", "id": "b"})
    assert "message" not in await bob.recv_match(type="away", ref="b")
    assert await alice.recv_type("away") == {"type": "away", "name": "bob"}
    alice.send({"type": "dm", "to": "bob", "text": "back?", "id": 3})
    assert await alice.recv_type("ack") == {"type": "ack", "ref": 3, "to": "bob"}


async def test_away_unchanged_is_not_announced_again(raw: Opener) -> None:
    """Saying away with the same message again answers the requester only."""
    alice = await raw("alice")
    bob = await raw("bob")
    for ref in (1, 2):
        bob.send({"type": "away", "message": "brb", "id": ref})
        await bob.recv_match(type="away", ref=ref)
    await alice.recv_type("away")
    alice.send({"type": "ping", "data": "mark"})
    assert (await alice.recv())["type"] == "pong"  # no second away came before it


async def test_client_library_away_and_who_away(server: ChatServer) -> None:
    """The library's away() and who_away() carry the message."""
    async with (
        connect(*server.address, name="alice") as alice,
        connect(*server.address, name="bob") as bob,
    ):
        assert (await bob.away("gone fishing")).message == "gone fishing"
        reply = await alice.who_away("lobby")
        assert reply.away == {"bob": "gone fishing"}
        assert (await alice.dm("bob", "hi")).away == "gone fishing"
        assert (await bob.away()).message is None


# ---------------------------------------------------------------- search


async def test_search_answers_newest_first_then_history_end(tmp_path: Path) -> None:
    """search returns the matching messages of the room, newest first, marked history, then
    history_end with the request's ref; more says older ones match too."""
    async with ChatServer("127.0.0.1", 0, db=str(tmp_path / "s.db"), **NO_FLOOD) as server:
        alice = await _raw(server, "alice")
        await alice.recv_type("history_end")
        texts = ["deploy the Café", "lunch?", "deploy failed", "café deploy fixed", "bye"]
        await _say_all(alice, texts)
        alice.send({"type": "search", "room": "lobby", "words": "deploy cafe", "id": "q"})
        found = [await alice.recv(), await alice.recv()]
        assert [(f["type"], f["seq"], f["history"]) for f in found] == [
            ("message", 4, True),
            ("message", 1, True),
        ]
        end = await alice.recv()
        assert end == {"type": "history_end", "room": "lobby", "more": False, "ref": "q"}
        alice.send({"type": "search", "room": "lobby", "words": "DEPLOY", "limit": 2, "id": 2})
        seqs = [(await alice.recv())["seq"] for _ in range(2)]
        assert seqs == [4, 3]
        assert (await alice.recv())["more"] is True
        await alice.close()


async def test_search_errors(tmp_path: Path, raw: Opener) -> None:
    """Without history search is history_unavailable; without words bad_request; in a room
    one is not in, not_in_room."""
    alice = await raw("alice")
    alice.send({"type": "search", "room": "lobby", "words": "x", "id": 1})
    assert (await alice.recv_type("error"))["code"] == "history_unavailable"
    async with ChatServer("127.0.0.1", 0, db=str(tmp_path / "e.db")) as server:
        bob = await _raw(server, "bob")
        bob.send({"type": "search", "room": "lobby", "words": "  ", "id": 2})
        assert (await bob.recv_type("error"))["code"] == "bad_request"
        bob.send({"type": "search", "room": "dev", "words": "x", "id": 3})
        assert (await bob.recv_type("error"))["code"] == "not_in_room"
        bob.send({"type": "search", "room": "lobby", "words": '"quoted" AND NOT', "id": 4})
        assert (await bob.recv_type("history_end"))["ref"] == 4  # operators are plain words
        await bob.close()


async def test_search_covers_a_database_from_before_search_existed(tmp_path: Path) -> None:
    """A history database of the first schema is migrated: its old messages are searchable,
    and messages pruned by retention are no longer found."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO rooms VALUES ('lobby', 'lobby', 2)")
    conn.executemany(
        "INSERT INTO messages (room, seq, sender, text, ts) VALUES ('lobby', ?, 'old', ?, ?)",
        [(1, "ancient needle", 1.0), (2, "recent needle", 2e9)],
    )
    conn.commit()
    conn.close()
    async with ChatServer("127.0.0.1", 0, db=str(db), history_days=365 * 30) as server:
        server.store.prune_now()  # type: ignore[attr-defined]
        async with connect(*server.address, name="alice") as alice:
            page = await alice.search("lobby", "needle")
            assert [m.text for m in page.messages] == ["recent needle"]  # ts 1.0 was pruned
            ack = await alice.say("lobby", "fresh needle")
            page = await alice.search("lobby", "needle")
            assert [m.seq for m in page.messages] == [ack.seq, 2]
            store: Any = server.store
            for _ in range(500):  # the index is built in the background
                if store.index_pending() == 0:
                    break
                await asyncio.sleep(0.01)
            assert store.index_pending() == 0
            page = await alice.search("lobby", "needle")  # now from the index
            assert [m.seq for m in page.messages] == [ack.seq, 2]
    with sqlite3.connect(f"{db}-search") as conn:  # the index itself forgot the pruned message
        (n,) = conn.execute("SELECT count(*) FROM fts('needle')").fetchone()
    assert n == 2


async def test_client_library_search_refused_without_history(server: ChatServer) -> None:
    """The library's search() raises ServerError(history_unavailable) without history."""
    async with connect(*server.address, name="alice") as alice:
        with pytest.raises(ServerError) as info:
            await alice.search("lobby", "x")
        assert info.value.code == "history_unavailable"
