"""Operators and bans: the requests that wait on a store or a hash (``register``, ``kick``,
``ban``, ``unban``, ``bans``, ``announce``, ``mute``), and the bans in force.

:class:`Moderation` is the server's :class:`~asyncchat.interfaces.Operations`: a session hands it
such a request and gets on with the next frame; the request runs as a task Moderation owns, and
its answer (``ack``, ``bans`` or ``error``) goes to the member through the hub. The operator
console calls :meth:`Moderation.handle` directly, the one code path for both. Only accounts with
the operator flag (and the console) may use the operators' requests; others get ``forbidden``.

:class:`Bans` holds the bans in force in memory (loaded from the :class:`BanStore` at start):
admission asks it at accept (IP bans, before a byte is read) and after ``hello`` (account and
name bans). A new ban evicts every matching connection at once (``left``/``bye`` reason
``banned``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from .. import wire
from ..auth import Authenticator
from ..errors import ErrorCode, ProtocolError, StoreError
from ..events import (
    Announce,
    BanRequest,
    BansRequest,
    ClientEvent,
    Kick,
    Mute,
    Register,
    Unban,
)
from ..hub import Hub, Member
from ..interfaces import Account, Ban, BanStore
from ..validation import check_text, user_key

__all__ = ["CONSOLE", "Bans", "Moderation"]

log = logging.getLogger("asyncchat.server")

#: Who the operator console acts as.
CONSOLE = "*console"
#: Characters of a ban's or kick's reason at the most.
MAX_REASON = 200

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(text: str) -> _Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


class Bans:
    """The bans in force, by id; expired ones are dropped as they are met."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._bans: dict[int, Ban] = {}
        self._nets: dict[int, _Network] = {}
        #: The user key of each account or name ban (its value is the name as given).
        self._keys: dict[int, str] = {}

    def load(self, bans: list[Ban]) -> None:
        """Start from ``bans`` (as stored)."""
        for ban in bans:
            self.add(ban)

    def add(self, ban: Ban) -> None:
        self._bans[ban.id] = ban
        if ban.kind == "ip":
            net = _network(ban.value)
            if net is not None:
                self._nets[ban.id] = net
        else:
            self._keys[ban.id] = user_key(ban.value)

    def remove(self, ban_id: int) -> Ban | None:
        self._nets.pop(ban_id, None)
        self._keys.pop(ban_id, None)
        return self._bans.pop(ban_id, None)

    def active(self) -> list[Ban]:
        """The bans in force, by id."""
        now = self.clock()
        for ban in [b for b in self._bans.values() if b.until is not None and b.until <= now]:
            self.remove(ban.id)
        return sorted(self._bans.values(), key=lambda b: b.id)

    def matching(self, ip: str | None, key: str | None) -> Ban | None:
        """A ban in force on the address ``ip`` or the name key ``key``, if any."""
        if not self._bans:
            return None
        addr = None
        if ip is not None:
            try:
                addr = ipaddress.ip_address(ip.split("%", 1)[0])
            except ValueError:
                addr = None
        for ban in self.active():
            if ban.kind == "ip":
                net = self._nets.get(ban.id)
                if addr is not None and net is not None and addr in net:
                    return ban
            elif key is not None and self._keys.get(ban.id) == key:
                return ban
        return None


def _forbidden(what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN, f"only operators may {what}")


