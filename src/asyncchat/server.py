"""The asyncio layer of the server: listener, connections, limits, keepalive and shutdown.

``ChatServer`` owns every connection and the one watchdog task; each connection is served by
the handler task ``asyncio.start_server`` gives it, tracked here so that shutdown can say
``bye`` and wait for it with a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from types import TracebackType
from typing import Any

from .errors import ConfigError, ErrorCode, ProtocolError
from .framing import HEADER, check_length, encode, loads
from .hub import Hub, Member
from .limits import Limits
from .session import Session, error_frame
from .storage import HistoryStore, SQLiteStore

__all__ = ["ChatServer", "run_server"]

log = logging.getLogger("asyncchat.server")

#: Bytes of one frame before the handshake: a ``hello`` with 32 rooms of 64 characters and a
#: resume map fits in well under this, and nothing larger is buffered from an unnamed peer.
PRE_HANDSHAKE_MAX_FRAME = 16_384
#: Pending connections the kernel queues while the loop is busy (the default 100 drops SYNs in a
#: connection storm; see docs/limits.md).
LISTEN_BACKLOG = 4_096

#: Seconds of silence after which the holder of a name a new connection asks for is pinged,
#: and seconds it then has to answer before the name is taken from it (a client reconnecting
#: after its old connection died without a FIN, which the server cannot otherwise tell for up
#: to ping_interval + ping_timeout).
RECLAIM_QUIET = 1.0
RECLAIM_TIMEOUT = 2.0

_LEFT_REASON = {
    ErrorCode.TIMEOUT: "timeout",
    ErrorCode.SLOW_CONSUMER: "slow_consumer",
    ErrorCode.RATE_LIMITED: "kicked",
}


class Connection:
    """One client connection: its read loop, and the :class:`~asyncchat.hub.Sink` the hub
    writes to. Closing is idempotent."""

    def __init__(
        self,
        server: ChatServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        self.server = server
        self.hub = server.hub
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.peer = peer
        limits = server.limits
        self.max_outbox = limits.max_outbox
        self.session = Session(self.hub, self, peer=peer, motd=server.motd)
        self.closed = False
        self.aborted = False
        self.why = "disconnect"
        loop = asyncio.get_running_loop()
        self._time = loop.time
        self.last_recv = loop.time()
        self.ping_at: float | None = None
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
            return True  # the peer is gone (uvloop raises on a write now): _finish removes it
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
        transport = self.transport
        if transport.is_closing():
            return
        if final and transport.get_write_buffer_size() + len(final) <= self.max_outbox:
            transport.write(final)
        if abort:
            self.aborted = True
            transport.abort()
        else:
            transport.close()

    # ------------------------------------------------------------------ read loop

    async def run(self) -> None:
        limits = self.server.limits
        session = self.session
        try:
            try:
                async with asyncio.timeout(limits.handshake_timeout):
                    while session.member is None and not self.closed:
                        await self._read_frame(min(limits.max_frame, PRE_HANDSHAKE_MAX_FRAME))
            except TimeoutError:
                self.fail(ProtocolError(ErrorCode.TIMEOUT, "no hello within handshake_timeout"))
                log.info("%s: no hello within %ss", self.peer, limits.handshake_timeout)
                return
            while not self.closed and not session.closing:
                await self._read_frame(limits.max_frame)
            m = session.member
            if session.closing and m is not None:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + limits.write_timeout
                # Polls a counter the hub keeps: an Event per member would cost every
                # connection memory for what only a quit with messages in flight needs.
                while m.inflight and m.alive and not self.closed and loop.time() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)  # the acks of messages being stored, then leave
                self.hub.remove_member(m, "quit")
        except asyncio.IncompleteReadError as exc:
            self.why = "connection lost" + (" mid-frame" if exc.partial else "")
        except ConnectionError as exc:
            self.why = f"connection lost ({exc.__class__.__name__})"
        finally:
            self._finish()
        if not self.aborted:
            # Let what is buffered (a bye, the last replies) drain, but never wait on a client
            # that does not read for longer than write_timeout.
            try:
                async with asyncio.timeout(limits.write_timeout):
                    await self.writer.wait_closed()
            except TimeoutError:
                self.transport.abort()
            except OSError:
                pass

    async def _read_frame(self, max_frame: int) -> None:
        (n,) = HEADER.unpack(await self.reader.readexactly(4))
        try:
            check_length(n, max_frame)
        except ProtocolError as exc:
            self.fail(exc)
            return
        payload = await self.reader.readexactly(n) if n else b""
        self.last_recv = self._time()
        self.ping_at = None
        try:
            self.session.receive(payload)
        except ProtocolError as exc:
            reclaimable = exc.code is ErrorCode.NAME_TAKEN and self.session.member is None
            if reclaimable and await self.server._reclaim(payload):
                try:
                    self.session.receive(payload)
                    return
                except ProtocolError as again:
                    exc = again
            if exc.closes:
                self.fail(exc)
            else:
                self.session.send_error(exc)

    def ping(self) -> None:
        """Send a ping now (keepalive, or a name reclaim)."""
        m = self.session.member
        if m is not None:
            self._pings += 1
            self.hub.send(m, encode({"type": "ping", "data": self._pings}))

    def fail(self, exc: ProtocolError) -> None:
        """Send the error (after whatever was queued before it) and a ``bye``, then close."""
        m = self.session.member
        reason = _LEFT_REASON.get(exc.code, "disconnect")
        if m is not None and m.alive:
            self.hub.flush()
            self.hub.remove_member(m, reason)
        self.why = f"{exc.code}: {exc.message}"
        self.close(
            error_frame(exc) + encode({"type": "bye", "reason": str(exc.code)}),
            abort=exc.code is ErrorCode.SLOW_CONSUMER,
        )

    def _finish(self) -> None:
        m = self.session.member
        if m is not None and m.alive:
            self.hub.remove_member(m, "disconnect")
        if m is not None:
            log.info("%s disconnected (%s)", m.name, "quit" if self.session.closing else self.why)
        else:
            log.info("%s closed before hello (%s)", self.peer, self.why)
        self.hub.flush()  # what was queued for this client (the ack before its quit) goes first
        self.close()

    # ------------------------------------------------------------------ watchdog

    def tick(self, now: float, limits: Limits) -> None:
        """Keepalive and write-stall checks; called by the server's watchdog."""
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
        if self.closed or m is None:
            return  # handshake_timeout covers the unnamed
        if self.ping_at is None:
            if now - self.last_recv >= limits.ping_interval:
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


