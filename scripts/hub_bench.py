#!/usr/bin/env python3
"""The say path of the core, in process: a hub with N members on recording sinks, 60,000 says
with ids from 4 of them, a flush every 8. No sockets, no history: the cost of the sans-I/O floors
per message (session framing and I/O are not in it).

    python scripts/hub_bench.py                  # this checkout's asyncchat
    python scripts/hub_bench.py --src ../old/src # another checkout's, for a before/after

Prints the median of 5 runs in microseconds per message for N = 10 and 100. Run the two sides
alternately on a quiet machine: the figure is CPU time on one core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
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


def _hub(n: int) -> tuple[Any, list[Any]]:
    from asyncchat import hub as hubmod
    from asyncchat.limits import Limits

    limits = Limits(rate=1e9, burst=10**9)
    try:
        from asyncchat.backends import LocalBroker

        hub = hubmod.Hub(limits, LocalBroker())
    except ImportError:  # the code before the broker seam
        hub = hubmod.Hub(limits)
    members = [hub.add_member(f"m{i}", _Sink()) for i in range(n)]
    for m in members:
        hub.join(m, "lobby")
    hub.flush()
    return hub, members


def run(n: int, messages: int = 60_000, batch: int = 8) -> float:
    hub, members = _hub(n)
    senders = members[:4]
    start = time.process_time()
    for i in range(messages // batch):
        for j in range(batch):
            hub.say(senders[j % 4], "lobby", "x" * 100, f"id{i}-{j}")
        hub.flush()
    return (time.process_time() - start) / messages * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="import asyncchat from this source tree instead")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, args.src)
    import asyncchat

    for n in (10, 100):
        figures = [run(n) for _ in range(5)]
        print(f"{asyncchat.__file__}: N={n} {statistics.median(figures):.2f} us/message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
