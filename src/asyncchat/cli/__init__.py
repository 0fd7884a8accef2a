"""The command line: ``asyncchat serve``, ``history``, ``join`` and ``accounts``.

::

    cli/__init__   main(argv) -> int, run(): the event loop, logging, exit statuses
    cli/options    the argparse grammar, serve's flags built from asyncchat.config.SETTINGS
    cli/serve      configuration layers -> ServerConfig -> ChatServer until a signal
    cli/console    the operator's console of serve in a terminal
    cli/history    the transcript export
    cli/accounts   accounts and bot tokens
    cli/join       the terminal client

The CLI, and only the CLI, chooses the event loop: uvloop where it imports, ``--loop asyncio``
to opt out. ``main(argv) -> int`` returns the exit status: 0 done, 1 failed at run time (port
taken, server gone), 2 bad usage (a bad flag, variable or configuration file).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ..config import env_warnings, to_toml
from ..errors import ChatError, ConfigError
from .accounts import accounts
from .console import operator_command
from .history import export
from .join import join
from .options import build_parser
from .serve import configure, serve

__all__ = ["main", "run"]

log = logging.getLogger("asyncchat")

#: The console's command handler, by the name tests/test_history.py imports.
_operator_command = operator_command


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


def _run(main: Callable[[], Coroutine[Any, Any, int]], loop: str) -> int:
    factory = _loop_factory(loop)  # may raise: before the coroutine exists
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            cfg = configure(args, os.environ)
            _setup_logging(cfg.log_level)
            for warning in env_warnings(os.environ):
                log.warning("%s", warning)
            if args.print_config:
                sys.stdout.write(to_toml(cfg))
                sys.stdout.flush()
                return 0
            return _run(lambda: serve(cfg), cfg.loop)
        if args.command == "history":
            return export(args)
        if args.command == "accounts":
            return accounts(args)
        _setup_logging("warning")
        return _run(lambda: join(args), args.loop)
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
