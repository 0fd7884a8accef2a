"""The doors' settings through the real CLI: --line-port/--classic-port (and hosts), the
ASYNCCHAT_* variables, the config file's [[listeners]], --print-config, and a served door that a
plain socket (netcat) chats through."""

from __future__ import annotations

import socket
import subprocess
import sys
import tomllib
from pathlib import Path

from asyncchat.config import Listener, from_dict, load_config

from .conftest import WAIT
from .test_cli import serve
from .test_config import BASE_ENV, cli, one_line_error, printed

#: ``asyncchat serve`` on a free chat port, without history.
SERVE = [sys.executable, "-m", "asyncchat", "serve", "--port", "0", "--no-history", "--no-web"]


def test_flags_and_variables_turn_the_doors_on() -> None:
    """--line-port and --classic-port (with their hosts), or ASYNCCHAT_LINE_PORT and
    ASYNCCHAT_CLASSIC_PORT, add a listener of that kind; flags beat variables."""
    cfg = printed("--line-port", "1236", "--classic-port", "1235", "--classic-host", "::1")
    assert cfg.listeners == (
        Listener(),
        Listener(kind="web"),  # on by default
        Listener(kind="line", port=1236),
        Listener(kind="classic", host="::1", port=1235),
    )
    env = {"ASYNCCHAT_LINE_PORT": "2236", "ASYNCCHAT_CLASSIC_PORT": "2235"}
    cfg = printed("--line-port", "3236", env=env)
    assert cfg.listeners[2:] == (
        Listener(kind="line", port=3236),
        Listener(kind="classic", port=2235),
    )
    assert printed().listeners == (Listener(), Listener(kind="web"))  # doors off by default
    cfg = printed("--line-port", "1236", "--line-tls-cert", "c.pem", "--line-tls-key", "k.pem")
    assert cfg.listeners[2] == Listener(kind="line", port=1236, tls_cert="c.pem", tls_key="k.pem")


def test_a_door_host_without_its_port_is_a_one_line_error() -> None:
    """A door's host or certificate alone names a listener that is off: one line saying which
    setting turns it on."""
    line = one_line_error(cli("serve", "--line-host", "0.0.0.0"))
    assert line.endswith("--line-host: the line listener is off; --line-port turns it on"), line
    env = {"ASYNCCHAT_CLASSIC_TLS_CERT": "c.pem"}
    line = one_line_error(cli("serve", env=env))
    assert line.endswith(
        "ASYNCCHAT_CLASSIC_TLS_CERT: the classic listener is off; "
        "ASYNCCHAT_CLASSIC_PORT turns it on"
    ), line


def test_doors_round_trip_through_the_config_file(tmp_path: Path) -> None:
    """--print-config writes the doors as [[listeners]] tables that --config reads back, and a
    file's door is moved by the flag of its kind."""
    first = cli("serve", "--print-config", "--line-port", "4236", "--classic-port", "4235")
    assert first.returncode == 0, first.stderr
    assert 'kind = "line"' in first.stdout and 'kind = "classic"' in first.stdout
    path = tmp_path / "doors.toml"
    path.write_text(first.stdout, encoding="utf-8")
    again = cli("serve", "--print-config", "--config", str(path))
    assert again.stdout == first.stdout
    cfg = load_config(str(path), overrides={"line_port": 5236})
    assert cfg.listeners[2] == Listener(kind="line", port=5236)
    assert from_dict(tomllib.loads(first.stdout)) == load_config(str(path))


def test_a_taken_door_port_is_the_chat_port_error() -> None:
    """A door port already in use is the same one-line error (exit 1) as a taken chat port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVE, "--line-port", str(port)],
            env=BASE_ENV,
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("asyncchat: cannot listen on ") and lines[-1].endswith(
        "the address is already in use"
    ), lines
    assert f"127.0.0.1:{port}" in lines[-1]
    assert "Traceback" not in result.stderr


def test_served_doors_chat_through_plain_sockets() -> None:
    """asyncchat serve --line-port P --classic-port Q: a netcat-like socket on P and a classic
    client on Q talk to each other."""
    with serve("--line-port", "0", "--classic-port", "0") as (proc, _):
        door = r" door listening on 127\.0\.0\.1:(\d+)"
        line_port = int(proc.err.wait_for("line" + door).group(1))
        classic_port = int(proc.err.wait_for("classic" + door).group(1))
        with (
            socket.create_connection(("127.0.0.1", line_port), timeout=WAIT) as nc,
            socket.create_connection(("127.0.0.1", classic_port), timeout=WAIT) as student,
        ):
            text = nc.makefile("rb")
            assert b"type your name" in text.readline()
            nc.sendall(b"alice\n")
            assert text.readline().startswith(b"-- connected to asyncchat/0.1.0 as alice")
            assert text.readline() == b"-> you joined #lobby\r\n"
            student.sendall(b"5         carol")
            assert text.readline() == b"-> carol joined #lobby\r\n"
            student.sendall(b"9         hi, alice")
            assert text.readline().endswith(b" #lobby <carol> hi, alice\r\n")
            nc.sendall(b"hi, carol\n")
            got = b""
            while not got.endswith(b"hi, carol"):
                chunk = student.recv(4096)
                assert chunk, got
                got += chunk
            assert got.endswith(b"5         alice9         hi, carol"), got
