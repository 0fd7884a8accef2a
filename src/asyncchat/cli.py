"""The command line: ``asyncchat serve`` and ``asyncchat join``.

The CLI, and only the CLI, chooses the event loop: uvloop where it imports, ``--loop asyncio``
to opt out. ``main(argv) -> int`` returns the exit status: 0 done, 1 failed at run time (port
taken, server gone), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from . import __version__, wire
from .backends.sqlite import DEFAULT_DB_PATH, SQLiteStore, default_db_path
from .errors import ChatError, ConfigError, ConnectionClosed, ProtocolError, ServerError
from .limits import Limits
from .server import ChatServer
from .text import escape
from .tui import DEFAULT_GIVE_UP, run_terminal
from .validation import name_key

__all__ = ["main", "run"]

log = logging.getLogger("asyncchat")

OPERATOR_HELP = """\
operator commands:
  TEXT            announce TEXT to #lobby as *server
  /say ROOM TEXT  announce TEXT to ROOM
  /who [ROOM]     who is in ROOM (default: lobby)
  /rooms          every room and its members
  /kick NAME      disconnect NAME
  /quit           shut the server down
  /help           this list"""

_LIMIT_HELP = {
    "max_frame": "bytes of one frame's payload",
    "max_text": "characters of one message",
    "handshake_timeout": "seconds for a complete hello",
    "ping_interval": "seconds of silence before the server pings a client",
    "ping_timeout": "seconds for the answer to a ping before the client is dropped",
    "max_outbox": "bytes of unsent backlog before a member is evicted as a slow consumer",
    "write_timeout": "seconds without accepting any backlog before eviction",
    "rate": "messages per second per connection, sustained",
    "burst": "messages a connection may send at once",
    "max_rate_violations": "refused messages in a row before a flooder is disconnected",
    "max_connections": "open connections in all",
    "max_per_ip": "open connections per IP address (see --per-ip-exempt)",
    "per_ip_exempt": "networks exempt from --max-per-ip (repeatable; default loopback)",
    "max_rooms_per_client": "rooms one client may be in",
    "quiet_room_size": "members above which a room stops broadcasting joined/left of others",
    "history_on_join": "messages replayed to a client joining a room (with history on)",
    "history_page_max": "messages in one page of history at the most",
    "idempotency_window": "seconds during which a re-sent say id is not posted twice",
    "shutdown_grace": "seconds a shutdown waits for clients to take their bye",
}


def _positive(kind: Callable[[str], float | int], zero_ok: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
            what = "non-negative" if zero_ok else "positive"
            raise argparse.ArgumentTypeError(f"must be a {what} number: {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncchat", description="A fast, self-hosted asyncio chat service."
    )
    parser.add_argument("--version", action="version", version=f"asyncchat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    common.add_argument("--port", type=_port, default=1234, help="TCP port (default: %(default)s)")
    common.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop where it imports (auto, the default), or asyncio",
    )

    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the chat server",
        description="Run the chat server until SIGINT or SIGTERM. In a "
        "terminal, typed lines are announced to #lobby (/help).",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="logging level (default: %(default)s; messages are logged at debug)",
    )
    serve.add_argument("--motd", help="message of the day, sent in welcome")
    limits = serve.add_argument_group("limits (see docs/limits.md)")
    for f in dataclasses.fields(Limits):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "per_ip_exempt":
            limits.add_argument(flag, action="append", metavar="NETWORK", help=_LIMIT_HELP[f.name])
            continue
        kind = int if f.type == "int" else float
        limits.add_argument(
            flag,
            type=_positive(kind, zero_ok=f.name == "history_on_join"),
            default=None,
            metavar=kind.__name__.upper(),
            help=f"{_LIMIT_HELP[f.name]} (default: {f.default})",
        )

    history = serve.add_argument_group("history (see docs/delivery.md)")
    history.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"SQLite file of the history (default: {DEFAULT_DB_PATH}; "
        "':memory:' keeps it only while the server runs)",
    )
    history.add_argument(
        "--no-history",
        action="store_true",
        help="keep no history: no replay, no resume, acks before storing",
    )
    history.add_argument(
        "--history-max",
        type=_positive(int),
        metavar="N",
        help="messages kept per room (default: all)",
    )
    history.add_argument(
        "--history-days",
        type=_positive(float),
        metavar="DAYS",
        help="days a message is kept (default: forever)",
    )
    history.add_argument(
        "--durability",
        choices=("process", "power"),
        default="process",
        help="an acknowledged message survives a crash of the server "
        "(process, the default) or of the machine too (power: fsync)",
    )

    export = sub.add_parser(
        "history",
        help="print the transcript of a room",
        description="Print what a server with history kept of a room: text for people, "
        "jsonl (one message object per line) for scripts.",
    )
    export.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"the server's history file (default: {DEFAULT_DB_PATH})",
    )
    export.add_argument("--room", required=True, help="the room")
    export.add_argument(
        "--since",
        type=_when,
        metavar="WHEN",
        help="only messages from WHEN: ISO date/time (local) or Unix seconds",
    )
    export.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="output format (default: %(default)s)",
    )

    join = sub.add_parser(
        "join",
        parents=[common],
        help="join a chat as NAME",
        description="Join a chat. In a terminal, type to talk (/help); with "
        "piped stdin each line is sent and the client exits at EOF. A lost connection is "
        "reconnected by itself, and what was missed meanwhile is shown.",
    )
    join.add_argument("--name", required=True, help="your name (1-32 characters, no spaces)")
    join.add_argument(
        "--room",
        action="append",
        dest="rooms",
        metavar="ROOM",
        help="room to join (repeatable; default: lobby)",
    )
    join.add_argument(
        "--no-reconnect",
        action="store_true",
        help="exit when the connection is lost instead of reconnecting by itself",
    )
    join.add_argument(
        "--give-up",
        type=_positive(float),
        default=DEFAULT_GIVE_UP,
        metavar="SECONDS",
        help="stop reconnecting and exit 1 after this long without a connection "
        "(default: %(default)g)",
    )
    return parser


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("uvloop is not installed (use --loop asyncio)") from None
        return None
    return uvloop.new_event_loop


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so that the operator console's
    ``patch_stdout`` keeps log lines above the prompt."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(level: str) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("asyncchat")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


async def _operator(server: ChatServer, stop: asyncio.Event) -> None:
    """The operator's console: typed lines go to #lobby as the server."""
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
                _operator_command(server, line, stop)


