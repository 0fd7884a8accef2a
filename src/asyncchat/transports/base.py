"""What every listener of a server shares: its address, the hub, admission and motd it hands
its connections, how it names a peer, and the refusal it sends at accept."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from .. import wire
from ..hub import Hub
from .admission import Admission

__all__ = ["ListenerBase", "peer_of"]

log = logging.getLogger("asyncchat.server")


def peer_of(peername: Any) -> tuple[str, str]:
    """(ip, "ip:port") of a socket's peer name (just the name twice for a Unix socket)."""
    if isinstance(peername, tuple):
        return str(peername[0]), f"{peername[0]}:{peername[1]}"
    return str(peername), str(peername)


class ListenerBase:
    """One listening socket of a server; ``server`` is its asyncio (or websockets) server once
    started. Raises nothing until :meth:`start` (of the subclass)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        hub: Hub,
        admission: Admission,
        motd: str | None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.hub = hub
        self.admission = admission
        self.motd = motd
        #: The TLS context of this listener (None: plain); reloadable in place.
        self.tls = tls
        self.server: Any = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self.server is None or not self.server.sockets:
            raise RuntimeError("the listener is not started")
        host, port = next(iter(self.server.sockets)).getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Stop accepting."""
        if self.server is not None:
            self.server.close()

    async def wait_closed(self) -> None:
        """Until the listening socket is closed."""
        if self.server is not None:
            await self.server.wait_closed()

    def refusal(self, ip: str, peer: str) -> bytes | None:
        """The native ``error`` and ``bye`` frames refusing a new connection from ``ip``
        (an IP ban, ``max_connections``, ``max_per_ip``, shutting down), or None to accept
        it."""
        why = self.admission.refusal(ip)
        if why is None:
            return None
        log.info("refused %s: %s", peer, why)
        code = str(why.code)
        return wire.error(code, why) + wire.bye(code)
