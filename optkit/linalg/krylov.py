"""Batched Krylov solvers for symmetric linear operators (torch).

Both solvers take a ``matvec`` acting on a ``(B, n)`` tensor of ``B`` independent right-hand sides
and keep one convergence mask per instance: converged instances are frozen while the others go on.
Convergence is polled on the host only every ``check_every`` iterations, so a GPU run is not
stalled by a device-to-host sync per iteration (DESIGN.md §4).

numpy right-hand sides are accepted too: they are solved on the CPU through torch and the solution
comes back as a numpy array (``matvec`` then receives and returns numpy arrays).
"""

from __future__ import annotations

import math
import numbers

from .._backend import get_torch, is_torch

__all__ = ["cg", "minres"]


def _validate(b, rtol, atol, maxiter, check_every):
    for name, val in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(val, numbers.Real) and math.isfinite(val) and val >= 0):
            raise ValueError(f"{name}: must be a finite number >= 0, got {val!r}")
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral)
                                or maxiter < 0):
        raise ValueError(f"maxiter: must be None or an integer >= 0, got {maxiter!r}")
    if isinstance(check_every, bool) or not isinstance(check_every, numbers.Integral) or check_every < 1:
        raise ValueError(f"check_every: must be an integer >= 1, got {check_every!r}")
    if b.ndim not in (1, 2):
        raise ValueError(f"b: expected shape (n,) or (B, n), got {tuple(b.shape)}")
    if not b.is_floating_point():
        raise ValueError(f"b: expected a floating dtype, got {b.dtype}")


def _prepare(matvec, b, x0, rtol, atol, maxiter, check_every):
    """Normalise to torch ``(B, n)`` and return the pieces plus a function restoring the caller's form."""
    torch = get_torch()
    numpy_in = not is_torch(b)
    if numpy_in:
        import numpy as np

        b = torch.as_tensor(np.asarray(b, dtype=np.float64))
        x0 = None if x0 is None else torch.as_tensor(np.asarray(x0, dtype=np.float64))
        user_matvec = matvec
        shape_of_call = b.shape

        def matvec(v):
            out = np.asarray(user_matvec(v.reshape(shape_of_call).numpy()), dtype=np.float64)
            return torch.as_tensor(out).reshape(v.shape)
    _validate(b, rtol, atol, maxiter, check_every)
    squeeze = b.ndim == 1
    B = b.unsqueeze(0) if squeeze else b
    if x0 is not None:
        if tuple(x0.shape) != tuple(b.shape):
            raise ValueError(f"x0: expected shape {tuple(b.shape)} like b, got {tuple(x0.shape)}")
        x0 = (x0.unsqueeze(0) if squeeze else x0).to(B)
    if squeeze and not numpy_in:
        user_matvec = matvec

        def matvec(v):
            return user_matvec(v.squeeze(0)).unsqueeze(0)

    def finish(x, info):
        if squeeze:
            x = x.squeeze(0)
            info = {**info, "converged": info["converged"].squeeze(0),
                    "residual": info["residual"].squeeze(0)}
        if numpy_in:
            x = x.numpy()
            info = {k: (v.numpy() if is_torch(v) else v) for k, v in info.items()}
        return x, info

    return matvec, B, x0, finish


def _dot(u, v):
    return (u * v).sum(-1)


