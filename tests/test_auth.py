"""Accounts and authentication over real sockets: passwords and tokens in hello, every
impersonation route refused, guests and the server password, the login throttle, plain-text
passwords from other machines, in-band registration."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asyncchat import ChatServer, connect
from asyncchat.auth import Authenticator, Throttle, hash_password, new_token, verify_password
from asyncchat.backends.accounts import SQLiteAccounts
from asyncchat.config import AuthConfig
from asyncchat.errors import ErrorCode, ProtocolError, ServerError
from asyncchat.events import Hello
from asyncchat.interfaces import Account
from asyncchat.limits import Limits
from asyncchat.validation import user_key

from .conftest import RawClient

PASSWORD = "correct horse"


def make_accounts(path: Path, *names: str, operator: str | None = None) -> dict[str, str]:
    """Create an account with PASSWORD for each of ``names`` and a token for each; returns the
    tokens by name."""
    store = SQLiteAccounts(str(path))
    tokens = {}
    try:
        secret = hash_password(PASSWORD)
        for name in names:
            store.add(Account(user_key(name), name, secret, name == operator, time.time()))
            token_id, stored, token = new_token()
            store.add_token(token_id, user_key(name), stored, "", time.time())
            tokens[name] = token
    finally:
        store.close()
    return tokens


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


Start = Callable[..., Any]


@pytest.fixture
def start(db: Path) -> Start:
    """``async with start(guests="deny", login_failures=3) as server``: a server whose accounts
    live in ``db``; AuthConfig keywords and limits as keywords."""

    def make(**kw: Any) -> ChatServer:
        auth = {k: kw.pop(k) for k in list(kw) if k in AuthConfig.__dataclass_fields__}
        return ChatServer("127.0.0.1", 0, auth=AuthConfig(db=str(db), **auth), **kw)

    return make


async def dial(server: ChatServer, host: str | None = None) -> RawClient:
    h, port = server.address
    reader, writer = await asyncio.open_connection(host or h, port)
    return RawClient(reader, writer)


async def refused(server: ChatServer, **hello: Any) -> dict[str, Any]:
    """The error frame a hello with ``hello``'s members gets."""
    c = await dial(server)
    try:
        c.send({"type": "hello", "version": 1, **hello})
        frame = await c.recv()
        assert frame["type"] == "error", frame
        return frame
    finally:
        await c.close()


async def test_password_and_token_log_in_and_a_wrong_one_does_not(db: Path, start: Start) -> None:
    """The right password or token gets welcome; a wrong password, a token of another account
    or a made-up token get auth_failed, which says nothing about which part was wrong."""
    tokens = make_accounts(db, "alice", "bob")
    async with start() as server:
        host, port = server.address
        async with connect(host, port, name="alice", password=PASSWORD) as alice:
            assert alice.name == "alice"
        async with connect(host, port, name="bob", token=tokens["bob"]) as bob:
            assert bob.name == "bob"
        for creds in (
            {"password": "wrong password"},
            {"token": tokens["bob"]},
            {"token": "nope.nope"},
            {"token": "garbage"},
        ):
            with pytest.raises(ServerError) as err:
                await connect(host, port, name="alice", **creds)
            assert err.value.code == "auth_failed"
            assert "wrong name, password or token" in err.value.message
            server.auth.throttle.succeeded(*server.auth.throttle._keys)  # type: ignore[union-attr]


