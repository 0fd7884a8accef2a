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

from .layers import SETTINGS, Setting, env_warnings, from_dict, load_config, read_file, to_toml
from .model import (
    DEFAULT_PORTS,
    DURABILITIES,
    ENV_PREFIX,
    GUESTS,
    LISTENER_KINDS,
    LOG_LEVELS,
    LOOPS,
    OTHER_VARIABLES,
    REGISTRATIONS,
    AuthConfig,
    HistoryConfig,
    Listener,
    ServerConfig,
    default_db_path,
)

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
