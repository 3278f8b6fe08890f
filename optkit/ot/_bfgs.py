"""Batched nonsmooth (L-)BFGS with a weak-Wolfe bisection line search, in lockstep.

The semi-dual and dual objectives of sparsity-constrained OT are concave and piecewise smooth:
strong-Wolfe line searches and relative-reduction stopping tests stall at their kinks (ot.md §3.2).
Lewis & Overton (Math. Prog. 2013) show that BFGS with a *weak* Wolfe bracketing search keeps
making progress on such functions; this module implements it for a batch of independent problems
advancing together, so that one code path serves numpy (batch of one) and torch (any device).

All arrays carry a leading batch dimension ``B``; per-instance decisions are masks, never Python
branches on one instance's values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

C1, C2 = 1e-4, 0.9
MAX_TRIALS = 50


@dataclasses.dataclass
class LineSearchResult:
    t: Any  # (B,) accepted step (0 where nothing was accepted)
    f: Any  # (B,) objective at the accepted point
    g: Any  # (B, d) gradient there
    aux: Any  # kernel extras (plan) at the accepted point, rows of instances without a step stale
    ok: Any  # (B,) bool: a decreasing step was taken
    nfev: int


def _take(xp, mask, new, old):
    """Rows of ``new`` where ``mask`` else ``old`` (mask is (B,), arrays have a leading B)."""
    shape = (mask.shape[0],) + (1,) * (new.ndim - 1)
    return xp.where(xp.reshape(mask, shape), new, old)


def weak_wolfe(xp, fun: Callable, z, f0, g0, d, active, merge_aux: Callable, t0=None):
    """Weak-Wolfe bisection (Lewis & Overton) for every active instance at once.

    ``fun(z) -> (f, g, aux)``. ``merge_aux(mask, new, old)`` selects kernel extras per instance.
    An instance accepts the first trial meeting both the Armijo and the weak curvature condition;
    failing that after ``MAX_TRIALS`` trials, the best decreasing trial; else it reports no step.
    """
    dphi0 = xp.sum(g0 * d, axis=-1)
    t = xp.ones_like(f0) if t0 is None else t0 * 1.0
    lo = xp.zeros_like(f0)
    hi = xp.full_like(f0, float("inf"))
    done = ~active
    acc_t = xp.zeros_like(f0)
    acc_f, acc_g, acc_aux = f0, g0, None
    best_t = xp.zeros_like(f0)
    best_f = f0
    best_g, best_aux = g0, None
    nfev = 0
    for _ in range(MAX_TRIALS):
        zt = z + t[:, None] * d
        ft, gt, aux = fun(zt)
        nfev += 1
        if acc_aux is None:
            acc_aux = best_aux = aux
        finite = xp.isfinite(ft) & xp.all(xp.isfinite(gt), axis=-1)
        armijo_fail = ~finite | (ft > f0 + C1 * t * dphi0)
        curv_fail = ~armijo_fail & (xp.sum(gt * d, axis=-1) < C2 * dphi0)
        accept = ~done & ~armijo_fail & ~curv_fail
        better = ~done & finite & (ft < best_f)
        best_t = xp.where(better, t, best_t)
        best_f = xp.where(better, ft, best_f)
        best_g = _take(xp, better, gt, best_g)
        best_aux = merge_aux(better, aux, best_aux)
        acc_t = xp.where(accept, t, acc_t)
        acc_f = xp.where(accept, ft, acc_f)
        acc_g = _take(xp, accept, gt, acc_g)
        acc_aux = merge_aux(accept, aux, acc_aux)
        done = done | accept
        if bool(xp.all(done)):
            break
        hi = xp.where(~done & armijo_fail, t, hi)
        lo = xp.where(~done & curv_fail, t, lo)
        bracketed = xp.isfinite(hi)
        # a collapsed bracket cannot yield a step: give up on that instance now rather than
        # making every other instance of the batch wait for the remaining trials
        done = done | (bracketed & (hi - lo <= 1e-12 * hi))
        if bool(xp.all(done)):
            break
        t = xp.where(done, t, xp.where(bracketed, 0.5 * (lo + hi), 2.0 * lo))
    accepted = acc_t > 0
    fallback = active & ~accepted & (best_t > 0)
    t_out = xp.where(accepted, acc_t, xp.where(fallback, best_t, xp.zeros_like(acc_t)))
    f_out = xp.where(accepted, acc_f, xp.where(fallback, best_f, f0))
    g_out = _take(xp, accepted, acc_g, _take(xp, fallback, best_g, g0))
    aux_out = merge_aux(fallback & ~accepted, best_aux, acc_aux)
    ok = active & (accepted | fallback)
    return LineSearchResult(t_out, f_out, g_out, aux_out, ok, nfev)


class DenseInverseHessian:
    """Dense inverse-Hessian approximations H (B, d, d), updated in place by the O(d^2) rank-2 form.

    numpy keeps only the upper triangle current and works through BLAS ``syr2``/``syr``/``symv``
    (a 1000 x 1000 update in ~1 ms instead of ~15 ms of full-matrix temporaries); torch uses
    in-place batched rank-one GEMMs (``baddbmm_``), which allocate nothing of size d^2.
    """

    def __init__(self, xp, B, d, dtype, device):
        self.xp = xp
        self.numpy = device is None
        if self.numpy:
            import numpy as np
            from scipy.linalg import blas

            self._blas = blas
            self.H = np.zeros((B, d, d), dtype=dtype)
            self.H[:] = np.eye(d, dtype=dtype)
        else:
            eye = xp.eye(d, dtype=dtype, device=device)
            self.H = xp.broadcast_to(eye, (B, d, d)) * 1.0
        self.fresh = xp.ones((B,), dtype=xp.bool, device=device)
        self.d = d

    def direction(self, g):
        if self.numpy:
            import numpy as np

            symv = self._blas.dsymv if g.dtype == np.float64 else self._blas.ssymv
            # H[b].T is the Fortran view of the C-ordered array; its "lower" = our upper triangle
            return np.stack([-symv(1.0, self.H[b].T, g[b], lower=1) for b in range(g.shape[0])])
        return -(self.H @ g[..., None])[..., 0]

    def reset(self, mask):
        xp = self.xp
        if self.numpy:
            import numpy as np

            for b in np.flatnonzero(mask):
                self.H[b] = np.eye(self.d, dtype=self.H.dtype)
        else:
            eye = xp.eye(self.d, dtype=self.H.dtype, device=self.H.device)
            self.H = xp.where(mask[:, None, None], eye[None], self.H)
        self.fresh = self.fresh | mask

    def update(self, s, y, mask):
        xp = self.xp
        sy = xp.sum(s * y, axis=-1)
        yy = xp.sum(y * y, axis=-1)
        # the first pair only sets the scale: H = (s.y / y.y) I (Nocedal & Wright eq. 6.20)
        first = mask & self.fresh
        scale = xp.where(first, sy / xp.where(yy > 0, yy, 1.0), 1.0)
        rho = xp.where(mask, 1.0 / xp.where(mask, sy, 1.0), 0.0)
        if self.numpy:
            import numpy as np

            blas = self._blas
            f64 = self.H.dtype == np.float64
            syr2, syr, symv = ((blas.dsyr2, blas.dsyr, blas.dsymv) if f64 else
                               (blas.ssyr2, blas.ssyr, blas.ssymv))
            for b in np.flatnonzero(mask):
                Hb = self.H[b].T  # Fortran-contiguous view, updated in place
                if first[b]:
                    Hb *= scale[b]
                q = symv(1.0, Hb, y[b], lower=1)
                c = rho[b] * rho[b] * float(y[b] @ q) + rho[b]
                syr2(-rho[b], s[b], q, a=Hb, lower=1, overwrite_a=True)
                syr(c, s[b], a=Hb, lower=1, overwrite_a=True)
        else:
            self.H.mul_(scale[:, None, None])
            q = (self.H @ y[..., None])[..., 0]
            c = rho * rho * xp.sum(y * q, axis=-1) + rho
            s3, q3 = s[:, :, None], q[:, :, None]
            r = rho[:, None, None]
            self.H.baddbmm_(-r * s3, q3.transpose(1, 2))
            self.H.baddbmm_(-r * q3, s3.transpose(1, 2))
            self.H.baddbmm_(c[:, None, None] * s3, s3.transpose(1, 2))
        self.fresh = self.fresh & ~mask


class LimitedInverseHessian:
    """L-BFGS two-loop recursion with a ring buffer; skipped pairs are stored with rho = 0 (no-ops)."""

    def __init__(self, xp, B, d, dtype, device, history):
        self.xp = xp
        self.h = history
        self.S = xp.zeros((B, history, d), dtype=dtype, device=device)
        self.Y = xp.zeros((B, history, d), dtype=dtype, device=device)
        self.rho = xp.zeros((B, history), dtype=dtype, device=device)
        self.gamma = xp.ones((B,), dtype=dtype, device=device)
        self.ptr = 0
        self.count = 0

    def direction(self, g):
        xp = self.xp
        q = -g
        order = [(self.ptr - 1 - i) % self.h for i in range(min(self.count, self.h))]
        alphas = []
        for i in order:
            a_i = self.rho[:, i] * xp.sum(self.S[:, i] * q, axis=-1)
            q = q - a_i[:, None] * self.Y[:, i]
            alphas.append(a_i)
        r = self.gamma[:, None] * q
        for i, a_i in zip(reversed(order), reversed(alphas)):
            b_i = self.rho[:, i] * xp.sum(self.Y[:, i] * r, axis=-1)
            r = r + (a_i - b_i)[:, None] * self.S[:, i]
        return r

    def reset(self, mask):
        xp = self.xp
        self.rho = xp.where(mask[:, None], 0.0, self.rho)
        self.gamma = xp.where(mask, 1.0, self.gamma)

    def update(self, s, y, mask):
        xp = self.xp
        sy = xp.sum(s * y, axis=-1)
        yy = xp.sum(y * y, axis=-1)
        i = self.ptr
        m3 = mask[:, None]
        self.S[:, i] = xp.where(m3, s, 0.0)
        self.Y[:, i] = xp.where(m3, y, 0.0)
        self.rho[:, i] = xp.where(mask, 1.0 / xp.where(mask, sy, 1.0), 0.0)
        self.gamma = xp.where(mask, sy / xp.where(yy > 0, yy, 1.0), self.gamma)
        self.ptr = (self.ptr + 1) % self.h
        self.count += 1
