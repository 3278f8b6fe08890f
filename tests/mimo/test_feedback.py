"""UE side: quantizer (V1), sensing operators (V5), feedback payloads and bad inputs (spec mimo §2, §6, §9)."""

import numpy as np
import pytest

from optkit import InvalidProblemError
from optkit.mimo.channels import unvec_real, vec_real
from optkit.mimo.feedback import cell_edges, feedback, make_operator, quantize, walsh_pilots


@pytest.mark.parametrize("bits,thr,levels", [
    (1, [0], [-1, 1]), (2, [-2, 0, 2], [-3, -1, 1, 3]), (3, list(range(-6, 7, 2)), list(range(-7, 8, 2)))])
def test_v1_thresholds_and_levels(bits, thr, levels):
    top = 2 ** bits
    y = np.linspace(-top, top, 4001)
    z, s, lo, hi = quantize(y, bits, scale=1.0)
    assert sorted(set(z.tolist())) == levels
    # thresholds: z jumps exactly there, and a value on a threshold goes to the lower cell
    for t in thr:
        zt = quantize(np.array([t, t + 1e-9]), bits, scale=1.0)[0]
        assert zt[0] == t - 1 and zt[1] == t + 1


def test_v1_example():
    z, s, lo, hi = quantize(np.array([-1, -0.26, 0, 0.24, 0.6, 1]), 2)
    assert s == 4.0
    assert z.tolist() == [-3, -1, -1, 1, 3, 3]
    assert z.dtype == np.int16
    np.testing.assert_array_equal(lo, z - 1.0)
    np.testing.assert_array_equal(hi, z + 1.0)


def test_cells_contain_scaled_input_and_round_trip():
    rng = np.random.default_rng(0)
    for bits in (1, 2, 3, 5, 8):
        x = rng.standard_normal((3, 50))
        z, s, lo, hi = quantize(x, bits)
        y = x * s[:, None]
        assert np.all((lo <= y + 1e-12) & (y <= hi + 1e-12))
        # re-quantizing the cell midpoints returns the same codes
        z2 = quantize((lo + hi) / 2, bits, scale=1.0)[0]
        np.testing.assert_array_equal(z2, z)


def test_fixed_scale_outer_cells_are_semi_infinite():
    z, s, lo, hi = quantize(np.array([-10.0, 0.1, 10.0]), 2, scale=1.0)
    assert z.tolist() == [-3, 1, 3]
    assert lo[0] == -np.inf and np.isfinite(hi[0]) and hi[2] == np.inf and np.isfinite(lo[2])


def test_mu_law_edges_contain_input():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(200)
    z, s, lo, hi = quantize(x, 3, companding="mu-law")
    y = x * s
    assert np.all((lo <= y + 1e-9) & (y <= hi + 1e-9))
    # cells are non-uniform: narrow near 0, wide at the edges
    widths = hi - lo
    assert widths[np.abs(z) == 1].max() < widths[np.abs(z) == 7].min()
    lo2, hi2 = cell_edges(z, 3, companding="mu-law")
    np.testing.assert_allclose(lo2, lo)


def _dense_scheme2(op):
    """Reference dense A built row by row from the definition q_r = c_r^T [Re(H s_r); Im(H s_r)]."""
    n_r, n_t = op.n_r, op.n_t
    A = np.zeros((op.R, 2 * n_r * n_t))
    for j in range(2 * n_r * n_t):
        e = np.zeros(2 * n_r * n_t)
        e[j] = 1.0
        H = unvec_real(e, n_r, n_t)
        y = H @ op.S.T
        A[:, j] = [op.C[r] @ np.concatenate([y[:, r].real, y[:, r].imag]) for r in range(op.R)]
    return A


