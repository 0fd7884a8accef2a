"""The chat page in a real browser: headless Chromium (Debian's) driven by Playwright's async
API, against a server started in the same event loop (see ../shared/BROWSER-TESTS.md).

Without a browser the module is skipped with the reason, except under CI, where it fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from asyncchat import ChatServer, connect
from asyncchat.config import HistoryConfig, Listener, ServerConfig
from asyncchat.limits import Limits

from .conftest import WAIT
from .webhelpers import tcp_client

playwright_api = pytest.importorskip("playwright.async_api")
Browser = playwright_api.Browser
Page = playwright_api.Page
expect = playwright_api.expect
async_playwright = playwright_api.async_playwright

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Without the networking Chromium tries to reach outside hosts with.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
ROOT = Path(__file__).resolve().parent.parent
#: Screenshots of failed tests.
RESULTS = ROOT / "test-results"
#: The README's picture of the page, taken by test_screenshot_for_the_readme into RESULTS, and
#: into docs/ when ASYNCCHAT_UPDATE_SCREENSHOT is set (so that a test run leaves the tree clean).
SCREENSHOT = ROOT / "docs" / "chat-page.png"
MS = int(WAIT * 1000)


def chromium_path() -> str:
    """$CHROMIUM_PATH, else Debian's chromium on PATH; skip without one (fail under CI)."""
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if path is None:
        why = "no chromium on PATH (apt-get install chromium, or set CHROMIUM_PATH)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the module."""
    path = chromium_path()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        await b.close()


def _config(db: str, tcp: int = 0, web: int = 0) -> ServerConfig:
    return ServerConfig(
        listeners=(Listener(port=tcp), Listener(kind="web", port=web)),
        limits=Limits(rate=1000.0, burst=1000, history_on_join=20),
        history=HistoryConfig(db=db),
    )


@pytest_asyncio.fixture(loop_scope="module")
async def server(tmp_path: Path) -> AsyncIterator[ChatServer]:
    """A server with history in a file, a tcp and a web listener, in the browser's loop."""
    async with ChatServer(config=_config(str(tmp_path / "history.db"))) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh browser context (its own storage); screenshots of its pages if the test
    failed."""
    ctx = await browser.new_context()
    yield ctx
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        RESULTS.mkdir(exist_ok=True)
        for i, page in enumerate(ctx.pages):
            await page.screenshot(path=str(RESULTS / f"{request.node.name}-{i}.png"))
    await ctx.close()


async def new_page(ctx: Any, server: ChatServer) -> Any:
    """A page of ``server``'s chat, at its login form."""
    page = await ctx.new_page()
    assert server.web_url is not None
    await page.goto(server.web_url)
    return page


async def submit(page: Any, **fields: str) -> None:
    """Fill the login form's ``fields`` (name, rooms, password, server-password) and join."""
    for field, value in fields.items():
        await page.fill(f"#login-{field.replace('_', '-')}", value)
    await page.click("#login-form button[type=submit]")


async def open_page(ctx: Any, server: ChatServer, name: str, rooms: str = "lobby") -> Any:
    """A page of ``server``'s chat, logged in as ``name``."""
    page = await new_page(ctx, server)
    await submit(page, name=name, rooms=rooms)
    await expect(page.locator("#status")).to_have_text(f"online as {name}", timeout=MS)
    return page


async def type_and_send(page: Any, text: str) -> None:
    await page.fill("#input", text)
    await page.press("#input", "Enter")


def lines(page: Any) -> Any:
    """The message lines of the room shown."""
    return page.locator("#messages ol:not([hidden]) li")


# --------------------------------------------------------------------------- the tests


