"""LV-HBA against the known answers of spec bilevel §6 (V1-V4) and its documented failure modes."""

import warnings

import numpy as np
import pytest
from conftest import to_np

import optkit
from optkit import InvalidProblemError, Status
from optkit.bilevel import BilevelProblem, solve
from optkit.bilevel.lvhba import PRESETS, LVHBASolver, StabilityWarning
from optkit.bilevel.problems import (
    budget_lp,
    gaffa_toy,
    llc_toy,
    llsc_toy,
    sum_coupled_qp,
    svm_hyperparam,
)

torch = pytest.importorskip("torch")


def _quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StabilityWarning)
        return solve(method="lvhba", **kw)


def _rel(x, ref):
    return np.linalg.norm(to_np(x) - ref) / np.linalg.norm(ref)


def test_v1_fast_settings_reach_1e6_by_5000():
    p = sum_coupled_qp(4)
    res = solve(p, method="lvhba", x0=np.zeros(4), y0=np.zeros(4), gamma1=1, gamma2=1, eta=0.02, alpha=0.02,
                beta=0.02, p=0.3, r=10, max_iter=5000)
    assert np.abs(res.x - 1).max() <= 1e-6
    assert abs(res.multipliers[0] - 1.5) <= 1e-6
    # y carries an O(1/c_k) bias in directions that do not move phi: judge it through y*(x)
    np.testing.assert_allclose(res.y_resolved, p.solution["y"], atol=1e-5)
    assert abs(res.fun_resolved - p.solution["F"]) < 1e-6
    assert res.status == Status.MAX_ITER  # value gap O(1/c_k) > gap_tol: honestly not CONVERGED
    assert res.value_gap > 0


def test_v1_defaults():
    res = solve(sum_coupled_qp(4), method="lvhba", x0=np.zeros(4), y0=np.zeros(4), max_iter=20000)
    assert np.abs(res.x - 1).max() <= 2e-5


def test_v2_budget_lp_defaults():
    res = solve(budget_lp(), method="lvhba", x0=np.array([2.0]), y0=np.zeros(3))
    assert res.nit == 20000
    assert abs(res.x[0] - 1) <= 3e-3  # spec: 2.5e-3 at 20000
    np.testing.assert_allclose(res.multipliers, [0, 1, 2, 3], atol=1e-3)


@pytest.mark.parametrize("x0", [0.5, 2.0, 4.0])
def test_v2_negative_case_ends_stalled_never_converged(x0):
    res = solve(budget_lp(), method="lvhba", x0=np.array([x0]), y0=np.zeros(3), eta=0.02, alpha=0.02, beta=0.02,
                p=0.3)
    assert res.status == Status.STALLED and not res.success
    np.testing.assert_allclose(res.x, [2.0], atol=1e-5)
    np.testing.assert_allclose(res.y, [0, 2, 0], atol=1e-5)
    np.testing.assert_allclose(res.theta, [0.5, 1.5, 0], atol=1e-5)
    np.testing.assert_allclose(res.multipliers, [0, 0, 1.5, 2.5], atol=1e-5)
    np.testing.assert_allclose(res.z, [0, 0, 1.5, 2.5], atol=1e-5)
    assert abs(res.value_gap - 0.25) < 1e-6
    assert abs(res.fun - 2.5) < 1e-5 and res.fun < budget_lp().solution["F"]
    assert abs(res.ll_gap - 2.0) < 1e-5  # vs y*(2) = (2, 0, 0)
    assert "value-function gap" in res.message


def test_v3_llc_preset_converges_and_paper_defaults_diverge():
    p = llc_toy(100)
    res = solve(p, method="lvhba", preset="llc", max_iter=20000)
    assert _rel(res.x, p.solution["x"]) <= 1e-2  # spec: 5.55e-3 at 20k
    assert abs(res.multipliers[0] + 1) < 1e-2
    with pytest.warns(StabilityWarning, match="eta"):
        bad = solve(p, method="lvhba", preset="paper-llc")
    assert bad.nit == 1500 and bad.status == Status.MAX_ITER
    assert _rel(bad.x, p.solution["x"]) > 10  # the authors' committed settings diverge (spec flaw 13)


def test_v4_gaffa_reaches_the_solution_with_the_multiplier_at_the_box_edge():
    p = gaffa_toy(1000)
    res = _quiet(problem=p, preset="gaffa", max_iter=50000)
    assert res.status == Status.CONVERGED
    assert np.abs(res.x - 1).max() <= 1e-6
    assert np.abs(res.y - p.solution["y"]).max() <= 1e-6
    assert res.extra["lambda_at_bound"] == [True]  # the true multiplier -1 is the box edge (flaw 14)
    assert "bound" in res.message


