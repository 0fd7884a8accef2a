"""The full-screen client's display model and command parser, without a terminal."""

from __future__ import annotations

import re
import time

import pytest

from asyncchat.errors import UsageError
from asyncchat.events import (
    AwayRequest,
    Join,
    Leave,
    Quit,
    Say,
    SearchRequest,
    SendDm,
    TopicRequest,
    WhoRequest,
)
from asyncchat.text import escape, parse_command
from asyncchat.tui.commands import Local, parse_local
from asyncchat.tui.model import Display, Fragment, nick_style, wrap

from .helpers import FakeClock


def _rows(rows: list[list[Fragment]]) -> list[str]:
    return ["".join(t for _, t in row) for row in rows]


def _display() -> Display:
    d = Display("bob", clock=FakeClock(1_750_000_000.0))
    d.open("lobby", focus=True)
    d.open("dev")
    return d


def _say(d: Display, room: str, sender: str, text: str) -> None:
    d.add(d.find(room), d.message_body(sender, text), activity=True, indent=len(sender) + 3)


# ---------------------------------------------------------------- wrapping


def test_wrap_breaks_at_spaces_with_a_hanging_indent() -> None:
    """Long lines break between words; continuation rows start at the indent."""
    rows = _rows(wrap([("", "<al> one two three four five six")], 14, 5))
    assert rows == ["<al> one two", "     three", "     four five", "     six"]
    assert all(len(r) <= 14 for r in rows)


def test_wrap_cuts_a_word_longer_than_a_row_and_keeps_newlines() -> None:
    """A word wider than the row is cut; a newline in the text starts a row."""
    rows = _rows(wrap([("", "x " + "a" * 12 + "\nend")], 8, 2))
    assert rows == ["x aaaaaa", "  aaaaaa", "  end"]


def test_wrap_counts_wide_characters_as_two_cells() -> None:
    """East Asian wide characters take two cells, so fewer fit in a row."""
    rows = _rows(wrap([("", "漢字漢字漢字")], 6, 0))
    assert rows == ["漢字漢", "字漢字"]


def test_wrap_keeps_styles_per_word() -> None:
    """Each piece of text keeps its style across the break."""
    rows = wrap([("a", "red words"), ("b", " blue words")], 10, 0)
    assert rows[0] == [("a", "red"), ("a", " "), ("a", "words")]
    assert rows[1] == [("b", "blue"), ("b", " "), ("b", "words")]


# ---------------------------------------------------------------- windows and activity


def test_unread_and_mention_counts_and_the_activity_list() -> None:
    """Messages in a window not on screen count as unread; those naming the user as mentions
    too; the status bar lists them; showing the window clears them."""
    d = _display()
    _say(d, "dev", "alice", "hello")
    _say(d, "dev", "alice", "Bob: are you there?")
    _say(d, "dev", "alice", "bobby is someone else")
    _say(d, "lobby", "carol", "on screen: not counted")
    dev = d.find("#dev")
    assert dev is not None and (dev.unread, dev.mentions) == (3, 1)
    assert "".join(t for _, t in d.activity()) == " [Act: 2(3,1*)]"
    assert d.bell
    assert d.next_active() and d.window is dev
    assert (dev.unread, dev.mentions) == (0, 0) and d.activity() == []
    assert not d.next_active()


def test_switching_windows_by_number_and_in_turn() -> None:
    """Windows are numbered in the order they opened; focus and cycle move between them."""
    d = _display()
    d.open("alice", query=True)
    assert [w.title for w in d.windows] == ["#lobby", "#dev", "alice"]
    assert d.focus(2) and d.window is not None and d.window.title == "alice"
    assert not d.focus(3)
    d.cycle(1)
    assert d.window is not None and d.window.title == "#lobby"
    d.cycle(-1)
    assert d.window is not None and d.window.title == "alice"


def test_next_active_prefers_mentions() -> None:
    """Alt-A goes to a window that mentions the user before one that only has activity."""
    d = _display()
    d.open("ops")
    _say(d, "dev", "alice", "hi")
    _say(d, "ops", "carol", "bob, look")
    assert d.next_active() and d.window is not None and d.window.name == "ops"


def test_closing_the_last_room_leaves_no_window_and_find_accepts_hash() -> None:
    """Windows close; a room is found with or without its '#', without regard to case."""
    d = _display()
    lobby = d.find("#LOBBY")
    assert lobby is not None and d.find("lobby") is lobby
    d.close(lobby)
    dev = d.find("dev")
    assert dev is not None and d.window is dev
    d.close(dev)
    assert d.window is None and d.windows == []


def test_view_shows_the_newest_rows_and_scrolls_back() -> None:
    """The view ends with the newest line; scrolling back shows older ones; searching the
    scrollback scrolls to the newest match above."""
    d = _display()
    for i in range(30):
        _say(d, "lobby", "alice", f"line {i}")
    text = "".join(t for _, t in d.view(40, 5))
    assert text.splitlines()[-1].endswith("<alice> line 29")
    assert len(text.splitlines()) == 5
    d.scroll(10)
    assert "".join(t for _, t in d.view(40, 5)).splitlines()[-1].endswith("line 19")
    assert d.search_back("LINE 3")
    assert "".join(t for _, t in d.view(40, 5)).splitlines()[-1].endswith("line 3")
    assert not d.search_back("nowhere")
    d.scroll(-1000)
    assert "".join(t for _, t in d.view(40, 5)).splitlines()[-1].endswith("line 29")


