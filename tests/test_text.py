"""text.py, sans-I/O: escaping peer strings, and the typed commands the terminal client and the
line door share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncchat.errors import UsageError
from asyncchat.events import (
    AwayRequest,
    Join,
    Leave,
    Nick,
    Quit,
    RoomsRequest,
    Say,
    SendDm,
    TopicRequest,
    WhoRequest,
)
from asyncchat.text import escape, parse_command

# Bidi and zero-width controls, and characters that show nothing (issue 14: soft hyphen,
# grapheme joiner, invisible plus, Hangul filler, a tag character outside a flag).
_INVISIBLE = "\u061c\u200b\u200e\u2028\u2029\u202e\u2066\ufeff\u00ad\u034f\u2064\u3164\U000e0041"


def _escape_by_hand(text: str, newlines: bool) -> str:
    out = []
    for ch in text:
        o = ord(ch)
        unsafe = (o < 0x20 and not (newlines and ch == "\n")) or 0x7F <= o < 0xA0
        if unsafe or ch in _INVISIBLE:
            out.append(
                f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
            )
        else:
            out.append(ch)
    return "".join(out)


@given(st.text(alphabet=st.characters(max_codepoint=0x300) | st.sampled_from(_INVISIBLE)))
def test_escape_makes_every_control_and_invisible_character_visible(text: str) -> None:
    """Controls (C0, DEL, C1) and bidi/zero-width characters become \\xNN or \\uNNNN; with
    newlines=True a newline stays; everything else is kept as it is."""
    assert escape(text) == _escape_by_hand(text, False)
    assert escape(text, newlines=True) == _escape_by_hand(text, True)


def test_escape_keeps_safe_text_and_the_joiners_of_emoji_scripts() -> None:
    """Text with nothing to escape comes back as it is (emoji, accents, CJK)."""
    text = "café 🎉 日本語 ünï"
    assert escape(text) is text
    joined = "👨\u200d👩\u200d👧 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # ZWJ, ZWNJ
    assert escape(joined) is joined
    assert escape("a\x1b[31mb\u202ec\nd") == "a\\x1b[31mb\\u202ec\\x0ad"


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Say(room="dev", text="hello")),
        ("//etc/passwd", Say(room="dev", text="/etc/passwd")),
        ("", None),
        ("/join lobby", Join(room="lobby")),
        ("/leave", Leave(room="dev")),
        ("/leave lobby", Leave(room="lobby")),
        ("/nick bob", Nick(name="bob")),
        ("/msg bob hi there", SendDm(to="bob", text="hi there")),
        ("/me waves", Say(room="dev", text="waves", action=True)),
        ("/who", WhoRequest(room="dev")),
        ("/rooms", RoomsRequest()),
        ("/topic", TopicRequest(room="dev")),
        ("/topic ship it", TopicRequest(room="dev", text="ship it")),
        ("/away", AwayRequest()),
        ("/away lunch", AwayRequest(message="lunch")),
        ("/quit", Quit()),
        ("/QUIT bye", Quit(reason="bye")),
        ("/help", "help"),
    ],
)
def test_parse_command_gives_the_request_a_line_asks_for(line: str, command: object) -> None:
    """Each typed line becomes its client event (in the current room where one is needed)."""
    assert parse_command(line, "dev") == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/join", "usage: /join ROOM"),
        ("/join a b", "usage: /join ROOM"),
        ("/msg bob", "usage: /msg NAME TEXT"),
        ("/me", "usage: /me TEXT"),
        ("/rooms now", "usage: /rooms"),
        ("/login alice pw", "/login only works as the first line, instead of the name"),
        ("/\x1bframe", "unknown command /\\x1bframe; /help lists the commands"),
    ],
)
def test_parse_command_refuses_with_the_line_to_show(line: str, message: str) -> None:
    """A malformed, unavailable or unknown command raises UsageError with the line to show
    (peer-typed text escaped)."""
    with pytest.raises(UsageError) as info:
        parse_command(line, "dev")
    assert str(info.value) == message
