"""LV-HBA: single-loop Hessian-free bilevel method on the proximal Lagrangian value function.

W. Yao, H. Yu, S. Zeng, J. Zhang, "Constrained Bi-Level Optimization: Proximal Lagrangian Value
Function Approach and Hessian-free Algorithm", ICLR 2024 (arXiv 2401.16164). With

    v_gamma(x, y, z) = min_{theta in Y} max_{lam in Lambda} f(x, theta) + <lam, g(x, theta)>
                       + ||theta - y||^2 / (2 gamma1) - ||lam - z||^2 / (2 gamma2),

the bilevel problem becomes ``min F(x, y) s.t. (x, y) in C, z in Z, f(x, y) - v_gamma(x, y, z) <= 0``,
and LV-HBA takes, per iteration, one projected descent-ascent step on ``(theta, lam)`` and one
projected gradient step on ``phi_k = F / c_k + f - v_gamma`` in ``(x, y)`` (jointly onto the coupled
set C) and in ``z``, with ``c_k = c_bar (k + 1)^p``. Only gradients of F, f and products with the
Jacobian of g are used (no Hessians), so every iteration is elementwise work plus ``Proj_C``.

Unlike the authors' scripts (spec bilevel §4 flaws 11-16): the x-step is applied, z is updated
with its own direction and projected, lambda is projected onto ``Lambda``, the defaults converge on
the spec's toys, ``Proj_C`` is a closed form or a cached-factor projector (never a per-iteration
pseudo-inverse or QP solve), and the run stops on a stationarity measure with an honest status.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from .._backend import Backend, get_torch, infer_backend, is_torch
from .._errors import BackendError, InvalidProblemError
from .._logging import get_logger, verbosity, warn
from .._options import CommonOptions, option
from .._result import Status
from ..callbacks import IterInfo, call_callback
from ._model import Ops, _Base, scalar_or_array
from ._result import BatchedBilevelResult, BilevelResult
from .problem import BilevelProblem
from .sets import CSet, from_lower

__all__ = ["LVHBAOptions", "LVHBAState", "LVHBASolver", "lvhba", "PRESETS", "StabilityWarning"]

_log = get_logger("bilevel")


class StabilityWarning(UserWarning):
    """The (theta, lambda) descent-ascent step is above the spec's stability bound."""


#: settings of the authors' scripts (``paper-*``, documented as they are, including the LLC one that
#: diverges) and the converging settings of the spec's toys (``llc``, ``gaffa``)
PRESETS = {
    "paper-llc": dict(alpha=0.008, beta=0.02, eta=0.01, gamma1=10.0, gamma2=10.0, c_bar=0.025, p=0.3, lam0=1.0,
                      z0=-1.0, r=1000.0, max_iter=1500),
    "paper-llsc": dict(alpha=0.02, beta=0.001, eta=0.1, gamma1=1.0, gamma2=1.0, c_bar=1.0, p=0.3),
    "paper-svm": dict(alpha=0.01, eta=0.01, gamma1=10.0, gamma2=10.0, c_bar=1.0, p=0.5, lam0=1.0, z0=1.0),
    "llc": dict(alpha=5e-3, beta=5e-3, eta=5e-3, gamma1=1.0, gamma2=1.0, c_bar=1.0, p=0.49, lam0=1.0, z0=0.0,
                r=1000.0),
    "gaffa": dict(alpha=5e-3, beta=2e-3, eta=3e-2, gamma1=10.0, gamma2=1.0, c_bar=1.0, p=0.3, lam0=0.0, z0=0.0,
                  r=1.0),
}


