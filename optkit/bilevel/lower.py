"""Exact lower-level solves (the ``y*(x)`` references) and the phase-1 LP of the restoration.

All functions work on host numpy data of one instance; ``A, b`` include the box rows of Y.
"""

from __future__ import annotations

import numpy as np


def solve_lower_qp(Q, q, A, b, tol=1e-10):
    """``min 1/2 y^T Q y + q^T y s.t. A y <= b`` by Clarabel (cvxpy). Returns (y, lam, ok); ``lam`` has one entry per row of A."""
    import cvxpy as cp

    n = q.shape[0]
    y = cp.Variable(n)
    Qs = 0.5 * (Q + Q.T)
    cons = [A @ y <= b] if A.shape[0] else []
    obj = 0.5 * cp.quad_form(y, cp.psd_wrap(Qs)) + q @ y
    prob = cp.Problem(cp.Minimize(obj), cons)
    try:
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol, max_iter=200)
    except cp.error.SolverError:
        return None, None, False
    if prob.status not in ("optimal", "optimal_inaccurate") or y.value is None:
        return None, None, False
    lam = np.maximum(np.asarray(cons[0].dual_value, float), 0.0) if cons else np.zeros(0)
    return np.asarray(y.value, float), lam, prob.status == "optimal"


def solve_lower_lp(c, A, b):
    """``min c^T y s.t. A y <= b`` by HiGHS (scipy). Returns (y, lam, ok) with ``lam >= 0`` per row of A."""
    from scipy.optimize import linprog

    res = linprog(c, A_ub=A, b_ub=b, bounds=(None, None), method="highs")
    if res.status != 0:
        return None, None, False
    lam = -np.asarray(res.ineqlin.marginals, float)
    return np.asarray(res.x, float), np.maximum(lam, 0.0), True


def phase1_lp(A, b, cap=1.0):
    """A strictly feasible point of ``A y < b``: ``max sigma s.t. A y + sigma <= b, sigma <= cap``.

    Returns ``(y, sigma)``; ``sigma <= 0`` means no Slater point (``None`` when the LP failed).
    """
    from scipy.optimize import linprog

    m, n = A.shape
    c = np.zeros(n + 1)
    c[-1] = -1.0
    Aub = np.hstack([A, np.ones((m, 1))])
    bounds = [(None, None)] * n + [(None, cap)]
    res = linprog(c, A_ub=Aub, b_ub=b, bounds=bounds, method="highs")
    if res.status == 3:  # unbounded in y (sigma capped): Y unbounded along a recession direction
        res = linprog(c, A_ub=Aub, b_ub=b, bounds=[(-1e6, 1e6)] * n + [(None, cap)], method="highs")
    if res.status != 0:
        return None, None
    return np.asarray(res.x[:n], float), float(res.x[-1])
