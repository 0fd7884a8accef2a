"""How chat events look as text: escaping peer strings, one line per event, the command help.

Shared by every front end that shows chat as lines of text (the terminal client, the transcript
export, and the server's future line listener), so that none of them imports another. Sans-I/O:
strings in, strings out.
"""

from __future__ import annotations

import time

from .events import (
    Bye,
    DirectMessage,
    Error,
    Joined,
    Left,
    Message,
    Renamed,
    ServerEvent,
    Welcome,
)

__all__ = ["HELP", "back_line", "clock", "escape", "format_event"]

HELP = """\
commands:
  TEXT               say TEXT in the current room (//TEXT sends a line that starts with /)
  /join ROOM         join ROOM (creating it) and make it the current room
  /leave [ROOM]      leave ROOM (default: the current room)
  /nick NAME         change your name
  /msg NAME TEXT     private message to NAME
  /me TEXT           an action: "* you TEXT"
  /who [ROOM]        who is in ROOM (default: the current room)
  /rooms             every room and how many are in it
  /quit [REASON]     leave the chat
  /help              this list"""


def escape(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control or format character made visible (``\\x1b``, ``\\u202e``),
    so that a peer cannot move the cursor, recolour or reorder the terminal. With ``newlines``,
    ``\\n`` is kept (and indented by the caller)."""
    out = []
    for ch in text:
        o = ord(ch)
        if (o < 0x20 and not (newlines and ch == "\n")) or 0x7F <= o < 0xA0 or ch in _INVISIBLE:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


# Format characters that reorder or hide text (bidi controls, zero-width, BOM) and the line and
# paragraph separators.
_INVISIBLE = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\ufeff"
)


def clock(ts: float) -> str:
    """``ts`` (Unix seconds) as the local time of day, ``HH:MM``."""
    return time.strftime("%H:%M", time.localtime(ts))


def format_event(event: ServerEvent, me: str) -> str | None:
    """One event as the terminal shows it; None for events it does not show."""
    match event:
        case Message(room=room, sender=sender, text=text, ts=ts, action=action):
            body = escape(text, newlines=True).replace("\n", "\n      ")
            who = escape(sender)
            line = f"* {who} {body}" if action else f"<{who}> {body}"
            return f"{clock(ts)} #{escape(room)} {line}"
        case DirectMessage(sender=sender, to=to, text=text, ts=ts):
            body = escape(text, newlines=True).replace("\n", "\n      ")
            return f"{clock(ts)} [dm {escape(sender)} -> {escape(to)}] {body}"
        case Joined(room=room, name=name):
            who = "you" if name == me else escape(name)
            return f"-> {who} joined #{escape(room)}"
        case Left(room=room, name=name, reason=reason):
            who = "you" if name == me else escape(name)
            why = "" if reason == "leave" else f" ({escape(reason)})"
            return f"<- {who} left #{escape(room)}{why}"
        case Renamed(old=old, new=new):
            return f"-- {escape(old)} is now known as {escape(new)}"
        case Error(code=code, message=message):
            return f"!! {escape(code)}: {escape(message)}"
        case Bye(reason=reason):
            return f"!! the server closed the connection: {escape(reason)}"
        case Welcome(name=name, server=server, motd=motd):
            line = f"-- connected to {escape(server)} as {escape(name)} (/help for commands)"
            return line + (f"\n-- {escape(motd, newlines=True)}" if motd else "")
    return None


def back_line(missed: int, truncated: bool) -> str:
    """The line that says a reconnected client is back, and what it missed."""
    n = f"{missed} missed message{'' if missed == 1 else 's'}"
    if truncated:
        if missed:
            return f"-- back, {n}; older ones were not kept"
        return "-- back; messages sent meanwhile were not kept"
    return f"-- back, {n}" if missed else "-- back, nothing missed"
