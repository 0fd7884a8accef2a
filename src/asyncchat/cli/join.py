"""``asyncchat join``: the terminal client, with its failures said in one line."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConnectionClosed, ServerError
from ..tui import run_terminal

__all__ = ["join"]


async def join(args: argparse.Namespace) -> int:
    """Run the terminal client; returns the exit status (1: refused, lost or no answer)."""
    try:
        return await run_terminal(
            args.host,
            args.port,
            args.name,
            args.rooms,
            reconnect=not args.no_reconnect,
            give_up=args.give_up,
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
