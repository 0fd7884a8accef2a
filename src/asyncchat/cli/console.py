"""The operator's console of ``asyncchat serve`` in a terminal: a typed line goes to #lobby as
``*server``, slash commands look at and steer the server through :class:`ChatServer`'s public
API only."""

from __future__ import annotations

import asyncio
import logging

from ..errors import ConfigError, ProtocolError
from ..server import ChatServer
from ..text import escape

__all__ = ["OPERATOR_HELP", "operator_command", "reload_tls", "run_console"]

log = logging.getLogger("asyncchat")

OPERATOR_HELP = """\
operator commands:
  TEXT            announce TEXT to #lobby as *server
  /say ROOM TEXT  announce TEXT to ROOM
  /who [ROOM]     who is in ROOM (default: lobby)
  /rooms          every room and its members
  /kick NAME      disconnect NAME
  /reload-tls     read the TLS certificate and key files again (as SIGHUP does)
  /quit           shut the server down
  /help           this list"""


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
            case "kick":
                if not rest:
                    print("usage: /kick NAME")
                elif not server.kick(rest):
                    print(f"nobody is called {escape(rest)}")
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
