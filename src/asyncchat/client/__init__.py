"""The client library: bots and applications join rooms with it.

::

    async with connect("127.0.0.1", 1234, name="bot", reconnect=True) as client:
        await client.say("lobby", "hello")
        async for event in client:
            if isinstance(event, Message):
                ...

:class:`Client` (also called :data:`connect`) is the library; :mod:`.connection` is one TCP
connection of it; the room bookkeeping across reconnects is the sans-I/O
:mod:`asyncchat.tracking`.
"""

from __future__ import annotations

from ..tracking import HistoryPage, Reconnected, Reconnecting
from .core import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_CLIENT_MAX_FRAME,
    Client,
    StreamEvent,
    connect,
)

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CLIENT_MAX_FRAME",
    "Client",
    "HistoryPage",
    "Reconnected",
    "Reconnecting",
    "StreamEvent",
    "connect",
]
