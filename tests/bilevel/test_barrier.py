"""Barrier method against the closed forms of spec bilevel §6 (V1, V2), on numpy and torch."""

import math

import numpy as np
import pytest
from conftest import to_np

import optkit
from optkit import InvalidProblemError, Status
from optkit.bilevel import BarrierSolver, BilevelProblem, Box, LowerQP, solve
from optkit.bilevel.kkt import kkt_hypergradient
from optkit.bilevel.problems import budget_lp, sum_coupled_qp

torch = pytest.importorskip("torch")
BACKENDS = ["numpy", "torch"]


def _arr(v, backend):
    v = np.asarray(v, dtype=float)
    return torch.tensor(v, dtype=torch.float64) if backend == "torch" else v


def _at(problem, x, t, backend, y0=None):
    """(y_t(x), grad phi_t(x), phi_t(x)) from one lower-level solve at fixed t."""
    st = BarrierSolver(problem, t0=t, t_min=t).init(x0=_arr(x, backend),
                                                    y0=None if y0 is None else _arr(y0, backend))
    return to_np(st.y[0]), to_np(st.grad[0]), float(st.phi[0])


def _v1_closed(x, t, n=4):
    a = 1 + 3 * np.arange(n) / (n - 1)
    r = x.sum() - a.sum()
    tau = (-r + math.sqrt(r * r + 4 * n * t)) / (2 * n)
    dtau = (-1 + r / math.sqrt(r * r + 4 * n * t)) / (2 * n)
    y = a - tau
    grad = x + (-dtau) * np.ones(n) * (y - 2).sum()
    phi = 0.5 * (x @ x) + 0.5 * ((y - 2) ** 2).sum()
    return y, grad, phi


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t", [1e-2, 1e-4])
def test_v1_barrier_values_match_closed_form(backend, t):
    p = sum_coupled_qp(4)
    x = np.array([0.5, 0.0, 1.0, 2.0])
    y, g, phi = _at(p, x, t, backend)
    yc, gc, phic = _v1_closed(x, t)
    np.testing.assert_allclose(y, yc, atol=1e-10)
    np.testing.assert_allclose(g, gc, atol=1e-8)
    assert abs(phi - phic) <= 1e-9
    if t == 1e-2:  # the spec's printed values
        np.testing.assert_allclose(y, [-0.62653701, 0.37346299, 1.37346299, 2.37346299], atol=1e-8)
        np.testing.assert_allclose(g, [-0.62547348, -1.12547348, -0.12547348, 0.87452652], atol=1e-8)
        assert abs(phi - 7.66317126) < 1e-8
    else:
        np.testing.assert_allclose(g, [-0.62500473, -1.12500473, -0.12500473, 0.87499527], atol=1e-8)


def test_v1_hypergradient_matches_central_differences():
    p = sum_coupled_qp(4)
    x = np.array([0.5, 0.0, 1.0, 2.0])
    d = np.random.default_rng(0).standard_normal(4)
    d /= np.linalg.norm(d)
    t, h = 1e-2, 1e-5
    _, g, _ = _at(p, x, t, "numpy")
    fd = (_at(p, x + h * d, t, "numpy")[2] - _at(p, x - h * d, t, "numpy")[2]) / (2 * h)
    assert abs(fd - g @ d) <= 1e-6 * max(1.0, abs(fd))


def test_v1_kkt_hypergradient_is_exact():
    p = sum_coupled_qp(4)
    g, info = kkt_hypergradient(p, np.array([0.5, 0.0, 1.0, 2.0]))
    np.testing.assert_allclose(g, [-0.625, -1.125, -0.125, 0.875], atol=1e-8)
    np.testing.assert_allclose(info["y"], [-0.625, 0.375, 1.375, 2.375], atol=1e-8)
    assert not info["singular"]


@pytest.mark.parametrize("problem,x", [(sum_coupled_qp(4), [0.5, 0.0, 1.0, 2.0]), (budget_lp(), [2.0])])
def test_hypergradient_bias_is_order_t(problem, x):
    """Spec §3.1: grad phi_t -> grad phi with O(t) bias at nondegenerate points (V2's is even O(t^2))."""
    x = np.asarray(x, float)
    exact, _ = kkt_hypergradient(problem, x)
    errs = [np.linalg.norm(_at(problem, x, t, "numpy")[1] - exact) for t in (1e-2, 1e-3, 1e-4, 1e-5)]
    for e1, e2 in zip(errs, errs[1:]):
        assert e1 / e2 > 5  # at least one decade of bias per decade of t
    assert errs[-1] < 1e-4


