"""A cluster node's place in the cluster (docs/cluster.md): its connection to Redis, the epoch,
its lease and the fencing of a node that lost it, the names its members hold, and the
:class:`~asyncchat.interfaces.Cluster` seam the hub asks (the members, rooms and users of the
other nodes, direct messages to them).

:class:`RedisNode` is the base of :class:`~asyncchat.backends.redis.RedisBroker`, which adds the
room messages (publish, the feed, the rooms' logs, acks). It owns the lease keeper's loop and
the recovery when Redis answers again, and calls the broker back through three hooks:
``_load`` (when the node joins: load what the messages need), ``_forget`` (Redis lost its data
or the node was fenced: drop what is queued) and ``_housekeep`` (each lease tick, with the pool
when the lease was renewed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ..errors import ConfigError, StoreError
from . import redis_scripts as lua
from .redis_events import ClusterEvents
from .redis_scripts import ms

__all__ = ["DEFAULT_LEASE", "FEED_MAX", "RETRY_DELAY", "RedisDown", "RedisNode", "new_id"]

log = logging.getLogger("asyncchat.cluster")

#: Seconds a node's lease lasts without renewal (renewed every third of it): a dead node's
#: names are free again, and a paused node is fenced, after this long.
DEFAULT_LEASE = 10.0
#: Entries of the feed kept (approximately): a node paused longer than this many messages fills
#: the gap from the rooms' logs.
FEED_MAX = 100_000
#: Seconds between attempts to reach a Redis that does not answer.
RETRY_DELAY = 0.2


class RedisDown(StoreError):
    """Redis cannot be reached, lost its data, or this node was fenced: says are refused."""


def new_id() -> str:
    """A random id (a node's, an epoch)."""
    return os.urandom(6).hex()


class RedisNode:
    """One node of the cluster on the Redis at ``url``; see the module's docstring."""

    def __init__(
        self, url: str, *, lease: float = DEFAULT_LEASE, clock: Callable[[], float] = time.time
    ) -> None:
        self.url = url
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
        #: The connection pool (typed loosely: redis-py's replies are unions of every RESP type).
        self._redis: Any = None
        self._node = new_id()
        self._epoch = ""
        self._down: BaseException | None = RedisDown("not connected to Redis yet")
        self._inbox_id = "0-0"
        self._jobs: list[tuple[str, str]] = []  # ("claim"/"release", key)
        self._names: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._repair = asyncio.Lock()
        #: Set by close(): the loops end (redis-py can turn a cancellation into a
        #: ConnectionError, so the tasks cannot rely on CancelledError alone).
        self._closing = False

    @property
    def failed(self) -> BaseException | None:
        return self._down

    @property
    def node(self) -> str:
        """This node's id (new at each start and after it was fenced)."""
        return self._node

    @property
    def redis(self) -> Any:
        """The connection pool. Raises ``RedisDown`` before :meth:`connect`."""
        return self._require()

    async def connect(self) -> None:
        """Reach Redis, check its settings, join the cluster (epoch, lease) and load what
        the node mirrors. Raises ``ConfigError`` when Redis cannot be reached or is configured
        to evict keys."""
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
        self._register(r)
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

    def _register(self, r: Any) -> None:
        """Register the scripts on the pool ``r`` (no I/O: they are sent at first use)."""
        self._renew_script = r.register_script(lua.RENEW)
        self._claim_script = r.register_script(lua.CLAIM)
        self._release_script = r.register_script(lua.RELEASE)
        self._reap_script = r.register_script(lua.REAP)

    async def _leave(self, r: Any) -> None:
        """Send what is queued and give up the lease (the names are free at once). Raises
        ``RedisError`` or ``OSError``."""
        if self.events.pending:
            await self.events.run(r, self._epoch, self._node, FEED_MAX)
        await r.delete(f"ac:node:{self._node}", lua.inbox_key(self._node))

    # ------------------------------------------------------------------ names

    async def claim(self, key: str) -> bool:
        """Claim user name ``key`` for this node; False if a live node holds it. Raises
        ``RedisDown`` when Redis cannot answer."""
        r = self._require()
        try:
            got = await self._claim_script(
                keys=[f"ac:name:{key}"], args=[self._node, self._epoch, ms(self.lease)], client=r
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

    def _job(self, kind: str, key: str) -> None:
        self._jobs.append((kind, key))
        self._wake.set()

    async def _run_jobs(self) -> None:
        """Send the claims and releases of names, and the cluster events, that are queued."""
        jobs, self._jobs = self._jobs, []
        r = self._require()
        for kind, key in jobs:
            try:
                if kind == "release" and key not in self._names:
                    await self._release_script(keys=[f"ac:name:{key}"], args=[self._node], client=r)
                elif kind == "claim" and key in self._names:
                    got = await self._claim_script(
                        keys=[f"ac:name:{key}"],
                        args=[self._node, self._epoch, ms(self.lease)],
                        client=r,
                    )
                    if got == 0:
                        self._names.discard(key)
                        self.on_name_lost(key)
            except (RedisError, OSError) as exc:
                log.warning("Redis did not take a %s of %s: %s", kind, key, exc)
        if self.events.pending:
            try:
                await self.events.run(r, self._epoch, self._node, FEED_MAX)
            except (RedisError, OSError) as exc:
                # Kept for when Redis answers again (the feed reader notices, and wakes us).
                log.warning("Redis did not take the cluster's events (kept): %s", exc)
                self._mark_down(exc)

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

    def remote_room(self, key: str) -> str | None:
        """The display name of room ``key`` if it has members on another node, else None."""
        return self.events.members.room_elsewhere(key, self._node)

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

    # ------------------------------------------------------------------ joining, the lease

    def _require(self) -> Any:
        if self._redis is None:
            raise RedisDown("not connected to Redis")
        return self._redis

    def _mark_down(self, exc: BaseException) -> None:
        if self._down is None:
            self._down = exc if isinstance(exc, RedisDown) else RedisDown(str(exc))

    async def _join(self) -> None:
        """Adopt the cluster's epoch (making one if there is none), take a lease, load what
        the node mirrors."""
        r = self._require()
        await r.set(lua.EPOCH_KEY, new_id(), nx=True)
        self._epoch = await r.get(lua.EPOCH_KEY) or ""
        await r.set(f"ac:node:{self._node}", "1", px=ms(self.lease))
        await r.sadd("ac:nodes", self._node)
        await self._load(r)
        await self.events.load(r)
        inbox = await r.xrevrange(lua.inbox_key(self._node), count=1)
        self._inbox_id = inbox[0][0] if inbox else "0-0"
        self._down = None

    async def _load(self, r: Any) -> None:
        """Hook: the node joins (at start, or after Redis lost its data)."""

    def _forget(self) -> None:
        """Hook: Redis lost its data, or this node was fenced: drop what is queued."""

    async def _housekeep(self, r: Any | None) -> None:
        """Hook: each lease tick; ``r`` is the pool when the lease was renewed, else None."""

    async def _recover(self) -> None:
        """Redis answers again: carry on from the feed, or reset when it lost its data."""
        async with self._repair:
            r = self._require()
            epoch = await r.get(lua.EPOCH_KEY)
            # The idle connections of the pool may be to the Redis that went away: each would
            # fail its next command once (nothing is retried by itself), so they go now.
            await r.connection_pool.disconnect(inuse_connections=False)
            if epoch == self._epoch:
                if not await r.exists(f"ac:node:{self._node}"):
                    self._fence()
                    await r.set(f"ac:node:{self._node}", "1", px=ms(self.lease))
                    await r.sadd("ac:nodes", self._node)
                log.info("Redis is back, epoch %s unchanged", epoch)
                self._down = None
                self._wake.set()  # the writer sends what waited
                return
            log.error(
                "Redis lost its data (epoch %s, now %s): every client must resume",
                self._epoch,
                epoch,
            )
            self._forget()
            self._names.clear()
            self.on_reset()
            self.events.clear()
            self._jobs.clear()
            await self._join()

    def _fence(self) -> None:
        """This node's lease expired: others may hold its names now. Its clients go, and it
        joins again under a new id (the node that reaps the old id tells their leaving)."""
        log.error("node %s lost its lease: disconnecting its clients", self._node)
        self._names.clear()
        self._forget()
        self.on_fenced()
        self.events.clear()
        self._jobs.clear()
        self._node = new_id()
        self._inbox_id = "0-0"

    async def _lease_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.lease / 3)
            if self._down is not None:
                await self._housekeep(None)
                continue
            try:
                r = self._require()
                ok = await self._renew_script(
                    keys=[f"ac:node:{self._node}"],
                    args=[self._node, ms(self.lease), *self._names],
                    client=r,
                )
                if not ok:
                    self._mark_down(RedisDown("this node's lease expired"))
                    await self._housekeep(None)
                else:
                    await self._reap(r)
                    await self._housekeep(r)
            except (RedisError, OSError) as exc:
                self._mark_down(exc)

    async def _reap(self, r: Any) -> None:
        """Members of nodes whose lease is gone leave their rooms (once, by one node)."""
        for node in await r.smembers("ac:nodes"):
            if node != self._node and not await r.exists(f"ac:node:{node}"):
                gone = await self._reap_script(keys=[], args=[node, FEED_MAX], client=r)
                if gone:
                    log.info("node %s is gone: %d of its members left their rooms", node, gone)


def _nothing() -> None:
    pass


def _nothing_for(key: str) -> None:
    pass
