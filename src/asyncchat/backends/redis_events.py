"""What the nodes of a cluster tell each other besides room messages (docs/cluster.md): joins,
leaves and renames, who is connected and away, topics and bans through the feed, and direct
messages through the inbox of the node that holds the recipient.

:class:`ClusterEvents` queues what this node's members do (the broker's writer task sends it,
one :data:`~asyncchat.backends.redis_scripts.EVENT` script call each, so that Redis's keys and
the feed change together), keeps the mirror of what every node's members do
(:class:`~asyncchat.backends.redis_state.Members`, the topics), and hands what comes from the
other nodes to its callbacks, on the event loop, in the order Redis took it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from ..interfaces import Ban, RoomTopic
from ..validation import user_key
from . import redis_scripts as lua
from .redis_state import Members

__all__ = ["INBOX_MAX", "ClusterEvents", "ban_from_json", "ban_json"]

log = logging.getLogger("asyncchat.cluster")

#: Direct messages kept (approximately) in a node's inbox stream: it is read as they come, so
#: only a node stalled this long behind loses some.
INBOX_MAX = 10_000

#: An event for the EVENT script: kind, key, name, detail, new key, the room keys.
_Event = tuple[str, str, str, str, str, list[str]]
#: A direct message for another node: its node, recipient key, sender name, text, ts.
_Dm = tuple[str, str, str, str, float]


def ban_json(ban: Ban) -> str:
    """``ban`` as kept in ``ac:bans`` (without its id: the hash's field is the id)."""
    fields = dataclasses.asdict(ban)
    del fields["id"]
    return orjson.dumps(fields).decode()


def ban_from_json(ban_id: str, text: str) -> Ban:
    """The ban ``ban_id`` kept as ``text``. Raises ``ValueError`` for what is not one."""
    try:
        fields = orjson.loads(text)
        return Ban(id=int(ban_id), **fields)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"ban {ban_id} is not a ban: {exc}") from None


