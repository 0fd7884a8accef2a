"""The full-screen client's colours, and their monochrome form (``NO_COLOR``, ``--no-color``)."""

from __future__ import annotations

from prompt_toolkit.styles import Style

from .model import NICK_COLOURS

__all__ = ["style_for"]

#: Readable on dark and light backgrounds alike; the nick colours are far apart in hue.
_NICKS = (
    "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2",
    "#d19a66", "#be5046", "#7ec699", "#f08d49", "#9d8cff", "#f7768e",
)  # fmt: skip

_COLOURS = {
    "time": "#7f848e",
    "info": "#6a9fb5",
    "join": "#7f848e",
    "error": "#ff6b6b bold",
    "pending": "#7f848e italic",
    "separator": "#7f848e",
    "bracket": "#7f848e",
    "action": "#c678dd",
    "me": "bold",
    "mention": "#ffd75f bold",
    "prompt": "bold",
    "status": "bg:#24364f #e6e6e6",
    "status.ok": "bg:#24364f #98c379 bold",
    "status.bad": "bg:#24364f #ff8787 bold",
    "status.active": "bg:#24364f #ffffff bold",
    "status.mention": "bg:#24364f #ffd75f bold",
    "status.topic": "bg:#24364f #c8ccd4",
}
_MONOCHROME = {
    "error": "bold",
    "me": "bold",
    "mention": "bold underline",
    "prompt": "bold",
    "status": "reverse",
    "status.ok": "reverse",
    "status.bad": "reverse bold",
    "status.active": "reverse bold",
    "status.mention": "reverse bold underline",
    "status.topic": "reverse",
    "pending": "italic",
}

assert len(_NICKS) == NICK_COLOURS


def style_for(color: bool) -> Style:
    """The client's style: coloured, or bold/reverse/underline only."""
    if not color:
        return Style.from_dict(_MONOCHROME)
    rules = dict(_COLOURS)
    rules.update({f"nick.{i}": c for i, c in enumerate(_NICKS)})
    return Style.from_dict(rules)
