"""The line door: chat from netcat or telnet, one line of text at a time.

On connect the server asks for a name; the first line is the name (a taken or invalid one is
refused and asked for again), or ``/login NAME PASSWORD`` for a registered name (over TLS, or
from this machine, as the server's accounts require). Then each line is said in the current
room, and a line that starts with ``/`` is one of the terminal client's commands, parsed by the
same code (:func:`~asyncchat.text.parse_command`). What the server sends is written as the terminal
client's plain mode shows it (:func:`~asyncchat.text.format_event` and its helpers), one line
per event, ending in CR LF.

Input: LF ends a line, and a CR before it is dropped (CR LF and bare LF both work); telnet
negotiation (IAC sequences) is skipped; a line longer than ``limit`` bytes (``max_frame``) is
refused as soon as it is, before it is buffered, and the rest of it up to the next LF is
dropped; a line that is not UTF-8 is refused. Neither closes the connection.
"""

from __future__ import annotations

import logging
from collections import deque

import orjson

from ..errors import ErrorCode, UsageError
from ..events import (
    PROTOCOL_VERSION,
    Ack,
    ClientEvent,
    Error,
    Join,
    Joined,
    Leave,
    Left,
    Ping,
    Pong,
    Renamed,
    RoomList,
    Say,
    SendDm,
    ServerEvent,
    Welcome,
    WhoReply,
)
from ..hub import LOBBY
from ..limits import Limits
from ..session import SERVER_VERSION
from ..text import (
    HELP,
    action_line,
    dm_sent_line,
    format_event,
    parse_command,
    rooms_line,
    talking_line,
    who_line,
)
from . import server_events

__all__ = ["LineCodec"]

log = logging.getLogger("asyncchat.server")

#: What the name prompt accepts.
_PROMPT_HELP = "type your name, or /login NAME PASSWORD for a registered one"

# Telnet (RFC 854): IAC starts a command; WILL/WONT/DO/DONT take one option byte; SB starts a
# subnegotiation that IAC SE ends.
_IAC, _SB, _SE = 255, 250, 240
_WILL_TO_DONT = range(251, 255)
# Where the telnet filter is: in text, after IAC, after IAC WILL/..., in SB, in SB after IAC.
_TEXT, _CMD, _OPT, _SUB, _SUB_IAC = range(5)


