"""Equality-constrained problems ``min f(x) s.t. c(x) = 0``.

A :class:`Problem` is a frozen record of callables and metadata. NumPy problems supply their
derivatives (dense or scipy.sparse matrices, or products); torch problems built by
:meth:`Problem.from_torch` get every missing derivative from ``torch.func``.

Sign convention: ``L(x, lam) = f(x) + lam^T c(x)`` (IPOPT, CUTEst, S2MPJ).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import is_torch
from .._errors import InvalidProblemError

__all__ = ["Problem", "check_problem", "TAGS"]

TAGS = frozenset({"ne", "qp", "linear_constraints", "multiple_minima", "degenerate", "slow"})


def _is_sparse(a) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover
        return False
    return sp.issparse(a)


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """``min f(x) s.t. c(x) = 0`` with ``x in R^n`` and ``c: R^n -> R^m``, ``1 <= m <= n``.

    Parameters
    ----------
    n, m : int
        Numbers of variables and equality constraints.
    x0 : array (n,)
        Standard starting point (torch problems may give ``(B, n)``).
    c : callable ``c(x) -> (m,)``
        Constraints.
    f : callable ``f(x) -> float`` or None
        Objective; None for a system of equations (f = 0).
    grad : callable ``grad(x) -> (n,)``
        Gradient of f (required for numpy problems with an objective).
    jac : callable ``jac(x) -> (m, n)`` dense or scipy.sparse
        Constraint Jacobian ``G``. Alternatively ``jvp(x, v) = G v`` and ``vjp(x, w) = G^T w``.
    hess_lag : callable ``hess_lag(x, lam) -> (n, n)`` dense or scipy.sparse
        ``grad^2 f + sum_i lam_i grad^2 c_i``. Alternatively ``hvp_lag(x, lam, v)``.
    fg, cj : callable, optional
        Fused ``fg(x) -> (f, grad)`` and ``cj(x) -> (c, jac)``.
    y0 : array (m,), optional
        Starting multipliers (zeros by default).
    bounds : (lower, upper), optional
        Variable bounds carried by adapters; ``solve`` refuses finite bounds unless
        ``ignore_bounds=True``.
    name, f_star, x_star, y_star, tags, source, params
        Metadata: known optimum, tags from :data:`TAGS`, origin ("optkit", "s2mpj", "pycutest",
        "user"), and the parameters of a torch problem.
    """

    n: int
    m: int
    x0: Any
    c: Callable
    f: Callable | None = None
    grad: Callable | None = None
    jac: Callable | None = None
    jvp: Callable | None = None
    vjp: Callable | None = None
    hess_lag: Callable | None = None
    hvp_lag: Callable | None = None
    fg: Callable | None = None
    cj: Callable | None = None
    y0: Any = None
    bounds: Any = None
    name: str = "problem"
    f_star: float | None = None
    x_star: Any = None
    y_star: Any = None
    tags: frozenset = frozenset()
    source: str = "user"
    params: tuple | None = None
    #: "numpy" (callables on numpy arrays) or "torch" (single-instance torch functions)
    kind: str = "numpy"
    # torch problems: the raw user functions f(x, *params), c(x, *params)
    torch_f: Callable | None = None
    torch_c: Callable | None = None

    def __post_init__(self):
        for name in ("n", "m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InvalidProblemError(f"Problem: '{name}' must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.n < 1:
            raise InvalidProblemError(f"Problem: 'x0' must be non-empty (n = {self.n})")
        if self.m < 1:
            raise InvalidProblemError(
                f"Problem: 'c' must return at least one constraint (m = {self.m}); "
                "use an unconstrained solver for m = 0")
        if self.m > self.n:
            raise InvalidProblemError(
                f"Problem: 'm' = {self.m} constraints > n = {self.n} variables: the KKT matrix is "
                "singular; solve the equations in the least-squares sense instead")
        if not callable(self.c):
            raise InvalidProblemError("Problem: 'c' must be callable")
        if self.kind not in ("numpy", "torch"):
            raise InvalidProblemError(f"Problem: 'kind' must be 'numpy' or 'torch', got {self.kind!r}")
        object.__setattr__(self, "tags", frozenset(self.tags))
        unknown = self.tags - TAGS
        if unknown:
            raise InvalidProblemError(f"Problem: unknown tags {sorted(unknown)}; valid: {sorted(TAGS)}")
        if self.kind == "numpy":
            x0 = np.asarray(self.x0, dtype=np.float64).reshape(-1) if not is_torch(self.x0) else self.x0
            if is_torch(x0):
                raise InvalidProblemError("Problem: a numpy problem needs a numpy 'x0'; use Problem.from_torch")
            if x0.shape != (self.n,):
                raise InvalidProblemError(f"Problem: 'x0' must have shape ({self.n},), got {x0.shape}")
            object.__setattr__(self, "x0", x0)
            if self.y0 is not None:
                y0 = np.asarray(self.y0, dtype=np.float64).reshape(-1)
                if y0.shape != (self.m,):
                    raise InvalidProblemError(f"Problem: 'y0' must have shape ({self.m},), got {y0.shape}")
                object.__setattr__(self, "y0", y0)
            if self.f is not None and self.grad is None and self.fg is None:
                raise InvalidProblemError("Problem: 'grad' (or 'fg') is required when 'f' is given")
            if self.jac is None and self.cj is None and (self.jvp is None or self.vjp is None):
                raise InvalidProblemError("Problem: give 'jac' (or 'cj'), or both 'jvp' and 'vjp'")
            if self.hess_lag is None and self.hvp_lag is None:
                raise InvalidProblemError("Problem: give 'hess_lag' or 'hvp_lag'")

    # ------------------------------------------------------------------ properties
    @property
    def has_objective(self) -> bool:
        return self.f is not None or self.fg is not None or self.torch_f is not None

    @property
    def finite_bounds(self) -> bool:
        if self.bounds is None:
            return False
        lo, hi = self.bounds
        lo = np.asarray(lo, dtype=float) if lo is not None else np.full(self.n, -np.inf)
        hi = np.asarray(hi, dtype=float) if hi is not None else np.full(self.n, np.inf)
        return bool(np.isfinite(lo).any() or np.isfinite(hi).any())

    def replace(self, **changes) -> Problem:
        return dataclasses.replace(self, **changes)

    def __repr__(self):
        return f"Problem(name={self.name!r}, n={self.n}, m={self.m}, kind={self.kind!r}, source={self.source!r})"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_callables(cls, f, c, x0, *, grad=None, jac=None, jvp=None, vjp=None, hess_lag=None,
                       hvp_lag=None, fg=None, cj=None, m=None, **meta) -> Problem:
        """Problem from NumPy callables; ``m`` is read from ``c(x0)`` when not given."""
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        if m is None:
            c0 = np.asarray(c(x0.copy()), dtype=np.float64).reshape(-1)
            m = c0.size
        return cls(n=x0.size, m=int(m), x0=x0, c=c, f=f, grad=grad, jac=jac, jvp=jvp, vjp=vjp,
                   hess_lag=hess_lag, hvp_lag=hvp_lag, fg=fg, cj=cj, **meta)

    @classmethod
    def from_qp(cls, Q, p, A, b, x0=None, **meta) -> Problem:
        """``min 1/2 x^T Q x + p^T x  s.t.  A x = b`` (Q dense or sparse, symmetrised)."""
        sparse = _is_sparse(Q) or _is_sparse(A)
        if sparse:
            import scipy.sparse as sp

            Q = sp.csr_matrix(Q, dtype=np.float64)
            A = sp.csr_matrix(A, dtype=np.float64)
            Q = ((Q + Q.T) * 0.5).tocsr()
        else:
            Q = np.asarray(Q, dtype=np.float64)
            A = np.atleast_2d(np.asarray(A, dtype=np.float64))
            Q = 0.5 * (Q + Q.T)
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        n = p.size
        if Q.shape != (n, n):
            raise InvalidProblemError(f"from_qp: 'Q' must have shape ({n}, {n}), got {Q.shape}")
        if A.ndim != 2 or A.shape[1] != n:
            raise InvalidProblemError(f"from_qp: 'A' must have shape (m, {n}), got {A.shape}")
        if b.shape != (A.shape[0],):
            raise InvalidProblemError(f"from_qp: 'b' must have shape ({A.shape[0]},), got {b.shape}")
        for name, v in (("Q", Q), ("p", p), ("A", A), ("b", b)):
            data = v.data if _is_sparse(v) else v
            if not np.all(np.isfinite(data)):
                raise InvalidProblemError(f"from_qp: '{name}' contains NaN or inf")
        x0 = np.zeros(n) if x0 is None else np.asarray(x0, dtype=np.float64).reshape(-1)
        tags = set(meta.pop("tags", ())) | {"qp", "linear_constraints"}
        return cls(
            n=n, m=A.shape[0], x0=x0,
            f=lambda x: float(0.5 * x @ (Q @ x) + p @ x),
            grad=lambda x: np.asarray(Q @ x).reshape(-1) + p,
            c=lambda x: np.asarray(A @ x).reshape(-1) - b,
            jac=lambda x: A,
            hess_lag=lambda x, lam: Q,
            tags=frozenset(tags), **meta,
        )

    @classmethod
    def from_torch(cls, f, c, x0, params=None, **meta) -> Problem:
        """Problem from single-instance torch functions ``f(x, *params)`` and ``c(x, *params)``.

        ``x0`` is ``(n,)`` or ``(B, n)``; every tensor in ``params`` may carry a leading batch
        dimension ``B`` (then solve() solves the B instances in one batched run). Derivatives come
        from ``torch.func`` (gradient, JVP/VJP of c, forward-over-reverse Lagrangian HVP).
        ``f=None`` gives a system of equations.
        """
        from .._backend import get_torch

        torch = get_torch()
        if not is_torch(x0):
            x0 = torch.as_tensor(np.asarray(x0, dtype=np.float64))
        if x0.ndim not in (1, 2) or x0.shape[-1] < 1:
            raise InvalidProblemError(f"from_torch: 'x0' must have shape (n,) or (B, n), got {tuple(x0.shape)}")
        if not x0.is_floating_point():
            x0 = x0.to(torch.float64)
        params = tuple(params) if params is not None else ()
        n = x0.shape[-1]
        batched = x0.ndim == 2 or any(is_torch(p) and p.ndim >= 1 and _param_batched(p, x0) for p in params)
        xs = x0[0] if x0.ndim == 2 else x0
        ps = tuple(p[0] if (is_torch(p) and batched and _param_batched(p, x0)) else p for p in params)
        with torch.no_grad():
            c0 = c(xs, *ps)
        if not is_torch(c0) or c0.ndim != 1:
            raise InvalidProblemError(f"from_torch: 'c' must return a 1-D tensor, got {type(c0).__name__}"
                                      f"{tuple(getattr(c0, 'shape', ()))}")
        m = c0.shape[0]

        def _np_c(x):  # numpy-facing helpers for check_problem / baselines (single instance)
            with torch.no_grad():
                return c(torch.as_tensor(x, dtype=x0.dtype, device=x0.device), *ps).cpu().numpy()

        return cls(n=n, m=m, x0=x0, c=_np_c, f=None, params=params, kind="torch",
                   torch_f=f, torch_c=c, **meta)


def _param_batched(p, x0) -> bool:
    """A parameter is batched when x0 is (B, n) and p's leading dim is B, or p is 2-D or more."""
    if x0.ndim == 2:
        return p.ndim >= 1 and p.shape[0] == x0.shape[0]
    return False


