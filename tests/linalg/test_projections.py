"""Simplex and k-sparse simplex projections (spec ot.md §6.2), numpy and torch CPU float64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optkit import InvalidProblemError
from optkit.linalg import projection_simplex, projection_sparse_simplex
from optkit.linalg.projections import _topk_desc

torch = pytest.importorskip("torch")

from conftest import as_backend, to_np  # noqa: E402

BACKENDS = ["numpy", "torch"]




def brute_sparse_simplex(v, k, z):
    """max over k-sparse p in z-simplex of <v,p> - |p|^2/2, by enumerating supports.

    On a support Q the equality-constrained maximiser is p_Q = v_Q - lam, lam = (sum v_Q - z)/|Q|;
    it is a candidate when nonnegative. The optimum's support is one of these (KKT on its
    support), and every candidate is feasible, so the max over candidates is the optimum. No
    sorting or threshold search: independent of the implementation.
    """
    m = len(v)
    best, best_p = -np.inf, None
    for size in range(1, min(k, m) + 1):
        for Q in itertools.combinations(range(m), size):
            Q = list(Q)
            lam = (v[Q].sum() - z) / size
            pQ = v[Q] - lam
            if np.all(pQ >= 0):
                p = np.zeros(m)
                p[Q] = pQ
                obj = v @ p - 0.5 * p @ p
                if obj > best:
                    best, best_p = obj, p
    return best, best_p


# ----------------------------------------------------------------------------------------------
# simplex projection
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_projection_simplex_matches_cvxpy(backend):
    cp = pytest.importorskip("cvxpy")
    rng = np.random.RandomState(0)
    for m, z in ((1, 1.0), (4, 1.0), (7, 2.5), (12, 0.3)):
        v = rng.randn(m) * 2
        p = cp.Variable(m)
        cp.Problem(cp.Minimize(cp.sum_squares(p - v)), [p >= 0, cp.sum(p) == z]).solve()
        got = to_np(projection_simplex(as_backend(v, backend), z=z))
        np.testing.assert_allclose(got, p.value, atol=1e-6)
        assert got.min() >= 0 and abs(got.sum() - z) <= 1e-12 * max(1, z)


@pytest.mark.parametrize("backend", BACKENDS)
def test_projection_simplex_axis_batch_and_per_slice_mass(backend):
    rng = np.random.RandomState(1)
    V = rng.randn(3, 5, 4)
    z = rng.rand(3, 4) + 0.5  # one mass per slice along axis 1
    P = to_np(projection_simplex(as_backend(V, backend), z=as_backend(z, backend), axis=1))
    assert P.shape == V.shape
    np.testing.assert_allclose(P.sum(axis=1), z, rtol=0, atol=1e-14)
    for i in range(3):
        for j in range(4):
            ref = to_np(projection_simplex(as_backend(V[i, :, j], backend), z=z[i, j]))
            np.testing.assert_allclose(P[i, :, j], ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_projection_simplex_point_inside_is_fixed(backend):
    p = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(to_np(projection_simplex(as_backend(p, backend))), p, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# k-sparse simplex projection (6.2)
# ----------------------------------------------------------------------------------------------

_entries = st.one_of(
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
    st.integers(-3, 3).map(float),  # ties, including at rank k
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(v=st.lists(_entries, min_size=1, max_size=7), k=st.integers(1, 8),
       z=st.floats(0.1, 10, allow_nan=False))
def test_sparse_simplex_properties(backend, v, k, z):
    v = np.array(v)
    m = len(v)
    p = to_np(projection_sparse_simplex(as_backend(v, backend), k, z=z))
    scale = max(1.0, z, np.abs(v).max())
    assert p.shape == v.shape
    assert p.min() >= 0
    assert abs(p.sum() - z) <= 1e-12 * scale
    assert np.count_nonzero(p) <= k
    full = to_np(projection_simplex(as_backend(v, backend), z=z))
    if k >= m or np.count_nonzero(full) <= k:
        np.testing.assert_allclose(p, full, rtol=0, atol=1e-12 * scale)
    best, _ = brute_sparse_simplex(v, k, z)
    obj = v @ p - 0.5 * p @ p
    assert abs(obj - best) <= 1e-11 * scale**2


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_simplex_equals_unique_brute_force_minimiser(backend):
    rng = np.random.RandomState(2)
    for _ in range(100):
        m = rng.randint(1, 8)
        k = rng.randint(1, m + 1)
        z = rng.uniform(0.1, 3)
        v = rng.randn(m)
        _, ref = brute_sparse_simplex(v, k, z)
        got = to_np(projection_sparse_simplex(as_backend(v, backend), k, z=z))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)


def test_sparse_simplex_ties_lowest_index_numpy():
    np.testing.assert_array_equal(projection_sparse_simplex(np.ones(5), 2), [0.5, 0.5, 0, 0, 0])
    v = np.array([0.0, 2.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(projection_sparse_simplex(v, 2), [0, 0.5, 0, 0.5, 0])
    # the argpartition path (k above the argmax-loop threshold) follows the same rule
    v = np.r_[np.full(12, 1.0), 3.0, np.full(5, 1.0)]
    p = projection_sparse_simplex(v, 10, z=10.0)
    assert p[12] > 0 and np.all(p[:9] > 0) and np.all(p[9:12] == 0) and np.all(p[13:] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_simplex_axis_batch_per_slice_mass(backend):
    rng = np.random.RandomState(3)
    V = rng.randn(6, 4, 2)
    z = rng.rand(4, 2) + 0.1
    P = to_np(projection_sparse_simplex(as_backend(V, backend), 2, z=as_backend(z, backend),
                                        axis=0))
    assert np.all(np.count_nonzero(P, axis=0) <= 2)
    np.testing.assert_allclose(P.sum(axis=0), z, rtol=0, atol=1e-14)
    for i in range(4):
        for j in range(2):
            ref = to_np(projection_sparse_simplex(as_backend(V[:, i, j], backend), 2, z=z[i, j]))
            np.testing.assert_allclose(P[:, i, j], ref, rtol=0, atol=1e-15)


def test_numpy_and_torch_agree():
    rng = np.random.RandomState(4)
    V = rng.randn(20, 9)
    for k in (1, 3, 9, 12):
        np.testing.assert_allclose(projection_sparse_simplex(V, k),
                                   to_np(projection_sparse_simplex(torch.tensor(V), k)),
                                   rtol=0, atol=1e-15)


def test_topk_helper_paths_match_stable_sort():
    rng = np.random.RandomState(5)
    X = rng.randint(-2, 3, size=(4, 30, 17)).astype(float)  # many ties
    ref = np.argsort(-X, axis=-1, kind="stable")
    for k in (1, 2, 8, 9, 12, 16, 17, 20):
        Xc = X.copy()
        vals, idx = _topk_desc(Xc, k)
        kk = min(k, 17)
        np.testing.assert_array_equal(idx, ref[..., :kk])
        np.testing.assert_array_equal(vals, np.take_along_axis(X, ref[..., :kk], -1))
        np.testing.assert_array_equal(Xc, X)  # overwrite=False leaves X alone
        assert idx.dtype == np.int64


# ----------------------------------------------------------------------------------------------
# contract: dtypes, no mutation, errors
# ----------------------------------------------------------------------------------------------

def test_dtypes_and_no_mutation():
    v = np.array([3, 1, 2])  # integers: cast to float64
    p = projection_sparse_simplex(v, 2)
    assert p.dtype == np.float64
    np.testing.assert_array_equal(v, [3, 1, 2])
    t = torch.tensor([0.3, -0.2, 0.9, 0.1], dtype=torch.float32)
    t0 = t.clone()
    for out in (projection_simplex(t), projection_sparse_simplex(t, 2)):
        assert out.dtype == torch.float32 and out.device == t.device
    assert torch.equal(t, t0)
    V = np.random.RandomState(6).randn(5, 4)
    V0 = V.copy()
    projection_sparse_simplex(V, 2, axis=0)
    projection_sparse_simplex(V, 1, axis=1)
    projection_simplex(V, axis=0)
    np.testing.assert_array_equal(V, V0)


def test_invalid_inputs():
    v = np.array([0.2, 0.5, 0.1])
    for bad in (0, -1, True, 2.0, "2"):
        with pytest.raises(InvalidProblemError, match="max_nz"):
            projection_sparse_simplex(v, bad)
    projection_sparse_simplex(v, np.int64(2))  # numpy integers are fine
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidProblemError, match="z"):
            projection_simplex(v, z=bad)
    with pytest.raises(InvalidProblemError, match="v"):
        projection_simplex(np.array([1.0, np.nan]))
    with pytest.raises(InvalidProblemError, match="axis"):
        projection_simplex(v, axis=1)
    with pytest.raises(InvalidProblemError, match="z"):
        projection_simplex(np.ones((2, 3)), z=np.ones(3))
