"""History and resume over real sockets and a real SQLite file: acknowledged messages are never
lost, seq never repeats, and a client that comes back misses nothing."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from asyncchat import ChatServer, connect
from asyncchat.backends.sqlite import SQLiteStore

from .conftest import WAIT, RawClient

NO_FLOOD: dict[str, Any] = {"rate": 1e6, "burst": 1_000_000}


@pytest.fixture
async def hserver(tmp_path: Path) -> AsyncIterator[ChatServer]:
    """A server with history in a fresh SQLite file."""
    async with ChatServer("127.0.0.1", 0, db=str(tmp_path / "h.db"), **NO_FLOOD) as s:
        yield s


async def _raw(
    server: ChatServer | tuple[str, int], name: str | None = None, **hello: Any
) -> RawClient:
    address = server.address if isinstance(server, ChatServer) else server
    reader, writer = await asyncio.open_connection(*address)
    c = RawClient(reader, writer)
    if name is not None:
        await c.hello(name, **hello)
    return c


async def _until_end(
    c: RawClient, room: str = "lobby"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The history messages of ``room`` up to its history_end, and that history_end."""
    msgs = []
    while True:
        f = await c.recv()
        if f["type"] == "message" and f.get("history") and f["room"] == room:
            msgs.append(f)
        elif f["type"] == "history_end" and f["room"] == room:
            return msgs, f


async def _post(c: RawClient, n: int, prefix: str, room: str = "lobby") -> list[int]:
    """Send n messages with ids and return their acked seqs."""
    for i in range(n):
        c.send({"type": "say", "room": room, "text": f"{prefix} {i}", "id": f"{prefix}-{i}"})
    seqs = []
    while len(seqs) < n:
        f = await c.recv()
        if f["type"] == "ack":
            seqs.append(f["seq"])
    return seqs


async def test_welcome_says_history_and_join_replays_recent_messages(hserver: ChatServer) -> None:
    """With history, welcome says so, and a joiner gets the last history_on_join messages,
    marked history, then history_end with more=true when older ones exist."""
    a = await _raw(hserver, "alice")
    await _until_end(a)
    assert await _post(a, 60, "m") == list(range(1, 61))
    b = await _raw(hserver)
    welcome = await b.hello("bob")
    assert welcome["history"] is True
    msgs, end = await _until_end(b)
    assert [m["seq"] for m in msgs] == list(range(11, 61))
    assert msgs[0] == {
        "type": "message",
        "room": "lobby",
        "seq": 11,
        "from": "alice",
        "text": "m 10",
        "ts": msgs[0]["ts"],
        "history": True,
    }
    assert end == {"type": "history_end", "room": "lobby", "more": True}


async def test_resume_replays_exactly_what_was_missed_then_live(hserver: ChatServer) -> None:
    """A client that comes back with resume gets exactly the N messages it missed, in order,
    marked history, then history_end, then live traffic: no duplicate, no gap."""
    a = await _raw(hserver, "alice")
    await _until_end(a)
    seen = await _post(a, 3, "before")
    b = await _raw(hserver, "bob")
    await _until_end(b)
    await b.close()
    missed = await _post(a, 25, "while-away")
    c = await _raw(hserver, "bob", resume={"lobby": seen[-1]})
    msgs, end = await _until_end(c)
    assert [m["seq"] for m in msgs] == missed
    assert [m["text"] for m in msgs] == [f"while-away {i}" for i in range(25)]
    assert end == {"type": "history_end", "room": "lobby", "more": False}
    live = await _post(a, 2, "live")
    got = [await c.recv_match(type="message") for _ in range(2)]
    assert [m["seq"] for m in got] == live and not any(m.get("history") for m in got)


async def test_resume_of_a_large_gap_is_paged(tmp_path: Path) -> None:
    """A gap larger than history_page_max is replayed one page at a time: more=true, and
    history after= fetches the rest, with no gap."""
    async with ChatServer(
        "127.0.0.1", 0, db=str(tmp_path / "h.db"), history_page_max=40, **NO_FLOOD
    ) as server:
        a = await _raw(server, "alice")
        await _until_end(a)
        await _post(a, 100, "x")
        c = await _raw(server, "bob", resume={"lobby": 0})
        msgs, end = await _until_end(c)
        got = [m["seq"] for m in msgs]
        assert got == list(range(1, 41)) and end["more"] is True
        while end["more"]:
            c.send({"type": "history", "room": "lobby", "after": got[-1], "id": "page"})
            msgs, end = await _until_end(c)
            assert end["ref"] == "page"
            got += [m["seq"] for m in msgs]
        assert got == list(range(1, 101))