def _operator_command(server: ChatServer, line: str, stop: asyncio.Event) -> None:
    cmd, _, rest = line[1:].partition(" ") if line.startswith("/") else ("say", "", "lobby " + line)
    rest = rest.strip()
    try:
        match cmd.lower():
            case "say":
                room, _, text = rest.partition(" ")
                if not room or not text.strip():
                    print("usage: /say ROOM TEXT")
                    return
                server.hub.announce(room, text)
            case "who":
                room, names = server.hub.who(rest or "lobby")
                print(f"#{escape(room)}: {', '.join(escape(n) for n in names) or '(nobody)'}")
            case "rooms":
                for room, names in server.rooms.items():
                    print(f"#{escape(room)} ({len(names)}): {', '.join(escape(n) for n in names)}")
            case "kick":
                if not rest:
                    print("usage: /kick NAME")
                elif not server.kick(rest):
                    print(f"nobody is called {escape(rest)}")
            case "quit":
                stop.set()
            case "help":
                print(OPERATOR_HELP)
            case _:
                print(f"unknown command /{escape(cmd)}; /help lists the commands")
    except ProtocolError as exc:
        print(f"{exc.code}: {exc.message}")


async def _serve(args: argparse.Namespace) -> int:
    limits = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Limits)
        if getattr(args, f.name) is not None
    }
    db = None if args.no_history else (args.db or str(default_db_path()))
    server = ChatServer(
        args.host,
        args.port,
        motd=args.motd,
        db=db,
        history_max=args.history_max,
        history_days=args.history_days,
        durability=args.durability,
        **limits,
    )
    try:
        await server.start()
    except OSError as exc:
        why = (
            "the address is already in use"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        print(f"asyncchat: cannot listen on {args.host}:{args.port}: {why}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console = None
    if sys.stdin is not None and sys.stdin.isatty():
        console = asyncio.create_task(_operator(server, stop), name="asyncchat-operator")
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if console is not None:
            console.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await console
        await server.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


async def _join(args: argparse.Namespace) -> int:
    try:
        return await run_terminal(
            args.host,
            args.port,
            args.name,
            args.rooms,
            reconnect=not args.no_reconnect,
            give_up=args.give_up,
        )
    except ServerError as exc:
        print(
            f"asyncchat: the server refused to let you in: {exc.code}: {exc.message}",
            file=sys.stderr,
        )
        return 1
    except ConnectionClosed as exc:
        print(f"asyncchat: {exc.reason}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"asyncchat: no answer from {args.host}:{args.port}", file=sys.stderr)
        return 1


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date/time or Unix seconds: {text!r} (try 2026-11-21 or 2026-11-21T14:00)"
        ) from None


def _export(args: argparse.Namespace) -> int:
    path = args.db or str(default_db_path())
    store = SQLiteStore(path)
    store.open_readonly()
    try:
        key = name_key(args.room)
        if key not in store.last_seqs():
            print(f"asyncchat: {path} keeps no message of room {args.room!r}", file=sys.stderr)
            return 1
        out = sys.stdout
        for rec in store.export(key, since=args.since):
            if args.format == "jsonl":
                out.write(wire.message(rec.name, rec.seq, rec.sender, rec.text, rec.ts, rec.action)[4:].decode() + "\n")
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.ts))
                body = escape(rec.text, newlines=True).replace("\n", "\n    ")
                who = escape(rec.sender)
                line = f"* {who} {body}" if rec.action else f"<{who}> {body}"
                out.write(f"{stamp} #{escape(rec.name)} {line}\n")
        out.flush()
    finally:
        store.close()
    return 0


def _run(coro: Coroutine[Any, Any, int], loop: str) -> int:
    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            _setup_logging(args.log_level)
            if args.per_ip_exempt is not None:
                args.per_ip_exempt = tuple(args.per_ip_exempt)
            Limits.from_kwargs(
                **{
                    f.name: getattr(args, f.name)
                    for f in dataclasses.fields(Limits)
                    if getattr(args, f.name) is not None
                }
            )
            return _run(_serve(args), args.loop)
        if args.command == "history":
            return _export(args)
        _setup_logging("warning")
        return _run(_join(args), args.loop)
    except ConfigError as exc:
        parser.exit(2, f"asyncchat: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    except ChatError as exc:  # pragma: no cover - every expected one is handled above
        print(f"asyncchat: {exc}", file=sys.stderr)
        return 1


def run() -> None:
    """The console script."""
    sys.exit(main())
