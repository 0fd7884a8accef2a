"""``asyncchat serve``: one :class:`~asyncchat.config.ServerConfig` from the defaults, the
``--config`` file, the ``ASYNCCHAT_*`` environment and the flags; then the server, until SIGINT,
SIGTERM or the operator's ``/quit``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import SETTINGS, ServerConfig, load_config
from ..server import ChatServer
from ..transports.admission import raise_fd_limit
from .console import reload_tls, run_console

__all__ = ["configure", "serve"]

log = logging.getLogger("asyncchat")


def configure(args: argparse.Namespace, env: Mapping[str, str]) -> ServerConfig:
    """The configuration ``serve`` runs with: flags over ``env`` over ``--config`` over the
    defaults. Raises ``ConfigError`` naming the flag, variable or file key at fault."""
    overrides: dict[str, Any] = {}
    for name in SETTINGS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_config(args.config, env, overrides)


def _say_files(cfg: ServerConfig) -> None:
    """Log what is not obvious about the database files: a directory the server is about to
    create for a file the user named, and a file named while history is off."""
    given = cfg.auth.db or cfg.history.db  # named by the user (the default one: None)
    if given and given != ":memory:" and not Path(given).expanduser().parent.is_dir():
        log.warning("creating the directory %s for %s", Path(given).expanduser().parent, given)
    if not cfg.history.enabled and cfg.history.db:
        log.warning(
            "history is off (--no-history): %s keeps only the accounts and bans",
            cfg.accounts_path(),
        )


async def serve(cfg: ServerConfig) -> int:
    """Serve until SIGINT, SIGTERM or ``/quit``, then shut down gracefully; returns the exit
    status (1: cannot listen). With a terminal on stdin, the operator's console runs too."""
    raise_fd_limit(cfg.limits.max_connections)
    _say_files(cfg)
    server = ChatServer(config=cfg)
    try:
        await server.start()
    except OSError as exc:
        why = (
            "the address is already in use"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        print(f"asyncchat: cannot listen on {exc.filename}: {why}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_tls, server)
    console = None
    if sys.stdin is not None and sys.stdin.isatty():
        console = asyncio.create_task(run_console(server, stop), name="asyncchat-operator")
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if console is not None:
            console.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await console
        await server.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0
