"""Real ``redis-server`` processes for the cluster tests: a free loopback port, an append-only
file in a temporary directory (never the machine's shared Redis), ended by their pid."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")

#: Skips the tests that need a real Redis when the machine has none.
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """One redis-server on 127.0.0.1:``port`` keeping its data in ``dir`` (AOF ``fsync``
    ``always`` when ``persist``; nothing on disk otherwise)."""

    def __init__(self, dir: Path, *, persist: bool = True) -> None:
        self.dir = dir
        self.port = free_port()
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        aof = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persist
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                *aof,
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, by pid, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def flush_files(self) -> None:
        """Remove what it kept on disk (a Redis that comes back without its data)."""
        for child in self.dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


@contextlib.contextmanager
def redis_process(dir: Path, *, persist: bool = True) -> Iterator[RedisProcess]:
    r = RedisProcess(dir, persist=persist)
    r.start()
    try:
        yield r
    finally:
        r.kill()
