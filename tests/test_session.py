"""The session without a network: one client's protocol state against a real hub, a fake clock
and a recording sink. No sockets, no event loop (habit 14)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from asyncchat import wire
from asyncchat.backends import LocalBroker
from asyncchat.errors import ErrorCode, ProtocolError
from asyncchat.events import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Error,
    Event,
    Hello,
    HistoryEnd,
    Joined,
    Left,
    Message,
    Pong,
    Renamed,
    RoomInfo,
    RoomList,
    ServerEvent,
    Welcome,
    WhoReply,
)
from asyncchat.hub import Hub, Pending
from asyncchat.interfaces import Page, Record, RoomTopic
from asyncchat.limits import Limits
from asyncchat.session import MAX_HELLO_ATTEMPTS, SERVER_VERSION, Session

from .helpers import FakeClock, Sink

LIMITS = Limits(rate=2.0, burst=5, max_rate_violations=3)


class FakeStore:
    """A :class:`~asyncchat.interfaces.HistoryStore` whose commits the test delivers by hand:
    :meth:`submit` only queues; :meth:`commit` reports the oldest queued records stored."""

    def __init__(self) -> None:
        self.on_commit: Callable[[list[tuple[Record, Pending]]], None] | None = None
        self.opened_with: tuple[Any, Any] | None = None
        self.queued: list[tuple[Record, Pending]] = []
        self.stored: list[Record] = []
        self.failed: BaseException | None = None
        self.closed = False

    def open(
        self,
        on_commit: Callable[[list[tuple[Record, Pending]]], None],
        call_soon: Callable[..., Any],
        call_soon_threadsafe: Callable[..., Any],
        on_lost: Callable[[list[tuple[Record, Pending]]], None] | None = None,
    ) -> None:
        self.on_commit = on_commit
        self.opened_with = (call_soon, call_soon_threadsafe)

    def last_seqs(self) -> dict[str, int]:
        return {}

    def recent_client_keys(self, since: float) -> dict[str, tuple[str, str, int, float]]:
        return {}

    def submit(self, record: Record, token: Pending) -> None:
        self.queued.append((record, token))

    def commit(self, n: int) -> None:
        """Report the ``n`` oldest queued records stored, as the store's writer would."""
        batch, self.queued = self.queued[:n], self.queued[n:]
        self.stored += [record for record, _ in batch]
        assert self.on_commit is not None, "the broker did not open the store"
        self.on_commit(batch)

    def page(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int
    ) -> Page:
        kept = [r for r in self.stored if r.room == room]
        found = [
            r
            for r in kept
            if (before is None or r.seq < before) and (after is None or r.seq > after)
        ]
        records = found[:limit] if after is not None else found[-limit:]
        return Page(records, len(found) > limit, kept[0].seq if kept else 0)

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        found = [r for r in self.stored if r.room == room and r.seq < before and words in r.text]
        return found[::-1][:limit]

    def topics(self) -> dict[str, RoomTopic]:
        return {}

    def set_topic(self, room: str, name: str, topic: RoomTopic | None) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _hub(clock: FakeClock, store: FakeStore | None = None, limits: Limits = LIMITS) -> Hub:
    broker: LocalBroker[Pending] = LocalBroker(store, clock=clock)
    hub = Hub(limits, broker, clock=clock)
    broker.start(lambda *a: None, lambda *a: None)
    hub.start()
    return hub


class Peer:
    """One client's session against the hub, driven as the connection layer drives it: a valid
    hello is admitted at once; a ``ProtocolError`` is answered with its ``error`` frame, and
    the connection is closed (after the error and a ``bye``) only when the error says so.
    The hub is flushed after every frame, as the event loop would between reads."""

    def __init__(self, hub: Hub, clock: FakeClock) -> None:
        self.hub = hub
        self.sink = Sink()
        self.session = Session(hub, self.sink, monotonic=clock)

    def send(self, obj: dict[str, Any]) -> ProtocolError | None:
        """Feed one frame; returns the error it was refused with, if it was."""
        return self.send_payload(orjson.dumps(obj))

    def send_payload(self, payload: bytes) -> ProtocolError | None:
        assert self.sink.closed is None, "the connection is closed"
        session = self.session
        refused = None
        try:
            hello = session.receive(payload)
            if hello is not None:
                session.accept(hello)
        except ProtocolError as exc:
            refused = exc
            if exc.closes:
                m = session.member
                if m is not None:
                    self.hub.flush()
                    self.hub.remove_member(m, "disconnect")
                self.sink.close(wire.error_for(exc) + wire.bye(str(exc.code)))
            else:
                session.send_error(exc)
        self.hub.flush()
        return refused

    def received(self) -> list[ServerEvent]:
        """The events this client got since the last call."""
        return self.sink.new_events()


