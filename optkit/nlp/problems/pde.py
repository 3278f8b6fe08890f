"""Linear-quadratic PDE-constrained control problem on the unit square (spec nlp 6.3, 7.2).

``pde_qp(N)`` discretises

    min 1/2 ||w - w_true||^2 + (reg/2) ||z||^2   s.t.   Delta_h w + z = 0

on an ``N x N`` interior grid of ``[-1, 1]^2`` (``h = 2/(N+1)``, zero Dirichlet boundary) with the
5-point Laplacian. The variables are ``x = (w, z)`` in ``R^{2N^2}``; grid values are stored
column-major (``w_{ij}`` at 1-based index ``i + (j-1)N``), as in the authors' Julia code.
"""

from __future__ import annotations

import math

import numpy as np

from ..._errors import InvalidProblemError
from ..problem import Problem

__all__ = ["pde_qp", "pde_qp_reference", "pde_qp_data"]

_A = 0.1 / math.sqrt(15.0)


def _check_args(N, reg):
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise InvalidProblemError(f"pde_qp: 'N' must be a positive integer, got {N!r}")
    try:
        reg = float(reg)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"pde_qp: 'reg' must be a positive number, got {reg!r}") from None
    if not (math.isfinite(reg) and reg > 0):
        raise InvalidProblemError(f"pde_qp: 'reg' must be a positive finite number, got {reg!r}")
    return int(N), reg


def pde_qp_data(N: int, reg: float = 0.1):
    """The QP data ``(Q, p, J, w_true)`` of :func:`pde_qp`.

    ``f(x) = 1/2 x^T Q x + p^T x + const`` with ``Q = diag(1 (N^2), reg (N^2))``,
    ``p = (-w_true, 0)``; ``c(x) = J x`` with ``J = [Delta_h, I]`` (scipy.sparse CSR).
    """
    import scipy.sparse as sp

    N, reg = _check_args(N, reg)
    nn = N * N
    h = 2.0 / (N + 1)
    T = sp.diags([np.ones(N - 1), np.full(N, -2.0), np.ones(N - 1)], [-1, 0, 1],
                 shape=(N, N), format="csr")
    I_N = sp.identity(N, format="csr")
    # column-major: k = (i-1) + (j-1) N, so i (fast index) lives in the right kron factor
    lap = ((sp.kron(I_N, T) + sp.kron(T, I_N)) / h**2).tocsr()
    J = sp.hstack([lap, sp.identity(nn, format="csr")], format="csr")
    J.eliminate_zeros()  # kron stores the zero blocks' entries explicitly
    Q = sp.diags(np.concatenate([np.ones(nn), np.full(nn, reg)]), 0, format="csr")
    idx = np.arange(1, N + 1, dtype=np.float64)
    c0 = (N + 1) / 2.0
    # w_true[i, j] (1-based i, j); ravel in Fortran order for column-major storage
    Wt = np.sin(4.0 + _A * (idx[:, None] - c0)) + np.cos(3.0 + _A * (idx[None, :] - c0))
    w_true = Wt.ravel(order="F")
    p = np.concatenate([-w_true, np.zeros(nn)])
    return Q, p, J, w_true


def pde_qp_reference(N: int, reg: float = 0.1):
    """Optimum ``(x*, lam*, f*)`` of :func:`pde_qp` by a direct sparse solve of the KKT system
    ``[[Q, J^T], [J, 0]] (x, lam) = (-p, 0)`` (sign convention ``L = f + lam^T c``)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    Q, p, J, w_true = pde_qp_data(N, reg)
    n, m = Q.shape[0], J.shape[0]
    K = sp.bmat([[Q, J.T], [J, None]], format="csc")
    sol = spla.spsolve(K, np.concatenate([-p, np.zeros(m)]))
    x, lam = sol[:n], sol[n:]
    nn = n // 2
    w, z = x[:nn], x[nn:]
    f = 0.5 * float(np.dot(w - w_true, w - w_true)) + 0.5 * reg * float(np.dot(z, z))
    return x, lam, f


def pde_qp(N: int, reg: float = 0.1, *, reference: bool | None = None) -> Problem:
    """PDE-constrained QP of spec nlp 6.3 on an ``N x N`` interior grid.

    ``n = 2N^2``, ``m = N^2``; ``x0 = ones``, ``y0 = ones``. The Jacobian and the (constant)
    Lagrangian Hessian are scipy.sparse CSR matrices. With ``reference=True`` the optimum is
    computed by a sparse direct KKT solve (:func:`pde_qp_reference`, about 0.25 s at N = 128) and
    stored in ``f_star``, ``x_star``, ``y_star``; the default ``None`` does so for ``N <= 256``.
    """
    N, reg = _check_args(N, reg)
    Q, p, J, w_true = pde_qp_data(N, reg)
    nn = N * N
    n, m = 2 * nn, nn
    qdiag = Q.diagonal().copy()

    def f(x):
        x = np.asarray(x, dtype=np.float64)
        r = x[:nn] - w_true
        z = x[nn:]
        return 0.5 * float(r @ r) + 0.5 * reg * float(z @ z)

    def grad(x):
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([x[:nn] - w_true, reg * x[nn:]])

    def fg(x):
        return f(x), grad(x)

    def c(x):
        return np.asarray(J @ np.asarray(x, dtype=np.float64)).reshape(-1)

    def jac(x):
        return J

    def cj(x):
        return c(x), J

    def jvp(x, v):
        return np.asarray(J @ np.asarray(v, dtype=np.float64)).reshape(-1)

    def vjp(x, w):
        return np.asarray(J.T @ np.asarray(w, dtype=np.float64)).reshape(-1)

    def hess_lag(x, lam):
        return Q

    def hvp_lag(x, lam, v):
        return qdiag * np.asarray(v, dtype=np.float64)

    f_star = x_star = y_star = None
    if reference is None:
        reference = N <= 256
    if reference:
        x_star, y_star, f_star = pde_qp_reference(N, reg)
    return Problem(
        n=n, m=m, x0=np.ones(n), c=c, f=f, grad=grad, jac=jac, jvp=jvp, vjp=vjp,
        hess_lag=hess_lag, hvp_lag=hvp_lag, fg=fg, cj=cj, y0=np.ones(m),
        name=f"PDE{N}", f_star=f_star, x_star=x_star, y_star=y_star,
        tags=frozenset({"qp", "linear_constraints"}), source="optkit",
        params=(("N", N), ("reg", reg)),
    )
