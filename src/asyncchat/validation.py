"""Names, rooms and text as the contract allows them (sans-I/O)."""

from __future__ import annotations

import unicodedata

from .errors import ErrorCode, ProtocolError

__all__ = [
    "MAX_NAME",
    "MAX_ROOM",
    "check_name",
    "check_room",
    "check_text",
    "name_key",
]

#: Characters in a user name (PROTOCOL.md "Names and text").
MAX_NAME = 32
#: Characters in a room name.
MAX_ROOM = 64

# Unicode categories refused anywhere in a name or room: separators (all whitespace), controls,
# format characters (invisible: zero-width joiners, bidi overrides), surrogates, private use and
# unassigned code points. A name must look like what it is.
_REFUSED = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"})
_BAD_FIRST = ("#", "/", "*")


def _bad_char(s: str) -> str | None:
    for ch in s:
        if unicodedata.category(ch) in _REFUSED:
            return ch
    return None


def _check_label(s: str, what: str, limit: int, code: ErrorCode) -> None:
    if not 1 <= len(s) <= limit:
        raise ProtocolError(code, f"{what} must be 1 to {limit} characters long")
    if s.startswith(_BAD_FIRST):
        raise ProtocolError(code, f"{what} must not start with '#', '/' or '*'")
    bad = _bad_char(s)
    if bad is not None:
        raise ProtocolError(
            code,
            f"{what} must not contain whitespace or control characters (found U+{ord(bad):04X})",
        )


def check_name(name: str) -> None:
    """Raise ``ProtocolError(name_invalid)`` unless ``name`` is a valid user name."""
    _check_label(name, "a name", MAX_NAME, ErrorCode.NAME_INVALID)


def check_room(room: str) -> None:
    """Raise ``ProtocolError(room_invalid)`` unless ``room`` is a valid room name."""
    _check_label(room, "a room name", MAX_ROOM, ErrorCode.ROOM_INVALID)


def check_text(text: str, max_text: int) -> None:
    """Raise ``ProtocolError`` (``text_too_long`` or ``bad_request``) unless ``text`` is valid."""
    if len(text) > max_text:
        raise ProtocolError(ErrorCode.TEXT_TOO_LONG, f"text is limited to {max_text} characters")
    if not text:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "text must not be empty")
    if "\x00" in text:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "text must not contain NUL")


def name_key(name: str) -> str:
    """The key under which names (and rooms) are unique: NFC-normalised, then casefolded."""
    return unicodedata.normalize("NFC", name).casefold()
