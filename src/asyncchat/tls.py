"""TLS contexts for the server's listeners and for clients (an adapter: it imports ``ssl``).

The server side serves TLS 1.2 or later only, from a certificate chain and key file that
:func:`reload` reads again into the same context (new connections get the new certificate,
open ones keep theirs). The client side verifies the certificate and the host name by default,
against the system's trust store or the ``ca`` file; ``insecure`` turns both checks off (for a
test server with a self-signed certificate only: it gives up protection from impersonation).
"""

from __future__ import annotations

import ssl

from .errors import ConfigError

__all__ = ["client_context", "reload", "server_context"]


def _load(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: cannot read {exc.filename}: no such file") from None
    except PermissionError as exc:
        raise ConfigError(f"TLS: cannot read {exc.filename}: permission denied") from None
    except (ssl.SSLError, OSError) as exc:
        why = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(
            f"TLS: {cert} and {key} are not a certificate chain and its key in PEM ({why})"
        ) from None


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for TLS 1.2+ with the chain in ``cert`` and its private key in ``key``
    (PEM files). Raises ``ConfigError`` (one line) if they cannot be read or do not match."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cert, key)
    return ctx


def reload(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    """Read the certificate files again into ``ctx``: connections made from now on get the new
    certificate. Raises ``ConfigError``, and then ``ctx`` keeps serving the old one."""
    _load(ctx, cert, key)


def client_context(ca: str | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client context for TLS 1.2+ that verifies the server's certificate against ``ca`` (a
    PEM file of trusted certificates; None: the system's) and its host name, unless
    ``insecure``. Raises ``ConfigError`` if ``ca`` cannot be read."""
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except FileNotFoundError:
        raise ConfigError(f"TLS: cannot read the CA file {ca}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS: {ca} is not a PEM file of certificates ({exc})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
