"""The hub: members, names and rooms, and what they do (sans-I/O).

The hub never awaits and never touches a socket. It decides; three helpers carry out:

- the :class:`~asyncchat.fanout.Batcher` owns every outbox and writes each member's bytes once
  per event-loop iteration (``send``, ``broadcast`` and ``flush`` are its methods, bound here);
- the :class:`~asyncchat.interfaces.Broker` gives each room message its seq, stores and dedupes
  it, and hands it back to :meth:`Hub.deliver` for fan-out and ack;
- :class:`~asyncchat.replay.Replay` sends history on join, resume and request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable

from . import wire
from .errors import ErrorCode, ProtocolError, StoreError
from .fanout import Batcher, Member, Room
from .interfaces import Broker, Cluster, Record, Ref, Sink
from .limits import Limits
from .replay import Replay, ReplayBudget
from .validation import check_name, check_room, glyph_key, name_key, user_key

__all__ = ["LOBBY", "SERVER_NAME", "Hub", "Member", "Pending", "Room"]

log = logging.getLogger("asyncchat.hub")

#: The room that always exists.
LOBBY = "lobby"
#: The sender name of messages the server itself posts (a name no user can take: it starts '*').
SERVER_NAME = "*server"
_SERVER_KEY = user_key(SERVER_NAME)

#: The hub's token for a published message: who gets its ack (None: the server posted it),
#: and the client's request id.
Pending = tuple[Member | None, Ref | None]


class Hub:
    """Members and rooms of one server. Raises ``ProtocolError`` for refused requests."""

    def __init__(
        self,
        limits: Limits,
        broker: Broker[Pending],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.broker = broker
        self.clock = clock
        self.members: dict[str, Member] = {}
        #: The same members by glyph key (validation.glyph_key): a second key no two share.
        self.glyphs: dict[str, Member] = {}
        self.rooms: dict[str, Room] = {LOBBY: Room(LOBBY)}
        #: (room key, name key) -> Unix seconds the mute ends (None: while the server runs).
        self.muted: dict[tuple[str, str], float | None] = {}
        fanout = Batcher(self._evict_slow)
        self.fanout = fanout
        # Bound once: these are called for every frame.
        self.send = fanout.send
        self.broadcast = fanout.broadcast
        self.flush = fanout.flush
        self.set_scheduler = fanout.set_scheduler
        self._publish = broker.publish
        #: Whether publishing can fail (a store behind the broker): checked before each say.
        self._fallible = broker.history
        self.replay = Replay(broker, limits, fanout.send)
        broker.attach(self.deliver, self.refuse)
        #: Messages are logged at DEBUG; whether that is on is looked up once, not per message.
        self._debug = log.isEnabledFor(logging.DEBUG)
        # What /metrics reports, counted as plain ints (read at scrape time, see stats.py):
        #: room messages members posted; message frames queued for members; acks of them;
        self.received = 0
        self.delivered = 0
        self.acked = 0
        #: members removed other than by quit or disconnect, by reason (timeout, kicked...);
        self.evictions: Counter[str] = Counter()
        #: error frames sent to clients (refused requests and connections), by code.
        self.refusals: Counter[str] = Counter()
        #: In a cluster, the other nodes: told what this node's members do (names, rooms,
        #: presence), asked for theirs (who, rooms, dm). None on one node.
        self.cluster: Cluster | None = None

    def start(self) -> None:
        """The broker has started: the rooms that exist continue their seq from it."""
        for room in self.rooms.values():
            room.seq = room.committed = max(room.seq, self.broker.last_seq(room.key))
            room.topic = self.broker.topic(room.key)

    # ------------------------------------------------------------------ membership

    def add_member(self, name: str, sink: Sink) -> Member:
        """Register a named member (in no room yet). Raises ``name_invalid`` or ``name_taken``."""
        check_name(name)
        m = Member(name, sink)
        if self._taken(m.key, m.glyph, m):
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {name!r} is taken")
        self.members[m.key] = m
        self.glyphs[m.glyph] = m
        if self.cluster is not None:
            self.cluster.member_changed("u", [], m.key, m.name, "")
        return m

    def _taken(self, key: str, glyph: str, m: Member) -> bool:
        """Whether a user other than ``m`` has the name key ``key`` or the glyph key ``glyph``
        (or it is the server's), on this node or, in a cluster, another."""
        other = self.members.get(key) or self.glyphs.get(glyph)
        if (other is not None and other is not m) or key == _SERVER_KEY:
            return True
        return (
            self.cluster is not None and key != m.key and self.cluster.remote_user(key) is not None
        )

    def remove_member(self, m: Member, reason: str, message: str | None = None) -> None:
        """Take ``m`` out of every room (each is told ``left`` with ``reason``, and the
        member's own ``message`` if given: the reason of a ``quit``). Idempotent."""
        if not m.alive:
            return
        if reason != "quit" and reason != "disconnect":
            self.evictions[reason] += 1
        for room in list(m.rooms.values()):
            self._part(m, room, reason, None, notify_self=False, message=message)
        m.alive = False  # nothing more is queued for it; what already was is still written
        if self.glyphs.get(m.glyph) is m:
            del self.glyphs[m.glyph]
        if self.members.get(m.key) is m:
            del self.members[m.key]
            if self.cluster is not None:
                self.cluster.member_changed("q", [], m.key, m.name, "")
                self.cluster.name_changed(m.key, None)

    def evict(
        self,
        m: Member,
        reason: str,
        message: str,
        *,
        code: ErrorCode | None = None,
        abort: bool = True,
    ) -> None:
        """Remove ``m`` (its rooms see ``left`` with ``reason``) and close its connection after
        an ``error`` with ``code`` (if given) and a ``bye``, if they still fit. ``abort`` closes
        without waiting for the unsent backlog (a slow consumer's is never going to drain)."""
        if not m.alive:
            return
        log.info("evicting %s: %s (%s)", m.name, reason, message)
        self.remove_member(m, reason)
        final = b"" if code is None else wire.error(str(code), message)
        m.sink.close(final + wire.bye(reason, message), abort=abort)

    def _evict_slow(self, m: Member) -> None:
        self.evict(
            m,
            "slow_consumer",
            "too far behind: unsent backlog over max_outbox",
            code=ErrorCode.SLOW_CONSUMER,
        )

    def room(self, name: str) -> Room | None:
        """The room called ``name`` (without regard to case), if it exists."""
        return self.rooms.get(name_key(name))

    def join(
        self,
        m: Member,
        name: str,
        ref: Ref | None = None,
        *,
        resume_after: int | None = None,
        budget: ReplayBudget | None = None,
    ) -> Room:
        """Put ``m`` in room ``name``, creating it; the room's members (``m`` included) get
        ``joined``, then ``m`` gets the room's replay (see :meth:`Replay.on_join`; ``budget``
        is shared by the joins of one hello). Raises ``room_invalid`` or ``too_many_rooms``;
        joining a room twice is a no-op answered with ``joined`` to ``m`` alone."""
        check_room(name)
        key = name_key(name)
        room = m.rooms.get(key)
        if room is not None:
            self.send(m, wire.joined(room.name, m.name, ref))
            return room
        if len(m.rooms) >= self.limits.max_rooms_per_client:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a client may be in at most {self.limits.max_rooms_per_client} rooms",
                ref=ref,
            )
        room = self.rooms.get(key)
        if room is None:
            if len(self.rooms) >= self.limits.max_rooms:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_ROOMS,
                    f"the server holds at most {self.limits.max_rooms} rooms",
                    ref=ref,
                )
            room = self.rooms[key] = Room(name, self.broker.last_seq(key), self.broker.topic(key))
        self.fanout.entered(m, room)
        room.members[m.key] = m
        m.rooms[key] = room
        if len(room.members) > self.limits.quiet_room_size:
            self.send(m, wire.joined(room.name, m.name, ref))  # a large room: only the joiner
        elif ref is None:
            self.broadcast(room, wire.joined(room.name, m.name))
        else:
            self.broadcast(room, wire.joined(room.name, m.name), exclude=m)
            self.send(m, wire.joined(room.name, m.name, ref))
        log.info("%s joined %s", m.name, room.name)
        if self.cluster is not None:
            self.cluster.member_changed("j", [key], m.key, m.name, room.name)
        if room.topic is not None:
            t = room.topic
            self.send(m, wire.topic(room.name, t.text, t.by, t.ts))
        self.replay.on_join(m, room, resume_after, budget)
        return room

    @staticmethod
    def _my_room(m: Member, name: str, ref: Ref | None) -> Room:
        """The room called ``name`` that ``m`` is in; raises ``not_in_room``. Clients mostly
        send the room as the server spells it, which is then its key already."""
        room = m.rooms.get(name) or m.rooms.get(name_key(name))
        if room is None:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you are not in {name!r}", ref=ref)
        return room

    #: The public name of :meth:`_my_room`, for the core modules beside the hub.
    my_room = _my_room

    def leave(self, m: Member, name: str, ref: Ref | None = None) -> None:
        """Take ``m`` out of room ``name``; raises ``not_in_room``."""
        self._part(m, self._my_room(m, name, ref), "leave", ref, notify_self=True)

    def _part(
        self,
        m: Member,
        room: Room,
        reason: str,
        ref: Ref | None,
        *,
        notify_self: bool,
        message: str | None = None,
    ) -> None:
        frame = wire.left(room.name, m.name, reason, message=message)
        self.fanout.leaving(m, room)
        del room.members[m.key]
        del m.rooms[room.key]
        if room.members:
            if len(room.members) < self.limits.quiet_room_size:
                self.broadcast(room, frame)
        elif room.key != LOBBY:
            del self.rooms[room.key]  # the broker keeps its last seq
        if notify_self:
            self.send(m, frame if ref is None else wire.left(room.name, m.name, reason, ref))
        log.info("%s left %s (%s)", m.name, room.name, reason)
        if self.cluster is not None:
            self.cluster.member_changed("l", [room.key], m.key, m.name, reason)

    def rename(self, m: Member, new: str, ref: Ref | None = None) -> None:
        """Rename ``m``; everyone sharing a room with it, and ``m``, get ``renamed`` (only
        ``m`` when the name is the same).
        Raises ``name_invalid`` or ``name_taken`` (renaming to a different case of one's own
        name is allowed)."""
        check_name(new)
        key, glyph = user_key(new), glyph_key(new)
        if self._taken(key, glyph, m):
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {new!r} is taken", ref=ref)
        old = m.name
        if new == old:  # nothing changes: the requester alone is answered
            self.send(m, wire.renamed(old, new, ref))
            return
        del self.members[m.key]
        if self.glyphs.get(m.glyph) is m:
            del self.glyphs[m.glyph]
        m.glyph = glyph
        self.glyphs[glyph] = m
        for room in m.rooms.values():
            del room.members[m.key]
        if self.cluster is not None:
            if key != m.key:
                self.cluster.name_changed(m.key, key)
            self.cluster.member_changed("n", list(m.rooms), m.key, old, new)
        m.name, m.key = new, key
        self.members[key] = m
        for room in m.rooms.values():
            room.members[key] = m
        frame = wire.renamed(old, new)
        self.tell_peers(m, frame)
        self.send(m, frame if ref is None else wire.renamed(old, new, ref))
        log.info("%s is now known as %s", old, new)

    def tell_peers(self, m: Member, frame: bytes) -> None:
        """Send ``frame`` once to everyone who shares a room with ``m`` (``m`` excluded), except
        in rooms above ``quiet_room_size``, which are not told of others' changes (as for
        joined/left): a rename or an away would otherwise reach 10,000 members at a time."""
        quiet = self.limits.quiet_room_size
        peers = {
            p
            for room in m.rooms.values()
            if len(room.members) <= quiet
            for p in room.members.values()
        }
        peers.discard(m)
        for p in peers:
            self.send(p, frame)

    # ------------------------------------------------------------------ messages

    def _refuse_if_failed(self, ref: Ref | None = None) -> None:
        """Raise ``history_unavailable`` when the broker can no longer store (and so ack)."""
        if self.broker.failed is not None:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE,
                "the server cannot store messages now: not posted",
                ref=ref,
            )

    def say(
        self, m: Member, room_name: str, text: str, ref: Ref | None = None, action: bool = False
    ) -> int:
        """Post ``text`` to a room ``m`` is in: the others get ``message``, ``m`` gets ``ack``
        (with history, once the message is stored). Returns the message's ``seq`` (0 when it is
        not known yet). A ``say`` whose ``ref`` this name already used in this room within the
        idempotency window is not posted again: it gets the original ``ack``. Raises
        ``not_in_room`` or ``history_unavailable``. The text must be valid already."""
        room = m.rooms.get(room_name) or self._my_room(m, room_name, ref)
        if self.muted:
            self._refuse_if_muted(m, room, ref)
        if self._fallible:
            self._refuse_if_failed(ref)
        ckey = None if ref is None else f"{m.key}\x1f{room.key}\x1f{ref!r}"
        self.received += 1
        m.inflight += 1
        try:
            seq = self._publish(room.key, room.name, m.name, text, action, ckey, (m, ref))
        except StoreError:
            m.inflight -= 1
            self._refuse_if_failed(ref)
            raise
        if seq > room.seq:
            room.seq = seq
        return seq

    def mute(self, room: Room, key: str, until: float | None) -> None:
        """Keep the user with name key ``key`` from talking in ``room`` until ``until`` (Unix
        seconds; None: while the server runs); ``until`` in the past unmutes."""
        if until is not None and until <= self.clock():
            self.muted.pop((room.key, key), None)
        else:
            self.muted[(room.key, key)] = until

    def _refuse_if_muted(self, m: Member, room: Room, ref: Ref | None) -> None:
        """Raise ``forbidden`` if ``m`` is muted in ``room`` (forgetting a mute that ended)."""
        mute = (room.key, m.key)
        if mute not in self.muted:
            return
        until = self.muted[mute]
        if until is not None and until <= self.clock():
            del self.muted[mute]
            return
        raise ProtocolError(ErrorCode.FORBIDDEN, f"you are muted in {room.name}", ref=ref)

    def deliver(self, record: Record, token: Pending, fresh: bool) -> None:
        """The broker hands back a published message, in seq order: fan it out if ``fresh``,
        and acknowledge it to its sender."""
        m, ref = token
        key, name, seq, sender, text, ts, action, _ = record  # one unpack, not 12 lookups
        if fresh:
            room = self.rooms.get(key)
            if room is not None:
                room.committed = seq
                if seq > room.seq:
                    room.seq = seq
                self.broadcast(room, wire.message(name, seq, sender, text, ts, action), exclude=m)
                # Everyone but the sender (who is in the room unless it left meanwhile: rare).
                self.delivered += len(room.members) - (m is not None)
            if self._debug:
                log.debug("%s said in %s (#%d)", sender, name, seq)
        if m is not None:
            m.inflight -= 1
            self.acked += 1
            self.send(m, wire.ack(ref, name, seq, ts))

    def refuse(self, token: Pending, why: str) -> None:
        """A published message will never be stored (the store failed): its sender gets
        ``history_unavailable`` instead of an ack."""
        m, ref = token
        if m is not None:
            m.inflight -= 1
            self.send(m, wire.error(str(ErrorCode.HISTORY_UNAVAILABLE), why, ref=ref))

    def announce(self, room_name: str, text: str, *, action: bool = False) -> int:
        """Post ``text`` to a room as the server (sender ``*server``); returns its ``seq``.
        Raises ``room_invalid`` if there is no such room, ``history_unavailable`` if the store
        failed."""
        room = self.room(room_name)
        if room is None:
            raise ProtocolError(ErrorCode.ROOM_INVALID, f"no room {room_name!r}")
        self._refuse_if_failed()
        seq = self._publish(room.key, room.name, SERVER_NAME, text, action, None, (None, None))
        if seq > room.seq:
            room.seq = seq
        return seq

    def history(
        self,
        m: Member,
        room_name: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        ref: Ref | None = None,
    ) -> None:
        """Send ``m`` a page of a room's history, oldest first, then ``history_end``. Raises
        ``not_in_room`` or ``history_unavailable``."""
        room = self._my_room(m, room_name, ref)
        self.replay.history(m, room, before=before, after=after, limit=limit, ref=ref)

    def dm(self, m: Member, to: str, text: str, ref: Ref | None = None) -> None:
        """Send ``text`` to user ``to`` alone (in a cluster, on whichever node it is); ``m``
        gets ``ack``. Raises ``no_such_user``."""
        key = user_key(to)
        target = self.members.get(key)
        if target is None:
            cluster = self.cluster
            there = None if cluster is None else cluster.remote_user(key)
            if (
                there is None
                or cluster is None
                or not cluster.send_dm(key, m.name, text, self.clock())
            ):
                raise ProtocolError(ErrorCode.NO_SUCH_USER, f"nobody is called {to!r}", ref=ref)
            self.send(m, wire.ack(ref, to=there[0], away=there[1]))
            return
        self.send(target, wire.dm(m.name, target.name, text, self.clock()))
        self.send(m, wire.ack(ref, to=target.name, away=target.away))
        log.debug("%s sent a dm to %s", m.name, target.name)

    # ------------------------------------------------------------------ queries

    def who(self, room_name: str) -> tuple[str, list[str]]:
        """The room's display name and all its member names, by name key. Raises
        ``room_invalid``."""
        name, names, _ = self.who_page(room_name)
        return name, names

    def who_page(
        self, room_name: str, after: str | None = None, limit: int | None = None
    ) -> tuple[str, list[str], bool]:
        """A page of a room's members by name key: the room's display name, at most ``limit``
        (None: all) names after ``after`` (any spelling), and whether more follow. Raises
        ``room_invalid``."""
        room = self.room(room_name)
        key = name_key(room_name)
        names = {} if room is None else {k: m.name for k, m in room.members.items()}
        display = None if room is None else room.name
        if self.cluster is not None:
            names = self.cluster.remote_members(key) | names
            display = display or self.cluster.remote_room(key)
        if display is None:
            raise ProtocolError(ErrorCode.ROOM_INVALID, f"no room {room_name!r}")
        keys, more = _page(names, after, limit, user_key)
        return display, [names[k] for k in keys], more

    def room_page(
        self, after: str | None = None, limit: int | None = None
    ) -> tuple[list[tuple[str, int]], bool]:
        """A page of rooms by key: at most ``limit`` (None: all) (name, member count) after
        room ``after`` (any spelling), and whether more follow. In a cluster, the rooms and
        members of every node."""
        rooms = {k: (r.name, len(r.members)) for k, r in self.rooms.items()}
        if self.cluster is not None:
            for k, (name, n) in self.cluster.remote_rooms().items():
                here = rooms.get(k)
                rooms[k] = (name, n) if here is None else (here[0], here[1] + n)
        keys, more = _page(rooms, after, limit, name_key)
        return [rooms[k] for k in keys], more

    def remote_away(self, names: Iterable[str]) -> dict[str, str]:
        """The away message of each of ``names`` who is a user of another node, and away."""
        found = {}
        if self.cluster is not None:
            for n in names:
                there = self.cluster.remote_user(user_key(n))
                if there is not None and there[1] is not None:
                    found[there[0]] = there[1]
        return found

    def members_named(self, names: Iterable[str]) -> list[Member]:
        """The members called ``names`` that exist (without regard to case)."""
        return [m for n in names if (m := self.members.get(user_key(n))) is not None]


def _page(
    by_key: Iterable[str], after: str | None, limit: int | None, key: Callable[[str], str]
) -> tuple[list[str], bool]:
    """The keys after ``after`` (by its ``key``), sorted, at most ``limit``; and whether more."""
    start = "" if after is None else key(after)
    keys = sorted(k for k in by_key if k > start)
    if limit is None or len(keys) <= limit:
        return keys, False
    return keys[:limit], True
