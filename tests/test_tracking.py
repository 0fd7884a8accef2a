"""The client's room bookkeeping without sockets: de-duplication, catching up, paging."""

from __future__ import annotations

from asyncchat.events import Bye, HistoryEnd, Message
from asyncchat.tracking import PageRequest, Tracker
from asyncchat.tracking import Reconnected as CaughtUp


def _msg(seq: int, room: str = "lobby", *, history: bool = False) -> Message:
    return Message(room=room, seq=seq, sender="bob", text=f"m{seq}", ts=0.0, history=history)


def _end(
    room: str = "lobby",
    *,
    more: bool = False,
    truncated: bool = False,
    reset: bool = False,
    ref: str | int | None = None,
) -> HistoryEnd:
    return HistoryEnd(room=room, more=more, truncated=truncated, reset=reset, ref=ref)


def _seqs(tracker: Tracker) -> list[int]:
    return [e.seq for e in tracker.events_to_emit() if isinstance(e, Message)]


def test_live_messages_are_delivered_once_in_seq_order() -> None:
    """A message at or below the last seq seen in its room is not delivered again."""
    tracker = Tracker({"lobby": 2})
    for seq in (1, 2, 3, 3, 4, 2):
        tracker.message(_msg(seq))
    assert _seqs(tracker) == [3, 4]
    assert tracker.position("LOBBY") == 4
    assert tracker.events_to_emit() == []


def test_ack_advances_the_position_outside_catching_up() -> None:
    """Our own ack moves the room's position: older messages are not delivered after it."""
    tracker = Tracker()
    tracker.ack("lobby", 5)
    tracker.message(_msg(5))
    tracker.message(_msg(6))
    assert _seqs(tracker) == [6]
    assert tracker.resume_positions(["lobby", "other"]) == {"lobby": 6}


def test_replay_after_reconnect_counts_missed_then_releases_held_events() -> None:
    """The replay comes before CaughtUp; live events held meanwhile come after it."""
    tracker = Tracker({"lobby": 1})
    tracker.reconnected(["lobby"], ["lobby"], history=True)
    assert tracker.catching_up
    tracker.message(_msg(4))  # live, arrives before the replay ends
    bye = Bye(reason="shutdown")
    tracker.emit(bye)
    tracker.ack("lobby", 3)  # our own say, stored while we were away
    for seq in (2, 3):
        tracker.message(_msg(seq, history=True))
    assert tracker.events_to_emit() == []  # replay waits for its history_end
    assert tracker.history_end(_end()) is None
    assert not tracker.catching_up
    assert tracker.events_to_emit() == [_msg(2, history=True), CaughtUp(1, False), _msg(4), bye]


def test_reconnect_with_nothing_to_replay_is_caught_up_at_once() -> None:
    """Without history and no resumed room, CaughtUp comes at once and positions are reset."""
    tracker = Tracker({"lobby": 7})
    tracker.reconnected(["lobby"], [], history=False)
    assert tracker.events_to_emit() == [CaughtUp(0, False)]
    assert tracker.position("lobby") is None
    tracker.message(_msg(1))  # a restarted server starts its seqs over
    assert _seqs(tracker) == [1]


def test_more_history_asks_for_the_next_page_after_the_last_seq() -> None:
    """A resumed room with more to replay asks for a page; its answer ends the catching up."""
    tracker = Tracker({"lobby": 0})
    tracker.reconnected(["lobby"], ["lobby"], history=True)
    tracker.message(_msg(1, history=True))
    tracker.history_end(_end(more=True))
    assert tracker.pages_to_request() == [PageRequest("lobby", 1)]
    tracker.page_sent("p1", PageRequest("lobby", 1))
    assert tracker.is_page("p1")
    tracker.message(_msg(2, history=True))
    assert tracker.history_end(_end(more=False, truncated=True, ref="p1")) is None
    assert not tracker.is_page("p1")
    events = tracker.events_to_emit()
    assert events[-1] == CaughtUp(2, True)
    assert [e.seq for e in events if isinstance(e, Message)] == [1, 2]


def test_a_refused_page_ends_that_rooms_catching_up() -> None:
    """An error answering a page request ends the room's replay with what was delivered."""
    tracker = Tracker({"lobby": 0})
    tracker.reconnected(["lobby"], ["lobby"], history=True)
    tracker.message(_msg(1, history=True))
    tracker.history_end(_end(more=True))
    (page,) = tracker.pages_to_request()
    tracker.page_sent(7, page)
    tracker.page_failed(7)
    assert tracker.events_to_emit()[-1] == CaughtUp(1, False)


def test_history_end_of_a_client_request_returns_its_messages() -> None:
    """A page the application asked for is its answer, not part of the stream."""
    tracker = Tracker()
    tracker.message(_msg(3, history=True))
    assert tracker.history_end(_end(ref="req-1")) == (_msg(3, history=True),)
    assert tracker.events_to_emit() == []
    assert tracker.position("lobby") is None


def test_join_replay_goes_into_the_stream() -> None:
    """The replay of a join (no ref, not catching up) is delivered, then its history_end."""
    tracker = Tracker()
    end = _end()
    tracker.history_end(end)
    assert tracker.events_to_emit() == [end]
    assert tracker.position("lobby") == 0  # the room has no message yet


def test_reset_forgets_the_position_and_own_acks() -> None:
    """A reset history_end starts the room over and says truncated."""
    tracker = Tracker({"lobby": 9})
    tracker.reconnected(["lobby"], ["lobby"], history=True)
    tracker.ack("lobby", 10)
    tracker.message(_msg(1, history=True))
    tracker.history_end(_end(reset=True))
    assert tracker.events_to_emit() == [_msg(1, history=True), CaughtUp(1, True)]


def test_own_ack_while_catching_up_skips_the_replayed_message() -> None:
    """Our own message acknowledged while catching up is not delivered nor counted missed."""
    tracker = Tracker({"lobby": 1})
    tracker.reconnected(["lobby"], ["lobby"], history=True)
    tracker.ack("lobby", 2)
    for seq in (2, 3):
        tracker.message(_msg(seq, history=True))
    tracker.history_end(_end())
    assert tracker.events_to_emit() == [_msg(3, history=True), CaughtUp(1, False)]


def test_lost_while_catching_up_releases_held_events_but_not_messages() -> None:
    """With history, held messages come again in the next replay; other events are released."""
    tracker = Tracker({"lobby": 1})
    tracker.reconnected(["lobby"], ["lobby"], history=True)
    tracker.message(_msg(5))
    bye = Bye(reason="shutdown")
    tracker.emit(bye)
    tracker.message(_msg(2, history=True))
    tracker.lost()
    assert not tracker.catching_up
    assert tracker.events_to_emit() == [bye]
    assert tracker.position("lobby") == 1


def test_close_drops_held_events() -> None:
    """Closed while catching up: the held events are dropped and nothing more is held."""
    tracker = Tracker()
    tracker.reconnected(["lobby"], [], history=True)
    tracker.message(_msg(1))
    tracker.close()
    assert not tracker.catching_up
    assert tracker.events_to_emit() == []
