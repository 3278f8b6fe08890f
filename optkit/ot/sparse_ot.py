"""Sparsity-constrained optimal transport (Liu, Puigcerver & Blondel, ICLR 2023).

Solve::

    min_{T in U(a, b)} <T, C> + (reg/2) ||T||_F^2   s.t.  ||T[:, j]||_0 <= max_nz  for every column j

through its semi-dual (default) or dual, whose optimal values coincide with the convex relaxation
in which ``||t_j||^2`` becomes the squared k-support norm (see ``docs/ot.md``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from typing import Any

import numpy as np

from .._backend import (
    check_finite,
    check_integer,
    get_torch,
    infer_backend,
    is_torch,
    to_backend,
    to_numpy,
)
from .._errors import InvalidProblemError
from .._logging import get_logger, verbosity
from .._options import Options, option
from .._result import Result, Status
from ..callbacks import IterInfo, call_callback
from . import _kernels
from ._bfgs import DenseInverseHessian, LimitedInverseHessian, weak_wolfe
from ._screening import ScreenedSemiDual, _gather_last, _gather_rows, default_candidates

__all__ = ["sparse_ot", "SparseOTResult", "SparseOTOptions", "SparseOTSolver", "KSparsePlan"]

log = get_logger("ot")

_METHODS = ("auto", "bfgs", "lbfgs", "ssn", "lp", "adam")


@dataclasses.dataclass(frozen=True)
class SparseOTOptions(Options):
    """Options of :func:`sparse_ot` (validated; see its docstring)."""

    reg: float = option(1.0, kind="float", low=0.0, low_open=True, doc="gamma, weight of (gamma/2)||T||^2")
    axis: str = option("columns", kind="choice", choices=("columns", "rows"),
                       doc="which slices of the plan have at most max_nz nonzeros")
    formulation: str = option("semi-dual", kind="choice", choices=("semi-dual", "dual"),
                              doc="semi-dual: exact column sums, m variables; dual: POT parity")
    method: str = option("auto", kind="choice", choices=_METHODS, doc="solver (see Notes)")
    tol: float | None = option(None, kind="float", low=0.0, low_open=True, allow_none=True,
                               doc="marginal L1 residual / mass; None: 1e-8 (float64), 1e-5 (float32)")
    max_iter: int | None = option(None, kind="int", low=0, allow_none=True,
                                  doc="iterations; None: 5000 (20 for method='adam')")
    time_limit: float | None = option(None, kind="float", low=0.0, low_open=True, allow_none=True,
                                      doc="seconds")
    history: int = option(50, kind="int", low=1, doc="L-BFGS memory")
    dense_max: int = option(10_000, kind="int", low=0, doc="largest m for dense BFGS")
    screening: Any = option("auto", kind="choice", choices=("auto", True, False),
                            doc="exact evaluation on a few candidate rows per column, refreshed by a "
                                "safe margin test (auto: semi-dual, L = max(2k + 3, 7) rows, m >= 4 (L + 1))")
    adaptive_step: bool = option(True, kind="bool",
                                 doc="start each line search at twice the last accepted step (<= 1)")
    polish: bool = option(True, kind="bool", doc="semismooth-Newton polish in the smooth regime")
    certify: Any = option("auto", kind="choice", choices=("auto", True, False),
                          doc="kink certificate by the tie LP (auto: numpy only)")
    certify_tol: float = option(1e-6, kind="float", low=0.0, low_open=True,
                                doc="row residual / mass and relative gap a kink certificate must reach "
                                    "(floating-point noise in alpha leaves ~1e-7 on hard kinks)")
    stall_rtol: float = option(1e-10, kind="float", low=0.0,
                               doc="relative decrease per 50 iterations, sustained over 500, below "
                                   "which a run ends STALLED (after a certificate attempt)")
    preset: str | None = option(None, kind="choice", choices=(None, "jaxopt", "pot"), allow_none=True,
                                doc="paper-faithful reproduction settings")
    plan_format: str = option("dense", kind="choice", choices=("dense", "ksparse"), doc="plan output")
    check_every: int | None = option(None, kind="int", low=1, allow_none=True,
                                     doc="iterations between stopping tests (None: numpy 1, torch 10)")
    lr: float = option(1e-2, kind="float", low=0.0, low_open=True, doc="Adam step (method='adam')")
    callback: Any = option(None, kind="callable", allow_none=True, doc="called with IterInfo")
    record_history: bool = option(False, kind="bool", doc="keep per-iteration records")
    verbose: int = option(0, kind="int", low=0, high=3, doc="0-3")


@dataclasses.dataclass
class KSparsePlan:
    """A plan stored as ``max_nz`` (index, value) pairs per sparse slice.

    With ``axis="columns"``, ``indices``/``values`` have shape (..., n, k): row indices and values
    of each column's entries, and ``shape`` is the dense (..., m, n). With ``axis="rows"`` they
    have shape (..., m, k) and hold column indices of each row's entries. Values may be zero.
    """

    indices: Any
    values: Any
    shape: tuple
    axis: str = "columns"

    def to_dense(self):
        if self.axis == "columns":
            return _kernels.plan_to_dense(self.indices, self.values, self.shape[-2])
        return _transpose(_kernels.plan_to_dense(self.indices, self.values, self.shape[-1]))

    @property
    def nnz(self):
        return _count_nonzero(self.values > 0, axis=(-2, -1))

    def col_nnz(self):
        return _count_nonzero(self.values > 0, axis=-1)


def _count_nonzero(mask, axis):
    if is_torch(mask):
        return mask.sum(dim=axis)
    return np.count_nonzero(mask, axis=axis)


@dataclasses.dataclass(repr=False)
class SparseOTResult(Result):
    """Result of :func:`sparse_ot`.

    ``x`` is alpha (row potentials); ``fun`` the optimal dual value (the common optimal value of
    the semi-dual, the dual and the k-support relaxation; for k = 1 it equals OT + (reg/2)||b||^2).
    """

    potentials: Any = None
    plan: Any = None
    relaxed_plan: Any = None
    regime: str = "unknown"
    marginal_residual: Any = None
    duality_gap: Any = None
    primal_cost: Any = None
    reg_value: Any = None
    nnz: Any = None
    statuses: Any = None


# ----------------------------------------------------------------------------------------------
# input validation


def _prepare(a, b, C, max_nz, opts: SparseOTOptions, device, dtype):
    """Validate and convert inputs; return a dict describing the (column-sparse) problem."""
    half = None
    if C is None:
        raise InvalidProblemError("C: the cost matrix is required")
    be = infer_backend(a, b, C, names=["a", "b", "C"], device=device, dtype=dtype)
    if be.is_torch:
        torch = get_torch()
        for name, v in (("a", a), ("b", b), ("C", C)):
            if is_torch(v) and not (v.is_floating_point()):
                raise InvalidProblemError(
                    f"{name}: integer/bool tensors are not accepted (got {v.dtype}); pass floats")
        half = be.dtype if be.dtype in (torch.float16, torch.bfloat16) else None
        if half is not None:
            # half precision: compute in float32 (ot.md §9) and cast the outputs back
            be = dataclasses.replace(be, dtype=torch.float32)
    Cx = to_backend(C, be, "C")
    if Cx.ndim not in (2, 3):
        raise InvalidProblemError(f"C: expected shape (m, n) or (B, m, n), got {tuple(Cx.shape)}")
    check_finite(Cx, "C")
    batched = Cx.ndim == 3
    B = Cx.shape[0] if batched else 1
    Cx = Cx if batched else Cx[None]
    if opts.axis == "rows":
        Cx = _transpose(Cx)
        a, b = b, a
    m, n = Cx.shape[-2], Cx.shape[-1]
    rows_name, cols_name = ("a", "b") if opts.axis == "columns" else ("b", "a")

    def marg(v, size, name):
        if v is None:
            out = to_backend(np.full((B, size), 1.0 / size), be, name)
            return out
        v = to_backend(v, be, name)
        if v.ndim == 1 and v.shape[0] == size:
            v = v[None] if not batched else _broadcast_rows(v, B)
        elif not (v.ndim == 2 and tuple(v.shape) == (B, size) and batched):
            exp = f"({size},)" + (f" or ({B}, {size})" if batched else "")
            raise InvalidProblemError(f"{name}: expected shape {exp}, got {tuple(v.shape)}")
        check_finite(v, name)
        if bool((v < 0).any()):
            raise InvalidProblemError(f"{name}: entries must be nonnegative, found {int((v < 0).sum())} negative")
        return v

    ax = marg(a, m, rows_name)
    bx = marg(b, n, cols_name)
    sa = _sum_last(ax)
    sb = _sum_last(bx)
    if bool((sa <= 0).any()):
        raise InvalidProblemError(f"{rows_name}: total mass must be positive")
    diff = _abs(sa - sb)
    if bool((diff > 1e-8 * sa).any()):
        i = int(np.argmax(np.asarray(to_numpy(diff))))
        raise InvalidProblemError(
            f"unbalanced marginals: sum({rows_name}) = {float(sa[i]):.12g} but "
            f"sum({cols_name}) = {float(sb[i]):.12g}; sparse OT needs equal masses")
    bx = bx * (sa / sb)[:, None]  # a rescaled copy, never the caller's array
    zero_rows = bool((ax == 0).any())
    zero_cols = bool((bx == 0).any())
    if (zero_rows or zero_cols) and batched:
        raise InvalidProblemError(
            f"{rows_name if zero_rows else cols_name}: zero entries are only supported for a single "
            "instance (call per instance)")
    k = check_integer(max_nz, "max_nz", low=1)
    return dict(be=be, C=Cx, a=ax, b=bx, k=k, m=m, n=n, B=B, batched=batched, mass=sa,
                zero_rows=zero_rows, zero_cols=zero_cols,
                out_dtype=half if be.is_torch else None)


def _transpose(C):
    return C.transpose(-1, -2) if is_torch(C) else np.swapaxes(C, -1, -2)


def _broadcast_rows(v, B):
    if is_torch(v):
        return v[None].expand(B, -1).clone()
    return np.broadcast_to(v, (B, v.shape[0])).copy()


def _sum_last(v):
    return v.sum(-1)


def _abs(v):
    return v.abs() if is_torch(v) else np.abs(v)


def _contiguous(x):
    return x.contiguous() if is_torch(x) else np.ascontiguousarray(x)


# ----------------------------------------------------------------------------------------------
# objective


class _Objective:
    """f = -S_k(alpha) (semi-dual) or -D_k(alpha, beta) (dual), batched over the leading axis."""

    def __init__(self, a, b, CT, k, reg, formulation, xp, screening=False):
        self.a, self.b, self.CT, self.k, self.reg = a, b, CT, k, reg
        self.semi = formulation == "semi-dual"
        self.m, self.n = a.shape[-1], b.shape[-1]
        self.xp = xp
        self.nfev = 0
        # one (B, n, m) scratch buffer for X = alpha - C, reused by every evaluation: a fresh
        # allocation of that size costs as much as the evaluation itself (page faults)
        self.work = xp.empty(CT.shape, dtype=CT.dtype, device=CT.device if is_torch(CT) else None)
        self.screen = None
        L = default_candidates(k, self.m) if screening == "auto" else (
            default_candidates(k, self.m) or min(2 * k + 3, self.m - 1) if screening else 0)
        if self.semi and L and L + 1 < self.m and k < L:
            self.screen = ScreenedSemiDual(a, b, CT, k, reg, L, xp, work=self.work)

    def instance(self, i):
        """The objective of instance ``i`` alone (batch of one), sharing the data."""
        sl = slice(i, i + 1)
        sub = _Objective(self.a[sl], self.b[sl], self.CT[sl], self.k, self.reg,
                         "semi-dual" if self.semi else "dual", self.xp)
        return sub

    @property
    def dim(self):
        return self.m if self.semi else self.m + self.n

    def __call__(self, z):
        self.nfev += 1
        if self.screen is not None:
            S, gS, idx, val = self.screen(z)
            return -S, -gS, (idx, val)
        if self.semi:
            S, gS, idx, val = _kernels.semi_dual_kernel(z, self.a, self.b, self.CT, self.k, self.reg,
                                                        work=self.work)
            return -S, -gS, (idx, val)
        alpha, beta = z[..., : self.m], z[..., self.m:]
        D, ga, gb, idx, val = _kernels.dual_kernel(alpha, beta, self.a, self.b, self.CT, self.k,
                                                   self.reg, work=self.work)
        return -D, -self.xp.concat([ga, gb], axis=-1), (idx, val)

    def center(self, z):
        xp = self.xp
        if self.semi:
            return z - xp.mean(z, axis=-1, keepdims=True)
        c = xp.mean(z[..., : self.m], axis=-1, keepdims=True)
        return xp.concat([z[..., : self.m] - c, z[..., self.m:] + c], axis=-1)

    def residuals(self, g, mass):
        xp = self.xp
        r_row = xp.sum(xp.abs(g[..., : self.m]), axis=-1) / mass
        if self.semi:
            return r_row, xp.zeros_like(r_row)
        return r_row, xp.sum(xp.abs(g[..., self.m:]), axis=-1) / mass

    @staticmethod
    def merge_aux(xp, mask, new, old):
        if old is None:
            return new
        m3 = mask[:, None, None]
        return (xp.where(m3, new[0], old[0]), xp.where(m3, new[1], old[1]))


# ----------------------------------------------------------------------------------------------
# solver


@dataclasses.dataclass
class SparseOTState:
    """Iterate of :class:`SparseOTSolver` (batched arrays; ``z[:, :m]`` is alpha).

    ``z`` can be passed back as ``x0`` to warm-start another solve. ``status`` holds one code per
    instance (``-2`` while running).
    """

    z: Any
    f: Any  # minimised objective: minus the dual value
    g: Any
    status: Any
    it: int = 0
    nfev: int = 0
    _run: Any = dataclasses.field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return bool(self._run.finished)


_RUNNING = -2


class SparseOTSolver:
    """Solver object behind :func:`sparse_ot` with ``init`` / ``step`` / ``result`` / ``run``.

    ``SparseOTSolver(max_nz=2, reg=1.0, **options).run(a, b, C)`` equals ``sparse_ot(...)``. The
    step-wise form drives the iterative methods (``bfgs``, ``lbfgs``, ``adam``) from user code::

        solver = SparseOTSolver(max_nz=2, reg=1.0, method="bfgs")
        state = solver.init(a, b, C)
        while not state.finished:
            state = solver.step(state)
        res = solver.result(state)
    """

    def __init__(self, max_nz, **options):
        self.max_nz = max_nz
        self.options = SparseOTOptions.from_kwargs(**options)

    def init(self, a, b, C, x0=None, device=None, dtype=None) -> SparseOTState:
        P = _setup(a, b, C, self.max_nz, self.options, device, dtype)
        if P["zero_rows"] or P["zero_cols"] or P["method"] in ("lp", "pot"):
            raise InvalidProblemError(
                "method: init/step drive the iterative methods (bfgs, lbfgs, adam) on marginals "
                "without zero entries; use run() for this problem")
        run = _IterativeRun(P, P["k_eff"], self.options, P["method"], P["formulation"], P["tol"],
                            x0, time.perf_counter())
        return self._state(run)

    def step(self, state: SparseOTState) -> SparseOTState:
        run = state._run
        with _blas_threads(run.P["be"], run.P["m"]):
            run.step()
        return self._state(run)

    def result(self, state: SparseOTState) -> SparseOTResult:
        run = state._run
        P = run.P
        return _finish(P, run.output(), self.options, P["k_eff"], P["clamped"], P["tol"],
                       run.t_start, P["method"], P["formulation"])

    def run(self, a, b, C, x0=None, device=None, dtype=None) -> SparseOTResult:
        return _solve(a, b, C, self.max_nz, self.options, x0=x0, device=device, dtype=dtype)

    @staticmethod
    def _state(run):
        return SparseOTState(z=run.z, f=run.f, g=run.g, status=run.status, it=run.it,
                             nfev=run.nfev, _run=run)


def sparse_ot(a, b, C, *, max_nz, reg=1.0, axis="columns", formulation="semi-dual", method="auto",
              tol=None, max_iter=None, time_limit=None, history=50, dense_max=10_000,
              screening="auto", adaptive_step=True, polish=True,
              certify="auto", certify_tol=1e-6, stall_rtol=1e-10, preset=None, plan_format="dense", check_every=None, x0=None,
              callback=None, record_history=False, verbose=0, device=None, dtype=None, lr=1e-2
              ) -> SparseOTResult:
    r"""Optimal transport with at most ``max_nz`` nonzeros per column of the plan.

    Solves :math:`\min_{T \in U(a,b)} \langle T, C\rangle + \tfrac{\gamma}{2}\|T\|_F^2` subject to
    :math:`\|t_j\|_0 \le k` for every column, through the concave semi-dual
    :math:`S_k(\alpha) = \langle\alpha, a\rangle - \sum_j \max_{k,b_j}(\alpha - c_j)` (or the dual
    :math:`D_k(\alpha,\beta)`), both of which attain the optimal value of the convex relaxation with
    the squared k-support norm (Liu, Puigcerver & Blondel, ICLR 2023; derivation in docs/ot.md).

    Parameters
    ----------
    a : array (m,) or (B, m) or None
        Row marginal (None: uniform, mass 1). Nonnegative; zero entries are dropped and reinserted.
    b : array (n,) or (B, n) or None
        Column marginal, same total mass as ``a`` (rescaled within 1e-8 relative).
    C : array (m, n) or (B, m, n)
        Cost matrix. numpy in -> numpy float64 out; torch in -> torch out on the same device/dtype.
    max_nz : int
        k >= 1, the largest number of nonzeros per column (per row with ``axis="rows"``). k >= m is
        legal: it is the quadratically regularised OT and is clamped (``extra["max_nz_clamped"]``).
    reg : float, default 1.0
        gamma > 0. Not scale-free: (gamma/2)||T||^2 ~ gamma mass^2 / (2n) for near-permutation plans.
    axis : {"columns", "rows"}, default "columns"
    formulation : {"semi-dual", "dual"}, default "semi-dual"
        The semi-dual's plan meets the column marginal exactly; the dual is kept for POT parity.
    method : {"auto", "bfgs", "lbfgs", "ssn", "lp", "adam"}, default "auto"
        ``auto``: ``lp`` when k = 1, numpy and m n <= 250,000; else ``bfgs`` (dense inverse Hessian)
        when m <= ``dense_max``, else ``lbfgs``. ``ssn`` is BFGS followed by semismooth-Newton polish
        (also done by ``polish=True``). ``adam`` is the fixed-iteration V-MoE router solver.
    tol : float, optional
        Stop when the marginal L1 residual over the mass is <= tol (default 1e-8 in float64, 1e-5 in
        float32), or when a kink certificate holds (numpy).
    max_iter : int, optional
        Default 5000 (20 for ``method="adam"``).
    time_limit : float, optional
        Seconds.
    history : int, default 50
        L-BFGS memory.
    dense_max : int, default 10000
        Largest m solved with a dense inverse Hessian.
    screening : {"auto", True, False}, default "auto"
        Evaluate the semi-dual on L candidate rows per column (L = max(2k + 3, 7)); a safe margin
        test keeps the evaluation exact and refreshes columns from their full rows when needed.
        ``auto`` enables it for the semi-dual when m >= 4 (L + 1).
    adaptive_step : bool, default True
        Start each weak-Wolfe search at twice the last accepted step (capped at 1) instead of 1:
        at kinks accepted steps stay small and a start at 1 costs several bisections.
    polish : bool, default True
        Semismooth Newton on the fixed support once the residual is below 1e-3 (smooth regime).
    certify : {"auto", True, False}, default "auto"
        Run the tie-LP kink certificate (HiGHS, CPU) at stalls; ``auto`` = numpy only.
    certify_tol : float, default 1e-6
        A certificate is accepted when the relaxed plan's row residual / mass and the relative
        duality gap are both <= max(tol, certify_tol).
    stall_rtol : float, default 1e-10
        A run whose objective improves by less than ``10 stall_rtol |f|`` over 500 iterations
        tries the kink certificate, then ends STALLED: at kinks nonsmooth BFGS keeps creeping, and
        by then the value is typically within ~1e-9 of the optimum (0 disables the test).
    preset : {None, "jaxopt", "pot"}
        Paper-faithful reproductions: ``jaxopt`` = L-BFGS history 10 stopped at ||grad||_2 <= 1e-3
        after at most 500 iterations (with optkit's weak-Wolfe line search, not jaxopt's zoom); ``pot`` = scipy L-BFGS-B on the dual, 500 iterations.
        Statuses stay honest (a gradient-norm stop is reported as STALLED unless the residual test
        holds).
    plan_format : {"dense", "ksparse"}, default "dense"
    check_every : int, optional
        Iterations between stopping tests (numpy 1, torch 10).
    x0 : array, optional
        Start alpha (or a tuple (alpha, beta) for the dual).
    callback : callable, optional
        Called with an :class:`optkit.callbacks.IterInfo` each iteration; True/StopIteration stops.
    record_history : bool, default False
    verbose : int, default 0
    device, dtype : optional
        Move the computation (torch) or set its dtype.
    lr : float, default 1e-2
        Adam step size (``method="adam"``).

    Returns
    -------
    SparseOTResult
        ``x`` = alpha, ``fun`` = optimal dual value, ``plan`` (<= max_nz nonzeros per column),
        ``relaxed_plan`` (the gradient of the value w.r.t. C: the plan in the smooth regime, the
        tie-LP plan at a certified kink), ``regime``, ``marginal_residual`` = (r_row, r_col),
        ``duality_gap``, ``primal_cost`` = <plan, C>, ``nnz``, statuses and diagnostics.

    Raises
    ------
    InvalidProblemError
        Bad shapes, NaN/inf, negative or unbalanced marginals, reg <= 0, max_nz < 1 or not an int.
    BackendError
        Tensors on different devices.

    Notes
    -----
    For small k the k-sparse plan read off the optimal potentials usually violates the row
    marginal: the optimum is then a kink of the semi-dual, described by the relaxed plan (a convex
    combination over tied selections, possibly with more than k nonzeros per column). The result
    reports the row residual of ``plan`` honestly; it is not an error.

    Examples
    --------
    >>> import numpy as np
    >>> from optkit.ot import sparse_ot
    >>> rng = np.random.default_rng(0)
    >>> C = rng.random((5, 6))
    >>> res = sparse_ot(None, None, C, max_nz=2, reg=0.1)
    >>> bool(((res.plan > 0).sum(axis=0) <= 2).all()), res.status.name
    (True, 'CONVERGED')
    """
    opts = SparseOTOptions.from_kwargs(
        reg=reg, axis=axis, formulation=formulation, method=method, tol=tol, max_iter=max_iter,
        time_limit=time_limit, history=history, dense_max=dense_max, screening=screening,
        adaptive_step=adaptive_step, polish=polish, certify=certify,
        certify_tol=certify_tol, stall_rtol=stall_rtol, preset=preset, plan_format=plan_format, check_every=check_every, callback=callback,
        record_history=record_history, verbose=verbose, lr=lr)
    return _solve(a, b, C, max_nz, opts, x0=x0, device=device, dtype=dtype)


def _setup(a, b, C, max_nz, opts: SparseOTOptions, device, dtype):
    """Validate inputs and choose method, formulation and tolerance (no solving)."""
    P = _prepare(a, b, C, max_nz, opts, device, dtype)
    be = P["be"]
    if not math.isfinite(opts.reg):
        raise InvalidProblemError(f"reg: must be finite, got {opts.reg!r}")
    k, m, n = P["k"], P["m"], P["n"]
    P["clamped"] = k >= m
    P["k_eff"] = k_eff = min(k, m)
    if P["zero_rows"] or P["zero_cols"]:
        return P
    if k_eff * n < m:
        warnings.warn(f"max_nz * n = {k_eff * n} < m = {m}: the k-sparse primal is infeasible; "
                      "the value is that of the convex relaxation", UserWarning, stacklevel=4)
    if opts.plan_format == "dense":
        _check_dense_plan_fits(P)
    P["tol"] = opts.tol if opts.tol is not None else (1e-8 if _is64(be) else 1e-5)
    method = opts.method
    if opts.preset == "jaxopt":
        method = "lbfgs"
    elif opts.preset == "pot":
        method = "pot"
    elif method == "auto":
        if k_eff == 1 and not be.is_torch and m * n <= _lp_auto_max():
            method = "lp"
        else:
            method = "bfgs" if m <= opts.dense_max else "lbfgs"
    if method == "ssn":
        method = "bfgs"
    if method == "lp" and be.is_torch:
        raise InvalidProblemError("method: 'lp' runs on numpy inputs only")
    if method == "lp" and k_eff != 1:
        raise InvalidProblemError(f"method: 'lp' solves the k = 1 case exactly; got max_nz = {k}")
    P["method"] = method
    P["formulation"] = "dual" if method == "pot" else opts.formulation
    return P


def _solve(a, b, C, max_nz, opts: SparseOTOptions, x0=None, device=None, dtype=None):
    t_start = time.perf_counter()
    P = _setup(a, b, C, max_nz, opts, device, dtype)
    if P["zero_rows"] or P["zero_cols"]:
        return _solve_with_zeros(P, opts, x0, t_start, P["k"])
    method, formulation, tol, k_eff = P["method"], P["formulation"], P["tol"], P["k_eff"]
    with verbosity(opts.verbose):
        if method == "lp":
            out = _solve_lp(P, k_eff, opts)
        else:
            with _blas_threads(P["be"], P["m"]):
                out = _solve_iterative(P, k_eff, opts, method, formulation, tol, x0, t_start)
    return _finish(P, out, opts, k_eff, P["clamped"], tol, t_start, method, formulation)


def _check_dense_plan_fits(P):
    """Refuse a dense plan larger than the free memory before any work (use plan_format='ksparse')."""
    be = P["be"]
    itemsize = 4 if "32" in be.dtype_str else 8
    need = P["B"] * P["m"] * P["n"] * itemsize
    free = None
    if be.is_torch and be.device.type == "cuda":
        free = get_torch().cuda.mem_get_info(be.device)[0]
    elif hasattr(os, "sysconf"):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            free = None
    if free is not None and need > 0.5 * free:
        raise InvalidProblemError(
            f"plan_format: a dense plan of shape ({P['B']}, {P['m']}, {P['n']}) needs "
            f"{need / 2**30:.1f} GiB, more than half of the {free / 2**30:.1f} GiB free; "
            "pass plan_format='ksparse' (indices and values, O(n k) memory)")


def _blas_threads(be, m):
    """One BLAS thread for the level-2 BFGS updates below a few thousand variables.

    A 1000 x 1000 ``syr2`` takes 0.45 ms on one thread but ~10 ms with two threads on a busy
    2-core machine: memory-bound level-2 BLAS gains nothing from threads and loses to contention.
    """
    import contextlib

    if be.is_torch or m > 4000:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _is64(be):
    return "64" in be.dtype_str


# ----------------------------------------------------------------------------------------------
# iterative solvers (BFGS / L-BFGS / Adam), all batched


def _xp(be):
    from .._backend import array_namespace

    if be.is_torch:
        torch = get_torch()
        return array_namespace(torch.empty(0))
    return array_namespace(np.empty(0))


def _start(P, x0, formulation, be):
    B, m, n = P["B"], P["m"], P["n"]
    dim = m if formulation == "semi-dual" else m + n
    if x0 is None:
        z = to_backend(np.zeros((B, dim)), be, "x0")
        return z
    if isinstance(x0, (tuple, list)):
        if formulation != "dual":
            x0 = x0[0]
        else:
            al = to_backend(x0[0], be, "x0[0]")
            bt = to_backend(x0[1], be, "x0[1]")
            x0 = get_torch().cat([al, bt], -1) if be.is_torch else np.concatenate([al, bt], -1)
    z = to_backend(x0, be, "x0")
    if z.ndim == 1:
        z = z[None]
        z = z.expand(B, -1).clone() if be.is_torch else np.repeat(z, B, axis=0)
    if tuple(z.shape) != (B, dim):
        raise InvalidProblemError(f"x0: expected shape ({dim},) or ({B}, {dim}), got {tuple(z.shape)}")
    check_finite(z, "x0")
    return z * 1.0


def _solve_iterative(P, k, opts, method, formulation, tol, x0, t_start):
    if method == "pot":
        be = P["be"]
        xp = _xp(be)
        obj = _Objective(P["a"], P["b"], _contiguous(_transpose(P["C"])), k, opts.reg, "dual", xp)
        return _solve_pot(P, obj, opts, tol, x0)
    run = _IterativeRun(P, k, opts, method, formulation, tol, x0, t_start)
    while not run.finished:
        run.step()
    return run.output()


class _IterativeRun:
    """The batched (L-)BFGS / Adam iteration as an explicit state machine (init, step, output)."""

    def __init__(self, P, k, opts, method, formulation, tol, x0, t_start):
        be = P["be"]
        self.P, self.k, self.opts, self.method, self.formulation = P, k, opts, method, formulation
        self.tol, self.t_start = tol, t_start
        self.xp = xp = _xp(be)
        CT = _contiguous(_transpose(P["C"]))
        self.obj = obj = _Objective(P["a"], P["b"], CT, k, opts.reg, formulation, xp,
                                    screening=opts.screening)
        self.max_iter = opts.max_iter if opts.max_iter is not None else (
            20 if method == "adam" else (500 if opts.preset else 5000))
        self.check_every = opts.check_every or (10 if be.is_torch else 1)
        self.certify = opts.certify if opts.certify != "auto" else (not be.is_torch)
        self.mass = P["mass"]
        self.B = B = P["B"]
        self.dev = dev = be.device if be.is_torch else None
        self.z = z = obj.center(_start(P, x0, formulation, be))
        self.f, self.g, self.plan = obj(z)
        self.status = xp.full((B,), _RUNNING, dtype=xp.int64, device=dev)
        if method == "lbfgs":
            hist = 10 if opts.preset == "jaxopt" else opts.history
            self.Hinv = LimitedInverseHessian(xp, B, obj.dim, z.dtype, dev, hist)
        elif method == "bfgs":
            self.Hinv = DenseInverseHessian(xp, B, obj.dim, z.dtype, dev)
        else:
            self.Hinv = None
        self.adam_m = xp.zeros_like(z)
        self.adam_v = xp.zeros_like(z)
        self.resets = xp.zeros((B,), dtype=xp.int64, device=dev)
        self.t_prev = xp.ones((B,), dtype=z.dtype, device=dev)
        self.f_window = [self.f]
        self.f_slow = [self.f]
        self.records = [] if opts.record_history else None
        self.certificates = [None] * B
        self.polished = [float("inf")] * B  # residual at the last polish attempt
        self.np_resets = [0] * B
        self.np_since = [0] * B
        self.it = 0
        self.nfev = obj.nfev
        self.message_extra = [""] * B
        self.finished = False
        f, g = self.f, self.g
        nonfinite0 = ~(xp.isfinite(f) & xp.all(xp.isfinite(g), axis=-1))
        st = xp.where(nonfinite0, int(Status.NUMERICAL_ERROR), self.status)
        self.status = xp.where((st == _RUNNING) & (self.residual(g) <= tol), int(Status.CONVERGED), st)
        self._update_finished()

    def residual(self, gv):
        r_row, r_col = self.obj.residuals(gv, self.mass)
        return self.xp.maximum(r_row, r_col)

    def _update_finished(self):
        self.finished = self.finished or bool(self.xp.all(self.status != _RUNNING))

    def _stop_all(self, code):
        self.status = self.xp.where(self.status == _RUNNING, int(code), self.status)
        self.finished = True

    def step(self):
        """One iteration of every running instance, then the stopping tests."""
        xp, opts, obj = self.xp, self.opts, self.obj
        if self.finished:
            return
        if self.it >= self.max_iter:
            return self._stop_all(Status.MAX_ITER)
        if opts.time_limit is not None and time.perf_counter() - self.t_start >= opts.time_limit:
            return self._stop_all(Status.TIME_LIMIT)
        z, f, g = self.z, self.f, self.g
        active = self.status == _RUNNING
        self.it += 1
        it = self.it
        if self.method == "adam":
            b1, b2 = 0.9, 0.999
            self.adam_m = b1 * self.adam_m + (1 - b1) * g
            self.adam_v = b2 * self.adam_v + (1 - b2) * g * g
            mh = self.adam_m / (1 - b1 ** it)
            vh = self.adam_v / (1 - b2 ** it)
            z_new = obj.center(z - opts.lr * mh / (xp.sqrt(vh) + 1e-8))
            f_new, g_new, plan_new = obj(z_new)
            ok = active
        else:
            Hinv = self.Hinv
            d = Hinv.direction(g)
            ascent = active & (xp.sum(g * d, axis=-1) >= 0)
            if bool(xp.any(ascent)):
                Hinv.reset(ascent)
                d = xp.where(ascent[:, None], -g, d)
            # first trial: twice the last accepted step, capped at the BFGS step 1; at kinks
            # accepted steps stay well below 1 and starting at 1 costs several bisections
            t_prev = self.t_prev
            t_first = xp.minimum(2.0 * t_prev, xp.ones_like(t_prev)) if opts.adaptive_step else None
            ls = weak_wolfe(xp, obj, z, f, g, d, active,
                            lambda msk, nw, old: _Objective.merge_aux(xp, msk, nw, old), t0=t_first)
            self.t_prev = xp.where(ls.ok & (ls.t > 0), ls.t, xp.ones_like(t_prev))
            ok = ls.ok
            z_new = obj.center(z + ls.t[:, None] * d)
            f_new, g_new, plan_new = ls.f, ls.g, ls.aux
            s = ls.t[:, None] * d
            y = g_new - g
            sy = xp.sum(s * y, axis=-1)
            norms = xp.sqrt(xp.sum(s * s, axis=-1) * xp.sum(y * y, axis=-1))
            Hinv.update(s, y, ok & (sy > 1e-12 * norms))
            stalled = active & ~ok
            self.resets = xp.where(stalled, self.resets + 1, xp.where(ok, 0, self.resets))
            if bool(xp.any(stalled)):
                Hinv.reset(stalled)
        finite = xp.isfinite(f_new) & xp.all(xp.isfinite(g_new), axis=-1)
        okf = ok & finite
        self.z = z = xp.where(okf[:, None], z_new, z)
        self.f = f = xp.where(okf, f_new, f)
        self.g = g = xp.where(okf[:, None], g_new, g)
        self.plan = _Objective.merge_aux(xp, okf, plan_new, self.plan)
        self.status = xp.where(active & ~finite, int(Status.NUMERICAL_ERROR), self.status)
        self.nfev = obj.nfev
        if self.records is not None:
            self.records.append({"nit": it, "fun": _host_list(-f), "residual": _host_list(self.residual(g)),
                                 "elapsed": time.perf_counter() - self.t_start})
        if opts.callback is not None:
            info = IterInfo(nit=it, fun=_scalar_or(-f), x=z if self.B > 1 else z[0],
                            residual=_scalar_or(self.residual(g)),
                            elapsed=time.perf_counter() - self.t_start)
            if call_callback(opts.callback, info):
                return self._stop_all(Status.CALLBACK_STOP)
        if it % self.check_every and it < self.max_iter:
            return
        self._check()
        self._update_finished()

    def _check(self):
        """Stopping tests, polish, certificates and restarts (every ``check_every`` iterations)."""
        xp, opts, P = self.xp, self.opts, self.P
        f, g, it, B = self.f, self.g, self.it, self.B
        r = self.residual(g)
        self.status = xp.where((self.status == _RUNNING) & (r <= self.tol), int(Status.CONVERGED),
                               self.status)
        fw = self.f_window
        fw.append(f)
        if len(fw) > max(1, 50 // self.check_every) + 1:
            fw.pop(0)
        self.f_slow.append(f)
        if len(self.f_slow) > max(1, 500 // self.check_every) + 1:
            self.f_slow.pop(0)
        if self.method == "adam":
            return
        # the paper presets stop on the gradient norm; reported as STALLED unless the residual holds
        if opts.preset == "jaxopt":
            gn = xp.sqrt(xp.sum(g * g, axis=-1))
            self.status = xp.where((self.status == _RUNNING) & (gn <= 1e-3), int(Status.STALLED),
                                   self.status)
        running = _host_bool(self.status == _RUNNING)
        if not any(running):
            return
        r_h = _host_list(r)
        no_progress = _host_bool(
            (fw[0] - f <= 1e-13 * xp.maximum(xp.abs(f), 1.0)) & (len(fw) > 50 // self.check_every))
        # slow creep at a kink: less than stall_rtol |f| per 50 iterations, sustained over 500
        slow = _host_bool((self.f_slow[0] - f <= 10 * opts.stall_rtol * xp.abs(f))
                          & (len(self.f_slow) > 500 // self.check_every))
        no_progress = [p and it - self.np_since[i] >= 50 for i, p in enumerate(no_progress)]
        hard_stall = _host_bool(self.resets >= 3)
        status = self.status
        for i in range(B):
            if not running[i]:
                continue
            # polish in the smooth regime; retried once the residual has dropped 10x since the
            # last attempt, because an early attempt can meet a support that has not settled
            if (opts.polish and self.formulation == "semi-dual"
                    and r_h[i] <= min(1e-3, 0.1 * self.polished[i])):
                self.polished[i] = r_h[i]
                sub = self.obj.instance(i)
                zi, fi, gi, pi, conv_i = _ssn_polish(sub, self.z[i:i + 1], f[i:i + 1], g[i:i + 1],
                                                     self.tol, self.mass[i:i + 1], xp)
                self.z[i] = zi[0]
                f[i] = fi[0]
                g[i] = gi[0]
                self.plan = (_set_row(xp, self.plan[0], i, pi[0][0]),
                             _set_row(xp, self.plan[1], i, pi[1][0]))
                if conv_i:
                    status[i] = int(Status.CONVERGED)
                    continue
            # periodic attempts (ot.md §3.5: every 200 iterations) cost an LP over the tied
            # entries, seconds at n = 5000: space them out in proportion to the problem size
            period = 200 * max(1, (P["m"] * P["n"]) // 4_000_000)
            trigger = (no_progress[i] or hard_stall[i] or slow[i]
                       or (it % period == 0 and r_h[i] > self.tol))
            if self.certify and trigger and self.formulation == "semi-dual":
                cert = _try_certify(P, self.z[i], i, self.k, opts.reg, max(self.tol, opts.certify_tol))
                if cert is not None:
                    self.certificates[i] = cert
                    status[i] = int(Status.CONVERGED)
                    continue
            if no_progress[i] and self.np_resets[i] < 3 and not hard_stall[i]:
                # a stale inverse Hessian is the usual cause: restart it before giving up
                self.np_resets[i] += 1
                mask = xp.zeros((B,), dtype=xp.bool, device=self.dev)
                mask[i] = True
                self.Hinv.reset(mask)
                self.np_since[i] = it
                continue
            if no_progress[i] or hard_stall[i] or slow[i]:
                status[i] = int(Status.STALLED)
                self.message_extra[i] = (
                    "line-search stall" if hard_stall[i] else
                    "no decrease over 50 iterations after 3 restarts" if no_progress[i] else
                    f"relative progress below stall_rtol = {opts.stall_rtol:g} per 50 iterations")

    def output(self):
        return dict(z=self.z, f=self.f, g=self.g, plan=self.plan, status=self.status, nit=self.it,
                    nfev=self.nfev, records=self.records, certificates=self.certificates,
                    obj=self.obj, formulation=self.formulation,
                    message_extra=self.message_extra, xp=self.xp)


def _set_row(xp, arr, i, row):
    arr[i] = row  # arrays are owned by the solver: in-place is safe
    return arr


def _host_list(v):
    return [float(x) for x in to_numpy(v).reshape(-1)]


def _host_bool(v):
    return [bool(x) for x in to_numpy(v).reshape(-1)]


def _scalar_or(v):
    return float(v[0]) if v.shape[0] == 1 else v


# ----------------------------------------------------------------------------------------------
# semismooth Newton polish (ot.md §3.3)


def _support_matvec(xp, idx, val, reg):
    """v -> H_N v with H_N = (1/reg) sum_j (diag(u_j) - u_j u_j^T / s_j) from the (n, k) support."""
    mask = val > 0
    cnt = xp.sum(xp.astype(mask, val.dtype), axis=-1)  # (B, n)
    safe = xp.where(cnt > 0, cnt, 1.0)

    def matvec(v):
        vs = _gather_rows(v, idx)  # (B, n, k)
        mean = xp.sum(xp.where(mask, vs, 0.0), axis=-1) / safe
        contrib = xp.where(mask, vs - mean[..., None], 0.0) / reg
        return _kernels.plan_row_sums(idx, contrib, v.shape[-1])

    return matvec


def _ssn_polish(obj, z, f, g, tol, mass, xp, max_steps=20):
    """Newton steps on the fixed support of the current plan; exact when the support is stable."""
    reg = obj.reg
    converged = False
    idx, val = obj(z)[2]
    for _ in range(max_steps):
        matvec = _support_matvec(xp, idx, val, reg)
        rhs = -g  # a - T1 (g is the gradient of -S)
        d = _solve_sym(matvec, rhs, xp)
        if d is None:
            break
        gd = xp.sum(g * d, axis=-1)
        if not bool(gd[0] < 0):
            break
        tau = 1.0
        accepted = False
        for _ls in range(11):
            zt = obj.center(z + tau * d)
            ft, gt, pt = obj(zt)
            if bool(xp.isfinite(ft)[0]) and bool((ft <= f + 1e-4 * tau * gd)[0]):
                accepted = True
                break
            tau *= 0.5
        if not accepted:
            break
        z, f, g = zt, ft, gt
        idx, val = pt
        r = obj.residuals(g, mass)[0]
        if bool((r <= tol)[0]):
            converged = True
            break
    return z, f, g, (idx, val), converged


def _solve_sym(matvec, rhs, xp):
    """Minimum-residual solve of the singular symmetric Laplacian system H_N d = rhs."""
    if is_torch(rhs):
        from ..linalg import minres

        d, info = minres(matvec, rhs, rtol=1e-12, maxiter=max(200, 4 * rhs.shape[-1]))
        return d if bool(get_torch().isfinite(d).all()) else None
    import scipy.sparse.linalg as spla

    m = rhs.shape[-1]
    op = spla.LinearOperator((m, m), matvec=lambda v: matvec(v[None])[0], dtype=rhs.dtype)
    d, _ = spla.minres(op, rhs[0], rtol=1e-13, maxiter=max(200, 4 * m))
    return d[None] if np.all(np.isfinite(d)) else None


# ----------------------------------------------------------------------------------------------
# k = 1 exact LP path and the POT-style L-BFGS-B preset


def _has_pot():
    import importlib.util

    return importlib.util.find_spec("ot") is not None


def _lp_auto_max():
    """Largest m n for which ``method="auto"`` takes the exact LP path at k = 1.

    POT's network simplex (C++, when the optional ``pot`` package is installed) solves n = 5000 in
    seconds; HiGHS on the dense transport LP took 255 s at n = 1000, so without POT the path is
    kept to small problems.
    """
    return 25_000_000 if _has_pot() else 40_000


def transport_lp(a, b, C):
    """Exact transport LP: (plan, row potentials alpha, cost, engine) or None on failure.

    Uses POT's network simplex when POT is installed, else HiGHS (``scipy.optimize.linprog``).
    """
    if _has_pot():
        import ot

        a, b, C = (np.ascontiguousarray(v, dtype=np.float64) for v in (a, b, C))
        T, log = ot.emd(a, b, C, numItermax=100_000_000, log=True)
        if log.get("warning") is None and log.get("result_code", 1) == 1:
            return T, np.asarray(log["u"], dtype=float), float(log["cost"]), "network simplex (POT)"
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    m, n = C.shape
    rows = np.repeat(np.arange(m), n)
    cols = np.tile(np.arange(n), m)
    A = coo_matrix((np.ones(2 * m * n), (np.concatenate([rows, m + cols]),
                                          np.concatenate([np.arange(m * n)] * 2))),
                   shape=(m + n, m * n)).tocsr()
    res = linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    return res.x.reshape(m, n), res.eqlin.marginals[:m].copy(), float(res.fun), "HiGHS"


def _solve_lp(P, k, opts):
    B, m, n = P["B"], P["m"], P["n"]
    zs, fs, plans_idx, plans_val, relaxed, statuses, engines = [], [], [], [], [], [], []
    for i in range(B):
        a, b, C = P["a"][i], P["b"][i], P["C"][i]
        sol = transport_lp(a, b, C)
        if sol is None:
            statuses.append(int(Status.ERROR))
            zs.append(np.zeros(m)); fs.append(np.nan)
            plans_idx.append(np.zeros((n, 1), dtype=np.int64)); plans_val.append(np.zeros((n, 1)))
            relaxed.append(np.zeros((m, n)))
            engines.append("transport LP failed")
            continue
        T, alpha, cost, engine = sol
        engines.append(f"exact transport LP, {engine}")
        alpha -= alpha.mean()
        value = cost + 0.5 * opts.reg * float(b @ b)
        rows_best = np.argmax(T, axis=0)
        zs.append(alpha)
        fs.append(value)
        plans_idx.append(rows_best[:, None].astype(np.int64))
        plans_val.append(b[:, None].copy())
        relaxed.append(T)
        statuses.append(int(Status.CONVERGED))
    return dict(z=np.stack(zs), f=-np.array(fs), g=None, plan=(np.stack(plans_idx), np.stack(plans_val)),
                status=np.array(statuses), nit=1, nfev=0, records=None, certificates=[None] * B,
                relaxed=np.stack(relaxed), obj=None, formulation="semi-dual",
                message_extra=engines, xp=None)


def _solve_pot(P, obj, opts, tol, x0):
    """POT's sparse dual: scipy L-BFGS-B, stopThr 1e-9 (ftol-style), 500 iterations (reproduction)."""
    from scipy.optimize import minimize

    be = P["be"]
    if be.is_torch:
        raise InvalidProblemError("preset: 'pot' runs on numpy inputs only")
    B = P["B"]
    zs, fs, gs, idxs, vals, sts, nits = [], [], [], [], [], [], []
    for i in range(B):
        sub = _Objective(P["a"][i:i + 1], P["b"][i:i + 1], obj.CT[i:i + 1], obj.k, obj.reg, "dual", np)

        def fg(zz, sub=sub):
            fv, gv, _ = sub(zz[None])
            return float(fv[0]), gv[0]

        z0 = np.zeros(sub.dim) if x0 is None else _start(dict(P, B=1), x0, "dual", be)[0]
        res = minimize(fg, z0, jac=True, method="L-BFGS-B",
                       options=dict(maxiter=opts.max_iter or 500, ftol=1e-9, gtol=0.0, maxcor=10))
        z = sub.center(res.x[None])
        fv, gv, (idx, val) = sub(z)
        zs.append(z[0]); fs.append(fv[0]); gs.append(gv[0]); idxs.append(idx[0]); vals.append(val[0])
        nits.append(res.nit)
        r = max(float(x[0]) for x in sub.residuals(gv, P["mass"][i:i + 1]))
        sts.append(int(Status.CONVERGED) if r <= tol else
                   int(Status.MAX_ITER) if res.nit >= (opts.max_iter or 500) else int(Status.STALLED))
    return dict(z=np.stack(zs), f=np.array(fs), g=np.stack(gs), plan=(np.stack(idxs), np.stack(vals)),
                status=np.array(sts), nit=max(nits), nfev=obj.nfev, records=None,
                certificates=[None] * B, obj=obj, formulation="dual",
                message_extra=["scipy L-BFGS-B (POT preset)"] * B, xp=np)


