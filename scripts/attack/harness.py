"""The attack harness: a real ``asyncchat serve`` of its own, raw protocol clients, the
latency probe, and the server's memory, descriptors, CPU and log as /proc shows them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

U32 = struct.Struct(">I")
HOST = "127.0.0.1"
#: Seconds any one step of an attack may take before it is given up (it stops by itself).
STEP = 20.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def frame(obj: dict[str, Any]) -> bytes:
    """One length-prefixed frame."""
    payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return U32.pack(len(payload)) + payload


# ---------------------------------------------------------------------------- the server


class Server:
    """``python -m asyncchat serve`` on a free loopback port, history in ``workdir``, its log
    in a file (never a pipe: a reader that lags would stall the server's logging)."""

    def __init__(self, workdir: Path, args: list[str], nofile: int | None = None) -> None:
        self.workdir = workdir
        self.args = args
        self.nofile = nofile
        self.db = workdir / "history.db"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pid = 0

    def start(self) -> None:
        nofile = self.nofile

        def limit() -> None:
            # The server ends with this script, however the script ends (Linux prctl
            # PR_SET_PDEATHSIG): a load test leaves nothing running behind it.
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [sys.executable, "-m", "asyncchat", "serve", "--host", HOST, "--port", "0",
               "--no-web", "--db", str(self.db), *self.args]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=limit
            )
        self.pid = self.proc.pid
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline:
            new = self.log_path.read_bytes()[offset:].decode("utf-8", "replace")
            found = re.findall(r"INFO listening on 127\.0\.0\.1:(\d+)", new)
            if found:
                self.port = int(found[-1])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"serve did not start: {self.log_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it takes too long; by pid only."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STEP)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STEP)

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> tuple[list[str], int]:
        """The complete lines logged after byte ``offset`` (only those bytes are read), and
        the offset after them."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        return data[:end].decode("utf-8", "replace").splitlines(), offset + end

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) in KiB."""
        values = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    values[key] = int(value.split()[0])
        return values

    def reset_peak(self) -> None:
        """Start VmHWM over from the current RSS (Linux; needs to own the process or root)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu(self) -> float:
        """User + system CPU seconds so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def history_bytes(self) -> int:
        """Bytes of the history database, its WAL and shared memory."""
        return sum(p.stat().st_size for p in self.workdir.glob("history.db*"))


# ---------------------------------------------------------------------------- clients


class Client:
    """One raw protocol connection (frames as dicts)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.name = ""

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> Client:
        sock = socket.socket()
        if rcvbuf is not None:  # before connecting: the window is agreed in the handshake
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        return cls(reader, writer)

    @classmethod
    async def named(
        cls, port: int, name: str, rooms: list[str] | None = None, *, rcvbuf: int | None = None
    ) -> Client:
        """Connected and welcomed, or RuntimeError with the refusal."""
        c = await cls.open(port, rcvbuf=rcvbuf)
        answer = await c.hello(name, rooms)
        if answer["type"] != "welcome":
            await c.close()
            raise RuntimeError(f"hello {name!r}: {answer}")
        return c

    async def hello(self, name: str, rooms: list[str] | None = None) -> dict[str, Any]:
        hello: dict[str, Any] = {"type": "hello", "name": name, "version": 1}
        if rooms is not None:
            hello["rooms"] = rooms
        self.send(hello)
        answer = await self.recv_until(lambda f: f["type"] in ("welcome", "error"))
        if answer["type"] == "welcome":
            self.name = answer["name"]
        return answer

    def send(self, obj: dict[str, Any]) -> None:
        self.writer.write(frame(obj))

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self) -> dict[str, Any]:
        (n,) = U32.unpack(await self.reader.readexactly(4))
        obj: dict[str, Any] = json.loads(await self.reader.readexactly(n))
        return obj

    async def recv_until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = STEP
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                f = await self.recv()
                if pred(f):
                    return f

    async def drain_all(self, timeout: float) -> tuple[list[dict[str, Any]], str]:
        """Every frame until the connection ends or ``timeout``; and how it ended."""
        frames: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frames.append(await self.recv())
        except TimeoutError:
            return frames, "open"
        except asyncio.IncompleteReadError:
            return frames, "closed"
        except ConnectionError as exc:
            return frames, type(exc).__name__
        return frames, "?"  # pragma: no cover

    async def settle(self, quiet: float = 0.3) -> int:
        """Read (and drop) frames until none came for ``quiet`` seconds; how many."""
        n = 0
        with contextlib.suppress(TimeoutError):
            while True:
                await self.recv_until(lambda f: True, timeout=quiet)
                n += 1
        return n

    async def answer_pings(self) -> None:
        """Read every frame and answer each ``ping``, as a live client does (a member that
        answers nothing loses its name to a newcomer asking for it: name reclaim)."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                f = await self.recv()
                if f["type"] == "ping":
                    self.send({"type": "pong", "data": f.get("data")})

    def pause(self) -> None:
        """Stop reading: what the server sends piles up in the kernel, then in its outbox."""
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()

    def resume(self) -> None:
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.resume_reading()

    async def close(self) -> None:
        self.writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


