"""Room topics and away messages: what members say about rooms and themselves (sans-I/O).

A topic belongs to the room: the broker keeps it (in its store too, with history), so it
outlives the room's last member and, with history, a restart. Setting one needs membership and
is announced to the room; anyone may read an existing room's topic, and a joiner gets it right
after its ``joined``. An away message belongs to the member: it is announced to everyone who
shares a room with it, listed by ``who``, and returned in the ``ack`` of a ``dm`` to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import wire
from .errors import ErrorCode, ProtocolError
from .fanout import Member, Room
from .hub import Hub
from .interfaces import Ref, RoomTopic
from .validation import check_text, name_key

__all__ = ["away", "away_of", "set_topic", "topic_frame", "topic_reply"]


def _one_line(text: str, what: str, max_text: int, ref: Ref | None) -> None:
    try:
        check_text(text, max_text)
    except ProtocolError as exc:
        exc.ref = ref
        raise
    if "\n" in text or "\r" in text:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{what} must be one line", ref=ref)


def topic_frame(room: Room, ref: Ref | None = None) -> bytes:
    """The ``topic`` frame of ``room`` (without ``text`` when it has none)."""
    t = room.topic
    if t is None:
        return wire.topic(room.name, None, ref=ref)
    return wire.topic(room.name, t.text, t.by, t.ts, ref)


def topic_reply(hub: Hub, m: Member, room_name: str, ref: Ref | None) -> None:
    """Send ``m`` the topic of an existing room (in a cluster, one with members on any node).
    Raises ``room_invalid``."""
    room = hub.room(room_name)
    if room is not None:
        hub.send(m, topic_frame(room, ref))
        return
    key = name_key(room_name)
    name = None if hub.cluster is None else hub.cluster.remote_room(key)
    if name is None:
        raise ProtocolError(ErrorCode.ROOM_INVALID, f"no room {room_name!r}", ref=ref)
    t = hub.broker.topic(key)
    frame = (
        wire.topic(name, None, ref=ref) if t is None else wire.topic(name, t.text, t.by, t.ts, ref)
    )
    hub.send(m, frame)


def set_topic(
    hub: Hub,
    m: Member,
    room_name: str,
    text: str,
    ref: Ref | None,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Set the topic of a room ``m`` is in (an empty ``text`` clears it) and announce it to
    the room. Raises ``not_in_room``, ``text_too_long`` or ``bad_request`` (not one line)."""
    room = hub.my_room(m, room_name, ref)
    if text:
        _one_line(text, "a topic", hub.limits.max_text, ref)
        room.topic = RoomTopic(text, m.name, clock())
    else:
        room.topic = None
    hub.broker.set_topic(room.key, room.name, room.topic)
    hub.broadcast(room, topic_frame(room), exclude=m)
    hub.send(m, topic_frame(room, ref))


def away(hub: Hub, m: Member, message: str | None, ref: Ref | None) -> None:
    """Mark ``m`` away with ``message`` (None or empty: back). Everyone sharing a room with it
    gets ``away`` when that changes; ``m`` always gets it. Raises ``text_too_long`` or
    ``bad_request``."""
    if message:
        _one_line(message, "an away message", hub.limits.max_text, ref)
    else:
        message = None
    frame = wire.away(m.name, message)
    if message != m.away:
        m.away = message
        hub.tell_peers(m, frame)
        if hub.cluster is not None:
            hub.cluster.member_changed("a", [], m.key, m.name, message or "")
    hub.send(m, frame if ref is None else wire.away(m.name, message, ref))


def away_of(hub: Hub, names: list[str]) -> dict[str, str]:
    """The away message of each of ``names`` (members, of any node) who is away."""
    found = {m.name: m.away for m in hub.members_named(names) if m.away is not None}
    if hub.cluster is not None and len(found) < len(names):
        found = hub.remote_away(names) | found
    return found
