"""Names, rooms and text as the contract allows them."""

from __future__ import annotations

import pytest

from asyncchat.errors import ErrorCode, ProtocolError
from asyncchat.validation import check_name, check_room, check_text, name_key


@pytest.mark.parametrize("name", ["bob", "Zoë", "日本語", "a" * 32, "x-y_z.1", "🙂"])
def test_valid_names(name: str) -> None:
    """Names of 1-32 visible characters are accepted."""
    check_name(name)
    check_room(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 33,
        "two words",
        "tab\there",
        "nbsp\u00a0x",
        "zw\u200bsp",
        "rtl\u202e",
        "#chan",
        "/cmd",
        "*server",
        "nul\x00",
        "bell\x07",
        "\ud800",
    ],
)
def test_invalid_names(name: str) -> None:
    """Empty, long, whitespace, control, invisible and reserved-prefix names are refused."""
    with pytest.raises(ProtocolError) as info:
        check_name(name)
    assert info.value.code is ErrorCode.NAME_INVALID
    with pytest.raises(ProtocolError) as info:
        check_room(name if len(name) <= 32 else "r" * 65)
    assert info.value.code is ErrorCode.ROOM_INVALID


def test_text_rules() -> None:
    """Text is 1 to max_text characters with no NUL; newlines are fine."""
    check_text("line one\nline two", 4000)
    check_text("é" * 4000, 4000)
    for text, code in [
        ("", ErrorCode.BAD_REQUEST),
        ("a\x00b", ErrorCode.BAD_REQUEST),
        ("x" * 4001, ErrorCode.TEXT_TOO_LONG),
    ]:
        with pytest.raises(ProtocolError) as info:
            check_text(text, 4000)
        assert info.value.code is code


def test_name_key_is_case_and_normalisation_blind() -> None:
    """Names collide without regard to case or Unicode normalisation form."""
    assert name_key("Bob") == name_key("BOB") == name_key("bob")
    assert name_key("Stra\u00dfe") == name_key("STRASSE")
    assert name_key("e\u0301") == name_key("\u00e9")
