"""Baselines of optkit.mimo (spec mimo §3.6): checked against scipy, dense formulas, closed forms and Monte Carlo."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

from optkit._errors import InvalidProblemError
from optkit._result import Status
from optkit.mimo import baselines as bl
from optkit.mimo.admm import recover
from optkit.mimo.channels import (
    Channel,
    geometric_channel,
    random_channel,
    steering,
    ula_correlation,
    unvec_real,
    vec_real,
)
from optkit.mimo.feedback import feedback, feedback_to
from optkit.mimo.kernels import truncnorm_moments, truncnorm_terms
from optkit.mimo.metrics import cosine_similarity, nmse


def _torch_fb(fb):
    torch = pytest.importorskip("torch")
    return feedback_to(fb, torch.zeros((), dtype=torch.float64))


def _host(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _user(fb, b):
    """The single-user Feedback of user b of a batch."""
    op = fb.operator
    if not op.shared:
        op = dataclasses.replace(op, A=None if op.A is None else op.A[b], C=None if op.C is None else op.C[b],
                                 S=None if op.S is None else op.S[b])
    return dataclasses.replace(fb, z=fb.z[b], scale=float(fb.scale[b]), sigma=float(fb.sigma[b]),
                               sigma_nominal=float(fb.sigma_nominal[b]), noise_var=fb.noise_var[b], lo=fb.lo[b],
                               hi=fb.hi[b], operator=op)


def _ula_cov(n_r, n_t):
    """1/2 (7/12) blkdiag(T_t (x) T_r, T_t (x) T_r): the covariance of vec_real(H) for the authors' generator."""
    k = np.kron(ula_correlation(n_t), ula_correlation(n_r))
    return (7.0 / 24.0) * scipy.linalg.block_diag(k, k)


# ------------------------------------------------------------------------------------------------ MLE of gains


def test_mle_gains_matches_lbfgsb():
    ch = random_channel(6, 8, 2, rng=3)
    fb = feedback(ch.H, R=40, bits=3, dither_snr_db=12.0, rng=4)
    res = bl.mle_gains(fb, ch.omega_r, ch.omega_t)
    assert res.status == Status.CONVERGED and res.extra["method"] == "mle-gains"
    # independent NLL in theta = (Re beta, Im beta): columns vec_real(a_r a_t^T), vec_real(j a_r a_t^T)
    A = fb.operator.A
    s, sig = fb.scale, fb.scale * fb.sigma
    cols = []
    for part in (1.0, 1j):
        for k in range(2):
            e = np.zeros(2, complex)
            e[k] = part
            cols.append(vec_real(geometric_channel(ch.omega_r, ch.omega_t, e, 6, 8)))
    M = s * A @ np.stack(cols, 1)

    def f(th):
        mu = M @ th
        logp, r1, _ = truncnorm_terms(mu, fb.lo, fb.hi, sig)
        return -logp.sum(), -M.T @ (r1 / sig)

    th0 = np.linalg.lstsq(M, s * fb.midpoints(), rcond=None)[0]
    ref = scipy.optimize.minimize(f, th0, jac=True, method="L-BFGS-B",
                                  options=dict(gtol=1e-12, ftol=1e-16, maxiter=20000, maxcor=30))
    beta_ref = ref.x[:2] + 1j * ref.x[2:]
    np.testing.assert_allclose(res.paths["beta"], beta_ref, atol=1e-6)
    assert res.fun == pytest.approx(ref.fun, rel=1e-10)
    np.testing.assert_allclose(res.H_hat, geometric_channel(ch.omega_r, ch.omega_t, beta_ref, 6, 8), atol=1e-5)
    # fun is f at H_hat with the stable kernel and sigma_i = s sigma
    logp, _, _ = truncnorm_moments(s * A @ vec_real(res.H_hat), fb.lo, fb.hi, sig)
    assert res.fun == pytest.approx(-logp.sum(), rel=1e-12)
    np.testing.assert_allclose(res.x, vec_real(res.H_hat))


