"""The server as a whole: listeners, the hub, the broker and the store, composed and run.

``ChatServer`` owns every listener, every connection (through admission) and the one watchdog
task; each connection is served by the task its listener gives it, tracked so that shutdown can
say ``bye`` and wait for it with a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import remote, tls, wire
from .auth import Authenticator
from .backends import LocalBroker, SQLiteStore
from .backends.accounts import SQLiteAccounts
from .codecs.classic import ClassicCodec
from .codecs.line import LineCodec
from .errors import ConfigError, ErrorCode, StoreError
from .fanout import Member
from .hub import Hub, Pending
from .interfaces import Ban, BanStore, Broker, HistoryStore
from .limits import Limits
from .metrics import ChatCollector, exposition
from .stats import LAG_BUCKETS, Histogram
from .transports import Admission, TcpListener, WebListener
from .transports.moderation import Moderation
from .transports.tcp import CodecFactory

if TYPE_CHECKING:
    from .backends.redis import RedisBroker
    from .config import AuthConfig, ServerConfig

__all__ = ["ChatServer", "run_server"]

log = logging.getLogger("asyncchat.server")

#: The codec of each kind of listener (None: the native frames).
CODECS: dict[str, CodecFactory | None] = {"tcp": None, "line": LineCodec, "classic": ClassicCodec}


class ChatServer:
    """An asyncchat server, as an async context manager::

        async with ChatServer(port=0) as server:
            host, port = server.address
            await server.serve_forever()

    Either pass ``config`` (a :class:`~asyncchat.config.ServerConfig`: listeners, limits,
    history, motd; history is on by default there, as in ``asyncchat serve``), or the options
    as keywords: ``host``/``port``, ``motd``, every limit of :class:`~asyncchat.limits.Limits`
    (or ``limits=``), and history, which is off unless ``db`` names an SQLite file (or
    ``":memory:"``) or a ``store`` is given; ``history_max`` (messages per room) and
    ``history_days`` bound what is kept, ``durability`` is ``"process"`` (an acknowledged
    message survives a crash of the server) or ``"power"`` (of the machine too); ``tls_cert``
    and ``tls_key`` (PEM files, both or neither) serve TLS 1.2+ only; ``auth`` (an
    :class:`~asyncchat.config.AuthConfig`) turns accounts on, kept in ``auth.db`` or else the
    history file ``db`` (see docs/security.md). ``redis`` (a URL) makes the server a node of a
    cluster that shares rooms, names and history through that Redis (docs/cluster.md):
    ``store``/``durability`` are then unused, ``history_max`` bounds each room's log (10,000
    by default) and ``history_days`` its age, and ``redis_lease`` is the node's lease. Raises
    :class:`~asyncchat.errors.ConfigError` for an unknown or invalid option or an unusable
    database, and ``OSError`` from :meth:`start` when an address cannot be bound.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1234,
        *,
        config: ServerConfig | None = None,
        motd: str | None = None,
        limits: Limits | None = None,
        db: str | None = None,
        history_max: int | None = None,
        history_days: float | None = None,
        durability: str = "process",
        store: HistoryStore[Pending] | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        auth: AuthConfig | None = None,
        redis: str | None = None,
        redis_lease: float = 10.0,
        **limit_kwargs: Any,
    ) -> None:
        if config is not None:
            options = (motd, limits, db, history_max, history_days, tls_cert, tls_key, auth, redis)
            given = limit_kwargs or any(o is not None for o in options)
            if given or (host, port, durability) != ("127.0.0.1", 1234, "process"):
                raise ConfigError("pass either config= or options, not both")
            limits = config.limits
            motd = config.motd
            db = config.db_path()
            history_max, history_days = config.history.max, config.history.days
            durability = config.history.durability
            specs = [
                (x.kind, x.host, x.port or 0, x.origins, x.tls_cert, x.tls_key)
                for x in config.listeners
            ]
            auth = config.auth
            accounts_db: str | None = config.accounts_path()
            redis, redis_lease = config.redis, config.redis_lease
        else:
            if limits is not None and limit_kwargs:
                raise ConfigError("pass either limits= or limit keyword arguments, not both")
            limits = limits or Limits.from_kwargs(**limit_kwargs)
            specs = [("tcp", host, port, (), tls_cert, tls_key)]
            accounts_db = None if auth is None else auth.db or db
        self.limits = limits
        self.motd = motd
        #: The cluster's broker when ``redis`` is given (chosen here, once: one node pays
        #: nothing for the cluster).
        self.cluster: RedisBroker[Pending] | None = None
        if redis is not None:
            self.cluster = _cluster_broker(redis, redis_lease, history_max, history_days, limits)
            self.store = None
            self.broker: Broker[Pending] = self.cluster
        else:
            if store is None and db is not None:
                store = SQLiteStore(
                    db, history_max=history_max, history_days=history_days, durability=durability
                )
            self.store = store
            self.broker = LocalBroker(store, idempotency_window=limits.idempotency_window)
        self.hub = Hub(limits, self.broker)
        #: The accounts and bans (None: no accounts, everyone a guest, bans in memory only).
        self.accounts = None if accounts_db is None else SQLiteAccounts(accounts_db)
        authenticator = None
        if self.accounts is not None and auth is not None:
            authenticator = Authenticator(
                self.accounts,
                limits,
                guests=auth.guests == "allow",
                server_password=auth.server_password,
                allow_plaintext_auth=auth.allow_plaintext_auth,
                registration=auth.registration,
            )
        self.auth = authenticator
        self.admission = Admission(self.hub, auth=authenticator)
        #: Operators' requests and the bans in force (the console's way in too).
        self.moderation = Moderation(
            self.hub,
            lambda: list(self.admission.connections),
            auth=authenticator,
            store=self.accounts if self.cluster is None else _cluster_bans(self.cluster),
        )
        self.admission.moderation = self.moderation
        if self.cluster is not None:
            self._join_cluster(self.cluster)
        if any((c is None) != (k is None) for *_, c, k in specs):
            raise ConfigError("tls_cert and tls_key go together: give both or neither")
        #: How late the watchdog's timer fires: the event loop's lag (for /metrics).
        self.loop_lag = Histogram(LAG_BUCKETS)
        self._scrape = exposition(
            ChatCollector(self.hub, self.admission, self.store, self.loop_lag)
        )
        #: The certificate files of each TLS listener, for :meth:`reload_tls`.
        self._tls_files: dict[TcpListener | WebListener, tuple[str, str]] = {}
        self.listeners: list[TcpListener | WebListener] = []
        for kind, h, p, origins, cert, key in specs:
            ctx = None if cert is None or key is None else tls.server_context(cert, key)
            listener: TcpListener | WebListener
            if kind == "web":
                listener = WebListener(
                    h,
                    p,
                    hub=self.hub,
                    admission=self.admission,
                    motd=motd,
                    metrics=self.metrics,
                    readiness=self.not_ready,
                    origins=origins,
                    tls=ctx,
                )
            else:
                listener = TcpListener(
                    h,
                    p,
                    hub=self.hub,
                    admission=self.admission,
                    motd=motd,
                    tls=ctx,
                    kind=kind,
                    codec=CODECS[kind],
                )
            if cert is not None and key is not None:
                self._tls_files[listener] = (cert, key)
            self.listeners.append(listener)
        self._started = False
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start accepting. Raises ``OSError`` if an address cannot be bound,
        ``ConfigError`` if the history store cannot be used."""
        loop = asyncio.get_running_loop()
        self.hub.set_scheduler(loop.call_soon)
        try:
            if self.cluster is not None:
                await self.cluster.connect()  # in a cluster, the bans are in Redis
            try:
                await self.moderation.start()  # the bans, before anyone is accepted
            except StoreError as exc:
                raise ConfigError(f"cannot read the bans: {exc}") from None
            for listener in self.listeners:
                await listener.start()
            # No await from here on until served: nobody is served without the store.
            self.broker.start(loop.call_soon, loop.call_soon_threadsafe)
        except BaseException:
            for listener in self.listeners:
                listener.close()
            self.broker.close()
            self._close_access()
            if self.cluster is not None:
                await self.cluster.wait_closed()
            raise
        self.hub.start()
        soft = self.admission.fit_to_descriptors()
        if soft is not None:
            log.warning(
                "the open-file limit (%d) allows %d connections, fewer than max_connections=%d:"
                " clients past it get too_many_connections (raise it with ulimit -n)",
                soft,
                self.admission.capacity,
                self.limits.max_connections,
            )
        self._watchdog = asyncio.create_task(self._watch(), name="asyncchat-watchdog")
        self._started = True
        for listener in self.listeners:
            if isinstance(listener, WebListener):
                log.info("chat page at %s (WebSocket at /ws; /metrics, /healthz)", listener.url)
            elif listener.kind == "tcp":
                log.info("listening on %s:%d", *listener.address)
            else:
                log.info("%s door listening on %s:%d", listener.kind, *listener.address)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port) of the first tcp listener (of the first listener if none is
        tcp): with ``port=0`` where the OS put it."""
        tcp = [x for x in self.listeners if x.kind == "tcp"]
        return (tcp or self.listeners)[0].address

    @property
    def web_url(self) -> str | None:
        """The chat page's address (``http://127.0.0.1:8080/``), or None without a web
        listener."""
        web = [x for x in self.listeners if isinstance(x, WebListener)]
        return web[0].url if web else None

    def metrics(self) -> tuple[str, bytes]:
        """``/metrics``: its content type and body, in the Prometheus text format."""
        return self._scrape()

    def not_ready(self) -> str | None:
        """Why the server should get no traffic (``/readyz`` says it), or None when it is
        listening and its history store works."""
        if not self._started:
            return "not listening yet"
        if self._closing:
            return "shutting down"
        failed = self.broker.failed
        if failed is not None:
            return f"the history store failed: {failed}"
        return None

    def address_of(self, kind: str) -> tuple[str, int]:
        """The bound (host, port) of the first listener of ``kind`` (``tcp``, ``line``,
        ``classic``, ``web``). Raises ``LookupError`` if the server has none."""
        for listener in self.listeners:
            if listener.kind == kind:
                return listener.address
        raise LookupError(f"no {kind} listener")

    async def serve_forever(self) -> None:
        """Serve until cancelled or :meth:`close`\\ d."""
        await self._closed.wait()

    async def close(self, reason: str = "shutdown") -> None:
        """Stop accepting, send ``bye`` to everyone, wait ``shutdown_grace`` seconds for them to
        take it, abort the rest. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        admission = self.admission
        admission.closing = True
        try:
            for listener in self.listeners:
                listener.close()
            log.info("shutting down: %d connection(s)", len(admission.connections))
            self._disconnect_all(wire.bye(reason))
            tasks = list(admission.connections.values())
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.limits.shutdown_grace)
                if pending:
                    log.info("aborting %d connection(s) after the grace period", len(pending))
                    for conn in list(admission.connections):
                        conn.transport.abort()
                    await asyncio.wait(pending)
            if self._watchdog is not None:
                self._watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watchdog
            for listener in self.listeners:
                await listener.wait_closed()
            await self.moderation.close()
        finally:
            self.broker.close()  # commits what is queued: stored, though no longer acked
            self._close_access()
            if self.cluster is not None:
                await self.cluster.wait_closed()
            self._closed.set()
        log.info("server closed")

    def _disconnect_all(self, bye: bytes) -> None:
        """Take every member out of its rooms (``left`` ``disconnect``) and close every
        connection after ``bye``."""
        self.hub.flush()
        for conn in list(self.admission.connections):
            m = conn.session.member
            if m is not None:
                self.hub.remove_member(m, "disconnect")
            conn.close(bye)

    def _join_cluster(self, cluster: RedisBroker[Pending]) -> None:
        """Wire the cluster broker to the hub and admission: names claimed across the nodes,
        and what a node does when Redis lost its data or the node its lease."""
        hub = self.hub
        self.admission.claim = cluster.claim

        def reset() -> None:
            self._disconnect_all(
                wire.bye("shutdown", "the cluster lost its history: reconnect and resume")
            )
            for room in hub.rooms.values():
                room.seq = room.committed = 0
                room.topic = None

        def fenced() -> None:
            self._disconnect_all(wire.bye("shutdown", "this node lost its cluster lease"))

        def name_lost(key: str) -> None:
            m = hub.members.get(key)
            if m is not None:
                why = "another node's member has this name"
                hub.evict(m, "disconnect", why, code=ErrorCode.NAME_TAKEN)

        events = cluster.events
        events.on_member = functools.partial(remote.member_event, hub)
        events.on_topic = functools.partial(remote.topic_changed, hub)
        events.on_dm = functools.partial(remote.dm_arrived, hub)
        bans = self.moderation.bans

        def banned(ban: Ban) -> None:
            bans.add(ban)
            self.moderation.evict_banned()

        def unbanned(ban_id: int) -> None:
            bans.remove(ban_id)

        events.on_ban = banned
        events.on_unban = unbanned
        cluster.on_reset = reset
        cluster.on_fenced = fenced
        cluster.on_name_lost = name_lost
        hub.cluster = cluster

    async def __aenter__(self) -> ChatServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _watch(self) -> None:
        limits = self.limits
        period = max(
            0.02,
            min(1.0, limits.ping_interval / 4, limits.ping_timeout / 4, limits.write_timeout / 4),
        )
        loop = asyncio.get_running_loop()
        lag = self.loop_lag
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            now = loop.time()
            lag.observe(max(0.0, now - due))
            for conn in list(self.admission.connections):
                conn.tick(now)

    def _close_access(self) -> None:
        if self.auth is not None:
            self.auth.close()
        if self.accounts is not None:
            self.accounts.close()

    def reload_tls(self) -> int:
        """Read every TLS listener's certificate and key files again (certificates that renew):
        new connections get the new certificate, open ones keep theirs. Returns how many
        listeners were reloaded. Raises ``ConfigError`` for a file that cannot be used (that
        listener keeps its old certificate)."""
        for listener, (cert, key) in self._tls_files.items():
            assert listener.tls is not None
            tls.reload(listener.tls, cert, key)
            log.info("reloaded the TLS certificate of %s:%d from %s", *listener.address, cert)
        return len(self._tls_files)

    # ------------------------------------------------------------------ the host application

    @property
    def connections(self) -> int:
        """Open connections, named or not."""
        return len(self.admission.connections)

    @property
    def members(self) -> list[str]:
        """The names of the connected users."""
        return sorted((m.name for m in self.hub.members.values()), key=str.casefold)

    @property
    def rooms(self) -> dict[str, list[str]]:
        """Every room and its member names."""
        return {
            r.name: sorted((m.name for m in r.members.values()), key=str.casefold)
            for r in self.hub.rooms.values()
        }

    def who(self, room: str) -> tuple[str, list[str]]:
        """The room's display name and its member names, sorted. Raises ``ProtocolError``
        ``room_invalid`` if there is no such room."""
        return self.hub.who(room)

    def member(self, name: str) -> Member | None:
        """The connected user called ``name`` (without regard to case), if any."""
        found = self.hub.members_named([name])
        return found[0] if found else None

    async def announce(self, room: str, text: str, *, action: bool = False) -> int:
        """Post ``text`` to ``room`` as the server (sender ``*server``); returns its ``seq``.
        Raises ``ProtocolError``: ``room_invalid`` if the room does not exist,
        ``history_unavailable`` if the history store failed (nothing is posted then)."""
        return self.hub.announce(room, text, action=action)

    def kick(self, name: str, reason: str = "kicked by the operator") -> bool:
        """Disconnect user ``name`` (rooms see ``left`` with reason ``kicked``); False if there
        is no such user."""
        m = self.member(name)
        if m is None:
            return False
        self.hub.evict(m, "kicked", reason, abort=False)
        return True


def _cluster_broker(
    url: str, lease: float, history_max: int | None, history_days: float | None, limits: Limits
) -> RedisBroker[Pending]:
    """The Redis broker of a cluster node. Raises ``ConfigError`` when the ``cluster`` extra
    (redis-py) is not installed."""
    try:
        from .backends.redis import RedisBroker
    except ImportError:
        raise ConfigError("--redis needs redis-py: pip install 'asyncchat[cluster]'") from None
    return RedisBroker(
        url,
        no_token=(None, None),
        history_max=history_max,
        history_days=history_days,
        idempotency_window=limits.idempotency_window,
        lease=lease,
    )


def _cluster_bans(cluster: RedisBroker[Pending]) -> BanStore:
    """The bans of a cluster, kept in its Redis."""
    from .backends.redis_bans import RedisBans

    return RedisBans(cluster)


async def run_server(host: str = "127.0.0.1", port: int = 1234, **options: Any) -> None:
    """Serve on ``host:port`` until cancelled, then shut down gracefully.

    Keyword arguments are those of :class:`ChatServer`: ``config``, or the limits of
    :class:`~asyncchat.limits.Limits`, ``motd``, and the history options (``db``...). Raises
    ``ConfigError`` for a bad option and ``OSError`` when the address cannot be bound.
    """
    async with ChatServer(host, port, **options) as server:
        await server.serve_forever()
