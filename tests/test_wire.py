"""The server-frame encoders of ``asyncchat.wire``, checked against the typed events they must
parse back to: one encoder per frame, and its output is exactly the event (habit 13)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncchat import wire
from asyncchat.errors import ErrorCode, ProtocolError
from asyncchat.events import (
    MAX_ID,
    PROTOCOL_VERSION,
    Ack,
    Away,
    AwayRequest,
    BanInfo,
    BanList,
    Bye,
    DirectMessage,
    Error,
    Event,
    HistoryEnd,
    Joined,
    Left,
    Message,
    Ping,
    Pong,
    Renamed,
    RoomInfo,
    RoomList,
    SearchRequest,
    Topic,
    TopicRequest,
    Welcome,
    WhoReply,
    parse_client,
    parse_server,
)
from asyncchat.framing import HEADER, loads

LIMITS = {"max_frame": 65536, "max_text": 4000, "rate": 2.0}

#: (encoder name, thunk building the frame, the event it must parse back to). Every encoder
#: appears at least once with its optional members left out and once with all of them set.
CASES: list[tuple[str, Callable[[], bytes], Event]] = [
    (
        "welcome",
        lambda: wire.welcome("bob", ["lobby"], LIMITS, server="asyncchat/0.1.0"),
        Welcome(
            name="bob",
            version=PROTOCOL_VERSION,
            server="asyncchat/0.1.0",
            rooms=("lobby",),
            limits=LIMITS,
        ),
    ),
    (
        "welcome",
        lambda: wire.welcome(
            "bob", ["lobby", "Dev"], LIMITS, server="s/1", motd="hi", history=True, ref="h1"
        ),
        Welcome(
            name="bob",
            version=PROTOCOL_VERSION,
            server="s/1",
            rooms=("lobby", "Dev"),
            limits=LIMITS,
            motd="hi",
            history=True,
            ref="h1",
        ),
    ),
    (
        "message",
        lambda: wire.message("lobby", 1, "alice", "hi\nthere", 1.5),
        Message(room="lobby", seq=1, sender="alice", text="hi\nthere", ts=1.5),
    ),
    (
        "message",
        lambda: wire.message("lobby", 2, "alice", "waves", 2.0, action=True, history=True),
        Message(
            room="lobby", seq=2, sender="alice", text="waves", ts=2.0, action=True, history=True
        ),
    ),
    (
        "dm",
        lambda: wire.dm("alice", "bob", "psst", 3.0),
        DirectMessage(sender="alice", to="bob", text="psst", ts=3.0),
    ),
    ("ack", lambda: wire.ack(None), Ack()),
    ("ack", lambda: wire.ack("d1"), Ack(ref="d1")),
    (
        "ack",
        lambda: wire.ack(3, "lobby", 4, 5.0),
        Ack(ref=3, room="lobby", seq=4, ts=5.0),
    ),
    (
        "ack",
        lambda: wire.ack(None, "lobby", 4, 5.0),
        Ack(room="lobby", seq=4, ts=5.0),
    ),
    (
        "ack",
        lambda: wire.ack("d2", to="Bob", away="at lunch"),
        Ack(ref="d2", to="Bob", away="at lunch"),
    ),
    ("joined", lambda: wire.joined("lobby", "bob"), Joined(room="lobby", name="bob")),
    ("joined", lambda: wire.joined("lobby", "bob", 1), Joined(room="lobby", name="bob", ref=1)),
    (
        "left",
        lambda: wire.left("lobby", "bob", "disconnect"),
        Left(room="lobby", name="bob", reason="disconnect"),
    ),
    (
        "left",
        lambda: wire.left("lobby", "bob", "leave", "x"),
        Left(room="lobby", name="bob", reason="leave", ref="x"),
    ),
    (
        "left",
        lambda: wire.left("lobby", "bob", "quit", message="gone fishing"),
        Left(room="lobby", name="bob", reason="quit", message="gone fishing"),
    ),
    ("renamed", lambda: wire.renamed("bob", "robert"), Renamed(old="bob", new="robert")),
    (
        "renamed",
        lambda: wire.renamed("bob", "robert", 5),
        Renamed(old="bob", new="robert", ref=5),
    ),
    ("who", lambda: wire.who("lobby", []), WhoReply(room="lobby", names=())),
    (
        "who",
        lambda: wire.who("lobby", ["alice", "bob"], 7),
        WhoReply(room="lobby", names=("alice", "bob"), ref=7),
    ),
    (
        "who",
        lambda: wire.who("lobby", ["alice", "bob"], away={"bob": "at lunch"}),
        WhoReply(room="lobby", names=("alice", "bob"), away={"bob": "at lunch"}),
    ),
    ("rooms", lambda: wire.rooms([]), RoomList(rooms=())),
    ("bans", lambda: wire.bans([]), BanList(bans=())),
    (
        "bans",
        lambda: wire.bans(
            [
                {
                    "id": 1,
                    "kind": "ip",
                    "value": "10.0.0.0/8",
                    "reason": "spam",
                    "by": "op",
                    "created": 5.0,
                    "until": 65.0,
                },
                {
                    "id": 2,
                    "kind": "name",
                    "value": "mallory",
                    "reason": "",
                    "by": "*server",
                    "created": 6.0,
                    "until": None,
                },
            ],
            ref="b",
        ),
        BanList(
            bans=(
                BanInfo(1, "ip", "10.0.0.0/8", "spam", "op", 5.0, 65.0),
                BanInfo(2, "name", "mallory", "", "*server", 6.0),
            ),
            ref="b",
        ),
    ),
    (
        "rooms",
        lambda: wire.rooms([("dev", 1), ("lobby", 2)], "r"),
        RoomList(rooms=(RoomInfo("dev", 1), RoomInfo("lobby", 2)), ref="r"),
    ),
    ("history_end", lambda: wire.history_end("lobby", False), HistoryEnd(room="lobby", more=False)),
    (
        "history_end",
        lambda: wire.history_end("lobby", True, truncated=False),
        HistoryEnd(room="lobby", more=True, truncated=False),
    ),
    (
        "history_end",
        lambda: wire.history_end("lobby", False, truncated=True, reset=True, ref=9),
        HistoryEnd(room="lobby", more=False, truncated=True, reset=True, ref=9),
    ),
    (
        "error",
        lambda: wire.error("not_in_room", "you are not in 'x'"),
        Error(code="not_in_room", message="you are not in 'x'"),
    ),
    (
        "error",
        lambda: wire.error("rate_limited", "slow down", ref=1, retry_after=0.5),
        Error(code="rate_limited", message="slow down", ref=1, retry_after=0.5),
    ),
    (
        "error_for",
        lambda: wire.error_for(ProtocolError(ErrorCode.BAD_FRAME, "no")),
        Error(code="bad_frame", message="no"),
    ),
    (
        "error_for",
        lambda: wire.error_for(
            ProtocolError(ErrorCode.RATE_LIMITED, "slow down", ref="s", retry_after=0.25)
        ),
        Error(code="rate_limited", message="slow down", ref="s", retry_after=0.25),
    ),
    ("ping", lambda: wire.ping(), Ping()),
    ("ping", lambda: wire.ping({"n": 1}), Ping(data={"n": 1})),
    ("pong", lambda: wire.pong(), Pong()),
    ("pong", lambda: wire.pong([1, 2]), Pong(data=[1, 2])),
    ("bye", lambda: wire.bye("shutdown"), Bye(reason="shutdown")),
    (
        "bye",
        lambda: wire.bye("kicked", "by the operator"),
        Bye(reason="kicked", message="by the operator"),
    ),
    ("topic", lambda: wire.topic("dev", None), Topic(room="dev")),
    (
        "topic",
        lambda: wire.topic("dev", "release day", "alice", 5.0, ref="t"),
        Topic(room="dev", text="release day", by="alice", ts=5.0, ref="t"),
    ),
    ("away", lambda: wire.away("bob", None), Away(name="bob")),
    (
        "away",
        lambda: wire.away("bob", "at lunch", 9),
        Away(name="bob", message="at lunch", ref=9),
    ),
]


def _payload(frame: bytes) -> bytes:
    """The payload of one complete frame, checking that the prefix is its length."""
    (n,) = HEADER.unpack_from(frame)
    payload = frame[HEADER.size :]
    assert n == len(payload), f"the prefix says {n} bytes, the payload has {len(payload)}"
    return payload


def _decode(frame: bytes) -> tuple[dict[str, Any], Event]:
    obj = loads(_payload(frame))
    return obj, parse_server(obj)


@pytest.mark.parametrize(
    ("encoder", "build", "expected"),
    CASES,
    ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)],
)
def test_encoder_output_parses_back_to_its_event(
    encoder: str, build: Callable[[], bytes], expected: Event
) -> None:
    """Each encoder's frame is length-prefixed, has "type" first, and parses to its event."""
    obj, event = _decode(build())
    assert next(iter(obj)) == "type"
    assert obj["type"] == expected.TYPE
    assert event == expected


