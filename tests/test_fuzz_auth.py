"""Fuzz the accounts and operators' requests on a live server with accounts: hellos with any
credentials, register, kick, ban, unban, bans, announce and mute with any members, from a guest
or an operator. The server never logs a traceback and always serves a fresh client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncchat import ChatServer
from asyncchat.auth import hash_password
from asyncchat.backends.accounts import SQLiteAccounts
from asyncchat.config import AuthConfig
from asyncchat.interfaces import Account

from .test_fuzz import _exchange, _frame, _fresh_client_chats, _Tracebacks, _value, serving

SECRET = "op-password"


@pytest.fixture(scope="module")
def live_auth(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[tuple[str, int], _Tracebacks, ChatServer]]:
    """A server whose database has an operator ``op`` (password SECRET); registration
    open."""
    db = tmp_path_factory.mktemp("fuzz") / "chat.db"
    store = SQLiteAccounts(str(db))
    store.add(Account("op", "op", hash_password(SECRET), True, time.time()))
    store.close()
    auth = AuthConfig(db=str(db), registration="open")
    with serving(auth=auth) as (address, tracebacks, servers):
        yield address, tracebacks, servers[0]


_name = st.sampled_from(["op", "OP", "fz", "\u043ep", "ghost", "", "x" * 40])
_creds = st.fixed_dictionaries(
    {},
    optional={
        "password": st.one_of(st.just(SECRET), st.text(max_size=12), _value),
        "token": st.one_of(st.text(max_size=20), _value),
        "server_password": st.one_of(st.text(max_size=8), _value),
    },
)
_hello = st.builds(lambda n, c: {"type": "hello", "name": n, "version": 1, **c}, _name, _creds)
_members = st.dictionaries(
    st.sampled_from(
        ["name", "account", "ip", "duration", "reason", "room", "text", "ban", "password", "id"]
    ),
    st.one_of(
        _value,
        _name,
        st.sampled_from(["127.0.0.2", "10.0.0.0/8", "::1", "1.2.3.4/40", "lobby", "fz"]),
        st.floats(min_value=-10, max_value=1e12, allow_nan=False),
    ),
    max_size=4,
)
_request = st.builds(
    lambda t, m: {"type": t, **m},
    st.sampled_from(["register", "kick", "ban", "unban", "bans", "announce", "mute"]),
    _members,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), _hello, st.lists(_request, min_size=1, max_size=8))
def test_fuzzed_accounts_and_operator_requests_never_hurt_the_server(
    live_auth: tuple[tuple[str, int], _Tracebacks, ChatServer],
    as_operator: bool,
    hello: dict[str, object],
    requests: list[dict[str, object]],
) -> None:
    """Any hello credentials and any operator requests are answered or refused with a code
    (bans of loopback spare nobody else: the probe then must not be refused for good)."""
    address, tracebacks, server = live_auth
    assert server.auth is not None
    server.auth.throttle._keys = {}  # earlier examples' failures must not lock the operator out
    first = (
        {"type": "hello", "name": "op", "version": 1, "password": SECRET} if as_operator else hello
    )
    safe = [r for r in requests if not (r["type"] == "ban" and "ip" in r)]  # keep loopback in
    _exchange(address, _frame(first) + b"".join(_frame(r) for r in safe))
    _fresh_client_chats(address)
    assert not tracebacks.records, tracebacks.records[0].getMessage()
