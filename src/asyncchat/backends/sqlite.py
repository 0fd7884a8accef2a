"""The history store in SQLite (the default), behind :class:`~asyncchat.interfaces.HistoryStore`.

:meth:`SQLiteStore.submit` appends a record on the event loop's thread; the store's writer
(:mod:`.sqlite_writer`: on the loop's thread by default, on a thread of its own with
``durability="power"``) commits what gathered in one loop iteration as one group and reports it
back, and only then is a room message fanned out and acknowledged, so an acknowledged message is
in the database.

Reads are small indexed range queries, one bounded page at a time, on a second connection used
from the event loop's thread; in WAL mode they never wait on the writer.

Durability: ``synchronous=NORMAL`` (the default, ``durability="process"``) survives a crash or
``kill -9`` of the server, since a committed WAL frame is in the OS's hands; ``"power"``
(``synchronous=FULL``) also survives a power cut, at the cost of an fsync per group commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError, StoreError
from ..interfaces import Page, Record, RoomTopic
from ..stats import BATCH_BUCKETS, LATENCY_BUCKETS, Histogram
from .sqlite_writer import LoopWriter, ThreadWriter, Topic

__all__ = ["SQLiteStore"]

log = logging.getLogger("asyncchat.storage")

#: Schema migrations, in order; the database's ``user_version`` is how many have run.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE rooms (
        room TEXT PRIMARY KEY,          -- the room key (casefolded)
        name TEXT NOT NULL,             -- its display name
        last_seq INTEGER NOT NULL       -- survives retention deleting every message
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts REAL NOT NULL,
        action INTEGER NOT NULL DEFAULT 0,
        client_key TEXT,                -- sender key + client id, for idempotent re-sends
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID;
    CREATE INDEX messages_client_key ON messages (client_key) WHERE client_key IS NOT NULL;
    CREATE INDEX messages_ts ON messages (ts);
    """,
    # 2: room topics, and full-text search. The FTS5 index has external content (the text is
    # stored once, in messages), kept by triggers in the writer's transaction. Its rowid is
    # the room's number times 2**32 plus the seq, so a room's messages are one rowid range.
    """
    ALTER TABLE rooms ADD COLUMN topic TEXT;
    ALTER TABLE rooms ADD COLUMN topic_by TEXT;
    ALTER TABLE rooms ADD COLUMN topic_ts REAL;
    ALTER TABLE rooms ADD COLUMN num INTEGER;
    UPDATE rooms SET num = (SELECT count(*) FROM rooms r WHERE r.room <= rooms.room);
    CREATE UNIQUE INDEX rooms_num ON rooms (num);
    CREATE VIEW messages_fts_content AS
        SELECT (r.num << 32) + m.seq AS id, m.text AS text
        FROM messages m JOIN rooms r ON r.room = m.room;
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content = 'messages_fts_content', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, text) VALUES (
            ((SELECT num FROM rooms WHERE room = new.room) << 32) + new.seq, new.text);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete',
            ((SELECT num FROM rooms WHERE room = old.room) << 32) + old.seq, old.text);
    END;
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
    """,
    # 3: accounts, their bot tokens and bans (backends/accounts.py, docs/security.md).
    """
    CREATE TABLE accounts (
        key TEXT PRIMARY KEY,           -- validation.user_key(name): one account per key
        name TEXT NOT NULL,
        secret TEXT NOT NULL,           -- the password hash with its parameters ('' if none)
        operator INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,            -- the public part of the token
        account TEXT NOT NULL,          -- accounts.key
        secret TEXT NOT NULL,           -- SHA-256 of the secret part
        label TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tokens_account ON tokens (account);
    CREATE TABLE bans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,             -- account, name or ip
        value TEXT NOT NULL,            -- a name (matched by user key), or an IP network
        reason TEXT NOT NULL,
        by TEXT NOT NULL,
        created REAL NOT NULL,
        until REAL                      -- Unix seconds; NULL: until unbanned
    );
    """,
    # 4: the search index without its per-document sizes (columnsize = 0): they serve only
    # bm25 ranking, which search does not use (newest first), and maintaining them was about
    # half of the index's cost per stored message.
    """
    DROP TABLE messages_fts;
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content = 'messages_fts_content', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2', columnsize = 0
    );
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
    """,
)
#: Upserts a room: a new one takes the next number (see the FTS5 index's rowid).
_UPSERT_ROOM = (
    "INSERT INTO rooms (room, name, last_seq, num) "
    "VALUES (?, ?, ?, (SELECT coalesce(max(num), 0) + 1 FROM rooms)) "
    "ON CONFLICT (room) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq), "
    "name = excluded.name"
)


