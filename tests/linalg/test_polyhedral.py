"""Polyhedral projector (ADMM + polishing) against cvxpy/Clarabel and its own KKT certificate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optkit import InvalidProblemError
from optkit._errors import BackendError
from optkit.linalg.polyhedral import polyhedral_factor, project_polyhedron

torch = pytest.importorskip("torch")
cp = pytest.importorskip("cvxpy")

from conftest import as_backend, to_np  # noqa: E402

BACKENDS = ["numpy", "torch"]


def cvx_projection(w0, G=None, h=None, P=None, q=None, lb=None, ub=None):
    v = cp.Variable(w0.shape[0])
    cons = []
    if G is not None:
        cons.append(G @ v <= h)
    if P is not None:
        cons.append(P @ v == q)
    if lb is not None:
        cons.append(v >= lb)
    if ub is not None:
        cons.append(v <= ub)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(v - w0)), cons)
    try:
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11, max_iter=500)
    except cp.error.SolverError:  # Clarabel occasionally stalls at the tightest settings
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9, max_iter=500)
    assert prob.status == "optimal"
    return v.value


def instance(seed, n, m_in, m_eq, box):
    """Random polyhedron containing a known point (so it is non-empty) and points to project."""
    rng = np.random.default_rng(seed)
    inside = 0.3 * rng.standard_normal(n)
    G = rng.standard_normal((m_in, n)) if m_in else None
    h = G @ inside + rng.random(m_in) if m_in else None
    P = rng.standard_normal((m_eq, n)) if m_eq else None
    q = P @ inside if m_eq else None
    lb = ub = None
    if box == "both":
        lb, ub = -0.5 - rng.random(n), 0.5 + rng.random(n)
        lb = np.minimum(lb, inside)
        ub = np.maximum(ub, inside)
    elif box == "lower":
        lb = np.where(rng.random(n) < 0.5, -np.inf, inside - rng.random(n))
    return G, h, P, q, lb, ub


def check_kkt(w0, w, info, G, h, P, q, lb, ub, tol):
    """Independent KKT check of the projection with the returned multipliers."""
    grad = w - w0
    if G is not None:
        lam = info["lam"]
        assert lam.min() >= -tol
        assert (G @ w - h).max() <= tol
        np.testing.assert_allclose(lam * (G @ w - h), 0, atol=tol * max(1, np.abs(lam).max()))
        grad = grad + G.T @ lam
    if P is not None:
        np.testing.assert_allclose(P @ w, q, atol=tol)
        grad = grad + P.T @ info["nu"]
    mu = info["mu_box"]
    if lb is not None:
        assert np.all(w >= lb)
    if ub is not None:
        assert np.all(w <= ub)
    lbv = np.full_like(w, -np.inf) if lb is None else lb
    ubv = np.full_like(w, np.inf) if ub is None else ub
    assert np.all((mu <= tol) | (np.abs(w - ubv) <= tol))  # mu > 0 only at an upper bound
    assert np.all((mu >= -tol) | (np.abs(w - lbv) <= tol))
    np.testing.assert_allclose(grad + mu, 0, atol=tol)


SHAPES = [  # n, m_in, m_eq, box
    (5, 8, 0, None),
    (20, 10, 3, "both"),
    (30, 60, 0, None),
    (12, 4, 2, "lower"),
    (40, 15, 0, "both"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_cvxpy_and_kkt(backend, shape):
    n, m_in, m_eq, box = shape
    G, h, P, q, lb, ub = instance(sum(shape[:3]), n, m_in, m_eq, box)
    rng = np.random.default_rng(7)
    for _ in range(2):
        w0 = 2.0 * rng.standard_normal(n)
        ref = cvx_projection(w0, G, h, P, q, lb, ub)
        w, info = project_polyhedron(as_backend(w0, backend), G, h, P, q, lb=lb, ub=ub)
        assert bool(info["converged"])
        assert float(info["residual"]) <= 1e-10 * max(1, np.abs(w0).max())
        info_np = {k: to_np(v) for k, v in info.items() if k != "warm" and k != "iterations"}
        check_kkt(w0, to_np(w), info_np, G, h, P, q, lb, ub, tol=1e-9)
        np.testing.assert_allclose(to_np(w), ref, atol=2e-7)  # Clarabel's own accuracy limits this
        assert type(w) is type(as_backend(w0, backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_single_calls(backend):
    G, h, P, q, lb, ub = instance(3, 15, 12, 2, "both")
    W = 2.0 * np.random.default_rng(1).standard_normal((2, 3, 15))
    f = polyhedral_factor(G, P, box=True)
    out, info = project_polyhedron(as_backend(W, backend), h=h, q=q, lb=lb, ub=ub, factor=f)
    assert tuple(out.shape) == (2, 3, 15)
    assert tuple(info["residual"].shape) == (2, 3)
    for i in range(2):
        for j in range(3):
            single, _ = project_polyhedron(W[i, j], G, h, P, q, lb=lb, ub=ub)
            np.testing.assert_allclose(to_np(out)[i, j], single, atol=1e-9)


def test_without_polishing_admm_reaches_tolerance():
    G, h, P, q, lb, ub = instance(5, 20, 10, 0, None)
    w0 = 2.0 * np.random.default_rng(2).standard_normal(20)
    w, info = project_polyhedron(w0, G, h, polish=False)
    assert bool(info["converged"]) and not bool(info["polished"])
    np.testing.assert_allclose(w, cvx_projection(w0, G, h), atol=1e-8)


def test_warm_start_cuts_iterations_on_a_slowly_moving_sequence():
    G, h, P, q, lb, ub = instance(11, 60, 40, 0, "both")
    f = polyhedral_factor(G, box=True)
    rng = np.random.default_rng(3)
    w = 2.0 * rng.standard_normal(60)
    warm, cold_its, warm_its = None, [], []
    for _ in range(15):
        w = w + 1e-3 * rng.standard_normal(60)
        cold, ic = project_polyhedron(w, h=h, lb=lb, ub=ub, factor=f)
        hot, iw = project_polyhedron(w, h=h, lb=lb, ub=ub, factor=f, warm=warm)
        warm = iw["warm"]
        cold_its.append(ic["iterations"])
        warm_its.append(iw["iterations"])
        np.testing.assert_allclose(hot, cold, atol=1e-10)
    assert sum(warm_its[1:]) * 5 <= sum(cold_its[1:])
    assert min(cold_its) > 0


def test_factor_is_not_recomputed_per_call(monkeypatch):
    """The ADMM matrix is factorised once; polishing factorises an active-set Gram matrix only when
    the active set changes (cached), so a slowly moving sequence costs no factorisation per call."""
    import optkit.linalg.polyhedral as poly

    G, h, P, q, lb, ub = instance(4, 25, 10, 3, None)
    calls = []
    real = scipy.linalg.cho_factor
    monkeypatch.setattr(scipy.linalg, "cho_factor", lambda *a, **k: (calls.append(a[0].shape), real(*a, **k))[1])
    f = polyhedral_factor(G, P)
    assert len(calls) == 1 and f.n_factorizations == 1
    monkeypatch.setattr(poly, "polyhedral_factor", lambda *a, **k: pytest.fail("factor rebuilt"))
    rng = np.random.default_rng(0)
    w = 2.0 * rng.standard_normal(25)
    warm = warm_t = None
    for k in range(8):
        w = w + 1e-4 * rng.standard_normal(25)
        out, info = project_polyhedron(w, h=h, q=q, factor=f, warm=warm)
        warm = info["warm"]
        out_t, info_t = project_polyhedron(torch.tensor(w), h=h, q=q, factor=f, warm=warm_t)
        warm_t = info_t["warm"]
        np.testing.assert_allclose(out_t.numpy(), out, atol=1e-10)
        if k == 1:
            n_calls, n_polish = len(calls), f.n_polish_factorizations
        if k >= 1:
            assert bool(info["polished"]) and info["iterations"] == 0
    assert len(calls) == n_calls and f.n_polish_factorizations == n_polish  # nothing new after call 2


def test_woodbury_and_direct_factor_modes_agree():
    G, h, P, q, lb, ub = instance(8, 10, 6, 0, "both")
    w0 = 3.0 * np.random.default_rng(0).standard_normal(10)
    f_w = polyhedral_factor(G, box=True)
    assert f_w.mode == "woodbury"
    G2 = np.vstack([G, G])  # duplicated rows: m >= n, rank-deficient A (the projection is still unique)
    f_d = polyhedral_factor(G2, box=True)
    assert f_d.mode == "direct"
    a, _ = project_polyhedron(w0, h=h, lb=lb, ub=ub, factor=f_w)
    b, info = project_polyhedron(w0, h=np.r_[h, h], lb=lb, ub=ub, factor=f_d)
    assert bool(info["converged"])
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_float32_torch():
    G, h, P, q, lb, ub = instance(2, 10, 8, 0, None)
    w0 = 2.0 * np.random.default_rng(0).standard_normal(10)
    w, info = project_polyhedron(torch.tensor(w0, dtype=torch.float32), G, h)
    assert w.dtype == torch.float32
    np.testing.assert_allclose(w.numpy(), cvx_projection(w0, G, h), atol=1e-4)


def test_max_iter_reports_non_convergence():
    G, h, P, q, lb, ub = instance(2, 30, 40, 0, None)
    w0 = 5.0 * np.random.default_rng(0).standard_normal(30)
    w, info = project_polyhedron(w0, G, h, polish=False, max_iter=3, check_every=1)
    assert not bool(info["converged"]) and info["iterations"] == 3
    assert np.isfinite(w).all()


def test_inputs_not_mutated():
    G, h, P, q, lb, ub = instance(1, 8, 6, 2, "both")
    w0 = 3.0 * np.random.default_rng(0).standard_normal((2, 8))
    copies = [a.copy() for a in (w0, G, h, P, q, lb, ub)]
    t0 = torch.tensor(w0)
    t_copy = t0.clone()
    project_polyhedron(w0, G, h, P, q, lb=lb, ub=ub)
    project_polyhedron(t0, G, h, P, q, lb=lb, ub=ub)
    for a, c in zip((w0, G, h, P, q, lb, ub), copies):
        np.testing.assert_array_equal(a, c)
    assert torch.equal(t0, t_copy)


@pytest.mark.parametrize("kwargs, name", [
    (dict(w0=np.array([np.nan, 0.0])), "w0"),
    (dict(G=np.ones((2, 3))), "G"),
    (dict(h=np.array([1.0, np.nan])), "h"),
    (dict(lb=np.array([1.0, 1.0]), ub=np.array([0.0, 2.0])), "lb"),
    (dict(alpha=2.5), "alpha"),
    (dict(tol=-1.0), "tol"),
    (dict(G=np.array([[0.0, 0.0], [1.0, 1.0]])), "G"),
    (dict(P=np.ones((1, 2)), q=None), "q"),
])
def test_bad_inputs_name_the_argument(kwargs, name):
    args = dict(w0=np.zeros(2), G=np.eye(2), h=np.ones(2))
    args.update(kwargs)
    w0 = args.pop("w0")
    with pytest.raises(InvalidProblemError, match=name):
        project_polyhedron(w0, **args)


def test_half_precision_is_a_backend_error():
    with pytest.raises(BackendError):
        project_polyhedron(torch.zeros(2, dtype=torch.float16), np.eye(2), np.ones(2))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 10.0))
def test_non_expansive(seed, scale):
    G, h, P, q, lb, ub = instance(seed % 7, 6, 5, 1, "both")
    f = polyhedral_factor(G, P, box=True)
    rng = np.random.default_rng(seed)
    a, b = scale * rng.standard_normal((2, 6))
    pa, _ = project_polyhedron(a, h=h, q=q, lb=lb, ub=ub, factor=f)
    pb, _ = project_polyhedron(b, h=h, q=q, lb=lb, ub=ub, factor=f)
    assert np.linalg.norm(pa - pb) <= np.linalg.norm(a - b) + 1e-9
    pp, _ = project_polyhedron(pa, h=h, q=q, lb=lb, ub=ub, factor=f)  # idempotent
    np.testing.assert_allclose(pp, pa, atol=1e-9)