def _try_certify(P, alpha, i, k, reg, tol):
    from ._certificate import certify_kink

    a = np.asarray(to_numpy(P["a"][i]))
    b = np.asarray(to_numpy(P["b"][i]))
    C = np.asarray(to_numpy(P["C"][i]))
    cert = certify_kink(np.asarray(to_numpy(alpha)), a, b, C, k, reg, tol=tol)
    return cert if cert is not None and cert["accepted"] else None


# ----------------------------------------------------------------------------------------------
# assembling the result


def _finish(P, out, opts, k, clamped, tol, t_start, method, formulation):
    be = P["be"]
    B, m = P["B"], P["m"]
    z, f, plan = out["z"], out["f"], out["plan"]
    idx, val = plan
    for i, cert in enumerate(out["certificates"]):
        if cert is not None and "plan_indices" in cert:
            # the certificate's k-sparse plan follows the LP mass in tied columns (ot.md §3.5)
            idx[i] = to_backend(cert["plan_indices"], be, "plan", dtype=idx.dtype)
            val[i] = to_backend(cert["plan_values"], be, "plan")
    status_h = [int(s) for s in to_numpy(out["status"]).reshape(-1)]
    semi = formulation == "semi-dual"
    alpha = z[..., :m]
    T1 = _kernels.plan_row_sums(idx, val, m)
    a, b = P["a"], P["b"]
    mass = P["mass"]
    r_row = _sum_last(_abs(T1 - a)) / mass
    colsum = val.sum(-1)
    r_col = _sum_last(_abs(colsum - b)) / mass
    if semi:
        beta = _beta_from_semi(alpha, P, idx, val, opts.reg)
    else:
        beta = z[..., m:]
    value = -f
    Cm = P["C"]
    # costs from the (n, k) plan entries: no dense (m, n) plan is needed for them
    Cg = _gather_last(_transpose(Cm), idx)
    primal_cost = _sum_last(_sum_last(val * Cg))
    reg_value = primal_cost + 0.5 * opts.reg * _sum_last(_sum_last(val * val))
    dense_T = _kernels.plan_to_dense(idx, val, m) if opts.plan_format == "dense" or not be.is_torch else None
    relaxed = [None] * B
    regimes = ["unknown"] * B
    gaps = [float("nan")] * B
    tie_tols = [None] * B
    r_row_h = _host_list(r_row)
    for i in range(B):
        cert = out["certificates"][i]
        if method == "lp":
            relaxed[i] = out["relaxed"][i]
            regimes[i] = "kink" if k == 1 and r_row_h[i] > tol else "smooth"
            gaps[i] = 0.0
        elif cert is not None:
            relaxed[i] = cert["relaxed_plan"]
            regimes[i] = "kink"
            gaps[i] = cert["gap"]
            tie_tols[i] = cert["tie_tol"]
        elif status_h[i] == int(Status.CONVERGED) and r_row_h[i] <= tol:
            relaxed[i] = "plan"
            regimes[i] = "smooth"
    nnz = _count_nonzero(val > 0, axis=(-2, -1))
    col_nnz = _count_nonzero(val > 0, axis=-1)
    # duality gap of the relaxed plan (numpy only: the k-support norm needs a sort per column)
    if not be.is_torch:
        from ._kernels import relaxed_primal_value

        for i in range(B):
            if relaxed[i] is not None and method != "lp":
                Trel = dense_T[i] if isinstance(relaxed[i], str) else relaxed[i]
                gaps[i] = float(relaxed_primal_value(Trel, Cm[i], k, opts.reg) - value[i])
            elif method == "lp" and relaxed[i] is not None:
                gaps[i] = float(np.sum(relaxed[i] * Cm[i]) + 0.5 * opts.reg * float(b[i] @ b[i]) - value[i])
    # undo the transposition for row sparsity
    out_alpha, out_beta = alpha, beta
    plan_dense = dense_T
    if opts.axis == "rows":
        out_alpha, out_beta = beta, alpha
        plan_dense = _transpose(dense_T) if dense_T is not None else None
        r_row, r_col = r_col, r_row
    shape = tuple(idx.shape[:-2]) + ((m, idx.shape[-2]) if opts.axis == "columns" else (idx.shape[-2], m))
    ksparse = KSparsePlan(idx, val, shape, axis=opts.axis)
    relaxed_out = []
    for i in range(B):
        rp = relaxed[i]
        if isinstance(rp, str):
            # relaxed_plan is documented as a dense array (it is dV/dC for the layers)
            rp = plan_dense[i] if plan_dense is not None else _squeeze_plan(_slice_plan(ksparse, i)).to_dense()
        elif rp is not None:
            rp = to_backend(rp, be, "relaxed_plan")
            if opts.axis == "rows":
                rp = _transpose(rp)
        relaxed_out.append(rp)
    plan_out = ksparse if opts.plan_format == "ksparse" else plan_dense
    statuses = out["status"]
    msgs = []
    for i in range(B):
        st = Status(status_h[i])
        msg = st.default_message
        if out["message_extra"][i]:
            msg += f" ({out['message_extra'][i]})"
        if st == Status.CONVERGED and regimes[i] == "kink" and method != "lp":
            msg = f"converged at a certified kink (tie tolerance {tie_tols[i]:.0e})"
            if r_row_h[i] > tol:
                msg += (f": the k-sparse plan has row residual {r_row_h[i]:.2e} by nature; "
                        "relaxed_plan is the optimal plan")
        elif st == Status.STALLED:
            msg += (f"; row residual {r_row_h[i]:.2e}. For small max_nz the k-sparse plan is "
                    "infeasible by nature at the optimum (a kink); fun is a valid lower bound")
        msgs.append(msg)
    if not P["batched"]:
        rr, rc = _host_list(r_row)[0], _host_list(r_col)[0]  # after the rows/columns swap
        sq = lambda v: v[0] if v is not None else None
        res = SparseOTResult(
            x=sq(out_alpha), fun=float(to_numpy(value)[0]), status=Status(status_h[0]), message=msgs[0],
            nit=out["nit"], nfev=out["nfev"], kkt_residual=rr if opts.axis == "columns" else rc, constraint_violation=max(rr, rc),
            potentials=(sq(out_alpha), sq(out_beta)), plan=_squeeze_plan(plan_out),
            relaxed_plan=relaxed_out[0], regime=regimes[0],
            marginal_residual=(rr, rc), duality_gap=gaps[0],
            primal_cost=float(to_numpy(primal_cost)[0]), reg_value=float(to_numpy(reg_value)[0]),
            nnz=int(to_numpy(nnz)[0]), statuses=None)
    else:
        res = SparseOTResult(
            x=out_alpha, fun=value, message="; ".join(sorted(set(msgs))) if len(set(status_h)) == 1 else "",
            status=Status(status_h[0]) if len(set(status_h)) == 1 else _worst(status_h),
            nit=out["nit"], nfev=out["nfev"], kkt_residual=r_row, constraint_violation=_maximum(r_row, r_col),
            potentials=(out_alpha, out_beta), plan=plan_out, relaxed_plan=relaxed_out, regime=regimes,
            marginal_residual=(r_row, r_col), duality_gap=gaps, primal_cost=primal_cost,
            reg_value=reg_value, nnz=nnz, statuses=statuses)
        if not res.message:
            ok = sum(s == 0 for s in status_h)
            res.message = f"{ok}/{B} instances converged; others: " + ", ".join(
                sorted({Status(s).name for s in status_h if s != 0}))
    col_nnz_h = to_numpy(col_nnz)
    res.extra.update(
        col_nnz_max=int(col_nnz_h.max()), col_nnz_mean=float(col_nnz_h.mean()),
        tie_tol=tie_tols[0] if not P["batched"] else tie_tols, max_nz_clamped=clamped,
        max_nz_effective=k, method=method, formulation=formulation, tol=tol)
    res.history = out["records"]
    res.wall_time = time.perf_counter() - t_start
    res.backend = be.name
    res.device = be.device_str
    res.dtype = be.dtype_str
    res.options = opts
    if P.get("out_dtype") is not None:
        _cast_result(res, P["out_dtype"])
    return res


