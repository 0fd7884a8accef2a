"""The wires of the doors other than the native frames, as sans-I/O
:class:`~asyncchat.interfaces.Codec`\\ s: text lines for netcat and telnet (:mod:`.line`), and
the classic 10-byte-header protocol of the course exercise (:mod:`.classic`)."""

from __future__ import annotations

import logging

import orjson

from ..errors import ProtocolError
from ..events import ServerEvent, parse_server
from ..framing import HEADER
from ..wsframe import RenderOnce

__all__ = ["server_events"]

log = logging.getLogger("asyncchat.server")


def _decode(frames: bytes) -> list[ServerEvent]:
    """The events of complete native server frames (the server built them: one that does not
    parse is a bug, logged and skipped)."""
    events = []
    unpack = HEADER.unpack_from
    i, end = 0, len(frames)
    while i + 4 <= end:
        (n,) = unpack(frames, i)
        payload = frames[i + 4 : i + 4 + n]
        i += 4 + n
        try:
            events.append(parse_server(orjson.loads(payload)))
        except (ProtocolError, orjson.JSONDecodeError):
            log.exception("a server frame a codec cannot read: %r", payload[:200])
    return events


#: The events of complete native server frames (see ``_decode``). The hub hands one room's
#: batch, the same bytes object, to every member that shares it: the last batch's events are
#: kept, and a room of door members decodes each batch once, not once per member. Events are
#: frozen, so the members' codecs share them.
server_events = RenderOnce(_decode)
