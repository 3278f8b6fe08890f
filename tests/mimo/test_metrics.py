"""Metrics of optkit.mimo (spec mimo §3.7): numpy loops and closed forms as references."""

import numpy as np
import pytest
from conftest import HAS_CUDA

from optkit._errors import InvalidProblemError
from optkit.mimo.metrics import beamforming_gain, cosine_similarity, nmse, nmse_db, summarize

BACKENDS = ["numpy", "torch", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA"))]


def _conv(x, backend):
    if backend == "numpy":
        return x
    torch = pytest.importorskip("torch")
    return torch.as_tensor(x, device="cuda" if backend == "cuda" else "cpu")


def _host(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _cplx(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _refs(Hh, H):
    """Per-user references computed by explicit loops (np.linalg.norm, np.vdot, eigh)."""
    out = {k: np.empty(H.shape[:-2]) for k in ("nmse", "cos", "matched", "svd")}
    for i in np.ndindex(H.shape[:-2]):
        a, b = Hh[i], H[i]
        out["nmse"][i] = np.linalg.norm(a - b) ** 2 / np.linalg.norm(b) ** 2
        ip = np.vdot(a, b)
        out["cos"][i] = abs(ip) / (np.linalg.norm(a) * np.linalg.norm(b))
        out["matched"][i] = abs(ip) ** 2 / np.linalg.norm(a) ** 2
        # dominant right singular vector of a = top eigenvector of a^H a
        w, V = np.linalg.eigh(a.conj().T @ a)
        v = V[:, -1]
        out["svd"][i] = np.linalg.norm(b @ v) ** 2 / np.linalg.eigvalsh(b.conj().T @ b)[-1]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_against_loops(backend):
    rng = np.random.default_rng(0)
    H = _cplx(rng, 2, 3, 4, 6)
    Hh = H + 0.7 * _cplx(rng, 2, 3, 4, 6)
    ref = _refs(Hh, H)
    h, hh = _conv(H, backend), _conv(Hh, backend)
    for fn, key in ((nmse, "nmse"), (cosine_similarity, "cos")):
        v = fn(hh, h)
        assert type(v) is type(h) and tuple(v.shape) == (2, 3)
        np.testing.assert_allclose(_host(v), ref[key], rtol=1e-12)
    np.testing.assert_allclose(_host(nmse_db(hh, h)), 10 * np.log10(ref["nmse"]), rtol=1e-12)
    np.testing.assert_allclose(_host(beamforming_gain(hh, h)), ref["matched"], rtol=1e-12)
    svd = _host(beamforming_gain(hh, h, kind="svd"))
    np.testing.assert_allclose(svd, ref["svd"], rtol=1e-10)
    assert (svd > 0).all() and (svd <= 1 + 1e-12).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_forms(backend):
    rng = np.random.default_rng(1)
    H = _cplx(rng, 5, 4, 6)
    p = (np.abs(H) ** 2).sum(axis=(-2, -1))
    h = _conv(H, backend)
    # perfect estimate
    np.testing.assert_allclose(_host(nmse(h, h)), 0.0, atol=0)
    assert np.all(_host(nmse_db(h, h)) == -np.inf)
    np.testing.assert_allclose(_host(cosine_similarity(h, h)), 1.0, rtol=1e-14)
    np.testing.assert_allclose(_host(beamforming_gain(h, h)), p, rtol=1e-13)
    np.testing.assert_allclose(_host(beamforming_gain(h, h, kind="svd")), 1.0, rtol=1e-12)
    # scaled estimate c H
    c = 0.6 - 0.8j
    ch = _conv(c * H, backend)
    np.testing.assert_allclose(_host(nmse(ch, h)), abs(c - 1) ** 2, rtol=1e-13)
    np.testing.assert_allclose(_host(cosine_similarity(ch, h)), 1.0, rtol=1e-14)
    np.testing.assert_allclose(_host(beamforming_gain(ch, h)), p, rtol=1e-13)
    np.testing.assert_allclose(_host(beamforming_gain(ch, h, kind="svd")), 1.0, rtol=1e-12)
    # zero estimate
    z = _conv(np.zeros_like(H), backend)
    np.testing.assert_allclose(_host(nmse(z, h)), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(_host(cosine_similarity(z, h)), 0.0)
    np.testing.assert_array_equal(_host(beamforming_gain(z, h)), 0.0)
    np.testing.assert_array_equal(_host(beamforming_gain(z, h, kind="svd")), 0.0)


def test_rank_one_svd_gain():
    # H = a b^T, H_hat = c d^T: v_hat ∝ conj(d), gain = |d^H b|^2 / (||b||^2 ||d||^2)
    rng = np.random.default_rng(2)
    a, b, c, d = _cplx(rng, 5), _cplx(rng, 7), _cplx(rng, 5), _cplx(rng, 7)
    H, Hh = np.outer(a, b), np.outer(c, d)
    ref = abs(np.vdot(d, b)) ** 2 / (np.vdot(b, b).real * np.vdot(d, d).real)
    assert beamforming_gain(Hh, H, kind="svd") == pytest.approx(ref, rel=1e-10)
    # matched gain closed form: |<c d^T, a b^T>|^2 / ||c d^T||^2 = |c^H a|^2 |d^H b|^2 / (||c||^2 ||d||^2)
    ref_m = abs(np.vdot(c, a) * np.vdot(d, b)) ** 2 / (np.vdot(c, c).real * np.vdot(d, d).real)
    assert beamforming_gain(Hh, H) == pytest.approx(ref_m, rel=1e-12)
    assert beamforming_gain(Hh, H).shape == ()


def test_real_inputs_and_mixed_backends():
    rng = np.random.default_rng(3)
    H, Hh = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    ref = _refs(Hh.astype(complex), H.astype(complex))
    np.testing.assert_allclose(nmse(Hh, H), ref["nmse"], rtol=1e-12)
    np.testing.assert_allclose(cosine_similarity(Hh, H), ref["cos"], rtol=1e-12)
    np.testing.assert_allclose(beamforming_gain(Hh, H, kind="svd"), ref["svd"], rtol=1e-10)
    # real estimate of a complex channel
    Hc = _cplx(rng, 3, 4, 5)
    np.testing.assert_allclose(beamforming_gain(Hh, Hc), _refs(Hh.astype(complex), Hc)["matched"], rtol=1e-12)
    torch = pytest.importorskip("torch")
    v = nmse(torch.as_tensor(Hh), H)  # numpy argument moves to the tensor's device
    assert isinstance(v, torch.Tensor)
    np.testing.assert_allclose(v.numpy(), ref["nmse"], rtol=1e-12)
    v = cosine_similarity(Hh, torch.as_tensor(H, dtype=torch.float32))
    np.testing.assert_allclose(v.numpy(), ref["cos"], rtol=1e-6)


def test_torch_gradient_flows():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    H = torch.as_tensor(_cplx(rng, 2, 3, 4))
    Hh = torch.tensor(_cplx(rng, 2, 3, 4), requires_grad=True)
    nmse(Hh, H).sum().backward()
    # d/d conj(Hh) of ||Hh - H||^2/||H||^2 -> torch's gradient convention: 2 (Hh - H)/||H||^2
    ref = 2 * (Hh.detach() - H) / (H.abs() ** 2).sum(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(Hh.grad, ref)


def test_errors_and_zero_channel():
    rng = np.random.default_rng(5)
    H = _cplx(rng, 3, 4, 5)
    with pytest.raises(InvalidProblemError, match="H_hat"):
        nmse(H[:, :, :4], H)
    with pytest.raises(InvalidProblemError, match="H_hat"):
        cosine_similarity(H[0], H)
    with pytest.raises(InvalidProblemError, match="H"):
        nmse(H[0, 0], H[0, 0])
    with pytest.raises(InvalidProblemError, match="kind"):
        beamforming_gain(H, H, kind="mmse")
    with pytest.raises(InvalidProblemError, match="H_hat"):
        nmse(np.array([["a"]]), np.ones((1, 1)))
    Z = np.zeros((4, 5))
    assert np.isnan(nmse(Z, Z)) and nmse(H[0], Z) == np.inf
    assert np.isnan(beamforming_gain(H[0], Z, kind="svd"))
    np.testing.assert_array_equal(H, _cplx(np.random.default_rng(5), 3, 4, 5))  # inputs untouched


def test_summarize():
    rng = np.random.default_rng(6)
    x = rng.lognormal(size=200)
    s = summarize(x)
    assert set(s) == {"mean", "median", "p90", "ci_low", "ci_high", "n", "n_nan"}
    assert s["mean"] == pytest.approx(x.mean()) and s["median"] == pytest.approx(np.median(x))
    assert s["p90"] == pytest.approx(np.quantile(x, 0.9)) and s["n"] == 200 and s["n_nan"] == 0
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    # the 95% CI half-width is about 1.96 standard errors
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert (s["ci_high"] - s["ci_low"]) / (2 * 1.96 * se) == pytest.approx(1.0, rel=0.15)
    assert summarize(x) == s  # seeded
    # NaN-aware
    y = np.concatenate([x, [np.nan, np.nan]])
    t = summarize(y)
    assert t["n"] == 200 and t["n_nan"] == 2 and t["mean"] == pytest.approx(x.mean())
    one = summarize([3.0])
    assert one["mean"] == one["ci_low"] == one["ci_high"] == 3.0
    empty = summarize([np.nan])
    assert empty["n"] == 0 and empty["n_nan"] == 1 and np.isnan(empty["mean"])
    torch = pytest.importorskip("torch")
    u = summarize(torch.as_tensor(x), n_boot=500)
    assert u["mean"] == pytest.approx(x.mean()) and u["ci_low"] < u["mean"] < u["ci_high"]
    with pytest.raises(InvalidProblemError, match="n_boot"):
        summarize(x, n_boot=0)
    # bootstrap coverage of the mean over repeated samples is near 95%
    hits = 0
    for i in range(200):
        z = np.random.default_rng(100 + i).exponential(size=60)
        r = summarize(z, n_boot=400, rng=i)
        hits += r["ci_low"] <= 1.0 <= r["ci_high"]
    assert 0.85 <= hits / 200 <= 0.99