async def test_browser_and_tcp_users_chat_both_ways(server: ChatServer, context: Any) -> None:
    """A browser user and a terminal (TCP) user see each other's messages; the browser's own
    message shows pending, then acknowledged."""
    tcp = await tcp_client(server, "tess")
    page = await open_page(context, server, "wendy")
    await tcp.recv_match(type="joined", name="wendy")
    await type_and_send(page, "hello from the browser")
    mine = lines(page).filter(has_text="hello from the browser")
    await expect(mine).to_have_attribute("data-state", "acked", timeout=MS)
    msg = await tcp.recv_match(type="message")
    assert (msg["from"], msg["text"]) == ("wendy", "hello from the browser")
    tcp.send({"type": "say", "room": "lobby", "text": "hello from the terminal"})
    await expect(lines(page).filter(has_text="hello from the terminal")).to_have_count(
        1, timeout=MS
    )
    await expect(page.locator("#member-list li")).to_have_text(["tess", "wendy"], timeout=MS)
    await tcp.close()


async def test_the_printed_address_of_serve_gives_a_chat_with_terminal_users(
    context: Any,
) -> None:
    """What the README promises: `asyncchat serve` prints the chat page's address; a browser
    opening it chats with a user of `asyncchat join`, both ways."""
    from .test_cli import join_args, running

    with running(["serve", "--port", "0", "--web-port", "0", "--db", ":memory:"]) as serve:
        url = (await asyncio.to_thread(serve.err.wait_for, r"chat page at (http://\S+/) ")).group(1)
        found = await asyncio.to_thread(serve.err.wait_for, r"INFO listening on 127\.0\.0\.1:(\d+)")
        port = int(found.group(1))
        page = await context.new_page()
        await page.goto(url)
        await submit(page, name="browser")
        await expect(page.locator("#status")).to_have_text("online as browser", timeout=MS)
        with running(join_args(port, "terminal"), stdin=subprocess.PIPE) as join:
            await asyncio.to_thread(join.out.wait_for, r"you joined #lobby")
            join.write("hello from the terminal\n")
            await expect(lines(page).filter(has_text="hello from the terminal")).to_have_count(
                1, timeout=MS
            )
            await type_and_send(page, "hello from the browser")
            await asyncio.to_thread(join.out.wait_for, r"<browser> hello from the browser")


async def test_a_taken_name_asks_again(server: ChatServer, context: Any) -> None:
    """The name prompt says why a name is refused and lets the user pick another."""
    holder = await connect(*server.address, name="taken")  # answers pings: keeps its name
    page = await new_page(context, server)
    await submit(page, name="taken")
    await expect(page.locator("#login-error")).to_contain_text("taken", timeout=MS)
    await expect(page.locator("#login")).to_be_visible()
    await submit(page, name="free")
    await expect(page.locator("#status")).to_have_text("online as free", timeout=MS)
    await holder.close()


async def test_the_login_form_logs_in_to_an_account(browser: Any, tmp_path: Path) -> None:
    """Where a name is registered, the page says so and asks for its password; with it the
    user is in. A private server's password is asked for when the server requires it."""
    from asyncchat.config import AuthConfig

    from .test_auth import PASSWORD, make_accounts

    db = tmp_path / "accounts.db"
    make_accounts(db, "alice")
    auth = AuthConfig(db=str(db), server_password="letmein")
    cfg = dataclasses.replace(_config(str(tmp_path / "history.db")), auth=auth)
    ctx = await browser.new_context()
    try:
        async with ChatServer(config=cfg) as server:
            page = await new_page(ctx, server)
            await submit(page, name="alice")
            await expect(page.locator("#login-error")).to_contain_text("registered", timeout=MS)
            await expect(page.locator("#login-password")).to_be_focused()
            await submit(page, password=PASSWORD)
            await expect(page.locator("#status")).to_have_text("online as alice", timeout=MS)
            stored = await page.evaluate("() => JSON.stringify({...localStorage})")
            assert PASSWORD not in stored  # the password stays in memory
            guest = await new_page(ctx, server)
            await submit(guest, name="visitor")
            await expect(guest.locator("#login-server-row")).to_be_visible(timeout=MS)
            await submit(guest, server_password="letmein")
            await expect(guest.locator("#status")).to_have_text("online as visitor", timeout=MS)
    finally:
        await ctx.close()


