"""Torch layers of optkit.ot: value/plan gradients (spec ot.md §3.8, §6.8-6.11) and the MoE router."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scipy.optimize import linprog  # noqa: E402

from optkit.ot import layers, sparse_ot  # noqa: E402
from optkit.ot.layers import (  # noqa: E402
    KSparseOTRouter,
    RouterOutput,
    SparseOT,
    SurrogateGradientWarning,
    sparse_ot_plan,
    sparse_ot_value,
)

DT = torch.float64
# tight solves: check_every=1 lets the semismooth-Newton polish start early on torch, so the
# plans are accurate to ~1e-15 and central differences (eps 1e-6) resolve 1e-8
TIGHT = {"tol": 1e-12, "check_every": 1}


def _instance(seed, m, n):
    rng = np.random.RandomState(seed)
    a = rng.rand(m) + 0.5
    b = rng.rand(n) + 0.5
    C = rng.rand(m, n)
    return a / a.sum(), b / b.sum(), C


def _t(x, grad=False):
    return torch.tensor(x, dtype=DT, requires_grad=grad)


def _zero_sum(rng, size):
    d = rng.randn(size)
    return d - d.mean()


def _lp_plan(a, b, C):
    m, n = C.shape
    A = np.zeros((m + n, m * n))
    for i in range(m):
        A[i, i * n:(i + 1) * n] = 1.0
    for j in range(n):
        A[m + j, j::n] = 1.0
    res = linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    assert res.status == 0
    return res.x.reshape(m, n), res.fun


# ----------------------------------------------------------------------------------------------
# 6.8 value gradients


def test_value_grad_C_smooth_vs_central_differences():
    a, b, C = _instance(0, 5, 6)
    kw = dict(max_nz=5, reg=5.0, **TIGHT)
    Ct = _t(C, grad=True)
    V = sparse_ot_value(Ct, _t(a), _t(b), **kw)
    V.backward()
    eps = 1e-6
    fd = np.zeros_like(C)
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            E = np.zeros_like(C)
            E[i, j] = eps
            fd[i, j] = (float(sparse_ot_value(_t(C + E), _t(a), _t(b), **kw))
                        - float(sparse_ot_value(_t(C - E), _t(a), _t(b), **kw))) / (2 * eps)
    np.testing.assert_allclose(Ct.grad.numpy(), fd, atol=1e-8)
    # the smooth-regime gradient is the plan itself
    plan = sparse_ot(a, b, C, max_nz=5, reg=5.0, tol=1e-12).plan
    np.testing.assert_allclose(Ct.grad.numpy(), plan, atol=1e-12)


def test_value_k1_gradient_is_lp_plan():
    a, b, C = _instance(3, 4, 5)
    T_lp, ot_cost = _lp_plan(a, b, C)
    Ct = _t(C, grad=True)
    V = sparse_ot_value(Ct, _t(a), _t(b), max_nz=1, reg=1.0)
    np.testing.assert_allclose(float(V.detach()), ot_cost + 0.5 * float(b @ b), rtol=1e-9)
    V.backward()
    np.testing.assert_allclose(Ct.grad.numpy(), T_lp, atol=1e-8)


def test_value_grad_a_b_vs_finite_differences():
    a, b, C = _instance(1, 5, 6)
    kw = dict(max_nz=5, reg=5.0, **TIGHT)
    at, bt = _t(a, grad=True), _t(b, grad=True)
    sparse_ot_value(_t(C), at, bt, **kw).backward()
    rng = np.random.RandomState(7)
    eps = 1e-6
    for _ in range(3):
        db = _zero_sum(rng, b.size)
        fd = (float(sparse_ot_value(_t(C), _t(a), _t(b + eps * db), **kw))
              - float(sparse_ot_value(_t(C), _t(a), _t(b - eps * db), **kw))) / (2 * eps)
        np.testing.assert_allclose(float(bt.grad @ _t(db)), fd, atol=1e-8)
        da = _zero_sum(rng, a.size)
        fd = (float(sparse_ot_value(_t(C), _t(a + eps * da), _t(b), **kw))
              - float(sparse_ot_value(_t(C), _t(a - eps * da), _t(b), **kw))) / (2 * eps)
        np.testing.assert_allclose(float(at.grad @ _t(da)), fd, atol=1e-8)
    # centered (mass-preserving perturbations)
    assert abs(float(at.grad.sum())) < 1e-12 and abs(float(bt.grad.sum())) < 1e-12


def test_value_gradcheck():
    a, b, C = _instance(2, 3, 4)
    u, v = _t(a * 3.0, grad=True), _t(b * 2.0, grad=True)

    def f(C, u, v):
        return sparse_ot_value(C, u / u.sum(), v / v.sum(), max_nz=3, reg=4.0, **TIGHT)

    assert torch.autograd.gradcheck(f, (_t(C, grad=True), u, v), eps=1e-6, atol=1e-6)


def test_value_k1_batched_lp():
    insts = [_instance(s, 4, 5) for s in (12, 13)]
    a, b = insts[0][0], insts[0][1]
    Cb = _t(np.stack([C for _, _, C in insts]), grad=True)
    V = sparse_ot_value(Cb, _t(a), _t(b), max_nz=1, reg=0.5)
    V.sum().backward()
    for i, (_, _, C) in enumerate(insts):
        T_lp, cost = _lp_plan(a, b, C)
        np.testing.assert_allclose(float(V[i].detach()), cost + 0.25 * float(b @ b), rtol=1e-9)
        np.testing.assert_allclose(Cb.grad[i].numpy(), T_lp, atol=1e-8)


def test_value_batched_matches_single():
    a, b, C = _instance(4, 4, 5)
    Cb = np.stack([C, C[::-1].copy()])
    Vb = sparse_ot_value(_t(Cb), _t(a), _t(b), max_nz=4, reg=3.0, tol=1e-10)
    for i in range(2):
        Vi = sparse_ot_value(_t(Cb[i]), _t(a), _t(b), max_nz=4, reg=3.0, tol=1e-10)
        np.testing.assert_allclose(float(Vb[i]), float(Vi), rtol=1e-9)
    assert Vb.shape == (2,)


# ----------------------------------------------------------------------------------------------
# 6.9 plan VJP (smooth regime)


def _dense_smooth_instance():
    a, b, C = _instance(0, 5, 6)
    return a, b, C, dict(max_nz=5, reg=5.0, **TIGHT)


@pytest.mark.parametrize("solve", ["dense", "minres"])
def test_plan_vjp_smooth_vs_central_differences(solve, monkeypatch):
    if solve == "minres":
        monkeypatch.setattr(layers, "_DENSE_MAX", 0)
    a, b, C, kw = _dense_smooth_instance()
    rng = np.random.RandomState(1)
    G = rng.randn(*C.shape)
    Ct, at, bt = _t(C, grad=True), _t(a, grad=True), _t(b, grad=True)
    T = sparse_ot_plan(Ct, at, bt, **kw)
    nnz = int((T > 0).sum())
    assert (T > 0).sum(0).max() <= 5
    assert nnz > C.shape[0] + C.shape[1] - 1  # not a forest
    (T * _t(G)).sum().backward()

    def L(C_, a_=a, b_=b):
        with torch.no_grad():
            return float((sparse_ot_plan(_t(C_), _t(a_), _t(b_), **kw) * _t(G)).sum())

    eps = 1e-6
    fd = np.zeros_like(C)
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            E = np.zeros_like(C)
            E[i, j] = eps
            fd[i, j] = (L(C + E) - L(C - E)) / (2 * eps)
    np.testing.assert_allclose(Ct.grad.numpy(), fd, atol=1e-7)
    for _ in range(2):  # balanced marginal perturbations
        da, db = _zero_sum(rng, a.size), _zero_sum(rng, b.size)
        fd = (L(C, a + eps * da, b + eps * db) - L(C, a - eps * da, b - eps * db)) / (2 * eps)
        an = float(at.grad @ _t(da) + bt.grad @ _t(db))
        np.testing.assert_allclose(an, fd, atol=1e-7)


def test_plan_gradcheck():
    a, b, C = _instance(5, 3, 4)
    u, v = _t(a * 2.0, grad=True), _t(b * 2.0, grad=True)

    def f(C, u, v):
        return sparse_ot_plan(C, u / u.sum(), v / v.sum(), max_nz=3, reg=4.0, **TIGHT)

    T = f(_t(C), u, v)
    assert int((T > 0).sum()) > 3 + 4 - 1
    assert torch.autograd.gradcheck(f, (_t(C, grad=True), u, v), eps=1e-6, atol=1e-6)


def test_plan_rows_axis_is_transposed_columns():
    a, b, C = _instance(9, 6, 4)  # smooth regime, not a forest
    kw = dict(max_nz=2, reg=1.0, **TIGHT)
    Ct = _t(C, grad=True)
    T_rows = sparse_ot_plan(Ct, _t(a), _t(b), axis="rows", **kw)
    assert T_rows.shape == C.shape
    assert int((T_rows > 0).sum(1).max()) <= 2
    np.testing.assert_allclose(T_rows.sum(1).detach().numpy(), a, atol=1e-12)
    Ct2 = _t(C.T.copy(), grad=True)
    T_cols = sparse_ot_plan(Ct2, _t(b), _t(a), **kw)
    np.testing.assert_allclose(T_rows.detach().numpy(), T_cols.detach().numpy().T, atol=1e-10)
    assert int((T_rows > 0).sum()) > 6 + 4 - 1
    G = np.random.RandomState(0).randn(*C.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SurrogateGradientWarning)  # smooth: no surrogate
        (T_rows * _t(G)).sum().backward()
        (T_cols * _t(G.T.copy())).sum().backward()
    assert float(Ct.grad.abs().max()) > 0
    np.testing.assert_allclose(Ct.grad.numpy(), Ct2.grad.numpy().T, atol=1e-10)


def test_plan_batched_backward_matches_single():
    a, b, C = _instance(8, 4, 5)
    Cb = np.stack([C, C * 0.5 + 0.1])
    kw = {"max_nz": 4, "reg": 5.0, "tol": 1e-10}
    G = np.random.RandomState(2).randn(2, 4, 5)
    Cbt = _t(Cb, grad=True)
    (sparse_ot_plan(Cbt, _t(a), _t(b), **kw) * _t(G)).sum().backward()
    for i in range(2):
        Ci = _t(Cb[i], grad=True)
        (sparse_ot_plan(Ci, _t(a), _t(b), **kw) * _t(G[i])).sum().backward()
        np.testing.assert_allclose(Cbt.grad[i].numpy(), Ci.grad.numpy(), atol=1e-10)


def test_plan_diff_mode_none_detaches():
    a, b, C = _instance(0, 4, 5)
    T = sparse_ot_plan(_t(C, grad=True), _t(a), _t(b), max_nz=2, diff_mode="none")
    assert not T.requires_grad
    V = sparse_ot_value(_t(C, grad=True), _t(a), _t(b), max_nz=2, diff_mode="none")
    assert not V.requires_grad


# ----------------------------------------------------------------------------------------------
# 6.10 forest support, k = 1


def test_forest_support_exact_zero_C_gradient():
    a, b, C = _instance(9, 4, 5)
    kw = dict(max_nz=4, reg=1e-3, **TIGHT)
    Ct, at, bt = _t(C, grad=True), _t(a, grad=True), _t(b, grad=True)
    T = sparse_ot_plan(Ct, at, bt, **kw)
    res = sparse_ot(a, b, C, max_nz=4, reg=1e-3, tol=1e-12)
    assert res.regime == "smooth"
    assert int((T > 0).sum()) == 4 + 5 - 1
    G = np.random.RandomState(3).randn(4, 5)
    (T * _t(G)).sum().backward()
    assert torch.equal(Ct.grad, torch.zeros_like(Ct))
    rng = np.random.RandomState(4)
    eps = 1e-6

    def L(a_, b_):
        return float((sparse_ot_plan(_t(C), _t(a_), _t(b_), **kw) * _t(G)).sum())

    for _ in range(3):
        da, db = _zero_sum(rng, 4), _zero_sum(rng, 5)
        fd = (L(a + eps * da, b + eps * db) - L(a - eps * da, b - eps * db)) / (2 * eps)
        np.testing.assert_allclose(float(at.grad @ _t(da) + bt.grad @ _t(db)), fd, atol=1e-7)


def test_k1_plan_C_gradient_is_zero():
    # a permutation instance: k = 1 with marginals met (spec 6.6 in miniature)
    rng = np.random.RandomState(5)
    n = 5
    C = rng.rand(n, n)
    Ct = _t(C, grad=True)
    T = sparse_ot_plan(Ct, max_nz=1, reg=1.0 / n, tol=1e-10)
    (T * _t(rng.randn(n, n))).sum().backward()
    assert torch.equal(Ct.grad, torch.zeros_like(Ct))


# ----------------------------------------------------------------------------------------------
# kinks: surrogate + warning, strict raises


def _kink_instance():
    a, b, C = _instance(0, 6, 7)
    return a, b, C, {"max_nz": 2, "reg": 0.05, "max_iter": 150}


def test_plan_kink_warns_and_strict_raises():
    a, b, C, kw = _kink_instance()
    res = sparse_ot(_t(a), _t(b), _t(C), **kw)
    assert res.regime != "smooth"
    G = _t(np.random.RandomState(0).randn(*C.shape))
    Ct = _t(C, grad=True)
    T = sparse_ot_plan(Ct, _t(a), _t(b), **kw)
    with pytest.warns(SurrogateGradientWarning):
        (T * G).sum().backward()
    assert torch.isfinite(Ct.grad).all()
    T = sparse_ot_plan(_t(C, grad=True), _t(a), _t(b), strict=True, **kw)
    with pytest.raises(RuntimeError, match="strict"):
        (T * G).sum().backward()


def test_value_uncertified_kink_warns_and_strict_raises():
    a, b, C, kw = _kink_instance()
    kw = dict(kw, certify=False)
    Ct = _t(C, grad=True)
    V = sparse_ot_value(Ct, _t(a), _t(b), **kw)
    with pytest.warns(SurrogateGradientWarning):
        V.backward()
    plan = sparse_ot(_t(a), _t(b), _t(C), **kw).plan
    torch.testing.assert_close(Ct.grad, plan)  # surrogate = the k-sparse plan
    V = sparse_ot_value(_t(C, grad=True), _t(a), _t(b), strict=True, **kw)
    with pytest.raises(RuntimeError, match="strict"):
        V.backward()


# ----------------------------------------------------------------------------------------------
# unrolled Adam, module, warm start


def test_unroll_adam_matches_solver_and_gradcheck():
    a, b, C = _instance(10, 4, 5)
    kw = {"max_nz": 2, "reg": 1.0, "method": "adam", "max_iter": 20}
    T = sparse_ot_plan(_t(C), _t(a), _t(b), diff_mode="unroll", **kw)
    ref = sparse_ot(_t(a), _t(b), _t(C), **kw).plan
    torch.testing.assert_close(T.detach(), ref, atol=1e-12, rtol=0)

    def f(C):
        return sparse_ot_plan(C, _t(a), _t(b), diff_mode="unroll", **kw)

    assert torch.autograd.gradcheck(f, (_t(C, grad=True),), eps=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="adam"):
        sparse_ot_plan(_t(C), max_nz=2, diff_mode="unroll")


def test_module_warm_start_and_value_output():
    a, b, C = _instance(11, 5, 6)
    layer = SparseOT(max_nz=5, reg=5.0, warm_start=True, **TIGHT)
    T1 = layer(_t(C), _t(a), _t(b))
    assert layer.last_result.status == 0 and layer.last_result.nit > 0
    T2 = layer(_t(C), _t(a), _t(b))  # starts at the last alpha: already optimal
    assert layer.last_result.nit == 0
    torch.testing.assert_close(T1, T2, atol=1e-12, rtol=0)
    layer(_t(C[:4]), _t(a[:4] / a[:4].sum()), _t(b))  # new shape: cold start, no error
    assert layer.last_result.nit > 0
    val_layer = SparseOT(max_nz=5, reg=5.0, output="value", tol=1e-10)
    Ct = _t(C, grad=True)
    val_layer(Ct, _t(a), _t(b)).backward()
    torch.testing.assert_close(Ct.grad, T1, atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------------------------
# 6.11 router


def _check_router_structure(out, G, N, E, k_row=None, k_col=None):
    assert isinstance(out, RouterOutput)
    cap = out.metrics["capacity"]
    assert out.dispatch.shape == (G, N, E, cap) and out.dispatch.dtype == torch.bool
    assert out.combine.shape == (G, N, E, cap)
    assert out.plan.shape == (G, N, E)
    P = out.plan.detach()
    if k_row is not None:
        assert int((P > 0).sum(-1).max()) <= k_row
    if k_col is not None:
        assert int((P > 0).sum(1).max()) <= k_col
    d = out.dispatch
    assert int(d.sum(-1).max()) <= 1  # one slot per (token, expert)
    assert int(d.sum(1).max()) <= 1  # one token per slot
    assert int(d.any(-1).sum(1).max()) <= cap  # capacity respected
    assert torch.equal(d.any(-1), (P > 0) & d.any(-1))  # only plan entries are dispatched
    assert float(out.combine.detach()[~d].abs().max()) == 0.0
    for key in ("num_items_per_expert_min", "num_items_per_expert_max", "num_items_per_expert_mean",
                "num_experts_per_item_min", "num_experts_per_item_max", "num_experts_per_item_mean",
                "expert_mass_min", "expert_mass_max", "dropped_fraction", "status_counts"):
        assert key in out.metrics
    assert sum(out.metrics["status_counts"].values()) == G


@pytest.mark.parametrize("method", ["bfgs", "adam"])
def test_router_tokens_choose(method):
    torch.manual_seed(0)
    G, N, E, dim = 3, 4, 2, 6
    kw = {"method": "bfgs", "tol": 1e-6} if method == "bfgs" else {"method": "adam", "max_iter": 20}
    router = KSparseOTRouter(dim, E, mode="tokens_choose", num_selected_experts=1, **kw).double()
    x = torch.randn(G, N, dim, dtype=DT)
    out = router(x)
    _check_router_structure(out, G, N, E, k_row=1)
    assert not out.plan.requires_grad  # diff_mode="none": gradients only through the gates
    assert len(router.last_result.statuses) == G  # all groups in one batched solve
    P = out.plan.detach()
    torch.testing.assert_close(P.sum(-1), torch.ones(G, N, dtype=DT), atol=1e-3, rtol=0)
    if method == "bfgs":
        torch.testing.assert_close(P.sum(1), torch.full((G, E), N / E, dtype=DT), atol=1e-1, rtol=0)
    out.combine.sum().backward()
    assert router.dense.weight.grad is not None and float(router.dense.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("method", ["bfgs", "adam"])
def test_router_experts_choose(method):
    torch.manual_seed(1)
    G, N, E, dim = 3, 8, 2, 5
    kw = {"method": "bfgs", "tol": 1e-6} if method == "bfgs" else {"method": "adam", "max_iter": 20}
    router = KSparseOTRouter(dim, E, mode="experts_choose", capacity_factor=2.0, **kw).double()
    x = torch.randn(G, N, dim, dtype=DT)
    out = router(x)
    cap = router.compute_capacity(N)
    assert cap == out.metrics["capacity"] == 8
    _check_router_structure(out, G, N, E, k_col=cap)
    P = out.plan.detach()
    torch.testing.assert_close(P.sum(1), torch.full((G, E), N / E, dtype=DT), atol=1e-3, rtol=0)
    if method == "bfgs":
        torch.testing.assert_close(P.sum(-1), torch.ones(G, N, dtype=DT), atol=1e-3, rtol=0)
    out.combine.sum().backward()
    assert float(router.dense.weight.grad.abs().sum()) > 0


def test_router_capacity_and_plan_combine():
    torch.manual_seed(2)
    G, N, E, dim = 2, 16, 4, 3
    router = KSparseOTRouter(dim, E, mode="tokens_choose", num_selected_experts=2,
                             capacity_factor=1.05, tol=1e-6, combine="plan",
                             diff_mode="implicit").double()
    assert router.compute_capacity(N) == 8  # ceil(16 * 1.05 / 4) = 5 -> multiple of 4
    out = router(torch.randn(G, N, dim, dtype=DT))
    _check_router_structure(out, G, N, E, k_row=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SurrogateGradientWarning)
        (out.combine * torch.randn_like(out.combine)).sum().backward()
    assert torch.isfinite(router.dense.weight.grad).all()
    assert float(router.dense.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="num_selected_experts"):
        KSparseOTRouter(dim, E, mode="tokens_choose", num_selected_experts=5)
    with pytest.raises(ValueError, match="combine"):
        KSparseOTRouter(dim, E, combine="plan")
