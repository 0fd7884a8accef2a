"""Configuration: ServerConfig's defaults and checks, the TOML it writes, and the layers
``asyncchat serve`` reads (defaults, --config FILE, ASYNCCHAT_* variables, flags), exercised
through the real CLI in subprocesses as a user runs it.

Every wait is bounded by ``WAIT`` (scaled by ASYNCCHAT_TEST_UNIT) and only ever waits for
something that should happen; no test asserts how fast anything is.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncchat.config import (
    HistoryConfig,
    Listener,
    ServerConfig,
    default_db_path,
    from_dict,
    load_config,
    to_toml,
)
from asyncchat.errors import ConfigError
from asyncchat.limits import Limits

from .conftest import WAIT

#: The children's environment: none of the developer's own ASYNCCHAT_* settings leak in.
BASE_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("ASYNCCHAT_")},
    "PYTHONUTF8": "1",
}
if "ASYNCCHAT_TEST_UNIT" in os.environ:
    BASE_ENV["ASYNCCHAT_TEST_UNIT"] = os.environ["ASYNCCHAT_TEST_UNIT"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``asyncchat ARGS`` run to completion (killed by its pid if it outlives WAIT)."""
    return subprocess.run(
        [sys.executable, "-m", "asyncchat", *args],
        env={**BASE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )


def printed(*args: str, env: dict[str, str] | None = None) -> ServerConfig:
    """The configuration ``asyncchat serve --print-config ARGS`` prints, read back."""
    result = cli("serve", "--print-config", *args, env=env)
    assert result.returncode == 0, result.stderr
    return from_dict(tomllib.loads(result.stdout))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused start says on stderr (exit 2, nothing served)."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "listening" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asyncchat: error: "), lines
    return lines[0]


# --------------------------------------------------------------------------- the dataclasses


def test_defaults_are_those_of_serve() -> None:
    """ServerConfig() is what asyncchat serve runs with when nothing is set."""
    cfg = ServerConfig()
    assert cfg.listeners == (
        Listener(kind="tcp", host="127.0.0.1", port=1234),
        Listener(kind="web", host="127.0.0.1", port=8080),
    )
    assert cfg.limits == Limits()
    assert cfg.history == HistoryConfig(enabled=True, durability="process")
    assert (cfg.motd, cfg.log_level, cfg.loop) == (None, "info", "auto")
    assert printed() == cfg


def test_db_path_is_none_without_history_else_the_default_file() -> None:
    """db_path() is None with history off, the XDG file when no db is named, else the db."""
    assert ServerConfig().db_path() == default_db_path()
    assert default_db_path() == os.path.join(os.environ["XDG_DATA_HOME"], "asyncchat", "history.db")
    assert ServerConfig(history=HistoryConfig(db=":memory:")).db_path() == ":memory:"
    assert ServerConfig(history=HistoryConfig(enabled=False, db="x.db")).db_path() is None


def test_only_known_listener_kinds_are_accepted() -> None:
    """A listener kind this version does not serve is refused, naming the kinds it does."""
    with pytest.raises(ConfigError, match=r"one of tcp, line, classic, web, not .irc."):
        Listener(kind="irc")


def test_a_listener_port_defaults_by_kind_and_origins_are_for_web_only() -> None:
    """A listener without a port gets its kind's (1234, 8080); origins on a tcp listener are
    refused."""
    assert (Listener().port, Listener(kind="web").port) == (1234, 8080)
    with pytest.raises(ConfigError, match=r"origins apply to a web listener"):
        ServerConfig(listeners=(Listener(origins=("http://a.example",)),))


@pytest.mark.parametrize(
    ("env", "flags", "web"),
    [
        ({}, {}, ("127.0.0.1", 8080, ())),
        ({}, {"web": False}, None),
        ({"ASYNCCHAT_WEB": "off"}, {}, None),
        ({"ASYNCCHAT_WEB": "off"}, {"web_port": 9001}, ("127.0.0.1", 9001, ())),
        ({"ASYNCCHAT_WEB_HOST": "::1"}, {"web_port": 0}, ("::1", 0, ())),
        (
            {"ASYNCCHAT_WEB_ORIGINS": "https://a.example, https://b.example"},
            {},
            ("127.0.0.1", 8080, ("https://a.example", "https://b.example")),
        ),
    ],
    ids=["default", "no-web", "env-off", "flag-over-env", "host-and-port", "origins"],
)
def test_web_settings_shape_the_web_listener(
    env: dict[str, str], flags: dict[str, object], web: tuple[str, int, tuple[str, ...]] | None
) -> None:
    """--web/--no-web, --web-host, --web-port and --web-origin (and their ASYNCCHAT_WEB*
    variables) add, remove or change the web listener and leave the tcp one alone."""
    cfg = load_config(None, env, flags)
    assert cfg.listeners[0] == Listener()
    webs = [(x.host, x.port, x.origins) for x in cfg.listeners if x.kind == "web"]
    assert webs == ([] if web is None else [web])


