"""Instances of optkit.bilevel.problems (spec bilevel §6-7): data, closed-form derivatives, torch path."""

import numpy as np
import pytest

from optkit.bilevel import problems as P
from optkit.bilevel.problem import Box, LowerLP, LowerQP, lower_data

torch = pytest.importorskip("torch")
cp = pytest.importorskip("cvxpy")


def solve_lower_qp(Q, q, A, b):
    """Reference QP ``min 1/2 y^T Q y + q^T y s.t. A y <= b`` (Clarabel, tight): (y, lam)."""
    y = cp.Variable(q.shape[0])
    cons = [A @ y <= b]
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(y, cp.psd_wrap(0.5 * (Q + Q.T))) + q @ y), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert prob.status == "optimal"
    return y.value, cons[0].dual_value


# ------------------------------------------------------------------ instances and sample points

def _svm_data():
    return P.svm_hyperparam_data(seed=3, n_train=20, n_val=15)


INSTANCES = {
    "synthetic_v1_bilinear": lambda: P.synthetic_qp(5, seed=0, version="v1", coupling="bilinear"),
    "synthetic_v2_linear": lambda: P.synthetic_qp(5, seed=1, version="v2", coupling="linear"),
    "price_setting": lambda: P.price_setting(4, seed=0),
    "lp_analytic_centre": P.lp_analytic_centre,
    "nonconvex_toy": P.nonconvex_toy,
    "svm": lambda: P.svm_hyperparam(data=_svm_data(), seed=3),
    "svm_coupled": lambda: P.svm_hyperparam(data=_svm_data(), seed=3, coupled=True),
}


def _point(prob, rng):
    x = 0.5 * rng.standard_normal(prob.n_x)
    y = 0.5 * rng.standard_normal(prob.n_y)
    if prob.name.startswith("svm"):
        x = prob.x0 + 0.1 * rng.standard_normal(prob.n_x)
        y[:3] += 1.0  # ||w|| away from 0
    if prob.name.startswith("lp_analytic"):
        x = np.array([3.0])
    return x, y


def _fd_grad(fun, v, eps=1e-6):
    g = np.zeros_like(v)
    for i in range(v.size):
        e = np.zeros_like(v)
        e[i] = eps
        g[i] = (fun(v + e) - fun(v - e)) / (2 * eps)
    return g


@pytest.fixture(params=list(INSTANCES))
def instance(request):
    return request.param, INSTANCES[request.param]()


def test_shapes(instance):
    name, prob = instance
    x, y = _point(prob, np.random.default_rng(0))
    assert np.ndim(prob.F(x, y)) == 0 and np.ndim(prob.f(x, y)) == 0
    assert np.shape(prob.g(x, y)) == (prob.m,)
    gx, gy = prob.grad_F(x, y)
    assert np.shape(gx) == (prob.n_x,) and np.shape(gy) == (prob.n_y,)
    gx, gy = prob.grad_f(x, y)
    assert np.shape(gx) == (prob.n_x,) and np.shape(gy) == (prob.n_y,)
    jx, jy = prob.vjp_g(x, y, np.ones(prob.m))
    assert np.shape(jx) == (prob.n_x,) and np.shape(jy) == (prob.n_y,)
    assert isinstance(prob.lower, (LowerQP, LowerLP)) and prob.g_linear_in_y
    assert np.shape(prob.x0) == (prob.n_x,) and np.shape(prob.y0) == (prob.n_y,)
    assert prob.name


