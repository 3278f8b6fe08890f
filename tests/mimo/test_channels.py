"""Channel sources of optkit.mimo (spec mimo §2, §3.6 prior, §3.7, V8)."""

import sys

import mpmath
import numpy as np
import pytest
import scipy.io
import scipy.stats
from conftest import HAS_CUDA

from optkit._errors import DependencyError, InvalidProblemError
from optkit.mimo.channels import (
    clustered_channel,
    geometric_channel,
    load_channels,
    random_channel,
    sionna_cdl_channel,
    ula_correlation,
)


def _gaps_deg(angles_rad):
    s = np.sort(np.rad2deg(angles_rad), axis=-1)
    return np.diff(s, axis=-1)


def _wrapped_min_gap(omega):
    d = np.abs(omega[..., :, None] - omega[..., None, :])
    d = np.minimum(d, 2 * np.pi - np.mod(d, 2 * np.pi))  # |d| < 2 pi here
    k = omega.shape[-1]
    d[..., np.arange(k), np.arange(k)] = np.inf
    return d.min(axis=(-2, -1))


# ------------------------------------------------------------------------------------------- V8
@pytest.mark.parametrize("sampler", ["spacing", "redraw"])
def test_v8_generator(sampler):
    n_r, n_t, k, b = 24, 32, 8, 4000
    ch = random_channel(n_r, n_t, k, batch=b, sampler=sampler, rng=123)
    assert ch.H.shape == (b, n_r, n_t) and ch.H.dtype == np.complex128
    for x in (ch.omega_r, ch.omega_t, ch.beta, ch.aoa, ch.aod):
        assert x.shape == (b, k)
    for ang in (ch.aoa, ch.aod):
        deg = np.rad2deg(ang)
        assert deg.min() >= -86.0 - 1e-12 and deg.max() <= 86.0 + 1e-12
        assert _gaps_deg(ang).min() >= 4.0 - 1e-9
    mag = np.abs(ch.beta) * np.sqrt(k)
    assert mag.min() >= 0.5 - 1e-12 and mag.max() <= 1.0 + 1e-12
    # omega = -pi sin(angle) and H is the K-path model of the stored parameters
    np.testing.assert_allclose(ch.omega_r, -np.pi * np.sin(ch.aoa), rtol=0, atol=1e-15)
    np.testing.assert_allclose(ch.omega_t, -np.pi * np.sin(ch.aod), rtol=0, atol=1e-15)
    m = np.arange(n_r)[:, None]
    n = np.arange(n_t)[None, :]
    H0 = sum(ch.beta[0, i] * np.exp(1j * (m * ch.omega_r[0, i] + n * ch.omega_t[0, i])) for i in range(k))
    np.testing.assert_allclose(ch.H[0], H0, rtol=0, atol=1e-13)
    power = (np.abs(ch.H) ** 2).sum(axis=(-2, -1))
    assert abs(power.mean() / 448.0 - 1.0) < 0.02
    assert ch.meta["expected_power"] == pytest.approx(448.0)
    assert ch.n_paths == k and ch.meta["sampler"] == sampler


def test_v8_prior_T1():
    T = ula_correlation(8)
    assert T[0, 1] == pytest.approx(-0.27188162, abs=5e-9)


