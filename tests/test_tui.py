"""The full-screen terminal client, driven in a pseudo-terminal as a person would: typing
through an outage, windows and their counts, completion, scrollback, emoji, IRC habits."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .test_cli import (
    CLOCK,
    ENV,
    ROWS,
    WAIT,
    Peer,
    Tty,
    join_args,
    no_traceback,
    pexpect,
    piped_join,
    serve,
    tty,
)

STATUS = ROWS - 2  # the status bar's row; the input line is the last one


@contextlib.contextmanager
def fullscreen(port: int, name: str, *extra: str) -> Iterator[Tty]:
    """``asyncchat join`` in a terminal, connected and showing its first window."""
    with tty(join_args(port, name, *extra)) as t:
        t.wait_until(lambda: "[connected]" in t.screen.lines[STATUS], "the status bar: connected")
        t.wait_screen(r"-> you joined #")
        yield t


@contextlib.contextmanager
def peer(port: int, name: str, rooms: list[str] | None = None) -> Iterator[Peer]:
    p = Peer(port, name, rooms)
    try:
        yield p
    finally:
        p.close()


def status(t: Tty) -> str:
    return t.screen.lines[STATUS]


def wait_status(t: Tty, pattern: str) -> None:
    rx = re.compile(pattern)
    t.wait_until(lambda: rx.search(status(t)), f"the status bar matching {pattern!r}")


def wait_input(t: Tty, text: str) -> None:
    t.wait_until(lambda: t.screen.lines[ROWS - 1] == text, f"the input line {text!r}")


# ---------------------------------------------------------------- never a blocked line (D1)


def test_typing_during_an_outage_stays_in_the_input_line_and_is_sent_after(
    tmp_path: Path,
) -> None:
    """While the server is down, a typed line shows pending and queued, the keys typed next
    stay in the input line, the status bar says reconnecting; after the restart the line is
    delivered and the half-typed one is still there."""
    db = str(tmp_path / "chat.db")
    with serve("--db", db) as (server, port), fullscreen(port, "bob") as bob:
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        wait_status(bob, r"^\[reconnecting, attempt \d+")
        bob.wait_screen(r"!! connection lost \(server said bye: shutdown\); reconnecting…")
        bob.send("queued line\r")
        bob.wait_screen(rf"^{CLOCK} <bob> queued line …$")
        wait_status(bob, r"\[1 queued\]")
        bob.send("half typed, fast")
        wait_input(bob, "[#lobby] half typed, fast")
        with serve("--port", str(port), "--db", db), peer(port, "alice") as alice:
            assert alice.message("queued line", "bob")["room"] == "lobby"
            bob.wait_screen(rf"^{CLOCK} <bob> queued line$")
            wait_status(bob, r"^\[connected\] \[bob\] \[1:#lobby\]")
            assert "queued" not in status(bob)
            bob.wait_screen(r"-- back, nothing missed")
            wait_input(bob, "[#lobby] half typed, fast")
            bob.send(" and sent\r")
            alice.message("half typed, fast and sent", "bob")
        no_traceback(bob.text)


def test_a_line_that_cannot_be_delivered_says_so() -> None:
    """A line typed while the server is gone for good is marked not delivered, with why."""
    with serve() as (server, port), fullscreen(port, "bob", "--give-up", "0.5") as bob:
        server.popen.kill()
        server.wait()
        bob.send("lost line\r")
        bob.wait_screen(r"✗ lost line \(not delivered: no connection for 0\.5 s, gave up")
        wait_status(bob, r"^\[offline\]")
        bob.send("/quit\r")
        assert bob.wait_exit() == 1
        no_traceback(bob.text)


def test_no_key_reaches_the_shell_after_an_outage() -> None:
    """Keys typed while the server is gone, even after reconnecting gave up, stay in the
    client (the input line): the shell that started it reads none of them, also those typed
    ahead of /quit."""
    with serve() as (server, port):
        args = " ".join(join_args(port, "bob", "--give-up", "0.5"))
        script = (
            f"{sys.executable} -m asyncchat {args}; echo STATUS=$?; "
            "read -t 1 got; echo SHELL-GOT=[$got]"
        )
        child = pexpect.spawn(
            "bash", ["--norc", "-c", script], env=ENV, dimensions=(ROWS, 100), timeout=WAIT
        )
        try:
            child.expect(r"you joined #lobby")
            server.popen.kill()
            server.wait()
            child.expect(r"gave up")
            child.send("echo leaked")
            child.expect(r"echo leaked")  # echoed in the input line, and still running
            time.sleep(0.5)
            assert child.isalive()
            # Typed ahead in one go: the client reads up to /quit and stops reading.
            child.send("\x15/quit\recho leaked too\r")
            child.expect(r"STATUS=1")
            child.expect(r"SHELL-GOT=\[(.*)\]")
            assert child.match.group(1).strip() == b"", child.before
        finally:
            child.close(force=True)


# ---------------------------------------------------------------- windows


def test_windows_unread_and_mention_counts_and_switching() -> None:
    """Each room has a window; activity elsewhere shows in the status bar with mentions
    starred; Alt-2, Alt-A, Ctrl-N and /window switch."""
    with (
        serve() as (_, port),
        fullscreen(port, "bob", "--room", "lobby", "--room", "#dev") as bob,
        peer(port, "alice", ["dev", "lobby"]) as alice,
    ):
        wait_status(bob, r"\[1:#lobby\]")
        alice.send({"type": "say", "room": "dev", "text": "hello all", "id": 1})
        alice.send({"type": "say", "room": "dev", "text": "bob: are you there?", "id": 2})
        wait_status(bob, r"\[Act: 2\(2,1\*\)\]")
        bob.send("\x1b2")  # Alt-2
        wait_status(bob, r"\[2:#dev\]$")
        bob.wait_screen(rf"^{CLOCK} <alice> bob: are you there\?$")
        alice.send({"type": "say", "room": "lobby", "text": "over here", "id": 3})
        wait_status(bob, r"\[Act: 1\(1\)\]")
        bob.send("\x1ba")  # Alt-A
        wait_status(bob, r"\[1:#lobby\]$")
        bob.wait_screen(rf"^{CLOCK} <alice> over here$")
        bob.send("\x0e")  # Ctrl-N
        wait_status(bob, r"\[2:#dev\]")
        bob.send("/window 1\r")
        wait_status(bob, r"\[1:#lobby\]")
        bob.send("/join #dev\r")  # joined already: it switches
        wait_status(bob, r"\[2:#dev\]")
        bob.wait_screen(r"-- you are already in #dev")


def test_tab_completes_nicks_commands_and_rooms() -> None:
    """Tab completes a nick (``alice: `` at the start of a line), a command and a room."""
    with serve() as (_, port), peer(port, "alice"), fullscreen(port, "bob") as bob:
        bob.send("al\t")
        wait_input(bob, "[#lobby] alice:")
        bob.send("\x15/jo\t")  # Ctrl-U clears the line
        wait_input(bob, "[#lobby] /join")
        bob.send("#lo\t")
        wait_input(bob, "[#lobby] /join #lobby")


def test_scrollback_pages_and_searches() -> None:
    """PgUp shows older lines, PgDn comes back; Ctrl-R scrolls to a line with the words."""
    with (
        serve("--rate", "1000", "--burst", "1000") as (_, port),
        fullscreen(port, "bob") as bob,
        peer(port, "alice") as alice,
    ):
        for i in range(60):
            alice.send({"type": "say", "room": "lobby", "text": f"line {i}", "id": i})
        bob.wait_screen(rf"^{CLOCK} <alice> line 59$")
        bob.send("\x1b[5~")  # PgUp
        bob.wait_until(
            lambda: not any("line 59" in x for x in bob.screen.lines), "line 59 scrolled off"
        )
        bob.send("\x1b[6~" * 3)  # PgDn
        bob.wait_screen(rf"^{CLOCK} <alice> line 59$")
        bob.send("line 7\x12")  # Ctrl-R
        bob.wait_until(
            lambda: bob.screen.lines[STATUS - 1].endswith("<alice> line 7"), "line 7 at the bottom"
        )


def test_status_bar_shows_topic_and_away() -> None:
    """The status bar shows the room's topic and that you are away."""
    with serve() as (_, port), fullscreen(port, "bob") as bob, peer(port, "alice") as alice:
        bob.send("/topic release on Friday\r")
        wait_status(bob, r"\[1:#lobby\] release on Friday$")
        frame = alice.recv_until(lambda f: f["type"] == "topic")
        assert frame["text"] == "release on Friday" and frame["by"] == "bob"
        bob.send("/away lunch\r")
        wait_status(bob, r"\[bob \(away\)\]")
        alice.send({"type": "dm", "to": "bob", "text": "hi", "id": 1})
        bob.send("/who\r")
        bob.wait_screen(r"-- #lobby: alice, bob \(away: lunch\)")