@pytest.mark.parametrize("t,x_t,phi_t", [(1e-2, 1.00027788, 6.506664510), (1e-4, 1.0000027778, 6.500066666)])
def test_v1_argmin_phi_t(t, x_t, phi_t):
    res = solve(sum_coupled_qp(4), t0=t, t_min=t, tol=1e-11, resolve_lower=False)
    assert res.status == Status.CONVERGED, res.message
    np.testing.assert_allclose(res.x, x_t, atol=1e-8)
    assert abs(res.fun - phi_t) < 1e-8


@pytest.mark.parametrize("backend", BACKENDS)
def test_v1_solve_defaults(backend):
    p = sum_coupled_qp(4)
    res = solve(p, x0=_arr(np.zeros(4), backend), y0=_arr(-10 * np.ones(4), backend))
    assert res.status == Status.CONVERGED, res.message
    assert res.backend == backend
    assert np.abs(to_np(res.x) - 1).max() <= 1e-5
    assert res.constraint_violation == 0.0
    assert abs(res.fun_resolved - p.solution["F"]) < 1e-6
    np.testing.assert_allclose(to_np(res.y_resolved), p.solution["y"], atol=1e-5)
    np.testing.assert_allclose(to_np(res.multipliers), [1.5], atol=1e-5)
    assert 0 <= res.ll_gap <= 1.5 * res.t * 1  # f(y_t) - f(y*) <= m t at the central path
    assert res.t == pytest.approx(1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t,y_t,phi_t,dphi", [
    (1e-2, [1.981735055, 0.009949792519, 0.004987416541], 4.478407319, 0.999962820181),
    (1e-4, [1.999816673, 9.999499979e-5, 4.999874992e-5], None, 0.999999996319),
])
def test_v2_lp_barrier_values(backend, t, y_t, phi_t, dphi):
    y, g, phi = _at(budget_lp(), [2.0], t, backend, y0=0.1 * np.ones(3))
    np.testing.assert_allclose(y, y_t, rtol=1e-8)
    assert abs(g[0] - dphi) < 1e-9
    if phi_t is not None:
        assert abs(phi - phi_t) < 1e-8


@pytest.mark.parametrize("t,x_t,phi_t", [(1e-2, 1.00015016405, 3.97848204021), (1e-3, 1.00000147522, 3.99783480705),
                                         (1e-4, 1.00000001473, 3.99978334806)])
def test_v2_argmin_phi_t(t, x_t, phi_t):
    res = solve(budget_lp(), t0=t, t_min=t, tol=1e-12, resolve_lower=False)
    assert res.status == Status.CONVERGED, res.message
    assert abs(res.x[0] - x_t) < 1e-9
    assert abs(res.fun - phi_t) < 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_v2_solve_defaults(backend):
    res = solve(budget_lp(), x0=_arr([4.0], backend), y0=_arr(0.1 * np.ones(3), backend))
    assert res.status == Status.CONVERGED, res.message
    assert abs(to_np(res.x)[0] - 1) <= 1e-5
    np.testing.assert_allclose(to_np(res.multipliers), [0, 1, 2, 3], atol=1e-4)
    assert abs(res.fun_resolved - 4.0) < 1e-5


def test_kkt_method_solves_v1_and_v2():
    r1 = solve(sum_coupled_qp(6), method="kkt")
    assert r1.success and np.abs(r1.x - 1).max() < 1e-6
    r2 = solve(budget_lp(), method="kkt")
    assert r2.success and abs(r2.x[0] - 1) < 1e-6
    np.testing.assert_allclose(r2.multipliers, [0, 1, 2, 3], atol=1e-6)


def test_batched_torch_equals_single_solves():
    p = sum_coupled_qp(4)
    X0 = torch.tensor(np.random.default_rng(3).uniform(-1, 2, (3, 4)))
    res = solve(p, x0=X0, y0=torch.full((3, 4), -10.0, dtype=torch.float64), resolve_lower=False)
    assert isinstance(res, optkit.BatchedResult) and len(res) == 3
    for i in range(3):
        r = solve(p, x0=X0[i].numpy(), y0=-10 * np.ones(4), resolve_lower=False)
        np.testing.assert_allclose(to_np(res.x[i]), r.x, atol=1e-6)
        assert int(res.statuses[i]) == r.status == Status.CONVERGED


def test_infeasible_warm_start_is_restored():
    """y0 violates 1^T y <= 1^T x: phase 1 (one LP) restores a strictly feasible start."""
    res = solve(sum_coupled_qp(4), y0=10 * np.ones(4))
    assert res.success and np.abs(res.x - 1).max() <= 1e-5


def test_restoration_reject_refuses_infeasible_start():
    with pytest.raises(InvalidProblemError, match="no strictly feasible"):
        solve(sum_coupled_qp(4), y0=10 * np.ones(4), restoration="reject")


def test_no_slater_point_at_x0():
    with pytest.raises(InvalidProblemError, match="x0"):
        solve(budget_lp(), x0=np.array([-1.0]))