async def test_truncated_history_is_reported(tmp_path: Path) -> None:
    """When retention dropped some of what a client asks for, history_end says truncated."""
    store_path = str(tmp_path / "h.db")
    async with ChatServer("127.0.0.1", 0, db=store_path, history_max=10, **NO_FLOOD) as server:
        a = await _raw(server, "alice")
        await _until_end(a)
        await _post(a, 30, "r")
        assert server.store is not None
        server.store.prune_now()  # type: ignore[attr-defined]
        c = await _raw(server, "bob", resume={"lobby": 5})
        msgs, end = await _until_end(c)
        assert [m["seq"] for m in msgs] == list(range(21, 31))
        assert end == {"type": "history_end", "room": "lobby", "more": False, "truncated": True}
        c.send({"type": "history", "room": "lobby", "after": 25, "id": 1})
        msgs, end = await _until_end(c)
        assert [m["seq"] for m in msgs] == list(range(26, 31)) and "truncated" not in end
        c.send({"type": "history", "room": "lobby", "before": 25, "limit": 100, "id": 2})
        msgs, end = await _until_end(c)
        assert [m["seq"] for m in msgs] == list(range(21, 25))
        assert end["more"] is False and end["truncated"] is True


async def test_resume_without_history_reports_the_gap(raw) -> None:  # type: ignore[no-untyped-def]
    """Without history nothing is replayed, and history_end says whether anything was missed."""
    a = await raw("alice")
    a.send({"type": "say", "room": "lobby", "text": "x", "id": 1})
    await a.recv_match(type="ack")
    c = await raw()
    await c.hello("bob", resume={"lobby": 0})
    assert (await c.recv_match(type="history_end")) == {
        "type": "history_end",
        "room": "lobby",
        "more": False,
        "truncated": True,
    }
    d = await raw()
    await d.hello("carol", resume={"lobby": 1})
    assert (await d.recv_match(type="history_end"))["truncated"] is False


async def test_history_paging_in_both_directions(hserver: ChatServer) -> None:
    """Over 3,000 messages, history pages backwards (before) and forwards (after) cover every
    message exactly once; limit is capped by history_page_max."""
    a = await _raw(hserver, "alice")
    await _until_end(a)
    total = 3000
    for start in range(0, total, 500):
        for i in range(start, start + 500):
            a.send({"type": "say", "room": "lobby", "text": f"p{i}"})
        for _ in range(500):
            await a.recv_match(type="ack")
    # backwards from the newest, 500 at a time (the request asks for more: capped)
    back: list[int] = []
    before = None
    while True:
        req: dict[str, Any] = {"type": "history", "room": "lobby", "limit": 10_000, "id": "b"}
        if before is not None:
            req["before"] = before
        a.send(req)
        msgs, end = await _until_end(a)
        assert len(msgs) <= 500
        back = [m["seq"] for m in msgs] + back
        if not end["more"]:
            break
        before = msgs[0]["seq"]
    assert back == list(range(1, total + 1))
    fwd: list[int] = []
    after = 0
    while True:
        a.send({"type": "history", "room": "lobby", "after": after, "limit": 777, "id": "f"})
        msgs, end = await _until_end(a)
        fwd += [m["seq"] for m in msgs]
        if not end["more"]:
            break
        after = msgs[-1]["seq"]
    assert fwd == list(range(1, total + 1))
    a.send({"type": "history", "room": "elsewhere", "id": 3})
    assert (await a.recv_match(type="error"))["code"] == "not_in_room"


