"""Native server frames as WebSocket text frames, encoded once per batch (sans-I/O).

The hub writes native frames (a 4-byte length, then the JSON payload) to every member's sink.
A WebSocket member gets each of them as one unmasked text frame (RFC 6455 §5.2: FIN, opcode 1,
the payload length in 7, 7+16 or 7+64 bits, no mask from a server), the JSON unchanged. With no
per-message compression the bytes are the same for every member, so :class:`RenderOnce` keeps
the last input and output: the :class:`~asyncchat.fanout.Batcher` hands every member sharing a
room's batch the very same ``bytes`` object in one flush, and all but the first WebSocket member
get it without encoding anything.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Generic, TypeVar

from .framing import HEADER

__all__ = ["RenderOnce", "text_frame_header", "to_text_frames"]

_FIN_TEXT = 0x81
_LEN16 = struct.Struct(">BBH")
_LEN64 = struct.Struct(">BBQ")


def text_frame_header(n: int) -> bytes:
    """The header of an unmasked, final WebSocket text frame of ``n`` payload bytes."""
    if n < 126:
        return bytes((_FIN_TEXT, n))
    if n < 65_536:
        return _LEN16.pack(_FIN_TEXT, 126, n)
    return _LEN64.pack(_FIN_TEXT, 127, n)


def to_text_frames(frames: bytes) -> bytes:
    """One or more native frames (4-byte length + payload each) as WebSocket text frames, one
    per native frame. Raises ``ValueError`` if ``frames`` does not end on a frame boundary."""
    unpack = HEADER.unpack_from
    (n,) = unpack(frames)
    total = len(frames)
    if n + 4 == total:  # the common case: one frame
        return text_frame_header(n) + frames[4:]
    view = memoryview(frames)
    parts: list[bytes | memoryview] = []
    i = 0
    while i < total:
        (n,) = unpack(frames, i)
        end = i + 4 + n
        if end > total:
            raise ValueError("truncated native frame")
        parts.append(text_frame_header(n))
        parts.append(view[i + 4 : end])
        i = end
    return b"".join(parts)


T = TypeVar("T")


class RenderOnce(Generic[T]):
    """``render`` with a one-entry cache keyed by the input's identity: the same ``bytes``
    object handed to many members in a row is rendered once. Holding the last input keeps its
    identity from being reused by another object. (The WebSocket listener renders text frames
    with it; the text doors decode a batch into events with it.)"""

    __slots__ = ("_last_in", "_last_out", "_render", "hits", "misses")

    def __init__(self, render: Callable[[bytes], T]) -> None:
        self._render = render
        self._last_in: bytes | None = None
        self._last_out: T | None = None
        #: Renders saved and done (for the benchmark and the tests).
        self.hits = 0
        self.misses = 0

    def __call__(self, data: bytes) -> T:
        if data is self._last_in and self._last_out is not None:
            self.hits += 1
            return self._last_out
        out = self._render(data)
        self._last_in, self._last_out = data, out
        self.misses += 1
        return out