def test_pending_lines_are_marked_until_acknowledged() -> None:
    """A sent line shows with an ellipsis until it is acknowledged."""
    d = _display()
    line = d.add(None, d.message_body("bob", "hi"), pending=True)
    assert "".join(t for _, t in d.view(40, 1)).endswith("<bob> hi …")
    line.pending = False
    assert "".join(t for _, t in d.view(40, 1)).endswith("<bob> hi")


def test_a_day_change_gets_a_dated_separator() -> None:
    """A line dated another day than the one before it is preceded by a separator."""
    d = _display()
    d.add(None, [("", "first")], ts=time.mktime((2026, 11, 28, 23, 59, 0, 0, 0, -1)))
    d.add(None, [("", "second")], ts=time.mktime((2026, 11, 29, 0, 1, 0, 0, 0, -1)))
    text = "".join(t for _, t in d.view(60, 5))
    assert "── day changed to Sunday 29 November 2026 ──" in text


def test_back_marker_is_filled_in_where_the_missed_messages_begin() -> None:
    """After a reconnect, the line before the first missed message says how many came."""
    d = _display()
    lobby = d.find("lobby")
    assert lobby is not None
    d.back_marker(lobby)
    _say(d, "lobby", "alice", "missed one")
    d.reconnected("back, 1 missed message")
    lines = "".join(t for _, t in d.view(60, 5)).splitlines()
    assert lines[-2].endswith("-- back, 1 missed message")


def test_status_bar_says_state_name_window_queue_topic() -> None:
    """The status bar shows the connection state with the next retry, the name, the window,
    the lines queued and the topic."""
    clock = FakeClock(100.0)
    d = Display("bob", clock=clock)
    d.open("lobby", focus=True).topic = "release day"
    d.state, d.attempt, d.retry_at, d.queued = "reconnecting", 3, 104.0, 2
    text = "".join(t for _, t in d.status())
    assert text == (
        "[reconnecting, attempt 3, next in 4 s] [bob] [1:#lobby] [2 queued] release day"
    )


def test_nick_colours_are_stable_and_case_blind() -> None:
    """A nick has the same colour every time, whatever its case."""
    assert nick_style("Alice") == nick_style("alice") == nick_style("ALICE")


def test_message_body_escapes_and_keeps_joiners() -> None:
    """Peer text is escaped (no escape sequence reaches the terminal) but emoji sequences
    and Persian joiners stay intact."""
    d = _display()
    family = "👨\u200d👩\u200d👧 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    body = "".join(t for _, t in d.message_body("alice", f"\x1b[2J{family}\u202e"))
    assert body == f"<alice> \\x1b[2J{family}\\u202e"
    assert escape("a\u200db") == "a\u200db"


def test_completions() -> None:
    """Tab completes nicks of the window (with ': ' at the start of a line), commands and
    rooms."""
    d = _display()
    lobby = d.find("lobby")
    assert lobby is not None
    lobby.names |= {"alice", "Albert", "bob"}
    assert d.completions("al", at_start=True) == ["Albert: ", "alice: "]
    assert d.completions("AL", at_start=False) == ["Albert ", "alice "]
    assert d.completions("/jo", at_start=True) == ["/join "]
    assert d.completions("#d", at_start=False) == ["#dev "]


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Say(room="lobby", text="hello")),
        ("//slash", Say(room="lobby", text="/slash")),
        ("/join #dev", Join(room="dev")),
        ("/j dev", Join(room="dev")),
        ("/part #dev", Leave(room="dev")),
        ("/leave", Leave(room="lobby")),
        ("/names #ops", WhoRequest(room="ops")),
        ("/msg alice hi there", SendDm(to="alice", text="hi there")),
        ("/topic", TopicRequest(room="lobby")),
        ("/topic ship it", TopicRequest(room="lobby", text="ship it")),
        ("/away", AwayRequest()),
        ("/away lunch", AwayRequest(message="lunch")),
        ("/search deploy failed", SearchRequest(room="lobby", words="deploy failed")),
        ("/quit gone fishing", Quit(reason="gone fishing")),
    ],
)
def test_parse_command(line: str, command: object) -> None:
    """Typed lines become requests; rooms may be written with '#'; IRC's names work."""
    assert parse_command(line, "lobby") == command


@pytest.mark.parametrize(
    ("line", "local"),
    [
        ("/query alice", Local("query", "alice")),
        ("/q alice hi", Local("query", "alice", "hi")),
        ("/window 2", Local("window", "2")),
        ("/w next", Local("window", "next")),
        ("/clear", Local("clear")),
        ("/join dev", None),
        ("hello", None),
    ],
)
def test_parse_local(line: str, local: Local | None) -> None:
    """The client's own commands are recognised; everything else is left to parse_command."""
    assert parse_local(line) == local


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/nick bad name", "a name cannot contain spaces"),
        ("/nick *x", "a name must not start with"),
        ("/nick", "usage: /nick NAME"),
        ("/join", "usage: /join ROOM"),
        ("/join #", "a room needs a name"),
        ("/msg alice", "usage: /msg NAME TEXT"),
        ("/search", "usage: /search WORDS"),
        ("/window x", "usage: /window N|next|prev|close"),
        ("/query *x", "a name must not start with"),
        ("/frobnicate", "unknown command /frobnicate"),
    ],
)
def test_parse_refuses_with_a_clear_message(line: str, message: str) -> None:
    """A wrongly typed command says what is wrong, not only 'usage'."""
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_local(line) or parse_command(line, "lobby")
