"""Chat as lines of text: escaping peer strings, one line per event, the typed commands and
their help.

Shared by every front end that shows chat as lines of text (the terminal client, the transcript
export, and the server's line listener), so that none of them imports another: a typed line is
parsed here into the client event it asks for (:func:`parse_command`), and what comes back is
shown with :func:`format_event` and the ``*_line`` helpers. Sans-I/O: strings in, strings out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Literal

from .errors import ProtocolError, UsageError
from .events import (
    Away,
    AwayRequest,
    BanInfo,
    BanRequest,
    BansRequest,
    Bye,
    ClientEvent,
    DirectMessage,
    Error,
    Join,
    Joined,
    Kick,
    Leave,
    Left,
    Message,
    Mute,
    Nick,
    Quit,
    Register,
    Renamed,
    RoomInfo,
    RoomsRequest,
    Say,
    SearchRequest,
    SendDm,
    ServerEvent,
    Topic,
    TopicRequest,
    Unban,
    Welcome,
    WhoRequest,
)
from .validation import check_name

__all__ = [
    "ALIASES",
    "HELP",
    "OPERATOR_HELP_LINES",
    "UNAVAILABLE",
    "Command",
    "action_line",
    "back_line",
    "clock",
    "dm_sent_line",
    "escape",
    "format_bans",
    "format_event",
    "operator_request",
    "parse_command",
    "room_arg",
    "rooms_line",
    "talking_line",
    "who_line",
]

#: The operators' commands, the same in the terminal client and the server's console.
OPERATOR_HELP_LINES = """\
  /kick NAME [REASON]                      disconnect NAME
  /ban account|name|ip WHO [TIME] [REASON] ban (ip: an address or CIDR network; TIME: 30s,
                                           10m, 2h, 7d or seconds; none: until unbanned)
  /unban ID                                lift a ban (its ID from /bans)
  /bans                                    the bans in force
  /mute ROOM NAME [TIME]                   keep NAME quiet in ROOM (TIME 0: unmute)"""

HELP = (
    """\
