"""REDEEM: maximum-likelihood CSI recovery from quantized feedback by ADMM + EM + 2-D harmonic retrieval
(spec mimo §3.1-§3.5).

    min_u f(u) = -sum_i log P(w_i in cell_i),  w ~ N(A u, Sigma)   s.t.  U_c = A_r(w_r) diag(beta) A_t(w_t)^T

u = s vec_real(H) is in quantizer-scaled units (so are ``tol`` and ``rho``). ADMM splits U (likelihood) and
R (K-path structure): R <- HR_K(U - Lambda / rho); u <- argmin f(u) + (rho/2)||u - r - lambda / rho||^2 by
accelerated EM (MM) or Newton; Lambda += rho (R - U).

The u-step runs in measurement space [derived]: every MM iterate has the form u = (A^T c + v) / rho with
v = lambda + rho r, so with G = A A^T formed once, an EM iteration costs O(R^2) (a Gram product and a
Woodbury solve with K = rho I + D G D) instead of O(R n); only the final u needs one A^T product.

One batched implementation serves numpy (one user or a batch) and torch (many users on a GPU): users are
the leading axis, each has its own sigma, rho, status and stopping; finished users are frozen.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
from typing import Any

import numpy as np
import scipy.special

from .._errors import InvalidProblemError
from .._logging import get_logger, warn
from .._options import Options, option
from .._result import BatchedResult, Result, Status
from ..callbacks import IterInfo, call_callback
from . import _xp
from .channels import unvec_real, vec_real
from .feedback import Feedback, feedback_to

__all__ = ["REDEEM", "dequantize", "REDEEMOptions", "REDEEMState", "MIMOResult", "BatchedMIMOResult", "recover", "MODES",
           "check_model_order"]

log = get_logger("mimo")

MODES = ("stable", "reference", "fast")
_BER_WARMUP = 10  # ADMM iterations on the plain likelihood before ber_model applies

#: mode defaults (spec §3.5); explicit options override them
_MODE_DEFAULTS = {
    "reference": dict(rho=1.0, max_iter=100, tol=1e-3, em_iter=60, em_tol=0.0, u_solver="em", phi_floor=1e-3,
                      hr_oversample=16, hr_max_sweeps=10, hr_tol=1e-3, hr_refine="pg-reference", hr_joint_ls=False,
                      hr_warm_start=False, hr_keep_best=False, keep_best=False, hr_mode="reference"),
    "stable": dict(rho=1.0, max_iter=100, tol=1e-3, em_iter=60, em_tol=1e-8, u_solver="em", phi_floor=0.0,
                   hr_oversample=16, hr_max_sweeps=10, hr_tol=1e-3, hr_refine="newton", hr_joint_ls=True,
                   hr_warm_start=False, hr_keep_best=True, keep_best=True, hr_mode="stable"),
    "fast": dict(rho=1.0, max_iter=100, tol=1e-3, em_iter=60, em_tol=1e-5, u_solver="em", phi_floor=0.0,
                 hr_oversample=4, hr_max_sweeps=3, hr_tol=1e-3, hr_refine="newton", hr_joint_ls=True,
                 hr_warm_start=True, hr_keep_best=True, keep_best=True, hr_mode="fast"),
}


@dataclasses.dataclass(frozen=True)
class REDEEMOptions(Options):
    """Options of :func:`recover` (``None`` = the mode's default, spec §3.5)."""

    mode: str = option("stable", kind="choice", choices=MODES,
                       doc="'stable' (exact likelihood), 'reference' (the authors' code), 'fast' (warm-started HR)")
    rho: float | None = option(None, kind="float", low=0.0, low_open=True, allow_none=True,
                               doc="ADMM penalty in quantizer-scaled units (default 1)")
    max_iter: int | None = option(None, kind="int", low=0, allow_none=True, doc="ADMM iterations (default 100)")
    tol: float | None = option(None, kind="float", low=0.0, low_open=True, allow_none=True,
                               doc="stop when ||U^{t+1} - U^t||_F < tol, scaled units (default 1e-3)")
    em_iter: int | None = option(None, kind="int", low=1, allow_none=True,
                                 doc="EM (or Newton) iterations per u-step (default 60)")
    em_tol: float | None = option(None, kind="float", low=0.0, allow_none=True,
                                  doc="EM early stop ||u+ - u|| <= em_tol max(1, ||u||) (stable 1e-8, fast 1e-5)")
    u_solver: str | None = option(None, kind="choice", choices=("em", "newton", None), allow_none=True,
                                  doc="'em' (accelerated MM) or 'newton' (for small sigma)")
    sigma: Any = option("auto", kind="any",
                        doc="the likelihood's sigma: 'auto' (the mode's rule), 'from-snr', 'adaptive' (auto plus "
                            "the model-mismatch variance mean((A(U - R))^2), for channels that are not a few "
                            "paths) or a positive float (scaled units)")
    phi_floor: float | None = option(None, kind="float", low=0.0, allow_none=True,
                                     doc="floor of the Phi difference (reference 1e-3; 0: the stable kernel)")
    hr_oversample: int | None = option(None, kind="int", low=1, allow_none=True, doc="HR FFT oversampling")
    hr_max_sweeps: int | None = option(None, kind="int", low=1, allow_none=True, doc="HR cyclic sweeps")
    hr_tol: float | None = option(None, kind="float", low=0.0, allow_none=True, doc="HR sweep tolerance")
    hr_refine: str | None = option(None, kind="choice", choices=("newton", "pg-reference", None), allow_none=True,
                                   doc="HR frequency refinement")
    hr_joint_ls: bool | None = option(None, kind="bool", allow_none=True, doc="joint LS of the gains after HR")
    hr_warm_start: bool | None = option(None, kind="bool", allow_none=True,
                                        doc="warm-start HR from the previous paths (full RELAX at t <= 3, every 10)")
    hr_keep_best: bool | None = option(
        None, kind="bool", allow_none=True,
        doc="where RELAX runs from scratch and previous paths exist, also refine those paths and keep the fit "
            "with the lower residual (a better projection onto the K-path set; stable and fast: True)")
    keep_best: bool | None = option(
        None, kind="bool", allow_none=True,
        doc="return the structured iterate R with the lowest likelihood f(R) seen, not the last one (ADMM on the "
            "nonconvex K-path set can drift away from it under a model mismatch; stable and fast: True)")
    polish: bool = option(False, kind="bool", doc="Levenberg-Marquardt polish of the paths on the likelihood")
    rho_schedule: str = option("constant", kind="choice", choices=("constant", "residual-balancing"),
                               doc="'residual-balancing': rho x2 if ||R-U|| > 10 rho ||dU||, /2 in the opposite case")
    ber_model: float = option(0.0, kind="float", low=0.0, high=0.5,
                              doc="codeword substitution probability in the likelihood")
    time_limit: float | None = option(None, kind="float", low=0.0, low_open=True, allow_none=True,
                                      doc="wall-clock limit in seconds")
    check_every: int = option(5, kind="int", low=1, doc="torch: host syncs of the batch status every k iterations")
    batch_chunk: int | None = option(None, kind="int", low=1, allow_none=True,
                                     doc="users per HR call (caps FFT memory on a GPU)")
    verbose: int = option(0, kind="int", low=0, high=3, doc="0 silent ... 3 debug")
    callback: Any = option(None, kind="callable", allow_none=True,
                           doc="called after each iteration with an IterInfo; True or StopIteration stops")
    record_history: bool = option(False, kind="bool", doc="keep per-iteration records")

    def resolved(self) -> dict:
        """Concrete settings: the mode's defaults overridden by the options given."""
        out = dict(_MODE_DEFAULTS[self.mode])
        for k in list(out):
            v = getattr(self, k, None)
            if v is not None:
                out[k] = v
        return out


@dataclasses.dataclass(repr=False)
class MIMOResult(Result):
    """Outcome of :func:`recover` (spec §5.2).

    ``x`` = vec_real(H_hat); ``fun`` = f at H_hat (the stable kernel with the sigma used, even in reference
    mode); ``nll_unstructured`` = f at the unstructured iterate; ``constraint_violation`` =
    ||R - U||_F / max(1, ||U||_F); ``kkt_residual`` = ||grad of the last u-subproblem|| / max(1, rho ||u||).

    Attributes
    ----------
    H_hat : array (..., Nr, Nt)
        The K-path estimate R / s (physical units).
    H_unstructured : array
        The likelihood iterate U / s.
    paths : dict
        ``omega_r``, ``omega_t`` (..., K), ``beta`` (physical units), ``aoa``, ``aod`` (radians, NaN when
        the spatial frequency has no angle for half-wavelength spacing).
    n_hr_calls : int
    time_hr, time_u : float
        Seconds in harmonic retrieval and in u-steps.
    """

    H_hat: Any = None
    H_unstructured: Any = None
    paths: Any = None
    nll_unstructured: Any = None
    n_hr_calls: int = 0
    time_hr: float = 0.0
    time_u: float = 0.0


@dataclasses.dataclass(repr=False)
class BatchedMIMOResult(BatchedResult, MIMOResult):
    """Batched :class:`MIMOResult`: per-user fields are (B,) arrays, ``statuses`` per user."""


@dataclasses.dataclass
class REDEEMState:
    """Solver state (all batched on the leading axis); pass it back to :meth:`REDEEM.run` to warm-start.

    ``U`` (B, n) and ``Lam`` (B, n) scaled units, ``R`` (B, n) the structured iterate, ``omega`` (omega_r,
    omega_t), ``beta`` the paths of R, ``rho`` (B,), ``k`` iterations done, ``done``/``status`` per user.
    """

    U: Any
    Lam: Any
    R: Any
    omega: Any
    beta: Any
    rho: Any
    k: int
    done: Any
    status: Any
    mu: Any = None  # A U, cached for the EM warm start
    dU: Any = None
    hr_residual: Any = None
    hr_sweeps: Any = None
    em_iters: int = 0
    kkt: Any = None
    last_finite: Any = None
    best_f: Any = None  # (B,) lowest f(R) seen (keep_best)
    best: Any = None  # (R, omega_r, omega_t, beta) at best_f


def check_model_order(n_paths, n_r, n_t, R):
    """Identifiability checks of spec §9: errors for K < 1, K > Nr Nt / 4, R < 4K; warnings for
    4K <= R < 8K and K > min(Nr, Nt) / 2."""
    if isinstance(n_paths, bool) or not isinstance(n_paths, (int, np.integer)):
        raise InvalidProblemError(f"n_paths: must be an integer, got {n_paths!r}")
    K = int(n_paths)
    if K < 1:
        raise InvalidProblemError(f"n_paths: must be >= 1, got {K}")
    if 4 * K > n_r * n_t:
        raise InvalidProblemError(f"n_paths: K = {K} exceeds Nr Nt / 4 = {n_r * n_t / 4:g} (not identifiable)")
    if R < 4 * K:
        raise InvalidProblemError(f"n_paths: R = {R} measurements < 4K = {4 * K} real unknowns (not identifiable)")
    if R < 8 * K:
        warn(f"n_paths: R = {R} < 8K = {8 * K}: recovery is not generically unique", UserWarning)
    if K > min(n_r, n_t) / 2:
        warn(f"n_paths: K = {K} > min(Nr, Nt) / 2 = {min(n_r, n_t) / 2:g}: paths are hard to resolve", UserWarning)
    return K


def _check_feedback(fb):
    if not isinstance(fb, Feedback):
        raise InvalidProblemError(f"feedback: must be a Feedback (see optkit.mimo.feedback()), got {type(fb).__name__}")
    z = _xp.to_host(fb.z)
    top = 2 ** fb.bits
    if not (1 <= fb.bits <= 15):
        raise InvalidProblemError(f"feedback.bits: must be in 1..15, got {fb.bits}")
    if z.dtype.kind not in "iu":
        raise InvalidProblemError(f"feedback.z: codes must be integers, got dtype {z.dtype}")
    if np.any(z % 2 == 0) or np.any(np.abs(z) > top - 1):
        raise InvalidProblemError(f"feedback.z: codes must be odd integers in [{-top + 1}, {top - 1}]")
    op = fb.operator
    if op.R != z.shape[-1]:
        raise InvalidProblemError(f"feedback.operator: has R = {op.R} rows but len(z) = {z.shape[-1]}")
    op.check(fb.n_r, fb.n_t, z.shape[-1], None if z.ndim == 1 else z.shape[0], name="feedback.operator")
    data = _xp.to_host(op.data)
    if np.iscomplexobj(data):
        raise InvalidProblemError("feedback.operator: the measurement matrix must be real")
    for name in ("scale", "sigma", "sigma_nominal", "noise_var"):
        v = np.asarray(_xp.to_host(getattr(fb, name)), dtype=float)
        if not np.all(np.isfinite(v)):
            raise InvalidProblemError(f"feedback.{name}: contains NaN or inf")
        if name == "scale" and np.any(v <= 0):
            raise InvalidProblemError("feedback.scale: must be positive")
        if name != "scale" and np.any(v < 0):
            raise InvalidProblemError(f"feedback.{name}: must be >= 0")
    if not np.all(np.isfinite(data)):
        raise InvalidProblemError("feedback.operator: contains NaN or inf")


class _Woodbury:
    """Solves with K = rho I + diag(d) G diag(d) per user: one eigendecomposition of a shared G when d is
    constant per user (then K^{-1} = Q diag(1 / (rho + d^2 lambda)) Q^T for every rho and d), else a
    batched Cholesky that is refactored when rho changes."""

    def __init__(self, G, d, rho):
        self.G, self.d = G, d
        dh = _xp.to_host(d)
        self.shared_eig = G.ndim == 2 and bool((dh.max(-1) - dh.min(-1) <= 1e-15 * dh.max(-1)).all())
        if self.shared_eig:
            self.lam, self.Q = _xp.eigh(G)
            self.lam = self.lam.clip(0.0) if _xp.is_torch(self.lam) else np.clip(self.lam, 0.0, None)
        self.refactor(rho)

    def refactor(self, rho):
        self.rho = rho
        if self.shared_eig:
            self.inv_diag = 1.0 / (rho[:, None] + self.d[:, :1] ** 2 * self.lam)
            return
        K = self.d[..., :, None] * self.G * self.d[..., None, :]
        self.L = _xp.cholesky(K + rho[:, None, None] * _xp.eye(K, K.shape[-1]))

    def solve(self, x):
        """K^{-1} x for x (B, R)."""
        if self.shared_eig:
            return ((x @ self.Q) * self.inv_diag) @ self.Q.T if not _xp.is_torch(x) else \
                ((x @ self.Q) * self.inv_diag) @ self.Q.transpose(-1, -2)
        return _xp.cho_solve(self.L, x[..., None])[..., 0]


def _gmul(G, c):
    """G c for a shared (R, R) or per-user (B, R, R) Gram matrix and c (B, R)."""
    return c @ G if G.ndim == 2 else (G @ c[..., None])[..., 0]  # G symmetric


def _norm(x, axis=-1):
    return (x * x).sum(axis) ** 0.5


class REDEEM:
    """ADMM + EM + HR solver for one :class:`Feedback` (a single user or a batch).

    ``init(x0, y0, paths0)`` builds a :class:`REDEEMState`; ``step(state)`` does one ADMM iteration;
    ``run(state=None)`` iterates to a stopping rule and returns a :class:`MIMOResult` (or
    :class:`BatchedMIMOResult` for batched feedback).
    """

    def __init__(self, feedback, n_paths, *, device=None, dtype=None, **options):
        _check_feedback(feedback)
        self.options = REDEEMOptions.from_kwargs(**options)
        o = self.options.resolved()
        self.cfg = o
        fb = feedback
        if device is not None:
            torch = _xp.get_torch()
            like = torch.zeros((), device=device,
                               dtype=torch.float64 if dtype is None else getattr(torch, str(dtype).replace(
                                   "torch.", "")))
            fb = feedback_to(fb, like)
        elif _xp.is_torch(fb.lo) and dtype is not None:
            fb = feedback_to(fb, fb.lo.to(dtype))
        self.fb = fb
        self.n_r, self.n_t, self.R = fb.n_r, fb.n_t, fb.R
        self.K = check_model_order(n_paths, fb.n_r, fb.n_t, fb.R)
        self.single = fb.z.ndim == 1
        lo = fb.lo if not self.single else fb.lo[None]
        hi = fb.hi if not self.single else fb.hi[None]
        self.torch = _xp.is_torch(lo)
        # float32 feedback: the u-step may run in float32, paths and HR stay float64 (spec §8)
        self.lo, self.hi = lo, hi
        self.B = int(lo.shape[0])
        like = lo
        s = fb.scale
        self.s = _xp.asarray_like(np.full(self.B, s) if isinstance(s, float) else _xp.to_host(s).reshape(-1),
                                  like, dtype=like.dtype)
        self.op = fb.operator
        self._adaptive = isinstance(self.options.sigma, str) and self.options.sigma == "adaptive"
        self.sigma = self._sigma()
        self._sigma0 = self.sigma
        # the M-step's weights: exact 1/sigma; reference mode drops them (flaw 3, right only under the clamp)
        self.dM = 1.0 / self.sigma if self.options.mode != "reference" else self.sigma * 0 + 1.0
        self.G = self.op.gram()
        self._eps = self.options.ber_model

    # ------------------------------------------------------------------------------------------- sigma
    def _sigma(self):
        """The likelihood's sigma_i in scaled units (B, R), per the ``sigma`` option and the mode."""
        fb, like = self.fb, self.lo
        nv = _xp.asarray_like(_xp.to_host(fb.noise_var).reshape(self.B, self.R), like, dtype=like.dtype)

        def per_user(v):
            return _xp.asarray_like(np.full(self.B, v) if isinstance(v, float) else _xp.to_host(v).reshape(-1),
                                    like, dtype=like.dtype)
        sig_add = per_user(fb.sigma)
        sig_nom = per_user(fb.sigma_nominal)
        spec = self.options.sigma
        s = self.s[:, None]
        if isinstance(spec, str):
            if spec in ("auto", "adaptive"):
                if self.options.mode == "reference":
                    # flaw 2 reproduced: clamp to half a quantization step, dither added or not
                    sig = s * (sig_nom[:, None] ** 2 + nv) ** 0.5
                    sig = sig.clip(min=1.0) if self.torch else np.maximum(sig, 1.0)
                else:
                    sig = s * (sig_add[:, None] ** 2 + nv) ** 0.5
                    sig = _xp.where(sig > 0, sig, sig * 0 + 1.0)
            elif spec == "from-snr":
                mid = fb.midpoints().reshape(self.B, self.R)
                snr = 10 ** (fb.meta.get("dither_snr_db", 30.0) / 10)
                est = np.linalg.norm(mid, axis=-1) / math.sqrt(self.R * snr)
                est = _xp.asarray_like(est, like, dtype=like.dtype)
                sig = s * (est[:, None] ** 2 + nv) ** 0.5
            else:
                raise InvalidProblemError(
                    f"sigma: must be 'auto', 'adaptive', 'from-snr' or a positive float, got {spec!r}")
        else:
            if isinstance(spec, bool) or not isinstance(spec, (int, float)) or not math.isfinite(spec) or spec <= 0:
                raise InvalidProblemError(f"sigma: must be 'auto', 'from-snr' or a positive float, got {spec!r}")
            sig = nv * 0 + float(spec)
        return sig + nv * 0  # (B, R)

    # ------------------------------------------------------------------------------------------- pieces
    def _estep(self, mu):
        """(nll per user, w_hat, kkt-e) at mu (B, R) with the mode's kernel."""
        from .kernels import naive_moments, truncnorm_moments

        sig = self.sigma
        if self.cfg["phi_floor"] > 0:
            logp, mean, _ = naive_moments(mu, self.lo, self.hi, sig, phi_floor=self.cfg["phi_floor"])
        else:
            logp, mean, _ = truncnorm_moments(mu, self.lo, self.hi, sig)
        eps = self._eps
        if eps > 0:
            # mixture with a uniformly random codeword: w_hat' = mu + pi (w_hat - mu), pi the posterior
            # weight of the true cell
            lu = math.log(eps / 2 ** self.fb.bits) - math.log1p(-eps)
            x = logp - lu
            pi = _xp.get_torch().sigmoid(x) if self.torch else scipy.special.expit(x)
            mean = mu + pi * (mean - mu)
            logp = math.log1p(-eps) + (_lae(logp, lu))
        return -logp.sum(-1), mean

    def nll(self, mu, eps=None):
        """f at mu (B, R) with the stable kernel and the sigma used (what ``fun`` reports)."""
        from .kernels import truncnorm_moments

        logp, _, _ = truncnorm_moments(mu, self.lo, self.hi, self.sigma)
        eps = self.options.ber_model if eps is None else eps
        if eps > 0:
            lu = math.log(eps / 2 ** self.fb.bits) - math.log1p(-eps)
            logp = math.log1p(-eps) + _lae(logp, lu)
        return -logp.sum(-1)

    def _matvec(self, h):
        return self.op.matvec(h)

    def u_step(self, u0, mu0, v, rho, wood):
        """Accelerated EM (or Newton) on f(u) + (rho/2)||u - v/rho||^2 from u0 (mu0 = A u0); returns
        (u, mu, n_iter, kkt)."""
        G = self.G
        Av = self._matvec(v)
        wt = self.dM ** 2
        r = rho[:, None]
        d = self.dM

        def mm(w_hat):
            a = wt * w_hat
            Ga = _gmul(G, a)
            c = a - d * wood.solve(d * (Ga + Av))
            Gc = _gmul(G, c)
            return c, Gc

        _, w = self._estep(mu0)
        c, Gc = mm(w)
        mu = (Gc + Av) / r
        n_it = 1
        em_iter, em_tol = self.cfg["em_iter"], self.cfg["em_tol"]
        if self.cfg["u_solver"] == "newton":
            c, Gc, mu, n_it = self._newton(c, Gc, Av, v, rho, em_iter, em_tol, n_it)
        else:
            tau = 1.0
            c_prev, Gc_prev = c, Gc
            yGc = Gc
            active = None
            while n_it < em_iter:
                _, w = self._estep((yGc + Av) / r)
                c_new, Gc_new = mm(w)
                tau_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tau * tau))
                beta = (tau - 1.0) / tau_new
                tau = tau_new
                n_it += 1
                dc = c_new - c_prev
                step = (dc * (Gc_new - Gc_prev)).sum(-1).clip(0) ** 0.5 if self.torch else \
                    np.sqrt(np.maximum((dc * (Gc_new - Gc_prev)).sum(-1), 0.0))
                if active is not None:  # users already stopped keep their iterate
                    c_new = _xp.where(active[:, None], c_new, c_prev)
                    Gc_new = _xp.where(active[:, None], Gc_new, Gc_prev)
                yGc = Gc_new + beta * (Gc_new - Gc_prev)
                c_prev, Gc_prev = c_new, Gc_new
                if em_tol > 0:
                    unorm = self._unorm(c_new, Gc_new, Av, v, rho)
                    still = step / rho > em_tol * (unorm.clip(min=1.0) if self.torch else np.maximum(unorm, 1.0))
                    active = still if active is None else (active & still)
                    if not _xp.sync_any(active):
                        break
            c, Gc = c_prev, Gc_prev
            mu = (Gc + Av) / r
        u = (self.op.rmatvec(c) + v) / r
        # relative gradient of the u-subproblem: g = A^T (e + c), e = -Sigma^-1 (w_hat - mu)
        _, w = self._estep(mu)
        z = -(w - mu) / self.sigma ** 2 + c
        g = (z * _gmul(G, z)).sum(-1)
        g = (g.clip(min=0) if self.torch else np.maximum(g, 0.0)) ** 0.5
        un = _norm(u) * rho
        kkt = g / (un.clip(min=1.0) if self.torch else np.maximum(un, 1.0))
        return u, mu, n_it, kkt

    def _unorm(self, c, Gc, Av, v, rho):
        sq = (c * Gc).sum(-1) + 2 * (c * Av).sum(-1) + (v * v).sum(-1)
        return (sq.clip(min=0) if self.torch else np.maximum(sq, 0.0)) ** 0.5 / rho

    def _newton(self, c, Gc, Av, v, rho, em_iter, em_tol, n_it):
        """Damped Newton in measurement space: Hessian A^T D A + rho I (D = curvature weights)."""
        from .kernels import truncnorm_terms

        G, r = self.G, rho[:, None]
        sig = self.sigma

        def F(c, Gc):
            mu = (Gc + Av) / r
            return self.nll(mu, self._eps) + (c * Gc).sum(-1) / (2 * rho), mu

        Fc, mu = F(c, Gc)
        while n_it < em_iter:
            logp, r1, r2 = truncnorm_terms(mu, self.lo, self.hi, sig)
            mean = mu + sig * r1
            var = sig ** 2 * (1 + r2 - r1 * r1)
            D = ((1 - var / sig ** 2) / sig ** 2)
            D = D.clip(min=0) if self.torch else np.maximum(D, 0.0)
            z = -(mean - mu) / sig ** 2 + c
            Gz = _gmul(G, z)
            dd = D ** 0.5
            wood = _Woodbury(G, dd, rho)
            dc = -(z - dd * wood.solve(dd * Gz)) / r
            Gdc = _gmul(G, dc)
            slope = (z * Gdc).sum(-1)  # g^T du
            t = _xp.asarray_like(np.ones(self.B), c, dtype=c.dtype) if self.torch else np.ones(self.B)
            accepted = None
            for _ in range(30):
                c_try = c + t[:, None] * dc
                Gc_try = Gc + t[:, None] * Gdc
                F_try, mu_try = F(c_try, Gc_try)
                ok = F_try <= Fc + 1e-4 * t * slope
                accepted = ok if accepted is None else accepted
                if bool(ok.all()):
                    break
                t = _xp.where(ok, t, 0.5 * t)
            ok_final = F_try <= Fc + 1e-4 * t * slope
            c = _xp.where(ok_final[:, None], c_try, c)
            Gc = _xp.where(ok_final[:, None], Gc_try, Gc)
            Fc = _xp.where(ok_final, F_try, Fc)
            mu = (Gc + Av) / r
            n_it += 1
            sq = t * t * (dc * Gdc).sum(-1) / (rho * rho)  # ||du||^2 = ||A^T dc||^2 / rho^2
            step = (sq.clip(min=0) if self.torch else np.maximum(sq, 0.0)) ** 0.5
            unorm = self._unorm(c, Gc, Av, v, rho)
            lim = em_tol * (unorm.clip(min=1.0) if self.torch else np.maximum(unorm, 1.0))
            if not _xp.sync_any((step > lim) & ok_final):
                break
        return c, Gc, mu, n_it

    def hr(self, Y, paths, k):
        """Harmonic retrieval of the K-path matrix nearest to Y (B, Nr, Nt), per the mode."""
        from .harmonic import better_fit, harmonic_retrieval

        o = self.cfg
        kw = dict(mode=o["hr_mode"], oversample=o["hr_oversample"], max_sweeps=o["hr_max_sweeps"], tol=o["hr_tol"],
                  refine=o["hr_refine"], joint_ls=o["hr_joint_ls"])
        chunk = self.options.batch_chunk
        # fast mode: only the warm start, except a cold RELAX at t <= 3 and every 10 iterations
        warm_only = o["hr_warm_start"] and k > 3 and k % 10 != 0
        use_paths = paths is not None and (o["hr_warm_start"] and k > 3 or o["hr_keep_best"])

        def call(Yc, p0):
            if p0 is None:
                return harmonic_retrieval(Yc, self.K, **kw)
            res_w = harmonic_retrieval(Yc, self.K, paths0=p0, **kw)
            if warm_only:
                return res_w
            res_f = harmonic_retrieval(Yc, self.K, **kw)
            return better_fit(res_f, res_w) if o["hr_keep_best"] else res_f

        if chunk is None or chunk >= self.B:
            return call(Y, paths if use_paths else None)
        parts = []
        for i in range(0, self.B, chunk):
            p0 = None if not use_paths else tuple(p[i:i + chunk] for p in paths)
            parts.append(call(Y[i:i + chunk], p0))
        return _concat_hr(parts)

    # ------------------------------------------------------------------------------------------- driver
    def init(self, x0=None, y0=None, paths0=None) -> REDEEMState:
        """Start U = s vec_real(x0) (default 0), Lambda = y0 (scaled units, default 0), rho from the options."""
        like = self.lo
        n = 2 * self.n_r * self.n_t
        U = _xp.zeros(like, (self.B, n))
        if x0 is not None:
            X = self._coerce(x0, "x0")
            U = vec_real(X) * self.s[:, None]
        Lam = _xp.zeros(like, (self.B, n))
        if y0 is not None:
            Lam = self._coerce_vec(y0, "y0")
        rho = _xp.asarray_like(np.full(self.B, self.cfg["rho"]), like, dtype=like.dtype)
        omega = beta = None
        if paths0 is not None:
            omega, beta = self._coerce_paths(paths0)
        st = REDEEMState(U=U, Lam=Lam, R=U * 0, omega=omega, beta=beta, rho=rho, k=0,
                         done=_xp.asarray_like(np.zeros(self.B, bool), like, dtype=None),
                         status=np.full(self.B, int(Status.MAX_ITER)), mu=self._matvec(U))
        st.last_finite = (U, st.R)
        return st

    def _coerce(self, x0, name):
        X = x0
        if _xp.is_torch(X) != self.torch:
            raise InvalidProblemError(f"{name}: must be on the feedback's backend "
                                      f"({'torch' if self.torch else 'numpy'})")
        shape = tuple(X.shape)
        want = (self.n_r, self.n_t) if self.single else (self.B, self.n_r, self.n_t)
        if shape != want:
            raise InvalidProblemError(f"{name}: shape {shape}, expected {want}")
        if not np.all(np.isfinite(_xp.to_host(X))):
            raise InvalidProblemError(f"{name}: contains NaN or inf")
        if self.torch:
            X = X.to(device=self.lo.device, dtype=_xp.complex_dtype(self.lo))
        return X if not self.single else X[None]

    def _coerce_vec(self, y0, name):
        n = 2 * self.n_r * self.n_t
        shape = tuple(y0.shape)
        want = (n,) if self.single else (self.B, n)
        if shape != want:
            raise InvalidProblemError(f"{name}: shape {shape}, expected {want}")
        if not np.all(np.isfinite(_xp.to_host(y0))):
            raise InvalidProblemError(f"{name}: contains NaN or inf")
        y = _xp.asarray_like(_xp.to_host(y0), self.lo, dtype=self.lo.dtype)
        return y if not self.single else y[None]

    def _coerce_paths(self, paths0):
        try:
            wr, wt, b = paths0
        except (TypeError, ValueError):
            raise InvalidProblemError("paths0: must be (omega_r, omega_t, beta)") from None
        out = []
        for nm, a, cplx in (("omega_r", wr, False), ("omega_t", wt, False), ("beta", b, True)):
            a = np.asarray(_xp.to_host(a))
            a = a[None] if self.single else a
            if a.shape != (self.B, self.K):
                raise InvalidProblemError(f"paths0: {nm} has shape {a.shape}, expected {(self.B, self.K)}")
            if not np.all(np.isfinite(a)):
                raise InvalidProblemError(f"paths0: {nm} contains NaN or inf")
            dt = _xp.complex_dtype(self.lo) if cplx else self.lo.dtype
            if cplx:  # gains are given in physical units
                a = a * _xp.to_host(self.s)[:, None]
            out.append(_xp.asarray_like(a, self.lo, dtype=dt))
        return (out[0], out[1]), out[2]

    def step(self, st: REDEEMState) -> REDEEMState:
        """One ADMM iteration for the users not done (the others are frozen)."""
        t0 = time.perf_counter()
        # with codeword errors in the model, a poor start makes every far cell an outlier (pi ~ 0) and the
        # EM stays at 0: the first iterations use the plain likelihood
        self._eps = self.options.ber_model if st.k >= _BER_WARMUP else 0.0
        rho = st.rho
        r = rho[:, None]
        Y = unvec_real(st.U - st.Lam / r, self.n_r, self.n_t)
        paths = None if st.omega is None else (st.omega[0], st.omega[1], st.beta)
        res = self.hr(Y, paths, st.k)
        t1 = time.perf_counter()
        Rv = vec_real(res.H)
        Rv = Rv.to(st.U.dtype) if self.torch else Rv.astype(st.U.dtype, copy=False)
        v = st.Lam + r * Rv
        if self._adaptive:
            # model-mismatch variance: what the K-path fit leaves unexplained in the measurements
            mis = self._matvec(st.U - Rv) if st.k > 0 else self.lo * 0
            tau2 = (mis * mis).mean(-1, keepdims=True)
            self.sigma = (self._sigma0 ** 2 + tau2) ** 0.5
            self.dM = 1.0 / self.sigma
            self._wood_cache = None
        wood = self._wood(rho)
        u, mu, n_it, kkt = self.u_step(st.U, st.mu, v, rho, wood)
        t2 = time.perf_counter()
        Lam = st.Lam + r * (Rv - u)
        dU = _norm(u - st.U)
        keep = st.done
        upd = lambda new, old: _xp.where(keep[:, None], old, new)  # noqa: E731
        new = REDEEMState(U=upd(u, st.U), Lam=upd(Lam, st.Lam), R=upd(Rv, st.R),
                          omega=(_upd_p(keep, res.omega_r, st.omega, 0), _upd_p(keep, res.omega_t, st.omega, 1)),
                          beta=_xp.where(keep[:, None], st.beta, res.beta) if st.beta is not None else res.beta,
                          rho=rho, k=st.k + 1, done=st.done, status=st.status, mu=upd(mu, st.mu),
                          dU=_xp.where(keep, st.dU, dU) if st.dU is not None else dU,
                          hr_residual=res.residual, hr_sweeps=res.sweeps, em_iters=n_it, kkt=kkt,
                          last_finite=st.last_finite, best_f=st.best_f, best=st.best)
        if self.cfg["keep_best"]:
            self._track_best(new, keep)
        if self.options.rho_schedule == "residual-balancing":
            prim = _norm(Rv - u)
            up = prim > 10 * rho * dU
            down = rho * dU > 10 * prim
            new_rho = _xp.where(up, 2 * rho, _xp.where(down, 0.5 * rho, rho))
            new.rho = _xp.where(keep, rho, new_rho)
        self._times[0] += t1 - t0
        self._times[1] += t2 - t1
        return new

    def _track_best(self, st, frozen):
        """Remember, per user, the structured iterate with the lowest f(R) (one A-product and one kernel call)."""
        fR = self.nll(self._matvec(st.R))
        fR = _xp.where(fR == fR, fR, fR * 0 + math.inf)  # NaN never wins
        cur = (st.R, st.omega[0], st.omega[1], st.beta)
        if st.best_f is None:
            st.best_f, st.best = fR, cur
            return
        better = (fR < st.best_f) & ~frozen
        b1 = better[:, None]
        st.best = tuple(_xp.where(b1, c, b) for c, b in zip(cur, st.best))
        st.best_f = _xp.where(better, fR, st.best_f)

    def _wood(self, rho):
        key = _xp.to_host(rho).tobytes()
        if self._wood_cache is None or self._wood_cache[0] != key:
            if self._wood_cache is None:
                w = _Woodbury(self.G, self.dM, rho)
            else:
                w = self._wood_cache[1]
                w.refactor(rho)
            self._wood_cache = (key, w)
        return self._wood_cache[1]

    def run(self, state: REDEEMState | None = None, *, x0=None, y0=None, paths0=None):
        """Iterate until every user stops; returns a (Batched)MIMOResult."""
        o, opts = self.cfg, self.options
        st = state if state is not None else self.init(x0, y0, paths0)
        self._times = [0.0, 0.0]
        self._wood_cache = None
        t_start = time.perf_counter()
        history = [] if opts.record_history else None
        status = np.array(st.status, copy=True)
        done = _xp.to_host(st.done).copy()
        n_hr = 0
        nfev = 0
        sync_every = opts.check_every if self.torch else 1
        stop_reason = None
        tol = o["tol"]
        while True:
            if done.all():
                break
            if st.k >= o["max_iter"]:
                stop_reason = Status.MAX_ITER
                break
            if opts.time_limit is not None and time.perf_counter() - t_start >= opts.time_limit:
                stop_reason = Status.TIME_LIMIT
                break
            st = self.step(st)
            n_hr += 1
            nfev += st.em_iters
            if history is not None:
                history.append(self._record(st))
            if (st.k % sync_every == 0) or st.k >= o["max_iter"] or opts.callback is not None:
                dU = _xp.to_host(st.dU)
                finite = np.isfinite(_xp.to_host(st.U)).all(-1) & np.isfinite(_xp.to_host(st.R)).all(-1)
                newly_bad = ~finite & ~done
                status[newly_bad] = int(Status.NUMERICAL_ERROR)
                done = done | newly_bad
                conv = (dU < tol) & ~done
                status[conv] = int(Status.CONVERGED)
                done = done | conv
                # freeze the last finite iterate of each user
                fin = _xp.asarray_like(finite, st.U, dtype=None)
                st.last_finite = (_xp.where(fin[:, None], st.U, st.last_finite[0]),
                                  _xp.where(fin[:, None], st.R, st.last_finite[1]))
                st.done = _xp.asarray_like(done, st.U, dtype=None)
                if opts.verbose:
                    log.info("it %d: ||dU|| = %s, done %d/%d", st.k, np.array2string(dU[:4], precision=3),
                             int(done.sum()), self.B)
                if opts.callback is not None:
                    info = IterInfo(nit=st.k, fun=None, x=None, residual=float(np.max(dU)),
                                    elapsed=time.perf_counter() - t_start,
                                    extra=dict(hr_residual=_xp.to_host(st.hr_residual), em_iters=st.em_iters))
                    if call_callback(opts.callback, info):
                        stop_reason = Status.CALLBACK_STOP
                        break
        if stop_reason is not None:
            status[~done] = int(stop_reason)
        st.status = status
        self.state = st  # the ADMM iterate, to continue from; the result may report another R
        out = st
        if self.cfg["keep_best"] and st.best is not None:
            Rb, wrb, wtb, bb = st.best
            out = dataclasses.replace(st, R=Rb, omega=(wrb, wtb), beta=bb)
        if opts.polish and out.omega is not None:
            t0 = time.perf_counter()
            wr, wt, beta, _ = polish(self, out.omega[0], out.omega[1], out.beta)
            H, _ = _path_jacobian(self.n_r, self.n_t, wr, wt, beta)
            out = dataclasses.replace(out, omega=(wr, wt), beta=beta, R=vec_real(H))
            self._times[0] += time.perf_counter() - t0
        return self._result(out, status, n_hr, nfev, time.perf_counter() - t_start, history)

    def _record(self, st):
        fU = _xp.to_host(self.nll(st.mu))
        fR = _xp.to_host(self.nll(self._matvec(st.R)))
        return dict(nit=st.k, f_U=fU.tolist(), f_R=fR.tolist(), r_minus_u=_xp.to_host(_norm(st.R - st.U)).tolist(),
                    dU=_xp.to_host(st.dU).tolist(), hr_residual=_xp.to_host(st.hr_residual).tolist(),
                    hr_sweeps=_xp.to_host(st.hr_sweeps).tolist(), em_iters=st.em_iters,
                    rho=_xp.to_host(st.rho).tolist())

    def _result(self, st, status, n_hr, nfev, wall, history):
        bad = status == int(Status.NUMERICAL_ERROR)
        U, Rv = st.U, st.R
        if bad.any():
            m = _xp.asarray_like(bad, U, dtype=None)[:, None]
            U = _xp.where(m, st.last_finite[0], U)
            Rv = _xp.where(m, st.last_finite[1], Rv)
        s = self.s[:, None]
        H_hat = unvec_real(Rv / s, self.n_r, self.n_t)
        H_un = unvec_real(U / s, self.n_r, self.n_t)
        # H_hat = 0 while the codes carry a signal is a failure, never convergence (spec §9)
        zero = (_xp.to_host(_norm(Rv)) == 0) & (np.abs(_xp.to_host(self.fb.z)).reshape(self.B, -1).sum(-1) > 0)
        # (after one iteration R = HR(0) = 0 by construction, so only a run of >= 2 iterations is judged)
        zero &= np.isin(status, [int(Status.CONVERGED), int(Status.MAX_ITER)]) & (st.k >= 2)
        status = np.where(zero, int(Status.NUMERICAL_ERROR), status)
        fun = _xp.to_host(self.nll(self._matvec(Rv)))
        f_un = _xp.to_host(self.nll(self._matvec(U)))
        viol = _xp.to_host(_norm(Rv - U)) / np.maximum(1.0, _xp.to_host(_norm(U)))
        kkt = _xp.to_host(st.kkt) if st.kkt is not None else np.full(self.B, np.nan)
        if st.omega is not None:
            wr, wt = st.omega
            beta = st.beta / s.to(st.beta.dtype) if self.torch else st.beta / s
            paths = dict(omega_r=wr, omega_t=wt, beta=beta, aoa=_angle(wr), aod=_angle(wt))
        else:
            paths = None
        extra = dict(sigma_used=_xp.to_host(self.sigma[:, 0] if bool((self.sigma == self.sigma[:, :1]).all())
                                            else self.sigma), scale=_xp.to_host(self.s), mode=self.options.mode,
                     hit_cap=(status == int(Status.MAX_ITER)).tolist(), settings={
                         k: v for k, v in self.cfg.items()}, n_paths=self.K)
        backend = "torch" if self.torch else "numpy"
        device = str(self.lo.device) if self.torch else None
        dtype = str(self.lo.dtype).replace("torch.", "")
        common = dict(nit=st.k, nfev=nfev, wall_time=wall, history=history, backend=backend, device=device,
                      dtype=dtype, options=self.options, n_hr_calls=n_hr, time_hr=self._times[0],
                      time_u=self._times[1])
        if self.single:
            st0 = Status(int(status[0]))
            msg = st0.default_message
            if zero[0]:
                msg = "the structured estimate is zero although the feedback is not"
            p1 = None if paths is None else {k: v[0] for k, v in paths.items()}
            ex = dict(extra, sigma_used=float(np.ravel(extra["sigma_used"])[0]) if np.ndim(extra["sigma_used"]) == 1
                      else extra["sigma_used"][0], scale=float(extra["scale"][0]), hit_cap=bool(extra["hit_cap"][0]))
            return MIMOResult(x=vec_real(H_hat[0]), fun=float(fun[0]), status=st0, message=msg, H_hat=H_hat[0],
                              H_unstructured=H_un[0], paths=p1, nll_unstructured=float(f_un[0]),
                              constraint_violation=float(viol[0]), kkt_residual=float(kkt[0]), extra=ex, **common)
        statuses = _xp.asarray_like(status, self.lo, dtype=None) if self.torch else status
        return BatchedMIMOResult(x=vec_real(H_hat), fun=fun, statuses=statuses, H_hat=H_hat, H_unstructured=H_un,
                                 paths=paths, nll_unstructured=f_un, constraint_violation=viol, kkt_residual=kkt,
                                 extra=extra, **common)


