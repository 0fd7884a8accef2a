"""Cluster mode over real Redis servers (AOF, free loopback ports, started and ended here):
nodes in process, and ``asyncchat serve --redis`` subprocesses where one is killed or paused.

The checker (:func:`check`) holds every test that loses a node or Redis to the same promises:
every acknowledged message is in the room's log once, under its acked seq; the log's seqs have
no gap; no seq was ever seen with two texts; each client saw each room's seqs in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncchat import ChatServer

from .conftest import WAIT, RawClient
from .redis_fixture import RedisProcess, needs_redis, redis_process

pytestmark = needs_redis
redis_asyncio = pytest.importorskip("redis.asyncio")

NO_FLOOD = {"rate": 1_000_000.0, "burst": 1_000_000}
#: A short lease, so that dead and paused nodes are noticed within a test.
LEASE = 1.0


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A fresh redis-server with an append-only file, fsync always."""
    with redis_process(tmp_path / "redis") as r:
        yield r


@pytest.fixture(autouse=True)
def _redis_dir(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir(exist_ok=True)


@contextlib.asynccontextmanager
async def node(url: str, lease: float = LEASE, **options: Any) -> AsyncIterator[ChatServer]:
    async with ChatServer("127.0.0.1", 0, redis=url, redis_lease=lease, **NO_FLOOD, **options) as s:
        yield s


class Client(RawClient):
    """A raw client that logs what the checker needs: its acks and every message it saw."""

    acks: dict[Any, int]
    seen: dict[int, tuple[str, str]]
    #: The seqs of the messages this connection received and of its fresh acks, in order.
    order: list[int]
    #: Refs re-sent after a reconnect: their acks may repeat a seq seen already (not in order).
    resent: set[Any]

    @classmethod
    async def open(cls, address: tuple[str, int], name: str, **hello: Any) -> Client:
        """Connect and say hello, retrying while the name is still held elsewhere."""
        async with asyncio.timeout(3 * WAIT):
            while True:
                reader, writer = await asyncio.open_connection(*address)
                c = cls(reader, writer)
                c.acks, c.seen, c.order, c.resent = {}, {}, [], set()
                c.send({"type": "hello", "name": name, "version": 1, **hello})
                first = await c.recv()
                if first["type"] == "welcome":
                    return c
                assert first.get("code") == "name_taken", first
                await c.close()
                await asyncio.sleep(0.1)

    def note(self, f: dict[str, Any]) -> None:
        if f["type"] == "message":
            self.seen[f["seq"]] = (f["from"], f["text"])
            self.order.append(f["seq"])
        elif f["type"] == "ack" and "seq" in f:
            self.acks[f["ref"]] = f["seq"]
            if f["ref"] not in self.resent:
                self.order.append(f["seq"])

    async def pump(self) -> None:
        """Log every frame until the connection ends."""
        try:
            while True:
                self.note(await self.recv(timeout=60))
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return

    async def until(self, type_: str, **fields: Any) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                f = await self.recv()
                self.note(f)
                if f["type"] == type_ and all(f.get(k) == v for k, v in fields.items()):
                    return f


async def room_log(url: str, room: str = "lobby") -> dict[int, tuple[str, str]]:
    """seq -> (sender, text) of what Redis keeps of ``room``."""
    r = redis_asyncio.Redis.from_url(url, decode_responses=True)
    try:
        entries = await r.xrange(f"ac:log:{room}")
    finally:
        await r.aclose()
    return {int(i.split("-")[0]): (f["f"], f["t"]) for i, f in entries}


def check(log: dict[int, tuple[str, str]], clients: list[Client], texts: dict[Any, str]) -> None:
    """The checker: every acked message in the log once under its seq, no gap, no seq seen
    with two texts, each client's seqs increasing."""
    assert sorted(log) == list(range(1, len(log) + 1)), "the room's log has a gap"
    by_text = [t for _, t in log.values()]
    assert len(by_text) == len(set(by_text)), "a message was posted twice"
    acked = 0
    for c in clients:
        for ref, seq in c.acks.items():
            assert log[seq][1] == texts[ref], f"ack {ref} -> seq {seq} is not that message"
            acked += 1
        for seq, (_sender, text) in c.seen.items():
            assert log[seq][1] == text, f"seq {seq} was seen with another text"
        assert c.order == sorted(set(c.order)), "a seq twice or out of order on one connection"
    assert acked


async def test_a_message_on_one_node_reaches_the_other_with_the_same_seq(
    redis: RedisProcess,
) -> None:
    """Two nodes on one Redis: a say on A reaches B's member with the seq A's sender was acked,
    and the other way round; the numbering is the room's, across the nodes."""
    async with node(redis.url) as a, node(redis.url) as b:
        alice = await Client.open(a.address, "alice")
        bob = await Client.open(b.address, "bob")
        for i in range(5):
            alice.send({"type": "say", "room": "lobby", "text": f"a{i}", "id": i})
            bob.send({"type": "say", "room": "lobby", "text": f"b{i}", "id": i})
        for c in (alice, bob):
            for i in range(5):
                await c.until("ack", ref=i)
        for c, other in ((alice, bob), (bob, alice)):
            while len(c.seen) < 5:
                await c.until("message")
            sender, prefix = ("alice", "a") if other is alice else ("bob", "b")
            for ref, seq in other.acks.items():
                assert c.seen[seq] == (sender, f"{prefix}{ref}")
        assert sorted([*alice.acks.values(), *bob.acks.values()]) == list(range(1, 11))
        await alice.close()
        await bob.close()


async def test_names_are_unique_across_nodes_and_free_after_a_quit(redis: RedisProcess) -> None:
    """A name held on one node is refused on another (any case), and free there once its holder
    left."""
    async with node(redis.url) as a, node(redis.url) as b:
        alice = await Client.open(a.address, "alice")
        reader, writer = await asyncio.open_connection(*b.address)
        other = RawClient(reader, writer)
        other.send({"type": "hello", "name": "ALICE", "version": 1})
        refused = await other.recv()
        assert refused["type"] == "error" and refused["code"] == "name_taken"
        alice.send({"type": "quit"})
        await alice.expect_closed()
        async with asyncio.timeout(WAIT):
            while True:
                other.send({"type": "hello", "name": "ALICE", "version": 1})
                f = await other.recv()
                if f["type"] == "welcome":
                    break
                await asyncio.sleep(0.05)
        await other.close()


async def test_a_resend_on_another_node_is_posted_once(redis: RedisProcess) -> None:
    """A say re-sent with the same id on another node gets the original seq and posts nothing."""
    async with node(redis.url) as a, node(redis.url) as b:
        carol = await Client.open(b.address, "carol")
        alice = await Client.open(a.address, "alice")
        alice.send({"type": "say", "room": "lobby", "text": "once", "id": "x"})
        first = await alice.until("ack", ref="x")
        await alice.close()
        again = await Client.open(b.address, "alice")
        again.send({"type": "say", "room": "lobby", "text": "once", "id": "x"})
        again.send({"type": "say", "room": "lobby", "text": "then", "id": "y"})
        async with asyncio.timeout(WAIT):
            while len(again.acks) < 2:  # a re-send's ack may come before or after the new one
                again.note(await again.recv())
        assert again.acks == {"x": first["seq"], "y": first["seq"] + 1}
        await carol.until("message", text="then")
        assert [t for _, t in carol.seen.values()] == ["once", "then"]
        assert await room_log(redis.url) == {1: ("alice", "once"), 2: ("alice", "then")}
        await again.close()
        await carol.close()


async def test_join_and_resume_on_another_node_read_the_shared_history(
    redis: RedisProcess,
) -> None:
    """A client that posted on A gets the room's history on B: on join, and exactly what it
    missed on resume."""
    async with node(redis.url) as a:
        alice = await Client.open(a.address, "alice")
        for i in range(10):
            alice.send({"type": "say", "room": "lobby", "text": f"m{i}", "id": i})
        await alice.until("ack", ref=9)
        await alice.close()
        async with node(redis.url) as b:  # a node that starts later loads the room's log
            bob = await Client.open(b.address, "bob")
            await bob.until("history_end", room="lobby")
            assert sorted(bob.seen) == list(range(1, 11))
            back = await Client.open(b.address, "alice", resume={"lobby": 4})
            end = await back.until("history_end", room="lobby")
            assert sorted(back.seen) == list(range(5, 11)) and not end.get("reset")
            await back.close()
            await bob.close()


async def test_redis_restarted_with_its_data_loses_nothing_acked(redis: RedisProcess) -> None:
    """Redis killed and restarted on its append-only file: the nodes reconnect, seq continues
    above every acked one, and every acked message is still there (the restart is shorter than
    the nodes' lease: they keep their clients)."""
    async with node(redis.url, lease=5 * WAIT) as a, node(redis.url, lease=5 * WAIT) as b:
        alice = await Client.open(a.address, "alice")
        bob = await Client.open(b.address, "bob")
        texts = {i: f"before{i}" for i in range(20)}
        for i, t in texts.items():
            alice.send({"type": "say", "room": "lobby", "text": t, "id": i})
        await alice.until("ack", ref=19)
        redis.kill()
        redis.start()
        async with asyncio.timeout(3 * WAIT):
            while "z" not in alice.acks:  # refused (history_unavailable) until Redis is back
                alice.send({"type": "say", "room": "lobby", "text": "after", "id": "z"})
                with contextlib.suppress(TimeoutError):
                    while "z" not in alice.acks:
                        f = await alice.recv(timeout=0.5)
                        alice.note(f)
                        if f["type"] == "error":
                            assert f["code"] == "history_unavailable", f
                            break
                await asyncio.sleep(0.1)
        texts["z"] = "after"
        assert alice.acks["z"] == 21
        await bob.until("message", text="after")
        check(await room_log(redis.url), [alice, bob], texts)
        await alice.close()
        await bob.close()


async def test_redis_restarted_without_its_data_tells_clients_reset(tmp_path: Path) -> None:
    """A Redis that lost its data is noticed: clients get bye, and their resume is answered
    reset; nothing is acknowledged under a seq of the lost history."""
    with redis_process(tmp_path / "redis") as redis:
        async with node(redis.url) as a:
            alice = await Client.open(a.address, "alice")
            for i in range(5):
                alice.send({"type": "say", "room": "lobby", "text": f"m{i}", "id": i})
            await alice.until("ack", ref=4)
            redis.kill()
            redis.flush_files()
            redis.start()
            frames = await alice.expect_closed(timeout=3 * WAIT)
            assert frames[-1]["type"] == "bye"
            back = await Client.open(a.address, "alice", resume={"lobby": 5})
            end = await back.until("history_end", room="lobby")
            assert end["reset"] is True
            back.send({"type": "say", "room": "lobby", "text": "new", "id": "n"})
            assert (await back.until("ack", ref="n"))["seq"] == 1
            await back.close()


async def test_redis_away_longer_than_the_lease_fences_and_loses_nothing_acked(
    redis: RedisProcess,
) -> None:
    """Redis killed, kept down past the nodes' lease and restarted on its files: both nodes
    are fenced (their clients get bye), the clients come back on the other node and resume
    exactly what they missed (no reset), and the numbering goes on above every acked seq."""
    async with node(redis.url) as a, node(redis.url) as b:
        alice = await Client.open(a.address, "alice")
        bob = await Client.open(b.address, "bob")
        texts: dict[Any, str] = {i: f"m{i}" for i in range(10)}
        for i in range(5):
            alice.send({"type": "say", "room": "lobby", "text": texts[i], "id": i})
        await alice.until("ack", ref=4)
        while len(bob.seen) < 5:
            await bob.until("message")
        for i in range(5, 10):
            alice.send({"type": "say", "room": "lobby", "text": texts[i], "id": i})
        await alice.until("ack", ref=9)
        redis.kill()
        await asyncio.sleep(2 * LEASE)
        redis.start()
        for c in (alice, bob):
            frames = await c.expect_closed(timeout=3 * WAIT)
            assert frames[-1]["type"] == "bye"
            for f in frames:
                c.note(f)
        seen_by_bob = max(bob.seen)
        back_alice = await Client.open(b.address, "alice", resume={"lobby": 10})
        back_bob = await Client.open(a.address, "bob", resume={"lobby": seen_by_bob})
        for c in (back_alice, back_bob):
            end = await c.until("history_end", room="lobby")
            assert not end.get("reset")
        assert back_alice.seen == {}
        assert sorted(back_bob.seen) == list(range(seen_by_bob + 1, 11))
        back_alice.send({"type": "say", "room": "lobby", "text": "after", "id": "z"})
        texts["z"] = "after"
        assert (await back_alice.until("ack", ref="z"))["seq"] == 11
        await back_bob.until("message", text="after")
        back_alice.acks.update(alice.acks)
        check(await room_log(redis.url), [alice, bob, back_alice, back_bob], texts)
        for c in (back_alice, back_bob):
            await c.close()


async def test_redis_restarted_without_its_data_resets_every_node(tmp_path: Path) -> None:
    """Two nodes, Redis restarted without its files: the clients of both nodes get bye, their
    resume on the other node is answered reset, and the nodes share rooms and names again
    (who lists the members of both, a name is unique across them)."""
    with redis_process(tmp_path / "redis") as redis:
        async with node(redis.url) as a, node(redis.url) as b:
            alice = await Client.open(a.address, "alice")
            bob = await Client.open(b.address, "bob")
            alice.send({"type": "say", "room": "lobby", "text": "lost", "id": 1})
            await alice.until("ack", ref=1)
            redis.kill()
            redis.flush_files()
            redis.start()
            for c in (alice, bob):
                frames = await c.expect_closed(timeout=3 * WAIT)
                assert frames[-1]["type"] == "bye"
            alice = await Client.open(b.address, "alice", resume={"lobby": 1})
            bob = await Client.open(a.address, "bob", resume={"lobby": 1})
            for c in (alice, bob):
                assert (await c.until("history_end", room="lobby"))["reset"] is True
            async with asyncio.timeout(WAIT):
                while True:
                    alice.send({"type": "who", "room": "lobby", "id": "w"})
                    if sorted((await alice.until("who", ref="w"))["names"]) == ["alice", "bob"]:
                        break
                    await asyncio.sleep(0.02)
            reader, writer = await asyncio.open_connection(*b.address)
            twin = RawClient(reader, writer)
            twin.send({"type": "hello", "name": "Bob", "version": 1})
            assert (await twin.recv())["code"] == "name_taken"
            await twin.close()
            alice.send({"type": "say", "room": "lobby", "text": "new", "id": 2})
            assert (await alice.until("ack", ref=2))["seq"] == 1
            assert (await bob.until("message", text="new"))["seq"] == 1
            for c in (alice, bob):
                await c.close()


# --------------------------------------------------------------------------- subprocess nodes


class Node:
    """``asyncchat serve --redis URL`` in a subprocess, its port read from its log."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asyncchat",
                "serve",
                "--port",
                "0",
                "--redis",
                url,
                "--redis-lease",
                str(LEASE),
                "--rate",
                "1000000",
                "--burst",
                "1000000",
                "--log-level",
                "info",
                "--no-web",
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on 127.0.0.1:" in line:
                self.port = int(line.rsplit(":", 1)[1])
                break
        else:
            raise AssertionError("the node did not start")

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextlib.contextmanager
def nodes(url: str, n: int) -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for _ in range(n):
            started.append(Node(url))
        yield started
    finally:
        for s in started:
            s.stop()


async def test_kill_9_of_a_node_under_load_loses_no_acked_message(redis: RedisProcess) -> None:
    """Two nodes, senders on both, posting as fast as they may; node A is killed with SIGKILL.
    A's clients come back on B, resume and re-send what got no ack: the checker finds every
    acked message once, no gap, no seq reused, each client's seqs in order."""
    with nodes(redis.url, 2) as (a, b):
        texts: dict[Any, str] = {}
        watcher = await Client.open(b.address, "watcher")
        senders = [
            await Client.open(n.address, f"s{k}{i}") for k, n in enumerate((a, b)) for i in range(2)
        ]
        pumps = [asyncio.create_task(c.pump()) for c in [watcher, *senders]]
        sent: dict[str, list[str]] = {}

        async def post(c: Client, name: str) -> None:
            try:
                for i in range(1_000_000):
                    ref = f"{name}-{i}"
                    texts[ref] = ref
                    sent.setdefault(name, []).append(ref)
                    c.send({"type": "say", "room": "lobby", "text": ref, "id": ref})
                    if i % 20 == 19:
                        await c.writer.drain()
                        await asyncio.sleep(0.001)
            except ConnectionError:
                return

        names = [f"s{k}{i}" for k in range(2) for i in range(2)]
        posters = [asyncio.create_task(post(c, n)) for c, n in zip(senders, names, strict=True)]
        async with asyncio.timeout(6 * WAIT):
            while sum(len(c.acks) for c in senders) < 1500:
                await asyncio.sleep(0.01)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait()
        for p in posters:
            p.cancel()
        await asyncio.gather(*posters, return_exceptions=True)
        async with asyncio.timeout(2 * WAIT):
            await asyncio.gather(*pumps[1:3])  # A's senders lost their connection
        # A's clients come back on B under their names (free once A's lease expired), resume,
        # and re-send every say that got no ack.
        back = []
        for old, name in zip(senders[:2], names[:2], strict=True):
            last = max(old.order, default=0)
            c = await Client.open(b.address, name, resume={"lobby": last})
            c.acks = old.acks
            await c.until("history_end", room="lobby")
            for ref in sent[name]:
                if ref not in old.acks:
                    c.resent.add(ref)
                    c.send({"type": "say", "room": "lobby", "text": ref, "id": ref})
            back.append(c)
        for s in senders[2:]:
            s.send({"type": "say", "room": "lobby", "text": "end", "id": "end"})
            texts["end"] = "end"
            break
        async with asyncio.timeout(3 * WAIT):
            for c, name in zip(back, names[:2], strict=True):
                while len(c.acks) < len(sent[name]):
                    c.note(await c.recv())
            while "end" not in senders[2].acks:
                await asyncio.sleep(0.01)
        log = await room_log(redis.url)
        await asyncio.sleep(0.2)
        check(log, [watcher, *senders[2:], *back], texts)
        # The watcher on B, connected throughout, saw every message of the room.
        assert sorted(watcher.seen) == [s for s in sorted(log) if log[s][0] != "watcher"]
        for c in [watcher, *senders[2:], *back]:
            await c.close()
        for p in pumps:
            p.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def test_a_paused_node_is_fenced_when_it_wakes(redis: RedisProcess) -> None:
    """Node A holding alice is stopped (SIGSTOP) past its lease; alice is welcomed on B; when A
    wakes, its alice is disconnected and nothing it sends is posted."""
    with nodes(redis.url, 2) as (a, b):
        old = await Client.open(a.address, "alice")
        watcher = await Client.open(b.address, "watcher")
        os.kill(a.proc.pid, signal.SIGSTOP)
        try:
            new = await Client.open(b.address, "alice")  # once A's lease expired
            old.send({"type": "say", "room": "lobby", "text": "from the past", "id": "p"})
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
        frames = await old.expect_closed(timeout=3 * WAIT)
        assert not any(f["type"] == "ack" for f in frames)
        assert frames[-1]["type"] == "bye"
        new.send({"type": "say", "room": "lobby", "text": "now", "id": "n"})
        await new.until("ack", ref="n")
        await watcher.until("message", text="now")
        assert [t for _, t in (await room_log(redis.url)).values()] == ["now"]
        for c in (new, watcher):
            await c.close()


async def test_three_nodes_posting_at_once_agree_on_one_order(redis: RedisProcess) -> None:
    """Three nodes, a poster and a member on each, all posting at once: the room's seqs have no
    gap, and every member on every node saw the same message under each seq."""
    async with node(redis.url) as a, node(redis.url) as b, node(redis.url) as c:
        servers = (a, b, c)
        posters = [await Client.open(s.address, f"p{i}") for i, s in enumerate(servers)]
        members = [await Client.open(s.address, f"m{i}") for i, s in enumerate(servers)]
        texts = {}
        for i in range(50):
            for k, p in enumerate(posters):
                ref = f"p{k}-{i}"
                texts[ref] = ref
                p.send({"type": "say", "room": "lobby", "text": ref, "id": ref})
        async with asyncio.timeout(3 * WAIT):
            for p in posters:
                while len(p.acks) < 50:
                    p.note(await p.recv())
            for m in members:
                while len(m.seen) < 150:
                    m.note(await m.recv())
        log = await room_log(redis.url)
        assert len(log) == 150
        check(log, [*posters, *members], texts)
        assert members[0].seen == members[1].seen == members[2].seen == log
        for x in (*posters, *members):
            await x.close()


async def test_members_of_other_nodes_are_told_and_listed(redis: RedisProcess) -> None:
    """joined, renamed and left of a member on one node reach the room's members on another,
    and who on either node lists the members of both."""
    async with node(redis.url) as a, node(redis.url) as b:
        bob = await Client.open(b.address, "bob")
        alice = await Client.open(a.address, "alice")
        await bob.until("joined", room="lobby", name="alice")
        for c in (alice, bob):
            c.send({"type": "who", "room": "lobby", "id": "w"})
            assert sorted((await c.until("who"))["names"]) == ["alice", "bob"]
        alice.send({"type": "nick", "name": "alicia"})
        await bob.until("renamed", old="alice", new="alicia")
        alice.send({"type": "quit"})
        await alice.expect_closed()
        await bob.until("left", room="lobby", name="alicia", reason="quit")
        bob.send({"type": "who", "room": "lobby"})
        assert (await bob.until("who"))["names"] == ["bob"]
        await bob.close()


async def test_a_dead_nodes_members_leave_within_a_lease(redis: RedisProcess) -> None:
    """When a node is killed, the members of other nodes see its members leave (reason
    disconnect) within about a lease, and who no longer lists them."""
    with nodes(redis.url, 2) as (a, b):
        bob = await Client.open(b.address, "bob")
        alice = await Client.open(a.address, "alice")
        await bob.until("joined", room="lobby", name="alice")
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait()
        async with asyncio.timeout(3 * WAIT):
            while True:
                f = await bob.recv()
                if f["type"] == "left":
                    assert f == {
                        "type": "left",
                        "room": "lobby",
                        "name": "alice",
                        "reason": "disconnect",
                    }
                    break
        bob.send({"type": "who", "room": "lobby"})
        assert (await bob.until("who"))["names"] == ["bob"]
        await alice.close()
        await bob.close()