async def test_resent_id_is_posted_once(hserver: ChatServer) -> None:
    """A say re-sent with the same id by the same name (on the same connection, or after a
    reconnect) is posted once; the re-send gets the original ack."""
    a = await _raw(hserver, "alice")
    await _until_end(a)
    b = await _raw(hserver, "bob")
    await _until_end(b)
    say = {"type": "say", "room": "lobby", "text": "only once", "id": "uniq-1"}
    a.send(say)
    a.send(say)  # before the first is even stored
    acks = [await a.recv_match(type="ack") for _ in range(2)]
    assert acks[0]["seq"] == acks[1]["seq"] and acks[0]["ts"] == acks[1]["ts"]
    await a.close()
    a2 = await _raw(hserver, "alice")
    await _until_end(a2)
    a2.send(say)
    assert (await a2.recv_match(type="ack"))["seq"] == acks[0]["seq"]
    a2.send({"type": "say", "room": "lobby", "text": "different", "id": "uniq-2"})
    assert (await a2.recv_match(type="ack"))["seq"] == acks[0]["seq"] + 1
    b.send({"type": "ping"})
    texts = []
    while (f := await b.recv())["type"] != "pong":
        if f["type"] == "message":
            texts.append(f["text"])
    assert texts == ["only once", "different"]


async def test_dead_connection_name_is_reclaimed(hserver: ChatServer) -> None:
    """A name held by a connection that answers no ping goes to the new connection asking for
    it; the old one is told timeout, and its rooms see left(timeout)."""
    ghost = await _raw(hserver, "bob")  # from now on it reads nothing and answers nothing
    watcher = await _raw(hserver, "watcher")
    await asyncio.sleep(1.1)  # RECLAIM_QUIET: the holder has been silent for a while
    c = await _raw(hserver)
    c.send({"type": "hello", "name": "bob", "version": 1})
    async with asyncio.timeout(WAIT):
        welcome = await c.recv_match(type="welcome")
    assert welcome["name"] == "bob"
    left = await watcher.recv_match(type="left", name="bob")
    assert left["reason"] == "timeout"
    frames = await ghost.expect_closed()
    assert [f["type"] for f in frames][-1] == "bye"
    # A holder that is alive keeps its name.
    live = await connect(*hserver.address, name="carol")
    await asyncio.sleep(1.1)
    d = await _raw(hserver)
    d.send({"type": "hello", "name": "carol", "version": 1})
    assert (await d.recv())["code"] == "name_taken"
    await live.close()


# ---------------------------------------------------------------- kill -9 and restart


