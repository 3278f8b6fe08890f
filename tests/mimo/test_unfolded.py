"""optkit.mimo.layers: UnfoldedREDEEM and REDEEMLayer (spec mimo §5.4, V10)."""

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_stats = pytest.importorskip("scipy.stats")

from optkit._errors import ConvergenceError, InvalidProblemError  # noqa: E402
from optkit.mimo import feedback, harmonic_retrieval, random_channel, recover  # noqa: E402
from optkit.mimo import layers as layers_mod  # noqa: E402
from optkit.mimo.layers import REDEEMLayer, UnfoldedREDEEM  # noqa: E402
from optkit.mimo.metrics import nmse  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batched LAPACK calls: threads only add contention on a loaded CPU
    yield
    torch.set_num_threads(n)


def _instance(n_r, n_t, K, R, bits, batch, seed, scheme=1):
    ch = random_channel(n_r, n_t, K, batch=batch, rng=seed)
    H = torch.as_tensor(ch.H)
    return H, feedback(H, scheme=scheme, R=R, bits=bits, rng=seed + 1000)


def _snapshot(fb):
    return {k: v.clone() for k, v in (("lo", fb.lo), ("hi", fb.hi), ("z", fb.z), ("A", fb.operator.A),
                                      ("sigma", fb.sigma), ("scale", fb.scale))}


# ------------------------------------------------------------------------------------- UnfoldedREDEEM
def test_untrained_parameters_are_fast_mode_values():
    net = UnfoldedREDEEM(8, 8, 2, n_layers=4)
    for name, val in (("rho", 1.0), ("relax", 1.0), ("dual", 1.0), ("damping", 1e-3)):
        torch.testing.assert_close(getattr(net, name).detach(), torch.full((4,), val, dtype=F64), rtol=1e-12,
                                   atol=0)
    assert {n for n, _ in net.named_parameters()} == {"rho_raw", "relax_raw", "dual_raw", "damping_raw"}
    net2 = UnfoldedREDEEM(8, 8, 2, n_layers=4, learn=("rho",), share_across_layers=True)
    assert [n for n, _ in net2.named_parameters()] == ["rho_raw"] and net2.rho.shape == (1,)
    assert net2.relax_raw.shape == (1,) and not net2.relax_raw.requires_grad


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_layers=1), "n_layers"), (dict(learn=("rho", "beta")), "learn"), (dict(scheme=3), "scheme"),
    (dict(em_steps=0), "em_steps"), (dict(hr_oversample=0), "hr_oversample")])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(InvalidProblemError, match=match):
        UnfoldedREDEEM(8, 8, 2, **kwargs)


def test_invalid_feedback_and_override():
    H, fb = _instance(4, 6, 1, 24, 3, 2, 0)
    with pytest.raises(InvalidProblemError, match="scheme"):
        UnfoldedREDEEM(4, 6, 1, n_layers=2, scheme=2)(fb)
    with pytest.raises(InvalidProblemError, match="A:"):
        UnfoldedREDEEM(4, 6, 1, n_layers=2)(fb, A=torch.zeros(24, 47, dtype=F64))
    with pytest.raises(InvalidProblemError, match="feedback"):
        UnfoldedREDEEM(4, 8, 1, n_layers=2)(fb)


def _truncnorm_mean(mu, lo, hi, sigma):
    """Independent E-step reference: scipy's truncated normal (accurate to ~1e-11 for these cells)."""
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    return scipy_stats.truncnorm.mean(a, b, loc=mu, scale=sigma)


