#!/usr/bin/env python3
"""The say path of the core, in process: a hub with N members on recording sinks, 60,000 says
with ids from 4 of them, a flush every 8. No sockets: the cost of the sans-I/O floors per
message (session framing and I/O are not in it), and with ``--history`` the cost of storing it
too (the SQLite store in a temporary file, its group commit run after every 8 says, as the event
loop would run it once per iteration; the loop thread's CPU only: a search index built on a
thread of its own is reported apart).

    python scripts/hub_bench.py                  # this checkout's asyncchat
    python scripts/hub_bench.py --src ../old/src # another checkout's, for a before/after
    python scripts/hub_bench.py --history        # with the SQLite history

Prints the median of 5 runs in microseconds per message for N = 10 and 100. Run the two sides
alternately on a quiet machine: the figure is CPU time on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any


class _Sink:
    last_activity = 0.0

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> bool:
        self.n += len(data)
        return True

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        pass

    def ping(self) -> None:
        pass


def _hub(n: int, store: Any = None, call_soon: Any = None) -> tuple[Any, list[Any]]:
    from asyncchat import hub as hubmod
    from asyncchat.limits import Limits

    limits = Limits(rate=1e9, burst=10**9)
    try:
        from asyncchat.backends import LocalBroker

        broker = LocalBroker(store)
        hub = hubmod.Hub(limits, broker)
        if store is not None:
            broker.start(call_soon, call_soon)
    except ImportError:  # the code before the broker seam
        hub = hubmod.Hub(limits, store=store)
        if store is not None:
            hub.start(call_soon, call_soon)
    members = [hub.add_member(f"m{i}", _Sink()) for i in range(n)]
    for m in members:
        hub.join(m, "lobby")
    hub.flush()
    return hub, members


def run(n: int, messages: int = 60_000, batch: int = 8, history: bool = False) -> float:
    if not history:
        hub, members = _hub(n)
        return _says(hub, members, messages, batch, list)
    return asyncio.run(_run_stored(n, messages, batch))


async def _run_stored(n: int, messages: int, batch: int) -> float:
    from asyncchat.backends.sqlite import SQLiteStore

    pending: list[Any] = []

    def call_soon(callback: Any, *args: Any) -> None:
        pending.append((callback, args))

    def run_pending() -> None:
        while pending:
            callback, args = pending.pop(0)
            callback(*args)

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "history.db"), writer="loop")
        hub, members = _hub(n, store, call_soon)
        run_pending()
        hub.flush()
        others = sum(t.native_id is not None for t in threading.enumerate()) - 1
        figure = _says(hub, members, messages, batch, run_pending)
        if others:
            print(f"  (+{others} other thread(s), not counted)", file=sys.stderr)
        store.close()
        return figure


def _says(hub: Any, members: list[Any], messages: int, batch: int, each: Any) -> float:
    senders = members[:4]
    text = "the quick brown fox jumps over the lazy dog while the cat watches from the wall ok"
    start = time.thread_time()
    for i in range(messages // batch):
        for j in range(batch):
            hub.say(senders[j % 4], "lobby", text, f"id{i}-{j}")
        each()
        hub.flush()
    return (time.thread_time() - start) / messages * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="import asyncchat from this source tree instead")
    parser.add_argument("--history", action="store_true", help="store in SQLite too")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    import asyncchat

    for n in (10, 100):
        figures = [run(n, history=args.history) for _ in range(5)]
        print(f"{asyncchat.__file__}: N={n} {statistics.median(figures):.2f} us/message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
