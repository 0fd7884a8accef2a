"""A small TOML writer: the stdlib reads TOML (``tomllib``) but does not write it.

Enough for ``asyncchat serve --print-config``: scalars, arrays of scalars, tables and arrays of
tables; what it writes, ``tomllib`` reads back equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["toml_document", "toml_string"]


def toml_document(table: Mapping[str, Any], path: str = "") -> str:
    """A TOML document from nested dicts: scalars, arrays of scalars, tables and arrays of
    tables. ``None`` values are left out (as a comment)."""
    lines: list[str] = []
    subtables: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) or (
            isinstance(value, list | tuple) and value and isinstance(value[0], Mapping)
        ):
            subtables.append((key, value))
        elif value is None:
            lines.append(f"# {_key(key)} is not set")
        else:
            lines.append(f"{_key(key)} = {_scalar(value)}")
    text = "".join(line + "\n" for line in lines)
    for key, value in subtables:
        name = f"{path}.{_key(key)}" if path else _key(key)
        for sub in [value] if isinstance(value, Mapping) else value:
            header = f"[{name}]" if isinstance(value, Mapping) else f"[[{name}]]"
            text += f"\n{header}\n" + toml_document(sub, name)
    return text


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else toml_string(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # "2.0", "1e-05", "inf", "nan": each a TOML float
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o < 0xE000:
            raise ConfigError(f"{text!r} is not valid Unicode text (a lone surrogate)")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