def test_ula_correlation_against_mpmath():
    n = 64
    T = ula_correlation(n)
    mpmath.mp.dps = 30
    L = mpmath.radians(86)
    for d in [0, 1, 2, 7, 31, 63]:
        f = lambda t, d=d: mpmath.cos(mpmath.pi * d * mpmath.sin(t))  # noqa: E731
        ref = float(mpmath.quad(f, mpmath.linspace(-L, L, 2 * (d // 2) + 3)) / (2 * L))
        assert T[0, d] == pytest.approx(ref, abs=1e-13)
    # real symmetric Toeplitz, unit diagonal, positive semidefinite (a correlation matrix)
    assert T.shape == (n, n) and T.dtype == np.float64
    np.testing.assert_array_equal(T, T.T)
    np.testing.assert_array_equal(np.diag(T), np.ones(n))
    np.testing.assert_array_equal(T[5, 9], T[0, 4])
    assert np.linalg.eigvalsh(T).min() > -1e-12
    # Monte-Carlo check of the definition E[cos(pi d sin theta)], theta ~ U[-86°, 86°]
    th = np.random.default_rng(0).uniform(-np.deg2rad(86), np.deg2rad(86), 400_000)
    assert np.mean(np.cos(np.pi * 3 * np.sin(th))) == pytest.approx(T[0, 3], abs=5e-3)
    # spacing generalisation: cos(2 pi s d sin) depends on s d only
    np.testing.assert_allclose(ula_correlation(9, spacing=0.25)[0, ::2], ula_correlation(5)[0], atol=1e-14)
    with pytest.raises(InvalidProblemError, match="max_angle_deg"):
        ula_correlation(4, max_angle_deg=0.0)


# ------------------------------------------------------------------------- sampler distributions
def test_single_path_uniform():
    ch = random_channel(4, 4, 1, batch=3000, rng=5)
    for ang in (ch.aoa, ch.aod):
        x = np.rad2deg(ang[:, 0])
        assert scipy.stats.kstest(x, scipy.stats.uniform(loc=-86, scale=172).cdf).pvalue > 1e-3


def _rejection_reference(gen, m, k, lo, hi, sep):
    """Brute force: iid uniform sets, keep those with all gaps >= sep (exactly uniform over valid sets)."""
    out = []
    while sum(len(o) for o in out) < m:
        x = gen.uniform(lo, hi, size=(4 * m, k))
        ok = np.diff(np.sort(x, axis=-1), axis=-1).min(axis=-1) >= sep
        out.append(x[ok])
    return np.concatenate(out)[:m]


def test_spacing_sampler_uniform_over_valid_sets():
    # K = 3, 30° apart: compare with rejection sampling (acceptance ~ 28%) by two-sample KS tests
    k, sep, m = 3, 30.0, 6000
    ch = random_channel(4, 4, k, batch=m, min_sep_deg=sep, rng=11)
    ref = _rejection_reference(np.random.default_rng(99), m, k, -86.0, 86.0, sep)
    for ang in (ch.aoa, ch.aod):
        x = np.rad2deg(ang)
        assert scipy.stats.ks_2samp(x[:, 0], ref[:, 0]).pvalue > 1e-3  # marginal of one labelled angle
        assert scipy.stats.ks_2samp(x[:, 2], ref[:, 2]).pvalue > 1e-3
        assert scipy.stats.ks_2samp(np.diff(np.sort(x, -1), axis=-1).min(-1),
                                    np.diff(np.sort(ref, -1), axis=-1).min(-1)).pvalue > 1e-3
        assert scipy.stats.ks_2samp(x.max(-1), ref.max(-1)).pvalue > 1e-3
        # labels are exchangeable (not co-sorted) and the law is symmetric
        assert scipy.stats.ks_2samp(x[:, 0], -x[:, 0]).pvalue > 1e-3
        assert 0.3 < np.mean(x[:, 0] < x[:, 1]) < 0.7
    # AoA and AoD are not co-sorted
    assert abs(np.corrcoef(ch.aoa[:, 0], ch.aod[:, 0])[0, 1]) < 0.05


def test_spacing_sampler_min_gap_law():
    # Uniform over valid sets <=> the shifted sorted points are K uniform points on [0, W'], W' = 172 - 7*4;
    # their K-1 interior spacings give P(min gap - 4 > g) = (1 - 7 g / W')^8 (exchangeable Dirichlet spacings).
    k, w = 8, 172.0 - 7 * 4.0
    ch = random_channel(24, 32, k, batch=3000, rng=3)
    cdf = lambda g: 1.0 - np.clip(1.0 - (k - 1) * (np.asarray(g) - 4.0) / w, 0.0, 1.0) ** k  # noqa: E731
    for ang in (ch.aoa, ch.aod):
        g = _gaps_deg(ang).min(axis=-1)
        assert g.min() >= 4.0 - 1e-9
        assert scipy.stats.kstest(g, cdf).pvalue > 1e-3
    assert abs(np.mean(ch.aoa)) < 0.02


def test_spacing_sampler_tight_packing():
    # min_sep_deg*(K-1) == 180 - 2*edge_deg: the only valid sets are a full 4° comb
    ch = random_channel(24, 32, 44, batch=5, rng=0)
    np.testing.assert_allclose(_gaps_deg(ch.aoa), 4.0, atol=1e-9)
    np.testing.assert_allclose(np.sort(np.rad2deg(ch.aod), axis=-1)[:, 0], -86.0, atol=1e-9)


@pytest.mark.parametrize("sampler", ["spacing", "redraw"])
def test_frequency_separation(sampler):
    k, b = 8, 1000
    ch = random_channel(24, 32, k, batch=b, separation="frequency", sampler=sampler, rng=7)
    thr = np.pi * np.sin(np.deg2rad(4.0))
    assert ch.meta["min_sep_omega"] == pytest.approx(thr)
    for om, ang in ((ch.omega_r, ch.aoa), (ch.omega_t, ch.aod)):
        assert _wrapped_min_gap(om).min() >= thr - 1e-12
        assert _gaps_deg(ang).min() >= 4.0 - 1e-9
    # the angle rule alone violates it often (e.g. ±86° alias to |Δω| = 0.0153), so the check has teeth
    plain = random_channel(24, 32, k, batch=b, rng=7)
    assert np.mean(_wrapped_min_gap(plain.omega_r) < thr) > 0.2
    assert 2 * np.pi - 2 * np.pi * np.sin(np.deg2rad(86)) == pytest.approx(0.0153, abs=1e-4)
    # spacing = 1 wavelength: grating lobes, still separated on the circle
    ch = random_channel(8, 8, 3, batch=300, spacing=1.0, separation="frequency", rng=1)
    assert _wrapped_min_gap(ch.omega_r).min() >= 2 * np.pi * np.sin(np.deg2rad(4.0)) - 1e-12
    np.testing.assert_allclose(ch.omega_t, -2 * np.pi * np.sin(ch.aod), atol=1e-15)


# ---------------------------------------------------------------------------- options, backends
def test_batch_and_seeding():
    a = random_channel(6, 8, 3, rng=4)
    assert a.H.shape == (6, 8) and a.beta.shape == (3,) and a.batch_shape == ()
    b = random_channel(6, 8, 3, batch=1, rng=4)
    np.testing.assert_array_equal(b.H[0], a.H)
    np.testing.assert_array_equal(random_channel(6, 8, 3, rng=4).H, a.H)
    assert not np.array_equal(random_channel(6, 8, 3, rng=5).H, a.H)
    np.testing.assert_array_equal(random_channel(6, 8, 3, rng=np.random.SeedSequence(4)).H,
                                  random_channel(6, 8, 3, rng=np.random.SeedSequence(4)).H)
    np.testing.assert_array_equal(random_channel(6, 8, 3, rng=np.random.default_rng(4)).H, a.H)
    c = random_channel(6, 8, 3, batch=(2, 5), rng=4)
    assert c.H.shape == (2, 5, 6, 8) and c.omega_r.shape == (2, 5, 3)
    # draws within a batch are distinct
    assert not np.allclose(c.H[0, 0], c.H[0, 1])
    d = random_channel(6, 8, 3, batch=50, beta_low=0.2, beta_high=0.3, rng=0)
    assert np.abs(d.beta).max() * np.sqrt(3) <= 0.3 + 1e-12 and np.abs(d.beta).min() * np.sqrt(3) >= 0.2 - 1e-12
    assert d.meta["expected_power"] == pytest.approx(48 * (0.04 + 0.06 + 0.09) / 3)
    e = random_channel(6, 8, 3, batch=20, edge_deg=30.0, min_sep_deg=10.0, rng=0)
    assert np.abs(np.rad2deg(e.aoa)).max() <= 60.0 + 1e-12 and _gaps_deg(e.aod).min() >= 10.0 - 1e-9


def test_numpy_dtype_option():
    ch = random_channel(4, 6, 2, batch=3, dtype=np.complex64, rng=1)
    assert ch.H.dtype == np.complex64 and ch.omega_r.dtype == np.float32 and ch.beta.dtype == np.complex64
    ref = random_channel(4, 6, 2, batch=3, rng=1)
    np.testing.assert_allclose(ch.H, ref.H, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA,
                                                                                         reason="needs CUDA"))])
def test_torch_output(device):
    torch = pytest.importorskip("torch")
    ref = random_channel(5, 7, 2, batch=4, rng=2)
    ch = random_channel(5, 7, 2, batch=4, rng=2, device=device)
    assert ch.H.dtype == torch.complex128 and ch.omega_r.dtype == torch.float64 and ch.H.device.type == device
    np.testing.assert_array_equal(ch.H.cpu().numpy(), ref.H)
    np.testing.assert_array_equal(ch.aod.cpu().numpy(), ref.aod)
    c32 = random_channel(5, 7, 2, batch=4, rng=2, dtype=torch.float32, device=device)
    assert c32.H.dtype == torch.complex64 and c32.beta.dtype == torch.complex64 and c32.aoa.dtype == torch.float32
    c64 = random_channel(5, 7, 2, rng=2, dtype=torch.complex64)
    assert c64.H.dtype == torch.complex64 and c64.H.shape == (5, 7)
    cl = clustered_channel(5, 7, batch=3, rng=1, device=device)
    np.testing.assert_array_equal(cl.H.cpu().numpy(), clustered_channel(5, 7, batch=3, rng=1).H)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_paths=0), "n_paths"),
    (dict(n_paths=2.0), "n_paths"),
    (dict(n_paths=5, min_sep_deg=45.0), "min_sep_deg"),
    (dict(n_paths=3, sampler="poisson"), "sampler"),
    (dict(n_paths=3, separation="omega"), "separation"),
    (dict(n_paths=3, beta_low=0.0), "beta_low"),
    (dict(n_paths=3, beta_low=0.8, beta_high=0.5), "beta_high"),
    (dict(n_paths=3, batch=0), "batch"),
    (dict(n_paths=3, edge_deg=90.0), "edge_deg"),
    (dict(n_paths=3, spacing=-0.5), "spacing"),
    (dict(n_paths=3, dtype=np.int32), "dtype"),
    (dict(n_paths=8, min_sep_deg=20.0, separation="frequency"), "min_sep_deg"),
])
def test_random_channel_errors(kwargs, name):
    with pytest.raises(InvalidProblemError, match=name):
        random_channel(14, 14, **kwargs)


