"""Test and benchmark instances of spec bilevel §6-7, each with ``.solution`` where one is known.

Callables accept numpy arrays and torch tensors alike (constants are converted to the iterate's
type), so every instance runs on both backends; numpy derivatives are given in closed form.
"""

from __future__ import annotations

import numpy as np

from .problem import BilevelProblem, LowerLP, LowerQP, _like

__all__ = ["sum_coupled_qp", "budget_lp"]


def _sum(v):
    return v.sum().reshape(1)


def sum_coupled_qp(n: int = 4) -> BilevelProblem:
    """V1: ``F = 1/2||x||^2 + 1/2||y - 2||^2``, ``f = 1/2||y - a||^2``, ``1^T y <= 1^T x``.

    ``a_i = 1 + 3 (i - 1)/(n - 1)``. Unique solution ``x* = 1``, ``y* = a - 1.5``, multiplier 1.5,
    ``F* = n + 3 n (n + 1) / (8 (n - 1))``. Closed form of the barrier solution in the spec.
    """
    if n < 2:
        raise ValueError(f"n: must be >= 2, got {n}")
    a = 1.0 + 3.0 * np.arange(n) / (n - 1)
    u, v = np.zeros(n), 2.0 * np.ones(n)

    def F(x, y):
        return 0.5 * ((x - _like(u, x)) ** 2).sum() + 0.5 * ((y - _like(v, y)) ** 2).sum()

    def grad_F(x, y):
        return x - u, y - v

    def grad_f(x, y):
        return np.zeros(n), y - a

    def vjp_g(x, y, lam):
        return -lam[0] * np.ones(n), lam[0] * np.ones(n)

    def proj_C(x, y):
        s = float(y.sum() - x.sum())
        if s <= 0:
            return x, y
        return x + s / (2 * n), y - s / (2 * n)

    lower = LowerQP(Q=np.eye(n), q=-a, A=np.ones((1, n)), b=lambda x: _sum(x))
    F_star = n + 3 * n * (n + 1) / (8 * (n - 1))
    sol = dict(x=np.ones(n), y=a - 1.5, F=F_star, lam=np.array([1.5]))
    return BilevelProblem(F, n_x=n, n_y=n, m=1, lower=lower, grad_F=grad_F, grad_f=grad_f, vjp_g=vjp_g,
                          proj_C=proj_C, x0=np.zeros(n), y0=-10.0 * np.ones(n), name=f"sum_coupled_qp({n})",
                          solution=sol)


def budget_lp() -> BilevelProblem:
    """V2: LP lower level ``min c^T y s.t. y >= 0, 1^T y <= x`` with ``c = (-3, -2, -1)``.

    ``F = 1/2 (x - 3)^2 + q^T y``, ``q = (2, 1, 1)``; ``y*(x) = (x, 0, 0)``; ``x* = 1``, ``F* = 4``,
    multipliers ``(0, 1, 2, 3)`` (strictly complementary). Slater points exist for ``x > 0`` only.
    """
    c = np.array([-3.0, -2.0, -1.0])
    q = np.array([2.0, 1.0, 1.0])
    A = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0], [1.0, 1.0, 1.0]])

    def F(x, y):
        return 0.5 * ((x - 3.0) ** 2).sum() + _like(q, y) @ y

    def grad_F(x, y):
        return x - 3.0, q.copy()

    def grad_f(x, y):
        return np.zeros(1), c.copy()

    def vjp_g(x, y, lam):
        return -lam[3:4].copy(), A.T @ lam

    def b(x):
        z = x[:1] * 0.0
        return _like(np.zeros(3), x).__class__ and _cat3(z, x[:1])

    lower = LowerLP(c=c, A=A, b=b)
    sol = dict(x=np.array([1.0]), y=np.array([1.0, 0.0, 0.0]), F=4.0, lam=np.array([0.0, 1.0, 2.0, 3.0]))
    return BilevelProblem(F, n_x=1, n_y=3, m=4, lower=lower, grad_F=grad_F, grad_f=grad_f, vjp_g=vjp_g,
                          x0=np.array([4.0]), y0=0.1 * np.ones(3), name="budget_lp", solution=sol)


def _cat3(z, x1):
    """(0, 0, 0, x) in the array type of x."""
    if hasattr(x1, "detach"):
        import torch

        return torch.cat([z, z, z, x1])
    return np.concatenate([z, z, z, x1])
