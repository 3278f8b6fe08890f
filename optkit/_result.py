"""Solver outcomes: the :class:`Status` enum and the :class:`Result` dataclass."""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from ._errors import ConvergenceError

__all__ = ["Status", "Result", "BatchedResult"]


class Status(enum.IntEnum):
    """Why a solver stopped. Only ``CONVERGED`` counts as success."""

    ERROR = -1
    CONVERGED = 0
    MAX_ITER = 1
    TIME_LIMIT = 2
    STALLED = 3
    NUMERICAL_ERROR = 4
    INFEASIBLE = 5
    UNBOUNDED = 6
    INFEASIBLE_OR_UNBOUNDED = 7
    CALLBACK_STOP = 8
    FEASIBLE_NOT_OPTIMAL = 9

    @property
    def default_message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.ERROR: "solver error",
    Status.CONVERGED: "converged to the requested tolerance",
    Status.MAX_ITER: "maximum number of iterations reached",
    Status.TIME_LIMIT: "time limit reached",
    Status.STALLED: "no further progress possible",
    Status.NUMERICAL_ERROR: "non-finite value met; last finite iterate returned",
    Status.INFEASIBLE: "problem is infeasible",
    Status.UNBOUNDED: "problem is unbounded",
    Status.INFEASIBLE_OR_UNBOUNDED: "problem is infeasible or unbounded",
    Status.CALLBACK_STOP: "stopped by a callback",
    Status.FEASIBLE_NOT_OPTIMAL: "feasible point found, optimality not proven",
}


def _is_array(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _short(v) -> str:
    """One-line description of a field value for repr: arrays by shape, floats compactly."""
    if _is_array(v):
        shape = tuple(v.shape)
        if len(shape) == 0 or (len(shape) == 1 and shape[0] <= 4):
            try:
                return repr(v.tolist())
            except Exception:  # pragma: no cover - exotic array types
                pass
        return f"<{type(v).__name__} shape={shape} dtype={v.dtype}>"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list) and len(v) > 4:
        return f"<list len={len(v)}>"
    if isinstance(v, dict) and len(v) > 6:
        return f"<dict keys={list(v)[:6]}...>"
    return repr(v)


def _jsonable(v):
    if isinstance(v, enum.Enum):
        return v.name
    if _is_array(v):
        try:
            import numpy as np

            if type(v).__module__.startswith("torch"):
                v = v.detach().cpu().numpy()
            return _jsonable(np.asarray(v).tolist())
        except Exception:
            return repr(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if hasattr(v, "item") and callable(v.item):  # numpy scalar
        try:
            return _jsonable(v.item())
        except Exception:
            pass
    if isinstance(v, (int, str, bool)) or v is None:
        return v
    return repr(v)


@dataclasses.dataclass(repr=False)
class Result:
    """Outcome of a solve.

    Field names follow ``scipy.optimize.OptimizeResult`` where one exists. Modules subclass it and
    add named fields (``plan``, ``multipliers``, ...). ``success`` is derived from ``status``.

    Attributes
    ----------
    x : array or None
        Solution (the main variable of the method).
    fun : float or None
        Objective value at ``x``.
    status : Status
        Why the solver stopped.
    message : str
        Human-readable reason; defaults to the status' description.
    nit, nfev : int
        Iterations and function evaluations.
    kkt_residual, constraint_violation : float or None
        Optimality and feasibility measures, as defined by the method's docs.
    wall_time : float
        Seconds spent in the solver.
    history : list of dict or None
        Per-iteration records when ``record_history=True``.
    backend, device, dtype : str or None
        Where the computation ran.
    options : object or None
        The validated options used.
    extra : dict
        Method-specific diagnostics.
    """

    x: Any = None
    fun: Any = None
    status: Status = Status.ERROR
    message: str = ""
    nit: int = 0
    nfev: int = 0
    kkt_residual: Any = None
    constraint_violation: Any = None
    wall_time: float = 0.0
    history: list | None = None
    backend: str | None = None
    device: str | None = None
    dtype: str | None = None
    options: Any = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.status = Status(self.status)
        if not self.message:
            self.message = self.status.default_message

    @property
    def success(self) -> bool:
        return self.status == Status.CONVERGED

    def raise_for_status(self):
        """Raise :class:`~optkit.ConvergenceError` unless the solve converged; return ``self``."""
        if not self.success:
            raise ConvergenceError(f"{self.status.name}: {self.message}", result=self)
        return self

    def to_dict(self) -> dict:
        """JSON-ready dictionary (arrays become nested lists, the status its name)."""
        d = {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["success"] = self.success
        return d

    def __repr__(self) -> str:
        names = [f.name for f in dataclasses.fields(self)]
        head = ["status", "message", "success", "fun", "nit"]
        lines = [f"{type(self).__name__}("]
        for name in head + [n for n in names if n not in head]:
            v = getattr(self, name)
            if name == "status":
                v = f"{self.status.name} ({int(self.status)})"
            elif name in ("history", "options") and v is not None:
                v = f"<{type(v).__name__}>" if name == "options" else f"<{len(v)} records>"
            elif name == "extra" and not v:
                continue
            else:
                v = _short(v)
            lines.append(f"  {name}={v},")
        lines.append(")")
        return "\n".join(lines)


@dataclasses.dataclass(repr=False)
class BatchedResult(Result):
    """Result of a batched solve: ``status``, ``fun`` and residuals hold one entry per instance.

    ``statuses`` is an integer array (on the input's device for torch) of :class:`Status` codes;
    ``status`` summarises the batch (``CONVERGED`` only when every instance converged, else the
    worst non-converged status by count).
    """

    statuses: Any = None

    def __post_init__(self):
        if self.statuses is not None:
            codes = [int(s) for s in _tolist(self.statuses)]
            bad = [c for c in codes if c != Status.CONVERGED]
            if not bad:
                self.status = Status.CONVERGED
            else:
                self.status = Status(max(set(bad), key=bad.count))
                if not self.message:
                    self.message = (
                        f"{len(codes) - len(bad)}/{len(codes)} instances converged; "
                        f"most common failure: {Status(self.status).name}"
                    )
        super().__post_init__()

    @property
    def successes(self):
        """Per-instance success flags (a Python list of bool)."""
        return [int(s) == Status.CONVERGED for s in _tolist(self.statuses)]

    def __len__(self):
        return len(_tolist(self.statuses))


def _tolist(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return list(v)