# ---------------------------------------------------------------------- derivative checks
def _dense(a):
    return a.toarray() if _is_sparse(a) else np.asarray(a, dtype=np.float64)


def check_problem(problem: Problem, x=None, derivatives: bool = False, lam=None, rtol: float = 1e-6,
                  rng=0) -> dict:
    """Check shapes and finiteness at ``x`` (default ``x0``); with ``derivatives=True`` compare every
    supplied derivative with central differences (relative tolerance ``rtol``).

    Returns a dict of the measured relative errors; raises :class:`InvalidProblemError` naming the
    first callable that fails.
    """
    if problem.kind == "torch":
        from ._oracle import make_oracle

        # torch problems: derivatives come from torch.func; check the values only
        orc = make_oracle(problem, None)
        X = orc.x0_batch()
        orc.check_start(X, orc.y0_batch())
        return {}
    x = problem.x0 if x is None else np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (problem.n,):
        raise InvalidProblemError(f"check_problem: 'x' must have shape ({problem.n},), got {x.shape}")
    n, m = problem.n, problem.m
    gen = np.random.default_rng(rng)
    lam = gen.standard_normal(m) if lam is None else np.asarray(lam, dtype=np.float64).reshape(-1)
    from ._oracle import NumpyFunctions

    fn = NumpyFunctions(problem)
    fn.check_at(x, lam)
    out = {}
    if not derivatives:
        return out
    _, g0 = fn.fg(x)
    h = 1e-6 * max(1.0, float(np.max(np.abs(x))))

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))

    E = np.eye(n)
    if problem.has_objective:
        fd_g = np.array([(fn.fg(x + h * E[i])[0] - fn.fg(x - h * E[i])[0]) / (2 * h) for i in range(n)])
        out["grad"] = rel(g0, fd_g)
    fd_J = np.column_stack([(fn.c(x + h * E[i]) - fn.c(x - h * E[i])) / (2 * h) for i in range(n)])
    v = gen.standard_normal(n)
    w = gen.standard_normal(m)
    out["jac"] = max(rel(fn.jvp(x, v), fd_J @ v), rel(fn.vjp(x, w), fd_J.T @ w))

    def grad_lag(z):
        return fn.fg(z)[1] + fn.vjp(z, lam)

    fd_H = np.column_stack([(grad_lag(x + h * E[i]) - grad_lag(x - h * E[i])) / (2 * h) for i in range(n)])
    out["hess_lag"] = rel(fn.hvp(x, lam, v), fd_H @ v)
    tol_fd = max(rtol, 1e-6)
    for name, err in out.items():
        # central differences carry O(h^2) truncation and O(eps/h) rounding error; scale for both
        if not math.isfinite(err) or err > 100 * tol_fd:
            raise InvalidProblemError(
                f"check_problem: '{name}' disagrees with central differences (relative error {err:.3g})")
    return out