@dataclasses.dataclass(frozen=True)
class LVHBAOptions(CommonOptions):
    """Options of ``method="lvhba"`` (spec bilevel §3.2; defaults are optkit's)."""

    tol: float = option(1e-6, kind="float", low=0.0, low_open=True,
                        doc="stop when R = ||w - w+||/alpha + ||z - z+||/beta and ||theta - theta+||/eta are <= tol")
    max_iter: int = option(20000, kind="int", low=0, doc="iterations")
    preset: str | None = option(None, kind="choice", choices=tuple(PRESETS), allow_none=True,
                                doc="named settings (explicit options override them); see PRESETS")
    gamma1: float = option(1.0, kind="float", low=0.0, low_open=True, doc="proximal weight of theta - y")
    gamma2: float = option(1.0, kind="float", low=0.0, low_open=True, doc="proximal weight of lam - z")
    eta: float = option(5e-3, kind="float", low=0.0, low_open=True, doc="step of the (theta, lam) descent-ascent")
    alpha: float = option(5e-3, kind="float", low=0.0, low_open=True, doc="step of (x, y)")
    beta: float = option(5e-3, kind="float", low=0.0, low_open=True, doc="step of z")
    c_bar: float = option(1.0, kind="float", low=0.0, low_open=True, doc="c_k = c_bar (k + 1)^p")
    p: float = option(0.3, kind="float", low=0.0, low_open=True, high=1.0, doc="penalty growth exponent, in (0, 1/2)")
    r: float = option(10.0, kind="float", low=0.0, low_open=True,
                      doc="multiplier box: [0, r] per inequality, [-r, r] per equality")
    lam0: Any = option(0.0, kind="any", doc="initial lambda (scalar or (m,))")
    z0: Any = option(0.0, kind="any", doc="initial z (scalar or (m,))")
    theta0: Any = option(None, kind="any", allow_none=True, doc="initial theta (default y0)")
    gap_tol: float = option(1e-6, kind="float", low=0.0, low_open=True, doc="|value gap| test of CONVERGED")
    check_every: int = option(50, kind="int", low=1, doc="iterations between checks (one host sync)")
    stall_checks: int = option(20, kind="int", low=1,
                               doc="checks with R <= tol but gap > gap_tol before STALLED")
    stability_check: bool = option(True, kind="bool", doc="warn when eta exceeds the spec's stability bound")

    def __post_init__(self):
        super().__post_init__()
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidProblemError(f"LVHBAOptions: option '{f.name}' must be finite, got {v!r}")
        if self.p >= 1.0:
            raise InvalidProblemError(f"LVHBAOptions: option 'p' must be in (0, 1), got {self.p!r}")

    @classmethod
    def build(cls, **kwargs):
        preset = kwargs.get("preset")
        if preset is not None and preset in PRESETS:
            base = {k: v for k, v in PRESETS[preset].items() if k not in kwargs}
            kwargs = {**base, **kwargs}
        opts = cls.from_kwargs(**kwargs)
        if not (0.0 < opts.p < 0.5):
            warn(f"p = {opts.p} is outside (0, 1/2), where the theory holds", UserWarning)
        return opts


@dataclasses.dataclass
class LVHBAState:
    """LV-HBA iterate (leading batch dimension B; numpy B = 1); pass back to ``run`` to continue."""

    x: Any
    y: Any
    theta: Any
    lam: Any
    z: Any
    k: int = 0
    status: Any = None  # host int per instance: -1 running
    good_checks: Any = None
    stall: Any = None
    R: Any = None
    inner: Any = None
    gap: Any = None
    nfev: int = 0
    t_start: float = 0.0


