"""TLS on the listeners and in the client library: real handshakes with certificates made by
trustme, on 127.0.0.1 port 0; and the CLI's ``serve --tls-cert/--tls-key`` with
``join --tls --ca``, SIGHUP reloading the certificate."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import struct
from pathlib import Path

import pytest

from asyncchat import ChatServer, connect
from asyncchat.errors import ConfigError, ConnectionClosed
from asyncchat.events import Message
from asyncchat.tls import client_context, server_context

from .conftest import UNIT, WAIT
from .test_cli import join_args, running, serve

trustme = pytest.importorskip("trustme")


def _files(tmp_path: Path, ca: trustme.CA, *hosts: str) -> tuple[str, str, str]:
    """The (cert chain, key, CA) PEM files of a certificate for ``hosts`` issued by ``ca``."""
    cert = ca.issue_cert(*hosts)
    chain, key, cafile = (tmp_path / f"{n}.pem" for n in ("chain", "key", "ca"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(cafile))
    return str(chain), str(key), str(cafile)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[str, str, str]:
    """A certificate for 127.0.0.1 and localhost: (chain, key, CA file)."""
    return _files(tmp_path, trustme.CA(), "127.0.0.1", "localhost")


async def test_chat_over_tls_with_a_verified_certificate(pki: tuple[str, str, str]) -> None:
    """A client that trusts the CA talks to a TLS listener: TLS 1.2+, messages both ways."""
    chain, key, cafile = pki
    async with ChatServer("127.0.0.1", 0, tls_cert=chain, tls_key=key) as server:
        host, port = server.address
        ctx = client_context(cafile)
        async with (
            connect(host, port, name="alice", ssl=ctx) as alice,
            connect(host, port, name="bob", ssl=ctx) as bob,
        ):
            conn = alice._conn
            assert conn is not None
            sslobj = conn.writer.get_extra_info("ssl_object")
            assert sslobj is not None and sslobj.version() in ("TLSv1.2", "TLSv1.3")
            ack = await alice.say("lobby", "hi over tls")
            assert ack.seq == 1
            async with asyncio.timeout(WAIT):
                async for event in bob:
                    if isinstance(event, Message):
                        assert event.text == "hi over tls"
                        break


async def test_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    """The client refuses a certificate issued for another host name, and one from a CA it
    does not trust, with a clear reason."""
    ca = trustme.CA()
    chain, key, cafile = _files(tmp_path, ca, "chat.example")
    async with ChatServer("127.0.0.1", 0, tls_cert=chain, tls_key=key) as server:
        host, port = server.address
        with pytest.raises(ConnectionClosed, match="not trusted"):
            await connect(host, port, name="alice", ssl=client_context(cafile))
        with pytest.raises(ConnectionClosed, match="not trusted"):
            await connect(host, port, name="alice", ssl=True)  # the system's CAs
        # --insecure: no verification at all (testing only).
        async with connect(host, port, name="alice", ssl=client_context(insecure=True)):
            pass


async def test_plain_text_to_a_tls_port_is_dropped_with_one_log_line(
    pki: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A client speaking the plain protocol to a TLS listener is dropped at its first bytes
    (long before handshake_timeout), and the server logs one line about it."""
    chain, key, _ = pki
    caplog.set_level(logging.INFO, "asyncchat.server")
    async with ChatServer(
        "127.0.0.1", 0, tls_cert=chain, tls_key=key, handshake_timeout=60.0
    ) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        payload = b'{"type":"hello","name":"plain","version":1}'
        writer.write(struct.pack(">I", len(payload)) + payload)
        async with asyncio.timeout(WAIT):
            rest = await reader.read()
        assert b"welcome" not in rest
        writer.close()
        lines = [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]
        assert len(lines) == 1 and "not TLS" in lines[0], lines
        assert server.members == []