def test_derivatives_match_central_differences(instance):
    name, prob = instance
    rng = np.random.default_rng(1)
    x, y = _point(prob, rng)
    lam = rng.uniform(0.5, 1.5, prob.m)
    for fun, grad in ((prob.F, prob.grad_F), (prob.f, prob.grad_f)):
        gx, gy = grad(x, y)
        np.testing.assert_allclose(gx, _fd_grad(lambda v, fun=fun: float(fun(v, y)), x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gy, _fd_grad(lambda v, fun=fun: float(fun(x, v)), y), rtol=1e-6, atol=1e-6)
    jx, jy = prob.vjp_g(x, y, lam)
    np.testing.assert_allclose(jx, _fd_grad(lambda v: float(lam @ prob.g(v, y)), x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jy, _fd_grad(lambda v: float(lam @ prob.g(x, v)), y), rtol=1e-6, atol=1e-6)


def test_torch_callables_match_numpy(instance):
    name, prob = instance
    rng = np.random.default_rng(2)
    x, y = _point(prob, rng)
    lam = rng.uniform(0.5, 1.5, prob.m)
    xt, yt, lt = (torch.tensor(v, dtype=torch.float64) for v in (x, y, lam))
    for fn in (prob.F, prob.f):
        out = fn(xt, yt)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
        np.testing.assert_allclose(float(out), float(fn(x, y)), rtol=1e-12)
    np.testing.assert_allclose(prob.g(xt, yt).numpy(), prob.g(x, y), rtol=1e-12, atol=1e-12)
    # the derivative oracles accept tensors too (the barrier's torch backend calls grad_F with tensors)
    for oracle, args_np, args_t in ((prob.grad_F, (x, y), (xt, yt)), (prob.grad_f, (x, y), (xt, yt)),
                                    (prob.vjp_g, (x, y, lam), (xt, yt, lt))):
        for a, b in zip(oracle(*args_t), oracle(*args_np)):
            np.testing.assert_allclose(np.asarray(torch.as_tensor(a)), b, rtol=1e-12, atol=1e-12)
    # torch.func differentiates F as written: equals the closed-form gradient
    gx, gy = torch.func.grad(lambda a, b: prob.F(a, b), argnums=(0, 1))(xt, yt)
    ex, ey = prob.grad_F(x, y)
    np.testing.assert_allclose(gx.numpy(), ex, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gy.numpy(), ey, rtol=1e-10, atol=1e-10)
    # x-dependent lower-level data callables vmap over a batch of x
    lw = prob.lower
    X = torch.stack([xt, 1.1 * xt])
    for field in ("Q", "q", "c", "A", "b"):
        part = getattr(lw, field, None)
        if callable(part):
            out = torch.func.vmap(part)(X)
            np.testing.assert_allclose(out[1].numpy(), np.asarray(part(1.1 * x)), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ R1 / R2 synthetic QP

def _legacy_draws(n, seed, version, coupling):
    """The spec's order with numpy's global legacy RNG (state saved and restored)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        A, b = np.random.randn(2 * n, 2 * n), np.random.randn(2 * n)
        C, d, D = np.random.randn(n, n), np.random.randn(n), np.random.randn(n, n)
        E = [np.random.randn(n, n) for _ in range(20)]
        kappa = np.random.rand(20)
        if coupling == "linear":
            Pm, Qm = np.random.randn(20, n) / np.sqrt(n), np.random.randn(20, n) / np.sqrt(n)
        else:
            Pm = Qm = None
    finally:
        np.random.set_state(state)
    if version == "v1":
        A, b = (A + A.T) / 2 + 2 * n * np.eye(2 * n), 10 * b
        C, d = (C + C.T) / 2 + n * np.eye(n), 10 * d
    else:
        A, C = A.T @ A / 2 + np.eye(2 * n), C.T @ C / 2 + np.eye(n)
    return A, b, C, d, D, E, kappa, Pm, Qm


@pytest.mark.parametrize("version,coupling", [("v1", "bilinear"), ("v2", "bilinear"), ("v1", "linear")])
def test_synthetic_qp_matches_the_spec_formulas(version, coupling):
    n, seed = 6, 4
    state = np.random.get_state()
    prob = P.synthetic_qp(n, seed=seed, version=version, coupling=coupling)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state[1:2], after[1:2]))  # global RNG untouched
    A, b, C, d, D, E, kappa, Pm, Qm = _legacy_draws(n, seed, version, coupling)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(n), rng.uniform(-1, 1, n)
    z = np.concatenate([x, y])
    np.testing.assert_allclose(prob.F(x, y), 0.5 * z @ A @ z + b @ z, rtol=1e-12)
    np.testing.assert_allclose(prob.f(x, y), 0.5 * y @ C @ y + d @ y + x @ D @ y, rtol=1e-12)
    if coupling == "bilinear":
        g = np.array([x @ Ek @ y for Ek in E]) - kappa
    else:
        g = Pm @ x + Qm @ y - kappa - 1
    np.testing.assert_allclose(prob.g(x, y), g, rtol=1e-12, atol=1e-13)
    assert isinstance(prob.Y, Box)
    np.testing.assert_array_equal(prob.Y.bounds(n)[0], -np.ones(n))
    np.testing.assert_array_equal(prob.Y.bounds(n)[1], np.ones(n))
    assert prob.m == 20  # + 2n box rows from Y: the paper's m = 20 + 2n
    np.testing.assert_array_equal(prob.x0, np.zeros(n))
    np.testing.assert_array_equal(prob.y0, np.zeros(n))
    if coupling == "bilinear":
        for _ in range(5):  # y_interior = 0 strictly feasible for every x
            xr = 10 * rng.standard_normal(n)
            assert np.max(prob.g(xr, prob.y_interior(xr))) < 0
    else:
        assert prob.y_interior is None


def test_synthetic_qp_r1_sanity_values():
    """F(0, y*(0)) = 87.57, 95.54, 106.23 for seeds 0-2 (v1, bilinear, n = 60; y* by Clarabel)."""
    got = []
    for seed in range(3):
        prob = P.synthetic_qp(60, seed=seed)
        x = np.zeros(60)
        lw = prob.lower
        A = np.vstack([lower_data(lw.A, x, ()), np.eye(60), -np.eye(60)])
        b = np.concatenate([lower_data(lw.b, x, ()), np.ones(120)])
        y, _ = solve_lower_qp(lower_data(lw.Q, x, ()), lower_data(lw.q, x, ()), A, b)
        got.append(float(prob.F(x, y)))
    np.testing.assert_allclose(got, [87.57, 95.54, 106.23], atol=5e-3)


def test_synthetic_qp_bad_arguments():
    with pytest.raises(ValueError, match="version"):
        P.synthetic_qp(4, version="v3")
    with pytest.raises(ValueError, match="coupling"):
        P.synthetic_qp(4, coupling="quadratic")


# ------------------------------------------------------------------ R3 price setting

def test_price_setting_data():
    n, seed = 7, 2
    prob = P.price_setting(n, seed=seed)
    rs = np.random.RandomState(seed)
    A, B = np.abs(rs.randn(20, n)), np.abs(rs.randn(20, n))
    for M in (A, B):
        for i in range(20):
            if np.all(M[i] <= 1):
                M[i, np.argmax(M[i])] = 1.1
    B = 0.2 * B
    b = np.abs(rs.randn(20))
    lw = prob.lower
    assert isinstance(lw, LowerLP) and prob.n_x == n and prob.n_y == 2 * n and prob.m == 20
    np.testing.assert_allclose(lw.A, -np.hstack([A, B]))
    np.testing.assert_allclose(lw.b, -b)
    T = np.arange(n, dtype=float)
    np.testing.assert_allclose(lw.c(T), np.concatenate([1 + T, np.ones(n)]))
    lo, hi = prob.Y.bounds(2 * n)
    np.testing.assert_array_equal(lo, 0.0)
    np.testing.assert_array_equal(hi, 1.0)  # u = 1: the authors' generator (flaw 7)
    np.testing.assert_array_equal(P.price_setting(n, seed=seed, u=100.0).Y.bounds(2 * n)[1], 100.0)
    v = np.random.default_rng(0).uniform(0, 1, 2 * n)
    np.testing.assert_allclose(prob.F(T, v), -T @ v[:n])
    # the start needs phase 1: y0 = 0 violates A x + B y >= b
    assert np.max(prob.g(prob.x0, prob.y0)) > 0
    np.testing.assert_array_equal(prob.x0, np.zeros(n))


# ------------------------------------------------------------------ V6 analytic centre

def test_lp_analytic_centre_data_and_barrier_centre():
    prob = P.lp_analytic_centre()
    lw = prob.lower
    assert isinstance(lw, LowerLP) and prob.m == 1
    np.testing.assert_allclose(lw.b(np.array([4.0])), [-4.0])
    np.testing.assert_array_equal(prob.Y.bounds(2)[0], 0.0)
    np.testing.assert_array_equal(prob.Y.bounds(2)[1], 10.0)
    x = np.array([4.0])
    np.testing.assert_allclose(prob.g(x, np.array([1.0, 2.5])), [0.5])
    np.testing.assert_allclose(prob.f(x, np.array([1.0, 2.5])), 3.5)
    sol = prob.solution
    np.testing.assert_allclose(prob.F(sol["x"], sol["y"]), sol["F"])
    assert sol["selection"] == "analytic centre"

    # barrier minimiser of f_t(x, .) with the coupled row and the box rows, from the problem's data
    def ft(y, t):
        rows = np.concatenate([prob.g(x, y), y - 10.0, -y])
        return float(prob.f(x, y)) - t * np.log(-rows).sum()

    from scipy.optimize import brentq

    for t, expected in ((1e-2, 0.01004), (1e-3, 0.001000)):
        # symmetric reduction y = (s, s): d/ds [2s - t log(2s - 4) - 2t log s - 2t log(10 - s)] = 0
        s = brentq(lambda s, t=t: 2 - 2 * t / (2 * s - 4) - 2 * t / s + 2 * t / (10 - s), 2.0 + 1e-9, 5.0,
                   xtol=1e-15)
        np.testing.assert_allclose(2 * s - 4.0, expected, rtol=2e-3)
        # and (s, s) is stationary for the 2-D barrier problem (the centre of the optimal face)
        ys = np.array([s, s])
        grad = np.array([(ft(ys + e, t) - ft(ys - e, t)) / 2e-7 for e in 1e-7 * np.eye(2)])
        np.testing.assert_allclose(grad, 0.0, atol=1e-5)


# ------------------------------------------------------------------ nonconvex toy

def test_nonconvex_toy_minimisers_on_a_dense_grid():
    prob = P.nonconvex_toy()
    sol = prob.solution
    xs = np.linspace(-2.0, 2.0, 400001)
    ystar = np.minimum(xs, 1.0 - xs)
    phi = (xs**2 - 1.0) ** 2 + 2.0 * ystar
    # the closed form of y*(x) agrees with an exact LL solve
    lw = prob.lower
    for x in (-1.5, -0.2, 0.4, 0.6, 1.3):
        xv = np.array([x])
        y, lam = solve_lower_qp(lw.Q, lw.q(xv), lw.A, lw.b(xv))
        np.testing.assert_allclose(y, [min(x, 1 - x)], atol=1e-7)
        np.testing.assert_allclose(lam, [max(0.0, 2 * x - 1)], atol=1e-6)
    inner = np.flatnonzero((phi[1:-1] < phi[:-2]) & (phi[1:-1] < phi[2:])) + 1
    assert inner.size == 2  # exactly two local minima
    np.testing.assert_allclose(np.sort(xs[inner]), [sol["x"][0], sol["local_x"][0]], atol=2e-5)
    np.testing.assert_allclose(xs[np.argmin(phi)], sol["x"][0], atol=2e-5)
    np.testing.assert_allclose(phi.min(), sol["F"], atol=1e-9)
    np.testing.assert_allclose(sol["x"][0], -1.1914878686, atol=1e-9)
    np.testing.assert_allclose(sol["local_x"][0], 1.1914878686, atol=1e-9)
    # the coupled row is inactive at the global minimiser and active at the other one
    assert prob.g(sol["x"], sol["y"])[0] < -1.0
    np.testing.assert_allclose(prob.g(sol["local_x"], sol["local_y"]), [0.0], atol=1e-12)
    np.testing.assert_allclose(sol["local_lam"], 2 * sol["local_x"] - 1)
    np.testing.assert_allclose(prob.F(sol["x"], sol["y"]), sol["F"])
    np.testing.assert_allclose(prob.F(sol["local_x"], sol["local_y"]), sol["local_F"])
    assert sol["F"] < sol["local_F"]
    # stationarity of phi at both minimisers from the closed-form derivatives: phi' = F_x + F_y dy*/dx
    for x, dy in ((sol["x"], 1.0), (sol["local_x"], -1.0)):
        gx, gy = prob.grad_F(x, np.array([min(x[0], 1 - x[0])]))
        np.testing.assert_allclose(gx + gy * dy, 0.0, atol=1e-12)


# ------------------------------------------------------------------ R4 SVM

def test_read_libsvm_and_label_mapping(tmp_path):
    f = tmp_path / "tiny.svm"
    f.write_text("2 1:0.5 3:-1\n# comment line\n\n4 2:0.25\n2 3:1 1:2\n")
    A, t = P.read_libsvm(f)
    np.testing.assert_allclose(A, [[0.5, 0, -1], [0, 0.25, 0], [2, 0, 1]])
    np.testing.assert_array_equal(t, [-1, 1, -1])
    bad = tmp_path / "bad.svm"
    bad.write_text("1 1:0.5\n-1 x:2\n")
    with pytest.raises(ValueError, match="line 2"):
        P.read_libsvm(bad)
    three = tmp_path / "three.svm"
    three.write_text("1 1:0.5\n2 1:2\n3 1:1\n")
    with pytest.raises(ValueError, match="two labels"):
        P.read_libsvm(three)


def test_svm_splits_from_a_file(tmp_path):
    rng = np.random.default_rng(0)
    N = 40
    A = np.round(rng.uniform(-1, 1, (N, 3)), 4)
    t = np.where(rng.uniform(size=N) < 0.5, -1, 1)
    t[:2] = (-1, 1)
    lines = [f"{'+1' if ti > 0 else '-1'} " + " ".join(f"{j + 1}:{a[j]}" for j in range(3)) for a, ti in zip(A, t)]
    f = tmp_path / "d.svm"
    f.write_text("\n".join(lines) + "\n")
    data = P.svm_hyperparam_data(f, seed=2, n_train=20, n_val=10)
    perm = np.random.RandomState(2).permutation(N)
    np.testing.assert_allclose(data.A_train, A[perm[:20]])
    np.testing.assert_array_equal(data.t_val, t[perm[20:30]])
    np.testing.assert_allclose(data.A_test, A[perm[30:]])
    # legacy: BLOCC shuffles one array in place, seed after seed
    rows = np.column_stack([A, t])
    for s in range(3):
        np.random.RandomState(s).shuffle(rows)
    leg = P.svm_hyperparam_data(f, seed=2, n_train=20, n_val=10, legacy_split=True)
    np.testing.assert_allclose(leg.A_train, rows[:20, :3])
    np.testing.assert_array_equal(leg.t_test, rows[30:, 3])
    assert not np.array_equal(leg.A_train, data.A_train)
    leg0 = P.svm_hyperparam_data(f, seed=0, n_train=20, n_val=10, legacy_split=True)
    np.testing.assert_allclose(leg0.A_train, P.svm_hyperparam_data(f, seed=0, n_train=20, n_val=10).A_train)
    poly = P.svm_hyperparam_data(f, seed=2, n_train=20, n_val=10, poly2=True)
    assert poly.n_features == 1 + 3 + 3 + 3
    np.testing.assert_allclose(poly.A_train[:, 7], data.A_train[:, 0] * data.A_train[:, 1])
    with pytest.raises(ValueError, match="n_train"):
        P.svm_hyperparam_data(f, n_train=30, n_val=10)


def test_svm_default_data_and_problem():
    data = P.svm_hyperparam_data(seed=1)
    assert data.A_train.shape == (500, 8) and data.A_val.shape == (150, 8) and data.A_test.shape == (118, 8)
    allA = np.vstack([data.A_train, data.A_val, data.A_test])
    np.testing.assert_allclose([allA.min(), allA.max()], [-1, 1])
    assert int(np.sum(np.concatenate([data.t_train, data.t_val, data.t_test]) > 0)) == 268
    prob = P.svm_hyperparam(data=data, seed=1)
    assert prob.n_x == 500 and prob.n_y == 8 + 1 + 500 and prob.m == 500
    assert np.all((prob.x0 >= -6) & (prob.x0 <= -5))
    np.testing.assert_array_equal(prob.y0, np.concatenate([np.ones(8), [0.0], np.ones(500)]))
    assert np.max(prob.g(prob.x0, prob.y_interior(prob.x0))) <= -1 + 1e-12
    # exact LL at c = 0 (slack weight 1): a soft-margin SVM with ~0.77 test accuracy on this data
    c = np.zeros(500)
    lw = prob.lower
    y, _ = solve_lower_qp(lw.Q(c), lw.q, lw.A, lw.b)
    w, b0, xi = y[:8], y[8], y[9:]
    np.testing.assert_allclose(xi, np.maximum(0.0, 1 - data.t_train * (data.A_train @ w + b0)), atol=1e-6)
    acc = P.svm_test_accuracy(data, y)
    assert 0.72 <= acc <= 0.85
    assert P.svm_test_accuracy(data, torch.tensor(y)) == acc
    # the upper objective as specified
    u = data.t_val * (data.A_val @ w + b0) / np.linalg.norm(w)
    h = 2 / (1 + np.exp(5 * u)) - 1
    np.testing.assert_allclose(prob.F(c, y), np.sum(np.where(h > 0, h, 0.01 * h)), rtol=1e-12)


def test_svm_coupled_variant():
    data = _svm_data()
    prob = P.svm_hyperparam(data=data, seed=3, coupled=True)
    n, d = 20, data.n_features
    assert prob.m == 2 * n and np.all((prob.x0 >= 1) & (prob.x0 <= 5))
    rng = np.random.default_rng(0)
    c, y = rng.uniform(1, 5, n), rng.standard_normal(d + 1 + n)
    g = prob.g(c, y)
    np.testing.assert_allclose(g[n:], y[d + 1:] - c)  # the coupled slack bounds xi <= c
    margin = 1 - y[d + 1:] - data.t_train * (data.A_train @ y[:d] + y[d])
    np.testing.assert_allclose(g[:n], margin, atol=1e-12)
    np.testing.assert_allclose(prob.f(c, y), 0.5 * y[:d] @ y[:d])
    lo, _ = prob.Y.bounds(prob.n_y)
    np.testing.assert_array_equal(lo[d + 1:], 0.0)
    assert np.all(np.isneginf(lo[:d + 1]))
    np.testing.assert_allclose(
        prob.F(c, y), np.exp(1 - data.t_val * (data.A_val @ y[:d] + y[d])).sum() + np.linalg.norm(c))
