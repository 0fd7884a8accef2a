"""The operator's console of ``asyncchat serve`` in a terminal: a typed line goes to #lobby as
``*server``, slash commands look at and steer the server through :class:`ChatServer`'s public
API only."""

from __future__ import annotations

import asyncio
import logging

from ..errors import ConfigError, ProtocolError, StoreError, UsageError
from ..events import BanInfo
from ..server import ChatServer
from ..text import OPERATOR_HELP_LINES, escape, format_bans, operator_request
from ..transports.moderation import CONSOLE

__all__ = ["OPERATOR_HELP", "operator_command", "reload_tls", "run_console"]

log = logging.getLogger("asyncchat")

OPERATOR_HELP = (
    """\
operator commands:
  TEXT            announce TEXT to #lobby as *server
  /say ROOM TEXT  announce TEXT to ROOM
  /who [ROOM]     who is in ROOM (default: lobby)
  /rooms          every room and its members
  /reload-tls     read the TLS certificate and key files again (as SIGHUP does)
  /quit           shut the server down
  /help           this list
"""
    + OPERATOR_HELP_LINES
)


async def run_console(server: ChatServer, stop: asyncio.Event) -> None:
    """Read operator lines until ``/quit``, EOF or Ctrl-C (which set ``stop``) or cancellation.
    Log lines print above the prompt, which keeps a half-typed line intact."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession()
    with patch_stdout(raw=True):
        print("operator console: lines you type go to #lobby (/help)")
        while not stop.is_set():
            try:
                line = (await session.prompt_async("server> ")).strip()
            except (EOFError, KeyboardInterrupt):
                stop.set()
                return
            if line:
                await operator_command(server, line, stop)


async def operator_command(server: ChatServer, line: str, stop: asyncio.Event) -> None:
    """Carry out one console line, printing its answer; ``/quit`` sets ``stop``. A refusal
    (no such room) is printed as ``code: message``, never raised."""
    cmd, _, rest = line[1:].partition(" ") if line.startswith("/") else ("say", "", "lobby " + line)
    rest = rest.strip()
    try:
        match cmd.lower():
            case "say":
                room, _, text = rest.partition(" ")
                if not room or not text.strip():
                    print("usage: /say ROOM TEXT")
                    return
                await server.announce(room, text)
            case "who":
                room, names = server.who(rest or "lobby")
                print(f"#{escape(room)}: {', '.join(escape(n) for n in names) or '(nobody)'}")
            case "rooms":
                for room, names in server.rooms.items():
                    print(f"#{escape(room)} ({len(names)}): {', '.join(escape(n) for n in names)}")
            case "kick" | "ban" | "unban" | "bans" | "mute":
                await _moderate(server, cmd, rest)
            case "reload-tls":
                reload_tls(server)
            case "quit":
                stop.set()
            case "help":
                print(OPERATOR_HELP)
            case _:
                print(f"unknown command /{escape(cmd)}; /help lists the commands")
    except ProtocolError as exc:
        print(f"{exc.code}: {exc.message}")


def reload_tls(server: ChatServer) -> None:
    """Reload the TLS certificates (SIGHUP, ``/reload-tls``); a failure is logged in one line
    and the old certificate stays in use."""
    try:
        if not server.reload_tls():
            log.warning("no listener serves TLS: nothing to reload")
    except ConfigError as exc:
        log.error("%s (the old certificate stays in use)", exc)


async def _moderate(server: ChatServer, cmd: str, rest: str) -> None:
    """An operator command, through the same code path as the operators' requests."""
    try:
        event = operator_request(cmd, rest)
    except UsageError as exc:
        print(exc)
        return
    assert event is not None
    try:
        bans = await server.moderation.handle(event, by=CONSOLE, operator=True)
    except StoreError as exc:
        print(f"the store failed: {exc}")
        return
    if bans is not None:
        for line in format_bans([BanInfo(**b) for b in bans]):
            print(line)
    else:
        print("done")
