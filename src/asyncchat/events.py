"""Typed events: one frozen dataclass per wire type, in each direction (sans-I/O).

``parse_client`` and ``parse_server`` turn a decoded JSON object into an event, checking the type
of every member; ``Event.to_wire`` turns an event back into the JSON object (``encode_event``
into a complete frame). Unknown members are ignored, as the contract asks.

Client → server: Hello Say SendDm Join Leave Nick WhoRequest RoomsRequest HistoryRequest Ping
Pong Quit TopicRequest AwayRequest SearchRequest. Server → client: Welcome Message DirectMessage
Ack Joined Left Renamed WhoReply RoomList HistoryEnd Error Ping Pong Bye Topic Away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, TypeVar

from .errors import ErrorCode, ProtocolError
from .framing import MAX_ID, encode, safe_ref

__all__ = [
    "MAX_ID",
    "PROTOCOL_VERSION",
    "Ack",
    "Announce",
    "Away",
    "AwayRequest",
    "BanInfo",
    "BanList",
    "BanRequest",
    "BansRequest",
    "Bye",
    "ClientEvent",
    "DirectMessage",
    "Error",
    "Event",
    "Hello",
    "HistoryEnd",
    "HistoryRequest",
    "Join",
    "Joined",
    "Kick",
    "Leave",
    "Left",
    "Message",
    "Mute",
    "Nick",
    "Ping",
    "Pong",
    "Quit",
    "Register",
    "Renamed",
    "RoomInfo",
    "RoomList",
    "RoomsRequest",
    "Say",
    "SearchRequest",
    "SendDm",
    "ServerEvent",
    "Topic",
    "TopicRequest",
    "Unban",
    "Welcome",
    "WhoReply",
    "WhoRequest",
    "encode_event",
    "parse_client",
    "parse_server",
]

PROTOCOL_VERSION = 1

Ref = str | int


class _Bad(Exception):
    """A member has the wrong type; the message says what was expected."""


def _str(v: Any) -> str:
    if type(v) is str:
        return v
    raise _Bad("a string")


def _int(v: Any) -> int:
    if type(v) is int:
        return v
    raise _Bad("an integer")


def _seq(v: Any) -> int:
    if type(v) is int and v >= 0:
        return v
    raise _Bad("a non-negative integer")


def _num(v: Any) -> float:
    if type(v) in (int, float):
        return float(v)
    raise _Bad("a number")


def _bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    raise _Bad("a boolean")


def _ref(v: Any) -> Ref:
    if type(v) is int or (type(v) is str and len(v) <= MAX_ID):
        return v
    raise _Bad(f"a string of at most {MAX_ID} characters or an integer")


def _any(v: Any) -> Any:
    return v


def _names(v: Any) -> tuple[str, ...]:
    if type(v) is list and all(type(x) is str for x in v):
        return tuple(v)
    raise _Bad("a list of strings")


def _seqmap(v: Any) -> dict[str, int]:
    if type(v) is dict and all(type(s) is int and s >= 0 for s in v.values()):
        return v
    raise _Bad("an object mapping room names to non-negative integers")


def _numbers(v: Any) -> dict[str, float]:
    if type(v) is dict and all(type(x) in (int, float) for x in v.values()):
        return v
    raise _Bad("an object of numbers")


def _strmap(v: Any) -> dict[str, str]:
    if type(v) is dict and all(type(x) is str for x in v.values()):
        return v
    raise _Bad("an object of strings")


def _rooms(v: Any) -> tuple[RoomInfo, ...]:
    if type(v) is not list:
        raise _Bad("a list of {name, members} objects")
    out = []
    for r in v:
        if (
            type(r) is not dict
            or type(r.get("name")) is not str
            or type(r.get("members")) is not int
        ):
            raise _Bad("a list of {name, members} objects")
        out.append(RoomInfo(name=r["name"], members=r["members"]))
    return tuple(out)


def _m(
    kind: Callable[[Any], Any],
    default: Any = MISSING,
    *,
    wire: str | None = None,
    secret: bool = False,
) -> Any:
    """A wire member: its checker, its default (none: required) and its JSON name if not the
    attribute's; a ``secret`` (a password, a token) is left out of the event's repr."""
    return field(default=default, repr=not secret, metadata={"kind": kind, "wire": wire})


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One entry of ``rooms.rooms``."""

    name: str
    members: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of all events; ``TYPE`` is the wire ``type``."""

    TYPE: ClassVar[str] = ""

    @classmethod
    def _spec(cls) -> tuple[tuple[str, str, Callable[[Any], Any], bool, Any], ...]:
        """(attribute, wire name, checker, required, default) per member, computed once per
        class and kept on it."""
        spec = cls.__dict__.get("_SPEC_CACHE")
        if spec is None:
            spec = tuple(
                (
                    f.name,
                    f.metadata.get("wire") or f.name,
                    f.metadata["kind"],
                    f.default is MISSING,
                    f.default,
                )
                for f in dataclasses.fields(cls)
            )
            type.__setattr__(cls, "_SPEC_CACHE", spec)
        return spec

    @classmethod
    def from_wire(cls: type[_E], obj: Mapping[str, Any]) -> _E:
        """Build the event from its JSON object; raises ``ProtocolError(bad_request)``."""
        kwargs: dict[str, Any] = {}
        for attr, wire, kind, required, _default in cls._spec():
            if wire in obj and obj[wire] is not None:
                try:
                    kwargs[attr] = kind(obj[wire])
                except _Bad as exc:
                    raise ProtocolError(
                        ErrorCode.BAD_REQUEST,
                        f"{cls.TYPE}.{wire} must be {exc}",
                        ref=safe_ref(obj),
                    ) from None
            elif required:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"{cls.TYPE} requires the member {wire!r}",
                    ref=safe_ref(obj),
                )
        return cls(**kwargs)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object of this event; optional members at their default are left out."""
        out: dict[str, Any] = {"type": self.TYPE}
        for attr, wire, _kind, required, default in self._spec():
            value = getattr(self, attr)
            if required or value != default:
                out[wire] = value
        return out


