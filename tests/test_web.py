"""The web listener without a browser: /ws against the same hub as TCP, the page's headers,
/metrics, /healthz and /readyz, and the limits (message size, Origin, slow consumers)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from asyncchat.wsframe import RenderOnce, text_frame_header, to_text_frames

from .conftest import WAIT
from .test_history import _FailingStore
from .webhelpers import http_get, tcp_client, web_server, ws_open, ws_url

NO_FLOOD = {"rate": 1e6, "burst": 1_000_000}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --------------------------------------------------------------------------- frames


def test_native_frames_become_one_text_frame_each() -> None:
    """Each native frame becomes an unmasked final text frame with the same JSON, for the
    three sizes of the length field."""
    payloads = [b'{"a":1}', b"x" * 200, b"y" * 70_000]
    native = b"".join(len(p).to_bytes(4, "big") + p for p in payloads)
    expected = b"".join(text_frame_header(len(p)) + p for p in payloads)
    assert to_text_frames(native) == expected
    assert text_frame_header(7) == b"\x81\x07"
    assert text_frame_header(200) == b"\x81\x7e\x00\xc8"
    assert text_frame_header(70_000)[:2] == b"\x81\x7f"
    with pytest.raises(ValueError, match="truncated"):
        to_text_frames(native[:-1])


def test_render_once_renders_the_same_bytes_object_once() -> None:
    """The same bytes object handed again is not rendered again; an equal but other object
    is."""
    render = RenderOnce(to_text_frames)
    batch = b"\x00\x00\x00\x02{}"
    first = render(batch)
    assert render(batch) is first and (render.hits, render.misses) == (1, 1)
    render(bytes(bytearray(batch)))
    assert render.misses == 2


# --------------------------------------------------------------------------- chat


async def test_websocket_and_tcp_users_chat_both_ways() -> None:
    """A WebSocket user and a TCP user in one room see each other's messages, joins and acks
    exactly as two TCP users would."""
    async with web_server() as server:
        tcp = await tcp_client(server, "tess")
        web = await ws_open(server, "wendy")
        assert (await tcp.recv_match(type="joined"))["name"] == "wendy"
        await web.send({"type": "say", "room": "lobby", "text": "from the browser", "id": 1})
        ack = await web.recv_match(type="ack")
        msg = await tcp.recv_match(type="message")
        assert (msg["from"], msg["text"], msg["seq"]) == ("wendy", "from the browser", ack["seq"])
        tcp.send({"type": "say", "room": "lobby", "text": "from the terminal", "id": "t"})
        got = await web.recv_match(type="message")
        assert (got["from"], got["text"]) == ("tess", "from the terminal")
        await web.send({"type": "who", "room": "lobby", "id": 2})
        assert (await web.recv_match(type="who"))["names"] == ["tess", "wendy"]
        await web.close()
        assert (await tcp.recv_match(type="left"))["name"] == "wendy"
        await tcp.close()


async def test_a_room_batch_is_rendered_once_for_all_websocket_members() -> None:
    """Five WebSocket members sharing a room's batch cost one render, not five."""
    async with web_server(**NO_FLOOD) as server:
        members = [await ws_open(server, f"w{i}") for i in range(5)]
        sender = await tcp_client(server, "sender")
        for m in members:  # everyone has seen every join: nothing private is pending
            await m.send({"type": "ping", "data": "sync"})
            await m.recv_match(type="pong")
        render = server.listeners[1].render  # type: ignore[union-attr]
        before = (render.hits, render.misses)
        sender.send({"type": "say", "room": "lobby", "text": "to all"})
        for m in members:
            assert (await m.recv_match(type="message"))["text"] == "to all"
        assert (render.hits - before[0], render.misses - before[1]) == (4, 1)


async def test_an_oversized_message_closes_with_1009_and_the_room_sees_left() -> None:
    """A message over max_frame is refused on its header: the WebSocket closes with 1009
    (message too big) and the sender leaves its rooms."""
    async with web_server(max_frame=4096) as server:
        tcp = await tcp_client(server, "tess")
        web = await ws_open(server, "big")
        await tcp.recv_match(type="joined", name="big")
        await web.ws.send('{"type": "say", "room": "lobby", "text": "' + "x" * 5000 + '"}')
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await web.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert (await tcp.recv_match(type="left"))["name"] == "big"


