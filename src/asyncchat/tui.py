"""The terminal client: ``asyncchat join``.

In a terminal, prompt_toolkit's ``prompt_async`` under ``patch_stdout`` keeps the half-typed line
intact while incoming messages print above it. With piped stdin, each line is sent in order and
the client exits 0 at EOF once every line was acknowledged (1 if any was refused). Everything
peers send is escaped before it is printed.

By default the client reconnects by itself: one line says the connection was lost, one that it
is back and how many messages it missed (they are shown, replayed, just before). Lines typed
meanwhile are sent once it is back. After ``give_up`` seconds without a connection it exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

from .client import Client, Reconnected, Reconnecting, StreamEvent, connect
from .errors import ConnectionClosed, ServerError, UsageError
from .events import (
    Ack,
    AwayRequest,
    BanRequest,
    BansRequest,
    Bye,
    Error,
    Join,
    Kick,
    Leave,
    Mute,
    Nick,
    Quit,
    Register,
    RoomsRequest,
    Say,
    SendDm,
    TopicRequest,
    Unban,
    WhoReply,
    WhoRequest,
)
from .text import (
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

__all__ = ["DEFAULT_GIVE_UP", "LOBBY", "Terminal", "run_terminal"]

#: Seconds without a connection after which the terminal client stops reconnecting: long
#: enough for a server restart or a network blip, short enough that a person waiting at a
#: dead chat is told so.
DEFAULT_GIVE_UP = 60.0
#: The room every server has, and the one a client is in when it names none.
LOBBY = "lobby"


class Terminal:
    """The commands and the display of one terminal session, for both input modes."""

    def __init__(self, client: Client, out: Callable[[str], None], room: str) -> None:
        self.client = client
        self.out = out
        self.room = room
        self.refused = 0
        #: Set by /quit: the reason to give the server (may be empty).
        self.quit_reason: str | None = None
        self._away = False

    def show(self, event: StreamEvent) -> None:
        match event:
            case Reconnecting(reason=reason):
                if not self._away:  # one line per loss, not one per attempt
                    self._away = True
                    self.out(f"-- connection lost ({escape(reason)}); reconnecting…")
                return
            case Reconnected(missed=missed, truncated=truncated):
                self._away = False
                self.out(back_line(missed, truncated))
                return
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
            self.out(f"!! {escape(exc.code)}: {escape(exc.message)}")
        except UsageError as exc:
            self.refused += 1
            self.out(f"!! {exc}")
        return True

    async def _command(self, line: str) -> bool:
        client = self.client
        match parse_command(line, self.room):
            case Say(room=room, text=text, action=action):
                await client.say(room, text, action=action)
                if action:
                    self.out(action_line(client.name, text))
            case Join(room=room):
                joined = await client.join(room)
                self.room = joined.room
            case Leave(room=room):
                await client.leave(room)
                if room.casefold() == self.room.casefold():
                    self.room = min(client.joined, default=LOBBY, key=str.casefold)
                    self.out(talking_line(self.room))
            case Nick(name=name):
                await client.nick(name)
            case SendDm(to=to, text=text):
                await client.dm(to, text)
                self.out(dm_sent_line(to, text))
            case WhoRequest(room=room):
                self.out(who_line(room, await client.who(room)))
            case RoomsRequest():
                self.out(rooms_line(await client.rooms()))
            case TopicRequest(room=room, text=text):
                await client.topic(room, text)  # the reply is shown as it arrives
            case AwayRequest(message=message):
                await client.away(message)  # likewise
            case BansRequest():
                for ban_line in format_bans(await client.bans()):
                    self.out(f"-- {ban_line}")
            case Register() | Kick() | BanRequest() | Unban() | Mute() as request:
                await client.request({k: v for k, v in request.to_wire().items() if k != "id"})
                self.out(f"-- {request.TYPE}: done")
            case Quit(reason=reason):
                self.quit_reason = reason or ""
                return False
            case "help":
                self.out(HELP)
        return True


async def _piped_lines(stdin: TextIO) -> AsyncIterator[str]:
    """Lines of a non-terminal stdin without blocking the loop: a pipe through
    ``connect_read_pipe``; a regular file (which never blocks) read directly."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stdin
        )
    except ValueError:  # a regular file or /dev/null
        for raw in stdin.buffer:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
        return
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


async def _interactive(client: Client, term: Terminal) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession()

    async def read_lines() -> bool:
        while True:
            try:
                line = await session.prompt_async(f"#{term.room}> ")
            except (EOFError, KeyboardInterrupt):
                return True
            if line.strip() and not await term.command(line.rstrip("\r\n")):
                return True

    with patch_stdout(raw=True):
        return await _until_quit(client, term, asyncio.create_task(read_lines()), piped=False)


async def run_terminal(
    host: str,
    port: int,
    name: str,
    rooms: list[str] | None,
    stdin: TextIO | None = None,
    *,
    reconnect: bool = True,
    give_up: float | None = DEFAULT_GIVE_UP,
    **client_options: Any,
) -> int:
    """Run the terminal client until the user quits (0), stdin ends with every line accepted (0)
    or the server goes away for good (1): at once without ``reconnect``, else after ``give_up``
    seconds without a connection (None: never). ``client_options`` go to :func:`connect`
    (``ssl``, credentials). Raises ``ConnectionClosed`` or ``ServerError`` when it cannot join
    at all."""
    stdin = stdin or sys.stdin
    tty = stdin.isatty()
    async with connect(
        host,
        port,
        name=name,
        rooms=rooms,
        reconnect=reconnect,
        give_up=give_up,
        **client_options,
    ) as client:
        first = next(iter(client.welcome.rooms), LOBBY) if client.welcome else LOBBY
        term = Terminal(client, _print, first)
        if client.welcome is not None:
            term.show(client.welcome)
        if tty:
            return await _interactive(client, term)
        return await _piped(client, term, stdin)
