"""What ``search`` matches, as pure functions: a text's words and a search's terms as SQLite
FTS5's ``unicode61`` tokenizer (``remove_diacritics 2``) sees them, so a scan in Python finds
exactly what the SQLite store's search index finds (tests/test_search_index.py compares them),
and the cluster's mirror of recent messages matches the same way.

A token is a run of letters, digits and private-use characters; case is folded, and Latin
letters lose their accents. A search is whitespace-separated words; a message matches when it
has every word whole (a word of several tokens, like ``don't``, as those tokens in a row)."""

from __future__ import annotations

import unicodedata

__all__ = ["fts_query", "matches", "query_terms", "tokens"]

# FTS5's unicode61 tokenizer: a token is a run of letters, digits and private-use characters,
# and of the combining diacritics it removes (sqlite3Fts5UnicodeIsdiacritic: these masks over
# U+0300..U+0331); it folds case, and with remove_diacritics 2 strips those diacritics from
# Latin letters (below U+0250, and Latin Extended Additional) only.
_DIA_MASKS = (0x08029FDF, 0x000361F8)


def _is_diacritic(c: int) -> bool:
    if c < 768 or c > 817:
        return False
    return bool(_DIA_MASKS[c >= 800] & (1 << ((c - 768) % 32)))


_DIACRITICS = {c: None for c in range(768, 818) if _is_diacritic(c)}


def _token_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LN" or cat == "Co" or _is_diacritic(ord(ch))


def _fold(token: str) -> str:
    if token.isascii():
        return token.lower()
    out = []
    for ch in token:
        c = ord(ch)
        if _is_diacritic(c):  # removed, also where it follows no Latin letter
            continue
        low = ch.lower()
        if c < 0x250 or 0x1E00 <= c < 0x1F00:
            low = unicodedata.normalize("NFD", low).translate(_DIACRITICS)
        out.append(low)
    return "".join(out)


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` as the index sees them, in order."""
    if text.isascii():
        words = "".join(ch if ch.isalnum() else " " for ch in text).lower().split()
        return words
    found: list[str] = []
    run: list[str] = []
    for ch in text:
        if _token_char(ch):
            run.append(ch)
        elif run:
            found.append(_fold("".join(run)))
            run = []
    if run:
        found.append(_fold("".join(run)))
    return [t for t in found if t]


def query_terms(words: str) -> list[tuple[str, ...]]:
    """Each whitespace-separated word of a search, as the tokens it must match in a row.
    Raises ``ValueError`` when there is no word."""
    terms = [tuple(tokens(w)) for w in words.split()]
    if not terms:
        raise ValueError("no words to search for")
    return terms


def fts_query(words: str) -> str:
    """An FTS5 query matching texts with every one of ``words``, each quoted (so none is
    taken for an operator). Raises ``ValueError`` when there is no word."""
    terms = words.split()
    if not terms:
        raise ValueError("no words to search for")
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def _loose(text: str) -> str:
    """A cheap superset test's view of a text: lower case, Latin diacritics dropped."""
    low = text.lower()
    if low.isascii():
        return low
    return unicodedata.normalize("NFD", low).translate(_DIACRITICS)


def matches(text: str, terms: list[tuple[str, ...]]) -> bool:
    """Whether the index would find ``text`` for these terms (see :func:`query_terms`): each
    term's tokens appear in the text's tokens one after the other. A term without tokens
    (only punctuation) is left out, and a search of only such terms matches nothing, as in
    FTS5."""
    terms = [term for term in terms if term]
    if not terms:
        return False
    loose = _loose(text)
    for term in terms:
        if not all(_loose(t) in loose for t in term):
            return False
    have = tokens(text)
    for term in terms:
        k = len(term)
        if not any(tuple(have[i : i + k]) == term for i in range(len(have) - k + 1)):
            return False
    return True
