"""The two ways the SQLite store writes: on the event loop's thread, or on a writer thread.

Both gather the records submitted during one event-loop iteration and commit them as one group
(no timer: the busier the server, the bigger the groups), then report each committed batch to
the store's ``_committed`` on the loop's thread, and only then is a room message fanned out and
acknowledged. They differ in where the commit runs:

- :class:`LoopWriter` (``durability="process"``, the default) commits on the loop's thread at
  the end of the iteration. A ``synchronous=NORMAL`` commit in WAL mode writes the WAL and
  returns without an fsync: tens of microseconds plus a few per row, less than what handing the
  batch to another thread costs on a busy machine (a wake-up each way, and the GIL passed back
  and forth around every SQLite call, which on one core waits up to the switch interval).
- :class:`ThreadWriter` (``durability="power"``) commits on its own thread, because the fsync of
  a ``synchronous=FULL`` commit must not block the loop: one cross-thread wake-up per commit,
  never one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ..interfaces import Record, RoomTopic
from ..stats import Histogram

__all__ = [
    "MAX_BATCH",
    "PRUNE_EVERY",
    "PRUNE_PERIOD",
    "LoopWriter",
    "Store",
    "ThreadWriter",
    "Topic",
]

log = logging.getLogger("asyncchat.storage")

#: Records committed in one transaction at the most: big enough to amortise a commit, small
#: enough that the fan-out of one batch is not a burst that delays everything else.
MAX_BATCH = 256
#: Retention runs after this many stored messages, or ...
PRUNE_EVERY = 1_000
#: ... this many seconds, whichever comes first (an idle server still forgets what is too old).
PRUNE_PERIOD = 60.0

Batch = list[tuple[Record, Any]]


class Topic(NamedTuple):
    """A room's topic to store (None: cleared)."""

    room: str
    name: str
    topic: RoomTopic | None


class Store(Protocol):
    """What a writer needs of the store it writes for (the writer's side of SQLiteStore)."""

    commit_latency: Histogram

    @property
    def failed(self) -> BaseException | None: ...

    def write_batch(self, batch: Batch) -> bool: ...

    def write_topic(self, item: Topic) -> None: ...

    def retention(self) -> None: ...

    def lost(self, batch: Batch) -> None: ...

    def _committed(self, batch: Batch) -> None: ...


class _Pruning:
    """When retention is due: every PRUNE_EVERY messages or PRUNE_PERIOD seconds."""

    def __init__(self) -> None:
        self.count = 0
        self.last = time.monotonic()

    def due(self, stored: int) -> bool:
        self.count += stored
        if self.count >= PRUNE_EVERY or time.monotonic() - self.last > PRUNE_PERIOD:
            self.count, self.last = 0, time.monotonic()
            return True
        return False


class LoopWriter:
    """Commits on the event loop's thread, once per iteration."""

    def __init__(self, store: Store, call_soon: Callable[..., Any]) -> None:
        self.store = store
        self._call_soon = call_soon
        self._pending: Batch = []
        self._scheduled = False
        self._pruning = _Pruning()
        store.retention()  # retention applies from the start, not from the first message
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            PRUNE_PERIOD, self._idle_prune
        )

    def submit(self, record: Record, token: Any) -> None:
        self._pending.append((record, token))
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self._commit_pending)

    def _commit_pending(self, *, report: bool = True) -> None:
        self._scheduled = False
        store = self.store
        while self._pending and store.failed is None:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            started = time.monotonic()
            if not store.write_batch(batch):  # the store failed: never acknowledged
                lost, self._pending = batch + self._pending, []
                store.lost(lost)
                return
            store.commit_latency.observe(time.monotonic() - started)
            if report:
                store._committed(batch)
            if self._pruning.due(len(batch)):
                store.retention()

    def topic(self, item: Topic) -> None:
        self._commit_pending()  # in order with the messages submitted before it
        self.store.write_topic(item)

    def _idle_prune(self) -> None:
        self.store.retention()
        self._timer = asyncio.get_running_loop().call_later(PRUNE_PERIOD, self._idle_prune)

    def close(self) -> None:
        """Commit what is pending (stored, though no longer acknowledged)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._commit_pending(report=False)


_STOP = object()


class ThreadWriter:
    """Commits on a writer thread; the loop hands it one batch at a time."""

    def __init__(
        self,
        store: Store,
        call_soon: Callable[..., Any],
        call_soon_threadsafe: Callable[..., Any],
    ) -> None:
        self.store = store
        self._call_soon = call_soon
        self._call = call_soon_threadsafe
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # The loop-thread side of the handoff: records not yet given to the writer, whether it
        # is committing a batch now, and whether a handoff is scheduled for this iteration.
        self._pending: Batch = []
        self._busy = False
        self._scheduled = False
        self._handed_at = 0.0
        self._thread = threading.Thread(target=self._run, name="asyncchat-history", daemon=True)
        self._thread.start()

    def submit(self, record: Record, token: Any) -> None:
        self._pending.append((record, token))
        if not self._busy and not self._scheduled:
            self._scheduled = True
            self._call_soon(self._handoff)

    def _handoff(self) -> None:
        self._scheduled = False
        if self._busy or not self._pending:
            return
        batch = self._pending[:MAX_BATCH]
        del self._pending[:MAX_BATCH]
        self._busy = True
        self._handed_at = time.monotonic()
        self._queue.put(batch)

    def _done(self, batch: Batch) -> None:
        """On the loop's thread: the writer finished ``batch``; hand it the next one."""
        self.store.commit_latency.observe(time.monotonic() - self._handed_at)
        self._busy = False
        if self._pending:
            self._handoff()
        self.store._committed(batch)

    def _failed(self, batch: Batch) -> None:
        """On the loop's thread: the store failed on ``batch``; it and what waited are lost."""
        lost, self._pending = batch + self._pending, []
        self.store.lost(lost)

    def topic(self, item: Topic) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        store = self.store
        pruning = _Pruning()
        store.retention()
        while True:
            try:
                batch = self._queue.get(timeout=PRUNE_PERIOD)
            except queue.Empty:  # an idle server still forgets what is too old
                store.retention()
                continue
            if batch is _STOP:
                return
            if isinstance(batch, Topic):
                store.write_topic(batch)
                continue
            if not store.write_batch(batch):
                with contextlib.suppress(RuntimeError):
                    self._call(self._failed, batch)
                return
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                self._call(self._done, batch)
            if pruning.due(len(batch)):
                store.retention()

    def close(self) -> None:
        """Commit what is pending (stored, though no longer acknowledged) and stop."""
        if self._pending and self.store.failed is None:
            self._queue.put(self._pending)
            self._pending = []
        self._queue.put(_STOP)
        self._thread.join()
