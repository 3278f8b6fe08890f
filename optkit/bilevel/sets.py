r"""Projections onto sets of the stacked variable ``w = (x, y)`` (the ``proj_C`` of LV-HBA, spec §3.2).

Every set is a small object with

* ``project(x, y) -> (x', y')``: the Euclidean projection of the pair onto the set
  ``C subset R^{n_x} x R^{n_y}`` (``x`` of shape ``(..., n_x)``, ``y`` of shape ``(..., n_y)``, the same
  leading batch dimensions, every instance projected independently);
* ``__call__(x, y)``: the same, so an instance is a valid ``BilevelProblem(proj_C=...)``;
  ``__call__(w)`` with one argument projects a stacked vector ``w = (x, y)`` (``project_vector``),
  which also makes a set usable as a plain projection ``v -> P(v)`` (e.g. for ``X`` or ``Y``);
* ``violation(x, y)``: the largest constraint violation per instance (0 inside the set).

Backends (DESIGN.md §4): numpy in -> float64 numpy out; torch in -> torch out on the same device and
dtype (a numpy argument next to a tensor is moved to the tensor's device); inputs are never
modified. Invalid input (shape mismatch, NaN/inf) raises :class:`InvalidProblemError` naming the
argument; float16/bfloat16 raise :class:`BackendError`. ``check_finite=False`` skips the finiteness
test (on CUDA it costs one host sync per call).

Closed forms: :class:`BoxC`, :class:`Halfspace`, :class:`Hyperplane`, :class:`BudgetCone`,
:class:`LowerTriangle`, :class:`SimplexC`; :class:`Affine` (Cholesky of ``P P^T`` computed once);
:class:`Polyhedron` (warm-started ADMM with a cached factorisation plus active-set polishing,
:mod:`optkit.linalg.polyhedral`); :class:`Dykstra` for intersections; :func:`from_lower` builds the
polyhedral ``C`` of a lower level that is affine in ``(x, y)``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._backend import check_finite, get_torch, infer_backend, is_torch, to_numpy
from .._errors import BackendError, InvalidProblemError
from ..linalg.polyhedral import _check_options, _run, polyhedral_problem
from .problem import Box, LowerLP, LowerQP, lower_data

__all__ = ["CSet", "BoxC", "Halfspace", "Hyperplane", "BudgetCone", "LowerTriangle", "SimplexC", "SlackRows",
           "Affine", "Polyhedron", "Dykstra", "from_lower"]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _host_vec(v, name, n=None, allow_nan=False):
    if is_torch(v):
        v = v.detach().cpu().numpy()
    try:
        arr = np.array(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"{name}: cannot convert to a float64 array ({exc})") from None
    if arr.ndim != 1:
        raise InvalidProblemError(f"{name}: expected a 1-D vector, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InvalidProblemError(f"{name}: expected shape ({n},), got {arr.shape}")
    if not allow_nan and not np.all(np.isfinite(arr)):
        raise InvalidProblemError(f"{name}: contains non-finite values (NaN or inf)")
    return arr


def _host_scalar(b, name):
    if is_torch(b):
        b = b.detach().cpu().numpy()
    arr = np.asarray(b, dtype=np.float64)
    if arr.size != 1 or not np.isfinite(arr).all():
        raise InvalidProblemError(f"{name}: expected a finite scalar, got {b!r}")
    return float(arr.reshape(()))


def _half(dtype):
    torch = get_torch()
    return dtype in (torch.float16, torch.bfloat16)


def _amax0(a):
    """Max over the last axis of ``max(a, 0)`` (0 for an empty axis)."""
    if is_torch(a):
        torch = get_torch()
        if a.shape[-1] == 0:
            return torch.zeros(a.shape[:-1], dtype=a.dtype, device=a.device)
        return torch.clamp(torch.amax(a, dim=-1), min=0.0)
    if a.shape[-1] == 0:
        return np.zeros(a.shape[:-1])
    return np.maximum(a.max(axis=-1), 0.0)


def _size(a):
    return a.numel() if is_torch(a) else a.size


def _sum_last(a):
    return a.sum(-1, keepdim=True) if is_torch(a) else a.sum(-1, keepdims=True)


def _cat(x, y):
    if is_torch(x):
        return get_torch().cat([x, y], dim=-1)
    return np.concatenate([x, y], axis=-1)


def _maximum(a, b):
    return get_torch().maximum(a, b) if is_torch(a) else np.maximum(a, b)


def _minimum(a, b):
    return get_torch().minimum(a, b) if is_torch(a) else np.minimum(a, b)


class CSet:
    """Base class: input validation, the ``(x, y)`` / stacked-vector plumbing and constant caching.

    Subclasses implement ``_project(x, y)`` on validated arrays of one backend (and may override
    ``_project_w`` for sets naturally written on the stacked vector). ``n_x``/``n_y`` are the
    expected sizes when the set fixes them (``None``: any).
    """

    n_x: int | None = None
    n_y: int | None = None
    n: int | None = None  # total size of w when the set fixes it

    def __init__(self, check_finite: bool = True):
        self.check_finite = bool(check_finite)
        self._consts: dict = {}

    # ---- public API ----------------------------------------------------------------------
    def project(self, x, y):
        """Nearest point ``(x', y')`` of the set to ``(x, y)`` (batched over leading dims)."""
        x, y = self._pair(x, y)
        return self._project(x, y)

    def __call__(self, x, y=None):
        if y is None:
            return self.project_vector(x)
        return self.project(x, y)

    def project_vector(self, w):
        """Projection of the stacked vector ``w = (x, y)`` of shape ``(..., n_x + n_y)``."""
        w = self._single(w, "w")
        nx = self._split_size(w.shape[-1])
        if nx is None:
            return self._project_w(w)
        x, y = self._project(w[..., :nx], w[..., nx:])
        return _cat(x, y)

    def violation(self, x, y):
        """Largest constraint violation per instance (shape: the batch dimensions)."""
        x, y = self._pair(x, y)
        return self._violation(x, y)

    # ---- to implement --------------------------------------------------------------------
    def _project(self, x, y):
        """Default for sets written on the stacked vector: concatenate, ``_project_w``, split."""
        w = self._project_w(_cat(x, y))
        nx = x.shape[-1]
        return w[..., :nx], w[..., nx:]

    def _project_w(self, w):  # pragma: no cover - abstract
        raise NotImplementedError

    def _violation(self, x, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _split_size(self, n):
        """``n_x`` for a stacked vector of length ``n``; None when the set works on ``w`` directly."""
        if self.n_x is None:
            raise InvalidProblemError(
                f"w: {type(self).__name__} needs n_x to split a stacked vector; call project(x, y)")
        if self.n_y is not None and n != self.n_x + self.n_y:
            raise InvalidProblemError(f"w: expected last dimension {self.n_x + self.n_y}, got {n}")
        if n < self.n_x:
            raise InvalidProblemError(f"w: expected last dimension > n_x = {self.n_x}, got {n}")
        return self.n_x

    # ---- validation ----------------------------------------------------------------------
    def _convert(self, bk, v, name):
        if not is_torch(v) and not isinstance(v, np.ndarray):
            try:
                v = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidProblemError(f"{name}: cannot convert to a float64 array ({exc})") from None
        if is_torch(v) and _half(v.dtype):
            raise BackendError(f"{name}: dtype {v.dtype} is not supported (use float32 or float64)")
        if not is_torch(v) and not np.issubdtype(v.dtype, np.number):
            raise InvalidProblemError(f"{name}: expected numeric data, got dtype {v.dtype}")
        v = bk.asarray(v, name=name)
        if v.ndim == 0:
            raise InvalidProblemError(f"{name}: expected shape (..., n), got a scalar")
        if self.check_finite:
            check_finite(v, name)
        return v

    def _backend(self, *arrays, names):
        bk = infer_backend(*arrays, names=names)
        if bk.is_torch and _half(bk.dtype):
            raise BackendError(f"{names[0]}: dtype {bk.dtype} is not supported (use float32 or float64)")
        return bk

    def _pair(self, x, y):
        bk = self._backend(x, y, names=["x", "y"])
        x = self._convert(bk, x, "x")
        y = self._convert(bk, y, "y")
        if tuple(x.shape[:-1]) != tuple(y.shape[:-1]):
            raise InvalidProblemError(
                f"y: batch shape {tuple(y.shape[:-1])} differs from x's {tuple(x.shape[:-1])}")
        if self.n_x is not None and x.shape[-1] != self.n_x:
            raise InvalidProblemError(f"x: expected last dimension {self.n_x}, got {x.shape[-1]}")
        if self.n_y is not None and y.shape[-1] != self.n_y:
            raise InvalidProblemError(f"y: expected last dimension {self.n_y}, got {y.shape[-1]}")
        if self.n is not None and x.shape[-1] + y.shape[-1] != self.n:
            raise InvalidProblemError(
                f"x, y: expected n_x + n_y = {self.n}, got {x.shape[-1]} + {y.shape[-1]}")
        return x, y

    def _single(self, w, name):
        bk = self._backend(w, names=[name])
        w = self._convert(bk, w, name)
        if self.n is not None and w.shape[-1] != self.n:
            raise InvalidProblemError(f"{name}: expected last dimension {self.n}, got {w.shape[-1]}")
        return w

    def _const(self, name, value, like):
        """Host constant ``value`` in the backend/device/dtype of ``like`` (cached per device, dtype)."""
        if not is_torch(like):
            return value
        key = (name, str(like.device), like.dtype)
        got = self._consts.get(key)
        if got is None:
            torch = get_torch()
            got = torch.as_tensor(np.asarray(value, dtype=np.float64), device=like.device).to(like.dtype)
            self._consts[key] = got
        return got

    def __repr__(self):
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------

class BoxC(CSet):
    """``X x Y`` boxes: ``{(x, y) : x_lower <= x <= x_upper, y_lower <= y <= y_upper}`` (clipping).

    Bounds are scalars or vectors (``+-inf`` for none). ``n_x``/``n_y`` are taken from vector bounds
    (or given) and are needed only by ``project_vector``.
    """

    def __init__(self, x_lower=-math.inf, x_upper=math.inf, y_lower=-math.inf, y_upper=math.inf, *,
                 n_x=None, n_y=None, check_finite=True):
        super().__init__(check_finite)
        bounds = {}
        for name, val in (("x_lower", x_lower), ("x_upper", x_upper), ("y_lower", y_lower), ("y_upper", y_upper)):
            arr = np.array(to_numpy(val), dtype=np.float64)
            if arr.ndim > 1 or np.isnan(arr).any():
                raise InvalidProblemError(f"{name}: expected a scalar or a 1-D vector without NaN")
            bounds[name] = arr
        for v, lo, hi, given in (("x", "x_lower", "x_upper", n_x), ("y", "y_lower", "y_upper", n_y)):
            sizes = {bounds[k].shape[0] for k in (lo, hi) if bounds[k].ndim == 1}
            if given is not None:
                sizes.add(int(given))
            if len(sizes) > 1:
                raise InvalidProblemError(f"{lo}, {hi}: inconsistent lengths {sorted(sizes)}")
            size = sizes.pop() if sizes else None
            if np.any(np.broadcast_to(bounds[lo], (size or 1,)) > np.broadcast_to(bounds[hi], (size or 1,))):
                raise InvalidProblemError(f"{lo}, {hi}: lower > upper for some entries")
            setattr(self, f"n_{v}", size)
        self.bounds = bounds

    def _project(self, x, y):
        b = self.bounds
        x = _minimum(_maximum(x, self._const("xl", b["x_lower"], x)), self._const("xu", b["x_upper"], x))
        y = _minimum(_maximum(y, self._const("yl", b["y_lower"], y)), self._const("yu", b["y_upper"], y))
        return x, y

    def _violation(self, x, y):
        b = self.bounds
        parts = [x - self._const("xu", b["x_upper"], x), self._const("xl", b["x_lower"], x) - x,
                 y - self._const("yu", b["y_upper"], y), self._const("yl", b["y_lower"], y) - y]
        return _amax0(_cat(_cat(parts[0], parts[1]), _cat(parts[2], parts[3])))


class _StackedLinear(CSet):
    """Sets written on the stacked vector with a fixed normal ``a``."""

    def __init__(self, a, b, check_finite=True):
        super().__init__(check_finite)
        a = _host_vec(a, "a")
        b = _host_scalar(b, "b")
        na = float(np.linalg.norm(a))
        if na == 0:
            raise InvalidProblemError("a: must be nonzero")
        self.a, self.b = a, b
        self._ahat, self._bhat = a / na, b / na
        self.n = a.shape[0]

    def _split_size(self, n):
        return None

    def _residual(self, w):
        return w @ self._const("a", self._ahat, w) - self._bhat

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n}, b={self.b:g})"


class Halfspace(_StackedLinear):
    r"""``{w : a^T w <= b}``: :math:`w' = w - \max(0, a^T w - b)\, a / \|a\|^2` (``a != 0``).

    V1 of the spec (``1^T y <= 1^T x``) is ``Halfspace(concat(-ones(n), ones(n)), 0)``.
    """

    def _project_w(self, w):
        s = self._residual(w)
        t = _maximum(s, s * 0)
        return w - t[..., None] * self._const("a", self._ahat, w)

    def _violation(self, x, y):
        s = self._residual(_cat(x, y))
        return _maximum(s, s * 0)


class Hyperplane(_StackedLinear):
    r"""``{w : a^T w = b}``: :math:`w' = w - (a^T w - b)\, a / \|a\|^2` (``a != 0``).

    V3/V4 (``1^T x + 1^T y = 0``) is ``Hyperplane(ones(2n), 0)`` (subtract the mean).
    """

    def _project_w(self, w):
        return w - self._residual(w)[..., None] * self._const("a", self._ahat, w)

    def _violation(self, x, y):
        s = self._residual(_cat(x, y))
        return s.abs() if is_torch(s) else np.abs(s)


class BudgetCone(CSet):
    r"""``{(x, y) : y >= 0, 1^T y <= x}`` with scalar ``x`` (``n_x = 1``); exact, one sort.

    KKT of ``min 1/2 (x' - x)^2 + 1/2 ||y' - y||^2`` with multiplier ``mu >= 0`` of the budget row:
    ``x' = x + mu``, ``y' = max(y - mu, 0)``, and either ``mu = 0`` (``1^T max(y, 0) <= x``) or
    ``phi(mu) = sum_i max(y_i - mu, 0) - x - mu = 0``. ``phi`` decreases strictly (slope
    ``-(1 + #{y_i > mu})``), so the root is unique: with ``u`` the sorted ``y`` (descending),
    ``S_k = u_1 + ... + u_k`` and ``K = #{k : (k + 1) u_k > S_k - x}`` (a prefix: the condition is
    ``phi(u_k) < 0``), ``mu = max(0, (S_K - x)/(K + 1))``. ``K = 0`` gives ``mu = -x``: the apex
    ``(0, 0)``, reached when ``x <= -max(y_i, 0)``.
    """

    n_x = 1

    def __init__(self, n_y=None, check_finite=True):
        super().__init__(check_finite)
        self.n_y = None if n_y is None else int(n_y)

    def _project(self, x, y):
        m = y.shape[-1]
        if is_torch(y):
            torch = get_torch()
            u = torch.sort(y, dim=-1, descending=True).values
            css = torch.cumsum(u, dim=-1)
            k = torch.arange(1, m + 1, dtype=y.dtype, device=y.device)
            K = ((k + 1) * u > css - x).sum(-1, keepdim=True)
            SK = torch.where(K > 0, torch.gather(css, -1, torch.clamp(K - 1, min=0)), torch.zeros_like(x))
            mu = torch.clamp((SK - x) / (K.to(y.dtype) + 1), min=0.0)
            return x + mu, torch.clamp(y - mu, min=0.0)
        u = -np.sort(-y, axis=-1)
        css = np.cumsum(u, axis=-1)
        k = np.arange(1, m + 1, dtype=np.float64)
        K = np.count_nonzero((k + 1) * u > css - x, axis=-1)[..., None]
        SK = np.where(K > 0, np.take_along_axis(css, np.maximum(K - 1, 0), axis=-1), 0.0)
        mu = np.maximum((SK - x) / (K + 1.0), 0.0)
        return x + mu, np.maximum(y - mu, 0.0)

    def _violation(self, x, y):
        return _maximum(_amax0(-y), _amax0(_sum_last(y) - x))


class LowerTriangle(CSet):
    """``{(x, y) : y_i <= x_i for every i}`` (``n_x = n_y``): each pair onto the half-plane ``y_i <= x_i``,
    ``d = max(y_i - x_i, 0)/2``, ``x_i' = x_i + d``, ``y_i' = y_i - d``."""

    def __init__(self, n=None, check_finite=True):
        super().__init__(check_finite)
        if n is not None:
            self.n_x = self.n_y = int(n)

    def _pair(self, x, y):
        x, y = super()._pair(x, y)
        if x.shape[-1] != y.shape[-1]:
            raise InvalidProblemError(f"y: LowerTriangle needs n_y = n_x = {x.shape[-1]}, got {y.shape[-1]}")
        return x, y

    def _split_size(self, n):
        if n % 2:
            raise InvalidProblemError(f"w: LowerTriangle needs an even last dimension, got {n}")
        return n // 2

    def _project(self, x, y):
        d = y - x
        d = 0.5 * _maximum(d, d * 0)
        return x + d, y - d

    def _violation(self, x, y):
        return _amax0(y - x)


class SimplexC(CSet):
    """``{(x, y) : y >= 0, 1^T y = radius}`` (``x`` free): the simplex projection of ``y``
    (:func:`optkit.linalg.projection_simplex`, one sort)."""

    def __init__(self, radius=1.0, *, n_x=None, check_finite=True):
        super().__init__(check_finite)
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not (
                math.isfinite(radius) and radius > 0):
            raise InvalidProblemError(f"radius: must be a finite number > 0, got {radius!r}")
        self.radius = float(radius)
        self.n_x = None if n_x is None else int(n_x)

    def _project(self, x, y):
        from ..linalg.projections import projection_simplex

        return x + 0, projection_simplex(y, self.radius)

    def _violation(self, x, y):
        s = _sum_last(y)
        return _maximum(_amax0(-y), _amax0(_cat(s - self.radius, self.radius - s)))


class SlackRows(CSet):
    r"""``{(x, y) : y[s_i] >= h_i - M_i^T y[u]}``: one slack per row (hinge / soft-margin constraints).

    ``u`` (``u_index``, d entries) and the slacks ``s`` (``s_index``, one per row of ``M``) are parts of
    y; x and the other entries of y are free. For fixed u the nearest slacks are ``max(s0, h - M u)``,
    so the projection minimises the convex, piecewise-quadratic
    :math:`\phi(u) = \tfrac12\|u - u_0\|^2 + \tfrac12\|\max(0, h - M u - s_0)\|^2` in d
    variables by semismooth Newton (``I + M_A^T M_A`` on the active rows, exact line search on the
    piecewise quadratic by halving): O(m d^2) per step and exact to rounding, where a general
    polyhedral projector works in all ``d + m`` variables (spec R4's SVM set: 500 rows, d = 9).
    """

    def __init__(self, M, h, u_index, s_index, *, n_x=None, n_y=None, tol=1e-13, max_iter=100,
                 check_finite=True):
        super().__init__(check_finite)
        M = np.array(to_numpy(M), dtype=np.float64)
        if M.ndim != 2:
            raise InvalidProblemError(f"M: expected a 2-D matrix, got shape {M.shape}")
        if not np.all(np.isfinite(M)):
            raise InvalidProblemError("M: contains non-finite values (NaN or inf)")
        m, d = M.shape
        self.M, self.h = M, _host_vec(np.atleast_1d(to_numpy(h)), "h", m)
        self.u_index = np.asarray(u_index, dtype=np.int64).reshape(-1)
        self.s_index = np.asarray(s_index, dtype=np.int64).reshape(-1)
        if self.u_index.size != d:
            raise InvalidProblemError(f"u_index: expected {d} indices (columns of M), got {self.u_index.size}")
        if self.s_index.size != m:
            raise InvalidProblemError(f"s_index: expected {m} indices (rows of M), got {self.s_index.size}")
        if np.intersect1d(self.u_index, self.s_index).size or len(set(self.s_index.tolist())) != m:
            raise InvalidProblemError("s_index: slack indices must be distinct and disjoint from u_index")
        self.n_x, self.n_y = n_x, n_y
        self.tol, self.max_iter = float(tol), int(max_iter)
        self.last_iterations = 0
        self.last_residual = None

    def _solve_one(self, u0, s0):
        M, h = self.M, self.h
        u = u0.copy()

        def phi(v):
            r = np.maximum(0.0, h - M @ v - s0)
            return 0.5 * ((v - u0) @ (v - u0)) + 0.5 * (r @ r), r

        f, r = phi(u)
        it = 0
        while it < self.max_iter:
            it += 1
            g = (u - u0) - M.T @ r
            if np.linalg.norm(g) <= self.tol * max(1.0, np.linalg.norm(u0)):
                break
            act = r > 0
            Ma = M[act]
            H = np.eye(u.size) + Ma.T @ Ma
            du = -np.linalg.solve(H, g)
            a = 1.0
            for _ in range(60):  # phi is C^1 and piecewise quadratic: the full step is usually exact
                fn, rn = phi(u + a * du)
                if fn <= f + 1e-4 * a * (g @ du):
                    break
                a *= 0.5
            u, f, r = u + a * du, fn, rn
        self.last_iterations = max(self.last_iterations, it)
        return u, np.maximum(s0, h - M @ u)

    def _project(self, x, y):
        yh = to_numpy(y).astype(np.float64, copy=True)
        flat = yh.reshape(-1, yh.shape[-1])
        if flat.shape[-1] <= max(self.u_index.max(), self.s_index.max()):
            raise InvalidProblemError(f"y: last dimension {flat.shape[-1]} is too small for u_index / s_index")
        self.last_iterations = 0
        for row in flat:
            u, s_new = self._solve_one(row[self.u_index], row[self.s_index])
            row[self.u_index], row[self.s_index] = u, s_new
        out = flat.reshape(yh.shape)
        self.last_residual = float(np.maximum(0.0, self.h - out.reshape(-1, out.shape[-1])[:, self.u_index] @ self.M.T
                                              - out.reshape(-1, out.shape[-1])[:, self.s_index]).max(initial=0.0))
        if is_torch(y):
            return x, get_torch().as_tensor(out, device=y.device).to(y.dtype)
        return x, out

    def _violation(self, x, y):
        yh = to_numpy(y)
        v = self.h - yh[..., self.u_index] @ self.M.T - yh[..., self.s_index]
        out = np.maximum(v, 0.0).max(-1)
        return get_torch().as_tensor(out, device=y.device) if is_torch(y) else out

    def __repr__(self):
        return f"SlackRows(m={self.M.shape[0]}, d={self.M.shape[1]})"


class Affine(CSet):
    r"""``{w : P w = q}`` with ``P`` of full row rank: :math:`w' = w - P^T (P P^T)^{-1} (P w - q)`.

    The Cholesky factor of ``P P^T`` is computed once, here (``scipy.linalg.cho_factor``); torch
    calls use a copy of it moved lazily to the tensor's device and dtype (cached per ``(device,
    dtype)``). No factorisation or pseudo-inverse happens per call. One step of iterative
    refinement (one more pair of triangular solves) corrects the normal-equations rounding.
    A rank-deficient ``P`` raises :class:`InvalidProblemError` naming ``P`` (remove the redundant
    rows).
    """

    def __init__(self, P, q, *, refine=1, check_finite=True):
        import scipy.linalg

        super().__init__(check_finite)
        P = np.array(to_numpy(P), dtype=np.float64)
        if P.ndim == 1:
            P = P[None, :]
        if P.ndim != 2 or P.shape[0] == 0:
            raise InvalidProblemError(f"P: expected a non-empty 2-D matrix, got shape {P.shape}")
        if not np.all(np.isfinite(P)):
            raise InvalidProblemError("P: contains non-finite values (NaN or inf)")
        k, n = P.shape
        q = _host_vec(np.atleast_1d(to_numpy(q)), "q", k)
        if k > n:
            raise InvalidProblemError(f"P: {k} rows > {n} columns cannot have full row rank")
        sv = np.linalg.svd(P, compute_uv=False)  # once, to reject rank deficiency with a clear message
        if sv[-1] <= max(P.shape) * np.finfo(np.float64).eps * sv[0]:
            raise InvalidProblemError(
                f"P: not of full row rank (smallest singular value {sv[-1]:.3e}, largest {sv[0]:.3e}); "
                "remove redundant rows")
        self.P, self.q = P, q
        self.n = n
        self.refine = int(refine)
        self._L = scipy.linalg.cho_factor(P @ P.T, lower=True)[0]
        self._L = np.tril(self._L)

    def _split_size(self, n):
        return None

    def _solve(self, r):
        """``(P P^T)^{-1} r`` for rows ``r`` of shape ``(N, k)``."""
        if is_torch(r):
            torch = get_torch()
            L = self._const("L", self._L, r)
            return torch.cholesky_solve(r.T, L).T
        import scipy.linalg

        return scipy.linalg.cho_solve((self._L, True), r.T).T

    def _project_w(self, w):
        n = w.shape[-1]
        W = w.reshape(-1, n)
        Pm = self._const("P", self.P, w)
        q = self._const("q", self.q, w)
        out = W
        for _ in range(1 + self.refine):
            out = out - self._solve(out @ Pm.T - q) @ Pm
        return out.reshape(w.shape)

    def _violation(self, x, y):
        w = _cat(x, y)
        r = w @ self._const("P", self.P, w).T - self._const("q", self.q, w)
        return _amax0(_cat(r, -r))

    def __repr__(self):
        return f"Affine(rows={self.P.shape[0]}, n={self.n})"


# ----------------------------------------------------------------------------------------------
# polyhedra (iterative)
# ----------------------------------------------------------------------------------------------

class Polyhedron(CSet):
    r"""``{w : G w <= h, P w = q, lb <= w <= ub}`` by the warm-started projector of
    :func:`optkit.linalg.polyhedral.project_polyhedron` (ADMM with the factorisation of
    ``D + A^T R A`` cached here, at construction, plus active-set polishing).

    Parameters
    ----------
    G, h : (m_in, n) matrix, (m_in,) vector, optional
        Inequalities (``h`` may hold ``+inf``). Zero rows with ``h_i >= 0`` are dropped.
    P, q : (m_eq, n) matrix, (m_eq,) vector, optional
        Equalities (consistent; full row rank not required).
    lb, ub : scalar or (n,) vector, optional
        Bounds on ``w``.
    n : int, optional
        Dimension of ``w`` (when neither G nor P is given).
    tol : float, default 1e-10
        Tolerance relative to the step: ``eps = tol * max(1, ||w0 - w_prev||_inf)`` with
        ``w_prev`` the previous projection (spec §9.14).
    max_iter, check_every, rho, alpha, polish : see :func:`~optkit.linalg.polyhedral.project_polyhedron`.
    warm_start : bool, default True
        Keep the last ADMM state (primal copy and duals) as the start of the next call; LV-HBA
        iterates move slowly, so most calls end after the first polish, with no ADMM iteration.
    check_feasible : bool, default True
        Check once, by an LP (HiGHS), that the set is non-empty.

    Attributes
    ----------
    last_residual : float
        Largest KKT residual (units of ``w``) of the last call over its instances.
    last_iterations : int
        ADMM iterations of the last call.
    last_info : dict
        The full ``info`` of the last call (per-instance ``residual``, ``converged``, ``polished``,
        multipliers ``lam``/``nu``/``mu_box``).
    """

    def __init__(self, G=None, h=None, P=None, q=None, *, lb=None, ub=None, n=None, tol=1e-10, max_iter=10000,
                 check_every=5, rho=2.5, alpha=1.6, polish=True, polish_gate=1e-4, warm_start=True,
                 check_feasible=True, check_finite=True):
        super().__init__(check_finite)
        if n is None:
            for M in (G, P):
                if M is not None and np.ndim(to_numpy(M)) == 2:
                    n = np.shape(to_numpy(M))[1]
                    break
        if n is None:
            raise InvalidProblemError("n: give G, P or the dimension n")
        n = int(n)
        self._opts = _check_options(alpha, tol, max_iter, check_every, polish_gate)
        if G is not None:
            G = np.array(to_numpy(G), dtype=np.float64)
            if G.ndim == 1:
                G = G[None, :]
            if G.ndim != 2 or G.shape[1] != n:
                raise InvalidProblemError(f"G: expected shape (m, {n}), got {G.shape}")
            if h is None:
                raise InvalidProblemError("h: required with G")
            h = np.array(to_numpy(h), dtype=np.float64).reshape(-1)
            if h.shape != (G.shape[0],):
                raise InvalidProblemError(f"h: expected shape ({G.shape[0]},), got {h.shape}")
            if np.isnan(h).any() or np.isneginf(h).any():
                raise InvalidProblemError("h: contains NaN or -inf")
            zero = np.all(G == 0, axis=1)
            if np.any(zero & (h < 0)):
                raise InvalidProblemError(f"G, h: row {int(np.flatnonzero(zero & (h < 0))[0])} reads 0 <= h_i < 0 "
                                          "(the set is empty)")
            keep = ~zero & ~np.isposinf(h)
            G, h = G[keep], h[keep]
            if G.shape[0] == 0:
                G = h = None
        if P is not None:
            P = np.array(to_numpy(P), dtype=np.float64)
            if P.ndim == 1:
                P = P[None, :]
            if P.ndim != 2 or P.shape[1] != n:
                raise InvalidProblemError(f"P: expected shape (m, {n}), got {P.shape}")
            if q is None:
                raise InvalidProblemError("q: required with P")
            q = np.array(to_numpy(q), dtype=np.float64).reshape(-1)
            if q.shape != (P.shape[0],):
                raise InvalidProblemError(f"q: expected shape ({P.shape[0]},), got {q.shape}")
            zero = np.all(P == 0, axis=1)
            if np.any(zero & (q != 0)):
                raise InvalidProblemError("P, q: a zero row of P with q_i != 0 (the set is empty)")
            P, q = P[~zero], q[~zero]
            if P.shape[0] == 0:
                P = q = None
        self._prob = polyhedral_problem(n, G, h, P, q, lb=lb, ub=ub, rho=rho)
        self.G, self.h, self.P, self.q = G, h, P, q
        f = self._prob.factor
        self.lb = np.full(n, -np.inf) if lb is None else np.broadcast_to(np.asarray(to_numpy(lb), float), (n,)).copy()
        self.ub = np.full(n, np.inf) if ub is None else np.broadcast_to(np.asarray(to_numpy(ub), float), (n,)).copy()
        self.n = n
        self.polish = bool(polish)
        self.warm_start = bool(warm_start)
        self._warm = None
        self.last_residual = math.nan
        self.last_iterations = 0
        self.last_info: dict | None = None
        self.n_factorizations = f.n_factorizations
        if check_feasible:
            self._check_feasible()

    @property
    def factor(self):
        return self._prob.factor

    def _check_feasible(self):
        from scipy.optimize import linprog

        n = self.n
        bounds = [(None if not np.isfinite(lo) else lo, None if not np.isfinite(hi) else hi)
                  for lo, hi in zip(self.lb, self.ub)]
        res = linprog(np.zeros(n), A_ub=self.G, b_ub=self.h, A_eq=self.P, b_eq=self.q, bounds=bounds,
                      method="highs")
        if res.status == 2:
            raise InvalidProblemError("G, h, P, q, lb, ub: the polyhedron is empty (LP infeasible)")

    def reset(self):
        """Forget the warm start."""
        self._warm = None

    def _split_size(self, n):
        return None

    def _project_w(self, w):
        alpha, tol, max_iter, check_every, gate = self._opts
        out, info = _run(self._prob, w, self._warm if self.warm_start else None, None, alpha, tol, max_iter,
                         check_every, gate, self.polish)
        self._warm = info["warm"] if self.warm_start else None
        self.last_info = info
        self.last_iterations = int(info["iterations"])
        r = info["residual"]
        self.last_residual = float(r.max()) if _size(r) else 0.0
        return out

    def _violation(self, x, y):
        w = _cat(x, y)
        parts = []
        if self.G is not None:
            parts.append(w @ self._const("G", self.G, w).T - self._const("h", self.h, w))
        if self.P is not None:
            r = w @ self._const("P", self.P, w).T - self._const("q", self.q, w)
            parts += [r, -r]
        fin_lo, fin_hi = np.isfinite(self.lb), np.isfinite(self.ub)
        if fin_lo.any():
            parts.append(self._const("lb", self.lb[fin_lo], w) - w[..., fin_lo])
        if fin_hi.any():
            parts.append(w[..., fin_hi] - self._const("ub", self.ub[fin_hi], w))
        if not parts:
            return _amax0(w[..., :0])
        out = parts[0]
        for p in parts[1:]:
            out = _cat(out, p)
        return _amax0(out)

    def __repr__(self):
        f = self.factor
        return f"Polyhedron(n={self.n}, inequalities={f.m_in}, equalities={f.m - f.m_in}, bounds={int(f.box.sum())})"


class Dykstra(CSet):
    r"""Projection onto the intersection of closed convex sets by Dykstra's algorithm.

    With increments ``p_i`` (invariant ``w = w0 - sum_i p_i``): for each set in turn,
    ``v = P_i(w + p_i)``, ``p_i <- w + p_i - v``, ``w <- v``. Stops when no set moves the iterate by
    more than ``tol * max(1, ||w0 - w_prev||_inf)`` in a full cycle. ``warm_start`` keeps the
    increments of the last call (Dykstra is block-coordinate ascent on the dual, so a dual warm
    start is valid; it is dropped when the batch shape changes).

    Parameters
    ----------
    sets : sequence of CSet or callables ``(x, y) -> (x, y)``
        Each must be an exact projection onto a closed convex set; the intersection must be
        non-empty.
    max_iter : int, default 1000
        Cycles.
    tol : float, default 1e-10

    Attributes
    ----------
    last_residual : float
        Largest move of a set in the last cycle (units of ``w``).
    last_iterations : int
        Cycles of the last call.
    """

    def __init__(self, sets, max_iter=1000, tol=1e-10, *, warm_start=True, check_finite=True):
        super().__init__(check_finite)
        sets = list(sets)
        if not sets:
            raise InvalidProblemError("sets: give at least one set")
        for i, s in enumerate(sets):
            if not (isinstance(s, CSet) or callable(s)):
                raise InvalidProblemError(f"sets[{i}]: expected a CSet or a callable (x, y) -> (x, y)")
        self.sets = sets
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
            raise InvalidProblemError(f"max_iter: must be an integer >= 1, got {max_iter!r}")
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (math.isfinite(tol) and tol > 0):
            raise InvalidProblemError(f"tol: must be a finite number > 0, got {tol!r}")
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.warm_start = bool(warm_start)
        for attr in ("n_x", "n_y", "n"):
            vals = {getattr(s, attr) for s in sets if isinstance(s, CSet) and getattr(s, attr) is not None}
            if len(vals) > 1:
                raise InvalidProblemError(f"sets: inconsistent {attr} {sorted(vals)}")
            setattr(self, attr, vals.pop() if vals else None)
        self._warm = None
        self.last_residual = math.nan
        self.last_iterations = 0

    def reset(self):
        self._warm = None

    def _split_size(self, n):
        if self.n_x is not None:
            return super()._split_size(n)
        raise InvalidProblemError("w: Dykstra needs n_x (from one of its sets) to split a stacked vector; "
                                  "call project(x, y)")

    def _project(self, x0, y0):
        def amax(a):
            if a.shape[-1] == 0:
                return a.sum(-1) * 0
            return a.abs().amax(-1) if is_torch(a) else np.abs(a).max(-1)

        k = len(self.sets)
        for s in self.sets:  # validate sizes once; the cycles below call the kernels directly
            if isinstance(s, CSet):
                s._pair(x0, y0)
        warm = self._warm
        shape = (tuple(x0.shape), tuple(y0.shape), is_torch(x0), str(getattr(x0, "device", "")),
                 str(x0.dtype))
        if self.warm_start and warm is not None and warm[0] == shape:
            px, py, xprev, yprev = warm[1], warm[2], warm[3], warm[4]
            x = x0 - sum(px)
            y = y0 - sum(py)
            one = x0[..., 0] * 0 + 1
            scale = _maximum(_maximum(amax(x0 - xprev), amax(y0 - yprev)), one)
        else:
            px = [x0 * 0 for _ in range(k)]
            py = [y0 * 0 for _ in range(k)]
            x, y = x0, y0
            one = x0[..., 0] * 0 + 1
            scale = _maximum(_maximum(amax(x0), amax(y0)), one)
        eps = self.tol * scale
        move = None
        cycles = 0
        while cycles < self.max_iter:
            cycles += 1
            move = None
            for i, s in enumerate(self.sets):
                ax, ay = x + px[i], y + py[i]
                nx, ny = s._project(ax, ay) if isinstance(s, CSet) else s(ax, ay)
                px[i], py[i] = ax - nx, ay - ny
                mv = _maximum(amax(x - nx), amax(y - ny))
                move = mv if move is None else _maximum(move, mv)
                x, y = nx, ny
            ok = move <= eps
            if bool(ok.all()):
                break
        self.last_iterations = cycles
        self.last_residual = float(move.max()) if move is not None and _size(move) else 0.0
        self._warm = (shape, px, py, x, y) if self.warm_start else None
        return x, y

    def _violation(self, x, y):
        out = None
        for s in self.sets:
            if isinstance(s, CSet):
                v = s._violation(x, y)
            else:
                nx, ny = s(x, y)
                v = _maximum(_amax0(x - nx), _amax0(nx - x))
                v = _maximum(v, _maximum(_amax0(y - ny), _amax0(ny - y)))
            out = v if out is None else _maximum(out, v)
        return out

    def __repr__(self):
        return f"Dykstra({', '.join(repr(s) for s in self.sets)})"


class _Product(CSet):
    """``X x Y`` from two plain projections ``v -> P(v)`` (None: the whole space) or Boxes."""

    def __init__(self, X, Y, check_finite=True):
        super().__init__(check_finite)
        self.X, self.Y = X, Y

    @staticmethod
    def _apply(S, v):
        if S is None:
            return v
        if isinstance(S, Box):
            return S.project(v)
        return S(v)

    def _project(self, x, y):
        return self._apply(self.X, x), self._apply(self.Y, y)

    def _violation(self, x, y):
        nx, ny = self._project(x, y)
        return _maximum(_amax0(_cat(x - nx, nx - x)), _amax0(_cat(y - ny, ny - y)))


# ----------------------------------------------------------------------------------------------
# automatic C for affine lower levels
# ----------------------------------------------------------------------------------------------

def _eval_np(field, x, params):
    """A LowerQP/LowerLP field at host ``x`` as float64 numpy (tries numpy, then a CPU tensor)."""
    try:
        return np.asarray(to_numpy(lower_data(field, x, params)), dtype=np.float64)
    except Exception:  # a callable written for tensors only
        torch = get_torch()
        xt = torch.as_tensor(x, dtype=torch.float64)
        pt = tuple(torch.as_tensor(np.asarray(p), dtype=torch.float64) if isinstance(p, np.ndarray) else p
                   for p in params)
        return np.asarray(to_numpy(lower_data(field, xt, pt)), dtype=np.float64)


def from_lower(problem, *, rtol=1e-12, **options):
    """The polyhedral coupled set ``C`` of a lower level that is affine in ``(x, y)``, or None.

    When ``problem.lower`` is a :class:`LowerQP`/:class:`LowerLP` whose ``A`` is constant and whose
    ``b(x) = b0 + B x`` is affine, ``g(x, y) = A y - B x - b0`` and

        ``C = {(x, y) : A y - B x <= b0 (rows of eq_mask: =), x in X, y in Y}``.

    Affinity is detected numerically: ``A`` and ``b`` are evaluated at ``x = 0``, at every unit
    vector ``e_j`` (giving ``B``) and at one seeded random point, where ``A`` must be unchanged and
    ``b`` must match ``b0 + B x`` to ``rtol`` (relative to ``max(1, |b0| + |B||x|)``). Box ``X``/``Y``
    become bounds of the :class:`Polyhedron`; other (callable) ``X``/``Y`` are intersected by
    :class:`Dykstra`. ``options`` go to :class:`Polyhedron`.

    Returns None (the caller then needs ``proj_C``) when there is no structured lower level, when
    ``A`` depends on ``x`` or ``b`` is not affine, or when the data cannot be evaluated.
    """
    low = getattr(problem, "lower", None)
    if not isinstance(low, (LowerQP, LowerLP)):
        return None
    n_x, n_y, params = problem.n_x, problem.n_y, tuple(problem.params)
    try:
        x0 = np.zeros(n_x)
        A0 = _eval_np(low.A, x0, params)
        b0 = _eval_np(low.b, x0, params).reshape(-1)
        m = b0.shape[0]
        A0 = A0.reshape(m, n_y)
        r = np.random.default_rng(0).standard_normal(n_x)
        atol = rtol * max(1.0, np.abs(A0).max(initial=0.0))
        # an x-dependent A (bilinear coupling) is rejected by one evaluation, before the n_x probes
        if callable(low.A) and not np.allclose(_eval_np(low.A, r, params).reshape(m, n_y), A0, rtol=rtol, atol=atol):
            return None
        B = np.empty((m, n_x))
        e = np.zeros(n_x)  # one probe vector reused: a list of np.eye rows kept n_x identity matrices alive
        for j in range(n_x):
            e[j] = 1.0
            if callable(low.A) and not np.allclose(_eval_np(low.A, e, params).reshape(m, n_y), A0, rtol=rtol,
                                                   atol=atol):
                return None
            B[:, j] = _eval_np(low.b, e, params).reshape(m) - b0
            e[j] = 0.0
        br = _eval_np(low.b, r, params).reshape(m)
        pred = b0 + B @ r
        tol = rtol * np.maximum(1.0, np.abs(b0) + np.abs(B) @ np.abs(r))
        if not np.all(np.abs(br - pred) <= tol):
            return None
    except Exception:  # data that cannot be evaluated on host arrays: no automatic C
        return None
    if not (np.all(np.isfinite(A0)) and np.all(np.isfinite(B)) and np.all(np.isfinite(b0))):
        return None
    rows = np.hstack([-B, A0])
    eq = np.zeros(m, dtype=bool) if problem.eq_mask is None else np.asarray(problem.eq_mask, dtype=bool)
    lb = np.full(n_x + n_y, -np.inf)
    ub = np.full(n_x + n_y, np.inf)
    extra = []
    for S, sl, name in ((problem.X, slice(0, n_x), "X"), (problem.Y, slice(n_x, n_x + n_y), "Y")):
        if S is None:
            continue
        if isinstance(S, Box):
            lo, hi = S.bounds(sl.stop - sl.start)
            lb[sl], ub[sl] = lo, hi
        else:
            extra.append(name)
    G = rows[~eq] if np.any(~eq) else None
    h = b0[~eq] if np.any(~eq) else None
    P = rows[eq] if np.any(eq) else None
    q = b0[eq] if np.any(eq) else None
    has_box = np.isfinite(lb).any() or np.isfinite(ub).any()
    poly = Polyhedron(G, h, P, q, lb=lb if has_box else None, ub=ub if has_box else None, n=n_x + n_y, **options)
    poly.n_x, poly.n_y = n_x, n_y
    if extra:
        X = problem.X if "X" in extra else None
        Y = problem.Y if "Y" in extra else None
        return Dykstra([poly, _Product(X, Y)])
    return poly
