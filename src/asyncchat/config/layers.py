"""Where a configuration comes from: the flat settings, the TOML file, the ``ASYNCCHAT_*``
environment, the flags' overrides, and back to TOML (see :mod:`asyncchat.config`)."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..limits import Limits
from ..tomlwriter import toml_document, toml_string
from .model import (
    _DOOR_SECTIONS,
    ENV_PREFIX,
    OTHER_VARIABLES,
    AuthConfig,
    HistoryConfig,
    Listener,
    ServerConfig,
    _whole,
)

__all__ = [
    "SETTINGS",
    "Setting",
    "env_warnings",
    "from_dict",
    "load_config",
    "read_file",
    "to_toml",
]

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
