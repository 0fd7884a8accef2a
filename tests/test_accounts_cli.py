"""``asyncchat accounts`` and ``join``'s credentials, end to end as real processes: accounts
made from the shell count at once on a running server; a password from ASYNCCHAT_PASSWORD or a
token file logs in; a guest is refused a registered name in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from asyncchat.auth import LOGIN_DELAY

from .test_cli import ENV, WAIT, join_args, peer, running, serve, tty


def accounts(db: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``asyncchat accounts --db DB ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "asyncchat", "accounts", "--db", str(db), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=WAIT,
    )


def piped_join(
    port: int, name: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``join`` with one line piped in; its exit status and stderr."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncchat",
            "join",
            "--name",
            name,
            "--port",
            str(port),
            "--no-reconnect",
            *extra,
        ],
        input="hello\n",
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=WAIT,
    )
    return proc.returncode, proc.stderr


def test_accounts_command_and_logins(tmp_path: Path) -> None:
    """add (password from stdin), list, token, a running server honouring them at once,
    revoke, and the one-line errors (bad name, short password, unknown account)."""
    db = tmp_path / "chat.db"
    with serve("--db", str(db)) as (_, port):
        made = accounts(db, "add", "Alice", "--operator", "--password-stdin", stdin="sekret123\n")
        assert made.returncode == 0, made.stderr
        assert piped_join(port, "alice")[1].count("name_reserved") == 1
        code, err = piped_join(port, "alice", env={"ASYNCCHAT_PASSWORD": "sekret123"})
        assert code == 0, err
        code, err = piped_join(port, "alice", env={"ASYNCCHAT_PASSWORD": "wrong one"})
        assert code == 1 and "auth_failed" in err and "Traceback" not in err
        # The failure throttles the account: the next login waits LOGIN_DELAY (the CLI's own
        # start-up is usually longer, but not always on a fast machine).
        time.sleep(LOGIN_DELAY * 1.5)
        token = accounts(db, "token", "alice", "--label", "ci")
        assert token.returncode == 0 and "shown only this once" in token.stderr
        (tmp_path / "token").write_text(token.stdout)
        code, err = piped_join(port, "alice", "--token-file", str(tmp_path / "token"))
        assert code == 0, err
        listed = accounts(db, "list")
        assert listed.stdout == "Alice (operator, 1 token(s))\n"
        token_id = token.stdout.split(".")[0]
        assert accounts(db, "token", "alice", "--revoke", token_id).returncode == 0
        code, err = piped_join(port, "alice", "--token-file", str(tmp_path / "token"))
        assert code == 1 and "auth_failed" in err
    bad = accounts(db, "add", "two words", "--no-password")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    short = accounts(db, "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "8 characters" in short.stderr
    gone = accounts(db, "remove", "nobody")
    assert gone.returncode == 1 and "no account" in gone.stderr
    assert os.path.exists(db)


def test_no_history_keeps_accounts_in_accounts_db(tmp_path: Path) -> None:
    """With --no-history, --accounts-db names where accounts live; a registered name there is
    refused to guests."""
    db = tmp_path / "accounts.db"
    assert accounts(db, "add", "carol", "--no-password").returncode == 0
    with serve("--no-history", "--accounts-db", str(db)) as (_, port):
        code, err = piped_join(port, "carol")
        assert code == 1 and "name_reserved" in err
    with running(["serve", "--port", "0", "--db", ":memory:", "--guests", "nope"]) as bad:
        assert bad.wait() == 2 and "guests" in bad.err.text


def test_terminal_asks_for_the_password_and_operator_commands_work(tmp_path: Path) -> None:
    """In a terminal, join asks for a registered name's password without echoing it, logs in,
    and the operator's /ban and /bans in the terminal client act like the requests."""
    db = tmp_path / "chat.db"
    assert (
        accounts(
            db, "add", "boss", "--operator", "--password-stdin", stdin="boss-pass1\n"
        ).returncode
        == 0
    )
    with (
        serve("--db", str(db)) as (_, port),
        peer(port, "carol") as carol,
        tty(join_args(port, "boss")) as boss,
    ):
        boss.wait_text(r"password for boss: ")
        boss.send("boss-pass1\r")
        boss.wait_screen(r"-> you joined #lobby")
        assert "boss-pass1" not in boss.text
        boss.wait_screen(r"^\[connected\] \[boss\]")  # the full-screen client's status bar
        boss.send("/ban name carol 1h too loud\r")
        frames = carol.until_closed()
        assert frames[-1]["type"] == "bye" and frames[-1]["reason"] == "banned", frames
        boss.wait_screen(r"-- ban: done")
        boss.send("/bans\r")
        boss.wait_screen(r"-- #\d+ name carol by boss, until .*: too loud")
        boss.send("/kick\r")
        boss.wait_screen(r"!! usage: /kick NAME \[REASON\]")
