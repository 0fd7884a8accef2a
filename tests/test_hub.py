"""The hub without sockets: membership, seq, notices, and the batched fan-out."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncchat.backends import LocalBroker
from asyncchat.errors import ErrorCode, ProtocolError
from asyncchat.framing import FrameDecoder
from asyncchat.hub import Hub, Member
from asyncchat.limits import Limits


class Sink:
    """Collects what the hub writes; ``cap`` simulates a transport whose buffer is full."""

    def __init__(self, cap: int | None = None) -> None:
        self.data = bytearray()
        self.writes = 0
        self.cap = cap
        self.closed: tuple[bytes, bool] | None = None

    def write(self, data: bytes) -> bool:
        if self.cap is not None and len(self.data) + len(data) > self.cap:
            return False
        self.writes += 1
        self.data += data
        return True

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        self.closed = (final, abort)

    def frames(self) -> list[dict[str, Any]]:
        dec = FrameDecoder(1 << 30)
        dec.feed(bytes(self.data))
        return [json.loads(p) for p in dec]


def _hub(**limits: Any) -> Hub:
    clock = lambda: 1000.0  # noqa: E731
    return Hub(Limits(**limits), LocalBroker(clock=clock), clock=clock)


def _member(hub: Hub, name: str, *rooms: str, cap: int | None = None) -> tuple[Member, Sink]:
    sink = Sink(cap)
    m = hub.add_member(name, sink)
    for room in rooms or ("lobby",):
        hub.join(m, room)
    return m, sink


def test_say_acks_sender_and_fans_out_with_contiguous_seq() -> None:
    """Each say gets the next per-room seq; the sender gets ack, the others message."""
    hub = _hub()
    a, sa = _member(hub, "alice")
    _b, sb = _member(hub, "bob")
    hub.flush()
    sa.data.clear()
    sb.data.clear()
    assert [hub.say(a, "lobby", f"m{i}", ref=i) for i in range(3)] == [1, 2, 3]
    hub.flush()
    assert [f["type"] for f in sa.frames()] == ["ack"] * 3
    assert [(f["ref"], f["seq"]) for f in sa.frames()] == [(0, 1), (1, 2), (2, 3)]
    msgs = sb.frames()
    assert [(m["seq"], m["from"], m["text"]) for m in msgs] == [
        (1, "alice", "m0"),
        (2, "alice", "m1"),
        (3, "alice", "m2"),
    ]


def test_shared_members_get_one_write_per_flush() -> None:
    """Members that only receive a room's batch share one buffer: one write per flush."""
    hub = _hub()
    a, _ = _member(hub, "alice")
    sinks = [_member(hub, f"m{i}")[1] for i in range(50)]
    hub.flush()
    before = [s.writes for s in sinks]
    for i in range(20):
        hub.say(a, "lobby", f"hello {i}")
    hub.flush()
    assert [s.writes - w for s, w in zip(sinks, before, strict=True)] == [1] * 50
    assert all(len(s.frames()) > 20 for s in sinks)
    assert sinks[0].data.endswith(sinks[-1].data[-200:])


def test_names_are_unique_without_regard_to_case() -> None:
    """A second Bob is refused with name_taken; so is the server's own name."""
    hub = _hub()
    _member(hub, "bob")
    for name in ("BOB", "Bob", "*server"):
        with pytest.raises(ProtocolError) as info:
            hub.add_member(name, Sink())
        assert info.value.code in (ErrorCode.NAME_TAKEN, ErrorCode.NAME_INVALID)


def test_rooms_appear_on_first_join_and_vanish_when_empty_except_lobby() -> None:
    """A room exists while it has members; lobby always exists."""
    hub = _hub()
    a, _ = _member(hub, "alice", "dev")
    assert set(hub.rooms) == {"lobby", "dev"}
    hub.leave(a, "dev")
    assert set(hub.rooms) == {"lobby"}
    hub.remove_member(a, "quit")
    assert set(hub.rooms) == {"lobby"} and not hub.members


def test_join_leave_rename_notices() -> None:
    """Members see joined, left (with reason) and renamed; the requester gets its ref."""
    hub = _hub()
    _a, sa = _member(hub, "alice")
    b, sb = _member(hub, "bob")
    hub.rename(b, "robert", ref=5)
    hub.leave(b, "lobby", ref=6)
    hub.flush()
    assert [(f["type"], f.get("name") or f.get("new")) for f in sa.frames()] == [
        ("joined", "alice"),
        ("joined", "bob"),
        ("renamed", "robert"),
        ("left", "robert"),
    ]
    tail = sb.frames()[-2:]
    assert tail[0] == {"type": "renamed", "old": "bob", "new": "robert", "ref": 5}
    assert tail[1] == {
        "type": "left",
        "room": "lobby",
        "name": "robert",
        "reason": "leave",
        "ref": 6,
    }


