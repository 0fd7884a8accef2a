"""The hub: members, rooms, per-room ``seq`` and fan-out of pre-encoded frames (sans-I/O).

The hub never awaits and never touches a socket. Each member has a :class:`Sink`, supplied by
the connection layer, whose ``write`` hands bytes to the transport and reports whether the
member's unsent backlog is still within bounds.

Fan-out is batched per event-loop iteration. A room message is encoded once and appended to the
room's *batch*. A member whose outbox, in this iteration, is nothing but that room's batch is
*shared* with the room: it costs nothing per message, and at :meth:`Hub.flush` all shared members
receive one ``b"".join`` of the batch, one ``write`` each. A member that also gets anything else
(its own ``ack``, a reply, a frame of another room, or that sent in the batch and so must not get
its own message) is *private*: from then on it has a list of its own for the rest of the
iteration. Order is kept per member, because a member is always exactly one of the two.

The asyncio layer calls :meth:`Hub.set_scheduler` with ``loop.call_soon``, so that the first frame
of an iteration schedules one flush after everything the loop has read in that iteration.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .errors import ErrorCode, ProtocolError
from .framing import encode
from .limits import Limits
from .storage import HistoryStore, Page, Record
from .validation import check_name, check_room, name_key

__all__ = ["LOBBY", "SERVER_NAME", "Hub", "Member", "Room", "Sink"]

log = logging.getLogger("asyncchat.hub")

#: The room that always exists.
LOBBY = "lobby"
#: The sender name of messages the server itself posts (a name no user can take: it starts '*').
SERVER_NAME = "*server"

Ref = str | int

#: Re-sendable message ids remembered at the most (the idempotency window is also bounded in
#: time by ``idempotency_window``): about 150 bytes each.
MAX_REMEMBERED_IDS = 100_000


class Sink(Protocol):
    """Where a member's bytes go; implemented by the connection layer."""

    def write(self, data: bytes) -> bool:
        """Hand ``data`` to the transport; False when the member is over its backlog bound."""
        ...

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        """Write ``final`` if it fits, then close (``abort``: without waiting for the buffer)."""
        ...


class Member:
    """A connected, named client."""

    __slots__ = ("_out", "_shared", "alive", "inflight", "key", "name", "rooms", "sink", "write")

    def __init__(self, name: str, sink: Sink) -> None:
        self.name = name
        self.key = name_key(name)
        self.sink = sink
        self.write = sink.write
        #: The rooms this member is in, by room key.
        self.rooms: dict[str, Room] = {}
        self.alive = True
        #: Messages of this member being stored, whose ack is still to come.
        self.inflight = 0
        self._out: list[bytes] | None = None
        self._shared: Room | None = None

    def __repr__(self) -> str:
        return f"<Member {self.name!r} rooms={sorted(self.rooms)}>"


class Room:
    """A room: its members by key, and its last ``seq``."""

    __slots__ = ("_batch", "_private", "committed", "key", "members", "name", "seq")

    def __init__(self, name: str, seq: int = 0) -> None:
        self.name = name
        self.key = name_key(name)
        self.members: dict[str, Member] = {}
        #: The last seq assigned, and the last one stored (the same without history).
        self.seq = seq
        self.committed = seq
        self._batch: list[bytes] | None = None
        self._private: list[Member] = []

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self.members)} seq={self.seq}>"