async def test_every_impersonation_route_is_refused(db: Path, start: Start) -> None:
    """A guest cannot take a registered name: not as it is, not in another case, not in
    another Unicode normalization, not with a confusable letter (name_reserved, not
    name_taken); a
    guest's nick to one is refused the same way; the account itself may use any case of it."""
    make_accounts(db, "alice", "José")
    async with start() as server:
        for name in ("alice", "ALICE", "Alice", "\u0430lice", "JOSE\u0301", "josé"):
            frame = await refused(server, name=name)
            assert frame["code"] == "name_reserved", (name, frame)
        host, port = server.address
        async with connect(host, port, name="mallory") as mallory:
            for name in ("alice", "ALİCE".replace("İ", "I"), "jose\u0301"):
                with pytest.raises(ServerError) as err:
                    await mallory.nick(name)
                assert err.value.code == "name_reserved"
            assert mallory.name == "mallory"
        async with connect(host, port, name="ALICE", password=PASSWORD) as alice:
            assert alice.name == "ALICE"
            await alice.nick("alice")
            with pytest.raises(ServerError) as err:
                await alice.nick("josé")  # someone else's registered name
            assert err.value.code == "name_reserved"


async def test_a_password_for_an_unregistered_name_is_a_guest(db: Path, start: Start) -> None:
    """A password sent for a name nobody registered (a login form that always sends one) gets
    in as a guest; a token for it is auth_failed."""
    make_accounts(db, "alice")
    async with start() as server:
        host, port = server.address
        async with connect(host, port, name="newbie", password="whatever1") as newbie:
            assert newbie.name == "newbie"
        with pytest.raises(ServerError) as err:
            await connect(host, port, name="other", token="abc.def")
        assert err.value.code == "auth_failed"


async def test_old_clients_without_credentials_still_work_as_guests(db: Path, start: Start) -> None:
    """A hello with no credentials at all gets in as before where guests are allowed."""
    make_accounts(db, "alice")
    async with start() as server:
        c = await dial(server)
        welcome = await c.hello("carol")
        assert welcome["name"] == "carol"
        await c.close()


async def test_guests_deny_and_the_server_password(db: Path, start: Start) -> None:
    """guests=deny: a hello without credentials gets auth_required (accounts still get in);
    a server password: guests need it (auth_required without, auth_failed when wrong)."""
    make_accounts(db, "alice")
    async with start(guests="deny") as server:
        assert (await refused(server, name="carol"))["code"] == "auth_required"
        host, port = server.address
        async with connect(host, port, name="alice", password=PASSWORD):
            pass
    async with start(server_password="letmein") as server:
        host, port = server.address
        assert (await refused(server, name="carol"))["code"] == "auth_required"
        frame = await refused(server, name="carol", server_password="nope")
        assert frame["code"] == "auth_failed"
        server.auth.throttle.succeeded("ip:127.0.0.1")  # type: ignore[union-attr]
        async with connect(host, port, name="carol", server_password="letmein") as carol:
            assert carol.name == "carol"


async def test_failed_logins_are_throttled_then_locked(db: Path, start: Start) -> None:
    """After a wrong password the next attempt must wait (auth_failed with retry_after, not
    even checked); after login_failures failures even the right password is refused while
    the lock lasts."""
    make_accounts(db, "alice")
    async with start(login_failures=3, login_lockout=60.0) as server:
        assert (await refused(server, name="alice", password="bad 1"))["code"] == "auth_failed"
        early = await refused(server, name="alice", password=PASSWORD)
        assert early["code"] == "auth_failed" and early["retry_after"] > 0
        throttle = server.auth.throttle  # type: ignore[union-attr]
        for _ in range(3):
            throttle._keys = {k: (n, 0.0) for k, (n, _) in throttle._keys.items()}  # time passes
            await refused(server, name="alice", password="bad again")
        throttle_wait = throttle.wait("account:alice")
        assert throttle_wait > 30  # locked for login_lockout
        locked = await refused(server, name="alice", password=PASSWORD)
        assert locked["code"] == "auth_failed" and locked["retry_after"] > 30


def test_throttle_doubles_the_delay_then_locks() -> None:
    """The delay after each failure doubles from 0.5 s; the login_failures-th locks."""
    now = [100.0]
    t = Throttle(4, 300.0, clock=lambda: now[0])
    assert [t.failed("k") for _ in range(4)] == [0.5, 1.0, 2.0, 300.0]
    assert t.wait("k") == 300.0 and t.wait("other") == 0.0
    t.succeeded("k")
    assert t.wait("k") == 0.0


