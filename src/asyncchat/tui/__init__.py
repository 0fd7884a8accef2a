"""The terminal client: ``asyncchat join``.

::

    tui/__init__   run_terminal: a full-screen client in a terminal, a line client otherwise
    tui/model      the display model (windows, scrollback, activity, wrapping), sans-I/O
    tui/commands   what a typed line means, for both clients
    tui/app        the full-screen prompt_toolkit application: layout, keys, typed lines
    tui/feed       the events of the stream onto the display
    tui/line       the plain line client of piped stdin

In a terminal the client is full-screen: a window per room and per private conversation, a
status bar, and an input line that never waits on the network (a line shows at once as pending
and is sent as soon as the connection allows). It keeps reconnecting until the user quits. With
piped stdin it is a plain line client that exits at EOF once every line was acknowledged.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..client import connect
from ..errors import ServerError
from .line import DEFAULT_GIVE_UP, LOBBY, Terminal, run_piped

__all__ = ["DEFAULT_GIVE_UP", "LOBBY", "Terminal", "run_terminal"]


async def run_terminal(
    host: str,
    port: int,
    name: str,
    rooms: list[str] | None,
    stdin: TextIO | None = None,
    *,
    reconnect: bool = True,
    give_up: float | None = None,
    show_history: bool = False,
    color: bool = True,
    bell: bool = True,
    **client_options: Any,
) -> int:
    """Run the terminal client until the user quits (0), stdin ends with every line accepted
    (0) or the server goes away for good (1). In a terminal, a taken name falls back to
    ``name_`` and the client never gives up reconnecting unless ``give_up`` (seconds) is
    given; piped, ``give_up`` defaults to :data:`DEFAULT_GIVE_UP`. ``client_options`` go to
    :func:`connect` (``ssl``, credentials). Raises ``ConnectionClosed`` or ``ServerError`` when
    it cannot join at all."""
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        async with connect(
            host,
            port,
            name=name,
            rooms=rooms,
            reconnect=reconnect,
            give_up=DEFAULT_GIVE_UP if give_up is None else give_up,
            **client_options,
        ) as client:
            return await run_piped(client, stdin, show_history=show_history)
    from .app import run_app  # prompt_toolkit's full-screen machinery only in a terminal

    tries = [name, f"{name}_", f"{name}__"] if len(name) <= 30 else [name]
    for i, attempt in enumerate(tries):
        try:
            client = await connect(
                host,
                port,
                name=attempt,
                rooms=rooms,
                reconnect=reconnect,
                give_up=give_up,
                **client_options,
            )
        except ServerError as exc:
            if exc.code != "name_taken" or i == len(tries) - 1:
                raise
            continue
        async with client:
            return await run_app(client, color=color, bell=bell, wanted=name)
    raise AssertionError("unreachable")  # pragma: no cover