def test_two_layers_match_dense_reference_k1():
    """n_layers = 2, K = 1: layer 0 is `em_steps` exact MM steps of the ridge dequantization (dense solves with
    scipy's truncated-normal mean), the dual step gives Y = U - Lambda/rho = 2U, and layer 1's HR with enough
    LM steps reaches the stationary K = 1 fit that stable-mode RELAX (16x grid, Newton) finds."""
    H, fb = _instance(6, 8, 1, 40, 3, 2, 11)
    em = 4
    net = UnfoldedREDEEM(6, 8, 1, n_layers=2, em_steps=em, hr_steps=25)
    with torch.no_grad():
        H_net = net(fb).numpy()
    A = fb.operator.A.numpy()
    lo, hi = fb.lo.numpy(), fb.hi.numpy()
    s = fb.scale.numpy()
    for b in range(2):
        sig = s[b] * float(fb.sigma[b])
        M = A.T @ A / sig ** 2 + np.eye(A.shape[1])
        u = np.zeros(A.shape[1])
        for _ in range(em):
            w = _truncnorm_mean(A @ u, lo[b], hi[b], sig)
            u = np.linalg.solve(M, A.T @ w / sig ** 2)
        Uc = (2 * u).reshape(2 * 8, 6).T  # column-major vec of [Re, Im]
        ref = harmonic_retrieval(Uc[:, :8] + 1j * Uc[:, 8:], 1, mode="stable").H / s[b]
        np.testing.assert_allclose(H_net[b], ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_untrained_nmse_is_sensible():
    """Easy instance (8x8, K = 2, R = 48, b = 3): 10 untrained layers vs 10 fast-mode iterations with 3 EM
    steps (not identical algorithms, see the class notes; both well below NMSE 1)."""
    H, fb = _instance(8, 8, 2, 48, 3, 32, 21)
    snap = _snapshot(fb)
    net = UnfoldedREDEEM(8, 8, 2, n_layers=10)
    with torch.no_grad():
        Hh = net(fb)
        Hh2 = net(fb)
    torch.testing.assert_close(Hh, Hh2, rtol=0, atol=0)  # deterministic
    for k, v in _snapshot(fb).items():  # no input mutated
        torch.testing.assert_close(v, snap[k], rtol=0, atol=0)
    assert Hh.shape == (32, 8, 8) and Hh.dtype == torch.complex128
    e = nmse(Hh, H)
    e_fast = nmse(recover(fb, 2, mode="fast", max_iter=10, em_iter=3).H_hat, H)
    print(f"untrained 10 layers: mean {float(e.mean()):.4f} median {float(e.median()):.4f}; "
          f"fast(max_iter=10, em_iter=3): mean {float(e_fast.mean()):.4f} median {float(e_fast.median()):.4f}")
    assert float(e.median()) < 0.1 and float(e.mean()) < 0.25
    assert float(e.median()) < 3 * float(e_fast.median())
    # one user gives (Nr, Nt) and the same estimate as in the batch
    fb1 = dataclasses.replace(fb, z=fb.z[3], scale=float(fb.scale[3]), sigma=float(fb.sigma[3]),
                              sigma_nominal=float(fb.sigma_nominal[3]), noise_var=fb.noise_var[3], lo=fb.lo[3],
                              hi=fb.hi[3])
    with torch.no_grad():
        H1 = net(fb1)
    torch.testing.assert_close(H1, Hh[3], rtol=0, atol=1e-10)


def _gradcheck_setup(n_layers, checkpoint=False):
    H, fb = _instance(4, 6, 1, 24, 3, 2, 3)
    net = UnfoldedREDEEM(4, 6, 1, n_layers=n_layers, checkpoint=checkpoint)
    names = [n for n, _ in net.named_parameters()]

    def loss(*args):
        params = dict(zip(names, args[:4]))
        fb2 = dataclasses.replace(fb, sigma=args[5])
        Hh = torch.func.functional_call(net, params, (fb2,), {"A": args[4]})
        return ((Hh - H).abs() ** 2).sum()

    raw = [p.detach().clone().requires_grad_() for p in net.parameters()]
    A = fb.operator.A.clone().requires_grad_()
    sig = fb.sigma.clone().requires_grad_()
    return loss, raw, A, sig


@pytest.mark.parametrize("n_layers", [2, 3])
def test_gradcheck_unfolded(n_layers):
    """V10: float64 gradcheck (4x6, K = 1, R = 24, b = 3, B = 2) in the raw parameters, A and sigma."""
    loss, raw, A, sig = _gradcheck_setup(n_layers)
    # every raw parameter and sigma entry, and a few entries of A, by full finite differences
    mask = torch.zeros_like(A, dtype=torch.bool)
    mask[0, 0] = mask[5, 17] = mask[23, 47] = mask[11, 30] = True
    A0 = A.detach()

    def loss_sub(*args):
        return loss(*args[:4], A0.masked_scatter(mask, args[5]), args[4])

    a_sub = A0[mask].clone().requires_grad_()
    assert torch.autograd.gradcheck(loss_sub, (*raw, sig, a_sub), eps=1e-6, atol=1e-6, rtol=1e-5)
    # all of A along random directions
    assert torch.autograd.gradcheck(loss, (*raw, A, sig), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_checkpoint_gives_the_same_gradients():
    outs = []
    for ck in (False, True):
        loss, raw, A, sig = _gradcheck_setup(3, checkpoint=ck)
        val = loss(*raw, A, sig)
        outs.append((val.detach(),) + torch.autograd.grad(val, (*raw, A, sig)))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_gradient_reaches_operator_of_feedback():
    """Without the override, a Scheme-1 matrix that requires grad gets its gradient (learning A)."""
    H, fb = _instance(4, 6, 1, 24, 3, 2, 3)
    A = fb.operator.A.clone().requires_grad_()
    fb2 = dataclasses.replace(fb, operator=dataclasses.replace(fb.operator, A=A))
    net = UnfoldedREDEEM(4, 6, 1, n_layers=3)
    g1 = torch.autograd.grad(((net(fb2) - H).abs() ** 2).sum(), A)[0]
    A2 = fb.operator.A.clone().requires_grad_()
    g2 = torch.autograd.grad(((net(fb, A=A2) - H).abs() ** 2).sum(), A2)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=0)
    assert float(g1.abs().max()) > 0


def test_scheme2_forward_and_backward():
    H, fb = _instance(4, 6, 1, 24, 3, 2, 5, scheme=2)
    net = UnfoldedREDEEM(4, 6, 1, n_layers=4, scheme=2)
    loss = nmse(net(fb), H).mean()
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() < 0.5
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("n_users", [256])  # the spec's V10 setting
def test_training_lowers_nmse(n_users):
    """V10: 50 Adam steps (8x8, K = 2, R = 48, b = 3, 5 layers) lower the mean NMSE below the untrained
    layer's, on the training batch and on a held-out batch. The spec's setting is 256 users (marked slow,
    ~17 s on an idle 2-core CPU; 128 users take ~9 s)."""
    torch.manual_seed(0)
    H_tr, fb_tr = _instance(8, 8, 2, 48, 3, n_users, 31)
    H_te, fb_te = _instance(8, 8, 2, 48, 3, n_users, 32)
    net = UnfoldedREDEEM(8, 8, 2, n_layers=5)

    def mean_nmse(H, fb):
        with torch.no_grad():
            return float(nmse(net(fb), H).mean())

    before = mean_nmse(H_tr, fb_tr), mean_nmse(H_te, fb_te)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        loss = nmse(net(fb_tr), H_tr).mean()
        loss.backward()
        opt.step()
    after = mean_nmse(H_tr, fb_tr), mean_nmse(H_te, fb_te)
    print(f"{n_users} users: train NMSE {before[0]:.4f} -> {after[0]:.4f}, held-out {before[1]:.4f} -> "
          f"{after[1]:.4f}")
    assert after[0] < 0.9 * before[0]
    assert after[1] < before[1]


# ---------------------------------------------------------------------------------------- REDEEMLayer
def test_redeem_layer_none_is_recover_detached():
    H, fb = _instance(8, 8, 2, 48, 3, 3, 41)
    A = fb.operator.A.clone().requires_grad_()
    fb2 = dataclasses.replace(fb, operator=dataclasses.replace(fb.operator, A=A))
    out = REDEEMLayer(2, mode="fast", max_iter=20)(fb2)
    ref = recover(fb, 2, mode="fast", max_iter=20).H_hat
    assert not out.requires_grad
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_redeem_layer_options_are_checked():
    with pytest.raises(InvalidProblemError, match="polish"):
        REDEEMLayer(2, diff_mode="implicit")
    with pytest.raises(InvalidProblemError, match="diff_mode"):
        REDEEMLayer(2, diff_mode="unroll")
    with pytest.raises(TypeError, match="max_iters"):
        REDEEMLayer(2, max_iters=3)


def _v9_single(seed):
    ch = random_channel(8, 12, 2, rng=seed)
    H = torch.as_tensor(ch.H)
    return H, feedback(H, scheme=1, R=96, bits=4, rng=seed + 1)


def test_path_hessian_matches_autograd():
    """The exact Hessian of f(theta) used by the implicit backward (Gauss-Newton + second-order term)."""
    H, fb = _v9_single(5)
    res = recover(fb, 2, mode="fast", max_iter=30, polish=True)
    s = float(fb.scale)
    sig = torch.full((1, 96), s * float(fb.sigma), dtype=F64)
    theta = torch.cat([res.paths["omega_r"], res.paths["omega_t"], (res.paths["beta"] * s).real,
                       (res.paths["beta"] * s).imag])[None] + 1e-3  # off the optimum: both terms matter
    prob = layers_mod._PathProblem(8, 12, 2, fb.lo[None], fb.hi[None])
    op = layers_mod._DenseOp(fb.operator.A)
    f, g, Hs = prob.all(theta, op, sig)
    ref_H = torch.autograd.functional.hessian(lambda t: prob.value(t[None], op, sig)[0], theta[0])
    ref_g = torch.autograd.functional.jacobian(lambda t: prob.value(t[None], op, sig)[0], theta[0])
    torch.testing.assert_close(g[0], ref_g, rtol=1e-9, atol=1e-9 * float(ref_g.abs().max()))
    torch.testing.assert_close(Hs[0], ref_H, rtol=1e-8, atol=1e-8 * float(ref_H.abs().max()))


def test_redeem_layer_implicit_gradient_vs_finite_differences():
    """V9-like instance (8x12, K = 2, R = 96, b = 4): implicit gradients of a scalar loss in sigma and in A
    (a random direction) vs central differences of the layer itself (relative 1e-4)."""
    H, fb = _v9_single(5)
    layer = REDEEMLayer(2, diff_mode="implicit", polish=True, mode="fast", max_iter=30)
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(8, 12, dtype=torch.complex128, generator=gen)
    dA = torch.randn(fb.operator.A.shape, dtype=F64, generator=gen)
    dA /= dA.norm()
    A0 = fb.operator.A.clone()
    s0 = torch.tensor(float(fb.sigma), dtype=F64)

    def loss(A, sig):
        return (W.conj() * layer(dataclasses.replace(fb, sigma=sig), A=A)).real.sum()

    A = A0.clone().requires_grad_()
    sig = s0.clone().requires_grad_()
    val = loss(A, sig)
    gA, gs = torch.autograd.grad(val, (A, sig))
    with torch.no_grad():
        h = 1e-5 * float(s0)
        fd_s = (loss(A0, s0 + h) - loss(A0, s0 - h)) / (2 * h)
        h = 1e-5
        fd_a = (loss(A0 + h * dA, s0) - loss(A0 - h * dA, s0)) / (2 * h)
    print(f"d/dsigma: implicit {float(gs):.10g} fd {float(fd_s):.10g}; "
          f"d/dA.dA: implicit {float((gA * dA).sum()):.10g} fd {float(fd_a):.10g}")
    torch.testing.assert_close(gs, fd_s, rtol=1e-4, atol=0)
    torch.testing.assert_close((gA * dA).sum(), fd_a, rtol=1e-4, atol=0)
    # the estimate is recover's polished one (up to the extra Newton steps)
    ref = recover(fb, 2, mode="fast", max_iter=30, polish=True).H_hat
    torch.testing.assert_close(val.new_tensor(0.0) + (layer(fb) - ref).abs().max(), val.new_tensor(0.0),
                               rtol=0, atol=1e-6 * float(ref.abs().max()))


def test_redeem_layer_non_pd_hessian_raises(monkeypatch):
    H, fb = _instance(4, 6, 1, 24, 3, 2, 3)
    real = layers_mod._newton_finish

    def flipped(*args, **kwargs):
        theta, g, hess = real(*args, **kwargs)
        return theta, g, -hess

    monkeypatch.setattr(layers_mod, "_newton_finish", flipped)
    A = fb.operator.A.clone().requires_grad_()
    out = REDEEMLayer(1, diff_mode="implicit", polish=True, mode="fast", max_iter=10)(fb, A=A)
    with pytest.raises(ConvergenceError, match="positive"):
        (out.abs() ** 2).sum().backward()
