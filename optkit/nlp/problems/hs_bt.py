"""Hock-Schittkowski / Boggs-Tolle / CUTEst equality-constrained problems with exact derivatives.

Closed-form NumPy transcriptions of the SIF files (as translated by S2MPJ, the reference the tests
compare with at x0: same variable and constraint order, same signs, same constants). Spec 6.1/6.2
give the known optima; where a formula in the spec has the opposite constraint sign to the SIF
(HS100LNP's first constraint, ``127 - 2 x1^2 - ...``) the SIF sign is used.

SIF details kept on purpose:

- HS100LNP: the objective term ``3 (x4 - 11)^2`` is a group ``(x4 - 11)^2`` with SCALE
  ``0.3333333333``, i.e. weight ``1/0.3333333333 = 3.0000000003``.
- HS56: the standard start uses the rounded ``0.50973968`` and ``0.98511078``.
- BT2: the constraint constant is the rounded ``8.2426407`` (``4 + 3 sqrt 2``).
- BT6 is not HS77: its second constraint is ``x2 + x2^2 x3^4 - 8 - sqrt 2`` (HS77:
  ``x2 + x3^4 x4^2 - 8 - sqrt 2``); BT11 differs from HS79 in the constant of c1 and in
  ``c3 = x1 - x5 - 2``; MWRIGHT is ``x1^2 + (x1 - x2)^2 + (x2 - x3)^3 + (x3 - x4)^4 + (x4 - x5)^4``
  with ``c1 = x1 + x2^2 + x3^2 - 2 - 3 sqrt 2``.
- GENHS28: the SIF's start gives the multipliers ``y0 = 1`` too (S2MPJ, CUTEst); the paper's
  KKT0 = 39.9 is ``||nabla L(x0, y0)||`` with these.

Use :func:`get_problem` (case-insensitive) and :func:`list_problems`.
"""

from __future__ import annotations

import math

import numpy as np

from ..problem import Problem
from .ne import NE_BUILDERS, NE_NAMES, PAPER_P_NAMES, _arr, _build

__all__ = [
    "get_problem", "list_problems", "HS_BT_NAMES", "NE_NAMES", "PAPER_P_NAMES", "ALL_NAMES",
    "KKT0_REFERENCE", "OTHER_MINIMA",
]

SQRT2 = math.sqrt(2.0)


def _qp_solution(Q, p, A, b):
    """(x*, y*) of ``min 1/2 x^T Q x + p^T x, A x = b`` with ``L = f + y^T (A x - b)``."""
    n, m = Q.shape[0], A.shape[0]
    K = np.block([[Q, A.T], [A, np.zeros((m, m))]])
    z = np.linalg.solve(K, np.concatenate([-p, b]))
    return z[:n], z[n:]


def _qp(name, Q, p, A, b, x0, *, const=0.0, f_star=None, tags=(), y0=None) -> Problem:
    """``f = 1/2 x^T Q x + p^T x + const``, ``c = A x - b`` with its exact KKT point."""
    Q = np.asarray(Q, dtype=np.float64)
    p = _arr(p)
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    b = _arr(b)
    xs, ys = _qp_solution(Q, p, A, b)
    return _build(
        name, x0,
        f=lambda x: float(0.5 * _arr(x) @ Q @ _arr(x) + p @ _arr(x) + const),
        grad=lambda x: Q @ _arr(x) + p,
        c=lambda x: A @ _arr(x) - b, jac=lambda x: A.copy(),
        hess_lag=lambda x, lam: Q.copy(),
        f_star=f_star, x_star=xs, y_star=ys, y0=y0,
        tags={"qp", "linear_constraints"} | set(tags))


