"""The client library: bots and applications join rooms with it.

::

    async with connect("127.0.0.1", 1234, name="bot") as client:
        await client.say("lobby", "hello")
        async for event in client:
            if isinstance(event, Message):
                ...

Requests (``say``, ``dm``, ``join``, ``leave``, ``nick``, ``who``, ``rooms``) wait for the
server's answer and raise :class:`~asyncchat.errors.ServerError` when it refuses, or
:class:`~asyncchat.errors.ConnectionClosed` when the connection goes away. Iterating the client
yields every server event but ``ping``/``pong`` (which it answers itself) and ends when the
connection closes; :attr:`Client.close_reason` then says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Generator, Sequence
from types import TracebackType
from typing import Any

from .errors import ConnectionClosed, ProtocolError, ServerError
from .events import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Error,
    Joined,
    Left,
    Ping,
    Pong,
    Renamed,
    RoomInfo,
    RoomList,
    ServerEvent,
    Welcome,
    WhoReply,
    parse_server,
)
from .framing import HEADER, check_length, encode, loads

__all__ = ["DEFAULT_CLIENT_MAX_FRAME", "Client", "connect"]

log = logging.getLogger("asyncchat.client")

#: Bytes of one frame the client accepts from the server. Larger than the server's own bound:
#: a ``who`` of a room with thousands of members is legitimately big.
DEFAULT_CLIENT_MAX_FRAME = 16 * 1024 * 1024

_EOF = object()


class Client:
    """A connection to an asyncchat server, after ``welcome``. Made by :func:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int = DEFAULT_CLIENT_MAX_FRAME,
        retry_rate_limited: bool = True,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_frame = max_frame
        self._retry_rate_limited = retry_rate_limited
        # Request ids are unique beyond this connection: the server remembers the ids of
        # messages for a while (idempotent re-sends), also across its restarts.
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._pending: dict[str | int, asyncio.Future[ServerEvent]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._shut = False
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._last_recv = 0.0
        #: Set by :meth:`_handshake`.
        self.welcome: Welcome | None = None
        #: Why the connection closed (None while it is open).
        self.close_reason: str | None = None
        #: The ``bye`` the server sent before closing, if it did.
        self.bye: Bye | None = None
        #: The rooms this client is in, as the server names them.
        self.joined: set[str] = set()
        self.name = ""

    # ------------------------------------------------------------------ handshake

    async def _handshake(
        self, name: str, rooms: Sequence[str] | None, resume: dict[str, int] | None, timeout: float
    ) -> None:
        hello: dict[str, Any] = {"type": "hello", "name": name, "version": PROTOCOL_VERSION}
        if rooms is not None:
            hello["rooms"] = list(rooms)
        if resume:
            hello["resume"] = resume
        self._writer.write(encode(hello))
        async with asyncio.timeout(timeout):
            while True:
                event = await self._read_event()
                if isinstance(event, Welcome):
                    break
                if isinstance(event, Error):
                    raise ServerError(event.code, event.message)
                if isinstance(event, Bye):
                    raise ConnectionClosed(f"server said bye: {event.reason}")
        self.welcome = event
        self.name = event.name
        limits = event.limits
        if self._ping_interval is None:
            self._ping_interval = float(limits.get("ping_interval", 30.0))
        if self._ping_timeout is None:
            self._ping_timeout = float(limits.get("ping_timeout", 60.0))
        self._last_recv = asyncio.get_running_loop().time()
        self._tasks.append(asyncio.create_task(self._read_loop(), name="asyncchat-client-read"))
        self._tasks.append(asyncio.create_task(self._keepalive(), name="asyncchat-client-ping"))

    # ------------------------------------------------------------------ reading

    async def _read_event(self) -> ServerEvent:
        (n,) = HEADER.unpack(await self._reader.readexactly(4))
        check_length(n, self._max_frame)
        payload = await self._reader.readexactly(n)
        self._last_recv = asyncio.get_running_loop().time()
        return parse_server(loads(payload))

    async def _read_loop(self) -> None:
        reason = "connection closed by the server"
        try:
            while True:
                try:
                    event = await self._read_event()
                except ProtocolError as exc:
                    if exc.closes:
                        raise
                    log.warning("ignoring a frame from the server: %s", exc)
                    continue
                self._dispatch(event)
        except asyncio.IncompleteReadError:
            if self.bye is not None:
                reason = f"server said bye: {self.bye.reason}"
        except (ConnectionError, ProtocolError) as exc:
            reason = f"connection lost: {exc}"
        finally:
            self._mark_closed(reason)

    def _dispatch(self, event: ServerEvent) -> None:
        match event:
            case Ping(data=data):
                self._send({"type": "pong", **({"data": data} if data is not None else {})})
                return
            case Pong():
                return
            case Bye():
                self.bye = event
            case Joined(room=room, name=name) if name == self.name:
                self.joined.add(room)
            case Left(room=room, name=name) if name == self.name:
                self.joined.discard(room)
            case Renamed(old=old, new=new) if old == self.name:
                self.name = new
        ref = getattr(event, "ref", None)
        if ref is not None:
            fut = self._pending.pop(ref, None)
            if fut is not None and not fut.done():
                if isinstance(event, Error):
                    fut.set_exception(
                        ServerError(
                            event.code, event.message, ref=ref, retry_after=event.retry_after
                        )
                    )
                else:
                    fut.set_result(event)
        self._events.put_nowait(event)

    async def _keepalive(self) -> None:
        """Ping a silent server; close if it does not answer within ping_timeout."""
        loop = asyncio.get_running_loop()
        interval = self._ping_interval or 30.0
        timeout = self._ping_timeout or 60.0
        while not self._closed:
            silence = loop.time() - self._last_recv
            if silence < interval:
                await asyncio.sleep(interval - silence)
                continue
            self._send({"type": "ping"})
            sent = loop.time()
            await asyncio.sleep(timeout)
            if self._last_recv < sent:
                self._mark_closed("the server did not answer a ping")
                self._writer.transport.abort()
                return

    def _mark_closed(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionClosed(reason))
        self._pending.clear()
        self._events.put_nowait(_EOF)

    # ------------------------------------------------------------------ requests

    def _send(self, obj: dict[str, Any]) -> None:
        if self._closed:
            raise ConnectionClosed(self.close_reason or "closed")
        self._writer.write(encode(obj))

    async def request(self, obj: dict[str, Any]) -> ServerEvent:
        """Send a request with a fresh ``id`` and wait for the answer that carries it as ``ref``.
        Raises ``ServerError`` (refused) or ``ConnectionClosed``."""
        while True:
            ref = f"{self._id_prefix}-{next(self._ids)}"
            fut: asyncio.Future[ServerEvent] = asyncio.get_running_loop().create_future()
            self._pending[ref] = fut
            try:
                self._send({**obj, "id": ref})
                await self._writer.drain()
                return await fut
            except ServerError as exc:
                if exc.code == "rate_limited" and self._retry_rate_limited and exc.retry_after:
                    await asyncio.sleep(exc.retry_after)
                    continue
                raise
            except ConnectionError as exc:
                raise ConnectionClosed(f"connection lost: {exc}") from None
            finally:
                self._pending.pop(ref, None)

    async def say(self, room: str, text: str, *, action: bool = False) -> Ack:
        """Post to a room; returns the ``ack`` (with the message's ``seq``)."""
        obj: dict[str, Any] = {"type": "say", "room": room, "text": text}
        if action:
            obj["action"] = True
        return await self.request(obj)  # type: ignore[return-value]

    async def dm(self, to: str, text: str) -> Ack:
        """Send a private message to user ``to``."""
        return await self.request({"type": "dm", "to": to, "text": text})  # type: ignore[return-value]

    async def join(self, room: str) -> Joined:
        """Join (or create) a room."""
        return await self.request({"type": "join", "room": room})  # type: ignore[return-value]

    async def leave(self, room: str) -> Left:
        """Leave a room."""
        return await self.request({"type": "leave", "room": room})  # type: ignore[return-value]

    async def nick(self, name: str) -> Renamed:
        """Change this client's name."""
        return await self.request({"type": "nick", "name": name})  # type: ignore[return-value]

    async def who(self, room: str) -> list[str]:
        """The names of a room's members."""
        reply = await self.request({"type": "who", "room": room})
        assert isinstance(reply, WhoReply)
        return list(reply.names)

    async def rooms(self) -> list[RoomInfo]:
        """Every room on the server with its member count."""
        reply = await self.request({"type": "rooms"})
        assert isinstance(reply, RoomList)
        return list(reply.rooms)

    # ------------------------------------------------------------------ events

    def __aiter__(self) -> AsyncIterator[ServerEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ServerEvent]:
        while True:
            event = await self._events.get()
            if event is _EOF:
                self._events.put_nowait(_EOF)  # later iterations end too
                return
            yield event

    async def next_event(self, timeout: float | None = None) -> ServerEvent:
        """The next event; raises ``ConnectionClosed`` at the end, ``TimeoutError`` after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            event = await self._events.get()
        if event is _EOF:
            self._events.put_nowait(_EOF)
            raise ConnectionClosed(self.close_reason or "closed")
        return event  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ closing

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self, reason: str | None = None) -> None:
        """Say ``quit`` and close. Idempotent: a second call returns at once."""
        if self._shut:
            return
        self._shut = True
        if not self._closed:
            with contextlib.suppress(ConnectionClosed):
                self._send({"type": "quit", **({"reason": reason} if reason else {})})
            self._mark_closed("closed by the client")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class _Connect:
    """The result of :func:`connect`: await it, or use it with ``async with``."""

    def __init__(self, host: str, port: int, kwargs: dict[str, Any]) -> None:
        self._host, self._port, self._kwargs = host, port, kwargs
        self._client: Client | None = None

    async def _open(self) -> Client:
        kw = dict(self._kwargs)
        name, rooms, resume = kw.pop("name"), kw.pop("rooms"), kw.pop("resume")
        timeout = kw.pop("timeout")
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            raise ConnectionClosed(
                f"cannot connect to {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        client = Client(reader, writer, **kw)
        try:
            await client._handshake(name, rooms, resume, timeout)
        except asyncio.IncompleteReadError:
            writer.close()
            raise ConnectionClosed(
                "the server closed the connection during the handshake"
            ) from None
        except BaseException:
            writer.close()
            raise
        return client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._client is not None
        await self._client.close()


def connect(
    host: str = "127.0.0.1",
    port: int = 1234,
    *,
    name: str,
    rooms: Sequence[str] | None = None,
    resume: dict[str, int] | None = None,
    timeout: float = 10.0,
    max_frame: int = DEFAULT_CLIENT_MAX_FRAME,
    retry_rate_limited: bool = True,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
) -> _Connect:
    """Connect and say ``hello``; use as ``async with connect(...) as client`` or
    ``client = await connect(...)``.

    ``rooms`` defaults to the server's (``lobby``). ``retry_rate_limited`` makes requests wait
    ``retry_after`` and try again when the server says ``rate_limited``. ``ping_interval`` and
    ``ping_timeout`` default to the server's announced values. Raises ``ServerError`` when the
    server refuses the hello (``name_taken``...), ``ConnectionClosed`` when it cannot be reached,
    ``TimeoutError`` when there is no ``welcome`` within ``timeout`` seconds.
    """
    return _Connect(
        host,
        port,
        {
            "name": name,
            "rooms": rooms,
            "resume": resume,
            "timeout": timeout,
            "max_frame": max_frame,
            "retry_rate_limited": retry_rate_limited,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
        },
    )
