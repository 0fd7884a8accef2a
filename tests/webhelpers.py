"""Helpers for the web listener's tests: a server with a web listener on port 0, plain HTTP
GETs, and a WebSocket client that speaks the protocol's JSON."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from asyncchat import ChatServer
from asyncchat.config import HistoryConfig, Listener, ServerConfig
from asyncchat.limits import Limits

from .conftest import WAIT, RawClient


def web_server(
    *,
    origins: tuple[str, ...] = (),
    store: Any = None,
    tls: tuple[str, str] | None = None,
    **limits: Any,
) -> ChatServer:
    """A server with a tcp and a web listener (with ``tls``: its cert chain and key files),
    both on 127.0.0.1 port 0, and a history in memory (or ``store``)."""
    cert, key = tls or (None, None)
    web = Listener(kind="web", port=0, origins=origins, tls_cert=cert, tls_key=key)
    cfg = ServerConfig(
        listeners=(Listener(port=0), web),
        limits=Limits(**limits),
        history=HistoryConfig(db=":memory:"),
    )
    return ChatServer(config=cfg, store=store)


def ws_url(server: ChatServer) -> str:
    url = server.web_url
    assert url is not None
    return url.replace("http", "ws", 1) + "ws"


async def http_get(
    server: ChatServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` from the web listener: (status, headers lower-cased, body)."""
    url = server.web_url
    assert url is not None
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(host, int(port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode())
        data = await reader.read()  # the server closes after one response
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), fields, body


class WsClient(RawClient):
    """A WebSocket client of the chat protocol: one JSON object per text message (the
    ``recv_*`` helpers are RawClient's)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, obj: dict[str, Any]) -> None:  # type: ignore[override]
        await self.ws.send(json.dumps(obj))

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return json.loads(await self.ws.recv())  # type: ignore[no-any-return]

    async def hello(self, name: str, **extra: Any) -> dict[str, Any]:
        """Say hello; the welcome, after which every room's joined is read."""
        await self.send({"type": "hello", "name": name, "version": 1, **extra})
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        for room in welcome["rooms"]:
            await self.recv_match(type="joined", room=room, name=name)
        return welcome

    async def close(self) -> None:
        await self.ws.close()


async def tcp_client(server: ChatServer, name: str) -> RawClient:
    """A TCP client of ``server`` named ``name``, past its lobby's replay."""
    reader, writer = await asyncio.open_connection(*server.address)
    c = RawClient(reader, writer)
    await c.hello(name)
    await c.recv_match(type="history_end")
    return c


async def ws_open(
    server: ChatServer, name: str | None = None, *, rcvbuf: int | None = None, **kw: Any
) -> WsClient:
    """A WebSocket to ``server``'s /ws (named ``name`` after hello, if given). ``rcvbuf``: a
    small kernel receive buffer, and the client stops reading after one queued message."""
    if rcvbuf is not None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        url = server.web_url
        assert url is not None
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        sock.connect((host, int(port)))
        kw.update(sock=sock, max_queue=1)
    async with asyncio.timeout(WAIT):
        ws = await connect(ws_url(server), **kw)
    c = WsClient(ws)
    if name is not None:
        await c.hello(name)
    return c
