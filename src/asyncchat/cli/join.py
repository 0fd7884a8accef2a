"""``asyncchat join``: the terminal client, with its failures said in one line."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError, ConnectionClosed, ServerError
from ..tls import client_context
from ..tui import run_terminal

__all__ = ["join"]


async def join(args: argparse.Namespace) -> int:
    """Run the terminal client; returns the exit status (1: refused, lost or no answer).
    Raises ``ConfigError`` for TLS options that cannot be used (exit 2)."""
    if (args.ca or args.insecure) and not args.tls:
        raise ConfigError("--ca and --insecure only go with --tls")
    ssl = client_context(args.ca, insecure=args.insecure) if args.tls else None
    try:
        return await run_terminal(
            args.host,
            args.port,
            args.name,
            args.rooms,
            reconnect=not args.no_reconnect,
            give_up=args.give_up,
            ssl=ssl,
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
