"""Projections onto coupled sets C (spec bilevel §3.2, §6 V1-V4, §9.8/§9.14) against cvxpy/Clarabel."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optkit import InvalidProblemError
from optkit._errors import BackendError
from optkit.bilevel import BilevelProblem, Box, LowerLP, LowerQP, problems
from optkit.bilevel.sets import (
    Affine,
    BoxC,
    BudgetCone,
    Dykstra,
    Halfspace,
    Hyperplane,
    LowerTriangle,
    Polyhedron,
    SimplexC,
    from_lower,
)

torch = pytest.importorskip("torch")
cp = pytest.importorskip("cvxpy")

from conftest import as_backend, to_np  # noqa: E402

BACKENDS = ["numpy", "torch"]


def cvx_proj(x0, y0, cons_fn):
    """Reference projection of (x0, y0) onto {cons_fn(x, y)} by Clarabel."""
    x, y = cp.Variable(x0.shape[0]), cp.Variable(y0.shape[0])
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - x0) + 0.5 * cp.sum_squares(y - y0)), cons_fn(x, y))
    try:
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11, max_iter=500)
    except cp.error.SolverError:  # Clarabel occasionally stalls at the tightest settings
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9, max_iter=500)
    assert prob.status == "optimal"
    return x.value, y.value


def run(S, x, y, backend):
    px, py = S(as_backend(x, backend), as_backend(y, backend))
    if backend == "torch":
        assert isinstance(px, torch.Tensor) and px.dtype == torch.float64
    else:
        assert isinstance(px, np.ndarray) and px.dtype == np.float64
    return to_np(px), to_np(py)


def check_batched(S, X, Y, backend, atol=1e-12):
    """A (2, 3, .) batch equals the single calls."""
    BX, BY = run(S, X, Y, backend)
    assert BX.shape == X.shape and BY.shape == Y.shape
    for idx in np.ndindex(X.shape[:-1]):
        sx, sy = run(S, X[idx], Y[idx], backend)
        np.testing.assert_allclose(BX[idx], sx, atol=atol)
        np.testing.assert_allclose(BY[idx], sy, atol=atol)


def rand(seed, *shape, s=2.0):
    return s * np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nx, ny", [(1, 1), (3, 5), (10, 4)])
def test_halfspace_and_hyperplane_match_cvxpy(backend, nx, ny):
    rng = np.random.default_rng(nx * 10 + ny)
    a, b = rng.standard_normal(nx + ny), rng.standard_normal()
    for seed in range(3):
        x0, y0 = rand(seed, nx), rand(seed + 50, ny)
        for S, kind in ((Halfspace(a, b), "<="), (Hyperplane(a, b), "==")):
            def cons(x, y, kind=kind):
                lhs = a[:nx] @ x + a[nx:] @ y
                return [lhs <= b] if kind == "<=" else [lhs == b]
            rx, ry = cvx_proj(x0, y0, cons)
            px, py = run(S, x0, y0, backend)
            np.testing.assert_allclose(px, rx, atol=1e-8)
            np.testing.assert_allclose(py, ry, atol=1e-8)
            assert float(to_np(S.violation(px, py))) <= 1e-12
    check_batched(Halfspace(a, b), rand(1, 2, 3, nx), rand(2, 2, 3, ny), backend)
    check_batched(Hyperplane(a, b), rand(1, 2, 3, nx), rand(2, 2, 3, ny), backend)


@pytest.mark.parametrize("n", [2, 4, 7])
def test_v1_proj_C_formula_equals_halfspace(n):
    """Spec §6 V1: x += s/(2n), y -= s/(2n) when s = 1^T y - 1^T x > 0 is the half-space projection."""
    P = problems.sum_coupled_qp(n)
    H = Halfspace(np.r_[-np.ones(n), np.ones(n)], 0.0)
    for seed in range(6):
        x, y = rand(seed, n), rand(seed + 9, n) + (2.0 if seed % 2 else 0.0)
        vx, vy = P.proj_C(x, y)
        hx, hy = H.project(x, y)
        np.testing.assert_allclose(hx, vx, atol=1e-14)
        np.testing.assert_allclose(hy, vy, atol=1e-14)
    # the automatic C of V1 (affine lower level) is the same set
    C = from_lower(P)
    assert isinstance(C, Polyhedron)
    x, y = rand(3, n), rand(4, n) + 3.0
    np.testing.assert_allclose(np.r_[C(x, y)], np.r_[H(x, y)], atol=1e-12)


def test_v3_mean_subtraction_equals_hyperplane():
    """Spec §6 V3: Proj_C subtracts the mean of the stacked (x, y)."""
    n = 6
    Hp = Hyperplane(np.ones(3 * n), 0.0)
    x, y = rand(0, n), rand(1, 2 * n)
    w = np.r_[x, y]
    px, py = Hp(x, y)
    np.testing.assert_allclose(np.r_[px, py], w - w.mean(), atol=1e-14)
    np.testing.assert_allclose(Hp(w), w - w.mean(), atol=1e-14)  # plain-vector form


@pytest.mark.parametrize("backend", BACKENDS)
def test_budget_cone_matches_cvxpy(backend):
    S = BudgetCone()
    cases = [
        (np.array([0.5]), np.array([1.0, 2.0, -1.0])),    # budget active
        (np.array([5.0]), np.array([1.0, 2.0, -1.0])),    # only y >= 0 active
        (np.array([-5.0]), np.array([1.0, 2.0, -1.0])),   # apex (0, 0)
        (np.array([-2.0]), np.array([2.0, 2.0, 2.0])),    # apex with ties at the boundary
        (np.array([0.3]), np.array([1.0, 1.0, 1.0, 1.0])),  # ties
        (np.array([1.0]), np.array([0.2, 0.3, 0.1])),     # inside
        (np.array([0.0]), np.array([-1.0, -2.0])),        # apex-region point already at the apex in y
    ]
    rng = np.random.default_rng(0)
    for _ in range(8):
        cases.append((rng.standard_normal(1) * 2, rng.standard_normal(int(rng.integers(1, 9))) * 2))
    for x0, y0 in cases:
        rx, ry = cvx_proj(x0, y0, lambda x, y: [y >= 0, cp.sum(y) <= x])
        px, py = run(S, x0, y0, backend)
        apex = x0[0] <= -max(y0.max(), 0.0)  # the projection is the apex (0, 0), exactly
        if apex:
            np.testing.assert_array_equal(px, [0.0])
            np.testing.assert_array_equal(py, np.zeros_like(y0))
        # at the apex, a degenerate vertex, the interior-point reference is only ~1e-6 accurate
        np.testing.assert_allclose(px, rx, atol=1e-5 if apex else 1e-8)
        np.testing.assert_allclose(py, ry, atol=1e-5 if apex else 1e-8)
        assert py.min() >= 0 and py.sum() <= px[0] + 1e-14
    check_batched(S, rand(3, 2, 3, 1), rand(4, 2, 3, 5), backend)


def test_budget_cone_equals_automatic_C_of_v2():
    """V2's coupled set {y >= 0, 1^T y <= x} from the LowerLP data equals the closed form."""
    C = from_lower(problems.budget_lp())
    assert isinstance(C, Polyhedron)
    S = BudgetCone()
    rng = np.random.default_rng(1)
    for _ in range(10):
        x0, y0 = 2 * rng.standard_normal(1), 2 * rng.standard_normal(3)
        a, b = C(x0, y0), S(x0, y0)
        np.testing.assert_allclose(a[0], b[0], atol=1e-12)
        np.testing.assert_allclose(a[1], b[1], atol=1e-12)
        assert C.last_residual <= 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_lower_triangle_box_simplex_match_cvxpy(backend):
    n = 5
    lx, ux = -np.ones(n), np.linspace(0.5, 2.0, n)
    sets = [
        (LowerTriangle(), lambda x, y: [y <= x]),
        (BoxC(lx, ux, -0.5, 0.5), lambda x, y: [x >= lx, x <= ux, y >= -0.5, y <= 0.5]),
        (BoxC(y_lower=0.0), lambda x, y: [y >= 0]),
        (SimplexC(2.0), lambda x, y: [y >= 0, cp.sum(y) == 2.0]),
    ]
    for S, cons in sets:
        for seed in range(3):
            x0, y0 = rand(seed, n), rand(seed + 1, n)
            rx, ry = cvx_proj(x0, y0, cons)
            px, py = run(S, x0, y0, backend)
            np.testing.assert_allclose(px, rx, atol=1e-8)
            np.testing.assert_allclose(py, ry, atol=1e-8)
        check_batched(S, rand(5, 2, 3, n), rand(6, 2, 3, n), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k, nx, ny", [(1, 2, 2), (3, 4, 5), (6, 10, 3)])
def test_affine_matches_cvxpy(backend, k, nx, ny):
    rng = np.random.default_rng(k)
    P, q = rng.standard_normal((k, nx + ny)), rng.standard_normal(k)
    S = Affine(P, q)
    for seed in range(3):
        x0, y0 = rand(seed, nx), rand(seed + 3, ny)
        rx, ry = cvx_proj(x0, y0, lambda x, y: [P[:, :nx] @ x + P[:, nx:] @ y == q])
        px, py = run(S, x0, y0, backend)
        np.testing.assert_allclose(px, rx, atol=1e-8)
        np.testing.assert_allclose(py, ry, atol=1e-8)
        np.testing.assert_allclose(P @ np.r_[px, py], q, atol=1e-12)
    check_batched(S, rand(1, 2, 3, nx), rand(2, 2, 3, ny), backend)


def test_affine_factorises_once(monkeypatch):
    calls = []
    real = scipy.linalg.cho_factor
    monkeypatch.setattr(scipy.linalg, "cho_factor", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    rng = np.random.default_rng(0)
    S = Affine(rng.standard_normal((3, 8)), rng.standard_normal(3))
    assert len(calls) == 1
    # torch calls reuse the host factor (moved once per device/dtype): no torch factorisation either
    monkeypatch.setattr(torch.linalg, "cholesky", lambda *a, **k: pytest.fail("per-call factorisation"))
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda *a, **k: pytest.fail("per-call factorisation"))
    monkeypatch.setattr(torch.linalg, "pinv", lambda *a, **k: pytest.fail("per-call pseudo-inverse"))
    monkeypatch.setattr(np.linalg, "pinv", lambda *a, **k: pytest.fail("per-call pseudo-inverse"))
    for seed in range(20):
        S(rand(seed, 4), rand(seed + 1, 4))
        S(torch.tensor(rand(seed, 4)), torch.tensor(rand(seed + 1, 4)))
        S(torch.tensor(rand(seed, 4), dtype=torch.float32), torch.tensor(rand(seed + 1, 4), dtype=torch.float32))
    assert len(calls) == 1
    assert len([k for k in S._consts if k[0] == "L"]) == 2  # one copy per (device, dtype)


def test_affine_rank_deficient_names_P():
    P = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    with pytest.raises(InvalidProblemError, match="P"):
        Affine(P, np.zeros(2))


# ----------------------------------------------------------------------------------------------
# polyhedra, intersections, the automatic C
# ----------------------------------------------------------------------------------------------

def poly_instance(seed, nx, ny, m):
    rng = np.random.default_rng(seed)
    inside = 0.2 * rng.standard_normal(nx + ny)
    G = rng.standard_normal((m, nx + ny))
    h = G @ inside + rng.random(m)
    return G, h


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nx, ny, m, box", [(2, 3, 6, False), (5, 10, 8, True), (10, 10, 30, False)])
def test_polyhedron_matches_cvxpy(backend, nx, ny, m, box):
    G, h = poly_instance(nx + ny + m, nx, ny, m)
    lb, ub = (-1.0, 1.0) if box else (None, None)
    S = Polyhedron(G, h, lb=lb, ub=ub)
    for seed in range(3):
        x0, y0 = rand(seed, nx), rand(seed + 7, ny)

        def cons(x, y):
            c = [G[:, :nx] @ x + G[:, nx:] @ y <= h]
            if box:
                c += [x >= -1, x <= 1, y >= -1, y <= 1]
            return c
        rx, ry = cvx_proj(x0, y0, cons)
        px, py = run(S, x0, y0, backend)
        np.testing.assert_allclose(px, rx, atol=2e-7)
        np.testing.assert_allclose(py, ry, atol=2e-7)
        assert S.last_residual <= 1e-10 * max(1.0, np.abs(np.r_[x0, y0]).max())
        assert float(to_np(S.violation(px, py))) <= 1e-10
    S.reset()
    check_batched(S, rand(1, 2, 3, nx), rand(2, 2, 3, ny), backend, atol=1e-9)


def test_polyhedron_warm_start_reduces_iterations():
    nx = ny = 100
    G, h = poly_instance(0, nx, ny, 100)
    warm, cold = Polyhedron(G, h), Polyhedron(G, h, warm_start=False)
    rng = np.random.default_rng(0)
    x, y = rand(1, nx), rand(2, ny)
    w_its, c_its = [], []
    for _ in range(10):  # a slowly moving sequence, like LV-HBA iterates
        x, y = x + 1e-3 * rng.standard_normal(nx), y + 1e-3 * rng.standard_normal(ny)
        a = warm(x, y)
        w_its.append(warm.last_iterations)
        b = cold(x, y)
        c_its.append(cold.last_iterations)
        np.testing.assert_allclose(np.r_[a], np.r_[b], atol=1e-10)
        assert warm.last_residual <= 1e-10 and cold.last_residual <= 1e-10 * max(1, np.abs(np.r_[x, y]).max())
    assert sum(w_its[1:]) * 5 <= sum(c_its[1:])
    assert warm.n_factorizations == 1
    # active-set factorisations are cached: the slowly moving sequence keeps (almost) one active set
    assert warm.factor.n_polish_factorizations <= 3


def test_polyhedron_empty_set_and_zero_rows():
    with pytest.raises(InvalidProblemError, match="empty"):
        Polyhedron(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([-1.0, -1.0]))
    with pytest.raises(InvalidProblemError, match="empty"):
        Polyhedron(np.array([[0.0, 0.0]]), np.array([-1.0]))
    S = Polyhedron(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([1.0, 0.0]))  # 0 <= 1 dropped
    np.testing.assert_allclose(S(np.array([1.0, 1.0])), [0.0, 0.0], atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dykstra_intersection_matches_cvxpy_and_polyhedron(backend):
    n = 4  # V4 (P = 1): 1^T x + 1^T y1 + 1^T y2 = 0 and the box [-1, 1] on x
    hyper = Hyperplane(np.ones(3 * n), 0.0)
    box = BoxC(-1.0, 1.0)
    D = Dykstra([hyper, box], max_iter=5000)
    Pz = Polyhedron(P=np.ones((1, 3 * n)), q=[0.0], lb=np.r_[-np.ones(n), np.full(2 * n, -np.inf)],
                    ub=np.r_[np.ones(n), np.full(2 * n, np.inf)])
    for seed in range(3):
        x0, y0 = rand(seed, n, s=3.0), rand(seed + 1, 2 * n)
        rx, ry = cvx_proj(x0, y0, lambda x, y: [cp.sum(x) + cp.sum(y) == 0, x >= -1, x <= 1])
        dx, dy = run(D, x0, y0, backend)
        np.testing.assert_allclose(dx, rx, atol=1e-7)
        np.testing.assert_allclose(dy, ry, atol=1e-7)
        assert D.last_residual <= 1e-9
        px, py = run(Pz, x0, y0, backend)
        np.testing.assert_allclose(px, rx, atol=1e-8)
        np.testing.assert_allclose(py, ry, atol=1e-8)
    # halfspace + budget cone, three sets
    D3 = Dykstra([Halfspace(np.r_[1.0, np.ones(3)], 1.0), BudgetCone(), BoxC(y_upper=0.7)], max_iter=5000)
    x0, y0 = np.array([2.0]), np.array([1.5, -0.3, 0.9])
    rx, ry = cvx_proj(x0, y0, lambda x, y: [x + cp.sum(y) <= 1, y >= 0, cp.sum(y) <= x, y <= 0.7])
    dx, dy = run(D3, x0, y0, backend)
    np.testing.assert_allclose(np.r_[dx, dy], np.r_[rx, ry], atol=1e-7)


def test_dykstra_warm_start():
    D = Dykstra([Hyperplane(np.ones(6), 0.0), BoxC(-1.0, 1.0)], max_iter=5000)
    Dc = Dykstra([Hyperplane(np.ones(6), 0.0), BoxC(-1.0, 1.0)], max_iter=5000, warm_start=False)
    x, y = rand(0, 3, s=3.0), rand(1, 3)
    its_w, its_c = [], []
    for k in range(6):
        x = x + 1e-4 * k
        a, b = D(x, y), Dc(x, y)
        its_w.append(D.last_iterations)
        its_c.append(Dc.last_iterations)
        np.testing.assert_allclose(np.r_[a], np.r_[b], atol=1e-8)
    assert sum(its_w[1:]) < sum(its_c[1:])


def test_from_lower_linear_coupling_with_box_matches_cvxpy():
    prob = problems.synthetic_qp(8, seed=0, coupling="linear")  # R2: Qc y - (kappa + 1 - P x) <= 0, |y| <= 1
    C = from_lower(prob)
    assert isinstance(C, Polyhedron) and C.n_x == 8 and C.n_y == 8
    A = prob.lower.A
    b = prob.lower.b
    B = np.stack([b(np.eye(8)[j]) - b(np.zeros(8)) for j in range(8)], axis=1)
    b0 = b(np.zeros(8))
    for seed in range(3):
        x0, y0 = rand(seed, 8, s=3.0), rand(seed + 1, 8, s=3.0)
        rx, ry = cvx_proj(x0, y0, lambda x, y: [A @ y - B @ x <= b0, y >= -1, y <= 1])
        px, py = C(x0, y0)
        np.testing.assert_allclose(px, rx, atol=2e-7)
        np.testing.assert_allclose(py, ry, atol=2e-7)
        assert np.all(np.abs(py) <= 1) and np.max(prob.g(px, py)) <= 1e-10


def test_from_lower_returns_none_when_not_affine():
    assert from_lower(problems.synthetic_qp(5, seed=0)) is None  # bilinear coupling: A(x) varies
    plain = BilevelProblem(lambda x, y: 0.0, lambda x, y: 0.0, lambda x, y: y - x ** 2, n_x=1, n_y=1, m=1)
    assert from_lower(plain) is None  # no structured lower level
    quad = BilevelProblem(lambda x, y: 0.0, n_x=1, n_y=1, m=1,
                          lower=LowerQP(np.eye(1), np.zeros(1), np.eye(1), lambda x: x ** 2))
    assert from_lower(quad) is None  # b(x) = x^2 is not affine


def test_from_lower_equalities_and_callable_Y():
    n = 3  # V3-like: 1^T x + 1^T y = 0 as an equality row, Y given as a plain projection (y >= 0)
    lower = LowerLP(c=np.ones(n), A=np.ones((1, n)), b=lambda x: -x.sum().reshape(1))
    prob = BilevelProblem(lambda x, y: 0.0, n_x=n, n_y=n, m=1, lower=lower, eq_mask=[True],
                          Y=lambda v: np.maximum(v, 0.0), X=Box(-1.0, 1.0))
    C = from_lower(prob)
    assert isinstance(C, Dykstra)
    x0, y0 = rand(0, n), rand(1, n)
    rx, ry = cvx_proj(x0, y0, lambda x, y: [cp.sum(x) + cp.sum(y) == 0, y >= 0, x >= -1, x <= 1])
    px, py = C(x0, y0)
    np.testing.assert_allclose(np.r_[px, py], np.r_[rx, ry], atol=1e-7)


def test_sets_are_valid_proj_C():
    n = 3
    H = Halfspace(np.r_[-np.ones(n), np.ones(n)], 0.0)
    base = problems.sum_coupled_qp(n)
    prob = base.replace(proj_C=H)
    x, y = prob.proj_C(np.zeros(n), np.ones(n))
    assert np.sum(y) - np.sum(x) <= 1e-14


# ----------------------------------------------------------------------------------------------
# generic properties: idempotence, non-expansiveness, backends, bad inputs
# ----------------------------------------------------------------------------------------------

def all_sets(nx=3, ny=3):
    rng = np.random.default_rng(42)
    G, h = poly_instance(3, nx, ny, 5)
    return {
        "box": BoxC(-1.0, 1.0, 0.0, 2.0),
        "halfspace": Halfspace(rng.standard_normal(nx + ny), 0.3),
        "hyperplane": Hyperplane(rng.standard_normal(nx + ny), -0.2),
        "budget": BudgetCone(),
        "lower_triangle": LowerTriangle(),
        "simplex": SimplexC(1.5),
        "affine": Affine(rng.standard_normal((2, nx + ny)), rng.standard_normal(2)),
        "polyhedron": Polyhedron(G, h, lb=-2.0, ub=2.0),
        "dykstra": Dykstra([Halfspace(np.ones(nx + ny), 1.0), BoxC(-1.0, 1.0, -1.0, 1.0)], max_iter=5000),
    }


def sizes(name):
    return (1, 4) if name == "budget" else (3, 3)


@pytest.mark.parametrize("name", list(all_sets()))
@pytest.mark.parametrize("backend", BACKENDS)
def test_idempotent_and_feasible(name, backend):
    S = all_sets()[name]
    nx, ny = sizes(name)
    for seed in range(4):
        x0, y0 = rand(seed, nx, s=3.0), rand(seed + 1, ny, s=3.0)
        px, py = run(S, x0, y0, backend)
        qx, qy = run(S, px, py, backend)
        tol = 1e-8 if name == "dykstra" else 1e-11
        np.testing.assert_allclose(qx, px, atol=tol)
        np.testing.assert_allclose(qy, py, atol=tol)
        assert float(to_np(S.violation(px, py))) <= tol


@pytest.mark.parametrize("name", [n for n in all_sets() if n != "dykstra"])
def test_non_expansive(name):
    S = all_sets()[name]
    nx, ny = sizes(name)

    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2 * (nx + ny), max_size=2 * (nx + ny)))
    def prop(vals):
        v = np.array(vals)
        a, b = v[:nx + ny], v[nx + ny:]
        pa = np.r_[S(a[:nx], a[nx:])]
        pb = np.r_[S(b[:nx], b[nx:])]
        assert np.linalg.norm(pa - pb) <= np.linalg.norm(a - b) + 1e-9

    prop()