def test_mle_gains_noiseless_sigma_rule():
    """No dither, no noise: sigma = 1.0 (scaled units); still converges to a good estimate."""
    ch = random_channel(6, 8, 2, rng=5)
    fb = feedback(ch.H, R=48, bits=5, add_dither=False, rng=6)
    res = bl.mle_gains(fb, ch.omega_r, ch.omega_t)
    assert res.status == Status.CONVERGED
    assert res.extra["sigma_used"] == 1.0
    assert nmse(res.H_hat, ch.H) < 1e-3


# ------------------------------------------------------------------------------------------------ LMMSE


@pytest.mark.parametrize("scheme", [1, 2])
@pytest.mark.parametrize("prior", ["ula-uniform", "isotropic"])
def test_lmmse_dense_formula(scheme, prior):
    ch = random_channel(6, 5, 2, rng=7)
    fb = feedback(ch.H, scheme=scheme, R=36, bits=3, rng=8, pilot_snr_db=20.0)
    res = bl.lmmse(fb, 2, prior=prior)
    assert res.status == Status.CONVERGED and res.extra["method"] == "lmmse"
    A = fb.operator.to_dense()
    n = A.shape[1]
    C = _ula_cov(6, 5) if prior == "ula-uniform" else (7.0 / 24.0) * np.eye(n)
    qt = fb.midpoints()
    Sig = fb.sigma ** 2 + fb.noise_var + (2.0 / fb.scale) ** 2 / 12.0
    h = C @ A.T @ np.linalg.solve(A @ C @ A.T + np.diag(Sig), qt)
    np.testing.assert_allclose(res.x, h, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.H_hat, unvec_real(h, 6, 5), rtol=1e-9, atol=1e-12)
    # an explicit covariance gives the same
    res2 = bl.lmmse(fb, prior=C)
    np.testing.assert_allclose(res2.x, h, rtol=1e-9, atol=1e-12)


def test_lmmse_unquantized_noiseless_isotropic_is_min_norm():
    ch = random_channel(6, 5, 2, rng=9)
    fb = feedback(ch.H, R=30, bits=3, add_dither=False, rng=10)
    A = fb.operator.A
    q = A @ vec_real(ch.H)
    want = np.linalg.pinv(A) @ q  # A^T (A A^T)^{-1} q: the prior scale cancels when Sigma_e = 0
    for kw in (dict(channel=ch), dict(channel=ch.H), dict(q=q)):
        res = bl.lmmse(fb, prior="isotropic", unquantized=True, **kw)
        np.testing.assert_allclose(res.x, want, rtol=1e-9, atol=1e-12)


def test_lmmse_nmse_loose():
    """Structure-blind: NMSE near 1 - R/n for the isotropic prior; the ULA prior does better."""
    n_r, n_t, R = 8, 6, 48
    n = 2 * n_r * n_t
    iso, ula = [], []
    for seed in range(6):
        ch = random_channel(n_r, n_t, 2, rng=seed)
        fb = feedback(ch.H, R=R, bits=4, rng=100 + seed)
        iso.append(nmse(bl.lmmse(fb, prior="isotropic").H_hat, ch.H))
        ula.append(nmse(bl.lmmse(fb).H_hat, ch.H))
    assert 0.6 * (1 - R / n) < np.mean(iso) < 1.0
    assert np.mean(ula) < np.mean(iso)


def test_ula_prior_ordering_monte_carlo():
    """E[h h^T] over random_channel draws matches 1/2 (7/12) blkdiag(T_t (x) T_r, ...) in the vec_real ordering."""
    n_r, n_t = 8, 6
    ch = random_channel(n_r, n_t, 8, batch=2000, rng=11)
    h = vec_real(ch.H)
    emp = h.T @ h / h.shape[0]
    C = _ula_cov(n_r, n_t)
    err = np.abs(emp - C).max()
    k_wrong = np.kron(ula_correlation(n_r), ula_correlation(n_t))  # the other Kronecker order
    err_wrong = np.abs(emp - (7.0 / 24.0) * scipy.linalg.block_diag(k_wrong, k_wrong)).max()
    # sampling std of an entry is about (7/24)/sqrt(2000) ~ 0.0065 (x ~1.4 for the diagonal)
    assert err < 0.05
    assert err_wrong > 3 * err
    # and lmmse applies exactly this C_h (rows of A C_h through the Kronecker form)
    fb = feedback(ch.H[0], R=20, bits=3, rng=12)
    P = bl._Prep(fb)
    np.testing.assert_allclose(bl._prior_apply(P, fb.operator.A, "ula-uniform", 86.0), fb.operator.A @ C,
                               atol=1e-13)


