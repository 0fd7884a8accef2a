"""The seams of the server, in one backend-neutral module: Protocols and the records they pass.

::

    Sink          where one member's bytes go (every transport implements it)
    Codec         a sans-I/O translator for a wire other than the native 4-byte frames
                  (text lines, the classic 10-byte header)
    HistoryStore  where room messages are kept (SQLite by default)
    Broker        assigns each room message its seq, stores it, dedupes re-sends, and hands
                  it back to the hub for fan-out and ack (in process today; Redis for a cluster)
    Cluster       the other nodes of a cluster as the hub sees them: their members, rooms and
                  users, and what the hub tells them
    AccountStore  accounts (name, password hash, operator flag) and their bot tokens
    BanStore      bans by account, name or IP network, kept across restarts
    Operations    the asynchronous requests a session hands on (register, the operators')

Nothing here does I/O or imports a backend: the core (hub, session, replay) is written against
these names only, and the adapters (transports, backends) implement them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from .events import BanInfo, ClientEvent, Ref

__all__ = [
    "Account",
    "AccountStore",
    "Ban",
    "BanStore",
    "Broker",
    "Cluster",
    "Codec",
    "Deliver",
    "HistoryStore",
    "Operations",
    "Page",
    "Record",
    "Ref",
    "Refuse",
    "RoomTopic",
    "Sink",
]

T = TypeVar("T")


class Sink(Protocol):
    """Where a member's bytes go; implemented by every transport's connection."""

    @property
    def last_activity(self) -> float:
        """Monotonic seconds (the event loop's clock) when the peer last sent anything."""
        ...

    def write(self, data: bytes) -> bool:
        """Hand ``data`` to the transport; False when the member is over its backlog bound."""
        ...

    def close(self, final: bytes = b"", *, abort: bool = False) -> None:
        """Write ``final`` if it fits, then close (``abort``: without waiting for the buffer)."""
        ...

    def ping(self) -> bool:
        """Send a ``ping`` now; any frame the peer sends afterwards proves it alive. False when
        the transport cannot carry one (a text door: see :attr:`Codec.pings`)."""
        ...


class Codec(Protocol):
    """A sans-I/O translator between another wire and the native messages, one per connection
    (the text-line and classic 10-byte-header doors): bytes in, native client payloads (the JSON
    of one frame) out, one at a time; native server frames (4-byte length + JSON) in, bytes of
    its own wire out. What it answers by itself (a prompt, ``/help``, a usage line) is taken
    with :meth:`take_output`. The native TCP transport needs none: it reads frames with
    ``readexactly``.

    The connection pulls a payload only once the one before was handled (and its answer, or
    refusal, rendered), so the translation of the next message may depend on it: a name that
    was taken is asked for again."""

    @property
    def pings(self) -> bool:
        """Whether the peer can answer the native ``ping``. A person at netcat cannot: then the
        server never pings it (nor reclaims its name) and TCP keepalive finds a dead peer."""
        ...

    def greeting(self) -> bytes:
        """What to send as soon as the peer connects (a prompt for its name; may be empty)."""
        ...

    def receive(self, data: bytes, limit: int) -> None:
        """Feed received bytes; ``limit`` is the most bytes one message may take (a longer one
        is refused before it is buffered). Raises ``ProtocolError`` (closing) when the stream
        cannot go on."""
        ...

    def next_payload(self) -> bytes | None:
        """The next native client payload, or None until more bytes come. Raises
        ``ProtocolError`` (closing) for a message that must end the connection."""
        ...

    def take_output(self) -> bytes:
        """What the codec answered by itself since the last call, in its wire's bytes."""
        ...

    def render(self, frames: bytes) -> bytes:
        """One or more complete native server frames as this wire's bytes (b"" for frames the
        wire does not show)."""
        ...


class Record(NamedTuple):
    """One room message as stored and published (a named tuple: one is made per message)."""

    room: str  # the room key (see validation.name_key)
    name: str  # the room's display name
    seq: int
    sender: str
    text: str
    ts: float
    action: bool = False
    #: sender key + room key + the client's id, for idempotent re-sends (None: no id given)
    client_key: str | None = None


class RoomTopic(NamedTuple):
    """A room's topic: its text, who set it, when (Unix seconds)."""

    text: str
    by: str
    ts: float


@dataclass(frozen=True, slots=True)
class Page:
    """A page of history, oldest first. ``more``: messages exist beyond it in the direction
    asked; ``first_kept``: the lowest seq still stored for the room (0 if none)."""

    records: list[Record]
    more: bool
    first_kept: int


class HistoryStore(Protocol[T]):
    """Where room messages are kept. ``T`` is the publisher's token, handed back on commit."""

    def open(
        self,
        on_commit: Callable[[list[tuple[Record, T]]], None],
        call_soon: Callable[..., Any],
        call_soon_threadsafe: Callable[..., Any],
        on_lost: Callable[[list[tuple[Record, T]]], None] | None = None,
    ) -> None:
        """Open the store; committed batches are reported through ``on_commit`` on the loop,
        and (once the store failed) the submitted records it will never store through
        ``on_lost``."""
        ...

    def last_seqs(self) -> dict[str, int]:
        """The last seq of every room that ever had a message."""
        ...

    def recent_client_keys(self, since: float) -> dict[str, tuple[str, str, int, float]]:
        """client_key → (room key, room name, seq, ts) for messages stored since ``since``."""
        ...

    @property
    def failed(self) -> BaseException | None:
        """Why the store stopped storing, or None while it works."""
        ...

    def submit(self, record: Record, token: T) -> None:
        """Queue ``record`` for a durable write; ``token`` comes back with it in ``on_commit``.
        Raises ``StoreError`` once the store has failed."""
        ...

    def page(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int
    ) -> Page:
        """With ``after``: the oldest ``limit`` messages with seq > after (and < before, if
        given); otherwise the newest ``limit`` with seq < before. Oldest first."""
        ...

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        """The newest ``limit`` messages of room ``room`` with seq < ``before`` whose text has
        every one of ``words`` (whitespace-separated), newest first. Raises ``ValueError``
        when ``words`` has none."""
        ...

    def topics(self) -> dict[str, RoomTopic]:
        """The topic of every room (by key) that has one."""
        ...

    def set_topic(self, room: str, name: str, topic: RoomTopic | None) -> None:
        """Keep ``topic`` (None: none) as room ``room``'s (a key; ``name`` its display name),
        in order with the messages submitted before."""
        ...

    def close(self) -> None:
        """Commit what is queued and close."""
        ...


#: The hub's callback for each published message: ``deliver(record, token, fresh)``.
#: ``fresh``: a new message, to fan out and acknowledge; otherwise a re-send of one already
#: posted (same client id), to acknowledge only: then ``record.text`` is empty, and only its
#: room, name, seq and ts are meaningful.
Deliver = Callable[[Record, T, bool], None]


#: The hub's callback for a published message that will never be stored (the store failed
#: first): ``refuse(token, why)``; its sender is told instead of waiting for an ack forever.
Refuse = Callable[[T, str], None]


class Broker(Protocol[T]):
    """Orders, stores and dedupes room messages. ``T`` is the hub's token (who to acknowledge),
    opaque to the broker. The hub calls :meth:`attach` once; the server calls :meth:`start` on
    the event loop before serving and :meth:`close` after."""

    @property
    def history(self) -> bool:
        """Whether messages are kept (replay on join, resume, history paging)."""
        ...

    @property
    def failed(self) -> BaseException | None:
        """Why publishing stopped working (the store failed), or None."""
        ...

    def attach(self, deliver: Deliver[T], refuse: Refuse[T] | None = None) -> None:
        """Where published messages go back to, in per-room seq order; and ``refuse`` for
        those that can never be stored (the store failed after they were published)."""
        ...

    def start(
        self, call_soon: Callable[..., Any], call_soon_threadsafe: Callable[..., Any]
    ) -> None:
        """Open the backend. Raises ``ConfigError`` when it cannot be used."""
        ...

    def last_seq(self, room: str) -> int:
        """The last seq given in room ``room`` (a key), 0 if none ever was."""
        ...

    def publish(
        self,
        room: str,
        name: str,
        sender: str,
        text: str,
        action: bool,
        client_key: str | None,
        token: T,
    ) -> int:
        """Assign the next seq of room ``room`` (a key; ``name`` its display name), store the
        message, and deliver it (at once, or once stored). A ``client_key`` seen within the
        idempotency window is not posted again: its original record is delivered not fresh.
        Returns the seq when it is known now, else 0."""
        ...

    def page(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int
    ) -> Page:
        """A page of room ``room``'s stored messages (see :meth:`HistoryStore.page`)."""
        ...

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        """Room ``room``'s stored messages with all of ``words``, newest first (see
        :meth:`HistoryStore.search`); empty without history."""
        ...

    def topic(self, room: str) -> RoomTopic | None:
        """Room ``room``'s topic (a key), kept even while the room is empty; None if none."""
        ...

    def set_topic(self, room: str, name: str, topic: RoomTopic | None) -> None:
        """Set (or with None clear) room ``room``'s topic; stored when there is history."""
        ...

    def close(self) -> None:
        """Stop; what is queued is stored if it can be."""
        ...


class Cluster(Protocol):
    """The other nodes of a cluster, as the hub sees them (docs/cluster.md). The hub tells it
    what its members do; it answers from its mirror of the other nodes, without waiting."""

    def member_changed(self, kind: str, rooms: list[str], key: str, name: str, detail: str) -> None:
        """Member ``key`` (called ``name``) of this node joined ("j", ``detail``: the room's
        display name) or left ("l", ``detail``: the reason) ``rooms``, renamed ("n",
        ``detail``: the new name; ``rooms``: all of its rooms), connected ("u"), went ("q")
        or set its away message ("a", ``detail``: the message, "" when back)."""
        ...

    def name_changed(self, released: str | None, taken: str | None) -> None:
        """A member gave up the name key ``released`` or took ``taken`` (by renaming)."""
        ...

    def remote_members(self, room: str) -> dict[str, str]:
        """The members of room ``room`` (a key) on the other nodes: key -> name."""
        ...

    def remote_rooms(self) -> dict[str, tuple[str, int]]:
        """The rooms with members on the other nodes: key -> (display name, member count
        there)."""
        ...

    def remote_room(self, key: str) -> str | None:
        """The display name of room ``key`` if it has members on another node, else None."""
        ...

    def remote_user(self, key: str) -> tuple[str, str | None] | None:
        """(name, away message or None) of the user with key ``key`` on another node."""
        ...

    def send_dm(self, key: str, sender: str, text: str, ts: float) -> bool:
        """Send a direct message to the user with key ``key`` on another node; False if
        none has it."""
        ...


# --------------------------------------------------------------------------- accounts and bans


class Account(NamedTuple):
    """A registered account. ``key`` is ``validation.user_key(name)``: a registered name is
    unique under it. ``secret`` is the stored password hash, parameters included (see
    ``asyncchat.auth``); "" for an account that logs in with tokens only."""

    key: str
    name: str
    secret: str
    operator: bool
    created: float


#: A ban: ``kind`` is ``account``, ``name`` (both by name key) or ``ip`` (an address or a CIDR
#: network, as ``value``); ``until`` is Unix seconds, None for a ban without end. The store's
#: record is the wire's (``bans.bans``).
Ban = BanInfo


class AccountStore(Protocol):
    """Where accounts and their tokens are kept (SQLite by default; Redis for a cluster).
    Methods raise ``StoreError`` when the store cannot be used."""

    async def account(self, key: str) -> Account | None:
        """The account whose name has the key ``key``, if any."""
        ...

    def registered(self, key: str) -> bool:
        """Whether a name with the key ``key`` is registered (fast: asked on every ``nick``)."""
        ...

    async def add_account(self, account: Account) -> bool:
        """Create ``account``; False if its key is taken."""
        ...

    async def token(self, token_id: str) -> tuple[str, str] | None:
        """The (account key, secret hash) of the token ``token_id``, if it exists."""
        ...


class BanStore(Protocol):
    """Where bans are kept across restarts. Methods raise ``StoreError``."""

    async def add_ban(self, ban: Ban) -> int:
        """Store ``ban`` (its ``id`` is ignored); returns the id it got."""
        ...

    async def remove_ban(self, ban_id: int) -> bool:
        """Lift ban ``ban_id``; False if there is no such ban."""
        ...

    async def bans(self) -> list[Ban]:
        """Every stored ban, expired ones included (the caller skips those)."""
        ...


class Operations(Protocol):
    """The requests a session cannot answer at once (they wait on a store or a password
    hash): ``register`` and the operators' requests; and who may take which name. The answer
    (``ack``, ``bans`` or ``error``) comes to the member later, through the hub."""

    def submit(self, member: Any, event: ClientEvent) -> None:
        """Carry out ``event`` for ``member`` (as the account its connection logged in to)."""
        ...

    def name_refusal(self, member: Any, key: str) -> str | None:
        """Why ``member`` may not take a name with the key ``key`` (registered to another
        account, or banned), or None if it may."""
        ...