def test_plain_vector_form_and_mixed_backends():
    S = BudgetCone()
    w = np.array([0.5, 1.0, 2.0, -1.0])
    np.testing.assert_allclose(S(w), np.r_[S(w[:1], w[1:])], atol=0)
    lt = LowerTriangle()
    np.testing.assert_allclose(lt(np.array([0.0, 0.0, 1.0, -1.0])), [0.5, 0.0, 0.5, -1.0])
    # numpy next to a tensor: torch out
    px, py = Halfspace(np.ones(4), 0.0)(torch.ones(2, dtype=torch.float64), np.ones(2))
    assert isinstance(py, torch.Tensor)
    np.testing.assert_allclose(torch.cat([px, py]).numpy(), np.zeros(4), atol=1e-15)
    px, py = BudgetCone()(torch.tensor([0.5], dtype=torch.float32), torch.tensor([1.0, 2.0, -1.0]))
    assert px.dtype == torch.float32 and py.dtype == torch.float32
    np.testing.assert_allclose(py.numpy(), [1 / 6, 7 / 6, 0.0], atol=1e-6)


@pytest.mark.parametrize("name", list(all_sets()))
def test_inputs_not_mutated(name):
    S = all_sets()[name]
    nx, ny = sizes(name)
    x, y = rand(0, 2, nx, s=3.0), rand(1, 2, ny, s=3.0)
    xc, yc = x.copy(), y.copy()
    S(x, y)
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(y, yc)
    xt, yt = torch.tensor(x), torch.tensor(y)
    S(xt, yt)
    assert torch.equal(xt, torch.tensor(xc)) and torch.equal(yt, torch.tensor(yc))


