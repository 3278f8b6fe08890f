"""Baselines for channel recovery from quantized feedback (spec mimo §3.6): Feedback in, MIMOResult out.

* :func:`lmmse` -- structure-blind linear MMSE on the cell midpoints (or on the unquantized measurements).
* :func:`two_stage` -- ridge dequantization, harmonic retrieval, then the convex MLE of the gains (EMMP-like).
* :func:`qiht` -- quantization-consistent iterative hard thresholding on an oversampled 2-D DFT grid (and BIHT
  for sign-only feedback), with an MLE refit of the gains on the support.
* :func:`omp` -- orthogonal matching pursuit on the cell midpoints over the same grid.
* :func:`oracle` -- the true frequencies, gains by MLE (or by LS from the exact measurements).
* :func:`mle_gains` -- the convex interval-probit MLE of the complex gains for given frequencies, shared by the
  three previous methods.
* :func:`sanity_nmse` -- the back-of-the-envelope quantization floor (4K/R)(Delta^2/12)/E[q^2].

Units: ``feedback.lo``/``hi`` are cells in quantizer-scaled units (s times physical), every estimate and gain
returned is in physical units. The likelihood's sigma is the stable-mode rule: sigma_i = s sqrt(sigma^2 +
sigma_{n,i}^2) in scaled units (1.0 where that is 0); ``fun`` is the negative log-likelihood at ``H_hat`` with
that sigma and the stable kernel (§3.3), for every method.

Backends: :func:`mle_gains`, :func:`lmmse`, :func:`two_stage`, :func:`qiht` and :func:`oracle` run one batched
implementation on numpy and torch (any device); :func:`omp` converts torch feedback to numpy, runs there and
returns its arrays on the feedback's device.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._errors import InvalidProblemError
from .._logging import warn
from .._result import Status
from . import _xp
from .admm import (
    BatchedMIMOResult,
    MIMOResult,
    _angle,
    _check_feedback,
    _norm,
    check_model_order,
    dequantize,
)
from .channels import Channel, geometric_channel, steering, ula_correlation, unvec_real, vec_real
from .feedback import _check_int, feedback_to

__all__ = ["mle_gains", "lmmse", "two_stage", "qiht", "omp", "oracle", "sanity_nmse"]

#: E|beta_k|^2 summed over paths for the authors' generator: E U^2 = 7/12 for U ~ U[0.5, 1] (spec §2)
_POWER = 7.0 / 12.0


# ----------------------------------------------------------------------------------------------- helpers


def _check_pos(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v) \
            or v <= 0:
        raise InvalidProblemError(f"{name}: must be a positive finite number, got {v!r}")
    return float(v)


def _check_bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise InvalidProblemError(f"{name}: must be True or False, got {v!r}")
    return bool(v)


def _cat(xs, axis):
    return _xp.get_torch().cat(xs, dim=axis) if _xp.is_torch(xs[0]) else np.concatenate(xs, axis=axis)


def _mask(host_bool, like):
    """A host boolean mask on the backend/device of ``like``."""
    return _xp.asarray_like(np.asarray(host_bool), like, dtype=None)


def _wrap(w):
    """Frequencies wrapped to (-pi, pi]."""
    return _xp.where(w > math.pi, w - 2 * math.pi, w)


class _Prep:
    """Validated feedback with a leading user axis: lo, hi, sigma (B, R) in scaled units, s (B,), backend."""

    def __init__(self, feedback):
        _check_feedback(feedback)
        fb = feedback
        self.fb = fb
        self.n_r, self.n_t, self.R = fb.n_r, fb.n_t, fb.R
        self.n = 2 * self.n_r * self.n_t
        self.single = fb.z.ndim == 1
        lo, hi = (fb.lo[None], fb.hi[None]) if self.single else (fb.lo, fb.hi)
        self.torch = _xp.is_torch(lo)
        self.lo, self.hi = lo, hi
        self.B = int(lo.shape[0])
        self.like = lo
        self.s = self.per_user(fb.scale)
        self.noise_var = self.asarray(_xp.to_host(fb.noise_var).reshape(self.B, self.R))
        self.sigma_phys = self.per_user(fb.sigma)
        sig = self.s[:, None] * (self.sigma_phys[:, None] ** 2 + self.noise_var) ** 0.5
        self.sig = _xp.where(sig > 0, sig, sig * 0 + 1.0)
        self.op = fb.operator

    def asarray(self, x, complex_=False):
        dt = _xp.complex_dtype(self.like) if complex_ else self.like.dtype
        return _xp.asarray_like(_xp.to_host(x) if _xp.is_torch(x) else x, self.like, dtype=dt)

    def per_user(self, v):
        arr = np.full(self.B, float(v)) if isinstance(v, (float, int)) else np.asarray(_xp.to_host(v),
                                                                                        dtype=float).reshape(-1)
        return self.asarray(arr)

    def midpoints(self):
        """Cell midpoints (B, R), physical units."""
        return self.asarray(self.fb.midpoints().reshape(self.B, self.R))

    def amul(self, h):
        """A h for h (B, m, n) -> (B, m, R) with a shared or per-user operator."""
        if self.op.shared:
            return self.op.matvec(h)
        return self.op.matvec(h.swapaxes(0, 1)).swapaxes(0, 1)

    def dense(self):
        """The dense operator (R, n) (shared) or (B, R, n): row r is A^T e_r."""
        op = self.op
        if op.scheme == 1 or op.shared:
            A = op.to_dense()
            return A if _xp.is_torch(A) == self.torch else self.asarray(A)
        E = _xp.eye(self.like, self.R)[:, None, :]  # (R, 1, R) -> (R, B, R): rows of every user at once
        E = E.expand(self.R, self.B, self.R) if self.torch else np.broadcast_to(E, (self.R, self.B, self.R))
        return op.rmatvec(E).swapaxes(0, 1)

    def nll(self, mu):
        """f at mu (B, R): the stable kernel with the stable sigma rule (what ``fun`` reports)."""
        from .kernels import truncnorm_moments

        logp, _, _ = truncnorm_moments(mu, self.lo, self.hi, self.sig)
        return -logp.sum(-1)

    def design(self, wr, wt):
        """Phi (B, n, 2K) with vec_real(A_r diag(beta) A_t^T) = Phi theta, theta = (Re beta, Im beta)."""
        ar = steering(self.n_r, wr)  # (B, K, Nr)
        at = steering(self.n_t, wt)
        Z = ar[..., :, None] * at[..., None, :]  # (B, K, Nr, Nt)
        return _cat([vec_real(Z), vec_real(1j * Z)], 1).swapaxes(-1, -2)

    def coerce_freq(self, w, name):
        """Frequencies (K,) or (B, K) -> (B, K) on the backend."""
        a = np.asarray(_xp.to_host(w), dtype=float) if not isinstance(w, (list, tuple)) else np.asarray(w, float)
        if a.ndim == 1 and self.single:
            a = a[None]
        if a.ndim != 2 or a.shape[0] != self.B or a.shape[1] < 1:
            want = "(K,)" if self.single else f"({self.B}, K)"
            raise InvalidProblemError(f"{name}: shape {a.shape}, expected {want}")
        if not np.all(np.isfinite(a)):
            raise InvalidProblemError(f"{name}: contains NaN or inf")
        return self.asarray(a)


def _mle_core(P, M, theta0, max_iter, tol):
    """Damped Newton on f(theta) = -sum log P(M theta in cell), M (B, R, 2K) scaled units.

    Returns (theta, converged (B,) host bool, nit, f)."""
    from .kernels import truncnorm_terms

    lo, hi, sig = P.lo, P.hi, P.sig
    Mt = M.swapaxes(-1, -2)
    p = M.shape[-1]
    eye = _xp.eye(M, p)

    def fval(theta):
        mu = (M @ theta[..., None])[..., 0]
        logp, r1, r2 = truncnorm_terms(mu, lo, hi, sig)
        return -logp.sum(-1), r1, r2

    theta = theta0
    f, r1, r2 = fval(theta)
    B = M.shape[0]
    done = np.zeros(B, bool)
    conv = np.zeros(B, bool)
    nit = 0
    for _ in range(max_iter):
        g = -(Mt @ (r1 / sig)[..., None])[..., 0]
        D = (r1 * r1 - r2) / sig ** 2
        D = _xp.where(D > 0, D, D * 0)
        Hs = Mt @ (D[..., None] * M)
        tr = (Hs * eye).sum((-2, -1))
        ridge = 1e-12 * tr / p + 1e-300
        d = -_xp.solve(Hs + ridge[:, None, None] * eye, g[..., None])[..., 0]
        slope = (g * d).sum(-1)
        t = P.asarray(np.ones(B))
        dn = _mask(done, f)
        for _ in range(60):
            th_try = theta + t[:, None] * d
            f_try, r1_t, r2_t = fval(th_try)
            ok = (f_try <= f + 1e-4 * t * slope) | dn
            if bool(_xp.to_host(ok).all()):
                break
            t = _xp.where(ok, t, 0.5 * t)
        ok = (f_try <= f + 1e-4 * t * slope) & ~dn
        theta = _xp.where(ok[:, None], th_try, theta)
        f = _xp.where(ok, f_try, f)
        r1 = _xp.where(ok[:, None], r1_t, r1)
        r2 = _xp.where(ok[:, None], r2_t, r2)
        nit += 1
        okh = _xp.to_host(ok)
        step = _xp.to_host(t * _norm(d))
        dec = _xp.to_host(-slope)
        fh = np.abs(_xp.to_host(f))
        th = _xp.to_host(_norm(theta))
        small = (step <= tol * np.maximum(1.0, th)) | (dec <= 1e-300)
        # a failed line search at a vanishing Newton decrement is the optimum to rounding
        stuck = ~okh & (dec <= 1e-8 * np.maximum(1.0, fh))
        new_conv = ~done & ((okh & small) | stuck)
        conv |= new_conv
        done |= new_conv | (~done & ~okh)
        if done.all():
            break
    return theta, conv, nit, f


def _ls(M, y):
    """Batched least squares argmin ||M theta - y||, M (B, R, p), y (B, R) (normal equations, tiny ridge)."""
    Mt = M.swapaxes(-1, -2)
    G = Mt @ M
    eye = _xp.eye(M, M.shape[-1])
    tr = (G * eye).sum((-2, -1))
    return _xp.solve(G + (1e-13 * tr / M.shape[-1] + 1e-300)[:, None, None] * eye, (Mt @ y[..., None]))[..., 0]


def _gains(P, wr, wt, *, max_iter=50, tol=1e-10, ls_target=None):
    """Gains for frequencies (B, K): the MLE, or (``ls_target`` (B, R) physical) LS. Returns (beta, conv, nit)."""
    K = wr.shape[-1]
    Phi = P.design(wr, wt)  # (B, n, 2K)
    M_phys = P.amul(Phi.swapaxes(-1, -2)).swapaxes(-1, -2)  # (B, R, 2K)
    if ls_target is not None:
        theta = _ls(M_phys, ls_target)
        return theta[:, :K] + 1j * theta[:, K:], np.ones(P.B, bool), 1
    M = P.s[:, None, None] * M_phys
    theta0 = _ls(M, P.s[:, None] * P.midpoints())
    theta, conv, nit, _ = _mle_core(P, M, theta0, max_iter, tol)
    return theta[:, :K] + 1j * theta[:, K:], conv, nit


def _paths(wr, wt, beta):
    wr, wt = _wrap(wr), _wrap(wt)
    return dict(omega_r=wr, omega_t=wt, beta=beta, aoa=_angle(wr), aod=_angle(wt))


def _result(P, H, *, method, t0, statuses=None, nit=1, nfev=0, paths=None, extra=None, message=""):
    """MIMOResult (single feedback) or BatchedMIMOResult from estimates H (B, Nr, Nt), physical units."""
    B = P.B
    st = np.full(B, int(Status.CONVERGED)) if statuses is None else np.asarray(statuses, dtype=int).copy()
    h = vec_real(H)
    mu = P.s[:, None] * P.op.matvec(h)
    fun = _xp.to_host(P.nll(mu))
    finite = np.isfinite(_xp.to_host(h)).all(-1)
    zero = (_xp.to_host(_norm(h)) == 0) & (np.abs(_xp.to_host(P.fb.z)).reshape(B, -1).sum(-1) > 0)
    st = np.where(~finite | zero, int(Status.NUMERICAL_ERROR), st)
    sig_host = _xp.to_host(P.sig)
    same = bool(np.all(sig_host == sig_host[:, :1]))
    ex = dict(method=method, sigma_used=sig_host[:, 0] if same else sig_host, scale=_xp.to_host(P.s))
    ex.update(extra or {})
    common = dict(nit=nit, nfev=nfev, wall_time=time.perf_counter() - t0,
                  backend="torch" if P.torch else "numpy", device=str(P.like.device) if P.torch else None,
                  dtype=str(P.like.dtype).replace("torch.", ""), n_hr_calls=int(ex.pop("n_hr_calls", 0)))
    if P.single:
        s0 = Status(int(st[0]))
        msg = message
        if zero[0]:
            msg = "the estimate is zero although the feedback is not"
        elif not finite[0]:
            msg = "the estimate is not finite"
        ex1 = {k: (v[0] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == B else v)
               for k, v in ex.items()}
        for k in ("sigma_used", "scale"):
            if np.ndim(ex1[k]) == 0:
                ex1[k] = float(ex1[k])
        p1 = None if paths is None else {k: v[0] for k, v in paths.items()}
        return MIMOResult(x=h[0], fun=float(fun[0]), status=s0, message=msg, H_hat=H[0], paths=p1, extra=ex1,
                          **common)
    statuses = _xp.asarray_like(st, P.like, dtype=None) if P.torch else st
    return BatchedMIMOResult(x=h, fun=fun, statuses=statuses, H_hat=H, paths=paths, extra=ex, message=message,
                             **common)


def _status(conv):
    return np.where(conv, int(Status.CONVERGED), int(Status.MAX_ITER))


# ----------------------------------------------------------------------------------------------- MLE gains


def mle_gains(feedback, omega_r, omega_t, *, max_iter=50, tol=1e-10):
    """Convex interval-probit MLE of the complex gains for given spatial frequencies (spec §2, §3.6).

    With the frequencies fixed, mu = A s vec_real(A_r diag(beta) A_t^T) = M theta is linear in
    theta = (Re beta, Im beta), and f(theta) = -sum_i log P(w_i in cell_i), w_i ~ N(mu_i, sigma_i^2), is convex.
    Damped Newton from the least-squares fit of the cell midpoints: gradient -M^T Sigma^{-1}(w_hat - mu),
    Hessian M^T D M with the curvature weights D_i = (1 - Var_i/sigma_i^2)/sigma_i^2 (plus a ridge
    1e-12 trace/2K that only matters when D vanishes on the range of M, e.g. every mu deep inside its cell with a
    small sigma), Armijo backtracking.

    Parameters
    ----------
    feedback : Feedback
        Single user or batch, numpy or torch.
    omega_r, omega_t : array (K,) or (B, K)
        Spatial frequencies (radians).
    max_iter : int
        Newton iterations.
    tol : float
        Stop when the accepted step ||delta theta|| <= tol max(1, ||theta||) (theta in physical units).

    Returns
    -------
    MIMOResult or BatchedMIMOResult
        ``paths["beta"]`` the gains (physical units), ``H_hat`` the K-path channel; status CONVERGED, or MAX_ITER
        when Newton did not meet ``tol`` in ``max_iter`` iterations.
    """
    t0 = time.perf_counter()
    P = _Prep(feedback)
    max_iter = _check_int("max_iter", max_iter)
    tol = _check_pos("tol", tol)
    wr, wt = P.coerce_freq(omega_r, "omega_r"), P.coerce_freq(omega_t, "omega_t")
    if wr.shape != wt.shape:
        raise InvalidProblemError(f"omega_t: shape {tuple(wt.shape)} does not match omega_r's {tuple(wr.shape)}")
    beta, conv, nit = _gains(P, wr, wt, max_iter=max_iter, tol=tol)
    H = geometric_channel(wr, wt, beta, P.n_r, P.n_t)
    return _result(P, H, method="mle-gains", t0=t0, statuses=_status(conv), nit=nit,
                   paths=_paths(wr, wt, beta), extra=dict(n_paths=int(wr.shape[-1])))


# ----------------------------------------------------------------------------------------------- LMMSE


def _prior_apply(P, Arows, prior, max_angle_deg):
    """Rows of A C_h for the dense A (..., R, n): C_h symmetric, so row i is (C_h a_i)^T."""
    if isinstance(prior, str):
        if prior == "isotropic":
            return 0.5 * _POWER * Arows
        T_r = P.asarray(ula_correlation(P.n_r, max_angle_deg))
        T_t = P.asarray(ula_correlation(P.n_t, max_angle_deg))
        # C_h = 1/2 (7/12) blkdiag(T_t (x) T_r, T_t (x) T_r): kron(T_t, T_r) vec(X) = vec(T_r X T_t) column-major
        U = unvec_real(Arows, P.n_r, P.n_t, complex_out=False)  # (..., R, Nr, 2 Nt)
        re = T_r @ U[..., :P.n_t] @ T_t
        im = T_r @ U[..., P.n_t:] @ T_t
        return 0.5 * _POWER * vec_real(_cat([re, im], -1))
    C = P.asarray(prior)
    return Arows @ C


def lmmse(feedback, n_paths=None, *, prior="ula-uniform", unquantized=False, channel=None, q=None,
          max_angle_deg=86.0):
    """Structure-blind linear MMSE estimate (spec §3.6).

        h_hat = C_h A^T (A C_h A^T + Sigma_e)^{-1} q_tilde

    with q_tilde the cell midpoints in physical units (outer semi-infinite cells: the finite edge moved by one
    step) and Sigma_e = diag(sigma^2 + sigma_{n,i}^2 + Delta_i^2/12), Delta_i = (hi_i - lo_i)/s the cell width
    (2/s for the uniform quantizer, as in the spec; the actual width under mu-law; 2/s for semi-infinite cells).

    Parameters
    ----------
    feedback : Feedback
    n_paths : int or None
        Unused (accepted for the uniform baseline signature).
    prior : {"ula-uniform", "isotropic"} or array (n, n)
        "ula-uniform": C_h = 1/2 (7/12) blkdiag(T_t (x) T_r, T_t (x) T_r) in the column-major vec_real ordering,
        T the ULA correlation under angles uniform on [-max_angle_deg, max_angle_deg] (the covariance of the
        authors' generator, E||H||_F^2 = 7 Nr Nt / 12, up to the angle-separation constraint). "isotropic":
        C_h = 1/2 (7/12) I. An array is used as C_h (physical units, vec_real ordering).
    unquantized : bool
        Use the unquantized measurements instead of the midpoints, with Sigma_e = diag(sigma^2 + sigma_{n,i}^2)
        (the dither and pilot noise only): isolates the quantization loss. Needs ``q`` (the measurements, (R,)
        or (B, R), physical units) or ``channel`` (a Channel or an array H; then q = A vec_real(H), noise-free).
    max_angle_deg : float
        Angle range of the "ula-uniform" prior (86 for the authors' generator).

    Returns
    -------
    MIMOResult or BatchedMIMOResult with status CONVERGED (one linear solve), ``paths`` None.
    """
    t0 = time.perf_counter()
    P = _Prep(feedback)
    if n_paths is not None:
        _check_int("n_paths", n_paths)
    unquantized = _check_bool("unquantized", unquantized)
    if isinstance(prior, str):
        if prior not in ("ula-uniform", "isotropic"):
            raise InvalidProblemError(f"prior: must be 'ula-uniform', 'isotropic' or an (n, n) array, got {prior!r}")
    else:
        C = np.asarray(_xp.to_host(prior))
        if C.shape != (P.n, P.n) or np.iscomplexobj(C) or not np.all(np.isfinite(C)):
            raise InvalidProblemError(f"prior: an array prior must be a real finite ({P.n}, {P.n}) covariance, "
                                      f"got shape {C.shape}")
        if not np.allclose(C, C.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(C).max())):
            raise InvalidProblemError("prior: the covariance must be symmetric")
    max_angle_deg = _check_pos("max_angle_deg", max_angle_deg)
    if max_angle_deg > 90:
        raise InvalidProblemError(f"max_angle_deg: must be in (0, 90], got {max_angle_deg}")
    A = P.dense()  # (R, n) or (B, R, n)
    if unquantized:
        qv = _measurements(P, q, channel)
        var = P.sigma_phys[:, None] ** 2 + P.noise_var
    else:
        if q is not None or channel is not None:
            raise InvalidProblemError("q: q and channel are only used with unquantized=True")
        qv = P.midpoints()
        lo_h, hi_h = _xp.to_host(P.lo), _xp.to_host(P.hi)
        width = np.where(np.isfinite(lo_h) & np.isfinite(hi_h), hi_h - lo_h, 2.0)
        delta = P.asarray(width) / P.s[:, None]
        var = P.sigma_phys[:, None] ** 2 + P.noise_var + delta ** 2 / 12.0
    AC = _prior_apply(P, A, prior, max_angle_deg)  # rows of A C_h
    S = AC @ A.swapaxes(-1, -2)  # A C_h A^T, (R, R) or (B, R, R)
    S = 0.5 * (S + S.swapaxes(-1, -2))
    eye = _xp.eye(S, P.R)
    Kmat = S + var[..., :, None] * eye  # (B, R, R)
    try:
        L = _xp.cholesky(Kmat)
        y = _xp.cho_solve(L, qv[..., None])[..., 0]
    except (np.linalg.LinAlgError, RuntimeError):  # numpy / torch LinAlgError: singular A C_h A^T without noise
        tr = (Kmat * eye).sum((-2, -1))
        y = _xp.solve(Kmat + (1e-12 * tr / P.R)[:, None, None] * eye, qv[..., None])[..., 0]
    h = y @ AC if AC.ndim == 2 else (y[:, None, :] @ AC)[:, 0]
    H = unvec_real(h, P.n_r, P.n_t)
    return _result(P, H, method="lmmse", t0=t0, extra=dict(
        prior=prior if isinstance(prior, str) else "array", unquantized=unquantized))


def _measurements(P, q, channel):
    """Unquantized q (B, R) physical: given, or A vec_real(H) of ``channel``."""
    if q is not None:
        qa = np.asarray(_xp.to_host(q), dtype=float)
        want = (P.R,) if P.single else (P.B, P.R)
        if qa.shape != want:
            raise InvalidProblemError(f"q: shape {qa.shape}, expected {want}")
        if not np.all(np.isfinite(qa)):
            raise InvalidProblemError("q: contains NaN or inf")
        return P.asarray(qa.reshape(P.B, P.R))
    if channel is None:
        raise InvalidProblemError("q: unquantized=True needs the measurements q or the channel")
    H = _channel_H(P, channel)
    return P.op.matvec(vec_real(H))


def _channel_H(P, channel):
    H = channel.H if isinstance(channel, Channel) else channel
    Hh = np.asarray(_xp.to_host(H))
    want = (P.n_r, P.n_t) if P.single else (P.B, P.n_r, P.n_t)
    if Hh.shape != want:
        raise InvalidProblemError(f"channel: H has shape {Hh.shape}, expected {want}")
    if not np.all(np.isfinite(Hh)):
        raise InvalidProblemError("channel: H contains NaN or inf")
    return P.asarray(Hh.astype(complex).reshape((P.B, P.n_r, P.n_t)), complex_=True)


# ----------------------------------------------------------------------------------------------- two-stage


def two_stage(feedback, n_paths, *, rho=1.0, max_iter=50, tol=1e-10, **hr_options):
    """Two-stage baseline (EMMP-like; spec §3.6): dequantize, harmonic retrieval, MLE of the gains.

    u0 = argmin f(u) + (rho/2)||u||^2 (the first u-step of REDEEM, scaled units, rho = 1 by default);
    (omega_r, omega_t) = HR_K(U0) with :func:`optkit.mimo.harmonic.harmonic_retrieval` (``hr_options``, stable
    mode by default); beta = :func:`mle_gains` given those frequencies (``max_iter``, ``tol``).
    """
    from .harmonic import harmonic_retrieval

    t0 = time.perf_counter()
    P = _Prep(feedback)
    K = check_model_order(n_paths, P.n_r, P.n_t, P.R)
    rho = _check_pos("rho", rho)
    max_iter = _check_int("max_iter", max_iter)
    tol = _check_pos("tol", tol)
    H0, n_em = dequantize(feedback, rho=rho, n_paths=1)  # n_paths only enters the (already made) checks
    Y = H0[None] if P.single else H0
    hr = harmonic_retrieval(Y, K, **hr_options)
    wr, wt = P.asarray(hr.omega_r), P.asarray(hr.omega_t)
    beta, conv, nit = _gains(P, wr, wt, max_iter=max_iter, tol=tol)
    H = geometric_channel(wr, wt, beta, P.n_r, P.n_t)
    return _result(P, H, method="two-stage", t0=t0, statuses=_status(conv), nit=nit, nfev=n_em,
                   paths=_paths(wr, wt, beta), extra=dict(n_paths=K, n_hr_calls=1, rho=rho,
                                                          hr_residual=_xp.to_host(hr.residual)))


# ----------------------------------------------------------------------------------------------- grid tools


def _grid_correlation(Gc, F_r, F_t):
    """C[i, k] = a_r(2 pi i/F_r)^H G_c conj(a_t(2 pi k/F_t)) for all grid points: a zero-padded FFT2.

    With G_c = unvec_real(g) (G[:, :Nt] + j G[:, Nt:]), <vec_real(beta a_r a_t^T), g> = Re(conj(beta) C[i, k]):
    Re C is the correlation of g with the atom a_r a_t^T and Im C the one with j a_r a_t^T.
    """
    return _xp.fft2(Gc, (F_r, F_t))


def _grid_synth(X, n_r, n_t):
    """H = W_r X W_t^T = sum_{i,k} X[i, k] a_r(2 pi i/F_r) a_t(2 pi k/F_t)^T, X (..., F_r, F_t)."""
    F_r, F_t = X.shape[-2:]
    return _xp.fft2(X.conj(), (F_r, F_t)).conj()[..., :n_r, :n_t]


def _grid_freqs(idx, F_r, F_t, like):
    """Flat grid indices (B, m) -> (omega_r, omega_t) wrapped to (-pi, pi]."""
    i = idx // F_t
    k = idx % F_t
    wr = _xp.asarray_like(_xp.to_host(i).astype(float) * (2 * math.pi / F_r), like, dtype=like.dtype)
    wt = _xp.asarray_like(_xp.to_host(k).astype(float) * (2 * math.pi / F_t), like, dtype=like.dtype)
    return _wrap(wr), _wrap(wt)


def _keep_largest(X, k):
    """Hard threshold H_k: the k largest |X| of each user kept, (X_k, flat indices (B, k))."""
    B = X.shape[0]
    flat = X.reshape(B, -1)
    a = abs(flat)
    if _xp.is_torch(X):
        idx = a.topk(k, dim=-1).indices
        keep = _xp.get_torch().zeros_like(a, dtype=bool).scatter_(-1, idx, True)
    else:
        idx = np.argpartition(-a, k - 1, axis=-1)[:, :k]
        keep = np.zeros(a.shape, bool)
        np.put_along_axis(keep, idx, True, axis=-1)
    return _xp.where(keep, flat, flat * 0).reshape(X.shape), idx


def _power_lambda(P, n_iter=20):
    """lambda_max(A A^T) per user by ``n_iter`` power iterations (deterministic start), (B,)."""
    G = P.op.gram()
    v = P.asarray(np.ones((P.B, P.R)) / math.sqrt(P.R))
    lam = v[:, 0] * 0
    for _ in range(n_iter):
        w = v @ G if G.ndim == 2 else (G @ v[..., None])[..., 0]
        lam = (v * w).sum(-1)
        v = w / _norm(w)[:, None]
    return lam


# ----------------------------------------------------------------------------------------------- QIHT / BIHT


def qiht(feedback, n_paths, *, oversample=4, n_iter=300, variant="qiht", sparsity=None, max_iter=50, tol=1e-10):
    """Quantized IHT on an oversampled 2-D DFT grid (spec §3.6).

    X (F_r x F_t complex, F = ``oversample`` N) holds gains of the atoms a_r(2 pi i/F_r) a_t(2 pi k/F_t)^T, so
    H = W_r X W_t^T. ``variant="qiht"``: loss 1/2 sum_i dist(mu_i, [lo_i, hi_i])^2 in scaled units,
    mu = s A vec_real(H); its gradient in X is the padded FFT2 of G_c = unvec_real(s A^T w), w = mu - clip(mu,
    lo, hi), because <vec_real(beta a_r a_t^T), A^T w> = Re(conj(beta) a_r^H G_c conj(a_t)). The step is 1/L
    with L = ||Phi||^2 of the atom map Phi: X -> mu; as W_r W_r^H = F_r I on the oversampled grid,
    Phi Phi^* = s^2 F_r F_t A A^T, and L is found by 20 power iterations on that R x R form. ``n_iter``
    iterations X <- H_2K(X - grad/L) from X = 0 keep the 2K largest |X| (``sparsity`` overrides 2K); the gains of
    the support atoms are then refitted by :func:`mle_gains` (``max_iter``, ``tol``), and ``paths`` lists those
    atoms by decreasing |beta| (2K of them, not K).

    An off-grid path leaks into about 2 x 2 neighbouring atoms of the 4x grid, so 2K atoms may all be spent on
    the strongest paths; a larger ``sparsity`` trades that against more gains to refit (4 ``sparsity`` <= R).
    With b = 1 the cells are [-2, 0] and [0, 2], so the "qiht" loss vanishes at X = 0 and the iteration never
    leaves it (a warning says so): use ``variant="biht"``.

    ``variant="biht"`` (sign-only feedback, e.g. b = 1; BIHT of Jacques et al.): uses only y = sign(z),
    X <- H_2K(X + tau/2 Phi^*(y - sign(mu))). The sign pattern does not fix the norm, so there is no MLE refit
    and ``H_hat`` has unit Frobenius norm: compare it by cosine similarity
    (:func:`optkit.mimo.metrics.cosine_similarity`), not NMSE.
    """
    t0 = time.perf_counter()
    P = _Prep(feedback)
    K = check_model_order(n_paths, P.n_r, P.n_t, P.R)
    oversample = _check_int("oversample", oversample)
    n_iter = _check_int("n_iter", n_iter)
    if variant not in ("qiht", "biht"):
        raise InvalidProblemError(f"variant: must be 'qiht' or 'biht', got {variant!r}")
    max_iter = _check_int("max_iter", max_iter)
    tol = _check_pos("tol", tol)
    F_r, F_t = oversample * P.n_r, oversample * P.n_t
    k2 = 2 * K if sparsity is None else _check_int("sparsity", sparsity)
    if k2 > F_r * F_t or (variant == "qiht" and 2 * k2 > P.R):
        raise InvalidProblemError(f"sparsity: {k2} atoms need 2 * sparsity <= R = {P.R} real measurements for the "
                                  f"refit and at most {F_r * F_t} grid points")
    if variant == "qiht" and P.fb.bits == 1:
        warn("variant: with bits = 1 the 'qiht' loss is zero at X = 0 and the iteration cannot start; "
             "use variant='biht'", UserWarning)
    s = P.s[:, None]
    L = (P.s ** 2) * (F_r * F_t) * _power_lambda(P)  # (B,)
    step = 1.0 / L
    X = _xp.zeros(P.like, (P.B, F_r, F_t), dtype=_xp.complex_dtype(P.like))
    y = None
    if variant == "biht":
        z = P.fb.z if not P.single else P.fb.z[None]
        y = P.asarray(np.sign(_xp.to_host(z).astype(float)))
    idx = None
    n_done = 0
    for _ in range(n_iter):
        n_done += 1
        h = vec_real(_grid_synth(X, P.n_r, P.n_t))
        mu = s * P.op.matvec(h)
        if variant == "qiht":
            w = mu - _clip(mu, P.lo, P.hi)
        else:
            w = 0.5 * (_sign(mu) - y)
        g = s * P.op.rmatvec(w)
        grad = _grid_correlation(unvec_real(g, P.n_r, P.n_t), F_r, F_t)
        X_new, idx = _keep_largest(X - step[:, None, None] * grad, k2)
        dX = _xp.to_host((abs(X_new - X) ** 2).sum((-2, -1)))
        nX = _xp.to_host((abs(X_new) ** 2).sum((-2, -1)))
        X = X_new
        if np.all(dX <= 1e-28 * np.maximum(nX, 1e-300)):
            break
    wr, wt = _grid_freqs(idx, F_r, F_t, P.like)
    if variant == "qiht":
        beta, conv, nit = _gains(P, wr, wt, max_iter=max_iter, tol=tol)
        statuses = _status(conv)
    else:
        flat = X.reshape(P.B, -1)
        idx_b = _xp.asarray_like(_xp.to_host(idx), flat, dtype=None)
        beta = flat.gather(-1, idx_b) if P.torch else np.take_along_axis(flat, idx_b, -1)
        nit, statuses = 0, None
    H = geometric_channel(wr, wt, beta, P.n_r, P.n_t)
    if variant == "biht":
        nrm = (abs(H) ** 2).sum((-2, -1)) ** 0.5
        nrm = _xp.where(nrm > 0, nrm, nrm * 0 + 1.0)
        H = H / nrm[:, None, None]
        beta = beta / nrm[:, None]
    order = _xp.to_host(abs(beta)).argsort(-1)[:, ::-1].copy()
    o = _xp.asarray_like(order, wr, dtype=None)
    take = (lambda a: a.gather(-1, o)) if P.torch else (lambda a: np.take_along_axis(a, o, -1))
    paths = _paths(take(wr), take(wt), take(beta))
    return _result(P, H, method=variant, t0=t0, statuses=statuses, nit=n_done,
                   paths=paths, extra=dict(n_paths=K, support_size=k2, oversample=oversample,
                                           lipschitz=_xp.to_host(L), normalized=variant == "biht",
                                           refit_nit=nit))


def _clip(x, lo, hi):
    if _xp.is_torch(x):
        torch = _xp.get_torch()
        return torch.maximum(torch.minimum(x, hi), lo)
    return np.clip(x, lo, hi)


def _sign(x):
    return x.sign() if _xp.is_torch(x) else np.sign(x)


# ----------------------------------------------------------------------------------------------- OMP


def omp(feedback, n_paths, *, oversample=4):
    """Orthogonal matching pursuit on the cell midpoints over an oversampled 2-D DFT grid (spec §3.6).

    Each grid point (omega_r, omega_t) = (2 pi i/F_r, 2 pi k/F_t), F = ``oversample`` N, is a complex atom
    Z = a_r a_t^T with a complex gain, i.e. the 2-column real block B = [A vec_real(Z), A vec_real(jZ)]. K greedy
    picks maximise the norm-normalised correlation ||P_B r||^2 = c^T (B^T B)^{-1} c, c = B^T r, with r the
    residual of q_tilde (the midpoints, physical units) -- for one real column this is (a^T r)^2/||a||^2.
    After each pick all chosen gains are refitted by least squares. c for every grid point is one padded FFT2
    of unvec_real(A^T r); the 2x2 Gram blocks B^T B come from one FFT2 per measurement row, once.

    numpy only: torch feedback is converted to numpy, solved there, and the arrays of the result are moved back
    to the feedback's device.
    """
    t0 = time.perf_counter()
    if _xp.is_torch(feedback.lo):
        res = omp(feedback_to(feedback, np.zeros(0)), n_paths, oversample=oversample)
        return _to_torch(res, feedback.lo, t0)
    P = _Prep(feedback)
    K = check_model_order(n_paths, P.n_r, P.n_t, P.R)
    oversample = _check_int("oversample", oversample)
    F_r, F_t = oversample * P.n_r, oversample * P.n_t
    A = P.dense()
    qt = P.midpoints()
    wr_all = np.zeros((P.B, K))
    wt_all = np.zeros((P.B, K))
    beta_all = np.zeros((P.B, K), complex)
    stats = None
    for b in range(P.B):
        Ab = A if A.ndim == 2 else A[b]
        if stats is None or A.ndim == 3:
            stats = _omp_stats(Ab, P.n_r, P.n_t, F_r, F_t)
        Srr, Sii, Sri = stats
        det = Srr * Sii - Sri ** 2
        good = det > 1e-12 * np.maximum(Srr * Sii, 1e-300)
        r = qt[b].copy()
        chosen = []
        Mcols = np.zeros((P.R, 0))
        theta = np.zeros(0)
        for _ in range(K):
            c = _grid_correlation(unvec_real(Ab.T @ r, P.n_r, P.n_t), F_r, F_t)
            cr, ci = c.real, c.imag
            e = np.where(good, (Sii * cr ** 2 - 2 * Sri * cr * ci + Srr * ci ** 2) / np.where(good, det, 1.0),
                         (cr ** 2 + ci ** 2) / np.maximum(Srr + Sii, 1e-300))
            e = e.ravel()
            e[chosen] = -np.inf
            j = int(np.argmax(e))
            chosen.append(j)
            wr = 2 * math.pi * (j // F_t) / F_r
            wt = 2 * math.pi * (j % F_t) / F_t
            Z = np.outer(steering(P.n_r, wr), steering(P.n_t, wt))
            blk = Ab @ np.stack([vec_real(Z), vec_real(1j * Z)], 1)
            Mcols = np.concatenate([Mcols, blk], 1)
            theta = np.linalg.lstsq(Mcols, qt[b], rcond=None)[0]
            r = qt[b] - Mcols @ theta
        idx = np.asarray(chosen)
        wr_all[b] = 2 * math.pi * (idx // F_t) / F_r
        wt_all[b] = 2 * math.pi * (idx % F_t) / F_t
        beta_all[b] = theta[0::2] + 1j * theta[1::2]
    wr_all, wt_all = _wrap(wr_all), _wrap(wt_all)
    H = geometric_channel(wr_all, wt_all, beta_all, P.n_r, P.n_t)
    return _result(P, H, method="omp", t0=t0, nit=K, paths=_paths(wr_all, wt_all, beta_all),
                   extra=dict(n_paths=K, oversample=oversample))


def _omp_stats(A, n_r, n_t, F_r, F_t, chunk=64):
    """Per grid atom: ||A vec_real(Z)||^2, ||A vec_real(jZ)||^2 and their inner product (F_r, F_t) each."""
    Srr = np.zeros((F_r, F_t))
    Sii = np.zeros((F_r, F_t))
    Sri = np.zeros((F_r, F_t))
    for i in range(0, A.shape[0], chunk):
        C = _grid_correlation(unvec_real(A[i:i + chunk], n_r, n_t), F_r, F_t)  # row i: (A vec_real(Z))_i + j(..jZ)
        Srr += (C.real ** 2).sum(0)
        Sii += (C.imag ** 2).sum(0)
        Sri += (C.real * C.imag).sum(0)
    return Srr, Sii, Sri


def _to_torch(res, like, t0):
    """A numpy (Batched)MIMOResult with its arrays moved to the backend/device of ``like``."""
    cdt = _xp.complex_dtype(like)

    def conv(a):
        if a is None or not isinstance(a, np.ndarray):
            return a
        return _xp.asarray_like(a, like, dtype=cdt if np.iscomplexobj(a) else (like.dtype if a.dtype.kind == "f"
                                                                              else None))

    res.H_hat = conv(res.H_hat)
    res.x = conv(res.x)
    if res.paths is not None:
        res.paths = {k: conv(np.asarray(v)) for k, v in res.paths.items()}
    if isinstance(res, BatchedMIMOResult):
        res.statuses = conv(np.asarray(res.statuses))
    res.backend = "torch"
    res.device = str(like.device)
    res.dtype = str(like.dtype).replace("torch.", "")
    res.wall_time = time.perf_counter() - t0
    res.extra["converted_from"] = "numpy"
    return res


# ----------------------------------------------------------------------------------------------- oracle


def oracle(feedback, n_paths, *, channel, unquantized=False, q=None, max_iter=50, tol=1e-10):
    """Perfect harmonic retrieval (spec §3.6): the true frequencies of ``channel``, gains by :func:`mle_gains`.

    ``unquantized=True`` fits the gains by least squares to the exact measurements ``q`` ((R,) or (B, R),
    physical units; default A vec_real(channel.H), noise-free), which recovers a K-path channel exactly.
    ``channel`` is a :class:`~optkit.mimo.channels.Channel` with ``omega_r``/``omega_t`` of K = ``n_paths``
    paths.
    """
    t0 = time.perf_counter()
    P = _Prep(feedback)
    K = check_model_order(n_paths, P.n_r, P.n_t, P.R)
    unquantized = _check_bool("unquantized", unquantized)
    max_iter = _check_int("max_iter", max_iter)
    tol = _check_pos("tol", tol)
    if not isinstance(channel, Channel) or channel.omega_r is None or channel.omega_t is None:
        raise InvalidProblemError("channel: must be a Channel with path frequencies omega_r, omega_t")
    wr, wt = P.coerce_freq(channel.omega_r, "channel"), P.coerce_freq(channel.omega_t, "channel")
    if wr.shape[-1] != K or wt.shape[-1] != K:
        raise InvalidProblemError(f"n_paths: {K} but the channel has {wr.shape[-1]} paths")
    if unquantized:
        if q is None:
            _channel_H(P, channel)  # shape check
        qv = _measurements(P, q, channel)
        beta, conv, nit = _gains(P, wr, wt, ls_target=qv)
    else:
        if q is not None:
            raise InvalidProblemError("q: only used with unquantized=True")
        beta, conv, nit = _gains(P, wr, wt, max_iter=max_iter, tol=tol)
    H = geometric_channel(wr, wt, beta, P.n_r, P.n_t)
    return _result(P, H, method="oracle", t0=t0, statuses=_status(conv), nit=nit, paths=_paths(wr, wt, beta),
                   extra=dict(n_paths=K, unquantized=unquantized))


# ----------------------------------------------------------------------------------------------- sanity


def sanity_nmse(R, bits, n_paths, *, crest=3.2):
    """Quantization floor (4K/R)(Delta^2/12)/E[q^2], Delta = 2 max|q|/2^b, max|q| = crest rms(q) [derived].

    = (4K/R) (4 crest^2 / 4^b)/12: the 4K real unknowns of a K-path fit average the uniform quantization noise
    over R measurements. K = 8, b = 3, crest 3.2 gives 1.71/R (spec §3.6).
    """
    R = _check_int("R", R)
    bits = _check_int("bits", bits)
    if bits > 15:
        raise InvalidProblemError(f"bits: must be in 1..15, got {bits}")
    K = _check_int("n_paths", n_paths)
    crest = _check_pos("crest", crest)
    return (4.0 * K / R) * (4.0 * crest ** 2 / 4.0 ** bits) / 12.0
