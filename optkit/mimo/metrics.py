"""Channel-estimate quality metrics and summaries (spec mimo §3.7).

Every metric takes ``H_hat`` and ``H`` of the same shape (..., Nr, Nt) (numpy or torch, complex or
real), reduces over the last two axes and returns one value per user (...): a numpy array for numpy
input, a tensor on the input's device for torch input (a numpy argument is moved to the tensor's
device). <A, B> = sum conj(A) * B is the Frobenius inner product, ||.|| the Frobenius norm.
"""

from __future__ import annotations

import numpy as np

from .._errors import BackendError, InvalidProblemError
from . import _xp

__all__ = ["nmse", "nmse_db", "cosine_similarity", "beamforming_gain", "summarize"]


def _pair(H_hat, H):
    """Both arguments on one backend, validated (shapes equal, >= 2-D, numeric)."""
    if _xp.is_torch(H_hat) or _xp.is_torch(H):
        torch = _xp.get_torch()
        if _xp.is_torch(H_hat) and _xp.is_torch(H) and H_hat.device != H.device:
            raise BackendError(f"H_hat is on {H_hat.device} but H is on {H.device}; move them to one device")
        like = H_hat if _xp.is_torch(H_hat) else H
        H_hat = H_hat if _xp.is_torch(H_hat) else torch.as_tensor(np.asarray(H_hat), device=like.device)
        H = H if _xp.is_torch(H) else torch.as_tensor(np.asarray(H), device=like.device)
        for name, x in (("H_hat", H_hat), ("H", H)):
            if x.dtype == torch.bool:
                raise InvalidProblemError(f"{name}: expected a numeric array, got dtype {x.dtype}")
        H_hat = H_hat if (H_hat.is_floating_point() or H_hat.is_complex()) else H_hat.to(torch.float64)
        H = H if (H.is_floating_point() or H.is_complex()) else H.to(torch.float64)
    else:
        H_hat, H = np.asarray(H_hat), np.asarray(H)
        for name, x in (("H_hat", H_hat), ("H", H)):
            if x.dtype.kind not in "iufc":
                raise InvalidProblemError(f"{name}: expected a numeric array, got dtype {x.dtype}")
        if H_hat.dtype.kind in "iu":
            H_hat = H_hat.astype(np.float64)
        if H.dtype.kind in "iu":
            H = H.astype(np.float64)
    if H.ndim < 2:
        raise InvalidProblemError(f"H: must have shape (..., Nr, Nt), got {tuple(H.shape)}")
    if tuple(H_hat.shape) != tuple(H.shape):
        raise InvalidProblemError(f"H_hat: shape {tuple(H_hat.shape)} does not match H's {tuple(H.shape)}")
    return H_hat, H


def _sqnorm(X):
    """||X||_F^2 over the last two axes (real)."""
    return (X.real ** 2 + X.imag ** 2).sum(axis=(-2, -1)) if _is_complex(X) else (X ** 2).sum(axis=(-2, -1))


def _is_complex(X):
    return X.is_complex() if _xp.is_torch(X) else np.iscomplexobj(X)


def _inner(A, B):
    """<A, B> = sum conj(A) B over the last two axes."""
    return (A.conj() * B).sum(axis=(-2, -1)) if _is_complex(A) else (A * B).sum(axis=(-2, -1))


def _div(a, b):
    """a / b elementwise; 0/0 gives NaN, x/0 inf, without numpy warnings."""
    if _xp.is_torch(a):
        return a / b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(a / b)


def nmse(H_hat, H):
    """||H_hat - H||_F^2 / ||H||_F^2 per user (linear; NaN/inf where H = 0)."""
    H_hat, H = _pair(H_hat, H)
    return _div(_sqnorm(H_hat - H), _sqnorm(H))