@pytest.mark.parametrize("name", list(all_sets()))
def test_bad_inputs_name_the_argument(name):
    S = all_sets()[name]
    nx, ny = sizes(name)
    x, y = rand(0, nx), rand(1, ny)
    with pytest.raises(InvalidProblemError, match="x"):
        S(np.r_[np.nan, x[1:]], y)
    with pytest.raises(InvalidProblemError, match="y"):
        S(x, np.r_[y[:-1], np.inf])
    with pytest.raises(InvalidProblemError, match="y"):
        S(rand(0, 2, nx), rand(1, 3, ny))  # batch shapes differ
    with pytest.raises(BackendError):
        S(torch.tensor(x, dtype=torch.float16), torch.tensor(y, dtype=torch.float16))


def test_wrong_sizes_name_the_argument():
    with pytest.raises(InvalidProblemError, match="x"):
        BudgetCone()(np.ones(2), np.ones(3))
    with pytest.raises(InvalidProblemError, match="x, y"):
        Halfspace(np.ones(4), 0.0)(np.ones(2), np.ones(3))
    with pytest.raises(InvalidProblemError, match="y"):
        LowerTriangle()(np.ones(2), np.ones(3))
    with pytest.raises(InvalidProblemError, match="a"):
        Halfspace(np.zeros(3), 0.0)
    with pytest.raises(InvalidProblemError, match="x_lower"):
        BoxC(1.0, 0.0)
    with pytest.raises(InvalidProblemError, match="radius"):
        SimplexC(-1.0)


