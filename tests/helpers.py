"""Fakes for the sans-I/O tests (hub, fan-out, session): a settable clock and a sink that records
what it is given. No sockets, no event loop."""

from __future__ import annotations

import json
from typing import Any

from asyncchat.backends import LocalBroker
from asyncchat.events import ServerEvent, parse_server
from asyncchat.framing import FrameDecoder, loads
from asyncchat.hub import Hub, Member
from asyncchat.limits import Limits


class FakeClock:
    """A clock that moves only when told: ``clock()`` is the time, ``clock.advance(s)``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def decode(data: bytes) -> list[bytes]:
    """The payloads of the complete frames in ``data`` (which must hold nothing else)."""
    dec = FrameDecoder(1 << 30)
    dec.feed(data)
    payloads = list(dec)
    assert dec.pending == 0, "the bytes end in a partial frame"
    return payloads


class Sink:
    """Collects what it is written; ``cap`` simulates a transport whose buffer is full.

    Implements the :class:`asyncchat.interfaces.Sink` protocol: ``write``, ``close`` (recorded
    as ``closed = (final, abort)``), ``ping`` (counted) and ``last_activity``.
    """

    def __init__(self, cap: int | None = None) -> None:
        self.data = bytearray()
        self.writes = 0
        self.cap = cap
        self.closed: tuple[bytes, bool] | None = None
        self.pings = 0
        self.last_activity = 0.0
        self._seen = 0  # frames already returned by new_events()

    def write(self, data: bytes) -> bool:
        if self.cap is not None and len(self.data) + len(data) > self.cap:
            return False
        self.writes += 1
        self.data += data
        return True

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        self.closed = (final, abort)

    def ping(self) -> None:
        self.pings += 1

    def frames(self) -> list[dict[str, Any]]:
        """Every frame written, as JSON objects."""
        return [json.loads(p) for p in decode(bytes(self.data))]

    def events(self) -> list[ServerEvent]:
        """Every frame written, as typed server events."""
        return [parse_server(loads(p)) for p in decode(bytes(self.data))]

    def new_events(self) -> list[ServerEvent]:
        """The events written since the last call."""
        events = self.events()
        new, self._seen = events[self._seen :], len(events)
        return new

    def final_events(self) -> list[ServerEvent]:
        """The events of the last bytes handed to ``close`` (nothing if it was not closed)."""
        if self.closed is None:
            return []
        return [parse_server(loads(p)) for p in decode(self.closed[0])]


def make_hub(**limits: Any) -> Hub:
    """A hub with these limits, no history, and a clock stopped at 1000.0."""
    clock = lambda: 1000.0  # noqa: E731
    return Hub(Limits(**limits), LocalBroker(clock=clock), clock=clock)


def add_member(hub: Hub, name: str, *rooms: str, cap: int | None = None) -> tuple[Member, Sink]:
    """A member of ``hub`` called ``name``, in ``rooms`` (lobby if none), with its sink."""
    sink = Sink(cap)
    m = hub.add_member(name, sink)
    for room in rooms or ("lobby",):
        hub.join(m, room)
    return m, sink
