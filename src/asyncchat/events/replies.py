"""Server → client events: one frozen dataclass per frame type the server sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import (
    Event,
    Ref,
    RoomInfo,
    _Bad,
    _bool,
    _int,
    _m,
    _names,
    _num,
    _numbers,
    _ref,
    _rooms,
    _seq,
    _str,
    _strmap,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(Event):
    TYPE: ClassVar[str] = "welcome"
    name: str = _m(_str)
    version: int = _m(_int)
    server: str = _m(_str)
    rooms: tuple[str, ...] = _m(_names)
    limits: dict[str, float] = _m(_numbers)
    motd: str | None = _m(_str, None)
    history: bool = _m(_bool, False)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(Event):
    TYPE: ClassVar[str] = "message"
    room: str = _m(_str)
    seq: int = _m(_seq)
    sender: str = _m(_str, wire="from")
    text: str = _m(_str)
    ts: float = _m(_num)
    action: bool = _m(_bool, False)
    history: bool = _m(_bool, False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectMessage(Event):
    TYPE: ClassVar[str] = "dm"
    sender: str = _m(_str, wire="from")
    to: str = _m(_str)
    text: str = _m(_str)
    ts: float = _m(_num)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Event):
    TYPE: ClassVar[str] = "ack"
    ref: Ref | None = _m(_ref, None)
    room: str | None = _m(_str, None)
    seq: int | None = _m(_seq, None)
    ts: float | None = _m(_num, None)
    #: For a ``dm``: the recipient's name as the server spells it.
    to: str | None = _m(_str, None)
    #: For a ``dm`` to someone away: their away message.
    away: str | None = _m(_str, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Joined(Event):
    TYPE: ClassVar[str] = "joined"
    room: str = _m(_str)
    name: str = _m(_str)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Left(Event):
    TYPE: ClassVar[str] = "left"
    room: str = _m(_str)
    name: str = _m(_str)
    reason: str = _m(_str)
    #: The reason a member gave with its ``quit``.
    message: str | None = _m(_str, None)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Renamed(Event):
    TYPE: ClassVar[str] = "renamed"
    old: str = _m(_str)
    new: str = _m(_str)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoReply(Event):
    TYPE: ClassVar[str] = "who"
    room: str = _m(_str)
    names: tuple[str, ...] = _m(_names)
    #: The away message of each member who is away (by name).
    away: dict[str, str] | None = _m(_strmap, None)
    #: More names follow: ask again with ``after`` the last of these.
    more: bool = _m(_bool, False)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomList(Event):
    TYPE: ClassVar[str] = "rooms"
    rooms: tuple[RoomInfo, ...] = _m(_rooms)
    #: More rooms follow: ask again with ``after`` the last of these.
    more: bool = _m(_bool, False)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEnd(Event):
    TYPE: ClassVar[str] = "history_end"
    room: str = _m(_str)
    more: bool = _m(_bool)
    truncated: bool = _m(_bool, False)
    reset: bool = _m(_bool, False)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Event):
    TYPE: ClassVar[str] = "error"
    code: str = _m(_str)
    message: str = _m(_str)
    ref: Ref | None = _m(_ref, None)
    retry_after: float | None = _m(_num, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(Event):
    TYPE: ClassVar[str] = "bye"
    reason: str = _m(_str)
    message: str | None = _m(_str, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Topic(Event):
    """A room's topic: set by ``by`` at ``ts``; without ``text``, the room has none."""

    TYPE: ClassVar[str] = "topic"
    room: str = _m(_str)
    text: str | None = _m(_str, None)
    by: str | None = _m(_str, None)
    ts: float | None = _m(_num, None)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Away(Event):
    """``name`` is away with ``message``, or back (no ``message``)."""

    TYPE: ClassVar[str] = "away"
    name: str = _m(_str)
    message: str | None = _m(_str, None)
    ref: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True)
class BanInfo:
    """One entry of ``bans.bans``: ``kind`` is ``account``, ``name`` or ``ip``; ``until`` is
    Unix seconds (None: until unbanned)."""

    id: int
    kind: str
    value: str
    reason: str
    by: str
    created: float
    until: float | None = None


def _bans(v: Any) -> tuple[BanInfo, ...]:
    bad = _Bad("a list of {id, kind, value, reason, by, created, until} objects")
    if type(v) is not list:
        raise bad
    out = []
    for b in v:
        if type(b) is not dict:
            raise bad
        try:
            until = b.get("until")
            out.append(
                BanInfo(
                    id=_seq(b["id"]),
                    kind=_str(b["kind"]),
                    value=_str(b["value"]),
                    reason=_str(b["reason"]),
                    by=_str(b["by"]),
                    created=_num(b["created"]),
                    until=None if until is None else _num(until),
                )
            )
        except (KeyError, _Bad):
            raise bad from None
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class BanList(Event):
    """The answer to ``bans``."""

    TYPE: ClassVar[str] = "bans"
    bans: tuple[BanInfo, ...] = _m(_bans)
    ref: Ref | None = _m(_ref, None)