def test_random_channel_limits():
    random_channel(12, 16, 48, rng=0, min_sep_deg=3.0)  # K = Nr Nt / 4 is allowed
    with pytest.raises(InvalidProblemError, match="n_paths"):
        random_channel(12, 16, 49, rng=0, min_sep_deg=3.0)
    with pytest.raises(InvalidProblemError, match="min_sep_deg"):
        random_channel(24, 32, 45)  # 4*44 = 176 > 172
    with pytest.raises(InvalidProblemError, match="n_r"):
        random_channel(0, 4, 1)


# ------------------------------------------------------------------------------------- clustered
def test_clustered_power_and_structure():
    n_r, n_t, b = 16, 24, 4000
    ch = clustered_channel(n_r, n_t, batch=b, rng=0)
    assert ch.H.shape == (b, n_r, n_t) and ch.beta.shape == (b, 40) and ch.n_paths == 40
    power = (np.abs(ch.H) ** 2).sum(axis=(-2, -1))
    assert abs(power.mean() / (n_r * n_t) - 1.0) < 0.03
    np.testing.assert_allclose((np.abs(ch.beta) ** 2).sum(-1), 1.0, rtol=1e-12)
    # 3 dB per cluster
    cl = (np.abs(ch.beta[0]) ** 2).reshape(4, 10).sum(-1)
    np.testing.assert_allclose(cl[1:] / cl[:-1], 10 ** -0.3, rtol=1e-12)
    # stored paths reproduce H; angles folded into [-90°, 90°]
    np.testing.assert_allclose(ch.H[:3], geometric_channel(ch.omega_r[:3], ch.omega_t[:3], ch.beta[:3], n_r, n_t),
                               atol=1e-12)
    assert np.abs(ch.aoa).max() <= np.pi / 2 and np.abs(ch.aod).max() <= np.pi / 2
    np.testing.assert_allclose(ch.omega_r, -np.pi * np.sin(ch.aoa), atol=1e-14)
    # per-draw power is not normalised
    assert power.std() / power.mean() > 0.05


