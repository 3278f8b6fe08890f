"""KKT big-M MILP reference for LP lower levels (optkit.bilevel.reference) against brute force."""

import itertools

import numpy as np
import pytest

from optkit.bilevel import problems as P
from optkit.bilevel.reference import lp_bilevel_value, lp_kkt_milp, price_setting_reference

pytest.importorskip("scipy.optimize")


def _price_data(n, seed, u):
    # tiny instances need u > 1: with u = 1 the competitors alone cannot cover the demand rows and
    # the leader's revenue is unbounded (or the LL infeasible)
    prob = P.price_setting(n, seed=seed, u=u)
    lw = prob.lower
    c0 = np.ones(2 * n)
    C = np.vstack([np.eye(n), np.zeros((n, n))])
    return prob, c0, C, lw.A, lw.b


def test_one_good_pricing_by_hand():
    """min (1 + T) x + 2 y s.t. x + y >= 1, 0 <= x, y <= 1: the follower buys x iff T <= 1.

    Revenue T x is maximised at T = 1 where the follower is indifferent (optimistic: buys x), 1.
    """
    c0, C = np.array([1.0, 2.0]), np.array([[1.0], [0.0]])
    A, b = np.array([[-1.0, -1.0]]), np.array([-1.0])
    res = lp_kkt_milp(c0, C, A, b, (0.0, 5.0), y_bounds=(0.0, 1.0), rho=-1.0, M=100.0)
    assert res.success and res.certified and not res.M_binding
    np.testing.assert_allclose(res.objective, -1.0, atol=1e-7)
    np.testing.assert_allclose(res.x, [1.0], atol=1e-7)
    np.testing.assert_allclose(res.y, [1.0, 0.0], atol=1e-7)
    # lam: coupled row, then the upper bounds y <= 1, then the lower bounds y >= 0
    assert res.lam.shape == (5,)
    assert res.M_proven is not None and np.all(res.M_proven >= res.lam - 1e-9)
    # brute force on a grid of T; the optimistic value at T = 1 is attained
    grid = np.linspace(0.0, 5.0, 501)
    vals = [lp_bilevel_value([T], c0, C, A, b, y_bounds=(0.0, 1.0), rho=-1.0)[0] for T in grid]
    np.testing.assert_allclose(min(vals), res.objective, atol=1e-7)
    np.testing.assert_allclose(grid[int(np.argmin(vals))], 1.0, atol=1e-9)
    # the pessimistic follower buys y at the tie: revenue 0 there
    np.testing.assert_allclose(
        lp_bilevel_value([1.0], c0, C, A, b, y_bounds=(0.0, 1.0), rho=-1.0, selection="pessimistic")[0], 0.0,
        atol=1e-7)


@pytest.mark.parametrize("n,seed,T_max,steps", [(1, 0, 8.0, 801), (2, 1, 6.0, 41), (2, 0, 6.0, 41)])
def test_price_setting_milp_matches_brute_force(n, seed, T_max, steps):
    u = 10.0
    prob, c0, C, A, b = _price_data(n, seed, u)
    res = lp_kkt_milp(c0, C, A, b, (0.0, T_max), y_bounds=(0.0, u), rho=-1.0, M=1e3)
    assert res.success and res.certified
    # the MILP point is a bilevel-feasible point: its optimistic value is the MILP value
    val, y = lp_bilevel_value(res.x, c0, C, A, b, y_bounds=(0.0, u), rho=-1.0)
    np.testing.assert_allclose(val, res.objective, atol=1e-7)
    np.testing.assert_allclose(res.objective, prob.F(res.x, res.y), atol=1e-9)
    # the MILP y solves the lower level at its x
    v_ll = lp_bilevel_value(res.x, c0, C, A, b, y_bounds=(0.0, u))  # F = 0: any LL solution
    np.testing.assert_allclose((c0 + C @ res.x) @ res.y, (c0 + C @ res.x) @ v_ll[1], atol=1e-7)
    # brute force: no grid point beats the MILP, and the grid comes close to it
    axis = np.linspace(0.0, T_max, steps)
    best = min(lp_bilevel_value(np.array(T), c0, C, A, b, y_bounds=(0.0, u), rho=-1.0)[0]
               for T in itertools.product(axis, repeat=n))
    assert best >= res.objective - 1e-7
    np.testing.assert_allclose(best, res.objective, atol=0.03 * abs(res.objective) + 1e-6)
    assert res.objective < -1.0  # a non-trivial revenue


def test_small_M_is_reported_as_uncertified():
    prob, c0, C, A, b = _price_data(3, 0, 10.0)
    full = lp_kkt_milp(c0, C, A, b, (0.0, 5.0), y_bounds=(0.0, 10.0), rho=-1.0, M=None)
    assert full.certified and np.isclose(full.M, full.M_proven.max())
    lam_max = float(full.lam.max())
    assert lam_max > 0.05
    cut = lp_kkt_milp(c0, C, A, b, (0.0, 5.0), y_bounds=(0.0, 10.0), rho=-1.0, M=0.5 * lam_max)
    assert not cut.certified and "reference under M" in cut.message
    # restricting the multipliers shrinks the feasible set: a minimisation can only get worse
    if cut.objective is not None:
        assert cut.objective >= full.objective - 1e-7


def test_lp_kkt_milp_rejects_bad_input():
    c0, C = np.array([1.0, 2.0]), np.array([[1.0], [0.0]])
    A, b = np.array([[-1.0, -1.0]]), np.array([-1.0])
    with pytest.raises(ValueError, match="x_bounds"):
        lp_kkt_milp(c0, C, A, b, (0.0, np.inf), y_bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="unbounded"):
        lp_kkt_milp(c0, C, A, b, (0.0, 1.0), y_bounds=(0.0, np.inf))
    with pytest.raises(ValueError, match="M"):
        lp_kkt_milp(c0, C, A, b, (0.0, 1.0), y_bounds=(0.0, 1.0), M=-1.0)


def test_price_setting_reference_convenience():
    res = price_setting_reference(n=8, seed=0, u=10.0, M=1e3, T_max=10.0)
    assert res.success and res.certified and not res.M_binding
    rev = res.extra["revenue"]
    np.testing.assert_allclose(rev, -res.objective)
    np.testing.assert_allclose(rev, res.extra["T"] @ res.y[:8], atol=1e-9)
    assert 0 < rev <= res.extra["revenue_bound"] + 1e-9
    assert res.extra["at_bound_used"].size == 0
    # the same optimum with a looser price bound (T_max does not bind)
    wide = price_setting_reference(n=8, seed=0, u=10.0, M=1e3, T_max=50.0)
    np.testing.assert_allclose(wide.extra["revenue"], rev, rtol=1e-7)
    # u = 1 with n = 8: the competitors cannot cover the demand, the leader's revenue grows with T_max
    mono = price_setting_reference(n=8, seed=0, u=1.0, T_max=10.0)
    assert mono.extra["revenue_bound"] == np.inf and mono.extra["at_bound_used"].size > 0
