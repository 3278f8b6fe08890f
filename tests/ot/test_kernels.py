"""Sparsity-constrained OT kernels (spec ot.md §2, §3.1, §6.1, §6.7), numpy and torch CPU float64."""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from optkit import InvalidProblemError
from optkit.ot._kernels import (
    dual_kernel,
    ksupport_sq,
    plan_row_sums,
    plan_to_dense,
    relaxed_primal_value,
    semi_dual_kernel,
    topk_l2_conjugate,
    topk_simplex_max,
)

torch = pytest.importorskip("torch")

from conftest import as_backend, to_np  # noqa: E402

BACKENDS = ["numpy", "torch"]




def instance(rng, m, n, batch=()):
    """Random a, b (each summing to 1), C, CT (contiguous) and alpha."""
    a = rng.rand(*batch, m) + 0.1
    a /= a.sum(-1, keepdims=True)
    b = rng.rand(*batch, n) + 0.1
    b /= b.sum(-1, keepdims=True)
    C = rng.rand(*batch, m, n)
    CT = np.ascontiguousarray(np.swapaxes(C, -1, -2))
    alpha = rng.randn(*batch, m) * 0.3
    return a, b, C, CT, alpha


# ----------------------------------------------------------------------------------------------
# brute-force references (enumerate supports; no sorting, no thresholds)
# ----------------------------------------------------------------------------------------------

def brute_delta(s, k, gamma):
    """sup over t >= 0 with |supp t| <= k of <s,t> - gamma/2 |t|^2, by supports."""
    best = 0.0  # t = 0
    m = len(s)
    for size in range(1, min(k, m) + 1):
        for Q in itertools.combinations(range(m), size):
            tQ = s[list(Q)] / gamma  # stationary point on Q, a candidate if feasible
            if np.all(tQ >= 0):
                best = max(best, s[list(Q)] @ tQ - 0.5 * gamma * tQ @ tQ)
    return best


def brute_max(s, b, k, gamma):
    """sup over t >= 0, sum t = b, |supp t| <= k of <s,t> - gamma/2 |t|^2, by supports."""
    best = -np.inf
    m = len(s)
    for size in range(1, min(k, m) + 1):
        for Q in itertools.combinations(range(m), size):
            sQ = s[list(Q)]
            lam = (sQ.sum() - gamma * b) / size  # KKT on Q with the mass constraint
            tQ = (sQ - lam) / gamma
            if np.all(tQ >= 0):
                best = max(best, sQ @ tQ - 0.5 * gamma * tQ @ tQ)
    return best


def conjugate_cases(n_cases=300, seed=0):
    rng = np.random.RandomState(seed)
    for _ in range(n_cases):
        m = rng.randint(1, 8)
        k = rng.randint(1, m + 2)  # includes k > m
        gamma = 10 ** rng.uniform(-2, 1)
        b = rng.uniform(0.05, 1)
        s = rng.randn(m)
        yield m, k, gamma, b, s


def central_fd(f, s, h):
    """Central differences of a vectorised f (slices along axis 0) in every coordinate."""
    m = len(s)
    E = np.eye(m) * h
    S = np.concatenate([s[:, None] + E, s[:, None] - E], axis=1)  # (m, 2m), one call
    vals = f(S)
    return (vals[:m] - vals[m:]) / (2 * h)


