"""Accounts, bot tokens and bans in SQLite: the server's database file by default.

:class:`SQLiteAccounts` is both the :class:`~asyncchat.interfaces.AccountStore` and the
:class:`~asyncchat.interfaces.BanStore` of a server, and the plain synchronous API of
``asyncchat accounts``. The tables are migration 3 of :data:`.sqlite.MIGRATIONS` (one schema per
database file, whether it holds history too or not). The server's asynchronous methods run the
queries on one thread of their own, never on the event loop; :meth:`registered` (asked on every
``nick``, which is rate-limited) is one indexed lookup on the calling thread. WAL lets the
``accounts`` command change a running server's file: the server reads accounts and tokens at
each login, so a new password or a revoked token counts at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, StoreError
from ..interfaces import Account, Ban
from .sqlite import SQLiteStore

__all__ = ["SQLiteAccounts"]

T = TypeVar("T")

_ACCOUNT = "SELECT key, name, secret, operator, created FROM accounts"


def _account(row: tuple[Any, ...]) -> Account:
    key, name, secret, operator, created = row
    return Account(key, name, secret, bool(operator), created)


class SQLiteAccounts:
    """Accounts, tokens and bans in the SQLite file ``path`` (``":memory:"``: only while the
    process runs). Raises ``ConfigError`` when the file cannot be opened or is of a newer
    schema; the methods raise ``StoreError`` when a query fails (disk gone, locked too long)."""

    def __init__(self, path: str) -> None:
        self.path = path if path == ":memory:" else str(Path(path).expanduser())
        if path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode = WAL")
            SQLiteStore._migrate(self._db)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot use the accounts database {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Close the database (after the queries under way). Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ plumbing

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"the accounts database failed: {exc}") from None

    def _change(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run a write; the number of rows changed (or the new row's id for an insert into
        bans)."""
        try:
            with self._lock:
                cur = self._db.execute(sql, args)
                return cur.lastrowid if sql.startswith("INSERT INTO bans") else cur.rowcount  # type: ignore[return-value]
        except sqlite3.IntegrityError:
            return 0
        except sqlite3.Error as exc:
            raise StoreError(f"the accounts database failed: {exc}") from None

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="asyncchat-accounts")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------------ accounts (sync)

    def get(self, key: str) -> Account | None:
        """The account with name key ``key``, if any."""
        rows = self._run(_ACCOUNT + " WHERE key = ?", (key,))
        return _account(rows[0]) if rows else None

    def registered(self, key: str) -> bool:
        return bool(self._run("SELECT 1 FROM accounts WHERE key = ?", (key,)))

    def add(self, account: Account) -> bool:
        """Create ``account``; False if its key is taken."""
        return bool(
            self._change(
                "INSERT INTO accounts (key, name, secret, operator, created) VALUES (?,?,?,?,?)",
                (account.key, account.name, account.secret, int(account.operator), account.created),
            )
        )

    def set_secret(self, key: str, secret: str) -> bool:
        """Replace the password hash of account ``key``; False if there is no such account."""
        return bool(self._change("UPDATE accounts SET secret = ? WHERE key = ?", (secret, key)))

    def set_operator(self, key: str, operator: bool) -> bool:
        """Make account ``key`` an operator or not; False if there is no such account."""
        sql = "UPDATE accounts SET operator = ? WHERE key = ?"
        return bool(self._change(sql, (int(operator), key)))

    def remove(self, key: str) -> bool:
        """Remove account ``key`` and its tokens; False if there is no such account."""
        self._change("DELETE FROM tokens WHERE account = ?", (key,))
        return bool(self._change("DELETE FROM accounts WHERE key = ?", (key,)))

    def accounts(self) -> list[tuple[Account, int]]:
        """Every account with its number of tokens, by key."""
        rows = self._run(
            "SELECT a.key, a.name, a.secret, a.operator, a.created, count(t.id) FROM accounts a "
            "LEFT JOIN tokens t ON t.account = a.key GROUP BY a.key ORDER BY a.key"
        )
        return [(_account(r[:5]), r[5]) for r in rows]

    def add_token(self, token_id: str, key: str, secret_hash: str, label: str, now: float) -> None:
        """Store a token of account ``key`` (its secret as a hash)."""
        self._change(
            "INSERT INTO tokens (id, account, secret, label, created) VALUES (?,?,?,?,?)",
            (token_id, key, secret_hash, label, now),
        )

    def tokens(self, key: str) -> list[tuple[str, str, float]]:
        """The (id, label, created) of account ``key``'s tokens."""
        sql = "SELECT id, label, created FROM tokens WHERE account = ? ORDER BY created"
        return [(i, label, c) for i, label, c in self._run(sql, (key,))]

    def revoke_token(self, key: str, token_id: str | None) -> int:
        """Delete token ``token_id`` of account ``key`` (None: all of them); how many went."""
        if token_id is None:
            return self._change("DELETE FROM tokens WHERE account = ?", (key,))
        return self._change("DELETE FROM tokens WHERE account = ? AND id = ?", (key, token_id))

    def get_token(self, token_id: str) -> tuple[str, str] | None:
        rows = self._run("SELECT account, secret FROM tokens WHERE id = ?", (token_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    # ------------------------------------------------------------------ bans (sync)

    def add_ban_now(self, ban: Ban) -> int:
        """Store ``ban``; the id it got."""
        return self._change(
            "INSERT INTO bans (kind, value, reason, by, created, until) VALUES (?,?,?,?,?,?)",
            (ban.kind, ban.value, ban.reason, ban.by, ban.created, ban.until),
        )

    def remove_ban_now(self, ban_id: int) -> bool:
        """Delete ban ``ban_id``; False if there was none."""
        return bool(self._change("DELETE FROM bans WHERE id = ?", (ban_id,)))

    def all_bans(self) -> list[Ban]:
        """Every stored ban, by id."""
        sql = "SELECT id, kind, value, reason, by, created, until FROM bans ORDER BY id"
        return [Ban(*row) for row in self._run(sql)]

    # ------------------------------------------------------------------ the server's (async)

    async def account(self, key: str) -> Account | None:
        return await self._off_loop(self.get, key)

    async def add_account(self, account: Account) -> bool:
        return await self._off_loop(self.add, account)

    async def token(self, token_id: str) -> tuple[str, str] | None:
        return await self._off_loop(self.get_token, token_id)

    async def add_ban(self, ban: Ban) -> int:
        return await self._off_loop(self.add_ban_now, ban)

    async def remove_ban(self, ban_id: int) -> bool:
        return await self._off_loop(self.remove_ban_now, ban_id)

    async def bans(self) -> list[Ban]:
        return await self._off_loop(self.all_bans)
