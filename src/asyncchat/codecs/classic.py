"""The classic door: the 10-byte-header protocol of the socket-chat course exercise.

The wire, byte for byte: every message is a 10-byte header, the payload's length in ASCII
decimal, left-aligned and padded with spaces (``f"{len(b):<10}"``), then the payload (UTF-8).
The client's first message is its username; every later one is chat text. The server sends
each message of another as two messages in one write: the sender's name, then the text.

Here the username becomes the member's name, each text a ``say`` in ``lobby``, and what the
member receives becomes (name, text) pairs:

- a message in ``lobby`` (replayed history too): (sender, text); an action ``* alice waves``;
- a private message: (``alice (dm)``, text);
- everything the server says itself (the welcome, arrivals and departures, renames, topics,
  refusals, the ``bye``) comes from :data:`NOTICE_SENDER`, ``*server``, a name no member can
  take, as the line door shows it (``-> bob joined #lobby``, ``!! rate_limited: ...``);
- a username that is taken gets a suffix (``alice`` → ``alice_2``, ``alice_3``...), and the
  welcome notice says the name given; one that is no valid name is refused with a notice and a
  close.

Peer strings are escaped (:func:`~asyncchat.text.escape`) before they reach a client that prints
whatever it receives. A header that is not a decimal number, or announces more than the limit,
closes the connection (the stream cannot be resynchronised); a text that is not UTF-8 is refused
with a notice, and the connection goes on. Each is logged.
"""

from __future__ import annotations

import logging
from collections import deque

import orjson

from ..errors import ErrorCode, ProtocolError
from ..events import (
    PROTOCOL_VERSION,
    DirectMessage,
    Error,
    Joined,
    Left,
    Message,
    Welcome,
)
from ..hub import LOBBY
from ..limits import Limits
from ..text import escape, format_event
from ..validation import MAX_NAME
from . import server_events

__all__ = ["HEADER_LENGTH", "NOTICE_SENDER", "ClassicCodec", "classic_message"]

log = logging.getLogger("asyncchat.server")

#: Bytes of the classic header.
HEADER_LENGTH = 10
#: The name the server's own notices come from (names cannot start with ``*``).
NOTICE_SENDER = "*server"


def classic_message(payload: bytes) -> bytes:
    """One classic message: the 10-byte header, then ``payload``."""
    return f"{len(payload):<{HEADER_LENGTH}}".encode() + payload


def _pair(sender: str, text: str) -> bytes:
    return classic_message(sender.encode()) + classic_message(text.encode())


class ClassicCodec:
    """The classic 10-byte-header wire, for one connection (see the module's docstring)."""

    pings = False

    def __init__(self, limits: Limits) -> None:
        self._buf = bytearray()
        self._messages: deque[bytes] = deque()
        self._out: list[bytes] = []
        #: The username asked for, the name of the hello in flight, and how many were taken.
        self._wanted = ""
        self._trying: str | None = None
        self._taken = 0
        self._retry = False
        self._refused: str | None = None
        self._named = False
        self._ids = 0
        self._hello_ref = 0

    # ------------------------------------------------------------------ bytes in

    def greeting(self) -> bytes:
        return b""

    def receive(self, data: bytes, limit: int) -> None:
        buf = self._buf
        buf += data
        i = 0
        end = len(buf)
        try:
            while end - i >= HEADER_LENGTH:
                header = bytes(buf[i : i + HEADER_LENGTH])
                digits = header.strip()
                if not digits.isdigit():  # bytes.isdigit: ASCII digits only
                    raise ProtocolError(
                        ErrorCode.BAD_FRAME,
                        f"a header is the length in ASCII decimal, not {header!r}",
                        closes=True,
                    )
                n = int(digits)
                if n > limit:
                    raise ProtocolError(
                        ErrorCode.FRAME_TOO_LARGE, f"message of {n} bytes exceeds max_frame={limit}"
                    )
                if end - i - HEADER_LENGTH < n:
                    break
                i += HEADER_LENGTH
                self._messages.append(bytes(buf[i : i + n]))
                i += n
        finally:
            del buf[:i]

    def next_payload(self) -> bytes | None:
        if self._refused is not None:
            raise ProtocolError(ErrorCode.NAME_INVALID, self._refused, closes=True)
        if self._retry:
            self._retry = False
            return self._hello(self._suffixed())
        messages = self._messages
        while messages:
            if not self._named and self._trying is not None:
                self._named = True  # the hello in flight was not refused: it was welcomed
            payload = messages.popleft()
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                if not self._named:
                    raise ProtocolError(
                        ErrorCode.NAME_INVALID, "the username is not UTF-8", closes=True
                    ) from None
                log.info("classic: a message that is not UTF-8 was refused")
                self._notice("!! bad_frame: your message is not UTF-8 text: not posted")
                continue
            if not self._named:
                self._wanted = text.strip()
                return self._hello(self._wanted)
            if not text:
                continue  # the textbook server relays it; there is nothing to post
            self._ids += 1
            return orjson.dumps({"type": "say", "room": LOBBY, "text": text, "id": self._ids})
        return None

    def _hello(self, name: str) -> bytes:
        self._trying = name
        self._ids += 1
        self._hello_ref = self._ids
        hello = {"type": "hello", "version": PROTOCOL_VERSION, "name": name, "id": self._ids}
        return orjson.dumps(hello)

    def _suffixed(self) -> str:
        suffix = f"_{self._taken + 1}"
        return self._wanted[: MAX_NAME - len(suffix)] + suffix

    def take_output(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _notice(self, text: str) -> None:
        self._out.append(_pair(NOTICE_SENDER, text))

    # ------------------------------------------------------------------ frames out

    def render(self, frames: bytes) -> bytes:
        out: list[bytes] = []
        for event in server_events(frames):
            match event:
                case Message(sender=sender, text=text, action=action):
                    who = escape(sender)
                    body = escape(text, newlines=True)
                    out.append(_pair(who, f"* {who} {body}" if action else body))
                case DirectMessage(sender=sender, text=text):
                    out.append(_pair(f"{escape(sender)} (dm)", escape(text, newlines=True)))
                case Welcome(name=name, server=server, motd=motd):
                    self._named = True
                    line = f"-- connected to {escape(server)} as {escape(name)}"
                    out.append(_pair(NOTICE_SENDER, line))
                    if motd:
                        out.append(_pair(NOTICE_SENDER, f"-- {escape(motd, newlines=True)}"))
                case Error(code=code, message=message, ref=ref) if (
                    ref == self._hello_ref and not self._named
                ):
                    self._refuse_name(code, message)
                case Joined(name=who) | Left(name=who) if who == self._trying:
                    pass  # its own arrival is the welcome; its departure, the close
                case _:
                    # Everything else the server says, as the line door shows it.
                    shown = format_event(event, self._trying or "")
                    if shown is not None:
                        out.append(_pair(NOTICE_SENDER, shown))
        return b"".join(out)

    def _refuse_name(self, code: str, message: str) -> None:
        """The hello was refused: a taken name is tried again with a suffix; any other
        refusal closes the connection (at the next pull, with one notice)."""
        if code == ErrorCode.NAME_TAKEN:
            self._taken += 1
            self._retry = True
            log.info("classic: %r is taken, trying %r", self._wanted, self._suffixed())
        else:
            self._refused = f"the username {self._wanted!r} cannot be used: {message}"
