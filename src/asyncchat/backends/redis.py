"""The cluster broker: room messages ordered, stored and deduplicated in Redis (docs/cluster.md).

Several server processes ("nodes") share one Redis. A ``say`` is queued by :meth:`publish` and
sent by the broker's writer task: one Lua script per batch (all the says of one event-loop
iteration, at most ``MAX_BATCH``) checks each idempotency key, gives the room its next seq,
appends the message to the room's log stream and to the one feed stream, and remembers the key,
atomically. Nothing is acknowledged from the script's reply: every node reads the feed (one
blocking ``XREAD``), and delivers each message, in the order Redis took them, to its hub; the
node that published a message finds its sender's token by the entry's origin and acknowledges it
then. So an ack is sent only after Redis has the message, acks of one room never overtake its
messages, and a reply lost with a connection still ends in an ack.

Each node keeps a mirror of every room's log (at most ``history_max`` messages per room, loaded
at start and kept from the feed), from which it answers joins, resumes, ``history`` and
``search`` without waiting. A gap in a room's seqs (the feed trimmed past a stalled node) is
filled from the room's log before the message after it is delivered.

Redis losing its data (a restart without persistence, ``FLUSHALL``, a failover to an empty
replica) changes ``ac:epoch``: the script refuses to write under an old epoch, and the node
resets (``on_reset``: the server says ``bye`` to its clients, whose resumes are then answered
``reset``). A node whose lease expired (paused, cut off) is fenced: the script refuses its
writes, and ``on_fenced`` disconnects its clients.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from ..errors import ConfigError, StoreError
from ..interfaces import Deliver, Page, Record, Refuse, RoomTopic
from ..limits import DEFAULT_IDEMPOTENCY_WINDOW
from . import redis_scripts as lua
from .redis_events import ClusterEvents
from .redis_scripts import ms as _ms
from .redis_state import RoomLogs

__all__ = ["DEFAULT_LEASE", "DEFAULT_ROOM_HISTORY", "FEED_MAX", "MAX_BATCH", "RedisBroker"]

T = TypeVar("T")
log = logging.getLogger("asyncchat.cluster")

#: Messages of each room kept in Redis (and in each node's mirror) unless ``history_max`` says
#: otherwise: bounded memory in Redis whatever the traffic.
DEFAULT_ROOM_HISTORY = 10_000
#: Seconds a node's lease lasts without renewal (renewed every third of it): a dead node's
#: names are free again, and a paused node is fenced, after this long.
DEFAULT_LEASE = 10.0
#: Entries of the feed kept (approximately): a node paused longer than this many messages fills
#: the gap from the rooms' logs.
FEED_MAX = 100_000
#: Says sent in one script call at the most: a script blocks Redis while it runs.
MAX_BATCH = 256
#: Feed entries read at once, and how long one read blocks (ms).
FEED_READ = 1000
FEED_BLOCK_MS = 1000
#: Seconds between attempts to reach a Redis that does not answer.
RETRY_DELAY = 0.2
#: Seconds after which a publish never seen on the feed is forgotten (its sender gets no ack).
PENDING_TTL = 60.0

#: A message queued for the writer, as the script takes it: room, name, sender, text, ts,
#: action, client key, origin.
_Say = tuple[str, str, str, str, str, str, str, str]
_record = Record._make


class RedisDown(StoreError):
    """Redis cannot be reached, lost its data, or this node was fenced: says are refused."""


class RedisBroker(Generic[T]):
    """The :class:`~asyncchat.interfaces.Broker` of a cluster node, over Redis at ``url``
    (``redis://HOST:PORT/DB``, ``unix:///path``). ``no_token`` is the hub's token for a
    message nobody on this node waits an ack for. Call :meth:`connect` (async) before
    :meth:`start`, and :meth:`wait_closed` after :meth:`close`. Raises ``ConfigError`` from
    :meth:`connect` when Redis cannot be used."""

    def __init__(
        self,
        url: str,
        *,
        no_token: T,
        history_max: int | None = None,
        history_days: float | None = None,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
        lease: float = DEFAULT_LEASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.no_token = no_token
        self.history_max = history_max or DEFAULT_ROOM_HISTORY
        #: Messages older than this many days are dropped (None: kept up to history_max).
        self.history_days = history_days
        self.window = idempotency_window
        self.lease = lease
        self.clock = clock
        #: Called when Redis lost its data (every client must resume: numbering started over),
        #: and when this node's lease was lost (its clients must go); set by the server.
        self.on_reset: Callable[[], None] = _nothing
        self.on_fenced: Callable[[], None] = _nothing
        #: Called with a name key this node claimed by a rename but another node holds.
        self.on_name_lost: Callable[[str], None] = _nothing_for
        self._wake = asyncio.Event()
        #: Membership, presence, topics, bans and direct messages across the nodes (its
        #: callbacks are set by the server).
        self.events = ClusterEvents(self._wake.set)
        self._deliver: Deliver[T] | None = None
        self._refuse: Refuse[T] | None = None
        #: The connection pool (typed loosely: redis-py's replies are unions of every RESP type).
        self._redis: Any = None
        self._node = _new_id()
        self._counter = itertools.count(1)
        self._epoch = ""
        self._down: BaseException | None = RedisDown("not connected to Redis yet")
        self._seq: dict[str, int] = {}
        self._logs = RoomLogs(self.history_max)
        self._last_id = "0-0"
        self._inbox_id = "0-0"
        #: origin -> (token, when published): acknowledged when the feed brings the origin.
        self._pending: dict[str, tuple[T, float]] = {}
        #: room -> acks of re-sends waiting until the feed brought their seq.
        self._held: dict[str, list[tuple[Record, T]]] = {}
        self._queue: list[_Say] = []
        self._jobs: list[tuple[str, str]] = []  # ("claim"/"release", key)
        self._names: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._repair = asyncio.Lock()
        #: Set by close(): the loops end (redis-py can turn a cancellation into a
        #: ConnectionError, so the tasks cannot rely on CancelledError alone).
        self._closing = False

    # ------------------------------------------------------------------ the Broker seam

    @property
    def history(self) -> bool:
        return True

    @property
    def failed(self) -> BaseException | None:
        return self._down

    @property
    def node(self) -> str:
        """This node's id (new at each start and after it was fenced)."""
        return self._node

    def attach(self, deliver: Deliver[T], refuse: Refuse[T] | None = None) -> None:
        self._deliver = deliver
        self._refuse = refuse

    async def connect(self) -> None:
        """Reach Redis, check its settings, join the cluster (epoch, lease) and load every
        room's log. Raises ``ConfigError`` when Redis cannot be reached or is configured to
        evict keys."""
        r: Any = aioredis.Redis.from_url(
            self.url,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),  # a script must never run twice by itself
            socket_connect_timeout=5,
            socket_keepalive=True,
        )
        self._redis = r
        try:
            policy = (await r.config_get("maxmemory-policy")).get("maxmemory-policy", "")
            persistence = await r.info("persistence")
        except (RedisError, OSError) as exc:
            await r.aclose()
            self._redis = None
            raise ConfigError(f"cannot use Redis at {self.url}: {exc}") from None
        if policy not in ("", "noeviction"):
            await r.aclose()
            self._redis = None
            raise ConfigError(
                f"Redis at {self.url} has maxmemory-policy {policy}: the cluster needs "
                "noeviction (an evicted seq counter would repeat seqs)"
            )
        self._publish_script = r.register_script(lua.PUBLISH)
        self._renew_script = r.register_script(lua.RENEW)
        self._claim_script = r.register_script(lua.CLAIM)
        self._release_script = r.register_script(lua.RELEASE)
        self._reap_script = r.register_script(lua.REAP)
        await self._join()
        aof = persistence.get("aof_enabled") in (1, "1")
        log.info(
            "cluster node %s on Redis %s, epoch %s (%s)",
            self._node,
            self.url,
            self._epoch,
            "append-only file on: see docs/cluster.md"
            if aof
            else "no append-only file: acknowledged messages do not survive a restart of Redis",
        )

    def start(
        self, call_soon: Callable[..., Any], call_soon_threadsafe: Callable[..., Any]
    ) -> None:
        """Start the writer, the feed reader and the lease keeper (owned here, cancelled by
        :meth:`close`)."""
        if self._redis is None:
            raise ConfigError("RedisBroker.connect() must be awaited before start()")
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="asyncchat-cluster-writer"),
            asyncio.create_task(self._read_loop(), name="asyncchat-cluster-feed"),
            asyncio.create_task(self._lease_loop(), name="asyncchat-cluster-lease"),
        ]

    def last_seq(self, room: str) -> int:
        return self._seq.get(room, 0)

    def publish(
        self,
        room: str,
        name: str,
        sender: str,
        text: str,
        action: bool,
        client_key: str | None,
        token: T,
    ) -> int:
        down = self._down
        if down is not None:
            raise RedisDown(str(down))
        origin = f"{self._node}:{next(self._counter)}"
        self._pending[origin] = (token, time.monotonic())
        ts = repr(self.clock())
        self._queue.append(
            (room, name, sender, text, ts, "1" if action else "", client_key or "", origin)
        )
        if len(self._queue) == 1:
            self._wake.set()
        return 0

    def page(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int
    ) -> Page:
        return self._logs.page(room, before=before, after=after, limit=limit)

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        return self._logs.search(room, words, before=before, limit=limit)

    def topic(self, room: str) -> RoomTopic | None:
        return self.events.topics.get(room)

    def set_topic(self, room: str, name: str, topic: RoomTopic | None) -> None:
        self.events.topic(room, name, topic)

    def close(self) -> None:
        """Stop the tasks; :meth:`wait_closed` posts what is still queued (no longer acked)."""
        self._closing = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the tasks to end and close the connection pool. Idempotent."""
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)
        r, self._redis = self._redis, None
        if r is None:
            return
        try:
            if tasks and self._down is None:
                # Post what is queued (its senders are gone: no ack), and give the names up
                # at once: a name whose node has no lease is free.
                while self._queue:
                    await self._send(self._take_batch())
                if self.events.pending:
                    await self.events.run(r, self._epoch, self._node, FEED_MAX)
                await r.delete(f"ac:node:{self._node}", lua.inbox_key(self._node))
        except (RedisError, OSError) as exc:
            log.warning("leaving the cluster: %s", exc)
        finally:
            await r.aclose()

    # ------------------------------------------------------------------ names

    async def claim(self, key: str) -> bool:
        """Claim user name ``key`` for this node; False if a live node holds it. Raises
        ``RedisDown`` when Redis cannot answer."""
        r = self._require()
        try:
            got = await self._claim_script(
                keys=[f"ac:name:{key}"], args=[self._node, self._epoch, _ms(self.lease)], client=r
            )
        except (RedisError, OSError) as exc:
            raise RedisDown(f"cannot claim the name: {exc}") from exc
        if got == 1:
            self._names.add(key)
        return bool(got == 1)

    def name_changed(self, released: str | None, taken: str | None) -> None:
        """A member of this node gave up name ``released`` or took ``taken`` (by renaming):
        shared with the cluster by the writer task."""
        if released is not None and released != taken:
            self._names.discard(released)
            self._job("release", released)
        if taken is not None and taken not in self._names:
            self._names.add(taken)
            self._job("claim", taken)

    # ------------------------------------------------------------------ the cluster seam

    def member_changed(self, kind: str, rooms: list[str], key: str, name: str, detail: str) -> None:
        """A member of this node joined, left, renamed, connected, went or set its away
        message (see ``interfaces.Cluster``): kept in Redis and told to the other nodes."""
        self.events.member(kind, rooms, key, name, detail, self._node)

    def remote_members(self, room: str) -> dict[str, str]:
        """The members of room ``room`` (a key) on the other nodes: key -> name."""
        return self.events.members.others(room, self._node)

    def remote_rooms(self) -> dict[str, tuple[str, int]]:
        """The rooms with members on the other nodes: key -> (display name, how many there)."""
        return self.events.members.rooms_elsewhere(self._node)

    def remote_user(self, key: str) -> tuple[str, str | None] | None:
        """(name, away message) of the user with key ``key`` if another node has it."""
        found = self.events.members.user(key, self._node)
        return None if found is None else (found[0], found[2])

    def send_dm(self, key: str, sender: str, text: str, ts: float) -> bool:
        """Send a direct message to the user with key ``key`` on another node; False if no
        other node has it."""
        found = self.events.members.user(key, self._node)
        if found is None:
            return False
        self.events.dm(found[1], key, sender, text, ts)
        return True

    async def call_event(self, kind: str, key: str, name: str = "", detail: str = "") -> int:
        """Run one cluster event now (a ban: see ``redis_bans``); the script's answer. Raises
        ``RedisDown`` when Redis cannot take it (or refused it: epoch, fenced)."""
        r = self._require()
        try:
            got = await self.events.call(
                r, self._epoch, self._node, FEED_MAX, kind, key, name, detail
            )
        except (RedisError, OSError) as exc:
            raise RedisDown(f"the cluster did not take it: {exc}") from exc
        if got == 0 and kind != "B":
            raise RedisDown("the cluster refused it (this node is fenced or Redis was reset)")
        return got

    @property
    def redis(self) -> Any:
        """The connection pool. Raises ``RedisDown`` before :meth:`connect`."""
        return self._require()

    async def _reap(self, r: Any) -> None:
        """Members of nodes whose lease is gone leave their rooms (once, by one node)."""
        for node in await r.smembers("ac:nodes"):
            if node != self._node and not await r.exists(f"ac:node:{node}"):
                gone = await self._reap_script(keys=[], args=[node, FEED_MAX], client=r)
                if gone:
                    log.info("node %s is gone: %d of its members left their rooms", node, gone)

    async def _expire(self, r: Any, days: float) -> None:
        """``history_days``: the messages older than that leave the rooms' logs, in this
        node's mirror and in Redis (every node trims alike: trimming twice changes nothing)."""
        for room, first in self._logs.expire(self.clock() - days * 86400).items():
            await r.xtrim(f"ac:log:{room}", minid=f"{first}-1")

    # ------------------------------------------------------------------ tasks

    def _require(self) -> Any:
        if self._redis is None:
            raise RedisDown("not connected to Redis")
        return self._redis

    def _job(self, kind: str, key: str) -> None:
        self._jobs.append((kind, key))
        self._wake.set()

    async def _join(self) -> None:
        """Adopt the cluster's epoch (making one if there is none), take a lease, load the
        rooms."""
        r = self._require()
        await r.set(lua.EPOCH_KEY, _new_id(), nx=True)
        self._epoch = await r.get(lua.EPOCH_KEY) or ""
        await r.set(f"ac:node:{self._node}", "1", px=_ms(self.lease))
        await r.sadd("ac:nodes", self._node)
        last = await r.xrevrange(lua.FEED_KEY, count=1)
        self._last_id = last[0][0] if last else "0-0"
        seqs = await r.hgetall("ac:seq")
        self._seq = {}
        self._logs.clear()
        for room, seq in seqs.items():
            entries = await r.xrevrange(f"ac:log:{room}", count=self.history_max)
            self._logs.load(room, [_from_log(room, i, f) for i, f in reversed(entries)])
            self._seq[room] = max(int(seq), self._logs.last(room))
        await self.events.load(r)
        inbox = await r.xrevrange(lua.inbox_key(self._node), count=1)
        self._inbox_id = inbox[0][0] if inbox else "0-0"
        self._held.clear()
        self._down = None

    async def _write_loop(self) -> None:
        queue = self._queue
        while not self._closing:
            if not queue and not self._jobs and not self.events.pending:
                self._wake.clear()
                await self._wake.wait()
            if self._jobs:
                await self._run_jobs()
            if self.events.pending and self._redis is not None:
                await self.events.run(self._redis, self._epoch, self._node, FEED_MAX)
            if queue and not self._closing:
                await self._send(self._take_batch())

    def _take_batch(self) -> list[_Say]:
        batch = self._queue[:MAX_BATCH]
        del self._queue[:MAX_BATCH]
        return batch

    async def _send(self, batch: list[_Say]) -> None:
        """One script call for ``batch``; re-sends of posted messages are acknowledged."""
        args: list[str] = [
            self._epoch,
            self._node,
            str(_ms(self.window)),
            str(self.history_max),
            str(FEED_MAX),
        ]
        for say in batch:
            args.extend(say)
        try:
            out = await self._publish_script(keys=[], args=args, client=self._require())
        except ResponseError as exc:
            self._refused(batch, exc)
            return
        except (RedisError, OSError) as exc:
            # Outcome unknown: what Redis took is acknowledged when the feed brings it.
            log.warning(
                "publishing to Redis failed (%d says not acknowledged): %s", len(batch), exc
            )
            self._mark_down(exc)
            return
        for i, say in enumerate(batch):
            if out[3 * i] == "1":
                self._resent(say, int(out[3 * i + 1]), float(out[3 * i + 2]))

    async def _run_jobs(self) -> None:
        jobs, self._jobs = self._jobs, []
        r = self._require()
        for kind, key in jobs:
            try:
                if kind == "release" and key not in self._names:
                    await self._release_script(keys=[f"ac:name:{key}"], args=[self._node], client=r)
                elif kind == "claim" and key in self._names:
                    got = await self._claim_script(
                        keys=[f"ac:name:{key}"],
                        args=[self._node, self._epoch, _ms(self.lease)],
                        client=r,
                    )
                    if got == 0:
                        self._names.discard(key)
                        self.on_name_lost(key)
            except (RedisError, OSError) as exc:
                log.warning("Redis did not take a %s of %s: %s", kind, key, exc)

    def _refused(self, batch: list[_Say], exc: ResponseError) -> None:
        """The script refused a batch before writing (epoch changed, or fenced)."""
        message = str(exc)
        for say in batch:
            entry = self._pending.pop(say[7], None)
            if entry is not None and self._refuse is not None:
                self._refuse(entry[0], f"the cluster refused the message: not posted ({message})")
        log.warning("Redis refused %d says: %s", len(batch), message)
        self._mark_down(RedisDown(f"the cluster refused the message: {message}"))

    def _resent(self, say: _Say, seq: int, ts: float) -> None:
        """A re-send of a message Redis has: acknowledged once the feed brought its seq."""
        entry = self._pending.pop(say[7], None)
        if entry is None:
            return
        room = say[0]
        record = _record((room, say[1], seq, say[2], "", ts, False, None))
        if seq <= self._seq.get(room, 0):
            self._deliver_to_hub(record, entry[0], False)
        else:
            self._held.setdefault(room, []).append((record, entry[0]))

    def _deliver_to_hub(self, record: Record, token: T, fresh: bool) -> None:
        if self._deliver is None:
            raise RuntimeError("the broker delivers to nobody: attach() the hub first")
        self._deliver(record, token, fresh)

    def _mark_down(self, exc: BaseException) -> None:
        if self._down is None:
            self._down = exc if isinstance(exc, RedisDown) else RedisDown(str(exc))

    async def _read_loop(self) -> None:
        while not self._closing:
            try:
                if self._down is not None:
                    await self._recover()
                r = self._require()
                inbox = lua.inbox_key(self._node)
                found = await r.xread(
                    {lua.FEED_KEY: self._last_id, inbox: self._inbox_id},
                    count=FEED_READ,
                    block=FEED_BLOCK_MS,
                )
                for stream, entries in found:
                    if stream != lua.FEED_KEY:
                        for entry_id, fields in entries:
                            self._inbox_id = entry_id
                            if stream == inbox:
                                self.events.inbox_entry(fields)
                        continue
                    for entry_id, fields in entries:
                        if "k" in fields:
                            self._last_id = entry_id
                            self.events.entry(fields, self._node)
                            continue
                        room, seq = fields["r"], int(fields["s"])
                        if seq > self._seq.get(room, 0) + 1:
                            await self._fill(r, room, seq)
                        self._last_id = entry_id
                        self._apply(room, seq, fields)
            except (RedisError, OSError) as exc:
                if self._down is None:
                    log.warning("lost Redis: %s", exc)
                self._mark_down(exc)
                await asyncio.sleep(RETRY_DELAY)

    async def _fill(self, r: Any, room: str, seq: int) -> None:
        """Messages of ``room`` before ``seq`` that the feed no longer had: from its log."""
        start = self._seq.get(room, 0) + 1
        entries = await r.xrange(f"ac:log:{room}", f"{start}-1", f"{seq - 1}-1")
        if not entries or int(entries[0][0].split("-")[0]) != start:
            log.error("room %s: messages %d to %d are gone from Redis", room, start, seq - 1)
        for entry_id, fields in entries:
            s = int(entry_id.split("-")[0])
            self._apply(room, s, {**fields, "r": room, "s": str(s)})

    def _apply(self, room: str, seq: int, f: dict[str, str]) -> None:
        """One message from the feed (or a room's log), in seq order: kept, delivered, and
        acknowledged if this node published it."""
        if seq <= self._seq.get(room, 0):
            return  # already had it (loaded at start, or filled from the log)
        record = _record((room, f["n"], seq, f["f"], f["t"], float(f["ts"]), f["a"] == "1", None))
        self._logs.append(record)
        self._seq[room] = seq
        entry = self._pending.pop(f.get("o", ""), None)
        self._deliver_to_hub(record, self.no_token if entry is None else entry[0], True)
        held = self._held.get(room)
        if held:
            ready = [h for h in held if h[0].seq <= seq]
            if ready:
                self._held[room] = [h for h in held if h[0].seq > seq]
                for rec, token in ready:
                    self._deliver_to_hub(rec, token, False)

    async def _recover(self) -> None:
        """Redis answers again: carry on from the feed, or reset when it lost its data."""
        async with self._repair:
            r = self._require()
            epoch = await r.get(lua.EPOCH_KEY)
            if epoch == self._epoch:
                if not await r.exists(f"ac:node:{self._node}"):
                    self._fence()
                    await r.set(f"ac:node:{self._node}", "1", px=_ms(self.lease))
                    await r.sadd("ac:nodes", self._node)
                log.info("Redis is back, epoch %s unchanged", epoch)
                self._down = None
                return
            log.error(
                "Redis lost its data (epoch %s, now %s): every client must resume",
                self._epoch,
                epoch,
            )
            self._pending.clear()
            self._queue.clear()
            self._names.clear()
            self.on_reset()
            self.events.clear()
            await self._join()

    def _fence(self) -> None:
        """This node's lease expired: others may hold its names now. Its clients go, and it
        joins again under a new id."""
        log.error("node %s lost its lease: disconnecting its clients", self._node)
        self._names.clear()
        self._pending.clear()
        self._queue.clear()
        self.events.clear()
        self.on_fenced()
        self._node = _new_id()
        self._inbox_id = "0-0"

    async def _lease_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.lease / 3)
            now = time.monotonic()
            for origin, (_token, when) in list(self._pending.items()):
                if now - when > PENDING_TTL:
                    del self._pending[origin]
            if self._down is not None:
                continue
            try:
                r = self._require()
                ok = await self._renew_script(
                    keys=[f"ac:node:{self._node}"],
                    args=[self._node, _ms(self.lease), *self._names],
                    client=r,
                )
                if not ok:
                    self._mark_down(RedisDown("this node's lease expired"))
                else:
                    await self._reap(r)
                    if self.history_days is not None:
                        await self._expire(r, self.history_days)
            except (RedisError, OSError) as exc:
                self._mark_down(exc)


def _nothing() -> None:
    pass


def _nothing_for(key: str) -> None:
    pass


def _new_id() -> str:
    return os.urandom(6).hex()


def _from_log(room: str, entry_id: str, f: dict[str, str]) -> Record:
    seq = int(entry_id.split("-")[0])
    return _record((room, f["n"], seq, f["f"], f["t"], float(f["ts"]), f["a"] == "1", None))
