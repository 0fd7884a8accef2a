"""The web listener: the chat page, its WebSocket, and the operators' endpoints, over HTTP.

Built on python-websockets' asyncio server. Its ``process_request`` hook answers the plain GETs
(``/`` and the page's assets, ``/metrics``, ``/healthz``, ``/readyz``; anything else is 404)
and checks the ``Origin`` of ``/ws``; a request it lets through becomes a WebSocket, served by
the same :class:`~.connection.Connection` core, :class:`~asyncchat.session.Session` and hub as
a TCP client. One text message is one JSON payload of docs/protocol.md, taken by the session
as is. Out, the hub's native frames become text frames, rendered once per batch for every
WebSocket member (:class:`~asyncchat.wsframe.RenderOnce`) and written to the transport without
awaiting, so eviction and the write-stall check work as for TCP.

The limits are the native ones: ``max_frame`` bounds a message (websockets checks it on the frame
header, before buffering, and closes with 1009), ``handshake_timeout`` the HTTP upgrade and then
the ``hello``; keepalive is the protocol's own ``ping``/``pong`` (websockets' pings are off).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
from collections.abc import Callable
from importlib import resources

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from ..errors import ErrorCode, ProtocolError
from ..hub import Hub
from ..session import SERVER_VERSION
from ..wsframe import RenderOnce, to_text_frames
from .admission import Admission
from .base import ListenerBase, peer_of
from .connection import PRE_HANDSHAKE_MAX_FRAME, Connection, ReadFrame

__all__ = ["CONTENT_SECURITY_POLICY", "WS_PATH", "WebListener", "WsConnection"]

log = logging.getLogger("asyncchat.server")

#: Where the page opens its WebSocket.
WS_PATH = "/ws"
#: Everything the page needs comes from this server: no inline script or style, no other host,
#: no framing by another site.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
#: Close codes of a peer that simply left (closed the tab, navigated away).
_NORMAL_CLOSE = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD}
)
#: websockets' own log (each HTTP response, each connection opened and closed): shown only when
#: the server logs at DEBUG.
_ws_log = logging.getLogger("asyncchat.websockets")
#: Serves ``/metrics``: (content type, body).
Metrics = Callable[[], tuple[str, bytes]]
#: Why the server is not ready (``/readyz`` answers 503 with it), or None.
Readiness = Callable[[], "str | None"]


def load_assets() -> dict[str, tuple[str, bytes]]:
    """The page's files shipped in the package (``asyncchat/static``), by URL path."""
    assets = {}
    for item in resources.files("asyncchat").joinpath("static").iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            assets["/" + item.name] = (_TYPES[suffix], item.read_bytes())
    if "/index.html" in assets:
        assets["/"] = assets["/index.html"]
    return assets


