"""How clients reach the hub: the connection core every transport shares, admission, and the
native TCP listener."""

from __future__ import annotations

from .admission import Admission
from .connection import Connection
from .tcp import TcpListener

__all__ = ["Admission", "Connection", "TcpListener"]
