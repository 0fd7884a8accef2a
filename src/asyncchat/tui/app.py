"""The full-screen client: a prompt_toolkit ``Application`` over the display model.

The input line belongs to the user alone: Enter hands the line to a task and returns at once,
so typing never waits on the network. A sent line shows at once as pending (dim, ``…``), and
becomes a timestamped line when the server acknowledges it, or says it was not delivered and
why. While the connection is down, lines queue (the status bar counts them) and go out, in
order, once the client is back. Every task belongs to the application's TaskGroup, and the
terminal's unread input is discarded on exit, so no exit leaves typed keys for the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.formatted_text.utils import split_lines
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, VSplit, Window
from prompt_toolkit.layout.controls import (
    BufferControl,
    FormattedTextControl,
    UIContent,
    UIControl,
)
from prompt_toolkit.output.color_depth import ColorDepth

from ..client import Client
from ..errors import ConnectionClosed, ServerError, UsageError
from ..events import (
    AwayRequest,
    BanRequest,
    BansRequest,
    ClientEvent,
    Join,
    Kick,
    Leave,
    Message,
    Mute,
    Nick,
    Quit,
    Register,
    RoomsRequest,
    Say,
    SearchRequest,
    SendDm,
    TopicRequest,
    Unban,
    WhoRequest,
)
from ..text import (
    HELP,
    escape,
    format_bans,
    parse_command,
    rooms_line,
    who_line,
)
from ..validation import name_key
from .commands import Local, parse_local, request_of
from .feed import Feed, topic_text
from .model import Display, Fragment, Line
from .model import Window as ChatWindow
from .styles import style_for

__all__ = ["KEYS_HELP", "ChatApp", "history_path", "run_app"]

#: The client's own commands and its keys, after the shared :data:`~asyncchat.text.HELP`.
KEYS_HELP = """\
  /query NAME [TEXT] a window for private messages with NAME (/msg NAME TEXT opens it too)
  /window N          show window N (also next, prev, close); /clear empties the window
keys: Alt-1..9 window N, Ctrl-N/Ctrl-P next/previous window, Alt-A next window with
  activity, PgUp/PgDn scroll back, Ctrl-R search back for the words typed, Tab complete,
  Up/Down earlier lines, Ctrl-D quit"""


def history_path() -> Path:
    """Where typed lines are kept across runs: ``$XDG_STATE_HOME/asyncchat/input-history``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "asyncchat" / "input-history"


def _history() -> History:
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


class _Scrollback(UIControl):
    """The window on screen, drawn by the model at the size it is given."""

    def __init__(self, display: Display) -> None:
        self.display = display

    def create_content(self, width: int, height: int) -> UIContent:
        rows = list(split_lines(self.display.view(width, height)))
        rows = [[] for _ in range(max(0, height - len(rows)))] + rows
        return UIContent(get_line=lambda i: rows[i], line_count=len(rows), show_cursor=False)

    def is_focusable(self) -> bool:
        return False


