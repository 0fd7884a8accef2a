"""The compiled fan-out load generator (cgen/gen.c): building it with the system C compiler into
a cache directory (again whenever the source changes), and the parent's handle on the running
process, with the interface of loadgen.Workers that the fanout workload uses (procs, role,
command, prog_arr, close), so that the same barrier, snapshots and figures serve both."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import raise_nofile

SOURCE = Path(__file__).resolve().parent / "cgen" / "gen.c"
CFLAGS = ("-O2", "-Wall")
#: The systems the C generator speaks, and its --proto for each.
PROTOS = {
    "asyncchat": "chat", "asyncchat-nohist": "chat", "asyncchat-power": "chat",
    "asyncchat-base": "chat", "asyncchat-nohist-base": "chat",
    "redis": "redis", "nats": "nats", "redis-streams": "xstream", "jetstream": "js",
    "select": "text", "thread": "text",
}
ROLE = "c"  # the one generator process holds the members and the senders


class BuildError(RuntimeError):
    """The C generator could not be built (no compiler, or the compiler failed)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "asyncchat-bench"


def build() -> Path:
    """The generator's binary, compiled on first use (and when gen.c changes) with ``cc``.

    Raises BuildError when there is no C compiler on PATH or the compile fails."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc or not shutil.which(cc):
        raise BuildError(f"--gen c needs a C compiler ('cc' on PATH, or $CC) to build {SOURCE}; "
                         "install one (apt-get install gcc) or use --gen python")
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + repr((cc, CFLAGS)).encode()).hexdigest()[:16]
    out = cache_dir() / f"gen-{key}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="gen-", dir=out.parent)
    os.close(fd)
    try:
        r = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True,
                           text=True, timeout=120)
        if r.returncode:
            raise BuildError(f"{cc} failed on {SOURCE}:\n{r.stderr.strip()}")
        os.replace(tmp, out)  # atomic: a concurrent run sees the old binary or the new one
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out


def _preexec(avoid_cpu: int | None) -> None:
    raise_nofile()
    if avoid_cpu is not None:  # the server has that CPU to itself
        others = os.sched_getaffinity(0) - {avoid_cpu}
        if others:
            os.sched_setaffinity(0, others)


class _Pipe:
    """The generator's stdin and stdout, as the parent's Connection to a worker process:
    send((command, ...)), poll(timeout), recv() -> the next JSON line."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.buf = b""
        self.eof = False

    def send(self, cmd: tuple[Any, ...]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd[0].encode() + b"\n")
        self.proc.stdin.flush()

    def poll(self, timeout: float = 0.0) -> bool:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf and not self.eof:
            left = deadline - time.monotonic()
            if not select.select([fd], [], [], max(0.0, left))[0]:
                return False
            chunk = os.read(fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        return True

    def recv(self) -> Any:
        if not self.poll(30):
            raise TimeoutError("no answer from the C load generator")
        line, sep, self.buf = self.buf.partition(b"\n")
        if not sep:
            raise EOFError("the C load generator exited")
        return json.loads(line)

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if f is not None:
                    f.close()


class _Proc:
    """The generator's process, as a multiprocessing.Process for the workload's error paths."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.name = f"bench-cgen (pid {proc.pid})"

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()


class CGen:
    """One C generator process: N members and S senders of one fanout point."""

    def __init__(self, binary: Path, *, proto: str, host: str, port: int, members: int,
                 senders: int, window: int, max_lag: int, text_size: int, concurrency: int,
                 timeout: float, avoid_cpu: int | None, say_id: bool = True) -> None:
        argv = [str(binary), "--proto", proto, "--host", host, "--port", str(port),
                "--members", str(members), "--senders", str(senders), "--window", str(window),
                "--max-lag", str(max_lag), "--text-size", str(text_size),
                "--concurrency", str(concurrency), "--timeout", str(timeout),
                "--say-id", str(int(say_id))]
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err,
                                     preexec_fn=functools.partial(_preexec, avoid_cpu))
        self.pipe = _Pipe(self.proc)
        self.procs: list[tuple[Any, Any, str]] = [(_Proc(self.proc), self.pipe, ROLE)]
        self.timeout = timeout

    def stderr(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.err.seek(0)
            return self.err.read().decode(errors="replace").strip()[-500:]
        return ""

    def wait_ready(self, server: Any) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout + 10
        while not self.pipe.poll(0.2):
            if not server.alive():
                raise RuntimeError(f"{server.system} exited while clients connected "
                                   f"({server.proc.returncode}): {server.tail()}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"the C load generator exited ({self.proc.returncode}): "
                                   f"{self.stderr()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the C load generator: not connected after "
                                   f"{self.timeout:.0f} s")
        try:
            msg: dict[str, Any] = self.pipe.recv()
        except EOFError:
            raise RuntimeError(f"the C load generator exited ({self.proc.wait(5)}): "
                               f"{self.stderr()}") from None
        return msg

    def role(self, role: str) -> list[tuple[Any, Any, str]]:
        # The fanout workload starts the members, then the senders: the one process is both,
        # and answers as the senders (probe, go) once.
        return self.procs if role == "sender" else []

    def command(self, entries: list[tuple[Any, Any, str]], cmd: tuple[Any, ...],
                timeout: float = 30, raw: bool = False) -> list[Any]:
        out = []
        for _, pipe, _ in entries:
            pipe.send(cmd)
            if not pipe.poll(timeout):
                raise RuntimeError(f"the C load generator: no answer to {cmd[0]}")
            out.append(pipe.recv())
        return out

    @property
    def prog_arr(self) -> list[int]:
        """The slowest member's message count, as the Python workers' shared array."""
        return [int(self.command(self.procs, ("prog",))[0]["min"])]

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.pipe.send(("stop",))
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.pipe.close()
        self.err.close()
