"""The systems under test: their names, how each server is started on a free loopback port and
stopped by its pid, which load-generator protocol speaks to it, whether it can run here, and its
version. asyncchat runs from this venv or, for the -base systems, from the --baseline tree."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clients import Client
from bench.loadgen import raise_nofile
from bench.protocols import ChatClient, NatsClient, RedisClient, TextbookClient, WsChatClient

BASELINES = Path(__file__).resolve().parent.parent / "baselines"

#: With --baseline PATH: asyncchat and asyncchat-nohist run from PATH/src (before / after).
BASE_SUFFIX = "-base"
BASE_SYSTEMS = ("asyncchat-base", "asyncchat-nohist-base")
#: asyncchat with its members on the web listener's WebSocket (asyncchat-ws), or every second
#: member there (asyncchat-mixed); senders stay on the native TCP protocol. Not run unless asked.
WEB_SYSTEMS = ("asyncchat-ws", "asyncchat-mixed")
#: The durable peers (fanout, C generator only): Redis Streams (XADD, XREAD BLOCK; appendonly,
#: fsync every second) and NATS JetStream (file storage; PubAck, push consumers).
DURABLE_SYSTEMS = ("redis-streams", "jetstream")
SYSTEMS = ("asyncchat", "redis", "nats", "select", "thread", "asyncchat-nohist",
           "asyncchat-power", *WEB_SYSTEMS,
           *BASE_SYSTEMS, *DURABLE_SYSTEMS)
#: asyncchat with --no-history, in the same run: its column in the ratio tables is the ratio of
#: history on (--history, default file) to history off; asyncchat-power: history with
#: --durability power (an fsync per group commit). Not run unless asked for by name.
DEFAULT_SYSTEMS = ("asyncchat", "redis", "nats", "select", "thread")
#: Systems where a sender is a room member and receives the other senders' messages.
CHATLIKE = {"asyncchat", "asyncchat-nohist", "asyncchat-power", *WEB_SYSTEMS, "select", "thread"}
#: Systems whose server process runs on one core (the limit test compares with 100% of a core).
SINGLE_THREADED = {"asyncchat", "asyncchat-nohist", "asyncchat-power", *WEB_SYSTEMS, "redis",
                   "redis-streams", "select", "thread"}

CLIENTS: dict[str, type[Client]] = {
    "asyncchat": ChatClient,
    "asyncchat-nohist": ChatClient,
    "asyncchat-power": ChatClient,
    "asyncchat-ws": ChatClient,
    "asyncchat-mixed": ChatClient,
    "redis": RedisClient,
    "nats": NatsClient,
    "select": TextbookClient,
    "thread": TextbookClient,
}


#: The members' client of a web system and which of them use it (every k-th: 1 all, 2 half).
MEMBER_CLIENTS: dict[str, tuple[type[Client], int]] = {
    "asyncchat-ws": (WsChatClient, 1),
    "asyncchat-mixed": (WsChatClient, 2),
}


def kind(system: str) -> str:
    """The system itself, or for a -base system the one it is the older version of."""
    return system.removesuffix(BASE_SUFFIX)


def source_tree(system: str, baseline: str | None) -> Path | None:
    """Where a system's asyncchat is imported from: PATH/src for a -base system, None for the
    one installed in this venv."""
    if not system.endswith(BASE_SUFFIX):
        return None
    if not baseline:
        raise ValueError(f"{system} needs --baseline PATH")
    return Path(baseline).resolve() / "src"


def asyncchat_env(src: Path | None) -> dict[str, str] | None:
    """The environment of a Python subprocess that imports asyncchat from ``src``: first on
    PYTHONPATH, which precedes the venv's editable install; None (inherit) for this venv's."""
    if src is None:
        return None
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(src) + (os.pathsep + old if old else "")}


def asyncchat_python(src: Path | None, *argv: str, timeout: float) -> str:
    """The stdout of ``python ARGV`` (this interpreter) with asyncchat imported from ``src``."""
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          timeout=timeout, env=asyncchat_env(src)).stdout


_SERVE_FLAGS: dict[Path | None, set[str]] = {}


def serve_flags(src: Path | None = None) -> set[str]:
    """The options 'asyncchat serve' has in a source tree (the server grows features; the bench
    adapts), found from its --help once per tree."""
    if src not in _SERVE_FLAGS:
        try:
            out = asyncchat_python(src, "-m", "asyncchat", "serve", "--help", timeout=30)
        except (OSError, subprocess.SubprocessError):
            out = ""
        _SERVE_FLAGS[src] = {w.strip("[],") for w in out.split() if w.startswith(("--", "[--"))}
    return _SERVE_FLAGS[src]


try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _LIBC = None


def _server_preexec(cpu: int | None = None) -> None:
    """In the server's child: a high fd limit, die with the benchmark (PR_SET_PDEATHSIG), and
    with ``cpu``, run on that CPU alone (every thread: the child's affinity is inherited)."""
    raise_nofile()
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process started by the benchmark; stopped by its pid."""

    def __init__(self, system: str, args: argparse.Namespace, *, idle: int = 0,
                 keepalive_off: bool = True) -> None:
        self.system = system
        self.tmpdir: str | None = None
        self.port = free_port()
        self.web_port = 0
        self.host = "127.0.0.1"
        p = str(self.port)
        maxconn = max(10_000, idle + 1_000)
        env = None
        if system.startswith("asyncchat"):
            src = source_tree(system, args.baseline)
            env = asyncchat_env(src)
            cmd = [sys.executable, "-m", "asyncchat", "serve", "--host", self.host, "--port", p,
                   "--log-level", "warning", "--loop", args.loop,
                   "--rate", "1000000", "--burst", "1000000", "--max-outbox", "67108864",
                   "--max-connections", str(maxconn)]
            if keepalive_off:
                cmd += ["--ping-interval", "3600", "--ping-timeout", "3600"]
            flags = serve_flags(src)
            if "--max-rooms" in flags:  # idle and storm clients each join a room of their own
                cmd += ["--max-rooms", str(maxconn)]
            if kind(system) in WEB_SYSTEMS:
                self.web_port = free_port()
                cmd += ["--web-port", str(self.web_port)]
            elif "--no-web" in flags:
                cmd += ["--no-web"]
            history = "off" if kind(system) == "asyncchat-nohist" else args.history
            if "--db" in flags:  # a server with history: never the user's own database
                if history == "off":
                    cmd += ["--no-history"]
                    if "--accounts-db" in flags:
                        # Without history the accounts and bans still default to the user's
                        # history file (~/.local/share/asyncchat): a temporary one instead.
                        self.tmpdir = tempfile.mkdtemp(prefix="asyncchat-bench-")
                        cmd += ["--accounts-db", os.path.join(self.tmpdir, "accounts.db")]
                elif history == "memory":
                    cmd += ["--db", ":memory:"]
                else:
                    self.tmpdir = tempfile.mkdtemp(prefix="asyncchat-bench-")
                    cmd += ["--db", os.path.join(self.tmpdir, "history.db")]
            if kind(system) == "asyncchat-power" and history == "file":
                cmd += ["--durability", "power"]  # an fsync per group commit
            cmd += args.server_arg or []
        elif system == "redis":
            cmd = ["redis-server", "--port", p, "--bind", self.host, "--save", "",
                   "--appendonly", "no", "--maxclients", str(maxconn)]
        elif system == "redis-streams":
            self.tmpdir = tempfile.mkdtemp(prefix="asyncchat-bench-redis-")
            cmd = ["redis-server", "--port", p, "--bind", self.host, "--save", "",
                   "--appendonly", "yes", "--appendfsync", "everysec", "--dir", self.tmpdir,
                   "--maxclients", str(maxconn)]
        elif system == "nats":
            cmd = ["nats-server", "-a", self.host, "-p", p]
        elif system == "jetstream":
            self.tmpdir = tempfile.mkdtemp(prefix="asyncchat-bench-js-")
            cmd = ["nats-server", "-a", self.host, "-p", p, "-js", "-sd", self.tmpdir]
        else:
            cmd = [sys.executable, str(BASELINES / f"{system}_server.py"), "--host", self.host,
                   "--port", p]
        self.cmd = cmd
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=functools.partial(_server_preexec,
                                                                      args.server_cpu),
                                         start_new_session=True, env=env)
        except BaseException:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{system} exited at start ({self.proc.returncode}): "
                                   f"{self.tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{system} is not listening after 15 s: {self.tail()}") from None
                time.sleep(0.05)
        time.sleep(0.1)
        if system == "jetstream":
            try:
                js_create_stream(self.host, self.port)
            except BaseException:
                self.stop()
                raise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 1) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.log.seek(0)
            lines = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln]
            return " | ".join(lines[-n:]) or "(no output)"
        return "(no output)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def js_create_stream(host: str, port: int, timeout: float = 10.0) -> None:
    """Create the JetStream stream BENCH on the subject the senders publish to (file storage),
    over the NATS protocol's request/reply. Raises RuntimeError if the server refuses."""
    cfg = json.dumps({"name": "BENCH", "subjects": ["bench"], "storage": "file",
                      "retention": "limits", "discard": "old"}).encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.create 1\r\n'
                  b"PUB $JS.API.STREAM.CREATE.BENCH _INBOX.create %d\r\n%s\r\n" % (len(cfg), cfg))
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            j = data.find(b"MSG _INBOX.create ")
            if j >= 0 and data.find(b"\r\n", j) >= 0:
                eol = data.find(b"\r\n", j)
                n = int(data[j:eol].split()[-1])
                if len(data) >= eol + 2 + n:
                    reply = data[eol + 2 : eol + 2 + n]
                    if b'"error"' in reply:
                        raise RuntimeError(f"jetstream: stream create refused: {reply.decode()}")
                    return
            if b"-ERR" in data:
                raise RuntimeError(f"jetstream: {data.decode(errors='replace').strip()}")
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    raise RuntimeError("jetstream: no answer to the stream create request")