def test_two_listeners_on_one_address_are_refused() -> None:
    """Two listeners on the same host and port are refused (port 0 may repeat)."""
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:9000"):
        ServerConfig(listeners=(Listener(port=9000), Listener(port=9000)))
    assert len(ServerConfig(listeners=[Listener(port=0), Listener(port=0)]).listeners) == 2


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_any_text_survives_the_toml_writer(text: str) -> None:
    """Any Unicode text (quotes, backslashes, controls) is written as TOML that reads back."""
    cfg = ServerConfig(motd=text, history=HistoryConfig(db=text or None))
    assert from_dict(tomllib.loads(to_toml(cfg))) == cfg


# --------------------------------------------------------------------------- the layers

FILE = """\
[[listeners]]
port = 2001

[limits]
max_frame = 100000

[history]
enabled = false
db = "file.db"
"""
ENV = {
    "ASYNCCHAT_PORT": "2002",
    "ASYNCCHAT_MAX_FRAME": "200000",
    "ASYNCCHAT_HISTORY": "on",
    "ASYNCCHAT_DB": "env.db",
}
FLAGS = ["--port", "2003", "--max-frame", "300000", "--no-history", "--db", "flag.db"]
#: What each layer sets: (port, max_frame, history on, db).
SET_BY = {
    "defaults": (1234, 65536, True, None),
    "file": (2001, 100000, False, "file.db"),
    "env": (2002, 200000, True, "env.db"),
    "flags": (2003, 300000, False, "flag.db"),
}
LAYERS = [c for n in range(4) for c in itertools.combinations(("file", "env", "flags"), n)]


@pytest.mark.parametrize("layers", LAYERS, ids=lambda c: "+".join(c) or "none")
def test_flags_beat_env_beat_file_beat_defaults(layers: tuple[str, ...], tmp_path: Path) -> None:
    """For the port, a limit and history, the highest layer given wins: flags, then
    ASYNCCHAT_* variables, then the --config file, then the defaults."""
    path = tmp_path / "asyncchat.toml"
    path.write_text(FILE)
    args = ["--config", str(path)] if "file" in layers else []
    args += FLAGS if "flags" in layers else []
    cfg = printed(*args, env=ENV if "env" in layers else None)
    top = layers[-1] if layers else "defaults"
    got = (cfg.listeners[0].port, cfg.limits.max_frame, cfg.history.enabled, cfg.history.db)
    assert got == SET_BY[top]


def test_load_config_applies_the_same_layers(tmp_path: Path) -> None:
    """load_config(path, env, overrides) layers the same way for a library caller."""
    path = tmp_path / "asyncchat.toml"
    path.write_text(FILE)
    assert load_config(str(path)).listeners[0].port == 2001
    cfg = load_config(str(path), ENV, {"max_frame": 300_000})
    assert (cfg.listeners[0].port, cfg.limits.max_frame, cfg.history.db) == (
        2002,
        300_000,
        "env.db",
    )
    assert load_config(None, {"ASYNCCHAT_PORT": ""}) == ServerConfig()  # empty: unset


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("[limits]\nmax_frames = 70000\n", "limits.max_frames"),
        ('colour = "red"\n', "colour"),
        ("[[listeners]]\nprot = 1\n", "listeners[0].prot"),
        ("[history]\nkeep = 10\n", "history.keep"),
    ],
)
def test_unknown_file_key_is_a_one_line_error(content: str, key: str, tmp_path: Path) -> None:
    """An unknown key in the file stops serve with exit 2 and one line naming file and key."""
    path = tmp_path / "asyncchat.toml"
    path.write_text(content)
    line = one_line_error(cli("serve", "--config", str(path)))
    assert str(path) in line and f"unknown key {key}" in line, line


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('[limits]\nmax_frame = "big"\n', ["limits.max_frame", "whole number", "'big'"]),
        ("[limits]\nmax_frame = 10\n", ["limits.max_frame", "4096", "10"]),
        (
            '[[listeners]]\nkind = "irc"\n',
            ["listeners[0].kind", "tcp, line, classic, web", "'irc'"],
        ),
        ('[history]\ndurability = "maybe"\n', ["history.durability", "power", "'maybe'"]),
        ("loop = 3\n", ["loop", "a string", "3"]),
        ("motd =\n", ["not valid TOML", "line 1"]),
        (None, ["cannot read"]),
    ],
    ids=["type", "range", "kind", "choice", "top", "syntax", "missing"],
)
def test_bad_file_is_a_one_line_error(
    content: str | None, words: list[str], tmp_path: Path
) -> None:
    """A wrong type, a bad value, bad TOML or no file at all stops serve with exit 2 and one
    line naming the file and what is wrong where."""
    path = tmp_path / "asyncchat.toml"
    if content is not None:
        path.write_text(content)
    line = one_line_error(cli("serve", "--config", str(path)))
    assert str(path) in line, line
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ASYNCCHAT_MAX_FRAME", "abc"),
        ("ASYNCCHAT_MAX_FRAME", "10"),
        ("ASYNCCHAT_RATE", "-1"),
        ("ASYNCCHAT_PORT", "99999"),
        ("ASYNCCHAT_HISTORY", "maybe"),
        ("ASYNCCHAT_HISTORY_MAX", "0"),
        ("ASYNCCHAT_LOOP", "trio"),
        ("ASYNCCHAT_PER_IP_EXEMPT", "10.0.0.0/8,nonsense"),
    ],
)
def test_bad_env_value_is_a_one_line_error(var: str, value: str) -> None:
    """A bad value in an ASYNCCHAT_* variable stops serve with exit 2 and one line naming it."""
    line = one_line_error(cli("serve", "--port", "0", "--db", ":memory:", env={var: value}))
    assert f"{var}: " in line and value.split(",")[-1] in line, line