_E = TypeVar("_E", bound=Event)


# ---------------------------------------------------------------- client -> server


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


# ---------------------------------------------------------------- server -> client


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


ClientEvent = (
    Hello
    | Say
    | SendDm
    | Join
    | Leave
    | Nick
    | WhoRequest
    | RoomsRequest
    | HistoryRequest
    | Ping
    | Pong
    | Quit
    | TopicRequest
    | AwayRequest
    | SearchRequest
    | Register
    | Kick
    | BanRequest
    | Unban
    | BansRequest
    | Announce
    | Mute
)
ServerEvent = (
    Welcome
    | Message
    | DirectMessage
    | Ack
    | Joined
    | Left
    | Renamed
    | WhoReply
    | RoomList
    | HistoryEnd
    | Error
    | Ping
    | Pong
    | Bye
    | Topic
    | Away
    | BanList
)

_CLIENT: dict[str, type[Event]] = {
    c.TYPE: c
    for c in (
        Hello,
        Say,
        SendDm,
        Join,
        Leave,
        Nick,
        WhoRequest,
        RoomsRequest,
        HistoryRequest,
        Ping,
        Pong,
        Quit,
        TopicRequest,
        AwayRequest,
        SearchRequest,
        Register,
        Kick,
        BanRequest,
        Unban,
        BansRequest,
        Announce,
        Mute,
    )
}
_SERVER: dict[str, type[Event]] = {
    c.TYPE: c
    for c in (
        Welcome,
        Message,
        DirectMessage,
        Ack,
        Joined,
        Left,
        Renamed,
        WhoReply,
        RoomList,
        HistoryEnd,
        Error,
        Ping,
        Pong,
        Bye,
        Topic,
        Away,
        BanList,
    )
}


def _parse(table: dict[str, type[Event]], obj: Mapping[str, Any]) -> Any:
    cls = table.get(obj["type"])
    if cls is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown type {obj['type']!r}", ref=safe_ref(obj)
        )
    return cls.from_wire(obj)


def parse_client(obj: Mapping[str, Any]) -> ClientEvent:
    """The client event of a decoded JSON object (see :func:`asyncchat.framing.loads`).

    Raises ``ProtocolError`` with ``unknown_type`` or ``bad_request``.
    """
    return _parse(_CLIENT, obj)  # type: ignore[no-any-return]


def parse_server(obj: Mapping[str, Any]) -> ServerEvent:
    """The server event of a decoded JSON object; raises ``ProtocolError`` as ``parse_client``."""
    return _parse(_SERVER, obj)  # type: ignore[no-any-return]


def encode_event(event: Event) -> bytes:
    """The complete frame (length prefix included) of ``event``."""
    return encode(event.to_wire())
