"""What a cluster node does with what happens on the other nodes (sans-I/O): their members'
joins, leaves, renames and away messages, their topics and the direct messages they send to
this node's members, told to this node's members as the hub tells its own (docs/cluster.md).
The cluster broker calls these, on the event loop, in the order Redis took the events."""

from __future__ import annotations

from . import wire
from .hub import Hub
from .interfaces import RoomTopic
from .presence import topic_frame

__all__ = ["dm_arrived", "member_event", "topic_changed"]


def member_event(hub: Hub, kind: str, keys: list[str], name: str, detail: str) -> None:
    """A member of another node called ``name`` joined ("j") or left ("l", ``detail``: the
    reason) the rooms ``keys``, renamed ("n", ``detail``: the new name) or set its away
    message ("a", ``detail``: "" when back) while in ``keys``. Rooms above
    ``quiet_room_size`` are not told, as for this node's members."""
    quiet = hub.limits.quiet_room_size
    rooms = [r for k in keys if (r := hub.rooms.get(k)) is not None and len(r.members) <= quiet]
    if kind == "n" or kind == "a":
        frame = wire.renamed(name, detail) if kind == "n" else wire.away(name, detail or None)
        for p in {p for r in rooms for p in r.members.values()}:
            hub.send(p, frame)
        return
    for r in rooms:
        hub.broadcast(
            r, wire.joined(r.name, name) if kind == "j" else wire.left(r.name, name, detail)
        )


def topic_changed(hub: Hub, key: str, topic: RoomTopic | None) -> None:
    """A member of another node set (None: cleared) the topic of room ``key``: this node's
    members of the room are told, and its joiners get it."""
    room = hub.rooms.get(key)
    if room is None:
        return  # a room created later asks the broker for its topic
    room.topic = topic
    hub.broadcast(room, topic_frame(room))


def dm_arrived(hub: Hub, key: str, sender: str, text: str, ts: float) -> None:
    """A member of another node sent ``text`` to the member with key ``key`` of this node
    (gone meanwhile: dropped, as a dm to a member who leaves while it is written)."""
    target = hub.members.get(key)
    if target is not None:
        hub.send(target, wire.dm(sender, target.name, text, ts))