commands:
  (a ROOM may be written #room; IRC's /j, /part, /names and /list work too)
  TEXT               say TEXT in the current room (//TEXT sends a line that starts with /)
  /join ROOM         join ROOM (creating it) and make it the current room
  /leave [ROOM]      leave ROOM (default: the current room)
  /nick NAME         change your name
  /msg NAME TEXT     private message to NAME
  /me TEXT           an action: "* you TEXT"
  /who [ROOM]        who is in ROOM (default: the current room)
  /rooms             every room and how many are in it
  /topic [TEXT]      the current room's topic; with TEXT, set it
  /away [MESSAGE]    mark yourself away with MESSAGE; without one, back
  /search WORDS      the room's past messages with all of WORDS, newest first
  /quit [REASON]     leave the chat (the others see REASON)
  /register PASSWORD register your name as an account (where registration is open)
operators only:
"""
    + OPERATOR_HELP_LINES
    + """
  /help              this list"""
)


def escape(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control or format character made visible (``\\x1b``, ``\\u202e``),
    so that a peer cannot move the cursor, recolour or reorder the terminal; the zero-width
    joiners (U+200C, U+200D) are kept. With ``newlines``, ``\\n`` is kept (and indented by
    the caller)."""
    pattern = _UNSAFE_BUT_NEWLINE if newlines else _UNSAFE
    if pattern.search(text) is None:
        return text  # the common case, at C speed: the line door renders every message this way
    return pattern.sub(_visible, text)


def _visible(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        return m.group(1)  # a flag's tag sequence (England, Scotland, Wales) stays whole
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


# Format characters that reorder or hide text (bidi controls, zero-width space, BOM), the line
# and paragraph separators, and characters that show nothing (soft hyphen, the combining
# grapheme joiner, invisible operators, Hangul fillers, tag characters outside a flag). The
# joiners U+200C and U+200D stay: emoji sequences (families, skin tones, flags) and Persian and
# Indic scripts need them, and they move nothing; so do the variation selectors.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb"
    "\U000e0000-\U000e007f"
)
# A subdivision flag: the black flag, tag letters, the cancel tag.
_FLAG = "(\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f)"
# Controls (C0, DEL, C1) and the invisible characters; the second keeps the newline.
_UNSAFE = re.compile(f"{_FLAG}|[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"{_FLAG}|[\x00-\x09\x0b-\x1f\x7f-\x9f{_INVISIBLE}]")


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
        case Left(room=room, name=name, reason=reason, message=message):
            who = "you" if name == me else escape(name)
            why = "" if reason == "leave" else f" ({escape(reason)})"
            if message:
                why = f" ({escape(reason)}: {escape(message)})"
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
        case Topic(room=room, text=text, by=by):
            if text is None:
                return f"-- #{escape(room)} has no topic"
            setter = f" (set by {'you' if by == me else escape(by)})" if by else ""
            return f"-- #{escape(room)} topic: {escape(text)}{setter}"
        case Away(name=name, message=message):
            who = "you" if name == me else escape(name)
            if message is None:
                return f"-- {who} {'are' if who == 'you' else 'is'} back"
            return f"-- {who} {'are' if who == 'you' else 'is'} away: {escape(message)}"
    return None


def back_line(missed: int, truncated: bool) -> str:
    """The line that says a reconnected client is back, and what it missed."""
    n = f"{missed} missed message{'' if missed == 1 else 's'}"
    if truncated:
        if missed:
            return f"-- back, {n}; older ones were not kept"
        return "-- back; messages sent meanwhile were not kept"
    return f"-- back, {n}" if missed else "-- back, nothing missed"


#: Commands that only make sense before the name is given (the line door's prompt): answered
#: with a clear line rather than "unknown command".
UNAVAILABLE = frozenset({"login"})

#: What one typed line asks for: a client event (its ``id`` unset), ``"help"``, or None
#: (an empty line: nothing to do).
Command = ClientEvent | Literal["help"] | None


def parse_command(line: str, room: str) -> Command:
    """The request a typed ``line`` makes, ``room`` being the current room: plain text (or
    ``//TEXT``, for a line that starts with ``/``) is a :class:`~asyncchat.events.Say` there;
    ``/join``, ``/leave``, ``/nick``, ``/msg``, ``/me``, ``/who``, ``/rooms``, ``/topic``,
    ``/away``, ``/search`` and ``/quit`` are their events (see :data:`HELP`; IRC's names in
    :data:`ALIASES`, and a room may be written ``#room``). Raises
    :class:`~asyncchat.errors.UsageError` with the line to show for a malformed, unknown or
    unavailable command."""
    if not line.startswith("/") or line.startswith("//"):
        text = line[1:] if line.startswith("//") else line
        return Say(room=room, text=text) if text else None
    cmd, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    match ALIASES.get(cmd.lower(), cmd.lower()):
        case "join":
            return Join(room=room_arg(_one(rest, "/join ROOM")))
        case "leave":
            return Leave(room=room_arg(_one(rest, "/leave [ROOM]")) if rest else room)
        case "nick":
            name = _one(rest, "/nick NAME", what="a name")
            try:
                check_name(name)
            except ProtocolError as exc:
                raise UsageError(f"{exc.message}: {escape(name)!r}") from None
            return Nick(name=name)
        case "msg":
            to, _, text = rest.partition(" ")
            if not to or not text.strip():
                raise UsageError("usage: /msg NAME TEXT")
            return SendDm(to=to, text=text)
        case "me":
            if not rest:
                raise UsageError("usage: /me TEXT")
            return Say(room=room, text=rest, action=True)
        case "who":
            return WhoRequest(room=room_arg(_one(rest, "/who [ROOM]")) if rest else room)
        case "rooms":
            if rest:
                raise UsageError("usage: /rooms")
            return RoomsRequest()
        case "topic":
            return TopicRequest(room=room, text=rest or None)
        case "away":
            return AwayRequest(message=rest or None)
        case "search":
            if not rest:
                raise UsageError("usage: /search WORDS")
            return SearchRequest(room=room, words=rest)
        case "quit":
            return Quit(reason=rest or None)
        case "help":
            return "help"
        case "register":
            return Register(password=_one(rest, "/register PASSWORD"))
        case "kick" | "ban" | "unban" | "bans" | "mute":
            return operator_request(cmd, rest)
        case word if word in UNAVAILABLE:
            raise UsageError(f"/{word} only works as the first line, instead of the name")
    raise UsageError(f"unknown command /{escape(cmd)}; /help lists the commands")


#: IRC's names of the commands.
ALIASES = {"j": "join", "part": "leave", "names": "who", "list": "rooms", "exit": "quit"}


def room_arg(text: str) -> str:
    """A room as typed: ``#dev`` or ``dev`` (the ``#`` is how rooms are shown)."""
    room = text[1:] if text.startswith("#") else text
    if not room:
        raise UsageError("a room needs a name after the '#'")
    return room


def _one(rest: str, usage: str, *, what: str = "it") -> str:
    if not rest:
        raise UsageError(f"usage: {usage}")
    if " " in rest:
        no_space = "" if what == "it" else f"{what} cannot contain spaces; "
        raise UsageError(f"{no_space}usage: {usage}")
    return rest


def who_line(room: str, names: Iterable[str], away: Mapping[str, str] | None = None) -> str:
    """The answer to ``/who`` (``away``: the away message of those away)."""
    away = away or {}
    listed = (escape(n) + (f" (away: {escape(away[n])})" if n in away else "") for n in names)
    return f"-- #{escape(room)}: {', '.join(listed)}"


def rooms_line(rooms: Iterable[RoomInfo]) -> str:
    """The answer to ``/rooms``."""
    return "-- rooms: " + ", ".join(f"#{escape(r.name)} ({r.members})" for r in rooms)


def dm_sent_line(to: str, text: str) -> str:
    """A private message of ours, once the server took it."""
    return f"[dm you -> {escape(to)}] {escape(text)}"


def action_line(me: str, text: str) -> str:
    """An action (``/me``) of ours, once the server took it."""
    return f"* {escape(me)} {escape(text)}"


def talking_line(room: str) -> str:
    """The current room changed without a ``/join`` (the current one was left)."""
    return f"-- you are now talking in #{escape(room)}"


# --------------------------------------------------------------------------- operators

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_USAGE = {
    "kick": "/kick NAME [REASON]",
    "ban": "/ban account|name|ip WHO [TIME] [REASON]",
    "unban": "/unban ID",
    "bans": "/bans",
    "mute": "/mute ROOM NAME [TIME]",
}


def _duration(word: str) -> float | None:
    """``30``, ``30s``, ``10m``, ``2h`` or ``7d`` in seconds; None if ``word`` is none."""
    unit = _UNITS.get(word[-1:].lower(), 0)
    number = word[:-1] if unit else word
    try:
        value = float(number)
    except ValueError:
        return None
    return value * (unit or 1) if value >= 0 else None


def operator_request(cmd: str, rest: str) -> ClientEvent | None:
    """The request of the operator command ``/cmd rest`` (see :data:`OPERATOR_HELP_LINES`),
    or None if ``cmd`` is none. Raises :class:`~asyncchat.errors.UsageError` with the usage
    line when ``rest`` does not fit."""
    cmd = cmd.lower()
    if cmd not in _USAGE:
        return None
    words = rest.split()
    usage = UsageError(f"usage: {_USAGE[cmd]}")
    match cmd, words:
        case "kick", [name, *why]:
            return Kick(name=name, reason=" ".join(why) or None)
        case "ban", [("account" | "name" | "ip") as kind, who, *more]:
            duration = _duration(more[0]) if more else None
            if duration is not None:
                more = more[1:]
            return BanRequest(
                **{kind: who}, duration=duration or None, reason=" ".join(more) or None
            )
        case "unban", [number] if number.isdigit():
            return Unban(ban=int(number))
        case "bans", []:
            return BansRequest()
        case "mute", [room, name]:
            return Mute(room=room, name=name)
        case "mute", [room, name, time_] if (duration := _duration(time_)) is not None:
            return Mute(room=room, name=name, duration=duration)
    raise usage


def format_bans(bans: list[BanInfo] | tuple[BanInfo, ...]) -> list[str]:
    """One line per ban, peer strings escaped."""
    if not bans:
        return ["no bans"]
    lines = []
    for b in bans:
        until = (
            "until unbanned"
            if b.until is None
            else "until " + time.strftime("%Y-%m-%d %H:%M", time.localtime(b.until))
        )
        why = f": {escape(b.reason)}" if b.reason else ""
        lines.append(f"#{b.id} {b.kind} {escape(b.value)} by {escape(b.by)}, {until}{why}")
    return lines
