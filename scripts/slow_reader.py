"""What one member that never reads costs everyone else: a measurement, not a test.

Starts ``asyncchat serve`` (default limits but the flood ones, no history) on a free loopback
port, puts N readers and S pipelining senders in one room, and measures for ``--duration``
seconds: the readers' deliveries per second, the server's RSS (peak and after), with and
without one extra member that never reads (a 4 KiB receive buffer). Prints both runs, when the
slow member was evicted, and how its backlog stayed bounded.

    python scripts/slow_reader.py [--members 20] [--senders 4] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator

U32 = struct.Struct(">I")
TEXT = "x" * 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def _frame(obj: dict[str, object]) -> bytes:
    payload = json.dumps(obj).encode()
    return U32.pack(len(payload)) + payload


async def _hello(
    port: int, name: str, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if rcvbuf is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(_frame({"type": "hello", "name": name, "version": 1}))
    return reader, writer


async def _payloads(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The payloads of the frames ``reader`` receives, walked by their length prefixes."""
    buf = b""
    while data := await reader.read(1 << 18):
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = U32.unpack_from(buf, pos)
            if len(buf) - pos < 4 + n:
                break
            yield buf[pos + 4 : pos + 4 + n]
            pos += 4 + n
        buf = buf[pos:]


async def _count(reader: asyncio.StreamReader, counts: list[int], events: list[str]) -> None:
    """Count message frames; note left/slow_consumer notices."""
    async for payload in _payloads(reader):
        if payload.startswith(b'{"type":"message"'):
            counts[0] += 1
        elif b'"slow_consumer"' in payload and payload.startswith(b'{"type":"left"'):
            events.append(f"{time.monotonic():.3f} {payload.decode()}")


async def _sender(port: int, name: str, stop: asyncio.Event) -> None:
    reader, writer = await _hello(port, name)
    frame = _frame({"type": "say", "room": "lobby", "text": TEXT})
    acks = sent = 0

    async def read_acks() -> None:
        nonlocal acks
        async for payload in _payloads(reader):
            acks += payload.startswith(b'{"type":"ack')

    task = asyncio.create_task(read_acks())
    while not stop.is_set():
        while sent - acks < 200:
            writer.write(frame)
            sent += 1
        await writer.drain()
        await asyncio.sleep(0)
    task.cancel()
    writer.close()


async def _run(port: int, pid: int, args: argparse.Namespace, slow: bool) -> dict[str, object]:
    counts, events = [0], []
    readers = []
    for i in range(args.members):
        r, w = await _hello(port, f"r{i}")
        readers.append((asyncio.create_task(_count(r, counts, events)), w))
    sloth = await _hello(port, "sloth", rcvbuf=4096) if slow else None  # never read again
    await asyncio.sleep(0.3)
    rss_before, _ = _rss_kib(pid)
    stop = asyncio.Event()
    senders = [asyncio.create_task(_sender(port, f"s{k}", stop)) for k in range(args.senders)]
    await asyncio.sleep(0.5)
    c0, t0 = counts[0], time.monotonic()
    peak = 0
    while time.monotonic() - t0 < args.duration:
        await asyncio.sleep(0.1)
        peak = max(peak, _rss_kib(pid)[0])
    rate = (counts[0] - c0) / (time.monotonic() - t0)
    stop.set()
    await asyncio.gather(*senders, return_exceptions=True)
    rss_after, _ = _rss_kib(pid)
    for task, writer in readers:
        task.cancel()
        writer.close()
    if sloth is not None:
        sloth[1].transport.abort()
    return {
        "slow member": slow,
        "reader deliveries/s": rate,
        "RSS before MiB": rss_before / 1024,
        "RSS peak MiB": peak / 1024,
        "RSS after MiB": rss_after / 1024,
        "evicted": [e for e in events][:1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20, help="readers N (default: 20)")
    parser.add_argument("--senders", type=int, default=4, help="senders S (default: 4)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    args = parser.parse_args()
    results = []
    for slow in (False, True):
        port = _free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asyncchat",
                "serve",
                "--port",
                str(port),
                "--no-history",
                "--rate",
                "1000000",
                "--burst",
                "1000000",
                "--log-level",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            results.append(asyncio.run(_run(port, proc.pid, args, slow)))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    for r in results:
        print(json.dumps(r))
    base, slow = results
    ratio = slow["reader deliveries/s"] / base["reader deliveries/s"]  # type: ignore[operator]
    print(
        f"readers' throughput with a member that never reads: {ratio:.2f}x of without; "
        f"server RSS peak {slow['RSS peak MiB']:.1f} MiB vs {base['RSS peak MiB']:.1f} MiB; "
        f"max_outbox 256 KiB (default)"
    )
    return 0 if os.environ.get("SLOW_READER_STRICT") is None else int(ratio < 0.8)


if __name__ == "__main__":
    sys.exit(main())
