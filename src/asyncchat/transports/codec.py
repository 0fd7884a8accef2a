"""Connections through a :class:`~asyncchat.interfaces.Codec`: the text-line and classic doors.

The hub and the session see an ordinary member: the same :class:`Connection` core, whose sink
renders each batch of native frames through the codec before it goes to the socket. The reader
feeds the codec what the socket gives and hands the session one native payload at a time; what
the codec answers by itself (a prompt, ``/help``) goes straight out, and counts against
``max_outbox`` like everything else.

Keepalive: a peer of these doors cannot answer a native ``ping``, so the listener turns on TCP
keepalive instead (:func:`keepalive`): after ``ping_interval`` seconds of silence the kernel
probes the peer, and a peer that answers none for about ``ping_timeout`` seconds is dropped
(the read fails with ``ETIMEDOUT``). A person who reads without typing is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, ProtocolError
from ..hub import Hub
from ..interfaces import Codec
from ..limits import Limits
from .connection import Connection, ReadFrame

if TYPE_CHECKING:
    from .admission import Admission

__all__ = ["KEEPALIVE_PROBES", "READ_CHUNK", "CodecConnection", "codec_reader", "keepalive"]

log = logging.getLogger("asyncchat.server")

#: Bytes asked of the socket at a time. The codec buffers at most one message (``max_frame``)
#: beyond it, and no more is read until the payloads of this chunk were handled.
READ_CHUNK = 65_536
#: Unanswered TCP keepalive probes, ``ping_timeout / KEEPALIVE_PROBES`` seconds apart, before the
#: kernel declares a silent peer dead.
KEEPALIVE_PROBES = 4
#: Linux caps TCP_KEEPIDLE and TCP_KEEPINTVL at this many seconds.
_KEEPALIVE_MAX = 32_767


class CodecConnection(Connection):
    """A :class:`Connection` whose peer speaks ``codec``'s wire."""

    __slots__ = ("codec",)

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        peer: str,
        codec: Codec,
        *,
        hub: Hub,
        admission: Admission,
        motd: str | None = None,
        kind: str = "tcp",
        **options: Any,
    ) -> None:
        super().__init__(
            transport, peer, hub=hub, admission=admission, motd=motd, kind=kind, **options
        )
        self.codec = codec
        self.pings = codec.pings

    def write(self, data: bytes) -> bool:
        # Called from the hub's fan-out, for every member at once: a codec that fails on a
        # frame must cost this one connection, never the others' flush.
        try:
            out = self.codec.render(data)
        except Exception:
            log.exception("%s: the codec cannot render a frame; closing", self.peer)
            self.closed = True
            self.aborted = True
            self.transport.abort()
            return True
        return super().write(out)

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        super().close(self.codec.render(final) if final else b"", abort=abort)

    def reply(self, data: bytes) -> None:
        """Send bytes already in the codec's wire (its own answers). Raises ``ProtocolError``
        ``slow_consumer`` for a peer that asks for them faster than it reads them."""
        if not super().write(data):
            raise ProtocolError(ErrorCode.SLOW_CONSUMER, "over max_outbox bytes of unsent backlog")


def codec_reader(reader: asyncio.StreamReader, conn: CodecConnection) -> ReadFrame:
    """The native payloads ``conn``'s codec makes of what ``reader`` gives, one per call."""
    codec = conn.codec

    async def read(max_frame: int) -> bytes:
        while True:
            payload = codec.next_payload()
            out = codec.take_output()
            if out:
                conn.hub.flush()  # the answers to the lines before this one go first
                conn.reply(out)
            if payload is not None:
                return payload
            data = await reader.read(READ_CHUNK)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            codec.receive(data, max_frame)

    return read


def keepalive(sock: socket.socket, limits: Limits) -> None:
    """Turn on TCP keepalive for a peer that cannot answer pings: probes after
    ``ping_interval`` seconds of silence, and the connection is dropped when
    :data:`KEEPALIVE_PROBES` of them, spread over ``ping_timeout``, go unanswered."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = min(_KEEPALIVE_MAX, max(1, round(limits.ping_interval)))
        interval = min(_KEEPALIVE_MAX, max(1, round(limits.ping_timeout / KEEPALIVE_PROBES)))
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS names it TCP_KEEPALIVE
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        if hasattr(socket, "TCP_KEEPINTVL"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        if hasattr(socket, "TCP_KEEPCNT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
