"""``asyncchat accounts``: the operator's management of accounts and bot tokens, from the shell.

The database is ``--db``, else ``$ASYNCCHAT_ACCOUNTS_DB``, else ``$ASYNCCHAT_DB``, else the
default history file: the one ``serve`` keeps accounts in by default. A running server sees
the changes at once (it reads accounts and tokens at each login). Passwords are read without
echo from the terminal (twice), or as one line from stdin with ``--password-stdin``; tokens are
printed once and only their hash is stored.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Mapping

from ..auth import hash_password, new_token
from ..backends.accounts import SQLiteAccounts
from ..config import ENV_PREFIX, default_db_path
from ..errors import ConfigError, ProtocolError
from ..interfaces import Account
from ..text import escape
from ..validation import check_name, user_key

__all__ = ["MIN_PASSWORD", "accounts", "add_parser"]

#: Characters of a password at the least.
MIN_PASSWORD = 8


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``accounts`` command's grammar."""
    parser = sub.add_parser(
        "accounts",
        help="manage accounts and bot tokens",
        description="Manage the accounts of a server's database (see docs/security.md).",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="the database (default: $ASYNCCHAT_ACCOUNTS_DB, $ASYNCCHAT_DB, else serve's "
        "default history file)",
    )
    acts = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = acts.add_parser("add", help="create an account (asks for its password)")
    add.add_argument("name")
    add.add_argument("--operator", action="store_true", help="may kick, ban, mute, announce")
    add.add_argument(
        "--no-password", action="store_true", help="no password: it logs in with tokens only"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = acts.add_parser("passwd", help="set an account's password")
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    op = acts.add_parser("operator", help="make an account an operator, or not")
    op.add_argument("name")
    op.add_argument("--off", action="store_true", help="take the operator flag away")
    remove = acts.add_parser("remove", help="delete an account and its tokens")
    remove.add_argument("name")
    acts.add_parser("list", help="every account, its flags and tokens")
    token = acts.add_parser(
        "token", help="make a bot token (printed once), list or revoke an account's tokens"
    )
    token.add_argument("name")
    token.add_argument("--label", default="", help="what the token is for")
    token.add_argument("--list", action="store_true", help="list the account's tokens")
    token.add_argument("--revoke", metavar="ID", help="revoke the token with this id")
    token.add_argument("--revoke-all", action="store_true", help="revoke every token")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise ConfigError("no terminal to ask for the password: use --password-stdin")
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"a password needs {MIN_PASSWORD} characters or more")
    return password


def accounts(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """Carry out ``asyncchat accounts ACTION``; returns the exit status (1: no such account,
    or the name is taken). Raises ``ConfigError`` (exit 2) for a bad name or password."""
    path = (
        args.db
        or env.get(ENV_PREFIX + "ACCOUNTS_DB")
        or env.get(ENV_PREFIX + "DB")
        or default_db_path()
    )
    name = getattr(args, "name", None)
    if name is not None:
        try:
            check_name(name)
        except ProtocolError as exc:
            raise ConfigError(exc.message) from None
    store = SQLiteAccounts(path)
    try:
        return _act(store, args, user_key(name) if name is not None else "")
    finally:
        store.close()


def _missing(name: str) -> int:
    print(f"asyncchat: there is no account {name!r}", file=sys.stderr)
    return 1


def _act(store: SQLiteAccounts, args: argparse.Namespace, key: str) -> int:
    name = getattr(args, "name", "")
    match args.action:
        case "add":
            secret = "" if args.no_password else hash_password(_password(args))
            if not store.add(Account(key, name, secret, args.operator, time.time())):
                print(f"asyncchat: the name {name!r} is registered already", file=sys.stderr)
                return 1
            print(f"account {name} created" + (" (operator)" if args.operator else ""))
        case "passwd":
            if store.get(key) is None:
                return _missing(name)
            store.set_secret(key, hash_password(_password(args)))
            print(f"password of {name} changed")
        case "operator":
            if not store.set_operator(key, not args.off):
                return _missing(name)
            print(f"{name} is {'no longer ' if args.off else ''}an operator")
        case "remove":
            if not store.remove(key):
                return _missing(name)
            print(f"account {name} removed, with its tokens")
        case "list":
            for account, tokens in store.accounts():
                flags = ["operator"] if account.operator else []
                flags += [] if account.secret else ["no password"]
                flags += [f"{tokens} token(s)"] if tokens else []
                print(escape(account.name) + (f" ({', '.join(flags)})" if flags else ""))
        case "token":
            return _token(store, args, key)
    return 0


def _token(store: SQLiteAccounts, args: argparse.Namespace, key: str) -> int:
    if store.get(key) is None:
        return _missing(args.name)
    if args.list:
        for token_id, label, created in store.tokens(key):
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
            print(f"{token_id}  {stamp}  {escape(label)}")
    elif args.revoke or args.revoke_all:
        gone = store.revoke_token(key, None if args.revoke_all else args.revoke)
        if not gone:
            print(f"asyncchat: {args.name} has no token {args.revoke}", file=sys.stderr)
            return 1
        print(f"{gone} token(s) revoked")
    else:
        token_id, stored, token = new_token()
        store.add_token(token_id, key, stored, args.label, time.time())
        print(token)
        print(
            f"the token of {args.name} (id {token_id}); it is shown only this once",
            file=sys.stderr,
        )
    return 0
