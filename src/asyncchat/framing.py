"""Length-prefixed framing: a 4-byte unsigned big-endian length, then one UTF-8 JSON object.

Sans-I/O: bytes in, payloads or frames out. The asyncio layer reads the header with
``readexactly(4)``, calls :func:`check_length`, and only then reads the payload, so ``max_frame``
bounds memory before anything is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from .errors import ErrorCode, ProtocolError

__all__ = [
    "HEADER",
    "MAX_ID",
    "MAX_JSON_DEPTH",
    "FrameDecoder",
    "check_length",
    "encode",
    "frame",
    "loads",
    "safe_ref",
]

#: Characters of a request ``id`` (a string; integers are bounded by JSON's 64-bit range). The
#: server remembers ids (idempotent re-sends) and stores them with messages, so an id is a short
#: token, not a payload: a UUID is 36 characters.
MAX_ID = 128
#: Nesting of arrays and objects in one payload. The one bound for what is parsed and what may
#: be echoed (``ping.data`` comes back in ``pong``; the encoder refuses more than 254 levels).
#: No message of the protocol nests more than 3.
MAX_JSON_DEPTH = 32

HEADER = struct.Struct(">I")
_pack = HEADER.pack
_dumps = orjson.dumps


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return _pack(len(payload)) + payload


def encode(obj: dict[str, Any]) -> bytes:
    """Encode one JSON object as a complete frame."""
    payload = _dumps(obj)
    return _pack(len(payload)) + payload


def check_length(n: int, max_frame: int) -> None:
    """Raise ``ProtocolError(frame_too_large)`` (which closes) if ``n`` exceeds ``max_frame``."""
    if n > max_frame:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE, f"frame of {n} bytes exceeds max_frame={max_frame}"
        )


def loads(payload: bytes) -> dict[str, Any]:
    """Decode a payload into a JSON object with a string ``type``.

    Raises ``ProtocolError(bad_frame)`` for anything else: an empty payload, invalid UTF-8
    (including encoded surrogates), invalid JSON, nesting deeper than ``MAX_JSON_DEPTH``, numbers
    out of range, a value that is not an object, or a missing or non-string ``type``. The frame
    boundary is intact, so this error does not close the connection.
    """
    if not payload:
        raise ProtocolError(ErrorCode.BAD_FRAME, "empty frame")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"payload is not valid UTF-8 JSON: {exc}"
        ) from None
    if type(obj) is not dict:
        raise ProtocolError(ErrorCode.BAD_FRAME, "payload must be a JSON object")
    if type(obj.get("type")) is not str:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, "payload must have a string member 'type'", ref=safe_ref(obj)
        )
    # Counting brackets is C speed and bounds the depth from above: only a payload with many
    # of them is walked.
    if payload.count(b"[") + payload.count(b"{") > MAX_JSON_DEPTH and _depth(obj) > MAX_JSON_DEPTH:
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            f"payload nests deeper than {MAX_JSON_DEPTH} levels",
            ref=safe_ref(obj),
        )
    return obj


def _depth(value: Any) -> int:
    """How deeply ``value`` nests arrays and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def safe_ref(obj: Mapping[str, Any]) -> str | int | None:
    """The request's ``id``, if it is one the server may echo back as ``ref``."""
    ref = obj.get("id")
    return ref if type(ref) is int or (type(ref) is str and len(ref) <= MAX_ID) else None


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes, iterate complete payloads.

    Iteration raises ``ProtocolError(frame_too_large)`` on an oversized header, after which the
    decoder is unusable (the stream cannot be resynchronised).
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def __iter__(self) -> Iterator[bytes]:
        buf = self._buf
        while len(buf) >= 4:
            (n,) = HEADER.unpack_from(buf)
            check_length(n, self.max_frame)
            if len(buf) < 4 + n:
                break
            payload = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            yield payload

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a complete frame."""
        return len(self._buf)
