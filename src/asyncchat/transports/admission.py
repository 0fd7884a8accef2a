"""Admission: who may connect, and the asynchronous steps between ``hello`` and ``welcome``.

One place for every transport and listener. At accept, :meth:`Admission.refusal` applies IP
bans, ``max_connections`` and ``max_per_ip`` across all listeners; after a valid ``hello``,
:meth:`Admission.admit` runs what must happen before the name is given: authentication (a
registered name only for its account, guests, the server password: see ``asyncchat.auth``),
account and name bans, reclaiming a name from a connection that died without a FIN, and in a
cluster the name's claim across the nodes (:attr:`Admission.claim`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ..auth import Authenticator
from ..errors import ErrorCode, ProtocolError, StoreError
from ..events import Hello
from ..hub import Hub
from ..validation import user_key
from .connection import Connection
from .moderation import Moderation

__all__ = [
    "FD_RESERVE",
    "RECLAIM_QUIET",
    "RECLAIM_TIMEOUT",
    "Admission",
    "Refusal",
    "raise_fd_limit",
]

log = logging.getLogger("asyncchat.server")

#: Seconds of silence after which the holder of a name a new connection asks for is pinged,
#: and seconds it then has to answer before the name is taken from it (a client reconnecting
#: after its old connection died without a FIN, which the server cannot otherwise tell for up
#: to ping_interval + ping_timeout).
RECLAIM_QUIET = 1.0
RECLAIM_TIMEOUT = 2.0
#: File descriptors kept for what is not a client connection: listening sockets, the history
#: database and its WAL, logs, the event loop's own, a console.
FD_RESERVE = 64


class Refusal(str):
    """Why a connection is refused at accept (a ``str``), with the wire ``code`` to send."""

    code: ErrorCode = ErrorCode.TOO_MANY_CONNECTIONS

    def __new__(cls, text: str, code: ErrorCode = ErrorCode.TOO_MANY_CONNECTIONS) -> Refusal:
        self = super().__new__(cls, text)
        self.code = code
        return self


class Admission:
    """The connections of one server, across its listeners, and the checks on joining it.
    Without ``auth``, everyone is a guest; without ``moderation``, nobody is banned."""

    def __init__(
        self,
        hub: Hub,
        *,
        auth: Authenticator | None = None,
        moderation: Moderation | None = None,
    ) -> None:
        self.hub = hub
        self.auth = auth
        self.moderation = moderation
        self.limits = hub.limits
        #: Every open connection and the task serving it.
        self.connections: dict[Connection, asyncio.Task[Any]] = {}
        self._per_ip: Counter[str] = Counter()
        #: Set when the server shuts down: new connections are refused.
        self.closing = False
        #: Connections accepted at the most: ``max_connections``, or fewer when the process's
        #: open-file limit would run out first (see :meth:`fit_to_descriptors`).
        self.capacity = self.limits.max_connections
        #: In a cluster, ``await claim(name_key)`` takes the name across the nodes (False: a
        #: member of another node has it; raises ``StoreError`` when the cluster cannot be
        #: asked); None on one node.
        self.claim: Callable[[str], Awaitable[bool]] | None = None
        self._loop_time: Callable[[], float] | None = None

    def fit_to_descriptors(self) -> int | None:
        """Lower :attr:`capacity` to what the open-file limit (``RLIMIT_NOFILE``, soft) leaves
        after ``FD_RESERVE`` descriptors, so that a client past it gets
        ``too_many_connections`` rather than a silent close when ``accept`` fails. Returns
        the soft limit when it is the bound, else None."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft - FD_RESERVE >= self.limits.max_connections:
            return None
        self.capacity = max(1, soft - FD_RESERVE)
        return soft

    def refusal(self, ip: str) -> Refusal | None:
        """Why a new connection from ``ip`` is refused (its ``code`` to send: ``banned`` or
        ``too_many_connections``), or None to accept it. Asked before a byte is read."""
        limits = self.limits
        why = None
        if self.closing:
            why = Refusal("the server is shutting down")
        elif self.moderation is not None and (ban := self.moderation.bans.matching(ip, None)):
            reason = f": {ban.reason}" if ban.reason else ""
            why = Refusal("this address is banned" + reason, ErrorCode.BANNED)
        elif len(self.connections) >= self.capacity:
            why = Refusal(f"the server is full ({self.capacity} connections)")
        elif self._per_ip[ip] >= limits.max_per_ip and not limits.exempt(ip):
            why = Refusal(f"too many connections from {ip} (max_per_ip={limits.max_per_ip})")
        if why is not None:
            self.hub.refusals[why.code] += 1
        return why

    def opened(self, conn: Connection, task: asyncio.Task[Any]) -> None:
        """Count ``conn`` (served by ``task``) from ``conn.ip`` until :meth:`closed`. Idempotent:
        a listener may count a connection at accept, before its task first runs."""
        if conn in self.connections:
            return
        self.connections[conn] = task
        self._per_ip[conn.ip] += 1

    def closed(self, conn: Connection) -> None:
        """``conn`` is gone."""
        if self.connections.pop(conn, None) is None:
            return
        ip = conn.ip
        self._per_ip[ip] -= 1
        if not self._per_ip[ip]:
            del self._per_ip[ip]

    def loop_time(self) -> Callable[[], float]:
        """The running loop's ``time``, one bound method shared by every connection (a bound
        method each would cost every idle connection 64 bytes)."""
        time = self._loop_time
        if time is None:
            time = self._loop_time = asyncio.get_running_loop().time
        return time

    async def admit(self, hello: Hello, conn: Connection) -> None:
        """What must pass before ``hello`` (on ``conn``) is welcomed; raises ``ProtocolError``.
        First the credentials (see :meth:`asyncchat.auth.Authenticator.authenticate`), then
        the bans on the account and the name (``banned``: the connection closes). Then a name
        held by a connection that has been silent for ``RECLAIM_QUIET`` seconds is reclaimed:
        the holder is pinged and, if nothing comes back within ``RECLAIM_TIMEOUT``, evicted
        (its rooms see ``left`` ``timeout``). Works for a holder on any transport that carries
        pings, through its sink; a text-door holder (no pings) keeps the name: the newcomer gets
        ``name_taken``. Last, in a cluster, the name is claimed from the other nodes
        (``name_taken`` when one of them holds it, ``history_unavailable`` when the cluster
        cannot be asked)."""
        key = user_key(hello.name)
        account = None
        if self.auth is not None:
            account = await self.auth.authenticate(hello, conn.ip, conn.secure)
        moderation = self.moderation
        if moderation is not None:
            ban = moderation.bans.matching(conn.ip, key)
            if ban is None and account is not None:
                ban = moderation.bans.matching(None, account.key)
            if ban is not None:
                log.info("refused %s from %s: banned (ban %d)", hello.name, conn.peer, ban.id)
                why = "you are banned" + (f": {ban.reason}" if ban.reason else "")
                raise ProtocolError(ErrorCode.BANNED, why, ref=hello.id)
            if account is not None:
                moderation.accounts[conn] = account
            else:
                moderation.accounts.pop(conn, None)
        if conn.closed:
            return
        await self._reclaim(key)
        if self.claim is not None and key not in self.hub.members and not conn.closed:
            try:
                ok = await self.claim(key)
            except StoreError as exc:
                raise ProtocolError(
                    ErrorCode.HISTORY_UNAVAILABLE,
                    f"the cluster cannot be reached: {exc}",
                    ref=hello.id,
                ) from None
            if not ok:
                raise ProtocolError(
                    ErrorCode.NAME_TAKEN,
                    f"the name {hello.name!r} is taken (on another node)",
                    ref=hello.id,
                )

    async def _reclaim(self, key: str) -> None:
        """Reclaim name ``key`` from a silent holder on this node (see :meth:`admit`)."""
        holder = self.hub.members.get(key)
        if holder is None:
            return
        sink = holder.sink
        loop = asyncio.get_running_loop()
        heard = sink.last_activity
        if loop.time() - heard < RECLAIM_QUIET:
            return
        if not sink.ping():
            return  # a peer that cannot answer a ping keeps its name until TCP says it is dead
        deadline = loop.time() + RECLAIM_TIMEOUT
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            if not holder.alive or sink.last_activity != heard:
                return
        log.info("%s did not answer a ping: its name goes to a new connection", holder.name)
        self.hub.evict(
            holder, "timeout", "your name was reclaimed by a new connection", code=ErrorCode.TIMEOUT
        )


def raise_fd_limit(connections: int) -> tuple[int, int]:
    """Raise the process's soft open-file limit toward its hard limit, far enough for
    ``connections`` clients and ``FD_RESERVE``; returns the (soft, hard) limits now. For the CLI:
    a library leaves its host process's limits alone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
            except (ValueError, OSError):
                pass
    return soft, hard
