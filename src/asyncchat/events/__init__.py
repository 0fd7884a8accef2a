"""Typed events: one frozen dataclass per wire type, in each direction (sans-I/O).

``parse_client`` and ``parse_server`` turn a decoded JSON object into an event, checking the type
of every member; ``Event.to_wire`` turns an event back into the JSON object (``encode_event``
into a complete frame). Unknown members are ignored, as the contract asks.

The classes live in :mod:`.requests` (client → server) and :mod:`.replies` (server → client),
on the machinery of :mod:`.base`; this module names them all, and its two unions are the tables
the parsers dispatch on (``ping``/``pong`` go both ways).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from ..errors import ErrorCode, ProtocolError
from ..framing import MAX_ID, encode, safe_ref
from .base import PROTOCOL_VERSION, Event, Ref, RoomInfo
from .replies import (
    Ack,
    Away,
    BanInfo,
    BanList,
    Bye,
    DirectMessage,
    Error,
    HistoryEnd,
    Joined,
    Left,
    Message,
    Renamed,
    RoomList,
    Topic,
    Welcome,
    WhoReply,
)
from .requests import (
    Announce,
    AwayRequest,
    BanRequest,
    BansRequest,
    Hello,
    HistoryRequest,
    Join,
    Kick,
    Leave,
    Mute,
    Nick,
    Ping,
    Pong,
    Quit,
    Register,
    RoomsRequest,
    Say,
    SearchRequest,
    SendDm,
    TopicRequest,
    Unban,
    WhoRequest,
)

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
    "Ref",
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

#: wire ``type`` → event class, in each direction (``ping``/``pong`` are in both).
_CLIENT: dict[str, type[Event]] = {c.TYPE: c for c in get_args(ClientEvent)}
_SERVER: dict[str, type[Event]] = {c.TYPE: c for c in get_args(ServerEvent)}


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
