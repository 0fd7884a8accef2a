"""The floors of DESIGN.md, checked on the source: an AST walk of every module of the package.

Rules (see docs/architecture.md):

- floors: a module imports only from its own floor or a lower one; every module is on a floor;
- sans-I/O: F1 and F2 reach none of asyncio, socket, ssl, sqlite3, threading, selectors, redis,
  not even through another module of the package;
- client side: client/, tracking and tui reach nothing of the server side;
- cycles: no import cycle among the package's modules (``if TYPE_CHECKING:`` imports aside).

Every import counts, at module level, inside functions and under ``if TYPE_CHECKING:`` (except
for cycles, which only runtime imports can close). Importing ``a.b.c`` also runs the package
``a.b``'s ``__init__`` (but not the top package's, which every module lives in). The checker is
a function of a directory: it is tested on small fake packages that break each rule, and then
run on the real one.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import asyncchat

PACKAGE_ROOT = Path(asyncchat.__file__).parent

#: Each module's floor (a subpackage's modules take the package's), by its name under the
#: package; "__init__" is the package itself.
FLOORS: dict[str, int] = {
    # F1 wire
    "errors": 1,
    "framing": 1,
    "events": 1,
    "wire": 1,
    "validation": 1,
    "limits": 1,
    "text": 1,
    "textsearch": 1,
    "tracking": 1,
    "wsframe": 1,
    "stats": 1,
    # F2 core
    "interfaces": 2,
    "fanout": 2,
    "hub": 2,
    "presence": 2,
    "remote": 2,
    "replay": 2,
    "session": 2,
    # F3 adapters (codecs, auth, tls and metrics: where DESIGN.md puts them when they come)
    "transports": 3,
    "backends": 3,
    "client": 3,
    "codecs": 3,
    "auth": 3,
    "tls": 3,
    "metrics": 3,
    # F4 composition
    "config": 4,
    "tomlwriter": 4,
    "server": 4,
    # F5 front ends (``__main__`` is ``python -m asyncchat``: the CLI's)
    "cli": 5,
    "tui": 5,
    "__init__": 5,
    "__main__": 5,
}
FLOOR_NAMES = {
    1: "F1 wire",
    2: "F2 core",
    3: "F3 adapters",
    4: "F4 composition",
    5: "F5 front ends",
}
#: The floors that do no I/O, and what they must never reach.
SANS_IO_FLOORS = frozenset({1, 2})
IO_MODULES = frozenset({"asyncio", "socket", "ssl", "sqlite3", "threading", "selectors", "redis"})
CLIENT_SIDE = frozenset({"client", "tracking", "tui"})
SERVER_SIDE = frozenset(
    {
        "hub",
        "session",
        "fanout",
        "presence",
        "replay",
        "server",
        "transports",
        "backends",
        "config",
    }
)


@dataclass(frozen=True)
class Import:
    """One module's import of ``target`` (a full dotted name, the package's or another)."""

    importer: str
    target: str
    path: Path
    line: int
    source: str  # the statement as written
    type_checking: bool  # under ``if TYPE_CHECKING:``
    implicit: bool = False  # the package __init__ that importing a submodule runs

    def where(self, root: Path) -> str:
        via = ""
        if self.implicit:
            via = f" (which runs {self.target.replace('.', '/')}/__init__.py)"
        return f"{self.path.relative_to(root.parent)}:{self.line} `{self.source}`{via}"


@dataclass(frozen=True)
class Violation:
    rule: str  # "floors", "unplaced", "sans-io", "client-side", "cycle"
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


# ---------------------------------------------------------------- reading the package


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([root.name, *parts])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, anywhere (functions and classes included), and whether it sits
    under ``if TYPE_CHECKING:``."""

    def walk(node: ast.AST, checking: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, checking
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from walk(child, True)
            for child in node.orelse:
                yield from walk(child, checking)
            return
        for sub in ast.iter_child_nodes(node):
            yield from walk(sub, checking)

    yield from walk(tree, False)


class Package:
    """The modules of the package at ``root`` and their imports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name
        self.files: dict[str, list[Path]] = {}
        for path in sorted(root.rglob("*.py")):
            self.files.setdefault(_module_name(root, path), []).append(path)
        self.packages = {_module_name(root, p) for p in root.rglob("__init__.py")}
        self.imports: list[Import] = []
        for module, paths in self.files.items():
            for path in paths:
                self.imports += self._read(module, path)

    def internal(self, name: str) -> bool:
        return name == self.name or name.startswith(self.name + ".")

    def _known(self, name: str) -> str:
        """The module ``name`` is, or the longest module it is inside of."""
        while name not in self.files and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    def _read(self, module: str, path: Path) -> list[Import]:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        out: list[Import] = []
        for node, checking in _statements(tree):
            source = ast.unparse(node)
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = module.split(".")
                    if not is_package:
                        base.pop()
                    if node.level > 1:
                        base = base[: len(base) - (node.level - 1)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                for alias in node.names:
                    sub = f"{stem}.{alias.name}"
                    targets.append(sub if self.internal(stem) and sub in self.files else stem)
            for target in dict.fromkeys(targets):
                if self.internal(target):
                    target = self._known(target)
                out.append(Import(module, target, path, node.lineno, source, checking))
                if self.internal(target):
                    out += self._parents(module, target, path, node.lineno, source, checking)
        return out

    def _parents(
        self, module: str, target: str, path: Path, line: int, source: str, checking: bool
    ) -> Iterator[Import]:
        """The subpackages whose __init__ importing ``target`` runs, that ``module`` is not in
        already (the top package is in every module's import already)."""
        parts = target.split(".")
        for i in range(2, len(parts)):
            pkg = ".".join(parts[:i])
            if pkg in self.packages and not (module == pkg or module.startswith(pkg + ".")):
                yield Import(module, pkg, path, line, source, checking, implicit=True)

    def key(self, module: str) -> str:
        """The floor map's name for a module: its first name under the package."""
        rest = module[len(self.name) + 1 :] if module != self.name else ""
        return rest.split(".", 1)[0] if rest else "__init__"

    def edges(self, *, runtime_only: bool = False) -> dict[str, list[Import]]:
        graph: dict[str, list[Import]] = {m: [] for m in self.files}
        for imp in self.imports:
            if (
                self.internal(imp.target)
                and imp.target != imp.importer
                and not (runtime_only and imp.type_checking)
            ):
                graph[imp.importer].append(imp)
        return graph

    def external(self) -> dict[str, list[Import]]:
        out: dict[str, list[Import]] = {m: [] for m in self.files}
        for imp in self.imports:
            if not self.internal(imp.target):
                out[imp.importer].append(imp)
        return out


def _paths(
    graph: Mapping[str, list[Import]], start: str, stop: Callable[[str], bool] = lambda m: False
) -> dict[str, list[Import]]:
    """Every module ``start`` reaches, with the shortest chain of imports that gets there
    (not going on from a module for which ``stop`` is true)."""
    seen: dict[str, list[Import]] = {start: []}
    todo = deque([start])
    while todo:
        m = todo.popleft()
        if m != start and stop(m):
            continue
        for imp in graph.get(m, []):
            if imp.target not in seen:
                seen[imp.target] = [*seen[m], imp]
                todo.append(imp.target)
    return seen


def _chain(pkg: Package, start: str, chain: list[Import]) -> str:
    """``a -> b -> c: <where a imports b>; <where b imports c>``."""
    names = [start.removeprefix(pkg.name + ".")] + [
        i.target.removeprefix(pkg.name + ".") for i in chain
    ]
    return " -> ".join(names) + ": " + "; ".join(i.where(pkg.root) for i in chain)


# ---------------------------------------------------------------- the rules


def check_floors(pkg: Package, floors: Mapping[str, int] = FLOORS) -> list[Violation]:
    out: list[Violation] = []
    for module, paths in pkg.files.items():
        if pkg.key(module) not in floors:
            for path in paths:
                out.append(
                    Violation(
                        "unplaced",
                        f"{path.relative_to(pkg.root.parent)}: module {module} is on no floor: "
                        f"place {pkg.key(module)!r} on a floor in FLOORS of "
                        "tests/test_layering.py (and in DESIGN.md's and "
                        "docs/architecture.md's floors)",
                    )
                )
    for imp in pkg.imports:
        if not pkg.internal(imp.target) or imp.implicit:
            continue
        a, b = pkg.key(imp.importer), pkg.key(imp.target)
        if a in floors and b in floors and floors[b] > floors[a]:
            out.append(
                Violation(
                    "floors",
                    f"{imp.where(pkg.root)}: {a} ({FLOOR_NAMES[floors[a]]}) imports {b} "
                    f"({FLOOR_NAMES[floors[b]]}); imports only go down the floors",
                )
            )
    return out


def check_sans_io(pkg: Package, floors: Mapping[str, int] = FLOORS) -> list[Violation]:
    graph, external = pkg.edges(), pkg.external()
    out: list[Violation] = []
    for module in sorted(pkg.files):
        if floors.get(pkg.key(module)) not in SANS_IO_FLOORS:
            continue
        found: dict[str, list[Import]] = {}  # the shortest chain to each I/O module
        for reached, chain in _paths(graph, module).items():
            for imp in external[reached]:
                top = imp.target.split(".", 1)[0]
                if top in IO_MODULES and (top not in found or len(chain) + 1 < len(found[top])):
                    found[top] = [*chain, imp]
        for top, chain in sorted(found.items()):
            floor = FLOOR_NAMES[floors[pkg.key(module)]]
            out.append(
                Violation(
                    "sans-io",
                    f"{module} ({floor}, sans-I/O) reaches {top}: {_chain(pkg, module, chain)}",
                )
            )
    return out


def check_client_side(pkg: Package) -> list[Violation]:
    graph = pkg.edges()
    out: list[Violation] = []
    for module in sorted(pkg.files):
        if pkg.key(module) not in CLIENT_SIDE:
            continue

        def server(m: str) -> bool:
            return pkg.key(m) in SERVER_SIDE

        # Each way into the server side, not what the server side imports in turn.
        for reached, chain in sorted(_paths(graph, module, stop=server).items()):
            if server(reached):
                out.append(
                    Violation(
                        "client-side",
                        f"{module} (client side) reaches the server side ({reached}): "
                        f"{_chain(pkg, module, chain)}",
                    )
                )
    return out


def check_cycles(pkg: Package) -> list[Violation]:
    """Each strongly connected group of modules, shown as one cycle through it."""
    graph = pkg.edges(runtime_only=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for imp in graph[v]:
            w = imp.target
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    out: list[Violation] = []
    for group in groups:
        start = group[0]
        inside = {m: [i for i in graph[m] if i.target in group] for m in group}
        # the shortest way back to start: through any of start's imports
        best: list[Import] | None = None
        for first in inside[start]:
            rest = _paths(inside, first.target).get(start)
            if rest is not None and (best is None or len(rest) + 1 < len(best)):
                best = [first, *rest]
        assert best is not None
        out.append(Violation("cycle", f"import cycle {_chain(pkg, start, best)}"))
    return out


def check(root: Path, floors: Mapping[str, int] = FLOORS) -> list[Violation]:
    """Every layering rule broken by the package at ``root``."""
    pkg = Package(root)
    return [
        *check_floors(pkg, floors),
        *check_sans_io(pkg, floors),
        *check_client_side(pkg),
        *check_cycles(pkg),
    ]


def _report(violations: Iterable[Violation]) -> str:
    return "\n".join(str(v) for v in violations)


# ---------------------------------------------------------------- the real package


def test_the_package_keeps_its_floors() -> None:
    """Every module is on a floor and imports only from its own floor or lower ones."""
    pkg = Package(PACKAGE_ROOT)
    assert len(pkg.files) > 20  # the walk found the package
    violations = check_floors(pkg)
    assert not violations, _report(violations)


def test_wire_and_core_are_sans_io() -> None:
    """F1 and F2 reach no I/O module, not even through another module of the package."""
    violations = check_sans_io(Package(PACKAGE_ROOT))
    assert not violations, _report(violations)


def test_the_client_side_never_imports_the_server_side() -> None:
    """client, tracking and tui reach nothing of the server side."""
    violations = check_client_side(Package(PACKAGE_ROOT))
    assert not violations, _report(violations)


def test_no_import_cycles() -> None:
    """No import cycle among the package's modules (TYPE_CHECKING imports aside)."""
    violations = check_cycles(Package(PACKAGE_ROOT))
    assert not violations, _report(violations)


# ---------------------------------------------------------------- the checker on fake packages

CLEAN = {
    "__init__.py": "from .server import Server\nfrom .client import Client\n",
    "__main__.py": "from asyncchat.cli import run\n",
    "errors.py": "import enum\n",
    "validation.py": "import re\nfrom .errors import E\n",
    "framing.py": "import struct\nfrom .errors import E\n",
    "events.py": "from .errors import E\nfrom .framing import encode\n",
    "wire.py": "from . import events\nfrom .framing import HEADER\n",
    "tracking.py": "from .events import Message\n",
    "hub.py": "import logging\nfrom . import wire\nfrom .fanout import Batcher\n",
    "fanout.py": "from .events import Ref\n",
    "session.py": (
        "from typing import TYPE_CHECKING\nfrom .hub import Hub\n"
        "if TYPE_CHECKING:\n    from .replay import Replay\n"
    ),
    "replay.py": "from .session import Session\n",  # a cycle, closed only under TYPE_CHECKING
    "transports/__init__.py": "from .tcp import Listener\n",
    "transports/connection.py": "import asyncio\nfrom .. import wire\nfrom ..session import S\n",
    "transports/tcp.py": "import socket\nfrom .connection import Connection\n",
    "backends/__init__.py": "from .sqlite import Store\n",
    "backends/sqlite.py": "import sqlite3\nimport threading\nfrom ..errors import E\n",
    "client/__init__.py": "from .core import Client\n",
    "client/core.py": "import asyncio\nfrom ..tracking import T\nfrom .conn import C\n",
    "client/conn.py": "import asyncio\nfrom ..framing import HEADER\n",
    "server.py": (
        "import asyncio\nfrom typing import TYPE_CHECKING\nfrom .transports import Listener\n"
        "from .backends.sqlite import Store\nif TYPE_CHECKING:\n    from .config import Config\n"
    ),
    "config.py": "import tomllib\nfrom .limits import Limits\n",
    "limits.py": "from .errors import E\n",
    "cli/__init__.py": "from .serve import serve\n",
    "cli/serve.py": (
        "from ..server import Server\nfrom ..tui import run\nfrom .. import __version__\n"
    ),
    "tui.py": "import asyncio\nfrom .client import Client\nfrom .text import escape\n",
    "text.py": "from .events import Message\n",
}


def _tree(tmp_path: Path, changes: Mapping[str, str] | None = None) -> Path:
    """A fake asyncchat under ``tmp_path``: the files of CLEAN, with ``changes`` (path: text)."""
    root = tmp_path / "asyncchat"
    for name, text in {**CLEAN, **(changes or {})}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _messages(violations: list[Violation], rule: str) -> list[str]:
    """The messages of the violations of ``rule``."""
    return [v.message for v in violations if v.rule == rule]


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    """A fake package that keeps every rule has no violation (the checker is not all-refusing)."""
    assert check(_tree(tmp_path)) == []


def test_checker_finds_an_upward_import(tmp_path: Path) -> None:
    """An import from a higher floor is a floors violation naming the file, line and floors."""
    root = _tree(
        tmp_path, {"validation.py": "import re\nfrom .errors import E\n\nfrom .hub import Hub\n"}
    )
    assert [str(v) for v in check(root)] == [
        "[floors] asyncchat/validation.py:4 `from .hub import Hub`: validation (F1 wire) "
        "imports hub (F2 core); imports only go down the floors"
    ]


def test_checker_counts_type_checking_and_function_level_imports(tmp_path: Path) -> None:
    """Imports under TYPE_CHECKING and inside functions count for the floors."""
    root = _tree(
        tmp_path,
        {
            "validation.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .config import C\n"
                "def f():\n    from .backends import Store\n"
            ),
        },
    )
    assert _messages(check(root), "floors") == [
        "asyncchat/validation.py:3 `from .config import C`: validation (F1 wire) imports config "
        "(F4 composition); imports only go down the floors",
        "asyncchat/validation.py:5 `from .backends import Store`: validation (F1 wire) imports "
        "backends (F3 adapters); imports only go down the floors",
    ]


def test_checker_resolves_relative_imports_in_subpackages(tmp_path: Path) -> None:
    """`from ..config import X` in transports/connection.py is config, one floor up;
    `from .. import wire` is the module wire."""
    root = _tree(
        tmp_path,
        {
            "transports/connection.py": "from .. import wire\nfrom ..config import Config\n",
        },
    )
    assert _messages(check(root), "floors") == [
        "asyncchat/transports/connection.py:2 `from ..config import Config`: transports "
        "(F3 adapters) imports config (F4 composition); imports only go down the floors"
    ]


def test_checker_refuses_a_module_on_no_floor(tmp_path: Path) -> None:
    """A module the floor map does not know fails, asking to place it on a floor."""
    root = _tree(
        tmp_path, {"plugins/__init__.py": "", "plugins/registry.py": "from ..errors import E\n"}
    )
    messages = _messages(check(root), "unplaced")
    assert len(messages) == 2
    assert messages[0].startswith("asyncchat/plugins/__init__.py: module asyncchat.plugins is on")
    assert all("place 'plugins' on a floor in FLOORS" in m for m in messages)


def test_checker_finds_io_in_the_core(tmp_path: Path) -> None:
    """A sans-I/O module importing an I/O module, even inside a function, is refused."""
    root = _tree(tmp_path, {"replay.py": "def f():\n    import sqlite3\n"})
    messages = _messages(check(root), "sans-io")
    assert messages == [
        # session imports replay under TYPE_CHECKING, which counts here
        "asyncchat.replay (F2 core, sans-I/O) reaches sqlite3: replay -> sqlite3: "
        "asyncchat/replay.py:2 `import sqlite3`",
        "asyncchat.session (F2 core, sans-I/O) reaches sqlite3: session -> replay -> sqlite3: "
        "asyncchat/session.py:4 `from .replay import Replay`; "
        "asyncchat/replay.py:2 `import sqlite3`",
    ]


def test_checker_finds_io_reached_through_another_module(tmp_path: Path) -> None:
    """I/O reached through a chain of the package's own imports is refused, with the chain."""
    root = _tree(tmp_path, {"framing.py": "from .errors import E\nimport asyncio.streams\n"})
    messages = _messages(check(root), "sans-io")
    assert (
        "asyncchat.wire (F1 wire, sans-I/O) reaches asyncio: wire -> framing -> asyncio.streams: "
        "asyncchat/wire.py:2 `from .framing import HEADER`; "
        "asyncchat/framing.py:2 `import asyncio.streams`"
    ) in messages
    # framing itself, and everything in F1/F2 that imports it, directly or not
    assert {m.split(" ", 1)[0] for m in messages} == {
        "asyncchat.framing",
        "asyncchat.events",
        "asyncchat.wire",
        "asyncchat.hub",
        "asyncchat.fanout",
        "asyncchat.session",
        "asyncchat.replay",
        "asyncchat.tracking",
        "asyncchat.text",
    }


def test_checker_finds_the_client_side_reaching_the_server(tmp_path: Path) -> None:
    """A client-side module reaching a server-side one, directly or not, is refused."""
    root = _tree(tmp_path, {"client/conn.py": "import asyncio\nfrom ..backends import Store\n"})
    messages = _messages(check(root), "client-side")
    assert (
        "asyncchat.client.core (client side) reaches the server side (asyncchat.backends): "
        "client.core -> client.conn -> backends: "
        "asyncchat/client/core.py:3 `from .conn import C`; "
        "asyncchat/client/conn.py:2 `from ..backends import Store`"
    ) in messages
    assert {m.split(" ", 1)[0] for m in messages} == {
        "asyncchat.client",
        "asyncchat.client.core",
        "asyncchat.client.conn",
        "asyncchat.tui",  # tui imports the client
    }


def test_checker_knows_a_submodule_runs_its_package_init(tmp_path: Path) -> None:
    """Importing cli.serve runs cli/__init__: what that imports is reached too."""
    root = _tree(
        tmp_path,
        {
            "cli/__init__.py": "from .serve import serve\nfrom ..server import Server\n",
            "cli/serve.py": "import argparse\n",
            "tui.py": "from .client import Client\nfrom .cli.serve import serve\n",
        },
    )
    assert [str(v) for v in check(root)] == [
        "[client-side] asyncchat.tui (client side) reaches the server side (asyncchat.server): "
        "tui -> cli -> server: asyncchat/tui.py:2 `from .cli.serve import serve` (which runs "
        "asyncchat/cli/__init__.py); asyncchat/cli/__init__.py:2 `from ..server import Server`"
    ]


def test_checker_finds_an_import_cycle(tmp_path: Path) -> None:
    """A runtime import cycle is refused, with each import that closes it."""
    root = _tree(tmp_path, {"fanout.py": "from .events import Ref\nfrom .hub import Hub\n"})
    assert [str(v) for v in check(root)] == [
        "[cycle] import cycle fanout -> hub -> fanout: asyncchat/fanout.py:2 "
        "`from .hub import Hub`; asyncchat/hub.py:3 `from .fanout import Batcher`"
    ]


def test_checker_ignores_cycles_closed_under_type_checking(tmp_path: Path) -> None:
    """session <-> replay is closed only under TYPE_CHECKING in the clean tree: no cycle; made
    a runtime import, it is one."""
    assert check_cycles(Package(_tree(tmp_path / "a"))) == []
    root = _tree(
        tmp_path / "b", {"session.py": "from .hub import Hub\nfrom .replay import Replay\n"}
    )
    assert [str(v) for v in check(root)] == [
        "[cycle] import cycle replay -> session -> replay: asyncchat/replay.py:1 "
        "`from .session import Session`; asyncchat/session.py:2 `from .replay import Replay`"
    ]


BREAKING: dict[str, dict[str, str]] = {
    "floors": {"limits.py": "from .config import C\n"},
    "sans-io": {"hub.py": "import threading\n"},
    "client-side": {"tui.py": "from .client import Client\nfrom .config import C\n"},
    "cycle": {"errors.py": "from .framing import f\n"},
    "unplaced": {"utils.py": "\n"},
}


@pytest.mark.parametrize("rule", sorted(BREAKING))
def test_each_rule_can_fail(tmp_path: Path, rule: str) -> None:
    """Each rule has a fake tree that breaks it."""
    assert _messages(check(_tree(tmp_path, BREAKING[rule])), rule)