def cg(matvec, b, *, x0=None, rtol=1e-10, atol=0.0, maxiter=None, check_every=10):
    """Conjugate gradients for symmetric positive (semi)definite systems, batched.

    Parameters
    ----------
    matvec : callable
        ``v -> A v`` on a ``(B, n)`` tensor (or on an ``(n,)`` tensor when ``b`` is 1-D).
        ``A`` must be symmetric positive semidefinite; a singular system must be consistent.
    b : tensor of shape (B, n) or (n,)
        Right-hand sides; instances are solved independently.
    x0 : tensor like ``b``, optional
        Starting point (zero by default).
    rtol, atol : float
        Instance ``i`` stops once ``||r_i|| <= max(rtol * ||b_i||, atol)``.
    maxiter : int, optional
        Iteration cap (default ``10 * n``).
    check_every : int
        Iterations between host-side checks of whether every instance has stopped.

    Returns
    -------
    x : tensor like ``b``
    info : dict
        ``nit`` (iterations run), ``converged`` (bool tensor per instance, from the recursive
        residual) and ``residual`` (true residual norm ``||b - A x||`` per instance).
    """
    torch = get_torch()
    matvec, b, x0, finish = _prepare(matvec, b, x0, rtol, atol, maxiter, check_every)
    n = b.shape[-1]
    maxiter = 10 * n if maxiter is None else int(maxiter)

    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b.clone() if x0 is None else b - matvec(x)
    p = r.clone()
    rs = _dot(r, r)
    thresh = torch.clamp(rtol * torch.linalg.vector_norm(b, dim=-1), min=atol)
    active = rs.sqrt() > thresh
    nit = 0
    for k in range(maxiter):
        if k % check_every == 0 and not bool(active.any()):
            break
        Ap = matvec(p)
        pAp = _dot(p, Ap)
        # pAp <= 0 means p lies in the null space (semidefinite A): no descent left for that instance.
        ok = active & (pAp > 0)
        alpha = torch.where(ok, rs / torch.where(ok, pAp, 1.0), 0.0).unsqueeze(-1)
        x = torch.where(ok.unsqueeze(-1), x + alpha * p, x)
        r = torch.where(ok.unsqueeze(-1), r - alpha * Ap, r)
        rs_new = _dot(r, r)
        beta = torch.where(ok, rs_new / torch.where(ok, rs, 1.0), 0.0).unsqueeze(-1)
        p = torch.where(ok.unsqueeze(-1), r + beta * p, p)
        rs = torch.where(ok, rs_new, rs)
        active = ok & (rs.sqrt() > thresh)
        nit = k + 1
    converged = rs.sqrt() <= thresh
    residual = torch.linalg.vector_norm(b - matvec(x), dim=-1)
    return finish(x, {"nit": nit, "converged": converged, "residual": residual})