# ----------------------------------------------------------------------------------------------
# 6.1 conjugates vs brute force, gradients vs finite differences
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_topk_l2_conjugate_brute_force_and_gradient(backend):
    worst_val = worst_grad = 0.0
    for _m, k, gamma, _, s in conjugate_cases():
        val, grad = topk_l2_conjugate(as_backend(s, backend), k, gamma)
        worst_val = max(worst_val, abs(float(val) - brute_delta(s, k, gamma)))
        h = 1e-5
        fd = central_fd(
            lambda S, k=k, g=gamma: to_np(topk_l2_conjugate(as_backend(S, backend), k, g)[0]), s, h)
        worst_grad = max(worst_grad, np.abs(fd - to_np(grad)).max())
        assert np.count_nonzero(to_np(grad)) <= k
    assert worst_val <= 1e-12, worst_val
    assert worst_grad <= 1e-6, worst_grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_topk_simplex_max_brute_force_and_gradient(backend):
    worst_val = worst_grad = 0.0
    for _m, k, gamma, b, s in conjugate_cases(seed=1):
        val, t = topk_simplex_max(as_backend(s, backend), b, k, gamma)
        t = to_np(t)
        worst_val = max(worst_val, abs(float(val) - brute_max(s, b, k, gamma)))
        assert t.min() >= 0 and np.count_nonzero(t) <= k
        assert abs(t.sum() - b) <= 1e-15
        h = 1e-5
        fd = central_fd(
            lambda S, b=b, k=k, g=gamma: to_np(topk_simplex_max(as_backend(S, backend), b, k, g)[0]),
            s, h)
        worst_grad = max(worst_grad, np.abs(fd - t).max())
    assert worst_val <= 1e-12, worst_val
    assert worst_grad <= 1e-6, worst_grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_k1_identity(backend):
    rng = np.random.RandomState(2)
    S = rng.randn(6, 10)
    b = rng.uniform(0.05, 1, size=10)
    gamma = 0.7
    val, t = topk_simplex_max(as_backend(S, backend), as_backend(b, backend), 1, gamma)
    np.testing.assert_allclose(to_np(val), b * S.max(0) - gamma * b**2 / 2, rtol=0, atol=1e-15)
    ref = np.zeros_like(S)
    ref[S.argmax(0), np.arange(10)] = b
    np.testing.assert_array_equal(to_np(t), ref)
    # the same identity through the semi-dual kernel
    a, bb, C, CT, alpha = instance(rng, 5, 7)
    Sk = semi_dual_kernel(as_backend(alpha, backend), as_backend(a, backend),
                          as_backend(bb, backend), as_backend(CT, backend), 1, gamma)[0]
    X = alpha[:, None] - C
    ref = alpha @ a - np.sum(bb * X.max(0) - gamma * bb**2 / 2)
    assert abs(float(Sk) - ref) <= 1e-14


# ----------------------------------------------------------------------------------------------
# k-support norm and relaxed primal value
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_ksupport_identities(backend):
    rng = np.random.RandomState(3)
    T = rng.rand(7, 40)
    T[rng.rand(7, 40) < 0.3] = 0.0
    prev = None
    for k in range(1, 9):
        got = to_np(ksupport_sq(as_backend(T, backend), k, axis=0))
        if k == 1:
            np.testing.assert_allclose(got, T.sum(0) ** 2, rtol=1e-14)
        if k >= 7:
            np.testing.assert_allclose(got, (T**2).sum(0), rtol=1e-14)
        sparse = np.count_nonzero(T, axis=0) <= k
        np.testing.assert_allclose(got[sparse], (T[:, sparse] ** 2).sum(0), rtol=1e-14)
        # between the squared l2 and squared l1 norms, non-increasing in k
        assert np.all(got >= (T**2).sum(0) * (1 - 1e-14))
        assert np.all(got <= T.sum(0) ** 2 * (1 + 1e-14))
        if prev is not None:
            assert np.all(got <= prev * (1 + 1e-14))
        prev = got
    # ties and the examples worked by hand
    assert float(ksupport_sq(as_backend([1.0, 1.0, 1.0], backend), 2)) == pytest.approx(4.5)
    assert float(ksupport_sq(as_backend([3.0, 1.0, 1.0], backend), 2)) == pytest.approx(13.0)


def test_ksupport_matches_conjugate_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.RandomState(4)
    for _ in range(4):
        m = rng.randint(3, 8)
        k = rng.randint(1, m)
        t = rng.rand(m) ** 3
        s = cp.Variable(m)
        # (1/2)||t||_{sp,k}^2 = sup_s <s,t> - (1/2) sum of the k largest s_i^2
        prob = cp.Problem(cp.Maximize(s @ t - 0.5 * cp.sum_largest(cp.square(s), k)))
        prob.solve()
        assert float(ksupport_sq(t, k)) == pytest.approx(2 * prob.value, rel=1e-6, abs=1e-8)


