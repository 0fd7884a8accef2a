"""The machinery of the typed events: member checkers, ``Event`` (from and to the wire).

Each wire member is declared with :func:`_m` (its checker, its default, its JSON name); an
event is built from its JSON object by checking each member, and turned back into one, leaving
out optional members at their default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, TypeVar

from ..errors import ErrorCode, ProtocolError
from ..framing import MAX_ID, safe_ref

PROTOCOL_VERSION = 1

Ref = str | int


class _Bad(Exception):
    """A member has the wrong type; the message says what was expected."""


def _str(v: Any) -> str:
    if type(v) is str:
        return v
    raise _Bad("a string")


def _int(v: Any) -> int:
    if type(v) is int:
        return v
    raise _Bad("an integer")


def _seq(v: Any) -> int:
    if type(v) is int and v >= 0:
        return v
    raise _Bad("a non-negative integer")


def _num(v: Any) -> float:
    if type(v) in (int, float):
        return float(v)
    raise _Bad("a number")


def _bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    raise _Bad("a boolean")


def _ref(v: Any) -> Ref:
    if type(v) is int or (type(v) is str and len(v) <= MAX_ID):
        return v
    raise _Bad(f"a string of at most {MAX_ID} characters or an integer")


def _any(v: Any) -> Any:
    return v


def _names(v: Any) -> tuple[str, ...]:
    if type(v) is list and all(type(x) is str for x in v):
        return tuple(v)
    raise _Bad("a list of strings")


def _seqmap(v: Any) -> dict[str, int]:
    if type(v) is dict and all(type(s) is int and s >= 0 for s in v.values()):
        return v
    raise _Bad("an object mapping room names to non-negative integers")


def _numbers(v: Any) -> dict[str, float]:
    if type(v) is dict and all(type(x) in (int, float) for x in v.values()):
        return v
    raise _Bad("an object of numbers")


def _strmap(v: Any) -> dict[str, str]:
    if type(v) is dict and all(type(x) is str for x in v.values()):
        return v
    raise _Bad("an object of strings")


def _rooms(v: Any) -> tuple[RoomInfo, ...]:
    if type(v) is not list:
        raise _Bad("a list of {name, members} objects")
    out = []
    for r in v:
        if (
            type(r) is not dict
            or type(r.get("name")) is not str
            or type(r.get("members")) is not int
        ):
            raise _Bad("a list of {name, members} objects")
        out.append(RoomInfo(name=r["name"], members=r["members"]))
    return tuple(out)


def _m(
    kind: Callable[[Any], Any],
    default: Any = MISSING,
    *,
    wire: str | None = None,
    secret: bool = False,
) -> Any:
    """A wire member: its checker, its default (none: required) and its JSON name if not the
    attribute's; a ``secret`` (a password, a token) is left out of the event's repr."""
    return field(default=default, repr=not secret, metadata={"kind": kind, "wire": wire})


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One entry of ``rooms.rooms``."""

    name: str
    members: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of all events; ``TYPE`` is the wire ``type``."""

    TYPE: ClassVar[str] = ""

    @classmethod
    def _spec(cls) -> tuple[tuple[str, str, Callable[[Any], Any], bool, Any], ...]:
        """(attribute, wire name, checker, required, default) per member, computed once per
        class and kept on it."""
        spec = cls.__dict__.get("_SPEC_CACHE")
        if spec is None:
            spec = tuple(
                (
                    f.name,
                    f.metadata.get("wire") or f.name,
                    f.metadata["kind"],
                    f.default is MISSING,
                    f.default,
                )
                for f in dataclasses.fields(cls)
            )
            type.__setattr__(cls, "_SPEC_CACHE", spec)
        return spec

    @classmethod
    def from_wire(cls: type[_E], obj: Mapping[str, Any]) -> _E:
        """Build the event from its JSON object; raises ``ProtocolError(bad_request)``."""
        kwargs: dict[str, Any] = {}
        for attr, wire, kind, required, _default in cls._spec():
            if wire in obj and obj[wire] is not None:
                try:
                    kwargs[attr] = kind(obj[wire])
                except _Bad as exc:
                    raise ProtocolError(
                        ErrorCode.BAD_REQUEST,
                        f"{cls.TYPE}.{wire} must be {exc}",
                        ref=safe_ref(obj),
                    ) from None
            elif required:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"{cls.TYPE} requires the member {wire!r}",
                    ref=safe_ref(obj),
                )
        return cls(**kwargs)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object of this event; optional members at their default are left out."""
        out: dict[str, Any] = {"type": self.TYPE}
        for attr, wire, _kind, required, default in self._spec():
            value = getattr(self, attr)
            if required or value != default:
                out[wire] = value
        return out


_E = TypeVar("_E", bound=Event)
