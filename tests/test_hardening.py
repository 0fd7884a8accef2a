"""What one hostile client can cost the server, over real loopback sockets: each attack of
issue 14 is refused or bounded, other members keep chatting, and nothing logs a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import socket
import struct
import subprocess
import sys
from typing import Any

import pytest

from asyncchat import ChatServer, connect
from asyncchat.errors import ConnectionClosed
from asyncchat.framing import MAX_ID, MAX_JSON_DEPTH

from .conftest import WAIT, RawClient
from .test_limits import NO_FLOOD, _open, _rss_kib, _still_chats


def _nested(depth: int) -> Any:
    data: Any = 1
    for _ in range(depth):
        data = [data]
    return data


@pytest.fixture
def no_traceback(caplog: pytest.LogCaptureFixture) -> Any:
    """Fails the test if the server logged anything with a traceback."""
    caplog.set_level(logging.INFO, logger="asyncchat")
    yield caplog
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_deep_json_is_bad_frame_and_the_connection_stays(
    make_server: Any, no_traceback: Any
) -> None:
    """A ping whose data nests past MAX_JSON_DEPTH is bad_frame (not a traceback); one within
    the bound is echoed in the pong."""
    async with make_server() as server:
        c = await _open(server, "deep")
        c.send({"type": "ping", "data": _nested(300), "id": "p"})
        err = await c.recv_type("error")
        assert err["code"] == "bad_frame" and err["ref"] == "p"
        c.send({"type": "ping", "data": _nested(MAX_JSON_DEPTH - 1)})
        assert (await c.recv_type("pong"))["data"] == _nested(MAX_JSON_DEPTH - 1)
        await _still_chats(server)


async def test_a_long_request_id_is_refused_and_nothing_is_posted(make_server: Any) -> None:
    """An id longer than MAX_ID is bad_request without a ref (it is not echoed), and the say
    is not posted; an id of MAX_ID characters is fine."""
    async with make_server() as server:
        a = await _open(server, "alice")
        b = await _open(server, "bob")
        a.send({"type": "say", "room": "lobby", "text": "x", "id": "i" * (MAX_ID + 1)})
        err = await a.recv_type("error")
        assert err["code"] == "bad_request" and "ref" not in err
        a.send({"type": "say", "room": "lobby", "text": "ok", "id": "i" * MAX_ID})
        assert (await a.recv_type("ack"))["ref"] == "i" * MAX_ID
        assert (await b.recv_type("message"))["text"] == "ok"  # the refused one never came


async def test_a_nick_storm_is_rate_limited(make_server: Any) -> None:
    """nick has a bucket of its own: past nick_burst, rate_limited with retry_after, and the
    name does not change; says are not affected."""
    async with make_server(nick_burst=2, nick_rate=0.1) as server:
        c = await _open(server, "n0")
        for i in (1, 2):
            c.send({"type": "nick", "name": f"n{i}", "id": i})
            assert (await c.recv_type("renamed"))["new"] == f"n{i}"
        c.send({"type": "nick", "name": "n3", "id": 3})
        err = await c.recv_type("error")
        assert err["code"] == "rate_limited" and err["ref"] == 3 and err["retry_after"] > 5
        assert server.members == ["n2"]
        c.send({"type": "say", "room": "lobby", "text": "still talking", "id": "s"})
        assert (await c.recv_type("ack"))["ref"] == "s"


async def test_join_and_leave_share_a_bucket_and_a_flooder_is_disconnected(
    make_server: Any, no_traceback: Any
) -> None:
    """join and leave share join_burst; refusals in a row of any kind count toward
    max_rate_violations, after which the flooder is disconnected."""
    async with make_server(join_burst=3, join_rate=0.01, max_rate_violations=4) as server:
        c = await _open(server, "hopper")
        c.send({"type": "join", "room": "a", "id": 1})
        c.send({"type": "leave", "room": "a", "id": 2})
        c.send({"type": "join", "room": "b", "id": 3})
        assert (await c.recv_match(type="joined", ref=3))["room"] == "b"
        for i in range(3):
            c.send({"type": "join", "room": f"r{i}", "id": 10 + i})
            assert (await c.recv_type("error"))["code"] == "rate_limited"
        c.send({"type": "nick", "name": "hopper2", "id": 20})  # its own bucket: allowed
        await c.recv_match(type="renamed", ref=20)
        c.send({"type": "leave", "room": "b", "id": 21})  # the 4th refusal in a row? no:
        # the nick in between was accepted, so the count started over.
        assert (await c.recv_type("error"))["code"] == "rate_limited"
        for i in range(3):
            c.send({"type": "join", "room": f"s{i}", "id": 30 + i})
        frames = await c.expect_closed()
        assert [f.get("code") for f in frames if f["type"] == "error"][-1] == "rate_limited"
        assert frames[-1]["type"] == "bye"
        await _still_chats(server)


async def test_renames_in_a_large_room_are_not_broadcast(make_server: Any) -> None:
    """Above quiet_room_size, a room's members are not told of others' renames (as for
    joined/left); the renamer itself is."""
    async with make_server(quiet_room_size=2, **NO_FLOOD) as server:
        members: list[RawClient] = [await _open(server, f"m{i}") for i in range(3)]
        members[0].send({"type": "nick", "name": "renamed0", "id": "r"})
        assert (await members[0].recv_match(type="renamed", ref="r"))["new"] == "renamed0"
        members[1].send({"type": "ping", "data": "mark"})
        frames = []
        while (f := await members[1].recv())["type"] != "pong":
            frames.append(f)
        assert not [f for f in frames if f["type"] == "renamed"]


async def test_welcome_announces_the_request_rates(server: ChatServer) -> None:
    """welcome.limits carries nick_rate/nick_burst and join_rate/join_burst, so clients can pace
    themselves."""
    c = await _open(server)
    welcome = await c.hello("pacer")
    limits = server.limits
    for name in ("nick_rate", "nick_burst", "join_rate", "join_burst"):
        assert welcome["limits"][name] == getattr(limits, name)


async def _many_rooms(server: ChatServer, count: int) -> RawClient:
    """A member of ``count`` rooms (so that the server holds that many)."""
    maker = await _open(server, "maker")
    for i in range(count):
        maker.send({"type": "join", "room": f"room-{i:05d}"})
    for _ in range(count):
        await maker.recv_type("joined")
    return maker


async def test_pipelined_requests_are_bounded_before_they_are_answered(
    make_server: Any, no_traceback: Any
) -> None:
    """1,500 rooms requests in one write from a client that never reads: the server pauses
    reading it once its replies pass the reply budget, memory stays bounded, and others'
    hello and chat are answered meanwhile; the reader is evicted after write_timeout."""
    limits = {"max_rooms_per_client": 3000, "join_burst": 10**6, "write_timeout": 1.0}
    async with make_server(**limits, **NO_FLOOD) as server:
        maker = await _many_rooms(server, 2000)  # kept: its rooms last while it is connected
        attacker = await _open(server, "attacker", rcvbuf=4096)
        rss_before = _rss_kib()
        _reset_peak_rss()
        attacker.send_bytes(b"".join(_frame({"type": "rooms", "id": i}) for i in range(1500)))
        await _still_chats(server)  # a hello and a chat go through during the attack
        await _wait_gone(server, "attacker")
        # Unbounded, the 1,500 replies (pages of 500 rooms) would have been ~30 MB queued at
        # once, and twice that when joined for the write.
        assert _peak_rss_kib() - rss_before < 12 * 1024
        assert maker is not None and "maker" in server.members


async def test_rooms_and_who_replies_are_paged(make_server: Any) -> None:
    """A rooms reply holds at most list_page_max rooms and says more; asking again after the
    last one gives the next page; the client library pages through all of them."""
    async with make_server(max_rooms_per_client=100, join_burst=1000, list_page_max=40) as server:
        maker = await _many_rooms(server, 90)
        c = await _open(server, "lister")
        c.send({"type": "rooms", "id": 1})
        first = await c.recv_match(type="rooms", ref=1)
        assert len(first["rooms"]) == 40 and first["more"] is True
        c.send({"type": "rooms", "id": 2, "after": first["rooms"][-1]["name"]})
        second = await c.recv_match(type="rooms", ref=2)
        assert second["rooms"][0]["name"] > first["rooms"][-1]["name"]
        host, port = server.address
        async with connect(host, port, name="pager") as client:
            names = [r.name for r in await client.rooms()]
            assert len(names) == 91 and names == sorted(names)  # 90 rooms and lobby
            assert len(await client.who("lobby")) == 3  # maker, lister, pager
        await maker.close()


async def test_the_server_holds_at_most_max_rooms(make_server: Any) -> None:
    """Joining a new room when the server holds max_rooms is too_many_rooms; an existing room
    can still be joined."""
    async with make_server(max_rooms=3) as server:
        c = await _open(server, "creator")
        for room in ("a", "b"):
            c.send({"type": "join", "room": room, "id": room})
            await c.recv_match(type="joined", ref=room)
        c.send({"type": "join", "room": "c", "id": "c"})
        err = await c.recv_type("error")
        assert err["code"] == "too_many_rooms" and err["ref"] == "c"
        d = await _open(server, "other")
        d.send({"type": "join", "room": "a", "id": "a"})
        await d.recv_match(type="joined", ref="a")


def _reset_peak_rss() -> None:
    """Start the process's peak RSS (VmHWM) over from its current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")  # pragma: no cover