def test_clustered_spreads_and_rician():
    b = 3000
    ch = clustered_channel(8, 8, batch=b, centre_deg=30.0, rng=1)
    aod = np.rad2deg(ch.aod).reshape(b, 4, 10)
    aoa = np.rad2deg(ch.aoa).reshape(b, 4, 10)
    # within-cluster sample variance is unbiased for the RMS spread squared
    assert np.sqrt(aod.var(axis=-1, ddof=1).mean()) == pytest.approx(2.0, rel=0.05)
    assert np.sqrt(aoa.var(axis=-1, ddof=1).mean()) == pytest.approx(10.0, rel=0.05)
    # Laplacian, not Gaussian: excess kurtosis 3
    off = (aod - aod.mean(axis=-1, keepdims=True)).ravel()
    assert scipy.stats.kurtosis(off) > 1.5
    # Rician LoS: power fraction K/(K+1), stored last, at the strongest cluster's centre
    kf = 3.0
    ch = clustered_channel(16, 24, batch=4000, rician_k=kf, rng=2)
    assert ch.beta.shape == (4000, 41) and ch.meta["los_index"] == 40
    np.testing.assert_allclose(np.abs(ch.beta[:, -1]) ** 2, kf / (kf + 1), rtol=1e-12)
    np.testing.assert_allclose((np.abs(ch.beta) ** 2).sum(-1), 1.0, rtol=1e-12)
    power = (np.abs(ch.H) ** 2).sum(axis=(-2, -1))
    assert abs(power.mean() / (16 * 24) - 1.0) < 0.03
    with pytest.raises(InvalidProblemError, match="rician_k"):
        clustered_channel(4, 4, rician_k=-1.0)
    with pytest.raises(InvalidProblemError, match="n_clusters"):
        clustered_channel(4, 4, n_clusters=0)
    with pytest.raises(InvalidProblemError, match="centre_deg"):
        clustered_channel(4, 4, centre_deg=100.0)
    single = clustered_channel(4, 5, rng=3)
    assert single.H.shape == (4, 5) and single.beta.shape == (40,)