def test_unknown_env_variable_is_warned_about_and_ignored() -> None:
    """An unknown ASYNCCHAT_* variable is ignored with a warning that suggests the setting
    meant; the test suite's own ASYNCCHAT_TEST_UNIT is neither used nor warned about."""
    result = cli(
        "serve",
        "--print-config",
        env={"ASYNCCHAT_MAX_FRAMES": "70000", "ASYNCCHAT_TEST_UNIT": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert from_dict(tomllib.loads(result.stdout)) == ServerConfig()
    (line,) = result.stderr.strip().splitlines()
    assert "WARNING ASYNCCHAT_MAX_FRAMES is not a setting" in line, line
    assert "did you mean ASYNCCHAT_MAX_FRAME?" in line, line


# --------------------------------------------------------------------------- round trip


def test_print_config_round_trips_through_config(tmp_path: Path) -> None:
    """What --print-config prints, --config reads back to the same configuration, and
    load_config reads it as the ServerConfig the flags described."""
    motd = 'say "hi" \\o/\ttab \x01 ünï 🎉\nline 2'
    db = str(tmp_path / 'a "b" \\ c.db')
    flags = [
        "--host", "::1", "--port", "4321", "--motd", motd, "--log-level", "debug",
        "--loop", "asyncio", "--rate", "0.5", "--burst", "9", "--per-ip-exempt", "10.0.0.0/8",
        "--per-ip-exempt", "::1/128", "--db", db, "--history-max", "7",
        "--history-days", "0.25", "--durability", "power", "--web-port", "8181",
        "--web-origin", "https://chat.example",
    ]  # fmt: skip
    first = cli("serve", "--print-config", *flags)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "printed.toml"
    path.write_text(first.stdout, encoding="utf-8")

    again = cli("serve", "--print-config", "--config", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout

    assert load_config(str(path)) == ServerConfig(
        listeners=(
            Listener(host="::1", port=4321),
            Listener(kind="web", port=8181, origins=("https://chat.example",)),
        ),
        limits=Limits(rate=0.5, burst=9, per_ip_exempt=("10.0.0.0/8", "::1/128")),
        history=HistoryConfig(db=db, max=7, days=0.25, durability="power"),
        motd=motd,
        log_level="debug",
        loop="asyncio",
    )


def test_readme_example_file_is_accepted(tmp_path: Path) -> None:
    """The README's example configuration file is read by serve --config as it says."""
    readme = Path(__file__).resolve().parent.parent / "README.md"
    (example,) = re.findall(r"```toml\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    path = tmp_path / "asyncchat.toml"
    path.write_text(textwrap.dedent(example))
    cfg = printed("--config", str(path))
    assert cfg.listeners == (Listener(host="0.0.0.0", port=4000),)
    assert cfg.limits.max_per_ip == 4 and cfg.motd == "be nice"


# --------------------------------------------------------------------------- serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_frame(sock: socket.socket) -> dict[str, object]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    (n,) = struct.unpack(">I", exactly(4))
    return json.loads(exactly(n))  # type: ignore[no-any-return]


def test_serve_config_file_serves_on_its_port(tmp_path: Path) -> None:
    """serve --config FILE listens on the file's port and welcomes with its motd and limits;
    SIGTERM then stops it with exit 0."""
    port = free_port()
    path = tmp_path / "asyncchat.toml"
    path.write_text(
        f'motd = "from the file"\n\n[[listeners]]\nport = {port}\n\n'
        '[limits]\nmax_text = 123\n\n[history]\ndb = ":memory:"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncchat", "serve", "--config", str(path)],
        env=BASE_ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr = proc.stderr
    assert stderr is not None

    def read_stderr() -> None:
        for line in stderr:
            lines.put(line)

    pump = threading.Thread(target=read_stderr, daemon=True)
    pump.start()
    try:
        seen = ""
        while f"listening on 127.0.0.1:{port}" not in seen:
            try:
                seen += lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"serve never said it was listening: {seen!r}") from None
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            hello = json.dumps({"type": "hello", "name": "alice", "version": 1}).encode()
            sock.sendall(struct.pack(">I", len(hello)) + hello)
            welcome = read_frame(sock)
        assert welcome["type"] == "welcome", welcome
        assert welcome["motd"] == "from the file"
        assert welcome["limits"]["max_text"] == 123  # type: ignore[index]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        pump.join(WAIT)
