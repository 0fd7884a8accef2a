"""The server's whole configuration as one value, and where it comes from.

::

    ServerConfig
    ├── listeners   tuple[Listener, ...]   one listening socket each: kind, host, port, TLS,
    │                                      origins
    ├── limits      Limits                 every resource bound (asyncchat.limits)
    ├── history     HistoryConfig          enabled, db, max, days, durability
    ├── auth        AuthConfig             db, registration, guests, server_password, ...
    ├── redis, redis_lease                 the cluster's Redis (None: one process; cluster.md)
    └── motd, log_level, loop

:func:`load_config` builds it from four layers, each overriding the one before: the defaults,
a TOML file, the ``ASYNCCHAT_*`` environment, and the command line's flags. Every setting has
one flat name (:data:`SETTINGS`) shared by the environment (upper-cased, prefixed) and the flags
(dashes): ``max_frame`` is ``ASYNCCHAT_MAX_FRAME``, ``--max-frame`` and ``[limits] max_frame``
in the file. ``host``, ``port``, ``tls_cert`` and ``tls_key`` apply to the first tcp
listener, ``line_host``, ``line_port``, ``line_tls_cert`` and ``line_tls_key`` to the first line
listener, and the ``classic_*`` ones to the first classic listener (a door is off unless its port
is given, which creates it, on 127.0.0.1 unless its host is given too); ``web`` (on or off),
``web_host``, ``web_port``, ``web_origins``, ``web_tls_cert`` and ``web_tls_key`` to the first
web listener (on by default); ``history``, ``db``, ``history_max``, ``history_days`` and
``durability`` are the ``[history]`` table's ``enabled``, ``db``, ``max``, ``days`` and
``durability``.

The file is ours alone, so an unknown key in it is an error. The ``ASYNCCHAT_`` namespace of the
environment is shared (the test suite's ``ASYNCCHAT_TEST_UNIT``, ``join``'s planned
``ASYNCCHAT_PASSWORD``, a deployment's variables meant for another version), so an unknown
variable is ignored, and :func:`env_warnings` names it (with the closest setting) for the CLI to
log; an empty variable counts as unset. Every error is a :class:`~asyncchat.errors.ConfigError`
whose one-line message names the file and key, the variable or the flag.

:func:`to_toml` writes a configuration as a file that :func:`load_config` reads back equal.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .limits import Limits
from .tomlwriter import toml_document, toml_string

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
    "SETTINGS",
    "AuthConfig",
    "HistoryConfig",
    "Listener",
    "ServerConfig",
    "Setting",
    "default_db_path",
    "env_warnings",
    "from_dict",
    "load_config",
    "read_file",
    "to_toml",
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


# --------------------------------------------------------------------------- flat settings


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as the environment and the flags name it."""

    name: str  #: flat name: ``ASYNCCHAT_<NAME>``, ``--<name-with-dashes>``
    section: str  #: "" (ServerConfig), "listener" (the first tcp one), "line", "classic", "web"
    #: (the first of that kind), "history", "limits"
    key: str  #: the field of that section
    type: str  #: the field's annotation: "int", "float | None", "tuple[str, ...]"...

    @property
    def env(self) -> str:
        """The environment variable."""
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")


_SECTIONS: dict[str, type[Any]] = {
    "": ServerConfig,
    "listener": Listener,
    "line": Listener,
    "classic": Listener,
    "web": Listener,
    "history": HistoryConfig,
    "limits": Limits,
    "auth": AuthConfig,
}


def _settings() -> dict[str, Setting]:
    table = [
        ("motd", "", "motd"),
        ("log_level", "", "log_level"),
        ("loop", "", "loop"),
        ("redis", "", "redis"),
        ("redis_lease", "", "redis_lease"),
        ("host", "listener", "host"),
        ("port", "listener", "port"),
        ("tls_cert", "listener", "tls_cert"),
        ("tls_key", "listener", "tls_key"),
        *(
            (f"{kind}_{key}", kind, key)
            for kind in ("line", "classic")
            for key in ("host", "port", "tls_cert", "tls_key")
        ),
        ("web", "web", "enabled"),
        ("web_host", "web", "host"),
        ("web_port", "web", "port"),
        ("web_origins", "web", "origins"),
        ("web_tls_cert", "web", "tls_cert"),
        ("web_tls_key", "web", "tls_key"),
        ("history", "history", "enabled"),
        ("db", "history", "db"),
        ("history_max", "history", "max"),
        ("history_days", "history", "days"),
        ("durability", "history", "durability"),
        ("accounts_db", "auth", "db"),
        ("registration", "auth", "registration"),
        ("guests", "auth", "guests"),
        ("server_password", "auth", "server_password"),
        ("allow_plaintext_auth", "auth", "allow_plaintext_auth"),
        *((f.name, "limits", f.name) for f in dataclasses.fields(Limits)),
    ]
    types = {s: {f.name: str(f.type) for f in dataclasses.fields(c)} for s, c in _SECTIONS.items()}
    types["web"]["enabled"] = "bool"  # whether a web listener exists at all
    return {name: Setting(name, sec, key, types[sec][key]) for name, sec, key in table}


