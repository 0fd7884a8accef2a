"""The attacks of issue 14, one client each (set-up by other connections), each bounded in count
and time. Each is ``async def attack(ctx)``: it sets up, then runs its attack inside
``async with ctx.attack():`` (where the server is measured) and says what the attacker got in
``ctx.got``."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asyncchat.framing import MAX_ID, MAX_JSON_DEPTH

from .harness import Client, Server, frame, open_many
from .measure import Ctx

#: The client's receive buffer for members that stop reading: the server's backlog for them
#: then grows in its outbox, not in the kernel.
SMALL_RCVBUF = 4096


@dataclass(frozen=True)
class Attack:
    """One attack: its name, what it does, the server's extra flags, an open-file limit."""

    name: str
    title: str
    run: Callable[[Ctx], Awaitable[None]]
    args: Callable[[bool], list[str]] = lambda quick: []
    nofile: int | None = None
    restart: bool = False
    notes: list[str] = field(default_factory=list)


def _quick_write_timeout(quick: bool) -> list[str]:
    return ["--write-timeout", "3"] if quick else []


def _codes(frames: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f["code"] if f["type"] == "error" else f["type"] for f in frames)


def _fmt(counts: Counter[str]) -> str:
    return ", ".join(f"{n:,} {k}" for k, n in counts.most_common())


async def _until_gone(server: Server, name: str, timeout: float) -> tuple[float, str]:
    """Seconds until the log says ``name`` was evicted or disconnected, and why."""
    t0 = time.monotonic()
    offset = server.log_size()
    lines: list[str] = []
    while time.monotonic() - t0 < timeout:
        new, offset = server.log_since(offset)
        lines += new
        for line in lines:  # an eviction says why; its "disconnected" line comes after
            if f" evicting {name}: " in line:
                return time.monotonic() - t0, "evicted: " + line.split(f"evicting {name}: ")[1]
        for line in lines:
            if f" {name} disconnected (" in line:
                return time.monotonic() - t0, "disconnected " + line.split(" disconnected ")[1]
        await asyncio.sleep(0.1)
    return time.monotonic() - t0, "still connected"


# ---------------------------------------------------------------------------- (a) rooms


async def pipelined_rooms(ctx: Ctx) -> None:
    """1,500 ``rooms`` requests in one write, never reading, ~9,600 rooms on the server."""
    rooms = 2_000 if ctx.quick else 9_600
    per = 32  # the default max_rooms_per_client: the rooms are made by many connections
    ctx.keep(await _makers(ctx.port, rooms, per))  # each says hello with 32 rooms
    counter = await Client.named(ctx.port, "counter", ["probe"])
    total, after = 0, None
    while True:
        req: dict[str, Any] = {"type": "rooms", "id": "n"}
        if after is not None:
            req["after"] = after
        counter.send(req)
        page = await counter.recv_until(lambda f: f["type"] == "rooms")
        total += len(page["rooms"])
        after = page["rooms"][-1]["name"]
        if not page.get("more"):
            break
    await counter.close()
    ctx.extra["rooms_on_server"] = total
    burst = b"".join(frame({"type": "rooms", "id": i}) for i in range(1_500))
    await _never_reading(ctx, None, burst, "1,500 rooms requests")


async def _never_reading(ctx: Ctx, rooms: list[str] | None, burst: bytes, what: str) -> None:
    """A client with a small receive buffer that reads nothing after its welcome (and its
    replay) writes ``burst`` at once; until it is gone, then what had reached it."""
    atk = await Client.named(ctx.port, "atk", rooms, rcvbuf=SMALL_RCVBUF)
    await atk.settle()  # its joined, the replay and history_end
    atk.pause()
    ctx.extra["write_bytes"] = len(burst)
    async with ctx.attack():
        atk.send_bytes(burst)
        dt, why = await _until_gone(ctx.server, "atk", ctx.write_timeout + 10)
        atk.resume()
        frames, end = await atk.drain_all(1.0)
        read = _fmt(_codes(frames)) or "nothing"
        ctx.got = (
            f"{what} ({len(burst):,} B) in one write; paused, then {why} after {dt:.1f} s; "
            f"read afterwards: {read} ({end})"
        )


async def _makers(port: int, rooms: int, per: int) -> list[Client]:
    names = [f"r{i:05d}" for i in range(rooms)]
    out = []
    for i in range(0, rooms, per * 25):
        chunk = [names[j : j + per] for j in range(i, min(rooms, i + per * 25), per)]
        out += await asyncio.gather(
            *(Client.named(port, f"mk{i + k * per}", rs) for k, rs in enumerate(chunk))
        )
    return out