def test_every_encoder_is_covered() -> None:
    """A new encoder in asyncchat.wire needs its case here."""
    assert set(wire.__all__) == {name for name, _, _ in CASES}


def test_topic_away_and_search_requests_parse() -> None:
    """topic, away and search requests parse, their optional members optional."""
    assert parse_client({"type": "topic", "room": "dev"}) == TopicRequest(room="dev")
    assert parse_client({"type": "topic", "room": "dev", "text": "", "id": 1}) == TopicRequest(
        room="dev", text="", id=1
    )
    assert parse_client({"type": "away"}) == AwayRequest()
    assert parse_client({"type": "away", "message": "brb"}) == AwayRequest(message="brb")
    assert parse_client({"type": "search", "room": "dev", "words": "x y", "limit": 5}) == (
        SearchRequest(room="dev", words="x y", limit=5)
    )


def test_history_end_truncated_none_is_left_out() -> None:
    """history_end leaves truncated out when None, and writes it when False or True."""
    assert "truncated" not in loads(_payload(wire.history_end("r", False)))
    assert loads(_payload(wire.history_end("r", False, truncated=False)))["truncated"] is False


# ---------------------------------------------------------------- properties

# Any id a request may carry (events.MAX_ID characters at the most) comes back as it was.
_refs = st.none() | st.text(max_size=MAX_ID) | st.integers(min_value=-(2**63), max_value=2**64 - 1)
_seqs = st.integers(min_value=0, max_value=2**63 - 1)
_ts = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(room=st.text(), seq=_seqs, sender=st.text(), text=st.text(), ts=_ts, flags=st.booleans())
def test_message_encoder_round_trips_any_text(
    room: str, seq: int, sender: str, text: str, ts: float, flags: bool
) -> None:
    """message parses back to the same Message whatever the text, names, seq and ts."""
    obj, event = _decode(wire.message(room, seq, sender, text, ts, flags, not flags))
    assert next(iter(obj)) == "type"
    assert event == Message(
        room=room, seq=seq, sender=sender, text=text, ts=ts, action=flags, history=not flags
    )


@settings(max_examples=300, deadline=None)
@given(ref=_refs, room=st.none() | st.text(), seq=_seqs, ts=_ts)
def test_ack_encoder_round_trips_any_id(
    ref: str | int | None, room: str | None, seq: int, ts: float
) -> None:
    """ack parses back to the same Ack for any request id, with or without room/seq/ts."""
    if room is None:
        frame, expected = wire.ack(ref), Ack(ref=ref)
    else:
        frame, expected = wire.ack(ref, room, seq, ts), Ack(ref=ref, room=room, seq=seq, ts=ts)
    obj, event = _decode(frame)
    assert next(iter(obj)) == "type"
    assert event == expected
