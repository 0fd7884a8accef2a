"""The history store in SQLite (the default), behind :class:`~asyncchat.interfaces.HistoryStore`.

:meth:`SQLiteStore.submit` appends a record on the event loop's thread; the store's writer
(:mod:`.sqlite_writer`: on the loop's thread when the process has one CPU, on a thread of its
own with more, or with ``durability="power"``) commits what gathered in one loop iteration as
one group and reports it back, and only then is a room message fanned out and acknowledged, so
an acknowledged message is in the database.

A group is stored as one row per room (a *chunk*: its messages as one JSON array, expanded by
nobody until read), so a message costs its share of one row instead of a row, two indexes and a
search-index entry of its own. The search index is built later, off the acknowledgement path
(:mod:`.sqlite_index`), and ``search`` scans what it has not taken yet.

Reads are small indexed range queries over chunks, one bounded page at a time, on a second
connection used from the event loop's thread; in WAL mode they never wait on the writer.

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
from ..textsearch import fts_query, matches, query_terms
from .sqlite_index import SearchIndex, index_path, transaction
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
    # 5: one row per room per group commit (sqlite_writer): a stored message costs its share of
    # one row instead of a row, two indexes and the search index's trigger. The search index
    # moves to a file of its own, built off the acknowledgement path (sqlite_index.py).
    """
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order: what the search index has done
        room TEXT NOT NULL,
        first INTEGER NOT NULL,         -- the seq of its first message
        last INTEGER NOT NULL,          -- and of its last
        ts0 REAL NOT NULL,              -- the ts of its first message
        ts REAL NOT NULL,               -- and of its last
        body BLOB NOT NULL              -- JSON: [[seq, sender, text, ts, action, client_key], ...]
    );
    CREATE UNIQUE INDEX chunks_room ON chunks (room, last);
    CREATE INDEX chunks_ts ON chunks (ts);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    INSERT INTO meta VALUES ('id', lower(hex(randomblob(16))));
    """,
)
#: Messages moved into one chunk by the migration to schema 5.
CHUNK_MAX = 256
#: Upserts a room: a new one takes the next number (see the FTS5 index's rowid).
_UPSERT_ROOM = (
    "INSERT INTO rooms (room, name, last_seq, num) "
    "VALUES (?, ?, ?, (SELECT coalesce(max(num), 0) + 1 FROM rooms)) "
    "ON CONFLICT (room) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq), "
    "name = excluded.name"
)


_INSERT_CHUNK = "INSERT INTO chunks (room, first, last, ts0, ts, body) VALUES (?, ?, ?, ?, ?, ?)"


def _chunk(rows: Sequence[Sequence[Any]]) -> tuple[int, int, float, float, bytes]:
    """A chunk's columns first, last, ts0, ts and body, from its messages' rows
    ([seq, sender, text, ts, action, client_key], in seq order)."""
    stamps = [m[3] for m in rows]
    return rows[0][0], rows[-1][0], min(stamps), max(stamps), orjson.dumps(rows)


def _record(room: str, name: str, m: list[Any]) -> Record:
    """A record from a chunk's row: [seq, sender, text, ts, action, client_key]."""
    return Record(room, name, m[0], m[1], m[2], m[3], bool(m[4]), m[5])


