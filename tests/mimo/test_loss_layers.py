"""optkit.mimo.layers: IntervalProbitNLL (spec 5.4, V10 gradcheck) and DitheredQuantizer (V1)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_integrate = pytest.importorskip("scipy.integrate")

from optkit._errors import InvalidProblemError  # noqa: E402
from optkit.mimo.kernels import interval_probit_nll  # noqa: E402
from optkit.mimo.layers import DitheredQuantizer, IntervalProbitNLL  # noqa: E402

INF = math.inf
F64 = torch.float64


def _cells():
    """(2, 6) batch: V2 far-tail points (mu = 10, 40, -40), infinite edges, a narrow cell."""
    mu = torch.tensor([[0.3, 10.0, 40.0, -40.0, 0.0, 3.02],
                       [0.1, -2.0, 5.0, 6.0, -30.0, 0.405]], dtype=F64)
    lo = torch.tensor([[-1.0, -1.0, -1.0, -1.0, 5.0, 1.0],
                       [-INF, -1.0, 1.0, -INF, 5.0, 0.4]], dtype=F64)
    hi = torch.tensor([[1.0, 1.0, 1.0, 1.0, 7.0, 3.0],
                       [1.0, INF, 3.0, 0.0, INF, 0.41]], dtype=F64)
    return mu, lo, hi


# ------------------------------------------------------------------------------- IntervalProbitNLL
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_gradcheck_interval_probit_nll(reduction):
    mu, lo, hi = _cells()
    loss = IntervalProbitNLL(reduction)
    mu.requires_grad_()
    for sigma in (torch.tensor(0.7, dtype=F64),                      # scalar, broadcast
                  torch.full((2, 1), 0.7, dtype=F64),                # one per problem
                  torch.linspace(0.3, 1.2, 12, dtype=F64).reshape(2, 6)):  # per measurement
        sigma.requires_grad_()
        assert torch.autograd.gradcheck(lambda m, s: loss(m, lo, hi, s), (mu, sigma))


def test_gradient_equals_autograd_of_naive_formula():
    # well-conditioned points: log(Phi(b) - Phi(a)) in float64 is accurate there
    rng = np.random.default_rng(0)
    lo = torch.tensor(rng.uniform(-2, 1, 40))
    hi = lo + torch.tensor(rng.uniform(0.5, 3, 40))
    lo[::9] = -30.0  # far edge (an infinite one makes the naive autograd 0 * inf = nan)
    mu0 = torch.tensor(rng.uniform(-2, 2, 40))
    s0 = torch.tensor(rng.uniform(0.5, 2, 40))

    def naive(m, s):
        return -torch.log(torch.special.ndtr((hi - m) / s) - torch.special.ndtr((lo - m) / s)).sum()

    grads = []
    for f in (naive, lambda m, s: IntervalProbitNLL()(m, lo, hi, s)):
        m = mu0.clone().requires_grad_()
        s = s0.clone().requires_grad_()
        val = f(m, s)
        grads.append((val.detach(),) + torch.autograd.grad(val, (m, s)))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-13)


def test_far_tail_gradient_is_finite_and_exact():
    # the naive formula is 0/0 at mu = 40; the layer's gradient is -(mean - mu)/sigma^2 (V2 mean)
    mu = torch.tensor([10.0, 40.0], dtype=F64, requires_grad=True)
    sigma = torch.tensor(0.7, dtype=F64, requires_grad=True)
    val = IntervalProbitNLL()(mu, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]), sigma)
    torch.testing.assert_close(val, torch.tensor(86.13185979243847 + 1556.980313347229, dtype=F64),
                               rtol=1e-12, atol=0)
    val.backward()
    mean = torch.tensor([0.946195185915927, 0.9874439796412725], dtype=F64)
    torch.testing.assert_close(mu.grad, -(mean - mu.detach()) / 0.49, rtol=1e-12, atol=0)
    assert torch.isfinite(sigma.grad)


def test_function_form_and_module_agree_and_shapes():
    mu, lo, hi = _cells()
    mu.requires_grad_()
    sigma = torch.tensor(0.7, dtype=F64)
    a = interval_probit_nll(mu, lo, hi, sigma)
    b = IntervalProbitNLL()(mu, lo, hi, sigma)
    assert a.shape == b.shape == (2,)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert IntervalProbitNLL("none")(mu, lo, hi, sigma).shape == (2, 6)
    assert IntervalProbitNLL("mean")(mu, lo, hi, sigma).shape == (2,)
    # numpy edges are accepted (Feedback.lo/hi may be numpy)
    c = IntervalProbitNLL()(mu, lo.numpy(), hi.numpy(), 0.7)
    torch.testing.assert_close(c, a)
    g1, = torch.autograd.grad(a.sum(), mu)
    g2, = torch.autograd.grad(c.sum(), mu)
    torch.testing.assert_close(g1, g2)


def test_cell_edges_get_no_gradient_and_double_backward_raises():
    mu, lo, hi = _cells()
    mu.requires_grad_()
    lo.requires_grad_()
    val = IntervalProbitNLL()(mu, lo, hi, 0.7).sum()
    g_mu, g_lo = torch.autograd.grad(val, (mu, lo), create_graph=True, allow_unused=True)
    assert g_lo is None or torch.count_nonzero(g_lo) == 0
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g_mu.sum(), mu)


def test_interval_probit_nll_errors():
    with pytest.raises(InvalidProblemError, match="reduction"):
        IntervalProbitNLL("max")
    with pytest.raises(InvalidProblemError, match="sigma: must be positive"):
        IntervalProbitNLL()(torch.zeros(3), -1.0, 1.0, torch.tensor(0.0))


# -------------------------------------------------------------------------------- DitheredQuantizer
def test_v1_levels_without_dither():
    x = torch.tensor([-1.0, -0.26, 0.0, 0.24, 0.6, 1.0], dtype=F64)
    out = DitheredQuantizer(2, 0.0, grad="ste")(x)
    torch.testing.assert_close(out * 4, torch.tensor([-3.0, -1.0, -1.0, 1.0, 3.0, 3.0], dtype=F64),
                               rtol=0, atol=0)
    # tiny dither: same cells (no value is within 1e-12 of a threshold except 0, which the
    # dither may move either way, so it is left out)
    out = DitheredQuantizer(2, 1e-12)(x, generator=torch.Generator().manual_seed(0))
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close((out * 4)[keep], torch.tensor([-3.0, -1.0, 1.0, 3.0, 3.0], dtype=F64),
                               rtol=0, atol=0)


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_quantizer_levels_thresholds_and_per_row_scale(bits):
    top = 2**bits
    # y = s x sweeps [-2^b, 2^b] exactly (s = 2^b because max|x| = 1); thresholds are even integers
    y = torch.linspace(-top, top, 8 * top + 1, dtype=F64)
    x = torch.stack([y / top, 3.0 * y / top])  # second row: same pattern at 3x scale
    out = DitheredQuantizer(bits, 0.0, grad="ste")(x)
    z = out[0] * top
    torch.testing.assert_close(out[1] * top / 3.0, z, rtol=0, atol=1e-12)
    levels = set(range(-top + 1, top, 2))
    assert set(z.round().long().tolist()) == levels
    thresholds = np.arange(-top + 2, top - 1, 2)
    for yi, zi in zip(y.tolist(), z.tolist()):
        # reference: level = -2^b + 1 + 2 #{thresholds strictly below y}; on a threshold -> lower cell
        assert zi == -top + 1 + 2 * int(np.sum(thresholds < yi))


def _expected_output(x, s, sigma, bits):
    """E_v[Q(s (x + v))]/s by adaptive quadrature over the dither density."""
    top = 2**bits
    thr = np.arange(-top + 2, top - 1, 2) / s - x  # breakpoints in v

    def integrand(v):
        y = s * (x + v)
        return (-top + 1 + 2 * np.sum(thr + x < y / s)) * math.exp(-0.5 * (v / sigma) ** 2)

    lim = 12 * sigma
    pts = [p for p in thr if -lim < p < lim]
    val, _ = scipy_integrate.quad(integrand, -lim, lim, points=pts or None, epsabs=1e-14, epsrel=1e-13,
                                  limit=500)
    # the mass beyond 12 sigma is below 1e-32
    return val / (sigma * math.sqrt(2 * math.pi)) / s


@pytest.mark.parametrize("bits,sigma", [(2, 0.1), (3, 0.05), (2, 0.6)])
def test_expected_gradient_matches_derivative_of_the_expectation(bits, sigma):
    row = torch.tensor([[0.31, -0.07, 0.5, 1.0, -0.74]], dtype=F64)  # max|x| = 1 -> s = 2^b
    s = 2.0**bits
    x = row.clone().requires_grad_()
    out = DitheredQuantizer(bits, sigma)(x, generator=torch.Generator().manual_seed(1))
    g, = torch.autograd.grad(out.sum(), x)
    h = 1e-4
    for i in (0, 1, 2, 4):  # not the max entry: s stays fixed
        xi = float(row[0, i])
        fd = (_expected_output(xi + h, s, sigma, bits) - _expected_output(xi - h, s, sigma, bits)) / (2 * h)
        np.testing.assert_allclose(float(g[0, i]), fd, rtol=1e-5, atol=1e-8)


def test_expected_gradient_window_matches_full_sum():
    # b = 10 with a small dither takes the windowed path; compare with all 1023 thresholds
    bits, sigma = 10, 2e-3
    rng = np.random.default_rng(2)
    xv = rng.uniform(-1, 1, (3, 50))
    x = torch.tensor(xv, requires_grad=True)
    out = DitheredQuantizer(bits, sigma)(x)
    g, = torch.autograd.grad(out.sum(), x)
    s = 2.0**bits / np.abs(xv).max(-1, keepdims=True)
    t = np.arange(-2**bits + 2, 2**bits - 1, 2)
    z = (xv[..., None] - t / s[..., None]) / sigma
    ref = (2 / (s * sigma) * np.exp(-0.5 * z * z).sum(-1) / math.sqrt(2 * math.pi))
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-12, atol=1e-300)
    assert np.all(ref > 0)


def test_ste_gradient_is_ones_and_outputs_are_reproducible():
    x = torch.randn(4, 16, dtype=F64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    q = DitheredQuantizer(3, 0.05, grad="ste")
    out = q(x, generator=torch.Generator().manual_seed(7))
    g, = torch.autograd.grad((out * torch.arange(16.0, dtype=F64)).sum(), x)
    torch.testing.assert_close(g, torch.arange(16.0, dtype=F64).expand(4, 16))
    again = q(x, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    other = q(x, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other, out)
    assert out.shape == x.shape and out.dtype == x.dtype
    # every output is a level / s of its row
    s = 8.0 / x.detach().abs().amax(-1, keepdim=True)
    z = (out.detach() * s).round()
    torch.testing.assert_close(out.detach() * s, z, rtol=0, atol=1e-12)
    assert torch.all(z.remainder(2) == 1) and torch.all(z.abs() <= 7)


def test_dithered_quantizer_errors():
    for bits in (0, 16, 2.5, True):
        with pytest.raises(InvalidProblemError, match="bits"):
            DitheredQuantizer(bits, 0.1)
    with pytest.raises(InvalidProblemError, match="grad"):
        DitheredQuantizer(3, 0.1, grad="foo")
    with pytest.raises(InvalidProblemError, match="sigma"):
        DitheredQuantizer(3, 0.0)  # "expected" needs a dither
    for sigma in (-0.1, math.nan, math.inf):
        with pytest.raises(InvalidProblemError, match="sigma"):
            DitheredQuantizer(3, sigma, grad="ste")
    q = DitheredQuantizer(3, 0.1)
    with pytest.raises(InvalidProblemError, match="x"):
        q(torch.arange(5))
    with pytest.raises(InvalidProblemError, match="x"):
        q(torch.tensor(1.0))