class LVHBASolver:
    """init / step / run of LV-HBA on a :class:`BilevelProblem`."""

    def __init__(self, problem: BilevelProblem, *, device=None, dtype=None, **options):
        if not isinstance(problem, BilevelProblem):
            raise InvalidProblemError(f"problem: expected a BilevelProblem, got {type(problem).__name__}")
        self.problem = problem
        self.opts = LVHBAOptions.build(**options)
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
                raise BackendError(f"dtype: {be.dtype} is not supported; use float32 or float64")
        else:
            be = Backend("numpy", None, np.dtype("float64"))
        self.be, self.ops = be, Ops(be)
        self.model = _Base(p, be, self.ops)
        X = self.ops.coerce(np.zeros(p.n_x) if x0 is None else x0, p.n_x, "x0")
        self.batched = be.is_torch and X.ndim == 2
        X = X if X.ndim == 2 else X[None]
        self.B = X.shape[0]
        Y = self.ops.coerce(np.zeros(p.n_y) if y0 is None else y0, p.n_y, "y0")
        Y = Y if Y.ndim == 2 else Y[None]
        if Y.shape[0] != self.B:
            raise InvalidProblemError(f"y0: batch size {Y.shape[0]} does not match x0's {self.B}")
        self.proj_C = self._resolve_proj_C()
        m = p.m
        eq = p.eq_mask if p.eq_mask is not None else np.zeros(m, bool)
        self.lam_lo = self.ops.arr(np.where(eq, -o.r, 0.0))
        self.lam_hi = self.ops.arr(np.full(m, o.r))
        return X, Y


    def _resolve_proj_C(self):
        p = self.problem
        if p.proj_C is not None:
            return p.proj_C
        if p.m == 0:
            return None  # C = X x Y
        auto = from_lower(p) if p.lower is not None else None
        if auto is None:
            raise InvalidProblemError("proj_C: LV-HBA needs the projection onto C = {(x, y): g(x, y) <= 0} "
                                      "(give proj_C, e.g. an optkit.bilevel.sets object, or an affine LowerQP/LowerLP)")
        return auto

    def _vec(self, v, m, name):
        a = self.ops.arr(np.broadcast_to(np.asarray(self.ops.host(v) if is_torch(v) else v, float), (m,)).copy())
        if not bool(self.ops.host(self.ops.isfinite(a)).all()):
            raise InvalidProblemError(f"{name}: contains NaN or inf")
        return a[None].repeat(self.B, 1) if self.be.is_torch else np.repeat(a[None], self.B, 0)

    # ------------------------------------------------------------------ projections
    def _proj_C(self, X, Y):
        P = self.proj_C
        if P is None:
            return self.ops.project(self.problem.X, X), self.ops.project(self.problem.Y, Y)
        if isinstance(P, CSet):  # batched over the leading dimension
            return P.project(X, Y)
        xs, ys = [], []
        for i in range(X.shape[0]):
            xi, yi = P(X[i], Y[i])
            xs.append(self.ops.arr(xi))
            ys.append(self.ops.arr(yi))
        return self.ops.stack(xs), self.ops.stack(ys)

    def _clip_lam(self, L):
        if self.be.is_torch:
            return self.ops.torch.minimum(self.ops.torch.maximum(L, self.lam_lo), self.lam_hi)
        return np.clip(L, self.lam_lo, self.lam_hi)

    # ------------------------------------------------------------------ public loop
    def init(self, x0=None, y0=None) -> LVHBAState:
        o, ops, model, p = self.opts, None, None, self.problem
        t_start = time.perf_counter()
        X, Y = self._setup(x0, y0)
        ops, model = self.ops, self.model
        self._check_start(X, Y)
        X, Y = self._proj_C(X, Y)
        if p.m:
            g = ops.host(model.g_user(X, Y))
            eqm = p.eq_mask if p.eq_mask is not None else np.zeros(p.m, bool)
            viol = np.where(eqm, np.abs(g), np.maximum(g, 0.0)).max()
            if viol > 1e-8 * max(1.0, float(np.abs(g).max())):
                raise InvalidProblemError(f"proj_C: the projection of (x0, y0) violates g by {viol:.3g} "
                                          "(proj_C must map onto C = {g(x, y) <= 0})")
        if o.theta0 is None:
            theta = self.ops.project(p.Y, Y.clone() if self.be.is_torch else Y.copy())
        else:
            th0 = self.ops.coerce(o.theta0, p.n_y, "theta0").reshape(-1, p.n_y)
            th0 = th0.repeat(self.B, 1) if self.be.is_torch else np.repeat(th0, self.B, 0)
            theta = self.ops.project(p.Y, th0)
        lam = self._clip_lam(self._vec(o.lam0, p.m, "lam0"))
        z = self._clip_lam(self._vec(o.z0, p.m, "z0"))
        if o.stability_check:
            self._stability(X, Y)
        B = self.B
        return LVHBAState(x=X, y=Y, theta=theta, lam=lam, z=z, k=0, status=np.full(B, -1),
                          good_checks=np.zeros(B, int), stall=np.zeros(B, int), R=np.full(B, np.inf),
                          inner=np.full(B, np.inf), gap=np.full(B, np.nan), t_start=t_start)

    def _check_start(self, X, Y):
        ops, model, p = self.ops, self.model, self.problem
        for name, fn in (("F", model.F), ("f", model.f)):
            try:
                v = fn(X, Y)
            except InvalidProblemError:
                raise
            except Exception as exc:
                raise InvalidProblemError(f"{name}: evaluation failed at (x0, y0): {type(exc).__name__}: {exc}") from None
            if tuple(v.shape) != (X.shape[0],):
                raise InvalidProblemError(f"{name}: expected a scalar, got shape {tuple(v.shape)[1:]}")
            if not bool(ops.host(ops.isfinite(v)).all()):
                raise InvalidProblemError(f"{name}: not finite at (x0, y0)")
        if p.m:
            g = model.g_user(X, Y)
            if tuple(g.shape) != (X.shape[0], p.m):
                raise InvalidProblemError(f"g: expected shape ({p.m},), got {tuple(g.shape)[1:]}")
            if not bool(ops.host(ops.isfinite(g)).all()):
                raise InvalidProblemError("g: returned NaN or inf at (x0, y0)")

    def _stability(self, X, Y):
        """Spec §9.9: warn when eta > 2 mu / L^2 (||J_theta g|| and L_f by 10 power iterations)."""
        o, ops, model, p = self.opts, self.ops, self.model, self.problem
        x, y = X[:1], Y[:1]
        rng = np.random.default_rng(0)
        h = 1e-6 * max(1.0, float(np.abs(ops.host(y)).max()))

        def hvp(v):
            return (model.grad_f(x, y + h * v)[1] - model.grad_f(x, y - h * v)[1]) / (2 * h)

        def power(apply, n):
            v = ops.arr(rng.standard_normal((1, n)))
            lam = 0.0
            for _ in range(10):
                nv = float(ops.host(ops.norm(v))[0])
                if nv == 0:
                    return 0.0
                v = v / nv
                w = apply(v)
                lam = float(ops.host(ops.norm(w))[0])
                v = w
            return lam

        try:
            L_f = power(hvp, p.n_y)
            J = 0.0
            if p.m:
                def jtj(v):
                    Jv = (model.g_user(x, y + h * v) - model.g_user(x, y - h * v)) / (2 * h)
                    return model.vjp_g(x, y, Jv)[1]
                J = math.sqrt(max(power(jtj, p.n_y), 0.0))
        except Exception:  # the estimate is advisory; a failing oracle surfaces in the run itself
            return
        mu = min(1.0 / o.gamma1, 1.0 / o.gamma2)
        L = max(L_f + 1.0 / o.gamma1, 1.0 / o.gamma2) + J
        bound = 2 * mu / L**2
        self.stability = dict(L_f=L_f, J_norm=J, mu=mu, L=L, eta_bound=bound)
        if o.eta > bound:
            warn(f"eta = {o.eta:g} exceeds the descent-ascent stability bound 2 mu / L^2 = {bound:.3g} "
                 f"(||J_theta g|| ~ {J:.3g}, L_f ~ {L_f:.3g}); the (theta, lambda) iteration may diverge",
                 StabilityWarning)

    def step(self, st: LVHBAState, measure: bool = False) -> LVHBAState:
        """One LV-HBA iteration (spec §3.2, the code's order); with ``measure`` the residuals too."""
        o, ops, model, p = self.opts, self.ops, self.model, self.problem
        X, Y, Th, Lam, Z = st.x, st.y, st.theta, st.lam, st.z
        ck = o.c_bar * (st.k + 1) ** o.p
        _, gfy_th = model.grad_f(X, Th)
        if p.m:
            g_th = model.g_user(X, Th)
            _, jy = model.vjp_g(X, Th, Lam)
            d_th = gfy_th + jy + (Th - Y) / o.gamma1
            d_lam = -g_th + (Lam - Z) / o.gamma2
            Lam_n = self._clip_lam(Lam - o.eta * d_lam)
        else:
            d_th = gfy_th + (Th - Y) / o.gamma1
            Lam_n = Lam
        Th_n = self.ops.project(p.Y, Th - o.eta * d_th)
        gFx, gFy = model.grad_F(X, Y)
        gfx, gfy = model.grad_f(X, Y)
        gfx_th, _ = model.grad_f(X, Th_n)
        d_x = gFx / ck + gfx - gfx_th
        if p.m:
            jx, _ = model.vjp_g(X, Th_n, Lam_n)
            d_x = d_x - jx
        d_y = gFy / ck + gfy - (Y - Th_n) / o.gamma1
        Xc, Yc = X - o.alpha * d_x, Y - o.alpha * d_y
        try:
            X_n, Y_n = self._proj_C(Xc, Yc)
        except InvalidProblemError:
            # a diverging instance (NaN/inf) stops with NUMERICAL_ERROR at its last finite iterate
            bad = ~(ops.host(ops.isfinite(Xc).all(-1)) & ops.host(ops.isfinite(Yc).all(-1)))
            if not bad.any():
                raise
            st.status = np.where(bad & (st.status == -1), int(Status.NUMERICAL_ERROR), st.status)
            keep = ops.mask(bad)
            X_n, Y_n = self._proj_C(ops.where(keep, X, Xc), ops.where(keep, Y, Yc))
        Z_n = self._clip_lam(Z + o.beta * (Lam_n - Z) / o.gamma2) if p.m else Z
        st.nfev += 1
        if measure:
            R = ops.host(ops.norm(X - X_n) ** 2 + ops.norm(Y - Y_n) ** 2) ** 0.5 / o.alpha
            if p.m:
                R = R + ops.host(ops.norm(Z - Z_n)) / o.beta
            st.R = R
            st.inner = ops.host(ops.norm(Th - Th_n)) / o.eta
        run = ops.mask(st.status == -1)
        st.x = ops.where(run, X_n, X)
        st.y = ops.where(run, Y_n, Y)
        st.theta = ops.where(run, Th_n, Th)
        if p.m:
            st.lam = ops.where(run, Lam_n, Lam)
            st.z = ops.where(run, Z_n, Z)
        st.k += 1
        return st

    def value_gap(self, st):
        """``f(x, y) - [f(x, theta) + lam^T g(x, theta) + ||theta - y||^2/(2 g1) - ||lam - z||^2/(2 g2)]``."""
        o, ops, model, p = self.opts, self.ops, self.model, self.problem
        inner = ops.host(model.f(st.x, st.theta)) + ops.host(ops.norm(st.theta - st.y) ** 2) / (2 * o.gamma1)
        if p.m:
            inner = inner + ops.host(ops.dot(st.lam, model.g_user(st.x, st.theta))) \
                - ops.host(ops.norm(st.lam - st.z) ** 2) / (2 * o.gamma2)
        return ops.host(model.f(st.x, st.y)) - inner

    def _check(self, st):
        o = self.opts
        st.gap = self.value_gap(st)
        run = st.status == -1
        small = (st.R <= o.tol) & (st.inner <= o.tol)
        ok = small & (np.abs(st.gap) <= o.gap_tol)
        st.good_checks = np.where(ok, st.good_checks + 1, 0)
        st.stall = np.where(small & (st.gap > o.gap_tol), st.stall + 1, 0)
        nonfin = ~(np.isfinite(st.R) & np.isfinite(st.gap))
        st.status = np.where(run & nonfin, int(Status.NUMERICAL_ERROR), st.status)
        st.status = np.where(run & ~nonfin & (st.good_checks >= 2), int(Status.CONVERGED), st.status)
        st.status = np.where(run & ~nonfin & (st.stall >= o.stall_checks), int(Status.STALLED), st.status)

    def run(self, state: LVHBAState | None = None, x0=None, y0=None) -> BilevelResult:
        o = self.opts
        with verbosity(o.verbose):
            st = self.init(x0, y0) if state is None else state
            t_begin = time.perf_counter()
            history = [] if o.record_history else None
            stop = None
            last_good = None
            while True:
                if (st.status != -1).all():
                    break
                if st.k >= o.max_iter:
                    stop = Status.MAX_ITER
                    break
                if o.time_limit is not None and time.perf_counter() - t_begin >= o.time_limit:
                    stop = Status.TIME_LIMIT
                    break
                measure = (st.k + 1) % o.check_every == 0 or st.k + 1 >= o.max_iter
                self.step(st, measure=measure)
                if not measure:
                    continue
                self._check(st)
                if (st.status == int(Status.NUMERICAL_ERROR)).any() and last_good is not None:
                    self._restore_finite(st, last_good)
                last_good = self._snapshot(st)
                elapsed = time.perf_counter() - t_begin
                Fv = scalar_or_array(self.ops.host(self.model.F(st.x, st.y)))
                if history is not None:
                    history.append(dict(time=elapsed, F=Fv, residual=scalar_or_array(st.R),
                                        inner=scalar_or_array(st.inner), value_gap=scalar_or_array(st.gap), nit=st.k))
                if o.verbose >= 2:
                    _log.info("%7d %14.7e %11.3e %11.3e %11.3e", st.k, float(np.mean(Fv)), float(np.max(st.R)),
                              float(np.max(st.inner)), float(np.max(np.abs(st.gap))))
                info = IterInfo(nit=st.k, fun=Fv, x=st.x if self.batched else st.x[0], residual=scalar_or_array(st.R),
                                elapsed=elapsed, extra=dict(value_gap=scalar_or_array(st.gap)))
                if call_callback(o.callback, info):
                    stop = Status.CALLBACK_STOP
                    break
            wall = time.perf_counter() - (st.t_start if state is None else t_begin)
            return self._result(st, stop, history, wall)

    def _snapshot(self, st):
        c = (lambda v: v.clone()) if self.be.is_torch else (lambda v: v.copy())
        return dict(x=c(st.x), y=c(st.y), theta=c(st.theta), lam=c(st.lam), z=c(st.z))

    def _restore_finite(self, st, snap):
        bad = self.ops.mask(st.status == int(Status.NUMERICAL_ERROR))
        for k, v in snap.items():
            setattr(st, k, self.ops.where(bad, v, getattr(st, k)))

    # ------------------------------------------------------------------ result
    def _result(self, st, stop, history, wall):
        p, ops, model, o = self.problem, self.ops, self.model, self.opts
        codes = st.status.copy()
        if stop is not None:
            codes[codes == -1] = int(stop)
        gap = self.value_gap(st) if st.k else np.full(self.B, np.nan)
        fun = ops.host(model.F(st.x, st.y))
        if p.m:
            g = ops.host(model.g_user(st.x, st.y))
            eqm = p.eq_mask if p.eq_mask is not None else np.zeros(p.m, bool)
            viol = np.where(eqm[None], np.abs(g), np.maximum(g, 0.0)).max(-1)
            lam_h, z_h = ops.host(st.lam), ops.host(st.z)
            lo, hi = ops.host(self.lam_lo), ops.host(self.lam_hi)
            tol_b = 1e-9 * o.r
            at_bound = ((np.abs(lam_h - hi) <= tol_b) | ((np.abs(lam_h - lo) <= tol_b) & (lo < 0))
                        | (np.abs(z_h - hi) <= tol_b) | ((np.abs(z_h - lo) <= tol_b) & (lo < 0))).any(-1)
        else:
            viol, at_bound = np.zeros(self.B), np.zeros(self.B, bool)
        fres, yres, llgap = (None, None, None)
        if self._resolve:
            fres, yres, llgap = _resolve_lvhba(self, st)
        msgs = []
        for i, c in enumerate(codes):
            m = {int(Status.CONVERGED): f"R = {st.R[i]:.3g}, value gap {gap[i]:.3g}",
                 int(Status.STALLED): (f"stationary point of the penalised problem with value-function gap "
                                       f"{gap[i]:.3g} > gap_tol (y is not lower-level optimal)"),
                 int(Status.NUMERICAL_ERROR): "non-finite iterate; last finite check returned"}.get(int(c), "")
            if at_bound[i]:
                m = (m + "; " if m else "") + f"lambda or z at the multiplier box bound r = {o.r:g}"
            msgs.append(m)
        extra = dict(lambda_at_bound=[bool(b) for b in at_bound], inner_residual=scalar_or_array(st.inner),
                     c_k=o.c_bar * max(st.k, 1) ** o.p, stability=getattr(self, "stability", None),
                     projector_residual=getattr(self.proj_C, "last_residual", None))
        common = dict(nit=st.k, nfev=st.nfev, n_ll_iter=st.k, wall_time=wall, history=history, backend=self.be.name,
                      device=self.be.device_str if self.be.is_torch else "cpu",
                      dtype=str(self.be.dtype).replace("torch.", ""), options=o, extra=extra)
        out = (lambda v: v.detach()) if self.be.is_torch else (lambda v: np.array(v, dtype=float))
        if self.batched:
            torch = ops.torch
            dev = self.be.device
            T = (lambda v: torch.as_tensor(np.asarray(v, float), device=dev))
            return BatchedBilevelResult(
                x=out(st.x), y=out(st.y), theta=out(st.theta), z=out(st.z), multipliers=out(st.lam), fun=T(fun),
                statuses=torch.as_tensor(codes, device=dev), kkt_residual=T(st.R), constraint_violation=T(viol),
                value_gap=T(gap), fun_resolved=None if fres is None else T(fres),
                y_resolved=None if yres is None else out(ops.arr(yres)), ll_gap=None if llgap is None else T(llgap),
                message="; ".join(sorted({m for m in msgs if m})[:3]), **common)
        return BilevelResult(
            x=out(st.x[0]), y=out(st.y[0]), theta=out(st.theta[0]), z=out(st.z[0]), multipliers=out(st.lam[0]),
            fun=float(fun[0]), status=Status(int(codes[0])), message=msgs[0], kkt_residual=float(st.R[0]),
            constraint_violation=float(viol[0]), value_gap=float(gap[0]),
            fun_resolved=None if fres is None else float(fres[0]),
            y_resolved=None if yres is None else out(ops.arr(yres[0])),
            ll_gap=None if llgap is None else float(llgap[0]), **common)

    _resolve = True



