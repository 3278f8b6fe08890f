"""optkit.milp.layers: perturbed MILP layer and Fenchel-Young loss against the closed forms of spec 6."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("highspy")

from optkit._errors import ConvergenceError, InvalidProblemError  # noqa: E402
from optkit.milp import MILPModel  # noqa: E402
from optkit.milp.layers import MILPOracle, PerturbedFenchelYoungLoss, PerturbedMILP  # noqa: E402

M_BIG = 20_000
SQRT2 = math.sqrt(2.0)


def Phi(x):
    return 0.5 * (1.0 + math.erf(x / SQRT2))


def phi(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def pick_one(k, sense="maximize"):
    """Binary x_1..x_k with sum x = 1 (pick exactly one)."""
    names = [f"x{i}" for i in range(1, k + 1)]
    return MILPModel(variables=[{"name": n, "domain": "binary"} for n in names],
                     objective={"sense": sense, "terms": {n: 1.0 for n in names}},
                     constraints=[{"type": "sum", "operator": "EQUAL", "limit": 1}])


def one_binary(sense="maximize"):
    return MILPModel(variables=[{"name": "y", "domain": "binary"}], objective={"sense": sense, "terms": {"y": 1.0}})


def gumbel(shape, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(shape, generator=g, dtype=torch.float64).clamp_min(1e-300)
    return -torch.log(-torch.log(u))


def gauss(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def jacobian(layer, theta, noise=None):
    """(y (n_out,), J (n_out, n)) through the layer's backward (one forward, n_out backward calls)."""
    th = theta.clone().requires_grad_(True)
    y = layer(th, noise=noise)[0]
    rows = []
    for i in range(y.shape[0]):
        (gi,) = torch.autograd.grad(y[i], th, retain_graph=i + 1 < y.shape[0])
        rows.append(gi)
    return y.detach(), torch.stack(rows)


def assert_within(est, ref, se, k=4.0):
    est, ref, se = (np.asarray(a, dtype=np.float64) for a in (est, ref, se))
    assert np.all(np.abs(est - ref) <= k * se + 1e-12), (est, ref, se)


# ------------------------------------------------------------------------------------------------ closed forms
def test_gumbel_pick_one_of_three_softmax_and_jacobian():
    theta = torch.tensor([1.0, 0.5, -0.5], dtype=torch.float64)
    sigma = 0.5
    p_ref = np.array([0.705385, 0.259496, 0.035119])
    j_ref = np.array([[0.415634, -0.366090, -0.049545], [-0.366090, 0.384316, -0.018227],
                      [-0.049545, -0.018227, 0.067771]])
    p = torch.softmax(theta / sigma, 0).numpy()
    np.testing.assert_allclose(p, p_ref, atol=1e-6)
    np.testing.assert_allclose((np.diag(p) - np.outer(p, p)) / sigma, j_ref, atol=1e-6)

    z = gumbel((M_BIG, 3), seed=11)
    layer = PerturbedMILP(pick_one(3), n_samples=M_BIG, sigma=sigma, noise="gumbel")
    t0 = time.perf_counter()
    y, jac = jacobian(layer, theta, noise=z)
    print(f"gumbel-3 M={M_BIG}: {time.perf_counter() - t0:.2f} s")
    # independent per-sample reference: argmax of the perturbed costs
    y_m = torch.nn.functional.one_hot(torch.argmax(theta + sigma * z, dim=1), 3).to(torch.float64)
    np.testing.assert_allclose(y.numpy(), y_m.mean(0).numpy(), atol=1e-12)
    terms = y_m[:, :, None] * (1.0 - torch.exp(-z))[:, None, :] / sigma  # (M, out, in)
    np.testing.assert_allclose(jac.numpy(), terms.mean(0).numpy(), atol=1e-10)
    assert_within(y.numpy(), p_ref, y_m.std(0).numpy() / math.sqrt(M_BIG))
    assert_within(jac.numpy(), j_ref, terms.std(0).numpy() / math.sqrt(M_BIG))


