"""The TCP listeners: the native one (4-byte length-prefixed JSON frames, read with
``readexactly``), and the doors whose wire a :class:`~asyncchat.interfaces.Codec` translates.

``asyncio.start_server`` calls the listener at each accept; it applies admission (IP bans, the
connection limits), counts the connection at once, and starts the task that serves it: the
:class:`Connection` core's own ``run``, which reads the stream with ``readexactly``. The
``max_frame`` check on the 4-byte header, before the payload is read, is the memory bound.
(The callback is a plain function, not a coroutine: no coroutine of the listener stays
suspended under each connection; see docs/performance.md, memory per connection.)

A TLS listener accepts its sockets itself (``sock_accept``), so that admission decides before a
byte is read, not even a ClientHello; then ``connect_accepted_socket`` runs the TLS handshake
within the same ``handshake_timeout`` as the ``hello`` that must follow it. (``start_tls`` on an
accepted stream would be simpler, but uvloop may already have read the ClientHello into the
plain stream by then, and the handshake would hang.) A peer that speaks anything but TLS is
dropped at its first bytes with one log line.

A listener with a codec (the text doors) hands the core a :class:`~.codec.CodecConnection` and
the codec's reader instead, and turns on TCP keepalive for peers that cannot answer pings.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from ..hub import Hub
from ..interfaces import Codec
from ..limits import Limits
from .admission import Admission
from .base import ListenerBase, peer_of
from .codec import CodecConnection, codec_reader, keepalive
from .connection import Connection, Frames

__all__ = ["LISTEN_BACKLOG", "CodecFactory", "TcpListener"]

log = logging.getLogger("asyncchat.server")

#: Pending connections the kernel queues while the loop is busy (the default 100 drops SYNs in a
#: connection storm; see docs/limits.md).
LISTEN_BACKLOG = 4_096
#: Connections the listener takes from the kernel's queue at the most each time one is
#: accepted. uvloop (libuv) accepts one connection per event-loop iteration: under fan-out load,
#: whose iterations are long, that was 60 connections a second, and a storm of arrivals waited
#: in the queue for minutes (docs/performance.md). A batch bounds what one iteration takes on.
ACCEPT_BATCH = 128
#: Event loops (by top-level module) that accept one connection per iteration, for which the
#: listener takes the rest of the queue itself. asyncio's loop accepts a batch by itself.
_ACCEPTS_ONE = frozenset({"uvloop"})

#: Makes the codec of one connection of a door, from the server's limits.
CodecFactory = Callable[[Limits], Codec]

#: OpenSSL's reasons for a first record that is no TLS at all (plain text on a TLS port).
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"}
)


def slim_protocol(protocol: object) -> None:
    """Give a stream protocol a list for its writer's drain waiters instead of the deque that
    ``StreamReaderProtocol`` makes for every connection (760 bytes, a tenth of an idle
    connection; a list, 56 bytes, does what the protocol does with it: append, remove,
    iterate). Nothing else changes; a Python whose protocol keeps them otherwise is left as
    it is."""
    waiters = getattr(protocol, "_drain_waiters", None)
    if type(waiters) is collections.deque and not waiters:
        protocol._drain_waiters = []  # type: ignore[attr-defined]


class TcpListener(ListenerBase):
    """One TCP listening socket of a server: native frames, or, with ``codec``, the wire of a
    door (``kind`` names it in logs)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        hub: Hub,
        admission: Admission,
        motd: str | None,
        tls: ssl.SSLContext | None = None,
        kind: str = "tcp",
        codec: CodecFactory | None = None,
    ) -> None:
        super().__init__(host, port, hub=hub, admission=admission, motd=motd, tls=tls)
        self.kind = kind
        self.codec = codec
        #: A TLS listener's own listening sockets, their accept loops, and the connections
        #: still in their TLS handshake (not yet counted by admission).
        self._socks: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._handshaking: set[asyncio.Task[None]] = set()
        #: A plain listener's own handle on each listening socket (a duplicate descriptor), to
        #: take what the kernel has queued after each accept (see ACCEPT_BATCH), and the
        #: sockets taken that way while their transport is being made.
        self._queues: list[socket.socket] = []
        self._adopting: set[asyncio.Task[None]] = set()
        self._draining = False

    async def start(self) -> None:
        """Bind and start accepting. Raises ``OSError`` if the address cannot be bound; its
        ``filename`` is ``host:port``, so that a server with several listeners says which."""
        try:
            if self.tls is not None:
                self._socks = _bind(self.host, self.port)
                self._accepting = [
                    asyncio.create_task(self._accept(s), name="asyncchat-accept")
                    for s in self._socks
                ]
                return
            self.server = await asyncio.start_server(
                self._on_connect,
                self.host,
                self.port,
                limit=self.hub.limits.max_frame,
                backlog=LISTEN_BACKLOG,
            )
            loop = asyncio.get_running_loop()
            if type(loop).__module__.partition(".")[0] in _ACCEPTS_ONE:
                for listening in self.server.sockets:
                    queue = socket.socket(fileno=os.dup(listening.fileno()))
                    queue.setblocking(False)
                    self._queues.append(queue)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), f"{self.host}:{self.port}") from exc

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        socks = self.server.sockets if self.server is not None else self._socks
        if not socks:
            raise RuntimeError("the listener is not started")
        host, port = socks[0].getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Stop accepting (and drop the connections still in their TLS handshake)."""
        if self.server is not None:
            self.server.close()
        for task in (*self._accepting, *self._handshaking, *self._adopting):
            task.cancel()
        for sock in (*self._socks, *self._queues):
            sock.close()
        self._queues = []

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()
        await asyncio.gather(
            *self._accepting, *self._handshaking, *self._adopting, return_exceptions=True
        )

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A native connection was accepted (``start_server``'s callback, called from its
        protocol's ``connection_made``): admission decides, and an admitted connection gets a
        task of its own, counted by admission from now on."""
        ip, peer = peer_of(writer.get_extra_info("peername"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._drain(loop)
        refusal = self.refusal(ip, peer)
        if refusal is not None:
            if self.codec is not None:  # in the door's own wire
                refusal = self.codec(self.hub.limits).render(refusal)
            writer.write(refusal)
            writer.close()
            return
        # The boundary of this callback (the task's is Connection.run): an error here costs
        # this one connection, never the listener.
        try:
            if type(loop).__module__.partition(".")[0] not in _SETS_NODELAY:
                _nodelay(writer.get_extra_info("socket"))
            slim_protocol(writer.transport.get_protocol())
            conn, run = self._serve(reader, writer, ip, peer, started)
        except Exception:
            log.exception("internal error accepting the connection from %s", peer)
            writer.transport.abort()
            return
        self.admission.opened(conn, loop.create_task(run))

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take up to ``ACCEPT_BATCH`` more connections the kernel has queued, each into the
        same stream machinery as ``start_server``'s (its callback is :meth:`_on_connect`). On
        uvloop only: a connection taken so costs about 0.25 KiB more while it lasts (the socket
        object and context uvloop keeps for a socket it did not accept itself)."""
        if self._draining or not self._queues:
            return
        self._draining = True
        try:
            for queue in self._queues:
                for _ in range(ACCEPT_BATCH):
                    try:
                        sock, _addr = queue.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # out of descriptors, a reset before accept
                        log.warning("accept failed on %s:%d: %s", *self.address, exc)
                        break
                    task = loop.create_task(self._adopt(loop, sock))
                    self._adopting.add(task)
                    task.add_done_callback(self._adopting.discard)
        finally:
            self._draining = False

    async def _adopt(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Make the stream of a socket :meth:`_drain` accepted (``connection_made`` calls
        :meth:`_on_connect`, as for one the server accepted)."""
        sock.setblocking(False)
        reader = asyncio.StreamReader(limit=self.hub.limits.max_frame, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, self._on_connect, loop=loop)
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError as exc:
            log.info("dropped a connection before it was served: %s", exc)
            sock.close()

    async def _accept(self, listening: socket.socket) -> None:
        """A TLS listener's accept loop: admission first, then a task for the handshake."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, addr = await loop.sock_accept(listening)
            except OSError as exc:  # out of file descriptors, a reset before accept
                log.warning("accept failed on %s:%d: %s", *self.address, exc)
                await asyncio.sleep(0.1)
                continue
            started = loop.time()
            ip, peer = peer_of(addr)
            refusal = self.admission.refusal(ip)
            if refusal is not None:
                log.info("refused %s: %s", peer, refusal)
                sock.close()  # nothing read; a TLS client could not read a plain error anyway
                continue
            _nodelay(sock)
            task = asyncio.create_task(self._handshake(sock, ip, peer, started))
            self._handshaking.add(task)
            task.add_done_callback(self._handshaking.discard)

    async def _handshake(self, sock: socket.socket, ip: str, peer: str, started: float) -> None:
        """The TLS handshake within ``handshake_timeout`` (dropped with one log line if it
        fails), then the connection is served."""
        assert self.tls is not None
        loop = asyncio.get_running_loop()
        timeout = self.hub.limits.handshake_timeout
        reader = asyncio.StreamReader(limit=self.hub.limits.max_frame, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=self.tls, ssl_handshake_timeout=timeout
                )
        except TimeoutError:
            why = f"no TLS handshake within handshake_timeout ({timeout}s)"
        except ssl.SSLError as exc:
            plain = exc.reason in _NOT_TLS
            why = "TLS handshake failed: " + ("not TLS" if plain else str(exc.reason or exc))
        except OSError as exc:
            why = f"TLS handshake failed: {exc.strerror or exc or type(exc).__name__}"
        else:
            task = asyncio.current_task()
            if task is not None:
                self._handshaking.discard(task)  # admission owns it from here
            slim_protocol(protocol)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            _, run = self._serve(reader, writer, ip, peer, started)
            await run
            return
        log.info("dropped %s: %s", peer, why)
        sock.close()

    def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ip: str,
        peer: str,
        started: float,
    ) -> tuple[Connection, Coroutine[Any, Any, None]]:
        """The connection of an admitted peer, and the coroutine that serves it until it ends
        (for the task that will be its owner)."""
        admission = self.admission
        transport = writer.transport
        options: dict[str, Any] = {"ip": ip, "secure": self.tls is not None}
        conn: Connection
        frames: Frames
        if self.codec is None:
            conn = Connection(
                transport, peer, hub=self.hub, admission=admission, motd=self.motd, **options
            )
            frames = reader
        else:
            limits = self.hub.limits
            codec = self.codec(limits)
            if not codec.pings:
                sock = writer.get_extra_info("socket")
                if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                    keepalive(sock, limits)
            conn = CodecConnection(
                transport,
                peer,
                codec,
                hub=self.hub,
                admission=admission,
                motd=self.motd,
                kind=self.kind,
                **options,
            )
            frames = codec_reader(reader, conn)
            greeting = codec.greeting()
            if greeting:
                transport.write(greeting)
        return conn, conn.run(frames, writer, started=started)


#: Event loops (by top-level module) whose TCP transports set ``TCP_NODELAY`` themselves. Asking
#: uvloop for the socket to set it again would make a socket object that the transport keeps
#: (72 bytes a connection).
_SETS_NODELAY = frozenset({"uvloop"})


def _nodelay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (as ``asyncio.start_server`` binds).
    Raises ``OSError``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks
