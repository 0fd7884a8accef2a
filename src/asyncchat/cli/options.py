"""The command line's grammar: one argparse parser for ``serve``, ``history`` and ``join``.

``serve``'s settings are built from :data:`asyncchat.config.SETTINGS`, so that each flag is
the setting's flat name with dashes and its default (``None``: not given) lets the environment
and the configuration file show through. Values are checked here as far as argparse can (a
number, a port); the ranges are :mod:`asyncchat.config`'s business.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

from .. import __version__
from ..config import DURABILITIES, GUESTS, LOG_LEVELS, LOOPS, REGISTRATIONS, Listener, ServerConfig
from ..limits import Limits
from ..tui import DEFAULT_GIVE_UP
from .accounts import add_parser as add_accounts_parser

__all__ = ["DEFAULT_DB_HELP", "build_parser", "port", "positive", "room", "when"]

#: What ``add_subparsers`` returns (a private class of argparse).
_Subparsers = argparse._SubParsersAction

#: How help texts name the default history file.
DEFAULT_DB_HELP = "$XDG_DATA_HOME/asyncchat/history.db, or ~/.local/share/asyncchat/history.db"

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
    "nick_rate": "nick requests per second per connection, sustained",
    "nick_burst": "nick requests a connection may send at once",
    "join_rate": "join and leave requests per second per connection, sustained",
    "join_burst": "join and leave requests a connection may send at once",
    "topic_rate": "topic changes per second per connection, sustained",
    "topic_burst": "topic changes a connection may make at once",
    "away_rate": "away changes per second per connection, sustained",
    "away_burst": "away changes a connection may make at once",
    "max_rooms": "rooms the server holds at once",
    "list_page_max": "entries of one rooms or who reply; more are paged",
    "max_rate_violations": "refused messages in a row before a flooder is disconnected",
    "max_connections": "open connections in all",
    "max_per_ip": "open connections per IP address (see --per-ip-exempt)",
    "per_ip_exempt": "networks exempt from --max-per-ip (repeatable; default loopback; "
    "'none': nobody)",
    "max_rooms_per_client": "rooms one client may be in",
    "quiet_room_size": "members above which a room stops broadcasting joined/left of others",
    "history_on_join": "messages replayed to a client joining a room (with history on)",
    "history_page_max": "messages in one page of history at the most",
    "idempotency_window": "seconds during which a re-sent say id is not posted twice",
    "shutdown_grace": "seconds a shutdown waits for clients to take their bye",
    "login_failures": "failed logins in a row (per IP, per account) before a lock",
    "login_lockout": "seconds an IP or account stays locked after --login-failures",
    "hash_workers": "threads that hash passwords (bounds the CPU a login storm takes)",
}


def positive(kind: Callable[[str], float | int], zero_ok: bool = False) -> Callable[[str], Any]:
    """An argparse type: a positive (or, with ``zero_ok``, non-negative) finite number."""

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


def port(text: str) -> int:
    """An argparse type: a TCP port number."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {number}")
    return number


def when(text: str) -> float:
    """An argparse type: an ISO date/time (local) or Unix seconds, as Unix seconds."""
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


class _Parser(argparse.ArgumentParser):
    """Says a bad argument in one line, without the whole usage block (``--help`` has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def room(text: str) -> str:
    """A room as the user writes it: ``#dev`` or ``dev`` (the ``#`` is the display's)."""
    name = text[1:] if text.startswith("#") else text
    if not name:
        raise argparse.ArgumentTypeError(f"no room name in {text!r}")
    return name


