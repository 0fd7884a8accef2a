"""The benchmark's compiled load generator (scripts/bench/cgen/gen.c): built with cc and run for
one tiny fanout point against a real asyncchat server started by the benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench"

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="no C compiler (cc) on PATH: the C load generator cannot be built",
)


def test_cgen_builds_and_drives_a_fanout_point(tmp_path: Path) -> None:
    """The C generator builds into its cache and delivers messages in a room of 3, none lost."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--workload",
            "fanout",
            "--systems",
            "asyncchat",
            "--sizes",
            "3",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--gen",
            "c",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "cache" / "asyncchat-bench").glob("gen-*")), "no binary in the cache"
    [point] = json.loads(out.read_text())["fanout"]
    assert "error" not in point, point.get("error")
    assert point["generator"] == "c"
    assert point["deliveries"] > 0
    assert point["lost"] == 0


@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("nats-server") is None,
    reason="redis-server or nats-server is not installed",
)
def test_cgen_drives_the_durable_peers(tmp_path: Path) -> None:
    """Redis Streams (XADD, XREAD BLOCK) and JetStream (PubAck, push consumers) both deliver
    in a room of 3 with the C generator, on servers the bench starts on free ports."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--workload",
            "fanout",
            "--systems",
            "redis-streams,jetstream",
            "--sizes",
            "3",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    points = json.loads(out.read_text())["fanout"]
    assert [p["system"] for p in points] == ["redis-streams", "jetstream"]
    for p in points:
        assert "error" not in p, p.get("error")
        assert p["deliveries"] > 0 and p["lost"] == 0 and p["acked_per_s"], p