def test_v4_gaffa_wide_box_is_not_reported_converged():
    res = _quiet(problem=gaffa_toy(1000), preset="gaffa", r=10.0, max_iter=20000)
    assert res.status != Status.CONVERGED
    assert np.abs(res.x - 1).max() > 1e-4
    assert res.extra["lambda_at_bound"] == [True]


def test_numpy_and_torch_agree_and_batch_equals_single():
    p = sum_coupled_qp(4)
    kw = dict(max_iter=300, check_every=50)
    a = solve(p, method="lvhba", x0=np.zeros(4), y0=np.zeros(4), **kw)
    b = solve(p, method="lvhba", x0=torch.zeros(4, dtype=torch.float64), y0=torch.zeros(4, dtype=torch.float64),
              **kw)
    assert b.backend == "torch" and isinstance(b.x, torch.Tensor)
    np.testing.assert_allclose(to_np(b.x), a.x, atol=1e-12)
    X0 = np.random.default_rng(0).uniform(-1, 1, (3, 4))
    batch = solve(p, method="lvhba", x0=torch.as_tensor(X0), y0=torch.zeros(3, 4, dtype=torch.float64),
                  resolve_lower=False, **kw)
    assert isinstance(batch, optkit.BatchedResult)
    for i in range(3):
        single = solve(p, method="lvhba", x0=X0[i], y0=np.zeros(4), resolve_lower=False, **kw)
        np.testing.assert_allclose(to_np(batch.x[i]), single.x, atol=1e-12)
        np.testing.assert_allclose(to_np(batch.multipliers[i]), single.multipliers, atol=1e-12)


def test_llsc_toy_runs_on_the_cached_affine_projection():
    p = llsc_toy(seed=0)
    res = _quiet(problem=p, preset="paper-llsc", max_iter=300)
    assert res.constraint_violation < 1e-9  # (x, y) stays on {H x + A y = 0, B x = 0}
    assert np.isfinite(res.fun)


def test_x_moves_on_the_svm_task():
    """Spec flaw 11: the authors' SVM scripts never apply the x-step."""
    p = svm_hyperparam(seed=1)
    res = _quiet(problem=p, preset="paper-svm", p=0.3, max_iter=5, check_every=5, resolve_lower=False)
    assert np.abs(res.x - p.x0).max() > 1e-7  # the authors' scripts: exactly 0


def test_value_gap_formula():
    p = budget_lp()
    s = LVHBASolver(p, gamma1=2.0, gamma2=3.0)
    st = s.init(x0=np.array([2.0]), y0=np.zeros(3))
    st.theta = np.array([[0.5, 0.2, 0.1]])
    st.lam = np.array([[0.1, 0.2, 0.3, 0.4]])
    st.z = np.array([[0.0, 0.1, 0.0, 0.1]])
    y, th, lam, z = st.y[0], st.theta[0], st.lam[0], st.z[0]
    c = np.array([-3.0, -2.0, -1.0])
    g = np.array([-th[0], -th[1], -th[2], th.sum() - 2.0])
    expect = c @ y - (c @ th + lam @ g + ((th - y) ** 2).sum() / 4 - ((lam - z) ** 2).sum() / 6)
    assert abs(s.value_gap(st)[0] - expect) < 1e-14


@pytest.mark.parametrize("opts,name", [({"gamma1": 0.0}, "gamma1"), ({"eta": -1.0}, "eta"),
                                       ({"alpha": float("nan")}, "alpha"), ({"beta": float("inf")}, "beta"),
                                       ({"r": 0.0}, "r"), ({"p": 1.5}, "p"), ({"c_bar": 0.0}, "c_bar")])
def test_bad_options(opts, name):
    with pytest.raises(InvalidProblemError, match=name):
        solve(sum_coupled_qp(4), method="lvhba", **opts)


def test_p_outside_theory_warns():
    with pytest.warns(UserWarning, match="p = 0.7"):
        solve(sum_coupled_qp(4), method="lvhba", p=0.7, max_iter=10)


def test_missing_projection_is_an_error():
    p = sum_coupled_qp(4)
    nonaffine = BilevelProblem(p.F, f=lambda x, y: 0.5 * (y @ y), g=lambda x, y: (y @ y - x @ x).reshape(1),
                               n_x=4, n_y=4, m=1, grad_F=p.grad_F)
    with pytest.raises(InvalidProblemError, match="proj_C"):
        solve(nonaffine, method="lvhba")


def test_projection_that_misses_C_is_an_error():
    p = sum_coupled_qp(4).replace(proj_C=lambda x, y: (x, y))  # identity: (0, -10 + 20) violates g
    with pytest.raises(InvalidProblemError, match="proj_C"):
        solve(p, method="lvhba", x0=np.zeros(4), y0=10 * np.ones(4))


def test_presets_are_documented_settings():
    assert PRESETS["llc"]["p"] == 0.49 and PRESETS["gaffa"]["r"] == 1.0
    assert PRESETS["paper-llc"]["max_iter"] == 1500
