"""Framing over byte literals: the length prefix, the header check, the incremental decoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncchat.errors import ErrorCode, ProtocolError
from asyncchat.events import Message
from asyncchat.framing import FrameDecoder, check_length, encode, frame


def test_frame_layout() -> None:
    """A frame is a 4-byte big-endian length and the JSON payload."""
    assert encode({"type": "ping"}) == b'\x00\x00\x00\x0f{"type":"ping"}'
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert Message(room="r", seq=1, sender="a", text="t", ts=1.0).to_wire() == {
        "type": "message",
        "room": "r",
        "seq": 1,
        "from": "a",
        "text": "t",
        "ts": 1.0,
    }


def test_decoder_handles_split_and_joined_frames() -> None:
    """Frames split at any byte, or several in one read, come out whole and in order."""
    data = encode({"type": "ping", "data": 1}) + encode({"type": "pong"}) + frame(b"")
    for cut in range(len(data) + 1):
        dec = FrameDecoder(65536)
        out = []
        dec.feed(data[:cut])
        out += list(dec)
        dec.feed(data[cut:])
        out += list(dec)
        assert out == [b'{"type":"ping","data":1}', b'{"type":"pong"}', b""]
        assert dec.pending == 0


def test_oversize_header_is_refused_before_buffering() -> None:
    """A length above max_frame raises frame_too_large, which closes."""
    dec = FrameDecoder(4096)
    dec.feed(b"\x00\x00\x10\x01")
    with pytest.raises(ProtocolError) as info:
        list(dec)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE and info.value.closes
    check_length(4096, 4096)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=10), st.integers(min_value=1, max_value=9))
def test_decoder_reassembles_any_chunking(payloads: list[bytes], step: int) -> None:
    """The decoder yields the same payloads however the byte stream is chunked."""
    data = b"".join(frame(p) for p in payloads)
    dec = FrameDecoder(65536)
    out: list[bytes] = []
    for i in range(0, len(data), step):
        dec.feed(data[i : i + step])
        out += list(dec)
    assert out == payloads