async def test_a_full_server_refuses_a_websocket_with_the_reason() -> None:
    """At max_connections (TCP and WebSocket counted together) a new WebSocket gets
    error too_many_connections and bye, then close code 1013 (try again later)."""
    async with web_server(max_connections=1, per_ip_exempt=()) as server:
        tcp = await tcp_client(server, "first")
        async with connect(ws_url(server)) as ws:
            frames = [json.loads(await asyncio.wait_for(ws.recv(), WAIT)) for _ in range(2)]
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), WAIT)
        assert [f["type"] for f in frames] == ["error", "bye"]
        assert frames[0]["code"] == "too_many_connections"
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        await tcp.close()


async def test_a_foreign_origin_is_refused_and_allowed_ones_are_not() -> None:
    """/ws answers 403 to a page of another origin; its own origin, a listed one and a
    client that sends no Origin (a bot) get the WebSocket."""
    async with web_server(origins=("https://chat.example",)) as server:
        url = ws_url(server)
        with pytest.raises(InvalidStatus) as info:
            await connect(url, origin="http://evil.example")  # type: ignore[arg-type]
        assert info.value.response.status_code == 403
        own = server.web_url.rstrip("/")  # type: ignore[union-attr]
        for origin in (own, "https://chat.example", None):
            async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
                await ws.send('{"type": "hello", "name": "o", "version": 1}')
                assert '"welcome"' in await asyncio.wait_for(ws.recv(), WAIT)


async def test_a_websocket_reader_that_never_reads_is_evicted() -> None:
    """A WebSocket member that stops reading is evicted as a slow consumer (left
    slow_consumer) and the others go on chatting."""
    async with web_server(max_outbox=16_384, **NO_FLOOD) as server:
        sender = await tcp_client(server, "sender")
        watcher = await tcp_client(server, "watcher")
        await ws_open(server, "sloth", rcvbuf=4096)
        await watcher.recv_match(type="joined", name="sloth")
        for i in range(3000):
            sender.send({"type": "say", "room": "lobby", "text": "z" * 1000})
            if i % 100 == 99:
                await sender.writer.drain()
                await asyncio.sleep(0)
        left = await watcher.recv_match(type="left", name="sloth", timeout=4 * WAIT)
        assert left["reason"] == "slow_consumer"
        assert "sloth" not in server.members
        metrics = _samples((await http_get(server, "/metrics"))[2].decode())
        assert metrics[("asyncchat_evictions_total", (("reason", "slow_consumer"),))] == 1
        web = await ws_open(server, "after")
        sender.send({"type": "say", "room": "lobby", "text": "still fine?"})
        assert (await web.recv_match(type="message", text="still fine?"))["from"] == "sender"


# --------------------------------------------------------------------------- HTTP