# ------------------------------------------------------------------------------------------------ grid tools


def test_qiht_correlation_identity():
    rng = np.random.default_rng(13)
    n_r, n_t, F_r, F_t = 5, 7, 20, 28
    g = rng.standard_normal(2 * n_r * n_t)  # stands for A^T w
    Gc = unvec_real(g, n_r, n_t)
    C = bl._grid_correlation(Gc, F_r, F_t)
    for i, k in [(0, 0), (3, 11), (19, 27), (7, 2)]:
        beta = complex(rng.standard_normal(), rng.standard_normal())
        ar, at = steering(n_r, 2 * np.pi * i / F_r), steering(n_t, 2 * np.pi * k / F_t)
        lhs = vec_real(beta * np.outer(ar, at)) @ g
        assert lhs == pytest.approx(np.real(np.conj(beta) * (ar.conj() @ Gc @ at.conj())), abs=1e-12)
        assert lhs == pytest.approx(np.real(np.conj(beta) * C[i, k]), abs=1e-12)
    # synthesis H = W_r X W_t^T
    X = np.zeros((F_r, F_t), complex)
    X[3, 11], X[19, 2] = 0.5 - 0.2j, -1.0j
    want = sum(X[i, k] * np.outer(steering(n_r, 2 * np.pi * i / F_r), steering(n_t, 2 * np.pi * k / F_t))
               for i, k in [(3, 11), (19, 2)])
    np.testing.assert_allclose(bl._grid_synth(X, n_r, n_t), want, atol=1e-13)


def test_qiht_lipschitz_is_operator_norm():
    """L = s^2 F_r F_t lambda_max(A A^T) equals ||Phi||^2 of the dense atom map X -> s A vec_real(W_r X W_t^T)."""
    n_r, n_t, over = 2, 3, 2
    ch = random_channel(n_r, n_t, 1, rng=14)
    fb = feedback(ch.H, R=8, bits=3, rng=15)
    F_r, F_t = over * n_r, over * n_t
    cols = []
    for part in (1.0, 1j):
        for i in range(F_r):
            for k in range(F_t):
                Z = np.outer(steering(n_r, 2 * np.pi * i / F_r), steering(n_t, 2 * np.pi * k / F_t))
                cols.append(fb.scale * fb.operator.A @ vec_real(part * Z))
    Phi = np.stack(cols, 1)
    P = bl._Prep(fb)
    L = fb.scale ** 2 * F_r * F_t * bl._power_lambda(P, n_iter=200)[0]
    assert L == pytest.approx(np.linalg.norm(Phi, 2) ** 2, rel=1e-8)


# ------------------------------------------------------------------------------------------------ QIHT, OMP


def _on_grid_channel(n_r, n_t, idx, betas, over=4):
    F_r, F_t = over * n_r, over * n_t
    wr = np.array([2 * np.pi * i / F_r for i, _ in idx])
    wt = np.array([2 * np.pi * k / F_t for _, k in idx])
    wr, wt = np.where(wr > np.pi, wr - 2 * np.pi, wr), np.where(wt > np.pi, wt - 2 * np.pi, wt)
    H = geometric_channel(wr, wt, np.asarray(betas), n_r, n_t)
    return Channel(H=H, omega_r=wr, omega_t=wt, beta=np.asarray(betas), n_paths=len(idx))


def test_omp_recovers_on_grid_channel():
    ch = _on_grid_channel(8, 12, [(5, 17), (20, 40)], [0.8 * np.exp(0.3j), 0.6 * np.exp(-2.0j)])
    fb = feedback(ch.H, R=96, bits=15, add_dither=False, rng=16)
    res = bl.omp(fb, 2)
    assert res.status == Status.CONVERGED and res.extra["method"] == "omp"
    got = sorted(zip(np.round(res.paths["omega_r"], 12), np.round(res.paths["omega_t"], 12)))
    want = sorted(zip(np.round(ch.omega_r, 12), np.round(ch.omega_t, 12)))
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert nmse(res.H_hat, ch.H) < 1e-8