def _hello(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "hello", "name": name, "version": PROTOCOL_VERSION, **extra}


def _say(text: str, ref: Any = None, room: str = "lobby") -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "say", "room": room, "text": text}
    if ref is not None:
        obj["id"] = ref
    return obj


def _connect(hub: Hub, clock: FakeClock, name: str, **extra: Any) -> Peer:
    """A peer past its welcome, with what it received so far read."""
    peer = Peer(hub, clock)
    assert peer.send(_hello(name, **extra)) is None
    assert peer.session.member is not None
    peer.received()
    return peer


def _codes(events: list[ServerEvent]) -> list[tuple[str, str | None]]:
    """(type, error code or bye reason) of each event: what a refusal looks like to a client."""
    out: list[tuple[str, str | None]] = []
    for e in events:
        if isinstance(e, Error):
            out.append((e.TYPE, e.code))
        elif isinstance(e, Bye):
            out.append((e.TYPE, e.reason))
        else:
            out.append((e.TYPE, None))
    return out


def _welcome(hub: Hub, name: str, rooms: tuple[str, ...] = ("lobby",), **extra: Any) -> Welcome:
    return Welcome(
        name=name,
        version=PROTOCOL_VERSION,
        server=SERVER_VERSION,
        rooms=rooms,
        limits=hub.limits.announced(),
        **extra,
    )


# ---------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    "payload",
    [
        orjson.dumps(_say("hi")),
        orjson.dumps({"type": "join", "room": "dev"}),
        b"{not json",
        b"{}",
        b"",
    ],
    ids=["say", "join", "not-json", "no-type", "empty"],
)
def test_first_frame_not_hello_is_hello_required_and_closes(payload: bytes) -> None:
    """Anything but a hello first (malformed frames included) is hello_required, which closes."""
    clock = FakeClock()
    hub = _hub(clock)
    session = Session(hub, Sink(), monotonic=clock)
    with pytest.raises(ProtocolError) as info:
        session.receive(payload)
    assert info.value.code is ErrorCode.HELLO_REQUIRED and info.value.closes
    assert session.member is None and not hub.members

    peer = Peer(hub, clock)
    peer.send_payload(payload)
    assert peer.received() == []
    assert _codes(peer.sink.final_events()) == [
        ("error", "hello_required"),
        ("bye", "hello_required"),
    ]


def test_bad_hellos_are_refused_and_the_connection_stays_open() -> None:
    """A malformed or refused hello gets its error; the connection stays open for another."""
    clock = FakeClock()
    hub = _hub(clock, limits=Limits(max_rooms_per_client=2))
    peer = Peer(hub, clock)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"type": "hello", "name": "alice"}, "bad_request"),  # no version
        ({"type": "hello", "name": 7, "version": 1}, "bad_request"),
        (_hello("alice", rooms="lobby"), "bad_request"),
        (_hello("two words"), "name_invalid"),
        (_hello("*server"), "name_invalid"),
        (_hello("alice", rooms=["#dev"]), "room_invalid"),
        (_hello("alice", rooms=["a", "b", "c"]), "too_many_rooms"),
    ]
    for obj, code in bad:
        exc = peer.send(obj)
        assert exc is not None and not exc.closes
        assert _codes(peer.received()) == [("error", code)], obj
    assert peer.sink.closed is None and not hub.members
    assert peer.send(_hello("alice")) is None
    assert peer.received() == [_welcome(hub, "alice"), Joined(room="lobby", name="alice")]


