"""Operators and bans over real sockets: requests refused for ordinary users, kick, ban by
name, account and IP (evicting at once, checked at accept before a byte is read), bans that
survive a restart, unban, mute and announce; the operator console on the same code path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from asyncchat import ChatServer, connect
from asyncchat.cli.console import operator_command
from asyncchat.config import AuthConfig
from asyncchat.errors import ServerError
from asyncchat.events import Message

from .conftest import WAIT
from .test_auth import PASSWORD, RawClient, dial, make_accounts


def server_for(db: Path, **kw: object) -> ChatServer:
    return ChatServer("127.0.0.1", 0, auth=AuthConfig(db=str(db)), **kw)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "chat.db"
    make_accounts(path, "oper", "alice", operator="oper")
    return path


async def guest(server: ChatServer, name: str) -> RawClient:
    c = await dial(server)
    await c.hello(name)
    await c.recv_type("joined")
    return c


async def test_operator_requests_are_forbidden_to_others(db: Path) -> None:
    """A guest and a logged-in non-operator get forbidden for every operator request, and
    nothing happens."""
    async with server_for(db) as server:
        host, port = server.address
        async with (
            connect(host, port, name="alice", password=PASSWORD) as alice,
            connect(host, port, name="bob") as bob,
        ):
            for client in (alice, bob):
                for call in (
                    client.kick("bob"),
                    client.ban(name="bob"),
                    client.unban(1),
                    client.bans(),
                    client.announce("lobby", "hi"),
                    client.mute("lobby", "bob"),
                ):
                    with pytest.raises(ServerError) as err:
                        await call
                    assert err.value.code == "forbidden"
            assert sorted(server.members) == ["alice", "bob"]
            assert server.moderation.bans.active() == []


async def test_kick_and_a_name_ban_evict_at_once_and_keep_out(db: Path) -> None:
    """An operator kicks (left kicked) and bans a name: the user is evicted at once (its
    rooms see left with reason banned, it gets error banned and bye banned); nobody may nick
    to that name, and a new hello with it (any case) is refused with banned and closed."""
    async with server_for(db) as server:
        host, port = server.address
        async with connect(host, port, name="oper", password=PASSWORD) as oper:
            watcher = await guest(server, "watcher")
            carol = await guest(server, "carol")
            await oper.kick("carol", "be nice")
            left = await watcher.recv_type("left")
            assert (left["name"], left["reason"]) == ("carol", "kicked")
            await carol.expect_closed()
            mallory = await guest(server, "mallory")
            await oper.ban(name="mallory", reason="spam", duration=3600)
            left = await watcher.recv_match(type="left", name="mallory")
            assert left["reason"] == "banned"
            frames = await mallory.expect_closed()
            assert [f["type"] for f in frames[-2:]] == ["error", "bye"]
            assert frames[-2]["code"] == "banned" and "spam" in frames[-2]["message"]
            assert frames[-1]["reason"] == "banned"
            with pytest.raises(ServerError) as err:
                await oper.nick("Mallory")  # nobody takes a banned name, not even by nick
            assert err.value.code == "name_reserved" and "banned" in err.value.message
            again = await dial(server)
            again.send({"type": "hello", "name": "MALLORY", "version": 1})
            frames = await again.expect_closed()
            assert frames[0]["code"] == "banned"
            bans = await oper.bans()
            assert [(b.kind, b.value, b.reason, b.by) for b in bans] == [
                ("name", "mallory", "spam", "oper")
            ]
            assert bans[0].until is not None
            await watcher.close()


async def test_an_ip_ban_refuses_at_accept_and_survives_a_restart(db: Path) -> None:
    """A CIDR ban on loopback evicts every guest at once (not the operator who made it) and
    refuses new connections at accept (error banned before any hello); the ban is still there
    after a restart, and unban lets people in again."""
    async with server_for(db) as server:
        host, port = server.address
        async with connect(host, port, name="oper", password=PASSWORD) as oper:
            victim = await guest(server, "victim")
            await oper.ban(ip="127.0.0.0/8", reason="flood")
            frames = await victim.expect_closed()
            assert frames[-1] == {
                "type": "bye",
                "reason": "banned",
                "message": "you are banned: flood",
            }
        # The operator was on 127.0.0.1 too: evicted as well.
        async with asyncio.timeout(WAIT):
            while server.members:
                await asyncio.sleep(0.01)
    async with server_for(db) as server:
        c = await dial(server)
        frames = await c.expect_closed()  # nothing sent: refused at accept
        assert frames[0]["code"] == "banned" and "flood" in frames[0]["message"]
        (ban,) = server.moderation.bans.active()
        assert (ban.kind, ban.value) == ("ip", "127.0.0.0/8")
        await operator_command(server, f"/unban {ban.id}", asyncio.Event())
        assert server.moderation.bans.active() == []
        c = await guest(server, "back")
        await c.close()


async def test_an_account_ban_keeps_its_token_and_password_out(db: Path) -> None:
    """A ban on an account refuses its password logins, whatever name case is used."""
    async with server_for(db) as server:
        host, port = server.address
        async with connect(host, port, name="oper", password=PASSWORD) as oper:
            with pytest.raises(ServerError) as err:
                await oper.ban(account="nobody")
            assert err.value.code == "no_such_user"
            await oper.ban(account="Alice")
            with pytest.raises(ServerError) as err:
                await connect(host, port, name="ALICE", password=PASSWORD)
            assert err.value.code == "banned"


async def test_mute_and_announce(db: Path) -> None:
    """A muted user's say in that room is refused (forbidden) until unmuted (duration 0);
    announce posts as *server."""
    async with server_for(db) as server:
        host, port = server.address
        async with (
            connect(host, port, name="oper", password=PASSWORD) as oper,
            connect(host, port, name="loud") as loud,
        ):
            await oper.mute("lobby", "loud")
            with pytest.raises(ServerError) as err:
                await loud.say("lobby", "LOUD")
            assert err.value.code == "forbidden"
            await loud.join("other")
            await loud.say("other", "elsewhere is fine")
            await oper.mute("lobby", "loud", 0)
            await loud.say("lobby", "sorry")
            await oper.announce("lobby", "be nice")
            async with asyncio.timeout(WAIT):
                async for event in loud:
                    if isinstance(event, Message) and event.sender == "*server":
                        assert event.text == "be nice"
                        break


async def test_bad_operator_requests_get_clear_errors(db: Path) -> None:
    """ban without a target or with two, a bad network, a negative duration, an unknown ban,
    a kick of nobody: each a precise error, the connection kept."""
    async with server_for(db) as server:
        host, port = server.address
        async with connect(host, port, name="oper", password=PASSWORD) as oper:
            for kwargs, code in (
                ({}, "bad_request"),
                ({"name": "a", "ip": "10.0.0.1"}, "bad_request"),
                ({"ip": "10.0.0.300"}, "bad_request"),
                ({"name": "x", "duration": -5}, "bad_request"),
            ):
                with pytest.raises(ServerError) as err:
                    await oper.ban(**kwargs)  # type: ignore[arg-type]
                assert err.value.code == code, kwargs
            with pytest.raises(ServerError) as err:
                await oper.unban(999)
            assert err.value.code == "bad_request"
            with pytest.raises(ServerError) as err:
                await oper.kick("ghost")
            assert err.value.code == "no_such_user"
            assert await oper.bans() == []


async def test_the_console_uses_the_same_code_path(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/ban, /bans, /mute and /kick in the operator console act like the requests."""
    async with server_for(db) as server:
        stop = asyncio.Event()
        eve = await guest(server, "eve")
        await operator_command(server, "/ban name eve 60 too rude", stop)
        frames = await eve.expect_closed()
        assert frames[-1]["reason"] == "banned"
        await operator_command(server, "/bans", stop)
        out = capsys.readouterr().out
        assert "name eve" in out and "too rude" in out and "*console" in out
        await operator_command(server, "/ban", stop)
        assert "usage: /ban" in capsys.readouterr().out
        await operator_command(server, "/mute lobby nobody", stop)
        await operator_command(server, "/mute nowhere nobody", stop)
        assert "room_invalid" in capsys.readouterr().out
