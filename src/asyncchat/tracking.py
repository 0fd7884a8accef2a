"""What a client has seen of each room, and its catching up after a reconnect, without I/O.

The client library (:mod:`asyncchat.client`) feeds a :class:`Tracker` the room events the server
sends, and tells it when a connection is back in (:meth:`Tracker.reconnected`), lost or closed.
The tracker decides what goes into the application's event stream
(:meth:`Tracker.events_to_emit`) and which pages of history to ask for
(:meth:`Tracker.pages_to_request`); the client only moves them. It imports neither ``asyncio``
nor ``socket``: its tests are plain functions over event values.

Per room (by :func:`~asyncchat.validation.name_key`) it keeps the highest seq seen, delivered or
acknowledged to us (a message at or below it is not delivered again), the seqs of our own
messages acknowledged while catching up (skipped when the replay brings them), and the messages
marked ``history`` until the ``history_end`` after them says whose they are. While catching up
it keeps the rooms whose replay is not over, the events held back meanwhile, and what
:class:`Reconnected` will say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ErrorCode, ProtocolError
from .events import HistoryEnd, Message, Ref, ServerEvent
from .validation import name_key

__all__ = [
    "DEFAULT_MAX_REPLAY",
    "HistoryPage",
    "PageRequest",
    "Reconnected",
    "Reconnecting",
    "Tracker",
    "TrackerEvent",
]

#: Messages of a replay held before its end when the server did not say its page size.
DEFAULT_MAX_REPLAY = 500


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """Client-side event (not on the wire): the connection is lost and the client dials again
    in ``delay`` seconds. ``attempt`` counts from 1 after each loss; ``reason`` says why the
    connection was lost (attempt 1) or why the previous attempt failed."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Client-side event (not on the wire): every room's replay after a reconnect is over.
    ``missed`` messages not seen before were delivered from the replay, just before this event
    (marked ``history``); ``truncated``: some were no longer kept by the server (or, on a
    server without history, anything was missed at all)."""

    missed: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """The answer to a ``history`` request: ``messages`` oldest first; ``more``: messages exist
    beyond them in the direction asked; ``truncated``: some asked for are no longer kept."""

    room: str
    messages: tuple[Message, ...]
    more: bool
    truncated: bool


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Ask for the next page of a room's replay: ``history`` of ``room`` ``after`` that seq."""

    room: str
    after: int


#: What the tracker hands to the event stream, in order.
TrackerEvent = ServerEvent | Reconnected


class _Room:
    """What the client knows of one room's messages."""

    __slots__ = ("own", "pos", "replay")

    def __init__(self) -> None:
        #: The highest seq seen (delivered, or acknowledged to us); None: unknown.
        self.pos: int | None = None
        #: Seqs of our own messages acknowledged while they could not advance ``pos``.
        self.own: set[int] = set()
        #: Messages marked history, kept until their ``history_end`` says whose they are.
        self.replay: list[Message] = []


