"""One client's protocol state on the server: handshake, then requests against the hub (sans-I/O).

The connection layer feeds each payload to :meth:`Session.receive`. A refused request raises
:class:`~asyncchat.errors.ProtocolError`; the connection layer hands it to
:meth:`Session.send_error` and closes only when ``exc.closes``. A valid ``hello`` is returned by
:meth:`Session.receive` instead of answered: the connection runs admission (the asynchronous
steps between ``hello`` and ``welcome``: reclaiming a name from a dead connection today) and
then calls :meth:`Session.accept`, which names the member, sends ``welcome`` and joins its
rooms. The same session serves every transport.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from . import presence, wire
from .errors import ErrorCode, ProtocolError
from .events import (
    MAX_ID,
    PROTOCOL_VERSION,
    Announce,
    AwayRequest,
    BanRequest,
    BansRequest,
    Hello,
    HistoryRequest,
    Join,
    Kick,
    Leave,
    Mute,
    Nick,
    Ping,
    Pong,
    Quit,
    Register,
    RoomsRequest,
    SearchRequest,
    SendDm,
    TopicRequest,
    Unban,
    WhoRequest,
    parse_client,
)
from .framing import loads, safe_ref
from .hub import LOBBY, Hub, Member
from .interfaces import Operations, Sink
from .validation import MAX_NAME, MAX_ROOM, check_room, check_text, name_key, user_key

__all__ = ["SERVER_VERSION", "Session", "TokenBucket"]

log = logging.getLogger("asyncchat.server")

SERVER_VERSION = "asyncchat/0.1.0"
#: Failed ``hello`` attempts on one connection before it is closed (a client guessing names).
MAX_HELLO_ATTEMPTS = 16


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second. :meth:`take` returns 0.0 when a token
    was taken, else the seconds until one will be there."""

    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> float:
        now = self.clock()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class Session:
    """The server side of one connection. ``member`` is set once ``welcome`` was sent;
    ``closing`` once the client said ``quit``."""

    __slots__ = (
        "_admitting",
        "_bucket",
        "_buckets",
        "_hellos",
        "_max_text",
        "_monotonic",
        "_violations",
        "closing",
        "hub",
        "member",
        "motd",
        "ops",
        "peer",
        "quit_reason",
        "sink",
    )

    def __init__(
        self,
        hub: Hub,
        sink: Sink,
        *,
        peer: str = "?",
        motd: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        ops: Operations | None = None,
    ) -> None:
        self.hub = hub
        #: Where ``register`` and the operators' requests go (None: refused as forbidden).
        self.ops = ops
        self.sink = sink
        self.peer = peer
        self.motd = motd
        self.member: Member | None = None
        self.closing = False
        #: The reason given with ``quit``, told to the rooms it leaves.
        self.quit_reason: str | None = None
        self._hellos = 0
        #: The hello being admitted: its rooms by key, and the resume positions by key.
        self._admitting: tuple[Hello, dict[str, str], dict[str, int]] | None = None
        limits = hub.limits
        self._max_text = limits.max_text
        self._monotonic = monotonic
        self._bucket = TokenBucket(limits.rate, limits.burst, monotonic)
        #: The buckets of the other requests that make the server send to others, by kind
        #: (``nick``, ``join`` for join and leave), made at first use.
        self._buckets: dict[str, TokenBucket] | None = None
        #: Refused requests in a row, of any kind.
        self._violations = 0

    # ------------------------------------------------------------------ output

    def send(self, frame: bytes) -> None:
        """Queue a frame for this client, in order with everything the hub queued for it."""
        if self.member is not None:
            self.hub.send(self.member, frame)
        else:
            self.sink.write(frame)

    def send_error(self, exc: ProtocolError) -> None:
        """Queue the ``error`` frame for ``exc``."""
        self.hub.refusals[exc.code] += 1
        self.send(wire.error_for(exc))

    # ------------------------------------------------------------------ input

    def receive(self, payload: bytes) -> Hello | None:
        """Handle one frame's payload. Returns a valid ``hello`` to admit (then call
        :meth:`accept`), else None. Raises ``ProtocolError``."""
        if self.closing:
            return None  # frames after quit are dropped: the connection is closing
        m = self.member
        if m is None:
            try:
                obj = loads(payload)
            except ProtocolError:
                raise ProtocolError(
                    ErrorCode.HELLO_REQUIRED, "the first frame must be a hello"
                ) from None
            return self._hello(obj)
        obj = loads(payload)
        # The hot path first: a plain say, checked without building an event object.
        if obj["type"] == "say":
            self._say(m, obj)
            return None
        event = parse_client(obj)
        match event:
            case SendDm(to=to, text=text, id=ref):
                self._check_text(text, ref)
                self._rate(ref)
                self.hub.dm(m, to, text, ref)
            case Join(room=room, id=ref):
                self._rate(ref, "join")
                self._with_ref(ref, self.hub.join, m, room, ref)
            case Leave(room=room, id=ref):
                self._rate(ref, "join")
                self.hub.leave(m, room, ref)
            case Nick(name=name, id=ref):
                self._rate(ref, "nick")
                if self.ops is not None and (why := self.ops.name_refusal(m, user_key(name))):
                    raise ProtocolError(ErrorCode.NAME_RESERVED, f"{name!r}: {why}", ref=ref)
                self._with_ref(ref, self.hub.rename, m, name, ref)
            case Register() | Kick() | BanRequest() | Unban() | BansRequest() | Announce() | Mute():
                self._rate(event.id)
                if self.ops is None:
                    raise ProtocolError(
                        ErrorCode.FORBIDDEN, f"{event.TYPE!r} is not offered here", ref=event.id
                    )
                self.ops.submit(m, event)
            case WhoRequest(room=room, after=after, limit=limit, id=ref):
                _check_after(after, MAX_NAME, ref)
                page_max = self.hub.limits.list_page_max
                n = page_max if limit is None else min(limit, page_max)
                name, names, more = self._with_ref(ref, self.hub.who_page, room, after, n)
                away = presence.away_of(self.hub, names)
                self.send(wire.who(name, names, ref, away=away, more=more))
            case RoomsRequest(after=after, limit=limit, id=ref):
                _check_after(after, MAX_ROOM, ref)
                page_max = self.hub.limits.list_page_max
                n = page_max if limit is None else min(limit, page_max)
                entries, more = self.hub.room_page(after, n)
                self.send(wire.rooms(entries, ref, more=more))
            case HistoryRequest(room=room, before=before, after=after, limit=limit, id=ref):
                self.hub.history(m, room, before=before, after=after, limit=limit, ref=ref)
            case TopicRequest(room=room, text=None, id=ref):
                presence.topic_reply(self.hub, m, room, ref)
            case TopicRequest(room=room, text=str(text), id=ref):
                self._rate(ref, "topic")  # it is sent to every member of the room
                presence.set_topic(self.hub, m, room, text, ref)
            case AwayRequest(message=message, id=ref):
                self._rate(ref, "away")  # it is sent to everyone who shares a room
                presence.away(self.hub, m, message, ref)
            case SearchRequest(room=room, words=words, limit=limit, id=ref):
                self._rate(ref)  # a scan of what the index has not taken yet may cost ms
                found = self.hub.my_room(m, room, ref)
                self.hub.replay.search(m, found, words, limit=limit, ref=ref)
            case Ping(data=data):
                self.send(wire.pong(data))
            case Pong():
                pass  # any frame proves liveness; the connection layer noted it
            case Quit(reason=reason):
                # The connection leaves once the acks of messages still being stored went out.
                self.closing = True
                self.quit_reason = (reason or "")[: self._max_text] or None
            case _:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"{event.TYPE!r} is not allowed after hello",
                    ref=getattr(event, "id", None),
                )
        return None

    def _say(self, m: Member, obj: dict[str, Any]) -> None:
        room, text, ref, action = obj.get("room"), obj.get("text"), obj.get("id"), obj.get("action")
        if (
            type(room) is not str
            or type(text) is not str
            or (
                ref is not None
                and type(ref) is not int
                and (type(ref) is not str or len(ref) > MAX_ID)
            )
            or (action is not None and type(action) is not bool)
        ):
            # Let the event parser produce the precise message (it raises bad_request).
            parse_client(obj)
        # The common case checked inline; the helpers raise the precise error otherwise.
        if not 0 < len(text) <= self._max_text or "\x00" in text:  # type: ignore[arg-type,operator]
            self._check_text(text, ref)  # type: ignore[arg-type]
        bucket = self._bucket
        now = bucket.clock()
        tokens = bucket.tokens + (now - bucket.stamp) * bucket.rate
        if tokens >= 1.0:
            bucket.tokens = min(bucket.burst, tokens) - 1.0
            bucket.stamp = now
            self._violations = 0
        else:
            self._rate(ref)
        self.hub.say(m, room, text, ref, bool(action))  # type: ignore[arg-type]

    def _check_text(self, text: str, ref: Any) -> None:
        try:
            check_text(text, self._max_text)
        except ProtocolError as exc:
            exc.ref = ref
            raise

    def _rate(self, ref: Any, kind: str = "say") -> None:
        """Take a token of ``kind``'s bucket (``say``: messages, ``say`` and ``dm``; ``nick``;
        ``join``: join and leave; ``topic``; ``away``), or raise ``rate_limited`` with
        ``retry_after``; the ``max_rate_violations``-th refusal in a row closes the
        connection."""
        if kind == "say":
            bucket = self._bucket
        else:
            buckets = self._buckets
            if buckets is None:
                buckets = self._buckets = {}
            found = buckets.get(kind)
            if found is None:
                limits = self.hub.limits
                rate, burst = getattr(limits, f"{kind}_rate"), getattr(limits, f"{kind}_burst")
                found = buckets[kind] = TokenBucket(rate, burst, self._monotonic)
            bucket = found
        wait = bucket.take()
        if wait == 0.0:
            self._violations = 0
            return
        self._violations += 1
        over = self._violations >= self.hub.limits.max_rate_violations
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            "flooding: disconnected"
            if over
            else "slow down: message not posted"
            if kind == "say"
            else f"slow down: too many {kind} requests",
            ref=ref,
            retry_after=round(wait, 3),
            closes=over,
        )

    @staticmethod
    def _with_ref(ref: Any, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except ProtocolError as exc:
            if exc.ref is None:
                exc.ref = ref
            raise

    def _hello(self, obj: dict[str, Any]) -> Hello:
        """Check a frame before ``welcome``: it must be a valid ``hello``."""
        if obj["type"] != "hello":
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "the first frame must be hello")
        self._hellos += 1
        if self._hellos > MAX_HELLO_ATTEMPTS:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "too many hello attempts", closes=True, ref=safe_ref(obj)
            )
        hello = parse_client(obj)
        assert isinstance(hello, Hello)
        ref = hello.id
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.VERSION_UNSUPPORTED,
                f"this server speaks version {PROTOCOL_VERSION}",
                ref=ref,
            )
        resume = hello.resume or {}
        rooms = list(hello.rooms) if hello.rooms is not None else list(resume) or [LOBBY]
        rooms += resume  # resuming a room rejoins it
        wanted: dict[str, str] = {}  # one entry per room, however it is spelled
        for room in rooms:
            self._with_ref(ref, check_room, room)
            wanted.setdefault(name_key(room), room)
        limits = self.hub.limits
        if len(wanted) > limits.max_rooms_per_client:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a client may be in at most {limits.max_rooms_per_client} rooms",
                ref=ref,
            )
        after = {name_key(r): seq for r, seq in resume.items()}
        self._admitting = (hello, wanted, after)
        return hello

    def accept(self, hello: Hello) -> Member:
        """Admission passed: name the member, send ``welcome``, join its rooms (replaying
        their history). Raises ``name_invalid`` or ``name_taken``."""
        assert self._admitting is not None and self._admitting[0] is hello
        _, wanted, after = self._admitting
        ref = hello.id
        m: Member = self._with_ref(ref, self.hub.add_member, hello.name, self.sink)
        self.member = m
        self._admitting = None
        existing = self.hub.rooms
        joined = [existing[k].name if k in existing else r for k, r in wanted.items()]
        self.send(
            wire.welcome(
                m.name,
                joined,
                self.hub.limits.announced(),
                server=SERVER_VERSION,
                motd=self.motd,
                history=self.hub.broker.history,
                ref=ref,
            )
        )
        log.info("%s connected from %s", m.name, self.peer)
        budget = self.hub.replay.budget()  # shared by every room's replay
        for key, room in wanted.items():
            self.hub.join(m, room, resume_after=after.get(key), budget=budget)
        return m


def _check_after(after: str | None, most: int, ref: Any) -> None:
    """A page's ``after`` is a name or a room name: longer is ``bad_request`` (its key would
    be work for nothing)."""
    if after is not None and len(after) > most:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"after is at most {most} characters (a name)", ref=ref
        )
