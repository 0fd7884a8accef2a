"""The command line as an IRC user types it, and the defects of issue 9 (D2 to D11) outside the
full-screen client: the real CLI in subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .test_cli import (
    ENV,
    WAIT,
    no_traceback,
    peer,
    piped_join,
    run_join,
    running,
    serve,
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncchat", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        timeout=WAIT,
    )


def _history_db(tmp_path: Path, texts: list[str]) -> str:
    """A history file whose #lobby holds ``texts`` from alice (through a real server)."""
    db = str(tmp_path / "h.db")
    with serve("--db", db, "--rate", "1e6", "--burst", "1000000") as (_, port):
        result = run_join(port, "alice", "".join(t + "\n" for t in texts))
        assert result.returncode == 0, result
    return db


def test_history_piped_into_head_exits_0_without_a_traceback(tmp_path: Path) -> None:
    """`history | head -1` prints one line and exits 0: a closed pipe is no error (D5)."""
    db = _history_db(tmp_path, [f"line {i} " + "x" * 60 for i in range(1500)])
    cmd = f"{sys.executable} -m asyncchat history --db {db} --room lobby | head -1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=WAIT,
    )
    assert result.stdout.count("\n") == 1 and "<alice> line 0" in result.stdout, result
    assert result.stderr == "", result.stderr
    assert result.returncode == 0, result


def test_rooms_may_be_written_with_a_hash(tmp_path: Path) -> None:
    """`--room '#dev'` for join and history, `/join #x` and `/who #lobby` piped (D3)."""
    db = _history_db(tmp_path, ["emoji 👨\u200d👩\u200d👧 intact"])
    exported = _cli("history", "--db", db, "--room", "#lobby")
    assert exported.returncode == 0, exported
    assert "👨\u200d👩\u200d👧" in exported.stdout and "\\u200d" not in exported.stdout  # D2
    with serve() as (_, port), peer(port, "carol") as carol:
        result = run_join(port, "alice", "/join #random\nhi\n/who #lobby\n")
        assert result.returncode == 0, result
        assert carol.recv_until(lambda f: f["type"] == "joined" and f["name"] == "alice")
        assert "-- #lobby: alice, carol" in result.stdout, result.stdout
        with piped_join(port, "bob", "--room", "#lobby") as bob:
            bob.close_stdin()
            assert bob.wait() == 0


def test_piped_leave_order_and_the_last_room() -> None:
    """/leave says you left before where you talk now; leaving the last room says there is
    none, and a line then is refused by the client, not with not_in_room (D4)."""
    with serve() as (_, port):
        result = run_join(port, "alice", "/join random\n/leave\n/leave\nhello?\n")
        out = result.stdout
        assert out.index("<- you left #random") < out.index("-- you are now talking in #lobby")
        assert "-- you are in no room now: /join ROOM" in out
        assert "!! you are in no room: /join ROOM first" in out
        assert "not_in_room" not in out
        assert result.returncode == 1, result


def test_piped_nick_join_msg_and_self_dm() -> None:
    """/nick to one's own name and /join of a room one is in change nothing; /msg ALICE shows
    alice; a dm to oneself prints once; /nick bad name says why (D11)."""
    with serve() as (_, port), peer(port, "alice") as alice:
        result = run_join(
            port, "bob", "/nick bob\n/join lobby\n/msg ALICE hi\n/msg bob me\n/nick bad name\n"
        )
        out = result.stdout
        assert "-- you are already called bob" in out and "is now known as" not in out
        assert "-- you are already in #lobby" in out
        assert "[dm you -> alice] hi" in out
        assert out.count("] me") == 1, out
        assert "!! a name cannot contain spaces; usage: /nick NAME" in out
        alice.send({"type": "ping", "data": "sync"})
        frames = [alice.recv()]
        while frames[-1]["type"] != "pong":
            frames.append(alice.recv())
        assert not any(f["type"] == "renamed" for f in frames), frames


def test_piped_quit_reason_reaches_the_room() -> None:
    """/quit REASON is seen by the others (D6)."""
    with serve() as (_, port), peer(port, "carol") as carol:
        run_join(port, "alice", "/quit gone fishing\n")
        left = carol.recv_until(lambda f: f["type"] == "left" and f["name"] == "alice")
        assert left.get("message") == "gone fishing"


def test_piped_client_prints_no_backlog_unless_asked(tmp_path: Path) -> None:
    """Piped, the room's replayed backlog is not printed; --show-history prints it."""
    db = str(tmp_path / "h.db")
    with serve("--db", db) as (_, port):
        assert run_join(port, "alice", "old news\n").returncode == 0
        quiet = run_join(port, "bob", "")
        assert "old news" not in quiet.stdout, quiet.stdout
        with running(
            [*("join", "--name", "carol", "--port", str(port)), "--show-history"],
            stdin=subprocess.DEVNULL,
        ) as loud:
            assert loud.wait() == 0
            assert "<alice> old news" in loud.out.text


def test_a_refused_hello_is_logged_as_refused() -> None:
    """The server's log names why a hello was refused, not 'connection lost' (D7)."""
    # The holder is a real client, answering pings: its name is not reclaimed meanwhile.
    with serve("--log-level", "info") as (server, port), piped_join(port, "bob"):
        result = run_join(port, "bob", "")
        assert result.returncode == 1 and "name_taken" in result.stderr, result
        server.err.wait_for(r"closed before hello \(.*; its hello was refused: name_taken")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["serve", "--port", "abc"], "asyncchat serve: error: argument --port"),
        (["join", "--give-up", "-1"], "asyncchat join: error: argument --give-up"),
        (["history", "--room", "#"], "asyncchat history: error: argument --room: no room name"),
    ],
)
def test_a_bad_option_is_one_line(args: list[str], error: str) -> None:
    """A bad option value prints one line, not the usage block, and exits 2 (D9)."""
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), result.stderr
    assert "usage:" not in result.stderr


def test_db_with_no_history_is_refused_and_a_new_directory_is_said(tmp_path: Path) -> None:
    """--db with --no-history says that the file keeps no history; a --db in a missing
    directory is created and said; :memory: says it is memory only (D8, D10)."""
    with serve("--db", str(tmp_path / "x.db"), "--no-history") as (server, _):
        server.err.wait_for(r"WARNING history is off \(--no-history\): .*x\.db keeps only")
    db = tmp_path / "new" / "dir" / "h.db"
    with serve("--db", str(db)) as (server, _):
        server.err.wait_for(rf"creating the directory {tmp_path / 'new' / 'dir'} for ")
    with serve("--db", ":memory:") as (server, _):
        server.err.wait_for(r"history in memory only")
        assert "durability" not in server.err.text
        no_traceback(server.err.text)


def test_name_defaults_to_the_login_name() -> None:
    """Without --name, join uses the login name."""
    with serve() as (_, port):
        result = subprocess.run(
            [sys.executable, "-m", "asyncchat", "join", "--port", str(port)],
            input="",
            capture_output=True,
            text=True,
            env={**ENV, "LOGNAME": "zed", "USER": "zed"},
            timeout=WAIT,
        )
        assert "-- connected to asyncchat/" in result.stdout and " as zed " in result.stdout, result
        assert result.returncode == 0, result
