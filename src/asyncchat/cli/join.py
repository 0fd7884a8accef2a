"""``asyncchat join``: the terminal client, with its failures said in one line."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from ..errors import ConfigError, ConnectionClosed, ServerError
from ..tls import client_context
from ..tui import run_terminal

__all__ = ["join"]


#: Refusals of a guest's hello after which a terminal user is asked for the password.
_ASK = frozenset({"name_reserved", "auth_required"})


def _credentials(args: argparse.Namespace) -> dict[str, str]:
    """The hello's credentials: ``--token-file``, else ``$ASYNCCHAT_PASSWORD``; and
    ``$ASYNCCHAT_SERVER_PASSWORD``. Raises ``ConfigError`` for an unreadable token file."""
    creds: dict[str, str] = {}
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                creds["token"] = f.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"--token-file: cannot read {args.token_file}: {exc.strerror}"
            ) from None
    elif os.environ.get("ASYNCCHAT_PASSWORD"):
        creds["password"] = os.environ["ASYNCCHAT_PASSWORD"]
    if os.environ.get("ASYNCCHAT_SERVER_PASSWORD"):
        creds["server_password"] = os.environ["ASYNCCHAT_SERVER_PASSWORD"]
    return creds


async def join(args: argparse.Namespace) -> int:
    """Run the terminal client; returns the exit status (1: refused, lost or no answer).
    Raises ``ConfigError`` for TLS options that cannot be used (exit 2). A terminal user whose
    name turns out to be registered is asked for its password, without echo."""
    if (args.ca or args.insecure) and not args.tls:
        raise ConfigError("--ca and --insecure only go with --tls")
    ssl = client_context(args.ca, insecure=args.insecure) if args.tls else None
    creds: dict[str, Any] = _credentials(args)
    try:
        try:
            return await _run(args, ssl, creds)
        except ServerError as exc:
            if exc.code not in _ASK or creds.keys() & {"password", "token"}:
                raise
            if not sys.stdin.isatty():
                raise
            # Nothing else runs yet: asking on the loop's thread blocks nobody.
            creds["password"] = getpass.getpass(f"password for {args.name}: ")
            return await _run(args, ssl, creds)
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


async def _run(args: argparse.Namespace, ssl: Any, creds: dict[str, Any]) -> int:
    return await run_terminal(
        args.host,
        args.port,
        args.name,
        args.rooms,
        reconnect=not args.no_reconnect,
        give_up=args.give_up,
        ssl=ssl,
        show_history=args.show_history,
        color=not args.no_color,
        bell=not args.no_bell,
        **creds,
    )