def fts_query(words: str) -> str:
    """An FTS5 query matching texts with every one of ``words``, each quoted (so none is
    taken for an operator). Raises ``ValueError`` when there is no word."""
    terms = words.split()
    if not terms:
        raise ValueError("no words to search for")
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


class SQLiteStore:
    """History in one SQLite file (or ``":memory:"``). Raises ``ConfigError`` if the file
    cannot be opened or was written by a newer asyncchat."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history_max: int | None = None,
        history_days: float | None = None,
        durability: str = "process",
        writer: str | None = None,
    ) -> None:
        if durability not in ("process", "power"):
            raise ConfigError("durability is 'process' or 'power'")
        if writer not in (None, "loop", "thread"):
            raise ConfigError("writer is 'loop' or 'thread'")
        #: Where commits run (see :mod:`.sqlite_writer`): a thread of their own when each
        #: commit fsyncs (power durability, which must not block the loop) or when the process
        #: has another CPU to run SQLite on (it releases the GIL while it works); on the loop's
        #: thread when it has one CPU, where a second thread only adds hand-offs.
        self.writer_kind = writer or (
            "thread" if durability == "power" or len(os.sched_getaffinity(0)) > 1 else "loop"
        )
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.history_max = history_max
        self.history_days = history_days
        self.synchronous = "NORMAL" if durability == "process" else "FULL"
        self._writer: LoopWriter | ThreadWriter | None = None
        self._read: sqlite3.Connection | None = None
        self._write: sqlite3.Connection | None = None
        self._failed: BaseException | None = None
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.memory else contextlib.nullcontext()
        )
        self.commits = 0
        self.committed = 0
        #: Seconds a batch's commit took (from the handoff, with a writer thread), and records
        #: per batch (read by /metrics; observed once per batch, by the writer: the loop's thread
        #: or the writer thread, whose += on an int the GIL keeps whole).
        self.commit_latency = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)

    # ------------------------------------------------------------------ set-up

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the history database {self.path}: {exc}") from None
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    def open(
        self,
        on_commit: Callable[[list[tuple[Record, Any]]], None],
        call_soon: Callable[..., Any],
        call_soon_threadsafe: Callable[..., Any],
        on_lost: Callable[[list[tuple[Record, Any]]], None] | None = None,
    ) -> None:
        if not self.memory:
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(self.path).expanduser())
        write = self._connect()
        try:
            if not self.memory:
                write.execute("PRAGMA journal_mode = WAL")
            write.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._migrate(write)
        except sqlite3.Error as exc:
            write.close()
            raise ConfigError(f"cannot use the history database {self.path}: {exc}") from None
        self._write = write
        # A :memory: database is one connection, shared under the lock; a file has a reader
        # of its own, which WAL lets read while the writer commits.
        self._read = write if self.memory else self._connect()
        self._on_commit = on_commit
        self._on_lost = on_lost
        if self.writer_kind == "loop":
            self._writer = LoopWriter(self, call_soon)
        else:
            self._writer = ThreadWriter(self, call_soon, call_soon_threadsafe)
        if self.memory:
            log.info("history in memory only: it is lost when the server stops")
            return
        log.info(
            "history in %s (%s durability, commits on the %s)",
            self.path,
            "process-crash" if self.synchronous == "NORMAL" else "power-loss",
            "event loop's thread" if self.writer_kind == "loop" else "writer thread",
        )

    def open_readonly(self) -> None:
        """Open for reading only (the transcript export); raises ``ConfigError`` if there is no
        such database."""
        path = Path(self.path).expanduser()
        if self.memory or not path.is_file():
            raise ConfigError(f"no history database at {self.path}")
        try:
            self._read = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
            (version,) = self._read.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot read the history database {self.path}: {exc}") from None
        if version != len(MIGRATIONS):
            raise ConfigError(
                f"{self.path} is not an asyncchat history database "
                f"of this version (schema {version})"
            )

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise ConfigError(
                f"the history database has schema {version}, newer than this "
                f"asyncchat knows ({len(MIGRATIONS)})"
            )
        for number in range(version, len(MIGRATIONS)):
            conn.executescript(
                "BEGIN;" + MIGRATIONS[number] + f"; PRAGMA user_version = {number + 1}; COMMIT;"
            )

    # ------------------------------------------------------------------ reads (loop thread)

    def last_seqs(self) -> dict[str, int]:
        assert self._read is not None
        with self._lock:
            return dict(self._read.execute("SELECT room, last_seq FROM rooms").fetchall())

    def recent_client_keys(self, since: float) -> dict[str, tuple[str, str, int, float]]:
        assert self._read is not None
        with self._lock:
            rows = self._read.execute(
                "SELECT m.client_key, m.room, r.name, m.seq, m.ts FROM messages m "
                "JOIN rooms r ON r.room = m.room WHERE m.client_key IS NOT NULL AND m.ts >= ?",
                (since,),
            ).fetchall()
        return {key: (room, name, seq, ts) for key, room, name, seq, ts in rows}

    def page(
        self, room: str, *, before: int | None = None, after: int | None = None, limit: int
    ) -> Page:
        """With ``after``: the oldest ``limit`` messages with seq > after (and < before, if
        given); otherwise the newest ``limit`` with seq < before (or the newest of all).
        Records come oldest first; ``more`` says whether the range holds more beyond them."""
        assert self._read is not None
        with self._lock:
            return self._page(self._read, room, before, after, limit)

    @staticmethod
    def _page(
        db: sqlite3.Connection, room: str, before: int | None, after: int | None, limit: int
    ) -> Page:
        hi = before if before is not None else 2**62
        cols = "SELECT room, seq, sender, text, ts, action, client_key FROM messages "
        if after is not None:
            rows = db.execute(
                cols + "WHERE room = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
                (room, after, hi, limit + 1),
            ).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
        else:
            rows = db.execute(
                cols + "WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?", (room, hi, limit + 1)
            ).fetchall()
            more = len(rows) > limit
            rows = rows[:limit][::-1]
        first = db.execute("SELECT min(seq) FROM messages WHERE room = ?", (room,)).fetchone()[0]
        name_row = db.execute("SELECT name FROM rooms WHERE room = ?", (room,)).fetchone()
        name = name_row[0] if name_row else room
        return Page(
            [Record(r, name, s, snd, t, ts, bool(a), ck) for r, s, snd, t, ts, a, ck in rows],
            more,
            first or 0,
        )

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        """The newest ``limit`` messages of a room (by key) with seq < ``before`` whose text
        has all of ``words``, newest first. Raises ``ValueError`` when ``words`` has none."""
        query = fts_query(words)
        assert self._read is not None
        with self._lock:
            row = self._read.execute(
                "SELECT num, name FROM rooms WHERE room = ?", (room,)
            ).fetchone()
            if row is None or row[0] is None:
                return []
            num, name = row
            base = num << 32
            rows = self._read.execute(
                "SELECT m.room, m.seq, m.sender, m.text, m.ts, m.action, m.client_key FROM "
                "(SELECT rowid AS id FROM messages_fts WHERE messages_fts MATCH ? "
                "AND rowid > ? AND rowid < ? ORDER BY rowid DESC LIMIT ?) f "
                "JOIN messages m ON m.room = ? AND m.seq = f.id - ? ORDER BY m.seq DESC",
                (query, base, base + min(before, 2**32), limit, room, base),
            ).fetchall()
        return [Record(r, name, s, snd, t, ts, bool(a), ck) for r, s, snd, t, ts, a, ck in rows]

    def topics(self) -> dict[str, RoomTopic]:
        assert self._read is not None
        with self._lock:
            rows = self._read.execute(
                "SELECT room, topic, topic_by, topic_ts FROM rooms WHERE topic IS NOT NULL"
            ).fetchall()
        return {room: RoomTopic(text, by or "", ts or 0.0) for room, text, by, ts in rows}

    def set_topic(self, room: str, name: str, topic: RoomTopic | None) -> None:
        """Store a room's topic, after what was submitted before."""
        if self._failed is not None:
            raise StoreError(f"the history store failed: {self._failed}")
        assert self._writer is not None
        self._writer.topic(Topic(room, name, topic))

    def export(self, room: str, since: float | None = None) -> Iterable[Record]:
        """Every stored message of a room (by key), oldest first, from ``since`` (Unix s)."""
        after = 0
        while True:
            page = self.page(room, after=after, limit=1_000)
            for r in page.records:
                if since is None or r.ts >= since:
                    yield r
            if not page.more:
                return
            after = page.records[-1].seq

    # ------------------------------------------------------------------ writes

    @property
    def failed(self) -> BaseException | None:
        """Why the store stopped storing, or None while it works."""
        return self._failed

    def submit(self, record: Record, token: Any) -> None:
        """Queue ``record`` (on the loop's thread); raises ``StoreError`` once the store has
        failed."""
        if self._failed is not None:
            raise StoreError(f"the history store failed: {self._failed}")
        assert self._writer is not None
        self._writer.submit(record, token)

    def _committed(self, batch: list[tuple[Record, Any]]) -> None:
        """On the loop's thread: ``batch`` is stored; fan it out and acknowledge it."""
        self._on_commit(batch)

    def lost(self, batch: list[tuple[Record, Any]]) -> None:
        """On the loop's thread: the store failed, ``batch`` will never be stored."""
        if batch and self._on_lost is not None:
            self._on_lost(batch)

    def write_batch(self, batch: list[tuple[Record, Any]]) -> bool:
        """Commit ``batch`` (the writer's side; on its thread). False, logged, once the disk
        failed: nothing more is stored, and so nothing more acknowledged."""
        db = self._write
        assert db is not None
        try:
            with self._lock:
                self._commit(db, [r for r, _ in batch])
        except Exception as exc:  # the disk is full or gone: stop acknowledging, loudly
            log.error(
                "history write failed, messages are no longer acknowledged: %s",
                exc,
                exc_info=not isinstance(exc, sqlite3.Error),
            )
            self._failed = exc
            return False
        self.commits += 1
        self.committed += len(batch)
        self.batch_sizes.observe(len(batch))
        return True

    def retention(self) -> None:
        """Apply retention with the writer's connection (the writer's side)."""
        assert self._write is not None
        with self._lock:
            self._prune(self._write)

    def write_topic(self, item: Topic) -> None:
        """Store a topic (the writer's side)."""
        db = self._write
        assert db is not None
        topic = item.topic
        values = (None, None, None) if topic is None else (topic.text, topic.by, topic.ts)
        try:
            with self._lock:
                db.execute("BEGIN IMMEDIATE")
                db.execute(_UPSERT_ROOM, (item.room, item.name, 0))
                db.execute(
                    "UPDATE rooms SET topic = ?, topic_by = ?, topic_ts = ? WHERE room = ?",
                    (*values, item.room),
                )
                db.execute("COMMIT")
        except sqlite3.Error as exc:  # a lost topic is not worth stopping the server for
            log.warning("could not store the topic of %s: %s", item.name, exc)
            with contextlib.suppress(sqlite3.Error), self._lock:
                db.execute("ROLLBACK")

    @staticmethod
    def _commit(db: sqlite3.Connection, records: Sequence[Record]) -> None:
        last: dict[str, tuple[str, int]] = {}
        for r in records:
            last[r.room] = (r.name, r.seq)
        # One JSON text for the batch, expanded by SQLite itself: binding seven parameters
        # per row in Python would hold the GIL that the event loop needs.
        rows = orjson.dumps([tuple(r) for r in records])
        db.execute("BEGIN IMMEDIATE")
        try:
            # Rooms first: the search index's trigger numbers each message by its room.
            db.executemany(_UPSERT_ROOM, [(room, name, seq) for room, (name, seq) in last.items()])
            db.execute(
                "INSERT INTO messages (room, seq, sender, text, ts, action, client_key) "
                "SELECT value->>0, value->>2, value->>3, value->>4, value->>5, value->>6, "
                "value->>7 FROM json_each(?)",
                (rows,),
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _prune(self, db: sqlite3.Connection) -> None:
        """Retention: keep at most history_max messages per room, none older than history_days."""
        try:
            if self.history_days is not None:
                db.execute(
                    "DELETE FROM messages WHERE ts < ?", (time.time() - self.history_days * 86400,)
                )
            if self.history_max is not None:
                rooms = db.execute("SELECT room, last_seq FROM rooms").fetchall()
                db.executemany(
                    "DELETE FROM messages WHERE room = ? AND seq <= ?",
                    [
                        (room, last - self.history_max)
                        for room, last in rooms
                        if last > self.history_max
                    ],
                )
        except sqlite3.Error as exc:
            log.warning("history retention failed: %s", exc)

    def prune_now(self) -> None:
        """Apply retention at once (from the loop thread, for tests and the CLI)."""
        assert self._read is not None
        with self._lock:
            self._prune(self._read)

    def close(self) -> None:
        """Commit what is still pending (stored, though no longer acknowledged) and close. Call
        it on the loop's thread."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for conn in (self._write, self._read):
            if conn is not None:
                conn.close()
        self._write = self._read = None