def available(system: str, baseline: str | None) -> str | None:
    """None when the system can run here, else why not."""
    if system.endswith(BASE_SUFFIX):
        return _baseline_unusable(system, baseline)
    if system.startswith("asyncchat"):
        return None if importlib.util.find_spec("asyncchat") else \
            f"asyncchat is not importable by {sys.executable}"
    if system in ("redis", "redis-streams"):
        return None if shutil.which("redis-server") else "redis-server is not installed"
    if system in ("nats", "jetstream"):
        return None if shutil.which("nats-server") else "nats-server is not installed"
    path = BASELINES / f"{system}_server.py"
    return None if path.exists() else f"{path} is missing"


def _baseline_unusable(system: str, baseline: str | None) -> str | None:
    """Why a -base system cannot run: no --baseline, no asyncchat in PATH/src, or an interpreter
    that still imports another asyncchat with PYTHONPATH=PATH/src."""
    if not baseline:
        return "needs --baseline PATH (an older asyncchat source tree)"
    src = source_tree(system, baseline)
    assert src is not None
    want = src / "asyncchat" / "__init__.py"
    if not want.is_file():
        return f"{want} is missing: --baseline must be an asyncchat source tree"
    try:
        got = asyncchat_python(src, "-c", "import asyncchat; print(asyncchat.__file__)",
                               timeout=30).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        got = f"(failed: {exc})"
    if not got or Path(got).resolve() != want.resolve():
        return f"with PYTHONPATH={src}, {sys.executable} imports asyncchat from {got or '?'}"
    return None


def version(system: str, baseline: str | None) -> str:
    try:
        if system.startswith("asyncchat"):
            src = source_tree(system, baseline)
            out = asyncchat_python(src, "-m", "asyncchat", "--version", timeout=10)
            if src is not None:
                out = f"{out.strip()} ({src}{_git_head(src.parent)})"
        elif system in ("redis", "redis-streams"):
            out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        elif system in ("nats", "jetstream"):
            out = subprocess.run(["nats-server", "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        else:
            out = f"textbook {system} server (python {platform.python_version()})"
        return out.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _git_head(tree: Path) -> str:
    """', git <short commit>' of a checkout, or '' when it is not one (or git is missing)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return f", git {out.stdout.strip()}"
    return ""
