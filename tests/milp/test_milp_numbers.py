"""Strict number parser (spec milp 3.4.3, 6 "Numbers") and the official NL4Opt number handling (3.8)."""

import pytest

from optkit._errors import InvalidProblemError
from optkit.milp.numbers import ParsedNumber, official_number, parse_number, parse_number_words


# the spec's Numbers bullet, exactly
@pytest.mark.parametrize("raw, value, unit", [
    ("$150,000", 150000.0, None),
    ("60%", 0.6, None),
    ("thirty percent", 0.3, None),
    ("a third", 1 / 3, None),
    ("twice", 2.0, None),
    ("three times", 3.0, None),
    ("50¢", 0.5, None),
    ("1.5 million", 1.5e6, None),
    ("one hundred thousand", 1e5, None),
    ("8000 minutes", 8000.0, "minutes"),
])
def test_spec_numbers(raw, value, unit):
    p = parse_number(raw)
    assert isinstance(p, ParsedNumber)
    assert p.value == value
    assert p.unit == unit
    assert p.raw == raw


@pytest.mark.parametrize("raw", ["x1", "2-piece", ""])
def test_spec_numbers_raise(raw):
    with pytest.raises(InvalidProblemError):
        parse_number(raw)


@pytest.mark.parametrize("raw, value, kind", [
    ("4,000", 4000.0, "number"),
    ("7.5%", 0.075, "percent"),
    ("5 per cent", 0.05, "percent"),
    ("USD 100", 100.0, "number"),
    ("$ 2.5", 2.5, "number"),
    ("third", 1 / 3, "fraction"),
    ("half", 0.5, "fraction"),
    ("two thirds", 2 / 3, "fraction"),
    ("three-quarters", 0.75, "fraction"),
    ("a quarter", 0.25, "fraction"),
    ("1/3", 1 / 3, "fraction"),
    ("thrice", 3.0, "multiplier"),
    ("double", 2.0, "multiplier"),
    ("triple", 3.0, "multiplier"),
    ("2 times", 2.0, "multiplier"),
    ("ten times", 10.0, "multiplier"),
    ("3-fold", 3.0, "multiplier"),
    ("twenty-five", 25.0, "number"),
    ("a dozen", 12.0, "number"),
    ("2 dozen", 24.0, "number"),
    ("one and a half", 1.5, "number"),
    ("one thousand two hundred and fifty", 1250.0, "number"),
    ("fifteen hundred", 1500.0, "number"),
    ("two million three hundred thousand", 2.3e6, "number"),
    ("3 billion", 3e9, "number"),
    ("75 cents", 0.75, "cents"),
    ("0.5", 0.5, "number"),
    ("-5", -5.0, "number"),
])
def test_more_numbers(raw, value, kind):
    p = parse_number(raw)
    assert p.value == pytest.approx(value, rel=1e-15)
    assert p.kind == kind
    assert p.unit is None


def test_unit_words():
    assert parse_number("200 kg of ham") == ParsedNumber(200.0, "kg of ham", "200 kg of ham", "number")
    assert parse_number("$4,000 in ETF").unit == "in ETF"
    assert parse_number(12) == ParsedNumber(12.0, None, "12", "number")


@pytest.mark.parametrize("raw", ["Aleph 3", "10,00", "1,5", "five twenty", "2x", "thousand thousand", "one thirds",
                                 "$5%", "a", "twenty-", "1/0", "8000 minutes of work time", "1.", "nan", "inf",
                                 "   ", "two 3", "3 4", "twice%", "$50¢", None, True, float("nan")])
def test_bad_numbers_raise(raw):
    with pytest.raises(InvalidProblemError):
        parse_number(raw)


def test_error_names_field_and_raw():
    with pytest.raises(InvalidProblemError, match=r"constraints\[2\]\.limit.*'2-piece'"):
        parse_number("2-piece", field="constraints[2].limit")


def test_number_words():
    assert parse_number_words(["nine", "hundred", "ninety", "nine"]) == 999
    assert parse_number_words(["a", "hundred"]) == 100
    with pytest.raises(ValueError):
        parse_number_words(["hundred", "hundred"])


# official NL4Opt number handling (faithful scorer only)
@pytest.mark.parametrize("raw, value", [
    ("200", 200.0), ("4,000", 4000.0), ("$1,000.", 1000.0), ("60%", 0.6), ("thirty percent", 0.3),
    ("third", 1 / 3), ("a third", 1 / 3), ("twice", 2.0), ("thrice", 3.0), ("three times", 3.0),
    ("one hundred thousand", 1e5), ("8000 minutes", 8000.0), ("50¢", 0.5),
    ("2-piece", 2.0),        # digits stripped out of a label
    ("5 per cent", 5.0),     # "per cent" is not a percent sign there
    ("two thirds", 2.0),     # non-number words ignored
    ("twenty five point five", 25.5),
])
def test_official_number(raw, value):
    v, zero = official_number(raw)
    assert v == pytest.approx(value, rel=1e-15)
    assert zero is False


def test_official_number_zero_counted():
    assert official_number("lots") == (0.0, True)
    assert official_number("") == (0.0, True)


def test_official_number_raises_where_official_raises():
    with pytest.raises(InvalidProblemError):
        official_number("1.2.3")
