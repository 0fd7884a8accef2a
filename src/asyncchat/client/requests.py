"""The typed requests of the client library, over one ``request`` primitive.

Each method builds its request, awaits the server's answer and returns it typed; they raise
:class:`~asyncchat.errors.ServerError` when the server refuses, and
:class:`~asyncchat.errors.ConnectionClosed` when the client is closed for good.
"""

from __future__ import annotations

from typing import Any

from ..events import (
    Ack,
    Away,
    BanInfo,
    BanList,
    Joined,
    Left,
    Renamed,
    RoomInfo,
    RoomList,
    Topic,
    WhoReply,
)
from ..tracking import HistoryPage

__all__ = ["Requests"]


class Requests:
    """What a client can ask the server; :class:`~asyncchat.client.Client` sends them."""

    async def request(self, obj: dict[str, Any]) -> Any:
        """Send ``obj`` with a fresh ``id`` and return the answer that carries it as ``ref``."""
        raise NotImplementedError

    async def say(self, room: str, text: str, *, action: bool = False) -> Ack:
        """Post to a room; returns the ``ack`` (with the message's ``seq``)."""
        obj: dict[str, Any] = {"type": "say", "room": room, "text": text}
        if action:
            obj["action"] = True
        reply: Ack = await self.request(obj)
        return reply

    async def dm(self, to: str, text: str) -> Ack:
        """Send a private message to user ``to``."""
        reply: Ack = await self.request({"type": "dm", "to": to, "text": text})
        return reply

    async def join(self, room: str) -> Joined:
        """Join (or create) a room."""
        reply: Joined = await self.request({"type": "join", "room": room})
        return reply

    async def leave(self, room: str) -> Left:
        """Leave a room."""
        reply: Left = await self.request({"type": "leave", "room": room})
        return reply

    async def nick(self, name: str) -> Renamed:
        """Change this client's name."""
        reply: Renamed = await self.request({"type": "nick", "name": name})
        return reply

    async def who(self, room: str) -> list[str]:
        """The names of a room's members (every page of them)."""
        return list((await self.who_away(room)).names)

    async def who_away(self, room: str) -> WhoReply:
        """A room's ``who`` reply whole: all its names (the server pages them: every page is
        asked for) and the away message of those away."""
        names: list[str] = []
        away: dict[str, str] = {}
        obj: dict[str, Any] = {"type": "who", "room": room}
        while True:
            reply = await self.request(obj)
            assert isinstance(reply, WhoReply)
            names += reply.names
            away.update(reply.away or {})
            if not reply.more or not reply.names:
                return WhoReply(room=reply.room, names=tuple(names), away=away or None)
            obj = {"type": "who", "room": room, "after": reply.names[-1]}

    async def topic(self, room: str, text: str | None = None) -> Topic:
        """A room's topic; with ``text``, set it first (empty: clear it). Raises
        ``ServerError`` (``room_invalid``; setting: ``not_in_room``, ``text_too_long``)."""
        obj: dict[str, Any] = {"type": "topic", "room": room}
        if text is not None:
            obj["text"] = text
        reply: Topic = await self.request(obj)
        return reply

    async def away(self, message: str | None = None) -> Away:
        """Mark this client away with ``message``, or back without one."""
        obj: dict[str, Any] = {"type": "away"}
        if message:
            obj["message"] = message
        reply: Away = await self.request(obj)
        return reply

    async def search(self, room: str, words: str, *, limit: int | None = None) -> HistoryPage:
        """The newest stored messages of ``room`` with every one of ``words``, newest first
        (``more``: older ones match too). Raises ``ServerError`` (``not_in_room``,
        ``history_unavailable``, ``bad_request`` without words)."""
        obj: dict[str, Any] = {"type": "search", "room": room, "words": words}
        if limit is not None:
            obj["limit"] = limit
        reply = await self.request(obj)
        assert isinstance(reply, HistoryPage)
        return reply

    async def rooms(self) -> list[RoomInfo]:
        """Every room on the server with its member count (every page of them)."""
        rooms: list[RoomInfo] = []
        obj: dict[str, Any] = {"type": "rooms"}
        while True:
            reply = await self.request(obj)
            assert isinstance(reply, RoomList)
            rooms += reply.rooms
            if not reply.more or not reply.rooms:
                return rooms
            obj = {"type": "rooms", "after": reply.rooms[-1].name}

    async def history(
        self,
        room: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        """A page of a room's past messages, oldest first: with ``after``, the oldest ones
        after that seq; otherwise the newest ones (before ``before``). ``limit`` is capped by
        the server's ``history_page_max``. The page's messages are not in the event stream.
        Raises ``ServerError`` (``not_in_room``, ``history_unavailable``)."""
        obj: dict[str, Any] = {"type": "history", "room": room}
        for key, value in (("before", before), ("after", after), ("limit", limit)):
            if value is not None:
                obj[key] = value
        reply = await self.request(obj)
        assert isinstance(reply, HistoryPage)
        return reply

    # ------------------------------------------------------------------ accounts, operators

    async def register(self, password: str) -> Ack:
        """Register the name in use as an account with ``password`` (where registration is
        open; over TLS or from loopback). Raises ``ServerError``: ``forbidden`` (closed),
        ``name_reserved``, ``tls_required``, ``bad_request`` (a password under 8 characters)."""
        reply: Ack = await self.request({"type": "register", "password": password})
        return reply

    async def kick(self, name: str, reason: str | None = None) -> Ack:
        """Operators: disconnect user ``name``. Raises ``ServerError`` (``forbidden``,
        ``no_such_user``)."""
        obj: dict[str, Any] = {"type": "kick", "name": name}
        if reason is not None:
            obj["reason"] = reason
        reply: Ack = await self.request(obj)
        return reply

    async def ban(
        self,
        *,
        account: str | None = None,
        name: str | None = None,
        ip: str | None = None,
        duration: float | None = None,
        reason: str | None = None,
    ) -> Ack:
        """Operators: ban one ``account``, ``name`` or ``ip`` (address or CIDR network) for
        ``duration`` seconds (None: until unbanned); matching users are disconnected at once.
        Raises ``ServerError`` (``forbidden``, ``bad_request``, ``no_such_user``)."""
        obj: dict[str, Any] = {"type": "ban"}
        for key, value in (
            ("account", account),
            ("name", name),
            ("ip", ip),
            ("duration", duration),
            ("reason", reason),
        ):
            if value is not None:
                obj[key] = value
        reply: Ack = await self.request(obj)
        return reply

    async def unban(self, ban: int) -> Ack:
        """Operators: lift ban number ``ban`` (see :meth:`bans`)."""
        reply: Ack = await self.request({"type": "unban", "ban": ban})
        return reply

    async def bans(self) -> list[BanInfo]:
        """Operators: the bans in force."""
        reply = await self.request({"type": "bans"})
        assert isinstance(reply, BanList)
        return list(reply.bans)

    async def announce(self, room: str, text: str) -> Ack:
        """Operators: post ``text`` to ``room`` as the server (``*server``)."""
        reply: Ack = await self.request({"type": "announce", "room": room, "text": text})
        return reply

    async def mute(self, room: str, name: str, duration: float | None = None) -> Ack:
        """Operators: keep ``name`` from talking in ``room`` for ``duration`` seconds (None:
        while the server runs; 0: unmute)."""
        obj: dict[str, Any] = {"type": "mute", "room": room, "name": name}
        if duration is not None:
            obj["duration"] = duration
        reply: Ack = await self.request(obj)
        return reply
