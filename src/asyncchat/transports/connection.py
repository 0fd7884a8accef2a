"""The transport-independent core of one client connection.

A :class:`Connection` is the member's :class:`~asyncchat.interfaces.Sink` (bytes handed to the
transport, the backlog bound checked), its read loop over whatever yields the transport's frames,
the keepalive and write-stall checks the server's watchdog ticks, the one fail rule (send the
error and a ``bye``, then close), and an idempotent close. It knows nothing of the listener or
the server: the hub, the limits and admission are handed to it.

Memory: an idle connection is its transport, the stream reader and writer, one task, and the
coroutines suspended under it. :meth:`Connection.run` is the task's own coroutine and the task
boundary (no wrapper coroutine of the listener or of admission stays suspended above it), and it
reads native frames with ``readexactly`` itself (no reader coroutine between): under the task,
an idle connection has ``run``, ``readexactly`` and its wait for data (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, cast

from .. import wire
from ..errors import ErrorCode, ProtocolError
from ..framing import HEADER, check_length
from ..hub import Hub
from ..limits import Limits
from ..session import Session

if TYPE_CHECKING:
    from .admission import Admission

__all__ = [
    "FRAMES_PER_TURN",
    "PRE_HANDSHAKE_MAX_FRAME",
    "Closer",
    "Connection",
    "Frames",
    "ReadFrame",
    "read_frame",
]

log = logging.getLogger("asyncchat.server")

#: Bytes of one frame before the handshake: a ``hello`` with 32 rooms of 64 characters and a
#: resume map fits in well under this, and nothing larger is buffered from an unnamed peer.
PRE_HANDSHAKE_MAX_FRAME = 16_384

#: Frames read from one client without yielding to the event loop at the most (buffered frames
#: are read without a suspension): one client's pipeline cannot hold the loop for long.
FRAMES_PER_TURN = 64
#: Seconds between looks at a paused client's write buffer (only clients whose requests queued
#: more than their reply budget are paused).
RELIEVE_POLL = 0.01

#: ``await read(max_frame)``: the next frame's payload. Raises ``ProtocolError``
#: (``frame_too_large``: the stream cannot go on), ``asyncio.IncompleteReadError`` or
#: ``ConnectionError`` when the peer is gone.
ReadFrame = Callable[[int], Awaitable[bytes]]
#: Where a connection's frames come from: a native stream (4-byte length-prefixed frames, read
#: with ``readexactly``, the ``max_frame`` check on the header before the payload is read), or
#: the :data:`ReadFrame` of a transport that frames otherwise.
Frames = asyncio.StreamReader | ReadFrame

_unpack = HEADER.unpack


class Closer(Protocol):
    """What a connection waits on for its last bytes to drain (a ``StreamWriter``, a
    WebSocket)."""

    def wait_closed(self) -> Awaitable[None]: ...


async def read_frame(frames: Frames, max_frame: int) -> bytes:
    """The next frame's payload from ``frames`` (see :data:`ReadFrame` for what it raises)."""
    if isinstance(frames, asyncio.StreamReader):
        (n,) = _unpack(await frames.readexactly(4))
        check_length(n, max_frame)
        return await frames.readexactly(n) if n else b""
    return await frames(max_frame)


_LEFT_REASON = {
    ErrorCode.TIMEOUT: "timeout",
    ErrorCode.SLOW_CONSUMER: "slow_consumer",
    ErrorCode.RATE_LIMITED: "kicked",
    ErrorCode.BANNED: "banned",
}


