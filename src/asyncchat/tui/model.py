"""The display model of the full-screen client: windows, scrollback, activity, wrapping.

Sans-I/O: no terminal, no asyncio. The application feeds it what happens (events the client
yields, lines the user typed, acks) and asks it what to draw (:meth:`Display.view`,
:meth:`Display.status`), as prompt_toolkit style/text fragments. It is tested without a
terminal.

One window per room and per private conversation (a "query"), numbered from 1 in the order
they opened, each with its own scrollback. A window that is not on screen counts its unread
messages and the mentions of the user's name among them; the status bar lists them
(``[Act: 2(5),3(1*)]``).
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prompt_toolkit.utils import get_cwidth

from ..text import escape
from ..validation import name_key

__all__ = [
    "DEFAULT_SCROLLBACK",
    "Display",
    "Fragment",
    "Line",
    "Window",
    "nick_style",
    "wrap",
]

#: Lines each window keeps: a day of a busy room, a few hundred KB at the most per window.
DEFAULT_SCROLLBACK = 5_000
#: Nick colours (prompt_toolkit style classes ``nick.0`` … ``nick.N-1``).
NICK_COLOURS = 12

Fragment = tuple[str, str]


def nick_style(name: str) -> str:
    """The stable style class of a nick: the same colour for the same name, every run."""
    return f"class:nick.{zlib.crc32(name_key(name).encode()) % NICK_COLOURS}"


@dataclass(eq=False)
class Line:
    """One entry of a window's scrollback: a time (None: none shown), its fragments, and how
    much the body is indented when it wraps."""

    ts: float | None
    body: list[Fragment]
    #: Pending (sent, not acknowledged) lines are shown dim until :meth:`Display.acked`.
    pending: bool = False
    #: Characters of the body after which wrapped lines are indented (the ``<nick> ``).
    indent: int = 0

    @property
    def plain(self) -> str:
        """The line's text without styles (for searching the scrollback)."""
        return "".join(text for _, text in self.body)


@dataclass(eq=False)
class Window:
    """One window: a room (``#name``) or a private conversation with ``name``."""

    name: str
    query: bool = False
    lines: deque[Line] = field(default_factory=lambda: deque(maxlen=DEFAULT_SCROLLBACK))
    unread: int = 0
    mentions: int = 0
    #: Lines scrolled back from the bottom (0: the newest line is at the bottom).
    scroll: int = 0
    topic: str | None = None
    #: The members (rooms), for completion.
    names: set[str] = field(default_factory=set)
    #: The last day (YYYY-MM-DD) a line was dated with, for the day-change separator.
    day: str | None = None

    @property
    def title(self) -> str:
        return self.name if self.query else f"#{self.name}"

    @property
    def key(self) -> str:
        return ("@" if self.query else "#") + name_key(self.name)


def _width(text: str) -> int:
    return sum(get_cwidth(ch) for ch in text)


