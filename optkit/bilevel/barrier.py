"""Log-barrier method for bilevel problems with coupled lower-level constraints.

Jiang, Li, Hong & Zhang, "Barrier Function for Bilevel Optimization with Coupled Lower-Level
Constraints" (arXiv 2410.10670). The lower level is smoothed by a log barrier,

    f_t(x, y) = f(x, y) - t sum_i log(-g_i(x, y)),   y_t(x) = argmin_y f_t,   phi_t(x) = F(x, y_t(x)),

and the hypergradient comes from the implicit function theorem,

    grad phi_t(x) = grad_x F - H_xy H_yy^{-1} grad_y F      (H = Hessian blocks of f_t at y_t(x)),

computed matrix-free: one Cholesky solve ``H_yy v = grad_y F`` with the factor of the last Newton
step and one product ``grad_x <grad_y f_t(x, y), v>``. Unlike the authors' code (spec §4) the lower
level is solved by Newton with fraction to boundary and Armijo (never a projection), at the
current x, with strictly feasible restoration; the outer step has an Armijo line search on
``phi_t``; and ``t`` is driven to ``t_min`` geometrically.

One implementation serves numpy (one instance) and torch (a batch of instances sharing ``t``,
with per-instance steps and masks).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from .._backend import Backend, get_torch, infer_backend
from .._errors import BackendError, InvalidProblemError
from .._logging import get_logger, verbosity, warn
from .._options import CommonOptions, option
from .._result import Status
from ..callbacks import IterInfo, call_callback
from ._model import Ops, StructuredModel, make_model, scalar_or_array
from ._result import BatchedBilevelResult, BilevelResult
from .lower import phase1_lp, solve_lower_lp, solve_lower_qp
from .problem import BilevelProblem, Box, LowerLP, LowerQP

__all__ = ["BarrierOptions", "BarrierState", "BarrierSolver", "barrier"]

_log = get_logger("bilevel")
_EPS = float(np.finfo(float).eps)

# lower-level Newton outcome codes (per instance)
_LL_OK, _LL_NOT_PD, _LL_LS_FAIL, _LL_NONFINITE, _LL_MAX_NEWTON, _LL_TIMEOUT = 0, 1, 2, 3, 4, 5
_LL_MESSAGES = {_LL_NOT_PD: "lower-level Hessian of f_t not positive definite",
                _LL_LS_FAIL: "lower-level line search failed", _LL_NONFINITE: "non-finite lower-level value",
                _LL_MAX_NEWTON: "lower-level Newton did not converge within max_newton steps",
                _LL_TIMEOUT: "time limit reached during a lower-level solve"}


@dataclasses.dataclass(frozen=True)
class BarrierOptions(CommonOptions):
    """Options of the barrier method (spec bilevel §3.1; defaults are optkit's)."""

    tol: float = option(1e-6, kind="float", low=0.0, low_open=True,
                        doc="final test ||G_X(x)|| <= tol max(1, ||G_X(x0)||) at t_min (fixed schedule: ||G_X|| <= tol)")
    max_iter: int = option(2000, kind="int", low=0, doc="outer iterations over all stages")
    t0: float = option(1e-1, kind="float", low=0.0, low_open=True, doc="initial barrier parameter")
    t_min: float = option(1e-6, kind="float", low=0.0, low_open=True, doc="final barrier parameter")
    t_factor: float = option(0.1, kind="float", low=0.0, low_open=True, high=1.0,
                             doc="t_{j+1} = t_factor t_j, in (0, 1)")
    t_schedule: str = option("geometric", kind="choice", choices=("geometric", "fixed"),
                             doc="geometric continuation, or the authors' single fixed t = t0")
    rtol_t: float = option(10.0, kind="float", low=0.0, low_open=True,
                           doc="leave stage j when ||G_X|| <= max(tol, rtol_t t_j) max(1, ||G_X(x0)||)")
    max_iter_per_t: int = option(200, kind="int", low=1, doc="outer iterations per stage (all but the last)")
    stage_time: float | None = option(None, kind="float", low=0.0, low_open=True, allow_none=True,
                                      doc="seconds per stage (all but the last); benchmarks")
    step: str = option("armijo", kind="choice", choices=("armijo", "constant", "diminishing"),
                       doc="outer step: Armijo on phi_t, alpha_x, or alpha_x / sqrt(k + 1)")
    alpha_x: float = option(1.5e-3, kind="float", low=0.0, low_open=True, doc="step of constant/diminishing")
    alpha_max: float = option(1.0, kind="float", low=0.0, low_open=True,
                              doc="largest Armijo trial step (first trial: the Barzilai-Borwein step, capped)")
    armijo_c: float = option(1e-4, kind="float", low=0.0, low_open=True, high=1.0,
                             doc="phi_t(x+) <= phi_t(x) - (armijo_c / a) ||x+ - x||^2")
    ll_tol: float = option(1e-14, kind="float", low=0.0, low_open=True,
                           doc="lower level stops at decrement^2 / 2 <= ll_tol max(1, |f_t|)")
    max_newton: int = option(50, kind="int", low=1, doc="Newton steps per lower-level solve")
    restoration: str = option("auto", kind="choice", choices=("auto", "interior", "phase1", "reject"),
                              doc="infeasible warm start: y_interior then phase-1 LP (auto), one of them, or reject")
    linear_solver: str = option("cholesky", kind="choice", choices=("cholesky",),
                                doc="Newton and adjoint solves (batched Cholesky, factor reused)")
    strict_dtype: bool = option(False, kind="bool",
                                doc="float32 inputs: solve in float32 (t_min >= 1e-4) or raise (t_min < 1e-4) "
                                    "instead of solving in float64 and returning float32")

    def __post_init__(self):
        super().__post_init__()
        if self.t_factor >= 1.0:
            raise InvalidProblemError(f"BarrierOptions: option 't_factor' must be in (0, 1), got {self.t_factor!r}")
        if self.t_min > self.t0:
            raise InvalidProblemError(f"BarrierOptions: option 't_min' ({self.t_min}) must be <= t0 ({self.t0})")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidProblemError(f"BarrierOptions: option '{f.name}' must be finite, got {v!r}")


@dataclasses.dataclass
class BarrierState:
    """Iterate of the barrier method (arrays carry a leading batch dimension B; numpy B = 1).

    ``x, y`` are the upper iterate and ``y_t(x)``; ``t`` the barrier parameter; ``a_prev`` the last
    accepted steps; ``k`` the outer iteration count. Pass it back to :meth:`BarrierSolver.run` to
    warm start (``t`` and the steps are kept).
    """

    x: Any
    y: Any
    t: float
    a_prev: Any
    k: int = 0
    phi: Any = None
    grad: Any = None
    res: Any = None  # ||G_X(x)|| per instance (host)
    L: Any = None
    status: Any = None  # host int per instance: -1 running, else Status
    ll_code: Any = None
    stage_k: Any = None
    stage_start: float = 0.0
    scale: Any = None
    ls_fail: Any = None
    nfev: int = 0
    n_newton: int = 0
    t_start: float = 0.0
    bb: Any = None  # host Barzilai-Borwein step from the last accepted pair (nan: none)


class BarrierSolver:
    """init / step / run of the barrier method on a :class:`BilevelProblem`."""

    def __init__(self, problem: BilevelProblem, *, device=None, dtype=None, **options):
        if not isinstance(problem, BilevelProblem):
            raise InvalidProblemError(f"problem: expected a BilevelProblem, got {type(problem).__name__}")
        if problem.has_equalities:
            raise InvalidProblemError("eq_mask: the barrier method handles inequalities only (use method='lvhba')")
        if problem.Y is not None and not isinstance(problem.Y, Box):
            raise InvalidProblemError("Y: the barrier method needs a Box (or None), not a projection callable")
        self.problem = problem
        self.opts = BarrierOptions.from_kwargs(**options)
        self.device, self.dtype = device, dtype

    # ------------------------------------------------------------------ setup
    def _setup(self, x0, y0):
        p, o = self.problem, self.opts
        x0 = p.x0 if x0 is None else x0
        y0 = p.y0 if y0 is None else y0
        arrays = [a for a in (x0, y0, *p.params) if a is not None]
        be = infer_backend(*arrays, device=self.device, dtype=self.dtype)
        if be.is_torch:
            torch = get_torch()
            if be.dtype in (torch.float16, torch.bfloat16):
                raise BackendError(f"dtype: {be.dtype} is too coarse for barrier solves; use float32 or float64")
            self.out_dtype = be.dtype
            if be.dtype == torch.float32:
                # float32 hypergradients cancel: on V1 at t = 1e-4, grad_x F - H_xy v rounded to exactly 0
                # at x = 0.999 (true 2e-3), a false CONVERGED. Solves run in float64 unless strict_dtype.
                if o.strict_dtype and o.t_min < 1e-4:
                    raise InvalidProblemError(f"dtype: float32 with t_min = {o.t_min} < 1e-4 loses the adjoint "
                                              "accuracy; use float64 or raise t_min")
                if not o.strict_dtype:
                    if o.t_min < 1e-4:
                        warn("float32 with t_min < 1e-4: solving in float64 (spec bilevel §8)")
                    be = Backend("torch", be.device, torch.float64)
        else:
            if np.dtype(be.dtype) in (np.float16,):
                raise BackendError("dtype: float16 is too coarse for barrier solves")
            be = Backend("numpy", None, np.dtype("float64"))
            self.out_dtype = be.dtype
        self.be, self.ops = be, Ops(be)
        ops = self.ops
        if x0 is None:
            x0 = np.zeros(p.n_x)
        X = self.ops.coerce(x0, p.n_x, "x0")
        self.batched = be.is_torch and X.ndim == 2
        if X.ndim == 1:
            X = X[None]
        B = X.shape[0]
        self.B = B
        self.model = make_model(p, be, ops)
        if y0 is None:
            if p.y_interior is not None:
                y0 = self._y_interior(X)
            else:
                y0 = ops.zeros(B, p.n_y)
        Y = self.ops.coerce(y0, p.n_y, "y0")
        if Y.ndim == 1:
            Y = Y[None]
        if Y.shape[0] != B:
            if Y.shape[0] == 1:
                Y = Y.expand(B, -1).clone() if be.is_torch else np.repeat(Y, B, 0)
            else:
                raise InvalidProblemError(f"y0: batch size {Y.shape[0]} does not match x0's {B}")
        X = self._proj_X(X)
        return X, Y


    def _proj_X(self, X):
        return self.ops.project(self.problem.X, X)

    def _y_interior(self, X):
        p = self.problem
        rows = [p.y_interior(X[i], *self.model.params) for i in range(X.shape[0])]
        if self.be.is_torch:
            torch = self.ops.torch
            return torch.stack([torch.as_tensor(r).to(X) for r in rows])
        return np.stack([np.asarray(r, float) for r in rows])

    # ------------------------------------------------------------------ checks at the start
    def _check_start(self, X, Y):
        p, ops, model = self.problem, self.ops, self.model
        ctx = model.at(X)
        try:
            Fv = model.F(X, Y)
        except InvalidProblemError:
            raise
        except Exception as exc:
            raise InvalidProblemError(f"F: evaluation failed at (x0, y0): {type(exc).__name__}: {exc}") from None
        if tuple(Fv.shape) != (X.shape[0],):
            raise InvalidProblemError(f"F: expected a scalar, got shape {tuple(Fv.shape)[1:]}")
        if not bool(ops.host(ops.isfinite(Fv)).all()):
            raise InvalidProblemError("F: not finite at (x0, y0)")
        if p.m:
            g = model.g_user(X, Y)
            if tuple(g.shape) != (X.shape[0], p.m):
                raise InvalidProblemError(f"g: expected shape ({p.m},), got {tuple(g.shape)[1:]}")
            if not bool(ops.host(ops.isfinite(g)).all()):
                raise InvalidProblemError("g: returned NaN or inf at (x0, y0)")
        fv = model.f(X, Y)
        if not bool(ops.host(ops.isfinite(fv)).all()):
            raise InvalidProblemError("f: not finite at (x0, y0)")
        if model.m_tot == 0:
            raise InvalidProblemError("g: the lower level has no constraints (m = 0 and no Y box); "
                                      "the barrier method needs at least one")
        if isinstance(model, StructuredModel):
            for i in range(X.shape[0]):
                A = ops.host(ctx["A"][i])
                if isinstance(p.lower, LowerLP) and np.linalg.matrix_rank(A) < p.n_y:
                    raise InvalidProblemError("lower: LP constraint matrix A(x0) (with the Y box rows) is rank "
                                              "deficient; the barrier needs full column rank")
                if isinstance(p.lower, LowerQP):
                    Q = ops.host(ctx["Q"][i])
                    ev = np.linalg.eigvalsh(0.5 * (Q + Q.T)).min()
                    if ev < -1e-10 * max(1.0, np.abs(Q).max()):
                        raise InvalidProblemError(f"lower: Q(x0) is indefinite (smallest eigenvalue {ev:.3g}); "
                                                  "lower level not convex at x0")
                if isinstance(p.lower, LowerLP):
                    y, _, ok = solve_lower_lp(ops.host(ctx["q"][i]), A, ops.host(ctx["b"][i]))
                    if not ok:
                        raise InvalidProblemError("lower: the LP lower level at x0 is unbounded or infeasible "
                                                  "(the barrier needs a bounded polytope)")
        return ctx

    # ------------------------------------------------------------------ lower level
    _deadline = None

    def _timed_out(self):
        return self._deadline is not None and time.perf_counter() >= self._deadline

    def _eps(self):
        if self.be.is_torch:
            return float(self.ops.torch.finfo(self.be.dtype).eps)
        return _EPS

    def _frac_to_boundary(self, ctx, Y, D, s, act):
        """Largest step keeping g < 0: closed form for affine g, else halving from 1."""
        ops, model = self.ops, self.model
        B = Y.shape[0]
        if model.linear_in_y:
            dg = model.dg(ctx, Y, D)
            ratio = ops.where(dg > 0, s / ops.where(dg > 0, dg, 1.0), math.inf)
            amax = ops.host(ops.amin(ratio, -1)) if model.m_tot else np.full(B, math.inf)
            return np.minimum(1.0, 0.99 * amax)
        a = np.ones(B)
        need = act.copy()
        for _ in range(60):
            gt = model.g(ctx, Y + ops.mask(a).to(Y) * D if self.be.is_torch else Y + a[:, None] * D)
            feas = ops.host(ops.amax(gt, -1) < 0)
            need &= ~feas
            if not need.any():
                break
            a[need] *= 0.5
        return a

    def _newton(self, ctx, Y, t, act):
        """Batched barrier Newton for instances in ``act`` from strictly feasible ``Y``.

        Returns ``(Y, L, ok, code, n_steps)``; ``L`` is the Cholesky factor of ``H_yy`` at the
        returned ``Y`` (reused by the hypergradient).
        """
        o, ops, model = self.opts, self.ops, self.model
        B = Y.shape[0]
        eps = self._eps()
        code = np.full(B, _LL_OK)
        running = act.copy()
        steps = np.zeros(B, int)
        for it in range(o.max_newton + 1):
            if not running.any():
                break
            if self._timed_out():  # a large lower level can take longer than the whole budget
                code[running] = _LL_TIMEOUT
                running[:] = False
                break
            grad, H, s = model.grad_hess(ctx, Y, t)
            L, okL = ops.chol(H)
            f0 = ops.host(model.ft(ctx, Y, t))
            fin = np.isfinite(f0) & ops.host(ops.isfinite(grad).all(-1))
            bad = running & ~fin
            code[bad] = _LL_NONFINITE
            notpd = running & fin & ~okL
            code[notpd] = _LL_NOT_PD
            running &= fin & okL
            if not running.any():
                break
            if it == o.max_newton:
                code[running] = _LL_MAX_NEWTON
                break
            D = -ops.chol_solve(L, grad)
            D = ops.where(ops.mask(running), D, 0.0)
            gd = ops.host(ops.dot(grad, D))
            dec = -gd / 2
            scale = np.maximum(1.0, np.abs(f0))
            # the attainable accuracy of f_t is eps |f_t| in the working dtype (float32: 1e-7)
            stop = running & (dec <= max(o.ll_tol, 10 * eps) * scale)
            a = self._frac_to_boundary(ctx, Y, D, s, running)
            # below ~eps |f_t| Armijo cannot see a decrease: take the capped full step (spec §3.1 step 4)
            armijo = running & (dec > np.maximum(1e-8, 1e3 * eps * scale))
            slack = 10 * eps * scale
            for _ in range(60):
                if not armijo.any():
                    break
                Yt = Y + ops.mask(a).to(Y.dtype) * D if self.be.is_torch else Y + a[:, None] * D
                ft = ops.host(model.ft(ctx, Yt, t))
                ok = ft <= f0 + 0.25 * a * gd + slack
                armijo &= ~ok
                a[armijo] *= 0.5
            failed = armijo  # still searching after 60 halvings
            code[failed] = _LL_LS_FAIL
            running &= ~failed
            take = running.astype(float) * a
            Y = Y + ops.arr(take)[:, None] * D
            steps += running
            running &= ~stop
        grad, H, s = model.grad_hess(ctx, Y, t)
        L, okL = ops.chol(H)
        code[act & (code == _LL_OK) & ~okL] = _LL_NOT_PD
        return Y, L, act & (code == _LL_OK), code, steps

    def _restore(self, ctx, Y, act):
        """Strictly feasible lower-level starts for instances in ``act``; returns ``(Y, ok)``."""
        o, ops, model, p = self.opts, self.ops, self.model, self.problem
        X = ctx["X"]
        g = model.g(ctx, Y)
        feas = ops.host(ops.amax(g, -1) < 0) if model.m_tot else np.ones(Y.shape[0], bool)
        ok = feas | ~act
        todo = np.flatnonzero(act & ~feas)
        if len(todo) == 0 or o.restoration == "reject":
            return Y, ok
        Y = Y.clone() if self.be.is_torch else Y.copy()
        for i in todo:
            yi = None
            if p.y_interior is not None and o.restoration in ("auto", "interior"):
                yi = self._toward_interior(ctx, X, Y, i)
            if yi is None and isinstance(model, StructuredModel) and o.restoration in ("auto", "phase1"):
                yi = self._phase1(ctx, i)
            if yi is not None:
                Y[i] = yi
                ok[i] = True
        return Y, ok

    def _row(self, ctx, i):
        return {k: (v[i:i + 1] if v is not None and hasattr(v, "shape") else v) for k, v in ctx.items()}

    def _toward_interior(self, ctx, X, Y, i):
        """y = y_int + beta (y_prev - y_int), beta 0.99 of the largest feasible value in [0, 1]."""
        ops, model = self.ops, self.model
        ci = self._row(ctx, i)
        yint = self._y_interior(X[i:i + 1])
        gint = model.g(ci, yint)
        if not bool(ops.host(ops.amax(gint, -1) < 0)[0]):
            return None
        d = Y[i:i + 1] - yint
        if model.linear_in_y:
            dg = model.dg(ci, yint, d)
            s = -gint
            ratio = ops.where(dg > 0, s / ops.where(dg > 0, dg, 1.0), math.inf)
            beta = min(1.0, float(ops.host(ops.amin(ratio, -1))[0]))
        else:
            lo, hi = 0.0, 1.0
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                if bool(ops.host(ops.amax(model.g(ci, yint + mid * d), -1) < 0)[0]):
                    lo = mid
                else:
                    hi = mid
            beta = lo
        return (yint + 0.99 * beta * d)[0]

    def _phase1(self, ctx, i):
        ops = self.ops
        A, b = ops.host(ctx["A"][i]), ops.host(ctx["b"][i])
        y, sigma = phase1_lp(A, b)
        if y is None or sigma <= 1e-12 * max(1.0, np.abs(b).max()):
            return None
        return ops.arr(y)

    def _hyper(self, ctx, Y, L, t, ok):
        ops, model = self.ops, self.model
        gFx, gFy = model.grad_F(ctx["X"], Y)
        V = ops.chol_solve(L, ops.where(ops.mask(ok), gFy, 0.0))
        G = gFx - model.hyper_x(ctx, Y, t, V)
        return ops.where(ops.mask(ok), G, 0.0)

    def _res(self, X, G):
        return self.ops.host(self.ops.norm(X - self._proj_X(X - G)))

    # ------------------------------------------------------------------ public loop
    def init(self, x0=None, y0=None) -> BarrierState:
        """Validate the start, restore lower-level feasibility at x0 and solve the first stage's LL."""
        o = self.opts
        t_start = time.perf_counter()
        X, Y = self._setup(x0, y0)
        ctx = self._check_start(X, Y)
        B = X.shape[0]
        act = np.ones(B, bool)
        Y, ok = self._restore(ctx, Y, act)
        if not ok.all():
            g = self.ops.host(self.model.g(ctx, Y))
            raise InvalidProblemError(f"x0, y0: no strictly feasible lower-level point at x0; max_i g_i = "
                                      f"{float(g.max()):.6g} (give a strictly feasible y0 or y_interior)")
        t = o.t0
        grad, H, s = self.model.grad_hess(ctx, Y, t)
        _, okH = self.ops.chol(H)
        if not okH.all():
            raise InvalidProblemError("lower: lower level not strongly convex at x0 (Hessian of f_t not positive "
                                      "definite at (x0, y0)); regularise or use method='lvhba'")
        Y, L, ok, code, steps = self._newton(ctx, Y, t, act)
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise InvalidProblemError(f"x0: the lower-level barrier problem could not be solved at x0 "
                                      f"({_LL_MESSAGES.get(int(code[bad]), 'failure')})")
        G = self._hyper(ctx, Y, L, t, ok)
        phi = self.ops.host(self.model.F(X, Y))
        res = self._res(X, G)
        return BarrierState(x=X, y=Y, t=t, a_prev=np.full(B, o.alpha_max), k=0, phi=phi, grad=G, res=res, L=L,
                            status=np.full(B, -1), ll_code=code, stage_k=np.zeros(B, int),
                            stage_start=time.perf_counter(), scale=np.maximum(1.0, res), ls_fail=np.zeros(B, bool),
                            nfev=1, n_newton=int(steps.sum()), t_start=t_start)

    def _last_stage(self, st):
        return self.opts.t_schedule == "fixed" or st.t <= self.opts.t_min * (1 + 1e-12)

    def _threshold(self, st):
        o = self.opts
        if o.t_schedule == "fixed":
            return np.full(self.B, o.tol)
        if self._last_stage(st):
            return o.tol * st.scale
        return max(o.tol, o.rtol_t * st.t) * st.scale

    def step(self, st: BarrierState) -> BarrierState:
        """One outer iteration for every running instance (step + line search, then stage logic)."""
        o, ops, model = self.opts, self.ops, self.model
        run = (st.status == -1) & (st.res > self._threshold(st)) & ~st.ls_fail
        if not run.any():
            return st
        X, Y, G = st.x, st.y, st.grad
        if o.step == "armijo":
            # BB1 first trial: phi_t's curvature grows like 1/t, and doubling the last step zigzags
            # on well-conditioned stages (V1: step 1 = 2/L is accepted forever with tiny decrease)
            bb = st.bb if st.bb is not None else np.full(self.B, np.nan)
            a = np.where(np.isfinite(bb), np.clip(bb, 1e-12, o.alpha_max), np.minimum(2 * st.a_prev, o.alpha_max))
        else:
            a = np.full(self.B, o.alpha_x / (math.sqrt(st.k + 1) if o.step == "diminishing" else 1.0))
        searching = run.copy()
        newX, newY, newL, newF = X, Y, st.L, st.phi
        accepted = np.zeros(self.B, bool)
        for _ in range(41):
            Xp = self._proj_X(X - ops.arr(a)[:, None] * G)
            ctx = model.at(Xp)
            Yr, okr = self._restore(ctx, Y, searching)
            Yp, Lp, okn, code, steps = self._newton(ctx, Yr, st.t, searching & okr)
            st.n_newton += int(steps.sum())
            st.nfev += 1
            if self._timed_out():
                break
            Fp = ops.host(model.F(Xp, Yp)) if (searching & okn).any() else np.full(self.B, math.inf)
            dx2 = ops.host(((Xp - X) ** 2).sum(-1))
            good = searching & okn & np.isfinite(Fp)
            if o.step == "armijo":  # roundoff slack: float32 cannot resolve changes below eps |phi|
                good &= Fp <= st.phi - o.armijo_c / a * dx2 + 10 * self._eps() * np.maximum(1.0, np.abs(st.phi))
            acc = good
            if acc.any():
                m = ops.mask(acc)
                newX = ops.where(m, Xp, newX)
                newY = ops.where(m, Yp, newY)
                newL = ops.where(m[..., None], Lp, newL)
                newF = np.where(acc, Fp, newF)
                accepted |= acc
            searching &= ~acc
            if not searching.any():
                break
            a = np.where(searching, 0.5 * a, a)
        if not self._timed_out():  # trials cut by the clock are not a line-search failure
            st.ls_fail = st.ls_fail | searching
        if accepted.any():
            ctx = model.at(newX)
            Gn = self._hyper(ctx, newY, newL, st.t, accepted)
            Gnew = ops.where(ops.mask(accepted), Gn, G)
            sx, sg = newX - X, Gnew - G
            sy = ops.host(ops.dot(sx, sg))
            ss = ops.host(ops.dot(sx, sx))
            with np.errstate(divide="ignore", invalid="ignore"):
                bb = np.where(accepted & (sy > 0), ss / sy, np.nan)
            st.bb = np.where(accepted, bb, st.bb if st.bb is not None else np.nan)
            st.grad = Gnew
            st.x, st.y, st.L = newX, newY, newL
            st.phi = newF  # F at the accepted trials, already evaluated by the line search
            st.res = np.where(accepted, self._res(newX, st.grad), st.res)
            st.a_prev = np.where(accepted, a, st.a_prev)
        st.k += 1
        st.stage_k = st.stage_k + run
        return st

    def _advance_stage(self, st) -> bool:
        """Move every running instance to the next t; False when none can move (the last stage)."""
        o, ops = self.opts, self.ops
        if self._last_stage(st):
            return False
        t_new = max(st.t * o.t_factor, o.t_min)
        act = st.status == -1
        ctx = self.model.at(st.x)
        Y, L, ok, code, steps = self._newton(ctx, st.y, t_new, act)
        st.n_newton += int(steps.sum())
        st.nfev += 1
        if self._timed_out():  # leave the stage as it was: the run ends with TIME_LIMIT
            return True
        bad = act & ~ok
        st.status = np.where(bad, int(Status.NUMERICAL_ERROR), st.status)
        st.ll_code = np.where(bad, code, st.ll_code)
        good = act & ok
        m = ops.mask(good)
        st.y = ops.where(m, Y, st.y)
        st.L = ops.where(m[..., None], L, st.L)
        st.t = t_new
        G = self._hyper(ctx, st.y, st.L, t_new, good)
        st.grad = ops.where(m, G, st.grad)
        st.phi = np.where(good, ops.host(self.model.F(st.x, st.y)), st.phi)
        st.res = np.where(good, self._res(st.x, st.grad), st.res)
        st.stage_k = np.zeros(self.B, int)
        st.ls_fail = np.zeros(self.B, bool)
        st.a_prev = np.full(self.B, o.alpha_max)
        st.bb = None
        st.stage_start = time.perf_counter()
        return True

    def _stage_done(self, st):
        o = self.opts
        done = (st.res <= self._threshold(st)) | st.ls_fail
        if not self._last_stage(st):
            done |= st.stage_k >= o.max_iter_per_t
            if o.stage_time is not None and time.perf_counter() - st.stage_start >= o.stage_time:
                done |= True
        return done | (st.status != -1)

    def run(self, state: BarrierState | None = None, x0=None, y0=None) -> BilevelResult:
        o = self.opts
        with verbosity(o.verbose):
            self._deadline = None  # the first lower-level solve (in init) always completes
            st = self.init(x0, y0) if state is None else state
            t_begin = time.perf_counter()
            if o.time_limit is not None:
                self._deadline = t_begin + o.time_limit
            history = [] if o.record_history else None
            stop = None
            if o.verbose >= 2:
                _log.info("%6s %10s %14s %11s %9s", "iter", "t", "F", "||G_X||", "step")
            while True:
                done = self._stage_done(st)
                if (st.status != -1).all() or (done.all() and self._last_stage(st)):
                    break
                if st.k >= o.max_iter:
                    stop = Status.MAX_ITER
                    break
                if self._timed_out():
                    stop = Status.TIME_LIMIT
                    break
                if done.all():
                    self._advance_stage(st)
                    continue
                self.step(st)
                elapsed = time.perf_counter() - t_begin
                if history is not None:
                    history.append(dict(time=elapsed, F=scalar_or_array(st.phi), t=st.t,
                                        residual=scalar_or_array(st.res), step=scalar_or_array(st.a_prev), nit=st.k))
                if o.verbose >= 2:
                    _log.info("%6d %10.2e %14.7e %11.3e %9.2e", st.k, st.t, float(np.mean(st.phi)),
                              float(np.max(st.res)), float(np.mean(st.a_prev)))
                info = IterInfo(nit=st.k, fun=scalar_or_array(st.phi), x=st.x if self.batched else st.x[0],
                                residual=scalar_or_array(st.res), step=scalar_or_array(st.a_prev), elapsed=elapsed,
                                extra=dict(t=st.t))
                if call_callback(o.callback, info):
                    stop = Status.CALLBACK_STOP
                    break
            wall = time.perf_counter() - st.t_start if state is None else time.perf_counter() - t_begin
            return self._result(st, stop, history, wall)

    # ------------------------------------------------------------------ result
    def _statuses(self, st, stop):
        o = self.opts
        out = st.status.copy()
        run = out == -1
        conv = run & (st.res <= self._threshold(st)) & self._last_stage(st)
        out[conv] = int(Status.CONVERGED)
        rest = run & ~conv
        if stop is not None:
            out[rest] = int(stop)
        else:
            out[rest & st.ls_fail] = int(Status.STALLED)
            out[rest & ~st.ls_fail] = int(Status.MAX_ITER)
        del o
        return out

    def _result(self, st, stop, history, wall):
        p, ops, model, o = self.problem, self.ops, self.model, self.opts
        codes = self._statuses(st, stop)
        ctx = model.at(st.x)
        g = model.g(ctx, st.y)
        s = -g[:, : p.m]
        lam = st.t / s
        viol = np.maximum(0.0, ops.host(ops.amax(g, -1))) if model.m_tot else np.zeros(self.B)
        fun = ops.host(model.F(st.x, st.y))
        fres, yres, gap = _resolve(self, st.x, st.y, ctx) if self._resolve else (None, None, None)
        msgs = []
        for i, c in enumerate(codes):
            if c == Status.NUMERICAL_ERROR:
                msgs.append(_LL_MESSAGES.get(int(st.ll_code[i]), "numerical failure"))
            elif c == Status.STALLED:
                msgs.append(f"outer line search failed at t = {st.t:.3g} with ||G_X|| = {st.res[i]:.3g}")
            elif c == Status.CONVERGED:
                msgs.append(f"||G_X|| = {st.res[i]:.3g} at t = {st.t:.3g}")
            else:
                msgs.append("")
        out = self._out
        common = dict(t=st.t, nit=st.k, nfev=st.nfev, n_ll_iter=st.n_newton, wall_time=wall, history=history,
                      backend=self.be.name, device=self.be.device_str if self.be.is_torch else "cpu",
                      dtype=str(self.out_dtype).replace("torch.", ""), options=o,
                      extra=dict(ll_code=[int(c) for c in st.ll_code], restoration=o.restoration))
        if self.batched:
            torch = ops.torch
            dev = self.be.device
            return BatchedBilevelResult(
                x=out(st.x), y=out(st.y), fun=torch.as_tensor(fun, device=dev), statuses=torch.as_tensor(codes, device=dev),
                kkt_residual=torch.as_tensor(st.res, device=dev), constraint_violation=torch.as_tensor(viol, device=dev),
                multipliers=out(lam), hypergrad=out(st.grad),
                fun_resolved=None if fres is None else torch.as_tensor(fres, device=dev),
                y_resolved=None if yres is None else out(ops.arr(yres)),
                ll_gap=None if gap is None else torch.as_tensor(gap, device=dev),
                message="; ".join(sorted({m for m in msgs if m})[:3]), **common)
        return BilevelResult(
            x=out(st.x[0]), y=out(st.y[0]), fun=float(fun[0]), status=Status(int(codes[0])), message=msgs[0],
            kkt_residual=float(st.res[0]), constraint_violation=float(viol[0]), multipliers=out(lam[0]),
            hypergrad=out(st.grad[0]), fun_resolved=None if fres is None else float(fres[0]),
            y_resolved=None if yres is None else out(ops.arr(yres[0])), ll_gap=None if gap is None else float(gap[0]),
            **common)

    def _out(self, v):
        if self.be.is_torch:
            return v.detach().to(self.out_dtype)
        return np.array(v, dtype=float)

    _resolve = True



def _resolve(solver, X, Y, ctx):
    """``F(x, y*(x))``, ``y*(x)`` and ``f(x, y) - f(x, y*(x))`` by an exact lower-level solve."""
    p, ops, model = solver.problem, solver.ops, solver.model
    ys = []
    for i in range(X.shape[0]):
        y = exact_lower(p, model, ops, ctx, X, i)
        if y is None:
            return None, None, None
        ys.append(y)
    Ys = ops.arr(np.stack(ys))
    return ops.host(model.F(X, Ys)), np.stack(ys), ops.host(model.f(X, Y)) - ops.host(model.f(X, Ys))


def exact_lower(p, model, ops, ctx, X, i, with_duals=False):
    """Exact lower-level solution at instance ``i`` (user solver, Clarabel, or HiGHS); None if none.

    With ``with_duals`` returns ``(y, lam)``, ``lam`` with one entry per barrier row (the problem's
    rows, then the Y box rows; a user ``lower_solver`` gives what it returns).
    """
    if p.lower_solver is not None:
        out = p.lower_solver(X[i], *model.params)
        y, lam = (out if isinstance(out, tuple) else (out, None))
        y = ops.host(y) if hasattr(y, "shape") else np.asarray(y)
        return (y, None if lam is None else ops.host(lam) if hasattr(lam, "detach") else np.asarray(lam)) \
            if with_duals else y
    if not isinstance(model, StructuredModel):
        return None
    A, b, q = (ops.host(ctx[k][i]) for k in ("A", "b", "q"))
    if model.is_lp:
        y, lam, ok = solve_lower_lp(q, A, b)
    else:
        y, lam, ok = solve_lower_qp(ops.host(ctx["Q"][i]), q, A, b)
    if y is None:
        return None
    return (y, lam) if with_duals else y


def barrier(problem: BilevelProblem, *, x0=None, y0=None, device=None, dtype=None, resolve_lower=True,
            **options) -> BilevelResult:
    """Barrier method (see :func:`optkit.bilevel.solve` with ``method="barrier"``)."""
    solver = BarrierSolver(problem, device=device, dtype=dtype, **options)
    solver._resolve = bool(resolve_lower)
    return solver.run(x0=x0, y0=y0)
