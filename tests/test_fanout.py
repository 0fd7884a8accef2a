"""The batched fan-out without sockets: one write per member per flush, and the same bytes in
the same order as writing each frame at once."""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncchat.errors import ProtocolError

from .helpers import Sink
from .helpers import add_member as _member
from .helpers import make_hub as _hub


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
