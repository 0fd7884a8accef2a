"""The public deployment of docs/security.md, end to end: its configuration file (TLS on the
listener, accounts only), accounts made with ``asyncchat accounts``, and then what the recipe
promises: every byte is TLS, nobody speaks under a registered name without its secret, an
operator removes an abuser at once and keeps it out across a restart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from asyncchat import ChatServer, connect
from asyncchat.config import load_config
from asyncchat.errors import ServerError
from asyncchat.events import Message
from asyncchat.tls import client_context

from .conftest import WAIT

trustme = pytest.importorskip("trustme")

CONFIG = """\
motd = "be nice; operators: admin"

[[listeners]]
host = "127.0.0.1"
port = 0
tls_cert = "{cert}"
tls_key = "{key}"

[history]
db = "{db}"

[auth]
guests = "{guests}"
registration = "closed"

[limits]
max_per_ip = 8
login_failures = 5
login_lockout = 600.0
"""


def accounts(db: Path, *args: str, stdin: str = "") -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asyncchat", "accounts", "--db", str(db), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, str]:
    """The files of the recipe: (config with guests denied, database, CA file)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, cafile = (tmp_path / n for n in ("chain.pem", "key.pem", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(cafile))
    db = tmp_path / "chat.db"
    accounts(db, "add", "admin", "--operator", "--password-stdin", stdin="admin-secret\n")
    accounts(db, "add", "alice", "--password-stdin", stdin="alice-secret\n")
    accounts(db, "add", "mallory", "--password-stdin", stdin="mallory-secret\n")
    config = tmp_path / "asyncchat.toml"
    config.write_text(CONFIG.format(cert=chain, key=key, db=db, guests="deny"))
    return config, db, str(cafile)


async def test_the_recipe_holds(setup: tuple[Path, Path, str]) -> None:
    """Plain text is dropped; without credentials, with a wrong password, or as a look-alike
    name nobody gets in; the operator bans an abuser (evicted at once) who stays out after a
    restart, while the others chat over TLS."""
    config, _, cafile = setup
    tls = client_context(cafile)
    cfg = load_config(str(config))
    async with ChatServer(config=cfg) as server:
        host, port = server.address
        # Everything is TLS: a plain-text hello is dropped without an answer.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x00\x00\x00\x02{}")
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        writer.close()
        # Nobody without the secret: no credentials, a wrong password, a look-alike name.
        for name, creds, code in (
            ("carol", {}, "auth_required"),
            ("alice", {}, "name_reserved"),
            ("ALICE", {"password": "guess"}, "auth_failed"),
            ("\u0430lice", {}, "name_reserved"),
        ):
            with pytest.raises(ServerError) as err:
                await connect(host, port, name=name, ssl=tls, **creds)
            assert err.value.code == code, name
        server.auth.throttle.succeeded("ip:127.0.0.1", "account:alice")  # type: ignore[union-attr]
        async with (
            connect(host, port, name="admin", password="admin-secret", ssl=tls) as admin,
            connect(host, port, name="alice", password="alice-secret", ssl=tls) as alice,
        ):
            mallory = await connect(host, port, name="mallory", password="mallory-secret", ssl=tls)
            await admin.ban(account="mallory", reason="abuse")
            async with asyncio.timeout(WAIT):
                while not mallory.closed:
                    await asyncio.sleep(0.01)
            assert mallory.bye is not None and mallory.bye.reason == "banned"
            await alice.say("lobby", "quiet now")
            async with asyncio.timeout(WAIT):
                async for event in admin:
                    if isinstance(event, Message) and event.text == "quiet now":
                        break
    async with ChatServer(config=cfg) as server:
        host, port = server.address
        with pytest.raises(ServerError) as err:
            await connect(host, port, name="mallory", password="mallory-secret", ssl=tls)
        assert err.value.code == "banned"
        async with connect(host, port, name="alice", password="alice-secret", ssl=tls):
            pass


async def test_existing_clients_still_work_where_guests_are_allowed(
    setup: tuple[Path, Path, str],
) -> None:
    """With guests allowed, a client sending no credentials at all gets in (over TLS), and is
    refused only the registered names."""
    config, _, cafile = setup
    text = config.read_text().replace('guests = "deny"', 'guests = "allow"')
    config.write_text(text)
    async with ChatServer(config=load_config(str(config))) as server:
        host, port = server.address
        async with connect(host, port, name="visitor", ssl=client_context(cafile)) as visitor:
            assert (await visitor.say("lobby", "hi")).seq >= 1
        with pytest.raises(ServerError) as err:
            await connect(host, port, name="admin", ssl=client_context(cafile))
        assert err.value.code == "name_reserved"
