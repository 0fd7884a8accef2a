"""Chat latency during a login storm: a benchmark, not a test (loopback only, bounded).

Starts ``asyncchat serve`` as a child process on 127.0.0.1 with a fresh database of
``--accounts`` accounts, then measures the latency of chat (one client says, another receives:
send-to-receive time) for ``--seconds`` in four phases: without logins; while ``--stormers``
loops connect as guests without a password (the control: the cost of connections alone); while
as many log in with the right password as fast as the server lets them (each login costs a
scrypt hash on one of ``--hash-workers`` threads); while as many loops guess wrong passwords
(throttled per IP and per account: after a few failures they are refused without a hash).
Prints p50/p90/p99/max latency per phase and the logins (or refusals) per second.

    python scripts/login_storm.py [--seconds 5] [--stormers 32] [--accounts 16] [--rate 50]
        [--hash-workers 2] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSWORD = "storm-password"


def frame(obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    return json.loads(await reader.readexactly(n))  # type: ignore[no-any-return]


async def hello(
    port: int, name: str, **extra: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame({"type": "hello", "name": name, "version": 1, **extra}))
    return reader, writer, await read_frame(reader)


async def chat_latency(port: int, seconds: float, rate: float) -> list[float]:
    """Send-to-receive latencies (seconds) of messages from one client to another."""
    r1, w1, _ = await hello(port, "speaker")
    r2, w2, _ = await hello(port, "listener")
    sent: dict[str, float] = {}
    out: list[float] = []

    async def listen() -> None:
        while True:
            f = await read_frame(r2)
            if f.get("type") == "message" and f.get("text") in sent:
                out.append(time.perf_counter() - sent.pop(f["text"]))

    async def drain() -> None:
        while True:
            await read_frame(r1)  # acks, joined...

    tasks = [asyncio.create_task(listen()), asyncio.create_task(drain())]
    await asyncio.sleep(0.2)
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        i += 1
        text = f"m{i}"
        sent[text] = time.perf_counter()
        w1.write(frame({"type": "say", "room": "lobby", "text": text}))
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    for w in (w1, w2):
        w.close()
    return out


async def storm(
    port: int, stop: asyncio.Event, names: list[str], good: bool | None, count: list[int]
) -> None:
    """Log in (``good``: with the right password; None: guests without one, the control)
    again and again until ``stop``; counts the welcomes, or for wrong passwords the
    refusals."""
    i = 0
    tag = os.urandom(3).hex()
    while not stop.is_set():
        i += 1
        if good is None:
            name, creds = f"g{tag}{i}", {}
        else:
            name = names[i % len(names)]
            creds = {"password": PASSWORD if good else f"wrong-{i}"}
        try:
            _, writer, answer = await hello(port, name, **creds)
        except (OSError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.05)
            continue
        if answer.get("type") == "welcome":
            count[0] += good is not False
            writer.write(frame({"type": "quit"}))
        else:
            count[0] += good is False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def storm_process(
    port: int, names: list[str], good: bool | None, loops: int, stop: Any, counter: Any
) -> None:
    """The storm in a process of its own, so that the measuring client's event loop (and the
    interpreter lock) is not the storm's."""

    async def run() -> None:
        halt = asyncio.Event()
        done = [0]
        tasks = [asyncio.create_task(storm(port, halt, names, good, done)) for _ in range(loops)]
        while not stop.is_set():
            await asyncio.sleep(0.05)
            counter.value = done[0]
        halt.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        counter.value = done[0]

    asyncio.run(run())


def summary(label: str, xs: list[float]) -> str:
    if not xs:
        return f"{label}: no messages"
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=100)
    ms = [v * 1000 for v in (q[49], q[89], q[98], xs[-1])]
    p50, p90, p99, top = (f"{v:.2f} ms" for v in ms)
    return f"{label}: n={len(xs)} p50={p50} p90={p90} p99={p99} max={top}"


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "storm.db"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        names = [f"user{i}" for i in range(args.accounts)]
        for name in names:  # set-up, before the loop runs anything else: blocking is fine
            subprocess.run(  # noqa: ASYNC221
                [
                    sys.executable,
                    "-m",
                    "asyncchat",
                    "accounts",
                    "--db",
                    str(db),
                    "add",
                    name,
                    "--password-stdin",
                ],
                input=PASSWORD + "\n",
                text=True,
                check=True,
                capture_output=True,
                env=env,
            )
        log = Path(tmp) / "serve.log"
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, before the storm
            [
                sys.executable,
                "-m",
                "asyncchat",
                "serve",
                "--port",
                "0",
                "--db",
                str(db),
                "--loop",
                args.loop,
                "--hash-workers",
                str(args.hash_workers),
                "--max-per-ip",
                "100000",
                "--rate",
                "1000",
                "--burst",
                "1000",
            ],
            stderr=log.open("w"),
            env=env,
        )
        try:
            port = 0
            deadline = time.monotonic() + 10
            while not port and time.monotonic() < deadline and server.poll() is None:
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())
                port = int(m.group(1)) if m else 0
                await asyncio.sleep(0.05)
            if not port:
                print(log.read_text(), file=sys.stderr)
                return 1
            phases = [("no logins", await chat_latency(port, args.seconds, args.rate), "")]
            for good in (None, True, False):
                stop = multiprocessing.Event()
                counter = multiprocessing.Value("q", 0)
                child = multiprocessing.Process(
                    target=storm_process,
                    args=(port, names, good, args.stormers, stop, counter),
                )
                child.start()
                await asyncio.sleep(1.0)
                began, before = time.perf_counter(), counter.value
                latencies = await chat_latency(port, args.seconds, args.rate)
                per_s = (counter.value - before) / (time.perf_counter() - began)
                stop.set()
                child.join(30)
                what = "refused guesses" if good is False else "logins"
                label = {None: "guests (control)", True: "right passwords"}.get(
                    good, "wrong passwords"
                )
                phases.append((label, latencies, f"{per_s:.0f} {what}/s"))
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"server: --hash-workers {args.hash_workers}, --loop {args.loop}; chat at "
        f"{args.rate:g} msg/s; storms of {args.stormers} loops"
    )
    for label, latencies, rate in phases:
        print(summary(f"{label:16}", latencies) + (f"; {rate}" if rate else ""))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stormers", type=int, default=32)
    parser.add_argument("--accounts", type=int, default=16)
    parser.add_argument("--rate", type=float, default=50.0, help="chat messages per second")
    parser.add_argument("--hash-workers", type=int, default=2)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    sys.exit(asyncio.run(main(parser.parse_args())))