async def test_a_pending_message_is_acked_with_its_seq(server: ChatServer, context: Any) -> None:
    """A sent message is marked pending until its ack, then takes the ack's seq."""
    page = await open_page(context, server, "penny")
    await page.evaluate(
        "() => { window.__held = []; const send = WebSocket.prototype.send;"
        " WebSocket.prototype.send = function (d) { window.__held.push([this, d]); };"
        " window.__release = () => { WebSocket.prototype.send = send;"
        " for (const [ws, d] of window.__held) send.call(ws, d); }; }"
    )
    await type_and_send(page, "wait for it")
    mine = lines(page).filter(has_text="wait for it")
    await expect(mine).to_have_attribute("data-state", "pending", timeout=MS)
    await expect(mine).to_contain_text("sending…")
    await page.evaluate("() => window.__release()")
    await expect(mine).to_have_attribute("data-state", "acked", timeout=MS)
    seq = await mine.get_attribute("data-seq")
    assert seq is not None and float(seq).is_integer() and int(float(seq)) >= 1


async def test_the_composer_and_the_keyboard(server: ChatServer, context: Any) -> None:
    """Shift+Enter makes a new line and Enter sends both lines as one message; a refused
    message is marked failed with the server's reason; Alt+Down moves to the next room."""
    page = await open_page(context, server, "typist", "lobby dev")
    tcp = await tcp_client(server, "reader")
    await page.click("#room-list button:has-text('#lobby')")
    await page.fill("#input", "first line")
    await page.press("#input", "Shift+Enter")
    await page.type("#input", "second line")
    await page.press("#input", "Enter")
    got = await tcp.recv_match(type="message", **{"from": "typist"})
    assert got["text"] == "first line\nsecond line"
    too_long = "x" * (server.limits.max_text + 1)
    await page.evaluate(f"() => {{ document.getElementById('input').value = '{too_long}'; }}")
    await page.press("#input", "Enter")
    failed = lines(page).filter(has_text="not sent:")
    await expect(failed).to_have_attribute("data-state", "failed", timeout=MS)
    await expect(failed).to_contain_text(str(server.limits.max_text))
    await page.press("#input", "Alt+ArrowDown")
    await expect(page.locator("#room-title")).to_have_text("#dev")
    await expect(page.locator("#room-list button:has-text('#dev')")).to_have_attribute(
        "aria-current", "true"
    )
    await tcp.close()


async def test_two_browser_users_chat_and_dm(
    server: ChatServer, context: Any, browser: Any
) -> None:
    """Two browser users in a room see each other's messages, unread and mention counts, and
    a direct message opens a conversation of its own."""
    alice = await open_page(context, server, "alice", "lobby dev")
    other = await browser.new_context()
    try:
        bob = await open_page(other, server, "bob", "lobby dev")
        await type_and_send(alice, "hi bob, in the lobby")
        await expect(lines(bob).filter(has_text="hi bob, in the lobby")).to_have_count(
            1, timeout=MS
        )
        await expect(lines(bob).filter(has_text="hi bob")).to_have_class("mention")
        await alice.click("#room-list button:has-text('#dev')")
        await type_and_send(alice, "bob: a word in dev")
        dev = bob.locator("#room-list button:has-text('#dev') .badge")
        await expect(dev).to_have_text("1", timeout=MS)
        await expect(bob).to_have_title("(1) asyncchat — bob")
        await type_and_send(alice, "/msg bob a secret")
        dm = bob.locator("#dm-list button:has-text('@alice')")
        await expect(dm).to_have_count(1, timeout=MS)
        await dm.click()
        await expect(lines(bob).filter(has_text="a secret")).to_have_count(1)
    finally:
        await other.close()


