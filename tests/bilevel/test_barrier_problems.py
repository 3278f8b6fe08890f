"""Barrier method on the instances of spec bilevel §6-7 (V5, V6, the nonconvex toy, R1, R3, R4)."""

import numpy as np
import pytest
from conftest import to_np

from optkit import Status
from optkit.bilevel import BarrierSolver, solve
from optkit.bilevel.kkt import kkt_hypergradient
from optkit.bilevel.problems import (
    lp_analytic_centre,
    nonconvex_toy,
    price_setting,
    svm_hyperparam,
    svm_hyperparam_data,
    svm_test_accuracy,
    synthetic_qp,
)

torch = pytest.importorskip("torch")


def _grad_at(problem, x, t):
    st = BarrierSolver(problem, t0=t, t_min=t).init(x0=x)
    return st.grad[0], float(st.phi[0]), st.y[0]


@pytest.fixture(scope="module")
def v5():
    p = synthetic_qp(60, seed=0, version="v2")
    x = 0.5 * np.random.default_rng(1).standard_normal(60)
    exact, info = kkt_hypergradient(p, x)
    return p, x, exact, info


def test_v5_reference_hypergradient(v5):
    """The spec's exact-LL facts at the V5 point: 15 active rows, 7 coupled, smallest multiplier 0.09."""
    p, x, exact, info = v5
    assert info["active"].sum() == 15
    assert info["active"][: p.m].sum() == 7
    assert abs(info["lam"][info["active"]].min() - 0.09) < 5e-3
    assert abs(np.linalg.norm(exact) - 599.58) < 0.01
    assert not info["singular"]


@pytest.mark.parametrize("t", [1e-3, 1e-4, 1e-5, 1e-6])
def test_v5_barrier_hypergradient_converges_at_rate_t(v5, t):
    p, x, exact, _ = v5
    g, _, y = _grad_at(p, x, t)
    rel = np.linalg.norm(g - exact) / np.linalg.norm(exact)
    assert rel <= 100 * t + 1e-4


def test_v5_ift_matches_central_differences(v5):
    p, x, _, _ = v5
    t, h = 1e-2, 1e-6
    d = np.random.default_rng(2).standard_normal(60)
    d /= np.linalg.norm(d)
    g, _, _ = _grad_at(p, x, t)
    fd = (_grad_at(p, x + h * d, t)[1] - _grad_at(p, x - h * d, t)[1]) / (2 * h)
    assert abs(fd - g @ d) <= 1e-6 * abs(fd)


def test_v5_numpy_and_torch_agree(v5):
    p, x, _, _ = v5
    g_np, phi_np, _ = _grad_at(p, x, 1e-3)
    st = BarrierSolver(p, t0=1e-3, t_min=1e-3).init(x0=torch.as_tensor(x))
    np.testing.assert_allclose(to_np(st.grad[0]), g_np, rtol=1e-9, atol=1e-8)
    assert abs(float(st.phi[0]) - phi_np) < 1e-9


@pytest.mark.parametrize("t,gap", [(1e-2, 0.01004), (1e-3, 0.001000)])
def test_v6_barrier_selects_the_analytic_centre(t, gap):
    """Non-unique LP optimal face y1 + y2 = x: the barrier returns its analytic centre (spec §9.5)."""
    _, _, y = _grad_at(lp_analytic_centre(), np.array([4.0]), t)
    assert abs(y[0] - y[1]) < 1e-10
    assert abs((2 * y[0] - 4.0) - gap) < 5e-6


def test_v6_solve():
    p = lp_analytic_centre()
    res = solve(p)
    assert res.success
    assert abs(res.x[0] - 4.0) < 1e-5
    np.testing.assert_allclose(res.y, [2.0, 2.0], atol=1e-4)


def test_nonconvex_toy_multistart_finds_the_global_minimiser():
    p = nonconvex_toy()
    found = []
    for x0 in np.linspace(-2.0, 2.0, 9):
        res = solve(p, x0=np.array([x0]), y0=np.array([min(x0, 1 - x0) - 1.0]))
        assert res.status == Status.CONVERGED, res.message
        found.append((res.fun_resolved, float(res.x[0])))
    best_F, best_x = min(found)
    assert abs(best_x - p.solution["x"][0]) < 1e-5
    assert abs(best_F - p.solution["F"]) < 1e-8
    # the other basin exists and is found from starts on its side: phi's local minimum with the row active
    assert any(abs(x - p.solution["local_x"][0]) < 1e-5 for _, x in found)


def test_r1_short_run_decreases_F_and_stays_feasible():
    p = synthetic_qp(60, seed=0, version="v1")
    res = solve(p, max_iter=15)
    F0 = solve(p, method="kkt", max_iter=0).fun_resolved
    assert abs(F0 - 87.57) < 0.01  # spec R1 sanity value
    assert res.fun_resolved < F0 - 50
    assert res.constraint_violation == 0.0
    assert 0.0 <= res.ll_gap


def test_r1_batched_torch_equals_numpy():
    p = synthetic_qp(20, seed=3, version="v1")
    X0 = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 20))
    res = solve(p, x0=torch.as_tensor(X0), y0=torch.zeros(2, 20, dtype=torch.float64), max_iter=8,
                resolve_lower=False)
    for i in range(2):
        r = solve(p, x0=X0[i], y0=np.zeros(20), max_iter=8, resolve_lower=False)
        np.testing.assert_allclose(to_np(res.x[i]), r.x, rtol=1e-7, atol=1e-8)


def test_r3_price_setting_needs_phase1_and_runs():
    p = price_setting(60, seed=0)
    res = solve(p, max_iter=5)  # y0 = 0 violates A x + B y >= b: restored by the phase-1 LP
    assert res.nit == 5 and res.constraint_violation == 0.0
    revenue = float(res.x @ res.y_resolved[:60])
    assert revenue > 0.5


def test_r4_svm_hyperparameter_moves_c_and_improves_the_upper_objective():
    data = svm_hyperparam_data(seed=1)
    p = svm_hyperparam(data=data, seed=1)
    F0 = solve(p, t0=1e-3, max_iter=0, resolve_lower=False).fun  # phi_t at the start
    res = solve(p, t0=1e-3, max_iter=6)
    assert np.abs(res.x - p.x0).max() > 1e-3  # the x-step is applied (spec flaw 11)
    assert res.fun < F0
    acc = svm_test_accuracy(data, res.y)
    assert 0.5 < acc <= 1.0


def test_kkt_flags_the_singular_system_at_a_non_unique_lp_solution():
    """V6 at x = 4: the LP optimal face is a segment, one active row for two variables -> K singular."""
    g, info = kkt_hypergradient(lp_analytic_centre(), np.array([4.0]))
    assert info["singular"]
    np.testing.assert_allclose(g, [0.0], atol=1e-10)  # phi = 1/2 (x - 4)^2 does not depend on y
    res = solve(lp_analytic_centre(), method="kkt", x0=np.array([1.0]))
    assert res.extra["kkt_singular"] and abs(res.x[0] - 4.0) < 1e-6