# ---------------------------------------------------------------- readable


def test_emoji_sequences_and_persian_text_are_shown_intact() -> None:
    """Zero-width joiners reach the screen as they are (no \\u200d), escape sequences never."""
    family = "👨\u200d👩\u200d👧"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # Persian with a ZWNJ
    with serve() as (_, port), fullscreen(port, "bob") as bob, peer(port, "alice") as alice:
        alice.send({"type": "say", "room": "lobby", "text": f"{family} {persian} \x1b[2J", "id": 1})
        bob.wait_text(re.escape(r"\x1b[2J"))
        assert family in bob.raw and persian in bob.raw
        assert "\\u200d" not in bob.text and "\\u200c" not in bob.text


# ---------------------------------------------------------------- IRC habits and defects


def test_hash_rooms_leave_order_and_the_last_room(tmp_path: Path) -> None:
    """#room works in --room, /join and /who; /leave says so and closes the window; after
    the last room a line says there is no room instead of not_in_room (D3, D4)."""
    with serve() as (_, port), fullscreen(port, "bob", "--room", "#lobby") as bob:
        bob.send("/join #random\r")
        wait_status(bob, r"\[2:#random\]")
        bob.send("/who #lobby\r")
        bob.wait_screen(r"-- #lobby: bob$")
        bob.send("/part\r")
        bob.wait_screen(r"<- you left #random")
        wait_status(bob, r"\[1:#lobby\]")
        bob.send("/leave\r")
        bob.wait_screen(r"<- you left #lobby")
        bob.send("anyone?\r")
        bob.wait_screen(r"!! you are in no room: /join ROOM first")
        assert "not_in_room" not in bob.text


