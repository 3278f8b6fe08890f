"""Active-set implicit-gradient baseline (``method="kkt"``, GAM/BSG type; spec bilevel §3.3).

At each x the lower level is solved exactly (Clarabel for LowerQP, HiGHS for LowerLP, or the
problem's ``lower_solver``), the active set is read off the duals, and the hypergradient solves

    [[grad2_yy L, J_A^T], [J_A, 0]] [w; omega] = [grad_y F; 0],
    grad phi = grad_x F - grad2_xy L w - G_x^T omega,     L = f + lam^T g,  G_x = d g_A / dx.

The outer loop is the barrier method's projected Armijo step on the exact ``phi``. It is the
hypergradient reference of the tests; at degenerate points (no strict complementarity, non-unique
lower-level solutions) ``K`` is singular, a least-squares solution is used and
``extra["kkt_singular"]`` is set.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from .._backend import Backend, infer_backend, is_torch
from .._errors import InvalidProblemError
from .._options import CommonOptions, option
from .._result import Status
from ..callbacks import IterInfo, call_callback
from ._model import Ops, StructuredModel, make_model
from ._result import BilevelResult
from .barrier import exact_lower
from .problem import BilevelProblem, Box

__all__ = ["KKTOptions", "kkt", "kkt_hypergradient"]


@dataclasses.dataclass(frozen=True)
class KKTOptions(CommonOptions):
    """Options of ``method="kkt"``."""

    tol: float = option(1e-6, kind="float", low=0.0, low_open=True,
                        doc="stop at ||G_X(x)|| <= tol max(1, ||G_X(x0)||)")
    max_iter: int = option(2000, kind="int", low=0, doc="outer iterations")
    act_tol: float = option(1e-8, kind="float", low=0.0, low_open=True,
                            doc="row i active when lam_i > act_tol max(1, ||lam||_inf)")
    ll_tol: float = option(1e-10, kind="float", low=0.0, low_open=True, doc="lower-level solver tolerance")
    alpha_max: float = option(1.0, kind="float", low=0.0, low_open=True, doc="largest Armijo trial step")
    armijo_c: float = option(1e-4, kind="float", low=0.0, low_open=True, high=1.0, doc="Armijo constant")


class _Oracle:
    """Exact lower-level solves and the active-set hypergradient on host numpy data."""

    def __init__(self, problem: BilevelProblem, opts: KKTOptions):
        if problem.lower is None and problem.lower_solver is None:
            raise InvalidProblemError("lower: method='kkt' needs a LowerQP/LowerLP lower level or a lower_solver")
        if problem.lower is None:
            raise InvalidProblemError("lower: method='kkt' needs the Hessian of the lower level; give "
                                      "lower=LowerQP(...) or LowerLP(...)")
        self.p, self.o = problem, opts
        self.be = Backend("numpy", None, np.dtype("float64"))
        self.ops = Ops(self.be)
        self.model = make_model(problem, self.be, self.ops)
        assert isinstance(self.model, StructuredModel)
        self.n_solves = 0

    def lower(self, x):
        X = x[None]
        ctx = self.model.at(X)
        out = exact_lower(self.p, self.model, self.ops, ctx, X, 0, with_duals=True)
        self.n_solves += 1
        if out is None:
            return None, None, ctx
        y, lam = out
        if lam is None or lam.shape[0] != self.model.m_tot:
            raise InvalidProblemError(f"lower_solver: must return duals of all {self.model.m_tot} rows for method='kkt'")
        return y, lam, ctx

    def hypergrad(self, x, y, lam, ctx):
        """Active-set implicit gradient; returns (grad, singular flag, active rows)."""
        model, p = self.model, self.p
        X, Y = x[None], y[None]
        gFx, gFy = (v[0] for v in model.grad_F(X, Y))
        A = ctx["A"][0]
        act = lam > self.o.act_tol * max(1.0, float(np.abs(lam).max(initial=0.0)))
        JA = A[act]
        n = p.n_y
        H = np.zeros((n, n)) if ctx["Q"] is None else ctx["Q"][0]
        k = JA.shape[0]
        K = np.block([[H, JA.T], [JA, np.zeros((k, k))]])
        rhs = np.concatenate([gFy, np.zeros(k)])
        singular = False
        try:
            sol = np.linalg.solve(K, rhs)
            # a residual test instead of cond(K): an SVD of K costs O(N^3) time and memory at N ~ 6000
            bad = not np.isfinite(sol).all() or \
                np.linalg.norm(K @ sol - rhs) > 1e-8 * max(1.0, np.linalg.norm(rhs)) or \
                np.linalg.norm(sol) > 1e12 * max(1.0, np.linalg.norm(rhs))
            if bad:
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            sol = np.linalg.lstsq(K, rhs, rcond=None)[0]
            singular = True
        w, om = sol[:n], sol[n:]
        G = gFx.copy()
        lam_user = lam[: p.m]
        om_user = np.zeros(model.m_tot)
        om_user[act] = om
        om_user = om_user[: p.m]
        W = w[None]
        sc = 1.0 / max(1.0, float(np.abs(w).max()) / max(1.0, float(np.abs(y).max())))
        Ws = W * sc
        if model._x_dependent(1) or (not model.is_lp and model._x_dependent(0)):
            G -= 0.5 * (model.grad_f_x(X, Y + Ws) - model.grad_f_x(X, Y - Ws))[0] / sc
        if p.m and (model._x_dependent(2) or model._x_dependent(3)):
            L1 = lam_user[None]
            G -= (model.vjp_g_x(X, Y + Ws, L1) - model.vjp_g_x(X, Y, L1))[0] / sc
            G -= model.vjp_g_x(X, Y, om_user[None])[0]
        return G, singular, act


def kkt_hypergradient(problem: BilevelProblem, x, **options):
    """Exact hypergradient ``grad phi(x)`` by the active-set implicit function theorem.

    Returns ``(grad, info)`` with ``info = dict(y=, lam=, active=, singular=)`` (numpy).
    """
    orc = _Oracle(problem, KKTOptions.from_kwargs(**options))
    x = np.asarray(x, dtype=float)
    y, lam, ctx = orc.lower(x)
    if y is None:
        raise InvalidProblemError("x: the lower level has no solution at x")
    G, singular, act = orc.hypergrad(x, y, lam, ctx)
    return G, dict(y=y, lam=lam, active=act, singular=singular)


def kkt(problem: BilevelProblem, *, x0=None, y0=None, device=None, dtype=None, resolve_lower=True,
        **options) -> BilevelResult:
    """Projected Armijo descent on ``phi(x) = F(x, y*(x))`` with exact lower-level solves.

    Computation runs on the host in float64; torch inputs get torch outputs on their device.
    """
    o = KKTOptions.from_kwargs(**options)
    if not isinstance(problem, BilevelProblem):
        raise InvalidProblemError(f"problem: expected a BilevelProblem, got {type(problem).__name__}")
    x0 = problem.x0 if x0 is None else x0
    be_in = infer_backend(*(a for a in (x0, y0) if a is not None), device=device, dtype=dtype)
    if x0 is None:
        x0 = np.zeros(problem.n_x)
    x = np.array(x0.detach().cpu().numpy() if is_torch(x0) else x0, dtype=float)
    if x.shape != (problem.n_x,):
        raise InvalidProblemError(f"x0: expected shape ({problem.n_x},), got {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidProblemError("x0: contains NaN or inf")
    if y0 is not None:
        yv = np.asarray(y0.detach().cpu().numpy() if is_torch(y0) else y0, dtype=float)
        if yv.shape != (problem.n_y,):
            raise InvalidProblemError(f"y0: expected shape ({problem.n_y},), got {yv.shape}")
    t_start = time.perf_counter()
    orc = _Oracle(problem, o)
    P = problem.X

    def proj(v):
        if P is None:
            return v
        return P.project(v) if isinstance(P, Box) else np.asarray(P(v), dtype=float)

    x = proj(x)
    y, lam, ctx = orc.lower(x)
    if y is None:
        raise InvalidProblemError("x0: the lower level has no solution at x0")
    Fv = float(orc.model.F(x[None], y[None])[0])
    if not math.isfinite(Fv):
        raise InvalidProblemError("F: not finite at (x0, y*(x0))")
    G, singular, _ = orc.hypergrad(x, y, lam, ctx)
    res = float(np.linalg.norm(x - proj(x - G)))
    scale = max(1.0, res)
    a_prev = o.alpha_max
    history = [] if o.record_history else None
    status, k, n_sing = None, 0, int(singular)
    while True:
        if res <= o.tol * scale:
            status = Status.CONVERGED
            break
        if k >= o.max_iter:
            status = Status.MAX_ITER
            break
        if o.time_limit is not None and time.perf_counter() - t_start >= o.time_limit:
            status = Status.TIME_LIMIT
            break
        a = min(2 * a_prev, o.alpha_max)
        accepted = False
        for _ in range(41):
            xp = proj(x - a * G)
            yp, lamp, ctxp = orc.lower(xp)
            if yp is not None:
                Fp = float(orc.model.F(xp[None], yp[None])[0])
                if math.isfinite(Fp) and Fp <= Fv - o.armijo_c / a * float(((xp - x) ** 2).sum()):
                    accepted = True
                    break
            a *= 0.5
        k += 1
        if not accepted:
            status = Status.STALLED
            break
        x, y, lam, ctx, Fv, a_prev = xp, yp, lamp, ctxp, Fp, a
        G, singular, _ = orc.hypergrad(x, y, lam, ctx)
        n_sing += int(singular)
        res = float(np.linalg.norm(x - proj(x - G)))
        elapsed = time.perf_counter() - t_start
        if history is not None:
            history.append(dict(time=elapsed, F=Fv, residual=res, step=a, nit=k))
        if call_callback(o.callback, IterInfo(nit=k, fun=Fv, x=x, residual=res, step=a, elapsed=elapsed)):
            status = Status.CALLBACK_STOP
            break
    wall = time.perf_counter() - t_start
    gv = orc.model.g(ctx, y[None])[0]
    viol = max(0.0, float(gv.max())) if gv.size else 0.0

    def out(v):
        if be_in.is_torch:
            import torch

            return torch.as_tensor(v, dtype=be_in.dtype, device=be_in.device)
        return v

    msg = {Status.CONVERGED: f"||G_X|| = {res:.3g}", Status.STALLED: f"line search failed with ||G_X|| = {res:.3g}"}
    return BilevelResult(
        x=out(x), y=out(y), fun=Fv, status=status, message=msg.get(status, ""), nit=k, nfev=orc.n_solves,
        kkt_residual=res, constraint_violation=viol, wall_time=wall, history=history, backend=be_in.name,
        device=be_in.device_str, dtype=be_in.dtype_str if be_in.is_torch else "float64", options=o,
        extra=dict(kkt_singular=n_sing > 0, n_singular=n_sing, active=np.flatnonzero(
            lam > o.act_tol * max(1.0, float(np.abs(lam).max(initial=0.0)))).tolist()),
        fun_resolved=Fv if resolve_lower else None, y_resolved=out(y) if resolve_lower else None,
        ll_gap=0.0 if resolve_lower else None, multipliers=out(lam[: problem.m]), hypergrad=out(G),
        n_ll_iter=orc.n_solves)