async def test_topic_and_away(server: ChatServer, context: Any) -> None:
    """A topic set from the terminal shows under the room's name, /topic from the page reaches
    the terminal, and who is away is marked in the member list."""
    page = await open_page(context, server, "topical")
    tcp = await tcp_client(server, "setter")
    tcp.send({"type": "topic", "room": "lobby", "text": "release <b>Friday</b>", "id": 1})
    await expect(page.locator("#room-topic")).to_have_text("release <b>Friday</b>", timeout=MS)
    await type_and_send(page, "/topic ship it")
    got = await tcp.recv_match(type="topic", by="topical")
    assert got["text"] == "ship it"
    await expect(page.locator("#room-topic")).to_have_text("ship it", timeout=MS)
    tcp.send({"type": "away", "message": "at lunch", "id": 2})
    setter = page.locator("#member-list li", has_text="setter")
    await expect(setter).to_contain_text("away: at lunch", timeout=MS)
    await expect(lines(page).filter(has_text="setter is away: at lunch")).to_have_count(1)
    await type_and_send(page, "/away brb")
    assert (await tcp.recv_match(type="away", name="topical"))["message"] == "brb"
    await tcp.close()


async def test_hostile_strings_are_shown_as_text(server: ChatServer, context: Any) -> None:
    """Markup, script URLs, bidi overrides and very long words in names and messages are
    shown as text: no element is made from them, no script runs, the layout holds; only
    http(s) links become links, with rel=noopener noreferrer."""
    page = await open_page(context, server, "viewer")
    tcp = await tcp_client(server, "<img_src=x_onerror=alert(1)>")
    hostile = [
        "<img src=x onerror=window.__pwned=1>",
        "<script>window.__pwned=2</script>",
        "\u202eevil override\u202c then normal",
        "w" * 3000,
        "javascript:window.__pwned=3 and https://example.org/x?a=<b>.",
    ]
    for text in hostile:
        tcp.send({"type": "say", "room": "lobby", "text": text})
    await expect(lines(page).filter(has_text="javascript:")).to_have_count(1, timeout=MS)
    assert await page.evaluate("() => window.__pwned") is None
    assert await page.locator("#messages img, #messages script").count() == 0
    shown = await lines(page).filter(has_text="onerror=window").first.text_content()
    assert "<img src=x onerror=window.__pwned=1>" in (shown or "")
    links = page.locator("#messages a")
    await expect(links).to_have_count(1)
    assert await links.get_attribute("href") == "https://example.org/x?a="  # stops at the <
    assert await links.get_attribute("rel") == "noopener noreferrer"
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= await page.evaluate("() => window.innerWidth")  # the long word wraps
    await tcp.close()


async def test_history_scroll_back(server: ChatServer, context: Any) -> None:
    """Scrolling to the top of a room fetches older messages page by page, down to the first,
    with no duplicates and in order."""
    tcp = await tcp_client(server, "old-timer")
    total = 130
    for i in range(1, total + 1):
        tcp.send({"type": "say", "room": "lobby", "text": f"old message {i}", "id": i})
    for _ in range(total):
        await tcp.recv_match(type="ack")
    page = await open_page(context, server, "reader")
    await expect(lines(page).filter(has_text="old message 130")).to_have_count(1, timeout=MS)
    first = lines(page).locator(".text", has_text=re.compile(r"^old message 1$"))
    async with asyncio.timeout(4 * WAIT):
        while not await first.count():
            await page.evaluate("() => { document.getElementById('messages').scrollTop = 0; }")
            await asyncio.sleep(0.05)
    texts = await lines(page).locator(".text").all_text_contents()
    olds = [t for t in texts if t.startswith("old message ")]
    assert olds == [f"old message {i}" for i in range(1, total + 1)]
    await tcp.close()


async def test_a_server_restart_is_survived_with_the_gap_shown(
    context: Any, tmp_path: Path
) -> None:
    """The page reconnects by itself after a restart of the server, resumes, and says how many
    messages it missed; they are shown in order."""
    db = str(tmp_path / "restart.db")
    first = ChatServer(config=_config(db))
    await first.start()
    tcp_port = first.address[1]
    web_port = int(first.web_url.rstrip("/").rsplit(":", 1)[1])  # type: ignore[union-attr]
    page = await open_page(context, first, "stayer")
    await type_and_send(page, "before the restart")
    await expect(lines(page).filter(has_text="before the restart")).to_have_attribute(
        "data-state", "acked", timeout=MS
    )
    await first.close()
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "reconnecting", timeout=MS
    )
    second = ChatServer(config=_config(db, tcp=tcp_port, web=web_port))
    await second.start()
    try:
        # Messages posted while the page is away, before it is back.
        tcp = await tcp_client(second, "talker")
        for i in range(3):
            tcp.send({"type": "say", "room": "lobby", "text": f"missed {i}", "id": i})
            await tcp.recv_match(type="ack")
        await expect(page.locator("#status")).to_have_text("online as stayer", timeout=4 * MS)
        await expect(lines(page).filter(has_text="back, 3 missed messages")).to_have_count(
            1, timeout=MS
        )
        texts = await lines(page).locator(".text").all_text_contents()
        assert texts[-3:] == ["missed 0", "missed 1", "missed 2"]
        await tcp.close()
    finally:
        await second.close()