# ---------------------------------------------------------------------------------------- SlackRows
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slack_rows_matches_cvxpy_and_leaves_free_entries(seed):
    import cvxpy as cp

    from optkit.bilevel.sets import SlackRows

    rng = np.random.default_rng(seed)
    m, d = 40, 5
    M, h = rng.standard_normal((m, d)), rng.uniform(0.5, 1.5, m)
    S = SlackRows(M, h, u_index=np.arange(1, d + 1), s_index=np.arange(d + 1, d + 1 + m))
    x0, y0 = rng.standard_normal(4), 2 * rng.standard_normal(d + m + 3)
    xp, yp = S.project(x0, y0)
    u, s = cp.Variable(d), cp.Variable(m)
    cp.Problem(cp.Minimize(cp.sum_squares(u - y0[1:d + 1]) + cp.sum_squares(s - y0[d + 1:d + 1 + m])),
               [s >= h - M @ u]).solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    np.testing.assert_allclose(yp[1:d + 1], u.value, atol=1e-7)
    np.testing.assert_allclose(yp[d + 1:d + 1 + m], s.value, atol=1e-7)
    np.testing.assert_array_equal(xp, x0)
    np.testing.assert_array_equal(yp[[0, -2, -1]], y0[[0, -2, -1]])
    assert S.last_residual <= 1e-12
    # idempotent, and the torch path agrees
    np.testing.assert_allclose(S.project(xp, yp)[1], yp, atol=1e-12)
    yt = S.project(torch.as_tensor(x0), torch.as_tensor(y0))[1]
    np.testing.assert_allclose(yt.numpy(), yp, atol=1e-12)


def test_slack_rows_bad_indices():
    from optkit.bilevel.sets import SlackRows

    with pytest.raises(InvalidProblemError, match="s_index"):
        SlackRows(np.ones((3, 2)), np.ones(3), u_index=[0, 1], s_index=[1, 2, 3])


def test_from_lower_rejects_x_dependent_A_after_one_probe():
    """A bilinear coupling (A depends on x) is recognised without probing every unit vector."""
    from optkit.bilevel.sets import from_lower

    calls = []
    E = np.random.default_rng(0).standard_normal((3, 50, 4))

    def A(x):
        calls.append(1)
        return np.einsum("i,kij->kj", x, E)

    p = BilevelProblem(lambda x, y: x @ x + y @ y, n_x=50, n_y=4, m=3,
                       lower=LowerQP(Q=np.eye(4), q=np.zeros(4), A=A, b=np.ones(3)))
    calls.clear()
    assert from_lower(p) is None
    assert len(calls) <= 3  # x = 0 and one random point (not 50 unit vectors)