#: Every setting by its flat name.
SETTINGS: dict[str, Setting] = _settings()
_BY_ENV = {s.env: s for s in SETTINGS.values()}

_WHAT = {
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "str": "a string",
    "tuple[str, ...]": "an array of strings",
}
_ON = frozenset({"1", "on", "true", "yes"})
_OFF = frozenset({"0", "off", "false", "no"})


def _typed(type_: str, value: Any) -> Any:
    """``value`` (from TOML or the flags) checked against the annotation ``type_``; an integer
    where a float is expected becomes one. Raises ``ConfigError`` ("must be ...")."""
    base = type_.removesuffix(" | None")
    if value is None and base != type_:
        return None
    ok = False
    match base:
        case "bool":
            ok = isinstance(value, bool)
        case "int":
            ok = _whole(value)
        case "float":
            if _whole(value):
                try:
                    value = float(value)
                except OverflowError:
                    raise ConfigError(f"must be a finite number, not {value!r}") from None
            ok = isinstance(value, float)
        case "str":
            ok = isinstance(value, str)
        case "tuple[str, ...]":
            ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
            value = _networks(list(value)) if ok else value
    if not ok:
        raise ConfigError(f"must be {_WHAT[base]}, not {value!r}")
    return value


def _parse(type_: str, text: str) -> Any:
    """An environment variable's text as a value of the annotation ``type_``."""
    base = type_.removesuffix(" | None")
    if base == "bool":
        word = text.strip().lower()
        if word not in _ON | _OFF:
            raise ConfigError(f"must be on or off, not {text!r}")
        return word in _ON
    try:
        match base:
            case "int":
                return int(text)
            case "float":
                return float(text)
            case "tuple[str, ...]":
                return _networks(text.split(","))
    except ValueError:
        raise ConfigError(f"must be {_WHAT[base]}, not {text!r}") from None
    return text


def _networks(parts: list[str]) -> tuple[str, ...]:
    """A list setting from words (a flag given several times, or a comma-separated variable):
    the word ``none`` alone is the empty list (``--per-ip-exempt none``: nobody is exempt)."""
    words = tuple(part.strip() for part in parts if part.strip())
    return () if [w.lower() for w in words] == ["none"] else words


