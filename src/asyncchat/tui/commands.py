"""The commands only a client with windows has (the others: ``text.parse_command``).

``/query NAME [TEXT]`` opens a private conversation's window, ``/window N|next|prev|close``
switches, ``/clear`` empties the window. :data:`COMMANDS` lists every command the terminal
client knows, for Tab completion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError, UsageError
from ..events import Event
from ..text import ALIASES
from ..validation import check_name

__all__ = ["COMMANDS", "Local", "parse_local", "request_of"]

#: Every command of the terminal client (the shared ones and its own), for completion.
COMMANDS = (
    "/join", "/leave", "/nick", "/msg", "/query", "/me", "/who", "/rooms", "/topic", "/away",
    "/search", "/clear", "/window", "/quit", "/help",
    *(f"/{alias}" for alias in ALIASES), "/q",
)  # fmt: skip
_USAGE = {
    "query": "/query NAME [TEXT]",
    "window": "/window N|next|prev|close",
    "clear": "/clear",
}


@dataclass(frozen=True, slots=True)
class Local:
    """A command carried out by the client alone: its ``name``, ``arg`` and ``text``."""

    name: str
    arg: str | None = None
    text: str | None = None


def parse_local(line: str) -> Local | None:
    """The client-only command of a typed line, or None when the line is something else.
    Raises :class:`~asyncchat.errors.UsageError`."""
    if not line.startswith("/"):
        return None
    head, _, rest = line[1:].partition(" ")
    name = {"q": "query", "w": "window"}.get(head.lower(), head.lower())
    if name not in _USAGE:
        return None
    rest = rest.strip()
    first, _, more = rest.partition(" ")
    match name:
        case "query":
            try:
                check_name(first)
            except ProtocolError as exc:
                raise UsageError(f"{exc.message} (usage: {_USAGE[name]})") from None
            return Local("query", first, more.strip() or None)
        case "window":
            if rest not in ("next", "prev", "close") and not rest.isdigit():
                raise UsageError(f"usage: {_USAGE[name]}")
            return Local("window", rest)
        case _:
            if rest:
                raise UsageError(f"usage: {_USAGE[name]}")
            return Local(name)


def request_of(event: Event) -> dict[str, Any]:
    """The request a parsed command sends through ``Client.request`` (which adds the id)."""
    obj = event.to_wire()
    obj.pop("id", None)
    return obj