def _cast_result(res, dtype):
    """Half-precision inputs: the solve ran in float32; hand back the caller's dtype."""
    def cast(v):
        if is_torch(v) and v.is_floating_point():
            return v.to(dtype)
        if isinstance(v, KSparsePlan):
            return KSparsePlan(v.indices, v.values.to(dtype), v.shape, axis=v.axis)
        if isinstance(v, (list, tuple)):
            return type(v)(cast(x) for x in v)
        return v

    for name in ("x", "fun", "potentials", "plan", "relaxed_plan", "primal_cost", "reg_value"):
        setattr(res, name, cast(getattr(res, name)))
    res.dtype = str(dtype).replace("torch.", "")
    res.extra["computed_in"] = "float32"


def _worst(codes):
    bad = [c for c in codes if c != 0]
    return Status(max(set(bad), key=bad.count))


def _maximum(x, y):
    return get_torch().maximum(x, y) if is_torch(x) else np.maximum(x, y)


def _squeeze_plan(p):
    if isinstance(p, KSparsePlan):
        return KSparsePlan(p.indices[0], p.values[0], p.shape[1:], axis=p.axis)
    return p[0]


def _slice_plan(p, i):
    return KSparsePlan(p.indices[i:i + 1], p.values[i:i + 1], (1,) + tuple(p.shape[1:]), axis=p.axis)