def _die_with_parent() -> None:
    """In the child: if the test process dies (a killed run), take the server with it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(db: Path, durability: str = "process") -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncchat",
            "serve",
            "--port",
            "0",
            "--no-web",
            "--db",
            str(db),
            "--durability",
            durability,
            "--rate",
            "1000000",
            "--burst",
            "1000000",
            "--log-level",
            "info",
        ],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        preexec_fn=_die_with_parent,
    )
    assert proc.stderr is not None
    for _ in range(50):
        line = proc.stderr.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise AssertionError("the server did not start")


@pytest.mark.parametrize("durability", ["process", "power"])
async def test_acked_messages_survive_kill_9_and_seq_continues(
    tmp_path: Path, durability: str
) -> None:
    """A server killed with SIGKILL while clients chat: a new server on the same file continues
    seq without repeats, and every acknowledged message is in the history exactly once."""
    db = tmp_path / "chat.db"
    proc, port = _spawn(db, durability)
    acked: dict[int, str] = {}
    try:
        senders = [await _raw(("127.0.0.1", port), f"s{k}") for k in range(3)]

        async def send(k: int, c: RawClient) -> None:
            try:
                for i in range(1_000_000):
                    c.send({"type": "say", "room": "lobby", "text": f"s{k}-{i}", "id": f"s{k}-{i}"})
                    if i % 50 == 49:
                        await c.writer.drain()
                        await asyncio.sleep(0)  # drain() does not yield below its high-water
            except ConnectionError:
                return

        async def read_acks(c: RawClient) -> None:
            try:
                while True:  # acks are what the server promised
                    f = await c.recv(timeout=5)
                    if f["type"] == "ack":
                        acked[f["seq"]] = f["ref"]
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                return

        writers = [asyncio.create_task(send(k, c)) for k, c in enumerate(senders)]
        tasks = [asyncio.create_task(read_acks(c)) for c in senders]
        async with asyncio.timeout(4 * WAIT):
            while len(acked) < 3000:
                await asyncio.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # mid-flight: messages are queued and committing
        proc.wait(timeout=WAIT)
        async with asyncio.timeout(2 * WAIT):
            await asyncio.gather(*tasks)
        for w in writers:
            w.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert acked
    proc, port = _spawn(db)
    try:
        c = await _raw(("127.0.0.1", port), "after")
        c.send({"type": "say", "room": "lobby", "text": "after the crash", "id": "z"})
        new_seq = (await c.recv_match(type="ack"))["seq"]
        assert new_seq > max(acked)
        await c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncchat",
            "history",
            "--db",
            str(db),
            "--room",
            "lobby",
            "--format",
            "jsonl",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT,
    )
    stored = [json.loads(line) for line in out.stdout.splitlines()]
    seqs = [m["seq"] for m in stored]
    assert seqs == sorted(set(seqs)), "a seq repeats"
    by_seq = {m["seq"]: m["text"] for m in stored}
    for seq, ref in acked.items():
        assert by_seq.get(seq) == ref, f"acked message {seq} ({ref}) lost"
    texts = [m["text"] for m in stored]
    assert len(texts) == len(set(texts)), "a message was stored twice"
    assert by_seq[new_seq] == "after the crash"


def test_transcript_export_text_and_since(tmp_path: Path) -> None:
    """asyncchat history prints a readable transcript (escaped), or jsonl; --since filters;
    an unknown room or a missing database is a clear error."""
    db = tmp_path / "t.db"

    async def fill() -> None:
        async with (
            ChatServer("127.0.0.1", 0, db=str(db), **NO_FLOOD) as server,
            connect(*server.address, name="alice") as a,
        ):
            await a.say("lobby", "hello\x1b[31m")
            await a.say("lobby", "waves", action=True)

    asyncio.run(fill())
    run = [sys.executable, "-m", "asyncchat", "history", "--db", str(db)]
    text = subprocess.run(
        [*run, "--room", "LOBBY"], capture_output=True, text=True, check=True, timeout=WAIT
    ).stdout.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d #lobby <alice> hello\\x1b\[31m", text[0])
    assert text[1].endswith("#lobby * alice waves")
    later = subprocess.run(
        [*run, "--room", "lobby", "--since", "2999-01-01"],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT,
    )
    assert later.stdout == ""
    missing = subprocess.run(
        [*run, "--room", "nowhere"], capture_output=True, text=True, timeout=WAIT
    )
    assert missing.returncode == 1 and "nowhere" in missing.stderr
    nodb = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncchat",
            "history",
            "--db",
            str(tmp_path / "none.db"),
            "--room",
            "lobby",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert nodb.returncode == 2 and "no history database" in nodb.stderr
    assert "Traceback" not in missing.stderr + nodb.stderr


class _GatedStore(SQLiteStore):
    """A real SQLite store whose commits wait until the gate opens (on the writer thread: the
    gate must not block the event loop)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, writer="thread")
        self.gate = threading.Event()

    def _commit(self, db: Any, records: Any) -> None:  # type: ignore[override]
        self.gate.wait(timeout=30)
        super()._commit(db, records)


async def test_no_ack_and_no_fan_out_before_the_message_is_stored(tmp_path: Path) -> None:
    """The sender's ack and the others' message wait for the commit: what a client saw
    acknowledged (or received) is in the database."""
    store = _GatedStore(str(tmp_path / "g.db"))
    async with ChatServer("127.0.0.1", 0, store=store) as server:
        store.gate.set()
        a = await _raw(server, "alice")
        await _until_end(a)
        b = await _raw(server, "bob")
        await _until_end(b)
        store.gate.clear()
        a.send({"type": "say", "room": "lobby", "text": "held", "id": "h"})
        with pytest.raises(TimeoutError):
            await a.recv_match(type="ack", timeout=0.3)
        with pytest.raises(TimeoutError):
            await b.recv_match(type="message", timeout=0.1)
        store.gate.set()
        ack = await a.recv_match(type="ack")
        assert (await b.recv_match(type="message"))["seq"] == ack["seq"]
        assert [r.text for r in store.export("lobby")] == ["held"]


class _FailingStore(SQLiteStore):
    """A real SQLite store whose disk 'fails' once ``broken`` is set."""

    broken = False

    def _commit(self, db: Any, records: Any) -> None:  # type: ignore[override]
        if self.broken:
            raise sqlite3.OperationalError("disk I/O error")
        super()._commit(db, records)