def _login_name() -> str | None:
    try:
        return getpass.getuser() or None
    except (KeyError, OSError):  # no name for this uid
        return None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``asyncchat``'s command line."""
    parser: argparse.ArgumentParser = _Parser(
        prog="asyncchat", description="A fast, self-hosted asyncio chat service."
    )
    parser.add_argument("--version", action="version", version=f"asyncchat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve(sub)
    _history(sub)
    _join(sub)
    add_accounts_parser(sub)
    return parser


def _serve(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    listener, cfg = Listener(), ServerConfig()
    serve = sub.add_parser(
        "serve",
        help="run the chat server",
        description="Run the chat server until SIGINT or SIGTERM. In a terminal, typed lines "
        "are announced to #lobby (/help). Settings come from the flags, then ASYNCCHAT_* "
        "environment variables (ASYNCCHAT_MAX_FRAME for --max-frame), then --config FILE, "
        "then the defaults.",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from this TOML file (see --print-config for its shape)",
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings as a file --config reads, and exit",
    )
    serve.add_argument("--host", help=f"address (default: {listener.host})")
    serve.add_argument("--port", type=port, help=f"TCP port (default: {listener.port})")
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve TLS 1.2+ only, with this PEM certificate chain (with --tls-key; "
        "SIGHUP or the console's /reload-tls reads both again)",
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    doors = serve.add_argument_group("text doors (off by default; see docs/doors.md)")
    for door, what in (
        ("line", "text lines (netcat, telnet)"),
        ("classic", "the classic 10-byte-header chat protocol"),
    ):
        doors.add_argument(f"--{door}-port", type=port, help=f"serve {what} on this port too")
        doors.add_argument(
            f"--{door}-host", help=f"address of the {door} door (default: {listener.host})"
        )
        doors.add_argument(
            f"--{door}-tls-cert",
            metavar="FILE",
            help=f"serve the {door} door with TLS only, with this PEM certificate chain "
            f"(with --{door}-tls-key)",
        )
        doors.add_argument(
            f"--{door}-tls-key", metavar="FILE", help=f"the PEM private key of --{door}-tls-cert"
        )
    serve.add_argument(
        "--loop",
        choices=LOOPS,
        help="event loop: uvloop where it imports (auto, the default), or asyncio",
    )
    web = Listener(kind="web")
    serve.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        help=f"serve the chat page, its WebSocket (/ws), /metrics, /healthz and /readyz over "
        f"HTTP (the default, on {web.host}:{web.port}); --no-web: not",
    )
    serve.add_argument("--web-host", help=f"the chat page's address (default: {web.host})")
    serve.add_argument(
        "--web-port", type=port, help=f"the chat page's HTTP port (default: {web.port})"
    )
    serve.add_argument(
        "--web-origin",
        dest="web_origins",
        action="append",
        metavar="ORIGIN",
        help="another origin whose pages may open /ws, such as https://chat.example.org "
        "(repeatable; '*' for any; the page's own origin is always allowed)",
    )
    serve.add_argument(
        "--web-tls-cert",
        metavar="FILE",
        help="serve the page over HTTPS (and /ws as WSS) with this PEM certificate chain "
        "(with --web-tls-key)",
    )
    serve.add_argument(
        "--web-tls-key", metavar="FILE", help="the PEM private key of --web-tls-cert"
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help=f"logging level (default: {cfg.log_level}; messages are logged at debug)",
    )
    serve.add_argument("--motd", help="message of the day, sent in welcome")
    cluster = serve.add_argument_group("cluster (see docs/cluster.md)")
    cluster.add_argument(
        "--redis",
        metavar="URL",
        help="share rooms, names and history with the other nodes through this Redis "
        "(redis://HOST:PORT/DB); --db and --durability are then unused",
    )
    cluster.add_argument(
        "--redis-lease",
        type=positive(float),
        metavar="SECONDS",
        help=f"a dead node's names are free, a paused node fenced, after this long "
        f"(default: {cfg.redis_lease})",
    )

    limits = serve.add_argument_group("limits (see docs/limits.md)")
    for f in dataclasses.fields(Limits):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "per_ip_exempt":
            limits.add_argument(flag, action="append", metavar="NETWORK", help=_LIMIT_HELP[f.name])
            continue
        kind = int if f.type == "int" else float
        limits.add_argument(
            flag,
            type=positive(kind, zero_ok=f.name == "history_on_join"),
            metavar=kind.__name__.upper(),
            help=f"{_LIMIT_HELP[f.name]} (default: {f.default})",
        )

    _auth_flags(serve)
    group = serve.add_argument_group("history (see docs/delivery.md)")
    group.add_argument(
        "--db",
        metavar="PATH",
        help=f"SQLite file of the history (default: {DEFAULT_DB_HELP}; "
        "':memory:' keeps it only while the server runs)",
    )
    group.add_argument(
        "--history",
        action=argparse.BooleanOptionalAction,
        help="keep a history (the default); --no-history: no replay, no resume, acks "
        "before storing",
    )
    group.add_argument(
        "--history-max",
        type=positive(int),
        metavar="N",
        help="messages kept per room (default: all)",
    )
    group.add_argument(
        "--history-days",
        type=positive(float),
        metavar="DAYS",
        help="days a message is kept (default: forever)",
    )
    group.add_argument(
        "--durability",
        choices=DURABILITIES,
        help="an acknowledged message survives a crash of the server "
        "(process, the default) or of the machine too (power: fsync)",
    )


def _auth_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("accounts and access (see docs/security.md)")
    group.add_argument(
        "--accounts-db",
        metavar="PATH",
        help="SQLite file of accounts and bans (default: the history file, --db, even with "
        "--no-history)",
    )
    group.add_argument(
        "--registration",
        choices=REGISTRATIONS,
        help="closed (the default): accounts are made with 'asyncchat accounts'; open: users "
        "register their name in-band",
    )
    group.add_argument(
        "--guests",
        choices=GUESTS,
        help="allow (the default): connections without an account may use unregistered names; "
        "deny: accounts only",
    )
    group.add_argument(
        "--server-password",
        metavar="SECRET",
        help="what guests must give in hello (prefer ASYNCCHAT_SERVER_PASSWORD: flags show in ps)",
    )
    group.add_argument(
        "--allow-plaintext-auth",
        action="store_const",
        const=True,
        help="accept passwords over plain TCP from other machines (default: TLS or loopback only)",
    )


def _history(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    export = sub.add_parser(
        "history",
        help="print the transcript of a room",
        description="Print what a server with history kept of a room: text for people, "
        "jsonl (one message object per line) for scripts.",
    )
    export.add_argument(
        "--db",
        metavar="PATH",
        help=f"the server's history file (default: $ASYNCCHAT_DB, else {DEFAULT_DB_HELP})",
    )
    export.add_argument("--room", required=True, type=room, help="the room (#room or room)")
    export.add_argument(
        "--since",
        type=when,
        metavar="WHEN",
        help="only messages from WHEN: ISO date/time (local) or Unix seconds",
    )
    export.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="output format (default: %(default)s)",
    )


def _join(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    join = sub.add_parser(
        "join",
        help="join a chat as NAME",
        description="Join a chat. In a terminal, type to talk (/help); with "
        "piped stdin each line is sent and the client exits at EOF. A lost connection is "
        "reconnected by itself, and what was missed meanwhile is shown.",
    )
    listener = Listener()
    join.add_argument("--host", default=listener.host, help="address (default: %(default)s)")
    join.add_argument(
        "--port", type=port, default=listener.port, help="TCP port (default: %(default)s)"
    )
    join.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="event loop: uvloop where it imports (auto, the default), or asyncio",
    )
    join.add_argument(
        "--tls", action="store_true", help="connect with TLS, verifying the server's certificate"
    )
    join.add_argument(
        "--ca",
        metavar="FILE",
        help="with --tls: trust the certificates in this PEM file (default: the system's)",
    )
    join.add_argument(
        "--insecure",
        action="store_true",
        help="with --tls: do not verify the certificate or host name (testing only)",
    )
    join.add_argument(
        "--token-file",
        metavar="FILE",
        help="log in with the bot token in FILE (else $ASYNCCHAT_PASSWORD, else a prompt when "
        "the name is registered)",
    )
    login = _login_name()
    join.add_argument(
        "--name",
        required=login is None,
        default=login,
        help="your name (1-32 characters, no spaces; default: your login name"
        + (f", {login})" if login else ")"),
    )
    join.add_argument(
        "--room",
        action="append",
        dest="rooms",
        type=room,
        metavar="ROOM",
        help="room to join, #room or room (repeatable; default: lobby)",
    )
    join.add_argument(
        "--show-history",
        action="store_true",
        help="piped: print the messages a room replays on join too (default: only new ones)",
    )
    join.add_argument(
        "--no-color", action="store_true", help="no colours (also when NO_COLOR is set)"
    )
    join.add_argument("--no-bell", action="store_true", help="no bell when a message names you")
    join.add_argument(
        "--no-reconnect",
        action="store_true",
        help="exit when the connection is lost instead of reconnecting by itself",
    )
    join.add_argument(
        "--give-up",
        type=positive(float),
        metavar="SECONDS",
        help="stop reconnecting and exit 1 after this long without a connection "
        f"(default: never in a terminal, {DEFAULT_GIVE_UP:g} with piped input)",
    )
