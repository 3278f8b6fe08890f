"""Test and benchmark instances of spec bilevel §6-7, each with ``.solution`` where one is known.

Callables accept numpy arrays and torch tensors alike (constants are converted to the iterate's
type), so every instance runs on both backends; numpy derivatives are given in closed form.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from .._backend import is_torch
from .._libsvm import load_libsvm
from .problem import BilevelProblem, Box, LowerLP, LowerQP, _like
from .sets import Affine, BudgetCone, Halfspace, Hyperplane, SlackRows

__all__ = ["sum_coupled_qp", "budget_lp", "synthetic_qp", "price_setting", "lp_analytic_centre",
           "nonconvex_toy", "svm_hyperparam", "svm_hyperparam_data", "svm_test_accuracy", "SVMData",
           "read_libsvm", "llc_toy", "gaffa_toy", "llsc_toy"]


def _host_sum(v):
    return float(v.detach().cpu().sum()) if is_torch(v) else float(np.sum(v))


def _sum(v):
    return v.sum().reshape(1)


def sum_coupled_qp(n: int = 4, normalize: bool = False) -> BilevelProblem:
    """V1: ``F = 1/2||x||^2 + 1/2||y - 2||^2``, ``f = 1/2||y - a||^2``, ``1^T y <= 1^T x``.

    ``a_i = 1 + 3 (i - 1)/(n - 1)``. Unique solution ``x* = 1``, ``y* = a - 1.5``, multiplier 1.5,
    ``F* = n + 3 n (n + 1) / (8 (n - 1))``. Closed form of the barrier solution in the spec.

    ``normalize=True`` divides the row by ``sqrt(2 n)`` (same set and barrier path, multiplier
    ``1.5 sqrt(2 n)``; LV-HBA's step-size stability then does not depend on n). The ``LowerQP`` data
    (a dense identity Q) is attached for ``n <= 5000`` only: larger instances are for LV-HBA, which
    needs ``f``, ``g``, their derivatives, ``proj_C`` (a halfspace) and the closed-form ``lower_solver``.
    """
    if n < 2:
        raise ValueError(f"n: must be >= 2, got {n}")
    a = 1.0 + 3.0 * np.arange(n) / (n - 1)
    u, v = np.zeros(n), 2.0 * np.ones(n)
    sc = math.sqrt(2 * n) if normalize else 1.0

    def F(x, y):
        return 0.5 * ((x - _like(u, x)) ** 2).sum() + 0.5 * ((y - _like(v, y)) ** 2).sum()

    def grad_F(x, y):
        return x - u, y - v

    def f(x, y):
        return 0.5 * ((y - _like(a, y)) ** 2).sum()

    def g(x, y):
        return ((y.sum() - x.sum()) / sc).reshape(1)

    def grad_f(x, y):
        return np.zeros(n), y - a

    def vjp_g(x, y, lam):
        return -lam[0] / sc * np.ones(n), lam[0] / sc * np.ones(n)

    def lower_solver(x):
        # y*(x) = a - tau 1, tau = max(0, (1^T a - 1^T x) / n), multiplier tau sc (closed form, O(n))
        tau = max(0.0, float(a.sum() - _host_sum(x)) / n)
        return a - tau, np.array([tau * sc])

    lower = None
    if n <= 5000:
        lower = LowerQP(Q=np.eye(n), q=-a, A=np.ones((1, n)) / sc, b=lambda x: _sum(x) / sc)
    F_star = n + 3 * n * (n + 1) / (8 * (n - 1))
    sol = dict(x=np.ones(n), y=a - 1.5, F=F_star, lam=np.array([1.5 * sc]))
    return BilevelProblem(F, f=None if lower is not None else f, g=None if lower is not None else g, n_x=n, n_y=n,
                          m=1, lower=lower, grad_F=grad_F, grad_f=grad_f, vjp_g=vjp_g,
                          proj_C=Halfspace(np.concatenate([-np.ones(n), np.ones(n)]), 0.0), x0=np.zeros(n),
                          lower_solver=lower_solver,
                          y0=-10.0 * np.ones(n), name=f"sum_coupled_qp({n}{', normalized' if normalize else ''})",
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
                          proj_C=BudgetCone(),
                          x0=np.array([4.0]), y0=0.1 * np.ones(3), name="budget_lp", solution=sol)


def _cat3(z, x1):
    """(0, 0, 0, x) in the array type of x."""
    if hasattr(x1, "detach"):
        import torch

        return torch.cat([z, z, z, x1])
    return np.concatenate([z, z, z, x1])


# ---------------------------------------------------------------------------------------------
# helpers: one expression for numpy arrays and torch tensors


def _fn(name, v):
    """``np.<name>(v)`` or ``torch.<name>(v)`` following the type of ``v``."""
    if is_torch(v):
        import torch

        return getattr(torch, name)(v)
    return getattr(np, name)(v)


def _cat(parts, ref):
    """Concatenate pieces (scalars or 1-D) in the array type of ``ref`` (numpy constants are converted)."""
    if is_torch(ref):
        import torch

        return torch.cat([(p if is_torch(p) else _like(np.asarray(p, dtype=float), ref)).reshape(-1)
                          for p in parts])
    return np.concatenate([np.asarray(p, dtype=float).reshape(-1) for p in parts])


def _zeros(n, ref):
    """``n`` zeros in the array type of ``ref``."""
    return _like(np.zeros(n), ref)


def _diag(v):
    if is_torch(v):
        import torch

        return torch.diag(v)
    return np.diag(v)


# ---------------------------------------------------------------------------------------------
# R1 / R2: the barrier paper's synthetic coupled QP


def synthetic_qp(n: int = 60, seed: int = 0, version: str = "v1", coupling: str = "bilinear") -> BilevelProblem:
    """R1 / R2 / V5: the barrier paper's random coupled QP (spec bilevel §7 R1, R2).

    With ``z = (x, y)``, ``x, y in R^n``::

        F(x, y) = 1/2 z^T A z + b^T z
        f(x, y) = 1/2 y^T C y + d^T y + x^T D y          (LowerQP: Q = C, q(x) = d + D^T x)
        bilinear:  g_k = x^T E_k y - kappa_k,              k = 1..20   (A(x) rows x^T E_k, b = kappa)
        linear:    g_k = P_k^T x + Q_k^T y - kappa_k - 1,  k = 1..20   (A = Q, b(x) = kappa + 1 - P x)
        Y = Box(-1, 1)                                     (the 2n box rows of the paper's m = 20 + 2n)

    Data: ``np.random.seed(seed)`` legacy draws, in order ``A = randn(2n, 2n)``, ``b = randn(2n)``,
    ``C = randn(n, n)``, ``d = randn(n)``, ``D = randn(n, n)``, ``E_k = randn(n, n)`` (k = 1..20),
    ``kappa = rand(20)``, then for ``coupling="linear"`` ``P = randn(20, n)/sqrt(n)``,
    ``Q = randn(20, n)/sqrt(n)``. A private ``RandomState(seed)`` gives the same numbers without
    touching numpy's global state. ``version="v1"`` (the paper's results until Dec 2024):
    ``A <- (A + A^T)/2 + 2n I``, ``b <- 10 b``, ``C <- (C + C^T)/2 + n I``, ``d <- 10 d``;
    ``"v2"``: ``A <- A^T A/2 + I``, ``C <- C^T C/2 + I``, ``b, d`` unscaled.

    ``y = 0`` is strictly feasible for every x in the bilinear case (``g = -kappa < 0`` and the
    open box), hence ``y_interior = 0``; the linear coupling has no such point for large ``x`` and
    relies on phase 1. Start ``x0 = y0 = 0``. The bilinear coupled set is nonconvex (LV-HBA does not
    apply); no solution is known (``solution=None``). Sanity values (v1, bilinear, n = 60):
    ``F(0, y*(0)) = 87.573, 95.544, 106.230`` for seeds 0, 1, 2.
    """
    if version not in ("v1", "v2"):
        raise ValueError(f"version: must be 'v1' or 'v2', got {version!r}")
    if coupling not in ("bilinear", "linear"):
        raise ValueError(f"coupling: must be 'bilinear' or 'linear', got {coupling!r}")
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    m = 20
    rs = np.random.RandomState(seed)
    A = rs.randn(2 * n, 2 * n)
    b = rs.randn(2 * n)
    C = rs.randn(n, n)
    d = rs.randn(n)
    D = rs.randn(n, n)
    E = rs.randn(m, n, n)  # E_k = randn(n, n), k = 1..20, drawn one after the other
    kappa = rs.rand(m)
    if coupling == "linear":
        P = rs.randn(m, n) / math.sqrt(n)
        Qc = rs.randn(m, n) / math.sqrt(n)
    if version == "v1":
        A = (A + A.T) / 2 + 2 * n * np.eye(2 * n)
        b = 10 * b
        C = (C + C.T) / 2 + n * np.eye(n)
        d = 10 * d
    else:
        A = A.T @ A / 2 + np.eye(2 * n)
        C = C.T @ C / 2 + np.eye(n)
    Dt = np.ascontiguousarray(D.T)

    def F(x, y):
        z = _cat([x, y], x)
        return 0.5 * z @ (_like(A, z) @ z) + _like(b, z) @ z

    def grad_F(x, y):
        z = _cat([x, y], x)
        gz = _like(A, z) @ z + _like(b, z)
        return gz[:n], gz[n:]

    def grad_f(x, y):
        return _like(D, y) @ y, _like(C, y) @ y + _like(d, y) + _like(Dt, x) @ x

    def q(x):
        return _like(d, x) + _like(Dt, x) @ x

    if coupling == "bilinear":
        def A_of_x(x):  # row k = x^T E_k
            return x @ _like(E, x)

        def vjp_g(x, y, lam):  # sum_k lam_k E_k y, sum_k lam_k E_k^T x
            Es = (lam @ _like(E, lam).reshape(m, n * n)).reshape(n, n)
            return Es @ y, x @ Es

        lower = LowerQP(Q=C, q=q, A=A_of_x, b=kappa)
        y_interior = _zeros_interior(n)
    else:
        def b_of_x(x):
            return _like(kappa + 1.0, x) - _like(P, x) @ x

        def vjp_g(x, y, lam):
            return lam @ _like(P, lam), lam @ _like(Qc, lam)

        lower = LowerQP(Q=C, q=q, A=Qc, b=b_of_x)
        y_interior = None
    return BilevelProblem(F, n_x=n, n_y=n, m=m, Y=Box(-1.0, 1.0), lower=lower, grad_F=grad_F, grad_f=grad_f,
                          vjp_g=vjp_g, y_interior=y_interior, x0=np.zeros(n), y0=np.zeros(n),
                          name=f"synthetic_qp(n={n}, seed={seed}, {version}, {coupling})")


def _zeros_interior(n):
    def y_interior(x, *params):
        return np.zeros(n)
    return y_interior


# ---------------------------------------------------------------------------------------------
# R3: price setting (LP lower level)


def _price_setting_data(n: int, seed: int):
    """``(A, B, b)`` of the price-setting generator (spec §7 R3), ``RandomState(seed)`` draws."""
    rs = np.random.RandomState(seed)
    k = 20
    A = np.abs(rs.randn(k, n))
    B = np.abs(rs.randn(k, n))
    for M in (A, B):  # a row with all entries <= 1 gets its largest entry raised to 1.1
        for i in range(k):
            if np.all(M[i] <= 1):
                M[i, np.argmax(M[i])] = 1.1
    B = 0.2 * B
    b = np.abs(rs.randn(k))
    return A, B, b


def price_setting(n: int = 60, seed: int = 0, u: float = 1.0) -> BilevelProblem:
    """R3: price setting with an LP lower level (spec bilevel §7 R3; barrier paper).

    Upper variable: prices ``T in R^n``; lower variable ``v = (x_ll, y_ll) in R^{2n}`` (the
    follower's purchases of the leader's goods and of the competitors' goods)::

        min_T  F = -T^T x_ll                                     (maximise revenue T^T x_ll)
        v*(T) = argmin_v (c1 + T)^T x_ll + c2^T y_ll  s.t.  A x_ll + B y_ll >= b,  0 <= v <= u

    as ``LowerLP(c(T) = [c1 + T; c2], A = -[A B], b = -b)`` with ``Y = Box(0, u)``; ``c1 = c2 = 1``.
    Data from ``RandomState(seed)``: ``A = |randn(20, n)|``, ``B = |randn(20, n)|``; in each row of A
    (then of B) whose entries are all <= 1 the largest is set to 1.1; ``B <- 0.2 B``;
    ``b = |randn(20)|``.

    ``u = 1`` is what the authors' generator produces: its bound list is ``100 * [0, 1, 0, 1]``
    (list repetition, not a scaled array), so the bound it reads is 1; ``u = 100`` is what was
    intended (spec §4 flaw 7). The authors also hard-code ``c1, c2`` to length 60; here they are
    sized by ``n``. ``X`` is the whole space (as in the authors' code).

    Start ``T0 = 0``, ``y0 = 0``: ``y0`` violates ``A x + B y >= b`` on purpose; the solver's
    phase 1 restores a strictly feasible start. The follower's LP may have several solutions
    (ties are typical at good prices): the barrier selects the analytic centre, the KKT MILP of
    :mod:`optkit.bilevel.reference` the leader's best (optimistic) one.
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if not (u > 0 and math.isfinite(u)):
        raise ValueError(f"u: must be positive and finite, got {u!r}")
    A, B, b = _price_setting_data(n, seed)
    c1, c2 = np.ones(n), np.ones(n)
    G = -np.hstack([A, B])

    def F(T, v):
        return -(T * v[:n]).sum()

    def grad_F(T, v):
        return -v[:n], _cat([-T, _zeros(n, T)], T)

    def c_of_T(T):
        return _cat([_like(c1, T) + T, c2], T)

    def grad_f(T, v):
        return 1.0 * v[:n], c_of_T(T)

    def vjp_g(T, v, lam):
        return _zeros(n, T), lam @ _like(G, lam)

    lower = LowerLP(c=c_of_T, A=G, b=-b)
    return BilevelProblem(F, n_x=n, n_y=2 * n, m=A.shape[0], Y=Box(0.0, float(u)), lower=lower, grad_F=grad_F,
                          grad_f=grad_f, vjp_g=vjp_g, x0=np.zeros(n), y0=np.zeros(2 * n),
                          name=f"price_setting(n={n}, seed={seed}, u={u:g})")


# ---------------------------------------------------------------------------------------------
# V6: analytic centre of a non-unique LP face


def lp_analytic_centre() -> BilevelProblem:
    """V6: LP lower level with a non-unique optimal face (spec bilevel §6 V6).

    ``min_y y1 + y2  s.t.  x - y1 - y2 <= 0,  0 <= y <= 10`` (``LowerLP(c = (1, 1), A = [[-1, -1]],
    b(x) = -x)``, ``Y = Box(0, 10)``). For ``0 <= x <= 20`` every point of the face
    ``{y1 + y2 = x, 0 <= y <= 10}`` is optimal. The barrier selects the analytic centre of that
    face: ``y_t1 = y_t2`` and ``2 y_t1 - x = 0.01004 (t = 1e-2), 0.001000 (t = 1e-3)`` at ``x = 4``;
    the limit ``t -> 0`` is ``y = (x/2, x/2)``. Other methods may return any point of the face.

    Upper objective (our choice; it does not depend on y, so every selection gives the same phi):
    ``F = 1/2 (x - 4)^2 + 0^T y``, ``X = Box(0, 10)`` (Slater points exist for ``x < 20``).
    ``solution``: ``x = 4``, ``y = (2, 2)`` (the barrier's selection), ``F = 0``, ``lam = 1`` (the
    coupled row's multiplier; the box rows have multiplier 0 at the centre), and
    ``solution["selection"] = "analytic centre"``.
    """
    c = np.array([1.0, 1.0])
    A = np.array([[-1.0, -1.0]])

    def F(x, y):
        return 0.5 * ((x - 4.0) ** 2).sum() + 0.0 * y.sum()

    def grad_F(x, y):
        return x - 4.0, _zeros(2, y)

    def grad_f(x, y):
        return _zeros(1, x), _like(c, y)

    def vjp_g(x, y, lam):
        return 1.0 * lam[:1], lam @ _like(A, lam)

    def b(x):
        return -x[:1]

    lower = LowerLP(c=c, A=A, b=b)
    sol = dict(x=np.array([4.0]), y=np.array([2.0, 2.0]), F=0.0, lam=np.array([1.0]), selection="analytic centre")
    return BilevelProblem(F, n_x=1, n_y=2, m=1, X=Box(0.0, 10.0), Y=Box(0.0, 10.0), lower=lower, grad_F=grad_F,
                          grad_f=grad_f, vjp_g=vjp_g, x0=np.array([1.0]), y0=np.array([5.0, 5.0]),
                          name="lp_analytic_centre", solution=sol)


# ---------------------------------------------------------------------------------------------
# a 1-D nonconvex phi with a known global minimiser


def nonconvex_toy() -> BilevelProblem:
    """1-D problem whose ``phi(x) = F(x, y*(x))`` has two local minima, one with the coupled row active.

    ``F = (x^2 - 1)^2 + 2 y``; lower level ``min_y 1/2 (y - x)^2  s.t.  y + x - 1 <= 0`` (as
    ``LowerQP(Q = 1, q(x) = -x, A = 1, b(x) = 1 - x)``, i.e. ``f = 1/2 y^2 - x y``, which differs
    from ``1/2 (y - x)^2`` by the x-only term ``x^2/2``), so ``y*(x) = min(x, 1 - x)`` with
    multiplier ``max(0, 2x - 1)``, and

        x <= 1/2:  phi = (x^2 - 1)^2 + 2x,       phi' = 2 (2x^3 - 2x + 1)
        x >= 1/2:  phi = (x^2 - 1)^2 + 2 - 2x,   phi' = 2 (2x^3 - 2x - 1)

    Each cubic has one real root (discriminant < 0): the global minimiser ``x_g = -1.1915`` (root of
    ``2x^3 - 2x + 1``, constraint inactive, ``phi = -2.2069``) and a second local minimiser
    ``x_l = 1.1915 = -x_g`` (root of ``2x^3 - 2x - 1``, constraint active, multiplier ``2 x_l - 1``,
    ``phi = -0.2069``); ``x = 1/2`` is a kink local maximum (``phi'(1/2-) = 1/2``,
    ``phi'(1/2+) = -7/2``). ``solution`` holds the global one (``x, y, F, lam``) and the other in
    ``local_x, local_y, local_F, local_lam``. Start ``x0 = 0`` (in the global basin), ``y0 = -1``.
    """
    xg = _real_root([2.0, 0.0, -2.0, 1.0])
    xl = _real_root([2.0, 0.0, -2.0, -1.0])

    def phi(x):
        y = min(x, 1.0 - x)
        return (x * x - 1.0) ** 2 + 2.0 * y

    def F(x, y):
        return ((x**2 - 1.0) ** 2).sum() + 2.0 * y.sum()

    def grad_F(x, y):
        return 4.0 * x * (x**2 - 1.0), 0.0 * y + 2.0

    def grad_f(x, y):
        return -1.0 * y, y - x

    def vjp_g(x, y, lam):
        return 1.0 * lam[:1], 1.0 * lam[:1]

    def q(x):
        return -x

    def b(x):
        return 1.0 - x

    lower = LowerQP(Q=np.eye(1), q=q, A=np.eye(1), b=b)
    sol = dict(x=np.array([xg]), y=np.array([xg]), F=phi(xg), lam=np.array([0.0]),
               local_x=np.array([xl]), local_y=np.array([1.0 - xl]), local_F=phi(xl),
               local_lam=np.array([2.0 * xl - 1.0]))
    return BilevelProblem(F, n_x=1, n_y=1, m=1, lower=lower, grad_F=grad_F, grad_f=grad_f, vjp_g=vjp_g,
                          x0=np.array([0.0]), y0=np.array([-1.0]), name="nonconvex_toy", solution=sol)


def _real_root(coeffs):
    r = np.roots(coeffs)
    real = r[np.abs(r.imag) < 1e-9].real
    if real.size != 1:  # pragma: no cover - the cubics above have one real root each
        raise RuntimeError(f"expected one real root of {coeffs}, got {r}")
    return float(real[0])


# ---------------------------------------------------------------------------------------------
# R4: SVM hyper-parameter selection (LV-HBA paper) and BLOCC's coupled variant

_SVM_DATA_SEED = 768
_SVM_DELTA = 1.65


@dataclasses.dataclass(frozen=True, eq=False)
class SVMData:
    """Train / validation / test split of a binary data set (features ``A_*``, labels ``t_* in {-1, 1}``)."""

    A_train: np.ndarray
    t_train: np.ndarray
    A_val: np.ndarray
    t_val: np.ndarray
    A_test: np.ndarray
    t_test: np.ndarray
    source: str = ""

    @property
    def n_features(self) -> int:
        return int(self.A_train.shape[1])


def read_libsvm(path) -> tuple[np.ndarray, np.ndarray]:
    """A two-class LIBSVM file as dense features ``(N, d)`` and labels in ``{-1, +1}`` (the smaller label
    value becomes -1); raises ``InvalidProblemError`` (a ValueError) for a malformed file or a number of
    classes other than two. ``.gz`` / ``.bz2`` are read too."""
    return load_libsvm(path, binarize=True)


def _default_svm_dataset() -> tuple[np.ndarray, np.ndarray]:
    """Seeded stand-in for LIBSVM ``diabetes_scale`` (no download): 768 x 8, 268 positives.

    Two Gaussian classes with a shared random covariance ``L L^T`` (``L = randn/sqrt(8) + I``), means
    at Mahalanobis distance 1.65, each feature min-max scaled to ``[-1, 1]`` like LIBSVM's
    ``*_scale`` files. A linear soft-margin SVM reaches about 0.75-0.80 test accuracy on the
    500/150/118 splits (diabetes: ~0.77), while an SVM with slack weight ``exp(-5.5)`` predicts the
    majority class (0.69), so the hyper-parameters matter.
    """
    rs = np.random.RandomState(_SVM_DATA_SEED)
    N, d, n_pos = 768, 8, 268
    t = -np.ones(N)
    t[rs.permutation(N)[:n_pos]] = 1.0
    L = rs.randn(d, d) / math.sqrt(d) + np.eye(d)
    Z = rs.randn(N, d) @ L.T
    mu = rs.randn(d)
    mu *= _SVM_DELTA / math.sqrt(mu @ np.linalg.solve(L @ L.T, mu))
    A = Z + np.outer(t > 0, mu)
    lo, hi = A.min(0), A.max(0)
    return 2.0 * (A - lo) / (hi - lo) - 1.0, t


def _poly2(A):
    """BLOCC's feature map: ``[1, a, a^2, a_i a_j (i < j)]`` (8 features -> 45)."""
    d = A.shape[1]
    cross = [A[:, i] * A[:, j] for i in range(d) for j in range(i + 1, d)]
    return np.column_stack([np.ones(A.shape[0]), A, A * A] + cross)


def svm_hyperparam_data(path=None, seed: int = 0, n_train: int = 500, n_val: int = 150,
                        legacy_split: bool = False, poly2: bool = False) -> SVMData:
    """Load (``path``: a LIBSVM file) or generate (``path=None``) the data and split it.

    Split: rows ``perm[:n_train]`` train, the next ``n_val`` validation, the rest test, with
    ``perm = RandomState(seed).permutation(N)`` of the file's original order (the same permutation
    as ``np.random.seed(seed); np.random.shuffle(data)`` on a fresh copy). ``legacy_split=True``
    replays BLOCC's helper, which shuffles the caller's array in place, so that seed s's split is
    the composition of the shuffles of seeds 0, 1, ..., s (spec §4 flaw 17; only for comparing with
    stored BLOCC numbers). ``poly2=True`` applies BLOCC's feature map ``[1, a, a^2, a_i a_j]``.
    Without ``path`` the data are the seeded stand-in of :func:`_default_svm_dataset` (the real
    ``diabetes_scale`` is not shipped).
    """
    if path is None:
        A, t = _default_svm_dataset()
        source = "generated (diabetes-like, 768 x 8)"
    else:
        A, t = read_libsvm(path)
        source = os.fspath(path)
    N = A.shape[0]
    if n_train < 1 or n_val < 1 or n_train + n_val >= N:
        raise ValueError(f"n_train, n_val: need n_train, n_val >= 1 and n_train + n_val < {N} rows, "
                         f"got {n_train}, {n_val}")
    if legacy_split:
        perm = np.arange(N)
        for s in range(seed + 1):
            np.random.RandomState(s).shuffle(perm)
    else:
        perm = np.random.RandomState(seed).permutation(N)
    if poly2:
        A = _poly2(A)
    tr, va, te = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    return SVMData(A[tr], t[tr], A[va], t[va], A[te], t[te], source=source)


def svm_test_accuracy(data: SVMData, y, split: str = "test") -> float:
    """Fraction of ``split`` rows (``"train" | "val" | "test"``) with ``t (w^T a + b) > 0``, ``y = (w, b, xi)``."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: must be 'train', 'val' or 'test', got {split!r}")
    yh = y.detach().cpu().numpy() if is_torch(y) else np.asarray(y, dtype=float)
    d = data.n_features
    w, b0 = yh[:d], yh[d]
    A, t = getattr(data, f"A_{split}"), getattr(data, f"t_{split}")
    return float(np.mean(t * (A @ w + b0) > 0))


def svm_hyperparam(path=None, seed: int = 0, n_train: int = 500, n_val: int = 150, legacy_split: bool = False,
                   *, coupled: bool = False, poly2: bool = False, data: SVMData | None = None) -> BilevelProblem:
    """R4: SVM hyper-parameter selection (spec bilevel §7 R4), optionally BLOCC's coupled variant.

    ``coupled=False`` (the LV-HBA paper's task, spec R4): x = c in R^{n_train}, y = (w, b, xi)::

        min_c  sum_{j in val} LeakyReLU_{0.01}(2 sigmoid(-5 t_j (w^T a_j + b) / ||w||) - 1)
        (w, b, xi) = argmin 1/2 ||w||^2 + 1/2 sum_i exp(c_i) xi_i^2
                     s.t. 1 - xi_i - t_i (w^T a_i + b) <= 0,  i in train

    as ``LowerQP(Q(c) = diag(1 (w), 0 (b), exp(c) (xi)), q = 0, A = -[t_i a_i, t_i, e_i], b = -1)``.
    Q is singular in b; the barrier Hessian ``Q + t A^T S^-2 A`` is positive definite when both
    labels occur. The constraints do not depend on c (the coupling is through f only);
    ``y_interior`` is the x-independent point ``w = 1, b = 0, xi_i = 2 + |a_i^T 1|``. Start
    ``c ~ U(-6, -5)`` (``numpy.random.default_rng(seed)``), ``w = 1, b = 0, xi = 1`` (may violate
    rows: the solver restores).

    ``coupled=True`` (BLOCC's "coupled" SVM, the variant behind its notebook numbers in spec R4):
    the slack of each training row is bounded by its hyper-parameter, ``0 <= xi_i <= c_i``, the lower
    objective is ``1/2 ||w||^2`` only and the upper objective
    ``sum_{j in val} exp(1 - t_j (w^T a_j + b)) + ||c||_2``; rows ``g = [margin rows; xi - c]``
    (``m = 2 n_train``, ``b(c) = [-1; c]``), ``xi >= 0`` as the Y box, ``X = Box(1e-4, inf)`` (BLOCC's
    clip), start ``c ~ U(1, 5)``. LL feasibility for small c depends on the data (no y_interior;
    phase 1 restores). BLOCC also maps features with ``poly2=True``.

    ``data`` (an :class:`SVMData`) overrides ``path / seed / n_train / n_val / legacy_split / poly2``.
    Evaluate a returned ``y`` with :func:`svm_test_accuracy` on the same data
    (``svm_hyperparam_data(...)`` with the same arguments). ``solution=None``.
    """
    # BLOCC's coupled variant, read in the barrier authors' copies of the BLOCC / LV-HBA baselines:
    # mepear/bilevel_ipm hyperparam_opt/algorithms/blocc.py and lv_hba.py (constraint xi <= C next
    # to the margin rows, xi >= 0, lower objective 1/2||w||^2, upper exp(1 - margin) + ||C||,
    # C ~ U(1, 5) clipped at 1e-4); the split helper is hyperparam_opt/utils.py of BLOCC's repository
    # (copy: frealr/Penalty_Based_Lagrangian_Bilevel_Tianyi_Chen-s_Lab).
    if data is None:
        data = svm_hyperparam_data(path, seed, n_train, n_val, legacy_split, poly2)
    At, tt, Av, tv = data.A_train, data.t_train, data.A_val, data.t_val
    n, d = At.shape[0], At.shape[1]
    ny = d + 1 + n
    margin = -np.hstack([tt[:, None] * At, tt[:, None], np.eye(n)])  # rows of 1 - xi - t(w^T a + b) <= 0
    tva = tv[:, None] * Av
    rng = np.random.default_rng(seed)
    y0 = np.concatenate([np.ones(d), [0.0], np.ones(n)])
    tag = f"n_train={n}, seed={seed}" + (", legacy split" if legacy_split else "")

    if not coupled:
        def F(c, y):
            w, b0 = y[:d], y[d]
            u = (_like(tva, y) @ w + _like(tv, y) * b0) / (w @ w) ** 0.5
            h = _fn("tanh", -2.5 * u)  # = 2 sigmoid(-5 u) - 1
            return (0.505 * h + 0.495 * abs(h)).sum()  # LeakyReLU with slope 0.01

        def grad_F(c, y):
            w, b0 = y[:d], y[d]
            A_, t_ = _like(tva, y), _like(tv, y)
            nw = (w @ w) ** 0.5
            u = (A_ @ w + t_ * b0) / nw
            h = _fn("tanh", -2.5 * u)
            r = (0.505 + 0.495 * _fn("sign", h)) * (-2.5) * (1.0 - h * h)  # dLeakyReLU/dh * dh/du
            gw = (r @ A_) / nw - (r @ u) * w / nw**2
            gb = (r @ t_) / nw
            return _zeros(n, c), _cat([gw, gb, _zeros(n, y)], y)

        def Q(c):
            return _diag(_cat([np.ones(d), np.zeros(1), _fn("exp", c)], c))

        def grad_f(c, y):
            xi = y[d + 1:]
            ec = _fn("exp", c)
            return 0.5 * ec * xi**2, _cat([y[:d], 0.0, ec * xi], y)

        def vjp_g(c, y, lam):
            return _zeros(n, c), lam @ _like(margin, lam)

        xi_int = 2.0 + np.abs(At.sum(1))
        y_int = np.concatenate([np.ones(d), [0.0], xi_int])

        def y_interior(c, *params):
            return y_int.copy()

        lower = LowerQP(Q=Q, q=np.zeros(ny), A=margin, b=-np.ones(n))
        # C = R^n x {xi_i >= 1 - t_i (w^T a_i + b)}: one slack per row, an exact O(m d^2) projection (LV-HBA)
        proj = SlackRows(np.hstack([tt[:, None] * At, tt[:, None]]), np.ones(n), u_index=np.arange(d + 1),
                         s_index=np.arange(d + 1, ny), n_x=n, n_y=ny)
        return BilevelProblem(F, n_x=n, n_y=ny, m=n, lower=lower, grad_F=grad_F, grad_f=grad_f, vjp_g=vjp_g,
                              y_interior=y_interior, proj_C=proj, x0=rng.uniform(-6.0, -5.0, n), y0=y0,
                              name=f"svm_hyperparam({tag})")

    Arows = np.vstack([margin, np.hstack([np.zeros((n, d + 1)), np.eye(n)])])

    def Fc(c, y):
        w, b0 = y[:d], y[d]
        e = _fn("exp", 1.0 - (_like(tva, y) @ w + _like(tv, y) * b0))
        return e.sum() + (c @ c) ** 0.5

    def grad_Fc(c, y):
        w, b0 = y[:d], y[d]
        A_, t_ = _like(tva, y), _like(tv, y)
        e = _fn("exp", 1.0 - (A_ @ w + t_ * b0))
        return c / (c @ c) ** 0.5, _cat([-(e @ A_), -(e @ t_), _zeros(n, y)], y)

    def b_of_c(c):
        return _cat([-np.ones(n), c], c)

    def grad_fc(c, y):
        return _zeros(n, c), _cat([y[:d], _zeros(n + 1, y)], y)

    def vjp_gc(c, y, lam):
        return -lam[n:], lam @ _like(Arows, lam)

    Qc = np.diag(np.concatenate([np.ones(d), np.zeros(n + 1)]))
    lower = LowerQP(Q=Qc, q=np.zeros(ny), A=Arows, b=b_of_c)
    Y = Box(np.concatenate([np.full(d + 1, -np.inf), np.zeros(n)]), np.inf)
    return BilevelProblem(Fc, n_x=n, n_y=ny, m=2 * n, X=Box(1e-4, np.inf), Y=Y, lower=lower, grad_F=grad_Fc,
                          grad_f=grad_fc, vjp_g=vjp_gc, x0=rng.uniform(1.0, 5.0, n), y0=y0,
                          name=f"svm_hyperparam_coupled({tag})")


# ---------------------------------------------------------------------------------------------
# LV-HBA toys (spec V3, V4, R5): equality-coupled, merely convex lower levels


def _llc_f(x, y, n):
    y1, y2 = y[:n], y[n:]
    return 0.5 * (y1 @ y1) - x @ y1 + y2.sum()


def _llc_grad_f(x, y, n):
    y1 = y[:n]
    return -y1, _cat([y1 - x, np.ones(n)], y)


def llc_toy(n: int = 100, normalize: bool = False) -> BilevelProblem:
    """V3, the LV-HBA paper's LLC toy (from E-AiPOD): an equality row, a merely convex lower level.

    ``y = (y1, y2)``; ``F = 1/2||x - y2||^2 + 1/2||y1 - 1||^2``, ``f = 1/2||y1||^2 - x^T y1 + 1^T y2``,
    ``g = 1^T x + 1^T y1 + 1^T y2 = 0``. The LL solution set is ``y1 = x + 1`` with ``y2`` free on the
    row (non-unique); optimistic solution ``x* = -0.3``, ``y1* = 0.7``, ``y2* = -0.4`` (all entries),
    ``F* = 0.05 n``, multiplier -1. ``proj_C``: subtract the mean of the stacked (x, y). Start
    ``x = y = 0`` (the projections of the authors' ``10 * 1``).

    ``normalize=True`` divides the row by ``sqrt(3 n)`` (same set, multiplier ``-sqrt(3 n)``). LV-HBA is
    not invariant to that scaling: with the raw row ``||J_theta g|| = sqrt(2 n)`` and the ``llc`` preset
    diverges for ``n >= 1000``; with the unit row its iterates do not depend on n.
    """
    s = math.sqrt(3 * n) if normalize else 1.0
    def F(x, y):
        y1, y2 = y[:n], y[n:]
        return 0.5 * ((x - y2) ** 2).sum() + 0.5 * ((y1 - 1.0) ** 2).sum()

    def grad_F(x, y):
        y1, y2 = y[:n], y[n:]
        return x - y2, _cat([y1 - 1.0, y2 - x], y)

    def g(x, y):
        return ((x.sum() + y.sum()) / s).reshape(1)

    def vjp_g(x, y, lam):
        return lam[0] / s + 0.0 * x, lam[0] / s + 0.0 * y

    sol = dict(x=np.full(n, -0.3), y=np.concatenate([np.full(n, 0.7), np.full(n, -0.4)]), F=0.05 * n,
               lam=np.array([-s]))
    return BilevelProblem(F, f=lambda x, y: _llc_f(x, y, n), g=g, n_x=n, n_y=2 * n, m=1,
                          eq_mask=np.array([True]), proj_C=Hyperplane(np.ones(3 * n), 0.0), grad_F=grad_F,
                          grad_f=lambda x, y: _llc_grad_f(x, y, n), vjp_g=vjp_g, x0=np.zeros(n),
                          y0=np.zeros(2 * n), name=f"llc_toy({n}{', normalized' if normalize else ''})",
                          solution=sol)


def gaffa_toy(n: int = 1000, P: int = 1) -> BilevelProblem:
    """V4, the BiC-GAFFA toy with ``P = 1``: ``F = (y1 - 2)^T (x - 1) + ||y2 + 3||^2``, f as V3,
    ``g = 1^T x + 1^T y1 + 1^T y2 = 0``. Solution ``x* = 1``, ``y1* = 2``, ``y2* = -3``, ``F* = 0``,
    multiplier -1 (the edge of the authors' multiplier box ``[-1, 1]``: spec flaw 14).

    Only ``P = 1`` (convex C) is provided: ``P = 3`` (``h = sum x_i^3``) makes C nonconvex and needs a
    local projection that this release does not ship.
    """
    if P != 1:
        raise ValueError(f"P: only P = 1 (the convex coupled set) is provided, got {P}")
    def F(x, y):
        y1, y2 = y[:n], y[n:]
        return ((y1 - 2.0) * (x - 1.0)).sum() + ((y2 + 3.0) ** 2).sum()

    def grad_F(x, y):
        y1, y2 = y[:n], y[n:]
        return y1 - 2.0, _cat([x - 1.0, 2.0 * (y2 + 3.0)], y)

    def g(x, y):
        return (x.sum() + y.sum()).reshape(1)

    def vjp_g(x, y, lam):
        return lam[0] + 0.0 * x, lam[0] + 0.0 * y

    sol = dict(x=np.ones(n), y=np.concatenate([np.full(n, 2.0), np.full(n, -3.0)]), F=0.0, lam=np.array([-1.0]))
    return BilevelProblem(F, f=lambda x, y: _llc_f(x, y, n), g=g, n_x=n, n_y=2 * n, m=1,
                          eq_mask=np.array([True]), proj_C=Hyperplane(np.ones(3 * n), 0.0), grad_F=grad_F,
                          grad_f=lambda x, y: _llc_grad_f(x, y, n), vjp_g=vjp_g, x0=np.zeros(n),
                          y0=np.zeros(2 * n), name=f"gaffa_toy({n})", solution=sol)


def llsc_toy(seed: int = 0, n: int = 100, m: int = 90) -> BilevelProblem:
    """R5, the LV-HBA paper's LLSC toy with data regenerated from ``seed`` (the authors' .npy files
    carry no licence): ``F = sin(c^T x + d^T y) + log(||x + y||^2 + 1)``, ``f = 1/2||x - y||^2``,
    LL constraint ``A y + H x = 0`` (m equality rows), ``X = {B x = 0}`` with B = m/2 random rows
    (the authors' other m/2 rows are zero and dropped here). ``A, H, B, c, d ~ U(0, 1)``.
    ``proj_C``: the affine set ``{H x + A y = 0, B x = 0}`` with one cached factorisation. No known
    solution (F vs time).
    """
    rng = np.random.default_rng(seed)
    A = rng.random((m, n))
    H = rng.random((m, n))
    Bx = rng.random((m // 2, n))
    c, d = rng.random(n), rng.random(n)
    Pm = np.vstack([np.hstack([H, A]), np.hstack([Bx, np.zeros((m // 2, n))])])

    def F(x, y):
        s = x + y
        return _fn("sin", _like(c, x) @ x + _like(d, y) @ y) + _fn("log", s @ s + 1.0)

    def grad_F(x, y):
        s = x + y
        a = np.cos(c @ x + d @ y)
        w = 2.0 * s / (s @ s + 1.0)
        return a * c + w, a * d + w

    def g(x, y):
        return _like(A, y) @ y + _like(H, x) @ x

    def vjp_g(x, y, lam):
        return H.T @ lam, A.T @ lam

    return BilevelProblem(F, f=lambda x, y: 0.5 * ((x - y) ** 2).sum(), g=g, n_x=n, n_y=n, m=m,
                          eq_mask=np.ones(m, bool), proj_C=Affine(Pm, np.zeros(Pm.shape[0])), grad_F=grad_F,
                          grad_f=lambda x, y: (x - y, y - x), vjp_g=vjp_g, x0=np.zeros(n), y0=np.zeros(n),
                          name=f"llsc_toy(seed={seed})")
