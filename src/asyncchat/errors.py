"""The one exception hierarchy of asyncchat.

::

    ChatError                      every error asyncchat raises on purpose
    ├── ProtocolError              the peer broke the wire contract, or a request was refused;
    │                              carries its wire ``code``, whether it ``closes`` the
    │                              connection, and the ``ref`` of the request it answers
    ├── ServerError                the server answered one of our requests with an ``error``
    │                              frame (client side); carries the same ``code``
    ├── ConnectionClosed           the connection is gone (client side); ``reason`` says why
    ├── StoreError                 the history store cannot store messages any more (disk
    │                              full or gone): the server refuses to acknowledge new ones
    ├── ConfigError                local misuse: a bad limit, option or argument (never the
    │                              peer's fault; a ``ValueError`` too)
    └── UsageError                 a typed chat command is malformed or unknown; the message
                                   is the line to show (``usage: /msg NAME TEXT``)

The wire codes are the members of :class:`ErrorCode`. A :class:`ProtocolError` is turned into
exactly one ``error`` frame by the connection layer, which then closes the connection only when
``closes`` is true: that is the single rule of error handling on the server.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ChatError",
    "ConfigError",
    "ConnectionClosed",
    "ErrorCode",
    "ProtocolError",
    "ServerError",
    "StoreError",
    "UsageError",
]


class ErrorCode(StrEnum):
    """Stable error codes of wire protocol v1 (``error.code``)."""

    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNKNOWN_TYPE = "unknown_type"
    BAD_REQUEST = "bad_request"
    HELLO_REQUIRED = "hello_required"
    VERSION_UNSUPPORTED = "version_unsupported"
    NAME_TAKEN = "name_taken"
    NAME_INVALID = "name_invalid"
    ROOM_INVALID = "room_invalid"
    NOT_IN_ROOM = "not_in_room"
    NO_SUCH_USER = "no_such_user"
    TEXT_TOO_LONG = "text_too_long"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    TIMEOUT = "timeout"
    SLOW_CONSUMER = "slow_consumer"
    HISTORY_UNAVAILABLE = "history_unavailable"
    TOO_MANY_ROOMS = "too_many_rooms"
    # Accounts, operators and bans (docs/security.md).
    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    NAME_RESERVED = "name_reserved"
    FORBIDDEN = "forbidden"
    BANNED = "banned"
    TLS_REQUIRED = "tls_required"

    @property
    def closes(self) -> bool:
        """Whether the server closes the connection after sending this error."""
        return self in _CLOSING


# Errors after which the stream cannot (frame_too_large: the payload was not read) or must not
# (the others: the peer is refused or gone) go on.
_CLOSING = frozenset(
    {
        ErrorCode.FRAME_TOO_LARGE,
        ErrorCode.HELLO_REQUIRED,
        ErrorCode.TOO_MANY_CONNECTIONS,
        ErrorCode.TIMEOUT,
        ErrorCode.SLOW_CONSUMER,
        ErrorCode.BANNED,
    }
)


class ChatError(Exception):
    """Base class of every exception asyncchat raises on purpose."""


class ProtocolError(ChatError):
    """A request broke the contract or was refused; sent to the peer as one ``error`` frame.

    ``closes`` defaults to what the code implies (see :attr:`ErrorCode.closes`).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        ref: str | int | None = None,
        closes: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref
        self.closes = code.closes if closes is None else closes
        self.retry_after = retry_after


class ServerError(ChatError):
    """The server refused a request of ours with an ``error`` frame.

    ``code`` is the wire code as a string: servers may add codes, and an unknown code is still
    reported, not rejected.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        ref: str | int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref
        self.retry_after = retry_after


class ConnectionClosed(ChatError):
    """The connection to the peer is closed; ``reason`` says why when it is known."""

    def __init__(self, reason: str = "connection closed") -> None:
        super().__init__(reason)
        self.reason = reason


class StoreError(ChatError):
    """The history store failed; nothing more can be stored (and so acknowledged)."""


class ConfigError(ChatError, ValueError):
    """A local misuse: an invalid limit, option or argument."""


class UsageError(ChatError):
    """A typed chat command (``/msg`` without a text, ``/frob``) is malformed or unknown; the
    message is the line a text front end shows."""