def _resolve_lvhba(solver, st):
    """``F(x, y*(x))`` with the exact lower-level solver (structured lower levels or lower_solver)."""
    from ._model import StructuredModel
    from .barrier import exact_lower

    p, ops = solver.problem, solver.ops
    if p.lower_solver is not None:  # no per-x data assembly (dense Q at large n)
        X, Y = st.x, st.y
        ys = []
        for i in range(X.shape[0]):
            out = p.lower_solver(X[i], *solver.model.params)
            y = out[0] if isinstance(out, tuple) else out
            ys.append(ops.host(ops.arr(ops.host(y) if is_torch(y) else np.asarray(y, float))))
        Ys = ops.arr(np.stack(ys))
        return (ops.host(solver.model.F(X, Ys)), np.stack(ys),
                ops.host(solver.model.f(X, Y)) - ops.host(solver.model.f(X, Ys)))
    if p.lower is None:
        return None, None, None
    if p.has_equalities and p.lower_solver is None:
        return None, None, None
    model = StructuredModel(p, Backend("numpy", None, np.dtype("float64")), Ops(Backend("numpy", None, np.dtype("float64")))) \
        if p.lower is not None else solver.model
    X = ops.host(st.x)
    ctx = model.at(X) if p.lower is not None else None
    ys = []
    for i in range(X.shape[0]):
        try:
            y = exact_lower(p, model, model.ops, ctx, X, i)
        except Exception:  # the reference is reported, never required
            y = None
        if y is None:
            return None, None, None
        ys.append(np.asarray(y, float))
    Ys = np.stack(ys)
    Fr = model.F(X, Ys)
    gap = model.f(X, ops.host(st.y)) - model.f(X, Ys)
    return Fr, Ys, gap


def lvhba(problem: BilevelProblem, *, x0=None, y0=None, device=None, dtype=None, resolve_lower=True,
          **options) -> BilevelResult:
    """LV-HBA (see :func:`optkit.bilevel.solve` with ``method="lvhba"``)."""
    solver = LVHBASolver(problem, device=device, dtype=dtype, **options)
    solver._resolve = bool(resolve_lower)
    return solver.run(x0=x0, y0=y0)