async def test_the_mobile_viewport(server: ChatServer, browser: Any) -> None:
    """On a phone-sized screen the page is one column with no sideways scrolling; the room
    list opens from its button and chat works."""
    ctx = await browser.new_context(
        viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True
    )
    try:
        page = await open_page(ctx, server, "phone")
        assert await page.locator("#rooms").is_hidden()
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375
        await page.click("#toggle-rooms")
        await expect(page.locator("#rooms")).to_be_visible()
        await expect(page.locator("#toggle-rooms")).to_have_attribute("aria-expanded", "true")
        await page.click("#room-list button:has-text('#lobby')")
        await expect(page.locator("#rooms")).to_be_hidden()
        await type_and_send(page, "from a phone")
        await expect(lines(page).filter(has_text="from a phone")).to_have_attribute(
            "data-state", "acked", timeout=MS
        )
    finally:
        await ctx.close()


async def test_the_dark_theme_follows_the_system(server: ChatServer, browser: Any) -> None:
    """With prefers-color-scheme: dark the page is dark, and light otherwise."""
    for scheme, dark in (("dark", True), ("light", False)):
        ctx = await browser.new_context(color_scheme=scheme)
        try:
            page = await open_page(ctx, server, f"{scheme}-user")
            rgb = await page.evaluate("() => getComputedStyle(document.body).backgroundColor")
            levels = [int(x) for x in re.findall(r"\d+", rgb)[:3]]
            assert (sum(levels) < 150) == dark, rgb
        finally:
            await ctx.close()


async def test_screenshot_for_the_readme(server: ChatServer, browser: Any) -> None:
    """The README's picture: a browser user chatting with terminal users (docs/chat-page.png)."""
    ctx = await browser.new_context(viewport={"width": 1000, "height": 560})
    try:
        tcp = await tcp_client(server, "alice")
        bob = await tcp_client(server, "bob")
        tcp.send({"type": "topic", "room": "lobby", "text": "release on Friday, notes in #dev"})
        page = await open_page(ctx, server, "carol", "lobby dev")
        await page.click("#room-list button:has-text('#lobby')")
        await expect(page.locator("#room-topic")).to_contain_text("release", timeout=MS)
        tcp.send({"type": "say", "room": "lobby", "text": "morning! the build is green again"})
        bob.send(
            {
                "type": "say",
                "room": "lobby",
                "text": "nice. notes are at https://example.org/notes",
                "action": False,
            }
        )
        await expect(lines(page).filter(has_text="notes are at")).to_have_count(1, timeout=MS)
        await type_and_send(page, "thanks alice, joining from the browser")
        tcp.send({"type": "say", "room": "lobby", "text": "welcome carol!"})
        await expect(lines(page).filter(has_text="welcome carol")).to_have_count(1, timeout=MS)
        await expect(lines(page).filter(has_text="joining from")).to_have_attribute(
            "data-state", "acked", timeout=MS
        )
        RESULTS.mkdir(exist_ok=True)
        taken = RESULTS / SCREENSHOT.name
        await page.screenshot(path=str(taken))
        assert taken.stat().st_size > 10_000
        if os.environ.get("ASYNCCHAT_UPDATE_SCREENSHOT"):
            shutil.copyfile(taken, SCREENSHOT)
        await tcp.close()
        await bob.close()
    finally:
        await ctx.close()
