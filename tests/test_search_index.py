"""The history's chunked storage and its search index built off the acknowledgement path
(backends/sqlite.py, backends/sqlite_index.py): a message is found the same before and after
the index took it, the scan's tokenizer is FTS5's, and the index is a cache rebuilt when it is
not this history's."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncchat.backends import sqlite_index
from asyncchat.backends.sqlite import MIGRATIONS, SQLiteStore
from asyncchat.interfaces import Record
from asyncchat.textsearch import fts_query, matches, query_terms, tokens

# ASCII, Latin letters with accents (precomposed and combining), other scripts with marks of
# their own (Cyrillic й, Greek ά, Japanese が, Devanagari with virama), CJK, emoji, punctuation.
ALPHABET = list(
    "abcXYZ019 ,.'-_!?$+@#\"*()\t\u00a0"
    "\u00e9\u00c9\u00df\u00f1\u0130\u0131\u01c5\u1e9e\u00e6\u0153\u00f8\u0142\u01b0\u0169\u1ec7"
    "\u0301\u0308\u0345\u20d0\u1dc0"
    "\u0410\u0430\u044f\u0439\u0451\u03ac\u304c\u3099\u0939\u093f\u094d\u4e2d\u6587\uac00"
    "\u00bd\u2163\u2460\u00aa\U0001f600"
)
texts = st.text(alphabet=ALPHABET, max_size=24)


@pytest.fixture(scope="module")
def fts() -> Any:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(text, tokenize='unicode61 remove_diacritics 2')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'instance')")
    yield db
    db.close()


@settings(max_examples=400, deadline=None)
@given(text=texts)
def test_tokens_are_fts5s(fts: Any, text: str) -> None:
    """The scan's tokenizer gives the tokens FTS5's unicode61 (remove_diacritics 2) gives."""
    fts.execute("DELETE FROM f")
    fts.execute("INSERT INTO f (rowid, text) VALUES (1, ?)", (text,))
    expected = [t for (t,) in fts.execute("SELECT term FROM v ORDER BY offset")]
    assert tokens(text) == expected


@settings(max_examples=400, deadline=None)
@given(text=texts, words=st.text(alphabet=ALPHABET, max_size=10))
def test_matches_is_fts5s_match(fts: Any, text: str, words: str) -> None:
    """A text matches a search in the scan exactly when the index would find it."""
    if not words.split():
        with pytest.raises(ValueError):
            query_terms(words)
        return
    fts.execute("DELETE FROM f")
    fts.execute("INSERT INTO f (rowid, text) VALUES (1, ?)", (text,))
    found = fts.execute("SELECT count(*) FROM f WHERE f MATCH ?", (fts_query(words),)).fetchone()
    assert matches(text, query_terms(words)) == bool(found[0])


def test_matches_by_example() -> None:
    terms = query_terms("Deploy FAILED")
    assert matches("the deploy failed again", terms)
    assert not matches("the deployment failed", terms)  # a word is matched whole
    assert matches("Café crème", query_terms("cafe"))
    assert matches("don't stop", query_terms("don't"))
    assert not matches("don stop t", query_terms("don't"))  # a word's tokens in a row
    assert not matches("!!! here", query_terms("!!!"))  # no token: matches nothing, as FTS5


# ---------------------------------------------------------------- the store


async def _open(path: Path, **options: Any) -> SQLiteStore:
    loop = asyncio.get_running_loop()
    store = SQLiteStore(str(path), writer="loop", **options)
    store.open(lambda batch: None, loop.call_soon, loop.call_soon_threadsafe)
    return store


async def _store(store: SQLiteStore, room: str, items: list[tuple[str, float]]) -> None:
    """Submit messages (text, ts) to ``room`` and wait until they are committed."""
    first = store.last_seqs().get(room, 0) + 1
    for i, (text, ts) in enumerate(items):
        store.submit(Record(room, room.title(), first + i, "bob", text, ts, False, None), None)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if store.last_seqs().get(room, 0) == first + len(items) - 1:
            return
    raise AssertionError("never committed")


async def _indexed(store: SQLiteStore) -> None:
    for _ in range(1000):
        if store.index_pending() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the index is still {store.index_pending()} chunks behind")


WORDS = ["deploy", "failed", "again", "café", "ok", "Deploy!", "staging"]


def _texts(n: int) -> list[tuple[str, float]]:
    now = time.time()
    return [(" ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5)), now) for i in range(n)]


def _seqs(records: list[Record]) -> list[int]:
    return [r.seq for r in records]


async def test_search_is_the_same_before_and_after_indexing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages the index has not taken are scanned; the answers are the same once it has,
    also across the boundary between indexed and scanned messages."""
    queries = ["deploy", "failed again", "cafe", "DEPLOY staging", "nothing"]
    store = await _open(tmp_path / "a.db")
    for _ in range(5):
        await _store(store, "dev", _texts(60))  # several chunks
    await _indexed(store)
    indexed = {q: _seqs(store.search("dev", q, before=2**31, limit=50)) for q in queries}
    limited = _seqs(store.search("dev", "deploy", before=200, limit=7))
    store.close()

    monkeypatch.setattr(sqlite_index.SearchIndex, "start", lambda self, lag: None)
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    store = await _open(tmp_path / "b.db")  # a fresh index that never runs: all scanned
    assert store.index_pending() >= 5  # chunks (and the first reconciliation)
    assert {q: _seqs(store.search("dev", q, before=2**31, limit=50)) for q in queries} == indexed
    assert _seqs(store.search("dev", "deploy", before=200, limit=7)) == limited
    assert indexed["deploy"] and not indexed["nothing"]
    assert indexed["deploy"] == sorted(indexed["deploy"], reverse=True)
    store.close()

    store = await _open(tmp_path / "a.db")  # indexed, then newer messages (not) scanned
    await _store(store, "dev", [("deploy failed again staging", time.time())] * 3)
    assert store.index_pending() >= 1  # the index stays as it was: the new ones are scanned
    found = _seqs(store.search("dev", "deploy", before=2**31, limit=50))
    assert found[:3] == [303, 302, 301] and found[3:] == indexed["deploy"][:47]
    store.close()


