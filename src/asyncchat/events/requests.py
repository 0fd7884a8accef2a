"""Client → server events: one frozen dataclass per request type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Event, Ref, _any, _bool, _int, _m, _names, _num, _ref, _seq, _seqmap, _str


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Event):
    TYPE: ClassVar[str] = "hello"
    name: str = _m(_str)
    version: int = _m(_int)
    rooms: tuple[str, ...] | None = _m(_names, None)
    resume: dict[str, int] | None = _m(_seqmap, None)
    id: Ref | None = _m(_ref, None)
    #: Credentials (docs/security.md): the account's password or one of its tokens, and the
    #: server's password on a private server.
    password: str | None = _m(_str, None, secret=True)
    token: str | None = _m(_str, None, secret=True)
    server_password: str | None = _m(_str, None, secret=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Say(Event):
    TYPE: ClassVar[str] = "say"
    room: str = _m(_str)
    text: str = _m(_str)
    id: Ref | None = _m(_ref, None)
    action: bool = _m(_bool, False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDm(Event):
    TYPE: ClassVar[str] = "dm"
    to: str = _m(_str)
    text: str = _m(_str)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Join(Event):
    TYPE: ClassVar[str] = "join"
    room: str = _m(_str)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave(Event):
    TYPE: ClassVar[str] = "leave"
    room: str = _m(_str)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Nick(Event):
    TYPE: ClassVar[str] = "nick"
    name: str = _m(_str)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class WhoRequest(Event):
    TYPE: ClassVar[str] = "who"
    room: str = _m(_str)
    #: Page on: only names after this one (in name-key order).
    after: str | None = _m(_str, None)
    limit: int | None = _m(_seq, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomsRequest(Event):
    TYPE: ClassVar[str] = "rooms"
    #: Page on: only rooms after this one (in name-key order).
    after: str | None = _m(_str, None)
    limit: int | None = _m(_seq, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRequest(Event):
    TYPE: ClassVar[str] = "history"
    room: str = _m(_str)
    before: int | None = _m(_seq, None)
    after: int | None = _m(_seq, None)
    limit: int | None = _m(_seq, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Event):
    """Liveness probe, in either direction; answered by :class:`Pong` with the same ``data``."""

    TYPE: ClassVar[str] = "ping"
    data: Any = _m(_any, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Event):
    TYPE: ClassVar[str] = "pong"
    data: Any = _m(_any, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Event):
    TYPE: ClassVar[str] = "quit"
    reason: str | None = _m(_str, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicRequest(Event):
    """Get a room's topic (no ``text``) or set it (``text``; empty clears it)."""

    TYPE: ClassVar[str] = "topic"
    room: str = _m(_str)
    text: str | None = _m(_str, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class AwayRequest(Event):
    """Mark oneself away with ``message``, or back without one."""

    TYPE: ClassVar[str] = "away"
    message: str | None = _m(_str, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchRequest(Event):
    """Search a room's stored messages for ``words`` (all of them), newest first."""

    TYPE: ClassVar[str] = "search"
    room: str = _m(_str)
    words: str = _m(_str)
    limit: int | None = _m(_seq, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Register(Event):
    """Register the name in use as an account with ``password`` (where registration is open)."""

    TYPE: ClassVar[str] = "register"
    password: str = _m(_str, secret=True)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Kick(Event):
    """Operators: disconnect the user called ``name``."""

    TYPE: ClassVar[str] = "kick"
    name: str = _m(_str)
    reason: str | None = _m(_str, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class BanRequest(Event):
    """Operators: ban an ``account``, a ``name`` or an ``ip`` (address or CIDR network), for
    ``duration`` seconds (none: until unbanned)."""

    TYPE: ClassVar[str] = "ban"
    account: str | None = _m(_str, None)
    name: str | None = _m(_str, None)
    ip: str | None = _m(_str, None)
    duration: float | None = _m(_num, None)
    reason: str | None = _m(_str, None)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unban(Event):
    """Operators: lift the ban numbered ``ban``."""

    TYPE: ClassVar[str] = "unban"
    ban: int = _m(_seq)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class BansRequest(Event):
    """Operators: the bans in force."""

    TYPE: ClassVar[str] = "bans"
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce(Event):
    """Operators: post ``text`` to ``room`` as the server."""

    TYPE: ClassVar[str] = "announce"
    room: str = _m(_str)
    text: str = _m(_str)
    id: Ref | None = _m(_ref, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mute(Event):
    """Operators: keep ``name`` from talking in ``room`` for ``duration`` seconds (none: until
    the server restarts; 0: unmute)."""

    TYPE: ClassVar[str] = "mute"
    room: str = _m(_str)
    name: str = _m(_str)
    duration: float | None = _m(_num, None)
    id: Ref | None = _m(_ref, None)