@pytest.mark.parametrize("scheme,pilots", [(1, "real"), (2, "real"), (2, "complex")])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_v5_operator_products_gram_adjoint(scheme, pilots, backend):
    op = make_operator(scheme, 4, 6, 17, pilots=pilots, rng=3)
    A = op.to_dense() if scheme == 1 else _dense_scheme2(op)
    np.testing.assert_allclose(op.to_dense(), A, atol=1e-13)
    rng = np.random.default_rng(4)
    h, w = rng.standard_normal((5, 48)), rng.standard_normal((5, 17))
    if backend == "torch":
        torch = pytest.importorskip("torch")
        opb = op.to(torch.zeros(1, dtype=torch.float64))
        mv, rmv, G = (opb.matvec(torch.as_tensor(h)).numpy(), opb.rmatvec(torch.as_tensor(w)).numpy(),
                      opb.gram().numpy())
    else:
        mv, rmv, G = op.matvec(h), op.rmatvec(w), op.gram()
    np.testing.assert_allclose(mv, h @ A.T, atol=1e-12)
    np.testing.assert_allclose(rmv, w @ A, atol=1e-12)
    np.testing.assert_allclose(G, A @ A.T, atol=1e-12)
    # adjoint identity <A h, w> = <h, A^T w>
    np.testing.assert_allclose((mv * w).sum(-1), (h * rmv).sum(-1), rtol=1e-12)


def test_v5_scheme2_hadamard_gram_real_pilots():
    op = make_operator(2, 3, 5, 11, rng=0)
    np.testing.assert_allclose(op.gram(), (op.C @ op.C.T) * (op.S @ op.S.T), atol=1e-13)


def test_per_user_operators():
    op = make_operator(1, 3, 4, 10, batch=3, shared=False, rng=0)
    assert op.A.shape == (3, 10, 24) and op.batch == 3
    h = np.random.default_rng(0).standard_normal((3, 24))
    np.testing.assert_allclose(op.matvec(h), np.einsum("brn,bn->br", op.A, h))
    np.testing.assert_allclose(op.gram(), op.A @ op.A.transpose(0, 2, 1))


def test_walsh_pilots_orthonormal_and_scheme1_estimate_exact():
    S = walsh_pilots(32)
    assert S.shape == (32, 128)
    np.testing.assert_allclose(S @ S.T, np.eye(32), atol=1e-14)
    rng = np.random.default_rng(0)
    H = rng.standard_normal((4, 8)) + 1j * rng.standard_normal((4, 8))
    op = make_operator(1, 4, 8, 40, rng=1)
    # Scheme 1 without pilot noise: the UE's estimate is H itself
    fb = feedback(H, scheme=1, R=40, bits=15, add_dither=False, operator=op)
    q = op.matvec(vec_real(H))
    np.testing.assert_allclose(fb.midpoints(), q, atol=2 * np.abs(q).max() / 2 ** 15)


def test_feedback_fields_and_dither():
    rng = np.random.default_rng(0)
    H = rng.standard_normal((2, 4, 6)) + 1j * rng.standard_normal((2, 4, 6))
    fb = feedback(H, scheme=1, R=30, bits=3, rng=5)
    assert fb.z.shape == (2, 30) and fb.z.dtype == np.int16
    assert fb.payload_bits == 90 and fb.side_info_bits == 32 and fb.dither_added
    q = fb.operator.matvec(vec_real(H))
    np.testing.assert_allclose(fb.sigma_nominal, np.linalg.norm(q, axis=-1) / np.sqrt(30 * 1e3))
    np.testing.assert_array_equal(fb.sigma, fb.sigma_nominal)
    fb0 = feedback(H, scheme=1, R=30, bits=3, rng=5, add_dither=False)
    assert not fb0.dither_added and np.all(fb0.sigma == 0) and np.all(fb0.sigma_nominal > 0)
    # same seed, same payload; inputs untouched
    H0 = H.copy()
    fb1 = feedback(H, scheme=1, R=30, bits=3, rng=5)
    np.testing.assert_array_equal(fb1.z, fb.z)
    np.testing.assert_array_equal(H, H0)


