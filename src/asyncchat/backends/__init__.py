"""Where room messages are ordered and kept: the in-process broker and the SQLite store."""

from __future__ import annotations

from .local import LocalBroker
from .sqlite import SQLiteStore

__all__ = ["LocalBroker", "SQLiteStore"]
