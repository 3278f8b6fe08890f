"""Constrained logistic regression (spec nlp 6.3, 7.2).

    min_x (1/N) sum_i log(1 + exp(-y_i X_i x))   s.t.   A x = b,   ||x||^2 = 1

``constrained_logreg`` draws a synthetic instance; ``constrained_logreg_from_arrays`` wraps user data
(for example a LIBSVM file read by :func:`load_libsvm`).
"""

from __future__ import annotations

import numpy as np

from ..._errors import InvalidProblemError
from ..._libsvm import load_libsvm
from ..problem import Problem

__all__ = [
    "constrained_logreg",
    "constrained_logreg_data",
    "constrained_logreg_from_arrays",
    "load_libsvm",
]

#: ``||pinv(A) b||`` at or above which the synthetic ``b`` is rescaled (to make it ``_RESCALE_TO``)
_RESCALE_AT = 0.9
_RESCALE_TO = 0.5


def _pos_int(value, name, fn, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidProblemError(f"{fn}: '{name}' must be an integer >= {minimum}, got {value!r}")
    return int(value)


def constrained_logreg_data(n_samples: int, n_features: int, n_linear: int = 10, seed=0) -> dict:
    """The arrays of :func:`constrained_logreg`: a dict with ``X, y, A, b, u`` and the rescale record
    ``b_scale`` (1.0 when ``b`` was kept) and ``pinv_norm`` (``||pinv(A) b||`` before rescaling).

    One ``numpy.random.default_rng(seed)`` is used in this order: ``A`` (n_linear x n), ``b``
    (both i.i.d. N(0, 1)); ``X`` (N x n) i.i.d. N(0, 1); ``u`` uniform on the unit sphere (a
    normalised Gaussian); ``eps`` (N,) i.i.d. N(0, 1); ``y_i = sign(X_i u + 0.5 eps_i)`` with
    ``sign(0) = +1``.
    """
    fn = "constrained_logreg"
    N = _pos_int(n_samples, "n_samples", fn)
    n = _pos_int(n_features, "n_features", fn, minimum=2)
    k = _pos_int(n_linear, "n_linear", fn, minimum=0)
    if k >= n:
        raise InvalidProblemError(
            f"{fn}: 'n_linear' = {k} must be < n_features = {n} (m = n_linear + 1 constraints "
            "must not exceed n)")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, n))
    b = rng.standard_normal(k)
    pinv_norm = float(np.linalg.norm(np.linalg.pinv(A) @ b)) if k > 0 else 0.0
    b_scale = 1.0
    if pinv_norm >= _RESCALE_AT:
        b_scale = _RESCALE_TO / pinv_norm
        b = b * b_scale
    X = rng.standard_normal((N, n))
    u = rng.standard_normal(n)
    u /= np.linalg.norm(u)
    eps = rng.standard_normal(N)
    y = np.where(X @ u + 0.5 * eps >= 0.0, 1.0, -1.0)
    return {"X": X, "y": y, "A": A, "b": b, "u": u, "b_scale": b_scale, "pinv_norm": pinv_norm}


def constrained_logreg(n_samples: int, n_features: int, n_linear: int = 10, seed=0) -> Problem:
    """Synthetic constrained logistic regression of spec nlp 6.3.

    ``n = n_features``, ``m = n_linear + 1`` (``n_linear < n_features``); ``x0 = ones``,
    ``y0 = ones``. ``params`` records ``(("seed", seed), ("b_scale", s), ("pinv_norm", r))``:
    ``b`` was multiplied by ``s = 0.5 / r`` when ``r = ||pinv(A) b|| >= 0.9`` (else ``s = 1``), so
    that the affine set meets the unit sphere.
    """
    d = constrained_logreg_data(n_samples, n_features, n_linear, seed)
    N, n = d["X"].shape
    prob = constrained_logreg_from_arrays(
        d["X"], d["y"], d["A"], d["b"], name=f"LOGREG{N}x{n}")
    return prob.replace(source="optkit", params=(("seed", seed), ("b_scale", d["b_scale"]),
                                ("pinv_norm", d["pinv_norm"]), ("n_linear", d["A"].shape[0])))


def _finite_2d(a, name, fn):
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"{fn}: '{name}' must be a numeric array") from None
    return a


