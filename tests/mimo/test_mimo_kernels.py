"""optkit.mimo.kernels: the stable interval-probit kernel (spec 3.3, V2, V4) against 60-digit mpmath."""

import math

import numpy as np
import pytest

from optkit._errors import InvalidProblemError
from optkit.mimo import kernels
from optkit.mimo.kernels import (
    curvature_weights,
    interval_probit_nll,
    naive_moments,
    nll_grad,
    truncnorm_moments,
    truncnorm_terms,
)

mp = pytest.importorskip("mpmath")
INF = math.inf

# spec V2: (mu, sigma, lo, hi) -> (mean, log P), 60-digit mpmath values quoted by the spec
V2 = [
    ((0.3, 0.7, -1.0, 1.0), 0.1522938382570429, -0.2110922978168152),
    ((10.0, 0.7, -1.0, 1.0), 0.946195185915927, -86.13185979243847),
    ((40.0, 0.7, -1.0, 1.0), 0.9874439796412725, -1556.980313347229),
    ((-40.0, 0.7, -1.0, 1.0), -0.9874439796412725, -1556.980313347229),
    ((0.0, 0.7, 5.0, 7.0), 5.094488643354733, -28.41397685603169),
    ((0.0, 0.05, 5.0, 7.0), 5.000499900049963, -5005.524208694205),
    ((3.02, 0.08, 1.0, 3.0), 2.942915681646688, -0.9130617648111353),
    ((0.0, 1.0, -1.0, 1.0), 0.0, -0.3817151463021261),
    ((2.5, 0.1, -1.0, 1.0), 0.9933913172832178, -116.1313848457117),
    ((0.0, 0.7, 5.0, INF), 5.094488643387646, -28.41397685601501),
    ((-30.0, 0.7, 5.0, INF), 5.013988822333948, -1254.83136113942),
]


def _v2_arrays():
    (mu, s, lo, hi) = map(np.array, zip(*[row[0] for row in V2]))
    mean = np.array([row[1] for row in V2])
    logp = np.array([row[2] for row in V2])
    return mu, s, lo, hi, mean, logp


def _to(backend, *xs, dtype=None):
    if backend == "numpy":
        return xs
    torch = pytest.importorskip("torch")
    return tuple(torch.tensor(np.asarray(x), dtype=dtype or torch.float64) for x in xs)


def _np(x):
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x)


def mp_ref(mu, sigma, lo, hi):
    """60-digit reference: log P, mean, var, r1, r2 (P from the tail that does not cancel)."""
    mp.mp.dps = 60
    mu, sigma = mp.mpf(float(mu)), mp.mpf(float(sigma))
    a = -mp.inf if np.isneginf(lo) else (mp.mpf(float(lo)) - mu) / sigma
    b = mp.inf if np.isposinf(hi) else (mp.mpf(float(hi)) - mu) / sigma

    def Q(x):  # upper tail
        return mp.erfc(x / mp.sqrt(2)) / 2

    def phi(x):
        return mp.mpf(0) if mp.isinf(x) else mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)

    def xphi(x):
        return mp.mpf(0) if mp.isinf(x) else x * phi(x)

    if a >= 0:
        P = Q(a) - Q(b)
        logp = mp.log(P)
    elif b <= 0:
        P = Q(-b) - Q(-a)
        logp = mp.log(P)
    else:
        P = 1 - Q(-a) - Q(b)
        logp = mp.log1p(-(Q(-a) + Q(b)))
    r1 = (phi(a) - phi(b)) / P
    r2 = (xphi(a) - xphi(b)) / P
    return dict(logp=logp, mean=mu + sigma * r1, var=sigma**2 * (1 + r2 - r1**2), r1=r1, r2=r2)


def _probes(n, seed):
    """Random (mu, sigma, lo, hi): narrow to wide cells, semi-infinite ones, mu up to ~200 sigma away."""
    rng = np.random.default_rng(seed)
    s = 10 ** rng.uniform(-2, 1, n)
    w = 10 ** rng.uniform(-8, 1.5, n)
    lo = rng.uniform(-5, 5, n)
    hi = lo + w * s
    mu = lo + s * rng.choice([-1.0, 1.0], n) * 10 ** rng.uniform(-2, 2.3, n)
    hi[::5] = INF
    lo[2::7] = -INF
    return mu, s, lo, hi