async def test_a_stalled_tls_handshake_is_dropped_at_handshake_timeout(
    pki: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A client that sends its ClientHello and then nothing more is dropped once
    handshake_timeout has passed."""
    chain, key, _ = pki
    caplog.set_level(logging.INFO, "asyncchat.server")
    timeout = 0.5 * UNIT
    async with ChatServer(
        "127.0.0.1", 0, tls_cert=chain, tls_key=key, handshake_timeout=timeout
    ) as server:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = client_context(insecure=True).wrap_bio(incoming, outgoing)
        with pytest.raises(ssl.SSLWantReadError):
            sslobj.do_handshake()
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(outgoing.read())  # the ClientHello; nothing ever follows
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(WAIT + timeout):
            while await reader.read(65536):
                pass  # the ServerHello and the rest, unanswered
        assert loop.time() - began >= timeout * 0.9  # not before its time
        writer.close()
        assert any("handshake" in r.getMessage() for r in caplog.records)
        assert server.connections == 0


async def test_reload_serves_the_new_certificate_to_new_connections(tmp_path: Path) -> None:
    """After the files change and reload_tls(), new connections get the new certificate (the
    old CA no longer verifies it) while an open connection keeps chatting."""
    old_ca, new_ca = trustme.CA(), trustme.CA()
    chain, key, _ = _files(tmp_path, old_ca, "127.0.0.1")
    async with ChatServer("127.0.0.1", 0, tls_cert=chain, tls_key=key) as server:
        host, port = server.address
        old_cafile = str(tmp_path / "old-ca.pem")
        old_ca.cert_pem.write_to_path(old_cafile)
        async with connect(host, port, name="early", ssl=client_context(old_cafile)) as early:
            _, _, new_cafile = _files(tmp_path, new_ca, "127.0.0.1")  # the same files again
            assert server.reload_tls() == 1
            with pytest.raises(ConnectionClosed, match="not trusted"):
                await connect(host, port, name="late", ssl=client_context(old_cafile))
            async with connect(host, port, name="late", ssl=client_context(new_cafile)):
                assert (await early.say("lobby", "still here")).seq == 1


def test_bad_certificate_files_are_one_line_errors(tmp_path: Path) -> None:
    """A missing file, or a file that is not PEM, is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="no such file"):
        server_context(str(tmp_path / "nope.pem"), str(tmp_path / "nope.key"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a certificate chain"):
        server_context(str(junk), str(junk))
    with pytest.raises(ConfigError, match="go together"):
        ChatServer("127.0.0.1", 0, tls_cert=str(junk))


def test_server_contexts_refuse_tls_below_1_2(pki: tuple[str, str, str]) -> None:
    """Both sides' contexts have TLS 1.2 as their minimum version."""
    chain, key, cafile = pki
    assert server_context(chain, key).minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_context(cafile).minimum_version == ssl.TLSVersion.TLSv1_2


def test_cli_serves_tls_and_join_verifies_it(pki: tuple[str, str, str], tmp_path: Path) -> None:
    """``serve --tls-cert/--tls-key`` with ``join --tls --ca``: a piped line gets through;
    without ``--ca`` the join fails in one line; SIGHUP reloads the certificate (one log line);
    ``--ca`` without ``--tls`` is a usage error."""
    chain, key, cafile = pki
    with serve("--tls-cert", chain, "--tls-key", key) as (proc, port):
        with running(join_args(port, "tlsbot", "--tls", "--ca", cafile), stdin=-1) as bot:
            bot.write("hello over tls\n")
            bot.close_stdin()
            assert bot.wait() == 0, bot.err.text
        with running(join_args(port, "nobody", "--tls", "--no-reconnect")) as untrusting:
            assert untrusting.wait() == 1
            assert "not trusted" in untrusting.err.text
            assert "Traceback" not in untrusting.err.text
        proc.popen.send_signal(signal.SIGHUP)
        proc.err.wait_for(r"reloaded the TLS certificate of 127\.0\.0\.1:\d+")
        with running(join_args(port, "x", "--ca", cafile)) as usage:
            assert usage.wait() == 2
            assert "only go with --tls" in usage.err.text


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_client_hello_sent_with_the_connect_is_not_lost(
    pki: tuple[str, str, str], loop: str
) -> None:
    """A ClientHello already in the socket when the server accepts (the common case on a busy
    server) still completes the handshake, on either loop: no byte of it is read as plain
    stream."""
    factory = None
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_early_client_hello(*pki))


async def _early_client_hello(chain: str, key: str, cafile: str) -> None:
    async with ChatServer("127.0.0.1", 0, tls_cert=chain, tls_key=key) as server:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = client_context(cafile).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with pytest.raises(ssl.SSLWantReadError):
            sslobj.do_handshake()
        # Connect and send the ClientHello before the loop has run once: both are in the
        # kernel when the server accepts.
        sock = socket.create_connection(server.address)
        sock.sendall(outgoing.read())
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(WAIT):
            while True:
                data = await loop.sock_recv(sock, 65536)
                assert data, "the server closed the connection during the handshake"
                incoming.write(data)
                try:
                    sslobj.do_handshake()
                except ssl.SSLWantReadError:
                    await loop.sock_sendall(sock, outgoing.read())
                    continue
                await loop.sock_sendall(sock, outgoing.read())
                break
        assert sslobj.version() in ("TLSv1.2", "TLSv1.3")
        sock.close()