def test_qiht_on_grid_single_path():
    ch = _on_grid_channel(8, 12, [(9, 30)], [0.9 * np.exp(1.0j)])
    fb = feedback(ch.H, R=96, bits=6, rng=17)
    res = bl.qiht(fb, 1)
    assert res.status == Status.CONVERGED and res.extra["method"] == "qiht"
    assert res.paths["beta"].shape == (2,)  # the 2K-atom support, by decreasing |beta|
    assert res.paths["omega_r"][0] == pytest.approx(ch.omega_r[0]) and res.paths["omega_t"][0] == pytest.approx(
        ch.omega_t[0])
    assert abs(res.paths["beta"][0] - ch.beta[0]) < 0.05 and abs(res.paths["beta"][1]) < 0.05
    assert nmse(res.H_hat, ch.H) < 1e-3


def test_biht_direction():
    ch = random_channel(8, 12, 2, rng=18)
    fb = feedback(ch.H, R=160, bits=1, rng=19)
    res = bl.qiht(fb, 2, variant="biht")
    assert res.extra["method"] == "biht" and res.extra["normalized"]
    assert np.linalg.norm(res.H_hat) == pytest.approx(1.0)
    assert cosine_similarity(res.H_hat, ch.H) > 0.9
    with pytest.warns(UserWarning, match="biht"):
        bl.qiht(fb, 2, n_iter=2)


# ------------------------------------------------------------------------------------------------ oracle, two-stage


def test_oracle_quantized_and_unquantized():
    vals = []
    for seed in range(4):
        ch = random_channel(8, 12, 2, rng=20 + seed)
        fb = feedback(ch.H, R=96, bits=4, rng=30 + seed)
        res = bl.oracle(fb, 2, channel=ch)
        assert res.status == Status.CONVERGED
        vals.append(nmse(res.H_hat, ch.H))
        exact = bl.oracle(fb, 2, channel=ch, unquantized=True)
        assert nmse(exact.H_hat, ch.H) < 1e-20
        np.testing.assert_allclose(exact.paths["beta"], ch.beta, atol=1e-12)
    floor = bl.sanity_nmse(96, 4, 2)
    assert np.median(vals) < 3 * floor


def test_two_stage_easy_instance():
    vals = []
    for seed in range(3):
        ch = random_channel(8, 12, 2, rng=40 + seed)
        fb = feedback(ch.H, R=96, bits=4, rng=50 + seed)
        res = bl.two_stage(fb, 2)
        assert res.status == Status.CONVERGED and res.extra["method"] == "two-stage"
        assert res.paths["omega_r"].shape == (2,)
        vals.append(nmse(res.H_hat, ch.H))
    assert np.median(vals) < 0.1


# ------------------------------------------------------------------------------------------------ batches, backends


@pytest.mark.parametrize("scheme,shared", [(1, True), (2, False)])
def test_batched_equals_per_user(scheme, shared):
    ch = random_channel(6, 8, 2, batch=3, rng=60)
    fb = feedback(ch.H, scheme=scheme, R=40, bits=3, rng=61, shared=shared)
    lm = bl.lmmse(fb, 2)
    orc = bl.oracle(fb, 2, channel=ch)
    assert len(lm) == 3 and len(orc) == 3
    for b in range(3):
        fb1 = _user(fb, b)
        ch1 = Channel(H=ch.H[b], omega_r=ch.omega_r[b], omega_t=ch.omega_t[b], beta=ch.beta[b], n_paths=2)
        np.testing.assert_allclose(lm.H_hat[b], bl.lmmse(fb1, 2).H_hat, rtol=1e-10, atol=1e-13)
        o1 = bl.oracle(fb1, 2, channel=ch1)
        np.testing.assert_allclose(orc.H_hat[b], o1.H_hat, rtol=1e-7, atol=1e-9)
        assert orc.fun[b] == pytest.approx(o1.fun, rel=1e-10)


