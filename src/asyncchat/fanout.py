"""Members, rooms and the batched fan-out of pre-encoded frames (sans-I/O).

Fan-out is batched per event-loop iteration by the :class:`Batcher`, which owns every outbox.
A room message is encoded once and appended to the room's *batch*. A member whose outbox, in
this iteration, is nothing but that room's batch is *shared* with the room: it costs nothing
per message, and at :meth:`Batcher.flush` all shared members receive one ``b"".join`` of the
batch, one ``write`` each. A member that also gets anything else (its own ``ack``, a reply, a
frame of another room, or that sent in the batch and so must not get its own message) is
*private*: from then on it has a list of its own for the rest of the iteration. Order is kept
per member, because a member is always exactly one of the two.

The server calls :meth:`Batcher.set_scheduler` with ``loop.call_soon``, so that the first frame
of an iteration schedules one flush after everything the loop has read in that iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .interfaces import RoomTopic, Sink
from .validation import glyph_key, name_key, user_key

__all__ = ["Batcher", "Member", "Room"]


class Member:
    """A connected, named client. ``outbox`` and ``shared`` belong to the :class:`Batcher`."""

    __slots__ = (
        "alive",
        "away",
        "glyph",
        "inflight",
        "key",
        "name",
        "outbox",
        "queued",
        "rooms",
        "shared",
        "sink",
        "write",
    )

    def __init__(self, name: str, sink: Sink) -> None:
        self.name = name
        self.key = user_key(name)
        #: The second key no other connected user may share (see ``validation.glyph_key``).
        self.glyph = glyph_key(name)
        self.sink = sink
        self.write = sink.write
        #: The rooms this member is in, by room key.
        self.rooms: dict[str, Room] = {}
        self.alive = True
        #: Messages of this member being published, whose ack is still to come.
        self.inflight = 0
        #: The member's away message, or None while it is here.
        self.away: str | None = None
        #: This iteration's frames for this member alone (it is private), or None.
        self.outbox: list[bytes] | None = None
        #: Bytes in ``outbox``: the connection stops reading a client whose requests queue
        #: too much before the flush (see ``transports.connection``).
        self.queued = 0
        #: The room whose batch is this member's whole outbox this iteration, or None.
        self.shared: Room | None = None

    def __repr__(self) -> str:
        return f"<Member {self.name!r} rooms={sorted(self.rooms)}>"


class Room:
    """A room: its members by key, and its last ``seq``. ``batch`` and ``private`` belong to
    the :class:`Batcher`."""

    __slots__ = ("batch", "committed", "key", "members", "name", "private", "seq", "topic")

    def __init__(self, name: str, seq: int = 0, topic: RoomTopic | None = None) -> None:
        self.name = name
        self.key = name_key(name)
        self.members: dict[str, Member] = {}
        #: The last seq published, and the last one fanned out (the same without history).
        self.seq = seq
        self.committed = seq
        #: This iteration's frames for the room, or None.
        self.batch: list[bytes] | None = None
        #: Members of the room that are private this iteration.
        self.private: list[Member] = []
        #: The room's topic, or None.
        self.topic = topic

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self.members)} seq={self.seq}>"


class Batcher:
    """Every member's outbox for this event-loop iteration, and its one flush.

    ``evict(member)`` is called after the flush for each member over its backlog bound.
    """

    def __init__(self, evict: Callable[[Member], None]) -> None:
        self._evict = evict
        self._schedule: Callable[[Callable[[], None]], Any] | None = None
        self._flush_pending = False
        self._dirty_rooms: list[Room] = []
        self._dirty_members: list[Member] = []

    def set_scheduler(self, schedule: Callable[[Callable[[], None]], Any] | None) -> None:
        """Have ``schedule(self.flush)`` called once per batch (``loop.call_soon``); with None,
        the owner calls :meth:`flush` itself."""
        self._schedule = schedule

    def _dirty(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            if self._schedule is not None:
                self._schedule(self.flush)

    def send(self, m: Member, frame: bytes) -> None:
        """Queue ``frame`` for ``m`` alone, after everything already queued for it."""
        if not m.alive:
            return
        if m.shared is not None:
            self._materialize(m)
        out = m.outbox
        m.queued += len(frame)
        if out is None:
            m.outbox = [frame]
            self._dirty_members.append(m)
            self._dirty()
        else:
            out.append(frame)

    def _materialize(self, m: Member) -> None:
        """Turn a shared member private: its own copy of the batch it has received so far."""
        room = m.shared
        assert room is not None and room.batch is not None
        m.shared = None
        m.outbox = list(room.batch)
        m.queued = sum(map(len, m.outbox))
        self._dirty_members.append(m)
        room.private.append(m)

    def broadcast(self, room: Room, frame: bytes, exclude: Member | None = None) -> None:
        """Queue ``frame`` for every member of ``room`` except ``exclude``. Never awaits."""
        batch = room.batch
        if batch is None:
            room.batch = [frame]
            self._dirty_rooms.append(room)
            self._dirty()
            private: list[Member] = []
            room.private = private
            for m in room.members.values():
                if m is exclude:
                    private.append(m)
                elif m.outbox is None and m.shared is None:
                    m.shared = room
                else:
                    private.append(m)
                    self.send(m, frame)
            return
        if exclude is not None and exclude.shared is room:
            self._materialize(exclude)
        batch.append(frame)
        size = len(frame)
        for m in room.private:
            if m is not exclude:
                out = m.outbox
                if out is not None and m.alive:  # send() inlined: a private member's outbox
                    out.append(frame)
                    m.queued += size
                else:
                    self.send(m, frame)

    def entered(self, m: Member, room: Room) -> None:
        """``m`` was just added to ``room``: mid-batch, it gets only what follows, privately."""
        if room.batch is not None:
            room.private.append(m)

    def leaving(self, m: Member, room: Room) -> None:
        """``m`` is about to be removed from ``room``: it keeps what it was sent until now."""
        if m.shared is room:
            self._materialize(m)
        if room.batch is not None and m in room.private:
            room.private.remove(m)

    def flush(self) -> None:
        """Write every member's queued bytes: one ``write`` per member. Members over their
        backlog bound are evicted afterwards."""
        self._flush_pending = False
        rooms, self._dirty_rooms = self._dirty_rooms, []
        members, self._dirty_members = self._dirty_members, []
        slow: list[Member] = []
        for room in rooms:
            batch = room.batch
            room.batch = None
            room.private = []
            if batch is None:  # pragma: no cover - a room is listed once per batch
                continue
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            for m in room.members.values():
                if m.shared is room:
                    m.shared = None
                    if not m.write(data):
                        slow.append(m)
        for m in members:
            out = m.outbox
            m.outbox = None
            m.queued = 0
            if out and not m.write(out[0] if len(out) == 1 else b"".join(out)):
                slow.append(m)
        for m in slow:
            m.outbox = None
            m.queued = 0
            self._evict(m)