# ----------------------------------------------------------------------------------------------
# 6.7 kernel invariants
# ----------------------------------------------------------------------------------------------

def run_semi(backend, alpha, a, b, CT, k, gamma, **kw):
    out = semi_dual_kernel(*(as_backend(x, backend) for x in (alpha, a, b, CT)), k, gamma, **kw)
    return tuple(to_np(x) for x in out)


def run_dual(backend, alpha, beta, a, b, CT, k, gamma):
    out = dual_kernel(*(as_backend(x, backend) for x in (alpha, beta, a, b, CT)), k, gamma)
    return tuple(to_np(x) for x in out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 2, 3, 9, 12, 40, 45])
def test_semi_dual_plan_columns_gradient(backend, k):
    rng = np.random.RandomState(5)
    m, n = 40, 30
    a, b, C, CT, alpha = instance(rng, m, n)
    alpha = rng.randn(m) * 3  # large potentials: the column sums must still be exact
    for gamma in (0.01, 1.0, 10.0):
        S, grad, idx, val = run_semi(backend, alpha, a, b, CT, k, gamma)
        kk = min(k, m)
        assert idx.shape == (n, kk) and val.shape == (n, kk) and idx.dtype == np.int64
        assert S.shape == () and grad.shape == (m,)
        assert val.min() >= 0
        assert np.abs(val.sum(-1) - b).max() <= 1e-14
        T = plan_to_dense(idx, val, m)
        assert T.shape == (m, n) and np.all(np.count_nonzero(T, axis=0) <= k)
        np.testing.assert_allclose(grad, a - T.sum(1), rtol=0, atol=1e-14)
        np.testing.assert_allclose(plan_row_sums(idx, val, m), T.sum(1), rtol=0, atol=1e-15)
        # S itself, from the dense plan: <alpha,a> - sum_j <x_j,t_j> - gamma/2 |t_j|^2
        X = alpha[:, None] - C
        ref = alpha @ a - np.sum(X * T) + 0.5 * gamma * np.sum(T * T)
        assert abs(S - ref) <= 1e-12 * max(1, abs(ref))