@pytest.mark.parametrize("scheme", [1, 2])
def test_pilot_noise_variance(scheme):
    """The recorded per-measurement noise variance matches the empirical one."""
    rng = np.random.default_rng(0)
    H = rng.standard_normal((4, 8)) + 1j * rng.standard_normal((4, 8))
    op = make_operator(scheme, 4, 8, 20, rng=1)
    q0 = op.matvec(vec_real(H))
    diffs = []
    for seed in range(400):
        fb = feedback(H, scheme=scheme, R=20, bits=15, add_dither=False, pilot_snr_db=10, operator=op, rng=seed)
        diffs.append(fb.midpoints() - q0)
    emp = np.var(np.array(diffs), axis=0)
    np.testing.assert_allclose(emp, fb.noise_var, rtol=0.25)


def test_torch_feedback_matches_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    H = rng.standard_normal((3, 4, 6)) + 1j * rng.standard_normal((3, 4, 6))
    fa = feedback(H, scheme=2, R=24, bits=3, rng=2, pilot_snr_db=15)
    fb = feedback(torch.as_tensor(H), scheme=2, R=24, bits=3, rng=2, pilot_snr_db=15)
    assert isinstance(fb.z, torch.Tensor) and isinstance(fb.operator.C, torch.Tensor)
    np.testing.assert_array_equal(fa.z, fb.z.numpy())
    np.testing.assert_allclose(fa.lo, fb.lo.numpy())


def test_ber_substitutes_codewords():
    rng = np.random.default_rng(0)
    H = rng.standard_normal((4, 6)) + 1j * rng.standard_normal((4, 6))
    a = feedback(H, R=2000, bits=3, rng=1)
    b = feedback(H, R=2000, bits=3, rng=1, ber=0.2)
    frac = np.mean(a.z != b.z)
    assert 0.2 * (1 - 1 / 8) - 0.03 < frac < 0.2 * (1 - 1 / 8) + 0.03
    assert set(np.unique(b.z)) <= set(range(-7, 8, 2))


@pytest.mark.parametrize("kw,name", [
    (dict(bits=0), "bits"), (dict(bits=16), "bits"), (dict(R=0), "R"), (dict(scheme=3), "scheme"),
    (dict(ber=1.5), "ber"), (dict(scale=-1.0), "scale"), (dict(scale="min"), "scale"),
    (dict(dither_snr_db=float("nan")), "dither_snr_db")])
def test_feedback_bad_input(kw, name):
    H = np.ones((4, 6), complex)
    args = dict(R=20, bits=3)
    args.update(kw)
    with pytest.raises(InvalidProblemError, match=name):
        feedback(H, **args)


def test_feedback_bad_channel_and_operator():
    H = np.ones((4, 6), complex)
    H[0, 0] = np.nan
    with pytest.raises(InvalidProblemError, match="H"):
        feedback(H, R=20, bits=3)
    with pytest.raises(InvalidProblemError, match="H"):
        feedback(np.ones(5), R=20, bits=3)
    op = make_operator(1, 4, 5, 20)
    with pytest.raises(InvalidProblemError, match="operator"):
        feedback(np.ones((4, 6), complex), R=20, bits=3, operator=op)
    op2 = make_operator(2, 4, 6, 20)
    with pytest.raises(InvalidProblemError, match="operator"):
        feedback(np.ones((4, 6), complex), R=20, bits=3, operator=op2, scheme=1)
    with pytest.raises(InvalidProblemError, match="operator"):
        feedback(np.ones((4, 6), complex), R=21, bits=3, operator=op2, scheme=2)


def test_one_bit_fixed_scale_without_dither_warns():
    with pytest.warns(UserWarning, match="not identifiable"):
        feedback(np.ones((4, 6), complex), R=20, bits=1, scale=1.0, add_dither=False)