class Connection:
    """One client connection on any transport. Closing is idempotent."""

    # Slots: an idle connection is this object, its session and its member (docs/limits.md,
    # memory per connection).
    __slots__ = (
        "__weakref__",
        "_drained_mark",
        "_pings",
        "_stall_since",
        "_time",
        "aborted",
        "admission",
        "closed",
        "handed",
        "hub",
        "ip",
        "kind",
        "last_activity",
        "limits",
        "max_outbox",
        "peer",
        "ping_at",
        "pings",
        "refused",
        "reply_budget",
        "secure",
        "session",
        "transport",
        "why",
    )

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        peer: str,
        *,
        hub: Hub,
        admission: Admission,
        motd: str | None = None,
        kind: str = "tcp",
        ip: str | None = None,
        secure: bool = False,
    ) -> None:
        #: The transport's name, for /metrics: "tcp", "ws"...
        self.kind = kind
        self.hub = hub
        #: The peer's IP address (for bans and the login throttle), and whether the
        #: connection is encrypted (TLS): passwords are only taken over one, or from loopback.
        self.ip = ip if ip is not None else peer.rpartition(":")[0] or peer
        self.secure = secure
        self.limits: Limits = hub.limits
        #: Counts this connection while it runs, and admits its hello.
        self.admission = admission
        self.transport = transport
        self.peer = peer
        self.max_outbox = self.limits.max_outbox
        #: Bytes of replies one client's requests may queue before the server stops reading
        #: it until they are written: a quarter of max_outbox, so that what is still unsent
        #: plus one more page of history (half of it) stays within max_outbox.
        self.reply_budget = self.max_outbox // 4
        self.session = Session(hub, self, peer=peer, motd=motd, ops=admission.moderation)
        self.closed = False
        self.aborted = False
        self.why = "disconnect"
        #: The last refusal of a hello on this connection (for the log), if any.
        self.refused: str | None = None
        self._time = admission.loop_time()  # one bound method for every connection
        self.last_activity = self._time()
        self.ping_at: float | None = None
        #: Whether the peer answers pings (False on the text doors: TCP keepalive instead).
        self.pings = True
        self._pings = 0
        # Write progress, for write_timeout: bytes handed to the transport, and what had been
        # drained to the socket at the last watchdog tick.
        self.handed = 0
        self._drained_mark = 0
        self._stall_since: float | None = None

    # ------------------------------------------------------------------ Sink

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if self.closed or transport.is_closing():
            return True  # the peer is gone (uvloop raises on a write now): finish removes it
        # Hand the bytes over first: the transport sends what the socket takes at once, and
        # only what is left unsent is backlog. Memory stays bounded by max_outbox plus one
        # write, and a member over the bound is evicted (and aborted) right after.
        transport.write(data)
        self.handed += len(data)
        return transport.get_write_buffer_size() <= self.max_outbox

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.why == "disconnect":
            self.why = "closed by the server"
        transport = self.transport
        if transport.is_closing():
            return
        if final and transport.get_write_buffer_size() + len(final) <= self.max_outbox:
            transport.write(final)
        if abort:
            self.aborted = True
            transport.abort()
        else:
            self.shutdown()

    def shutdown(self) -> None:
        """Close the transport once its buffer is sent (a WebSocket says close first)."""
        self.transport.close()

    def ping(self) -> bool:
        """Send a ping now (keepalive, or a name reclaim); False if the peer cannot answer one."""
        if not self.pings:
            return False
        m = self.session.member
        if m is not None:
            self._pings += 1
            self.hub.send(m, wire.ping(self._pings))
        return True

    # ------------------------------------------------------------------ read loop

    async def run(self, frames: Frames, closer: Closer, *, started: float | None = None) -> None:
        """Serve the connection in the current task, its owner: frames from ``frames`` until the
        peer goes, quits or is closed; then wait (at most ``write_timeout``) for
        ``closer.wait_closed()`` while the last bytes drain. The ``hello`` must be complete
        ``handshake_timeout`` seconds after ``started`` (the loop's time of the accept, before a
        TLS handshake; default: now). Admission counts the connection until this returns.

        This is the connection's task boundary: an internal error ends this one connection,
        never the server."""
        admission = self.admission
        task = asyncio.current_task()
        assert task is not None
        admission.opened(self, task)
        try:
            limits = self.limits
            session = self.session
            start = self._time() if started is None else started
            try:
                try:
                    async with asyncio.timeout_at(start + limits.handshake_timeout):
                        pre_max = min(limits.max_frame, PRE_HANDSHAKE_MAX_FRAME)
                        while session.member is None and not self.closed:
                            await self._handshake_frame(frames, pre_max)
                except TimeoutError:
                    self.fail(ProtocolError(ErrorCode.TIMEOUT, "no hello within handshake_timeout"))
                    log.info("%s: no hello within %ss", self.peer, limits.handshake_timeout)
                    return
                max_frame = limits.max_frame
                time = self._time
                m = session.member
                if m is None:
                    return  # closed during the handshake
                # A native stream is read here, not through a reader coroutine: an idle
                # connection keeps one suspended coroutine fewer (see the module docstring).
                read = None if isinstance(frames, asyncio.StreamReader) else frames
                stream = cast(asyncio.StreamReader, frames)
                budget = self.reply_budget
                turn = 0
                while not self.closed and not session.closing:
                    try:
                        if read is None:
                            (n,) = _unpack(await stream.readexactly(4))
                            check_length(n, max_frame)
                            payload = await stream.readexactly(n) if n else b""
                        else:
                            payload = await read(max_frame)
                    except ProtocolError as exc:
                        self.fail(exc)
                        break
                    self.last_activity = time()
                    self.ping_at = None
                    try:
                        session.receive(payload)
                    except ProtocolError as exc:
                        if exc.closes:
                            self.fail(exc)
                        else:
                            session.send_error(exc)
                    # Frames already buffered are read without yielding to the loop: bound what
                    # one client's pipelined requests may queue, and how long it holds the loop.
                    if m.queued > budget:
                        await self._relieve()
                        await asyncio.sleep(0)  # the socket may have taken it all: others' turn
                        turn = 0
                    else:
                        turn += 1
                        if turn == FRAMES_PER_TURN:
                            turn = 0
                            await asyncio.sleep(0)
                await self._quit()
            except asyncio.IncompleteReadError as exc:
                if not self.closed:  # else the server closed it, and why says so
                    self.why = "connection lost" + (" mid-frame" if exc.partial else "")
            except ConnectionError as exc:
                if not self.closed:
                    self.why = f"connection lost ({exc.__class__.__name__})"
            finally:
                self.finish()
            if not self.aborted:
                # Let what is buffered (a bye, the last replies) drain, but never wait on a
                # client that does not read for longer than write_timeout.
                try:
                    async with asyncio.timeout(limits.write_timeout):
                        await closer.wait_closed()
                except TimeoutError:
                    self.transport.abort()
                except OSError:
                    pass
        except asyncio.CancelledError:
            self.transport.abort()
            raise
        except Exception:
            log.exception("internal error on the connection from %s", self.peer)
            self.transport.abort()
        finally:
            admission.closed(self)

    async def _handshake_frame(self, frames: Frames, max_frame: int) -> None:
        """One frame before ``welcome``: a hello goes through admission, then is accepted."""
        try:
            payload = await read_frame(frames, max_frame)
        except ProtocolError as exc:
            self.fail(exc)
            return
        self.last_activity = self._time()
        session = self.session
        try:
            hello = session.receive(payload)
            if hello is not None:
                await self.admission.admit(hello, self)
                if not self.closed:
                    session.accept(hello)
        except ProtocolError as exc:
            if exc.closes:
                self.fail(exc)
            else:
                self.refused = f"{exc.code}: {exc.message}"
                session.send_error(exc)

    async def _relieve(self) -> None:
        """This client's requests queued more than ``reply_budget`` bytes before a flush:
        write them now, and read nothing more from it until the socket has taken them back
        under the budget (``write_timeout`` at most: then it is a slow consumer)."""
        self.hub.flush()
        transport = self.transport
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.write_timeout
        while not self.closed and transport.get_write_buffer_size() > self.reply_budget:
            if loop.time() >= deadline:
                self._stalled()
                return
            await asyncio.sleep(RELIEVE_POLL)

    async def _quit(self) -> None:
        """After ``quit``: leave once the acks of messages still being stored went out."""
        m = self.session.member
        if not (self.session.closing and m is not None):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.write_timeout
        # Polls a counter the hub keeps: an Event per member would cost every connection memory
        # for what only a quit with messages in flight needs.
        while m.inflight and m.alive and not self.closed and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        self.hub.remove_member(m, "quit", self.session.quit_reason)

    def fail(self, exc: ProtocolError) -> None:
        """Send the error (after whatever was queued before it) and a ``bye``, then close."""
        m = self.session.member
        reason = _LEFT_REASON.get(exc.code, "disconnect")
        if m is not None and m.alive:
            self.hub.flush()
            self.hub.remove_member(m, reason)
        self.why = f"{exc.code}: {exc.message}"
        self.hub.refusals[exc.code] += 1
        self.close(
            wire.error_for(exc) + wire.bye(str(exc.code)),
            abort=exc.code is ErrorCode.SLOW_CONSUMER,
        )

    def finish(self) -> None:
        """The read loop is over: leave every room, flush what was queued, close."""
        m = self.session.member
        if m is not None and m.alive:
            self.hub.remove_member(m, "disconnect")
        if m is not None:
            log.info("%s disconnected (%s)", m.name, "quit" if self.session.closing else self.why)
        else:
            refused = "" if self.refused is None else f"; its hello was refused: {self.refused}"
            log.info("%s closed before hello (%s%s)", self.peer, self.why, refused)
        self.hub.flush()  # what was queued for this client (the ack before its quit) goes first
        self.close()

    # ------------------------------------------------------------------ watchdog

    def tick(self, now: float) -> None:
        """Keepalive and write-stall checks; called by the server's watchdog."""
        limits = self.limits
        transport = self.transport
        if transport.is_closing() and self.aborted:
            return
        size = transport.get_write_buffer_size()
        if size == 0:
            self._stall_since = None
        else:
            drained = self.handed - size
            if drained != self._drained_mark or self._stall_since is None:
                self._drained_mark = drained
                self._stall_since = now
            elif now - self._stall_since >= limits.write_timeout:
                self._stalled()
                return
        m = self.session.member
        if self.closed or m is None or not self.pings:
            return  # handshake_timeout covers the unnamed; TCP keepalive the text doors
        if self.ping_at is None:
            if now - self.last_activity >= limits.ping_interval:
                self.ping()
                self.ping_at = now
        elif now - self.ping_at >= limits.ping_timeout:
            self.fail(ProtocolError(ErrorCode.TIMEOUT, "no answer to ping within ping_timeout"))

    def _stalled(self) -> None:
        m = self.session.member
        self.why = "slow_consumer: accepted nothing for write_timeout seconds"
        if m is not None and m.alive:
            self.hub.evict(
                m,
                "slow_consumer",
                "accepted nothing for write_timeout seconds",
                code=ErrorCode.SLOW_CONSUMER,
            )
        else:
            self.closed = True
            self.aborted = True
            self.transport.abort()
