"""The plain line client: ``asyncchat join`` with piped stdin (and the commands' display).

Each line is sent in order and the client exits 0 at EOF once every line was acknowledged (1
if any was refused). It stays quiet: a room's backlog is not printed unless asked
(``show_history``); the messages missed during a reconnect are. Everything peers send is
escaped before it is printed.

By default the client reconnects by itself: one line says the connection was lost, one that it
is back and how many messages it missed (they are shown, replayed, just before). Lines read
meanwhile are sent once it is back. After ``give_up`` seconds without a connection it exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from ..client import Client, Reconnected, Reconnecting, StreamEvent
from ..errors import ConnectionClosed, ServerError, UsageError
from ..events import (
    Ack,
    Away,
    AwayRequest,
    BanRequest,
    BansRequest,
    Bye,
    Error,
    HistoryEnd,
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
    Topic,
    TopicRequest,
    Unban,
    WhoReply,
    WhoRequest,
)
from ..text import (
    HELP,
    action_line,
    back_line,
    dm_sent_line,
    escape,
    format_bans,
    format_event,
    parse_command,
    rooms_line,
    talking_line,
    who_line,
)
from ..validation import name_key
from .commands import parse_local, request_of

__all__ = ["DEFAULT_GIVE_UP", "LOBBY", "Terminal", "run_piped"]

#: Seconds without a connection after which the piped client stops reconnecting: long enough
#: for a server restart or a network blip, short enough that a script waiting on a dead chat is
#: told so. (The interactive client keeps trying until the user quits.)
DEFAULT_GIVE_UP = 60.0
#: The room every server has, and the one a client is in when it names none.
LOBBY = "lobby"


class Terminal:
    """The commands and the display of the line client. ``show_history``: print the backlog
    replayed on join too."""

    def __init__(
        self,
        client: Client,
        out: Callable[[str], None],
        room: str | None,
        *,
        show_history: bool = False,
    ) -> None:
        self.client = client
        self.out = out
        self.room = room
        self.show_history = show_history
        self.refused = 0
        #: Set by /quit: the reason to give the server (may be empty).
        self.quit_reason: str | None = None
        self._away = False
        self._reason: str | None = None

    def show(self, event: StreamEvent) -> None:
        """Print one event of the stream, if it is shown."""
        match event:
            case Reconnecting(reason=reason):
                # One line per loss, not one per attempt; but a refusal that concerns the
                # user (a name someone took meanwhile) is said.
                if not self._away or (reason != self._reason and reason.startswith("name_")):
                    self.out(f"-- connection lost ({escape(reason)}); reconnecting…")
                self._away = True
                self._reason = reason
                return
            case Reconnected(missed=missed, truncated=truncated):
                self._away = False
                self._reason = None
                self.out(back_line(missed, truncated))
                return
            case Message(history=True) if not (self.show_history or self._away):
                return  # the backlog of a joined room; missed messages are shown
            case HistoryEnd():
                return
            case Topic(ref=ref) | Away(ref=ref) if ref is not None:
                return  # the answer to our own /topic or /away: the command shows it
            case Bye(reason=reason) if self.client.reconnect and reason != "kicked":
                return  # the connection-lost line that follows says it
            case Ack() | WhoReply():
                return  # answers to our own requests are shown by the command that made them
            case Error(ref=ref) if ref is not None:
                return  # likewise
            case _:
                line = format_event(event, self.client.name)
                if line is not None:
                    self.out(line)

    async def receive(self) -> str:
        """Show events until the connection closes; returns why it closed."""
        async for event in self.client:
            self.show(event)
        return self.client.close_reason or "connection closed"

    async def command(self, line: str) -> bool:
        """Carry out one typed line; False when the user quits. Refusals are shown."""
        try:
            return await self._command(line)
        except ServerError as exc:
            self.refused += 1
            self.out(f"!! {escape(exc.message)} [{escape(exc.code)}]")
        except UsageError as exc:
            self.refused += 1
            self.out(f"!! {exc}")
        return True

    async def _command(self, line: str) -> bool:
        client = self.client
        local = parse_local(line)
        if local is not None:
            if local.name == "query" and local.text:  # /query NAME TEXT: a dm, piped
                await self._dm(local.arg or "", local.text)
            return True  # /clear, /window, /query NAME: nothing to do without a screen
        match parse_command(line, self.room or ""):
            case Say() | SearchRequest() | TopicRequest() if self.room is None:
                raise UsageError("you are in no room: /join ROOM first")
            case Say(room=room, text=text, action=action):
                await client.say(room, text, action=action)
                if action:
                    self.out(action_line(client.name, text))
            case Join(room=room):
                mine = next((r for r in client.joined if name_key(r) == name_key(room)), None)
                if mine is not None:
                    self.room = mine
                    self.out(f"-- you are already in #{escape(mine)}")
                    return True
                joined = await client.join(room)
                self.room = joined.room
            case Leave(room=room):
                if not room:
                    raise UsageError("you are in no room to leave")
                left = await client.leave(room)
                self.out(f"<- you left #{escape(left.room)}")
                if self.room is not None and name_key(left.room) == name_key(self.room):
                    self.room = min(client.joined, default=None, key=str.casefold)
                    if self.room is None:
                        self.out("-- you are in no room now: /join ROOM")
                    else:
                        self.out(talking_line(self.room))
            case Nick(name=name):
                if name == client.name:
                    self.out(f"-- you are already called {escape(name)}")
                    return True
                await client.nick(name)
            case SendDm(to=to, text=text):
                await self._dm(to, text)
            case WhoRequest(room=room):
                if not room:
                    raise UsageError("you are in no room: /who ROOM")
                reply = await client.who_away(room)
                self.out(who_line(reply.room, reply.names, reply.away))
            case RoomsRequest():
                self.out(rooms_line(await client.rooms()))
            case TopicRequest(room=room, text=text):
                topic = await client.topic(room, text)
                if text is None:
                    self.out(format_event(topic, client.name) or "")
            case AwayRequest(message=message):
                away = await client.away(message)
                self.out(format_event(away, client.name) or "")
            case SearchRequest(room=room, words=words):
                page = await client.search(room, words)
                for found in page.messages:
                    self.out(format_event(found, client.name) or "")
                more = ", and older ones" if page.more else ""
                self.out(f"-- {len(page.messages)} found{more}")
            case BansRequest():
                for ban_line in format_bans(await client.bans()):
                    self.out(f"-- {ban_line}")
            case Register() | Kick() | BanRequest() | Unban() | Mute() as request:
                await client.request(request_of(request))
                self.out(f"-- {request.TYPE}: done")
            case Quit(reason=reason):
                self.quit_reason = reason or ""
                return False
            case "help":
                self.out(HELP)
        return True

    async def _dm(self, to: str, text: str) -> None:
        ack = await self.client.dm(to, text)
        to = ack.to or to
        if name_key(to) != name_key(self.client.name):  # to oneself: the dm itself shows
            self.out(dm_sent_line(to, text))
        if ack.away:
            self.out(f"-- {escape(to)} is away: {escape(ack.away)}")


async def _piped_lines(stdin: TextIO) -> AsyncIterator[str]:
    """Lines of a non-terminal stdin without blocking the loop: a pipe or socket through
    ``connect_read_pipe``; anything else (a regular file, ``/dev/null``: they never block, and
    the event loop cannot watch them) read directly."""
    mode = os.fstat(stdin.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        for raw in stdin.buffer:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    try:
        while raw := await reader.readline():
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
    finally:
        transport.close()


def _print(line: str) -> None:
    print(line, flush=True)


async def _race(first: asyncio.Task[object], second: asyncio.Task[object]) -> None:
    """Wait for either task; cancel and reap the other."""
    try:
        await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (first, second):
            task.cancel()
        for task in (first, second):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _until_quit(
    client: Client, term: Terminal, lines: asyncio.Task[bool], *, piped: bool
) -> int:
    """Run the receiver beside ``lines`` (the user's input, True when the user is done). The
    user quitting is exit 0 (1 in piped mode if a line was refused); the server going away for
    good is 1. The client is closed here, outside both tasks, so that neither cancels the other
    mid-close."""
    receiver = asyncio.create_task(term.receive())
    await _race(lines, receiver)
    if lines.done() and not lines.cancelled():
        exc = lines.exception()
        if exc is None:
            await client.close(term.quit_reason or None)
            return 1 if piped and term.refused else 0
        if not isinstance(exc, ConnectionClosed):
            raise exc  # an unexpected error in the input loop propagates
    _print(f"!! disconnected: {escape(client.close_reason or 'connection closed')}")
    return 1


async def _piped(client: Client, term: Terminal, stdin: TextIO) -> int:
    async def send_all() -> bool:
        async for line in _piped_lines(stdin):
            if line.strip() and not await term.command(line):
                break
        return True

    return await _until_quit(client, term, asyncio.create_task(send_all()), piped=True)


async def run_piped(client: Client, stdin: TextIO, *, show_history: bool = False) -> int:
    """Send each line of ``stdin``, printing what happens, until EOF (0; 1 if a line was
    refused) or until the server goes away for good (1)."""
    rooms = client.welcome.rooms if client.welcome is not None else ()
    term = Terminal(client, _print, next(iter(rooms), None), show_history=show_history)
    if client.welcome is not None:
        term.show(client.welcome)
    return await _piped(client, term, stdin)
