"""The search index of the SQLite store, built off the acknowledgement path.

A stored message is acknowledged once its group commit has written it (one row per room per
group, :mod:`.sqlite`); indexing it for ``search`` (FTS5: 6 to 9 µs of CPU per message,
more than the rest of a message's path through the server) happens later, on a thread of its
own, in a database file of its own beside the history (``history.db-search``):

- the thread runs at the lowest CPU priority Linux has (``SCHED_IDLE``): on a machine with a
  spare core it indexes there at once; on a busy single core it indexes only while the event
  loop waits for the network, and so never slows delivery down;
- once more than :data:`LAG_MAX` messages wait to be indexed (a core saturated for long), the
  store's writer indexes a step after each of its commits, at its own priority: a saturated
  core pays for indexing then, and a search never has more than about that many unindexed
  messages to look through;
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
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LAG_MAX", "SearchIndex", "index_path", "transaction"]

log = logging.getLogger("asyncchat.storage")

#: Messages waiting to be indexed beyond which the store's writer indexes too (see help()).
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


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
    """Run the block in one transaction: committed if it ends, rolled back if it raises."""
    db.execute(begin)
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


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
        #: Retention runs asked for (the first: at start) and done: the index forgets what
        #: retention deleted while they differ.
        self._prunes = 1
        self._forgotten = 0
        #: Held while a step indexes: by the thread, or by a writer helping it (see help()).
        self._lock = threading.Lock()
        self._open()
        self._thread = threading.Thread(target=self._run, name="asyncchat-search", daemon=True)

    def _open(self) -> None:
        """Open the index, or start it afresh when it is not this history's or not readable."""
        for attempt in range(2):
            try:
                # uri=True: the history is attached below by URI, read-only.
                db = sqlite3.connect(
                    Path(self.path).resolve().as_uri(),
                    uri=True,
                    check_same_thread=False,
                    isolation_level=None,
                )
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
                # The history, read-only, beside the index: indexing is then one statement
                # that SQLite runs in C with the GIL released, so indexing never holds the GIL
                # long against the event loop (a deferred transaction locks only the index).
                history = Path(self.history).resolve().as_uri() + "?mode=ro"
                db.execute("ATTACH DATABASE ? AS h", (history,))
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
        self._prunes += 1
        self._wake.set()

    @property
    def reconcile_pending(self) -> int:
        return int(self._prunes != self._forgotten)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self._db.close()

    def help(self) -> None:
        """Called by the store's writer after each commit: past LAG_MAX waiting messages (a
        core saturated for long, which leaves the idle-priority thread no time), index one step
        here, at the writer's priority. Never waits: if the thread is in a step, it skips."""
        if self.lag > LAG_MAX and self._lock.acquire(blocking=False):
            try:
                self._step()
            except sqlite3.Error as exc:  # the index is a cache
                log.warning("search index: %s", exc)
            finally:
                self._lock.release()

    # -- on the indexer thread (and _step from help(), under the same lock)

    def _run(self) -> None:
        # The lowest CPU priority (Linux): the thread runs only on CPU nobody else wants.
        if hasattr(os, "SCHED_IDLE"):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        while not self._stop:
            try:
                with self._lock:
                    if self._prunes != self._forgotten:
                        asked = self._prunes
                        self._forget_pruned()
                        self._forgotten = asked
                    if self._step():
                        continue
            except sqlite3.Error as exc:  # the index is a cache: log, wait, try again
                log.warning("search index: %s", exc)
            self._wake.wait(1.0)
            self._wake.clear()

    def _step(self) -> bool:
        """Index the next chunks (holding ``_lock``); False once there were none."""
        db = self._db
        (last,) = db.execute(
            "SELECT max(id) FROM (SELECT id FROM h.chunks WHERE id > ? ORDER BY id LIMIT ?)",
            (self.done, CHUNKS_PER_TXN),
        ).fetchone()
        if last is None:
            self.lag = 0
            return False
        with transaction(db):
            count = db.execute(
                "INSERT OR REPLACE INTO fts (rowid, text) "
                "SELECT (r.num << 32) + (j.value ->> 0), j.value ->> 2 "
                "FROM h.chunks c JOIN h.rooms r ON r.room = c.room, json_each(c.body) j "
                "WHERE c.id > ? AND c.id <= ?",
                (self.done, last),
            ).rowcount
            db.execute("UPDATE state SET value = ? WHERE key = 'done'", (last,))
        self.done = last
        self.indexed += count
        self.lag = max(0, self.lag - count)
        return True

    def _forget_pruned(self) -> None:
        """Drop from the index what retention deleted from the history: below each room's
        first stored seq."""
        db = self._db
        floors = db.execute(
            "SELECT r.num, coalesce((SELECT c.first FROM h.chunks c WHERE c.room = r.room "
            "ORDER BY c.last LIMIT 1), r.last_seq + 1) FROM h.rooms r WHERE r.num IS NOT NULL"
        ).fetchall()
        with transaction(db):
            for num, first in floors:
                base = num << 32
                db.execute("DELETE FROM fts WHERE rowid >= ? AND rowid < ?", (base, base + first))
