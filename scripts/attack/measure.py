"""One attack against a server of its own, measured: the server's RSS (before, peak, after),
its descriptors and CPU, other members' latency before and during, who was dropped, and what
the attack made the server log."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .harness import Client, Probe, Server

if TYPE_CHECKING:
    from .attacks import Attack

#: Log lines of members that are not part of the attack: the probe's newcomers come and go.
_PROBE_LINE = re.compile(r" INFO (hp\d+|probe-\S+) ")
_GONE = re.compile(r" INFO (?:evicting (\S+): (\S+)|(\S+) disconnected \((.*)\))")


class Ctx:
    """What an attack gets: the server's port, the scale, and where it reports."""

    def __init__(self, server: Server, quick: bool, baseline: float, write_timeout: float) -> None:
        self.server = server
        self.port = server.port
        self.quick = quick
        self.baseline = baseline
        self.write_timeout = write_timeout
        self.got = ""
        self.extra: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.probe: Probe | None = None
        self._kept: list[Client] = []
        #: Names the attacker got (besides ``atk``...): their going is not a member dropped.
        self.attackers: set[str] = set()

    def keep(self, clients: list[Client]) -> None:
        """Clients of the set-up, closed after the measurement."""
        self._kept += clients

    async def close_kept(self) -> None:
        for c in self._kept:
            await c.close()

    @contextlib.asynccontextmanager
    async def attack(self) -> AsyncIterator[None]:
        """Measure the server around the attack: a baseline of the probe first, then VmHWM
        reset, descriptors and RSS sampled every 50 ms, and a second to settle after."""
        server, probe = self.server, self.probe
        assert probe is not None
        t_base = time.monotonic()
        await asyncio.sleep(self.baseline)
        log_bytes = server.log_size()
        before = server.status()["VmRSS"]
        fds0, cpu0 = server.fds(), server.cpu()
        server.reset_peak()
        peak_fds = [fds0]
        sampling = asyncio.get_running_loop().create_task(_sample(server, peak_fds))
        t0 = time.monotonic()
        try:
            yield
        finally:
            t1 = time.monotonic()
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        status = server.status()
        await asyncio.sleep(1.0)  # stragglers of the probe; the server settles
        lines, _ = server.log_since(log_bytes)
        attack_lines = [x for x in lines if not _PROBE_LINE.search(x)]
        self.result = {
            "seconds": round(t1 - t0, 1),
            "rss_kib": {
                "before": before,
                "peak": status["VmHWM"],
                "after": server.status()["VmRSS"],
            },
            "fds": {"before": fds0, "peak": max(peak_fds), "after": server.fds()},
            "server_cpu_s": round(server.cpu() - cpu0, 2),
            "probe_before": probe.window(t_base, t0),
            "probe_during": probe.window(t0, t1),
            "others_dropped": _dropped(lines, self.attackers),
            "log_lines": len(attack_lines),
            "log_bytes": server.log_size() - log_bytes,
        }


async def _sample(server: Server, peak_fds: list[int]) -> None:
    while True:
        with contextlib.suppress(OSError):
            peak_fds.append(server.fds())
        await asyncio.sleep(0.05)


def _dropped(lines: list[str], attackers: set[str]) -> list[str]:
    """Members other than the attacker's (``atk``...) and the probe's newcomers that were
    evicted or disconnected other than by quitting."""
    out = []
    for line in lines:
        m = _GONE.search(line)
        if m is None:
            continue
        name, why = (m[1], m[2]) if m[1] else (m[3], m[4])
        if name.startswith("atk") or name in attackers or (name.startswith("hp") and why == "quit"):
            continue
        out.append(f"{name}: {why}")
    return out


def _tracebacks(text: str) -> int:
    return sum(1 for line in text.splitlines()
               if "Traceback (most recent call last)" in line or " ERROR " in line)  # fmt: skip


async def run_one(
    attack: Attack, *, quick: bool, baseline: float, logs: Path | None = None
) -> dict[str, Any]:
    """Start a server for ``attack``, run it with the probe going, stop everything."""
    args = attack.args(quick)
    write_timeout = float(args[args.index("--write-timeout") + 1]) \
        if "--write-timeout" in args else 10.0  # fmt: skip
    with tempfile.TemporaryDirectory(prefix=f"attack-{attack.name}-") as tmp:
        server = Server(Path(tmp), args, attack.nofile)
        await asyncio.to_thread(server.start)
        fresh_rss = server.status()["VmRSS"]
        fresh_db = server.history_bytes()
        ctx = Ctx(server, quick, baseline, write_timeout)
        ctx.probe = Probe(server.port)
        error = None
        try:
            await ctx.probe.start()
            async with asyncio.timeout(180):
                await attack.run(ctx)
        except (Exception, TimeoutError) as exc:  # noqa: BLE001 - reported, the suite goes on
            error = f"{type(exc).__name__}: {exc}"
        finally:
            await ctx.probe.stop()
            await ctx.close_kept()
            await asyncio.to_thread(server.stop)
        result: dict[str, Any] = {
            "attack": attack.name,
            "title": attack.title,
            "server_args": args,
            "nofile": attack.nofile,
            **ctx.result,
            "attacker_got": ctx.got,
            "extra": ctx.extra,
            "fresh_server_rss_kib": fresh_rss,
        }
        if attack.restart and error is None:
            stored = _stored(server.db)  # the server checkpointed its WAL when it stopped
            grown = server.history_bytes() - fresh_db
            ctx.extra.update(history_rows=stored, history_bytes_per_message=round(grown / stored))
            result["restart"] = await asyncio.to_thread(_restart, server)
        result["tracebacks"] = _tracebacks(server.log_text())
        if logs is not None:
            await asyncio.to_thread(_keep_log, server, logs / f"{attack.name}.log")
        if error is not None:
            result["error"] = error
        return result


def _keep_log(server: Server, to: Path) -> None:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(server.log_path, to)


def _stored(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (n,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    return int(n)


def _restart(server: Server) -> dict[str, Any]:
    """Start the server again on the same history: what reloading the window costs."""
    t0 = time.monotonic()
    server.start()
    took = time.monotonic() - t0
    time.sleep(0.5)
    rss = server.status()["VmRSS"]
    server.stop()
    return {"rss_kib": rss, "start_s": round(took, 2)}