def _reason(exc: ConfigError, key: str) -> str:
    """The error's message without the field name it starts with (the caller names the key)."""
    text = str(exc)
    for prefix in (f"{key}: ", f"{key} "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _value(cls: type[Any], key: str, type_: str, value: Any) -> Any:
    """``value`` for field ``key`` of ``cls``, type-checked and validated on its own, so that an
    error is about this one value. Raises ``ConfigError`` (without the key)."""
    value = _typed(type_, value)
    try:
        cls(**{key: value})
    except ConfigError as exc:
        raise ConfigError(_reason(exc, key)) from None
    return value


def _apply(
    cfg: ServerConfig, values: Mapping[str, Any], label: Callable[[Setting], str]
) -> ServerConfig:
    """``cfg`` with the flat ``values`` replacing its settings; errors named by ``label``."""
    changes: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    for name, raw in values.items():
        s = SETTINGS.get(name)
        if s is None:
            raise ConfigError(f"{name}: unknown setting")
        try:
            if s.name == "web":
                changes["web"]["enabled"] = _typed("bool", raw)
            else:
                changes[s.section][s.key] = _value(_SECTIONS[s.section], s.key, s.type, raw)
        except ConfigError as exc:
            raise ConfigError(f"{label(s)}: {exc}") from None
    listeners = list(cfg.listeners)
    for kind, section in _DOOR_SECTIONS.items():
        change = changes[section]
        if not change:
            continue
        first = next((i for i, x in enumerate(listeners) if x.kind == kind), None)
        if first is not None:
            listeners[first] = dataclasses.replace(listeners[first], **change)
        elif kind == "tcp":
            listeners.append(Listener(**change))
        elif "port" not in change:
            given = label(SETTINGS[f"{kind}_{next(iter(change))}"])
            port = label(SETTINGS[f"{kind}_port"])
            raise ConfigError(f"{given}: the {kind} listener is off; {port} turns it on")
        else:
            listeners.append(Listener(kind=kind, **change))
    web = changes["web"]
    if web.pop("enabled", None) is False:
        listeners = [x for x in listeners if x.kind != "web"]
    elif web or "web" in values:
        _first_of("web", listeners, web)
    try:
        return dataclasses.replace(
            cfg,
            listeners=tuple(listeners),
            limits=dataclasses.replace(cfg.limits, **changes["limits"]),
            history=dataclasses.replace(cfg.history, **changes["history"]),
            auth=dataclasses.replace(cfg.auth, **changes["auth"]),
            **changes[""],
        )
    except ConfigError as exc:  # only what involves several values: two listeners on one port
        doors = (*_DOOR_SECTIONS.values(), "web")
        names = [label(SETTINGS[n]) for n in values if SETTINGS[n].section in doors]
        raise ConfigError(f"{', '.join(names or map(str, values))}: {exc}") from None


def _first_of(kind: str, listeners: list[Listener], changes: dict[str, Any]) -> None:
    """Apply ``changes`` to the first listener of ``kind``, adding one if there is none."""
    first = next((i for i, x in enumerate(listeners) if x.kind == kind), None)
    if first is None:
        listeners.append(Listener(kind=kind, **changes))
    elif changes:
        listeners[first] = dataclasses.replace(listeners[first], **changes)


# --------------------------------------------------------------------------- the file


def _refuse_unknown(table: Mapping[str, Any], known: list[str], where: str) -> None:
    for key in table:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {where}{near[0]}?" if near else f"known: {', '.join(known)}"
            raise ConfigError(f"unknown key {where}{key} ({hint})")


def _table(cls: type[Any], table: Any, where: str) -> Any:
    """An instance of ``cls`` from one TOML table; ``where`` is its dotted name and a dot."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where.rstrip('.')} must be a table, not {table!r}")
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    _refuse_unknown(table, list(types), where)
    values = {}
    for key, raw in table.items():
        try:
            values[key] = _value(cls, key, types[key], raw)
        except ConfigError as exc:
            raise ConfigError(f"{where}{key}: {exc}") from None
    return cls(**values)


def from_dict(data: Mapping[str, Any]) -> ServerConfig:
    """A configuration from the file's tables (as ``tomllib`` gives them); settings the tables
    leave out keep their defaults. Raises ``ConfigError`` naming the dotted key."""
    top = {
        "motd": "str | None",
        "log_level": "str",
        "loop": "str",
        "redis": "str | None",
        "redis_lease": "float",
    }
    _refuse_unknown(data, [*top, "listeners", "limits", "history", "auth"], "")
    values: dict[str, Any] = {}
    for key, type_ in top.items():
        if key in data:
            try:
                values[key] = _value(ServerConfig, key, type_, data[key])
            except ConfigError as exc:
                raise ConfigError(f"{key}: {exc}") from None
    if "listeners" in data:
        tables = data["listeners"]
        if not isinstance(tables, list) or not tables:
            raise ConfigError("listeners must be one [[listeners]] table or more")
        values["listeners"] = tuple(
            _table(Listener, t, f"listeners[{i}].") for i, t in enumerate(tables)
        )
    if "limits" in data:
        values["limits"] = _table(Limits, data["limits"], "limits.")
    if "history" in data:
        values["history"] = _table(HistoryConfig, data["history"], "history.")
    if "auth" in data:
        values["auth"] = _table(AuthConfig, data["auth"], "auth.")
    return ServerConfig(**values)


def read_file(path: str) -> ServerConfig:
    """The configuration a TOML file gives over the defaults. Raises ``ConfigError`` (naming the
    file and the key) if it cannot be read, is not TOML, or has an unknown key or a bad value."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- the layers


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for var, text in env.items():
        s = _BY_ENV.get(var)
        if s is None or not text:
            continue
        try:
            values[s.name] = _parse(s.type, text)
        except ConfigError as exc:
            raise ConfigError(f"{var}: {exc}") from None
    return values


def env_warnings(env: Mapping[str, str]) -> list[str]:
    """One line for each ``ASYNCCHAT_*`` variable in ``env`` that is no setting (and not one of
    :data:`OTHER_VARIABLES`): it is ignored, probably a typo."""
    lines = []
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and var not in _BY_ENV and var not in OTHER_VARIABLES:
            names = [v.removeprefix(ENV_PREFIX) for v in _BY_ENV]
            near = difflib.get_close_matches(var.removeprefix(ENV_PREFIX), names, n=1, cutoff=0.75)
            hint = f" (did you mean {ENV_PREFIX}{near[0]}?)" if near else ""
            lines.append(f"{var} is not a setting of asyncchat serve: ignored{hint}")
    return lines


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """The configuration from the defaults, then the TOML file at ``path``, then the
    ``ASYNCCHAT_*`` variables of ``env`` (pass ``os.environ``: nothing is read by default), then
    ``overrides`` (the flags: typed values by flat name, see :data:`SETTINGS`), each layer
    overriding the ones before. Raises ``ConfigError`` naming the file and key, the variable or
    the flag of the first bad value.
    """
    cfg = ServerConfig() if path is None else read_file(path)
    if env:
        cfg = _apply(cfg, _env_values(env), lambda s: s.env)
    if overrides:
        cfg = _apply(cfg, overrides, lambda s: s.flag)
    return cfg


# --------------------------------------------------------------------------- writing TOML


def to_toml(cfg: ServerConfig) -> str:
    """``cfg`` as a TOML file that :func:`load_config` reads back equal. A setting that is not
    set (``None``) is written as a comment."""
    head = "# asyncchat serve --config FILE; ASYNCCHAT_* variables and flags override it.\n"
    where = cfg.db_path()
    if where is not None and cfg.history.db is None:
        head += f"# history.db is not set: the history is in {toml_string(where)}\n"
    return head + toml_document(cfg.to_dict())
