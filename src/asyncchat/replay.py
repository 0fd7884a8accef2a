"""History on the wire: the replay when a member joins or resumes, and pages of history.

A page is read from the broker and sent in one go, so every page is bounded twice: in messages
(``history_page_max``) and in bytes (a :class:`ReplayBudget`, half of ``max_outbox``), so that a
replay never makes a healthy client a slow consumer. Only what was fanned out already is
replayed (up to ``room.committed``): a message stored but not yet fanned out comes live right
after, and must not come twice. Sans-I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import wire
from .errors import ErrorCode, ProtocolError
from .fanout import Member, Room
from .interfaces import Broker, Page, Ref
from .limits import Limits

__all__ = ["DEFAULT_SEARCH_LIMIT", "Replay", "ReplayBudget"]

#: Messages a ``search`` without ``limit`` answers with at the most (``history_page_max``
#: bounds any limit): a screenful.
DEFAULT_SEARCH_LIMIT = 20


class ReplayBudget:
    """Bytes of history that one request (or one hello, for all its rooms) may still queue."""

    __slots__ = ("full", "left")

    def __init__(self, full: int) -> None:
        self.full = full
        self.left = full

    @property
    def fresh(self) -> bool:
        """Nothing was spent yet: a fresh budget always makes progress (at least one message)."""
        return self.left >= self.full


class Replay:
    """Sends history to members: ``send(member, frame)`` queues a frame (the batcher's)."""

    def __init__(
        self, broker: Broker[Any], limits: Limits, send: Callable[[Member, bytes], None]
    ) -> None:
        self.broker = broker
        self.limits = limits
        self.send = send

    def budget(self) -> ReplayBudget:
        """A fresh budget: half of ``max_outbox``."""
        return ReplayBudget(self.limits.max_outbox // 2)

    def on_join(
        self, m: Member, room: Room, resume_after: int | None, budget: ReplayBudget | None
    ) -> None:
        """``m`` just joined ``room``: with history, its last ``history_on_join`` messages, or
        with ``resume_after`` exactly those after that seq (a page at the most), then
        ``history_end``. Without history, a resume still learns whether anything was missed."""
        limits = self.limits
        if not self.broker.history:
            if resume_after is not None:  # nothing is kept: say whether anything was missed
                self.send(
                    m,
                    wire.history_end(
                        room.name,
                        False,
                        truncated=resume_after < room.committed,
                        # seqs this server never gave: it restarted
                        reset=resume_after > room.committed,
                    ),
                )
            return
        reset = resume_after is not None and resume_after > room.committed
        if reset:  # the client saw seqs this history never had: it was reset; start over
            resume_after = 0
        upto = room.committed + 1
        if resume_after is None:
            n = min(limits.history_on_join, limits.history_page_max)
            page = self.broker.page(room.key, before=upto, limit=n)
        else:
            page = self.broker.page(
                room.key, after=resume_after, before=upto, limit=limits.history_page_max
            )
        self._send_page(m, room, page, after=resume_after, ref=None, reset=reset, budget=budget)

    def history(
        self,
        m: Member,
        room: Room,
        *,
        before: int | None,
        after: int | None,
        limit: int | None,
        ref: Ref | None,
    ) -> None:
        """A ``history`` request of ``m`` for ``room`` (which it is in): a page, oldest first,
        then ``history_end``. Raises ``history_unavailable`` without history."""
        if not self.broker.history:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "this server keeps no history", ref=ref
            )
        limits = self.limits
        default = limits.history_on_join or 50
        n = min(limits.history_page_max, default if limit is None else limit)
        upto = room.committed + 1  # what was fanned out already
        before = upto if before is None else min(before, upto)
        page = self.broker.page(room.key, before=before, after=after, limit=n)
        self._send_page(m, room, page, after=after, ref=ref)

    def search(
        self, m: Member, room: Room, words: str, *, limit: int | None, ref: Ref | None
    ) -> None:
        """A ``search`` request of ``m`` in ``room`` (which it is in): the newest messages with
        every one of ``words``, newest first, as ``message`` frames marked history, then
        ``history_end`` (``more``: older ones match too). Raises ``history_unavailable``
        without history, ``bad_request`` without words."""
        if not self.broker.history:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "this server keeps no history to search", ref=ref
            )
        limits = self.limits
        n = min(limits.history_page_max, DEFAULT_SEARCH_LIMIT if limit is None else limit)
        try:
            records = self.broker.search(room.key, words, before=room.committed + 1, limit=n + 1)
        except ValueError:
            raise ProtocolError(
                ErrorCode.BAD_REQUEST, "search needs at least one word", ref=ref
            ) from None
        more = len(records) > n
        left = self.budget().left
        for i, r in enumerate(records[:n]):
            frame = wire.message(r.name, r.seq, r.sender, r.text, r.ts, r.action, True)
            if len(frame) > left and i:
                more = True
                break
            left -= len(frame)
            self.send(m, frame)
        self.send(m, wire.history_end(room.name, more, ref=ref))

    def _send_page(
        self,
        m: Member,
        room: Room,
        page: Page,
        *,
        after: int | None,
        ref: Ref | None,
        reset: bool = False,
        budget: ReplayBudget | None = None,
    ) -> None:
        frames = [
            wire.message(r.name, r.seq, r.sender, r.text, r.ts, r.action, True)
            for r in page.records
        ]
        more = page.more
        budget = budget or self.budget()
        left = budget.left
        if sum(map(len, frames)) > left:
            # Over the byte budget: keep the end of the page nearest to where it starts from
            # (the oldest going forwards, the newest going backwards) and say there is more.
            fresh = budget.fresh
            keep: list[bytes] = []
            for frame in frames if after is not None else reversed(frames):
                if len(frame) > left and (keep or not fresh):
                    break
                keep.append(frame)
                left -= len(frame)
            frames = keep if after is not None else keep[::-1]
            more = True
        else:
            left -= sum(map(len, frames))
        budget.left = max(0, left)
        for frame in frames:
            self.send(m, frame)
        if after is not None:  # is the first message asked for still kept?
            truncated = room.committed > after and not (0 < page.first_kept <= after + 1)
        else:  # a page back to the oldest kept message, which is not the first ever
            oldest_gone = page.first_kept > 1 or (page.first_kept == 0 and room.committed > 0)
            truncated = not more and oldest_gone
        end = wire.history_end(room.name, more, truncated=truncated or None, reset=reset, ref=ref)
        self.send(m, end)
