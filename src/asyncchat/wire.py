"""One encoder per server frame: every frame the server sends is built here and nowhere else.

Each function returns a complete frame (length prefix included) of one server message of
``docs/protocol.md``, ``"type"`` first, optional members only when set. They build plain dicts
and encode them with orjson: the message and ack encoders are on the hot path of every ``say``.
The typed events of :mod:`asyncchat.events` stay the contract: a test parses each encoder's
output back with :func:`~asyncchat.events.parse_server` and compares it with the event it must
be. Sans-I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .errors import ProtocolError
from .events import PROTOCOL_VERSION, Ref
from .framing import HEADER

__all__ = [
    "ack",
    "away",
    "bans",
    "bye",
    "dm",
    "error",
    "error_for",
    "history_end",
    "joined",
    "left",
    "message",
    "ping",
    "pong",
    "renamed",
    "rooms",
    "topic",
    "welcome",
    "who",
]

_pack = HEADER.pack
_dumps = orjson.dumps


def _frame(obj: dict[str, Any]) -> bytes:
    payload = _dumps(obj)
    return _pack(len(payload)) + payload


def welcome(
    name: str,
    rooms: Sequence[str],
    limits: Mapping[str, int | float],
    *,
    server: str,
    motd: str | None = None,
    history: bool = False,
    ref: Ref | None = None,
) -> bytes:
    """``welcome``: the handshake succeeded; ``history`` says whether replays come."""
    obj: dict[str, Any] = {
        "type": "welcome",
        "name": name,
        "version": PROTOCOL_VERSION,
        "server": server,
        "rooms": list(rooms),
        "limits": dict(limits),
    }
    if motd:
        obj["motd"] = motd
    if history:
        obj["history"] = True
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def message(
    room: str,
    seq: int,
    sender: str,
    text: str,
    ts: float,
    action: bool = False,
    history: bool = False,
) -> bytes:
    """``message``: a room message (``history``: replayed, not live)."""
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
    if history:
        obj["history"] = True
    return _frame(obj)


def dm(sender: str, to: str, text: str, ts: float) -> bytes:
    """``dm``: a private message."""
    return _frame({"type": "dm", "from": sender, "to": to, "text": text, "ts": ts})


def ack(
    ref: Ref | None,
    room: str | None = None,
    seq: int | None = None,
    ts: float | None = None,
    *,
    to: str | None = None,
    away: str | None = None,
) -> bytes:
    """``ack``: a ``say`` (with its room, seq and ts) or a ``dm`` (without; ``to``: the
    recipient's name as the server spells it, ``away``: their away message) was accepted."""
    obj: dict[str, Any] = {"type": "ack"}
    if room is not None:
        obj["room"] = room
        obj["seq"] = seq
        obj["ts"] = ts
    if ref is not None:
        obj["ref"] = ref
    if to is not None:
        obj["to"] = to
    if away is not None:
        obj["away"] = away
    return _frame(obj)


def joined(room: str, name: str, ref: Ref | None = None) -> bytes:
    """``joined``: ``name`` is now in ``room``."""
    obj: dict[str, Any] = {"type": "joined", "room": room, "name": name}
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def left(
    room: str, name: str, reason: str, ref: Ref | None = None, *, message: str | None = None
) -> bytes:
    """``left``: ``name`` is no longer in ``room``, for ``reason`` (``message``: the reason
    the member gave with its ``quit``)."""
    obj: dict[str, Any] = {"type": "left", "room": room, "name": name, "reason": reason}
    if message:
        obj["message"] = message
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def renamed(old: str, new: str, ref: Ref | None = None) -> bytes:
    """``renamed``: ``old`` is now called ``new``."""
    obj: dict[str, Any] = {"type": "renamed", "old": old, "new": new}
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def who(
    room: str,
    names: Sequence[str],
    ref: Ref | None = None,
    *,
    away: Mapping[str, str] | None = None,
    more: bool = False,
) -> bytes:
    """``who``: the member names of ``room`` (``away``: the away message of those away;
    ``more``: a page, more names follow)."""
    obj: dict[str, Any] = {"type": "who", "room": room, "names": list(names)}
    if away:
        obj["away"] = dict(away)
    if more:
        obj["more"] = True
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def rooms(
    entries: Sequence[tuple[str, int]], ref: Ref | None = None, *, more: bool = False
) -> bytes:
    """``rooms``: (room name, member count) of each room (``more``: a page, more follow)."""
    obj: dict[str, Any] = {
        "type": "rooms",
        "rooms": [{"name": name, "members": members} for name, members in entries],
    }
    if more:
        obj["more"] = True
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def bans(entries: Sequence[Mapping[str, Any]], ref: Ref | None = None) -> bytes:
    """``bans``: the bans in force, each ``{id, kind, value, reason, by, created, until?}``
    (``until`` left out of a ban without end)."""
    out = [{k: v for k, v in b.items() if v is not None or k != "until"} for b in entries]
    obj: dict[str, Any] = {"type": "bans", "bans": out}
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def topic(
    room: str,
    text: str | None,
    by: str | None = None,
    ts: float | None = None,
    ref: Ref | None = None,
) -> bytes:
    """``topic``: the room's topic, set by ``by`` at ``ts`` (``text`` None: it has none)."""
    obj: dict[str, Any] = {"type": "topic", "room": room}
    if text is not None:
        obj["text"] = text
        if by is not None:
            obj["by"] = by
        if ts is not None:
            obj["ts"] = ts
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def away(name: str, message: str | None, ref: Ref | None = None) -> bytes:
    """``away``: ``name`` is away with ``message``, or back (``message`` None)."""
    obj: dict[str, Any] = {"type": "away", "name": name}
    if message is not None:
        obj["message"] = message
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def history_end(
    room: str,
    more: bool,
    *,
    truncated: bool | None = None,
    reset: bool = False,
    ref: Ref | None = None,
) -> bytes:
    """``history_end``: the end of a replay or of a page of history. ``truncated`` is left out
    when None (a server with history leaves it out when false; without history, a resume's
    ``history_end`` always says it)."""
    obj: dict[str, Any] = {"type": "history_end", "room": room, "more": more}
    if truncated is not None:
        obj["truncated"] = truncated
    if reset:
        obj["reset"] = True
    if ref is not None:
        obj["ref"] = ref
    return _frame(obj)


def error(
    code: str,
    message: str,
    *,
    ref: Ref | None = None,
    retry_after: float | None = None,
) -> bytes:
    """``error``: a request was refused, or the connection is about to close."""
    obj: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        obj["ref"] = ref
    if retry_after is not None:
        obj["retry_after"] = retry_after
    return _frame(obj)


def error_for(exc: ProtocolError) -> bytes:
    """The ``error`` frame that answers ``exc``."""
    return error(str(exc.code), exc.message, ref=exc.ref, retry_after=exc.retry_after)


def ping(data: Any = None) -> bytes:
    """``ping``: answer with ``pong`` carrying the same ``data``."""
    return _frame({"type": "ping"} if data is None else {"type": "ping", "data": data})


def pong(data: Any = None) -> bytes:
    """``pong``: the answer to a ``ping``."""
    return _frame({"type": "pong"} if data is None else {"type": "pong", "data": data})


def bye(reason: str, message: str | None = None) -> bytes:
    """``bye``: the server closes this connection on purpose (``message``: for people)."""
    obj: dict[str, Any] = {"type": "bye", "reason": reason}
    if message is not None:
        obj["message"] = message
    return _frame(obj)
