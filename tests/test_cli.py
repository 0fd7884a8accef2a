"""The command line, end to end: ``asyncchat serve`` and ``asyncchat join`` run as real
processes (``python -m asyncchat``) on 127.0.0.1 with port 0.

Every wait is bounded by ``WAIT`` (scaled by ASYNCCHAT_TEST_UNIT) and only ever waits for
something that should happen; no test asserts how fast anything is. Every process a test starts
is stopped by its pid in a ``finally`` block. Terminal tests drive the client in a pseudo-terminal
with pexpect and read what it draws through a small screen model (:class:`Screen`), enough for
the cursor movements and erasures prompt_toolkit emits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pexpect = pytest.importorskip("pexpect")

WAIT = 10 * float(os.environ.get("ASYNCCHAT_TEST_UNIT", "1"))

#: Environment of every child: UTF-8 pipes whatever the locale, and a terminal prompt_toolkit
#: drives without asking for cursor positions (a pexpect pty never answers them).
ENV = {**os.environ, "PYTHONUTF8": "1", "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
ROWS, COLS = 30, 120
CLOCK = r"\d\d:\d\d"


# --------------------------------------------------------------------------- process helpers


class Output:
    """Everything a pipe of a child process says, collected by a thread, waited on by regex."""

    def __init__(self, stream: Any) -> None:
        self._chunks: list[str] = []
        self._cond = threading.Condition()
        self.closed = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        try:
            for line in iter(stream.readline, ""):
                with self._cond:
                    self._chunks.append(line)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self._chunks)

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first match of ``pattern``; fails the test if it does not show up in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = re.search(pattern, "".join(self._chunks))
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"{pattern!r} never appeared in:\n{''.join(self._chunks)}")
                self._cond.wait(left)

    def finish(self, timeout: float = WAIT) -> str:
        """All of it, once the pipe is closed (the process exited)."""
        self._thread.join(timeout)
        return self.text


class Proc:
    """A child process with its stdout and stderr collected."""

    def __init__(self, args: list[str], stdin: Any = subprocess.DEVNULL) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "asyncchat", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=ENV,
        )
        self.out = Output(self.popen.stdout)
        self.err = Output(self.popen.stderr)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def write(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def wait(self, timeout: float = WAIT) -> int:
        """The exit status; fails the test if the process does not exit in time."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"asyncchat {' '.join(self.args)} did not exit\nstdout:\n{self.out.text}\n"
                f"stderr:\n{self.err.text}"
            ) from None
        self.out.finish()
        self.err.finish()
        return rc

    def stop(self) -> None:
        """Stop this process (by its pid) if it still runs, and reap it."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(WAIT)
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@contextlib.contextmanager
def running(args: list[str], stdin: Any = subprocess.DEVNULL) -> Iterator[Proc]:
    proc = Proc(args, stdin)
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def serve(*extra: str) -> Iterator[tuple[Proc, int]]:
    """``asyncchat serve --port 0 --no-web`` (stdin not a terminal: no console) and its port;
    a throwaway history unless ``extra`` names a ``--db``."""
    db = () if "--db" in extra else ("--db", ":memory:")
    with running(["serve", "--port", "0", "--no-web", *db, *extra]) as proc:
        m = proc.err.wait_for(r"INFO listening on 127\.0\.0\.1:(\d+)")
        yield proc, int(m.group(1))


def join_args(port: int, name: str, *extra: str) -> list[str]:
    return ["join", "--name", name, "--host", "127.0.0.1", "--port", str(port), *extra]


@contextlib.contextmanager
def piped_join(port: int, name: str, *extra: str) -> Iterator[Proc]:
    """``asyncchat join`` with a pipe for stdin kept open, once it is in the lobby."""
    with running(join_args(port, name, *extra), stdin=subprocess.PIPE) as proc:
        proc.out.wait_for(r"-> you joined #lobby")
        yield proc


def run_join(port: int, name: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """``asyncchat join`` with ``stdin`` piped in, to completion."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "asyncchat", *join_args(port, name)],
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=ENV,
            timeout=WAIT,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run kills it by its pid
        raise AssertionError(
            f"asyncchat join did not exit: {exc.stdout!r} {exc.stderr!r}"
        ) from None


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# --------------------------------------------------------------------------- a raw wire client