class ClusterEvents:
    """The cluster's events, sent and received; see the module's docstring. ``wake`` is called
    when something was queued for the writer."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        #: Who is where, on every node (this one's members included).
        self.members = Members()
        #: room key -> its topic, as Redis has it.
        self.topics: dict[str, RoomTopic] = {}
        self._events: list[_Event] = []
        self._dms: list[_Dm] = []
        #: The EVENT script, registered on the connection pool by :meth:`load`.
        self._script: Any = None
        #: Called with ``(kind, room keys, name, detail)`` for a member of another node that
        #: joined ("j"), left ("l", detail: the reason), renamed ("n", detail: the new name) or
        #: set its away message ("a", detail: the message, "" when back; rooms: its rooms).
        self.on_member: Callable[[str, list[str], str, str], None] = _nothing_member
        #: Called with ``(room key, topic or None)`` when another node's member set a topic.
        self.on_topic: Callable[[str, RoomTopic | None], None] = _nothing_topic
        #: Called with ``(recipient key, sender name, text, ts)`` for a direct message from a
        #: member of another node to a member of this one.
        self.on_dm: Callable[[str, str, str, float], None] = _nothing_dm
        #: Called with a ban made on another node, and with the id of a ban lifted there.
        self.on_ban: Callable[[Ban], None] = _nothing_ban
        self.on_unban: Callable[[int], None] = _nothing_unban

    @property
    def pending(self) -> bool:
        """Whether anything waits for the writer."""
        return bool(self._events or self._dms)

    def clear(self) -> None:
        """Forget what is queued (Redis lost its data, or this node was fenced)."""
        self._events.clear()
        self._dms.clear()

    # ------------------------------------------------------------------ this node's

    def member(
        self, kind: str, rooms: list[str], key: str, name: str, detail: str, node: str
    ) -> None:
        """A member of this node (``node``) joined, left, renamed, connected, went or set its
        away message (see ``interfaces.Cluster.member_changed``): mirrored at once, sent to
        Redis by the writer."""
        new_key = user_key(detail) if kind == "n" else ""
        self.members.apply(kind, rooms, key, name, detail, new_key, node)
        self._events.append((kind, key, name, detail, new_key, rooms))
        self._wake()

    def topic(self, room: str, name: str, topic: RoomTopic | None) -> None:
        """A member of this node set room ``room``'s topic (None: cleared)."""
        if topic is None:
            self.topics.pop(room, None)
        else:
            self.topics[room] = topic
        detail = "" if topic is None else orjson.dumps(list(topic)).decode()
        self._events.append(("t", room, name, detail, "", []))
        self._wake()

    def dm(self, node: str, key: str, sender: str, text: str, ts: float) -> None:
        """Send a direct message to the member with key ``key`` on node ``node``."""
        self._dms.append((node, key, sender, text, ts))
        self._wake()

    async def run(self, r: Any, epoch: str, node: str, feed_max: int) -> None:
        """Send what is queued, in one pipeline (one round trip however many members just
        connected or joined): an EVENT script call per event, in order, and the direct
        messages. When Redis cannot be reached, everything is queued again, ahead of what
        came meanwhile, for when it answers (an event the lost reply hid may then be told
        twice: the mirrors come out the same). Raises ``RedisError`` or ``OSError`` then."""
        events, self._events = self._events, []
        dms, self._dms = self._dms, []
        try:
            async with r.pipeline(transaction=False) as pipe:
                for kind, key, name, detail, new_key, rooms in events:
                    args = [epoch, node, feed_max, kind, key, name, detail, new_key]
                    args += ["\x1e".join(rooms), *rooms]
                    await self._script(keys=[], args=args, client=pipe)
                for to_node, key, sender, text, ts in dms:
                    pipe.xadd(
                        lua.inbox_key(to_node),
                        {"to": key, "f": sender, "t": text, "ts": repr(ts)},
                        maxlen=INBOX_MAX,
                        approximate=True,
                    )
                results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError):
            self._events[:0] = events
            self._dms[:0] = dms
            raise
        for got in results:
            if isinstance(got, Exception):
                log.warning("Redis did not take a cluster event: %s", got)

    async def call(
        self,
        r: Any,
        epoch: str,
        node: str,
        feed_max: int,
        kind: str,
        key: str,
        name: str,
        detail: str,
        new_key: str = "",
        rooms: list[str] | None = None,
    ) -> int:
        """One EVENT script call; its answer (0: refused, or no such ban). Raises
        ``RedisError`` or ``OSError``."""
        rooms = rooms or []
        args = [epoch, node, feed_max, kind, key, name, detail, new_key, "\x1e".join(rooms)]
        got = await self._script(keys=[], args=[*args, *rooms], client=r)
        return int(got)

    # ------------------------------------------------------------------ the other nodes'

    async def load(self, r: Any) -> None:
        """Start from what Redis has: topics, members, users, room names. Raises
        ``RedisError`` or ``OSError``."""
        self._script = r.register_script(lua.EVENT)
        self.topics = {
            room: RoomTopic(*orjson.loads(value))
            for room, value in (await r.hgetall("ac:topic")).items()
        }
        members = self.members = Members()
        members.names = dict(await r.hgetall("ac:room"))
        for room in await r.smembers("ac:mrooms"):
            for key, value in (await r.hgetall(f"ac:members:{room}")).items():
                name, _, node = value.partition("\x1f")
                members.apply("j", [room], key, name, "", "", node)
        for key, value in (await r.hgetall("ac:users")).items():
            name, _, rest = value.partition("\x1f")
            node, _, away = rest.partition("\x1f")
            members.apply("u", [], key, name, away, "", node)

    def entry(self, f: dict[str, str], me: str) -> None:
        """An event from the feed (``me``: this node, whose own events were applied when they
        were queued)."""
        node, kind = f["node"], f["k"]
        if node == me:
            return
        if kind == "t":
            topic = RoomTopic(*orjson.loads(f["w"])) if f["w"] else None
            if topic is None:
                self.topics.pop(f["ok"], None)
            else:
                self.topics[f["ok"]] = topic
            self.on_topic(f["ok"], topic)
            return
        if kind == "b":
            try:
                ban = ban_from_json(f["nk"], f["w"])
            except ValueError as exc:
                log.error("a ban from the cluster is unreadable: %s", exc)
                return
            self.on_ban(ban)
            return
        if kind == "B":
            self.on_unban(int(f["ok"]))
            return
        rooms = f["rooms"].split("\x1e") if f["rooms"] else []
        self.members.apply(kind, rooms, f["ok"], f["u"], f["w"], f["nk"], node)
        if kind == "a":
            rooms = self.members.rooms_of(f["ok"])
        if kind != "u" and kind != "q":
            self.on_member(kind, rooms, f["u"], f["w"])

    def inbox_entry(self, f: dict[str, str]) -> None:
        """A direct message from the inbox of this node."""
        self.on_dm(f["to"], f["f"], f["t"], float(f["ts"]))


def _nothing_member(kind: str, rooms: list[str], name: str, detail: str) -> None:
    pass


def _nothing_topic(room: str, topic: RoomTopic | None) -> None:
    pass


def _nothing_dm(key: str, sender: str, text: str, ts: float) -> None:
    pass


def _nothing_ban(ban: Ban) -> None:
    pass


def _nothing_unban(ban_id: int) -> None:
    pass
