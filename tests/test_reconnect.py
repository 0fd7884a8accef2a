"""The client library reconnecting by itself, over real sockets: a server is stopped and a new
one started on the same port and SQLite file, and the client comes back missing nothing,
repeating nothing, and posting every say exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from asyncchat import (
    ChatServer,
    Client,
    ConfigError,
    ConnectionClosed,
    Joined,
    Left,
    Message,
    Reconnected,
    Reconnecting,
    connect,
)
from asyncchat.backends.sqlite import SQLiteStore
from asyncchat.client import StreamEvent
from asyncchat.events import HistoryEnd
from asyncchat.tui import Terminal

from .conftest import WAIT, RawClient

NO_FLOOD: dict[str, Any] = {"rate": 1e6, "burst": 1_000_000}
#: Short reconnection delays, so that the tests do not wait on backoff.
FAST: dict[str, Any] = {"reconnect": True, "backoff_initial": 0.05, "backoff_max": 0.2}


class Place:
    """Servers on one port and one history file, started and stopped at will."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = str(tmp_path / "h.db")
        self.port = 0
        self.servers: list[ChatServer] = []

    async def start(self, *, elsewhere: bool = False, **kw: Any) -> ChatServer:
        """A server on the place's port (the first one picks it), or ``elsewhere`` (a port of
        its own, where the clients under test do not look) on the same file."""
        options: dict[str, Any] = {"db": self.db, **NO_FLOOD, **kw}
        server = ChatServer("127.0.0.1", 0 if elsewhere else self.port, **options)
        await server.start()
        self.servers.append(server)
        if not elsewhere and not self.port:
            self.port = server.address[1]
        return server

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def close(self) -> None:
        for server in self.servers:
            await server.close()


@pytest.fixture
async def place(tmp_path: Path) -> AsyncIterator[Place]:
    p = Place(tmp_path)
    try:
        yield p
    finally:
        await p.close()


async def until(
    client: Client, pred: Callable[[StreamEvent], bool], seen: list[StreamEvent] | None = None
) -> list[StreamEvent]:
    """The events up to and including the first for which ``pred`` is true (also appended to
    ``seen``)."""
    got: list[StreamEvent] = []
    async with asyncio.timeout(WAIT):
        while True:
            event = await client.next_event()
            got.append(event)
            if seen is not None:
                seen.append(event)
            if pred(event):
                return got


def is_(cls: type[Any]) -> Callable[[StreamEvent], bool]:
    return lambda event: isinstance(event, cls)


def messages(events: list[StreamEvent]) -> list[Message]:
    return [e for e in events if isinstance(e, Message)]


async def post(server: ChatServer, texts: list[str], room: str = "lobby") -> list[int]:
    """Post ``texts`` as ``poster`` on ``server``; their seqs."""
    async with connect(*server.address, name="poster", rooms=[room]) as poster:
        return [(await poster.say(room, text)).seq or 0 for text in texts]


async def test_missed_messages_arrive_once_in_order_then_live(place: Place) -> None:
    """Messages posted while away arrive once, in order, as history, then Reconnected, then live."""
    first = await place.start()
    bob = await connect(*place.address, name="bob", **FAST)
    seen: list[StreamEvent] = []
    await until(bob, is_(HistoryEnd), seen)
    await post(first, ["one", "two", "three"])
    await until(bob, lambda e: isinstance(e, Message) and e.text == "three", seen)
    await first.close()
    lost = await until(bob, is_(Reconnecting), seen)
    assert lost[-1] == Reconnecting(1, lost[-1].delay, "server said bye: shutdown")  # type: ignore[union-attr]
    assert not bob.connected and not bob.closed

    away = await place.start(elsewhere=True)  # the same history, where bob does not look
    assert await post(away, [f"away {i}" for i in range(5)]) == [4, 5, 6, 7, 8]
    await away.close()

    second = await place.start()
    back = await until(bob, is_(Reconnected), seen)
    assert back[-1] == Reconnected(missed=5, truncated=False)
    replayed = messages(back)
    assert [(m.seq, m.text, m.history) for m in replayed] == [
        (4 + i, f"away {i}", True) for i in range(5)
    ]
    assert not any(isinstance(e, Joined) and e.name == "bob" for e in back)
    assert bob.connected and bob.joined == {"lobby"}

    await post(second, ["live"])
    await until(bob, lambda e: isinstance(e, Message) and e.text == "live", seen)
    got = messages(seen)
    assert [m.seq for m in got] == list(range(1, 10))
    assert got[-1].history is False
    await bob.close()


