"""A tiny iterative ridge-regression solver that follows every optkit contract (test-only).

It keeps ``tests/test_contract.py`` meaningful on its own: CG on the normal equations
``(X^T X + lam I) z = X^T y``, written once for numpy and torch with operators only.
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np

import optkit
from optkit._backend import check_finite, check_integer, infer_backend
from optkit._errors import InvalidProblemError
from optkit.callbacks import IterInfo, call_callback
from optkit.registry import Case, SolverEntry


def _positive(value, name, allow_zero=False, allow_none=False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidProblemError(f"{name}: must be a number {bound}, got {value!r}")
    return float(value)


def ridge_solve(X, y, lam=1.0, *, max_iter=100, tol=1e-10, time_limit=None, callback=None):
    """Minimise ``||X z - y||^2 / 2 + lam ||z||^2 / 2`` by conjugate gradients.

    Parameters
    ----------
    X : array of shape (m, n)
    y : array of shape (m,)
    lam : float >= 0
    max_iter : int >= 0
    tol : float > 0
        Stop when ``||grad|| <= tol * ||X^T y||``.
    time_limit : float > 0, optional
        Seconds.
    callback : callable, optional
        Called with an :class:`~optkit.callbacks.IterInfo` after each iteration.

    Returns
    -------
    optkit.Result
        ``x`` is the coefficient vector (numpy or torch like the inputs); ``kkt_residual`` is the
        gradient norm at ``x``.
    """
    start = time.perf_counter()
    be = infer_backend(X, y, names=["X", "y"])
    lam = _positive(lam, "lam", allow_zero=True)
    max_iter = check_integer(max_iter, "max_iter", low=0)
    tol = _positive(tol, "tol")
    time_limit = _positive(time_limit, "time_limit", allow_none=True)
    if callback is not None and not callable(callback):
        raise InvalidProblemError(f"callback: expected a callable, got {type(callback).__name__}")
    X, y = be.asarray(X, "X"), be.asarray(y, "y")  # copies on conversion: inputs never mutated
    if X.ndim != 2:
        raise InvalidProblemError(f"X: expected a 2-D array (m, n), got shape {tuple(X.shape)}")
    if tuple(y.shape) != (X.shape[0],):
        raise InvalidProblemError(
            f"y: expected shape ({X.shape[0]},) to match X {tuple(X.shape)}, got {tuple(y.shape)}")
    check_finite(X, "X")
    check_finite(y, "y")

    def norm(v):
        return float((v * v).sum()) ** 0.5

    def matvec(v):
        return X.T @ (X @ v) + lam * v

    c = X.T @ y
    z = c * 0
    r = c - matvec(z)
    p = r * 1
    rs = float((r * r).sum())
    target = tol * norm(c)
    status, nit = (optkit.Status.CONVERGED if rs**0.5 <= target else None), 0
    while status is None and nit < max_iter:
        Ap = matvec(p)
        pAp = float((p * Ap).sum())
        if not pAp > 0:  # p == 0 or rounding: no descent direction left
            status = optkit.Status.STALLED
            break
        alpha = rs / pAp
        z = z + alpha * p
        r = r - alpha * Ap
        rs, rs_old = float((r * r).sum()), rs
        p = r + (rs / rs_old) * p
        nit += 1
        elapsed = time.perf_counter() - start
        fun = 0.5 * norm(X @ z - y) ** 2 + 0.5 * lam * norm(z) ** 2
        if call_callback(callback, IterInfo(nit=nit, fun=fun, x=z, residual=rs**0.5,
                                            elapsed=elapsed)):
            status = optkit.Status.CALLBACK_STOP
        elif rs**0.5 <= target:
            status = optkit.Status.CONVERGED
        elif time_limit is not None and elapsed >= time_limit:
            status = optkit.Status.TIME_LIMIT
    if status is None:
        status = optkit.Status.MAX_ITER
    return optkit.Result(
        x=z, fun=0.5 * norm(X @ z - y) ** 2 + 0.5 * lam * norm(z) ** 2, nit=nit, nfev=nit + 1,
        status=status, kkt_residual=norm(c - matvec(z)), wall_time=time.perf_counter() - start,
        backend=be.name, device=be.device_str, dtype=be.dtype_str)


def _make_case(backend, seed):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((20, 5)), rng.standard_normal(20)
    if backend == "torch":
        import torch

        X, y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return Case(args=(X, y), kwargs={"lam": 1.0})


def _invalid_cases(backend):
    X, y = _make_case(backend, 0).args
    X_nan = X.clone() if backend == "torch" else X.copy()
    X_nan[3, 2] = float("nan")
    return {"nan": Case(args=(X_nan, y), raises=ValueError),
            "shape": Case(args=(X, y[:-1]), raises=ValueError)}


def ridge_entry():
    """Registry entry ``"test.ridge"`` for the contract tests."""
    return SolverEntry(
        name="test.ridge", solve=ridge_solve, make_case=_make_case, invalid_cases=_invalid_cases,
        capabilities=frozenset({"iterative", "callback", "torch", "time_limit"}),
        fields=("x", "fun", "nit", "kkt_residual"))
