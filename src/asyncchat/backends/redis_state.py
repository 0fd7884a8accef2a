"""What a cluster node keeps in memory of the cluster's state (docs/cluster.md): every room's
log, mirrored from Redis, from which history is answered at once; and who is in which room,
on which node."""

from __future__ import annotations

import bisect
import itertools
from collections import deque

from ..interfaces import Page, Record
from ..textsearch import matches, query_terms

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

    def expire(self, before: float) -> dict[str, int]:
        """Drop the messages older than ``before`` (Unix seconds) from the front of every
        room's log; returns, for each room that lost some, the lowest seq it keeps (one above
        its last when none is left)."""
        trimmed = {}
        for room, kept in self._logs.items():
            last = 0
            while kept and kept[0].ts < before:
                last = kept.popleft().seq
            if last:
                trimmed[room] = kept[0].seq if kept else last + 1
        return trimmed

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
        ``words`` (matched as the SQLite store's search matches them: whole words, case and
        Latin accents aside), newest first. Raises ``ValueError`` without words."""
        terms = query_terms(words)
        found: list[Record] = []
        for r in reversed(self._logs.get(room, ())):
            if r.seq < before and matches(r.text, terms):
                found.append(r)
                if len(found) >= limit:
                    break
        return found


class Members:
    """Who is connected to the cluster and who is in which room, on which node (by key): each
    node keeps this mirror of ``ac:members:<room>`` and ``ac:users``, kept from the feed."""

    def __init__(self) -> None:
        #: room key -> member key -> (name, node)
        self.rooms: dict[str, dict[str, tuple[str, str]]] = {}
        #: user key -> (name, node, away message or None)
        self.users: dict[str, tuple[str, str, str | None]] = {}
        #: room key -> its display name (of the rooms that ever had a member or a message)
        self.names: dict[str, str] = {}

    def others(self, room: str, me: str) -> dict[str, str]:
        """The members of ``room`` on nodes other than ``me``: key -> name."""
        return {k: n for k, (n, node) in self.rooms.get(room, {}).items() if node != me}

    def rooms_elsewhere(self, me: str) -> dict[str, tuple[str, int]]:
        """Every room with members on nodes other than ``me``: key -> (display name, how
        many members on the other nodes)."""
        found = {}
        for room, members in self.rooms.items():
            n = sum(1 for _, node in members.values() if node != me)
            if n:
                found[room] = (self.names.get(room, room), n)
        return found

    def room_elsewhere(self, room: str, me: str) -> str | None:
        """The display name of ``room`` if it has members on nodes other than ``me``."""
        members = self.rooms.get(room, {})
        if any(node != me for _, node in members.values()):
            return self.names.get(room, room)
        return None

    def user(self, key: str, me: str) -> tuple[str, str, str | None] | None:
        """(name, node, away) of the user with key ``key`` if it is on a node other than
        ``me``."""
        found = self.users.get(key)
        return None if found is None or found[1] == me else found

    def rooms_of(self, key: str) -> list[str]:
        """The rooms member ``key`` is in (by key)."""
        return [room for room, members in self.rooms.items() if key in members]

    def apply(
        self, kind: str, rooms: list[str], key: str, name: str, detail: str, new_key: str, node: str
    ) -> None:
        """Member ``key`` (called ``name``, on ``node``) joined ("j", ``detail`` the room's
        display name), left ("l") or was renamed ("n") to ``detail`` (key ``new_key``) in
        ``rooms``; connected ("u"), went ("q") or set its away message ("a", ``detail``)."""
        if kind == "u" or kind == "a":
            self.users[key] = (name, node, detail or None)
            return
        if kind == "q":
            if self.users.get(key, ("", node))[1] == node:
                self.users.pop(key, None)
            return
        if kind == "n":
            old = self.users.pop(key, None)
            self.users[new_key] = (detail, node, None if old is None else old[2])
        for room in rooms:
            members = self.rooms.setdefault(room, {})
            if kind == "j":
                members[key] = (name, node)
                if detail:
                    self.names[room] = detail
            elif kind == "l":
                if members.get(key, ("", node))[1] == node:
                    members.pop(key, None)
            else:
                members.pop(key, None)
                members[new_key] = (detail, node)
            if not members:
                del self.rooms[room]