class Moderation:
    """Register and the operators' requests, for sessions and the console."""

    def __init__(
        self,
        hub: Hub,
        connections: Callable[[], list[Any]],
        *,
        auth: Authenticator | None,
        store: BanStore | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.auth = auth
        self.store = store
        self.clock = clock
        self.bans = Bans(clock)
        #: Every open connection (admission's), to evict those a new ban matches.
        self._connections = connections
        #: The account each connection logged in to.
        self.accounts: weakref.WeakKeyDictionary[Any, Account] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = -1  # ids of bans without a store (negative: never confused)

    async def start(self) -> None:
        """Load the stored bans. Raises ``StoreError``."""
        if self.store is not None:
            self.bans.load(await self.store.bans())

    async def close(self) -> None:
        """Wait for the requests under way (cancelled after a while)."""
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ Operations

    def name_refusal(self, member: Any, key: str) -> str | None:
        ban = self.bans.matching(None, key)
        if ban is not None:
            return "the name is banned"
        if self.auth is None:
            return None
        account = self.accounts.get(member.sink)
        if account is not None and account.key == key:
            return None
        try:
            taken = self.auth.store.registered(key)
        except StoreError:
            taken = True  # fail closed
        return "the name is registered: log in with its password or token" if taken else None

    def submit(self, member: Any, event: ClientEvent) -> None:
        task = asyncio.create_task(self._answer(member, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, member: Member, event: ClientEvent) -> None:
        ref = getattr(event, "id", None)
        account = self.accounts.get(member.sink)
        operator = account is not None and account.operator
        by = member.name
        try:
            bans = await self.handle(event, by=by, operator=operator, member=member)
        except ProtocolError as exc:
            if exc.ref is None:
                exc.ref = ref
            frame = wire.error_for(exc)
        except StoreError as exc:
            log.error("%s's %s failed: %s", by, event.TYPE, exc)
            frame = wire.error(str(ErrorCode.HISTORY_UNAVAILABLE), "the store failed", ref=ref)
        else:
            frame = wire.ack(ref) if bans is None else wire.bans(bans, ref)
        if member.alive:
            self.hub.send(member, frame)

    # ------------------------------------------------------------------ the requests

    async def handle(
        self, event: ClientEvent, *, by: str, operator: bool, member: Member | None = None
    ) -> list[dict[str, Any]] | None:
        """Carry out ``event`` as ``by`` (an operator or not; ``member``: the requester, for
        ``register``). Returns the bans for ``bans``, else None. Raises ``ProtocolError``
        (``forbidden`` for a non-operator...) or ``StoreError``."""
        if isinstance(event, Register):
            await self._register(event, member)
            return None
        if not operator:
            raise _forbidden(event.TYPE)
        match event:
            case Kick(name=name, reason=reason):
                target = self.hub.members.get(user_key(name))
                if target is None:
                    raise ProtocolError(ErrorCode.NO_SUCH_USER, f"nobody is called {name!r}")
                why = _reason(reason) or f"kicked by {by}"
                log.info("%s kicked %s: %s", by, target.name, why)
                self.hub.evict(target, "kicked", why, abort=False)
            case BanRequest():
                await self._ban(event, by, None if member is None else member.sink)
            case Unban(ban=ban_id):
                found = self.store is None or await self.store.remove_ban(ban_id)
                if self.bans.remove(ban_id) is None and not found:
                    raise ProtocolError(ErrorCode.BAD_REQUEST, f"there is no ban {ban_id}")
                log.info("%s lifted ban %d", by, ban_id)
            case BansRequest():
                return [dataclasses.asdict(b) for b in self.bans.active()]
            case Announce(room=room, text=text):
                check_text(text, self.hub.limits.max_text)
                self.hub.announce(room, text)
            case Mute(room=room_name, name=name, duration=duration):
                where = self.hub.room(room_name)
                if where is None:
                    raise ProtocolError(ErrorCode.ROOM_INVALID, f"no room {room_name!r}")
                if duration is not None and duration < 0:
                    raise ProtocolError(ErrorCode.BAD_REQUEST, "mute.duration must be >= 0")
                until = None if duration is None else self.clock() + duration
                self.hub.mute(where, user_key(name), until)
                log.info("%s muted %s in %s for %s s", by, name, where.name, duration)
            case _:
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"{event.TYPE!r} is no operator request")
        return None

    async def _register(self, event: Register, member: Member | None) -> None:
        auth = self.auth
        if member is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "register is for connected users")
        if auth is None or auth.registration != "open":
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "registration is closed on this server: ask its operator"
            )
        if member.sink in self.accounts:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "you are logged in to an account already")
        auth.check_channel(getattr(member.sink, "ip", "?"), getattr(member.sink, "secure", False))
        if not event.password or len(event.password) < 8:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a password needs 8 characters or more")
        secret = await auth.hasher.hash(event.password)
        account = Account(member.key, member.name, secret, False, self.clock())
        if not await auth.store.add_account(account):
            raise ProtocolError(ErrorCode.NAME_RESERVED, f"{member.name!r} is registered already")
        self.accounts[member.sink] = account
        log.info("%s registered", member.name)

    async def _ban(self, event: BanRequest, by: str, spare: Any) -> None:
        given = [
            (k, v)
            for k, v in (("account", event.account), ("name", event.name), ("ip", event.ip))
            if v is not None
        ]
        if len(given) != 1:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "ban one of account, name or ip")
        kind, value = given[0]
        if kind == "ip":
            net = _network(value)
            if net is None:
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"{value!r} is no IP address or network")
            value = str(net) if net.num_addresses > 1 else str(net.network_address)
        elif kind == "account" and self.auth:
            account = await self.auth.store.account(user_key(value))
            if account is None:
                raise ProtocolError(ErrorCode.NO_SUCH_USER, f"no account {value!r}")
            value = account.name
        if event.duration is not None and not event.duration > 0:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "ban.duration must be positive seconds")
        now = self.clock()
        until = None if event.duration is None else now + event.duration
        ban = Ban(
            id=0,
            kind=kind,
            value=value,
            reason=_reason(event.reason),
            by=by,
            created=now,
            until=until,
        )
        if self.store is not None:
            ban = dataclasses.replace(ban, id=await self.store.add_ban(ban))
        else:
            ban = dataclasses.replace(ban, id=self._next_id)
            self._next_id -= 1
        self.bans.add(ban)
        log.info("%s banned %s %s (ban %d): %s", by, kind, value, ban.id, ban.reason or "-")
        self.evict_banned(spare)

    def evict_banned(self, spare: Any = None) -> int:
        """Close every connection a ban in force matches (``banned``) but ``spare`` (the
        operator who banned: an IP ban on its own network); how many."""
        evicted = 0
        for conn in self._connections():
            if conn is spare:
                continue
            m = conn.session.member
            ban = self.bans.matching(conn.ip, m.key if m is not None else None)
            if ban is None and m is not None and (acct := self.accounts.get(conn)) is not None:
                ban = self.bans.matching(None, acct.key)
            if ban is None:
                continue
            evicted += 1
            why = "you are banned" + (f": {ban.reason}" if ban.reason else "")
            if m is not None and m.alive:
                self.hub.evict(m, "banned", why, code=ErrorCode.BANNED, abort=False)
            else:
                conn.fail(ProtocolError(ErrorCode.BANNED, why))
        return evicted


def _reason(reason: str | None) -> str:
    """A reason as kept: stripped and bounded."""
    return (reason or "").strip()[:MAX_REASON]