def minres(matvec, b, *, x0=None, rtol=1e-10, atol=0.0, maxiter=None, shift=0.0, check_every=10):
    """MINRES (Paige & Saunders, 1975) for symmetric, possibly indefinite systems, batched.

    Solves ``(A - shift * I) x = b``. Each iterate minimises ``||b - (A - shift I) x||`` over the
    Krylov space, so on singular systems the residual still decreases monotonically; started from
    zero on a consistent singular system it returns the minimum-norm solution (up to rounding).

    Parameters
    ----------
    matvec : callable
        ``v -> A v`` on a ``(B, n)`` tensor (or on an ``(n,)`` tensor when ``b`` is 1-D);
        ``A`` must be symmetric.
    b : tensor of shape (B, n) or (n,)
        Right-hand sides; instances are solved independently.
    x0 : tensor like ``b``, optional
        Starting point (zero by default).
    rtol, atol : float
        Instance ``i`` stops once its residual estimate ``<= max(rtol * ||b_i||, atol)``.
    maxiter : int, optional
        Iteration cap (default ``10 * n``).
    shift : float
        Solve with ``A - shift * I``.
    check_every : int
        Iterations between host-side checks of whether every instance has stopped.

    Returns
    -------
    x : tensor like ``b``
    info : dict
        ``nit`` (iterations run), ``converged`` (bool tensor per instance, from the recursive
        residual estimate) and ``residual`` (true residual norm per instance).

    Notes
    -----
    An instance also stops, unconverged, when the Lanczos process breaks down (its Krylov space
    is exhausted), when ``A`` is numerically singular along the Krylov space, or when the
    least-squares optimality ``||A r|| / (||A|| ||r||)`` of the iterate falls below ``rtol`` (or
    below ``sqrt(eps)`` while the residual stagnates) -- the signature of an inconsistent singular
    system, where no iterate can do better and the recurrences would otherwise let ``x`` diverge.
    The returned ``x`` is then a least-squares solution with a moderate norm, not the minimum-norm
    one (MINRES-QLP would be needed for that).
    """
    torch = get_torch()
    if not (isinstance(shift, numbers.Real) and math.isfinite(shift)):
        raise ValueError(f"shift: must be a finite real number, got {shift!r}")
    matvec, b, x0, finish = _prepare(matvec, b, x0, rtol, atol, maxiter, check_every)
    n = b.shape[-1]
    maxiter = 10 * n if maxiter is None else int(maxiter)
    eps = torch.finfo(b.dtype).eps
    sqrt_eps = math.sqrt(eps)

    def op(v):
        return matvec(v) - shift * v if shift else matvec(v)

    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r1 = b.clone() if x0 is None else b - op(x)
    r2, y = r1, r1
    zero = torch.zeros_like(b[:, 0])
    beta = torch.linalg.vector_norm(r1, dim=-1)
    oldb, dbar, epsln, tnorm2 = zero, zero, zero, zero
    phibar = beta.clone()
    cs, sn = -torch.ones_like(zero), zero
    w, w2 = torch.zeros_like(b), torch.zeros_like(b)
    thresh = torch.clamp(rtol * torch.linalg.vector_norm(b, dim=-1), min=atol)
    active = phibar > thresh
    nit = 0
    for k in range(maxiter):
        if k % check_every == 0 and not bool(active.any()):
            break
        # Frozen instances get harmless denominators; their x is protected by torch.where below.
        beta_s = torch.where(active & (beta > 0), beta, 1.0).unsqueeze(-1)
        oldb_s = torch.where(oldb > 0, oldb, 1.0).unsqueeze(-1)
        v = y / beta_s
        y = op(v)
        if k > 0:
            y = y - (beta_s / oldb_s) * r1
        alfa = _dot(v, y)
        y = y - (alfa.unsqueeze(-1) / beta_s) * r2
        r1, r2 = r2, y
        oldb, beta = beta, torch.linalg.vector_norm(y, dim=-1)
        tnorm2 = tnorm2 + alfa**2 + oldb**2 + beta**2
        # Givens rotation eliminating the subdiagonal beta of the Lanczos tridiagonal matrix.
        oldeps = epsln
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta
        dbar = -cs * beta
        root = torch.hypot(gbar, dbar)
        gamma = torch.hypot(gbar, beta)
        anorm = tnorm2.sqrt()
        # Stop before updating x when the previous iterate already solves the least-squares
        # problem -- ||A r|| small relative to ||A|| ||r||, to rtol, or to sqrt(eps) when this step
        # cannot reduce the residual (|sn| ~ 1) -- or when gamma is at rounding level
        # (|gamma_k| >= sigma_min(A) in exact arithmetic, so A is numerically singular). On such
        # inconsistent singular systems the Paige-Saunders update grows w without bound and x
        # diverges while the residual stays put.
        arnorm = phibar * root
        stalled = beta >= (1 - sqrt_eps) * gamma
        lsq = (arnorm <= rtol * anorm * phibar) | ((arnorm <= sqrt_eps * anorm * phibar) & stalled)
        active = active & ~lsq & (gamma > 100 * eps * anorm)
        gamma = torch.clamp(gamma, min=torch.finfo(b.dtype).tiny)
        cs, sn = gbar / gamma, beta / gamma
        phi = cs * phibar
        # Frozen instances keep their residual estimate: it decides `converged` at the end.
        phibar = torch.where(active, sn * phibar, phibar)
        w1, w2 = w2, w
        w = (v - oldeps.unsqueeze(-1) * w1 - delta.unsqueeze(-1) * w2) / gamma.unsqueeze(-1)
        x = torch.where(active.unsqueeze(-1), x + phi.unsqueeze(-1) * w, x)
        # beta == 0: the Krylov space is invariant and the next Lanczos vector is undefined.
        active = active & (phibar > thresh) & (beta > eps * eps * anorm)
        nit = k + 1
    converged = phibar <= thresh
    residual = torch.linalg.vector_norm(b - op(x), dim=-1)
    return finish(x, {"nit": nit, "converged": converged, "residual": residual})