@pytest.mark.parametrize("method", ["lmmse", "oracle", "mle_gains", "qiht", "omp", "two_stage"])
def test_torch_matches_numpy(method):
    torch = pytest.importorskip("torch")
    ch = random_channel(6, 8, 2, batch=2, rng=70)
    fb = feedback(ch.H, R=40, bits=3, rng=71, shared=method != "two_stage")
    fbt = _torch_fb(fb)
    call = {"lmmse": lambda f: bl.lmmse(f, 2), "oracle": lambda f: bl.oracle(f, 2, channel=ch),
            "mle_gains": lambda f: bl.mle_gains(f, ch.omega_r, ch.omega_t), "qiht": lambda f: bl.qiht(f, 2),
            "omp": lambda f: bl.omp(f, 2), "two_stage": lambda f: bl.two_stage(f, 2)}[method]
    rn, rt = call(fb), call(fbt)
    assert rt.backend == "torch" and torch.is_tensor(rt.H_hat) and rt.H_hat.dtype == torch.complex128
    np.testing.assert_allclose(_host(rt.H_hat), rn.H_hat, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(_host(rt.fun), rn.fun, rtol=1e-8)


# ------------------------------------------------------------------------------------------------ misc


def test_sanity_nmse():
    assert bl.sanity_nmse(100, 3, 8) == pytest.approx(1.7066666666666668 / 100, rel=1e-12)
    assert bl.sanity_nmse(300, 3, 8) * 300 == pytest.approx(1.71, abs=0.01)  # the spec's ~1.7/R
    assert bl.sanity_nmse(50, 2, 1, crest=2.0) == pytest.approx((4 / 50) * (2 * 2.0 / 4) ** 2 / 12)


def test_recover_dispatches_to_baselines():
    ch = random_channel(6, 8, 2, rng=80)
    fb = feedback(ch.H, R=40, bits=3, rng=81)
    res = recover(fb, 2, method="lmmse")
    assert res.extra["method"] == "lmmse"
    np.testing.assert_allclose(res.H_hat, bl.lmmse(fb, 2).H_hat)
    assert recover(fb, 2, method="omp").extra["method"] == "omp"


def test_bad_inputs_name_the_argument():
    ch = random_channel(6, 8, 2, rng=90)
    fb = feedback(ch.H, R=40, bits=3, rng=91)
    cases = [
        (lambda: bl.qiht(fb, 2, oversample=0), "oversample"),
        (lambda: bl.qiht(fb, 2, variant="xyz"), "variant"),
        (lambda: bl.qiht(fb, 2, n_iter=0), "n_iter"),
        (lambda: bl.qiht(fb, 2, sparsity=40), "sparsity"),
        (lambda: bl.omp(fb, 2, oversample=1.5), "oversample"),
        (lambda: bl.omp(fb, 0), "n_paths"),
        (lambda: bl.two_stage(fb, 2, rho=-1.0), "rho"),
        (lambda: bl.lmmse(fb, prior="flat"), "prior"),
        (lambda: bl.lmmse(fb, prior=np.eye(3)), "prior"),
        (lambda: bl.lmmse(fb, unquantized=True), "q"),
        (lambda: bl.lmmse(fb, unquantized=True, q=np.zeros(7)), "q"),
        (lambda: bl.lmmse(fb, unquantized="yes"), "unquantized"),
        (lambda: bl.oracle(fb, 2, channel=ch.H), "channel"),
        (lambda: bl.oracle(fb, 3, channel=ch), "n_paths"),
        (lambda: bl.mle_gains(fb, ch.omega_r, ch.omega_t[:1]), "omega_t"),
        (lambda: bl.mle_gains(fb, [np.nan, 0.0], ch.omega_t), "omega_r"),
        (lambda: bl.mle_gains(fb, ch.omega_r, ch.omega_t, max_iter=0), "max_iter"),
        (lambda: bl.sanity_nmse(100, 16, 8), "bits"),
        (lambda: bl.sanity_nmse(100, 3, 8, crest=0.0), "crest"),
        (lambda: bl.lmmse("not feedback"), "feedback"),
    ]
    for fn, name in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(InvalidProblemError, match=name):
                fn()
    assert math.isfinite(bl.sanity_nmse(100, 3, 8))