@pytest.mark.parametrize("sense", ["maximize", "minimize"])
def test_gaussian_one_binary_phi_and_derivative(sense):
    theta, sigma = 0.3, 0.5
    s = 1.0 if sense == "maximize" else -1.0
    p = Phi(s * 0.6)
    d = s * phi(0.6) / sigma
    assert abs(Phi(0.6) - 0.725747) < 1e-6 and abs(phi(0.6) / sigma - 0.666449) < 1e-6
    # the layer's own seeded generator; SEs from the closed forms
    layer = PerturbedMILP(one_binary(sense), n_samples=M_BIG, sigma=sigma, rng=3)
    t0 = time.perf_counter()
    y, jac = jacobian(layer, torch.tensor([theta], dtype=torch.float64))
    print(f"binary {sense} M={M_BIG}: {time.perf_counter() - t0:.2f} s")
    # E[1{s z > -0.6} z^2] = Phi(0.6) - 0.6 phi(0.6) for both signs
    ez2 = Phi(0.6) - 0.6 * phi(0.6)
    se_y = math.sqrt(p * (1 - p) / M_BIG)
    se_d = math.sqrt((ez2 / sigma**2 - d * d) / M_BIG)
    assert_within(float(y[0]), p, se_y)
    assert_within(float(jac[0, 0]), d, se_d)


def test_gaussian_pick_one_of_two():
    theta = torch.tensor([0.3, -0.2], dtype=torch.float64)
    sigma = 0.5
    p1 = Phi(1 / SQRT2)
    d11 = phi(1 / SQRT2) / (SQRT2 * sigma)
    assert abs(p1 - 0.760250) < 1e-6 and abs(d11 - 0.439391) < 1e-6
    z = gauss((M_BIG, 2), seed=5)
    layer = PerturbedMILP(pick_one(2), n_samples=M_BIG, sigma=sigma)
    y, jac = jacobian(layer, theta, noise=z)
    y_m = (theta[0] + sigma * z[:, 0] > theta[1] + sigma * z[:, 1]).to(torch.float64)
    assert abs(float(y[0]) - float(y_m.mean())) < 1e-12
    t11 = y_m * z[:, 0] / sigma
    assert abs(float(jac[0, 0]) - float(t11.mean())) < 1e-10
    assert_within(float(y[0]), p1, float(y_m.std()) / math.sqrt(M_BIG))
    assert_within(float(jac[0, 0]), d11, float(t11.std()) / math.sqrt(M_BIG))
    assert_within(float(jac[0, 1]), -d11, float((y_m * z[:, 1] / sigma).std()) / math.sqrt(M_BIG))


@pytest.mark.parametrize("vr", ["baseline", "antithetic"])
def test_variance_reduction_unbiased(vr):
    """Smaller M (4,000) and 4 SE: the baseline/antithetic estimates hit the closed form of pick-one-of-2."""
    theta = torch.tensor([0.3, -0.2], dtype=torch.float64)
    sigma, m = 0.5, 4000
    d11 = phi(1 / SQRT2) / (SQRT2 * sigma)
    layer = PerturbedMILP(pick_one(2), n_samples=m, sigma=sigma, variance_reduction=vr, rng=7)
    _, jac = jacobian(layer, theta)
    # tolerance: 4 SE of the plain estimator (the reductions only shrink it); E[y1 z1^2] = Phi(a) - phi(a)/(2 sqrt 2)
    a = 1 / SQRT2
    se_plain = math.sqrt(((Phi(a) - phi(a) / (2 * SQRT2)) / sigma**2 - d11**2) / m)
    assert_within(float(jac[0, 0]), d11, se_plain)
    assert_within(float(jac[0, 1]), -d11, se_plain)


def test_solve_ratio_cache_reaches_softmax_with_few_solves():
    theta = torch.tensor([1.0, 0.5, -0.5], dtype=torch.float64)
    sigma, m = 0.5, M_BIG
    oracle = MILPOracle(pick_one(3))
    layer = PerturbedMILP(oracle, n_samples=m, sigma=sigma, noise="gumbel", solve_ratio=0.05, rng=1)
    y = layer(theta)[0].numpy()
    p = torch.softmax(theta / sigma, 0).numpy()
    assert_within(y, p, np.sqrt(p * (1 - p) / m))
    assert oracle.n_solves < 0.08 * m
    assert oracle.cache.shape[0] == 3


