"""Who a connection is: passwords, bot tokens, the throttle on failed logins, and the checks of
a ``hello``'s credentials (an adapter: it runs password hashes on threads).

Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``, memory-hard), a random 16-byte
salt per account, and the parameters stored with the hash (``scrypt$N$r$p$salt$hash``, base64)
so that they can be raised later without invalidating old hashes. A hash takes ~50 ms of CPU
and 16 MiB: it runs on a small pool of ``hash_workers`` threads, never on the event loop, and
at most a few times that many wait their turn (more get ``auth_failed`` with ``retry_after``),
so a login storm cannot stall the chat.

Bot tokens are ``<id>.<secret>``: a public id (to find the token) and 32 random bytes, shown
once; only the SHA-256 of the secret is stored (a long random secret needs no slow hash).
Every comparison of secrets is constant-time (``hmac.compare_digest``), and no secret is ever
logged.

Failed logins are throttled per IP address and per account: after the n-th failure in a row,
the next attempt waits ``LOGIN_DELAY * 2**(n-1)`` seconds (each failure is answered
``auth_failed`` with that ``retry_after``, and an attempt that comes sooner gets the same
answer without being checked: no hash is spent on it); after ``login_failures`` failures, the
key is locked for ``login_lockout`` seconds. A success clears the account's count.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .errors import ErrorCode, ProtocolError, StoreError
from .events import Hello, Ref
from .interfaces import Account, AccountStore
from .limits import Limits
from .validation import user_key

__all__ = [
    "LOGIN_DELAY",
    "Authenticator",
    "Hasher",
    "Throttle",
    "hash_password",
    "hash_token",
    "is_loopback",
    "new_token",
    "verify_password",
]

log = logging.getLogger("asyncchat.auth")

#: scrypt's cost: N=2**14, r=8 (16 MiB of memory), p=1; OWASP's floor for scrypt is N=2**17
#: with r=8 and p=1 at 128 MiB, which 10 logins at once would make 1.3 GB: this is the cost a
#: small chat server can pay, and the parameters are stored with each hash to raise it later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: Seconds after the first failed login before the next attempt of that IP or account is
#: checked; doubled with each further failure.
LOGIN_DELAY = 0.5
#: Logins waiting for a hash thread, per thread, beyond which the others are told to retry.
QUEUE_PER_WORKER = 8
#: Throttle entries kept at the most (an attacker with many addresses cannot grow it forever).
_MAX_THROTTLE_KEYS = 100_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """The stored form of ``password``: scrypt with a fresh salt, parameters included."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 2**20
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@functools.cache
def _dummy() -> str:
    """Checked against when there is no secret, so that it takes as long as a wrong password
    (made at first use: importing this module costs no hash)."""
    return hash_password(secrets.token_hex(8))


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (from :func:`hash_password`), in constant time.
    A malformed or empty ``stored`` never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = _unb64(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=256 * 2**20,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def hash_token(secret: str) -> str:
    """The stored form of a token's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A new bot token: (id, the stored hash of its secret, the token to hand out once)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return token_id, hash_token(secret), f"{token_id}.{secret}"


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` is a loopback address (a connection from this machine)."""
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Hasher:
    """Password hashes on ``workers`` threads; at most ``QUEUE_PER_WORKER`` per thread wait."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._waiting = 0

    async def run(self, fn: Callable[..., object], *args: object) -> object:
        """``fn(*args)`` on a hash thread. Raises ``auth_failed`` with ``retry_after`` when
        too many hashes are waiting already."""
        if self._waiting >= self.workers * QUEUE_PER_WORKER:
            raise ProtocolError(
                ErrorCode.AUTH_FAILED, "the server is busy with logins: try again", retry_after=1.0
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="asyncchat-hash")
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._waiting -= 1

    async def verify(self, password: str, stored: str) -> bool:
        """:func:`verify_password` on a hash thread."""
        return bool(await self.run(verify_password, password, stored or _dummy()))

    async def hash(self, password: str) -> str:
        """:func:`hash_password` on a hash thread."""
        return str(await self.run(hash_password, password))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class Throttle:
    """Failed logins per key (``ip:...``, ``account:...``): exponential delay, then a lock."""

    def __init__(
        self, failures: int, lockout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.lockout = lockout
        self.clock = clock
        #: key -> (failures in a row, monotonic time before which no attempt is checked)
        self._keys: dict[str, tuple[int, float]] = {}

    def wait(self, *keys: str) -> float:
        """Seconds before an attempt for ``keys`` will be checked (0.0: now)."""
        now = self.clock()
        return max([self._keys.get(k, (0, 0.0))[1] - now for k in keys] + [0.0])

    def failed(self, *keys: str) -> float:
        """Count a failure for each of ``keys``; the seconds the next attempt must wait."""
        now = self.clock()
        if len(self._keys) > _MAX_THROTTLE_KEYS:
            self._keys = {k: v for k, v in self._keys.items() if v[1] > now}
        longest = 0.0
        for key in keys:
            count = self._keys.get(key, (0, 0.0))[0] + 1
            delay = self.lockout if count >= self.failures else LOGIN_DELAY * 2 ** (count - 1)
            self._keys[key] = (count, now + delay)
            longest = max(longest, delay)
        return longest

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of ``keys``."""
        for key in keys:
            self._keys.pop(key, None)


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two strings of any lengths."""
    return hmac.compare_digest(
        hashlib.sha256(a.encode()).digest(), hashlib.sha256(b.encode()).digest()
    )


class Authenticator:
    """The credentials of a ``hello``, checked against the account store.

    ``guests``: whether connections without credentials may use unregistered names;
    ``server_password``: what guests must give (None: nothing); ``allow_plaintext_auth``:
    whether a password may come over plain TCP from another machine.
    """

    def __init__(
        self,
        store: AccountStore,
        limits: Limits,
        *,
        guests: bool = True,
        server_password: str | None = None,
        allow_plaintext_auth: bool = False,
        registration: str = "closed",
    ) -> None:
        self.store = store
        self.guests = guests
        self.server_password = server_password
        self.allow_plaintext_auth = allow_plaintext_auth
        self.registration = registration
        self.hasher = Hasher(limits.hash_workers)
        self.throttle = Throttle(limits.login_failures, limits.login_lockout)

    def close(self) -> None:
        self.hasher.close()

    def check_channel(self, ip: str, secure: bool, ref: object = None) -> None:
        """Refuse (``tls_required``) a password over plain TCP from another machine."""
        if not (secure or self.allow_plaintext_auth or is_loopback(ip)):
            raise ProtocolError(
                ErrorCode.TLS_REQUIRED,
                "passwords are only accepted over TLS (connect with TLS, or the operator "
                "allows plain text with --allow-plaintext-auth)",
                ref=ref if isinstance(ref, str | int) else None,
            )

    async def authenticate(self, hello: Hello, ip: str, secure: bool) -> Account | None:
        """The account ``hello`` logs in to (None: a guest; also a ``password`` for a name
        that is not registered). Raises ``ProtocolError``:
        ``tls_required``, ``auth_failed`` (with ``retry_after`` while throttled),
        ``name_reserved`` (a guest asking for a registered name), ``auth_required``."""
        ref = hello.id
        key = user_key(hello.name)
        if hello.password is None and hello.token is None:
            await self._guest(hello, key, ip)
            return None
        if hello.password is not None:
            self.check_channel(ip, secure, ref)
        keys = (f"ip:{ip}", f"account:{key}")
        self._check_throttle(keys, ref)
        try:
            account = await self.store.account(key)
            if account is None and hello.token is None:
                # A password for a name nobody registered (a login form that always sends
                # one): the name is anyone's, so this is a guest, as without the password.
                await self._guest(hello, key, ip)
                return None
            if hello.token is not None:
                ok = account is not None and await self._token_ok(hello.token, key)
            else:
                assert hello.password is not None
                stored = account.secret if account is not None else ""
                ok = await self.hasher.verify(hello.password, stored) and account is not None
        except StoreError as exc:
            log.error("login of %r failed: %s", hello.name, exc)
            raise ProtocolError(
                ErrorCode.AUTH_FAILED, "the server cannot check logins now", ref=ref
            ) from None
        if not ok or account is None:
            delay = self.throttle.failed(*keys)
            log.warning("failed login for %r from %s", hello.name, ip)
            raise ProtocolError(
                ErrorCode.AUTH_FAILED,
                "wrong name, password or token",
                ref=ref,
                retry_after=round(delay, 3),
            )
        self.throttle.succeeded(f"account:{key}")
        return account

    def _check_throttle(self, keys: tuple[str, ...], ref: Ref | None) -> None:
        """Raise ``auth_failed`` with ``retry_after`` while ``keys`` must wait."""
        wait = self.throttle.wait(*keys)
        if wait > 0:
            raise ProtocolError(
                ErrorCode.AUTH_FAILED,
                "too many failed logins: try again later",
                ref=ref,
                retry_after=round(wait, 3),
            )

    async def _token_ok(self, token: str, key: str) -> bool:
        token_id, _, secret = token.partition(".")
        found = await self.store.token(token_id) if token_id and secret else None
        if found is None:
            return False
        owner, stored = found
        return hmac.compare_digest(hash_token(secret), stored) and owner == key

    async def _guest(self, hello: Hello, key: str, ip: str) -> None:
        ref = hello.id
        try:
            taken = self.store.registered(key)
        except StoreError as exc:
            log.error("cannot check the name %r: %s", hello.name, exc)
            taken = True  # fail closed: nobody takes a name that might be registered
        if taken:
            raise ProtocolError(
                ErrorCode.NAME_RESERVED,
                f"the name {hello.name!r} is registered: log in with its password or token",
                ref=ref,
            )
        if not self.guests:
            raise ProtocolError(
                ErrorCode.AUTH_REQUIRED, "this server admits accounts only: log in", ref=ref
            )
        if self.server_password is None:
            return None
        if hello.server_password is None:
            raise ProtocolError(
                ErrorCode.AUTH_REQUIRED, "this server needs its password (server_password)", ref=ref
            )
        ip_key = f"ip:{ip}"
        self._check_throttle((ip_key,), ref)
        if not _same(hello.server_password, self.server_password):
            delay = self.throttle.failed(ip_key)
            log.warning("wrong server password from %s", ip)
            raise ProtocolError(
                ErrorCode.AUTH_FAILED, "wrong server password", ref=ref, retry_after=round(delay, 3)
            )
        return None
