"""The native listener: 4-byte length-prefixed JSON frames over TCP, read with ``readexactly``.

``asyncio.start_server`` gives each connection a task; the listener applies admission at
accept, sets ``TCP_NODELAY``, and hands a frame reader to the :class:`Connection` core. The
``max_frame`` check on the 4-byte header, before the payload is read, is the memory bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from .. import wire
from ..errors import ErrorCode
from ..framing import HEADER, check_length
from ..hub import Hub
from .admission import Admission
from .connection import Connection, ReadFrame

__all__ = ["LISTEN_BACKLOG", "TcpListener"]

log = logging.getLogger("asyncchat.server")

#: Pending connections the kernel queues while the loop is busy (the default 100 drops SYNs in a
#: connection storm; see docs/limits.md).
LISTEN_BACKLOG = 4_096


def frame_reader(reader: asyncio.StreamReader) -> ReadFrame:
    """Read one native frame: the header, the ``max_frame`` check, then the payload."""
    readexactly = reader.readexactly
    unpack = HEADER.unpack

    async def read(max_frame: int) -> bytes:
        (n,) = unpack(await readexactly(4))
        check_length(n, max_frame)
        return await readexactly(n) if n else b""

    return read


class TcpListener:
    """One native TCP listening socket of a server."""

    def __init__(
        self, host: str, port: int, *, hub: Hub, admission: Admission, motd: str | None
    ) -> None:
        self.host = host
        self.port = port
        self.hub = hub
        self.admission = admission
        self.motd = motd
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and start accepting. Raises ``OSError`` if the address cannot be bound; its
        ``filename`` is ``host:port``, so that a server with several listeners says which."""
        try:
            self.server = await asyncio.start_server(
                self._on_connect,
                self.host,
                self.port,
                limit=self.hub.limits.max_frame,
                backlog=LISTEN_BACKLOG,
            )
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), f"{self.host}:{self.port}") from exc

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self.server is None or not self.server.sockets:
            raise RuntimeError("the listener is not started")
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Stop accepting."""
        if self.server is not None:
            self.server.close()

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        ip = peername[0] if isinstance(peername, tuple) else str(peername)
        peer = f"{ip}:{peername[1]}" if isinstance(peername, tuple) else ip
        admission = self.admission
        refusal = admission.refusal(ip)
        if refusal is not None:
            log.info("refused %s: %s", peer, refusal)
            code = str(ErrorCode.TOO_MANY_CONNECTIONS)
            writer.write(wire.error(code, refusal) + wire.bye(code))
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        transport = writer.transport
        conn = Connection(transport, peer, hub=self.hub, admit=admission.admit, motd=self.motd)
        admission.opened(conn, task, ip)
        try:
            await conn.run(frame_reader(reader), writer.wait_closed)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception:  # the task boundary: one connection fails, never the server
            log.exception("internal error on the connection from %s", peer)
            transport.abort()
        finally:
            admission.closed(conn, ip)