def test_unsupported_version_is_refused_with_the_hello_id() -> None:
    """A hello of another version gets version_unsupported (its id as ref), and may retry."""
    clock = FakeClock()
    hub = _hub(clock)
    peer = Peer(hub, clock)
    exc = peer.send(_hello("alice", version=PROTOCOL_VERSION + 1, id="h"))
    assert exc is not None and not exc.closes
    assert peer.received() == [Error(code="version_unsupported", message=exc.message, ref="h")]
    assert peer.send(_hello("alice", id="h2")) is None
    assert peer.received()[0] == _welcome(hub, "alice", ref="h2")


def test_receive_returns_the_hello_and_accept_sends_welcome_and_joined() -> None:
    """A valid hello is returned for admission; accept names the member, welcomes and joins."""
    clock = FakeClock()
    hub = _hub(clock)
    sink = Sink()
    session = Session(hub, sink, monotonic=clock, motd="be nice")
    obj = _hello("alice", rooms=["lobby", "Dev"], id=1)
    hello = session.receive(orjson.dumps(obj))
    assert hello == Hello(name="alice", version=PROTOCOL_VERSION, rooms=("lobby", "Dev"), id=1)
    # Admission runs here: nothing was sent and nobody was named yet.
    assert session.member is None and not hub.members and sink.data == b""
    m = session.accept(hello)
    assert session.member is m and hub.members == {"alice": m}
    hub.flush()
    assert sink.events() == [
        _welcome(hub, "alice", rooms=("lobby", "Dev"), motd="be nice", ref=1),
        Joined(room="lobby", name="alice"),
        Joined(room="Dev", name="alice"),
    ]


def test_name_taken_then_retry_with_another_name_succeeds() -> None:
    """The classic "choose another nickname": name_taken (any case), then another name works."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    peer = Peer(hub, clock)
    exc = peer.send(_hello("ALICE", id="h1"))
    assert exc is not None and exc.code is ErrorCode.NAME_TAKEN and not exc.closes
    assert peer.received() == [Error(code="name_taken", message=exc.message, ref="h1")]
    assert peer.session.member is None and peer.sink.closed is None
    assert peer.send(_hello("alice2", id="h2")) is None
    assert peer.received() == [
        _welcome(hub, "alice2", ref="h2"),
        Joined(room="lobby", name="alice2"),
    ]
    assert alice.received() == [Joined(room="lobby", name="alice2")]


def test_failed_hellos_are_bounded() -> None:
    """After MAX_HELLO_ATTEMPTS refused hellos, the next (even a valid one) closes with
    bad_request."""
    clock = FakeClock()
    hub = _hub(clock)
    _connect(hub, clock, "alice")
    peer = Peer(hub, clock)
    for i in range(MAX_HELLO_ATTEMPTS):
        exc = peer.send(_hello("alice", id=i))
        assert exc is not None and exc.code is ErrorCode.NAME_TAKEN and not exc.closes
    exc = peer.send(_hello("bob", id="last"))
    assert exc is not None and exc.code is ErrorCode.BAD_REQUEST and exc.closes
    assert exc.ref == "last"
    assert "bob" not in hub.members
    assert _codes(peer.sink.final_events()) == [("error", "bad_request"), ("bye", "bad_request")]


def test_hello_after_welcome_is_refused() -> None:
    """A second hello on a named connection is a bad_request; the session stays as it was."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    exc = alice.send(_hello("bob", id=3))
    assert exc is not None and exc.code is ErrorCode.BAD_REQUEST and not exc.closes
    assert alice.received() == [Error(code="bad_request", message=exc.message, ref=3)]
    assert set(hub.members) == {"alice"}


def test_resume_without_history_rejoins_and_says_whether_anything_was_missed() -> None:
    """hello.resume joins the resumed rooms (not lobby) in their canonical spelling; without
    history each gets a history_end saying whether messages were missed, or the seq reset."""
    clock = FakeClock()
    hub = _hub(clock)
    bob = _connect(hub, clock, "bob", rooms=["dev", "ops"])
    bob.send(_say("one", room="dev"))
    bob.send(_say("two", room="dev"))
    alice = Peer(hub, clock)
    assert alice.send(_hello("alice", resume={"DEV": 1, "ops": 5})) is None
    assert alice.received() == [
        _welcome(hub, "alice", rooms=("dev", "ops")),
        Joined(room="dev", name="alice"),
        HistoryEnd(room="dev", more=False, truncated=True),
        Joined(room="ops", name="alice"),
        HistoryEnd(room="ops", more=False, truncated=False, reset=True),
    ]
    # without history, after a resume, truncated is always present (false too)
    ends = [f for f in alice.sink.frames() if f["type"] == "history_end"]
    assert [f["truncated"] for f in ends] == [True, False]


