"""2-D harmonic retrieval: K-path fits of a matrix by 2-D RELAX (spec mimo §3.4, §3.5, §5.2, §5.3).

The model is Y ~ H = sum_k beta_k a_r(omega_r_k) a_t(omega_t_k)^T with a_N(omega) = exp(j omega [0..N-1]),
i.e. H[m, n] = sum_k beta_k exp(j (m omega_r_k + n omega_t_k)), a 2-D line spectrum.

RELAX fits the paths greedily and cyclically: component 1 is fitted to Y; then for kbar = 2..K, at most
``max_sweeps`` sweeps re-fit the components kbar, 1, ..., kbar-1 in turn, each on Y minus the other
components, while the relative change of the squared residual exceeds ``tol``. One fit ("one(Res)") is a
zero-padded FFT2 grid search (F = 2^ceil(log2(oversample N)) points per dimension, numpy's kernel
exp(-j 2 pi m i / F), so bin i means omega = +2 pi i / F, mapped to (-pi, pi]; ties go to the lowest
flat index in numpy and torch alike), a local refinement of P(omega) = |c|^2, c = a_r^H Res conj(a_t),
and beta = c / (Nr Nt).

Implementation notes (the algorithm is the spec's; these only change the cost):

* The FFT is linear, so the padded spectrum of a rank-1 term beta a_r a_t^T is beta f_r f_t^T with
  f = the 1-D padded FFT of the steering vector. The spectrum of "Y minus the fitted components" is kept
  and updated by two rank-1 terms per re-fit instead of an FFT2 of every residual; it is rebuilt from
  an FFT2 at the start of every kbar stage so rounding cannot drift.
* ger (numpy) / baddbmm_ (torch) apply a rank-1 update in place in one pass; the refinement evaluates
  the Newton moments at the trial point, so an accepted step costs one evaluation.
* Everything is batched over users (B, Nr, Nt) for numpy and torch with one code path. Sweeps run in
  lockstep with per-user masks; the only host synchronisation on a GPU is one ``any`` per sweep (the
  Newton loop and line searches then run their full length with masks). On numpy and on torch-CPU,
  where such checks are free, finished users are dropped from a sweep and loops stop early; the
  numbers are the same either way. A user's numbers never depend on the other users of a batch.

One reading of the spec made explicit: "P does not decrease" in the Newton line search allows a decrease
within the rounding error of evaluating P, 2|c| * 4 eps sqrt(Nr Nt) sum|Res| (|Z| = |Res|). Without it the
search stops ~1e-9 short of the peak once true changes of P fall below rounding (seen as 1e-9 differences
between numpy and torch); with it Newton converges to max|delta| < 1e-13 as intended.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from .._errors import InvalidProblemError
from . import _xp

__all__ = ["HRResult", "harmonic_retrieval", "better_fit", "MODES"]

_TWO_PI = 2.0 * math.pi
_TINY = float(np.finfo(np.float64).tiny)

#: Defaults of each mode (explicit keyword arguments override them). ``relerr`` and ``stale`` are fixed by
#: the mode: "reference" follows the authors' code (spectral-norm stopping rule, stale factors).
MODES = {
    "stable": dict(oversample=16, max_sweeps=10, tol=1e-3, refine="newton", joint_ls=True, max_newton=20,
                   warm_steps=3, relerr="fro", stale=False),
    "reference": dict(oversample=16, max_sweeps=10, tol=1e-3, refine="pg-reference", joint_ls=False,
                      max_newton=20, warm_steps=3, relerr="spectral", stale=True),
    "fast": dict(oversample=4, max_sweeps=3, tol=1e-3, refine="newton", joint_ls=True, max_newton=10,
                 warm_steps=3, relerr="fro", stale=False),
}
_REFINES = ("newton", "pg-reference")

# Newton refinement (§3.4): <= 30 halvings, stop when max|delta| < 1e-13.
_N_HALVINGS = 30
_NEWTON_STEP_TOL = 1e-13
_P_SLACK = 4.0 * float(np.finfo(np.float64).eps)  # times sqrt(Nr Nt) sum|Res|: rounding error of c
# Reference projected-gradient refinement (authors' relax_PG): eta0 per call, floor below which a step is taken.
_PG_ETA0 = 1e-7
_PG_ETA_MIN = 1e-9
_PG_N_TRIALS = int(math.ceil(math.log2(_PG_ETA0 / _PG_ETA_MIN))) + 1  # 8 >= trials ever needed per step
# Joint LS of the gains: truncated (lstsq) solve when cond(G) > 1e12.
_LS_RCOND = 1e-12
# Variable-projection Levenberg-Marquardt damping candidates (relative to the scaled Gauss-Newton matrix).
_LM_MUS = (0.0, 1e-4, 1e-2, 1.0, 1e2)


@dataclasses.dataclass(frozen=True)
class HRResult:
    """Result of :func:`harmonic_retrieval`; every field on the backend/device of ``Y``.

    Attributes
    ----------
    H : (..., Nr, Nt) complex
        The K-path reconstruction sum_k beta_k a_r(omega_r_k) a_t(omega_t_k)^T (dtype: complex of Y's
        precision).
    omega_r, omega_t : (..., K) float64
        Spatial frequencies in (-pi, pi] (exactly 0 along a dimension of size 1).
    beta : (..., K) complex128
        Path gains.
    residual : (...,) float64
        ||Y - H||_F^2 / max(||Y||_F^2, tiny) (tiny = smallest normal float64), so 0 for Y = 0. It is a
        relative squared error of the fit of the same Y, hence comparable between two fits of one Y
        (:func:`better_fit`).
    sweeps : (...,) int64
        RELAX: total number of cyclic sweeps over all stages kbar = 2..K (0 for K = 1). Warm start: the
        number of accepted Levenberg-Marquardt steps.
    warm_start : (...,) bool
        True where the fit came from the warm start (``paths0``) rather than from RELAX.
    """

    H: Any
    omega_r: Any
    omega_t: Any
    beta: Any
    residual: Any
    sweeps: Any
    warm_start: Any = None

    @property
    def n_paths(self) -> int:
        return int(self.beta.shape[-1])


# ----------------------------------------------------------------------------------------------------------
# backend shim: the handful of calls whose spelling differs between numpy and torch
# ----------------------------------------------------------------------------------------------------------
class _Ops:
    def __init__(self, like):
        self.is_torch = _xp.is_torch(like)
        if self.is_torch:
            torch = _xp.get_torch()
            self.torch = torch
            self.device = like.device
            self.cheap_sync = like.device.type == "cpu"
            self.exp = torch.exp
            self.sqrt = torch.sqrt
            self.where = torch.where
            self.mod = torch.remainder
            self.clip2 = lambda x, c: torch.minimum(torch.maximum(x, -c), c)
            self.floor_at = lambda x, c: x.clamp_min(c)
            self.maximum = torch.maximum
            self.eigh = torch.linalg.eigh
        else:
            self.cheap_sync = True
            self.exp = np.exp
            self.sqrt = np.sqrt
            self.where = np.where
            self.mod = np.mod
            self.clip2 = lambda x, c: np.minimum(np.maximum(x, -c), c)
            self.floor_at = np.maximum
            self.maximum = np.maximum
            self.eigh = np.linalg.eigh

    # constructors -------------------------------------------------------------------------------------------
    def asarray(self, x, dtype="f8"):
        if self.is_torch:
            t = self.torch
            dt = {"f8": t.float64, "c16": t.complex128, "i8": t.int64, "b": t.bool}[dtype]
            if _xp.is_torch(x):
                return x.to(device=self.device, dtype=dt)
            return t.as_tensor(np.asarray(x), dtype=dt, device=self.device)
        return np.asarray(x, dtype={"f8": np.float64, "c16": np.complex128, "i8": np.int64, "b": bool}[dtype])

    def zeros(self, shape, dtype="f8"):
        if self.is_torch:
            t = self.torch
            dt = {"f8": t.float64, "c16": t.complex128, "i8": t.int64, "b": t.bool}[dtype]
            return t.zeros(shape, dtype=dt, device=self.device)
        return np.zeros(shape, dtype={"f8": np.float64, "c16": np.complex128, "i8": np.int64, "b": bool}[dtype])

    def ones_bool(self, n):
        if self.is_torch:
            return self.torch.ones(n, dtype=self.torch.bool, device=self.device)
        return np.ones(n, dtype=bool)

    def copy(self, x):
        return x.clone() if self.is_torch else x.copy()

    # reductions / indexing ----------------------------------------------------------------------------------
    def any(self, x) -> bool:  # one host synchronisation
        return bool(x.any())

    def first_true(self, mask):
        """Index of the first True along the last axis (0 when none)."""
        if self.is_torch:
            return mask.to(self.torch.uint8).argmax(dim=-1)
        return mask.argmax(axis=-1)

    def take(self, x, idx):
        """x[b, idx[b]] for x (B, J) and idx (B,)."""
        if self.is_torch:
            return x.gather(-1, idx[:, None])[:, 0]
        return np.take_along_axis(x, idx[:, None], axis=-1)[:, 0]

    def nonzero(self, mask):
        if self.is_torch:
            return self.torch.nonzero(mask).reshape(-1)
        return np.flatnonzero(mask)

    def cat(self, xs, axis):
        return self.torch.cat(xs, dim=axis) if self.is_torch else np.concatenate(xs, axis=axis)

    def stack2(self, a, b):
        return self.torch.stack([a, b], dim=-1) if self.is_torch else np.stack([a, b], axis=-1)

    def diagonal(self, x):
        return x.diagonal(dim1=-2, dim2=-1) if self.is_torch else np.diagonal(x, axis1=-2, axis2=-1).copy()

    def fft(self, x, n, axis):
        if self.is_torch:
            return self.torch.fft.fft(x, n=n, dim=axis)
        import scipy.fft

        return scipy.fft.fft(x, n=n, axis=axis, workers=1)

    def rank1_(self, S, alpha, u, v):
        """In place S[b] += alpha[b] u[b] v[b]^T for S (B, F_r, F_t); one pass over S (BLAS ger / baddbmm)."""
        if self.is_torch:
            S.baddbmm_((alpha[:, None] * u)[:, :, None], v[:, None, :])
            return S
        if not S.flags.c_contiguous:  # pragma: no cover - S is always made contiguous here
            S += (alpha[:, None] * u)[:, :, None] * v[:, None, :]
            return S
        import scipy.linalg.blas as blas

        # ger on row blocks of < 9216 entries: OpenBLAS runs such calls on one thread (a threaded ger on a
        # busy machine spins and was 50x slower), and one pass of ger beats numpy's complex broadcasting 3x
        rows = max(1, 8192 // S.shape[-1])
        for b in range(S.shape[0]):
            a = complex(alpha[b])
            ub, vb = u[b], v[b]
            for i in range(0, S.shape[-2], rows):
                blk = S[b, i:i + rows]
                out = blas.zgeru(a, vb, ub[i:i + rows], a=blk.T, overwrite_a=1)  # blk^T += a v u^T
                if not np.shares_memory(out, blk):  # pragma: no cover - only if BLAS copied
                    blk[...] = out.T
        return S

    def spectral_norm2(self, X):
        if self.is_torch:
            return self.torch.linalg.matrix_norm(X, ord=2) ** 2
        return np.linalg.norm(X, 2, axis=(-2, -1)) ** 2


def _abs2(z):
    return z.real * z.real + z.imag * z.imag


def _fro2(X):
    return _abs2(X).sum((-2, -1))


def _wrap(w, ops):
    """Map angles to (-pi, pi]."""
    return math.pi - ops.mod(math.pi - w, _TWO_PI)


def _grid_size(n: int, oversample: float) -> int:
    target = oversample * n
    f = 1
    while f < target:
        f *= 2
    return f


class _Ctx:
    """Constants of one call (sizes, index grids, options)."""

    def __init__(self, ops, n_r, n_t, K, cfg):
        self.ops = ops
        self.n_r, self.n_t, self.K = n_r, n_t, K
        self.cfg = cfg
        self.f_r = _grid_size(n_r, cfg["oversample"])
        self.f_t = _grid_size(n_t, cfg["oversample"])
        m = np.arange(n_r, dtype=float)
        n = np.arange(n_t, dtype=float)
        self.m = ops.asarray(m)
        self.n = ops.asarray(n)
        self.jm = ops.asarray(1j * m, "c16")
        self.jn = ops.asarray(1j * n, "c16")
        self.mjm = ops.asarray(-1j * m, "c16")
        self.mjn = ops.asarray(-1j * n, "c16")
        self.hidx = ops.asarray([3, 1, 6, 2, 4], "i8")  # M10, M01, M20, M02, M11 in M.reshape(B, 9)
        self.swap = ops.asarray([1, 0], "i8")
        self.clip2 = ops.asarray([math.pi / (2 * n_r), math.pi / (2 * n_t)])
        # weights [1, m, m^2] (3, Nr) and [1, n, n^2]^T (Nt, 3) for the Newton sums
        self.Wm = ops.asarray(np.stack([np.ones_like(m), m, m * m]))
        self.WnT = ops.asarray(np.stack([np.ones_like(n), n, n * n], axis=1))
        self.ls_scales = ops.asarray(2.0 ** -np.arange(_N_HALVINGS + 1))
        self.pg_scales = ops.asarray(2.0 ** -np.arange(_PG_N_TRIALS))
        # FFT order: transform the shorter axis first (pruned: the zero rows are never transformed)
        self.last_first = n_r + self.f_t <= n_t + self.f_r

    def steer(self, w, n_or_m):
        """exp(j w[..., None] * idx) for the row (``m``) or column (``n``) index grid."""
        return self.ops.exp(w[..., None] * n_or_m)

    def fft2(self, X):
        ops = self.ops
        if self.last_first:
            return ops.fft(ops.fft(X, self.f_t, -1), self.f_r, -2)
        return ops.fft(ops.fft(X, self.f_r, -2), self.f_t, -1)


# ----------------------------------------------------------------------------------------------------------
# refinements of P(omega_r, omega_t) = |a_r^H Res conj(a_t)|^2
# ----------------------------------------------------------------------------------------------------------
def _c_many(ctx, Res, wr, wt):
    """c = a_r(wr)^H Res conj(a_t(wt)) for wr, wt (B, J) -> (B, J)."""
    er = ctx.steer(-wr, ctx.jm)  # (B, J, Nr) = conj(a_r)
    et = ctx.steer(-wt, ctx.jn)  # (B, J, Nt)
    return ((er @ Res) * et).sum(-1)


def _moments(ctx, Res, w):
    """M[b, p, q] = sum_mn m^p n^q Z_mn, Z = Res o exp(-j(m w_r + n w_t)), p, q <= 2 -> (B, 3, 3); w (B, 2).

    c = M00, c_r = -j M10, c_t = -j M01, c_rr = -M20, c_tt = -M02, c_rt = -M11.
    """
    er = ctx.ops.exp(w[:, 0:1] * ctx.mjm)  # (B, Nr) = conj(a_r)
    et = ctx.ops.exp(w[:, 1:2] * ctx.mjn)  # (B, Nt)
    return ((er[:, None, :] * ctx.Wm) @ Res) @ (et[:, :, None] * ctx.WnT)


def _newton(ctx, Res, wr, wt, act, max_steps):
    """Stable Newton refinement (§3.4), batched over users; returns (wr, wt, c) at the final point.

    Maximises P = |c|^2: delta = -(hess P)^-1 grad P where hess P is negative definite, else
    grad P / max|eig|; |delta_r| <= pi/(2 Nr), |delta_t| <= pi/(2 Nt); the first of delta, delta/2, ...,
    delta/2^30 where P does not decrease is taken; at most ``max_steps`` steps; a user stops once
    max|delta| < 1e-13 (that last, negligible step is not taken) or when no halving is accepted.
    The moments at an accepted trial point serve the next step, so a step costs one evaluation.
    """
    ops = ctx.ops
    B = Res.shape[0]
    w = ops.stack2(wr, wt)  # (B, 2): (omega_r, omega_t)
    act = ops.copy(act)
    M = _moments(ctx, Res, w)
    if max_steps > 0:
        # "P does not decrease" up to the rounding error of evaluating P: |Z| = |Res|, so c is computed to
        # about kappa * sum|Res| and P to 2 |c| times that. Without this slack the search stalls ~1e-9 short of
        # the peak, where the true change of P falls below rounding, and the result depends on the BLAS.
        slack = (2.0 * _P_SLACK * math.sqrt(ctx.n_r * ctx.n_t)) * abs(Res).sum((-2, -1))
    for it in range(max_steps):
        if ops.cheap_sync and it > 0 and not ops.any(act):
            break
        v = M.reshape((B, 9))
        c = v[:, 0]
        X = v[:, ctx.hidx]  # (B, 5): M10, M01, M20, M02, M11
        Q = c.conj()[:, None] * X
        g = 2.0 * Q.imag[:, :2]  # grad P = 2 Re(conj(c) (c_r, c_t))
        hd = 2.0 * (_abs2(X[:, :2]) - Q.real[:, 2:4])  # (h_rr, h_tt) = 2 Re(|c_r|^2 + conj(c) c_rr), ...
        h_rt = 2.0 * ((X[:, 1].conj() * X[:, 0]).real - Q.real[:, 4])
        if ctx.n_r == 1 or ctx.n_t == 1:  # a frequency fixed at 0: 1-D problem in the other one
            g, hd, h_rt = _fix_dim(ctx, g, hd, h_rt)
        h_rr, h_tt = hd[:, 0], hd[:, 1]
        det = h_rr * h_tt - h_rt * h_rt
        nd = (h_rr < 0) & (det > 0)
        half = 0.5 * (h_rr - h_tt)
        maxeig = abs(0.5 * (h_rr + h_tt)) + ops.sqrt(half * half + h_rt * h_rt)
        # Newton: -H^-1 g; gradient: g / max|eig|; nothing where H = 0 (then g = 0 too, e.g. Res = 0)
        scale = ops.where(nd, -1.0 / ops.where(nd, det, 1.0), 1.0 / ops.where(maxeig > 0, maxeig, math.inf))
        newt = hd[:, ctx.swap] * g - h_rt[:, None] * g[:, ctx.swap]  # (h_tt g_r - h_rt g_t, h_rr g_t - h_rt g_r)
        d = ops.where(nd[:, None], newt, g) * scale[:, None]
        d = ops.where(act[:, None], ops.clip2(d, ctx.clip2), 0.0)
        act = act & (ops.maximum(abs(d[:, 0]), abs(d[:, 1])) >= _NEWTON_STEP_TOL)
        if ops.cheap_sync and not ops.any(act):
            break
        P0 = _abs2(c) - abs(c) * slack
        w1 = w + d
        M1 = _moments(ctx, Res, w1)
        ok1 = _abs2(M1[:, 0, 0]) >= P0
        if ops.cheap_sync and not ops.any(act & ~ok1):  # every full step accepted
            w = ops.where(act[:, None], w1, w)
            M = ops.where(act[:, None, None], M1, M)
        else:  # halvings delta/2 .. delta/2^30, all at once
            sc = ctx.ls_scales[1:]
            cc = _c_many(ctx, Res, w[:, 0:1] + d[:, 0:1] * sc, w[:, 1:2] + d[:, 1:2] * sc)
            okj = _abs2(cc) >= P0[:, None]
            s = ops.where(ok1, 1.0, sc[ops.first_true(okj)])
            act = act & (ok1 | okj.any(-1))
            w = ops.where(act[:, None], w + d * s[:, None], w)
            M = _moments(ctx, Res, w)  # same numbers as M1 where the full step was taken
    return w[:, 0], w[:, 1], M[:, 0, 0]


def _fix_dim(ctx, g, hd, h_rt):
    """Nr = 1 (Nt = 1): no step in omega_r (omega_t); the stand-in curvature -|h_tt| keeps Newton/gradient
    decisions and max|eig| those of the other coordinate."""
    ops = ctx.ops
    keep = ops.asarray([ctx.n_r > 1, ctx.n_t > 1], "b")
    g = ops.where(keep, g, 0.0)
    h_rt = h_rt * 0.0
    other = -abs(hd[:, ctx.swap])
    hd = ops.where(keep, hd, other if (ctx.n_r > 1 or ctx.n_t > 1) else hd * 0.0)
    return g, hd, h_rt


def _pg_reference(ctx, Res, wr, wt, act, n_steps):
    """The authors' projected-gradient refinement (relax_PG): n_steps gradient steps on g = -P.

    Armijo test g_new < g - (eta/2)||grad g||^2, eta = 1e-7 at the start of each call, halved on failure
    and kept across iterations; once a halving brings eta below 1e-9 the trial step (made with the eta
    before that halving) is taken anyway. Not scale-invariant (spec flaw 6), reproduced on purpose.
    """
    ops = ctx.ops
    B = wr.shape[0]
    eta = ops.zeros((B,)) + _PG_ETA0
    Wm2, WnT2 = ctx.Wm[:2], ctx.WnT[:, :2]
    for _ in range(n_steps):
        er = ctx.steer(-wr, ctx.jm)
        et = ctx.steer(-wt, ctx.jn)
        M = ((er[:, None, :] * Wm2) @ Res) @ (et[:, :, None] * WnT2)  # (B, 2, 2)
        c = M[:, 0, 0]
        cc = c.conj()
        G_r = -2.0 * (cc * M[:, 1, 0]).imag  # d(-P)/d omega_r, since c_r = -j M10
        G_t = -2.0 * (cc * M[:, 0, 1]).imag
        if ctx.n_r == 1:
            G_r = G_r * 0.0
        if ctx.n_t == 1:
            G_t = G_t * 0.0
        g = -_abs2(c)
        gn2 = G_r * G_r + G_t * G_t
        etas = eta[:, None] * ctx.pg_scales  # (B, J) trial step sizes
        tr_r = wr[:, None] - etas * G_r[:, None]
        tr_t = wt[:, None] - etas * G_t[:, None]
        obj = -_abs2(_c_many(ctx, Res, tr_r, tr_t))
        ok = obj < g[:, None] - 0.5 * etas * gn2[:, None]
        stop = ok | (0.5 * etas < _PG_ETA_MIN)
        j = ops.first_true(stop)
        ok_j = ops.take(ok, j)
        eta_j = ops.take(etas, j)
        new_eta = ops.where(ok_j, eta_j, 0.5 * eta_j)
        wr = ops.where(act, ops.take(tr_r, j), wr)
        wt = ops.where(act, ops.take(tr_t, j), wt)
        eta = ops.where(act, new_eta, eta)
    c = _c_many(ctx, Res, wr[:, None], wt[:, None])[:, 0]
    return wr, wt, c


def _fit_one(ctx, Res, S, act):
    """one(Res): grid peak of |S|^2 (S = padded FFT2 of Res), refinement, beta = c / (Nr Nt)."""
    ops = ctx.ops
    idx = _xp.argmax_flat(_abs2(S))  # (B,), ties: lowest flat index
    i_t = idx % ctx.f_t
    i_r = (idx - i_t) // ctx.f_t
    # bin i -> omega = 2 pi i / F in (-pi, pi] (float64 also in torch, where int * float gives float32)
    wr = _wrap(ops.asarray(i_r, "f8") * (_TWO_PI / ctx.f_r), ops)
    wt = _wrap(ops.asarray(i_t, "f8") * (_TWO_PI / ctx.f_t), ops)
    if ctx.cfg["refine"] == "newton":
        wr, wt, c = _newton(ctx, Res, wr, wt, act, ctx.cfg["max_newton"])
    else:
        wr, wt, c = _pg_reference(ctx, Res, wr, wt, act, ctx.cfg["max_newton"])
    return _wrap(wr, ops), _wrap(wt, ops), c / (ctx.n_r * ctx.n_t)


# ----------------------------------------------------------------------------------------------------------
# RELAX
# ----------------------------------------------------------------------------------------------------------
def _synth(Ar, At, beta):
    return (Ar * beta[:, None, :]) @ At.swapaxes(-1, -2)


def _set_component(ctx, st, k, wr_k, wt_k, beta_k):
    """Write component k (fresh factors and their 1-D spectra) into the state."""
    ar = ctx.steer(wr_k, ctx.jm)
    at = ctx.steer(wt_k, ctx.jn)
    st["wr"][:, k] = wr_k
    st["wt"][:, k] = wt_k
    st["beta"][:, k] = beta_k
    st["Ar"][:, :, k] = ar
    st["At"][:, :, k] = at
    st["Sr"][:, k] = ctx.ops.fft(ar, ctx.f_r, -1)
    st["St"][:, k] = ctx.ops.fft(at, ctx.f_t, -1)


def _rank1_(ctx, st, k, beta_k, sign):
    """S += sign * beta_k f_r f_t^T: the padded spectrum of the rank-1 term of component k."""
    ctx.ops.rank1_(st["S"], sign * beta_k, st["Sr"][:, k], st["St"][:, k])


def _update(ctx, st, k, act):
    """Re-fit component k on Y minus the other components (users where ``act``)."""
    ops = ctx.ops
    beta = st["beta"]
    b_oth = ops.copy(beta)
    b_oth[:, k] = 0.0
    Res = st["Y"] - _synth(st["Ar"], st["At"], b_oth)
    _rank1_(ctx, st, k, beta[:, k], 1.0)  # st["S"] is now the spectrum of Res
    wr_k, wt_k, beta_k = _fit_one(ctx, Res, st["S"], act)
    wr_k = ops.where(act, wr_k, st["wr"][:, k])
    wt_k = ops.where(act, wt_k, st["wt"][:, k])
    beta_k = ops.where(act, beta_k, beta[:, k])
    _set_component(ctx, st, k, wr_k, wt_k, beta_k)
    _rank1_(ctx, st, k, beta_k, -1.0)


def _err(ctx, st, X):
    if ctx.cfg["relerr"] == "spectral":
        return ctx.ops.spectral_norm2(X)
    return _fro2(X)


def _err_model(ctx, st):
    """Residual Y - H of the factors the stopping rule sees (stale ones in reference mode)."""
    if ctx.cfg["stale"]:
        Ar = ctx.steer(st["wrA"], ctx.jm).swapaxes(-1, -2)
        At = ctx.steer(st["wtA"], ctx.jn).swapaxes(-1, -2)
        return st["Y"] - _synth(Ar, At, st["beta"])
    return st["Y"] - _synth(st["Ar"], st["At"], st["beta"])


def _sweep(ctx, st, kb, act):
    """One cyclic sweep over components kb, 0, ..., kb-1; returns the relative change of the error."""
    ops = ctx.ops
    e1 = _err(ctx, st, _err_model(ctx, st))
    order = [kb] + list(range(kb))
    for i, k in enumerate(order):
        if ctx.cfg["stale"] and i == len(order) - 1:
            # the authors' factors A1, A2 are rebuilt before each re-fit, not after the last one
            st["wrA"] = ops.where(act[:, None], st["wr"], st["wrA"])
            st["wtA"] = ops.where(act[:, None], st["wt"], st["wtA"])
        _update(ctx, st, k, act)
    e2 = _err(ctx, st, _err_model(ctx, st))
    return abs(e1 - e2) / ops.floor_at(e1, _TINY)


_STATE_KEYS = ("Y", "S", "wr", "wt", "beta", "Ar", "At", "Sr", "St", "wrA", "wtA")


def _relax(ctx, Y):
    ops = ctx.ops
    B = Y.shape[0]
    K, n_r, n_t = ctx.K, ctx.n_r, ctx.n_t
    st = {
        "Y": Y,
        "S": ctx.fft2(Y),
        "wr": ops.zeros((B, K)),
        "wt": ops.zeros((B, K)),
        "beta": ops.zeros((B, K), "c16"),
        "Ar": ops.zeros((B, n_r, K), "c16"),
        "At": ops.zeros((B, n_t, K), "c16"),
        "Sr": ops.zeros((B, K, ctx.f_r), "c16"),  # 1-D padded spectra of the steering vectors
        "St": ops.zeros((B, K, ctx.f_t), "c16"),
    }
    all_on = ops.ones_bool(B)
    wr0, wt0, b0 = _fit_one(ctx, Y, st["S"], all_on)
    _set_component(ctx, st, 0, wr0, wt0, b0)
    _rank1_(ctx, st, 0, b0, -1.0)
    st["wrA"] = ops.copy(st["wr"])
    st["wtA"] = ops.copy(st["wt"])
    sweeps = ops.zeros((B,), "i8")
    for kb in range(1, K):
        # rebuild the residual spectrum exactly once per stage (rank-1 updates otherwise)
        st["S"] = ctx.fft2(Y - _synth(st["Ar"], st["At"], st["beta"]))
        act = ops.ones_bool(B)
        for s in range(ctx.cfg["max_sweeps"]):
            if s > 0 and not ops.any(act):  # the one host synchronisation per sweep
                break
            if ops.cheap_sync and s > 0 and not bool(act.all()):
                idx = ops.nonzero(act)
                sub = {key: st[key][idx] for key in _STATE_KEYS}
                rel = _sweep(ctx, sub, kb, ops.ones_bool(idx.shape[0]))
                for key in _STATE_KEYS[1:]:  # all but Y
                    st[key][idx] = sub[key]
                relerr = ops.zeros((B,))
                relerr[idx] = rel
            else:
                relerr = _sweep(ctx, st, kb, act)
            sweeps = sweeps + act
            act = act & (relerr > ctx.cfg["tol"])
    if ctx.cfg["stale"]:
        Ar = ctx.steer(st["wrA"], ctx.jm).swapaxes(-1, -2)
        At = ctx.steer(st["wtA"], ctx.jn).swapaxes(-1, -2)
        return st["wrA"], st["wtA"], st["beta"], Ar, At, sweeps
    beta = st["beta"]
    if ctx.cfg["joint_ls"]:
        beta = _ls_gains(ctx, st["Ar"], st["At"], Y)
    return st["wr"], st["wt"], beta, st["Ar"], st["At"], sweeps


def _ls_gains(ctx, Ar, At, Y):
    """Joint LS gains: G beta = b, G = (Ar^H Ar) o (At^H At), b_k = a_rk^H Y conj(a_tk), batched over leading
    axes; when cond(G) > 1e12 the eigenvalues below 1e-12 lambda_max are dropped (minimum-norm lstsq)."""
    ops = ctx.ops
    ArH = Ar.conj().swapaxes(-1, -2)
    AtH = At.conj().swapaxes(-1, -2)
    b = ((ArH @ Y) * AtH).sum(-1)
    G = (ArH @ Ar) * (AtH @ At)
    lam, V = ops.eigh(G)
    keep = lam > lam[..., -1:] * _LS_RCOND
    inv = ops.where(keep, 1.0 / ops.where(keep, lam, 1.0), 0.0)
    return (V @ ((inv * (V.conj().swapaxes(-1, -2) @ b[..., None])[..., 0])[..., None]))[..., 0]


# ----------------------------------------------------------------------------------------------------------
# warm start: variable-projection Levenberg-Marquardt on the 2K frequencies
# ----------------------------------------------------------------------------------------------------------
def _vp_eval(ctx, Y, wr, wt):
    """Gains by LS and residual for frequencies (..., K); Y broadcast against the leading axes."""
    Ar = ctx.steer(wr, ctx.jm).swapaxes(-1, -2)  # (..., Nr, K)
    At = ctx.steer(wt, ctx.jn).swapaxes(-1, -2)
    beta = _ls_gains(ctx, Ar, At, Y)
    R = Y - (Ar * beta[..., None, :]) @ At.swapaxes(-1, -2)
    return Ar, At, beta, R, _fro2(R)


def _warm(ctx, Y, wr, wt, n_steps):
    ops = ctx.ops
    K = ctx.K
    B = Y.shape[0]
    if ctx.n_r == 1:
        wr = wr * 0.0
    if ctx.n_t == 1:
        wt = wt * 0.0
    Ar, At, beta, R, phi = _vp_eval(ctx, Y, wr, wt)
    mus = ops.asarray(np.asarray(_LM_MUS))
    n_acc = ops.zeros((B,), "i8")
    for _ in range(n_steps):
        DAr = ctx.jm[:, None] * Ar
        DAt = ctx.jn[:, None] * At
        U = ops.cat([Ar, DAr], -1)  # (B, Nr, 2K)
        V = ops.cat([At, DAt], -1)
        UH = U.conj().swapaxes(-1, -2)
        GU = UH @ U
        GV = V.conj().swapaxes(-1, -2) @ V
        aa, ad, da, dd = slice(0, K), slice(K, 2 * K), slice(K, 2 * K), slice(K, 2 * K)
        G = GU[:, aa, aa] * GV[:, aa, aa]
        bb = beta.conj()[:, :, None] * beta[:, None, :]
        # Jacobian columns J_r,k = -beta_k (D a_rk) a_tk^T, J_t,k = -beta_k a_rk (D a_tk)^T; <X, Y> = sum conj(X) Y
        JJ_rr = bb * GU[:, da, da] * GV[:, aa, aa]
        JJ_rt = bb * GU[:, da, aa] * GV[:, aa, ad]
        JJ_tt = bb * GU[:, aa, aa] * GV[:, dd, dd]
        JJ = ops.cat([ops.cat([JJ_rr, JJ_rt], -1), ops.cat([JJ_rt.conj().swapaxes(-1, -2), JJ_tt], -1)], -2)
        AJ = -ops.cat([beta, beta], -1)[:, None, :] * ops.cat([GU[:, aa, ad] * GV[:, aa, aa],
                                                              GU[:, aa, aa] * GV[:, aa, ad]], -1)
        # Kaufman's variable-projection Gauss-Newton matrix Re(J^H (I - A G^-1 A^H) J)
        lam, W = ops.eigh(G)
        keep = lam > lam[..., -1:] * _LS_RCOND
        inv = ops.where(keep, 1.0 / ops.where(keep, lam, 1.0), 0.0)
        WhAJ = W.conj().swapaxes(-1, -2) @ AJ
        N = (JJ - WhAJ.conj().swapaxes(-1, -2) @ (inv[:, :, None] * WhAJ)).real
        # Re(J^H r)
        X = UH @ R  # (B, 2K, Nt)
        g_r = -(beta.conj() * (X[:, da, :] * At.conj().swapaxes(-1, -2)).sum(-1))
        g_t = -(beta.conj() * (X[:, aa, :] * DAt.conj().swapaxes(-1, -2)).sum(-1))
        g = ops.cat([g_r, g_t], -1).real  # (B, 2K)
        d = ops.diagonal(N)
        live = d > 0
        if ctx.n_r == 1:
            live[:, :K] = False
        if ctx.n_t == 1:
            live[:, K:] = False
        sd = ops.sqrt(ops.where(live, d, 1.0))
        Ns = N / (sd[:, :, None] * sd[:, None, :])
        gs = ops.where(live, g / sd, 0.0)
        lam_n, Qn = ops.eigh(Ns)  # (B, 2K)
        qg = (Qn.swapaxes(-1, -2) @ gs[:, :, None])[:, :, 0]  # (B, 2K)
        den = lam_n[:, None, :] + mus[None, :, None]  # (B, nmu, 2K)
        ok_den = den > abs(lam_n[:, None, -1:]) * 1e-14
        coef = ops.where(ok_den, qg[:, None, :] / ops.where(ok_den, den, 1.0), 0.0)
        delta = -(coef @ Qn.swapaxes(-1, -2)) / sd[:, None, :]  # (B, nmu, 2K)
        delta = ops.where(live[:, None, :], delta, 0.0)
        wr_c = wr[:, None, :] + delta[:, :, :K]
        wt_c = wt[:, None, :] + delta[:, :, K:]
        Ar_c, At_c, beta_c, R_c, phi_c = _vp_eval(ctx, Y[:, None], wr_c, wt_c)
        better = phi_c < phi[:, None]  # (B, nmu): first (least damped) candidate that lowers the residual
        j = ops.first_true(better)
        acc = better.any(-1)
        bidx = ops.asarray(np.arange(B), "i8")
        wr = ops.where(acc[:, None], wr_c[bidx, j], wr)
        wt = ops.where(acc[:, None], wt_c[bidx, j], wt)
        beta = ops.where(acc[:, None], beta_c[bidx, j], beta)
        Ar = ops.where(acc[:, None, None], Ar_c[bidx, j], Ar)
        At = ops.where(acc[:, None, None], At_c[bidx, j], At)
        R = ops.where(acc[:, None, None], R_c[bidx, j], R)
        phi = ops.where(acc, phi_c[bidx, j], phi)
        n_acc = n_acc + acc
    return _wrap(wr, ops), _wrap(wt, ops), beta, Ar, At, n_acc


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------
def _check_int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise InvalidProblemError(f"{name}: must be an integer >= {lo}, got {value!r}")
    return int(value)


def _resolve(mode, **given):
    if mode not in MODES:
        raise InvalidProblemError(f"mode: must be one of {sorted(MODES)}, got {mode!r}")
    cfg = dict(MODES[mode])
    for key, val in given.items():
        if val is not None:
            cfg[key] = val
    ov = cfg["oversample"]
    if isinstance(ov, bool) or not isinstance(ov, numbers.Real) or not math.isfinite(ov) or ov < 1:
        raise InvalidProblemError(f"oversample: must be a finite number >= 1, got {ov!r}")
    cfg["oversample"] = float(ov)
    cfg["max_sweeps"] = _check_int("max_sweeps", cfg["max_sweeps"], 1)
    cfg["max_newton"] = _check_int("max_newton", cfg["max_newton"], 0)
    cfg["warm_steps"] = _check_int("warm_steps", cfg["warm_steps"], 0)
    tol = cfg["tol"]
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
        raise InvalidProblemError(f"tol: must be a finite number >= 0, got {tol!r}")
    cfg["tol"] = float(tol)
    if cfg["refine"] not in _REFINES:
        raise InvalidProblemError(f"refine: must be one of {list(_REFINES)}, got {cfg['refine']!r}")
    if not isinstance(cfg["joint_ls"], (bool, np.bool_)):
        raise InvalidProblemError(f"joint_ls: must be a bool, got {cfg['joint_ls']!r}")
    cfg["mode"] = mode
    return cfg


def harmonic_retrieval(Y, n_paths, *, mode="stable", oversample=None, max_sweeps=None, tol=None, refine=None,
                       joint_ls=None, paths0=None, max_newton=None, warm_steps=None) -> HRResult:
    """Fit ``n_paths`` 2-D harmonics to ``Y`` (2-D RELAX, spec mimo §3.4): Y ~ A_r(omega_r) diag(beta) A_t(omega_t)^T.

    Parameters
    ----------
    Y : (Nr, Nt) or (..., Nr, Nt) array, numpy or torch (any device)
        Data; complex (real is accepted). Leading axes are independent users, fitted in lockstep.
    n_paths : int >= 1
        Number of paths K.
    mode : {"stable", "reference", "fast"}
        Defaults of the knobs below (``None`` = the mode's default):

        - "stable": oversample 16, max_sweeps 10, tol 1e-3, refine "newton" (max_newton 20), Frobenius norm in
          the stopping rule, factors rebuilt after every update, joint LS of the gains.
        - "reference": oversample 16, max_sweeps 10, tol 1e-3, refine "pg-reference" (20 steps), spectral norm
          in the stopping rule, stale factors, no joint LS.
        - "fast": oversample 4, max_sweeps 3, tol 1e-3, refine "newton" (max_newton 10), Frobenius, joint LS;
          meant to be called with ``paths0`` (warm start) between occasional full RELAX calls.

        "reference" reproduces the authors' code: projected-gradient refinement with an absolute step
        (scale-dependent, spec flaw 6), the spectral norm in the stopping rule and *stale* factors (flaw 7):
        the factors are rebuilt before each re-fit but not after the last one of a sweep, so the component
        updated last in a sweep keeps its previous frequency (with its new gain) in the stopping rule and
        in the returned fit. No joint LS.
    oversample : float >= 1
        Grid size F = 2^ceil(log2(oversample N)) per dimension.
    max_sweeps : int >= 1
        Cap on the cyclic sweeps per stage kbar = 2..K.
    tol : float >= 0
        A stage stops when |e1 - e2| / e1 <= tol, e = squared residual norm before/after a sweep.
    refine : {"newton", "pg-reference"}
        Local refinement of each grid peak: damped 2-D Newton on P = |c|^2 (scale-invariant; at most
        ``max_newton`` steps; stops once max|delta| < 1e-13, that negligible step not being taken), or the
        authors' ``max_newton`` gradient steps.
    joint_ls : bool
        Refit all gains jointly by least squares at the end (beta = G^-1 b, lstsq when cond(G) > 1e12).
    paths0 : tuple (omega_r, omega_t[, beta]) of (..., K) arrays, optional
        Warm start (any mode): instead of RELAX, at most ``warm_steps`` variable-projection
        Levenberg-Marquardt steps on the 2K frequencies from ``paths0`` (gains by LS at every step; ``beta``
        of ``paths0`` is not used). Kaufman's Gauss-Newton matrix; each step tries the Marquardt dampings
        mu in {0, 1e-4, 1e-2, 1, 100} at once and takes the least damped one that lowers the residual, so the
        residual never increases. No grid search: the caller decides when to run the full RELAX instead and
        keeps the lower-residual fit (:func:`better_fit`).
    max_newton : int >= 0
        Refinement steps per fit (Newton or projected gradient).
    warm_steps : int >= 0
        Levenberg-Marquardt steps of the warm start (default 3).

    Returns
    -------
    HRResult
        ``H`` (same shape and backend as Y), ``omega_r``, ``omega_t`` (..., K), ``beta`` (..., K),
        ``residual`` = ||Y - H||_F^2 / max(||Y||_F^2, tiny) (...,), ``sweeps`` (...,), ``warm_start`` (...,).
        Y = 0 gives H = 0, beta = 0 (no NaN). Where Nr = 1 (Nt = 1) omega_r (omega_t) is 0.

    Raises
    ------
    InvalidProblemError
        ``n_paths`` not an integer >= 1, ``Y`` not at least 2-D or not finite, an unknown ``mode``/``refine``,
        ``oversample`` < 1, ``max_sweeps`` < 1, ``tol`` < 0, ``paths0`` of the wrong shape.
    """
    K = _check_int("n_paths", n_paths, 1)
    cfg = _resolve(mode, oversample=oversample, max_sweeps=max_sweeps, tol=tol, refine=refine,
                   joint_ls=joint_ls, max_newton=max_newton, warm_steps=warm_steps)
    is_t = _xp.is_torch(Y)
    if not is_t:
        Y = np.asarray(Y)
        if Y.dtype == object or not (np.issubdtype(Y.dtype, np.number)):
            raise InvalidProblemError(f"Y: must be a numeric array, got dtype {Y.dtype}")
    if Y.ndim < 2:
        raise InvalidProblemError(f"Y: must have shape (..., Nr, Nt), got {tuple(Y.shape)}")
    ops = _Ops(Y)
    batch_shape = tuple(Y.shape[:-2])
    n_r, n_t = int(Y.shape[-2]), int(Y.shape[-1])
    if n_r < 1 or n_t < 1:
        raise InvalidProblemError(f"Y: Nr and Nt must be >= 1, got {tuple(Y.shape)}")
    single = str(Y.dtype).replace("torch.", "") in ("float32", "complex64")
    out_dtype = (ops.torch.complex64 if single else ops.torch.complex128) if is_t else \
        (np.complex64 if single else np.complex128)
    Yc = ops.asarray(Y, "c16").reshape((-1, n_r, n_t))
    if is_t:
        finite = bool(ops.torch.isfinite(Yc).all())
    else:
        finite = bool(np.isfinite(Yc).all())
    if not finite:
        raise InvalidProblemError("Y: must be finite (found NaN or Inf)")
    B = Yc.shape[0]
    ctx = _Ctx(ops, n_r, n_t, K, cfg)

    if paths0 is not None:
        if not isinstance(paths0, (tuple, list)) or len(paths0) not in (2, 3):
            raise InvalidProblemError("paths0: must be a tuple (omega_r, omega_t[, beta])")
        want = batch_shape + (K,)
        w0 = []
        for name, arr in zip(("omega_r", "omega_t"), paths0[:2]):
            a = ops.asarray(arr, "f8")
            if tuple(a.shape) != want:
                raise InvalidProblemError(f"paths0: {name} must have shape {want}, got {tuple(a.shape)}")
            if not bool((a == a).all()) or not bool((abs(a) < math.inf).all()):
                raise InvalidProblemError(f"paths0: {name} must be finite")
            w0.append(a.reshape((-1, K)))
        if len(paths0) == 3 and paths0[2] is not None:
            bshape = tuple(paths0[2].shape) if hasattr(paths0[2], "shape") else np.shape(paths0[2])
            if tuple(bshape) != want:
                raise InvalidProblemError(f"paths0: beta must have shape {want}, got {tuple(bshape)}")
    if B == 0:
        z = ops.zeros((0, K))
        return _pack(ops, batch_shape, n_r, n_t, K, ops.zeros((0, n_r, n_t), "c16"), z, z,
                     ops.zeros((0, K), "c16"), ops.zeros((0,)), ops.zeros((0,), "i8"), paths0 is not None,
                     out_dtype)

    if paths0 is not None:
        wr, wt, beta, Ar, At, sweeps = _warm(ctx, Yc, w0[0], w0[1], cfg["warm_steps"])
    else:
        wr, wt, beta, Ar, At, sweeps = _relax(ctx, Yc)
    H = _synth(Ar, At, beta)
    resid = _fro2(Yc - H) / ops.floor_at(_fro2(Yc), _TINY)
    return _pack(ops, batch_shape, n_r, n_t, K, H, wr, wt, beta, resid, sweeps, paths0 is not None, out_dtype)


def _pack(ops, batch_shape, n_r, n_t, K, H, wr, wt, beta, resid, sweeps, warm, out_dtype):
    if ops.is_torch:
        warm_arr = ops.torch.full(batch_shape, bool(warm), dtype=ops.torch.bool, device=ops.device)
        H = H.to(out_dtype)
    else:
        warm_arr = np.full(batch_shape, bool(warm))
        H = H.astype(out_dtype, copy=False)
    return HRResult(
        H=H.reshape(batch_shape + (n_r, n_t)),
        omega_r=wr.reshape(batch_shape + (K,)),
        omega_t=wt.reshape(batch_shape + (K,)),
        beta=beta.reshape(batch_shape + (K,)),
        residual=resid.reshape(batch_shape),
        sweeps=sweeps.reshape(batch_shape),
        warm_start=warm_arr,
    )


def better_fit(a: HRResult, b: HRResult) -> HRResult:
    """Per user, the fit with the lower ``residual`` (``a`` on ties); both must fit the same Y."""
    if tuple(a.H.shape) != tuple(b.H.shape) or a.n_paths != b.n_paths:
        raise InvalidProblemError("b: must have the shape and number of paths of a")
    ops = _Ops(a.H)
    take_a = a.residual <= b.residual

    def sel(x, y, extra):
        mask = take_a.reshape(tuple(take_a.shape) + (1,) * extra)
        return ops.where(mask, x, y)

    return HRResult(
        H=sel(a.H, b.H, 2), omega_r=sel(a.omega_r, b.omega_r, 1), omega_t=sel(a.omega_t, b.omega_t, 1),
        beta=sel(a.beta, b.beta, 1), residual=sel(a.residual, b.residual, 0), sweeps=sel(a.sweeps, b.sweeps, 0),
        warm_start=sel(a.warm_start, b.warm_start, 0),
    )
