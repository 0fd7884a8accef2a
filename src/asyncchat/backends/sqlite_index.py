"""The search index of the SQLite store, built off the acknowledgement path.

A stored message is acknowledged once its group commit has written it (one row per room per
group, :mod:`.sqlite`); indexing it for ``search`` (FTS5: 6 to 9 µs of CPU per message,
more than the rest of a message's path through the server) happens later, on a thread of its
own, in a database file of its own beside the history (``history.db-search``):

- the thread runs at the lowest CPU priority Linux has (``SCHED_IDLE``): on a machine with a
  spare core it indexes there at once; on a busy single core it indexes only while the event
  loop waits for the network, and so never slows delivery down;
- once more than :data:`LAG_MAX` messages wait to be indexed, it runs at normal priority until
  half of them are done: a core saturated for long pays for indexing then, and a search never
  has more than about that many unindexed messages to look through;
- its own file means its own write lock: the store's writer never waits for it.

``search`` answers from both parts (:meth:`asyncchat.backends.sqlite.SQLiteStore.search`):
the index for what it holds, and a scan of the newer, not yet indexed messages with
:func:`asyncchat.textsearch.matches`, which tokenizes exactly as the index does
(``unicode61 remove_diacritics 2``), so a message is found the same whether or not it was
indexed yet.

The index is a cache: if its file is missing, unreadable or belongs to another history
database, it is rebuilt in the background from the history.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

import orjson

__all__ = ["LAG_MAX", "SearchIndex", "index_path"]

log = logging.getLogger("asyncchat.storage")

#: Messages waiting to be indexed beyond which the indexer runs at normal priority.
LAG_MAX = 50_000
#: Chunks (of up to MAX_BATCH messages) indexed per transaction: short enough that a search's
#: read is never far behind, long enough to amortize a commit of the index.
CHUNKS_PER_TXN = 16

_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    text, tokenize = 'unicode61 remove_diacritics 2', columnsize = 0
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""


def index_path(history: str) -> str:
    """The index's file beside a history database, named as SQLite names its own sidecars."""
    return history + "-search"


# ---------------------------------------------------------------------- the indexer


class SearchIndex:
    """Indexes the history's chunks on a thread of its own, into ``path``."""

    def __init__(self, history: str, path: str, db_id: str) -> None:
        self.history = history
        self.path = path
        self.db_id = db_id
        #: The last chunk indexed (chunks.id): everything above is scanned by searches.
        self.done = 0
        #: Messages waiting (approximate: counted as chunks are committed).
        self.lag = 0
        self.indexed = 0
        self._wake = threading.Event()
        self._stop = False
        self._reconcile = True
        self._boosted = False
        self._open()
        self._thread = threading.Thread(target=self._run, name="asyncchat-search", daemon=True)

    def _open(self) -> None:
        """Open the index, or start it afresh when it is not this history's or not readable."""
        for attempt in range(2):
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.executescript(_SCHEMA)
                state = dict(db.execute("SELECT key, value FROM state").fetchall())
                if state.get("db") != self.db_id:
                    if state:
                        log.warning("search index %s is not this history's: rebuilding", self.path)
                    db.executescript("BEGIN; DELETE FROM fts; DELETE FROM state; COMMIT;")
                    db.execute("INSERT INTO state VALUES ('db', ?), ('done', 0)", (self.db_id,))
                    state = {"done": 0}
                self.done = int(state["done"])
                self._db = db
                return
            except sqlite3.Error as exc:
                with contextlib.suppress(UnboundLocalError, sqlite3.Error):
                    db.close()
                if attempt:
                    raise
                log.warning("search index %s unusable (%s): rebuilding", self.path, exc)
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path + suffix)

    def start(self, lag: int) -> None:
        self.lag = lag
        self._thread.start()

    def added(self, messages: int) -> None:
        """The store committed ``messages`` more (any thread)."""
        self.lag += messages
        self._wake.set()

    def pruned(self) -> None:
        """Retention deleted messages: drop them from the index too."""
        self._reconcile = True
        self._wake.set()

    @property
    def reconcile_pending(self) -> int:
        return int(self._reconcile)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self._db.close()

    # -- on the indexer thread

    def _priority(self, boost: bool) -> None:
        """SCHED_IDLE while the lag is small, normal priority while it is large (Linux; a
        no-op elsewhere)."""
        if boost == self._boosted or not hasattr(os, "sched_setscheduler"):
            return
        policy = os.SCHED_OTHER if boost else os.SCHED_IDLE
        with contextlib.suppress(OSError):
            os.sched_setscheduler(threading.get_native_id(), policy, os.sched_param(0))
            self._boosted = boost

    def _run(self) -> None:
        self._priority(False)
        try:
            source = sqlite3.connect(
                f"file:{Path(self.history)}?mode=ro", uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:
            log.error("search index: cannot read the history: %s", exc)
            return
        with contextlib.closing(source):
            while not self._stop:
                try:
                    if self._reconcile:
                        self._reconcile = False
                        self._forget_pruned(source)
                    if self._step(source):
                        continue
                except sqlite3.Error as exc:  # the index is a cache: log, wait, try again
                    log.warning("search index: %s", exc)
                self._wake.wait(1.0)
                self._wake.clear()

    def _step(self, source: sqlite3.Connection) -> bool:
        """Index the next chunks; False once there were none."""
        if self.lag > LAG_MAX:
            self._priority(True)
        elif self.lag < LAG_MAX // 2:
            self._priority(False)
        rows = source.execute(
            "SELECT c.id, r.num, c.body FROM chunks c JOIN rooms r ON r.room = c.room "
            "WHERE c.id > ? ORDER BY c.id LIMIT ?",
            (self.done, CHUNKS_PER_TXN),
        ).fetchall()
        if not rows:
            self.lag = 0
            return False
        db = self._db
        count = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            # A chunk at a time: the GIL is held only while one chunk is decoded (SQLite
            # releases it while it indexes), so the event loop never waits on this thread long.
            for _, num, body in rows:
                base = num << 32
                docs = [(base + m[0], m[2]) for m in orjson.loads(body)]
                count += len(docs)
                db.executemany("INSERT OR REPLACE INTO fts (rowid, text) VALUES (?, ?)", docs)
            db.execute("UPDATE state SET value = ? WHERE key = 'done'", (rows[-1][0],))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.done = rows[-1][0]
        self.indexed += count
        self.lag = max(0, self.lag - count)
        return True

    def _forget_pruned(self, source: sqlite3.Connection) -> None:
        """Drop from the index what retention deleted from the history: below each room's
        first stored seq."""
        floors = source.execute(
            "SELECT r.num, coalesce((SELECT c.first FROM chunks c WHERE c.room = r.room "
            "ORDER BY c.last LIMIT 1), r.last_seq + 1) FROM rooms r WHERE r.num IS NOT NULL"
        ).fetchall()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for num, first in floors:
                base = num << 32
                db.execute("DELETE FROM fts WHERE rowid >= ? AND rowid < ?", (base, base + first))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
