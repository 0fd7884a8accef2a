"""asyncchat: a fast, self-hosted asyncio chat service.

The embedding API: :func:`run_server` and :class:`ChatServer` serve; :func:`connect` gives a
:class:`Client` for bots and applications; the events it yields are in :mod:`asyncchat.events`.
"""

from __future__ import annotations

from .client import Client, HistoryPage, Reconnected, Reconnecting, connect
from .errors import ChatError, ConfigError, ConnectionClosed, ErrorCode, ProtocolError, ServerError
from .events import (
    Ack,
    Bye,
    DirectMessage,
    Error,
    Joined,
    Left,
    Message,
    Renamed,
    RoomInfo,
    Welcome,
)
from .limits import Limits
from .server import ChatServer, run_server

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "Bye",
    "ChatError",
    "ChatServer",
    "Client",
    "ConfigError",
    "ConnectionClosed",
    "DirectMessage",
    "Error",
    "ErrorCode",
    "HistoryPage",
    "Joined",
    "Left",
    "Limits",
    "Message",
    "ProtocolError",
    "Reconnected",
    "Reconnecting",
    "Renamed",
    "RoomInfo",
    "ServerError",
    "Welcome",
    "__version__",
    "connect",
    "run_server",
]
