"""The in-process broker: per-room seq, the idempotency window, and (optionally) a store.

Without a store a published message is delivered at once, in the same call: the hub fans it out
and acknowledges it before :meth:`LocalBroker.publish` returns. With a store it is submitted,
and delivered when the store reports it committed, so that an acknowledged message is stored.

The idempotency window lives here, beside the store, because it must hold across restarts
(its ids are reloaded from the store) and, in a cluster, across nodes (the Redis broker keeps
its own). A re-send of a ``client_key`` seen within ``idempotency_window`` seconds is not posted
again: the original seq and ts are delivered back (not fresh), and a re-send that arrives while
the first copy is being stored waits for it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

from ..interfaces import Deliver, HistoryStore, Page, Record, Refuse, RoomTopic
from ..limits import DEFAULT_IDEMPOTENCY_WINDOW

__all__ = ["MAX_REMEMBERED_IDS", "LocalBroker"]

T = TypeVar("T")

#: Re-sendable message ids remembered at the most (the window is also bounded in time by
#: ``idempotency_window``): about 150 bytes each.
MAX_REMEMBERED_IDS = 100_000

#: ``Record`` from a tuple of all its fields, without the generated ``__new__``'s argument
#: handling: one is made per message.
_record = partial(tuple.__new__, Record)

#: What the window remembers of a stored message: (room name, seq, ts); or, while the first
#: copy is being stored, the tokens of the re-sends waiting for it.
_Seen = tuple[str, int, float] | list[Any]


def _unattached(record: Record, token: Any, fresh: bool) -> None:
    raise RuntimeError("the broker delivers to nobody: attach() the hub first")


class LocalBroker(Generic[T]):
    """Orders room messages in this process; keeps them in ``store`` when given (opened by
    :meth:`start`). ``clock`` gives message timestamps (Unix seconds)."""

    def __init__(
        self,
        store: HistoryStore[T] | None = None,
        *,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.window = idempotency_window
        self.clock = clock
        self._deliver: Deliver[T] = _unattached
        self._refuse: Refuse[T] | None = None
        #: The last seq of every room that ever had a message (a room never repeats one).
        self._seq: dict[str, int] = {}
        self._recent: OrderedDict[str, _Seen] = OrderedDict()
        #: Before this time (Unix s) nothing in ``_recent`` is older than the window.
        self._expires = 0.0
        #: Every room's topic (by key): kept while the server runs, and in the store.
        self._topics: dict[str, RoomTopic] = {}

    @property
    def history(self) -> bool:
        return self.store is not None

    @property
    def failed(self) -> BaseException | None:
        return None if self.store is None else self.store.failed

    def attach(self, deliver: Deliver[T], refuse: Refuse[T] | None = None) -> None:
        self._deliver = deliver
        self._refuse = refuse

    def start(
        self, call_soon: Callable[..., Any], call_soon_threadsafe: Callable[..., Any]
    ) -> None:
        """Open the store: seq continues from it, and ids re-sent within the window are
        recognised across the restart."""
        store = self.store
        if store is None:
            return
        store.open(self._committed, call_soon, call_soon_threadsafe, self._lost)
        self._seq = store.last_seqs()
        self._topics = store.topics()
        recent = store.recent_client_keys(self.clock() - self.window)
        for key, (_room, name, seq, ts) in sorted(recent.items(), key=lambda kv: kv[1][3]):
            self._recent[key] = (name, seq, ts)

    def last_seq(self, room: str) -> int:
        return self._seq.get(room, 0)

    def publish(
        self,
        room: str,
        name: str,
        sender: str,
        text: str,
        action: bool,
        client_key: str | None,
        token: T,
    ) -> int:
        deliver = self._deliver
        if client_key is not None:
            seen = self._recent.get(client_key)
            if seen is not None:
                if isinstance(seen, list):
                    seen.append(token)  # the first copy is being stored: acked with it
                    return 0
                name, seq, ts = seen
                deliver(Record(room, name, seq, sender, "", ts), token, False)
                return seq
        seq = self._seq[room] = self._seq.get(room, 0) + 1
        ts = self.clock()
        record = _record((room, name, seq, sender, text, ts, action, client_key))
        store = self.store
        if store is not None:
            store.submit(record, token)  # raises StoreError once the store has failed
            if client_key is not None:
                self._remember(client_key, [], ts)
            return seq
        if client_key is not None:
            self._remember(client_key, (name, seq, ts), ts)
        deliver(record, token, True)
        return seq

    def _committed(self, batch: list[tuple[Record, T]]) -> None:
        """The store reports stored messages, in order: deliver each, and the re-sends that
        waited for it."""
        deliver = self._deliver
        recent = self._recent
        for record, token in batch:
            deliver(record, token, True)
            key = record.client_key
            if key is not None:
                waiting = recent.get(key)
                if isinstance(waiting, list):
                    # Remembered from now on as stored, in the place publish gave it (the
                    # window is in ts order; forgotten meanwhile only past its count bound).
                    recent[key] = (record.name, record.seq, record.ts)
                    for other in waiting:
                        deliver(record._replace(text=""), other, False)

    def _lost(self, batch: list[tuple[Record, T]]) -> None:
        """The store failed before storing ``batch``: its senders, and the re-sends waiting
        for it, are refused (never acknowledged) and their ids forgotten."""
        refuse = self._refuse
        for record, token in batch:
            waiting = self._recent.pop(record.client_key, None) if record.client_key else None
            if refuse is not None:
                refuse(token, "the history store failed: not stored")
                for other in waiting if isinstance(waiting, list) else ():
                    refuse(other, "the history store failed: not stored")

    def _remember(self, key: str, value: _Seen, now: float) -> None:
        """Remember ``key`` (new keys go last: the window is in time order), and forget what
        is older than the window or beyond MAX_REMEMBERED_IDS, looking only when it may be."""
        recent = self._recent
        recent[key] = value
        if len(recent) > MAX_REMEMBERED_IDS:  # a busy server's steady state: one in, one out
            recent.popitem(last=False)
        if now < self._expires:
            return
        horizon = now - self.window
        while recent:
            oldest = next(iter(recent.values()))
            if isinstance(oldest, list) or oldest[2] >= horizon:
                break
            recent.popitem(last=False)
        # Nothing can expire before the oldest remembered stored message does (one in flight
        # is looked at again next time).
        first = next(iter(recent.values()), None)
        self._expires = first[2] + self.window if isinstance(first, tuple) else now

    def page(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int
    ) -> Page:
        if self.store is None:
            return Page([], False, 0)
        return self.store.page(room, before=before, after=after, limit=limit)

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        if self.store is None:
            return []
        return self.store.search(room, words, before=before, limit=limit)

    def topic(self, room: str) -> RoomTopic | None:
        return self._topics.get(room)

    def set_topic(self, room: str, name: str, topic: RoomTopic | None) -> None:
        if topic is None:
            self._topics.pop(room, None)
        else:
            self._topics[room] = topic
        if self.store is not None:
            self.store.set_topic(room, name, topic)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