# ------------------------------------------------------------------------------------------------ Fenchel-Young
@pytest.mark.parametrize("sense", ["maximize", "minimize"])
def test_fenchel_young_gradcheck_frozen_noise(sense):
    z = gauss((6, 3), seed=2)
    loss = PerturbedFenchelYoungLoss(pick_one(3, sense), n_samples=6, sigma=0.7, reduction="sum")
    theta = torch.tensor([[0.31, -0.17, 0.52], [-0.4, 0.23, 0.05]], dtype=torch.float64, requires_grad=True)
    y_true = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: loss(t, y_true, noise=z), (theta,), eps=1e-6, atol=1e-7)
    # closed-form gradient: mean y_m - y_true (max), reversed (min)
    (g,) = torch.autograd.grad(loss(theta, y_true, noise=z), theta)
    pert = theta.detach()[:, None, :] + 0.7 * z[None]
    idx = torch.argmax(pert, -1) if sense == "maximize" else torch.argmin(pert, -1)
    y_mean = torch.nn.functional.one_hot(idx, 3).to(torch.float64).mean(1)
    s = 1.0 if sense == "maximize" else -1.0
    torch.testing.assert_close(g, s * (y_mean - y_true), atol=1e-12, rtol=0)
    # the loss is nonnegative (Fenchel-Young) and zero-free reductions agree
    per = PerturbedFenchelYoungLoss(pick_one(3, sense), n_samples=6, sigma=0.7, reduction="none")(
        theta, y_true, noise=z)
    assert per.shape == (2,) and bool((per >= -1e-12).all())
    mean = PerturbedFenchelYoungLoss(pick_one(3, sense), n_samples=6, sigma=0.7)(theta, y_true, noise=z)
    torch.testing.assert_close(mean, per.mean())


# ------------------------------------------------------------------------------------------------ dtype / device
def test_float32_theta_returns_float32_and_batches():
    layer = PerturbedMILP(pick_one(3), n_samples=8, sigma=0.5, rng=4)
    theta = torch.tensor([[1.0, 0.5, -0.5], [0.0, 0.2, 0.1]], dtype=torch.float32, requires_grad=True)
    y = layer(theta)
    assert y.dtype == torch.float32 and y.shape == (2, 3) and y.device == theta.device
    torch.testing.assert_close(y.sum(1), torch.ones(2))
    y.sum().backward()
    assert theta.grad.dtype == torch.float32 and theta.grad.shape == (2, 3)
    y1 = layer(torch.tensor([1.0, 0.5, -0.5]))
    assert y1.shape == (1, 3) and y1.grad_fn is None
    # seeded: a fresh layer with the same rng reproduces the same draws
    a = PerturbedMILP(pick_one(3), n_samples=8, rng=9)(theta.detach())
    b = PerturbedMILP(pick_one(3), n_samples=8, rng=9)(theta.detach())
    torch.testing.assert_close(a, b)
    none = PerturbedMILP(pick_one(3), n_samples=4, diff_mode="none")(theta)
    assert none.grad_fn is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_device_preserved():
    layer = PerturbedMILP(pick_one(3), n_samples=16, sigma=0.5)
    theta = torch.tensor([[1.0, 0.5, -0.5]], device="cuda", requires_grad=True)
    y = layer(theta)
    assert y.device.type == "cuda" and y.dtype == torch.float32
    y[:, 0].sum().backward()
    assert theta.grad.device.type == "cuda"
    loss = PerturbedFenchelYoungLoss(pick_one(3), n_samples=4)(theta, torch.tensor([[1.0, 0, 0]], device="cuda"))
    assert loss.device.type == "cuda"


# ------------------------------------------------------------------------------------------------ oracle
def test_oracle_matches_brute_force_with_rest_costs():
    # knapsack (spec 6): learn the costs of x1, x2 only; x3 keeps its IR cost 120
    model = MILPModel(variables=[{"name": f"x{i}", "domain": "binary"} for i in (1, 2, 3)],
                      objective={"sense": "maximize", "terms": {"x1": 60, "x2": 100, "x3": 120}},
                      constraints=[{"type": "linear", "terms": {"x1": 10, "x2": 20, "x3": 30},
                                    "operator": "LESS_OR_EQUAL", "limit": 50}])
    oracle = MILPOracle(model, cost_vars=["x1", "x2"], output_vars=["x3", "x1"])
    costs = np.random.default_rng(0).normal(scale=100, size=(40, 2))
    got = oracle(costs)
    assert got.shape == (40, 2) and got.dtype == np.float64
    pts = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1) if 10 * a + 20 * b + 30 * c <= 50])
    for k, (c1, c2) in enumerate(costs):
        vals = pts @ np.array([c1, c2, 120.0])
        best = pts[np.argmax(vals)]
        np.testing.assert_allclose(got[k], best[[2, 0]], atol=1e-9)
    np.testing.assert_allclose(oracle(np.array([[60.0, 100.0]])), [[1.0, 0.0]], atol=1e-9)  # spec: (0, 1, 1)