# =============================================================================================
# Hock-Schittkowski
def hs6() -> Problem:
    def f(x):
        return float((1.0 - x[0]) ** 2)

    def grad(x):
        return np.array([-2.0 * (1.0 - x[0]), 0.0])

    def c(x):
        return np.array([10.0 * (x[1] - x[0] ** 2)])

    def jac(x):
        return np.array([[-20.0 * x[0], 10.0]])

    def hess_lag(x, lam):
        return np.array([[2.0 - 20.0 * lam[0], 0.0], [0.0, 0.0]])

    return _build("HS6", [-1.2, 1.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.0, x_star=[1.0, 1.0], y_star=[0.0])


def hs7() -> Problem:
    def f(x):
        return float(math.log1p(x[0] ** 2) - x[1])

    def grad(x):
        return np.array([2.0 * x[0] / (1.0 + x[0] ** 2), -1.0])

    def c(x):
        return np.array([(1.0 + x[0] ** 2) ** 2 + x[1] ** 2 - 4.0])

    def jac(x):
        return np.array([[4.0 * x[0] * (1.0 + x[0] ** 2), 2.0 * x[1]]])

    def hess_lag(x, lam):
        u = 1.0 + x[0] ** 2
        return np.array([[2.0 * (1.0 - x[0] ** 2) / u**2 + lam[0] * (4.0 + 12.0 * x[0] ** 2), 0.0],
                         [0.0, 2.0 * lam[0]]])

    r3 = math.sqrt(3.0)
    return _build("HS7", [2.0, 2.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=-r3, x_star=[0.0, r3], y_star=[1.0 / (2.0 * r3)])


def hs8() -> Problem:
    # constant objective: a feasibility problem with four solutions
    def c(x):
        return np.array([x[0] ** 2 + x[1] ** 2 - 25.0, x[0] * x[1] - 9.0])

    def jac(x):
        return np.array([[2.0 * x[0], 2.0 * x[1]], [x[1], x[0]]])

    def hess_lag(x, lam):
        return np.array([[2.0 * lam[0], lam[1]], [lam[1], 2.0 * lam[0]]])

    a, b = math.sqrt(43.0), math.sqrt(7.0)
    return _build("HS8", [2.0, 1.0], f=lambda x: -1.0, grad=lambda x: np.zeros(2), c=c, jac=jac,
                  hess_lag=hess_lag, f_star=-1.0, x_star=[(a + b) / 2, (a - b) / 2], y_star=[0.0, 0.0])


def hs9() -> Problem:
    w1, w2 = math.pi / 12.0, math.pi / 16.0

    def f(x):
        return float(math.sin(w1 * x[0]) * math.cos(w2 * x[1]))

    def grad(x):
        s1, c1 = math.sin(w1 * x[0]), math.cos(w1 * x[0])
        s2, c2 = math.sin(w2 * x[1]), math.cos(w2 * x[1])
        return np.array([w1 * c1 * c2, -w2 * s1 * s2])

    def hess_lag(x, lam):
        s1, c1 = math.sin(w1 * x[0]), math.cos(w1 * x[0])
        s2, c2 = math.sin(w2 * x[1]), math.cos(w2 * x[1])
        h12 = -w1 * w2 * c1 * s2
        return np.array([[-w1 * w1 * s1 * c2, h12], [h12, -w2 * w2 * s1 * c2]])

    A = np.array([[4.0, -3.0]])
    # minimizers (12k - 3, 16k - 4); lam* = -pi/96
    return _build("HS9", [0.0, 0.0], f=f, grad=grad, c=lambda x: A @ _arr(x), jac=lambda x: A.copy(),
                  hess_lag=hess_lag, f_star=-0.5, x_star=[-3.0, -4.0], y_star=[-math.pi / 96.0],
                  tags={"linear_constraints", "multiple_minima"})


def hs26() -> Problem:
    def f(x):
        return float((x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4)

    def grad(x):
        d, e = x[0] - x[1], x[1] - x[2]
        return np.array([2.0 * d, -2.0 * d + 4.0 * e**3, -4.0 * e**3])

    def c(x):
        return np.array([(1.0 + x[1] ** 2) * x[0] + x[2] ** 4 - 3.0])

    def jac(x):
        return np.array([[1.0 + x[1] ** 2, 2.0 * x[0] * x[1], 4.0 * x[2] ** 3]])

    def hess_lag(x, lam):
        e2 = 12.0 * (x[1] - x[2]) ** 2
        H = np.array([[2.0, -2.0, 0.0], [-2.0, 2.0 + e2, -e2], [0.0, -e2, e2]])
        H += lam[0] * np.array([[0.0, 2.0 * x[1], 0.0], [2.0 * x[1], 2.0 * x[0], 0.0],
                                [0.0, 0.0, 12.0 * x[2] ** 2]])
        return H

    return _build("HS26", [-2.6, 2.0, 2.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.0, x_star=[1.0, 1.0, 1.0], y_star=[0.0], tags={"degenerate"})


def hs27() -> Problem:
    def f(x):
        return float(0.01 * (x[0] - 1.0) ** 2 + (x[1] - x[0] ** 2) ** 2)

    def grad(x):
        r = x[1] - x[0] ** 2
        return np.array([0.02 * (x[0] - 1.0) - 4.0 * x[0] * r, 2.0 * r, 0.0])

    def c(x):
        return np.array([x[0] + x[2] ** 2 + 1.0])

    def jac(x):
        return np.array([[1.0, 0.0, 2.0 * x[2]]])

    def hess_lag(x, lam):
        r = x[1] - x[0] ** 2
        return np.array([[0.02 - 4.0 * r + 8.0 * x[0] ** 2, -4.0 * x[0], 0.0],
                         [-4.0 * x[0], 2.0, 0.0], [0.0, 0.0, 2.0 * lam[0]]])

    return _build("HS27", [2.0, 2.0, 2.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.04, x_star=[-1.0, 1.0, 0.0], y_star=[0.04])


def hs28() -> Problem:
    # (x1 + x2)^2 + (x2 + x3)^2
    Q = 2.0 * np.array([[1.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 1.0]])
    return _qp("HS28", Q, np.zeros(3), [[1.0, 2.0, 3.0]], [1.0], [-4.0, 1.0, 1.0], f_star=0.0)


def _hs39_like(name) -> Problem:
    def c(x):
        return np.array([x[1] - x[0] ** 3 - x[2] ** 2, x[0] ** 2 - x[1] - x[3] ** 2])

    def jac(x):
        return np.array([[-3.0 * x[0] ** 2, 1.0, -2.0 * x[2], 0.0],
                         [2.0 * x[0], -1.0, 0.0, -2.0 * x[3]]])

    def hess_lag(x, lam):
        return np.diag([-6.0 * x[0] * lam[0] + 2.0 * lam[1], 0.0, -2.0 * lam[0], -2.0 * lam[1]])

    return _build(name, [2.0, 2.0, 2.0, 2.0], f=lambda x: float(-x[0]),
                  grad=lambda x: np.array([-1.0, 0.0, 0.0, 0.0]), c=c, jac=jac, hess_lag=hess_lag,
                  f_star=-1.0, x_star=[1.0, 1.0, 0.0, 0.0], y_star=[-1.0, -1.0])


def hs39() -> Problem:
    return _hs39_like("HS39")


def hs40() -> Problem:
    def f(x):
        return float(-x[0] * x[1] * x[2] * x[3])

    def grad(x):
        return -np.array([x[1] * x[2] * x[3], x[0] * x[2] * x[3], x[0] * x[1] * x[3], x[0] * x[1] * x[2]])

    def c(x):
        return np.array([x[0] ** 3 + x[1] ** 2 - 1.0, x[0] ** 2 * x[3] - x[2], x[3] ** 2 - x[1]])

    def jac(x):
        return np.array([[3.0 * x[0] ** 2, 2.0 * x[1], 0.0, 0.0],
                         [2.0 * x[0] * x[3], 0.0, -1.0, x[0] ** 2],
                         [0.0, -1.0, 0.0, 2.0 * x[3]]])

    def hess_lag(x, lam):
        H = np.zeros((4, 4))
        for i in range(4):
            for j in range(i + 1, 4):
                k, l_ = [t for t in range(4) if t not in (i, j)]
                H[i, j] = H[j, i] = -x[k] * x[l_]
        H[0, 0] += 6.0 * x[0] * lam[0]
        H[1, 1] += 2.0 * lam[0]
        H[0, 0] += 2.0 * x[3] * lam[1]
        H[0, 3] += 2.0 * x[0] * lam[1]
        H[3, 0] += 2.0 * x[0] * lam[1]
        H[3, 3] += 2.0 * lam[2]
        return H

    xs = np.array([2.0 ** (-1.0 / 3.0), 2.0 ** (-0.5), 2.0 ** (-11.0 / 12.0), 2.0 ** (-0.25)])
    return _build("HS40", [0.8] * 4, f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=-0.25, x_star=xs, y_star=_ls_multipliers(grad, jac, xs))


def hs42() -> Problem:
    t = np.array([1.0, 2.0, 3.0, 4.0])

    def c(x):
        return np.array([x[0] - 2.0, x[2] ** 2 + x[3] ** 2 - 2.0])

    def jac(x):
        return np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0 * x[2], 2.0 * x[3]]])

    def hess_lag(x, lam):
        return np.diag([2.0, 2.0, 2.0 + 2.0 * lam[1], 2.0 + 2.0 * lam[1]])

    xs = [2.0, 2.0, 0.6 * SQRT2, 0.8 * SQRT2]
    return _build("HS42", [1.0] * 4, f=lambda x: float(np.sum((_arr(x) - t) ** 2)),
                  grad=lambda x: 2.0 * (_arr(x) - t), c=c, jac=jac, hess_lag=hess_lag,
                  f_star=28.0 - 10.0 * SQRT2, x_star=xs, y_star=[-2.0, 2.5 * SQRT2 - 1.0])


def _f46(x):
    return float((x[0] - x[1]) ** 2 + (x[2] - 1.0) ** 2 + (x[3] - 1.0) ** 4 + (x[4] - 1.0) ** 6)


def _g46(x):
    d = x[0] - x[1]
    return np.array([2.0 * d, -2.0 * d, 2.0 * (x[2] - 1.0), 4.0 * (x[3] - 1.0) ** 3, 6.0 * (x[4] - 1.0) ** 5])


def _h46(x):
    H = np.zeros((5, 5))
    H[:2, :2] = [[2.0, -2.0], [-2.0, 2.0]]
    H[2, 2] = 2.0
    H[3, 3] = 12.0 * (x[3] - 1.0) ** 2
    H[4, 4] = 30.0 * (x[4] - 1.0) ** 4
    return H


def hs46() -> Problem:
    def c(x):
        return np.array([x[0] ** 2 * x[3] + math.sin(x[3] - x[4]) - 1.0,
                         x[1] + x[2] ** 4 * x[3] ** 2 - 2.0])

    def jac(x):
        cs = math.cos(x[3] - x[4])
        return np.array([[2.0 * x[0] * x[3], 0.0, 0.0, x[0] ** 2 + cs, -cs],
                         [0.0, 1.0, 4.0 * x[2] ** 3 * x[3] ** 2, 2.0 * x[2] ** 4 * x[3], 0.0]])

    def hess_lag(x, lam):
        H = _h46(x)
        sn = math.sin(x[3] - x[4])
        H[0, 0] += 2.0 * x[3] * lam[0]
        H[0, 3] += 2.0 * x[0] * lam[0]
        H[3, 0] += 2.0 * x[0] * lam[0]
        H[3:, 3:] += -sn * lam[0] * np.array([[1.0, -1.0], [-1.0, 1.0]])
        H[2, 2] += 12.0 * x[2] ** 2 * x[3] ** 2 * lam[1]
        H[2, 3] += 8.0 * x[2] ** 3 * x[3] * lam[1]
        H[3, 2] += 8.0 * x[2] ** 3 * x[3] * lam[1]
        H[3, 3] += 2.0 * x[2] ** 4 * lam[1]
        return H

    return _build("HS46", [0.5 * SQRT2, 1.75, 0.5, 2.0, 2.0], f=_f46, grad=_g46, c=c, jac=jac,
                  hess_lag=hess_lag, f_star=0.0, x_star=np.ones(5), y_star=np.zeros(2),
                  tags={"degenerate", "slow"})


def hs47() -> Problem:
    def f(x):
        return float((x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 3 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 4)

    def grad(x):
        a, b, d, e = x[0] - x[1], x[1] - x[2], x[2] - x[3], x[3] - x[4]
        return np.array([2.0 * a, -2.0 * a + 3.0 * b * b, -3.0 * b * b + 4.0 * d**3,
                         -4.0 * d**3 + 4.0 * e**3, -4.0 * e**3])

    def c(x):
        return np.array([x[0] + x[1] ** 2 + x[2] ** 3 - 3.0, x[1] - x[2] ** 2 + x[3] - 1.0,
                         x[0] * x[4] - 1.0])

    def jac(x):
        return np.array([[1.0, 2.0 * x[1], 3.0 * x[2] ** 2, 0.0, 0.0],
                         [0.0, 1.0, -2.0 * x[2], 1.0, 0.0],
                         [x[4], 0.0, 0.0, 0.0, x[0]]])

    def hess_lag(x, lam):
        b, d, e = x[1] - x[2], x[2] - x[3], x[3] - x[4]
        H = np.zeros((5, 5))
        H[:2, :2] += [[2.0, -2.0], [-2.0, 2.0]]
        H[1:3, 1:3] += 6.0 * b * np.array([[1.0, -1.0], [-1.0, 1.0]])
        H[2:4, 2:4] += 12.0 * d * d * np.array([[1.0, -1.0], [-1.0, 1.0]])
        H[3:5, 3:5] += 12.0 * e * e * np.array([[1.0, -1.0], [-1.0, 1.0]])
        H[1, 1] += 2.0 * lam[0]
        H[2, 2] += 6.0 * x[2] * lam[0] - 2.0 * lam[1]
        H[0, 4] += lam[2]
        H[4, 0] += lam[2]
        return H

    return _build("HS47", [2.0, SQRT2, -1.0, 2.0 - SQRT2, 0.5], f=f, grad=grad, c=c, jac=jac,
                  hess_lag=hess_lag, f_star=0.0, x_star=np.ones(5), y_star=np.zeros(3),
                  tags={"degenerate", "slow"})


def hs48() -> Problem:
    # (x1 - 1)^2 + (x2 - x3)^2 + (x4 - x5)^2
    Q = 2.0 * np.array([[1, 0, 0, 0, 0], [0, 1, -1, 0, 0], [0, -1, 1, 0, 0],
                        [0, 0, 0, 1, -1], [0, 0, 0, -1, 1]], dtype=float)
    A = [[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, -2.0, -2.0]]
    return _qp("HS48", Q, [-2.0, 0, 0, 0, 0], A, [5.0, -3.0], [3.0, 5.0, -3.0, 2.0, -2.0],
               const=1.0, f_star=0.0)


def hs49() -> Problem:
    A = np.array([[1.0, 1.0, 1.0, 4.0, 0.0], [0.0, 0.0, 1.0, 0.0, 5.0]])
    b = np.array([7.0, 6.0])
    return _build("HS49", [10.0, 7.0, 2.0, -3.0, 0.8], f=_f46, grad=_g46,
                  c=lambda x: A @ _arr(x) - b, jac=lambda x: A.copy(),
                  hess_lag=lambda x, lam: _h46(x), f_star=0.0, x_star=np.ones(5), y_star=np.zeros(2),
                  tags={"linear_constraints", "degenerate", "slow"})


def hs50() -> Problem:
    def f(x):
        return float((x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 2)

    def grad(x):
        a, b, d, e = x[0] - x[1], x[1] - x[2], x[2] - x[3], x[3] - x[4]
        return np.array([2.0 * a, -2.0 * a + 2.0 * b, -2.0 * b + 4.0 * d**3, -4.0 * d**3 + 2.0 * e, -2.0 * e])

    def hess_lag(x, lam):
        d2 = 12.0 * (x[2] - x[3]) ** 2
        D = np.array([[1.0, -1.0], [-1.0, 1.0]])
        H = np.zeros((5, 5))
        H[0:2, 0:2] += 2.0 * D
        H[1:3, 1:3] += 2.0 * D
        H[2:4, 2:4] += d2 * D
        H[3:5, 3:5] += 2.0 * D
        return H

    A = np.array([[1.0, 2.0, 3.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0, 0.0], [0.0, 0.0, 1.0, 2.0, 3.0]])
    b = np.array([6.0, 6.0, 6.0])
    return _build("HS50", [35.0, -31.0, 11.0, 5.0, -5.0], f=f, grad=grad,
                  c=lambda x: A @ _arr(x) - b, jac=lambda x: A.copy(), hess_lag=hess_lag,
                  f_star=0.0, x_star=np.ones(5), y_star=np.zeros(3), tags={"linear_constraints"})


def _hs51_q(a):
    """Q, p, const of (a x1 - x2)^2 + (x2 + x3 - 2)^2 + (x4 - 1)^2 + (x5 - 1)^2."""
    Q = np.zeros((5, 5))
    Q[:2, :2] = 2.0 * np.array([[a * a, -a], [-a, 1.0]])
    Q[1:3, 1:3] += 2.0
    Q[3, 3] = Q[4, 4] = 2.0
    p = np.array([0.0, -4.0, -4.0, -2.0, -2.0])
    return Q, p, 6.0


def hs51() -> Problem:
    Q, p, k = _hs51_q(1.0)
    A = [[1.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, -2.0], [0.0, 1.0, 0.0, 0.0, -1.0]]
    return _qp("HS51", Q, p, A, [4.0, 0.0, 0.0], [2.5, 0.5, 2.0, -1.0, 0.5], const=k, f_star=0.0)


def hs52() -> Problem:
    Q, p, k = _hs51_q(4.0)
    A = [[1.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, -2.0], [0.0, 1.0, 0.0, 0.0, -1.0]]
    return _qp("HS52", Q, p, A, [0.0, 0.0, 0.0], [2.0] * 5, const=k, f_star=1859.0 / 349.0)


_HS56_PAR = (4.2, 4.2, 4.2, 7.2)


def hs56() -> Problem:
    L = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 2.0, 2.0]])
    par = np.array(_HS56_PAR)

    def c(x):
        x = _arr(x)
        return L @ x[:3] - par * np.sin(x[3:]) ** 2

    def jac(x):
        x = _arr(x)
        return np.hstack([L, np.diag(-par * np.sin(2.0 * x[3:]))])

    def grad(x):
        return np.array([-x[1] * x[2], -x[0] * x[2], -x[0] * x[1], 0.0, 0.0, 0.0, 0.0])

    def hess_lag(x, lam):
        x = _arr(x)
        H = np.zeros((7, 7))
        H[0, 1] = H[1, 0] = -x[2]
        H[0, 2] = H[2, 0] = -x[1]
        H[1, 2] = H[2, 1] = -x[0]
        H[3:, 3:] = np.diag(-2.0 * par * np.cos(2.0 * x[3:]) * _arr(lam))
        return H

    a = 0.50973968
    xs = np.array([2.4, 1.2, 1.2, math.asin(math.sqrt(4.0 / 7.0)), math.asin(math.sqrt(2.0 / 7.0)),
                   math.asin(math.sqrt(2.0 / 7.0)), 0.5 * math.pi])
    return _build("HS56", [1.0, 1.0, 1.0, a, a, a, 0.98511078], f=lambda x: float(-x[0] * x[1] * x[2]),
                  grad=grad, c=c, jac=jac, hess_lag=hess_lag, f_star=-3.456, x_star=xs,
                  y_star=_ls_multipliers(grad, jac, xs))


def hs61() -> Problem:
    def f(x):
        return float(4.0 * x[0] ** 2 + 2.0 * x[1] ** 2 + 2.0 * x[2] ** 2 - 33.0 * x[0] + 16.0 * x[1] - 24.0 * x[2])

    def grad(x):
        return np.array([8.0 * x[0] - 33.0, 4.0 * x[1] + 16.0, 4.0 * x[2] - 24.0])

    def c(x):
        return np.array([3.0 * x[0] - 2.0 * x[1] ** 2 - 7.0, 4.0 * x[0] - x[2] ** 2 - 11.0])

    def jac(x):
        return np.array([[3.0, -4.0 * x[1], 0.0], [4.0, 0.0, -2.0 * x[2]]])

    def hess_lag(x, lam):
        return np.diag([8.0, 4.0 - 4.0 * lam[0], 4.0 - 2.0 * lam[1]])

    return _build("HS61", [0.0, 0.0, 0.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=-143.6461422, x_star=[5.326770135563928, -2.118998632218976, 3.2104642253505506],
                  y_star=[-0.887684087748218, -1.737777205316692])


def _hs77_obj():
    def f(x):
        return float((x[0] - 1.0) ** 2 + (x[0] - x[1]) ** 2 + (x[2] - 1.0) ** 2 + (x[3] - 1.0) ** 4
                     + (x[4] - 1.0) ** 6)

    def grad(x):
        d = x[0] - x[1]
        return np.array([2.0 * (x[0] - 1.0) + 2.0 * d, -2.0 * d, 2.0 * (x[2] - 1.0),
                         4.0 * (x[3] - 1.0) ** 3, 6.0 * (x[4] - 1.0) ** 5])

    def hess(x):
        H = np.zeros((5, 5))
        H[:2, :2] = [[4.0, -2.0], [-2.0, 2.0]]
        H[2, 2] = 2.0
        H[3, 3] = 12.0 * (x[3] - 1.0) ** 2
        H[4, 4] = 30.0 * (x[4] - 1.0) ** 4
        return H

    return f, grad, hess


def _c1_hs77(x, lam, H):
    """c1 = x1^2 x4 + sin(x4 - x5) - 2 sqrt 2: Hessian part added to H."""
    sn = math.sin(x[3] - x[4])
    H[0, 0] += 2.0 * x[3] * lam
    H[0, 3] += 2.0 * x[0] * lam
    H[3, 0] += 2.0 * x[0] * lam
    H[3:, 3:] += -sn * lam * np.array([[1.0, -1.0], [-1.0, 1.0]])


def hs77() -> Problem:
    f, grad, hess = _hs77_obj()

    def c(x):
        return np.array([x[0] ** 2 * x[3] + math.sin(x[3] - x[4]) - 2.0 * SQRT2,
                         x[1] + x[2] ** 4 * x[3] ** 2 - (8.0 + SQRT2)])

    def jac(x):
        cs = math.cos(x[3] - x[4])
        return np.array([[2.0 * x[0] * x[3], 0.0, 0.0, x[0] ** 2 + cs, -cs],
                         [0.0, 1.0, 4.0 * x[2] ** 3 * x[3] ** 2, 2.0 * x[2] ** 4 * x[3], 0.0]])

    def hess_lag(x, lam):
        H = hess(x)
        _c1_hs77(x, lam[0], H)
        H[2, 2] += 12.0 * x[2] ** 2 * x[3] ** 2 * lam[1]
        H[2, 3] += 8.0 * x[2] ** 3 * x[3] * lam[1]
        H[3, 2] += 8.0 * x[2] ** 3 * x[3] * lam[1]
        H[3, 3] += 2.0 * x[2] ** 4 * lam[1]
        return H

    return _build("HS77", [2.0] * 5, f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.2415051288,
                  x_star=[1.1661721897092985, 1.1821113888027044, 1.3802570431454597,
                          1.5060362736230457, 0.6109201960430908],
                  y_star=[-0.08553959704281994, -0.03187839818681157])


def hs78() -> Problem:
    def f(x):
        return float(np.prod(x))

    def grad(x):
        x = _arr(x)
        return np.array([np.prod(np.delete(x, i)) for i in range(5)])

    def c(x):
        x = _arr(x)
        return np.array([x @ x - 10.0, x[1] * x[2] - 5.0 * x[3] * x[4], x[0] ** 3 + x[1] ** 3 + 1.0])

    def jac(x):
        x = _arr(x)
        return np.array([2.0 * x, [0.0, x[2], x[1], -5.0 * x[4], -5.0 * x[3]],
                         [3.0 * x[0] ** 2, 3.0 * x[1] ** 2, 0.0, 0.0, 0.0]])

    def hess_lag(x, lam):
        x = _arr(x)
        H = np.zeros((5, 5))
        for i in range(5):
            for j in range(i + 1, 5):
                H[i, j] = H[j, i] = np.prod(np.delete(x, [i, j]))
        H += 2.0 * lam[0] * np.eye(5)
        H[1, 2] += lam[1]
        H[2, 1] += lam[1]
        H[3, 4] -= 5.0 * lam[1]
        H[4, 3] -= 5.0 * lam[1]
        H[0, 0] += 6.0 * x[0] * lam[2]
        H[1, 1] += 6.0 * x[1] * lam[2]
        return H

    return _build("HS78", [-2.0, 1.5, 2.0, -1.0, -1.0], f=f, grad=grad, c=c, jac=jac,
                  hess_lag=hess_lag, f_star=-2.919700409,
                  x_star=[-1.7171435703943823, 1.5957096901835544, 1.8272457529271946,
                          -0.7636430781841304, -0.7636430781841304],
                  y_star=[0.7444459309751799, -0.7035751900173157, 0.0968055248950665])


def _hs79_obj():
    def f(x):
        return float((x[0] - 1.0) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2 + (x[2] - x[3]) ** 4
                     + (x[3] - x[4]) ** 4)

    def grad(x):
        a, b, d, e = x[0] - x[1], x[1] - x[2], x[2] - x[3], x[3] - x[4]
        return np.array([2.0 * (x[0] - 1.0) + 2.0 * a, -2.0 * a + 2.0 * b, -2.0 * b + 4.0 * d**3,
                         -4.0 * d**3 + 4.0 * e**3, -4.0 * e**3])

    def hess(x):
        D = np.array([[1.0, -1.0], [-1.0, 1.0]])
        H = np.zeros((5, 5))
        H[0, 0] = 2.0
        H[0:2, 0:2] += 2.0 * D
        H[1:3, 1:3] += 2.0 * D
        H[2:4, 2:4] += 12.0 * (x[2] - x[3]) ** 2 * D
        H[3:5, 3:5] += 12.0 * (x[3] - x[4]) ** 2 * D
        return H

    return f, grad, hess


def _c12_hs79(x, lam, H):
    """Hessian parts of c1 = x1 + x2^2 + x3^3 - k1 and c2 = x2 - x3^2 + x4 - k2."""
    H[1, 1] += 2.0 * lam[0]
    H[2, 2] += 6.0 * x[2] * lam[0] - 2.0 * lam[1]


def _jac_c12_hs79(x):
    return [[1.0, 2.0 * x[1], 3.0 * x[2] ** 2, 0.0, 0.0], [0.0, 1.0, -2.0 * x[2], 1.0, 0.0]]


def hs79() -> Problem:
    f, grad, hess = _hs79_obj()

    def c(x):
        return np.array([x[0] + x[1] ** 2 + x[2] ** 3 - 2.0 - 3.0 * SQRT2,
                         x[1] - x[2] ** 2 + x[3] + 2.0 - 2.0 * SQRT2, x[0] * x[4] - 2.0])

    def jac(x):
        return np.array(_jac_c12_hs79(x) + [[x[4], 0.0, 0.0, 0.0, x[0]]])

    def hess_lag(x, lam):
        H = hess(x)
        _c12_hs79(x, lam, H)
        H[0, 4] += lam[2]
        H[4, 0] += lam[2]
        return H

    return _build("HS79", [2.0] * 5, f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.07877682,
                  x_star=[1.1911274563110514, 1.3626031649617423, 1.4728179315120877,
                          1.6350166191679931, 1.6790814361664075],
                  y_star=[-0.03882104852265311, -0.016726517032489552, -0.00028732781369409825])


_HS100_W4 = 1.0 / 0.3333333333  # SIF: group (x4 - 11)^2 with SCALE 0.3333333333


def hs100lnp() -> Problem:
    w = _HS100_W4

    def f(x):
        return float((x[0] - 10.0) ** 2 + 5.0 * (x[1] - 12.0) ** 2 + x[2] ** 4 + w * (x[3] - 11.0) ** 2
                     + 10.0 * x[4] ** 6 + 7.0 * x[5] ** 2 + x[6] ** 4 - 4.0 * x[5] * x[6] - 10.0 * x[5]
                     - 8.0 * x[6])

    def grad(x):
        return np.array([2.0 * (x[0] - 10.0), 10.0 * (x[1] - 12.0), 4.0 * x[2] ** 3, 2.0 * w * (x[3] - 11.0),
                         60.0 * x[4] ** 5, 14.0 * x[5] - 4.0 * x[6] - 10.0, 4.0 * x[6] ** 3 - 4.0 * x[5] - 8.0])

    def c(x):
        return np.array([
            127.0 - 2.0 * x[0] ** 2 - 3.0 * x[1] ** 4 - x[2] - 4.0 * x[3] ** 2 - 5.0 * x[4],
            -4.0 * x[0] ** 2 - x[1] ** 2 + 3.0 * x[0] * x[1] - 2.0 * x[2] ** 2 - 5.0 * x[5] + 11.0 * x[6],
        ])

    def jac(x):
        return np.array([
            [-4.0 * x[0], -12.0 * x[1] ** 3, -1.0, -8.0 * x[3], -5.0, 0.0, 0.0],
            [-8.0 * x[0] + 3.0 * x[1], -2.0 * x[1] + 3.0 * x[0], -4.0 * x[2], 0.0, 0.0, -5.0, 11.0],
        ])

    def hess_lag(x, lam):
        H = np.diag([2.0, 10.0, 12.0 * x[2] ** 2, 2.0 * w, 300.0 * x[4] ** 4, 14.0, 12.0 * x[6] ** 2])
        H[5, 6] = H[6, 5] = -4.0
        H[0, 0] += -4.0 * lam[0] - 8.0 * lam[1]
        H[1, 1] += -36.0 * x[1] ** 2 * lam[0] - 2.0 * lam[1]
        H[3, 3] += -8.0 * lam[0]
        H[0, 1] += 3.0 * lam[1]
        H[1, 0] += 3.0 * lam[1]
        H[2, 2] += -4.0 * lam[1]
        return H

    return _build("HS100LNP", [1.0, 2.0, 0.0, 4.0, 0.0, 1.0, 1.0], f=f, grad=grad, c=c, jac=jac,
                  hess_lag=hess_lag, f_star=680.6300574,
                  x_star=[2.330499372852969, 1.9513723728594328, -0.4775413924203702, 4.365726233760515,
                          -0.6244869705343405, 1.038131018616802, 1.5942267116009459],
                  y_star=[-1.139719959236026, -0.3686145171537114])


# =============================================================================================
# Boggs-Tolle
def bt1() -> Problem:
    def c(x):
        return np.array([x[0] ** 2 + x[1] ** 2 - 1.0])

    def jac(x):
        return np.array([[2.0 * x[0], 2.0 * x[1]]])

    return _build("BT1", [0.08, 0.06], f=lambda x: float(100.0 * (x[0] ** 2 + x[1] ** 2) - x[0] - 100.0),
                  grad=lambda x: np.array([200.0 * x[0] - 1.0, 200.0 * x[1]]), c=c, jac=jac,
                  hess_lag=lambda x, lam: (200.0 + 2.0 * lam[0]) * np.eye(2),
                  f_star=-1.0, x_star=[1.0, 0.0], y_star=[-99.5])


def bt2() -> Problem:
    def f(x):
        return float((x[0] - 1.0) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4)

    def grad(x):
        a, b = x[0] - x[1], x[1] - x[2]
        return np.array([2.0 * (x[0] - 1.0) + 2.0 * a, -2.0 * a + 4.0 * b**3, -4.0 * b**3])

    def c(x):  # SIF constant 8.2426407 = 4 + 3 sqrt 2 rounded
        return np.array([x[0] * (1.0 + x[1] ** 2) + x[2] ** 4 - 8.2426407])

    def jac(x):
        return np.array([[1.0 + x[1] ** 2, 2.0 * x[0] * x[1], 4.0 * x[2] ** 3]])

    def hess_lag(x, lam):
        b2 = 12.0 * (x[1] - x[2]) ** 2
        H = np.array([[4.0, -2.0, 0.0], [-2.0, 2.0 + b2, -b2], [0.0, -b2, b2]])
        H += lam[0] * np.array([[0.0, 2.0 * x[1], 0.0], [2.0 * x[1], 2.0 * x[0], 0.0],
                                [0.0, 0.0, 12.0 * x[2] ** 2]])
        return H

    return _build("BT2", [10.0, 10.0, 10.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.03256820039,
                  x_star=[1.104859019978814, 1.1966741827589011, 1.5352622610879794],
                  y_star=[-0.010726727900117644])


def bt3() -> Problem:
    # (x1 - x2)^2 + (x2 + x3 - 2)^2 + (x4 - 1)^2 + (x5 - 1)^2
    Q, p, k = _hs51_q(1.0)
    A = [[1.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0, -2.0], [0.0, 1.0, 0.0, 0.0, -1.0]]
    return _qp("BT3", Q, p, A, [0.0, 0.0, 0.0], [20.0] * 5, const=k, f_star=176.0 / 43.0)


def bt4() -> Problem:
    def c(x):
        return np.array([x[0] ** 2 + x[1] ** 2 + x[2] ** 2 - 25.0, x[0] + x[1] + x[2] - 1.0])

    def jac(x):
        return np.array([2.0 * _arr(x), [1.0, 1.0, 1.0]])

    def hess_lag(x, lam):
        return np.diag([2.0 * lam[0], 6.0 * x[1] + 2.0 * lam[0], 2.0 * lam[0]])

    return _build("BT4", [4.0382, -2.947, -0.09115], f=lambda x: float(x[0] - x[1] + x[1] ** 3),
                  grad=lambda x: np.array([1.0, -1.0 + 3.0 * x[1] ** 2, 0.0]), c=c, jac=jac,
                  hess_lag=hess_lag, tags={"multiple_minima"})


def bt5() -> Problem:
    def f(x):
        return float(1000.0 - x[0] ** 2 - 2.0 * x[1] ** 2 - x[2] ** 2 - x[0] * x[1] - x[0] * x[2])

    def grad(x):
        return np.array([-2.0 * x[0] - x[1] - x[2], -4.0 * x[1] - x[0], -2.0 * x[2] - x[0]])

    def c(x):
        return np.array([x[0] ** 2 + x[1] ** 2 + x[2] ** 2 - 25.0, 8.0 * x[0] + 14.0 * x[1] + 7.0 * x[2] - 56.0])

    def jac(x):
        return np.array([2.0 * _arr(x), [8.0, 14.0, 7.0]])

    def hess_lag(x, lam):
        return np.array([[-2.0, -1.0, -1.0], [-1.0, -4.0, 0.0], [-1.0, 0.0, -2.0]]) + 2.0 * lam[0] * np.eye(3)

    return _build("BT5", [2.0, 2.0, 2.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=961.7151721, x_star=[3.51212134187472, 0.21698794151522333, 3.5521711548270165],
                  y_star=[1.2234635604844077, 0.2749371020656299])


def bt6() -> Problem:
    f, grad, hess = _hs77_obj()

    def c(x):
        return np.array([x[0] ** 2 * x[3] + math.sin(x[3] - x[4]) - 2.0 * SQRT2,
                         x[1] + x[2] ** 4 * x[1] ** 2 - (8.0 + SQRT2)])

    def jac(x):
        cs = math.cos(x[3] - x[4])
        return np.array([[2.0 * x[0] * x[3], 0.0, 0.0, x[0] ** 2 + cs, -cs],
                         [0.0, 1.0 + 2.0 * x[2] ** 4 * x[1], 4.0 * x[2] ** 3 * x[1] ** 2, 0.0, 0.0]])

    def hess_lag(x, lam):
        H = hess(x)
        _c1_hs77(x, lam[0], H)
        H[1, 1] += 2.0 * x[2] ** 4 * lam[1]
        H[1, 2] += 8.0 * x[2] ** 3 * x[1] * lam[1]
        H[2, 1] += 8.0 * x[2] ** 3 * x[1] * lam[1]
        H[2, 2] += 12.0 * x[2] ** 2 * x[1] ** 2 * lam[1]
        return H

    return _build("BT6", [2.0] * 5, f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.2770447888,
                  x_star=[1.2869318973474277, 1.4802353052688126, 1.379454474680805, 1.3219481459309539,
                          0.6287182232159736],
                  y_star=[-0.05503488094846489, -0.03298724524278784])


def bt7() -> Problem:
    def f(x):
        return float(100.0 * (x[1] - x[0] ** 2) ** 2 + (x[0] - 1.0) ** 2)

    def grad(x):
        r = x[1] - x[0] ** 2
        return np.array([-400.0 * x[0] * r + 2.0 * (x[0] - 1.0), 200.0 * r, 0.0, 0.0, 0.0])

    def c(x):
        return np.array([x[0] * x[1] - x[2] ** 2 - 1.0, x[0] + x[1] ** 2 - x[3] ** 2, x[0] + x[4] ** 2 - 0.5])

    def jac(x):
        return np.array([[x[1], x[0], -2.0 * x[2], 0.0, 0.0],
                         [1.0, 2.0 * x[1], 0.0, -2.0 * x[3], 0.0],
                         [1.0, 0.0, 0.0, 0.0, 2.0 * x[4]]])

    def hess_lag(x, lam):
        r = x[1] - x[0] ** 2
        H = np.zeros((5, 5))
        H[0, 0] = -400.0 * r + 800.0 * x[0] ** 2 + 2.0
        H[0, 1] = H[1, 0] = -400.0 * x[0] + lam[0]
        H[1, 1] = 200.0 + 2.0 * lam[1]
        H[2, 2] = -2.0 * lam[0]
        H[3, 3] = -2.0 * lam[1]
        H[4, 4] = 2.0 * lam[2]
        return H

    return _build("BT7", [-2.0, 1.0, 1.0, 1.0, 1.0], f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  tags={"multiple_minima"})


def bt8() -> Problem:
    def c(x):
        return np.array([x[0] + x[1] ** 2 - x[3] ** 2 - 1.0, x[0] ** 2 + x[1] ** 2 - x[4] ** 2 - 1.0])

    def jac(x):
        return np.array([[1.0, 2.0 * x[1], 0.0, -2.0 * x[3], 0.0],
                         [2.0 * x[0], 2.0 * x[1], 0.0, 0.0, -2.0 * x[4]]])

    def hess_lag(x, lam):
        return np.diag([2.0 + 2.0 * lam[1], 2.0 + 2.0 * (lam[0] + lam[1]), 2.0, -2.0 * lam[0], -2.0 * lam[1]])

    return _build("BT8", [1.0, 1.0, 1.0, 0.0, 0.0], f=lambda x: float(x[0] ** 2 + x[1] ** 2 + x[2] ** 2),
                  grad=lambda x: np.array([2.0 * x[0], 2.0 * x[1], 2.0 * x[2], 0.0, 0.0]), c=c, jac=jac,
                  hess_lag=hess_lag, f_star=1.0, x_star=[1.0, 0.0, 0.0, 0.0, 0.0],
                  tags={"degenerate"})


def bt9() -> Problem:
    return _hs39_like("BT9")


def bt10() -> Problem:
    def c(x):
        return np.array([x[1] - x[0] ** 3, x[0] ** 2 - x[1]])

    def jac(x):
        return np.array([[-3.0 * x[0] ** 2, 1.0], [2.0 * x[0], -1.0]])

    def hess_lag(x, lam):
        return np.array([[-6.0 * x[0] * lam[0] + 2.0 * lam[1], 0.0], [0.0, 0.0]])

    return _build("BT10", [2.0, 2.0], f=lambda x: float(-x[0]), grad=lambda x: np.array([-1.0, 0.0]),
                  c=c, jac=jac, hess_lag=hess_lag, f_star=-1.0, x_star=[1.0, 1.0], y_star=[-1.0, -1.0])


def bt11() -> Problem:
    f, grad, hess = _hs79_obj()

    def c(x):
        return np.array([x[0] + x[1] ** 2 + x[2] ** 3 - (-2.0 + math.sqrt(18.0)),
                         x[1] - x[2] ** 2 + x[3] - (-2.0 + math.sqrt(8.0)), x[0] - x[4] - 2.0])

    def jac(x):
        return np.array(_jac_c12_hs79(x) + [[1.0, 0.0, 0.0, 0.0, -1.0]])

    def hess_lag(x, lam):
        H = hess(x)
        _c12_hs79(x, lam, H)
        return H

    return _build("BT11", [2.0] * 5, f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag,
                  f_star=0.8248917783,
                  x_star=[1.2675759591939144, 0.9653004612773713, 0.35104381555730824,
                          -0.013641576090147664, -0.7324240408060858],
                  y_star=[0.34572784293286507, -1.2914247881260903, -1.4854307571537801])


def bt12() -> Problem:
    def c(x):
        return np.array([x[0] + x[1] - x[2] ** 2 - 25.0, x[0] ** 2 + x[1] ** 2 - x[3] ** 2 - 25.0,
                         x[0] - x[4] ** 2 - 2.0])

    def jac(x):
        return np.array([[1.0, 1.0, -2.0 * x[2], 0.0, 0.0],
                         [2.0 * x[0], 2.0 * x[1], 0.0, -2.0 * x[3], 0.0],
                         [1.0, 0.0, 0.0, 0.0, -2.0 * x[4]]])

    def hess_lag(x, lam):
        return np.diag([0.02 + 2.0 * lam[1], 2.0 + 2.0 * lam[1], -2.0 * lam[0], -2.0 * lam[1], -2.0 * lam[2]])

    return _build("BT12", [15.811, 1.5811, 0.0, 15.083, 3.7164],
                  f=lambda x: float(0.01 * x[0] ** 2 + x[1] ** 2),
                  grad=lambda x: np.array([0.02 * x[0], 2.0 * x[1], 0.0, 0.0, 0.0]), c=c, jac=jac,
                  hess_lag=hess_lag, f_star=6.188118812,
                  x_star=[24.752475247524753, 0.24752475247524755, 0.0, 24.243479523006048, 4.76995547647195],
                  y_star=[-0.4950495049504951, 0.0, 0.0])


# =============================================================================================
# other CUTEst problems
def byrdsphr() -> Problem:
    def c(x):
        return np.array([x[0] ** 2 + x[1] ** 2 + x[2] ** 2 - 9.0, (x[0] - 1.0) ** 2 + x[1] ** 2 + x[2] ** 2 - 9.0])

    def jac(x):
        return np.array([2.0 * _arr(x), [2.0 * (x[0] - 1.0), 2.0 * x[1], 2.0 * x[2]]])

    r = math.sqrt(8.75 / 2.0)
    s = 1.0 / (2.0 * r)
    return _build("BYRDSPHR", [5.0, 0.0001, -0.0001], f=lambda x: float(-x[0] - x[1] - x[2]),
                  grad=lambda x: -np.ones(3), c=c, jac=jac,
                  hess_lag=lambda x, lam: 2.0 * (lam[0] + lam[1]) * np.eye(3),
                  f_star=-0.5 - 2.0 * r, x_star=[0.5, r, r], y_star=[(s + 1.0) / 2.0, (s - 1.0) / 2.0])


_MARATOS_TAU = 1.0e-6


def maratos() -> Problem:
    tau = _MARATOS_TAU

    def c(x):
        return np.array([x[0] ** 2 + x[1] ** 2 - 1.0])

    return _build("MARATOS", [1.1, 0.1],
                  f=lambda x: float(-x[0] + tau * (x[0] ** 2 + x[1] ** 2 - 1.0)),
                  grad=lambda x: np.array([-1.0 + 2.0 * tau * x[0], 2.0 * tau * x[1]]), c=c,
                  jac=lambda x: np.array([[2.0 * x[0], 2.0 * x[1]]]),
                  hess_lag=lambda x, lam: 2.0 * (tau + lam[0]) * np.eye(2),
                  f_star=-1.0, x_star=[1.0, 0.0], y_star=[0.5 - tau])


def genhs28(n: int = 10) -> Problem:
    """``sum_{i<n} (x_i + x_{i+1})^2``, ``x_i + 2 x_{i+1} + 3 x_{i+2} = 1``; y0 = 1 as in the SIF."""
    n = int(n)
    if n < 3:
        raise ValueError("GENHS28: n must be >= 3")
    D = np.eye(n - 1, n) + np.eye(n - 1, n, k=1)
    Q = 2.0 * D.T @ D
    A = np.zeros((n - 2, n))
    for i in range(n - 2):
        A[i, i:i + 3] = [1.0, 2.0, 3.0]
    x0 = np.ones(n)
    x0[0] = -4.0
    p = _qp("GENHS28", Q, np.zeros(n), A, np.ones(n - 2), x0, y0=np.ones(n - 2),
            f_star=0.9271736938 if n == 10 else None)
    return p.replace(params=(n,))


def orthregb() -> Problem:
    """Fit a quadric ``p^T H p - 2 g^T p = 1`` through 6 points (n = 9 + 18, m = 6)."""
    A_, B_, C_ = 9.0, 6.0, 7.0
    cx = cy = cz = 0.5
    data = np.array([[cx + A_, cy + A_, cz], [cx + B_, cy - B_, cz], [cx - A_, cy - A_, cz],
                     [cx - B_, cy + B_, cz], [cx, cy, cz + C_], [cx, cy, cz - C_]])
    d = data.reshape(-1)
    npt = data.shape[0]

    def f(x):
        r = _arr(x)[9:] - d
        return float(r @ r)

    def grad(x):
        g = np.zeros(27)
        g[9:] = 2.0 * (_arr(x)[9:] - d)
        return g

    def split(x):
        x = _arr(x)
        h11, h12, h13, h22, h23, h33, g1, g2, g3 = x[:9]
        H = np.array([[h11, h12, h13], [h12, h22, h23], [h13, h23, h33]])
        return H, np.array([g1, g2, g3]), x[9:].reshape(npt, 3)

    def c(x):
        H, g, P = split(x)
        return np.einsum("ij,jk,ik->i", P, H, P) - 2.0 * P @ g - 1.0

    def jac(x):
        H, g, P = split(x)
        J = np.zeros((npt, 27))
        px, py, pz = P[:, 0], P[:, 1], P[:, 2]
        J[:, 0:9] = np.column_stack([px * px, 2 * px * py, 2 * px * pz, py * py, 2 * py * pz, pz * pz,
                                     -2 * px, -2 * py, -2 * pz])
        G = 2.0 * P @ H - 2.0 * g  # d c_i / d p_i
        for i in range(npt):
            J[i, 9 + 3 * i:12 + 3 * i] = G[i]
        return J

    def hess_lag(x, lam):
        H, _, P = split(x)
        lam = _arr(lam)
        Hl = np.zeros((27, 27))
        Hl[9:, 9:] = 2.0 * np.eye(18)
        for i in range(npt):
            o = 9 + 3 * i
            px, py, pz = P[i]
            # d^2 c_i / (d(h11, h12, h13, h22, h23, h33, g1, g2, g3) d p_i)
            M = 2.0 * np.array([[px, 0.0, 0.0], [py, px, 0.0], [pz, 0.0, px], [0.0, py, 0.0],
                                [0.0, pz, py], [0.0, 0.0, pz], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0],
                                [0.0, 0.0, -1.0]])
            Hl[0:9, o:o + 3] += lam[i] * M
            Hl[o:o + 3, 0:9] += lam[i] * M.T
            Hl[o:o + 3, o:o + 3] += 2.0 * lam[i] * H
        return Hl

    x0 = np.concatenate([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0], d])
    return _build("ORTHREGB", x0, f=f, grad=grad, c=c, jac=jac, hess_lag=hess_lag, f_star=0.0)


def mwright() -> Problem:
    # f = x1^2 + (x1 - x2)^2 + (x2 - x3)^3 + (x3 - x4)^4 + (x4 - x5)^4,
    # c = (x1 + x2^2 + x3^2 - 2 - 3 sqrt 2, x2 - x3^2 + x4 + 2 - 2 sqrt 2, x1 x5 - 2)
    def f(x):
        return float(x[0] ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 3 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 4)

    def grad(x):
        a, b, d, e = x[0] - x[1], x[1] - x[2], x[2] - x[3], x[3] - x[4]
        return np.array([2.0 * x[0] + 2.0 * a, -2.0 * a + 3.0 * b * b, -3.0 * b * b + 4.0 * d**3,
                         -4.0 * d**3 + 4.0 * e**3, -4.0 * e**3])

    def c(x):
        return np.array([x[0] + x[1] ** 2 + x[2] ** 2 - (2.0 + 3.0 * SQRT2),
                         x[1] - x[2] ** 2 + x[3] - (-2.0 + 2.0 * SQRT2), x[0] * x[4] - 2.0])

    def jac(x):
        return np.array([[1.0, 2.0 * x[1], 2.0 * x[2], 0.0, 0.0], [0.0, 1.0, -2.0 * x[2], 1.0, 0.0],
                         [x[4], 0.0, 0.0, 0.0, x[0]]])

    def hess_lag(x, lam):
        D = np.array([[1.0, -1.0], [-1.0, 1.0]])
        H = np.zeros((5, 5))
        H[0, 0] = 2.0
        H[0:2, 0:2] += 2.0 * D
        H[1:3, 1:3] += 6.0 * (x[1] - x[2]) * D
        H[2:4, 2:4] += 12.0 * (x[2] - x[3]) ** 2 * D
        H[3:5, 3:5] += 12.0 * (x[3] - x[4]) ** 2 * D
        H[1, 1] += 2.0 * lam[0]
        H[2, 2] += 2.0 * lam[0] - 2.0 * lam[1]
        H[0, 4] += lam[2]
        H[4, 0] += lam[2]
        return H

    return _build("MWRIGHT", [-1.0, 2.0, 1.0, -2.0, -2.0], f=f, grad=grad, c=c, jac=jac,
                  hess_lag=hess_lag, f_star=24.97880953,
                  x_star=[-1.29459852340353, 2.463077440738187, 1.2126370980014756, -0.16416158454255655,
                          -1.544880489081629],
                  y_star=[-2.4596725733501654, -0.08942702647147772, -8.132811332163046],
                  tags={"multiple_minima"})


# =============================================================================================
def _ls_multipliers(grad, jac, x):
    """Least-squares multipliers ``argmin ||grad f(x) + J(x)^T y||`` (for a known x*)."""
    x = _arr(x)
    J = np.asarray(jac(x), dtype=np.float64)
    return np.linalg.lstsq(J.T, -np.asarray(grad(x), dtype=np.float64), rcond=None)[0]


HS_BT_BUILDERS = {
    "HS6": hs6, "HS7": hs7, "HS8": hs8, "HS9": hs9, "HS26": hs26, "HS27": hs27, "HS28": hs28,
    "HS39": hs39, "HS40": hs40, "HS42": hs42, "HS46": hs46, "HS47": hs47, "HS48": hs48,
    "HS49": hs49, "HS50": hs50, "HS51": hs51, "HS52": hs52, "HS56": hs56, "HS61": hs61,
    "HS77": hs77, "HS78": hs78, "HS79": hs79, "HS100LNP": hs100lnp,
    "BT1": bt1, "BT2": bt2, "BT3": bt3, "BT4": bt4, "BT5": bt5, "BT6": bt6, "BT7": bt7, "BT8": bt8,
    "BT9": bt9, "BT10": bt10, "BT11": bt11, "BT12": bt12,
    "BYRDSPHR": byrdsphr, "MARATOS": maratos, "GENHS28": genhs28, "ORTHREGB": orthregb,
    "MWRIGHT": mwright,
}

#: The HS/BT/CUTEst equality-constrained problems of spec 6.2 (all in S2MPJ).
HS_BT_NAMES = tuple(HS_BT_BUILDERS)
#: Every problem of this module.
ALL_NAMES = HS_BT_NAMES + NE_NAMES + PAPER_P_NAMES

_BUILDERS = {**HS_BT_BUILDERS, **NE_BUILDERS}
_UPPER = {k.upper(): k for k in _BUILDERS}
_ALIASES = {"BA-L1SP": "BAmL1SP"}

#: Objective values at the local minima of the "multiple_minima" problems BT4, BT7, MWRIGHT (KKT
#: points with a positive definite reduced Hessian, found by Newton's method on the KKT system from
#: 3000 random starts; 6 digits). IPOPT from x0 reaches BT4 -3.704768, BT7 306.5 and MWRIGHT
#: 24.97881 (its f_star; BT4 and BT7 carry none: spec 6.2 asserts only their KKT residual).
#: MWRIGHT's SIF SOLTN 32.851791437 is not a KKT point of the problem as the SIF defines it.
OTHER_MINIMA = {
    "BT4": (-45.510551, -3.704768, 3.289038),
    "BT7": (306.5, 360.379767),
    "MWRIGHT": (1.288383, 24.657328, 24.97881, 41.446488, 50.971839, 69.608089, 597.003736),
}

#: ``||nabla L(x0, y0)||_2`` (y0 = the problem's y0, zeros except GENHS28) as printed in spec 6.1
#: (more digits) or the KKT0 column of 7.1; MANCINONE is for n = 100.
KKT0_REFERENCE = {
    "HS6": 6.2225, "HS7": 25.03, "HS28": 7.483, "HS39": 10.247, "BT9": 10.247, "HS40": 1.086,
    "HS42": 7.550, "HS48": 25.61, "HS51": 6.557, "HS52": 49.56, "HS100LNP": 111.07,
    "BT5": 19.3, "BT10": 6.4, "HIMMELBA": 12.4, "BT12": 8.25, "BT3": 144, "BT6": 57.3,
    "BT11": 12.1, "GENHS28": 39.9, "SINVALNE": 2.36, "BOOTH": 8.6, "HS47": 40.5,
    "WAYSEA1NE": 609, "HS50": 1290, "RSNBRNE": 4.92, "CUBENE": 27.4, "HS77": 57.3,
    "MWRIGHT": 151, "ZANGWIL3": 172, "TRIGON1NE": 1.722, "BAmL1SP": 357, "HS78": 11.3,
    "HS56": 1.73, "HELIXNE": 50, "HS79": 8.3, "ORTHREGB": 261, "GOTTFR": 2.41,
    "HIMMELBE": 2.42, "MOREBVNE": 0.126, "WAYSEA2NE": 46, "DENSCHNCNE": 29.82,
    "DENSCHNFNE": 20.4, "HIMMELBC": 10.3, "PRICE4NE": 116, "INTEQNE": 0.252,
    "MANCINONE": 1.0504e6, "BT2": 1.1e4,
}


def _canonical(name: str) -> str:
    key = str(name).strip().upper()
    key = _ALIASES.get(key, key)
    if key.upper() in _UPPER:
        return _UPPER[key.upper()]
    raise KeyError(f"unknown problem {name!r}; available: {', '.join(ALL_NAMES)}")


def get_problem(name: str, **sif_args) -> Problem:
    """The problem ``name`` (case-insensitive) with its standard start.

    ``sif_args`` are the SIF size parameters of the sized problems: ``n`` for MANCINONE (default
    100, the paper's size; S2MPJ's default is 10), INTEQNE (N = 10, N + 2 variables), MOREBVNE,
    TRIGON1NE (10) and GENHS28 (10); MANCINONE also takes ``alpha``, ``beta``, ``gamma``.
    """
    key = _canonical(name)
    builder = _BUILDERS[key]
    try:
        return builder(**sif_args)
    except TypeError as exc:
        if sif_args:
            raise TypeError(f"get_problem({key!r}): unsupported arguments {sorted(sif_args)}") from exc
        raise


def list_problems(tag: str | None = None) -> list[str]:
    """Names of all problems, or of those carrying ``tag`` (e.g. "ne", "qp", "multiple_minima")."""
    if tag is None:
        return list(ALL_NAMES)
    return [nm for nm in ALL_NAMES if tag in get_problem(nm).tags]
