"""Interoperability: a minimal client written from docs/protocol.md alone, against a real server.

The client below uses only the standard library (``socket``, ``json``, ``struct``); nothing is
imported from asyncchat. The server runs as a subprocess (``python -m asyncchat serve --port 0``)
and is stopped with SIGTERM, after which it must exit with status 0.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

#: Seconds any single socket operation or wait may take before the test fails.
TIMEOUT = 5.0
#: Seconds to wait when checking that nothing (more) arrives.
QUIET = 0.3

_LISTENING = re.compile(r"INFO listening on (\S+):(\d+)\s*$")


# ------------------------------------------------------------------ the server, as a process


class ServerProcess:
    """``asyncchat serve`` on 127.0.0.1, an OS-chosen port; stderr is drained in a thread."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asyncchat",
                "serve",
                "--port",
                "0",
                "--no-web",
                "--log-level",
                "info",
                "--no-history",
            ],
            stdin=subprocess.DEVNULL,  # no operator console
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.host, self.port = self._wait_listening()
        self.returncode: int | None = None
        #: Clients of this server, closed before it is stopped.
        self.clients: list[Client] = []

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _wait_listening(self) -> tuple[str, int]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no 'listening on' line; stderr: {''.join(self.log)!r}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"server exited early; stderr: {''.join(self.log)!r}")
            m = _LISTENING.search(line)
            if m:
                return m.group(1), int(m.group(2))

    def stop(self) -> int:
        """SIGTERM by pid; wait for the exit and return its status. Idempotent."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout=TIMEOUT + 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the server did not exit after SIGTERM") from None
            self._reader.join(timeout=TIMEOUT)
        return self.returncode


@contextlib.contextmanager
def chat_server() -> Iterator[ServerProcess]:
    """A fresh server for one test; on the way out it is stopped and must exit 0."""
    server = ServerProcess()
    try:
        yield server
    finally:
        for c in server.clients:
            c.close()
        status = server.stop()
        assert status == 0, f"server exit status {status}; stderr: {''.join(server.log)!r}"


# ------------------------------------------------------------------ the client, from the doc


class Closed(Exception):
    """The server closed the connection."""


class Client:
    """A blocking client: frames are a 4-byte big-endian length, then UTF-8 JSON."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
        self.sock.settimeout(TIMEOUT)
        server.clients.append(self)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- sending

    def send_payload(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def send(self, **obj: Any) -> None:
        self.send_payload(json.dumps(obj).encode("utf-8"))

    # -- receiving

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise Closed(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def recv(self) -> dict[str, Any]:
        (n,) = struct.unpack(">I", self._exactly(4))
        obj = json.loads(self._exactly(n).decode("utf-8"))
        assert isinstance(obj, dict) and isinstance(obj.get("type"), str), obj
        return obj

    def expect(self, type_: str, **members: Any) -> dict[str, Any]:
        """The next frame, which must be of ``type_`` and have these member values."""
        frame = self.recv()
        assert frame["type"] == type_, frame
        for key, value in members.items():
            assert frame.get(key) == value, (key, frame)
        return frame

    def expect_nothing(self) -> None:
        """Nothing arrives for a short while."""
        self.sock.settimeout(QUIET)
        try:
            frame = self.recv()
        except TimeoutError:
            return
        finally:
            self.sock.settimeout(TIMEOUT)
        raise AssertionError(f"unexpected frame {frame}")

    def expect_closed(self) -> list[dict[str, Any]]:
        """Read until the server closes; return the frames received before that."""
        frames = []
        while True:
            try:
                frames.append(self.recv())
            except (Closed, ConnectionResetError):
                return frames

    # -- the conversation

    def hello(self, name: str, **extra: Any) -> dict[str, Any]:
        """hello → welcome, then one joined (with our own name) per room."""
        self.send(type="hello", name=name, version=1, **extra)
        welcome = self.expect("welcome", name=name, version=1)
        for room in welcome["rooms"]:
            self.expect("joined", room=room, name=name)
        return welcome


def _pair(server: ServerProcess) -> tuple[Client, Client]:
    """alice and bob, both in lobby; alice has seen bob join."""
    alice = Client(server)
    alice.hello("alice")
    bob = Client(server)
    bob.hello("bob")
    alice.expect("joined", room="lobby", name="bob")
    return alice, bob


# ------------------------------------------------------------------ tests


def test_handshake_gets_welcome_with_limits_then_joined_lobby() -> None:
    """hello is answered by welcome (echoing id as ref, announcing limits) and joined lobby."""
    with chat_server() as server:
        c = Client(server)
        c.send(type="hello", name="alice", version=1, id="h1")
        welcome = c.expect("welcome", name="alice", version=1, rooms=["lobby"], ref="h1")
        assert isinstance(welcome["server"], str) and welcome["server"]
        limits = welcome["limits"]
        assert limits["max_frame"] == 65536
        assert limits["max_text"] == 4000
        for key in ("rate", "burst", "max_rooms_per_client", "ping_interval", "ping_timeout"):
            assert isinstance(limits[key], int | float), key
        joined = c.expect("joined", room="lobby", name="alice")
        assert "ref" not in joined
        c.expect_nothing()


def test_name_taken_then_retry_with_another_name_on_same_connection() -> None:
    """name_taken (case-insensitive) keeps the connection open for another hello."""
    with chat_server() as server:
        alice = Client(server)
        alice.hello("alice")
        other = Client(server)
        other.send(type="hello", name="ALICE", version=1, id=1)
        other.expect("error", code="name_taken", ref=1)
        other.send(type="hello", name="bob", version=1, id=2)
        other.expect("welcome", name="bob", rooms=["lobby"], ref=2)
        other.expect("joined", room="lobby", name="bob")
        alice.expect("joined", room="lobby", name="bob")


def test_say_gets_ack_others_get_message_with_contiguous_seq() -> None:
    """say: the sender gets ack, the others message; seq counts 1, 2, 3, ... per room."""
    with chat_server() as server:
        alice, bob = _pair(server)

        alice.send(type="say", room="lobby", text="hello bob", id="a1")
        ack1 = alice.expect("ack", ref="a1", room="lobby", seq=1)
        msg1 = bob.expect("message", room="lobby", seq=1, text="hello bob")
        assert msg1["from"] == "alice"
        assert msg1["ts"] == ack1["ts"] and isinstance(msg1["ts"], float)
        assert "action" not in msg1

        alice.send(type="say", room="LOBBY", text="line one\nline two")  # any case; no id
        ack2 = alice.expect("ack", room="lobby", seq=2)
        assert "ref" not in ack2
        bob.expect("message", room="lobby", seq=2, text="line one\nline two")

        bob.send(type="say", room="lobby", text="waves", action=True, id=9)
        bob.expect("ack", ref=9, room="lobby", seq=3)
        msg3 = alice.expect("message", room="lobby", seq=3, text="waves", action=True)
        assert msg3["from"] == "bob"

        alice.expect_nothing()  # the sender never gets its own message back
        bob.expect_nothing()


def test_dm_reaches_recipient_and_sender_gets_ack() -> None:
    """dm: the recipient gets dm, the sender an ack naming the recipient as the server spells
    it; an unknown name is no_such_user."""
    with chat_server() as server:
        alice, bob = _pair(server)
        alice.send(type="dm", to="Bob", text="psst", id="d1")
        ack = alice.expect("ack", ref="d1")
        assert set(ack) == {"type", "ref", "to"} and ack["to"] == "bob"
        dm = bob.expect("dm", to="bob", text="psst")
        assert dm["from"] == "alice" and isinstance(dm["ts"], float)

        alice.send(type="dm", to="nobody", text="hello?", id="d2")
        alice.expect("error", code="no_such_user", ref="d2")
        bob.expect_nothing()


def test_who_and_rooms_list_members() -> None:
    """who lists a room's names sorted; rooms lists every room with its member count."""
    with chat_server() as server:
        _alice, bob = _pair(server)
        bob.send(type="who", room="Lobby", id="w")
        bob.expect("who", room="lobby", names=["alice", "bob"], ref="w")
        bob.send(type="rooms", id=5)
        bob.expect("rooms", rooms=[{"name": "lobby", "members": 2}], ref=5)
        bob.send(type="who", room="nowhere", id="w2")
        bob.expect("error", code="room_invalid", ref="w2")


def test_join_and_leave_are_announced_with_canonical_room_name() -> None:
    """join/leave: everyone in the room sees joined/left; the requester's copy carries ref."""
    with chat_server() as server:
        alice, bob = _pair(server)

        alice.send(type="join", room="Dev", id="j1")
        alice.expect("joined", room="Dev", name="alice", ref="j1")

        bob.send(type="join", room="dev", id="j2")  # same room, other case
        bob.expect("joined", room="Dev", name="bob", ref="j2")
        seen = alice.expect("joined", room="Dev", name="bob")
        assert "ref" not in seen

        alice.send(type="join", room="DEV", id="j3")  # already in: answered to alice alone
        alice.expect("joined", room="Dev", name="alice", ref="j3")
        bob.expect_nothing()

        bob.send(type="rooms")
        bob.expect("rooms", rooms=[{"name": "Dev", "members": 2}, {"name": "lobby", "members": 2}])

        bob.send(type="leave", room="DEV", id="l1")
        bob.expect("left", room="Dev", name="bob", reason="leave", ref="l1")
        seen = alice.expect("left", room="Dev", name="bob", reason="leave")
        assert "ref" not in seen

        bob.send(type="leave", room="Dev", id="l2")
        bob.expect("error", code="not_in_room", ref="l2")


def test_ping_is_answered_by_pong_with_the_same_data() -> None:
    """ping → pong carrying the same data (any JSON value), or no data when none was sent."""
    with chat_server() as server:
        c = Client(server)
        c.hello("alice")
        data = {"n": 1, "list": [1.5, "two", None, True], "s": "é"}
        c.send(type="ping", data=data)
        c.expect("pong", data=data)
        c.send(type="ping", data=42)
        c.expect("pong", data=42)
        c.send(type="ping")
        assert "data" not in c.expect("pong")


def test_malformed_frames_get_errors_and_the_connection_stays_usable() -> None:
    """bad JSON, an empty payload and an unknown type get errors; the connection keeps working."""
    with chat_server() as server:
        alice, bob = _pair(server)

        alice.send_payload(b'{"type": "say", "room": ')
        err = alice.expect("error", code="bad_frame")
        assert isinstance(err["message"], str) and "ref" not in err

        alice.send_payload(b"")
        alice.expect("error", code="bad_frame")

        alice.send_payload(b"\xff\xfe not utf-8")
        alice.expect("error", code="bad_frame")

        alice.send(type="teleport", id=3)
        alice.expect("error", code="unknown_type", ref=3)

        alice.send(type="say", room="lobby", id=4)  # text missing
        alice.expect("error", code="bad_request", ref=4)

        alice.send(type="ping", data="still here")
        alice.expect("pong", data="still here")
        alice.send(type="say", room="lobby", text="after the errors", id=5)
        alice.expect("ack", ref=5, seq=1)
        bob.expect("message", seq=1, text="after the errors")


def test_history_is_unavailable_in_this_version() -> None:
    """history is answered with history_unavailable, echoing the id."""
    with chat_server() as server:
        c = Client(server)
        c.hello("alice")
        c.send(type="history", room="lobby", limit=10, id="h")
        c.expect("error", code="history_unavailable", ref="h")


def test_first_frame_must_be_hello() -> None:
    """A first frame other than hello gets hello_required, then bye, then the close."""
    with chat_server() as server:
        c = Client(server)
        c.send(type="ping", data=1)
        frames = c.expect_closed()
        assert [f["type"] for f in frames] == ["error", "bye"], frames
        assert frames[0]["code"] == "hello_required"
        assert frames[1]["reason"] == "hello_required"


def test_quit_tells_the_room_and_closes() -> None:
    """quit: the others see left with reason quit; the quitter's connection just closes."""
    with chat_server() as server:
        alice, bob = _pair(server)
        bob.send(type="quit", reason="done")
        alice.expect("left", room="lobby", name="bob", reason="quit")
        assert bob.expect_closed() == []
        alice.send(type="who", room="lobby")
        alice.expect("who", names=["alice"])


def test_requests_sent_just_before_quit_are_answered() -> None:
    """A say sent in the same write as quit is posted and acked before the connection closes."""
    with chat_server() as server:
        alice, bob = _pair(server)
        say = json.dumps({"type": "say", "room": "lobby", "text": "bye all", "id": 1}).encode()
        quit_ = json.dumps({"type": "quit"}).encode()
        bob.sock.sendall(struct.pack(">I", len(say)) + say + struct.pack(">I", len(quit_)) + quit_)
        alice.expect("message", seq=1, text="bye all")
        alice.expect("left", room="lobby", name="bob", reason="quit")
        # The contract: every accepted say gets an ack. asyncchat 0.1.0 drops it (see
        # docs/protocol.md, "Differences from the shared contract").
        assert [f["type"] for f in bob.expect_closed()] == ["ack"]


def test_shutdown_says_bye_to_connected_clients() -> None:
    """On SIGTERM the server sends bye with reason shutdown, closes, and exits 0."""
    with chat_server() as server:
        c = Client(server)
        c.hello("alice")
        assert server.stop() == 0
        frames = c.expect_closed()
        assert frames == [{"type": "bye", "reason": "shutdown"}], frames
