"""The bans in force (sans network): CIDR and single-address IP bans for IPv4 and IPv6,
name bans under the user key, expiry; and the operators' command grammar of text.py."""

from __future__ import annotations

import pytest

from asyncchat.errors import UsageError
from asyncchat.events import BanRequest, BansRequest, Kick, Mute, Unban
from asyncchat.interfaces import Ban
from asyncchat.text import operator_request, parse_command
from asyncchat.transports.moderation import Bans
from asyncchat.validation import user_key


def ban(id_: int, kind: str, value: str, until: float | None = None) -> Ban:
    return Ban(id=id_, kind=kind, value=value, reason="", by="op", created=0.0, until=until)


def test_ip_bans_match_addresses_and_networks() -> None:
    """A network bans every address in it, an address only itself, v4 and v6 alike; a
    zone index on a v6 address is ignored; a name is never an address."""
    bans = Bans(clock=lambda: 100.0)
    bans.load([ban(1, "ip", "10.0.0.0/8"), ban(2, "ip", "2001:db8::1"), ban(3, "ip", "192.0.2.7")])
    assert bans.matching("10.200.3.4", None).id == 1  # type: ignore[union-attr]
    assert bans.matching("2001:db8::1", None).id == 2  # type: ignore[union-attr]
    assert bans.matching("2001:db8::1%eth0", None).id == 2  # type: ignore[union-attr]
    assert bans.matching("192.0.2.7", None).id == 3  # type: ignore[union-attr]
    assert bans.matching("192.0.2.8", None) is None
    assert bans.matching("11.0.0.1", "10.0.0.1") is None
    assert bans.matching("not an address", None) is None


def test_name_bans_match_look_alikes_and_expire() -> None:
    """A name ban matches the user key (case, look-alikes); a ban whose time is up is dropped
    as it is met; remove lifts one."""
    now = [100.0]
    bans = Bans(clock=lambda: now[0])
    bans.load([ban(1, "name", "Mallory", until=200.0), ban(2, "account", "eve")])
    assert bans.matching(None, user_key("MALLORY")).id == 1  # type: ignore[union-attr]
    assert bans.matching(None, user_key("\u0435ve")).id == 2  # type: ignore[union-attr]
    now[0] = 200.0
    assert bans.matching(None, user_key("mallory")) is None
    assert [b.id for b in bans.active()] == [2]
    assert bans.remove(2) is not None and bans.active() == []


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ("/kick bob", Kick(name="bob")),
        ("/kick bob be nice", Kick(name="bob", reason="be nice")),
        ("/ban name bob", BanRequest(name="bob")),
        (
            "/ban ip 10.0.0.0/8 2h flood",
            BanRequest(ip="10.0.0.0/8", duration=7200.0, reason="flood"),
        ),
        ("/ban account eve 7d", BanRequest(account="eve", duration=604800.0)),
        ("/ban name bob spam again", BanRequest(name="bob", reason="spam again")),
        ("/unban 3", Unban(ban=3)),
        ("/bans", BansRequest()),
        ("/mute lobby loud", Mute(room="lobby", name="loud")),
        ("/mute lobby loud 10m", Mute(room="lobby", name="loud", duration=600.0)),
        ("/mute lobby loud 0", Mute(room="lobby", name="loud", duration=0.0)),
    ],
)
def test_operator_commands_parse_to_their_requests(line: str, event: object) -> None:
    """Each operator command of the terminal and the line door is the request it names."""
    assert parse_command(line, "lobby") == event


@pytest.mark.parametrize(
    "line",
    ["/kick", "/ban", "/ban user bob", "/unban x", "/bans now", "/mute lobby", "/mute a b -5"],
)
def test_malformed_operator_commands_say_their_usage(line: str) -> None:
    """A malformed operator command is a UsageError with its usage line."""
    with pytest.raises(UsageError, match=r"^usage: /"):
        parse_command(line, "lobby")
    assert operator_request("say", "x") is None