async def test_an_index_of_another_history_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The index is a cache: one left by another database, or unreadable, is rebuilt."""
    store = await _open(tmp_path / "h.db")
    await _store(store, "dev", [("deploy one", time.time())])
    await _indexed(store)
    store.close()
    other = await _open(tmp_path / "o.db")
    await _store(other, "dev", [("something else", time.time())])
    other.close()
    shutil.copy(tmp_path / "h.db-search", tmp_path / "o.db-search")
    store = await _open(tmp_path / "o.db")
    assert "not this history's" in caplog.text
    await _indexed(store)
    assert store.search("dev", "deploy", before=2**31, limit=5) == []
    assert _seqs(store.search("dev", "else", before=2**31, limit=5)) == [1]
    store.close()

    (tmp_path / "o.db-search").write_bytes(b"not a database at all" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"o.db-search{suffix}").unlink(missing_ok=True)
    store = await _open(tmp_path / "o.db")
    assert "unusable" in caplog.text
    await _indexed(store)
    assert _seqs(store.search("dev", "else", before=2**31, limit=5)) == [1]
    store.close()


async def test_retention_is_exact_within_a_chunk(tmp_path: Path) -> None:
    """Retention keeps exactly history_max messages and none older than history_days, also
    when they share a chunk with messages it keeps; the index forgets what it deleted."""
    now = time.time()
    store = await _open(tmp_path / "h.db", history_max=5, history_days=1)
    await _store(
        store,
        "dev",
        [(f"needle {i}", now - 3 * 86400) for i in range(4)]
        + [(f"needle {i}", now) for i in range(4, 12)],
    )  # one group: one chunk
    await _indexed(store)
    store.prune_now()
    page = store.page("dev", limit=50)
    assert _seqs(page.records) == [8, 9, 10, 11, 12] and page.first_kept == 8
    assert not page.more
    await _indexed(store)
    assert _seqs(store.search("dev", "needle", before=2**31, limit=50)) == [12, 11, 10, 9, 8]
    with sqlite3.connect(tmp_path / "h.db-search") as conn:
        (n,) = conn.execute("SELECT count(*) FROM fts('needle')").fetchone()
    assert n == 5
    store.close()


async def test_pages_cross_chunks(tmp_path: Path) -> None:
    """Pages forwards and backwards over messages stored in many groups of different sizes."""
    store = await _open(tmp_path / "h.db")
    for size in (1, 7, 3, 40, 1, 12):
        await _store(store, "dev", [(f"m{size}", time.time())] * size)
        await _store(store, "ops", [("other room", time.time())])
    assert store.last_seqs() == {"dev": 64, "ops": 6}
    seqs: list[int] = []
    after = 0
    while True:
        page = store.page("dev", after=after, limit=10)
        seqs += _seqs(page.records)
        if not page.more:
            break
        after = page.records[-1].seq
    assert seqs == list(range(1, 65))
    back: list[int] = []
    before = None
    while True:
        page = store.page("dev", before=before, limit=9)
        back = _seqs(page.records) + back
        if not page.more:
            break
        before = page.records[0].seq
    assert back == list(range(1, 65))
    page = store.page("dev", after=10, before=20, limit=50)
    assert _seqs(page.records) == list(range(11, 20)) and not page.more
    assert {r.name for r in page.records} == {"Dev"}
    store.close()


async def test_a_schema_4_database_moves_into_chunks(tmp_path: Path) -> None:
    """Migration 5 moves every message into chunks, in order, keeps idempotency keys and
    actions, and the new index takes them all."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4]):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number + 1}; COMMIT;")
    conn.execute("INSERT INTO rooms (room, name, last_seq, num) VALUES ('dev', 'Dev', 600, 1)")
    conn.executemany(
        "INSERT INTO messages (room, seq, sender, text, ts, action, client_key) "
        "VALUES ('dev', ?, 'bob', ?, ?, ?, ?)",
        [
            (s, f"old {s} needle" if s % 100 == 0 else f"old {s}", 1e9 + s, s % 2, f"k{s}")
            for s in range(1, 601)
        ],
    )
    conn.close()
    store = await _open(db)
    page = store.page("dev", after=0, limit=1000)
    assert _seqs(page.records) == list(range(1, 601))
    assert page.records[0].action and not page.records[1].action
    assert page.records[41].client_key == "k42"
    assert len(store.recent_client_keys(1e9 + 590)) == 11
    assert _seqs(store.search("dev", "needle", before=2**31, limit=10)) == [
        600,
        500,
        400,
        300,
        200,
        100,
    ]
    await _indexed(store)
    assert _seqs(store.search("dev", "needle", before=450, limit=10)) == [400, 300, 200, 100]
    store.close()


