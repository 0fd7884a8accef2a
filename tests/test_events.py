"""Typed events over byte literals: each round-trips, and malformed input maps to its code."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncchat.errors import ErrorCode, ProtocolError
from asyncchat.events import (
    Ack,
    Bye,
    DirectMessage,
    Error,
    Hello,
    HistoryEnd,
    HistoryRequest,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Nick,
    Ping,
    Pong,
    Quit,
    Renamed,
    RoomInfo,
    RoomList,
    RoomsRequest,
    Say,
    SendDm,
    Welcome,
    WhoReply,
    WhoRequest,
    encode_event,
    parse_client,
    parse_server,
)
from asyncchat.framing import FrameDecoder, loads

CLIENT_EVENTS = [
    Hello(name="bob", version=1),
    Hello(name="bob", version=1, rooms=("lobby", "dev"), resume={"dev": 7}, id="h1"),
    Say(room="lobby", text="hi"),
    Say(room="lobby", text="waves", id=3, action=True),
    SendDm(to="alice", text="psst", id="x"),
    Join(room="dev", id=1),
    Leave(room="dev"),
    Nick(name="robert", id=9),
    WhoRequest(room="lobby"),
    RoomsRequest(id=2),
    HistoryRequest(room="lobby", before=10, limit=5, id=4),
    Ping(data={"n": 1}),
    Pong(data="x"),
    Quit(reason="bye"),
]


SERVER_EVENTS = [
    Welcome(
        name="bob",
        version=1,
        server="asyncchat/0.1.0",
        rooms=("lobby",),
        limits={"max_frame": 65536, "max_text": 4000},
        motd="hello",
    ),
    Message(room="lobby", seq=1, sender="alice", text="hi\nthere", ts=1.5),
    Message(room="lobby", seq=2, sender="alice", text="waves", ts=2.0, action=True, history=True),
    DirectMessage(sender="alice", to="bob", text="psst", ts=3.0),
    Ack(ref=3, room="lobby", seq=4, ts=5.0),
    Ack(ref="d1"),
    Joined(room="lobby", name="bob", ref=1),
    Left(room="lobby", name="bob", reason="disconnect"),
    Renamed(old="bob", new="robert"),
    WhoReply(room="lobby", names=("alice", "bob"), ref=7),
    RoomList(rooms=(RoomInfo("dev", 1), RoomInfo("lobby", 2))),
    HistoryEnd(room="lobby", more=False, truncated=True),
    Error(code="rate_limited", message="slow down", ref=1, retry_after=0.5),
    Ping(),
    Pong(data=[1, 2]),
    Bye(reason="shutdown"),
]


def _payload(data: bytes) -> bytes:
    dec = FrameDecoder(65536)
    dec.feed(data)
    (payload,) = list(dec)
    return payload


@pytest.mark.parametrize("event", CLIENT_EVENTS, ids=lambda e: type(e).__name__)
def test_client_events_round_trip(event: object) -> None:
    """Every client event encodes to one frame and parses back equal."""
    data = encode_event(event)  # type: ignore[arg-type]
    assert parse_client(loads(_payload(data))) == event


@pytest.mark.parametrize("event", SERVER_EVENTS, ids=lambda e: type(e).__name__)
def test_server_events_round_trip(event: object) -> None:
    """Every server event encodes to one frame and parses back equal."""
    data = encode_event(event)  # type: ignore[arg-type]
    assert parse_server(loads(_payload(data))) == event


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", ErrorCode.BAD_FRAME),  # N = 0
        (b"{not json", ErrorCode.BAD_FRAME),
        (b'{"type":"say","text":"\xff"}', ErrorCode.BAD_FRAME),  # invalid UTF-8
        (b'{"type":"say","text":"\xed\xa0\x80"}', ErrorCode.BAD_FRAME),  # encoded surrogate
        (b'{"type":"say","text":"\\ud800"}', ErrorCode.BAD_FRAME),  # lone surrogate escape
        (b"[" * 5000 + b"]" * 5000, ErrorCode.BAD_FRAME),  # deeply nested
        (b'{"type":"say","n":1e999}', ErrorCode.BAD_FRAME),  # number out of range
        (b'{"type":"say","n":NaN}', ErrorCode.BAD_FRAME),
        (b"[1,2]", ErrorCode.BAD_FRAME),  # not an object
        (b'"hello"', ErrorCode.BAD_FRAME),
        (b"{}", ErrorCode.BAD_FRAME),  # no type
        (b'{"type":7}', ErrorCode.BAD_FRAME),
        (b'{"type":"teleport"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type":"say","room":"lobby"}', ErrorCode.BAD_REQUEST),  # missing member
        (b'{"type":"say","room":5,"text":"x"}', ErrorCode.BAD_REQUEST),  # wrong type
        (b'{"type":"say","room":"l","text":"x","action":1}', ErrorCode.BAD_REQUEST),
        (b'{"type":"say","room":"l","text":"x","id":true}', ErrorCode.BAD_REQUEST),
        (b'{"type":"say","room":"l","text":"x","id":[1]}', ErrorCode.BAD_REQUEST),
        (b'{"type":"hello","name":"a","version":"1"}', ErrorCode.BAD_REQUEST),
        (b'{"type":"hello","name":"a","version":1,"rooms":"lobby"}', ErrorCode.BAD_REQUEST),
        (b'{"type":"hello","name":"a","version":1,"resume":{"r":-1}}', ErrorCode.BAD_REQUEST),
        (b'{"type":"history","room":"l","limit":-5}', ErrorCode.BAD_REQUEST),
    ],
)
def test_malformed_payloads_map_to_codes(payload: bytes, code: ErrorCode) -> None:
    """Each class of malformed payload maps to its stable error code, none of which closes."""
    with pytest.raises(ProtocolError) as info:
        parse_client(loads(payload))
    assert info.value.code is code
    assert not info.value.closes


def test_errors_carry_the_request_id_as_ref() -> None:
    """A refused request's error carries its id back as ref."""
    with pytest.raises(ProtocolError) as info:
        parse_client(loads(b'{"type":"say","id":"abc","room":1,"text":"x"}'))
    assert info.value.ref == "abc"
    with pytest.raises(ProtocolError) as info:
        parse_client(loads(b'{"type":"nope","id":12}'))
    assert info.value.ref == 12


def test_unknown_members_are_ignored() -> None:
    """Forward compatibility: members the parser does not know are ignored."""
    event = parse_client(loads(b'{"type":"say","room":"l","text":"x","colour":"red"}'))
    assert event == Say(room="l", text="x")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_payloads_raise_only_protocol_errors(data: bytes) -> None:
    """Any payload either parses or raises ProtocolError; nothing else escapes."""
    with contextlib.suppress(ProtocolError):
        parse_client(loads(data))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(
        [
            "hello",
            "say",
            "dm",
            "join",
            "leave",
            "nick",
            "who",
            "rooms",
            "history",
            "ping",
            "pong",
            "quit",
            "bogus",
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "version",
                "rooms",
                "resume",
                "room",
                "text",
                "id",
                "action",
                "to",
                "before",
                "after",
                "limit",
                "data",
                "reason",
            ]
        ),
        _json,
        max_size=6,
    ),
)
def test_arbitrary_json_objects_raise_only_protocol_errors(type_: str, members: dict) -> None:  # type: ignore[type-arg]
    """Any JSON object with any member values parses or raises ProtocolError."""
    with contextlib.suppress(ProtocolError):
        parse_client({"type": type_, **members})