def test_nick_msg_and_dm_to_self(tmp_path: Path) -> None:
    """/nick to one's own name changes nothing; /nick bad name says why; /msg ALICE opens
    alice's window with her spelling; a dm to oneself shows once (D11)."""
    with serve() as (_, port), peer(port, "alice") as alice, fullscreen(port, "bob") as bob:
        bob.send("/nick bob\r")
        bob.wait_screen(r"-- you are already called bob")
        bob.send("/nick bad name\r")
        bob.wait_screen(r"!! a name cannot contain spaces; usage: /nick NAME")
        bob.send("/msg ALICE psst\r")
        dm = alice.recv_until(lambda f: f["type"] == "dm")
        assert (dm["from"], dm["to"], dm["text"]) == ("bob", "alice", "psst")
        wait_status(bob, r"\[Act:|\[1:#lobby\]")
        bob.send("\x1b2")
        wait_status(bob, r"\[2:alice\]")
        bob.send("/msg bob note to self\r")
        bob.send("\x1b3")
        wait_status(bob, r"\[3:bob\]")
        bob.wait_screen(rf"^{CLOCK} <bob> note to self$")
        time.sleep(0.3)
        assert sum("note to self" in x for x in bob.screen.lines) == 1, bob.screen


def test_quit_with_a_reason_that_the_room_sees() -> None:
    """/quit REASON: the others see the reason; the client exits 0 (D6)."""
    with serve() as (_, port), peer(port, "carol") as carol, fullscreen(port, "bob") as bob:
        bob.send("/quit gone fishing\r")
        left = carol.recv_until(lambda f: f["type"] == "left" and f["name"] == "bob")
        assert (left["reason"], left.get("message")) == ("quit", "gone fishing")
        assert bob.wait_exit() == 0
        no_traceback(bob.text)


