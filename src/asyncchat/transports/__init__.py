"""How clients reach the hub: the connection core every transport shares, admission, the
native TCP listener and the web listener (the chat page and its WebSocket)."""

from __future__ import annotations

from .admission import Admission
from .connection import Connection
from .tcp import TcpListener
from .web import WebListener

__all__ = ["Admission", "Connection", "TcpListener", "WebListener"]
