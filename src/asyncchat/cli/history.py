"""``asyncchat history``: a room's transcript from a server's history file, as text for people
or JSON lines for scripts."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping

from .. import wire
from ..backends.sqlite import SQLiteStore
from ..config import ENV_PREFIX, default_db_path
from ..text import escape
from ..validation import name_key

__all__ = ["export"]


def export(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """Print the transcript of ``args.room``; returns the exit status (1: nothing kept of that
    room). The file is ``--db``, else ``$ASYNCCHAT_DB``, else the default one, as for serve.
    Raises ``ConfigError`` when there is no readable history file."""
    path = args.db or env.get(ENV_PREFIX + "DB") or default_db_path()
    store = SQLiteStore(path)
    store.open_readonly()
    try:
        key = name_key(args.room)
        if key not in store.last_seqs():
            print(f"asyncchat: {path} keeps no message of room {args.room!r}", file=sys.stderr)
            return 1
        out = sys.stdout
        for rec in store.export(key, since=args.since):
            if args.format == "jsonl":
                frame = wire.message(rec.name, rec.seq, rec.sender, rec.text, rec.ts, rec.action)
                out.write(frame[4:].decode() + "\n")  # the JSON object, without the length
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.ts))
                body = escape(rec.text, newlines=True).replace("\n", "\n    ")
                who = escape(rec.sender)
                line = f"* {who} {body}" if rec.action else f"<{who}> {body}"
                out.write(f"{stamp} #{escape(rec.name)} {line}\n")
        out.flush()
    except BrokenPipeError:
        # The reader had enough (``| head``): not an error. Quiet the interpreter's own flush
        # of the dead pipe at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    finally:
        store.close()
    return 0