def wrap(fragments: list[Fragment], width: int, indent: int) -> list[list[Fragment]]:
    """``fragments`` as rows of at most ``width`` cells, broken at spaces where it can (in the
    middle of a word longer than a row otherwise); rows after the first start with ``indent``
    spaces (a hanging indent). A newline in the text starts a row too."""
    width = max(width, 2)
    indent = min(indent, width // 2)
    rows: list[list[Fragment]] = []
    row: list[Fragment] = []
    used = 0
    # Words (with the spaces before them), each keeping its style.
    words: list[tuple[str, str]] = []
    for style, text in fragments:
        start = 0
        for i, ch in enumerate(text):
            if ch in " \n":
                if i > start:
                    words.append((style, text[start:i]))
                words.append((style, ch))
                start = i + 1
        if start < len(text):
            words.append((style, text[start:]))

    def newline() -> None:
        nonlocal row, used
        rows.append(row)
        row = [("", " " * indent)] if indent else []
        used = indent

    for style, word in words:
        if word == "\n":
            newline()
            continue
        w = _width(word)
        if word == " ":
            if used + 1 <= width:
                row.append((style, " "))
                used += 1
            continue
        if used + w > width and used > indent:
            while row and row[-1][1] == " ":  # no trailing space at the break
                row.pop()
                used -= 1
            newline()
        while used + w > width:  # a word longer than a row: cut it
            cut, cells = 0, 0
            while cut < len(word) and used + cells + get_cwidth(word[cut]) <= width:
                cells += get_cwidth(word[cut])
                cut += 1
            cut = max(cut, 1)
            row.append((style, word[:cut]))
            word = word[cut:]
            w = _width(word)
            newline()
        if word:
            row.append((style, word))
            used += w
    rows.append(row)
    return rows


class Display:
    """Every window and what the status bar says. ``me`` is the user's name (mentions);
    ``clock`` gives the time of lines that carry none."""

    def __init__(self, me: str, *, clock: Callable[[], float] = time.time) -> None:
        self.me = me
        self.clock = clock
        self.windows: list[Window] = []
        self.current = 0
        #: Connection state for the status bar: "connecting", "connected", "reconnecting
        #: (attempt 3, next in 2.1 s)", "offline".
        self.state = "connecting"
        #: While reconnecting: the attempt, and when the next one starts (``clock`` time).
        self.attempt = 0
        self.retry_at: float | None = None
        #: Lines typed and not acknowledged yet.
        self.queued = 0
        #: The user's away message, or None.
        self.away: str | None = None
        #: Set when a mention arrives; the application rings the bell and clears it.
        self.bell = False
        self._back_lines: list[Line] = []

    # ------------------------------------------------------------------ windows

    def find(self, name: str, *, query: bool = False) -> Window | None:
        """The window of room ``name`` (a leading ``#`` is allowed) or of a query."""
        key = ("@" if query else "#") + name_key(name.removeprefix("#") if not query else name)
        return next((w for w in self.windows if w.key == key), None)

    def open(self, name: str, *, query: bool = False, focus: bool = False) -> Window:
        """The window of ``name``, opened (at the end) if it was not; ``focus`` shows it."""
        w = self.find(name, query=query)
        if w is None:
            w = Window(name, query=query)
            self.windows.append(w)
        elif w.name != name and not query:
            w.name = name  # the server's spelling wins
        if focus:
            self.focus(self.windows.index(w))
        return w

    def close(self, w: Window) -> None:
        """Close window ``w``; the one before it is shown if it was."""
        i = self.windows.index(w)
        del self.windows[i]
        if self.current >= len(self.windows) or self.current > i:
            self.current = max(0, self.current - 1)
        self._seen()

    @property
    def window(self) -> Window | None:
        """The window on screen (None before any window opened)."""
        return self.windows[self.current] if self.windows else None

    def focus(self, index: int) -> bool:
        """Show window ``index`` (from 0); False if there is none."""
        if not 0 <= index < len(self.windows):
            return False
        self.current = index
        self._seen()
        return True

    def cycle(self, step: int) -> None:
        """Show the next (1) or previous (-1) window."""
        if self.windows:
            self.focus((self.current + step) % len(self.windows))

    def next_active(self) -> bool:
        """Show the window with activity, mentions first, then the oldest number; False when
        no window has any."""
        active = [i for i, w in enumerate(self.windows) if w.unread and i != self.current]
        if not active:
            return False
        self.focus(min(active, key=lambda i: (not self.windows[i].mentions, i)))
        return True

    def _seen(self) -> None:
        w = self.window
        if w is not None:
            w.unread = w.mentions = 0

    # ------------------------------------------------------------------ lines

    def add(
        self,
        w: Window | None,
        body: list[Fragment],
        *,
        ts: float | None = None,
        indent: int = 0,
        activity: bool = False,
        pending: bool = False,
    ) -> Line:
        """Append a line to ``w`` (None: the window on screen, or a new status window).
        ``activity``: a message, counted unread when ``w`` is not on screen."""
        if w is None:
            w = self.window or self.open("status", query=True)
        ts_shown = self.clock() if ts is None else ts
        day = time.strftime("%Y-%m-%d", time.localtime(ts_shown))
        if w.day is not None and day != w.day:
            label = time.strftime("%A %d %B %Y", time.localtime(ts_shown))
            w.lines.append(Line(None, [("class:separator", f"── day changed to {label} ──")]))
        w.day = day
        line = Line(ts_shown, body, pending=pending, indent=indent)
        w.lines.append(line)
        if w.scroll:
            w.scroll += 1  # the user reading back keeps his place
        if activity and w is not self.window:
            w.unread += 1
            if self.mentions_me(line.plain):
                w.mentions += 1
        if activity and self.mentions_me(line.plain):
            self.bell = True
        return line

    def info(self, text: str, w: Window | None = None, style: str = "class:info") -> Line:
        """A notice line (``-- text``) in ``w`` (default: the window on screen)."""
        return self.add(w, [(style, f"-- {text}")])

    def error(self, text: str, w: Window | None = None) -> Line:
        """An error line, in red."""
        return self.add(w, [("class:error", f"!! {text}")])

    def mentions_me(self, text: str) -> bool:
        """Whether ``text`` names the user (as a word, without regard to case)."""
        me = name_key(self.me)
        folded = name_key(text)
        start = folded.find(me)
        while start >= 0:
            end = start + len(me)
            before = folded[start - 1] if start else " "
            after = folded[end] if end < len(folded) else " "
            if not before.isalnum() and not after.isalnum():
                return True
            start = folded.find(me, start + 1)
        return False

    def message_body(self, sender: str, text: str, *, action: bool = False) -> list[Fragment]:
        """The fragments of a chat line: ``<nick> text`` or ``* nick text``, escaped, the
        user's name highlighted."""
        nick = escape(sender)
        body = escape(text, newlines=True)
        style = "class:me" if name_key(sender) == name_key(self.me) else nick_style(sender)
        text_style = "class:mention" if self.mentions_me(text) and style != "class:me" else ""
        if action:
            return [("class:action", "* "), (style, nick), (text_style, " " + body)]
        return [("class:bracket", "<"), (style, nick), ("class:bracket", "> "), (text_style, body)]

    # ------------------------------------------------------------------ reconnecting

    def back_marker(self, w: Window) -> None:
        """Before the first missed message of ``w`` after a reconnect: a line that
        :meth:`reconnected` fills in."""
        line = self.info("back, catching up…", w)
        self._back_lines.append(line)

    def reconnected(self, text: str) -> None:
        """The client is back: ``text`` says what was missed; it goes where the missed
        messages begin (or in the window on screen)."""
        if self._back_lines:
            for line in self._back_lines:
                line.body = [("class:info", f"-- {text}")]
            self._back_lines = []
        else:
            self.info(text)

    # ------------------------------------------------------------------ drawing

    def view(self, width: int, height: int) -> list[Fragment]:
        """The window on screen as fragments, ``height`` rows of ``width`` cells at the
        most, the newest at the bottom (less the scroll)."""
        w = self.window
        if w is None or height <= 0:
            return []
        rows: list[list[Fragment]] = []
        skip = w.scroll
        for line in reversed(w.lines):
            line_rows = self.render_line(line, width)
            if skip >= len(line_rows):
                skip -= len(line_rows)
                continue
            if skip:
                line_rows = line_rows[:-skip]
                skip = 0
            rows[:0] = line_rows
            if len(rows) >= height:
                break
        rows = rows[-height:]
        out: list[Fragment] = []
        for i, row in enumerate(rows):
            if i:
                out.append(("", "\n"))
            out.extend(row)
        return out

    @staticmethod
    def render_line(line: Line, width: int) -> list[list[Fragment]]:
        """One scrollback line as rows: the dim time, the body, wrapped with a hanging indent."""
        stamp: list[Fragment] = []
        if line.ts is not None:
            stamp = [("class:time", time.strftime("%H:%M", time.localtime(line.ts)) + " ")]
        body = line.body
        if line.pending:
            body = [("class:pending", text) for _, text in body] + [("class:pending", " …")]
        lead = sum(_width(t) for _, t in stamp)
        return wrap(stamp + body, width, lead + line.indent)

    def scroll(self, rows: int) -> None:
        """Scroll the window on screen back (positive) or forward (negative) by ``rows``
        lines, within its scrollback."""
        w = self.window
        if w is not None:
            w.scroll = max(0, min(len(w.lines) - 1, w.scroll + rows))

    def search_back(self, words: str) -> bool:
        """Scroll the window on screen back to the newest line above the current position
        that contains ``words`` (without regard to case); False if none does."""
        w = self.window
        if w is None:
            return False
        needle = words.casefold()
        lines = list(w.lines)
        for back in range(w.scroll + 1, len(lines)):
            if needle in lines[-1 - back].plain.casefold():
                w.scroll = back
                return True
        return False

    def activity(self) -> list[Fragment]:
        """``[Act: 2(5),3(1*)]``: the windows with unread messages, and their mentions."""
        parts: list[Fragment] = []
        for i, w in enumerate(self.windows):
            if not w.unread or i == self.current:
                continue
            if parts:
                parts.append(("class:status", ","))
            count = f"{w.unread}" + (f",{w.mentions}*" if w.mentions else "")
            style = "class:status.mention" if w.mentions else "class:status.active"
            parts.append((style, f"{i + 1}({count})"))
        if not parts:
            return []
        return [("class:status", " [Act: "), *parts, ("class:status", "]")]

    def status(self) -> list[Fragment]:
        """The status bar: connection state, name, window number and title, topic, activity."""
        w = self.window
        where = f"{self.current + 1}:{w.title}" if w is not None else "-"
        state = self.state
        if state == "reconnecting":
            state += f", attempt {self.attempt}"
            if self.retry_at is not None and self.retry_at - self.clock() >= 1:
                state += f", next in {self.retry_at - self.clock():.0f} s"
        state_style = "class:status.ok" if self.state == "connected" else "class:status.bad"
        me = escape(self.me) + (" (away)" if self.away else "")
        out: list[Fragment] = [
            ("class:status", "["),
            (state_style, state),
            ("class:status", f"] [{me}] [{escape(where)}]"),
        ]
        if self.queued:
            out.append(("class:status.bad", f" [{self.queued} queued]"))
        out += self.activity()
        if w is not None and w.topic:
            out.append(("class:status.topic", f" {escape(w.topic)}"))
        return out

    def completions(self, prefix: str, *, at_start: bool) -> list[str]:
        """Words completing ``prefix``: nicks of the window (``nick: `` at the start of a
        line), ``/commands``, ``#rooms`` and query names."""
        from .commands import COMMANDS  # the command table lives with the commands

        if prefix.startswith("/") and at_start:
            return sorted({c + " " for c in COMMANDS if c.startswith(prefix.lower())})
        if prefix.startswith("#"):
            p = name_key(prefix[1:])
            rooms = [w.title for w in self.windows if not w.query]
            return sorted(r + " " for r in rooms if name_key(r[1:]).startswith(p))
        w = self.window
        names: Iterable[str] = set(w.names) if w is not None else set()
        names = {*names, *(x.name for x in self.windows if x.query and x.name != "status")}
        p = name_key(prefix)
        found = sorted((n for n in names if name_key(n).startswith(p)), key=str.casefold)
        suffix = ": " if at_start else " "
        return [n + suffix for n in found]