def nmse_db(H_hat, H):
    """10 log10 :func:`nmse` per user (-inf for a perfect estimate)."""
    v = nmse(H_hat, H)
    if _xp.is_torch(v):
        return 10.0 * _xp.get_torch().log10(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(10.0 * np.log10(v))


def cosine_similarity(H_hat, H):
    """|<H_hat, H>| / (||H_hat|| ||H||) per user, in [0, 1]; 0 where H_hat = 0 (NaN where only H = 0)."""
    H_hat, H = _pair(H_hat, H)
    num = abs(_inner(H_hat, H))
    nh = _sqnorm(H_hat)
    den = (nh * _sqnorm(H)) ** 0.5
    out = _div(num, den)
    return _xp.where(nh == 0, 0.0 * num, out)


def beamforming_gain(H_hat, H, kind: str = "matched"):
    """Beamforming gain of the estimate per user.

    ``"matched"``: |<H_hat, H>|^2 / ||H_hat||_F^2, the received energy of the unit-norm matrix "beam"
    H_hat/||H_hat|| matched to the true channel: ||H||^2 for a perfect (or any positively scaled)
    estimate, 0 for H_hat = 0 (spec §3.7; consistent with the PE11 figure's saturation at ~ 447 =
    E||H||^2 for 24x32).

    ``"svd"``: ||H v||^2 / sigma_1(H)^2 with v the dominant right singular vector of H_hat (H = U S V^H,
    v = first column of V, i.e. the conjugate of the first row of ``Vh``): the BS transmits x = v, the UE
    receives H x; in [0, 1], 1 for a perfect estimate, 0 for H_hat = 0 (no beam), NaN for H = 0.
    """
    H_hat, H = _pair(H_hat, H)
    if kind == "matched":
        nh = _sqnorm(H_hat)
        num = abs(_inner(H_hat, H)) ** 2
        return _xp.where(nh == 0, 0.0 * num, _div(num, nh))
    if kind != "svd":
        raise InvalidProblemError(f"kind: must be 'matched' or 'svd', got {kind!r}")
    if _xp.is_torch(H):
        torch = _xp.get_torch()
        _, _, Vh = torch.linalg.svd(H_hat, full_matrices=False)
        s1 = torch.linalg.svdvals(H)[..., 0]
    else:
        _, _, Vh = np.linalg.svd(H_hat, full_matrices=False)
        s1 = np.linalg.svd(H, compute_uv=False)[..., 0]
    v = Vh[..., 0, :].conj()
    Hv = (H * v[..., None, :]).sum(axis=-1)  # (..., Nr)
    num = (abs(Hv) ** 2).sum(axis=-1)
    out = _div(num, s1 ** 2)
    return _xp.where(_sqnorm(H_hat) == 0, 0.0 * num, out)


def summarize(values, *, n_boot: int = 2000, rng=0) -> dict:
    """Summary of per-user (or per-trial) values: mean, median, p90 and a bootstrap 95% CI of the mean.

    NaNs are dropped and counted (``n_nan``); ``n`` is the number of values kept. The CI is the
    percentile bootstrap (2.5% and 97.5% quantiles of ``n_boot`` resampled means, generator
    ``np.random.default_rng(rng)``). Returns Python floats (NaN when no value is left).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InvalidProblemError(f"n_boot: must be a positive integer, got {n_boot!r}")
    x = np.asarray(_xp.to_host(values))
    if x.dtype.kind not in "biuf":
        raise InvalidProblemError(f"values: expected real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64).ravel()
    nan = np.isnan(x)
    x = x[~nan]
    n = int(x.size)
    out = dict(mean=np.nan, median=np.nan, p90=np.nan, ci_low=np.nan, ci_high=np.nan, n=n, n_nan=int(nan.sum()))
    if n == 0:
        return out
    gen = np.random.default_rng(rng)
    means = np.empty(int(n_boot))
    chunk = max(1, 10_000_000 // n)
    for start in range(0, int(n_boot), chunk):
        stop = min(int(n_boot), start + chunk)
        idx = gen.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    with np.errstate(invalid="ignore"):  # inf values give NaN differences in the quantiles
        lo, hi = np.quantile(means, [0.025, 0.975])
    out.update(mean=float(x.mean()), median=float(np.median(x)), p90=float(np.quantile(x, 0.9)),
               ci_low=float(lo), ci_high=float(hi))
    return out
