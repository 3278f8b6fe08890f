"""Bilevel problems whose lower-level constraints couple the upper and lower variables.

    min_{x in X} F(x, y*(x))   with   y*(x) in argmin_{y in Y} { f(x, y) : g(x, y) <= 0 }

A :class:`BilevelProblem` is a frozen record of callables and sets. Structured lower levels
(:class:`LowerQP`, :class:`LowerLP`) give closed-form lower-level derivatives, an exact
fraction-to-boundary rule, phase-1 restoration by one LP and an exact lower-level solver (the
``y*(x)`` re-solve of the results). Missing derivatives come from ``torch.func``; for numpy
problems the structured path needs ``grad_F`` plus the x-parts of ``grad_f`` and ``vjp_g``
(see :class:`BilevelProblem`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import is_torch
from .._errors import InvalidProblemError

__all__ = ["BilevelProblem", "LowerQP", "LowerLP", "Box"]


@dataclasses.dataclass(frozen=True, eq=False)
class Box:
    """``{v : lower <= v <= upper}``; bounds are scalars or arrays, ``+-inf`` for none."""

    lower: Any = -math.inf
    upper: Any = math.inf

    def __post_init__(self):
        lo = np.asarray(_host(self.lower), dtype=float)
        hi = np.asarray(_host(self.upper), dtype=float)
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise InvalidProblemError("Box: bounds must not be NaN")
        if np.any(lo > hi):
            raise InvalidProblemError("Box: lower > upper for some entries")

    def bounds(self, n: int):
        """Host arrays ``(lower, upper)`` of length ``n``."""
        lo = np.broadcast_to(np.asarray(_host(self.lower), dtype=float), (n,)).copy()
        hi = np.broadcast_to(np.asarray(_host(self.upper), dtype=float), (n,)).copy()
        return lo, hi

    def project(self, v):
        """Nearest point of the box (numpy or torch, any leading batch dimensions)."""
        if is_torch(v):
            import torch

            lo = torch.as_tensor(np.asarray(_host(self.lower), dtype=float), dtype=v.dtype, device=v.device)
            hi = torch.as_tensor(np.asarray(_host(self.upper), dtype=float), dtype=v.dtype, device=v.device)
            return torch.minimum(torch.maximum(v, lo), hi)
        return np.clip(v, self.lower, self.upper)

    def is_whole_space(self, n: int) -> bool:
        lo, hi = self.bounds(n)
        return bool(np.all(np.isneginf(lo)) and np.all(np.isposinf(hi)))


@dataclasses.dataclass(frozen=True, eq=False)
class LowerQP:
    """Strongly convex quadratic lower level ``f = 1/2 y^T Q(x) y + q(x)^T y``, ``g = A(x) y - b(x)``.

    Each of ``Q (n_y, n_y)``, ``q (n_y,)``, ``A (m, n_y)``, ``b (m,)`` is an array or a callable
    ``(x, *params) -> array``. ``Q(x)`` must be symmetric positive semidefinite, and
    ``Q + t A^T S^-2 A`` positive definite (checked at the start).
    """

    Q: Any
    q: Any
    A: Any
    b: Any
    kind = "strongly-convex"


@dataclasses.dataclass(frozen=True, eq=False)
class LowerLP:
    """Linear-program lower level ``f = c(x)^T y``, ``g = A(x) y - b(x)`` (bounded polytope,
    ``A`` of full column rank once the box rows of ``Y`` are appended)."""

    c: Any
    A: Any
    b: Any
    kind = "lp"


def _host(v):
    if is_torch(v):
        return v.detach().cpu().numpy()
    return v


@dataclasses.dataclass(frozen=True, eq=False)
class BilevelProblem:
    """``min_{x in X} F(x, y*(x))``, ``y*(x) = argmin_{y in Y} f(x, y) s.t. g(x, y) <= 0``.

    Parameters
    ----------
    F, f : callable ``(x, y, *params) -> scalar``
        Upper and lower objectives. ``f`` may be None when ``lower`` is given.
    g : callable ``(x, y, *params) -> (m,)`` or None
        Coupled lower-level constraints ``g <= 0`` (None when ``lower`` is given or ``m = 0``).
    n_x, n_y, m : int
        Sizes.
    X, Y : Box, callable projection ``v -> P(v)``, or None (whole space)
        The barrier method turns a Box ``Y`` into uncoupled barrier rows; it accepts only boxes.
    eq_mask : bool array (m,), optional
        Rows that are equalities (LV-HBA only; the barrier method refuses them).
    proj_C : callable ``(x, y) -> (x, y)``, optional
        Projection onto the coupled set (LV-HBA).
    y_interior : callable ``(x, *params) -> y``, optional
        A strictly feasible lower-level point for every x (restoration, §3.1 (i)).
    lower : LowerQP or LowerLP, optional
        Structured lower level; ``f`` and ``g`` are then derived from it.
    lower_solver : callable ``(x, *params) -> (y, lam)``, optional
        Exact lower-level solver (default: Clarabel via cvxpy for LowerQP, HiGHS for LowerLP).
    grad_F, grad_f : callable ``(x, y, *params) -> (d/dx, d/dy)``, optional
    vjp_g : callable ``(x, y, lam, *params) -> (J_x^T lam, J_y^T lam)``, optional
        Numpy derivative oracles. Without them torch.func differentiates ``F``, ``f``, ``g`` (the
        callables must then accept tensors).
    g_linear_in_y : bool
        ``g(x, .)`` is affine (exact fraction to boundary, LP phase 1).
    params : tuple
        Extra arguments passed to every callable.
    x0, y0 : array, optional
        Default starts.
    name : str
    solution : dict, optional
        Known solution ``dict(x=, y=, F=, lam=)``.
    """

    F: Callable
    f: Callable | None = None
    g: Callable | None = None
    n_x: int = 0
    n_y: int = 0
    m: int = 0
    X: Any = None
    Y: Any = None
    eq_mask: Any = None
    proj_C: Callable | None = None
    y_interior: Callable | None = None
    lower: Any = None
    lower_solver: Callable | None = None
    grad_F: Callable | None = None
    grad_f: Callable | None = None
    vjp_g: Callable | None = None
    g_linear_in_y: bool = False
    params: tuple = ()
    x0: Any = None
    y0: Any = None
    name: str = ""
    solution: dict | None = None

    def __post_init__(self):
        for name in ("n_x", "n_y", "m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise InvalidProblemError(f"BilevelProblem: {name} must be a non-negative integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.n_x < 1 or self.n_y < 1:
            raise InvalidProblemError(f"BilevelProblem: n_x and n_y must be >= 1, got {self.n_x}, {self.n_y}")
        if not callable(self.F):
            raise InvalidProblemError("BilevelProblem: F must be callable (x, y, *params) -> scalar")
        if self.lower is not None:
            if not isinstance(self.lower, (LowerQP, LowerLP)):
                raise InvalidProblemError(f"BilevelProblem: lower must be LowerQP or LowerLP, got {type(self.lower).__name__}")
            if self.f is None:
                object.__setattr__(self, "f", _lower_f(self.lower))
            if self.g is None:
                object.__setattr__(self, "g", _lower_g(self.lower))
            object.__setattr__(self, "g_linear_in_y", True)
        if self.f is None or not callable(self.f):
            raise InvalidProblemError("BilevelProblem: f must be callable (x, y, *params) -> scalar (or give lower=)")
        if self.m > 0 and (self.g is None or not callable(self.g)):
            raise InvalidProblemError(f"BilevelProblem: m = {self.m} but g is not callable")
        for name in ("X", "Y"):
            s = getattr(self, name)
            if s is not None and not isinstance(s, Box) and not callable(s):
                raise InvalidProblemError(f"BilevelProblem: {name} must be a Box, a projection callable or None")
        if self.eq_mask is not None:
            mask = np.asarray(_host(self.eq_mask), dtype=bool)
            if mask.shape != (self.m,):
                raise InvalidProblemError(f"BilevelProblem: eq_mask must have shape ({self.m},), got {mask.shape}")
            object.__setattr__(self, "eq_mask", mask)
        for name in ("proj_C", "y_interior", "lower_solver", "grad_F", "grad_f", "vjp_g"):
            v = getattr(self, name)
            if v is not None and not callable(v):
                raise InvalidProblemError(f"BilevelProblem: {name} must be callable")
        if not isinstance(self.params, tuple):
            object.__setattr__(self, "params", tuple(self.params))

    @property
    def lower_type(self) -> str:
        """``"strongly-convex"`` (QP or general), or ``"lp"``."""
        return "lp" if isinstance(self.lower, LowerLP) else "strongly-convex"

    @property
    def has_equalities(self) -> bool:
        return self.eq_mask is not None and bool(np.any(self.eq_mask))

    def replace(self, **changes) -> BilevelProblem:
        return dataclasses.replace(self, **changes)


def lower_data(part, x, params):
    """Evaluate a LowerQP/LowerLP field: a constant array or ``part(x, *params)``."""
    return part(x, *params) if callable(part) else part


def _mv(M, v):
    return M @ v


def _lower_f(lower):
    if isinstance(lower, LowerQP):
        def f(x, y, *params):
            Q = lower_data(lower.Q, x, params)
            q = lower_data(lower.q, x, params)
            return 0.5 * y @ _mv(_like(Q, y), y) + _like(q, y) @ y
    else:
        def f(x, y, *params):
            return _like(lower_data(lower.c, x, params), y) @ y
    return f


def _lower_g(lower):
    def g(x, y, *params):
        A = _like(lower_data(lower.A, x, params), y)
        b = _like(lower_data(lower.b, x, params), y)
        return _mv(A, y) - b
    return g


def _like(a, ref):
    """Constant data in the array type of ``ref`` (numpy constants meet torch iterates)."""
    if is_torch(ref) and not is_torch(a):
        import torch

        return torch.as_tensor(np.asarray(a), dtype=ref.dtype, device=ref.device)
    if is_torch(ref) and (a.dtype != ref.dtype or a.device != ref.device):
        return a.to(dtype=ref.dtype, device=ref.device)
    return a