def test_oracle_failure_raises_convergence_error_naming_sample():
    model = MILPModel(variables=[{"name": "x", "domain": "integer"}, {"name": "y", "domain": "binary"}],
                      objective={"sense": "maximize", "terms": {"x": 1.0, "y": 1.0}},
                      constraints=[{"type": "linear", "terms": {"x": 1.0, "y": -1.0}, "operator": "GREATER_OR_EQUAL",
                                    "limit": -1}])
    oracle = MILPOracle(model)
    with pytest.raises(ConvergenceError, match="sample 1"):
        oracle(np.array([[-1.0, 1.0], [1.0, 1.0]]))
    layer = PerturbedMILP(oracle, n_samples=3, sigma=1e-3)
    theta = torch.tensor([[-1.0, 1.0], [1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    with pytest.raises(ConvergenceError, match=r"instance 1, perturbation 0"):
        layer(theta)


def test_oracle_processes_match_serial():
    costs = np.random.default_rng(1).normal(size=(30, 3))
    serial = MILPOracle(pick_one(3))(costs)
    par = MILPOracle(pick_one(3), processes=2)
    try:
        np.testing.assert_array_equal(par(costs), serial)
    finally:
        par.close()


# ------------------------------------------------------------------------------------------------ option errors
@pytest.mark.parametrize("kw, exc, match", [
    (dict(n_samples=0), ValueError, "n_samples"),
    (dict(n_samples=2.5), TypeError, "n_samples"),
    (dict(sigma=0.0), ValueError, "sigma"),
    (dict(sigma=-1.0), ValueError, "sigma"),
    (dict(sigma=float("nan")), ValueError, "sigma"),
    (dict(solve_ratio=0.0), ValueError, "solve_ratio"),
    (dict(solve_ratio=1.5), ValueError, "solve_ratio"),
    (dict(noise="laplace"), ValueError, "noise"),
    (dict(variance_reduction="control"), ValueError, "variance_reduction"),
    (dict(noise="gumbel", variance_reduction="antithetic"), ValueError, "antithetic"),
    (dict(diff_mode="implicit"), InvalidProblemError, "diff_mode"),
    (dict(diff_mode="unroll"), InvalidProblemError, "diff_mode"),
    (dict(diff_mode="envelope"), InvalidProblemError, "diff_mode"),
    (dict(diff_mode="magic"), ValueError, "diff_mode"),
    (dict(processes=0), ValueError, "processes"),
])
def test_option_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        PerturbedMILP(pick_one(3), **kw)


def test_theta_and_y_true_errors():
    layer = PerturbedMILP(pick_one(3), n_samples=2)
    with pytest.raises(InvalidProblemError, match=r"theta: expected \(B, n_cost=3\), got \(4, 2\)"):
        layer(torch.zeros(4, 2))
    with pytest.raises(InvalidProblemError, match="theta"):
        layer(torch.zeros(2, 3, 3))
    with pytest.raises(InvalidProblemError, match="NaN"):
        layer(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(InvalidProblemError, match="theta"):
        layer(torch.tensor([0.0, float("inf"), 1.0]))
    fy = PerturbedFenchelYoungLoss(pick_one(3), n_samples=2)
    with pytest.raises(InvalidProblemError, match="y_true"):
        fy(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="reduction"):
        PerturbedFenchelYoungLoss(pick_one(3), reduction="max")
    oracle = MILPOracle(pick_one(3), cost_vars=["x1", "x2"], output_vars=["x3"])
    with pytest.raises(InvalidProblemError, match="cost_vars == output_vars"):
        PerturbedFenchelYoungLoss(oracle)
    with pytest.raises(InvalidProblemError, match=r"cost_vars\[0\]"):
        MILPOracle(pick_one(3), cost_vars=["nope"])
    with pytest.raises(ValueError, match="integrality"):
        MILPOracle(pick_one(3), integrality="some")