def test_max_rooms_per_client() -> None:
    """Joining more rooms than max_rooms_per_client is refused."""
    hub = _hub(max_rooms_per_client=2)
    a, _ = _member(hub, "alice", "one", "two")
    with pytest.raises(ProtocolError) as info:
        hub.join(a, "three")
    assert info.value.code is ErrorCode.TOO_MANY_ROOMS


def test_slow_member_is_evicted_and_the_rest_continue() -> None:
    """A member over its backlog bound is evicted with left(slow_consumer); others go on."""
    hub = _hub()
    a, _sa = _member(hub, "alice")
    _slow, ss = _member(hub, "slow", cap=2000)
    _b, sb = _member(hub, "bob")
    for i in range(100):
        hub.say(a, "lobby", f"message number {i}")
        hub.flush()
    assert ss.closed is not None and ss.closed[1] is True  # aborted
    assert b"slow_consumer" in ss.closed[0]
    assert "slow" not in hub.members
    frames = sb.frames()
    assert {"type": "left", "room": "lobby", "name": "slow", "reason": "slow_consumer"} in frames
    assert [f["seq"] for f in frames if f["type"] == "message"] == list(range(1, 101))


# ---------------------------------------------------------------- batching equals naive fan-out

_op = st.one_of(
    st.tuples(st.just("say"), st.integers(0, 4), st.integers(0, 2)),
    st.tuples(st.just("join"), st.integers(0, 4), st.integers(0, 2)),
    st.tuples(st.just("leave"), st.integers(0, 4), st.integers(0, 2)),
    st.tuples(st.just("dm"), st.integers(0, 4), st.integers(0, 4)),
    st.tuples(st.just("rename"), st.integers(0, 4), st.integers(0, 99)),
    st.tuples(st.just("flush"), st.just(0), st.just(0)),
)


def _run(ops: list[tuple[str, int, int]], batched: bool) -> list[bytes]:
    hub = _hub()
    sinks = [Sink() for _ in range(5)]
    members = [hub.add_member(f"u{i}", s) for i, s in enumerate(sinks)]
    rooms = ["lobby", "dev", "ops"]
    for op, i, j in ops:
        m = members[i]
        try:
            if op == "say":
                hub.say(m, rooms[j], f"{i}->{j}")
            elif op == "join":
                hub.join(m, rooms[j])
            elif op == "leave":
                hub.leave(m, rooms[j])
            elif op == "dm":
                hub.dm(m, members[j].name, "psst")
            elif op == "rename":
                hub.rename(m, f"n{j}")
            elif op == "flush":
                hub.flush()
        except ProtocolError:
            pass
        if not batched:
            hub.flush()  # every operation flushed at once: the naive, unbatched delivery
    hub.flush()
    return [bytes(s.data) for s in sinks]


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=60))
def test_batched_fanout_delivers_exactly_what_naive_fanout_does(ops: list[Any]) -> None:
    """Whatever the interleaving, every member receives the same bytes, in the same order,
    as if each frame had been written to it at once."""
    assert _run(ops, batched=True) == _run(ops, batched=False)


def test_frame_headers_are_consistent() -> None:
    """Every write is a whole number of frames."""
    hub = _hub()
    a, sa = _member(hub, "alice")
    hub.say(a, "lobby", "x")
    hub.flush()
    data = bytes(sa.data)
    while data:
        (n,) = struct.unpack(">I", data[:4])
        json.loads(data[4 : 4 + n])
        data = data[4 + n :]


def test_large_rooms_stop_broadcasting_join_and_leave_notices() -> None:
    """Above quiet_room_size, only the joiner hears of its join, and leaves are not broadcast."""
    hub = _hub(quiet_room_size=3)
    sinks = [_member(hub, f"u{i}")[1] for i in range(3)]
    late, sl = _member(hub, "late")
    hub.flush()
    assert [f["name"] for f in sinks[0].frames() if f["type"] == "joined"] == ["u0", "u1", "u2"]
    assert [f["name"] for f in sl.frames()] == ["late"]
    hub.leave(late, "lobby")
    hub.flush()
    assert not [f for f in sinks[0].frames() if f["type"] == "left"]
    hub.remove_member(hub.members["u1"], "quit")
    hub.flush()
    assert [f["name"] for f in sinks[0].frames() if f["type"] == "left"] == ["u1"]