class Hub:
    """Members and rooms of one server. Raises ``ProtocolError`` for refused requests."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        self.members: dict[str, Member] = {}
        self.rooms: dict[str, Room] = {LOBBY: Room(LOBBY)}
        self._schedule: Callable[[Callable[[], None]], Any] | None = None
        self._flush_pending = False
        self._dirty_rooms: list[Room] = []
        self._dirty_members: list[Member] = []
        self.store: HistoryStore | None = None
        #: Messages are logged at DEBUG; whether that is on is looked up once, not per message.
        self._debug = log.isEnabledFor(logging.DEBUG)
        #: The last seq of rooms that do not exist now, so that a room never repeats one.
        self._last_seq: dict[str, int] = {}
        #: Idempotency: client key -> (room name, seq, ts) once stored, or the list of
        #: (member, ref) waiting for the ack while the first copy is being stored.
        self._recent: OrderedDict[str, tuple[str, int, float] | list[tuple[Member, Ref]]] = (
            OrderedDict()
        )

    def attach_store(self, store: HistoryStore) -> None:
        """Keep room messages in ``store`` (opened already): seq continues from it, ids re-sent
        within the idempotency window are recognised, and a ``say`` is acknowledged and fanned
        out only once stored (see :meth:`committed`)."""
        self.store = store
        self._last_seq = store.last_seqs()
        since = self.clock() - self.limits.idempotency_window
        recent = store.recent_client_keys(since)
        for key, (_room, name, seq, ts) in sorted(recent.items(), key=lambda kv: kv[1][3]):
            self._recent[key] = (name, seq, ts)
        for room in self.rooms.values():
            room.seq = room.committed = max(room.seq, self._last_seq.pop(room.key, 0))

    def set_scheduler(self, schedule: Callable[[Callable[[], None]], Any] | None) -> None:
        """Have ``schedule(self.flush)`` called once per batch (``loop.call_soon``); with None,
        the owner calls :meth:`flush` itself."""
        self._schedule = schedule

    # ------------------------------------------------------------------ fan-out machinery

    def _dirty(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            if self._schedule is not None:
                self._schedule(self.flush)

    def send(self, m: Member, frame: bytes) -> None:
        """Queue ``frame`` for ``m`` alone, after everything already queued for it."""
        if not m.alive:
            return
        if m._shared is not None:
            self._materialize(m)
        out = m._out
        if out is None:
            m._out = [frame]
            self._dirty_members.append(m)
            self._dirty()
        else:
            out.append(frame)

    def _materialize(self, m: Member) -> None:
        """Turn a shared member private: its own copy of the batch it has received so far."""
        room = m._shared
        assert room is not None and room._batch is not None
        m._shared = None
        m._out = list(room._batch)
        self._dirty_members.append(m)
        room._private.append(m)

    def broadcast(self, room: Room, frame: bytes, exclude: Member | None = None) -> None:
        """Queue ``frame`` for every member of ``room`` except ``exclude``. Never awaits."""
        batch = room._batch
        if batch is None:
            room._batch = [frame]
            self._dirty_rooms.append(room)
            self._dirty()
            private: list[Member] = []
            room._private = private
            for m in room.members.values():
                if m is exclude:
                    private.append(m)
                elif m._out is None and m._shared is None:
                    m._shared = room
                else:
                    private.append(m)
                    self.send(m, frame)
            return
        if exclude is not None and exclude._shared is room:
            self._materialize(exclude)
        batch.append(frame)
        for m in room._private:
            if m is not exclude:
                self.send(m, frame)

    def flush(self) -> None:
        """Write every member's queued bytes: one ``write`` per member. Members over their
        backlog bound are evicted as slow consumers afterwards."""
        self._flush_pending = False
        rooms, self._dirty_rooms = self._dirty_rooms, []
        members, self._dirty_members = self._dirty_members, []
        slow: list[Member] = []
        for room in rooms:
            batch = room._batch
            room._batch = None
            room._private = []
            if batch is None:  # pragma: no cover - a room is listed once per batch
                continue
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            for m in room.members.values():
                if m._shared is room:
                    m._shared = None
                    if not m.write(data):
                        slow.append(m)
        for m in members:
            out = m._out
            m._out = None
            if out and not m.write(out[0] if len(out) == 1 else b"".join(out)):
                slow.append(m)
        for m in slow:
            m._out = None
            self.evict(
                m,
                "slow_consumer",
                "too far behind: unsent backlog over max_outbox",
                code=ErrorCode.SLOW_CONSUMER,
            )

    # ------------------------------------------------------------------ membership

    def add_member(self, name: str, sink: Sink) -> Member:
        """Register a named member (in no room yet). Raises ``name_invalid`` or ``name_taken``."""
        check_name(name)
        m = Member(name, sink)
        if m.key in self.members or m.key == name_key(SERVER_NAME):
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {name!r} is taken")
        self.members[m.key] = m
        return m

    def remove_member(self, m: Member, reason: str) -> None:
        """Take ``m`` out of every room (each is told ``left`` with ``reason``). Idempotent."""
        if not m.alive:
            return
        for room in list(m.rooms.values()):
            self._part(m, room, reason, None, notify_self=False)
        m.alive = False  # nothing more is queued for it; what already was is still written
        if self.members.get(m.key) is m:
            del self.members[m.key]

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
        final = b""
        if code is not None:
            final = encode({"type": "error", "code": str(code), "message": message})
        final += encode({"type": "bye", "reason": reason, "message": message})
        m.sink.close(final, abort=abort)

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
        budget: list[int] | None = None,
    ) -> Room:
        """Put ``m`` in room ``name``, creating it; the room's members (``m`` included) get
        ``joined``. With history, ``m`` then gets the room's last ``history_on_join`` messages,
        or with ``resume_after`` exactly those after that seq (a page at the most), and a
        ``history_end``. Raises ``room_invalid`` or ``too_many_rooms``; joining a room twice is
        a no-op answered with ``joined`` to ``m`` alone. ``budget`` (a one-item list of bytes,
        shared by the joins of one hello) bounds what the replays put in the outbox at once."""
        check_room(name)
        key = name_key(name)
        room = m.rooms.get(key)
        if room is not None:
            self.send(m, _joined(room, m, ref))
            return room
        if len(m.rooms) >= self.limits.max_rooms_per_client:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a client may be in at most {self.limits.max_rooms_per_client} rooms",
                ref=ref,
            )
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name, self._last_seq.pop(key, 0))
        if room._batch is not None:  # joined mid-batch: gets only what follows, privately
            room._private.append(m)
        room.members[m.key] = m
        m.rooms[key] = room
        if len(room.members) > self.limits.quiet_room_size:
            self.send(m, _joined(room, m, ref))  # a large room: only the joiner is told
        elif ref is None:
            self.broadcast(room, _joined(room, m, None))
        else:
            self.broadcast(room, _joined(room, m, None), exclude=m)
            self.send(m, _joined(room, m, ref))
        log.info("%s joined %s", m.name, room.name)
        self._replay(m, room, resume_after, budget)
        return room

    @staticmethod
    def _my_room(m: Member, name: str, ref: Ref | None) -> Room:
        """The room called ``name`` that ``m`` is in; raises ``not_in_room``. Clients mostly
        send the room as the server spells it, which is then its key already."""
        room = m.rooms.get(name) or m.rooms.get(name_key(name))
        if room is None:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you are not in {name!r}", ref=ref)
        return room

    def _refuse_if_store_failed(self, ref: Ref | None = None) -> None:
        """Raise ``history_unavailable`` when the store can no longer store (and so ack)."""
        if self.store is not None and self.store.failed is not None:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE,
                "the server cannot store messages now: not posted",
                ref=ref,
            )

    def leave(self, m: Member, name: str, ref: Ref | None = None) -> None:
        """Take ``m`` out of room ``name``; raises ``not_in_room``."""
        self._part(m, self._my_room(m, name, ref), "leave", ref, notify_self=True)

    def _part(
        self, m: Member, room: Room, reason: str, ref: Ref | None, *, notify_self: bool
    ) -> None:
        frame = encode({"type": "left", "room": room.name, "name": m.name, "reason": reason})
        if m._shared is room:
            self._materialize(m)
        del room.members[m.key]
        del m.rooms[room.key]
        if room._batch is not None and m in room._private:
            room._private.remove(m)
        if room.members:
            if len(room.members) < self.limits.quiet_room_size:
                self.broadcast(room, frame)
        elif room.key != LOBBY:
            del self.rooms[room.key]
            if room.seq:
                self._last_seq[room.key] = room.seq
        if notify_self:
            if ref is not None:
                frame = encode(
                    {
                        "type": "left",
                        "room": room.name,
                        "name": m.name,
                        "reason": reason,
                        "ref": ref,
                    }
                )
            self.send(m, frame)
        log.info("%s left %s (%s)", m.name, room.name, reason)

    def rename(self, m: Member, new: str, ref: Ref | None = None) -> None:
        """Rename ``m``; everyone sharing a room with it, and ``m``, get ``renamed``.
        Raises ``name_invalid`` or ``name_taken`` (renaming to a different case of one's own
        name is allowed)."""
        check_name(new)
        key = name_key(new)
        other = self.members.get(key)
        if (other is not None and other is not m) or key == name_key(SERVER_NAME):
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {new!r} is taken", ref=ref)
        old = m.name
        del self.members[m.key]
        for room in m.rooms.values():
            del room.members[m.key]
        m.name, m.key = new, key
        self.members[key] = m
        for room in m.rooms.values():
            room.members[key] = m
        frame = encode({"type": "renamed", "old": old, "new": new})
        peers = {p for room in m.rooms.values() for p in room.members.values()}
        peers.discard(m)
        for p in peers:
            self.send(p, frame)
        reply = (
            frame
            if ref is None
            else encode({"type": "renamed", "old": old, "new": new, "ref": ref})
        )
        self.send(m, reply)
        log.info("%s is now known as %s", old, new)

    # ------------------------------------------------------------------ messages

    def say(
        self, m: Member, room_name: str, text: str, ref: Ref | None = None, action: bool = False
    ) -> int:
        """Post ``text`` to a room ``m`` is in: the others get ``message``, ``m`` gets ``ack``
        (with history, once the message is stored). Returns the message's ``seq``. A ``say``
        whose ``ref`` this name already used within the idempotency window is not posted again:
        it gets the original ``ack``. Raises ``not_in_room``. The text must be valid already."""
        room = self._my_room(m, room_name, ref)
        self._refuse_if_store_failed(ref)
        store = self.store
        ckey = None
        if ref is not None:
            ckey = f"{m.key}\x1f{room.key}\x1f{ref!r}"
            seen = self._recent.get(ckey)
            if seen is not None:
                if isinstance(seen, list):
                    seen.append((m, ref))  # the first copy is being stored: ack both then
                    return 0
                self.send(m, _ack(seen[0], seen[1], seen[2], ref))
                return seen[1]
        seq = room.seq = room.seq + 1
        ts = self.clock()
        frame = _message(room.name, seq, m.name, text, ts, action)
        ack = _ack(room.name, seq, ts, ref)
        if store is not None:
            rec = Record(room.key, room.name, seq, m.name, text, ts, action, ckey)
            store.submit(rec, (frame, m, ack))
            m.inflight += 1
            if ckey is not None:
                self._remember(ckey, [])
            return seq
        room.committed = seq
        self.broadcast(room, frame, exclude=m)
        self.send(m, ack)
        if ckey is not None:
            self._remember(ckey, (room.name, seq, ts))
        if self._debug:
            log.debug("%s said in %s (#%d)", m.name, room.name, seq)
        return seq

    def _remember(
        self, ckey: str, value: tuple[str, int, float] | list[tuple[Member, Ref]]
    ) -> None:
        recent = self._recent
        recent[ckey] = value
        recent.move_to_end(ckey)
        horizon = self.clock() - self.limits.idempotency_window
        while recent:
            oldest = next(iter(recent.values()))
            if len(recent) <= MAX_REMEMBERED_IDS and (
                isinstance(oldest, list) or oldest[2] >= horizon
            ):
                break
            recent.popitem(last=False)

    def committed(self, batch: list[tuple[Record, Any]]) -> None:
        """The store reports stored messages, in order: fan each out and acknowledge it."""
        for rec, (frame, m, ack) in batch:
            room = self.rooms.get(rec.room)
            if room is not None:
                room.committed = rec.seq
                self.broadcast(room, frame, exclude=m)
            if m is not None:
                m.inflight -= 1
                self.send(m, ack)
            if rec.client_key is not None:
                waiting = self._recent.get(rec.client_key)
                self._remember(rec.client_key, (rec.name, rec.seq, rec.ts))
                if isinstance(waiting, list):
                    for other, ref in waiting:
                        self.send(other, _ack(rec.name, rec.seq, rec.ts, ref))
            if self._debug:
                log.debug("%s said in %s (#%d)", rec.sender, rec.name, rec.seq)

    def announce(self, room_name: str, text: str, *, action: bool = False) -> int:
        """Post ``text`` to a room as the server (sender ``*server``); returns its ``seq``.
        Raises ``room_invalid`` if there is no such room."""
        room = self.room(room_name)
        if room is None:
            raise ProtocolError(ErrorCode.ROOM_INVALID, f"no room {room_name!r}")
        self._refuse_if_store_failed()
        seq = room.seq = room.seq + 1
        ts = self.clock()
        frame = _message(room.name, seq, SERVER_NAME, text, ts, action)
        if self.store is not None:
            rec = Record(room.key, room.name, seq, SERVER_NAME, text, ts, action)
            self.store.submit(rec, (frame, None, b""))
        else:
            room.committed = seq
            self.broadcast(room, frame)
        return seq

    # ------------------------------------------------------------------ history

    def replay_budget(self) -> list[int]:
        """Bytes of history one request (or one hello, for all its rooms) may queue at once:
        half of max_outbox, so that a replay never makes a healthy client a slow consumer."""
        return [self.limits.max_outbox // 2]

    def _replay(
        self, m: Member, room: Room, resume_after: int | None, budget: list[int] | None
    ) -> None:
        store = self.store
        if store is None:
            if resume_after is not None:  # nothing is kept: say whether anything was missed
                end: dict[str, Any] = {
                    "type": "history_end",
                    "room": room.name,
                    "more": False,
                    "truncated": resume_after < room.committed,
                }
                if resume_after > room.committed:  # seqs this server never gave: it restarted
                    end["reset"] = True
                self.send(m, encode(end))
            return
        limits = self.limits
        reset = resume_after is not None and resume_after > room.committed
        if reset:  # the client saw seqs this history never had: it was reset; start over
            resume_after = 0
        # Only what was fanned out already: a message stored but not yet fanned out comes
        # live right after, and must not come twice.
        upto = room.committed + 1
        if resume_after is None:
            n = min(limits.history_on_join, limits.history_page_max)
            page = store.page(room.key, before=upto, limit=n)
        else:
            page = store.page(
                room.key, after=resume_after, before=upto, limit=limits.history_page_max
            )
        self._send_page(m, room, page, after=resume_after, ref=None, reset=reset, budget=budget)

    def _send_page(
        self,
        m: Member,
        room: Room,
        page: Page,
        *,
        after: int | None,
        ref: Ref | None,
        reset: bool = False,
        budget: list[int] | None = None,
    ) -> None:
        frames = [encode(rec.wire()) for rec in page.records]
        more = page.more
        left = (budget or self.replay_budget())[0]
        fresh = left >= self.limits.max_outbox // 2  # a fresh budget always makes progress
        if sum(map(len, frames)) > left:
            # Over the byte budget: keep the end of the page nearest to where it starts from
            # (the oldest going forwards, the newest going backwards) and say there is more.
            keep: list[bytes] = []
            for frame in frames if after is not None else reversed(frames):
                if len(frame) > left and (keep or not fresh):
                    break
                keep.append(frame)
                left -= len(frame)
            frames = keep if after is not None else keep[::-1]
            more = True
        else:
            left -= sum(map(len, frames))
        if budget is not None:
            budget[0] = max(0, left)
        for frame in frames:
            self.send(m, frame)
        end: dict[str, Any] = {"type": "history_end", "room": room.name, "more": more}
        if after is not None:  # is the first message asked for still kept?
            truncated = room.committed > after and not (0 < page.first_kept <= after + 1)
        else:  # a page back to the oldest kept message, which is not the first ever
            oldest_gone = page.first_kept > 1 or (page.first_kept == 0 and room.committed > 0)
            truncated = not more and oldest_gone
        if truncated:
            end["truncated"] = True
        if reset:
            end["reset"] = True
        if ref is not None:
            end["ref"] = ref
        self.send(m, encode(end))

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
        if self.store is None:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "this server keeps no history", ref=ref
            )
        default = self.limits.history_on_join or 50
        n = min(self.limits.history_page_max, default if limit is None else limit)
        upto = room.committed + 1  # what was fanned out already (see _replay)
        before = upto if before is None else min(before, upto)
        page = self.store.page(room.key, before=before, after=after, limit=n)
        self._send_page(m, room, page, after=after, ref=ref)

    def dm(self, m: Member, to: str, text: str, ref: Ref | None = None) -> None:
        """Send ``text`` to user ``to`` alone; ``m`` gets ``ack``. Raises ``no_such_user``."""
        target = self.members.get(name_key(to))
        if target is None:
            raise ProtocolError(ErrorCode.NO_SUCH_USER, f"nobody is called {to!r}", ref=ref)
        ts = self.clock()
        self.send(
            target,
            encode({"type": "dm", "from": m.name, "to": target.name, "text": text, "ts": ts}),
        )
        ack: dict[str, Any] = {"type": "ack"}
        if ref is not None:
            ack["ref"] = ref
        self.send(m, encode(ack))
        log.debug("%s sent a dm to %s", m.name, target.name)

    # ------------------------------------------------------------------ queries

    def who(self, room_name: str) -> tuple[str, list[str]]:
        """The room's display name and its member names, sorted. Raises ``room_invalid``."""
        room = self.room(room_name)
        if room is None:
            raise ProtocolError(ErrorCode.ROOM_INVALID, f"no room {room_name!r}")
        return room.name, sorted((m.name for m in room.members.values()), key=str.casefold)

    def room_list(self) -> list[dict[str, Any]]:
        """Every room with its member count, by name."""
        return [
            {"name": r.name, "members": len(r.members)}
            for r in sorted(self.rooms.values(), key=lambda r: r.key)
        ]

    def members_named(self, names: Iterable[str]) -> list[Member]:
        """The members called ``names`` that exist (without regard to case)."""
        return [m for n in names if (m := self.members.get(name_key(n))) is not None]


def _message(room: str, seq: int, sender: str, text: str, ts: float, action: bool) -> bytes:
    obj: dict[str, Any] = {
        "type": "message",
        "room": room,
        "seq": seq,
        "from": sender,
        "text": text,
        "ts": ts,
    }
    if action:
        obj["action"] = True
    return encode(obj)


def _ack(room: str, seq: int, ts: float, ref: Ref | None) -> bytes:
    obj: dict[str, Any] = {"type": "ack", "room": room, "seq": seq, "ts": ts}
    if ref is not None:
        obj["ref"] = ref
    return encode(obj)


def _joined(room: Room, m: Member, ref: Ref | None) -> bytes:
    obj: dict[str, Any] = {"type": "joined", "room": room.name, "name": m.name}
    if ref is not None:
        obj["ref"] = ref
    return encode(obj)