class LineCodec:
    """Text lines for one connection (see the module's docstring)."""

    pings = False

    def __init__(self, limits: Limits) -> None:
        self._handshake_timeout = limits.handshake_timeout
        self._buf = bytearray()
        self._dropping = False  # inside a line that was too long, until its LF
        self._telnet = _TEXT
        self._lines: deque[bytes] = deque()
        self._out: list[str] = []
        self.me = ""
        self.room = LOBBY
        #: The rooms we are in, by key.
        self._rooms: dict[str, str] = {}
        self._named = False
        self._hello_ref: int | None = None
        self._ids = 0
        #: Requests whose answer is shown in a way of their own, by id.
        self._asked: dict[int, ClientEvent] = {}

    def greeting(self) -> bytes:
        return self._lines_out(
            [
                f"-- {SERVER_VERSION}: type your name and Enter "
                f"(within {self._handshake_timeout:g} seconds)"
            ]
        )

    # ------------------------------------------------------------------ bytes in

    def receive(self, data: bytes, limit: int) -> None:
        if self._telnet != _TEXT or _IAC in data:
            data = self._strip_telnet(data)
        parts = data.split(b"\n")
        buf = self._buf
        for part in parts[:-1]:
            if self._dropping:
                self._dropping = False
            elif len(buf) + len(part) > limit:
                self._too_long(limit)
            else:
                buf += part
                self._lines.append(bytes(buf[:-1] if buf.endswith(b"\r") else buf))
            buf.clear()
        last = parts[-1]
        if self._dropping:
            return
        if len(buf) + len(last) > limit:
            buf.clear()
            self._dropping = True
            self._too_long(limit)
        else:
            buf += last

    def _too_long(self, limit: int) -> None:
        log.info("line: a line over %d bytes was refused", limit)
        self._error(ErrorCode.FRAME_TOO_LARGE, f"a line is limited to {limit} bytes: ignored")

    def _strip_telnet(self, data: bytes) -> bytes:
        """``data`` without telnet commands (a sequence may span calls)."""
        out = bytearray()
        state = self._telnet
        for b in data:
            if state == _TEXT:
                if b == _IAC:
                    state = _CMD
                else:
                    out.append(b)
            elif state == _CMD:
                if b in _WILL_TO_DONT:
                    state = _OPT
                elif b == _SB:
                    state = _SUB
                else:
                    state = _TEXT  # a two-byte command (IAC IAC is a 0xFF: never UTF-8 text)
            elif state == _OPT:
                state = _TEXT
            elif state == _SUB:
                if b == _IAC:
                    state = _SUB_IAC
            else:  # _SUB_IAC
                state = _TEXT if b == _SE else _SUB
        self._telnet = state
        return bytes(out)

    def next_payload(self) -> bytes | None:
        lines = self._lines
        while lines:
            raw = lines.popleft()
            try:
                line = raw.decode()
            except UnicodeDecodeError:
                log.info("line: a line that is not UTF-8 was refused")
                self._error(ErrorCode.BAD_FRAME, "the line is not UTF-8 text: ignored")
                continue
            if not self._named:
                if self._hello_ref is not None:
                    self._named = True  # the hello before was not refused: it was welcomed
                else:
                    hello = self._hello(line.strip())
                    if hello is None:
                        continue
                    return hello
            try:
                command = parse_command(line, self.room)
            except UsageError as exc:
                self._out.append(f"!! {exc}")
                continue
            if command is None:
                continue
            if command == "help":
                self._out.append(HELP)
                continue
            ref = self._next_id()
            if isinstance(command, SendDm | Join | Leave) or (
                isinstance(command, Say) and command.action
            ):
                self._asked[ref] = command
            return orjson.dumps({**command.to_wire(), "id": ref})
        return None

    def _hello(self, line: str) -> bytes | None:
        """The hello a line at the name prompt asks for: a name, or ``/login NAME PASSWORD``
        for a registered name. None (and a line said) for anything else."""
        if not line:
            self._out.append("-- your name?")
            return None
        password = None
        if line.startswith("/"):
            cmd, _, rest = line[1:].partition(" ")
            if cmd.lower() != "login":
                self._out.append(f"!! {_PROMPT_HELP}")
                return None
            line, _, password = rest.strip().partition(" ")
            password = password.strip()
            if not line or not password:
                self._out.append("!! usage: /login NAME PASSWORD")
                return None
        self._hello_ref = self._next_id()
        self.me = line
        hello = {"type": "hello", "version": PROTOCOL_VERSION, "name": line, "id": self._hello_ref}
        if password is not None:
            hello["password"] = password
        return orjson.dumps(hello)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def take_output(self) -> bytes:
        out = self._lines_out(self._out)
        self._out.clear()
        return out

    def _error(self, code: ErrorCode, message: str) -> None:
        line = format_event(Error(code=code, message=message), self.me)
        assert line is not None
        self._out.append(line)

    @staticmethod
    def _lines_out(lines: list[str]) -> bytes:
        if not lines:
            return b""
        return ("\n".join(lines).replace("\n", "\r\n") + "\r\n").encode()

    # ------------------------------------------------------------------ frames out

    def render(self, frames: bytes) -> bytes:
        out: list[str] = []
        for event in server_events(frames):
            out.extend(self._show(event))
        return self._lines_out(out)

    def _show(self, event: ServerEvent) -> list[str]:
        """The lines of one event, the codec's own state updated."""
        me = self.me
        match event:
            case Welcome(name=name, rooms=rooms):
                self._named = True
                self.me = name
                self._rooms = {r.casefold(): r for r in rooms}
                self.room = rooms[0] if rooms else LOBBY
            case Error(ref=ref) if ref is not None and ref == self._hello_ref and not self._named:
                self._hello_ref = None
                return [_format(event, me), "-- your name?"]
            case Ack(ref=ref) if isinstance(ref, int) and ref in self._asked:
                match self._asked.pop(ref):
                    case SendDm(to=to, text=text):
                        return [dm_sent_line(to, text)]
                    case Say(text=text):
                        return [action_line(me, text)]
                return []
            case Error(ref=ref) if isinstance(ref, int):
                self._asked.pop(ref, None)
            case Joined(room=room, name=name, ref=ref) if name == me:
                self._rooms[room.casefold()] = room
                if isinstance(ref, int) and self._asked.pop(ref, None) is not None:
                    self.room = room
            case Left(room=room, name=name, ref=ref) if name == me:
                self._rooms.pop(room.casefold(), None)
                if isinstance(ref, int):
                    self._asked.pop(ref, None)
                if room.casefold() == self.room.casefold():
                    self.room = min(self._rooms.values(), default=LOBBY, key=str.casefold)
                    return [_format(event, me), talking_line(self.room)]
            case Renamed(old=old, new=new) if old == me:
                self.me = new
            case WhoReply(room=room, names=names):
                return [who_line(room, names)]
            case RoomList(rooms=rooms):
                return [rooms_line(rooms)]
            case Ping() | Pong():
                return []
        line = format_event(event, me)
        return [] if line is None else [line]


def _format(event: ServerEvent, me: str) -> str:
    line = format_event(event, me)
    return "" if line is None else line