# ---------------------------------------------------------------------------------- sionna, files
def test_sionna_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sionna", None)
    with pytest.raises(DependencyError, match="mimo-3gpp"):
        sionna_cdl_channel(4, 8)


def test_sionna_cdl():
    pytest.importorskip("sionna.phy")
    ch = sionna_cdl_channel(4, 8, batch=64, rng=0)
    assert ch.H.shape == (64, 4, 8) and ch.omega_r is None
    assert np.isfinite(ch.H).all()
    assert 0.5 < (np.abs(ch.H) ** 2).mean() < 2.0


def test_load_npz_and_npy(tmp_path):
    H = random_channel(4, 6, 2, batch=3, rng=0).H
    np.savez(tmp_path / "h.npz", H=H, G=H[0].real)
    ch = load_channels(tmp_path / "h.npz")
    np.testing.assert_array_equal(ch.H, H)
    assert ch.H.dtype == np.complex128 and ch.omega_r is None and ch.meta["key"] == "H"
    ch = load_channels(str(tmp_path / "h.npz"), key="G")
    np.testing.assert_array_equal(ch.H, H[0].real.astype(complex))
    np.save(tmp_path / "h.npy", H[1])
    np.testing.assert_array_equal(load_channels(tmp_path / "h.npy").H, H[1])
    with pytest.raises(InvalidProblemError, match="key"):
        load_channels(tmp_path / "h.npz", key="X")


def test_load_mat(tmp_path):
    H = random_channel(4, 6, 2, batch=5, rng=1).H  # users x Nr x Nt
    scipy.io.savemat(tmp_path / "b5g.mat", {"user_channel_data": H, "actual_num_paths": np.arange(5.0)})
    ch = load_channels(tmp_path / "b5g.mat")
    np.testing.assert_array_equal(ch.H, H)
    assert ch.H.shape == (5, 4, 6)
    np.testing.assert_array_equal(np.ravel(ch.meta["actual_num_paths"]), np.arange(5.0))
    scipy.io.savemat(tmp_path / "one.mat", {"Hm": H[0]})
    np.testing.assert_array_equal(load_channels(tmp_path / "one.mat", key="Hm").H, H[0])
    with pytest.raises(InvalidProblemError, match="user_channel_data"):
        load_channels(tmp_path / "one.mat")


def _write_v73(path, arrays):
    """A MATLAB v7.3 file: HDF5 with a 512-byte MAT header (version 0x0200), column-major data."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in arrays.items():
            a = np.asarray(a).T  # MATLAB writes the reversed dimension order
            if np.iscomplexobj(a):
                rec = np.empty(a.shape, dtype=[("real", "<f8"), ("imag", "<f8")])
                rec["real"], rec["imag"] = a.real, a.imag
                a = rec
            f.create_dataset(name, data=a)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)


def test_load_mat_v73(tmp_path, monkeypatch):
    H = random_channel(3, 5, 1, batch=4, rng=2).H
    p = tmp_path / "v73.mat"
    _write_v73(p, {"user_channel_data": H})
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(p)  # scipy refuses v7.3: the h5py path is what is tested below
    ch = load_channels(p)
    np.testing.assert_array_equal(ch.H, H)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DependencyError, match="h5py"):
        load_channels(p)


def test_load_errors(tmp_path):
    with pytest.raises(InvalidProblemError, match="path"):
        load_channels(tmp_path / "missing.npz")
    (tmp_path / "h.txt").write_text("1 2")
    with pytest.raises(InvalidProblemError, match="unsupported"):
        load_channels(tmp_path / "h.txt")
    np.savez(tmp_path / "bad.npz", H=np.ones(5), S=np.array(["a", "b"]), N=np.full((2, 2), np.nan),
             T=np.ones((2, 2, 2, 2)))
    with pytest.raises(InvalidProblemError, match=r"bad\.npz.*2-D"):
        load_channels(tmp_path / "bad.npz")
    with pytest.raises(InvalidProblemError, match="numeric"):
        load_channels(tmp_path / "bad.npz", key="S")
    with pytest.raises(InvalidProblemError, match="non-finite"):
        load_channels(tmp_path / "bad.npz", key="N")
    with pytest.raises(InvalidProblemError, match="3-D"):
        load_channels(tmp_path / "bad.npz", key="T")