class ChatApp:
    """The client on screen: ``client`` connected, ``wanted`` the name the user asked for."""

    def __init__(self, client: Client, *, color: bool, bell: bool, wanted: str) -> None:
        self.client = client
        self.wanted = wanted
        self.ring = bell
        self.display = Display(client.name)
        self.quit_reason: str | None = None
        self.quit = False
        self._tg: asyncio.TaskGroup | None = None
        self.feed = Feed(self.display, client, wanted, self._spawn)
        self._tab: tuple[str, list[str], int] | None = None
        self.buffer = Buffer(multiline=False, history=_history(), accept_handler=self._accept)
        self.app: Application[None] = Application(
            layout=self._layout(),
            key_bindings=self._keys(),
            style=style_for(color),
            color_depth=ColorDepth.DEPTH_24_BIT if color else ColorDepth.DEPTH_1_BIT,
            full_screen=True,
            refresh_interval=1.0,
        )

    # ------------------------------------------------------------------ layout and keys

    def _prompt(self) -> list[Fragment]:
        w = self.display.window
        return [("class:prompt", f"[{escape(w.title) if w else '-'}] ")]

    def _layout(self) -> Layout:
        d = self.display
        input_line = VSplit(
            [
                Window(
                    FormattedTextControl(lambda: cast(StyleAndTextTuples, self._prompt())),
                    dont_extend_width=True,
                ),
                Window(BufferControl(self.buffer), wrap_lines=True),
            ],
            height=1,
        )
        return Layout(
            HSplit(
                [
                    Window(_Scrollback(d)),
                    Window(
                        FormattedTextControl(lambda: cast(StyleAndTextTuples, d.status())),
                        height=1,
                        style="class:status",
                    ),
                    input_line,
                ]
            ),
            focused_element=self.buffer,
        )

    def _keys(self) -> KeyBindings:
        kb = KeyBindings()
        d = self.display

        def page() -> int:
            return max(1, self.app.output.get_size().rows - 4)

        @kb.add("pageup", eager=True)
        def _(event: KeyPressEvent) -> None:
            d.scroll(page())

        @kb.add("pagedown", eager=True)
        def _(event: KeyPressEvent) -> None:
            d.scroll(-page())

        for digit in "1234567890":

            @kb.add("escape", digit, eager=True)
            def _(event: KeyPressEvent) -> None:
                n = int(event.key_sequence[-1].key)
                d.focus((n or 10) - 1)

        @kb.add("c-n", eager=True)
        def _(event: KeyPressEvent) -> None:
            d.cycle(1)

        @kb.add("c-p", eager=True)
        def _(event: KeyPressEvent) -> None:
            d.cycle(-1)

        @kb.add("escape", "a", eager=True)
        def _(event: KeyPressEvent) -> None:
            d.next_active()

        @kb.add("tab", eager=True)
        def _(event: KeyPressEvent) -> None:
            self._complete()

        @kb.add("c-r", eager=True)
        def _(event: KeyPressEvent) -> None:
            words = self.buffer.text.strip()
            if not words:
                d.info("type words, then Ctrl-R searches this window's scrollback for them")
            elif not d.search_back(words):
                d.info(f"no older line with {escape(words)!r}")

        @kb.add("c-d", eager=True)
        def _(event: KeyPressEvent) -> None:
            if self.buffer.text:
                self.buffer.delete()
            else:
                self.exit()

        @kb.add("c-c", eager=True)
        def _(event: KeyPressEvent) -> None:
            self.exit()

        return kb

    def _complete(self) -> None:
        """Tab: complete the word before the cursor; Tab again cycles through the others."""
        buf = self.buffer
        before = buf.document.text_before_cursor
        if self._tab is not None and before.endswith(self._tab[1][self._tab[2]]):
            prefix, found, i = self._tab
            buf.delete_before_cursor(len(found[i]))
            i = (i + 1) % len(found)
        else:
            prefix = before.rsplit(" ", 1)[-1]
            at_start = " " not in before
            found = self.display.completions(prefix, at_start=at_start)
            if not found:
                self._tab = None
                return
            buf.delete_before_cursor(len(prefix))
            i = 0
        buf.insert_text(found[i])
        self._tab = (prefix, found, i) if len(found) > 1 else None

    def exit(self) -> None:
        """Leave: the application stops, and the client says quit."""
        self.quit = True
        if self.app.is_running:
            self.app.exit()

    # ------------------------------------------------------------------ input

    def _accept(self, buffer: Buffer) -> bool:
        """Enter: hand the line over and return at once (False: the input line is cleared)."""
        line = buffer.text.rstrip("\r\n")
        self._tab = None
        if line.strip():
            self.submit(line)
        return False

    def submit(self, line: str) -> None:
        """Carry out a typed line without waiting: usage errors at once, requests in tasks."""
        d = self.display
        where = d.window
        room = where.name if where is not None and not where.query else ""
        try:
            local = parse_local(line)
            if local is not None:
                self._local(local, where)
                return
            cmd = parse_command(line, room)
        except UsageError as exc:
            d.error(escape(str(exc)))
            return
        match cmd:
            case Say(text=text, action=action):
                if where is None or (where.query and where.name == "status"):
                    d.error("you are in no room: /join ROOM first")
                elif where.query and action:
                    d.error("/me works in a room's window")
                else:
                    self._send(where, text, action=action)
            case SendDm(to=to, text=text):
                self._send(d.open(to, query=True), text)
            case Join(room=joining) if (w := d.find(joining)) is not None:
                d.focus(d.windows.index(w))
                d.info(f"you are already in {escape(w.title)}")
            case Nick(name=name) if name == self.client.name:
                d.info(f"you are already called {escape(name)}")
            case Quit(reason=reason):
                self.quit_reason = reason
                self.exit()
            case "help":
                for help_line in (HELP + "\n" + KEYS_HELP).splitlines():
                    d.add(None, [("class:info", help_line)])
            case None:
                pass
            case _:
                assert self._tg is not None
                self._tg.create_task(self._request(cmd, where))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` as a task of the application's TaskGroup."""
        assert self._tg is not None
        self._tg.create_task(job)

    def _send(self, w: ChatWindow, text: str, *, action: bool = False) -> None:
        """A line to a room or a query: shown pending at once, sent by a task."""
        d = self.display
        assert self._tg is not None
        if w.query and name_key(w.name) == name_key(d.me):
            line = None  # a dm to oneself comes back as a dm: shown once, then
        else:
            line = d.add(w, d.message_body(d.me, text, action=action), pending=True)
            line.indent = len(d.me) + 3
            d.queued += 1
        self._tg.create_task(self._deliver(w, text, action, line))

    async def _deliver(self, w: ChatWindow, text: str, action: bool, line: Line | None) -> None:
        d = self.display
        try:
            if w.query:
                ack = await self.client.dm(w.name, text)
                if ack.to and ack.to != w.name:
                    w.name = ack.to  # /msg ALICE: the window takes alice's own spelling
                if ack.away:
                    d.info(f"{escape(w.name)} is away: {escape(ack.away)}", w)
                ts = time.time()
            else:
                ack = await self.client.say(w.name, text, action=action)
                ts = ack.ts or time.time()
            if line is not None:
                line.pending, line.ts = False, ts
        except (ServerError, ConnectionClosed) as exc:
            why = exc.message if isinstance(exc, ServerError) else exc.reason
            if line is not None:
                line.pending = False
                line.body = [("class:error", f"✗ {escape(text)} (not delivered: {escape(why)})")]
            else:
                d.error(f"not delivered: {escape(why)}", w)
        finally:
            if line is not None:
                d.queued -= 1
            self.app.invalidate()

    def _local(self, cmd: Local, where: ChatWindow | None) -> None:
        """The commands that need no server."""
        d = self.display
        match cmd.name:
            case "query":
                assert cmd.arg is not None
                w = d.open(cmd.arg, query=True, focus=True)
                if cmd.text:
                    self._send(w, cmd.text)
            case "clear":
                if where is not None:
                    where.lines.clear()
                    where.scroll = 0
            case "window" if cmd.arg == "close":
                if where is None:
                    return
                if where.query:
                    d.close(where)
                else:  # a room's window closes by leaving the room
                    assert self._tg is not None
                    self._tg.create_task(self._request(Leave(room=where.name), where))
            case "window":
                if cmd.arg in ("next", "prev"):
                    d.cycle(1 if cmd.arg == "next" else -1)
                elif not d.focus(int(cmd.arg or 0) - 1):
                    d.error(f"there is no window {cmd.arg}")

    async def _request(self, cmd: ClientEvent, where: ChatWindow | None) -> None:
        """A request the server answers; its refusal is shown, in plain words."""
        d = self.display
        client = self.client
        try:
            match cmd:
                case Join(room=room):
                    joined = await client.join(room)
                    d.open(joined.room, focus=True)
                case Leave(room=room):
                    if not room:
                        raise UsageError("this window is no room: /leave ROOM")
                    await client.leave(room)
                case Nick(name=name):
                    await client.nick(name)
                case WhoRequest(room=room):
                    if not room:
                        raise UsageError("this window is no room: /who ROOM")
                    reply = await client.who_away(room)
                    w = d.find(reply.room)
                    if w is not None:
                        w.names = set(reply.names)
                    d.info(who_line(reply.room, reply.names, reply.away)[3:], where)
                case RoomsRequest():
                    d.info(rooms_line(await client.rooms()).removeprefix("-- "), where)
                case TopicRequest(room=room, text=text):
                    if not room:
                        raise UsageError("this window is no room: /topic works in a room")
                    topic = await client.topic(room, text)
                    if text is None:
                        d.info(topic_text(topic, self.client.name), where)
                case AwayRequest(message=message):
                    away = await client.away(message)
                    d.away = away.message
                    d.info(
                        f"you are marked away: {escape(away.message)}"
                        if away.message
                        else "you are back",
                        where,
                    )
                case BansRequest():
                    for ban_line in format_bans(await client.bans()):
                        d.info(ban_line, where)
                case Register() | Kick() | BanRequest() | Unban() | Mute() as request:
                    await client.request(request_of(request))
                    d.info(f"{request.TYPE}: done", where)
                case SearchRequest(room=room, words=words):
                    if not room:
                        raise UsageError("this window is no room: /search works in a room")
                    page = await client.search(room, words)
                    self._show_search(where, words, page.messages, page.more)
        except ServerError as exc:
            d.error(f"{escape(exc.message)} [{escape(exc.code)}]", where)
        except UsageError as exc:
            d.error(escape(str(exc)), where)
        except ConnectionClosed as exc:
            d.error(f"not done: {escape(exc.reason)}", where)
        self.app.invalidate()

    def _show_search(
        self, w: ChatWindow | None, words: str, found: tuple[Message, ...], more: bool
    ) -> None:
        d = self.display
        n = f"{len(found)}{'+' if more else ''} found"
        d.add(w, [("class:separator", f"── search {escape(words)!r}: {n}, newest first ──")])
        for m in found:
            stamp = time.strftime("%Y-%m-%d", time.localtime(m.ts))
            body = [("class:time", stamp + " "), *d.message_body(m.sender, m.text, action=m.action)]
            d.add(w, body, ts=m.ts, indent=11 + len(m.sender) + 3)
        d.add(w, [("class:separator", "── end of search ──")])

    async def _receive(self) -> None:
        async for event in self.client:
            self.feed.show(event)
            if self.display.bell:
                self.display.bell = False
                if self.ring:
                    self.app.output.bell()
            self.app.invalidate()
        d = self.display
        d.state = "offline"
        bye = self.client.bye
        if bye is None or bye.reason != "kicked":  # a kick said it in one line already
            why = escape(self.client.close_reason or "closed")
            d.error(f"disconnected: {why}; /quit to leave")
        self.app.invalidate()

    async def run(self) -> int:
        """Run until the user quits: 0, or 1 when the server had ended the chat for good."""
        if self.client.welcome is not None:
            self.feed.show(self.client.welcome)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            receiver = tg.create_task(self._receive())
            try:
                await self.app.run_async()
            finally:
                receiver.cancel()
                self.quit = True
                await self.client.close(self.quit_reason or None)
        _discard_typeahead()
        return 1 if self.client.closed and self.display.state == "offline" else 0


def _discard_typeahead() -> None:
    """Drop what was typed but not read, so that it never reaches the shell."""
    with contextlib.suppress(ImportError, OSError, ValueError):
        import termios

        if sys.stdin.isatty():
            termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)


async def run_app(client: Client, *, color: bool = True, bell: bool = True, wanted: str) -> int:
    """The full-screen client on ``client`` until the user quits."""
    color = color and not os.environ.get("NO_COLOR")
    return await ChatApp(client, color=color, bell=bell, wanted=wanted).run()