def _angle(w):
    """Angle (radians) of a spatial frequency for half-wavelength spacing: w = -pi sin(angle)."""
    x = -w / math.pi
    if _xp.is_torch(x):
        torch = _xp.get_torch()
        return torch.where(x.abs() <= 1, torch.asin(x.clamp(-1, 1)), torch.full_like(x, float("nan")))
    x = np.asarray(x)
    return np.where(np.abs(x) <= 1, np.arcsin(np.clip(x, -1, 1)), np.nan)


def _lae(logp, lu):
    """log(exp(logp) + exp(lu)) elementwise, lu a float."""
    if _xp.is_torch(logp):
        torch = _xp.get_torch()
        return torch.logaddexp(logp, torch.full_like(logp, lu))
    return np.logaddexp(logp, lu)


def _upd_p(keep, new, old, i):
    if old is None:
        return new
    return _xp.where(keep[:, None], old[i], new)


def _concat_hr(parts):
    from .harmonic import HRResult

    cat = (lambda xs: _xp.get_torch().cat(xs)) if _xp.is_torch(parts[0].H) else np.concatenate
    return HRResult(**{f.name: cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(HRResult)})


def recover(feedback, n_paths, *, method="redeem", mode="stable", rho=None, max_iter=None, tol=None, em_iter=None,
            em_tol=None, u_solver=None, sigma="auto", phi_floor=None, hr_oversample=None, hr_max_sweeps=None,
            hr_tol=None, hr_refine=None, hr_joint_ls=None, hr_warm_start=None, hr_keep_best=None, keep_best=None,
            polish=False,
            rho_schedule="constant", ber_model=0.0, x0=None, y0=None, paths0=None, time_limit=None, check_every=5,
            batch_chunk=None, verbose=0, callback=None, record_history=False, device=None, dtype=None,
            **baseline_options):
    """Recover the channel(s) behind ``feedback`` with a K-path model.

    Parameters
    ----------
    feedback : Feedback
        From :func:`optkit.mimo.feedback` (single user or batch; numpy or torch).
    n_paths : int
        Model order K (1 <= K <= Nr Nt / 4 and R >= 4K; warns for R < 8K).
    method : str
        ``"redeem"`` (this solver) or a baseline name: ``"lmmse"``, ``"two-stage"``, ``"qiht"``, ``"omp"``.
    mode : {"stable", "reference", "fast"}
        See :class:`REDEEMOptions` (every option ``None`` takes the mode's default; ``rho`` and ``tol`` are in
        quantizer-scaled units).
    x0, y0, paths0 :
        Warm starts: a channel estimate (physical units), the scaled dual, and paths (omega_r, omega_t, beta).
    device, dtype :
        Run the torch path on ``device`` (the feedback is moved there).

    Returns
    -------
    MIMOResult or BatchedMIMOResult
    """
    if method in ("redeem", "REDEEM"):
        if baseline_options:
            name = next(iter(baseline_options))
            close = difflib.get_close_matches(name, REDEEMOptions.names(), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise TypeError(f"recover got an unknown option '{name}'{hint}")
        options = dict(mode=mode, rho=rho, max_iter=max_iter, tol=tol, em_iter=em_iter, em_tol=em_tol,
                       u_solver=u_solver, sigma=sigma, phi_floor=phi_floor, hr_oversample=hr_oversample,
                       hr_max_sweeps=hr_max_sweeps, hr_tol=hr_tol, hr_refine=hr_refine, hr_joint_ls=hr_joint_ls,
                       hr_warm_start=hr_warm_start, hr_keep_best=hr_keep_best, keep_best=keep_best, polish=polish,
                       rho_schedule=rho_schedule, ber_model=ber_model, time_limit=time_limit,
                       check_every=check_every, batch_chunk=batch_chunk, verbose=verbose, callback=callback,
                       record_history=record_history)
        solver = REDEEM(feedback, n_paths, device=device, dtype=dtype, **options)
        return solver.run(x0=x0, y0=y0, paths0=paths0)
    from . import baselines

    given = [k for k, v in (("device", device), ("dtype", dtype), ("x0", x0), ("y0", y0), ("paths0", paths0))
             if v is not None]
    if given:
        raise InvalidProblemError(f"{given[0]}: only method='redeem' takes it (baseline {method!r})")

    fn = {"lmmse": baselines.lmmse, "two-stage": baselines.two_stage, "two_stage": baselines.two_stage,
          "qiht": baselines.qiht, "omp": baselines.omp}.get(method)
    if fn is None:
        raise InvalidProblemError(f"method: must be 'redeem', 'lmmse', 'two-stage', 'qiht' or 'omp', got {method!r}")
    return fn(feedback, n_paths, **baseline_options)


def dequantize(feedback, *, rho=1.0, n_paths=1, **options):
    """Ridge-regularised MLE without structure: argmin_u f(u) + (rho/2)||u||^2 in scaled units.

    The first u-step of REDEEM (HR(0) = 0) and the first stage of the two-stage baseline. Returns the
    estimate(s) in physical units, shape (..., Nr, Nt), and the number of EM iterations. ``n_paths`` only
    enters the identifiability checks.
    """
    solver = REDEEM(feedback, n_paths, rho=rho, **options)
    st = solver.init()
    solver._wood_cache = None
    v = st.U * 0
    u, _, n_it, _ = solver.u_step(st.U, st.mu, v, st.rho, solver._wood(st.rho))
    H = unvec_real(u / solver.s[:, None], solver.n_r, solver.n_t)
    return (H[0] if solver.single else H), n_it


def _path_jacobian(n_r, n_t, wr, wt, beta):
    """H(theta) and dH/dtheta for theta = (omega_r, omega_t, Re beta, Im beta) (B, 4K): returns
    H (B, Nr, Nt) and J (B, 4K, Nr, Nt) complex."""
    from .channels import steering

    ar, at = steering(n_r, wr), steering(n_t, wt)  # (B, K, N)
    if _xp.is_torch(ar):
        torch = _xp.get_torch()
        m = torch.arange(n_r, dtype=wr.dtype, device=wr.device)
        n = torch.arange(n_t, dtype=wt.dtype, device=wt.device)
    else:
        m, n = np.arange(n_r), np.arange(n_t)
    outer = ar[..., :, None] * at[..., None, :]  # (B, K, Nr, Nt)
    b = beta[..., None, None]
    J = [b * 1j * m[:, None] * outer, b * 1j * n[None, :] * outer, outer, 1j * outer]
    cat = (lambda xs: _xp.get_torch().cat(xs, dim=1)) if _xp.is_torch(ar) else (lambda xs: np.concatenate(xs, 1))
    return (b * outer).sum(1), cat(J)


def polish(solver, wr, wt, beta, *, max_steps=20):
    """Levenberg-Marquardt on the likelihood over the paths theta = (omega_r, omega_t, Re beta, Im beta)
    (spec §3.5 ``polish``): Gauss-Newton matrix J^T A^T D A J (D = curvature weights) plus lambda diag,
    a step accepted only where f decreases. ``beta`` in scaled units; batched; returns (wr, wt, beta, f)."""
    from .kernels import truncnorm_terms

    K, B = solver.K, solver.B
    sig = solver.sigma
    torch_mode = solver.torch

    def f_at(wr, wt, beta):
        H, J = _path_jacobian(solver.n_r, solver.n_t, wr, wt, beta)
        mu = solver._matvec(vec_real(H))
        return solver.nll(mu), mu, J

    f, mu, J = f_at(wr, wt, beta)
    lam = np.full(B, 1e-3)
    if torch_mode:
        lam = _xp.asarray_like(lam, sig, dtype=sig.dtype)
    for _ in range(max_steps):
        _, r1, r2 = truncnorm_terms(mu, solver.lo, solver.hi, sig)
        e = -r1 / sig  # d f / d mu
        D = (1.0 - (1.0 + r2 - r1 * r1)) / sig ** 2
        D = D.clip(min=0) if torch_mode else np.maximum(D, 0.0)
        Jv = vec_real(J)  # (B, 4K, n)
        if torch_mode:
            AJ = solver.op.matvec(Jv.transpose(0, 1)).transpose(0, 1)  # (B, 4K, R)
        else:
            AJ = np.swapaxes(solver.op.matvec(np.swapaxes(Jv, 0, 1)), 0, 1)
        g = (AJ * e[:, None, :]).sum(-1)
        M = (AJ * D[:, None, :]) @ (AJ.transpose(-1, -2) if torch_mode else np.swapaxes(AJ, -1, -2))
        diag = M.diagonal(dim1=-2, dim2=-1) if torch_mode else np.diagonal(M, axis1=-2, axis2=-1)
        improved_any = False
        for _ in range(8):
            Md = M + (lam[:, None] * diag)[..., None] * _xp.eye(M, M.shape[-1])
            try:
                step = -_xp.solve(Md + 1e-12 * _xp.eye(M, M.shape[-1]) * (diag.max(-1)[:, None, None] if not torch_mode
                                                                 else diag.amax(-1)[:, None, None]), g[..., None])[..., 0]
            except Exception:  # singular: damp harder
                lam = lam * 10
                continue
            wr2, wt2 = wr + step[:, :K], wt + step[:, K:2 * K]
            beta2 = beta + (step[:, 2 * K:3 * K] + 1j * step[:, 3 * K:]).to(beta.dtype) if torch_mode else \
                beta + step[:, 2 * K:3 * K] + 1j * step[:, 3 * K:]
            f2, mu2, J2 = f_at(wr2, wt2, beta2)
            ok = f2 < f
            okc = ok[:, None]
            wr, wt = _xp.where(okc, wr2, wr), _xp.where(okc, wt2, wt)
            beta = _xp.where(okc, beta2, beta)
            mu = _xp.where(okc, mu2, mu)
            J = _xp.where(ok[:, None, None, None], J2, J)
            rel = (f - f2) / (f.abs() + 1.0) if torch_mode else (f - f2) / (np.abs(f) + 1.0)
            f = _xp.where(ok, f2, f)
            lam = _xp.where(ok, lam / 3, lam * 4)
            if bool(ok.all()):
                improved_any = True
                break
            improved_any = improved_any or bool(ok.any())
        if not improved_any or not bool((rel > 1e-12).any()):
            break
    return wr, wt, beta, f
