"""Validated solver options.

Every solver keeps its options in a frozen dataclass derived from :class:`Options`. Fields are
declared with :func:`option`, which records the admissible range; :meth:`Options.from_kwargs`
turns the keyword arguments of a public function into an instance, rejecting unknown names with a
suggestion of the closest valid one::

    >>> from optkit._options import Options, option
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class MyOptions(Options):
    ...     tol: float = option(1e-8, kind="float", low=0.0, low_open=True)
    >>> MyOptions.from_kwargs(tol=1e-6).tol
    1e-06
    >>> MyOptions.from_kwargs(tolerance=1e-6)
    Traceback (most recent call last):
    ...
    TypeError: MyOptions got an unknown option 'tolerance'; did you mean 'tol'?
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from typing import Any

from ._errors import InvalidProblemError

__all__ = ["Options", "option", "CommonOptions"]


def option(
    default: Any,
    *,
    kind: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple | None = None,
    allow_none: bool = False,
    doc: str = "",
):
    """Declare a validated option field.

    ``kind`` is one of ``"float"``, ``"int"``, ``"bool"``, ``"choice"``, ``"callable"``, ``"any"``.
    ``low``/``high`` bound numeric options (``low_open`` makes the lower bound strict).
    """
    meta = dict(kind=kind, low=low, high=high, low_open=low_open, choices=choices,
                allow_none=allow_none, doc=doc)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _check_field(owner: str, name: str, value: Any, meta: dict) -> Any:
    kind = meta.get("kind", "any")
    if value is None:
        if meta.get("allow_none"):
            return None
        raise InvalidProblemError(f"{owner}: option '{name}' must not be None")
    if kind == "bool":
        if not isinstance(value, (bool,)) and not (
            isinstance(value, numbers.Integral) and value in (0, 1)
        ):
            raise TypeError(f"{owner}: option '{name}' must be a bool, got {value!r}")
        return bool(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{owner}: option '{name}' must be an integer, got {type(value).__name__} {value!r}"
            )
        value = int(value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{owner}: option '{name}' must be a real number, got {type(value).__name__} {value!r}"
            )
        value = float(value)
        if math.isnan(value):
            raise InvalidProblemError(f"{owner}: option '{name}' must not be NaN")
    elif kind == "choice":
        if value not in meta["choices"]:
            raise InvalidProblemError(
                f"{owner}: option '{name}' must be one of {list(meta['choices'])}, got {value!r}"
            )
        return value
    elif kind == "callable":
        if not callable(value):
            raise TypeError(f"{owner}: option '{name}' must be callable, got {value!r}")
        return value
    else:
        return value
    low, high = meta.get("low"), meta.get("high")
    if low is not None:
        bad = value <= low if meta.get("low_open") else value < low
        if bad:
            rel = ">" if meta.get("low_open") else ">="
            raise InvalidProblemError(f"{owner}: option '{name}' must be {rel} {low}, got {value!r}")
    if high is not None and value > high:
        raise InvalidProblemError(f"{owner}: option '{name}' must be <= {high}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Options:
    """Base class of option dataclasses: validates every field on construction."""

    def __post_init__(self):
        owner = type(self).__name__
        for f in dataclasses.fields(self):
            if f.metadata:
                checked = _check_field(owner, f.name, getattr(self, f.name), f.metadata)
                object.__setattr__(self, f.name, checked)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, **kwargs):
        """Build the options from keyword arguments, rejecting unknown names.

        Raises
        ------
        TypeError
            For an unknown option (the message suggests the closest valid name) or a wrong type.
        InvalidProblemError
            For a value out of range (the message names the option and the value).
        """
        valid = cls.names()
        for key in kwargs:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else f"; valid options: {valid}"
                raise TypeError(f"{cls.__name__} got an unknown option '{key}'{hint}")
        return cls(**kwargs)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
        return out

    @classmethod
    def doc_table(cls) -> str:
        """Markdown table of the options, their defaults and documentation (for docs/)."""
        rows = ["| option | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            doc = f.metadata.get("doc", "").replace("|", "\\|")  # keep markdown cells intact
            rows.append(f"| `{f.name}` | `{default!r}` | {doc} |")
        return "\n".join(rows)


@dataclasses.dataclass(frozen=True)
class CommonOptions(Options):
    """The option names shared by every iterative solver (DESIGN.md §2)."""

    tol: float = option(1e-8, kind="float", low=0.0, low_open=True, doc="stopping tolerance")
    max_iter: int = option(1000, kind="int", low=0, doc="maximum number of iterations")
    time_limit: float | None = option(
        None, kind="float", low=0.0, low_open=True, allow_none=True, doc="wall-clock limit in seconds"
    )
    verbose: int = option(0, kind="int", low=0, high=3, doc="0 silent ... 3 debug")
    callback: Any = option(
        None, kind="callable", allow_none=True,
        doc="called after each iteration; returning True or raising StopIteration stops the run",
    )
    record_history: bool = option(False, kind="bool", doc="keep per-iteration records")
