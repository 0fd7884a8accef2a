"""Length-prefixed framing: a 4-byte unsigned big-endian length, then one UTF-8 JSON object.

Sans-I/O: bytes in, payloads or frames out. The asyncio layer reads the header with
``readexactly(4)``, calls :func:`check_length`, and only then reads the payload, so ``max_frame``
bounds memory before anything is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import orjson

from .errors import ErrorCode, ProtocolError

__all__ = ["HEADER", "FrameDecoder", "check_length", "encode", "frame", "loads"]

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
    (including encoded surrogates), invalid JSON, nesting deeper than 1,024, numbers out of range,
    a value that is not an object, or a missing or non-string ``type``. The frame boundary is
    intact, so this error does not close the connection.
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
        ref = obj.get("id")
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            "payload must have a string member 'type'",
            ref=ref if type(ref) in (str, int) else None,
        )
    return obj


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
