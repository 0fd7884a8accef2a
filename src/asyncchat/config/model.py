"""The configuration's values: ``ServerConfig`` and its parts, each checked when made (see
:mod:`asyncchat.config` for where they come from)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..limits import Limits

__all__ = [
    "DEFAULT_PORTS",
    "DURABILITIES",
    "ENV_PREFIX",
    "GUESTS",
    "LISTENER_KINDS",
    "LOG_LEVELS",
    "LOOPS",
    "OTHER_VARIABLES",
    "REGISTRATIONS",
    "AuthConfig",
    "HistoryConfig",
    "Listener",
    "ServerConfig",
    "default_db_path",
]

#: Kinds of listener this version serves: ``tcp`` (the native framed protocol), ``line`` (text
#: lines: netcat, telnet) and ``classic`` (the 10-byte-header protocol of the course exercise;
#: see docs/doors.md), and ``web`` (the chat page, its WebSocket at /ws, /metrics, /healthz and
#: /readyz over HTTP).
LISTENER_KINDS = ("tcp", "line", "classic", "web")
#: The settings' section of each door's first listener (``host``, ``line_host``...).
_DOOR_SECTIONS = {"tcp": "listener", "line": "line", "classic": "classic"}
#: The port of each kind of listener when none is given.
DEFAULT_PORTS = {"tcp": 1234, "line": 1234, "classic": 1234, "web": 8080}
LOG_LEVELS = ("debug", "info", "warning", "error")
#: ``auto`` is uvloop where it imports, else asyncio.
LOOPS = ("auto", "uvloop", "asyncio")
#: ``process``: an acknowledged message survives a crash of the server; ``power``: of the
#: machine too (fsync on each group commit).
DURABILITIES = ("process", "power")

ENV_PREFIX = "ASYNCCHAT_"
#: ``ASYNCCHAT_*`` variables read by other parts of asyncchat: serve neither uses nor warns about
#: them.
OTHER_VARIABLES = frozenset(
    {"ASYNCCHAT_TEST_UNIT", "ASYNCCHAT_PASSWORD", "ASYNCCHAT_UPDATE_SCREENSHOT"}
)


def default_db_path() -> str:
    """The history file when none is named: ``$XDG_DATA_HOME/asyncchat/history.db``
    (``~/.local/share/asyncchat/history.db`` without XDG_DATA_HOME), read at each call."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "asyncchat", "history.db")


