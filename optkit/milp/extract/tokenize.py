"""NL4Opt/spaCy-like tokeniser (spec milp 3.4 item 1)."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Token", "sentences", "tokenize"]

_SPLIT = r"$%\-'\u2019,.?!;:()\"\u201c\u201d"
_TOKEN_RE = re.compile(
    r"\d+(?:[.,]\d+)+(?![\w])"  # numbers with separators/decimals stay whole: 150,000  0.5
    r"|(?-i:\b[A-Z]\.(?=\s+\S))"  # spaCy keeps a single capital + period whole mid-text ("product B. Mixture")
    r"|\b(?:can(?=not\b)|not(?<=cannot))"  # "cannot" -> "can" "not"
    r"|\w+(?=[n]['\u2019]t\b)"  # "don't" -> "do" "n't"
    r"|n['\u2019]t\b"
    r"|['\u2019]s\b"  # possessive 's separate
    rf"|[^\s{_SPLIT}]+"  # any other run of non-split characters
    rf"|[{_SPLIT}]"  # each split character alone
    r"|\S",
    re.IGNORECASE,
)
_SENT_END = {".", "?", "!"}


class Token(NamedTuple):
    """A token with its character offsets in the source text (``text[start:end] == token.text``)."""

    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens: whitespace, then ``$ % - ' , . ? ! ; : ( )`` separately, except inside
    numbers (``150,000``, ``0.5`` stay whole); ``'s`` and ``n't`` are separate tokens."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def sentences(tokens: list) -> list[list]:
    """Group tokens into sentences ending at ``.``, ``?``, ``!`` or a ``B.`` token (the last may lack one).
    Accepts :class:`Token` objects or plain strings."""
    out: list[list] = []
    cur: list = []
    for tok in tokens:
        cur.append(tok)
        txt = tok.text if isinstance(tok, Token) else tok
        if txt in _SENT_END or (len(txt) == 2 and txt[1] == "." and txt[0].isupper()):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out