def _frame(obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


async def _wait_gone(server: ChatServer, name: str) -> None:
    async with asyncio.timeout(4 * WAIT):
        while name in server.members:
            await asyncio.sleep(0.02)


async def test_the_client_drops_a_server_that_replays_without_end() -> None:
    """A server that replays more than a page without history_end: the client library closes
    the connection (memory stays bounded) instead of holding the replay until it ends."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        await reader.readexactly(n)  # the hello
        welcome = {
            "type": "welcome", "name": "victim", "version": 1, "server": "evil", "rooms": ["lobby"],
            "limits": {"max_frame": 65536, "max_text": 4000, "history_page_max": 50},
            "history": True,
        }  # fmt: skip
        writer.write(_frame(welcome))
        try:
            for seq in range(1, 100_000):
                writer.write(_frame({
                    "type": "message", "room": "lobby", "seq": seq, "from": "x",
                    "text": "y" * 100, "ts": 1.0, "history": True,
                }))  # fmt: skip
                if seq % 100 == 0:
                    await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        client = await connect(host, port, name="victim")
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(WAIT):
                while True:
                    await client.next_event()
        assert "replayed more than 50" in (client.close_reason or "")
        await client.close()


def _serve_with_nofile(soft: int, hard: int) -> tuple[subprocess.Popen[str], int, list[str]]:
    """``asyncchat serve`` under an open-file limit; the process, its port and its first lines
    of log (up to "listening")."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncchat", "serve", "--port", "0", "--no-history", "--no-web"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    assert proc.stderr is not None
    lines: list[str] = []
    while True:
        line = proc.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
        if m := re.search(r"INFO listening on 127\.0\.0\.1:(\d+)", line):
            return proc, int(m.group(1)), lines


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(WAIT)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        proc.wait(WAIT)
    if proc.stderr is not None:
        proc.stderr.close()


def test_serve_raises_its_open_file_limit_toward_the_hard_limit() -> None:
    """serve raises the soft RLIMIT_NOFILE toward the hard one, enough for max_connections."""
    proc, _port, _ = _serve_with_nofile(128, 4096)
    try:
        with open(f"/proc/{proc.pid}/limits") as f:
            row = next(line for line in f if line.startswith("Max open files"))
        assert row.split()[3:5] == ["4096", "4096"]
    finally:
        _stop(proc)


def test_past_the_descriptors_clients_get_too_many_connections() -> None:
    """With an open-file limit below max_connections, serve warns at start, and the clients
    past what descriptors allow get too_many_connections instead of a silent close."""
    proc, port, lines = _serve_with_nofile(96, 96)
    socks: list[socket.socket] = []
    try:
        assert any("open-file limit (96) allows 32 connections" in line for line in lines)
        answers = []
        for i in range(40):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            socks.append(s)
            s.sendall(_frame({"type": "hello", "name": f"fd{i}", "version": 1}))
            (n,) = struct.unpack(">I", _recv_exactly(s, 4))
            answers.append(json.loads(_recv_exactly(s, n)))
        kinds = [a["type"] if a["type"] != "error" else a["code"] for a in answers]
        assert kinds == ["welcome"] * 32 + ["too_many_connections"] * 8
    finally:
        for s in socks:
            s.close()
        _stop(proc)


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "closed"
        data += chunk
    return data


@pytest.mark.parametrize(
    "lookalike",
    ["\u0430lice", "\uff41lice", "\U0001d41alice", "ALICE", "al\u0456ce"],
    ids=["cyrillic-a", "fullwidth-a", "math-bold-a", "upper-case", "cyrillic-i"],
)
async def test_a_name_that_looks_like_a_taken_one_is_taken(
    make_server: Any, lookalike: str
) -> None:
    """Names are unique under NFKC, case folding and the TR39 confusable skeleton: a
    look-alike of a connected user's name is name_taken, by hello and by nick."""
    async with make_server() as server:
        alice = await _open(server, "alice")
        c = await _open(server)
        c.send({"type": "hello", "name": lookalike, "version": 1, "id": 1})
        assert (await c.recv_type("error"))["code"] == "name_taken"
        await c.hello("mallory")
        c.send({"type": "nick", "name": lookalike, "id": 2})
        err = await c.recv_type("error")
        assert (err["code"], err["ref"]) == ("name_taken", 2)
        assert server.members == ["alice", "mallory"]
        await alice.close()


@pytest.mark.parametrize(
    "name",
    ["\u3164", "\u115f", "\u2800", "\u0301", "alice\u3164", "al\u034fice", "a\ufe0f",
     "\U000e0041x"],
    ids=["hangul-filler", "choseong-filler", "braille-blank", "mark-alone", "filler-suffix",
         "grapheme-joiner", "variation-selector", "tag-character"],
)  # fmt: skip
async def test_blank_and_invisible_names_are_refused(make_server: Any, name: str) -> None:
    """Names that show nothing, or carry default-ignorable characters, are name_invalid."""
    async with make_server() as server:
        c = await _open(server)
        c.send({"type": "hello", "name": name, "version": 1, "id": 1})
        err = await c.recv_type("error")
        assert (err["code"], err["ref"]) == ("name_invalid", 1)
        await c.hello("visible")  # the connection stays, and a good name is welcome


async def test_a_room_named_twice_in_a_hello_counts_once(make_server: Any) -> None:
    """lobby in rooms and LOBBY in resume are one room for max_rooms_per_client."""
    async with make_server(max_rooms_per_client=1) as server:
        c = await _open(server)
        welcome = await c.hello("twice", rooms=["lobby"], resume={"LOBBY": 0})
        assert welcome["rooms"] == ["lobby"]


def test_nobody_can_be_exempt_from_max_per_ip_from_the_cli() -> None:
    """--per-ip-exempt none (and ASYNCCHAT_PER_IP_EXEMPT=none) is the empty list."""
    for argv, env in (
        (["--per-ip-exempt", "none"], {}),
        ([], {"ASYNCCHAT_PER_IP_EXEMPT": "none"}),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "asyncchat", "serve", *argv, "--print-config"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            env={**os.environ, **env},
        )
        assert out.returncode == 0, out.stderr
        assert "per_ip_exempt = []" in out.stdout


@pytest.mark.parametrize(
    "lookalike",
    ["aIice", "ali\u03f2e", "AL\u0406CE"],
    ids=["capital-I-as-l", "lunate-sigma", "cyrillic-I"],
)
async def test_glyph_lookalikes_are_taken_too(make_server: Any, lookalike: str) -> None:
    """A capital I drawn as l, or a Greek lunate sigma drawn as c, is caught by the second key
    (the skeleton before case folding), though case folding first would let it pass."""
    async with make_server() as server:
        alice = await _open(server, "alice")
        c = await _open(server)
        c.send({"type": "hello", "name": lookalike, "version": 1, "id": 1})
        assert (await c.recv_type("error"))["code"] == "name_taken"
        await alice.close()


async def test_a_long_page_cursor_is_refused(make_server: Any) -> None:
    """who/rooms ``after`` longer than a name is bad_request: its key is never computed."""
    async with make_server() as server:
        c = await _open(server, "pager")
        c.send({"type": "who", "room": "lobby", "after": "\ufdfa" * 10_000, "id": 1})
        err = await c.recv_type("error")
        assert (err["code"], err["ref"]) == ("bad_request", 1)
        c.send({"type": "rooms", "after": "x" * 65, "id": 2})
        assert (await c.recv_match(type="error", ref=2))["code"] == "bad_request"


@pytest.mark.parametrize(
    "char",
    ["\u00ad", "\u034f", "\u2064", "\U000e0041", "\u3164", "\u180e", "\ufff9"],
    ids=["soft-hyphen", "grapheme-joiner", "invisible-plus", "tag-A", "hangul-filler",
         "mongolian-vowel-separator", "annotation-anchor"],
)  # fmt: skip
def test_invisible_characters_are_shown_escaped(char: str) -> None:
    """Characters that show nothing are printed as escapes, so a peer's text hides nothing."""
    from asyncchat.text import escape

    shown = escape(f"a{char}b")
    assert char not in shown and shown.startswith("a\\") and shown.endswith("b")


def test_emoji_sequences_stay_whole() -> None:
    """Joiners, variation selectors and a subdivision flag's tags are kept: emoji stay whole."""
    from asyncchat.text import escape

    for text in (
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family
        "\u2764\ufe0f",  # red heart, emoji presentation
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    ):
        assert escape(text) == text