class Tracker:
    """The room bookkeeping of one client, across its connections.

    ``resume``: the last seq seen in each room, as given to the first hello. No method raises
    unless its docstring says so; outputs wait in :meth:`events_to_emit` and
    :meth:`pages_to_request` until taken."""

    def __init__(self, resume: Mapping[str, int] | None = None) -> None:
        #: Messages of one room's replay held at the most before its ``history_end`` (the
        #: client sets it from ``welcome.limits.history_page_max``).
        self.max_replay = DEFAULT_MAX_REPLAY
        self._rooms: dict[str, _Room] = {}
        #: Our own history requests paging through a resume: ref -> room key.
        self._pages: dict[Ref, str] = {}
        #: While catching up after a reconnect: the rooms whose replay is not over (room key
        #: -> whether it was resumed, so may be paged), the events held back meanwhile, and
        #: what Reconnected will say.
        self._resuming: dict[str, bool] | None = None
        self._held: list[ServerEvent] = []
        self._missed = 0
        self._truncated = False
        #: Whether the server of the current connection keeps history (replays).
        self._history = False
        self._out: list[TrackerEvent] = []
        self._requests: list[PageRequest] = []
        for room, seq in (resume or {}).items():
            self._room(room).pos = seq

    # ------------------------------------------------------------------ state

    @property
    def catching_up(self) -> bool:
        """Between :meth:`reconnected` and the end of every room's replay."""
        return self._resuming is not None

    def position(self, room: str) -> int | None:
        """The highest seq seen in ``room``; None if unknown."""
        state = self._rooms.get(name_key(room))
        return None if state is None else state.pos

    def resume_positions(self, rooms: Iterable[str]) -> dict[str, int]:
        """The ``resume`` of a hello joining ``rooms``: each room's position, leaving out the
        rooms of unknown position (they are joined afresh)."""
        resume = {}
        for room in rooms:
            pos = self.position(room)
            if pos is not None:
                resume[room] = pos
        return resume

    # ------------------------------------------------------------------ outputs

    def events_to_emit(self) -> list[TrackerEvent]:
        """Take the events for the stream, oldest first."""
        out, self._out = self._out, []
        return out

    def pages_to_request(self) -> list[PageRequest]:
        """Take the pages to ask for; tell :meth:`page_sent` the ``id`` of each request."""
        requests, self._requests = self._requests, []
        return requests

    def page_sent(self, ref: Ref, page: PageRequest) -> None:
        """The request for ``page`` went out with id ``ref``; its answer is the tracker's."""
        self._pages[ref] = name_key(page.room)

    def is_page(self, ref: Ref) -> bool:
        """Whether ``ref`` is the id of a page request the tracker still awaits."""
        return ref in self._pages

    # ------------------------------------------------------------------ inputs

    def emit(self, event: ServerEvent) -> None:
        """An event for the stream: held back while catching up; a room message only if it
        was not seen already (nor is our own)."""
        if self._resuming is not None:
            self._held.append(event)
        elif isinstance(event, Message):
            self._deliver(event)
        else:
            self._out.append(event)

    def message(self, message: Message) -> None:
        """A room message from the server: one marked history waits for its ``history_end``.
        Raises ``ProtocolError`` (which closes) when a room's replay grows past
        :attr:`max_replay` messages without its end: a server may send a page at the most."""
        if message.history:  # whose it is, the history_end after it says
            replay = self._room(message.room).replay
            if len(replay) >= self.max_replay:
                raise ProtocolError(
                    ErrorCode.BAD_FRAME,
                    f"the server replayed more than {self.max_replay} messages of "
                    f"{message.room!r} without a history_end",
                    closes=True,
                )
            replay.append(message)
        else:
            self.emit(message)

    def ack(self, room: str, seq: int) -> None:
        """The server stored our message as ``seq`` of ``room``."""
        state = self._room(room)
        if self._resuming is None:
            # Everything of the room before our message reached us before its ack.
            state.pos = seq if state.pos is None else max(state.pos, seq)
        else:
            state.own.add(seq)  # skipped when the replay brings it

    def history_end(self, end: HistoryEnd) -> tuple[Message, ...] | None:
        """The end of a replay or of a history page. Returns its messages when it answers a
        request of the client's (``end.ref`` set, not a page of the tracker's); None when the
        tracker took it (a replay, or a page of its own)."""
        key = name_key(end.room)
        state = self._room(end.room)
        messages, state.replay = state.replay, []
        if end.reset:
            # The server's history does not know the seqs seen before (it was reset): the
            # page starts the room over, and what came between is lost.
            state.pos = None
            state.own.clear()
        if end.ref is not None:
            if end.ref not in self._pages:
                return tuple(messages)
            self._replayed(self._pages.pop(end.ref), messages, end.more, end.truncated)
            return None
        if self._resuming is not None and key in self._resuming:
            self._replayed(key, messages, end.more, end.truncated or end.reset)
            return None
        # The replay of a join: part of the event stream.
        for message in messages:
            self.emit(message)
        if not messages and not end.more and state.pos is None:
            state.pos = 0  # the room has no message yet
        self.emit(end)
        return None

    def page_failed(self, ref: Ref) -> None:
        """The server refused our page request ``ref``: that room's catching up is over.
        Raises ``KeyError`` if ``ref`` is not one (see :meth:`is_page`)."""
        self._replayed(self._pages.pop(ref), [], more=False, truncated=False)

    def reconnected(self, rooms: Iterable[str], resumed: Iterable[str], *, history: bool) -> None:
        """Back in ``rooms`` (the welcome's), having resumed the rooms ``resumed``, on a server
        that keeps ``history`` or not: catch up (every room's replay) before live events flow
        again. Emits :class:`Reconnected` at once if no room has a replay to come."""
        resumed_keys = {name_key(room) for room in resumed}
        self._history = history
        self._resuming = {}
        for room in rooms:
            # A resumed room always ends its replay with history_end (with a server without
            # history too); with history, so does a room joined afresh.
            key = name_key(room)
            if key in resumed_keys or history:
                self._resuming[key] = key in resumed_keys
        if not history:
            # Nothing is replayed, and a server that restarted without history starts its
            # seqs over: what was seen before says nothing about what comes now.
            for state in self._rooms.values():
                state.pos = None
                state.own.clear()
        self._held = []
        self._missed, self._truncated = 0, False
        if not self._resuming:
            self._caught_up()

    def lost(self) -> None:
        """The connection is lost: forget what belonged to it. Held room messages come again
        in the next replay (with history); the other held events are released."""
        for state in self._rooms.values():
            state.replay.clear()
        self._pages.clear()
        if self._resuming is not None:
            self._resuming = None
            held, self._held = self._held, []
            for event in held:
                if not isinstance(event, Message):
                    self._out.append(event)
                elif not self._history:
                    self._deliver(event)

    def close(self) -> None:
        """The client closed: stop catching up, and drop the events held back."""
        self._resuming = None
        self._held = []

    # ------------------------------------------------------------------ internals

    def _room(self, room: str) -> _Room:
        key = name_key(room)
        state = self._rooms.get(key)
        if state is None:
            state = self._rooms[key] = _Room()
        return state

    def _replayed(self, key: str, messages: list[Message], more: bool, truncated: bool) -> None:
        """A page of a reconnect's replay of room ``key``: deliver it, ask for the next page,
        or end the room's catching up."""
        if self._resuming is None:  # pragma: no cover - pages are dropped with the connection
            return
        state = self._rooms[key]
        resumed = self._resuming.get(key, False)
        for message in messages:
            if self._deliver(message):
                self._missed += 1
        if self._history and not messages and not more and state.pos is None:
            state.pos = 0  # the room has no message yet
        # A room joined afresh says truncated when its oldest messages are gone, which says
        # nothing of what the client missed.
        self._truncated = self._truncated or (truncated and resumed)
        if more and messages and resumed:
            assert state.pos is not None  # the messages just delivered or skipped set it
            self._requests.append(PageRequest(messages[-1].room, state.pos))
            return
        self._resuming.pop(key, None)
        if not self._resuming:
            self._caught_up()

    def _caught_up(self) -> None:
        self._resuming = None
        self._out.append(Reconnected(self._missed, self._truncated))
        held, self._held = self._held, []
        for event in held:
            self.emit(event)

    def _deliver(self, message: Message) -> bool:
        """Into the stream unless seen already (or our own); True if it was new."""
        state = self._room(message.room)
        if state.pos is not None and message.seq <= state.pos:
            return False
        state.pos = message.seq
        if state.own:
            mine = message.seq in state.own
            state.own = {s for s in state.own if s > message.seq}
            if mine:
                return False
        self._out.append(message)
        return True
