"""Interval-probit (truncated-normal) kernels of the REDEEM likelihood, for numpy and torch.

A quantized measurement says w in [lo, hi] with w ~ N(mu, sigma^2). With a = (lo - mu)/sigma and
b = (hi - mu)/sigma (lo = -inf and hi = +inf allowed) the cell probability, the posterior moments
and the derivatives used by the E-step, the Newton u-solver and the quantization-aware loss are

    P     = Phi(b) - Phi(a)
    r1    = (phi(a) - phi(b)) / P,        r2 = (a phi(a) - b phi(b)) / P   (x phi(x) = 0 at +-inf)
    mean  = E[w | cell]   = mu + sigma r1
    var   = Var[w | cell] = sigma^2 (1 + r2 - r1^2)
    D     = d^2(-log P)/dmu^2 = (1 - var/sigma^2) / sigma^2  in [0, 1/sigma^2]
    d(-log P)/dmu = -r1/sigma,   d(-log P)/dsigma = -r2/sigma

Every function is elementwise with numpy broadcasting over arbitrary shapes, written once for numpy
(scipy.special) and torch (torch.special); torch is only touched when a tensor is passed. The stable
kernel (spec section 3.3) never floors P: it works in log space and in the frame of the nearest cell
edge, so it stays exact where the textbook formula returns 0/0 (mu = 40 sigma away from the cell).
torch inputs may require grad: the branches are evaluated on substituted finite values, so autograd
through the kernel gives finite, correct derivatives (``interval_probit_nll`` uses the analytic ones).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import scipy.special

from .._errors import BackendError, InvalidProblemError
from . import _xp

__all__ = [
    "truncnorm_terms",
    "truncnorm_moments",
    "interval_probit_nll",
    "naive_moments",
    "curvature_weights",
    "nll_grad",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)

# Midpoint series where w (|c| + 4) <= _MID_LIMIT (w = b - a, c = (a + b)/2). Its n-th term is
# bounded by (h (|c| + sqrt n))^n / n! with h = w/2 <= 1/(|c| + 4), so n <= 24 reaches 1e-24 relative.
# The window holds every cell with b - a < 1e-4 (spec section 3.3) unless |c| > 2e4, where the edge
# frame is exact anyway (a w >= 2, so R(a) - e R(b) does not cancel). It is wider than 1e-4 because
# the variance ~ w^2/12 of a narrow cell cancels in 1 + r2 - r1^2 (relative error ~ eps (1 + c^2)/w^2).
_MID_LIMIT = 2.0
_MID_TERMS = 24
# From a = 4 on, the variance ~ 1/a^2 cancels in 1 + r2 - r1^2 (relative error ~ eps a^4, 1e-9 at
# a = 58); there it comes from the continued-fraction tails of the Mills ratio, which reach 1e-16
# in 32 levels for a >= 4 when started from the fixed point of T_k = k/(x + T_k) (50-digit mpmath).
_CF_START = 4.0
_CF_DEPTH = 32

_REDUCTIONS = ("sum", "mean", "none")


# --------------------------------------------------------------------------------------------- helpers
def _ns(x):
    return _xp.get_torch() if _xp.is_torch(x) else np


def _erf(x):
    return _xp.get_torch().special.erf(x) if _xp.is_torch(x) else scipy.special.erf(x)


def _ndtr_lower(x):
    """Phi(x) for x <= 0 through erfc: torch.special.ndtr is 1 + erf, which underflows to 0 below -8."""
    erfc = _xp.get_torch().special.erfc if _xp.is_torch(x) else scipy.special.erfc
    return 0.5 * erfc(-x * _INV_SQRT2)


def _quiet(x):
    # numpy warns on the unselected lanes of a branch (inf - inf, log 0); torch does not warn
    return contextlib.nullcontext() if _xp.is_torch(x) else np.errstate(all="ignore")


def _any_each(*masks):
    """Which masks have a true entry, in one host transfer (a device sync costs less than the
    few hundred kernel launches of an unused series branch)."""
    if _xp.is_torch(masks[0]):
        return _xp.get_torch().stack([m.any() for m in masks]).tolist()
    return [bool(m.any()) for m in masks]


def _prepare(mu, lo, hi, sigma):
    """The four inputs on one backend: numpy float arrays, or tensors on the first tensor's device
    with the dtype promoted among the tensors (numpy data and scalars follow it, never the reverse)."""
    args = (mu, lo, hi, sigma)
    tensors = [x for x in args if _xp.is_torch(x)]
    if not tensors:
        arrs = [np.asarray(x) for x in args]
        for name, x in zip(("mu", "lo", "hi", "sigma"), arrs):
            if x.dtype.kind == "c":
                raise InvalidProblemError(f"{name}: must be real, got dtype {x.dtype}")
        dtype = np.result_type(*[x.dtype for x in arrs], np.float16)
        return tuple(x.astype(dtype, copy=False) for x in arrs)
    torch = _xp.get_torch()
    device = tensors[0].device
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t.device != device:
            raise BackendError(f"mu, lo, hi, sigma: tensors on different devices ({device} and {t.device})")
        dtype = torch.promote_types(dtype, t.dtype)
    if dtype.is_complex:
        raise InvalidProblemError(f"mu, lo, hi, sigma: must be real, got dtype {dtype}")
    if not dtype.is_floating_point:
        dtype = torch.float64
    out = []
    for x in args:
        if _xp.is_torch(x):
            out.append(x if x.dtype == dtype else x.to(dtype))
        else:
            out.append(torch.as_tensor(np.asarray(x, dtype=np.float64), device=device).to(dtype))
    return tuple(out)


def _check_sigma(sigma) -> None:
    if _xp.is_torch(sigma):
        torch = _xp.get_torch()
        bad = bool(((~(sigma > 0)) | torch.isinf(sigma)).any())
    else:
        bad = bool(((~(sigma > 0)) | np.isinf(sigma)).any())
    if bad:
        raise InvalidProblemError("sigma: must be positive and finite everywhere")


def _mills_tails(x):
    """(T1, T2) of the Laplace continued fraction R(x) = 1/(x + T1), T_k = k/(x + T_{k+1}), x >= 5.

    T1 = 1/R - x is the mean excess of N(0,1) above x and T1 (T2 - T1) its variance; both would
    cancel catastrophically if taken from R itself.
    """
    t = 0.5 * (((x * x + 4.0 * (_CF_DEPTH + 1)) ** 0.5) - x)  # fixed point of the tail
    for k in range(_CF_DEPTH, 1, -1):
        t = k / (x + t)
    return 1.0 / (x + t), t


def _midpoint(c, h):
    """Moments of N(0,1) restricted to [c - h, c + h] by a series in h (spec: midpoint expansion).

    phi(c + s) = phi(c) exp(-c s - s^2/2) = phi(c) sum_n He_n(c) (-s)^n / n!, integrated term by
    term over s in [-h, h]; u_n = He_n(c) h^n / n! obeys u_{n+1} = (c h u_n - h^2 u_{n-1})/(n+1),
    which never forms the huge He_n(c) or the tiny h^n on their own (float32 safe).
    Returns (log P, E[s], Var[s]) with s = x - c.
    """
    ch = c * h
    hh = h * h
    u_prev, u = ch * 0.0 + 1.0, ch
    s0 = u_prev  # sum over even n of u_n/(n+1)
    s1 = u / 3.0  # sum over odd n of u_n/(n+2)
    s2 = u_prev / 3.0  # sum over even n of u_n/(n+3)
    for n in range(1, _MID_TERMS):
        u_prev, u = u, (ch * u - hh * u_prev) / (n + 1)
        m = n + 1
        if m % 2 == 0:
            s0 = s0 + u / (m + 1)
            s2 = s2 + u / (m + 3)
        else:
            s1 = s1 + u / (m + 2)
    xp = _ns(c)
    logp = -0.5 * c * c - _LOG_SQRT_2PI + xp.log(2.0 * h * s0)
    q1 = s1 / s0
    return logp, -h * q1, hh * (s2 / s0 - q1 * q1)


def _kernel(mu, lo, hi, sigma):
    """Stable kernel on prepared inputs: (log P, r1, r2, mean, var/sigma^2, 1 - var/sigma^2)."""
    xp = _ns(mu)
    W = _xp.where
    lo_inf = xp.isinf(lo)
    hi_inf = xp.isinf(hi)
    # Infinite edges are replaced by 0 before any arithmetic that touches mu or sigma: an infinite
    # a = (lo - mu)/sigma would put inf * 0 = nan into the sigma-derivative under autograd.
    lo_f = W(lo_inf, 0.0, lo)
    hi_f = W(hi_inf, 0.0, hi)
    a = (lo_f - mu) / sigma
    b = (hi_f - mu) / sigma
    finite = ~(lo_inf | hi_inf)
    w = (hi_f - lo_f) / sigma  # from the edges, not b - a: exact width for narrow cells
    c = ((lo_f + hi_f) * 0.5 - mu) / sigma

    mid = finite & (w * (abs(c) + 4.0) <= _MID_LIMIT)
    pos = ~mid & ~lo_inf & (a >= 0)
    neg = ~mid & ~pos & ~hi_inf & (b <= 0)
    one = pos | neg
    strd = ~(mid | one)
    cf = one & (W(pos, a, -b) >= _CF_START)
    any_strd, any_one, any_cf, any_mid = _any_each(strd, one, cf, mid)
    ones = (a + b) * 0.0 + 1.0

    # Start from the straddling lanes' values and overwrite with the other branches.
    # --- a < 0 < b: P = (erf(b/sqrt2) + erf(-a/sqrt2))/2 adds two positive terms, no cancellation
    if any_strd:
        a_s = W(strd & ~lo_inf, a, -1.0)
        b_s = W(strd & ~hi_inf, b, 1.0)
        pa = W(lo_inf, 0.0, xp.exp(-0.5 * a_s * a_s) * _INV_SQRT_2PI)
        pb = W(hi_inf, 0.0, xp.exp(-0.5 * b_s * b_s) * _INV_SQRT_2PI)
        P = 0.5 * (W(lo_inf, 1.0, _erf(-a_s * _INV_SQRT2)) + W(hi_inf, 1.0, _erf(b_s * _INV_SQRT2)))
        q = W(lo_inf, 0.0, _ndtr_lower(a_s)) + W(hi_inf, 0.0, _ndtr_lower(-b_s))
        # log1p keeps log P relative-accurate when the cell holds almost all the mass
        logp = W(q < 0.5, xp.log1p(-W(q < 0.5, q, 0.0)), xp.log(P))
        r1 = (pa - pb) / P
        r2 = (a_s * pa - b_s * pb) / P
        dp = r1 * r1 - r2  # 1 - var/sigma^2 without the cancellation of 1 - (1 + r2 - r1^2)
        v = 1.0 - dp
        mean = mu + sigma * r1
    else:
        logp, r1, r2, dp, v, mean = ones, ones * 0.0, ones * 0.0, ones, ones * 0.0, mu * ones

    # --- a >= 0 (b <= 0 reflected to (-b, -a)): edge frame t = x - a, weight exp(-a t - t^2/2)
    if any_one:
        aa = W(pos, a, W(neg, -b, 1.0))
        bb = W(pos, b, W(neg, -a, 2.0))
        far_inf = one & W(pos, hi_inf, lo_inf)
        bb = W(far_inf, aa + 1.0, bb)
        ww = W(one & ~far_inf, w, 1.0)
        x = -0.5 * ww * (aa + bb)  # (a^2 - b^2)/2
        e = W(far_inf, 0.0, xp.exp(x))
        one_m_e = W(far_inf, 1.0, -xp.expm1(x))
        Ra = _SQRT_HALF_PI * _xp.erfcx(aa * _INV_SQRT2)  # Mills ratio Phi(-a)/phi(a)
        Rb = _SQRT_HALF_PI * _xp.erfcx(bb * _INV_SQRT2)
        Z = Ra - e * Rb  # P / phi(a)
        logp1 = -0.5 * aa * aa - _LOG_SQRT_2PI + xp.log(Z)
        r1_1 = one_m_e / Z
        r2_1 = (aa - bb * e) / Z
        t1 = r1_1 - aa  # E[t]
        v1 = 1.0 + r2_1 - r1_1 * r1_1
        if any_cf:
            # [a, inf) = cell + [b, inf) with tail fraction p: undo the law of total variance
            ac = W(cf, aa, _CF_START)
            bc = W(cf, bb, _CF_START + 1.0)
            T1a, T2a = _mills_tails(ac)
            T1b, T2b = _mills_tails(bc)
            p = W(cf, e * Rb / Ra, 0.0)
            qq = 1.0 - p
            delta = W(cf, ww, 1.0) + T1b - T1a
            t_cf = (T1a - p * (T1b + W(cf, ww, 1.0))) / qq
            v_cf = (T1a * (T2a - T1a) - p * T1b * (T2b - T1b)) / qq - p * delta * delta / (qq * qq)
            t1 = W(cf, t_cf, t1)
            v1 = W(cf, v_cf, v1)
        sgn = W(neg, -1.0, 1.0)
        edge = W(neg, hi_f, lo_f)
        logp = W(one, logp1, logp)
        r1 = W(one, sgn * r1_1, r1)
        r2 = W(one, r2_1, r2)
        v = W(one, v1, v)
        dp = W(one, 1.0 - v1, dp)  # var <= (1 - 2/pi) sigma^2 here, so 1 - v is exact
        mean = W(one, edge + sgn * sigma * t1, mean)

    # --- narrow cells: series about the midpoint
    if any_mid:
        cm = W(mid, c, 0.0)
        hm = W(mid, 0.5 * w, 0.1)
        logp_m, m1, vm = _midpoint(cm, hm)
        r1_m = cm + m1
        logp = W(mid, logp_m, logp)
        r1 = W(mid, r1_m, r1)
        r2 = W(mid, cm * cm - 1.0 + 2.0 * cm * m1 + m1 * m1 + vm, r2)  # E[x^2] - 1
        v = W(mid, vm, v)
        dp = W(mid, 1.0 - vm, dp)
        mean = W(mid, (lo_f + hi_f) * 0.5 + sigma * m1, mean)
    return logp, r1, r2, mean, v, dp


# ------------------------------------------------------------------------------------------ public API
def _checked_kernel(mu, lo, hi, sigma):
    """The public functions' common path: one backend, sigma checked, the kernel's outputs and sigma."""
    mu, lo, hi, sigma = _prepare(mu, lo, hi, sigma)
    _check_sigma(sigma)
    with _quiet(mu):
        return _kernel(mu, lo, hi, sigma), sigma


def truncnorm_terms(mu, lo, hi, sigma):
    """Log cell probability and the two ratios every derivative is built from (no input checks).

    Parameters
    ----------
    mu, lo, hi, sigma : array_like or torch.Tensor
        Broadcastable; ``lo``/``hi`` may be ``-inf``/``+inf``; ``sigma > 0`` is assumed (this is the
        hot-loop kernel: use :func:`truncnorm_moments` for a checked call).

    Returns
    -------
    logp, r1, r2 : arrays of the broadcast shape
        ``logp = log(Phi(b) - Phi(a))``, ``r1 = (phi(a) - phi(b))/P``, ``r2 = (a phi(a) - b phi(b))/P``
        with ``a = (lo - mu)/sigma``, ``b = (hi - mu)/sigma`` and ``x phi(x) = 0`` at infinity. Then
        ``mean = mu + sigma r1``, ``var = sigma^2 (1 + r2 - r1^2)``,
        ``D = (1 - var/sigma^2)/sigma^2 = (r1^2 - r2)/sigma^2``, ``d(-logP)/dmu = -r1/sigma`` and
        ``d(-logP)/dsigma = -r2/sigma``.

    Notes
    -----
    Branches (spec section 3.3): a >= 0 uses the Mills ratio ``m(x) = sqrt(pi/2) erfcx(x/sqrt2)``,
    ``e = exp((a^2 - b^2)/2)``, ``P = phi(a) (m(a) - e m(b))``, ``r1 = (1 - e)/(m(a) - e m(b))``,
    ``r2 = (a - b e)/(m(a) - e m(b))``; b <= 0 is reflected to (-b, -a); a < 0 < b uses
    ``P = (erf(b/sqrt2) + erf(-a/sqrt2))/2`` (two positive terms); narrow cells
    (``(b - a)(|a + b|/2 + 4) <= 1``, which contains every ``b - a < 1e-4`` with ``|a + b| < 2e4``)
    use a Hermite series about the midpoint. P is never floored.
    """
    mu, lo, hi, sigma = _prepare(mu, lo, hi, sigma)
    with _quiet(mu):
        logp, r1, r2, _, _, _ = _kernel(mu, lo, hi, sigma)
    return logp, r1, r2


def truncnorm_moments(mu, lo, hi, sigma):
    """Log probability, mean and variance of ``w ~ N(mu, sigma^2)`` given ``lo <= w <= hi``.

    Parameters
    ----------
    mu, lo, hi, sigma : array_like or torch.Tensor
        Broadcastable. ``lo < hi``; either may be infinite. ``sigma`` must be positive and finite.

    Returns
    -------
    logp : log(Phi(b) - Phi(a)), a = (lo - mu)/sigma, b = (hi - mu)/sigma
    mean : mu + sigma (phi(a) - phi(b))/P  (the E-step's w_hat)
    var : sigma^2 (1 + (a phi(a) - b phi(b))/P - ((phi(a) - phi(b))/P)^2)

    Notes
    -----
    Evaluated in the frame of the nearest cell edge (or the midpoint for narrow cells) so that
    mean and var keep their relative accuracy far in the tails; for a >= 5 the variance, which is
    ~ sigma^2/a^2 there, comes from the Mills-ratio continued fraction instead of the cancelling
    ``1 + r2 - r1^2``. Accuracy against 60-digit mpmath: ~1e-14 relative (float64).

    Raises
    ------
    InvalidProblemError
        ``sigma`` not positive and finite.
    """
    (logp, _, _, mean, v, _), sigma = _checked_kernel(mu, lo, hi, sigma)
    return logp, mean, v * sigma * sigma


def _reduce_last(x, reduction):
    if reduction == "none" or x.ndim == 0:
        return x
    if _xp.is_torch(x):
        return x.sum(-1) if reduction == "sum" else x.mean(-1)
    return x.sum(axis=-1) if reduction == "sum" else x.mean(axis=-1)


def interval_probit_nll(mu, lo, hi, sigma, reduction="sum"):
    """Interval-probit negative log-likelihood ``-log(Phi((hi - mu)/sigma) - Phi((lo - mu)/sigma))``.

    Parameters
    ----------
    mu, lo, hi, sigma : array_like or torch.Tensor
        Broadcastable; the last axis indexes the R measurements of one problem.
    reduction : {"sum", "mean", "none"}
        "sum" (default) and "mean" reduce over the **last axis only**, so (B, R) inputs give (B,)
        (0-d inputs are returned as they are); "none" returns the elementwise terms.

    Returns
    -------
    Array or tensor. For tensors that require grad (``mu`` or ``sigma``) the value carries the
    analytic gradient ``d/dmu = -r1/sigma = -(mean - mu)/sigma^2``, ``d/dsigma = -r2/sigma``
    (see :class:`optkit.mimo.layers.IntervalProbitNLL`); cell edges get no gradient.

    Raises
    ------
    InvalidProblemError
        ``reduction`` not one of the three; ``sigma`` not positive and finite.
    """
    if reduction not in _REDUCTIONS:
        raise InvalidProblemError(f"reduction: must be 'sum', 'mean' or 'none', got {reduction!r}")
    mu, lo, hi, sigma = _prepare(mu, lo, hi, sigma)
    _check_sigma(sigma)
    if _xp.is_torch(mu):
        torch = _xp.get_torch()
        if torch.is_grad_enabled() and (mu.requires_grad or sigma.requires_grad):
            from .layers import _IntervalProbitFn

            nll = _IntervalProbitFn.apply(mu, lo, hi, sigma)[0]
            return _reduce_last(nll, reduction)
    with _quiet(mu):
        logp = _kernel(mu, lo, hi, sigma)[0]
    return _reduce_last(-logp, reduction)


def naive_moments(mu, lo, hi, sigma, phi_floor=1e-3):
    """Reference-mode E-step of the authors' code: the textbook formula with P floored.

    ``P = max(Phi(b) - Phi(a), phi_floor)`` (``Phi`` = ndtr), ``mean = mu + sigma (phi(a) - phi(b))/P``,
    ``var = sigma^2 (1 + (a phi(a) - b phi(b))/P - ((phi(a) - phi(b))/P)^2)``, ``logp = log P``.

    The floor makes the E-step return ``w_hat ~ mu`` whenever mu is a few sigma outside its cell,
    which gives the spurious fixed points of spec section 4, flaw 4; ``phi_floor=0`` is the unfloored
    textbook formula, which is 0/0 = nan once both Phi values round to the same number (mu = 40,
    sigma = 0.7, cell [-1, 1]). Use :func:`truncnorm_moments` for the likelihood itself.

    Raises
    ------
    InvalidProblemError
        ``phi_floor`` negative or not finite; ``sigma`` not positive and finite.
    """
    if not (isinstance(phi_floor, (int, float)) and math.isfinite(phi_floor) and phi_floor >= 0):
        raise InvalidProblemError(f"phi_floor: must be a finite number >= 0, got {phi_floor!r}")
    mu, lo, hi, sigma = _prepare(mu, lo, hi, sigma)
    _check_sigma(sigma)
    xp = _ns(mu)
    W = _xp.where
    with _quiet(mu):
        a = (lo - mu) / sigma
        b = (hi - mu) / sigma
        P = _xp.ndtr(b) - _xp.ndtr(a)
        if phi_floor > 0:
            P = W(P < phi_floor, phi_floor + 0.0 * P, P)
        pa = xp.exp(-0.5 * a * a) * _INV_SQRT_2PI
        pb = xp.exp(-0.5 * b * b) * _INV_SQRT_2PI
        apa = W(xp.isinf(a), 0.0, a * pa)
        bpb = W(xp.isinf(b), 0.0, b * pb)
        r1 = (pa - pb) / P
        r2 = (apa - bpb) / P
        return xp.log(P), mu + sigma * r1, sigma * sigma * (1.0 + r2 - r1 * r1)


def curvature_weights(mu, lo, hi, sigma):
    """Curvature of ``-log P`` in mu: ``D = (1 - var/sigma^2)/sigma^2``, in ``[0, 1/sigma^2]``.

    The Newton u-solver's Hessian is ``A^T diag(D) A + rho I`` (spec section 3.2). Computed as
    ``(r1^2 - r2)/sigma^2`` where the variance is close to sigma^2 and from the stable variance
    where it is small, so both ends keep their relative accuracy.

    Raises
    ------
    InvalidProblemError
        ``sigma`` not positive and finite.
    """
    k, sigma = _checked_kernel(mu, lo, hi, sigma)
    return k[5] / (sigma * sigma)


def nll_grad(mu, lo, hi, sigma):
    """Elementwise derivatives of ``-log P``: ``(d/dmu, d/dsigma) = (-r1/sigma, -r2/sigma)``.

    ``-r1/sigma = -(mean - mu)/sigma^2`` and ``-r2/sigma = -(a phi(a) - b phi(b))/(sigma P)``
    (spec section 2, MLE paragraph).

    Raises
    ------
    InvalidProblemError
        ``sigma`` not positive and finite.
    """
    (_, r1, r2, _, _, _), sigma = _checked_kernel(mu, lo, hi, sigma)
    return -r1 / sigma, -r2 / sigma