def _one_of(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One listening socket: its kind (one of :data:`LISTENER_KINDS`), its host and its port
    (0: one the OS picks; ``None``: the kind's :data:`DEFAULT_PORTS` entry), and, for TLS, the
    PEM files of its certificate chain and private key (both or neither). ``origins``, for a web
    listener only: the browser origins (``https://chat.example.org``) whose pages may open its
    WebSocket besides its own (same origin is always allowed; ``*``: any). Raises
    ``ConfigError`` for a bad value."""

    kind: str = "tcp"
    host: str = "127.0.0.1"
    port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _one_of("kind", self.kind, LISTENER_KINDS)
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host must be a host name or address, not {self.host!r}")
        if self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.kind])
        elif not _whole(self.port) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be a port number, 0 to 65535, not {self.port!r}")
        for key in ("tls_cert", "tls_key"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{key} must be a file name, not {value!r}")
        if not isinstance(self.origins, tuple | list) or not all(
            isinstance(o, str) and o for o in self.origins
        ):
            raise ConfigError(f"origins must be a list of origins, not {self.origins!r}")
        object.__setattr__(self, "origins", tuple(self.origins))


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryConfig:
    """What the server keeps of each room (see docs/delivery.md).

    ``db`` is the SQLite file (``None``: :func:`default_db_path`; ``":memory:"``: only while the
    server runs); ``max`` bounds the messages kept per room and ``days`` their age (``None``: no
    bound); ``durability`` is one of :data:`DURABILITIES`. Raises ``ConfigError``.
    """

    enabled: bool = True
    db: str | None = None
    max: int | None = None
    days: float | None = None
    durability: str = "process"

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"enabled must be true or false, not {self.enabled!r}")
        if self.db is not None and (not isinstance(self.db, str) or not self.db):
            raise ConfigError(f"db must be a file name or ':memory:', not {self.db!r}")
        if self.max is not None and (not _whole(self.max) or self.max <= 0):
            raise ConfigError(f"max must be a positive whole number, not {self.max!r}")
        if self.days is not None:
            days = self.days
            if not isinstance(days, int | float) or isinstance(days, bool):
                raise ConfigError(f"days must be a number, not {days!r}")
            if not (days > 0 and math.isfinite(days)):
                raise ConfigError(f"days must be a positive finite number, not {days!r}")
            object.__setattr__(self, "days", float(days))
        _one_of("durability", self.durability, DURABILITIES)


#: ``registration``: ``closed`` (accounts are made with ``asyncchat accounts``) or ``open``
#: (``register`` requests too).
REGISTRATIONS = ("closed", "open")
#: ``guests``: whether connections without an account are admitted (to unregistered names).
GUESTS = ("allow", "deny")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """Accounts, guests and the server password (see docs/security.md).

    ``db`` is the SQLite file of accounts and bans (None: the history file, ``--db``, whether
    history is on or not); ``registration`` one of :data:`REGISTRATIONS`, ``guests`` one of
    :data:`GUESTS`; ``server_password`` what guests must give (None: nothing);
    ``allow_plaintext_auth`` lets a password come over plain TCP from another machine. Raises
    ``ConfigError``.
    """

    db: str | None = None
    registration: str = "closed"
    guests: str = "allow"
    server_password: str | None = None
    allow_plaintext_auth: bool = False

    def __post_init__(self) -> None:
        if self.db is not None and (not isinstance(self.db, str) or not self.db):
            raise ConfigError(f"db must be a file name or ':memory:', not {self.db!r}")
        _one_of("registration", self.registration, REGISTRATIONS)
        _one_of("guests", self.guests, GUESTS)
        if self.server_password is not None and (
            not isinstance(self.server_password, str) or not self.server_password
        ):
            raise ConfigError("server_password must be a non-empty string")
        if not isinstance(self.allow_plaintext_auth, bool):
            raise ConfigError(
                f"allow_plaintext_auth must be true or false, not {self.allow_plaintext_auth!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Everything ``asyncchat serve`` needs; the defaults are those of ``asyncchat serve``.
    Raises ``ConfigError`` for a bad value."""

    #: The native protocol on 127.0.0.1:1234 and the chat page on 127.0.0.1:8080.
    listeners: tuple[Listener, ...] = (Listener(), Listener(kind="web"))
    limits: Limits = field(default_factory=Limits)
    history: HistoryConfig = HistoryConfig()
    auth: AuthConfig = AuthConfig()
    motd: str | None = None
    log_level: str = "info"
    loop: str = "auto"
    #: The Redis shared by the nodes of a cluster, ``redis://HOST:PORT/DB`` (or ``rediss://``,
    #: ``unix://``); None: one process, history in SQLite (docs/cluster.md).
    redis: str | None = None
    #: Seconds a cluster node's lease lasts: a dead node's names are free, and a paused node
    #: is fenced, after this long (renewed every third of it).
    redis_lease: float = 10.0

    def __post_init__(self) -> None:
        if self.redis is not None and (
            not isinstance(self.redis, str)
            or not self.redis.startswith(("redis://", "rediss://", "unix://"))
        ):
            raise ConfigError(
                f"redis must be a URL: redis://HOST:PORT/DB, rediss:// or unix://, not "
                f"{self.redis!r}"
            )
        lease = self.redis_lease
        if (
            isinstance(lease, bool)
            or not isinstance(lease, int | float)
            or not (0 < lease < math.inf)
        ):
            raise ConfigError(f"redis_lease must be a positive number of seconds, not {lease!r}")
        object.__setattr__(self, "redis_lease", float(lease))
        listeners = self.listeners
        if not isinstance(listeners, tuple | list) or not all(
            isinstance(x, Listener) for x in listeners
        ):
            raise ConfigError(f"listeners must be a sequence of Listener, not {listeners!r}")
        if not listeners:
            raise ConfigError("listeners must name at least one listener")
        object.__setattr__(self, "listeners", tuple(listeners))
        for i, x in enumerate(listeners):
            if (x.tls_cert is None) != (x.tls_key is None):
                raise ConfigError(
                    f"listeners[{i}]: tls_cert and tls_key go together: give both or neither"
                )
            if x.origins and x.kind != "web":
                raise ConfigError(f"listeners[{i}]: origins apply to a web listener only")
        bound = [(x.host, x.port) for x in listeners if x.port != 0]
        for addr in bound:
            if bound.count(addr) > 1:
                raise ConfigError(f"listeners: two of them are on {addr[0]}:{addr[1]}")
        if not isinstance(self.limits, Limits):
            raise ConfigError(f"limits must be a Limits, not {self.limits!r}")
        if not isinstance(self.history, HistoryConfig):
            raise ConfigError(f"history must be a HistoryConfig, not {self.history!r}")
        if not isinstance(self.auth, AuthConfig):
            raise ConfigError(f"auth must be an AuthConfig, not {self.auth!r}")
        if self.motd is not None:
            if not isinstance(self.motd, str):
                raise ConfigError(f"motd must be a string, not {self.motd!r}")
            try:
                self.motd.encode()
            except UnicodeEncodeError:
                raise ConfigError(f"motd must be valid Unicode text, not {self.motd!r}") from None
        _one_of("log_level", self.log_level, LOG_LEVELS)
        _one_of("loop", self.loop, LOOPS)

    def accounts_path(self) -> str:
        """The file of accounts and bans: ``auth.db``, else the history file (``history.db``
        or the default), whether history is on or off."""
        return self.auth.db or self.history.db or default_db_path()

    def db_path(self) -> str | None:
        """The history file the server uses: ``None`` when history is off."""
        if not self.history.enabled:
            return None
        return self.history.db or default_db_path()

    def to_dict(self) -> dict[str, Any]:
        """The configuration as the file's tables (``None`` where a setting is not set)."""
        return {
            "motd": self.motd,
            "log_level": self.log_level,
            "loop": self.loop,
            "redis": self.redis,
            "redis_lease": self.redis_lease,
            "listeners": [dataclasses.asdict(x) for x in self.listeners],
            "limits": dataclasses.asdict(self.limits),
            "history": dataclasses.asdict(self.history),
            "auth": dataclasses.asdict(self.auth),
        }