# ---------------------------------------------------------------- rate limit


def test_burst_then_rate_limited_with_retry_after_from_the_clock() -> None:
    """After `burst` messages the next is refused with rate_limited, its retry_after the wait
    for the next token at `rate`, and it is not posted."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    for i in range(LIMITS.burst):
        assert alice.send(_say(f"m{i}", ref=i)) is None
    assert [e.seq for e in alice.received() if isinstance(e, Ack)] == [1, 2, 3, 4, 5]
    exc = alice.send(_say("one too many", ref="x"))
    assert exc is not None and exc.code is ErrorCode.RATE_LIMITED and not exc.closes
    assert alice.received() == [
        Error(code="rate_limited", message=exc.message, ref="x", retry_after=0.5)
    ]
    clock.advance(0.25)  # half a token at 2/s
    exc = alice.send(_say("still too soon", ref="y"))
    assert exc is not None and exc.retry_after == 0.25
    assert hub.rooms["lobby"].seq == LIMITS.burst


def test_tokens_refill_as_the_clock_advances() -> None:
    """Tokens come back at `rate` per second, up to `burst`."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    for i in range(LIMITS.burst):
        alice.send(_say(f"m{i}"))
    assert alice.send(_say("refused")) is not None
    clock.advance(0.5)  # one token
    assert alice.send(_say("posted", ref=1)) is None
    assert alice.send(_say("refused")) is not None
    clock.advance(3600)  # a long pause refills the bucket to burst, no more
    for i in range(LIMITS.burst):
        assert alice.send(_say(f"again {i}")) is None
    assert alice.send(_say("refused")) is not None
    assert hub.rooms["lobby"].seq == 2 * LIMITS.burst + 1


def test_say_and_dm_share_one_bucket() -> None:
    """A dm costs a token as a say does."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    _connect(hub, clock, "bob")
    for i in range(LIMITS.burst - 1):
        assert alice.send(_say(f"m{i}")) is None
    assert alice.send({"type": "dm", "to": "bob", "text": "psst", "id": "d"}) is None
    exc = alice.send({"type": "dm", "to": "bob", "text": "psst", "id": "e"})
    assert exc is not None and exc.code is ErrorCode.RATE_LIMITED and exc.ref == "e"
    exc = alice.send(_say("and a say"))
    assert exc is not None and exc.code is ErrorCode.RATE_LIMITED


def test_search_takes_a_token_of_the_say_bucket() -> None:
    """A search costs a token as a say does (it may scan messages the index has not taken)."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    for i in range(LIMITS.burst):
        exc = alice.send({"type": "search", "room": "lobby", "words": "x", "id": i})
        assert exc is not None and exc.code is ErrorCode.HISTORY_UNAVAILABLE  # no history here
    exc = alice.send({"type": "search", "room": "lobby", "words": "x", "id": "s"})
    assert exc is not None and exc.code is ErrorCode.RATE_LIMITED and exc.ref == "s"
    exc = alice.send(_say("and a say"))
    assert exc is not None and exc.code is ErrorCode.RATE_LIMITED


def test_flooding_disconnects_after_max_rate_violations_in_a_row() -> None:
    """The max_rate_violations-th refused message in a row closes the connection."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    for i in range(LIMITS.burst):
        alice.send(_say(f"m{i}"))
    for i in range(LIMITS.max_rate_violations - 1):
        exc = alice.send(_say("flood", ref=i))
        assert exc is not None and exc.code is ErrorCode.RATE_LIMITED and not exc.closes
    exc = alice.send(_say("flood", ref="last"))
    assert exc is not None and exc.code is ErrorCode.RATE_LIMITED and exc.closes
    assert exc.ref == "last"
    assert _codes(alice.sink.final_events()) == [("error", "rate_limited"), ("bye", "rate_limited")]
    assert "alice" not in hub.members


def test_a_posted_message_resets_the_violation_count() -> None:
    """Violations count only in a row: a message that gets through starts the count again."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    for i in range(LIMITS.burst):
        alice.send(_say(f"m{i}"))
    for _round in range(3):
        for _ in range(LIMITS.max_rate_violations - 1):
            exc = alice.send(_say("flood"))
            assert exc is not None and not exc.closes
        clock.advance(0.5)
        assert alice.send(_say("patient")) is None
    assert alice.sink.closed is None