# ---------------------------------------------------------------------------- (b) history


async def pipelined_history(ctx: Ctx) -> None:
    """57 KB of ``history limit=500`` requests in one write, never reading, with a few thousand
    stored messages."""
    count = 1_000 if ctx.quick else 3_000
    writer = await Client.named(ctx.port, "writer", ["lobby"])
    for start in range(0, count, 500):
        n = min(500, count - start)
        writer.send_bytes(b"".join(
            frame({"type": "say", "room": "lobby", "text": f"{start + i:06d} " + "h" * 193})
            for i in range(n)
        ))  # fmt: skip
        for _ in range(n):
            await writer.recv_until(lambda f: f["type"] == "ack")
    await writer.close()
    ctx.extra["stored_messages"] = count
    one = len(frame({"type": "history", "room": "lobby", "limit": 500, "id": 1000}))
    burst = b"".join(frame({"type": "history", "room": "lobby", "limit": 500, "id": 1000 + i})
                     for i in range(57_000 // one))  # fmt: skip
    await _never_reading(ctx, ["lobby"], burst, f"{57_000 // one:,} history requests")


# ---------------------------------------------------------------------------- (c) ids


def _ids_args(quick: bool) -> list[str]:
    # One client posts every message of the set-up: at the say rate (2/s) that would take
    # hours. Nothing the attack itself sends is a say, or counted by that rate.
    return ["--rate", "1000000", "--burst", "1000000"]


async def long_ids(ctx: Ctx) -> None:
    """A say with a 30 KB id (refused), then many says with ids of MAX_ID characters: the
    idempotency window's memory and the history file per message."""
    n = 2_000 if ctx.quick else 20_000
    atk = await Client.named(ctx.port, "atk", ["lobby"])
    await atk.settle()
    atk.send({"type": "say", "room": "lobby", "text": "x", "id": "i" * 30_000})
    refused = await atk.recv_until(lambda f: f["type"] in ("error", "ack"))
    ctx.extra["id_30k"] = {k: refused.get(k) for k in ("type", "code", "ref")}
    async with ctx.attack():
        rss0 = ctx.server.status()["VmRSS"]
        rss_half = rss0
        acks = 0
        for start in range(0, n, 1_000):
            if start == n // 2:
                await asyncio.sleep(0.5)
                rss_half = ctx.server.status()["VmRSS"]
            atk.send_bytes(b"".join(
                frame({"type": "say", "room": "lobby", "text": "x",
                       "id": str(i).rjust(MAX_ID, "k")})
                for i in range(start, min(n, start + 1_000))
            ))  # fmt: skip
            for _ in range(min(n, start + 1_000) - start):
                await atk.recv_until(lambda f: f["type"] == "ack")
                acks += 1
        await asyncio.sleep(0.5)  # the last commits
        rss1 = ctx.server.status()["VmRSS"]
        per_id = (rss1 - rss0) * 1024 / n
        # The second half alone: what one more remembered id costs, once caches are warm.
        marginal = (rss1 - rss_half) * 1024 / (n - n // 2)
        ctx.extra.update(
            ids=n,
            rss_per_id_bytes=round(per_id),
            rss_per_id_second_half_bytes=round(marginal),
            window_bound_mib=round(max(per_id, marginal) * 100_000 / 2**20, 1),
        )
        ctx.got = (
            f"30 KB id: {refused.get('code', refused['type'])}"
            f"{' (no ref)' if 'ref' not in refused else ''}; {acks:,} acks for ids of "
            f"{MAX_ID} chars: {per_id:.0f} B of RSS each ({marginal:.0f} B in the "
            "second half)"
        )


# ---------------------------------------------------------------------------- (d), (e) storms


async def _paused_members(ctx: Ctx, count: int, rooms: list[str]) -> list[Client]:
    members = await open_many(ctx.port, [f"m{i}" for i in range(count)], rooms,
                              rcvbuf=SMALL_RCVBUF)  # fmt: skip
    ctx.keep(members)
    return members


async def _storm(ctx: Ctx, rooms: list[str], requests: Callable[[int], dict[str, Any]],
                 counted: tuple[str, ...]) -> None:  # fmt: skip
    members = await _paused_members(ctx, 20 if ctx.quick else 50, rooms)
    counts: list[Counter[str]] = [Counter() for _ in members]
    pause = 3.0 if ctx.quick else 8.0
    atk = await Client.named(ctx.port, "atk0", ["lobby"])
    await atk.settle()
    for m in members:  # the joins and replays of the set-up, read before the attack
        await m.settle(0.05)
    n = 100_000
    storm = b"".join(frame(requests(i)) for i in range(n))
    ctx.extra["write_bytes"] = len(storm)
    async with ctx.attack():
        for m in members:
            m.pause()
        t0 = time.monotonic()
        atk.send_bytes(storm)
        frames, end = await atk.drain_all(pause)
        await asyncio.sleep(max(0.0, t0 + pause - time.monotonic()))
        for m in members:
            m.resume()
        for m, c in zip(members, counts, strict=True):
            m.send({"type": "ping", "data": "end"})
            with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                while (f := await m.recv_until(lambda f: True, timeout=5.0))["type"] != "pong":
                    c[f["type"]] += 1
        got = _codes(frames)
        per = sorted(sum(c[k] for k in counted) for c in counts)
        ctx.extra["frames_per_member"] = per[len(per) // 2]
        ctx.got = (
            f"{n:,} requests ({len(storm) / 2**20:.1f} MiB) in one write: {_fmt(got)}, "
            f"connection {end}; each of {len(members)} paused members got "
            f"{per[len(per) // 2]} {'/'.join(counted)}"
        )


async def nick_storm(ctx: Ctx) -> None:
    """100,000 renames from one client while 50 members of shared rooms pause reading."""
    await _storm(
        ctx,
        ["lobby", "stage"],
        lambda i: {"type": "nick", "name": f"atk{i + 1}", "id": i},
        ("renamed",),
    )


async def join_storm(ctx: Ctx) -> None:
    """100,000 joins and leaves of a room whose 50 members pause reading."""
    await _storm(ctx, ["stage"],
                 lambda i: {"type": "leave" if i % 2 else "join", "room": "stage", "id": i},
                 ("joined", "left"))  # fmt: skip


# ---------------------------------------------------------------------------- (f) deep JSON


def _nested(depth: int) -> Any:
    data: Any = 1
    for _ in range(depth):
        data = [data]
    return data


async def deep_ping(ctx: Ctx) -> None:
    """Pings whose data nests 300 levels (for a few seconds, 100 per write, each answered
    before the next write), one nesting 30,000, and one within the bound."""
    most, seconds = (2_000, 2.0) if ctx.quick else (50_000, 5.0)
    atk = await Client.named(ctx.port, "atk", ["lobby"])
    await atk.settle()
    deep = frame({"type": "ping", "data": _nested(300), "id": "d"})
    deepest = b'{"type":"ping","id":"dd","data":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    async with ctx.attack():
        frames: list[dict[str, Any]] = []
        t0, n = time.monotonic(), 0
        while n < most and time.monotonic() - t0 < seconds:
            atk.send_bytes(deep * 100)
            frames += [await atk.recv() for _ in range(100)]
            n += 100
        atk.send_bytes(len(deepest).to_bytes(4, "big") + deepest)
        frames.append(await atk.recv())
        atk.send({"type": "ping", "data": _nested(MAX_JSON_DEPTH - 1), "id": "ok"})
        frames.append(await atk.recv_until(lambda f: f["type"] in ("pong", "error")))
        ctx.got = (
            f"{n:,} x depth 300 + 1 x depth 30,000 ({len(deepest):,} B): "
            f"{_fmt(_codes(frames[:-1]))}; depth {MAX_JSON_DEPTH - 1}: {frames[-1]['type']}"
        )


# ---------------------------------------------------------------------------- (g) descriptors

NOFILE = 256


async def many_connections(ctx: Ctx) -> None:
    """More connections than the open-file limit allows (serve under ulimit -n 256)."""
    n = 300 if ctx.quick else 400
    warned = [line for line in ctx.server.log_lines() if "open-file limit" in line]
    ctx.extra["start_warning"] = warned[0].split(" ", 2)[2] if warned else None
    answers: Counter[str] = Counter()
    conns: list[Client] = []

    async def one(i: int) -> None:
        try:
            c = await Client.open(ctx.port)
            conns.append(c)
            f = await c.hello(f"atk-c{i}")
            answers[f["type"] if f["type"] == "welcome" else f["code"]] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            answers[f"silent ({type(exc).__name__})"] += 1

    async with ctx.attack():
        for i in range(0, n, 50):
            await asyncio.gather(*(one(j) for j in range(i, min(n, i + 50))))
        await asyncio.sleep(1.0)  # held open while the probes go on
        for c in conns:
            await c.close()
        ctx.got = f"{n} connections: {_fmt(answers)}"


# ---------------------------------------------------------------------------- (h) names

_LOOKALIKE = {  # each letter of "alice", and what Unicode's confusables table makes it
    "a": "aAаɑαａ𝐚𝑎𝒂𝓪𝖺⍺",  # noqa: RUF001
    "l": "lL1Iǀℓｌ𝐥׀|ⅼ",  # noqa: RUF001
    "i": "iIіıɩιｉ𝐢ⅰӏ",  # noqa: RUF001 (the table makes the palochka an i)
    "c": "cCсϲｃ𝐜ⅽᴄ",  # noqa: RUF001
    "e": "eEеҽｅ𝐞℮ℯ",  # noqa: RUF001
}
#: Characters that show nothing (Cf, default-ignorable, fillers).
_INVISIBLE = "\u200b\u2060\u3164\u034f\ufe0f\U000e0041\u00ad\u180e\u115f\u200d"


def lookalikes(count: int, seed: int = 14) -> list[str]:
    """``count`` distinct names that look like ``alice``; every other one with an invisible
    character inserted."""
    rnd = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        name = "".join(rnd.choice(_LOOKALIKE[ch]) for ch in "alice")
        if len(out) % 2:
            k = rnd.randrange(1, len(name) + 1)
            name = name[:k] + rnd.choice(_INVISIBLE) + name[k:]
        if name != "alice":
            out[name] = None
    return list(out)


async def name_flood(ctx: Ctx) -> None:
    """Look-alikes of a connected ``alice``, 15 hello attempts per connection."""
    names = lookalikes(200 if ctx.quick else 1_000)
    alice = await Client.named(ctx.port, "alice", ["lobby"])
    ctx.keep([alice])
    live = asyncio.get_running_loop().create_task(alice.answer_pings())
    answers: Counter[str] = Counter()
    accepted: list[str] = []
    async with ctx.attack():
        c: Client | None = None
        tries = 0
        for name in names:
            if c is None or tries == 15:
                if c is not None:
                    await c.close()
                c, tries = await Client.open(ctx.port), 0
            tries += 1
            f = await c.hello(name)
            answers[f["type"] if f["type"] == "welcome" else f["code"]] += 1
            if f["type"] == "welcome":
                accepted.append(" ".join(f"U+{ord(ch):04X}" for ch in name))
                ctx.attackers.add(f["name"])
                await c.close()
                c = None
        if c is not None:
            await c.close()
        ctx.extra["accepted"] = accepted
        live.cancel()
        ctx.got = f"{len(names):,} look-alikes of alice: {_fmt(answers)}"


# ---------------------------------------------------------------------------- (i) expanding keys


async def long_after(ctx: Ctx) -> None:
    """``who`` requests whose ``after`` is 20,000 U+FDFA (60 KB; NFKC makes each 18
    characters): one turn of pipelined requests (FRAMES_PER_TURN), each answered."""
    n = 16 if ctx.quick else 64
    atk = await Client.named(ctx.port, "atk", ["lobby"])
    await atk.settle()
    req = frame({"type": "who", "room": "lobby", "after": "\ufdfa" * 20_000, "id": 1})
    async with ctx.attack():
        t0 = time.monotonic()
        atk.send_bytes(req * n)
        frames = [await atk.recv_until(lambda f: f["type"] in ("who", "error"), timeout=120)
                  for _ in range(n)]  # fmt: skip
        ctx.got = (f"{n} x who with a {len(req):,} B after: {_fmt(_codes(frames))} in "
                   f"{time.monotonic() - t0:.1f} s")  # fmt: skip


ATTACKS = [
    Attack("rooms", "(a) pipelined rooms, ~9,600 rooms", pipelined_rooms, _quick_write_timeout),
    Attack("history", "(b) pipelined history limit=500", pipelined_history,
           lambda quick: _ids_args(quick) + _quick_write_timeout(quick)),
    Attack("ids", "(c) long ids, the idempotency window", long_ids, _ids_args, restart=True),
    Attack("nick", "(d) nick storm, 50 paused members", nick_storm),
    Attack("join", "(e) join/leave storm, 50 paused members", join_storm),
    Attack("deep", "(f) ping nested 300 levels", deep_ping),
    Attack("fds", f"(g) connections past ulimit -n {NOFILE}", many_connections, nofile=NOFILE),
    Attack("names", "(h) look-alike names", name_flood),
    Attack("after", "(i) who after= 60 KB that NFKC expands", long_after),
]  # fmt: skip
