"""Every resource bound of the server, named the same in the API, the CLI and ``welcome.limits``.

Each limit is a field of :class:`Limits` and a keyword argument of :func:`asyncchat.run_server`
and :class:`asyncchat.ChatServer`, with the same name everywhere else: the ``[limits]`` table of
the config file (``max_frame = 65536``), the environment (``ASYNCCHAT_MAX_FRAME``), the CLI flag
(``--max-frame``) and ``welcome.limits``. ``docs/limits.md`` explains each number and what a
client sees when it is hit.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULT_AWAY_BURST",
    "DEFAULT_AWAY_RATE",
    "DEFAULT_BURST",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_HASH_WORKERS",
    "DEFAULT_HISTORY_ON_JOIN",
    "DEFAULT_HISTORY_PAGE_MAX",
    "DEFAULT_IDEMPOTENCY_WINDOW",
    "DEFAULT_JOIN_BURST",
    "DEFAULT_JOIN_RATE",
    "DEFAULT_LIST_PAGE_MAX",
    "DEFAULT_LOGIN_FAILURES",
    "DEFAULT_LOGIN_LOCKOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_OUTBOX",
    "DEFAULT_MAX_PER_IP",
    "DEFAULT_MAX_ROOMS",
    "DEFAULT_MAX_ROOMS_PER_CLIENT",
    "DEFAULT_MAX_TEXT",
    "DEFAULT_NICK_BURST",
    "DEFAULT_NICK_RATE",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_QUIET_ROOM_SIZE",
    "DEFAULT_RATE",
    "DEFAULT_SHUTDOWN_GRACE",
    "DEFAULT_TOPIC_BURST",
    "DEFAULT_TOPIC_RATE",
    "DEFAULT_WRITE_TIMEOUT",
    "Limits",
]

#: Bytes of one frame's payload. 64 KiB holds the longest text (4,000 characters of up to 4 UTF-8
#: bytes, JSON-escaped) many times over; NATS and websockets allow 1 MiB, but a chat line is not a
#: file transfer and the bound is checked on the header before anything is buffered.
DEFAULT_MAX_FRAME = 65_536
#: Characters of one message. Ergo allows 512-byte lines and 4 KiB multiline messages.
DEFAULT_MAX_TEXT = 4_000
#: Seconds for a complete ``hello`` after connecting (websockets: 10 s, NATS auth: 2 s).
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Seconds of silence from a client before the server pings it (websockets 20, Ergo 90).
DEFAULT_PING_INTERVAL = 30.0
#: Seconds after a ping without any frame from the client before it is dropped (Ergo 60).
DEFAULT_PING_TIMEOUT = 60.0
#: Bytes of unsent backlog before a member is evicted as a slow consumer. 256 KiB is about 1,000
#: ordinary messages: minutes of chat, far more than a healthy client lags (Ergo 96 KiB).
DEFAULT_MAX_OUTBOX = 262_144
#: Seconds a member may go without accepting any of its backlog before it is evicted (NATS 10 s).
DEFAULT_WRITE_TIMEOUT = 10.0
#: Messages (``say``/``dm``) per second, sustained, per connection (Ergo fakelag: 2/s).
DEFAULT_RATE = 2.0
#: Messages a connection may send at once before the sustained rate applies (Ergo: 5).
DEFAULT_BURST = 5
#: ``nick`` requests per second, sustained, per connection: a rename is sent to everyone who
#: shares a room, so a rename storm is a flood of others (Ergo's fakelag covers every command).
DEFAULT_NICK_RATE = 0.2
#: ``nick`` requests a connection may send at once.
DEFAULT_NICK_BURST = 3
#: ``join`` and ``leave`` requests per second, sustained, per connection (each is a notice to
#: the room's members).
DEFAULT_JOIN_RATE = 1.0
#: ``join``/``leave`` requests at once: a client joining its usual rooms on start is not slowed.
DEFAULT_JOIN_BURST = 10
#: ``topic`` changes per second, sustained, per connection (each is sent to the room).
DEFAULT_TOPIC_RATE = 0.2
#: ``topic`` changes a connection may make at once.
DEFAULT_TOPIC_BURST = 3
#: ``away`` changes per second, sustained, per connection (each is sent to everyone who
#: shares a room).
DEFAULT_AWAY_RATE = 0.2
#: ``away`` changes a connection may make at once.
DEFAULT_AWAY_BURST = 3
#: Open connections in all (Redis ``maxclients``: 10,000).
DEFAULT_MAX_CONNECTIONS = 10_000
#: Open connections from one IP address, loopback exempt by default (Ergo: 16).
DEFAULT_MAX_PER_IP = 16
#: Rooms one client may be in at once (ngircd: 10 channels).
DEFAULT_MAX_ROOMS_PER_CLIENT = 32
#: Rooms the server holds at once (``lobby`` included): each costs memory and a line of every
#: ``rooms`` listing, and a room is made by anyone who joins a new name.
DEFAULT_MAX_ROOMS = 10_000
#: Entries of one ``rooms`` or ``who`` reply at the most; more are paged (``more``, ``after``):
#: 500 room or user names are 20 to 40 KB, well within a client's outbox.
DEFAULT_LIST_PAGE_MAX = 500
#: Members above which a room stops broadcasting joined/left notices of others: filling a room is
#: otherwise quadratic (10,000 joins to one room would send 50 million notices). The joiner still
#: gets its own ``joined``, and ``who`` lists the members.
DEFAULT_QUIET_ROOM_SIZE = 1_000
#: Messages replayed (marked ``history``) to a client joining a room, when history is on.
DEFAULT_HISTORY_ON_JOIN = 50
#: Messages in one page of history (a ``history`` request or a resume) at the most: a page is
#: read and sent in one go, so this bounds the work and the outbox of one request.
DEFAULT_HISTORY_PAGE_MAX = 500
#: Seconds during which a ``say`` re-sent with the same ``id`` by the same name gets the
#: original ``ack`` instead of being posted again.
DEFAULT_IDEMPOTENCY_WINDOW = 600.0
#: Seconds a graceful shutdown waits for clients to take their ``bye`` before aborting them.
DEFAULT_SHUTDOWN_GRACE = 5.0
#: Consecutive refused (``rate_limited``) messages after which a flooding client is disconnected.
DEFAULT_MAX_RATE_VIOLATIONS = 20
#: Failed logins in a row, per IP address and per account, after which that address or
#: account is locked for ``login_lockout`` seconds (before that, each failure doubles the wait
#: before the next attempt, from 0.5 s). Ergo locks after 3 failures a minute, fail2ban's
#: default is 5.
DEFAULT_LOGIN_FAILURES = 5
#: Seconds an IP address or account stays locked after ``login_failures`` failures (fail2ban's
#: default ban: 10 minutes; shorter, since a locked account also locks its owner out).
DEFAULT_LOGIN_LOCKOUT = 300.0
#: Threads that hash passwords (scrypt, ~50 ms and 16 MiB each): logins use at most this much
#: CPU and memory however many come at once, and the event loop never hashes.
DEFAULT_HASH_WORKERS = 2

_LOOPBACK = ("127.0.0.0/8", "::1/128")
#: Limits for which 0 is meaningful (no replay on join).
_MAY_BE_ZERO = frozenset({"history_on_join"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The server's resource bounds. Units are bytes, seconds or counts; ``None`` never appears:
    every limit is on, and a very large value is how to relax one.

    Raises :class:`~asyncchat.errors.ConfigError` when a value is out of range.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    max_text: int = DEFAULT_MAX_TEXT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    max_outbox: int = DEFAULT_MAX_OUTBOX
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    nick_rate: float = DEFAULT_NICK_RATE
    nick_burst: int = DEFAULT_NICK_BURST
    join_rate: float = DEFAULT_JOIN_RATE
    join_burst: int = DEFAULT_JOIN_BURST
    topic_rate: float = DEFAULT_TOPIC_RATE
    topic_burst: int = DEFAULT_TOPIC_BURST
    away_rate: float = DEFAULT_AWAY_RATE
    away_burst: int = DEFAULT_AWAY_BURST
    max_rate_violations: int = DEFAULT_MAX_RATE_VIOLATIONS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_ip: int = DEFAULT_MAX_PER_IP
    per_ip_exempt: tuple[str, ...] = field(default=_LOOPBACK)
    max_rooms_per_client: int = DEFAULT_MAX_ROOMS_PER_CLIENT
    max_rooms: int = DEFAULT_MAX_ROOMS
    list_page_max: int = DEFAULT_LIST_PAGE_MAX
    quiet_room_size: int = DEFAULT_QUIET_ROOM_SIZE
    history_on_join: int = DEFAULT_HISTORY_ON_JOIN
    history_page_max: int = DEFAULT_HISTORY_PAGE_MAX
    idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    login_failures: int = DEFAULT_LOGIN_FAILURES
    login_lockout: float = DEFAULT_LOGIN_LOCKOUT
    hash_workers: int = DEFAULT_HASH_WORKERS

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "per_ip_exempt":
                if isinstance(value, str) or not isinstance(value, tuple | list):
                    raise ConfigError("per_ip_exempt must be a sequence of networks")
                for net in value:
                    try:
                        ipaddress.ip_network(net, strict=False)
                    except ValueError as exc:
                        raise ConfigError(f"per_ip_exempt: {exc}") from None
                object.__setattr__(self, f.name, tuple(value))
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{f.name} must be a number, not {value!r}")
            if f.type == "int" and not isinstance(value, int):
                raise ConfigError(f"{f.name} must be a whole number, not {value!r}")
            least_ok = value >= 0 if f.name in _MAY_BE_ZERO else value > 0
            if not least_ok or value != value or value == float("inf"):
                what = "a non-negative" if f.name in _MAY_BE_ZERO else "a positive"
                raise ConfigError(f"{f.name} must be {what} finite number, not {value!r}")
        if self.max_frame < 4096:
            raise ConfigError(f"max_frame must be at least 4096 bytes, not {self.max_frame}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Limits:
        """Build limits from keyword arguments, refusing unknown names (no silent typos)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown limit(s): {', '.join(unknown)}")
        return cls(**kwargs)

    def announced(self) -> dict[str, int | float]:
        """The limits a client needs to know, as sent in ``welcome.limits``."""
        return {
            "max_frame": self.max_frame,
            "max_text": self.max_text,
            "rate": self.rate,
            "burst": self.burst,
            "nick_rate": self.nick_rate,
            "nick_burst": self.nick_burst,
            "join_rate": self.join_rate,
            "join_burst": self.join_burst,
            "topic_rate": self.topic_rate,
            "topic_burst": self.topic_burst,
            "away_rate": self.away_rate,
            "away_burst": self.away_burst,
            "list_page_max": self.list_page_max,
            "max_rooms_per_client": self.max_rooms_per_client,
            "quiet_room_size": self.quiet_room_size,
            "history_on_join": self.history_on_join,
            "history_page_max": self.history_page_max,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
        }

    def exempt(self, host: str) -> bool:
        """Whether connections from ``host`` are exempt from ``max_per_ip``."""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(n, strict=False) for n in self.per_ip_exempt)