# ---------------------------------------------------------------- quit


def test_quit_marks_the_session_closing_and_later_frames_are_dropped() -> None:
    """After quit the session is closing: nothing it sends afterwards is acted on."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    bob = _connect(hub, clock, "bob")
    alice.received()
    assert alice.send({"type": "quit", "reason": "bye"}) is None
    assert alice.session.closing
    assert alice.session.member is not None and alice.session.member.inflight == 0
    assert alice.send(_say("after quit", ref=1)) is None
    assert alice.send({"type": "teleport"}) is None
    assert alice.received() == [] and bob.received() == []
    assert hub.rooms["lobby"].seq == 0


def test_quit_with_messages_in_flight_waits_for_their_acks() -> None:
    """With a store, inflight counts the messages whose ack is still to come; it reaches 0 in
    the same step that queues the last ack, and those acks reach the client after it left."""
    clock = FakeClock()
    store = FakeStore()
    hub = _hub(clock, store)
    alice = _connect(hub, clock, "alice")
    bob = _connect(hub, clock, "bob")
    alice.received()
    m = alice.session.member
    assert m is not None
    assert alice.send(_say("one", ref=1)) is None
    assert alice.send(_say("two", ref=2)) is None
    assert m.inflight == 2
    assert alice.received() == [] and bob.received() == []  # nothing before it is stored

    assert alice.send({"type": "quit"}) is None
    assert alice.session.closing
    assert alice.send(_say("three", ref=3)) is None  # dropped: not submitted
    assert len(store.queued) == 2

    store.commit(1)
    assert m.inflight == 1  # the connection keeps waiting
    hub.flush()
    assert alice.received() == [Ack(ref=1, room="lobby", seq=1, ts=clock.now)]

    store.commit(1)
    assert m.inflight == 0  # the last ack is queued (not yet written): now it may leave
    hub.remove_member(m, "quit")  # what the connection does when inflight is 0
    hub.flush()
    assert alice.received() == [Ack(ref=2, room="lobby", seq=2, ts=clock.now)]
    assert bob.received() == [
        Message(room="lobby", seq=1, sender="alice", text="one", ts=clock.now),
        Message(room="lobby", seq=2, sender="alice", text="two", ts=clock.now),
        Left(room="lobby", name="alice", reason="quit"),
    ]


def test_history_request_is_answered_with_a_page_and_history_end() -> None:
    """With a store, history sends the stored page, then history_end with the request's id."""
    clock = FakeClock()
    store = FakeStore()
    hub = _hub(clock, store)
    alice = _connect(hub, clock, "alice")
    alice.send(_say("one"))
    alice.send(_say("two"))
    store.commit(2)
    hub.flush()
    alice.received()
    assert alice.send({"type": "history", "room": "lobby", "limit": 1, "id": "p"}) is None
    assert alice.received() == [
        Message(room="lobby", seq=2, sender="alice", text="two", ts=clock.now, history=True),
        HistoryEnd(room="lobby", more=True, ref="p"),
    ]


# ---------------------------------------------------------------- ref threading and replies

IDS = ["r1", 0, 7, 2**63]


def _two(hub: Hub, clock: FakeClock) -> Peer:
    alice = _connect(hub, clock, "alice")
    _connect(hub, clock, "bob")
    alice.received()
    return alice


