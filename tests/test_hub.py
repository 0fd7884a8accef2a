"""The hub without sockets: membership, seq, notices, eviction."""

from __future__ import annotations

import pytest

from asyncchat.errors import ErrorCode, ProtocolError

from .helpers import Sink
from .helpers import add_member as _member
from .helpers import make_hub as _hub


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
    hub.remove_member(hub.members_named(["u1"])[0], "quit")
    hub.flush()
    assert [f["name"] for f in sinks[0].frames() if f["type"] == "left"] == ["u1"]


def test_idempotency_window_is_bounded_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_REMEMBERED_IDS the oldest ids are forgotten, one per new id: a re-send of a
    forgotten id is posted again, a re-send of a remembered one gets its original seq."""
    from asyncchat.backends import local

    monkeypatch.setattr(local, "MAX_REMEMBERED_IDS", 5)
    hub = _hub()
    alice, _ = _member(hub, "alice")
    seqs = [hub.say(alice, "lobby", f"m{i}", i) for i in range(8)]
    assert seqs == list(range(1, 9))
    assert len(hub.broker._recent) == 5  # type: ignore[attr-defined]
    assert hub.say(alice, "lobby", "m7 again", 7) == 8  # remembered: not posted again
    assert hub.say(alice, "lobby", "m0 again", 0) == 9  # forgotten: posted anew
    assert len(hub.broker._recent) == 5  # type: ignore[attr-defined]