async def test_say_while_disconnected_is_posted_once_and_acked(place: Place) -> None:
    """A say (and a query) made while disconnected is sent once back in and resolves."""
    first = await place.start()
    bob = await connect(*place.address, name="bob", **FAST)
    await until(bob, is_(HistoryEnd))
    await first.close()
    await until(bob, is_(Reconnecting))
    say = asyncio.create_task(bob.say("lobby", "typed while away"))
    who = asyncio.create_task(bob.who("lobby"))
    await asyncio.sleep(0)
    assert not say.done()

    second = await place.start()
    async with asyncio.timeout(WAIT):
        ack = await say
        assert await who == ["bob"]
    assert ack.seq == 1
    async with connect(*second.address, name="carol") as carol:
        page = await carol.history("lobby", after=0)
    assert [(m.seq, m.sender, m.text) for m in page.messages] == [(1, "bob", "typed while away")]
    await bob.close()


class _GatedStore(SQLiteStore):
    """A real SQLite store whose commits wait until the gate opens (on the writer thread: the
    gate must not block the event loop)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, writer="thread")
        self.gate = threading.Event()
        self.gate.set()

    def _commit(self, db: Any, records: Any) -> None:  # type: ignore[override]
        self.gate.wait(timeout=30)
        super()._commit(db, records)


async def test_say_unacked_at_the_loss_is_posted_once(place: Place) -> None:
    """A say stored but unacked when the server went down is re-sent, not posted twice."""
    store = _GatedStore(place.db)
    first = await place.start(store=store)
    bob = await connect(*place.address, name="bob", **FAST)
    await until(bob, is_(HistoryEnd))
    store.gate.clear()
    say = asyncio.create_task(bob.say("lobby", "in flight"))
    room = first.hub.room("lobby")
    assert room is not None
    async with asyncio.timeout(WAIT):
        while room.seq < 1:  # the server has it, and is storing it
            await asyncio.sleep(0.01)
    closing = asyncio.create_task(first.close())
    async with asyncio.timeout(WAIT):
        while "bob" in first.members:  # bob's connection is being closed: no ack can reach it
            await asyncio.sleep(0)
    store.gate.set()
    await closing
    assert not say.done()

    second = await place.start()
    back = await until(bob, is_(Reconnected))
    async with asyncio.timeout(WAIT):
        ack = await say
    assert ack.seq == 1
    # The stored copy is replayed (the client cannot tell it is its own until the ack).
    assert [(m.seq, m.text) for m in messages(back)] == [(1, "in flight")]
    async with connect(*second.address, name="carol") as carol:
        page = await carol.history("lobby", after=0)
        assert [m.text for m in page.messages] == ["in flight"]
        assert (await bob.say("lobby", "next")).seq == 2
    await bob.close()


async def test_gap_larger_than_a_page_is_paged_without_gap_or_duplicate(place: Place) -> None:
    """A gap of many pages is paged in while live messages wait: each seq once, in order."""
    first = await place.start(history_page_max=5)
    bob = await connect(*place.address, name="bob", rooms=["lobby", "dev"], **FAST)
    seen: list[StreamEvent] = []
    await until(bob, is_(HistoryEnd), seen)
    await until(bob, is_(HistoryEnd), seen)
    await post(first, ["a", "b"])
    await post(first, ["d1"], room="dev")
    await until(bob, lambda e: isinstance(e, Message) and e.room == "dev", seen)
    await first.close()
    await until(bob, is_(Reconnecting), seen)

    away = await place.start(elsewhere=True, history_page_max=5)
    await post(away, [f"away {i}" for i in range(23)])
    await post(away, [f"dev away {i}" for i in range(7)], room="dev")
    await away.close()

    second = await place.start(history_page_max=5)
    async with asyncio.timeout(WAIT):
        while "bob" not in second.members:
            await asyncio.sleep(0.005)
    await post(second, ["live 1", "live 2", "live 3"])  # while bob pages, most likely
    back = await until(bob, is_(Reconnected), seen)
    await until(bob, lambda e: isinstance(e, Message) and e.text == "live 3", seen)
    lobby = [m.seq for m in messages(seen) if m.room == "lobby"]
    dev = [m.seq for m in messages(seen) if m.room == "dev"]
    assert lobby == list(range(1, 29))
    assert dev == list(range(1, 9))
    assert isinstance(back[-1], Reconnected)
    replayed = messages(back)  # live messages wait until the client caught up
    assert back[-1].missed == len(replayed) >= 23 + 7 and all(m.history for m in replayed)
    await bob.close()


async def test_truncated_when_retention_dropped_missed_messages(place: Place) -> None:
    """When retention dropped some missed messages, the rest come and Reconnected is truncated."""
    first = await place.start(history_max=10)
    bob = await connect(*place.address, name="bob", **FAST)
    await until(bob, is_(HistoryEnd))
    await post(first, ["one", "two", "three"])
    await until(bob, lambda e: isinstance(e, Message) and e.seq == 3)
    await first.close()
    await until(bob, is_(Reconnecting))

    away = await place.start(elsewhere=True, history_max=10)
    await post(away, [f"away {i}" for i in range(30)])
    assert away.store is not None
    away.store.prune_now()  # type: ignore[attr-defined]
    await away.close()

    await place.start(history_max=10)
    back = await until(bob, is_(Reconnected))
    assert back[-1] == Reconnected(missed=10, truncated=True)
    assert [m.seq for m in messages(back)] == list(range(24, 34))
    await bob.close()


async def test_server_without_history_restarting_is_followed(tmp_path: Path) -> None:
    """A server without history restarts its seqs; its new messages still reach the client."""
    first = ChatServer("127.0.0.1", 0, **NO_FLOOD)
    await first.start()
    port = first.address[1]
    bob = await connect(*first.address, name="bob", **FAST)
    await post(first, ["one", "two"])
    await until(bob, lambda e: isinstance(e, Message) and e.seq == 2)
    await first.close()
    await until(bob, is_(Reconnecting))
    async with ChatServer("127.0.0.1", port, **NO_FLOOD) as second:
        back = await until(bob, is_(Reconnected))
        # The server says its numbering restarted (history_end.reset): what the old one had
        # last is gone, so the client cannot say nothing was missed.
        assert back[-1] == Reconnected(missed=0, truncated=True)
        assert not messages(back)
        await post(second, ["new one"])
        event = (await until(bob, is_(Message)))[-1]
        assert isinstance(event, Message) and (event.seq, event.text) == (1, "new one")
        await bob.close()


async def test_history_reset_under_the_client_is_followed(tmp_path: Path) -> None:
    """A server whose history was reset (here: a new database) says reset on resume: the
    client takes the room from the start and says older messages were not kept."""
    first = ChatServer("127.0.0.1", 0, db=str(tmp_path / "old.db"), **NO_FLOOD)
    await first.start()
    port = first.address[1]
    bob = await connect(*first.address, name="bob", **FAST)
    await post(first, ["one", "two", "three"])
    await until(bob, lambda e: isinstance(e, Message) and e.seq == 3)
    await first.close()
    await until(bob, is_(Reconnecting))
    new_db = str(tmp_path / "new.db")
    async with ChatServer("127.0.0.1", 0, db=new_db, **NO_FLOOD) as elsewhere:
        await post(elsewhere, ["fresh"])  # seq 1 of a history that never had 2 or 3
    async with ChatServer("127.0.0.1", port, db=new_db, **NO_FLOOD) as second:
        back = await until(bob, is_(Reconnected))
        assert [(m.seq, m.text) for m in messages(back)] == [(1, "fresh")]
        assert back[-1] == Reconnected(missed=1, truncated=True)
        await post(second, ["after"])
        event = (await until(bob, is_(Message)))[-1]
        assert isinstance(event, Message) and (event.seq, event.text) == (2, "after")
        await bob.close()


async def test_name_held_by_a_dead_connection_is_reclaimed(place: Place) -> None:
    """A name held by a connection that stopped answering is won back by reconnecting."""
    server = await place.start()
    bob = await connect(*place.address, name="bob", **FAST)
    await until(bob, is_(HistoryEnd))
    carol = await connect(*place.address, name="carol")
    reader, writer = await asyncio.open_connection(*place.address)
    ghost = RawClient(reader, writer)
    member = server.member("bob")
    assert member is not None
    # The server drops bob's connection and, before bob can be back, another connection takes
    # the name; from then on it reads nothing and answers nothing.
    server.hub.evict(member, "timeout", "dropped by the test")
    ghost.send({"type": "hello", "name": "bob", "version": 1})
    assert (await ghost.recv())["type"] == "welcome"

    back = await until(bob, is_(Reconnected))
    assert back[-1] == Reconnected(missed=0, truncated=False)
    assert bob.name == "bob" and bob.connected
    frames = await ghost.expect_closed(timeout=2 * WAIT)
    assert frames[-1] == {"type": "bye", "reason": "timeout", "message": frames[-1]["message"]}
    left = await until(carol, lambda e: isinstance(e, Left) and e.reason == "timeout")
    assert isinstance(left[-1], Left) and left[-1].name == "bob"
    assert (await bob.say("lobby", "back")).seq == 1
    await ghost.close()
    await carol.close()
    await bob.close()


async def test_refused_hello_stops_reconnecting(place: Place) -> None:
    """A refusal other than name_taken ends reconnecting; pending requests fail."""
    await place.start()
    bob = await connect(*place.address, name="bob", rooms=["lobby", "dev"], **FAST)
    await place.servers[0].close()
    await until(bob, is_(Reconnecting))
    say = asyncio.create_task(bob.say("lobby", "never"))
    await place.start(max_rooms_per_client=1)
    async with asyncio.timeout(WAIT):
        async for _ in bob:
            pass
    assert bob.closed and "too_many_rooms" in (bob.close_reason or "")
    with pytest.raises(ConnectionClosed):
        await say
    await bob.close()


async def test_kicked_client_does_not_reconnect(place: Place) -> None:
    """A kick is final: no Reconnecting, and close_reason says kicked."""
    server = await place.start()
    bob = await connect(*place.address, name="bob", **FAST)
    assert server.kick("bob")
    async with asyncio.timeout(WAIT):
        events = [e async for e in bob]
    assert not any(isinstance(e, Reconnecting) for e in events)
    assert bob.closed and "kicked" in (bob.close_reason or "")


async def test_without_reconnect_the_stream_ends_as_before(place: Place) -> None:
    """Without reconnect, a lost connection ends the stream and requests fail, as before."""
    first = await place.start()
    bob = await connect(*place.address, name="bob")
    await first.close()
    async with asyncio.timeout(WAIT):
        events = [e async for e in bob]
    assert not any(isinstance(e, Reconnecting | Reconnected) for e in events)
    assert bob.closed and bob.close_reason == "server said bye: shutdown"
    await place.start()
    with pytest.raises(ConnectionClosed):
        await bob.say("lobby", "too late")
    assert place.servers[-1].members == []
    await bob.close()


async def test_gives_up_after_give_up_seconds(place: Place) -> None:
    """After give_up seconds without a server the client closes, saying so, failing what waited."""
    first = await place.start()
    bob = await connect(*place.address, name="bob", give_up=0.3, **FAST)
    await first.close()
    await until(bob, is_(Reconnecting))
    say = asyncio.create_task(bob.say("lobby", "never"))
    async with asyncio.timeout(WAIT):
        rest = [e async for e in bob]
    assert all(isinstance(e, Reconnecting) for e in rest)
    assert bob.closed and "gave up" in (bob.close_reason or "")
    with pytest.raises(ConnectionClosed):
        await say
    await bob.close()


async def test_history_pages_are_answers_not_stream_events(place: Place) -> None:
    """history() returns its page; its messages are not in the event stream."""
    server = await place.start()
    bob = await connect(*place.address, name="bob")
    await until(bob, is_(HistoryEnd))
    await post(server, [f"m{i}" for i in range(6)])
    await until(bob, lambda e: isinstance(e, Message) and e.seq == 6)
    page = await bob.history("lobby", after=0, limit=4)
    assert [m.seq for m in page.messages] == [1, 2, 3, 4] and page.more and not page.truncated
    assert all(m.history for m in page.messages)
    page = await bob.history("lobby", before=3)
    assert [m.seq for m in page.messages] == [1, 2] and not page.more
    await post(server, ["live"])
    event = (await until(bob, is_(Message)))[-1]
    assert isinstance(event, Message) and (event.seq, event.history) == (7, False)
    await bob.close()


async def test_bad_backoff_settings_are_refused() -> None:
    """Backoff or give-up settings that make no sense are a ConfigError, before dialling."""
    for bad in ({"backoff_initial": 0}, {"backoff_initial": 2, "backoff_max": 1}, {"give_up": -1}):
        with pytest.raises(ConfigError):
            await connect("127.0.0.1", 9, name="bob", reconnect=True, **bad)


def test_terminal_says_lost_once_and_back_with_what_was_missed() -> None:
    """The terminal shows one line per loss (not per attempt) and one when back."""
    lines: list[str] = []
    term = Terminal(cast(Client, None), lines.append, "lobby")
    for event in (
        Reconnecting(1, 0.1, "server said bye: shutdown"),
        Reconnecting(2, 0.3, "cannot connect to 127.0.0.1:9: Connection refused"),
        Reconnected(3, False),
        Reconnecting(1, 0.0, "connection lost: \x1b[2J"),
        Reconnected(0, False),
        Reconnected(1, True),
        Reconnected(0, True),
    ):
        term.show(event)
    assert lines == [
        "-- connection lost (server said bye: shutdown); reconnecting…",
        "-- back, 3 missed messages",
        "-- connection lost (connection lost: \\x1b[2J); reconnecting…",
        "-- back, nothing missed",
        "-- back, 1 missed message; older ones were not kept",
        "-- back; messages sent meanwhile were not kept",
    ]


async def test_server_that_stops_answering_is_left_for_a_live_one() -> None:
    """A server that goes silent is dropped after an unanswered ping and dialled again."""
    writers: list[asyncio.StreamWriter] = []

    async def zombie(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        n = int.from_bytes(await reader.readexactly(4), "big")
        await reader.readexactly(n)
        welcome = (
            b'{"type":"welcome","name":"bob","version":1,"server":"zombie","rooms":["lobby"],'
            b'"limits":{"max_frame":65536,"max_text":4000,"ping_interval":0.2,'
            b'"ping_timeout":0.3}}'
        )
        writer.write(len(welcome).to_bytes(4, "big") + welcome)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):  # alive at TCP level, silent at ours
                pass

    zserver = await asyncio.start_server(zombie, "127.0.0.1", 0)
    port = zserver.sockets[0].getsockname()[1]
    bob = await connect("127.0.0.1", port, name="bob", **FAST)
    lost = await until(bob, is_(Reconnecting))
    assert lost[-1].reason == "the server did not answer a ping"  # type: ignore[union-attr]
    zserver.close()
    for w in writers:
        w.transport.abort()
    await zserver.wait_closed()
    async with ChatServer("127.0.0.1", port, **NO_FLOOD) as server:
        async with asyncio.timeout(WAIT):
            while bob.welcome is None or bob.welcome.server == "zombie":
                await until(bob, is_(Reconnected))
        assert server.members == ["bob"]
        assert (await bob.say("lobby", "here")).seq == 1
        await bob.close()