# ------------------------------------------------------------------------------------------------- V2
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_v2_table_float64(backend):
    mu, s, lo, hi, mean_ref, logp_ref = _v2_arrays()
    logp, mean, var = truncnorm_moments(*_to(backend, mu, lo, hi, s))
    np.testing.assert_allclose(_np(logp), logp_ref, rtol=1e-10, atol=0)
    np.testing.assert_allclose(_np(mean), mean_ref, rtol=1e-10, atol=1e-300)
    assert np.all(_np(var) > 0)


def test_v2_table_torch_float32():
    # every entry reaches 1e-5 in float32 (measured <= 3e-7): the kernel works in the frame of
    # the nearest edge, so mean ~ 1 is not formed as 40 - 39.01 in single precision
    torch = pytest.importorskip("torch")
    mu, s, lo, hi, mean_ref, logp_ref = _v2_arrays()
    logp, mean, var = truncnorm_moments(*_to("torch", mu, lo, hi, s, dtype=torch.float32))
    assert logp.dtype == mean.dtype == var.dtype == torch.float32
    np.testing.assert_allclose(_np(logp), logp_ref, rtol=1e-5)
    np.testing.assert_allclose(_np(mean), mean_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_v2_variance_curvature_dsigma(backend):
    mu, lo, hi, s = _to(backend, np.array([0.3, 40.0]), np.array([-1.0, -1.0]), np.array([1.0, 1.0]),
                        np.array([0.7, 0.7]))
    _, _, var = truncnorm_moments(mu, lo, hi, s)
    np.testing.assert_allclose(_np(var), [0.2418245944308011, 1.575523623768106e-4], rtol=1e-10)
    np.testing.assert_allclose(_np(curvature_weights(mu, lo, hi, s)), [1.033633509242811, 2.040160131768527],
                               rtol=1e-10)
    _, gs = nll_grad(mu, lo, hi, s)
    np.testing.assert_allclose(_np(gs)[0], 0.6599367211439133, rtol=1e-10)


def test_v2_naive_formula_fails_and_floor_returns_mu():
    mu = np.array([0.3, 10.0, 40.0])
    with np.errstate(all="ignore"):
        _, mean0, _ = naive_moments(mu, -1.0, 1.0, 0.7, phi_floor=0.0)
    assert np.isnan(mean0[2])  # 0/0: both Phi values round to 0
    np.testing.assert_allclose(mean0[0], 0.1522938382570429, rtol=1e-12)
    _, mean_f, _ = naive_moments(mu, -1.0, 1.0, 0.7)  # authors' floor 1e-3
    np.testing.assert_allclose(mean_f[1:], [10.0, 40.0], rtol=1e-12)
    np.testing.assert_allclose(mean_f[0], 0.1522938382570429, rtol=1e-12)  # floor inactive
    # the stable kernel stays inside the cell where the floored one returns mu
    _, mean_s, _ = truncnorm_moments(mu, -1.0, 1.0, 0.7)
    np.testing.assert_allclose(mean_s, [0.1522938382570429, 0.946195185915927, 0.9874439796412725], rtol=1e-10)


def test_naive_unfloored_matches_reference_where_well_conditioned():
    mu = np.array([0.3, -0.5, 1.2])
    logp, mean, var = naive_moments(mu, np.array([-1.0, -2.0, 0.0]), np.array([1.0, 0.5, 3.0]), 0.7, phi_floor=0)
    for i in range(3):
        r = mp_ref(mu[i], 0.7, [-1.0, -2.0, 0.0][i], [1.0, 0.5, 3.0][i])
        np.testing.assert_allclose([logp[i], mean[i], var[i]], [float(r["logp"]), float(r["mean"]), float(r["var"])],
                                   rtol=1e-12)


# ---------------------------------------------------------------------------------- accuracy sweep
def test_random_probes_against_mpmath():
    mu, s, lo, hi = _probes(300, seed=1)
    logp, mean, var = truncnorm_moments(mu, lo, hi, s)
    D = curvature_weights(mu, lo, hi, s)
    gmu, gs = nll_grad(mu, lo, hi, s)
    _, r1, r2 = truncnorm_terms(mu, lo, hi, s)
    for i in range(mu.size):
        r = mp_ref(mu[i], s[i], lo[i], hi[i])
        lp_r, mean_r, var_r = float(r["logp"]), float(r["mean"]), float(r["var"])
        # log P, mean: inputs are rounded to float64, so allow the conditioning of a = (lo - mu)/sigma
        np.testing.assert_allclose(logp[i], lp_r, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(mean[i], mean_r, rtol=1e-12, atol=1e-13 * s[i])
        np.testing.assert_allclose(var[i], var_r, rtol=1e-11)
        np.testing.assert_allclose(D[i], float((r["r1"] ** 2 - r["r2"]) / s[i] ** 2), rtol=1e-12)
        np.testing.assert_allclose(gmu[i], float(-r["r1"] / s[i]), rtol=1e-12, atol=1e-13 / s[i])
        np.testing.assert_allclose(gs[i], float(-r["r2"] / s[i]), rtol=1e-12, atol=1e-13 / s[i])
        np.testing.assert_allclose(r1[i], float(r["r1"]), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(r2[i], float(r["r2"]), rtol=1e-12, atol=1e-13)


def test_infinite_cell_and_semi_infinite_limits():
    logp, mean, var = truncnorm_moments(np.array([0.2, 3.0]), np.array([-INF, -INF]), np.array([INF, INF]), 1.5)
    np.testing.assert_array_equal(logp, [0.0, 0.0])
    np.testing.assert_array_equal(mean, [0.2, 3.0])
    np.testing.assert_allclose(var, [2.25, 2.25], rtol=1e-15)
    # half line through mu: mean mu + sigma sqrt(2/pi), var sigma^2 (1 - 2/pi)
    logp, mean, var = truncnorm_moments(1.0, 1.0, INF, 2.0)
    np.testing.assert_allclose([logp, mean, var], [math.log(0.5), 1.0 + 2.0 * math.sqrt(2 / math.pi),
                                                   4.0 * (1 - 2 / math.pi)], rtol=1e-15)


# ------------------------------------------------------------------------------------------------ V4
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_v4_derivatives_match_central_differences(backend):
    mu, s, lo, hi = _probes(200, seed=2)
    gmu, gs = (_np(g) for g in nll_grad(*_to(backend, mu, lo, hi, s)))

    def f(m, sg):
        return _np(interval_probit_nll(*_to(backend, m, lo, hi, sg), reduction="none"))

    hm = 1e-5 * s
    fd_mu = (f(mu + hm, s) - f(mu - hm, s)) / (2 * hm)
    hs = 1e-5 * s
    fd_s = (f(mu, s + hs) - f(mu, s - hs)) / (2 * hs)
    scale = np.abs(f(mu, s)) / s + 1.0 / s  # rounding of the difference quotient
    np.testing.assert_allclose(gmu, fd_mu, rtol=1e-6, atol=1e-8 * scale.max())
    np.testing.assert_allclose(gs, fd_s, rtol=1e-6, atol=1e-8 * scale.max())
    np.testing.assert_array_less(np.abs(gmu - fd_mu), 1e-6 * np.abs(fd_mu) + 1e-9 * scale)
    np.testing.assert_array_less(np.abs(gs - fd_s), 1e-6 * np.abs(fd_s) + 1e-9 * scale)


def test_v4_curvature_bounds_on_random_probes():
    mu, s, lo, hi = _probes(5000, seed=3)
    D = curvature_weights(mu, lo, hi, s)
    assert np.all(np.isfinite(D))
    assert np.all(D >= 0)
    assert np.all(D <= 1.0 / s**2 * (1 + 1e-14))
    # D is the derivative of d(-log P)/dmu: second central difference
    gmu = nll_grad(mu, lo, hi, s)[0]
    h = 1e-6 * s
    fd = (nll_grad(mu + h, lo, hi, s)[0] - nll_grad(mu - h, lo, hi, s)[0]) / (2 * h)
    np.testing.assert_array_less(np.abs(D - fd), 1e-5 * np.abs(fd) + 1e-7 * (np.abs(gmu) / s + 1 / s**2))


# ----------------------------------------------------------------------------------- shapes, backends
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_broadcasting_shapes(backend):
    rng = np.random.default_rng(4)
    mu = rng.normal(size=(3, 1, 5)) * 4
    lo = np.array([-INF, -3.0, -1.0, 1.0, 3.0])
    hi = np.array([-3.0, -1.0, 1.0, 3.0, INF])
    sig = np.array([[0.5], [2.0]])  # (2, 1)
    logp, mean, var = truncnorm_moments(*_to(backend, mu, lo, hi, sig))
    assert tuple(logp.shape) == tuple(mean.shape) == tuple(var.shape) == (3, 2, 5)
    full = np.broadcast_arrays(mu, lo, hi, sig)
    ref = truncnorm_moments(*(x.ravel() for x in full))
    for out, r in zip((logp, mean, var), ref):
        np.testing.assert_allclose(_np(out).ravel(), r, rtol=1e-14)
    nll = interval_probit_nll(*_to(backend, mu, lo, hi, sig))
    assert tuple(nll.shape) == (3, 2)
    np.testing.assert_allclose(_np(nll), -_np(logp).sum(-1), rtol=1e-14)
    gmu, gs = nll_grad(*_to(backend, mu, lo, hi, sig))
    assert tuple(gmu.shape) == tuple(gs.shape) == (3, 2, 5)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_reduction_values(backend):
    mu, s, lo, hi = _probes(24, seed=5)
    args = _to(backend, mu.reshape(4, 6), lo.reshape(4, 6), hi.reshape(4, 6), s.reshape(4, 6))
    terms = _np(interval_probit_nll(*args, reduction="none"))
    logp = _np(truncnorm_moments(*args)[0])
    np.testing.assert_allclose(terms, -logp, rtol=1e-15)
    np.testing.assert_allclose(_np(interval_probit_nll(*args)), terms.sum(-1), rtol=1e-14)
    np.testing.assert_allclose(_np(interval_probit_nll(*args, reduction="mean")), terms.mean(-1), rtol=1e-14)
    assert np.ndim(_np(interval_probit_nll(0.3, -1.0, 1.0, 0.7))) == 0  # 0-d stays 0-d
    np.testing.assert_allclose(interval_probit_nll(0.3, -1.0, 1.0, 0.7), 0.2110922978168152, rtol=1e-12)


def test_invalid_inputs_name_the_argument():
    for fn in (truncnorm_moments, interval_probit_nll, naive_moments, curvature_weights, nll_grad):
        for bad in (0.0, -1.0, np.nan, np.inf, np.array([0.7, 0.0])):
            with pytest.raises(InvalidProblemError, match="sigma: must be positive"):
                fn(np.array([0.1, 0.2]), -1.0, 1.0, bad)
    with pytest.raises(InvalidProblemError, match="reduction"):
        interval_probit_nll(0.1, -1.0, 1.0, 1.0, reduction="max")
    with pytest.raises(ValueError, match="reduction"):
        interval_probit_nll(0.1, -1.0, 1.0, 1.0, reduction=None)
    with pytest.raises(InvalidProblemError, match="phi_floor"):
        naive_moments(0.1, -1.0, 1.0, 1.0, phi_floor=-1e-3)
    with pytest.raises(InvalidProblemError, match="mu"):
        truncnorm_moments(np.array([0.1 + 1j]), -1.0, 1.0, 1.0)


def test_torch_sigma_check_and_mixed_inputs():
    torch = pytest.importorskip("torch")
    with pytest.raises(InvalidProblemError, match="sigma"):
        truncnorm_moments(torch.zeros(3), -1.0, 1.0, torch.tensor([1.0, 0.0, 1.0]))
    # numpy edges with torch mu: torch out, mu's dtype
    logp, mean, var = truncnorm_moments(torch.tensor([0.3], dtype=torch.float32), np.array([-1.0]),
                                        np.array([1.0]), 0.7)
    assert isinstance(mean, torch.Tensor) and mean.dtype == torch.float32
    np.testing.assert_allclose(mean.numpy(), [0.1522938382570429], rtol=1e-5)


def test_numpy_and_torch_agree():
    torch = pytest.importorskip("torch")
    mu, s, lo, hi = _probes(20000, seed=6)
    out_np = truncnorm_moments(mu, lo, hi, s) + nll_grad(mu, lo, hi, s) + (curvature_weights(mu, lo, hi, s),)
    tt = [torch.tensor(x) for x in (mu, lo, hi, s)]
    out_t = truncnorm_moments(*tt) + nll_grad(*tt) + (curvature_weights(*tt),)
    for a, b in zip(out_np, out_t):
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float64
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-12, atol=1e-300)


def test_no_input_mutation():
    mu, s, lo, hi = _probes(50, seed=7)
    copies = [x.copy() for x in (mu, s, lo, hi)]
    truncnorm_moments(mu, lo, hi, s)
    interval_probit_nll(mu, lo, hi, s)
    for x, c in zip((mu, s, lo, hi), copies):
        np.testing.assert_array_equal(x, c)


# ------------------------------------------------------------------------------- branch continuity
def _rel_close(x, y, rtol):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=0)


@pytest.mark.parametrize("c", [0.0, 0.9, 3.0, 40.0, 1000.0, 2e4 - 4])
def test_midpoint_branch_continuity(c):
    # the series is used where (b - a)(|c| + 4) <= _MID_LIMIT; at |c| = 2e4 - 4 that edge is at
    # b - a = 1e-4, the spec's threshold. Values on both sides agree with each other and mpmath.
    w0 = kernels._MID_LIMIT / (abs(c) + 4.0)
    outs = []
    for w in (w0 * (1 - 1e-12), w0 * (1 + 1e-12)):
        lo, hi = c - w / 2, c + w / 2
        outs.append(truncnorm_moments(0.0, lo, hi, 1.0) + truncnorm_terms(0.0, lo, hi, 1.0)[1:])
        r = mp_ref(0.0, 1.0, lo, hi)
        _rel_close(outs[-1][0], float(r["logp"]), 1e-13)
        _rel_close(outs[-1][1], float(r["mean"]), 1e-13)
        _rel_close(outs[-1][2], float(r["var"]), 1e-11)
    for x, y in zip(*outs):
        _rel_close(x, y, 1e-10)


def test_narrow_cells_down_to_1e_minus_8():
    # spec: b - a < 1e-4 by a midpoint expansion; the naive formula has lost every digit of var here
    for w in (1e-4 * (1 - 1e-9), 1e-4 * (1 + 1e-9), 1e-6, 1e-8):
        for lo in (-0.3, 2.0, -7.0):
            logp, mean, var = truncnorm_moments(0.0, lo, lo + w, 1.0)
            r = mp_ref(0.0, 1.0, lo, lo + w)
            _rel_close(logp, float(r["logp"]), 1e-13)
            _rel_close(mean, float(r["mean"]), 1e-14)
            _rel_close(var, float(r["var"]), 1e-9)


@pytest.mark.parametrize("edge", ["straddle", "continued-fraction"])
def test_edge_frame_branch_continuity(edge):
    a0 = 0.0 if edge == "straddle" else kernels._CF_START
    for w in (0.7, 3.0, INF):
        outs = []
        sides = (a0 - 1e-13, a0 + 1e-13) if a0 else (-1e-300, 0.0)
        for a in sides:
            outs.append(truncnorm_moments(0.0, a, a + w, 1.0))
            r = mp_ref(0.0, 1.0, a, a + w)
            _rel_close(outs[-1][2], float(r["var"]), 1e-11)
        for x, y in zip(*outs):
            _rel_close(x, y, 1e-11)
        # reflected side (b <= 0) at the same point
        _, mean_neg, var_neg = truncnorm_moments(0.0, -(sides[1] + w), -sides[1], 1.0)
        _rel_close(-mean_neg, outs[1][1], 1e-15)
        _rel_close(var_neg, outs[1][2], 1e-15)


# --------------------------------------------------------------------------------- autograd safety
def test_autograd_through_kernel_is_finite_and_consistent():
    # d mean/dmu = var/sigma^2 and d log P/dmu = r1/sigma: identities the kernel never uses
    torch = pytest.importorskip("torch")
    mu, s, lo, hi = _probes(400, seed=8)
    m = torch.tensor(mu, requires_grad=True)
    sg = torch.tensor(s, requires_grad=True)
    logp, mean, var = truncnorm_moments(m, torch.tensor(lo), torch.tensor(hi), sg)
    g_logp, g_logp_s = torch.autograd.grad(logp.sum(), (m, sg), retain_graph=True)
    g_mean, g_mean_s = torch.autograd.grad(mean.sum(), (m, sg))
    for g in (g_logp, g_logp_s, g_mean, g_mean_s):
        assert torch.isfinite(g).all()
    _, r1, r2 = truncnorm_terms(mu, lo, hi, s)
    np.testing.assert_array_less(np.abs(g_logp.numpy() - r1 / s), 1e-9 * np.abs(r1 / s) + 1e-12 / s)
    np.testing.assert_array_less(np.abs(g_logp_s.numpy() - r2 / s), 1e-9 * np.abs(r2 / s) + 1e-12 / s)
    v = var.detach().numpy() / s**2
    np.testing.assert_array_less(np.abs(g_mean.numpy() - v), 1e-7 * v + 1e-10)