async def test_a_failed_store_refuses_messages_instead_of_hanging(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """When the disk fails, the error is logged and new messages are refused with
    history_unavailable: nothing is acknowledged that was not stored."""
    store = _FailingStore(str(tmp_path / "f.db"))
    async with ChatServer("127.0.0.1", 0, store=store) as server:
        a = await _raw(server, "alice")
        await _until_end(a)
        store.broken = True
        a.send({"type": "say", "room": "lobby", "text": "lost?", "id": 1})
        async with asyncio.timeout(WAIT):
            while store.failed is None:
                await asyncio.sleep(0.01)
        a.send({"type": "say", "room": "lobby", "text": "refused", "id": 2})
        err = await a.recv_match(type="error", ref=2)
        assert (err["code"], err["ref"]) == ("history_unavailable", 2)
        assert "history write failed" in caplog.text
        with pytest.raises(TimeoutError):
            await a.recv_match(type="ack", timeout=0.2)


@pytest.mark.parametrize("writer", ["loop", "thread"])
async def test_messages_in_flight_when_the_store_fails_are_refused(
    tmp_path: Path, writer: str
) -> None:
    """A say being stored when the disk fails is answered history_unavailable (with its ref),
    never left waiting for an ack, on either writer; a quit then leaves at once."""
    store = _FailingStore(str(tmp_path / "f.db"), writer=writer)
    async with ChatServer("127.0.0.1", 0, store=store) as server:
        a = await _raw(server, "alice")
        await _until_end(a)
        store.broken = True
        for i in range(3):
            a.send({"type": "say", "room": "lobby", "text": f"lost {i}", "id": i})
        for i in range(3):
            err = await a.recv_match(type="error", ref=i)
            assert err["code"] == "history_unavailable"
        member = server.member("alice")
        assert member is not None and member.inflight == 0


class _LateFanOutStore(SQLiteStore):
    """A real store whose commits reach the database, but whose report to the hub (and so the
    fan-out) waits while ``hold`` is set."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.hold = False
        self.held: list[Any] = []

    def _committed(self, batch: Any) -> None:
        if self.hold:
            self.held.append(batch)
        else:
            super()._committed(batch)

    def release(self) -> None:
        self.hold = False
        for batch in self.held:
            super()._committed(batch)
        self.held.clear()


async def test_a_stored_message_not_yet_fanned_out_is_not_replayed_too(tmp_path: Path) -> None:
    """A client joining while a message is in the database but not yet fanned out gets it live,
    once: replay stops at what was fanned out."""
    store = _LateFanOutStore(str(tmp_path / "l.db"))
    async with ChatServer("127.0.0.1", 0, store=store) as server:
        a = await _raw(server, "alice")
        await _until_end(a)
        await _post(a, 2, "early")
        store.hold = True
        a.send({"type": "say", "room": "lobby", "text": "in the window", "id": "w"})
        async with asyncio.timeout(WAIT):
            while not store.held:
                await asyncio.sleep(0.01)
        b = await _raw(server, "bob")
        msgs, _ = await _until_end(b)
        assert [m["seq"] for m in msgs] == [1, 2]
        store.release()
        live = await b.recv_match(type="message")
        assert (live["seq"], live["text"], live.get("history")) == (3, "in the window", None)
        b.send({"type": "ping"})
        rest = []
        while (f := await b.recv())["type"] != "pong":
            rest.append(f)
        assert not [f for f in rest if f["type"] == "message"]


async def test_quit_right_after_say_still_gets_the_ack(hserver: ChatServer) -> None:
    """With history, a say and a quit in one write: the ack still comes before the close, and
    the others see the message before the left."""
    a = await _raw(hserver, "alice")
    await _until_end(a)
    b = await _raw(hserver, "bob")
    await _until_end(b)
    a.send({"type": "say", "room": "lobby", "text": "last words", "id": 1})
    a.send({"type": "quit"})
    frames = await a.expect_closed()
    assert [f["ref"] for f in frames if f["type"] == "ack"] == [1]
    seen = [await b.recv() for _ in range(2)]
    assert [(f["type"], f.get("text") or f.get("reason")) for f in seen] == [
        ("message", "last words"),
        ("left", "quit"),
    ]


async def test_same_id_in_another_room_is_another_message(hserver: ChatServer) -> None:
    """Idempotency is per room: an id reused in another room posts a new message."""
    a = await _raw(hserver, "alice", rooms=["lobby", "dev"])
    await _until_end(a)
    await _until_end(a, "dev")
    a.send({"type": "say", "room": "lobby", "text": "one", "id": "same"})
    a.send({"type": "say", "room": "dev", "text": "two", "id": "same"})
    acks = [await a.recv_match(type="ack") for _ in range(2)]
    assert [(x["room"], x["seq"]) for x in acks] == [("lobby", 1), ("dev", 1)]


async def test_resume_past_the_servers_history_says_reset(tmp_path: Path) -> None:
    """A client that saw seqs this history never had (the server lost its history) gets the
    room from the start, and history_end says reset."""
    async with ChatServer("127.0.0.1", 0, db=":memory:", **NO_FLOOD) as server:
        a = await _raw(server, "alice")
        await _until_end(a)
        await _post(a, 3, "new")
        c = await _raw(server, "bob", resume={"lobby": 500})
        msgs, end = await _until_end(c)
        assert [m["seq"] for m in msgs] == [1, 2, 3]
        assert end == {"type": "history_end", "room": "lobby", "more": False, "reset": True}


async def test_truncated_when_retention_removed_everything(tmp_path: Path) -> None:
    """When every message of a room has expired, a join replay says truncated."""
    async with ChatServer(
        "127.0.0.1", 0, db=str(tmp_path / "d.db"), history_days=1e-5, **NO_FLOOD
    ) as server:  # about a second
        a = await _raw(server, "alice")
        await _until_end(a)
        await _post(a, 3, "old")
        await asyncio.sleep(1.2)
        assert server.store is not None
        server.store.prune_now()  # type: ignore[attr-defined]
        c = await _raw(server, "bob")
        msgs, end = await _until_end(c)
        assert msgs == [] and end == {
            "type": "history_end",
            "room": "lobby",
            "more": False,
            "truncated": True,
        }


async def test_a_replay_bigger_than_the_outbox_is_paged_not_evicted(tmp_path: Path) -> None:
    """Replays are bounded in bytes: long messages, many rooms and big resume pages come in
    pages with more=true, and the client is never taken for a slow consumer."""
    async with ChatServer(
        "127.0.0.1", 0, db=str(tmp_path / "b.db"), max_outbox=64 * 1024, **NO_FLOOD
    ) as server:
        rooms = [f"r{i}" for i in range(10)]
        a = await _raw(server, "alice", rooms=rooms)
        for room in rooms:
            await _until_end(a, room)
        big = "é" * 3000
        for room in rooms:
            for i in range(20):
                a.send({"type": "say", "room": room, "text": f"{i} {big}"})
        for _ in range(200):
            await a.recv_match(type="ack")
        b = await _raw(server)
        await b.hello("bob", rooms=rooms)  # 10 rooms x 20 long messages: ~1.2 MB of replay
        ends = {}
        got = 0
        while len(ends) < len(rooms):
            f = await b.recv()
            if f["type"] == "history_end":
                ends[f["room"]] = f
            elif f["type"] == "message":
                got += 1
            assert f["type"] != "bye", f
        assert 0 < got < 200 and any(e["more"] for e in ends.values())
        c = await _raw(server, "carol", resume={"r0": 0})
        msgs, end = await _until_end(c, "r0")
        seqs = [m["seq"] for m in msgs]
        while end["more"]:
            c.send({"type": "history", "room": "r0", "after": seqs[-1], "limit": 500, "id": "p"})
            msgs, end = await _until_end(c, "r0")
            seqs += [m["seq"] for m in msgs]
        assert seqs == list(range(1, 21))
        assert server.member("bob") is not None and server.member("carol") is not None


def test_operator_console_survives_a_refused_announcement() -> None:
    """A plain console line the server refuses (no such room) prints the error, no crash."""
    import io
    from contextlib import redirect_stdout

    from asyncchat.cli import _operator_command

    async def run() -> str:
        async with ChatServer("127.0.0.1", 0) as server:
            out = io.StringIO()
            with redirect_stdout(out):
                await _operator_command(server, "/say nowhere hello", asyncio.Event())
                server.hub.rooms.pop("lobby")  # as if announcing failed
                await _operator_command(server, "plain line", asyncio.Event())
            return out.getvalue()

    out = asyncio.run(run())
    assert out.count("room_invalid") == 2