def test_the_cluster_mirror_matches_as_the_store_does() -> None:
    """The cluster's search (each node's mirror of the rooms' logs) matches whole words, case
    and Latin accents aside, as the SQLite store's does."""
    from asyncchat.backends.redis_state import RoomLogs

    logs = RoomLogs(100)
    texts = ["the deployment failed", "Deploy FAILED!", "café time", "deploy: failed again"]
    for seq, text in enumerate(texts, 1):
        logs.append(Record("dev", "dev", seq, "bob", text, 1.0))
    assert _seqs(logs.search("dev", "deploy failed", before=99, limit=10)) == [4, 2]
    assert _seqs(logs.search("dev", "cafe", before=99, limit=10)) == [3]
    assert _seqs(logs.search("dev", "deploy", before=4, limit=1)) == [2]
    with pytest.raises(ValueError):
        logs.search("dev", "  ", before=99, limit=10)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
async def test_the_indexer_runs_at_idle_priority(tmp_path: Path) -> None:
    """The index thread runs at SCHED_IDLE: it never takes the CPU from the event loop."""
    store = await _open(tmp_path / "h.db")
    index: Any = store._index  # type: ignore[attr-defined]
    for _ in range(300):
        if os.sched_getscheduler(index._thread.native_id) == os.SCHED_IDLE:
            break
        await asyncio.sleep(0.01)
    assert os.sched_getscheduler(index._thread.native_id) == os.SCHED_IDLE
    store.close()


async def test_the_writer_indexes_when_the_index_is_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saturated core gives the idle-priority thread no time: past LAG_MAX waiting
    messages the writer indexes after its commits, so the scan stays bounded."""
    monkeypatch.setattr(sqlite_index, "LAG_MAX", 25)
    monkeypatch.setattr(sqlite_index.SearchIndex, "start", lambda self, lag: None)  # no thread
    store = await _open(tmp_path / "h.db")
    for _ in range(2):
        await _store(store, "dev", _texts(10))
    index: Any = store._index  # type: ignore[attr-defined]
    assert index.indexed == 0 and index.lag == 20  # within LAG_MAX: left to the thread
    await _store(store, "dev", _texts(10))
    assert index.indexed == 30 and index.lag == 0  # past it: the writer indexed
    found = _seqs(store.search("dev", "deploy", before=2**31, limit=100))
    texts = [text for text, _ in _texts(10)]
    assert found == [s for s in range(30, 0, -1) if matches(texts[(s - 1) % 10], [("deploy",)])]
    store.close()