def test_nan_from_g_at_start():
    p = sum_coupled_qp(3)
    bad = BilevelProblem(p.F, f=lambda x, y: 0.5 * y @ y, g=lambda x, y: np.array([np.nan]), n_x=3, n_y=3, m=1)
    with pytest.raises(InvalidProblemError, match="g"):
        solve(bad)


@pytest.mark.parametrize("opts,name", [({"t0": 0.0}, "t0"), ({"t0": -1.0}, "t0"), ({"t_min": 1.0}, "t_min"),
                                       ({"t_factor": 1.0}, "t_factor"), ({"t_factor": 0.0}, "t_factor"),
                                       ({"ll_tol": -1e-3}, "ll_tol"), ({"t0": math.inf}, "t0")])
def test_bad_options(opts, name):
    with pytest.raises(InvalidProblemError, match=name):
        solve(sum_coupled_qp(4), **opts)


def test_unknown_option():
    with pytest.raises(TypeError, match="t0"):
        solve(sum_coupled_qp(4), t_0=1.0)


@pytest.mark.parametrize("x0,y0,name", [(np.zeros(3), None, "x0"), (np.zeros(4), np.zeros(5), "y0"),
                                        (np.full(4, np.nan), None, "x0")])
def test_bad_shapes_and_values(x0, y0, name):
    with pytest.raises(InvalidProblemError, match=name):
        solve(sum_coupled_qp(4), x0=x0, y0=y0)


def test_not_strongly_convex_is_detected():
    """f = 0 with one coupled row: the barrier Hessian t a a^T / s^2 is singular for n_y = 2."""
    lower = LowerQP(Q=np.zeros((2, 2)), q=np.zeros(2), A=np.ones((1, 2)), b=lambda x: x[:1])
    p = BilevelProblem(lambda x, y: (x ** 2).sum() + (y ** 2).sum(), n_x=1, n_y=2, m=1, lower=lower,
                       grad_F=lambda x, y: (2 * x, 2 * y), x0=np.ones(1), y0=np.zeros(2))
    with pytest.raises(InvalidProblemError, match="not strongly convex"):
        solve(p)


def test_indefinite_lower_is_detected():
    lower = LowerQP(Q=np.diag([1.0, -1.0]), q=np.zeros(2), A=np.ones((1, 2)), b=lambda x: x[:1])
    p = BilevelProblem(lambda x, y: (y ** 2).sum(), n_x=1, n_y=2, m=1, lower=lower, Y=Box(-1, 1),
                       grad_F=lambda x, y: (0 * x, 2 * y), x0=np.ones(1), y0=np.zeros(2))
    with pytest.raises(InvalidProblemError, match="not convex"):
        solve(p)


def test_equalities_are_refused():
    p = sum_coupled_qp(4).replace(eq_mask=np.array([True]))
    with pytest.raises(InvalidProblemError, match="eq_mask"):
        solve(p)


def test_float16_is_refused():
    with pytest.raises(optkit.BackendError, match="dtype"):
        solve(sum_coupled_qp(4), x0=torch.zeros(4, dtype=torch.float16))


def test_float32_low_t_warns_and_solves_in_float64():
    with pytest.warns(UserWarning, match="float64"):
        res = solve(sum_coupled_qp(4), x0=torch.zeros(4, dtype=torch.float32))
    assert res.x.dtype == torch.float32 and res.success
    with pytest.raises(InvalidProblemError, match="dtype"):
        solve(sum_coupled_qp(4), x0=torch.zeros(4, dtype=torch.float32), strict_dtype=True)


def test_fixed_schedule_constant_step_is_the_papers_loop():
    res = solve(sum_coupled_qp(4), t_schedule="fixed", t0=1e-2, step="constant", alpha_x=0.1, tol=1e-8,
                max_iter=5000, resolve_lower=False)
    assert res.success and res.t == 1e-2
    np.testing.assert_allclose(res.x, 1.00027788, atol=1e-7)


def test_history_callback_and_warm_start():
    seen = []
    res = solve(sum_coupled_qp(4), record_history=True, callback=lambda info: seen.append(info.nit))
    assert len(res.history) == res.nit == len(seen)
    assert {"time", "F", "t", "residual", "step"} <= set(res.history[0])
    solver = BarrierSolver(sum_coupled_qp(4))
    st = solver.init()
    for _ in range(3):
        solver.step(st)
    res2 = solver.run(st)
    assert res2.success and np.abs(res2.x - 1).max() <= 1e-5


def test_does_not_mutate_and_reproducible():
    x0 = np.zeros(4)
    y0 = -10 * np.ones(4)
    a = solve(sum_coupled_qp(4), x0=x0, y0=y0)
    b = solve(sum_coupled_qp(4), x0=x0, y0=y0)
    assert (x0 == 0).all() and (y0 == -10).all()
    np.testing.assert_array_equal(a.x, b.x)