async def test_the_page_and_its_assets_come_with_a_strict_policy() -> None:
    """GET / is the chat page with a Content-Security-Policy allowing nothing from elsewhere;
    its script and style are served by the same listener; an unknown path is 404."""
    async with web_server() as server:
        status, headers, body = await http_get(server, "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        html = body.decode()
        assert "<script" in html and "<style" not in html and "onclick" not in html
        todo = re.findall(r'(?:src|href)="(/[^"]+)"', html)
        seen: set[str] = set()
        while todo:  # the page's files and the modules its scripts import, all served here
            asset = todo.pop()
            if asset in seen:
                continue
            seen.add(asset)
            status, headers, body = await http_get(server, asset)
            assert status == 200, asset
            todo += ["/" + m for m in re.findall(r'from "\./([\w.]+)"', body.decode())]
        assert {"/app.js", "/view.js", "/net.js", "/state.js", "/style.css"} <= seen
        status, _, _ = await http_get(server, "/nope")
        assert status == 404


async def test_healthz_and_readyz() -> None:
    """/healthz says the process serves; /readyz says ready, then 503 with the reason once the
    history store has failed."""
    store = _FailingStore(":memory:")
    async with web_server(store=store) as server:
        assert (await http_get(server, "/healthz"))[0] == 200
        status, _, body = await http_get(server, "/readyz")
        assert (status, body) == (200, b"ready\n")
        tcp = await tcp_client(server, "alice")
        store.broken = True
        tcp.send({"type": "say", "room": "lobby", "text": "lost", "id": 1})
        async with asyncio.timeout(WAIT):
            while store.failed is None:
                await asyncio.sleep(0.01)
        status, _, body = await http_get(server, "/readyz")
        assert status == 503 and b"history store failed" in body
        assert (await http_get(server, "/healthz"))[0] == 200


async def test_metrics_parse_and_their_counters_move() -> None:
    """/metrics is Prometheus text that prometheus_client parses, and its counters follow
    what happened: connections by transport, members, messages, acks, refusals."""
    async with web_server() as server:
        status, headers, body = await http_get(server, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        before = _samples(body.decode())
        assert before[("asyncchat_messages_received_total", ())] == 0
        tcp = await tcp_client(server, "tess")
        web = await ws_open(server, "wendy")
        await web.send({"type": "say", "room": "lobby", "text": "hi", "id": 1})
        await web.recv_match(type="ack")
        await tcp.recv_match(type="message")
        await web.send({"type": "leave", "room": "nowhere", "id": 2})
        await web.recv_match(type="error")
        after = _samples((await http_get(server, "/metrics"))[2].decode())
        assert after[("asyncchat_connections", (("transport", "tcp"),))] == 1
        assert after[("asyncchat_connections", (("transport", "ws"),))] == 1
        assert after[("asyncchat_members", ())] == 2
        assert after[("asyncchat_messages_received_total", ())] == 1
        assert after[("asyncchat_messages_delivered_total", ())] == 1
        assert after[("asyncchat_acks_total", ())] == 1
        assert after[("asyncchat_refusals_total", (("code", "not_in_room"),))] == 1
        assert after[("asyncchat_history_batch_records_count", ())] >= 1
        assert after[("asyncchat_history_commit_seconds_count", ())] >= 1
        assert ("asyncchat_event_loop_lag_seconds_count", ()) in after
        assert ("process_cpu_seconds_total", ()) in after


async def test_the_web_listener_serves_https_and_wss(tmp_path: Path) -> None:
    """With a certificate the web listener serves the page over HTTPS and /ws as WSS, whose
    own origin is the https one."""
    trustme = pytest.importorskip("trustme")
    from asyncchat.tls import client_context

    from .test_tls import _files

    chain, key, cafile = _files(tmp_path, trustme.CA(), "127.0.0.1")
    async with web_server(tls=(chain, key)) as server:
        url = server.web_url
        assert url is not None and url.startswith("https://127.0.0.1:")
        ctx = client_context(cafile)

        def get(path: str) -> bytes:
            with urllib.request.urlopen(url + path, timeout=WAIT, context=ctx) as reply:
                return reply.read()  # type: ignore[no-any-return]

        assert await asyncio.to_thread(get, "healthz") == b"ok\n"
        async with connect(ws_url(server), ssl=ctx, origin=url.rstrip("/")) as ws:  # type: ignore[arg-type]
            await ws.send('{"type": "hello", "name": "secure", "version": 1}')
            assert '"welcome"' in await asyncio.wait_for(ws.recv(), WAIT)
        with pytest.raises(InvalidStatus):
            await connect(ws_url(server), ssl=ctx, origin=url.replace("https", "http")[:-1])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the CLI


def test_serve_prints_the_page_address_and_serves_it() -> None:
    """asyncchat serve --web-port 0 logs the chat page's address, and that address serves
    the page, while the chat port serves the native protocol."""
    from .test_cli import running

    with running(["serve", "--port", "0", "--web-port", "0", "--db", ":memory:"]) as proc:
        m = proc.err.wait_for(r"INFO chat page at (http://127\.0\.0\.1:\d+/) ")
        with urllib.request.urlopen(m.group(1), timeout=WAIT) as reply:
            assert b'<script type="module" src="/app.js">' in reply.read()
        with urllib.request.urlopen(m.group(1) + "healthz", timeout=WAIT) as reply:
            assert reply.read() == b"ok\n"
        assert proc.err.wait_for(r"INFO listening on 127\.0\.0\.1:(\d+)")


def test_a_taken_web_port_is_a_one_line_error() -> None:
    """A web port in use stops serve with exit 1 and one line naming that address, as for
    the chat port."""
    from .test_cli import no_traceback, running

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with running(["serve", "--port", "0", "--web-port", str(port)]) as proc:
            assert proc.wait() == 1
            err = proc.err.text
    no_traceback(err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"127.0.0.1:{port}" in lines[0] and "already in use" in lines[0], err