def _beta_from_semi(alpha, P, idx, val, reg):
    """beta_j = -lambda_j, lambda_j = x_ij - reg t_ij on supp(t_j) (ot.md §2): averaged over the support."""
    xp = _xp(P["be"])
    xs = _gather_rows(alpha, idx) - _gather_last(_transpose(P["C"]), idx)  # x_ij on the support
    mask = val > 0
    cnt = xp.sum(xp.astype(mask, val.dtype), axis=-1)
    lam = xp.sum(xp.where(mask, xs - reg * val, 0.0), axis=-1) / xp.where(cnt > 0, cnt, 1.0)
    return -lam


def _solve_with_zeros(P, opts, x0, t_start, k):
    """Drop zero-mass rows/columns, solve, reinsert zeros (potentials of dropped rows by c-transform)."""
    be = P["be"]
    a, b, C = (np.asarray(to_numpy(v[0])) for v in (P["a"], P["b"], P["C"]))
    rows = np.flatnonzero(a > 0)
    cols = np.flatnonzero(b > 0)
    sub_a, sub_b, sub_C = a[rows], b[cols], C[np.ix_(rows, cols)]
    if be.is_torch:
        torch = get_torch()
        conv = lambda v: torch.as_tensor(v, dtype=be.dtype, device=be.device)
        sub_a, sub_b, sub_C = conv(sub_a), conv(sub_b), conv(sub_C)
    sub_opts = opts.replace(axis="columns")
    x0_sub = None
    if x0 is not None:
        x0_sub = np.asarray(to_numpy(to_backend(x0, be, "x0")))[rows]
    res = _solve(sub_a, sub_b, sub_C, k, sub_opts, x0=x0_sub)
    m, n = C.shape
    alpha = np.zeros(m)
    beta = np.zeros(n)
    al_s = np.asarray(to_numpy(res.potentials[0]))
    be_s = np.asarray(to_numpy(res.potentials[1]))
    alpha[rows] = al_s
    beta[cols] = be_s
    dropped_rows = np.setdiff1d(np.arange(m), rows)
    dropped_cols = np.setdiff1d(np.arange(n), cols)
    if dropped_rows.size:
        alpha[dropped_rows] = np.min(C[np.ix_(dropped_rows, cols)] - be_s[None, :], axis=1)
    if dropped_cols.size:
        beta[dropped_cols] = np.min(C[np.ix_(rows, dropped_cols)] - al_s[:, None], axis=0)

    def embed(T):
        if T is None:
            return None
        full = np.zeros((m, n))
        full[np.ix_(rows, cols)] = np.asarray(to_numpy(T))
        return full

    plan = embed(res.plan if not isinstance(res.plan, KSparsePlan) else res.plan.to_dense())
    relaxed = embed(res.relaxed_plan)
    back = (lambda v: to_backend(v, be, "plan")) if be.is_torch else (lambda v: v)
    res.x = back(alpha)
    res.potentials = (back(alpha), back(beta))
    res.plan = back(plan)
    res.relaxed_plan = back(relaxed) if relaxed is not None else None
    res.extra["dropped_zero_rows"] = int(dropped_rows.size)
    res.extra["dropped_zero_cols"] = int(dropped_cols.size)
    res.wall_time = time.perf_counter() - t_start
    if opts.axis == "rows":
        res.plan = _transpose(res.plan)
        res.relaxed_plan = _transpose(res.relaxed_plan) if res.relaxed_plan is not None else None
        res.potentials = (res.potentials[1], res.potentials[0])
        res.x = res.potentials[0]
    return res