def test_ctrl_d_quits() -> None:
    """Ctrl-D on an empty line leaves the chat and exits 0."""
    with serve() as (_, port), peer(port, "carol") as carol, fullscreen(port, "bob") as bob:
        bob.send("\x04")
        left = carol.recv_until(lambda f: f["type"] == "left" and f["name"] == "bob")
        assert left["reason"] == "quit"
        assert bob.wait_exit() == 0


def test_a_taken_name_falls_back_to_an_underscore() -> None:
    """In a terminal, a name in use gives name_ instead of a refusal."""
    # The holder is a real client: it answers the server's pings, so its name is not
    # reclaimed from it as from a dead connection.
    with serve() as (_, port), piped_join(port, "bob"), fullscreen(port, "bob") as bob:
        wait_status(bob, r"\[bob_\]")


def test_help_lists_commands_and_keys() -> None:
    """/help lists the commands and the keys."""
    with serve() as (_, port), fullscreen(port, "bob") as bob:
        bob.send("/help\r")
        bob.wait_screen(r"/search WORDS")
        bob.wait_screen(r"Alt-1\.\.9 window N")


def test_a_kick_is_one_line_and_the_server_logs_why(tmp_path: Path) -> None:
    """Kicked by the operator, the client says so in one line and stays until /quit (exit 1);
    the server's log says it closed the connection, not 'connection lost' (D11)."""
    db = str(tmp_path / "k.db")
    with tty(["serve", "--port", "0", "--no-web", "--db", db]) as op:
        port = int(op.wait_text(r"INFO listening on 127\.0\.0\.1:(\d+)").group(1))
        op.wait_prompt("server>")
        with fullscreen(port, "bob") as bob:
            op.send("/kick bob\r")
            bob.wait_screen(r"!! you were kicked: .*; /quit to leave")
            wait_status(bob, r"^\[offline\]")
            op.wait_text(r"bob disconnected \(closed by the server\)")
            time.sleep(0.3)
            kicked = [x for x in bob.screen.lines if "kick" in x or "disconnected" in x]
            assert len(kicked) == 1, bob.screen
            bob.send("/quit\r")
            assert bob.wait_exit() == 1


def test_no_color_draws_without_colours() -> None:
    """--no-color: bold and reverse only, no colour escape at all."""
    with (
        serve() as (_, port),
        fullscreen(port, "bob", "--no-color") as bob,
        peer(port, "alice") as a,
    ):
        a.send({"type": "say", "room": "lobby", "text": "plain please", "id": 1})
        bob.wait_screen(rf"^{CLOCK} <alice> plain please$")
        assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|4[0-9]|9[0-7]);", bob.raw), bob.raw[-500:]


def test_typed_lines_are_remembered_across_runs() -> None:
    """Up brings back a line typed in an earlier run (kept under XDG_STATE_HOME)."""
    with serve() as (_, port):
        with fullscreen(port, "bob") as bob:
            bob.send("remember this line\r")
            bob.wait_screen(rf"^{CLOCK} <bob> remember this line$")
            bob.send("/quit\r")
            assert bob.wait_exit() == 0
        with fullscreen(port, "bob") as bob:
            bob.send("\x1b[A")  # Up: the last line typed, /quit
            wait_input(bob, "[#lobby] /quit")
            bob.send("\x1b[A")
            wait_input(bob, "[#lobby] remember this line")