REPLIES: list[tuple[dict[str, Any], Callable[[Any, float], Event]]] = [
    ({"type": "join", "room": "dev"}, lambda ref, ts: Joined(room="dev", name="alice", ref=ref)),
    (
        {"type": "leave", "room": "Lobby"},
        lambda ref, ts: Left(room="lobby", name="alice", reason="leave", ref=ref),
    ),
    (
        {"type": "nick", "name": "alicia"},
        lambda ref, ts: Renamed(old="alice", new="alicia", ref=ref),
    ),
    (
        {"type": "who", "room": "LOBBY"},
        lambda ref, ts: WhoReply(room="lobby", names=("alice", "bob"), ref=ref),
    ),
    ({"type": "rooms"}, lambda ref, ts: RoomList(rooms=(RoomInfo("lobby", 2),), ref=ref)),
    ({"type": "dm", "to": "BOB", "text": "psst"}, lambda ref, ts: Ack(ref=ref, to="bob")),
    (_say("hi"), lambda ref, ts: Ack(ref=ref, room="lobby", seq=1, ts=ts)),
    (
        _say("waves", room="Lobby") | {"action": True},
        lambda r, ts: Ack(ref=r, room="lobby", seq=1, ts=ts),
    ),
]


@pytest.mark.parametrize("ref", IDS)
@pytest.mark.parametrize(
    ("request_", "reply"), REPLIES, ids=[f"{r['type']}-{i}" for i, (r, _) in enumerate(REPLIES)]
)
def test_every_reply_carries_the_request_id_as_ref(
    request_: dict[str, Any], reply: Callable[[Any, float], Event], ref: Any
) -> None:
    """The answer to a request carries the request's id as ref."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _two(hub, clock)
    assert alice.send(request_ | {"id": ref}) is None
    assert alice.received() == [reply(ref, clock.now)]


ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"type": "join", "room": "#dev"}, "room_invalid"),
    ({"type": "join"}, "bad_request"),
    ({"type": "leave", "room": "dev"}, "not_in_room"),
    ({"type": "nick", "name": "Bob"}, "name_taken"),
    ({"type": "nick", "name": "two words"}, "name_invalid"),
    ({"type": "who", "room": "nowhere"}, "room_invalid"),
    ({"type": "dm", "to": "nobody", "text": "psst"}, "no_such_user"),
    ({"type": "dm", "to": "bob", "text": ""}, "bad_request"),
    ({"type": "dm", "to": "bob", "text": "x" * (LIMITS.max_text + 1)}, "text_too_long"),
    (_say("hi", room="dev"), "not_in_room"),
    (_say("x" * (LIMITS.max_text + 1)), "text_too_long"),
    (_say("a\x00b"), "bad_request"),
    (_say(""), "bad_request"),
    ({"type": "say", "room": 5, "text": "hi"}, "bad_request"),
    ({"type": "say", "room": "lobby", "text": "hi", "action": "yes"}, "bad_request"),
    ({"type": "say", "room": "lobby"}, "bad_request"),
    ({"type": "history", "room": "lobby"}, "history_unavailable"),
    ({"type": "history", "room": "dev"}, "not_in_room"),
    ({"type": "history", "room": "lobby", "limit": -1}, "bad_request"),
    (_hello("carol"), "bad_request"),
    ({"type": "teleport"}, "unknown_type"),
]


@pytest.mark.parametrize("ref", IDS)
@pytest.mark.parametrize(("request_", "code"), ERRORS, ids=[f"{r['type']}-{c}" for r, c in ERRORS])
def test_every_error_carries_the_request_id_as_ref(
    request_: dict[str, Any], code: str, ref: Any
) -> None:
    """A refused request's error carries the request's id as ref, and does not close."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _two(hub, clock)
    exc = alice.send(request_ | {"id": ref})
    assert exc is not None and not exc.closes
    assert alice.received() == [Error(code=code, message=exc.message, ref=ref)]
    assert alice.sink.closed is None and hub.rooms["lobby"].seq == 0


def test_ping_is_answered_with_pong_carrying_the_same_data() -> None:
    """ping gets pong with the same data, and no ref."""
    clock = FakeClock()
    hub = _hub(clock)
    alice = _connect(hub, clock, "alice")
    alice.send({"type": "ping", "data": {"n": [1, 2]}})
    alice.send({"type": "ping"})
    assert alice.send({"type": "pong", "data": 3}) is None
    assert alice.received() == [Pong(data={"n": [1, 2]}), Pong()]