def constrained_logreg_from_arrays(X, y, A=None, b=None, x0=None, y0=None,
                                   name: str = "logreg") -> Problem:
    """Constrained logistic regression on user data.

    Parameters
    ----------
    X : (N, n) array
        Features (dense; convert a sparse matrix with ``.toarray()``).
    y : (N,) array
        Labels in {-1, +1}; {0, 1} is accepted and mapped to {-1, +1}.
    A, b : (k, n) and (k,) arrays, optional
        Linear constraints ``A x = b`` (none when omitted); ``k + 1 <= n``.
    x0, y0 : optional
        Start (default ones) and starting multipliers (default ones, ``(k + 1,)``).
    """
    fn = "constrained_logreg_from_arrays"
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        X = X.toarray()
    X = _finite_2d(X, "X", fn)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise InvalidProblemError(f"{fn}: 'X' must be a non-empty 2-D array (N, n), got shape {X.shape}")
    N, n = X.shape
    if not np.all(np.isfinite(X)):
        raise InvalidProblemError(f"{fn}: 'X' contains NaN or inf")
    y = _finite_2d(y, "y", fn)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.shape != (N,):
        raise InvalidProblemError(f"{fn}: 'y' must have shape ({N},), got {np.shape(y)}")
    if not np.all(np.isfinite(y)):
        raise InvalidProblemError(f"{fn}: 'y' contains NaN or inf")
    labels = set(np.unique(y).tolist())
    if labels <= {-1.0, 1.0}:
        y = y.copy()
    elif labels <= {0.0, 1.0}:
        y = np.where(y > 0.5, 1.0, -1.0)
    else:
        shown = sorted(labels)[:6]
        raise InvalidProblemError(
            f"{fn}: 'y' labels must be in {{-1, +1}} or {{0, 1}}, got {shown}"
            f"{' ...' if len(labels) > 6 else ''} (load_libsvm(..., binarize=True) maps two labels)")
    if A is None:
        if b is not None and np.size(b) > 0:
            raise InvalidProblemError(f"{fn}: 'b' given without 'A'")
        A = np.zeros((0, n))
        b = np.zeros(0)
    A = _finite_2d(A, "A", fn)
    if A.ndim == 1 and A.size == n:
        A = A.reshape(1, n)
    if A.ndim != 2 or A.shape[1] != n:
        raise InvalidProblemError(f"{fn}: 'A' must have shape (k, {n}), got {A.shape}")
    k = A.shape[0]
    b = np.zeros(0) if b is None else _finite_2d(b, "b", fn).reshape(-1)
    if b.shape != (k,):
        raise InvalidProblemError(f"{fn}: 'b' must have shape ({k},), got {b.shape}")
    for nm, v in (("A", A), ("b", b)):
        if not np.all(np.isfinite(v)):
            raise InvalidProblemError(f"{fn}: '{nm}' contains NaN or inf")
    m = k + 1
    if m > n:
        raise InvalidProblemError(
            f"{fn}: 'A' has {k} rows; k + 1 = {m} constraints (with the sphere) exceed n = {n}")
    x0 = np.ones(n) if x0 is None else np.asarray(x0, dtype=np.float64).reshape(-1)
    y0 = np.ones(m) if y0 is None else np.asarray(y0, dtype=np.float64).reshape(-1)
    if x0.shape != (n,):
        raise InvalidProblemError(f"{fn}: 'x0' must have shape ({n},), got {x0.shape}")
    if y0.shape != (m,):
        raise InvalidProblemError(f"{fn}: 'y0' must have shape ({m},), got {y0.shape}")
    return _build(X, y, A.copy(), b.copy(), x0, y0, name)


def _build(X, y, A, b, x0, y0, name, source="user") -> Problem:
    from scipy.special import expit

    N, n = X.shape
    k = A.shape[0]
    m = k + 1
    Xy = X * y[:, None]  # rows y_i X_i: the margin is t = Xy @ x
    inv_N = 1.0 / N

    def f(x):
        t = Xy @ np.asarray(x, dtype=np.float64)
        return float(np.logaddexp(0.0, -t).sum() * inv_N)

    def grad(x):
        t = Xy @ np.asarray(x, dtype=np.float64)
        return -(Xy.T @ expit(-t)) * inv_N

    def fg(x):
        t = Xy @ np.asarray(x, dtype=np.float64)
        return float(np.logaddexp(0.0, -t).sum() * inv_N), -(Xy.T @ expit(-t)) * inv_N

    def c(x):
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([A @ x - b, [x @ x - 1.0]])

    def jac(x):
        x = np.asarray(x, dtype=np.float64)
        return np.vstack([A, 2.0 * x[None, :]])

    def cj(x):
        return c(x), jac(x)

    def jvp(x, v):
        x = np.asarray(x, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        return np.concatenate([A @ v, [2.0 * (x @ v)]])

    def vjp(x, w):
        x = np.asarray(x, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        return A.T @ w[:k] + 2.0 * w[k] * x

    def _weights(x):
        t = Xy @ np.asarray(x, dtype=np.float64)
        return expit(t) * expit(-t) * inv_N  # sigma'(t) / N, y_i^2 = 1

    def hess_lag(x, lam):
        d = _weights(x)
        H = X.T @ (X * d[:, None])
        H[np.diag_indices(n)] += 2.0 * float(np.asarray(lam).reshape(-1)[k])
        return H

    def hvp_lag(x, lam, v):
        v = np.asarray(v, dtype=np.float64)
        d = _weights(x)
        return X.T @ (d * (X @ v)) + 2.0 * float(np.asarray(lam).reshape(-1)[k]) * v

    return Problem(
        n=n, m=m, x0=x0, c=c, f=f, grad=grad, jac=jac, jvp=jvp, vjp=vjp, hess_lag=hess_lag,
        hvp_lag=hvp_lag, fg=fg, cj=cj, y0=y0, name=name, tags=frozenset({"multiple_minima"}),
        source=source,
    )