def test_password_hashes_are_salted_and_carry_their_parameters() -> None:
    """Two hashes of one password differ (salt), say scrypt and its parameters, verify in
    constant time, and a tampered or foreign hash never matches."""
    a, b = hash_password("pw123456"), hash_password("pw123456")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert verify_password("pw123456", a) and not verify_password("pw123457", a)
    assert not verify_password("pw123456", "") and not verify_password("pw123456", "md5$x")


async def test_no_password_in_plain_text_from_another_machine(db: Path) -> None:
    """A password over plain TCP from a non-loopback address gets tls_required (unless the
    operator allows it); from loopback it is accepted."""
    make_accounts(db, "alice")
    store = SQLiteAccounts(str(db))
    try:
        auth = Authenticator(store, Limits())
        hello = Hello(name="alice", version=1, password=PASSWORD)
        with pytest.raises(ProtocolError) as err:
            await auth.authenticate(hello, "203.0.113.7", secure=False)
        assert err.value.code is ErrorCode.TLS_REQUIRED
        assert (await auth.authenticate(hello, "203.0.113.7", secure=True)) is not None
        assert (await auth.authenticate(hello, "::1", secure=False)) is not None
        lax = Authenticator(store, Limits(), allow_plaintext_auth=True)
        assert (await lax.authenticate(hello, "203.0.113.7", secure=False)) is not None
        auth.close()
        lax.close()
    finally:
        store.close()


def _outside_address() -> str | None:
    """This machine's address on a network (not loopback), if it has one: the source address
    of a route out (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: any routable address will do
            addr = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


async def test_tls_required_over_a_real_non_loopback_socket(db: Path, start: Start) -> None:
    """Through a real socket from this machine's network address: the password is refused
    with tls_required, and the message says why."""
    addr = _outside_address()
    if addr is None:
        pytest.skip("no network address besides loopback")
    make_accounts(db, "alice")
    async with ChatServer(addr, 0, auth=AuthConfig(db=str(db))) as server:
        c = await dial(server)
        c.send({"type": "hello", "name": "alice", "version": 1, "password": PASSWORD})
        frame = await c.recv()
        assert frame["code"] == "tls_required" and "TLS" in frame["message"]
        await c.close()


async def test_register_where_registration_is_open(db: Path, start: Start) -> None:
    """With registration open a guest registers its name; from then on guests are refused
    it and the password logs in. Closed (the default): forbidden."""
    async with start() as server:
        host, port = server.address
        async with connect(host, port, name="dave") as dave:
            with pytest.raises(ServerError) as err:
                await dave.register("long enough")
            assert err.value.code == "forbidden"
    async with start(registration="open") as server:
        host, port = server.address
        async with connect(host, port, name="dave") as dave:
            with pytest.raises(ServerError) as err:
                await dave.register("short")
            assert err.value.code == "bad_request"
            await dave.register("long enough")
            with pytest.raises(ServerError) as err:
                await dave.register("long enough")
            assert err.value.code == "bad_request"  # already logged in
        assert (await refused(server, name="Dave"))["code"] == "name_reserved"
        async with connect(host, port, name="dave", password="long enough"):
            pass


async def test_a_revoked_token_stops_working(db: Path, start: Start) -> None:
    """A token revoked with the accounts store (as ``accounts token --revoke`` does) no
    longer logs in, while the server keeps running."""
    tokens = make_accounts(db, "bot")
    async with start() as server:
        host, port = server.address
        async with connect(host, port, name="bot", token=tokens["bot"]):
            pass
        store = SQLiteAccounts(str(db))
        assert store.revoke_token("bot", tokens["bot"].split(".")[0]) == 1
        store.close()
        with pytest.raises(ServerError) as err:
            await connect(host, port, name="bot", token=tokens["bot"])
        assert err.value.code == "auth_failed"
