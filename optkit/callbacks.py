"""Callbacks for iterative solvers.

A callback is any callable taking one :class:`IterInfo`. Returning ``True`` or raising
``StopIteration`` ends the run with ``Status.CALLBACK_STOP``. Callables can be combined by passing a
list: ``callback=[History(), TimeBudget(2.0)]``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["IterInfo", "History", "TimeBudget", "EarlyStop", "ProgressBar", "CallbackList",
           "call_callback"]


@dataclasses.dataclass
class IterInfo:
    """What a solver reports after each iteration (fields a method does not have are None)."""

    nit: int
    fun: Any = None
    x: Any = None
    residual: Any = None
    step: Any = None
    elapsed: float = 0.0
    extra: dict = dataclasses.field(default_factory=dict)


def call_callback(callback: Callable | None, info: IterInfo) -> bool:
    """Run ``callback`` and tell whether it asked to stop (True return or StopIteration)."""
    if callback is None:
        return False
    try:
        return bool(callback(info))
    except StopIteration:
        return True


class CallbackList:
    """Several callbacks run in order; the run stops if any asks to."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def __call__(self, info: IterInfo) -> bool:
        stop = False
        for cb in self.callbacks:
            stop = call_callback(cb, info) or stop
        return stop


class History:
    """Record selected fields of every iteration (``fun``, ``residual``, ``elapsed`` by default)."""

    def __init__(self, fields=("nit", "fun", "residual", "elapsed")):
        self.fields = tuple(fields)
        self.records: list[dict] = []

    def __call__(self, info: IterInfo) -> bool:
        rec = {}
        for f in self.fields:
            v = getattr(info, f, None) if f != "extra" else dict(info.extra)
            if v is None and f in info.extra:
                v = info.extra[f]
            if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
                v = v.item()
            rec[f] = v
        self.records.append(rec)
        return False

    def __len__(self):
        return len(self.records)

    def column(self, name: str) -> list:
        return [r[name] for r in self.records]


class TimeBudget:
    """Stop once ``seconds`` of wall time have passed since the first call."""

    def __init__(self, seconds: float):
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"seconds: must be a positive finite number, got {seconds!r}")
        self.seconds = float(seconds)
        self._start = None

    def __call__(self, info: IterInfo) -> bool:
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        return now - self._start >= self.seconds


class EarlyStop:
    """Stop when ``key`` (``fun`` or ``residual``) has not improved by ``min_delta`` for ``patience`` calls."""

    def __init__(self, patience: int = 10, min_delta: float = 0.0, key: str = "fun",
                 mode: str = "min"):
        if patience < 1:
            raise ValueError(f"patience: must be >= 1, got {patience!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode: must be 'min' or 'max', got {mode!r}")
        self.patience, self.min_delta, self.key, self.mode = int(patience), float(min_delta), key, mode
        self.best = None
        self.bad = 0

    def __call__(self, info: IterInfo) -> bool:
        v = getattr(info, self.key, None)
        if v is None:
            return False
        v = float(v)
        if self.mode == "max":
            v = -v
        if self.best is None or v < self.best - self.min_delta:
            self.best, self.bad = v, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


class ProgressBar:
    """tqdm progress over iterations (disabled automatically when stderr is not a TTY)."""

    def __init__(self, total: int | None = None, desc: str = "optkit", disable: bool | None = None):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, disable=disable, leave=False)

    def __call__(self, info: IterInfo) -> bool:
        self._bar.update(1)
        if info.residual is not None:
            try:
                self._bar.set_postfix(residual=f"{float(info.residual):.2e}", refresh=False)
            except (TypeError, ValueError):
                pass
        return False

    def close(self):
        self._bar.close()
