"""One TCP connection of the client library: dial, ``hello``, frames in and out, keepalive.

The :class:`~asyncchat.client.Client` owns one at a time and dials a new one after a loss.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Sequence
from typing import Any

from ..errors import ConnectionClosed, ServerError
from ..events import PROTOCOL_VERSION, Bye, Error, ServerEvent, Welcome, parse_server
from ..framing import HEADER, check_length, encode, loads

__all__ = ["Connection", "describe"]


def describe(exc: BaseException) -> str:
    """A short human reason for a network error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Connection:
    """One TCP connection of the client, after its ``welcome``. Made by :meth:`open`."""

    __slots__ = ("bye", "last_recv", "lost", "max_frame", "reader", "resumed", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_frame = max_frame
        self.last_recv = asyncio.get_running_loop().time()
        #: Why the client dropped this connection itself (a ping without answer).
        self.lost: str | None = None
        self.bye: Bye | None = None
        #: The ``resume`` of the hello on this connection.
        self.resumed: dict[str, int] = {}

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        name: str,
        rooms: Sequence[str] | None,
        resume: dict[str, int] | None,
        timeout: float,
        max_frame: int,
        ssl: _ssl.SSLContext | None = None,
        credentials: dict[str, str] | None = None,
    ) -> tuple[Connection, Welcome]:
        """Connect (with TLS if ``ssl`` is given: the certificate checked as the context says)
        and say hello (with ``credentials``: ``password``, ``token``, ``server_password``); the
        connection and its ``welcome``. Raises ``ConnectionClosed`` (a
        certificate that fails verification included), ``ServerError`` (refused),
        ``TimeoutError`` (no welcome within ``timeout``) or ``ProtocolError``."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ssl, ssl_handshake_timeout=timeout if ssl else None
                )
        except _ssl.SSLCertVerificationError as exc:
            raise ConnectionClosed(
                f"cannot connect to {host}:{port}: the server's certificate is not trusted "
                f"({exc.verify_message or exc.reason})"
            ) from None
        except _ssl.SSLError as exc:
            raise ConnectionClosed(
                f"cannot connect to {host}:{port}: TLS failed ({exc.reason or exc})"
            ) from None
        except OSError as exc:  # TimeoutError included
            raise ConnectionClosed(f"cannot connect to {host}:{port}: {describe(exc)}") from None
        conn = cls(reader, writer, max_frame)
        conn.resumed = dict(resume or {})
        try:
            welcome = await conn._hello(name, rooms, resume, timeout, credentials)
        except asyncio.IncompleteReadError:
            writer.close()
            raise ConnectionClosed(
                "the server closed the connection during the handshake"
            ) from None
        except ConnectionError as exc:
            writer.close()
            raise ConnectionClosed(
                f"connection lost during the handshake: {describe(exc)}"
            ) from None
        except BaseException:
            writer.close()
            raise
        conn.last_recv = asyncio.get_running_loop().time()
        return conn, welcome

    async def _hello(
        self,
        name: str,
        rooms: Sequence[str] | None,
        resume: dict[str, int] | None,
        timeout: float,
        credentials: dict[str, str] | None = None,
    ) -> Welcome:
        hello: dict[str, Any] = {"type": "hello", "name": name, "version": PROTOCOL_VERSION}
        hello.update(credentials or {})
        if rooms is not None:
            hello["rooms"] = list(rooms)
        if resume:
            hello["resume"] = resume
        self.send(hello)
        async with asyncio.timeout(timeout):
            while True:
                event = await self.read_event()
                match event:
                    case Welcome():
                        return event
                    case Error(code=code, message=message):
                        raise ServerError(code, message)
                    case Bye(reason=reason):
                        raise ConnectionClosed(f"server said bye: {reason}")

    def send(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` unless the connection is going away (a request is sent again after a
        reconnect; uvloop raises on a write to a closed transport)."""
        if not self.writer.transport.is_closing():
            self.writer.write(encode(obj))

    async def read_event(self) -> ServerEvent:
        """The next server event. Raises ``ProtocolError``, ``IncompleteReadError`` (EOF) or
        ``ConnectionError``."""
        (n,) = HEADER.unpack(await self.reader.readexactly(4))
        check_length(n, self.max_frame)
        payload = await self.reader.readexactly(n)
        self.last_recv = asyncio.get_running_loop().time()
        return parse_server(loads(payload))

    async def keepalive(self, interval: float, timeout: float) -> None:
        """Ping a server silent for ``interval`` seconds; abort the connection (``lost`` says
        why) if it does not answer within ``timeout``."""
        loop = asyncio.get_running_loop()
        while True:
            silence = loop.time() - self.last_recv
            if silence < interval:
                await asyncio.sleep(interval - silence)
                continue
            self.send({"type": "ping"})
            sent = loop.time()
            await asyncio.sleep(timeout)
            if self.last_recv < sent:
                self.lost = "the server did not answer a ping"
                self.writer.transport.abort()
                return