def response(status: int, content_type: str, body: bytes, *extra: tuple[str, str]) -> Response:
    """An HTTP response; the connection closes after it."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("X-Content-Type-Options", "nosniff"),
            *extra,
        ]
    )
    phrase = {200: "OK", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}
    return Response(status, phrase.get(status, ""), headers, body)


def _text(status: int, text: str) -> Response:
    return response(
        status, "text/plain; charset=utf-8", text.encode(), ("Cache-Control", "no-store")
    )


class WsConnection(Connection):
    """A client on a WebSocket: native frames out as text frames, one message in per frame."""

    def __init__(
        self,
        ws: ServerConnection,
        peer: str,
        *,
        hub: Hub,
        admission: Admission,
        motd: str | None,
        render: Callable[[bytes], bytes],
        ip: str | None = None,
        secure: bool = False,
    ) -> None:
        super().__init__(
            ws.transport,
            peer,
            hub=hub,
            admission=admission,
            motd=motd,
            kind="ws",
            ip=ip,
            secure=secure,
        )
        self.ws = ws
        self._render = render

    def write(self, data: bytes) -> bool:
        return super().write(self._render(data))

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        if not self.closed and self.ws.protocol.state is not State.OPEN:
            final = b""  # the WebSocket is closing already: no message may follow its close
        super().close(self._render(final) if final else b"", abort=abort)

    def shutdown(self) -> None:
        ws = self.ws
        if ws.protocol.state is State.OPEN:
            ws.protocol.send_close(CloseCode.NORMAL_CLOSURE)
            ws.send_data()  # websockets closes the TCP connection once the peer answers
        else:
            self.transport.close()


def message_reader(ws: ServerConnection) -> ReadFrame:
    """Read one WebSocket message as a payload, over at most ``max_frame`` bytes."""
    protocol = ws.protocol
    recv = ws.recv

    async def read(max_frame: int) -> bytes:
        protocol.max_message_size = max_frame  # checked on each frame's header
        try:
            return await recv(decode=False)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                raise ProtocolError(
                    ErrorCode.FRAME_TOO_LARGE, f"a message is at most {max_frame} bytes"
                ) from None
            if exc.rcvd is not None and exc.rcvd.code in _NORMAL_CLOSE:
                raise asyncio.IncompleteReadError(b"", None) from None  # as a TCP FIN
            raise ConnectionResetError("the WebSocket closed abnormally") from None

    return read


class WebListener(ListenerBase):
    """One HTTP listening socket of a server: the page, ``/ws``, ``/metrics``, ``/healthz``,
    ``/readyz``. ``origins``: the origins besides the page's own whose pages may open ``/ws``
    (``*``: any). ``tls``: serve HTTPS and WSS with this context."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        hub: Hub,
        admission: Admission,
        motd: str | None,
        metrics: Metrics,
        readiness: Readiness,
        origins: tuple[str, ...] = (),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, port, hub=hub, admission=admission, motd=motd, tls=tls)
        self.kind = "web"
        self.metrics = metrics
        self.readiness = readiness
        self.origins = frozenset(o.lower().rstrip("/") for o in origins)
        self.assets = load_assets()
        #: One render per batch for all WebSocket members of this listener.
        self.render = RenderOnce(to_text_frames)

    async def start(self) -> None:
        """Bind and start accepting. Raises ``OSError`` if the address cannot be bound; its
        ``filename`` is ``host:port``."""
        limits = self.hub.limits
        if not log.isEnabledFor(logging.DEBUG):
            _ws_log.setLevel(logging.WARNING)
        try:
            self.server = await serve(
                self._serve_ws,
                self.host,
                self.port,
                process_request=self._http,
                server_header=SERVER_VERSION,
                compression=None,  # frames must be identical for every member: rendered once
                open_timeout=limits.handshake_timeout,
                ping_interval=None,  # keepalive is the protocol's own ping (ping_interval)
                close_timeout=limits.write_timeout,
                max_size=min(limits.max_frame, PRE_HANDSHAKE_MAX_FRAME),
                ssl=self.tls,
                logger=_ws_log,
            )
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), f"{self.host}:{self.port}") from exc

    @property
    def url(self) -> str:
        """The page's address."""
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}/"

    def close(self) -> None:
        """Stop accepting (the chat server closes the open connections itself)."""
        if self.server is not None:
            self.server.close(close_connections=False)

    # ------------------------------------------------------------------ HTTP

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == WS_PATH:
            origin = request.headers.get("Origin")
            if origin is None or self._origin_ok(origin, request.headers.get("Host", "")):
                return None  # on to the WebSocket handshake
            log.info("refused a WebSocket from origin %r", origin)
            return _text(403, f"origin not allowed: {origin}\n")
        if path == "/healthz":
            return _text(200, "ok\n")
        if path == "/readyz":
            why = self.readiness()
            return _text(200, "ready\n") if why is None else _text(503, f"not ready: {why}\n")
        if path == "/metrics":
            content_type, body = self.metrics()
            return response(200, content_type, body, ("Cache-Control", "no-store"))
        asset = self.assets.get(path)
        if asset is None:
            return _text(404, "not found\n")
        content_type, body = asset
        return response(
            200,
            content_type,
            body,
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-cache"),
        )

    def _origin_ok(self, origin: str, host: str) -> bool:
        """The page's own origin (scheme and Host), or one of ``origins``."""
        origin = origin.lower().rstrip("/")
        own = f"{'https' if self.tls else 'http'}://{host.lower()}"
        return origin == own or origin in self.origins or "*" in self.origins

    # ------------------------------------------------------------------ WebSocket

    async def _serve_ws(self, ws: ServerConnection) -> None:
        ip, peer = peer_of(ws.remote_address)
        refusal = self.refusal(ip, peer)
        if refusal is not None:
            ws.transport.write(to_text_frames(refusal))
            await ws.close(CloseCode.TRY_AGAIN_LATER, "refused")
            return
        admission = self.admission
        conn = WsConnection(
            ws,
            peer,
            hub=self.hub,
            admission=admission,
            motd=self.motd,
            render=self.render,
            ip=ip,
            secure=self.tls is not None,
        )
        await conn.run(message_reader(ws), ws)
