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
writes, and ``on_fenced`` disconnects its clients. The epoch, the lease, names and what the
nodes tell each other besides messages are the base class's (:mod:`.redis_node`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from redis.exceptions import RedisError, ResponseError

from ..errors import ConfigError
from ..interfaces import Deliver, Page, Record, Refuse, RoomTopic
from ..limits import DEFAULT_IDEMPOTENCY_WINDOW
from . import redis_scripts as lua
from .redis_node import DEFAULT_LEASE, FEED_MAX, RETRY_DELAY, RedisDown, RedisNode
from .redis_scripts import ms
from .redis_state import RoomLogs

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_ROOM_HISTORY",
    "FEED_MAX",
    "MAX_BATCH",
    "RedisBroker",
    "RedisDown",
]

T = TypeVar("T")
log = logging.getLogger("asyncchat.cluster")

#: Messages of each room kept in Redis (and in each node's mirror) unless ``history_max`` says
#: otherwise: bounded memory in Redis whatever the traffic.
DEFAULT_ROOM_HISTORY = 10_000
#: Says sent in one script call at the most: a script blocks Redis while it runs.
MAX_BATCH = 256
#: Feed entries read at once, and how long one read blocks (ms).
FEED_READ = 1000
FEED_BLOCK_MS = 1000
#: Seconds after which a publish never seen on the feed is forgotten (its sender gets no ack).
PENDING_TTL = 60.0

#: A message queued for the writer, as the script takes it: room, name, sender, text, ts,
#: action, client key, origin.
_Say = tuple[str, str, str, str, str, str, str, str]
_record = Record._make


class RedisBroker(RedisNode, Generic[T]):
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
        super().__init__(url, lease=lease, clock=clock)
        self.no_token = no_token
        self.history_max = history_max or DEFAULT_ROOM_HISTORY
        #: Messages older than this many days are dropped (None: kept up to history_max).
        self.history_days = history_days
        self.window = idempotency_window
        self._deliver: Deliver[T] | None = None
        self._refuse: Refuse[T] | None = None
        self._counter = itertools.count(1)
        self._seq: dict[str, int] = {}
        self._logs = RoomLogs(self.history_max)
        self._last_id = "0-0"
        #: origin -> (token, when published): acknowledged when the feed brings the origin.
        self._pending: dict[str, tuple[T, float]] = {}
        #: room -> acks of re-sends waiting until the feed brought their seq.
        self._held: dict[str, list[tuple[Record, T]]] = {}
        self._queue: list[_Say] = []

    # ------------------------------------------------------------------ the Broker seam

    @property
    def history(self) -> bool:
        return True

    def attach(self, deliver: Deliver[T], refuse: Refuse[T] | None = None) -> None:
        self._deliver = deliver
        self._refuse = refuse

    def _register(self, r: Any) -> None:
        super()._register(r)
        self._publish_script = r.register_script(lua.PUBLISH)

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
        r = self._redis
        if r is None:
            return
        try:
            if tasks and self._down is None:
                # Post what is queued (its senders are gone: no ack), and give the names up
                # at once: a name whose node has no lease is free.
                while self._queue:
                    await self._send(self._take_batch())
                await self._leave(r)
        except (RedisError, OSError) as exc:
            log.warning("leaving the cluster: %s", exc)
        finally:
            self._redis = None
            await r.aclose()

    # ------------------------------------------------------------------ tasks

    async def _expire(self, r: Any, days: float) -> None:
        """``history_days``: the messages older than that leave the rooms' logs, in this
        node's mirror and in Redis (every node trims alike: trimming twice changes nothing)."""
        for room, first in self._logs.expire(self.clock() - days * 86400).items():
            await r.xtrim(f"ac:log:{room}", minid=f"{first}-1")

    async def _load(self, r: Any) -> None:
        """Every room's log and last seq, from the feed's end on."""
        last = await r.xrevrange(lua.FEED_KEY, count=1)
        self._last_id = last[0][0] if last else "0-0"
        seqs = await r.hgetall("ac:seq")
        self._seq = {}
        self._logs.clear()
        for room, seq in seqs.items():
            entries = await r.xrevrange(f"ac:log:{room}", count=self.history_max)
            self._logs.load(room, [_from_log(room, i, f) for i, f in reversed(entries)])
            self._seq[room] = max(int(seq), self._logs.last(room))
        self._held.clear()

    def _forget(self) -> None:
        self._pending.clear()
        self._queue.clear()

    async def _housekeep(self, r: Any | None) -> None:
        now = time.monotonic()
        for origin, (_token, when) in list(self._pending.items()):
            if now - when > PENDING_TTL:
                del self._pending[origin]
        if r is not None and self.history_days is not None:
            await self._expire(r, self.history_days)

    async def _write_loop(self) -> None:
        queue = self._queue
        while not self._closing:
            # While Redis is down, cluster events wait (they are sent once it is back).
            jobs = (self._jobs or self.events.pending) and self._down is None
            if not queue and not jobs:
                self._wake.clear()
                await self._wake.wait()
                continue
            if jobs:
                await self._run_jobs()
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
            str(ms(self.window)),
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


def _from_log(room: str, entry_id: str, f: dict[str, str]) -> Record:
    seq = int(entry_id.split("-")[0])
    return _record((room, f["n"], seq, f["f"], f["t"], float(f["ts"]), f["a"] == "1", None))