class Peer:
    """A blocking client that speaks the wire format by hand (to watch what the CLI does)."""

    def __init__(self, port: int, name: str, rooms: list[str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buf = b""
        hello: dict[str, Any] = {"type": "hello", "name": name, "version": 1}
        if rooms is not None:
            hello["rooms"] = rooms
        self.send(hello)
        self.welcome = self.recv()
        assert self.welcome["type"] == "welcome", self.welcome
        self.recv_until(lambda f: f["type"] == "joined" and f["name"] == name)

    def send(self, obj: dict[str, Any]) -> None:
        payload = json.dumps(obj).encode()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no frame arrived in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame; ``EOFError`` when the server closed the connection."""
        deadline = time.monotonic() + timeout
        (n,) = struct.unpack(">I", self._read(4, deadline))
        return json.loads(self._read(n, deadline))  # type: ignore[no-any-return]

    def recv_until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                frame = self.recv(max(0.0, deadline - time.monotonic()))
            except AssertionError:
                raise AssertionError(f"no such frame; got {seen}") from None
            if pred(frame):
                return frame
            seen.append(frame)

    def message(self, text: str, sender: str) -> dict[str, Any]:
        """The next room message ``text`` from ``sender``."""
        return self.recv_until(
            lambda f: f["type"] == "message" and f["from"] == sender and f["text"] == text
        )

    def until_closed(self, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Every frame until the server closes the connection."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            try:
                frames.append(self.recv(max(0.0, deadline - time.monotonic())))
            except (EOFError, ConnectionError):
                return frames

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def peer(port: int, name: str) -> Iterator[Peer]:
    p = Peer(port, name)
    try:
        yield p
    finally:
        p.close()


# --------------------------------------------------------------------------- a terminal


_CSI = re.compile(r"\x1b\[([0-?]*)([ -/]*)([@-~])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class Screen:
    """What a terminal shows, for the subset of output prompt_toolkit uses: text, CR/LF/BS,
    cursor movement (CSI A B C D G H d), erasure (CSI J K) and autowrap (?7); everything
    else (colours, modes, titles) is skipped."""

    def __init__(self, rows: int = ROWS, cols: int = COLS) -> None:
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.r = self.c = 0
        self.autowrap = True
        self._pending = ""

    def _newline(self) -> None:
        if self.r == self.rows - 1:
            self.grid.pop(0)
            self.grid.append([" "] * self.cols)
        else:
            self.r += 1

    def _csi(self, params: str, final: str) -> None:
        private = params.startswith("?")
        nums = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")]
        n = nums[0] or 1
        if private:
            if final in "hl" and 7 in nums:
                self.autowrap = final == "h"
            return
        match final:
            case "A":
                self.r = max(0, self.r - n)
            case "B":
                self.r = min(self.rows - 1, self.r + n)
            case "C":
                self.c = min(self.cols - 1, self.c + n)
            case "D":
                self.c = max(0, self.c - n)
            case "G":
                self.c = min(self.cols - 1, n - 1)
            case "d":
                self.r = min(self.rows - 1, n - 1)
            case "H" | "f":
                self.r = min(self.rows - 1, n - 1)
                self.c = min(self.cols - 1, (nums[1] if len(nums) > 1 else 1) or 1) - 1
                self.c = max(0, self.c)
            case "J":
                if nums[0] == 2:
                    self.grid = [[" "] * self.cols for _ in range(self.rows)]
                else:
                    self.grid[self.r][self.c :] = [" "] * (self.cols - self.c)
                    for row in range(self.r + 1, self.rows):
                        self.grid[row] = [" "] * self.cols
            case "K":
                if nums[0] == 0:
                    self.grid[self.r][self.c :] = [" "] * (self.cols - self.c)
                elif nums[0] == 1:
                    self.grid[self.r][: self.c + 1] = [" "] * (self.c + 1)
                else:
                    self.grid[self.r] = [" "] * self.cols

    def feed(self, data: str) -> None:
        data = self._pending + data
        self._pending = ""
        i = 0
        while i < len(data):
            ch = data[i]
            if ch == "\x1b":
                rest = data[i:]
                m = _CSI.match(rest) or _OSC.match(rest)
                if m is None:
                    if len(rest) < 64 and (rest.startswith(("\x1b[", "\x1b]")) or len(rest) < 2):
                        self._pending = rest  # an incomplete sequence: wait for the rest
                        return
                    i += 2  # a two-character escape (ESC = and the like)
                    continue
                if m.re is _CSI:
                    self._csi(m.group(1), m.group(3))
                i += m.end()
                continue
            i += 1
            if ch == "\r":
                self.c = 0
            elif ch == "\n":
                self._newline()
            elif ch == "\b":
                self.c = max(0, self.c - 1)
            elif ch == "\t":
                self.c = min(self.cols - 1, (self.c // 8 + 1) * 8)
            elif ch >= " ":
                if self.c >= self.cols:
                    if self.autowrap:
                        self.c = 0
                        self._newline()
                    else:
                        self.c = self.cols - 1
                self.grid[self.r][self.c] = ch
                self.c += 1

    @property
    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.grid]

    @property
    def cursor_line(self) -> str:
        """The line the cursor is on: where the user is typing."""
        return self.lines[self.r]

    def __str__(self) -> str:
        return "\n".join(self.lines).rstrip("\n")


def strip_ansi(text: str) -> str:
    return _OSC.sub("", _CSI.sub("", text))


class Tty:
    """A CLI process in a pseudo-terminal: what it drew (``screen``) and its whole output
    stream without escape sequences (``text``)."""

    def __init__(self, args: list[str]) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "asyncchat", *args],
            env=ENV,
            dimensions=(ROWS, COLS),
            encoding="utf-8",
            codec_errors="replace",
            timeout=WAIT,
        )
        self.screen = Screen()
        self.raw = ""
        self.eof = False

    def _pump(self, wait: float) -> None:
        try:
            data = self.child.read_nonblocking(65536, timeout=wait)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            self.eof = True
            return
        self.raw += data
        self.screen.feed(data)

    @property
    def text(self) -> str:
        return strip_ansi(self.raw)

    def wait_until(self, cond: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Read output until ``cond()`` is true; fails the test if it never becomes true."""
        deadline = time.monotonic() + timeout
        while True:
            result = cond()
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                raise AssertionError(
                    f"never saw {what}; the screen:\n{self.screen}\n"
                    f"the stream: {self.raw[-3000:]!r}"
                )
            self._pump(min(left, 0.2))

    def wait_text(self, pattern: str, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the escape-free stream at or after ``after``."""
        rx = re.compile(pattern)
        return self.wait_until(lambda: rx.search(self.text, after), repr(pattern))  # type: ignore[no-any-return]

    def wait_screen(self, pattern: str) -> re.Match[str]:
        """A line of the screen matching ``pattern``."""
        rx = re.compile(pattern)
        return self.wait_until(  # type: ignore[no-any-return]
            lambda: next(filter(None, map(rx.search, self.screen.lines)), None), repr(pattern)
        )

    def wait_prompt(self, line: str) -> None:
        """Wait until the cursor is on the line ``line`` (the prompt and what was typed)."""
        self.wait_until(lambda: self.screen.cursor_line == line, f"the cursor on the line {line!r}")

    def send(self, text: str) -> None:
        self.child.send(text)

    def wait_exit(self) -> int:
        self.wait_until(lambda: self.eof, "the end of output")
        self.child.close()
        status = self.child.exitstatus
        assert status is not None, f"killed by signal {self.child.signalstatus}"
        return status

    def stop(self) -> None:
        """Stop this process (by its pid) if it still runs, and reap it."""
        if self.child.isalive():
            self.child.terminate(force=True)
        with contextlib.suppress(Exception):
            self.child.close(force=True)


@contextlib.contextmanager
def tty(args: list[str]) -> Iterator[Tty]:
    t = Tty(args)
    try:
        yield t
    finally:
        t.stop()


# --------------------------------------------------------------------------- piped clients


def test_two_piped_clients_exchange_messages() -> None:
    """A piped join prints what others say, and exits 0 at EOF once its lines were accepted."""
    with (
        serve("--motd", "be nice") as (server, port),
        peer(port, "carol") as carol,
        piped_join(port, "bob") as bob,
    ):
        bob.out.wait_for(r"-- connected to asyncchat/\S+ as bob")
        bob.out.wait_for(r"-- be nice")
        alice = run_join(port, "alice", "hi bob\nsecond line\n")
        assert alice.returncode == 0, alice
        no_traceback(alice.stderr)
        carol.message("hi bob", "alice")
        carol.message("second line", "alice")
        bob.out.wait_for(rf"{CLOCK} #lobby <alice> hi bob\n")
        bob.out.wait_for(rf"{CLOCK} #lobby <alice> second line\n")
        bob.out.wait_for(r"<- alice left #lobby \(quit\)")

        bob.write("hi alice\n")
        carol.message("hi alice", "bob")
        bob.close_stdin()
        assert bob.wait() == 0, bob.out.text + bob.err.text
        carol.recv_until(lambda f: f["type"] == "left" and f["name"] == "bob")
        no_traceback(bob.err.text)
        assert server.popen.poll() is None


def test_piped_refused_line_exits_1() -> None:
    """A piped line the server refuses is shown, later lines still go, and the exit status is 1."""
    with serve() as (_, port), peer(port, "carol") as carol:
        result = run_join(port, "alice", "/msg nobody x\nstill here\n")
        carol.message("still here", "alice")
        assert "!! nobody is called 'nobody' [no_such_user]" in result.stdout, result
        assert result.returncode == 1, result
        no_traceback(result.stderr)


def test_piped_usage_error_exits_1() -> None:
    """A piped command typed wrongly prints its usage line and makes the exit status 1."""
    with serve() as (_, port):
        result = run_join(port, "alice", "/msg\n")
        assert "!! usage: /msg NAME TEXT" in result.stdout, result
        assert result.returncode == 1, result
        no_traceback(result.stderr)


def test_piped_quit_exits_0() -> None:
    """A piped /quit leaves the chat (peers see it quit) and exits 0 without a traceback."""
    with serve() as (_, port), peer(port, "carol") as carol:
        result = run_join(port, "alice", "hi\n/quit gone fishing\n")
        carol.message("hi", "alice")
        left = carol.recv_until(lambda f: f["type"] == "left" and f["name"] == "alice")
        assert left["reason"] == "quit"
        no_traceback(result.stderr)
        assert "disconnected" not in result.stdout, result
        assert result.returncode == 0, result


def test_piped_client_without_reconnect_reports_server_killed() -> None:
    """With --no-reconnect, a piped client whose server dies says so and exits non-zero."""
    with serve() as (server, port), piped_join(port, "bob", "--no-reconnect") as bob:
        server.popen.kill()
        server.wait()
        bob.out.wait_for(r"!! disconnected: ")
        assert bob.wait() != 0
        assert "reconnecting" not in bob.out.text
        no_traceback(bob.err.text)


def test_piped_client_gives_up_when_the_server_stays_away() -> None:
    """A piped client says the connection was lost, once, and exits 1 after --give-up."""
    with serve() as (server, port), piped_join(port, "bob", "--give-up", "0.5") as bob:
        server.popen.kill()
        server.wait()
        bob.out.wait_for(r"-- connection lost \(.+\); reconnecting…\n")
        bob.out.wait_for(r"!! disconnected: no connection for 0\.5 s, gave up: ")
        assert bob.wait() == 1
        assert bob.out.text.count("-- connection lost") == 1, bob.out.text
        no_traceback(bob.err.text)


def test_piped_client_survives_a_server_restart(tmp_path: Path) -> None:
    """A piped client survives a server restart, says lost and back, and sends what was typed."""
    db = str(tmp_path / "chat.db")
    with serve("--db", db) as (server, port), piped_join(port, "bob") as bob:
        with peer(port, "alice") as alice:
            alice.send({"type": "say", "room": "lobby", "text": "before", "id": 1})
            bob.out.wait_for(rf"{CLOCK} #lobby <alice> before\n")
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        bob.out.wait_for(r"-- connection lost \(server said bye: shutdown\); reconnecting…\n")
        bob.write("typed while away\n")
        with serve("--port", str(port), "--db", db):
            bob.out.wait_for(r"-- back, nothing missed\n")
            with peer(port, "carol") as carol:
                carol.message("typed while away", "bob")
                carol.send({"type": "say", "room": "lobby", "text": "after", "id": 1})
                bob.out.wait_for(rf"{CLOCK} #lobby <carol> after\n")
            bob.close_stdin()
            assert bob.wait() == 0, bob.out.text + bob.err.text
        out = bob.out.text
        assert "!! the server closed the connection" not in out and "disconnected" not in out
        assert out.count("-- connection lost") == 1 and out.count("-- back") == 1, out
        no_traceback(bob.err.text)


def test_control_characters_from_peers_are_escaped() -> None:
    """Control and bidi characters a peer sends are printed escaped, never raw."""
    with serve() as (_, port), piped_join(port, "bob") as bob:
        alice = run_join(port, "alice", "\x1b[31mred\n/msg bob \x1b]0;title\x07\u202eevil\n")
        assert alice.returncode == 0, alice
        red = re.escape(r"\x1b[31mred")
        bob.out.wait_for(rf"{CLOCK} #lobby <alice> {red}\n")
        bob.out.wait_for(re.escape(r"[dm alice -> bob] \x1b]0;title\x07\u202eevil"))
        bob.close_stdin()
        assert bob.wait() == 0
        for ch in ("\x1b", "\x07", "\u202e"):
            assert ch not in bob.out.text


# --------------------------------------------------------------------------- the terminal client


# The full-screen client in a terminal is tested in test_tui.py.


# --------------------------------------------------------------------------- the server


def test_serve_on_a_taken_port_fails_cleanly() -> None:
    """A second server on a port in use says so in one line on stderr and exits non-zero."""
    with serve() as (first, port):
        with running(["serve", "--port", str(port), "--no-web"]) as second:
            assert second.wait() != 0
            err = second.err.text
        no_traceback(err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "already in use" in lines[0] and str(port) in lines[0], err
        assert first.popen.poll() is None


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-frame", "abc"),
        ("--rate", "-1"),
        ("--burst", "0"),
        ("--ping-interval", "nan"),
        ("--max-frame", "10"),
        ("--port", "99999"),
    ],
)
def test_serve_rejects_bad_settings(flag: str, value: str) -> None:
    """A bad setting makes serve exit 2 with a message naming the setting, before listening."""
    with running(["serve", "--port", "0", flag, value]) as proc:
        assert proc.wait() == 2
        err = proc.err.text
    no_traceback(err)
    assert "listening" not in err
    last = err.strip().splitlines()[-1]
    assert "error" in last and (flag in last or flag[2:].replace("-", "_") in last), err
    assert value in last, err


@pytest.mark.parametrize(
    ("sig", "loop"),
    [
        (signal.SIGTERM, "auto"),
        (signal.SIGINT, "asyncio"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_shuts_down_gracefully(sig: signal.Signals, loop: str) -> None:
    """SIGTERM or SIGINT says bye to every client and exits 0; a piped client that does not
    reconnect then says the server closed the connection and exits non-zero."""
    with (
        serve("--loop", loop) as (server, port),
        peer(port, "carol") as carol,
        piped_join(port, "bob", "--no-reconnect") as bob,
    ):
        carol.recv_until(lambda f: f["type"] == "joined" and f["name"] == "bob")
        server.popen.send_signal(sig)
        frames = carol.until_closed()
        byes = [f for f in frames if f["type"] == "bye"]
        assert byes and byes[-1]["reason"] == "shutdown", frames
        assert frames[-1]["type"] == "bye", frames
        assert server.wait() == 0, server.err.text
        no_traceback(server.err.text)

        bob.out.wait_for(r"!! the server closed the connection: shutdown")
        bob.out.wait_for(r"!! disconnected: ")
        assert bob.wait() != 0
        no_traceback(bob.err.text)


def test_operator_console() -> None:
    """In a terminal, serve's console announces typed lines as *server, lists who is in a room,
    kicks by name and shuts down with /quit (exit 0)."""
    with tty(["serve", "--port", "0", "--no-web"]) as op:
        port = int(op.wait_text(r"INFO listening on 127\.0\.0\.1:(\d+)").group(1))
        op.wait_prompt("server>")
        with peer(port, "carol") as carol:
            op.send("hello everyone\r")
            msg = carol.message("hello everyone", "*server")
            assert msg["room"] == "lobby"

            op.send("/who\r")
            op.wait_screen(r"^#lobby: carol$")
            op.send("/rooms\r")
            op.wait_screen(r"^#lobby \(1\): carol$")
            op.send("/help\r")
            op.wait_screen(r"^  /kick NAME \[REASON\] +disconnect NAME$")
            op.send("/kick nobody\r")
            op.wait_screen(r"^no_such_user: nobody is called 'nobody'$")

            op.send("/kick carol\r")
            frames = carol.until_closed()
            assert frames and frames[-1]["type"] == "bye", frames
            assert frames[-1]["reason"] == "kicked", frames
            op.wait_prompt("server>")
            mark = len(op.text)
            op.send("/who\r")
            op.wait_text(r"#lobby: \(nobody\)", after=mark)

        op.send("/quit\r")
        status = op.wait_exit()
        no_traceback(op.text)
        assert "server closed" in op.text
        assert status == 0, op.text


def test_operator_console_survives_log_lines_while_typing() -> None:
    """In serve's console, log lines print above the prompt and a half-typed line stays."""
    with tty(["serve", "--port", "0", "--no-web"]) as op:
        port = int(op.wait_text(r"INFO listening on 127\.0\.0\.1:(\d+)").group(1))
        op.wait_prompt("server>")
        op.send("half an announce")
        op.wait_prompt("server> half an announce")
        with peer(port, "carol") as carol:
            op.wait_until(
                lambda: (
                    any(re.search(r"INFO carol connected from", line) for line in op.screen.lines)
                    and op.screen.cursor_line == "server> half an announce"
                ),
                "the log line above the still half-typed line",
            )
            op.send("ment\r")
            carol.message("half an announcement", "*server")
