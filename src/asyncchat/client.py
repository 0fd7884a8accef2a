"""The client library: bots and applications join rooms with it.

::

    async with connect("127.0.0.1", 1234, name="bot", reconnect=True) as client:
        await client.say("lobby", "hello")
        async for event in client:
            if isinstance(event, Message):
                ...

Requests (``say``, ``dm``, ``join``, ``leave``, ``nick``, ``who``, ``rooms``, ``history``) wait
for the server's answer and raise :class:`~asyncchat.errors.ServerError` when it refuses, or
:class:`~asyncchat.errors.ConnectionClosed` when the connection goes away for good. Iterating the
client yields every server event but ``ping``/``pong`` (which it answers itself), and the
client-side events :class:`Reconnecting` and :class:`Reconnected`; it ends when the client is
closed, and :attr:`Client.close_reason` then says why.

Reconnecting (``reconnect=True``): when the connection is lost (EOF, reset, no answer to a ping,
or a ``bye`` other than ``kicked``; never after :meth:`Client.close`), the client dials again
after a delay drawn uniformly from 0 to ``backoff_initial * 2**(attempt-1)`` (capped at
``backoff_max``: exponential backoff with full jitter), yielding :class:`Reconnecting` before each
attempt. Back in, it has said hello with its current name, its rooms and ``resume`` (the last
seq it saw in each room), re-sent every request still unanswered with its original id (a
``say`` the server already stored is not posted again if re-sent within its
``idempotency_window``), paged through the history it missed, and yields :class:`Reconnected`.
Meanwhile requests stay pending instead of failing. The stream never yields a room message
twice (by room and seq) and yields each room's messages in seq order: the replayed ones (marked
``history``) come before :class:`Reconnected`; the events that arrived while the client caught
up (live messages included) come after it. A refusal of the hello other than ``name_taken`` or
``too_many_connections`` ends reconnecting, as does ``give_up``.

A message the server stored from a ``say`` whose ack was lost with the connection is replayed
like any other (the client cannot tell it is its own before the re-sent ``say`` is answered).
Seqs are only compared within one server's history: a server without history that restarts
starts them over, and the client then forgets what it had seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .errors import ConfigError, ConnectionClosed, ProtocolError, ServerError
from .events import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Error,
    HistoryEnd,
    Joined,
    Left,
    Message,
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
from .tracking import CaughtUp, Tracker

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CLIENT_MAX_FRAME",
    "Client",
    "HistoryPage",
    "Reconnected",
    "Reconnecting",
    "StreamEvent",
    "connect",
]

log = logging.getLogger("asyncchat.client")

#: Bytes of one frame the client accepts from the server. Larger than the server's own bound:
#: a ``who`` of a room with thousands of members is legitimately big.
DEFAULT_CLIENT_MAX_FRAME = 16 * 1024 * 1024
#: Seconds: the first reconnection delay is drawn from 0 to this. Short, because most losses
#: are a blip or a server restart; full jitter spreads a crowd of clients over it anyway.
DEFAULT_BACKOFF_INITIAL = 0.2
#: Seconds: the most the delay between two attempts may be. A client of a server that was down
#: for long notices its return within this, and 10,000 clients dial ~2,000 times a second at the
#: most (full jitter halves the mean delay).
DEFAULT_BACKOFF_MAX = 10.0
#: Seconds the last attempt before ``give_up`` gets for its handshake at least.
_LAST_ATTEMPT = 1.0
#: Refusals of a hello that may pass later: the server takes a name from a dead connection
#: once that fails to answer a ping, and a full server has room again when others leave.
_RETRYABLE = frozenset({"name_taken", "too_many_connections"})

_EOF = object()


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """Client-side event (not on the wire): the connection is lost and the client dials again
    in ``delay`` seconds. ``attempt`` counts from 1 after each loss; ``reason`` says why the
    connection was lost (attempt 1) or why the previous attempt failed."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Client-side event (not on the wire): the client is back in its rooms. ``missed``
    messages it had not seen were replayed just before this event (marked ``history``);
    ``truncated``: some it missed were no longer kept by the server (or, on a server without
    history, anything was missed at all)."""

    missed: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """The answer to :meth:`Client.history`: ``messages`` oldest first; ``more``: messages exist
    beyond them in the direction asked; ``truncated``: some asked for are no longer kept."""

    room: str
    messages: tuple[Message, ...]
    more: bool
    truncated: bool


#: What iterating a :class:`Client` yields.
StreamEvent = ServerEvent | Reconnecting | Reconnected


class _Request:
    """A request awaiting its answer: the frame to send (again, after a reconnect)."""

    __slots__ = ("frame", "future")

    def __init__(self, frame: dict[str, Any], future: asyncio.Future[Any]) -> None:
        self.frame = frame
        self.future = future


class _Conn:
    """One TCP connection of the client."""

    __slots__ = ("bye", "last_recv", "lost", "reader", "resumed", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_recv = asyncio.get_running_loop().time()
        #: Why the client dropped this connection itself (a ping without answer).
        self.lost: str | None = None
        self.bye: Bye | None = None
        #: The ``resume`` of the hello on this connection.
        self.resumed: dict[str, int] = {}

    def send(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` unless the connection is going away (a request is sent again after a
        reconnect; uvloop raises on a write to a closed transport)."""
        if not self.writer.transport.is_closing():
            self.writer.write(encode(obj))


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Client:
    """A client of an asyncchat server, after ``welcome``. Made by :func:`connect`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        name: str,
        rooms: Sequence[str] | None = None,
        resume: dict[str, int] | None = None,
        timeout: float = 10.0,
        max_frame: int = DEFAULT_CLIENT_MAX_FRAME,
        retry_rate_limited: bool = True,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        reconnect: bool = False,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        give_up: float | None = None,
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ConfigError("backoff_initial must be positive and at most backoff_max")
        if give_up is not None and not give_up >= 0:
            raise ConfigError("give_up must be a number of seconds (or None: never)")
        self._host, self._port = host, port
        self._first_rooms = None if rooms is None else list(rooms)
        self._first_resume = dict(resume) if resume else None
        self._timeout = timeout
        self._max_frame = max_frame
        self._retry_rate_limited = retry_rate_limited
        self._ping_interval_opt = ping_interval
        self._ping_timeout_opt = ping_timeout
        self._ping_interval = ping_interval or 30.0
        self._ping_timeout = ping_timeout or 60.0
        self._reconnect = reconnect
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._give_up = give_up
        # Request ids are unique beyond this connection: the server remembers the ids of
        # messages for a while (idempotent re-sends), also across its restarts.
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._pending: dict[str | int, _Request] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._conn: _Conn | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._shut = False
        #: What was seen of each room, and the catching up after a reconnect.
        self._track = Tracker(resume)
        #: The last ``welcome``.
        self.welcome: Welcome | None = None
        #: Why the client closed (None while it is open or reconnecting).
        self.close_reason: str | None = None
        #: The last ``bye`` the server sent, if it did.
        self.bye: Bye | None = None
        #: The rooms this client is in, as the server names them.
        self.joined: set[str] = set()
        self.name = name

    # ------------------------------------------------------------------ connecting

    async def _start(self) -> None:
        """The first connection; its failures are the caller's."""
        self._conn = await self._dial(self._first_rooms, self._first_resume, self._timeout)
        self._runner = asyncio.create_task(self._run(), name="asyncchat-client")

    async def _dial(
        self, rooms: Sequence[str] | None, resume: dict[str, int] | None, timeout: float
    ) -> _Conn:
        """Connect and say hello. Raises ``ConnectionClosed``, ``ServerError`` (refused),
        ``TimeoutError`` (no welcome within ``timeout``) or ``ProtocolError``."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except OSError as exc:  # TimeoutError included
            raise ConnectionClosed(
                f"cannot connect to {self._host}:{self._port}: {_why(exc)}"
            ) from None
        conn = _Conn(reader, writer)
        conn.resumed = dict(resume or {})
        try:
            welcome = await self._handshake(conn, rooms, resume, timeout)
        except asyncio.IncompleteReadError:
            writer.close()
            raise ConnectionClosed(
                "the server closed the connection during the handshake"
            ) from None
        except ConnectionError as exc:
            writer.close()
            raise ConnectionClosed(f"connection lost during the handshake: {_why(exc)}") from None
        except BaseException:
            writer.close()
            raise
        self.welcome = welcome
        self.name = welcome.name
        self.joined = set(welcome.rooms)
        limits = welcome.limits
        self._ping_interval = self._ping_interval_opt or float(limits.get("ping_interval", 30.0))
        self._ping_timeout = self._ping_timeout_opt or float(limits.get("ping_timeout", 60.0))
        conn.last_recv = asyncio.get_running_loop().time()
        return conn

    async def _handshake(
        self,
        conn: _Conn,
        rooms: Sequence[str] | None,
        resume: dict[str, int] | None,
        timeout: float,
    ) -> Welcome:
        hello: dict[str, Any] = {"type": "hello", "name": self.name, "version": PROTOCOL_VERSION}
        if rooms is not None:
            hello["rooms"] = list(rooms)
        if resume:
            hello["resume"] = resume
        conn.send(hello)
        async with asyncio.timeout(timeout):
            while True:
                event = await self._read_event(conn)
                match event:
                    case Welcome():
                        return event
                    case Error(code=code, message=message):
                        raise ServerError(code, message)
                    case Bye(reason=reason):
                        raise ConnectionClosed(f"server said bye: {reason}")

    async def _run(self) -> None:
        """The owner of the connection: serves it and, with reconnect, dials again when it is
        lost. Ends with the client closed."""
        reason = "closed"
        try:
            while True:
                conn = self._conn
                assert conn is not None
                reason = await self._serve(conn)
                self._lost(conn)
                if not (
                    self._reconnect
                    and not self._shut
                    and (conn.bye is None or conn.bye.reason != "kicked")
                ):
                    break
                back = await self._redial(reason)
                if back is None:
                    return
                self._conn = back
                self._resume(back)
        except asyncio.CancelledError:
            raise
        except Exception:  # the task boundary: the client closes, the application goes on
            log.exception("internal error in the asyncchat client")
            reason = "internal error in the client"
            if self._conn is not None:
                self._conn.writer.transport.abort()
        finally:
            self._mark_closed(reason)

    async def _redial(self, reason: str) -> _Conn | None:
        """Dial until back in (the connection) or refused for good, or until ``give_up``
        seconds have passed (None, the client closed)."""
        loop = asyncio.get_running_loop()
        deadline = None if self._give_up is None else loop.time() + self._give_up
        for attempt in itertools.count(1):
            ceiling = min(self._backoff_max, self._backoff_initial * 2.0 ** min(attempt - 1, 60))
            delay = random.uniform(0.0, ceiling)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - loop.time()))
            log.info("reconnecting in %.2f s (attempt %d): %s", delay, attempt, reason)
            self._events.put_nowait(Reconnecting(attempt, delay, reason))
            await asyncio.sleep(delay)
            timeout = self._timeout
            if deadline is not None:
                timeout = min(timeout, max(deadline - loop.time(), _LAST_ATTEMPT))
            rooms = sorted(self.joined, key=str.casefold)
            resume = self._track.resume_positions(rooms)
            try:
                return await self._dial(rooms, resume, timeout)
            except ServerError as exc:
                if exc.code not in _RETRYABLE:
                    self._mark_closed(
                        f"the server refused to let the client back in: {exc.code}: {exc.message}"
                    )
                    return None
                reason = f"{exc.code}: {exc.message}"
            except TimeoutError:
                reason = f"no welcome within {timeout:g} s"
            except (ConnectionClosed, ProtocolError) as exc:
                reason = str(exc)
            except OSError as exc:
                reason = f"connection lost during the handshake: {_why(exc)}"
            if deadline is not None and loop.time() >= deadline:
                self._mark_closed(f"no connection for {self._give_up:g} s, gave up: {reason}")
                return None
        raise AssertionError("unreachable")  # pragma: no cover

    def _resume(self, conn: _Conn) -> None:
        """Back in: catch up (the replay of every room) before live events flow again, and
        re-send the requests still awaiting an answer."""
        welcome = self.welcome
        assert welcome is not None
        self._track.reconnected(welcome.rooms, conn.resumed, history=welcome.history)
        # The same ids: a say the server already stored is not posted twice, it answers with
        # the original ack. dm, join, leave, nick and the queries are not deduplicated by the
        # server: a dm whose answer was lost with the connection may be delivered twice.
        for req in self._pending.values():
            conn.send(req.frame)
        self._flush(conn)

    def _lost(self, conn: _Conn) -> None:
        """Forget what belonged to the connection ``conn``."""
        if self._conn is conn:
            self._conn = None
        conn.writer.close()
        self._track.lost()
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        """Move what the tracker decided: events into the stream, then page requests onto
        ``conn``."""
        for event in self._track.events_to_emit():
            if isinstance(event, CaughtUp):
                self._events.put_nowait(Reconnected(event.missed, event.truncated))
            else:
                self._events.put_nowait(event)
        for page in self._track.pages_to_request():
            ref = self._new_ref()
            self._track.page_sent(ref, page)
            conn.send(
                {
                    "type": "history",
                    "room": page.room,
                    "after": page.after,
                    "limit": self._page_max(),
                    "id": ref,
                }
            )

    # ------------------------------------------------------------------ reading

    async def _read_event(self, conn: _Conn) -> ServerEvent:
        (n,) = HEADER.unpack(await conn.reader.readexactly(4))
        check_length(n, self._max_frame)
        payload = await conn.reader.readexactly(n)
        conn.last_recv = asyncio.get_running_loop().time()
        return parse_server(loads(payload))

    async def _serve(self, conn: _Conn) -> str:
        """Read ``conn`` until it is lost; returns why."""
        keepalive = asyncio.create_task(self._keepalive(conn), name="asyncchat-client-ping")
        reason = "connection closed by the server"
        try:
            while True:
                try:
                    event = await self._read_event(conn)
                except ProtocolError as exc:
                    if exc.closes:
                        raise
                    log.warning("ignoring a frame from the server: %s", exc)
                    continue
                self._dispatch(conn, event)
                self._flush(conn)
        except asyncio.IncompleteReadError:
            if conn.lost is not None:
                reason = conn.lost
            elif conn.bye is not None:
                reason = f"server said bye: {conn.bye.reason}"
        except (ConnectionError, ProtocolError) as exc:
            reason = conn.lost or f"connection lost: {_why(exc)}"
        finally:
            keepalive.cancel()
            await asyncio.wait({keepalive})
        return reason

    async def _keepalive(self, conn: _Conn) -> None:
        """Ping a silent server; drop the connection if it does not answer within
        ping_timeout."""
        loop = asyncio.get_running_loop()
        while True:
            silence = loop.time() - conn.last_recv
            if silence < self._ping_interval:
                await asyncio.sleep(self._ping_interval - silence)
                continue
            conn.send({"type": "ping"})
            sent = loop.time()
            await asyncio.sleep(self._ping_timeout)
            if conn.last_recv < sent:
                conn.lost = "the server did not answer a ping"
                conn.writer.transport.abort()
                return

    def _dispatch(self, conn: _Conn, event: ServerEvent) -> None:
        match event:
            case Ping(data=data):
                conn.send({"type": "pong", **({"data": data} if data is not None else {})})
                return
            case Pong():
                return
            case Message():
                self._track.message(event)
                return
            case HistoryEnd():
                self._history_end(event)
                return
            case Bye():
                conn.bye = self.bye = event
            case Joined(room=room, name=name) if name == self.name:
                self.joined.add(room)
                if self._track.catching_up and event.ref is None:
                    return  # rejoined by the hello: Reconnected says so
            case Left(room=room, name=name) if name == self.name:
                self.joined.discard(room)
            case Renamed(old=old, new=new) if old == self.name:
                self.name = new
            case Ack(room=str(room), seq=int(seq)):
                self._track.ack(room, seq)
            case Error(ref=ref) if ref is not None and self._track.is_page(ref):
                self._track.page_failed(ref)
                return
        ref = getattr(event, "ref", None)
        if ref is not None:
            req = self._pending.pop(ref, None)
            if req is not None and not req.future.done():
                if isinstance(event, Error):
                    req.future.set_exception(
                        ServerError(
                            event.code, event.message, ref=ref, retry_after=event.retry_after
                        )
                    )
                else:
                    req.future.set_result(event)
        self._track.emit(event)

    def _history_end(self, end: HistoryEnd) -> None:
        messages = self._track.history_end(end)
        if messages is None or end.ref is None:
            return  # the tracker's: a replay, or a page of its own
        req = self._pending.pop(end.ref, None)
        if req is not None and not req.future.done():  # else a request given up on
            req.future.set_result(HistoryPage(end.room, messages, end.more, end.truncated))

    def _page_max(self) -> int:
        limits = self.welcome.limits if self.welcome is not None else {}
        return int(limits.get("history_page_max", 500))

    def _mark_closed(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        for req in self._pending.values():
            if not req.future.done():
                req.future.set_exception(ConnectionClosed(reason))
        self._pending.clear()
        self._track.close()
        self._events.put_nowait(_EOF)

    # ------------------------------------------------------------------ requests

    def _new_ref(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    async def request(self, obj: dict[str, Any]) -> Any:
        """Send a request with a fresh ``id`` and wait for the answer that carries it as
        ``ref`` (a :class:`HistoryPage` for ``history``). With reconnect, a request made or
        unanswered while the connection is down is sent again once it is back. Raises
        ``ServerError`` (refused) or ``ConnectionClosed`` (closed for good)."""
        loop = asyncio.get_running_loop()
        while True:
            ref = self._new_ref()
            req = _Request({**obj, "id": ref}, loop.create_future())
            if self._closed:
                raise ConnectionClosed(self.close_reason or "closed")
            self._pending[ref] = req
            try:
                conn = self._conn
                if conn is not None:  # else sent once reconnected
                    conn.send(req.frame)
                    try:
                        await conn.writer.drain()
                    except ConnectionError as exc:
                        if not self._reconnect:
                            raise ConnectionClosed(f"connection lost: {_why(exc)}") from None
                return await req.future
            except ServerError as exc:
                if exc.code == "rate_limited" and self._retry_rate_limited and exc.retry_after:
                    await asyncio.sleep(exc.retry_after)
                    continue
                raise
            finally:
                self._pending.pop(ref, None)

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
        """The names of a room's members."""
        reply = await self.request({"type": "who", "room": room})
        assert isinstance(reply, WhoReply)
        return list(reply.names)

    async def rooms(self) -> list[RoomInfo]:
        """Every room on the server with its member count."""
        reply = await self.request({"type": "rooms"})
        assert isinstance(reply, RoomList)
        return list(reply.rooms)

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

    # ------------------------------------------------------------------ events

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        while True:
            event = await self._events.get()
            if event is _EOF:
                self._events.put_nowait(_EOF)  # later iterations end too
                return
            yield event

    async def next_event(self, timeout: float | None = None) -> StreamEvent:
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
        """Closed for good (not while reconnecting)."""
        return self._closed

    @property
    def connected(self) -> bool:
        """A connection is up now (False while reconnecting, and once closed)."""
        return self._conn is not None and not self._closed

    @property
    def reconnect(self) -> bool:
        """Whether the client reconnects by itself."""
        return self._reconnect

    async def close(self, reason: str | None = None) -> None:
        """Say ``quit`` and close; stops reconnecting. Idempotent: a second call returns at
        once."""
        if self._shut:
            return
        self._shut = True
        conn = self._conn
        if conn is not None and not self._closed:
            conn.send({"type": "quit", **({"reason": reason} if reason else {})})
        self._mark_closed("closed by the client")
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            await asyncio.wait({runner})
        if conn is not None:
            conn.writer.close()
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()

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
        client = Client(self._host, self._port, **self._kwargs)
        await client._start()
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
    reconnect: bool = False,
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
    backoff_max: float = DEFAULT_BACKOFF_MAX,
    give_up: float | None = None,
) -> _Connect:
    """Connect and say ``hello``; use as ``async with connect(...) as client`` or
    ``client = await connect(...)``.

    ``rooms`` defaults to the server's (``lobby``). ``retry_rate_limited`` makes requests wait
    ``retry_after`` and try again when the server says ``rate_limited``. ``ping_interval`` and
    ``ping_timeout`` (seconds) default to the server's announced values. With ``reconnect``, a
    lost connection is dialled again (see the module docstring): ``backoff_initial`` and
    ``backoff_max`` (seconds) bound the delays, and after ``give_up`` seconds without a
    connection the client closes (None: it never gives up). Only a lost connection is retried:
    raises ``ServerError`` when the server refuses the first hello (``name_taken``...),
    ``ConnectionClosed`` when it cannot be reached, ``TimeoutError`` when there is no
    ``welcome`` within ``timeout`` seconds, ``ConfigError`` for backoff or give-up settings
    that make no sense.
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
            "reconnect": reconnect,
            "backoff_initial": backoff_initial,
            "backoff_max": backoff_max,
            "give_up": give_up,
        },
    )
