"""The wires of the doors other than the native frames, as sans-I/O
:class:`~asyncchat.interfaces.Codec`\\ s: text lines for netcat and telnet (:mod:`.line`), and
the classic 10-byte-header protocol of the course exercise (:mod:`.classic`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson

from ..errors import ProtocolError
from ..events import ServerEvent, parse_server
from ..framing import HEADER

__all__ = ["server_events"]

log = logging.getLogger("asyncchat.server")


def server_events(frames: bytes) -> list[ServerEvent]:
    """The events of complete native server frames (the server built them: one that does not
    parse is a bug, logged and skipped).

    The hub hands one room's batch, the same bytes object, to every member that shares it: the
    last batch's events are kept (with the batch, so that its identity stays meaningful), and a
    room of door members decodes each batch once, not once per member. Events are frozen."""
    if _last.frames is frames:
        return _last.events
    events = list(_decode(frames))
    _last.frames, _last.events = frames, events
    return events


class _Last:
    """The last batch decoded, and its events."""

    frames: bytes | None = None
    events: list[ServerEvent] = []  # noqa: RUF012 - replaced, never mutated


_last = _Last()


def _decode(frames: bytes) -> Iterator[ServerEvent]:
    unpack = HEADER.unpack_from
    i, end = 0, len(frames)
    while i + 4 <= end:
        (n,) = unpack(frames, i)
        payload = frames[i + 4 : i + 4 + n]
        i += 4 + n
        try:
            yield parse_server(orjson.loads(payload))
        except (ProtocolError, orjson.JSONDecodeError):
            log.exception("a server frame a codec cannot read: %r", payload[:200])
