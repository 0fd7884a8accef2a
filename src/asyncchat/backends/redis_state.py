"""What a cluster node keeps in memory of the cluster's state (docs/cluster.md): every room's
log, mirrored from Redis, from which history is answered at once; and who is in which room,
on which node."""

from __future__ import annotations

import bisect
import itertools
from collections import deque

from ..interfaces import Page, Record

__all__ = ["Members", "RoomLogs"]


def _seq_of(record: Record) -> int:
    return record.seq


class RoomLogs:
    """The last ``history_max`` messages of every room, in seq order."""

    def __init__(self, history_max: int) -> None:
        self.history_max = history_max
        self._logs: dict[str, deque[Record]] = {}

    def clear(self) -> None:
        """Forget every room (Redis lost its data)."""
        self._logs = {}

    def load(self, room: str, records: list[Record]) -> None:
        """Room ``room``'s log as Redis has it, oldest first."""
        self._logs[room] = deque(records, maxlen=self.history_max)

    def last(self, room: str) -> int:
        """The seq of the room's newest kept message, 0 if none."""
        kept = self._logs.get(room)
        return kept[-1].seq if kept else 0

    def append(self, record: Record) -> None:
        """A message newer than every kept one of its room."""
        kept = self._logs.get(record.room)
        if kept is None:
            kept = self._logs[record.room] = deque(maxlen=self.history_max)
        kept.append(record)

    def page(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int
    ) -> Page:
        """As :meth:`asyncchat.interfaces.HistoryStore.page`."""
        kept = self._logs.get(room)
        if not kept:
            return Page([], False, 0)
        hi = bisect.bisect_left(kept, 2**62 if before is None else before, key=_seq_of)
        if after is not None:
            lo = bisect.bisect_right(kept, after, key=_seq_of)
            records = list(itertools.islice(kept, lo, min(hi, lo + limit)))
            more = hi - lo > limit
        else:
            lo = max(0, hi - limit)
            records = list(itertools.islice(kept, lo, hi))
            more = lo > 0
        return Page(records, more, kept[0].seq)

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        """The newest ``limit`` kept messages below ``before`` whose text has every one of
        ``words`` (case-insensitive substrings), newest first. Raises ``ValueError`` without
        words."""
        wanted = words.casefold().split()
        if not wanted:
            raise ValueError("no words to search for")
        found: list[Record] = []
        for r in reversed(self._logs.get(room, ())):
            if r.seq < before and all(w in r.text.casefold() for w in wanted):
                found.append(r)
                if len(found) >= limit:
                    break
        return found


class Members:
    """Who is in each room (by key), on which node: room -> member key -> (name, node)."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, tuple[str, str]]] = {}

    def others(self, room: str, me: str) -> dict[str, str]:
        """The members of ``room`` on nodes other than ``me``: key -> name."""
        return {k: n for k, (n, node) in self.rooms.get(room, {}).items() if node != me}

    def apply(
        self, kind: str, rooms: list[str], key: str, name: str, detail: str, new_key: str, node: str
    ) -> None:
        """Member ``key`` (called ``name``, on ``node``) joined ("j"), left ("l") or was
        renamed ("n") to ``detail`` (key ``new_key``) in ``rooms``."""
        for room in rooms:
            members = self.rooms.setdefault(room, {})
            if kind == "j":
                members[key] = (name, node)
            elif kind == "l":
                if members.get(key, ("", node))[1] == node:
                    members.pop(key, None)
            else:
                members.pop(key, None)
                members[new_key] = (detail, node)
            if not members:
                del self.rooms[room]