def _to_chunks(conn: sqlite3.Connection) -> None:
    """Migration 5's data: the messages table's rows, in chunks of CHUNK_MAX per room."""
    rows = conn.execute(
        "SELECT room, seq, sender, text, ts, action, client_key FROM messages ORDER BY room, seq"
    )
    chunk: list[tuple[Any, ...]] = []
    room = None

    def flush() -> None:
        if chunk:
            conn.execute(_INSERT_CHUNK, (room, *_chunk(chunk)))
            chunk.clear()

    for r, seq, sender, text, ts, action, client_key in rows:
        if r != room or len(chunk) >= CHUNK_MAX:
            flush()
            room = r
        chunk.append((seq, sender, text, ts, bool(action), client_key))
    flush()
    for statement in (
        "DROP TRIGGER messages_fts_insert",
        "DROP TRIGGER messages_fts_delete",
        "DROP TABLE messages_fts",
        "DROP VIEW messages_fts_content",
        "DROP TABLE messages",
    ):
        conn.execute(statement)


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
        #: The search index, built on a thread of its own (None: in memory, where searches
        #: scan), and the loop thread's connection to read it.
        self._index: SearchIndex | None = None
        self._search_read: sqlite3.Connection | None = None
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
        if not self.memory:
            self._open_index()
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

    def _open_index(self) -> None:
        assert self._read is not None
        (db_id,) = self._read.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
        path = index_path(self.path)
        try:
            index = SearchIndex(self.path, path, db_id)
            self._search_read = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot use the search index {path}: {exc}") from None
        (lag,) = self._read.execute(
            "SELECT coalesce(sum(last - first + 1), 0) FROM chunks WHERE id > ?", (index.done,)
        ).fetchone()
        index.start(lag)
        self._index = index

    @property
    def index_lag(self) -> int:
        """Stored messages not yet in the search index (about)."""
        return 0 if self._index is None else self._index.lag

    def index_pending(self) -> int:
        """Chunks the search index has yet to take, plus one while it has pruned messages to
        forget (0: the index is up to date; for tests and operators)."""
        if self._index is None or self._read is None:
            return 0
        (behind,) = self._read.execute(
            "SELECT count(*) FROM chunks WHERE id > ?", (self._index.done,)
        ).fetchone()
        return int(behind) + self._index.reconcile_pending

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
            conn.executescript("BEGIN;" + MIGRATIONS[number])  # leaves the transaction open
            try:
                if number + 1 == 5:
                    _to_chunks(conn)
                conn.execute(f"PRAGMA user_version = {number + 1}")
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ reads (loop thread)

    def last_seqs(self) -> dict[str, int]:
        assert self._read is not None
        with self._lock:
            return dict(self._read.execute("SELECT room, last_seq FROM rooms").fetchall())

    def recent_client_keys(self, since: float) -> dict[str, tuple[str, str, int, float]]:
        assert self._read is not None
        with self._lock:
            chunks = self._read.execute(
                "SELECT c.room, r.name, c.body FROM chunks c JOIN rooms r ON r.room = c.room "
                "WHERE c.ts >= ?",
                (since,),
            ).fetchall()
        return {
            ck: (room, name, seq, ts)
            for room, name, body in chunks
            for seq, _, _, ts, _, ck in orjson.loads(body)
            if ck is not None and ts >= since
        }

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
        found: list[list[Any]] = []
        if after is not None:
            chunks = db.execute(
                "SELECT body FROM chunks WHERE room = ? AND last > ? AND first < ? ORDER BY last",
                (room, after, hi),
            )
            for (body,) in chunks:
                found.extend(m for m in orjson.loads(body) if after < m[0] < hi)
                if len(found) > limit:
                    break
        else:
            chunks = db.execute(
                "SELECT body FROM chunks WHERE room = ? AND first < ? ORDER BY last DESC",
                (room, hi),
            )
            for (body,) in chunks:
                found.extend(m for m in reversed(orjson.loads(body)) if m[0] < hi)
                if len(found) > limit:
                    break
        chunks.close()
        more = len(found) > limit
        found = found[:limit] if after is not None else found[:limit][::-1]
        row = db.execute(
            "SELECT r.name, (SELECT c.first FROM chunks c WHERE c.room = r.room "
            "ORDER BY c.last LIMIT 1) FROM rooms r WHERE r.room = ?",
            (room,),
        ).fetchone()
        name, first = row if row else (room, None)
        return Page([_record(room, name, m) for m in found], more, first or 0)

    def search(self, room: str, words: str, *, before: int, limit: int) -> list[Record]:
        """The newest ``limit`` messages of a room (by key) with seq < ``before`` whose text
        has all of ``words``, newest first. Raises ``ValueError`` when ``words`` has none.

        The messages the index has not taken yet (the newest) are scanned; the older ones are
        looked up in the index (:mod:`.sqlite_index`)."""
        terms = query_terms(words)
        assert self._read is not None
        index = self._index
        done = 0 if index is None else index.done  # without an index, everything is scanned
        found: list[Record] = []
        with self._lock:
            row = self._read.execute(
                "SELECT num, name FROM rooms WHERE room = ?", (room,)
            ).fetchone()
            if row is None:
                return []
            num, name = row
            # The newest chunks, not yet indexed: scanned, newest first.
            floor = before
            chunks = self._read.execute(
                "SELECT first, body FROM chunks WHERE room = ? AND id > ? AND first < ? "
                "ORDER BY last DESC",
                (room, done, before),
            )
            for first, body in chunks:
                floor = min(floor, first)
                for m in reversed(orjson.loads(body)):
                    if m[0] < before and matches(m[2], terms):
                        found.append(_record(room, name, m))
                        if len(found) >= limit:
                            chunks.close()
                            return found
            chunks.close()
            if index is None or num is None or self._search_read is None:
                return found
            base = num << 32
            ids = [
                rowid - base
                for (rowid,) in self._search_read.execute(
                    "SELECT rowid FROM fts WHERE fts MATCH ? AND rowid > ? AND rowid < ? "
                    "ORDER BY rowid DESC LIMIT ?",
                    (fts_query(words), base, base + min(floor, 2**32), limit - len(found)),
                )
            ]
            found.extend(self._records(room, name, ids))
        return found

    def _records(self, room: str, name: str, seqs: list[int]) -> list[Record]:
        """The stored messages of these seqs (in that order; those no longer stored left out)."""
        assert self._read is not None
        out: list[Record] = []
        body: dict[int, list[Any]] = {}
        for seq in seqs:
            if seq not in body:
                row = self._read.execute(
                    "SELECT body FROM chunks WHERE room = ? AND last >= ? ORDER BY last LIMIT 1",
                    (room, seq),
                ).fetchone()
                if row is not None:
                    body.update((m[0], m) for m in orjson.loads(row[0]))
            m = body.get(seq)
            if m is not None:
                out.append(_record(room, name, m))
        return out

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
        if self._index is not None:
            self._index.added(len(batch))
            self._index.help()  # only when the index thread is far behind
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
        """One row per room: the room's messages of this group, as one JSON array."""
        rooms: dict[str, tuple[str, list[tuple[Any, ...]]]] = {}
        for r in records:
            kept = rooms.get(r.room)
            if kept is None:
                kept = rooms[r.room] = (r.name, [])
            kept[1].append(r[2:])
        chunks = [(room, *_chunk(rows)) for room, (_, rows) in rooms.items()]
        with transaction(db, "BEGIN IMMEDIATE"):
            # Rooms first: the search index numbers each message by its room.
            db.executemany(
                _UPSERT_ROOM, [(room, name, rows[-1][0]) for room, (name, rows) in rooms.items()]
            )
            db.executemany(_INSERT_CHUNK, chunks)

    def _prune(self, db: sqlite3.Connection) -> None:
        """Retention: keep at most history_max messages per room, none older than history_days.
        Whole chunks go; a chunk with some messages to keep is rewritten without the others."""
        cuts: list[tuple[str, int, float]] = []  # room, seqs up to this go, and before this ts
        if self.history_days is not None:
            oldest = time.time() - self.history_days * 86400
            cuts.extend(
                (room, -1, oldest)
                for (room,) in db.execute(
                    "SELECT DISTINCT room FROM chunks WHERE ts0 < ?", (oldest,)
                ).fetchall()
            )
        if self.history_max is not None:
            cuts.extend(
                (room, last - self.history_max, 0.0)
                for room, last in db.execute("SELECT room, last_seq FROM rooms").fetchall()
                if last > self.history_max
            )
        if not cuts:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            pruned = 0
            for room, upto, oldest in cuts:
                pruned += db.execute(
                    "DELETE FROM chunks WHERE room = ? AND (last <= ? OR ts < ?)",
                    (room, upto, oldest),
                ).rowcount
                partial = db.execute(
                    "SELECT id, body FROM chunks WHERE room = ? AND (first <= ? OR ts0 < ?)",
                    (room, upto, oldest),
                ).fetchall()
                for chunk, body in partial:
                    rows = [m for m in orjson.loads(body) if m[0] > upto and m[3] >= oldest]
                    pruned += 1
                    if not rows:
                        db.execute("DELETE FROM chunks WHERE id = ?", (chunk,))
                        continue
                    db.execute(
                        "UPDATE chunks SET first = ?, last = ?, ts0 = ?, ts = ?, body = ? "
                        "WHERE id = ?",
                        (*_chunk(rows), chunk),
                    )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            log.warning("history retention failed: %s", exc)
            return
        if pruned and self._index is not None:
            self._index.pruned()

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
        if self._index is not None:
            self._index.close()
            self._index = None
        for conn in (self._write, self._read, self._search_read):
            if conn is not None:
                conn.close()
        self._write = self._read = self._search_read = None