async def open_many(port: int, names: list[str], rooms: list[str] | None = None,
                    *, rcvbuf: int | None = None, at_once: int = 50) -> list[Client]:  # fmt: skip
    """Welcomed clients, ``at_once`` handshakes at a time."""
    out: list[Client] = []
    for i in range(0, len(names), at_once):
        batch = names[i : i + at_once]
        out += await asyncio.gather(*(Client.named(port, n, rooms, rcvbuf=rcvbuf) for n in batch))
    return out


# ---------------------------------------------------------------------------- the probe


class Probe:
    """Other members, measured all along: ``senders`` members of room ``probe`` say in turn
    every ``interval`` seconds (each under the default rate of 2/s), one more member times
    each message's arrival; and a newcomer connects and says hello every ``hello_every``
    seconds (the time to its ``welcome``)."""

    def __init__(self, port: int, *, interval: float = 0.1, senders: int = 6,
                 hello_every: float = 0.5) -> None:  # fmt: skip
        self.port = port
        self.interval = interval
        self.n_senders = senders
        self.hello_every = hello_every
        self.sent: dict[int, float] = {}
        self.got: dict[int, float] = {}
        self.hellos: list[tuple[float, float | None, str]] = []  # (start, seconds, answer)
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[Client] = []

    async def start(self) -> None:
        rx = await Client.named(self.port, "probe-rx", ["probe"])
        txs = [await Client.named(self.port, f"probe-tx{i}", ["probe"])
               for i in range(self.n_senders)]  # fmt: skip
        self._clients = [rx, *txs]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._receive(rx)), loop.create_task(self._say(txs)),
                       loop.create_task(self._hellos())]  # fmt: skip
        self._tasks += [loop.create_task(self._discard(tx)) for tx in txs]

    async def _receive(self, rx: Client) -> None:
        with contextlib.suppress(Exception):
            while True:
                f = await rx.recv()
                if f["type"] == "message" and f["room"] == "probe" and not f.get("history"):
                    self.got.setdefault(int(f["text"][1:]), time.monotonic())

    @staticmethod
    async def _discard(tx: Client) -> None:
        with contextlib.suppress(Exception):
            while True:
                await tx.recv()

    async def _say(self, txs: list[Client]) -> None:
        seq = 0
        start = time.monotonic()
        while True:
            seq += 1
            self.sent[seq] = time.monotonic()
            txs[seq % len(txs)].send({"type": "say", "room": "probe", "text": f"p{seq}"})
            await asyncio.sleep(max(0.0, start + seq * self.interval - time.monotonic()))

    async def _hellos(self) -> None:
        n = 0
        while True:
            n += 1
            t0 = time.monotonic()
            answer, dt = "?", None
            try:
                async with asyncio.timeout(STEP):
                    c = await Client.open(self.port)
                    f = await c.hello(f"hp{n}", ["probe-hello"])
                    answer = f["type"] if f["type"] != "error" else f["code"]
                    dt = time.monotonic() - t0
                    c.send({"type": "quit"})
                    await c.close()
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                answer = type(exc).__name__
            self.hellos.append((t0, dt, answer))
            await asyncio.sleep(max(0.0, t0 + self.hello_every - time.monotonic()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for c in self._clients:
            await c.close()

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Latency of the messages sent in [t0, t1): p50/p99/max in ms, and how many never
        arrived; and the slowest hello that started then."""
        lat = [(self.got[s] - t) * 1000 for s, t in self.sent.items()
               if t0 <= t < t1 and s in self.got]  # fmt: skip
        lost = sum(1 for s, t in self.sent.items() if t0 <= t < t1 and s not in self.got)
        hellos = [h for h in self.hellos if t0 <= h[0] < t1]
        hello_ms = [h[1] * 1000 for h in hellos if h[1] is not None]
        return {
            "n": len(lat),
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "p99_ms": round(_quantile(lat, 0.99), 1) if lat else None,
            "max_ms": round(max(lat), 1) if lat else None,
            "lost": lost,
            "hello_max_ms": round(max(hello_ms), 1) if hello_ms else None,
            "hello_answers": sorted({h[2] for h in hellos}),
            # (seconds into the window, ms; None: never arrived) of each message, for a plot
            "series": [
                (round(t - t0, 2), round((self.got[s] - t) * 1000, 1) if s in self.got else None)
                for s, t in self.sent.items()
                if t0 <= t < t1
            ],
            "hello_series": [
                (round(h[0] - t0, 2), h[1] and round(h[1] * 1000, 1), h[2]) for h in hellos
            ],
        }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