class ChatServer:
    """An asyncchat server, as an async context manager::

        async with ChatServer(port=0) as server:
            host, port = server.address
            await server.serve_forever()

    Every limit of :class:`~asyncchat.limits.Limits` is a keyword argument (or pass
    ``limits=``). History is off unless ``db`` names an SQLite file (or ``":memory:"``), or a
    ``store`` is given; ``history_max`` (messages per room) and ``history_days`` bound what is
    kept, ``durability`` is ``"process"`` (an acknowledged message survives a crash of the
    server) or ``"power"`` (of the machine too). Raises :class:`~asyncchat.errors.ConfigError`
    for an unknown or invalid limit or an unusable database, and ``OSError`` from :meth:`start`
    when the address cannot be bound.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1234,
        *,
        motd: str | None = None,
        limits: Limits | None = None,
        db: str | None = None,
        history_max: int | None = None,
        history_days: float | None = None,
        durability: str = "process",
        store: HistoryStore | None = None,
        **limit_kwargs: Any,
    ) -> None:
        if limits is not None and limit_kwargs:
            raise ConfigError("pass either limits= or limit keyword arguments, not both")
        self.limits = limits or Limits.from_kwargs(**limit_kwargs)
        if store is None and db is not None:
            store = SQLiteStore(
                db, history_max=history_max, history_days=history_days, durability=durability
            )
        self.store = store
        self.host = host
        self.port = port
        self.motd = motd
        self.hub = Hub(self.limits)
        self._server: asyncio.Server | None = None
        self._conns: dict[Connection, asyncio.Task[Any]] = {}
        self._per_ip: Counter[str] = Counter()
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start accepting. Raises ``OSError`` if the address cannot be bound."""
        loop = asyncio.get_running_loop()
        self.hub.set_scheduler(loop.call_soon)
        self._server = await asyncio.start_server(
            self._on_connect,
            self.host,
            self.port,
            limit=self.limits.max_frame,
            backlog=LISTEN_BACKLOG,
        )
        if self.store is not None:  # no await since the bind: nobody is served without it
            try:
                self.store.open(self.hub.committed, loop.call_soon, loop.call_soon_threadsafe)
                self.hub.attach_store(self.store)
            except BaseException:
                self._server.close()
                self.store.close()
                raise
        self._watchdog = asyncio.create_task(self._watch(), name="asyncchat-watchdog")
        host, port = self.address
        log.info("listening on %s:%d", host, port)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): with ``port=0`` this is where the OS put it."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def serve_forever(self) -> None:
        """Serve until cancelled or :meth:`close`\\ d."""
        await self._closed.wait()

    async def close(self, reason: str = "shutdown") -> None:
        """Stop accepting, send ``bye`` to everyone, wait ``shutdown_grace`` seconds for them to
        take it, abort the rest. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            if self._server is not None:
                self._server.close()
            log.info("shutting down: %d connection(s)", len(self._conns))
            self.hub.flush()
            bye = encode({"type": "bye", "reason": reason})
            for conn in list(self._conns):
                m = conn.session.member
                if m is not None:
                    self.hub.remove_member(m, "disconnect")
                conn.close(bye)
            tasks = list(self._conns.values())
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.limits.shutdown_grace)
                if pending:
                    log.info("aborting %d connection(s) after the grace period", len(pending))
                    for conn in list(self._conns):
                        conn.transport.abort()
                    await asyncio.wait(pending)
            if self._watchdog is not None:
                self._watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watchdog
            if self._server is not None:
                await self._server.wait_closed()
        finally:
            if self.store is not None:
                self.store.close()  # commits what is queued: stored, though no longer acked
            self._closed.set()
        log.info("server closed")

    async def __aenter__(self) -> ChatServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        ip = peername[0] if isinstance(peername, tuple) else str(peername)
        peer = f"{ip}:{peername[1]}" if isinstance(peername, tuple) else ip
        limits = self.limits
        refusal = None
        if self._closing:
            refusal = "the server is shutting down"
        elif len(self._conns) >= limits.max_connections:
            refusal = f"the server is full ({limits.max_connections} connections)"
        elif self._per_ip[ip] >= limits.max_per_ip and not limits.exempt(ip):
            refusal = f"too many connections from {ip} (max_per_ip={limits.max_per_ip})"
        if refusal is not None:
            log.info("refused %s: %s", peer, refusal)
            writer.write(
                error_frame(ProtocolError(ErrorCode.TOO_MANY_CONNECTIONS, refusal))
                + encode({"type": "bye", "reason": str(ErrorCode.TOO_MANY_CONNECTIONS)})
            )
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        conn = Connection(self, reader, writer, peer)
        self._conns[conn] = task
        self._per_ip[ip] += 1
        try:
            await conn.run()
        except asyncio.CancelledError:
            conn.transport.abort()
            raise
        except Exception:  # the task boundary: one connection fails, never the server
            log.exception("internal error on the connection from %s", peer)
            conn.transport.abort()
        finally:
            del self._conns[conn]
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]

    async def _watch(self) -> None:
        limits = self.limits
        period = max(
            0.02,
            min(1.0, limits.ping_interval / 4, limits.ping_timeout / 4, limits.write_timeout / 4),
        )
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for conn in list(self._conns):
                conn.tick(now, limits)

    # ------------------------------------------------------------------ the host application

    @property
    def connections(self) -> int:
        """Open connections, named or not."""
        return len(self._conns)

    @property
    def members(self) -> list[str]:
        """The names of the connected users."""
        return sorted((m.name for m in self.hub.members.values()), key=str.casefold)

    @property
    def rooms(self) -> dict[str, list[str]]:
        """Every room and its member names."""
        return {
            r.name: sorted((m.name for m in r.members.values()), key=str.casefold)
            for r in self.hub.rooms.values()
        }

    def member(self, name: str) -> Member | None:
        """The connected user called ``name`` (without regard to case), if any."""
        found = self.hub.members_named([name])
        return found[0] if found else None

    async def announce(self, room: str, text: str, *, action: bool = False) -> int:
        """Post ``text`` to ``room`` as the server (sender ``*server``); returns its ``seq``.
        Raises ``ProtocolError``: ``room_invalid`` if the room does not exist,
        ``history_unavailable`` if the history store failed (nothing is posted then)."""
        return self.hub.announce(room, text, action=action)

    def kick(self, name: str, reason: str = "kicked by the operator") -> bool:
        """Disconnect user ``name`` (rooms see ``left`` with reason ``kicked``); False if there
        is no such user."""
        m = self.member(name)
        if m is None:
            return False
        self.hub.evict(m, "kicked", reason, abort=False)
        return True

    async def _reclaim(self, hello: bytes) -> bool:
        """A ``hello`` asks for a name someone holds: if the holder has been silent, ping it and
        take the name away from it (left ``timeout``) when it does not answer within
        RECLAIM_TIMEOUT. True if the name is free now."""
        try:
            name = loads(hello).get("name")
        except ProtocolError:
            return False
        holder = self.member(name) if isinstance(name, str) else None
        if holder is None:
            return True
        conn = holder.sink
        if not isinstance(conn, Connection):
            return False
        loop = asyncio.get_running_loop()
        if loop.time() - conn.last_recv < RECLAIM_QUIET:
            return False
        heard = conn.last_recv
        conn.ping()
        deadline = loop.time() + RECLAIM_TIMEOUT
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            if not holder.alive:
                return True
            if conn.last_recv != heard:
                return False
        log.info("%s did not answer a ping: its name goes to a new connection", holder.name)
        self.hub.evict(
            holder, "timeout", "your name was reclaimed by a new connection", code=ErrorCode.TIMEOUT
        )
        return True


async def run_server(host: str = "127.0.0.1", port: int = 1234, **options: Any) -> None:
    """Serve on ``host:port`` until cancelled, then shut down gracefully.

    Keyword arguments are those of :class:`ChatServer`: the limits of
    :class:`~asyncchat.limits.Limits`, ``motd``, and the history options (``db``...). Raises
    ``ConfigError`` for a bad option and ``OSError`` when the address cannot be bound.
    """
    async with ChatServer(host, port, **options) as server:
        await server.serve_forever()
