"""The client: requests, the event stream, and reconnecting.

Requests (``say``, ``dm``, ``join``, ``leave``, ``nick``, ``who``, ``rooms``, ``history``) wait
for the server's answer and raise :class:`~asyncchat.errors.ServerError` when it refuses, or
:class:`~asyncchat.errors.ConnectionClosed` when the connection goes away for good. Iterating the
client yields every server event but ``ping``/``pong`` (which it answers itself), and the
client-side events :class:`Reconnecting` and :class:`Reconnected`; it ends when the client is
closed, and :attr:`Client.close_reason` then says why.

Reconnecting (``reconnect=True``): when the connection is lost (EOF, reset, no answer to a ping,
or a ``bye`` other than ``kicked`` or ``banned``; never after :meth:`Client.close`), the client
dials again after a delay drawn uniformly from 0 to ``backoff_initial * 2**(attempt-1)`` (capped at
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
import ssl as _ssl
from collections.abc import AsyncIterator, Generator, Sequence
from types import TracebackType
from typing import Any

from ..errors import ConfigError, ConnectionClosed, ProtocolError, ServerError
from ..events import (
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
    ServerEvent,
    Welcome,
)
from ..tracking import HistoryPage, Reconnected, Reconnecting, Tracker
from .connection import Connection, describe
from .requests import Requests

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CLIENT_MAX_FRAME",
    "Client",
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


#: What iterating a :class:`Client` yields.
StreamEvent = ServerEvent | Reconnecting | Reconnected


class _Request:
    """A request awaiting its answer: the frame to send (again, after a reconnect)."""

    __slots__ = ("frame", "future")

    def __init__(self, frame: dict[str, Any], future: asyncio.Future[Any]) -> None:
        self.frame = frame
        self.future = future


class Client(Requests):
    """A client of an asyncchat server. ``await`` it (or enter it with ``async with``, which
    closes it on exit) to connect and say ``hello``; :data:`connect` is this class.

    ``rooms`` defaults to the server's (``lobby``). ``retry_rate_limited`` makes requests wait
    ``retry_after`` and try again when the server says ``rate_limited``. ``ping_interval`` and
    ``ping_timeout`` (seconds) default to the server's announced values. With ``reconnect``, a
    lost connection is dialled again (see the module docstring): ``backoff_initial`` and
    ``backoff_max`` (seconds) bound the delays, and after ``give_up`` seconds without a
    connection the client closes (None: it never gives up). Only a lost connection is retried:
    connecting raises ``ServerError`` when the server refuses the first hello
    (``name_taken``...), ``ConnectionClosed`` when it cannot be reached, ``TimeoutError`` when
    there is no ``welcome`` within ``timeout`` seconds. The constructor raises ``ConfigError``
    for backoff or give-up settings that make no sense.
    """

    def __init__(
        self,
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
        ssl: _ssl.SSLContext | bool | None = None,
        password: str | None = None,
        token: str | None = None,
        server_password: str | None = None,
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
        #: The hello's credentials (sent again on each reconnect; never logged).
        self._credentials = {
            k: v
            for k, v in (
                ("password", password),
                ("token", token),
                ("server_password", server_password),
            )
            if v is not None
        }
        self._ssl: _ssl.SSLContext | None = (
            _ssl.create_default_context() if ssl is True else ssl if ssl else None
        )
        # Request ids are unique beyond this connection: the server remembers the ids of
        # messages for a while (idempotent re-sends), also across its restarts.
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self._pending: dict[str | int, _Request] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._conn: Connection | None = None
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

    async def _start(self) -> Client:
        """The first connection; its failures are the caller's. Once only."""
        if self._runner is None:
            self._conn = await self._dial(self._first_rooms, self._first_resume, self._timeout)
            self._runner = asyncio.create_task(self._run(), name="asyncchat-client")
        return self

    def __await__(self) -> Generator[Any, None, Client]:
        return self._start().__await__()

    async def _dial(
        self, rooms: Sequence[str] | None, resume: dict[str, int] | None, timeout: float
    ) -> Connection:
        """Connect and say hello (see :meth:`Connection.open` for what it raises)."""
        conn, welcome = await Connection.open(
            self._host,
            self._port,
            name=self.name,
            rooms=rooms,
            resume=resume,
            timeout=timeout,
            max_frame=self._max_frame,
            ssl=self._ssl,
            credentials=self._credentials,
        )
        self.welcome = welcome
        self.name = welcome.name
        self.joined = set(welcome.rooms)
        limits = welcome.limits
        self._track.max_replay = int(limits.get("history_page_max", self._track.max_replay))
        self._ping_interval = self._ping_interval_opt or float(limits.get("ping_interval", 30.0))
        self._ping_timeout = self._ping_timeout_opt or float(limits.get("ping_timeout", 60.0))
        return conn

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
                    and (conn.bye is None or conn.bye.reason not in ("kicked", "banned"))
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

    async def _redial(self, reason: str) -> Connection | None:
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
                reason = f"connection lost during the handshake: {describe(exc)}"
            if deadline is not None and loop.time() >= deadline:
                self._mark_closed(f"no connection for {self._give_up:g} s, gave up: {reason}")
                return None
        raise AssertionError("unreachable")  # pragma: no cover

    def _resume(self, conn: Connection) -> None:
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

    def _lost(self, conn: Connection) -> None:
        """Forget what belonged to the connection ``conn``."""
        if self._conn is conn:
            self._conn = None
        conn.writer.close()
        self._track.lost()
        self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        """Move what the tracker decided: events into the stream, then page requests onto
        ``conn``."""
        for event in self._track.events_to_emit():
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

    async def _serve(self, conn: Connection) -> str:
        """Read ``conn`` until it is lost; returns why."""
        keepalive = asyncio.create_task(
            conn.keepalive(self._ping_interval, self._ping_timeout), name="asyncchat-client-ping"
        )
        reason = "connection closed by the server"
        try:
            while True:
                try:
                    event = await conn.read_event()
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
            reason = conn.lost or f"connection lost: {describe(exc)}"
        finally:
            keepalive.cancel()
            await asyncio.wait({keepalive})
        return reason

    def _dispatch(self, conn: Connection, event: ServerEvent) -> None:
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
                            raise ConnectionClosed(f"connection lost: {describe(exc)}") from None
                return await req.future
            except ServerError as exc:
                if exc.code == "rate_limited" and self._retry_rate_limited and exc.retry_after:
                    await asyncio.sleep(exc.retry_after)
                    continue
                raise
            finally:
                self._pending.pop(ref, None)

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
        return await self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


#: Connect and say ``hello``: ``async with connect(host, port, name=...) as client`` (closed on
#: exit) or ``client = await connect(...)``. The same class as :class:`Client`.
connect = Client