@pytest.mark.parametrize("backend", BACKENDS)
def test_semi_dual_gradient_finite_differences(backend):
    rng = np.random.RandomState(6)
    m, n, k, gamma = 7, 9, 2, 0.5
    a, b, _, CT, alpha = instance(rng, m, n)
    _, grad, _, _ = run_semi(backend, alpha, a, b, CT, k, gamma)
    h = 1e-6
    A = np.concatenate([alpha + h * np.eye(m), alpha - h * np.eye(m)])  # batched alphas
    Sb = run_semi(backend, A, a, b, CT, k, gamma)[0]  # one CT broadcast over the batch
    np.testing.assert_allclose((Sb[:m] - Sb[m:]) / (2 * h), grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_semi_dual_shift_invariance(backend):
    rng = np.random.RandomState(7)
    a, b, _, CT, alpha = instance(rng, 12, 15)
    for k in (1, 3, 12):
        S0 = run_semi(backend, alpha, a, b, CT, k, 0.2)[0]
        for c in (-2.5, 0.7, 3.7):
            S1 = run_semi(backend, alpha + c, a, b, CT, k, 0.2)[0]
            assert abs(S1 - S0) <= 1e-13


@pytest.mark.parametrize("backend", BACKENDS)
def test_dual_below_semi_dual_and_gradients(backend):
    rng = np.random.RandomState(8)
    m, n = 10, 13
    a, b, C, CT, alpha = instance(rng, m, n)
    for k in (1, 2, 4, 10, 11):
        S = run_semi(backend, alpha, a, b, CT, k, 0.3)[0]
        for _ in range(20):
            beta = rng.randn(n) * 0.5
            D, ga, gb, idx, val = run_dual(backend, alpha, beta, a, b, CT, k, 0.3)
            assert D <= S + 1e-13
            T = plan_to_dense(idx, val, m)
            assert val.min() >= 0 and np.all(np.count_nonzero(T, axis=0) <= k)
            np.testing.assert_allclose(ga, a - T.sum(1), rtol=0, atol=1e-14)
            np.testing.assert_allclose(gb, b - T.sum(0), rtol=0, atol=1e-14)
            X = alpha[:, None] + beta[None, :] - C
            np.testing.assert_allclose(
                D, alpha @ a + beta @ b - np.sum(X * T) + 0.3 / 2 * np.sum(T * T), atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dual_gradient_finite_differences(backend):
    rng = np.random.RandomState(9)
    m, n, k, gamma = 6, 8, 2, 0.4
    a, b, _, CT, alpha = instance(rng, m, n)
    beta = rng.randn(n) * 0.3 + 0.3
    _, ga, gb, _, _ = run_dual(backend, alpha, beta, a, b, CT, k, gamma)
    h = 1e-6
    x = np.r_[alpha, beta]
    P = np.concatenate([x + h * np.eye(m + n), x - h * np.eye(m + n)])
    Db = run_dual(backend, P[:, :m], P[:, m:], a, b, CT, k, gamma)[0]
    fd = (Db[: m + n] - Db[m + n:]) / (2 * h)
    np.testing.assert_allclose(fd, np.r_[ga, gb], rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_semi_dual_is_max_over_beta_of_dual(backend, k):
    rng = np.random.RandomState(10)
    m, n, gamma = 6, 5, 0.25
    a, b, C, CT, alpha = instance(rng, m, n)
    S, _, idx, val = run_semi(backend, alpha, a, b, CT, k, gamma)
    # D is separable in beta: maximise column by column (1-D convex problems, C^1)
    total = alpha @ a
    for j in range(n):
        def f(bj, j=j):
            v = topk_l2_conjugate(as_backend(alpha + bj - C[:, j], backend), k, gamma)[0]
            return float(v) - bj * b[j]
        res = minimize_scalar(f, bracket=(-3.0, 3.0), method="brent", tol=1e-12)
        total -= res.fun
    assert abs(total - S) <= 1e-8
    # and exactly at beta_j = -lambda_j, lambda_j = x_ij - gamma t_ij on the support
    X = alpha[None, :] - CT
    jj = np.arange(n)
    lam = X[jj, idx[:, 0]] - gamma * val[:, 0]  # the largest entry is always in the support
    D = run_dual(backend, alpha, -lam, a, b, CT, k, gamma)[0]
    assert abs(D - S) <= 1e-13


def k_sparse_feasible_plan(rng, m, n, k):
    """A k-sparse T >= 0 covering every row, and its marginals (a, b) normalised to mass 1."""
    T = np.zeros((m, n))
    for j in range(n):
        rows = rng.choice(m, size=k, replace=False)
        rows[0] = j % m  # every row gets mass when n >= m
        T[np.unique(rows), j] = rng.rand(len(np.unique(rows))) + 0.1
    T /= T.sum()
    return T, T.sum(1), T.sum(0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weak_duality_with_feasible_plans(backend):
    rng = np.random.RandomState(11)
    m, n = 8, 12
    C = rng.rand(m, n)
    CT = np.ascontiguousarray(C.T)
    for k in (1, 2, 3):
        T, a, b = k_sparse_feasible_plan(rng, m, n, k)
        assert np.all(np.count_nonzero(T, axis=0) <= k)
        for gamma in (0.05, 1.0, 5.0):
            P = float(to_np(relaxed_primal_value(as_backend(T, backend), as_backend(C, backend),
                                                 k, gamma)))
            # for a k-sparse plan the relaxed objective is the primal one
            assert P == pytest.approx(np.sum(T * C) + gamma / 2 * np.sum(T * T), rel=1e-14)
            # the (non k-sparse) independent coupling is feasible for the relaxation
            Tind = np.outer(a, b)
            Pind = float(to_np(relaxed_primal_value(as_backend(Tind, backend),
                                                    as_backend(C, backend), k, gamma)))
            for _ in range(30):
                alpha = rng.randn(m) * rng.choice([0.1, 1.0, 5.0])
                S = run_semi(backend, alpha, a, b, CT, k, gamma)[0]
                beta = rng.randn(n)
                D = run_dual(backend, alpha, beta, a, b, CT, k, gamma)[0]
                assert D <= S + 1e-12
                assert S <= P + 1e-12
                assert S <= Pind + 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_qot_limit_and_pot_semi_dual(backend):
    pytest.importorskip("ot")
    from ot.smooth import SparsityConstrained, SquaredL2, dual_obj_grad, semi_dual_obj_grad

    rng = np.random.RandomState(12)
    m, n, gamma = 9, 11, 0.3
    a, b, C, CT, alpha = instance(rng, m, n)
    beta = rng.randn(n) * 0.3
    for k in (m, m + 5):  # k >= m: unconstrained (QOT) conjugates
        S, grad, _, _ = run_semi(backend, alpha, a, b, CT, k, gamma)
        obj, g = semi_dual_obj_grad(alpha.copy(), a.copy(), b.copy(), C.copy(), SquaredL2(gamma))
        assert abs(S - obj) <= 1e-13
        np.testing.assert_allclose(grad, g, rtol=0, atol=1e-14)
        D, ga, gb, _, _ = run_dual(backend, alpha, beta, a, b, CT, k, gamma)
        obj, g1, g2 = dual_obj_grad(alpha.copy(), beta.copy(), a.copy(), b.copy(), C.copy(),
                                    SquaredL2(gamma))
        assert abs(D - obj) <= 1e-13
        np.testing.assert_allclose(ga, g1, rtol=0, atol=1e-14)
        np.testing.assert_allclose(gb, g2, rtol=0, atol=1e-14)
    for k in (1, 2, 4):
        S, grad, _, _ = run_semi(backend, alpha, a, b, CT, k, gamma)
        with contextlib.redirect_stdout(io.StringIO()):  # POT prints in its sparse projection
            obj, g = semi_dual_obj_grad(alpha.copy(), a.copy(), b.copy(), C.copy(),
                                        SparsityConstrained(k, gamma))
        assert abs(S - obj) <= 1e-13
        np.testing.assert_allclose(grad, g, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# backends, batching, contract
# ----------------------------------------------------------------------------------------------

def test_numpy_and_torch_agree_batched():
    rng = np.random.RandomState(13)
    B, m, n = 3, 20, 25
    a, b, _, CT, alpha = instance(rng, m, n, batch=(B,))
    beta = rng.randn(B, n) * 0.2
    for k in (1, 2, 5, 9, 20):
        sn = run_semi("numpy", alpha, a, b, CT, k, 0.1)
        st = run_semi("torch", alpha, a, b, CT, k, 0.1)
        np.testing.assert_allclose(st[0], sn[0], rtol=0, atol=1e-13)
        np.testing.assert_allclose(st[1], sn[1], rtol=0, atol=1e-14)
        np.testing.assert_allclose(plan_to_dense(st[2], st[3], m), plan_to_dense(sn[2], sn[3], m),
                                   rtol=0, atol=1e-14)
        dn = run_dual("numpy", alpha, beta, a, b, CT, k, 0.1)
        dt = run_dual("torch", alpha, beta, a, b, CT, k, 0.1)
        for x, y in zip(dn[:3], dt[:3]):
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-13)
        np.testing.assert_allclose(plan_to_dense(dt[3], dt[4], m), plan_to_dense(dn[3], dn[4], m),
                                   rtol=0, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_per_instance(backend):
    rng = np.random.RandomState(14)
    B, m, n = 4, 15, 18
    a, b, _, CT, alpha = instance(rng, m, n, batch=(B,))
    beta = rng.randn(B, n) * 0.2
    for k in (1, 3, 15):
        S, g, idx, val = run_semi(backend, alpha, a, b, CT, k, 0.5)
        D, ga, gb, _, _ = run_dual(backend, alpha, beta, a, b, CT, k, 0.5)
        assert S.shape == (B,) and g.shape == (B, m) and idx.shape == (B, n, min(k, m))
        assert plan_row_sums(idx, val, m).shape == (B, m)
        for i in range(B):
            Si, gi, idxi, vali = run_semi(backend, alpha[i], a[i], b[i], CT[i], k, 0.5)
            assert abs(S[i] - Si) <= 1e-14
            np.testing.assert_allclose(g[i], gi, rtol=0, atol=1e-15)
            np.testing.assert_array_equal(idx[i], idxi)
            np.testing.assert_allclose(val[i], vali, rtol=0, atol=1e-16)
            Di, gai, gbi, _, _ = run_dual(backend, alpha[i], beta[i], a[i], b[i], CT[i], k, 0.5)
            assert abs(D[i] - Di) <= 1e-14
            np.testing.assert_allclose(ga[i], gai, rtol=0, atol=1e-15)
            np.testing.assert_allclose(gb[i], gbi, rtol=0, atol=1e-15)
        T = plan_to_dense(idx, val, m)
        for i in range(B):
            np.testing.assert_array_equal(T[i], plan_to_dense(idx[i], val[i], m))
    # batched conjugates along axis 0 with per-slice b
    s = rng.randn(6, 5, 4)
    bb = rng.uniform(0.1, 1, size=(5, 4))
    v, t = topk_simplex_max(as_backend(s, backend), as_backend(bb, backend), 2, 0.3)
    v, t = to_np(v), to_np(t)
    assert v.shape == (5, 4) and t.shape == s.shape
    np.testing.assert_allclose(t.sum(0), bb, rtol=0, atol=1e-15)
    v1, t1 = topk_simplex_max(as_backend(s[:, 2, 1], backend), bb[2, 1], 2, 0.3)
    assert abs(v[2, 1] - float(v1)) <= 1e-15
    np.testing.assert_allclose(t[:, 2, 1], to_np(t1), rtol=0, atol=1e-16)


def test_ties_lowest_index_numpy():
    m, n = 6, 3
    CT = np.zeros((n, m))
    a = np.full(m, 1 / m)
    b = np.full(n, 1 / n)
    for k in (1, 2, 4):
        _, _, idx, val = semi_dual_kernel(np.zeros(m), a, b, CT, k, 1.0)
        np.testing.assert_array_equal(idx, np.tile(np.arange(k), (n, 1)))
        np.testing.assert_allclose(val, np.full((n, k), 1 / (n * k)), rtol=1e-15)
        _, _, _, didx, _ = dual_kernel(np.zeros(m), np.ones(n), a, b, CT, k, 1.0)
        np.testing.assert_array_equal(didx, np.tile(np.arange(k), (n, 1)))
    # the argpartition path (k > 8)
    m = 20
    CT = np.zeros((2, m))
    CT[:, 15] = -1.0  # the strict maximum, then the lowest-index ties
    _, _, idx, _ = semi_dual_kernel(np.zeros(m), np.full(m, 0.05), np.full(2, 0.5), CT, 10, 1.0)
    np.testing.assert_array_equal(idx, np.tile(np.r_[15, np.arange(9)], (2, 1)))


def test_work_buffer_and_layout():
    rng = np.random.RandomState(15)
    a, b, _, CT, alpha = instance(rng, 30, 20)
    ref = semi_dual_kernel(alpha, a, b, CT, 2, 0.1)
    work = np.empty_like(CT)
    got = semi_dual_kernel(alpha, a, b, CT, 2, 0.1, work=work)
    # a transposed (Fortran-ordered) CT gives the same numbers
    got_f = semi_dual_kernel(alpha, a, b, np.asfortranarray(CT), 2, 0.1)
    for x, y, z in zip(ref, got, got_f):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    wt = torch.empty(20, 30, dtype=torch.float64)
    got_t = semi_dual_kernel(*(torch.tensor(x) for x in (alpha, a, b, CT)), 2, 0.1, work=wt)
    np.testing.assert_allclose(to_np(got_t[1]), ref[1], rtol=0, atol=1e-15)
    refd = dual_kernel(alpha, np.zeros(20), a, b, CT, 3, 0.1)
    gotd = dual_kernel(alpha, np.zeros(20), a, b, CT, 3, 0.1, work=np.empty_like(CT))
    for x, y in zip(refd, gotd):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(InvalidProblemError, match="work"):
        semi_dual_kernel(alpha, a, b, CT, 2, 0.1, work=np.empty((30, 20)))
    with pytest.raises(InvalidProblemError, match="work"):
        semi_dual_kernel(alpha, a, b, CT, 2, 0.1, work=np.empty((20, 30), dtype=np.float32))


def test_no_mutation_and_dtypes():
    rng = np.random.RandomState(16)
    a, b, C, CT, alpha = instance(rng, 8, 10)
    beta = rng.randn(10)
    arrays = {"a": a, "b": b, "C": C, "CT": CT, "alpha": alpha, "beta": beta}
    saved = {k: v.copy() for k, v in arrays.items()}
    tens = {k: torch.tensor(v) for k, v in arrays.items()}
    tsaved = {k: v.clone() for k, v in tens.items()}
    for A in (arrays, tens):
        for k in (1, 2, 9, 12):
            semi_dual_kernel(A["alpha"], A["a"], A["b"], A["CT"], k, 0.5)
            dual_kernel(A["alpha"], A["beta"], A["a"], A["b"], A["CT"], k, 0.5)
            topk_l2_conjugate(A["C"], k, 0.5)
            topk_simplex_max(A["C"], A["b"], k, 0.5)
            ksupport_sq(A["C"], k)
            relaxed_primal_value(A["C"], A["C"], k, 0.5)
    for name, arr in arrays.items():
        np.testing.assert_array_equal(arr, saved[name])
        assert torch.equal(tens[name], tsaved[name])
    # numpy -> float64 numpy (integers cast); torch keeps dtype and device
    S, g, idx, val = semi_dual_kernel(np.zeros(3, dtype=int), [1, 1, 1], [1, 2], np.ones((2, 3)),
                                      2, 1)
    assert isinstance(S, np.floating | np.ndarray) and np.asarray(S).dtype == np.float64
    assert g.dtype == np.float64 and val.dtype == np.float64 and idx.dtype == np.int64
    t32 = {k: v.to(torch.float32) for k, v in tens.items()}
    S, g, idx, val = semi_dual_kernel(t32["alpha"], t32["a"], t32["b"], t32["CT"], 2, 0.5)
    assert S.dtype == g.dtype == val.dtype == torch.float32 and idx.dtype == torch.int64
    D, ga, gb, _, _ = dual_kernel(t32["alpha"], t32["beta"], t32["a"], t32["b"], t32["CT"], 2, 0.5)
    assert D.dtype == ga.dtype == gb.dtype == torch.float32


def test_invalid_arguments():
    a = np.full(3, 1 / 3)
    b = np.full(2, 0.5)
    CT = np.ones((2, 3))
    for bad in (0, True, 2.0, -3):
        with pytest.raises(InvalidProblemError, match="max_nz"):
            semi_dual_kernel(np.zeros(3), a, b, CT, bad, 1.0)
    semi_dual_kernel(np.zeros(3), a, b, CT, np.int64(2), np.float64(1.0))
    for bad in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(InvalidProblemError, match="reg"):
            dual_kernel(np.zeros(3), np.zeros(2), a, b, CT, 2, bad)
    with pytest.raises(InvalidProblemError, match="alpha"):
        semi_dual_kernel(np.zeros(4), a, b, CT, 2, 1.0)
    with pytest.raises(InvalidProblemError, match="b"):
        semi_dual_kernel(np.zeros(3), a, np.ones(3), CT, 2, 1.0)
