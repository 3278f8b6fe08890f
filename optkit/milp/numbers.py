"""Number parsing for natural-language decision problems (spec milp 3.4.3 and 3.8).

Two parsers live here, on purpose different:

* :func:`parse_number` -- the strict parser used by the IR and the formulators. It accepts an optional
  currency, one numeral (digits, number words, fractions, multipliers), an optional percent / cents marker
  and at most three trailing unit words; anything else raises :class:`~optkit._errors.InvalidProblemError`
  naming the field and the raw text. It never returns 0 for text it does not understand, and labels such as
  ``"2-piece"``, ``"x1"`` or ``"Aleph 3"`` are not numbers.
* :func:`official_number` -- a re-implementation of the number handling of the official NL4Opt scorer
  (used only by the faithful scorer, :func:`optkit.milp.scoring.nl4opt_score`). It keeps the official quirks
  (non-digit characters are deleted, ``"2-piece" -> 2``; non-number words are ignored; anything else
  becomes 0) and reports whether the 0 came from a failed parse so that scorers can count it.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from .._errors import InvalidProblemError

__all__ = ["ParsedNumber", "parse_number", "official_number", "parse_number_words"]


class ParsedNumber(NamedTuple):
    """Result of :func:`parse_number`.

    ``kind`` is ``"number"``, ``"percent"`` (value already divided by 100), ``"cents"`` (divided by 100),
    ``"fraction"`` (``"a third"``, ``"1/3"``) or ``"multiplier"`` (``"twice"``, ``"3 times"``, ``"2-fold"``).
    """

    value: float
    unit: str | None
    raw: str
    kind: str = "number"


# ----------------------------------------------------------------------------------------------- words

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9}
_DENOMINATORS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
    "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8,
    "ninth": 9, "ninths": 9, "tenth": 10, "tenths": 10,
}
_MULTIPLIER_WORDS = {"twice": 2.0, "thrice": 3.0, "double": 2.0, "triple": 3.0, "quadruple": 4.0}
_NUMBER_WORDS = set(_UNITS) | set(_TEENS) | set(_TENS) | set(_SCALES) | {"hundred", "dozen"}


def parse_number_words(words: list[str]) -> float:
    """Value of a well-formed English cardinal given as lowercase words (no hyphens, no "and" handling
    beyond ``"one hundred and fifty"``). ``"a"`` counts as one before ``hundred``/scales/``dozen``.
    Raises ``ValueError`` on malformed sequences ("five twenty", "thousand thousand")."""
    if not words:
        raise ValueError("no number words")
    total = 0.0          # completed scale groups
    current = 0.0        # group below the next scale word
    last = None          # kind of the previous word: unit, teen, tens, hundred, scale, dozen, a, and
    last_scale = math.inf
    for i, w in enumerate(words):
        if w == "a":
            if i != 0 or len(words) == 1 or words[1] not in ("hundred", "dozen", *_SCALES):
                raise ValueError(f"'a' not followed by hundred/thousand/million/billion/dozen: {words}")
            current, last = 1.0, "a"
        elif w == "and":
            if last not in ("hundred", "scale") or i == len(words) - 1:
                raise ValueError(f"misplaced 'and' in {words}")
            last = "and"
        elif w in _UNITS or w in _TEENS:
            v = _UNITS.get(w, _TEENS.get(w))
            if last == "tens" and w in _UNITS and v > 0:
                current += v
            elif last in (None, "hundred", "scale", "and"):
                if last is not None and v == 0:
                    raise ValueError(f"misplaced 'zero' in {words}")
                current += v
            else:
                raise ValueError(f"malformed number words {words}")
            last = "unit" if w in _UNITS else "teen"
        elif w in _TENS:
            if last not in (None, "hundred", "scale", "and"):
                raise ValueError(f"malformed number words {words}")
            current += _TENS[w]
            last = "tens"
        elif w == "hundred":
            if last not in ("unit", "teen", "a") or current >= 100 or current == 0:
                raise ValueError(f"malformed number words {words}")
            current = current * 100
            last = "hundred"
        elif w in _SCALES:
            scale = _SCALES[w]
            if last in (None, "scale", "and") or scale >= last_scale or current == 0 and last != "a":
                raise ValueError(f"malformed number words {words}")
            total += current * scale
            current, last, last_scale = 0.0, "scale", scale
        elif w == "dozen":
            if last not in ("unit", "teen", "tens", "a", "hundred") or i != len(words) - 1:
                raise ValueError(f"malformed number words {words}")
            current = (current if current else 1.0) * 12
            last = "dozen"
        else:
            raise ValueError(f"not a number word: {w!r}")
    if last == "and":
        raise ValueError(f"misplaced 'and' in {words}")
    return total + current


# ----------------------------------------------------------------------------------------- tokenizer

_TOKEN_RE = re.compile(
    r"(?P<num>\d+(?:,\d+)*(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+)"
    r"|(?P<word>[A-Za-z]+)"
    r"|(?P<sym>[$%¢/\-+])"
    r"|(?P<other>\S)"
)
_GROUPED_RE = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?$|^\.\d+$")


class _Tok(NamedTuple):
    text: str
    kind: str       # num, word, sym, other
    space: bool     # preceded by whitespace (or start of string)


def _tokenize(s: str) -> list[_Tok]:
    toks = []
    pos = 0
    for m in _TOKEN_RE.finditer(s):
        space = m.start() == 0 or s[pos:m.start()].strip() == "" and m.start() > pos
        toks.append(_Tok(m.group(), m.lastgroup, space or m.start() == 0))
        pos = m.end()
    return toks


def _fail(field: str, raw, why: str):
    raise InvalidProblemError(f"{field}: cannot parse a number from {raw!r} ({why})")


def parse_number(raw, *, field: str = "value") -> ParsedNumber:
    """Strictly parse a number written in a problem statement (spec milp 3.4.3).

    Accepted: optional currency (``$``, ``USD``); one numeral -- digits with ``d{1,3}(,ddd)+`` separators or
    decimals (an optional sign, ``1e5``), number words up to billions (``"one hundred thousand"``,
    ``"twenty-five"``, ``"a dozen"``), digits followed by scale words (``"1.5 million"``), fractions
    (``"half"``, ``"a third"``, ``"two thirds"``, ``"three-quarters"``, ``"1/3"``), multipliers (``"twice"``,
    ``"thrice"``, ``"double"``, ``"triple"``, ``"N times"``, ``"N-fold"``); an optional ``%`` / ``percent`` /
    ``per cent`` (value / 100) or ``¢`` / ``cents`` (value / 100); then at most three whitespace-separated
    letters-only unit words, returned as ``unit`` (``"8000 minutes"``). ints and floats pass through.

    Anything else raises :class:`InvalidProblemError` naming ``field`` and the raw text.
    """
    if isinstance(raw, bool):
        _fail(field, raw, "a boolean is not a number")
    if isinstance(raw, (int, float)):
        v = float(raw)
        if not math.isfinite(v):
            _fail(field, raw, "not finite")
        return ParsedNumber(v, None, str(raw))
    if not isinstance(raw, str):
        _fail(field, raw, f"expected a string or a number, got {type(raw).__name__}")
    toks = _tokenize(raw.strip())
    if not toks:
        _fail(field, raw, "empty")
    low = [t.text.lower() for t in toks]
    i = 0
    n = len(toks)

    # optional currency
    currency = False
    if low[0] in ("$", "usd"):
        currency, i = True, 1
        if i < n and low[i] == "$":  # "US $"? keep strict: "usd $" is not accepted
            _fail(field, raw, "repeated currency")
    if i >= n:
        _fail(field, raw, "no numeral")

    kind = "number"
    value: float | None = None

    # --- numeral ------------------------------------------------------------------------------------------
    sign = 1.0
    if low[i] in ("-", "+") and i + 1 < n and toks[i + 1].kind == "num" and not toks[i + 1].space:
        sign = -1.0 if low[i] == "-" else 1.0
        i += 1
    if toks[i].kind == "num":
        text = toks[i].text
        if not _GROUPED_RE.match(text):
            _fail(field, raw, f"bad digit grouping {text!r}")
        value = sign * float(text.replace(",", ""))
        i += 1
        # "1/3"
        if i + 1 < n and low[i] == "/" and toks[i + 1].kind == "num" and "," not in text and "." not in text:
            den = float(toks[i + 1].text) if _GROUPED_RE.match(toks[i + 1].text) else 0.0
            if den == 0 or "." in toks[i + 1].text or "," in toks[i + 1].text:
                _fail(field, raw, "bad fraction")
            value, kind, i = value / den, "fraction", i + 2
        else:
            # digits followed by scale words: "1.5 million", "2 thousand", "3 dozen"
            scale_words = []
            while i < n and toks[i].space and low[i] in ("hundred", "dozen", *_SCALES):
                scale_words.append(low[i])
                i += 1
            if scale_words:
                if "dozen" in scale_words and len(scale_words) > 1:
                    _fail(field, raw, "malformed scale words")
                mult, prev = 1.0, 0.0
                for w in scale_words:
                    scale = {"hundred": 100.0, "dozen": 12.0}.get(w) or _SCALES[w]
                    if scale <= prev:
                        _fail(field, raw, "malformed scale words")
                    mult, prev = mult * scale, scale
                value *= mult
    elif low[i] in _MULTIPLIER_WORDS:
        value, kind, i = _MULTIPLIER_WORDS[low[i]], "multiplier", i + 1
    elif toks[i].kind == "word":
        # word numeral: number words, possibly hyphenated ("twenty-five"), "a" before hundred/dozen/fraction
        words = []
        j = i
        while j < n:
            w = low[j]
            if w == "and" and low[j + 1:j + 3] == ["a", "half"]:
                break
            if toks[j].kind == "word" and (w in _NUMBER_WORDS or w == "a" or (w == "and" and words)):
                if words and not toks[j].space and low[j - 1] != "-":
                    break
                words.append(w)
                j += 1
            elif w == "-" and words and j + 1 < n and not toks[j].space and not toks[j + 1].space \
                    and (low[j + 1] in _NUMBER_WORDS or low[j + 1] in _DENOMINATORS):
                j += 1
            else:
                break
        # a trailing "and" belongs to what follows ("one and a half")
        tail_and = bool(words) and words[-1] == "and"
        if tail_and:
            words.pop()
            j -= 1
        fraction_den = None
        numerator = None
        if j < n and low[j] in _DENOMINATORS and toks[j].kind == "word":
            fraction_den = _DENOMINATORS[low[j]]
            if not words:
                numerator = 1.0
            elif words == ["a"]:
                numerator = 1.0
            else:
                try:
                    numerator = parse_number_words(words)
                except ValueError as e:
                    _fail(field, raw, str(e))
            if low[j].endswith("s") and numerator == 1.0:
                _fail(field, raw, "singular numerator with plural fraction word")
            value, kind = numerator / fraction_den, "fraction"
            i = j + 1
        elif words:
            try:
                value = parse_number_words(words)
            except ValueError as e:
                _fail(field, raw, str(e))
            i = j
            # "one and a half"
            if i + 2 < n and low[i:i + 3] == ["and", "a", "half"]:
                value += 0.5
                i += 3
        else:
            _fail(field, raw, f"{toks[i].text!r} is not a numeral")
    else:
        _fail(field, raw, f"{toks[i].text!r} is not a numeral")

    # --- multiplier suffix: "N times", "N-fold" -----------------------------------------------------------
    if kind == "number" and i < n:
        if low[i] == "times" and toks[i].space:
            kind, i = "multiplier", i + 1
        elif low[i] == "-" and i + 1 < n and low[i + 1] == "fold" and not toks[i].space and not toks[i + 1].space:
            kind, i = "multiplier", i + 2
        elif low[i] == "fold" and toks[i].space:
            kind, i = "multiplier", i + 1
    if value is None:
        _fail(field, raw, "no numeral")

    # --- percent / cents ----------------------------------------------------------------------------------
    if i < n:
        pct = None
        if low[i] == "%":
            pct = 1
        elif low[i] in ("percent", "pct") and toks[i].space:
            pct = 1
        elif low[i] == "per" and i + 1 < n and low[i + 1] == "cent" and toks[i].space:
            pct = 2
        if pct is not None:
            if currency or kind in ("multiplier",):
                _fail(field, raw, "percent combined with a currency or multiplier")
            value, kind, i = value / 100.0, "percent", i + pct
        elif low[i] == "¢" or (low[i] in ("cents", "cent") and toks[i].space):
            if currency or kind != "number":
                _fail(field, raw, "cents combined with a currency, fraction or multiplier")
            value, kind, i = value / 100.0, "cents", i + 1

    # --- unit words -----------------------------------------------------------------------------------------
    unit_words = []
    while i < n:
        t = toks[i]
        if t.kind != "word" or not t.space:
            _fail(field, raw, f"unexpected {t.text!r}")
        unit_words.append(t.text)
        i += 1
    if len(unit_words) > 3:
        _fail(field, raw, "more than three unit words")
    if not math.isfinite(value):
        _fail(field, raw, "not finite")
    return ParsedNumber(float(value), " ".join(unit_words) if unit_words else None, raw, kind)


# -------------------------------------------------------------------------------- official (faithful)

# the official scorer's small table, looked up on the exact (stripped, percent-free) text
_OFFICIAL_TABLE = {
    "a half": 1 / 2, "half": 1 / 2, "one half": 1 / 2,
    "one third": 1 / 3, "third": 1 / 3, "a third": 1 / 3,
    "one fourth": 1 / 4, "fourth": 1 / 4, "a fourth": 1 / 4,
    "one fifth": 1 / 5, "fifth": 1 / 5, "a fifth": 1 / 5,
    "twice": 2, "thrice": 3,
}
_W2N_WORDS = {**_UNITS, **_TEENS, **{k: v for k, v in _TENS.items() if k != "fourty"},
              "hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}


def _group_value(words: list[str]) -> float:
    """Value of a group below a scale word, as the common word-to-number packages compute it."""
    nums = [_W2N_WORDS[w] for w in words]
    if not nums:
        raise ValueError("empty group")
    if len(nums) >= 4:
        return nums[0] * nums[1] + nums[2] + nums[3]
    if len(nums) == 3:
        return nums[0] * nums[1] + nums[2]
    if len(nums) == 2:
        return nums[0] * nums[1] if 100 in nums else nums[0] + nums[1]
    return nums[0]


def _lenient_words_to_number(text: str) -> float:
    """Word-number parse that ignores every non-number word ("three times" -> 3), with a decimal part after
    "point". Raises ValueError when no number word is present or scale words repeat / are out of order."""
    words = [w for w in text.replace("-", " ").lower().split() if w in _W2N_WORDS or w == "point"]
    if not words:
        raise ValueError("no number words")
    for w in ("thousand", "million", "billion", "point"):
        if words.count(w) > 1:
            raise ValueError(f"redundant {w!r}")
    decimals: list[str] = []
    if "point" in words:
        k = words.index("point")
        words, decimals = words[:k], words[k + 1:]
    idx = {w: (words.index(w) if w in words else -1) for w in ("billion", "million", "thousand")}
    b, m, t = idx["billion"], idx["million"], idx["thousand"]
    if (t > -1 and (t < m or t < b)) or (m > -1 and m < b):
        raise ValueError("malformed number")
    total = 0.0
    if len(words) == 1:
        total = float(_W2N_WORDS[words[0]])
    elif words:
        start = 0
        for pos, scale in ((b, 1e9), (m, 1e6), (t, 1e3)):
            if pos > -1:
                total += _group_value(words[start:pos]) * scale
                start = pos + 1
        if start < len(words):
            total += _group_value(words[start:])
    if decimals:
        digits = []
        for w in decimals:
            v = _W2N_WORDS[w]
            if v > 9:
                raise ValueError("decimal part must be single digits")
            digits.append(str(v))
        total += float("0." + "".join(digits))
    return total


def official_number(raw) -> tuple[float, bool]:
    """Number handling of the official NL4Opt scorer (faithful scorer only; spec milp 3.8).

    Steps: strip, delete ``,``, strip edge ``;``/``,``/``$`` and trailing dots; ``percent``/``%``/``¢``
    anywhere -> x 1/100; ``float``; else if any digit or dot: delete every character that is not a digit or
    a dot (``"2-piece" -> 2``); else the small word table (a/one half, third, fourth, fifth; twice; thrice);
    else a word-number parse ignoring non-number words (``"three times" -> 3``); else **0**.

    Returns ``(value, zero_parsed)`` where ``zero_parsed`` is True when the 0 comes from a failed parse.
    Raises :class:`InvalidProblemError` where the official code itself raises (digits stripped to nothing
    parseable, e.g. ``"1.2.3"``); the faithful scorer turns that into an unparsable document.
    """
    if isinstance(raw, bool):
        raise InvalidProblemError(f"cannot parse a number from {raw!r}")
    if isinstance(raw, (int, float)):
        return float(raw), False
    if not isinstance(raw, str):
        raise InvalidProblemError(f"cannot parse a number from {raw!r} (not a string)")
    x = raw.strip().replace(",", "").strip(";,$")
    x = re.sub(r"\.+$", "", x)
    mult = 1.0
    x_sub = re.sub("(percent)|%|¢", "", x)
    if x_sub != x:
        mult, x = 1 / 100, x_sub
    try:
        return float(x) * mult, False
    except ValueError:
        pass
    if re.search(r"[\d.]+", x):
        digits = re.sub(r"[^0-9.]", "", x)
        try:
            return float(digits) * mult, False
        except ValueError:
            raise InvalidProblemError(f"cannot parse a number from {raw!r} (official parser raises)") from None
    if x in _OFFICIAL_TABLE:
        return _OFFICIAL_TABLE[x] * mult, False
    try:
        return float(_lenient_words_to_number(x)) * mult, False
    except ValueError:
        return 0.0, True
