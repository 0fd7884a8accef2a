"""The event stream onto the display: what each event the client yields shows, and where.

The full-screen application hands every event to :meth:`Feed.show`. It keeps what the display
needs to know across events: which windows are replaying their earlier messages (a dated
separator goes before them), which just joined (their topic comes next), and, after a
reconnect, where the missed messages begin.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..client import Client, Reconnected, Reconnecting, StreamEvent
from ..errors import ConnectionClosed, ServerError
from ..events import (
    Away,
    Bye,
    DirectMessage,
    Error,
    HistoryEnd,
    Joined,
    Left,
    Message,
    Renamed,
    Topic,
    Welcome,
)
from ..text import back_line, escape, format_event
from ..validation import name_key
from .model import Display, nick_style
from .model import Window as ChatWindow

__all__ = ["Feed", "topic_text"]


class Feed:
    """Shows the events of ``client`` on ``display``; ``wanted`` is the name the user asked
    for (a reconnect that finds it taken comes back as ``wanted_``); ``spawn`` runs a task."""

    def __init__(
        self,
        display: Display,
        client: Client,
        wanted: str,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.display = display
        self.client = client
        self.wanted = wanted
        self.spawn = spawn
        self._lost = False
        #: Windows (keys) whose replay on join is coming, and which got a separator before it;
        #: windows just joined whose topic is still to come; windows marked where missed
        #: messages begin after a reconnect.
        self._replaying: set[str] = set()
        self._joining: set[str] = set()
        self._marked: set[str] = set()

    def show(self, event: StreamEvent) -> None:
        """Put one event of the stream on screen."""
        d = self.display
        me = self.client.name
        w: ChatWindow | None
        match event:
            case Welcome(server=server, motd=motd, rooms=rooms):
                d.state = "connected"
                for i, room in enumerate(rooms):
                    d.open(room, focus=i == 0 and d.window is None)
                d.info(f"connected to {escape(server)} as {escape(me)}; /help for the commands")
                if motd:
                    d.info(escape(motd, newlines=True))
            case Message(room=room, sender=sender, text=text, ts=ts, action=action, history=h):
                w = d.open(room)
                if h and self._lost and w.key not in self._marked:
                    self._marked.add(w.key)
                    d.back_marker(w)
                elif h and w.key in self._replaying:
                    self._replaying.discard(w.key)
                    day = time.strftime("%A %d %B %Y, %H:%M", time.localtime(ts))
                    d.add(w, [("class:separator", f"── earlier messages, from {day} ──")])
                self._joining.discard(w.key)
                body = d.message_body(sender, text, action=action)
                d.add(w, body, ts=ts, activity=not h, indent=len(sender) + 3)
            case DirectMessage(sender=sender, to=to, text=text, ts=ts):
                other = to if name_key(sender) == name_key(me) else sender
                w = d.open(other, query=True)
                d.add(w, d.message_body(sender, text), ts=ts, activity=True, indent=len(sender) + 3)
            case Joined(room=room, name=name):
                w = d.open(room, focus=d.window is None)
                w.names.add(name)
                if name == me:
                    self._replaying.add(w.key)
                    self._joining.add(w.key)
                    self.spawn(self._names(w))  # who is there, for completion
                    d.add(w, [("class:join", f"-> you joined #{escape(room)}")])
                else:
                    d.add(
                        w,
                        [
                            ("class:join", "-> "),
                            (nick_style(name), escape(name)),
                            ("class:join", f" joined #{escape(room)}"),
                        ],
                    )
            case Left(room=room, name=name, reason=reason, message=message):
                w = d.find(room)
                why = "" if reason == "leave" else f" ({reason}{': ' + message if message else ''})"
                if name == me:
                    if w is not None:
                        d.close(w)
                    d.add(None, [("class:join", f"<- you left #{escape(room)}{escape(why)}")])
                elif w is not None:
                    w.names.discard(name)
                    d.add(
                        w,
                        [
                            ("class:join", "<- "),
                            (nick_style(name), escape(name)),
                            ("class:join", f" left #{escape(room)}{escape(why)}"),
                        ],
                    )
            case Renamed(old=old, new=new):
                if old == d.me or new == me:
                    d.me = new
                for w in d.windows:
                    if old in w.names or w.name == old or name_key(new) == name_key(me):
                        w.names.discard(old)
                        w.names.add(new)
                        if w.query and w.name == old:
                            w.name = new
                        d.info(f"{escape(old)} is now known as {escape(new)}", w)
            case Topic(room=room, text=text, by=by, ts=ts, ref=ref):
                w = d.find(room)
                if w is None:
                    return
                changed, w.topic = text != w.topic, text
                if ref is None and changed:
                    if w.key in self._joining:
                        self._joining.discard(w.key)
                        d.info(topic_text(event, me), w)
                    elif text:
                        d.info(f"{escape(by or '?')} set the topic: {escape(text)}", w)
                    else:
                        d.info(f"{escape(by or 'someone')} cleared the topic", w)
            case Away(name=name, message=message):
                if name == me:
                    d.away = message
                elif (w := d.find(name, query=True)) is not None:
                    d.info(
                        f"{escape(name)} is away: {escape(message)}"
                        if message
                        else f"{escape(name)} is back",
                        w,
                    )
            case HistoryEnd(room=room):
                w = d.find(room)
                if w is not None:
                    self._replaying.discard(w.key)
            case Reconnecting(attempt=attempt, delay=delay, reason=reason):
                d.state, d.attempt, d.retry_at = "reconnecting", attempt, time.time() + delay
                if not self._lost:
                    self._lost = True
                    self._marked.clear()
                    d.error(f"connection lost ({escape(reason)}); reconnecting…")
                if reason.startswith("name_taken") and self.client.name == self.wanted:
                    self.client.name = self.wanted + "_"
                    d.error(
                        f"someone took the name {escape(self.wanted)}: coming back as "
                        f"{escape(self.client.name)}"
                    )
            case Reconnected(missed=missed, truncated=truncated):
                d.state, d.retry_at = "connected", None
                self._lost = False
                d.me = self.client.name
                d.reconnected(back_line(missed, truncated).removeprefix("-- "))
            case Bye(reason="kicked", message=message):
                why = escape(message or "by the operator")
                d.error(f"you were kicked: {why}; /quit to leave")
            case Error(code=code, message=message, ref=None):
                d.error(f"{escape(message)} [{escape(code)}]")

    async def _names(self, w: ChatWindow) -> None:
        with contextlib.suppress(ServerError, ConnectionClosed):
            w.names |= set(await self.client.who(w.name))


def topic_text(topic: Topic, me: str) -> str:
    """The topic as a notice (without its ``-- ``), and when it was set."""
    line = (format_event(topic, me) or "").removeprefix("-- ")
    if topic.text is not None and topic.ts and line.endswith(")"):
        line = line[:-1] + time.strftime(", %d %b %H:%M)", time.localtime(topic.ts))
    return line
