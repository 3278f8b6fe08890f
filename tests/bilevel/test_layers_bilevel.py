"""optkit.bilevel.layers.BarrierArgmin (spec bilevel V7): closed form, gradcheck, FD, batch, failures."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from optkit import BackendError, ConvergenceError, InvalidProblemError  # noqa: E402
from optkit._result import Status  # noqa: E402
from optkit.bilevel import LowerLP, LowerQP  # noqa: E402
from optkit.bilevel.layers import BarrierArgmin  # noqa: E402

DT = torch.float64
N = 4
A_V1 = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DT)
X_V1 = torch.tensor([0.5, 0.0, 1.0, 2.0], dtype=DT)


# ---------------------------------------------------------------- V1 written with a parameter a
def v1_f(x, y, a):
    return 0.5 * ((y - a) ** 2).sum()


def v1_g(x, y, a):
    return (y.sum() - x.sum()).reshape(1)


def v1_yint(x, a):
    return (x.sum() - 1.0) / x.shape[0] * torch.ones_like(x)


def v1(t=1e-2, **kw):
    return BarrierArgmin(v1_f, v1_g, n_y=N, t=t, y_interior=v1_yint, **kw)


def v1_closed_form(x, a, t):
    n = x.shape[-1]
    r = float(x.sum() - a.sum())
    root = math.sqrt(r * r + 4 * n * t)
    tau = (-r + root) / (2 * n)
    dtau_dS = (-1 + r / root) / (2 * n)
    dtau_dt = 1.0 / root
    return a - tau, tau, dtau_dS, dtau_dt


def test_v1_value_jacobian_and_t_derivative_closed_form():
    t = 1e-2
    y = v1(t)(X_V1, A_V1)
    y_ref, tau, dtau, dtau_dt = v1_closed_form(X_V1, A_V1, t)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
    spec = torch.tensor([-0.62653701, 0.37346299, 1.37346299, 2.37346299], dtype=DT)
    torch.testing.assert_close(y, spec, atol=1e-8, rtol=0)
    J = torch.autograd.functional.jacobian(lambda x: v1(t)(x, A_V1), X_V1)
    torch.testing.assert_close(J, torch.full((N, N), -dtau, dtype=DT), atol=1e-10, rtol=0)
    Ja = torch.autograd.functional.jacobian(lambda a: v1(t)(X_V1, a), A_V1)  # dy/da = I - 1 dtau/da^T
    torch.testing.assert_close(Ja, torch.eye(N, dtype=DT) + dtau, atol=1e-10, rtol=0)
    Jt = torch.autograd.functional.jacobian(lambda tt: v1(tt)(X_V1, A_V1), torch.tensor(t, dtype=DT))
    torch.testing.assert_close(Jt, torch.full((N,), -dtau_dt, dtype=DT), atol=1e-9, rtol=0)
    layer = v1(t)
    layer(X_V1, A_V1)
    info = layer.last_info
    assert int(info["status"]) == Status.CONVERGED and bool(info["converged"])
    torch.testing.assert_close(info["multipliers"], torch.tensor([tau], dtype=DT), atol=1e-12, rtol=0)
    assert float(info["decrement"]) <= 1e-14 and 1 <= int(info["n_newton"]) <= 50


def test_v1_structured_lower_qp_matches_closed_form():
    lower = LowerQP(Q=np.eye(N), q=lambda x, a: -a, A=np.ones((1, N)), b=lambda x, a: x.sum().reshape(1))
    t = 1e-2
    layer = BarrierArgmin(None, None, n_y=N, t=t, lower=lower)  # phase-1 LP restoration, no y_interior
    y = layer(X_V1, A_V1)
    y_ref, tau, dtau, _ = v1_closed_form(X_V1, A_V1, t)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
    J = torch.autograd.functional.jacobian(lambda x: layer(x, A_V1), X_V1)
    torch.testing.assert_close(J, torch.full((N, N), -dtau, dtype=DT), atol=1e-10, rtol=0)
    x = X_V1.clone().requires_grad_()
    a = A_V1.clone().requires_grad_()
    tt = torch.tensor(t, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, a, tt: BarrierArgmin(None, None, n_y=N, t=tt, lower=lower)(x, a, y0=y.detach()), (x, a, tt))


def test_gradcheck_v1_x_a_t():
    x = X_V1.clone().requires_grad_()
    a = A_V1.clone().requires_grad_()
    tt = torch.tensor(1e-2, dtype=DT, requires_grad=True)
    y0 = v1()(X_V1, A_V1).detach()  # warm start: each perturbed solve takes 1-2 Newton steps
    assert torch.autograd.gradcheck(lambda x, a, tt: v1(tt)(x, a, y0=y0), (x, a, tt))


# ---------------------------------------------------------------- a 5-dim coupled QP (written here)
def coupled_qp(seed=0, n_x=3, n_y=5, m=4):
    """f = 1/2 y^T Q y + (c + C x)^T y (Q strongly convex),  g = A y - b - D x;  params (c, b);
    y = 0 is strictly feasible while ||D x||_inf < min b."""
    gen = torch.Generator().manual_seed(seed)
    R = torch.randn(n_y, n_y, generator=gen, dtype=DT)
    Q = torch.eye(n_y, dtype=DT) + 0.2 * R @ R.T
    C = torch.randn(n_y, n_x, generator=gen, dtype=DT)
    A = torch.randn(m, n_y, generator=gen, dtype=DT)
    D = 0.3 * torch.randn(m, n_x, generator=gen, dtype=DT)
    c = 3.0 * torch.randn(n_y, generator=gen, dtype=DT)  # pushes the unconstrained minimiser outside
    b = 1.0 + torch.rand(m, generator=gen, dtype=DT)
    x = 0.5 * torch.randn(n_x, generator=gen, dtype=DT)

    def f(x, y, c, b):
        return 0.5 * y @ (Q @ y) + (c + C @ x) @ y

    def g(x, y, c, b):
        return A @ y - b - D @ x

    def yint(x, c, b):
        return torch.zeros(n_y, dtype=x.dtype)

    return dict(f=f, g=g, yint=yint, x=x, c=c, b=b, Q=Q, C=C, A=A, D=D, n_y=n_y, m=m)


def qp_layer(P, t=1e-2, **kw):
    return BarrierArgmin(P["f"], P["g"], n_y=P["n_y"], t=t, y_interior=P["yint"], **kw)


def test_coupled_qp_is_constrained_and_gradcheck():
    P = coupled_qp()
    layer = qp_layer(P)
    y = layer(P["x"], P["c"], P["b"])
    lam = layer.last_info["multipliers"]
    assert float(lam.max()) > 0.5  # some constraints are (nearly) active: the barrier matters
    x, c, b = (P[k].clone().requires_grad_() for k in ("x", "c", "b"))
    tt = torch.tensor(1e-2, dtype=DT, requires_grad=True)
    y0 = y.detach()
    assert torch.autograd.gradcheck(lambda x, c, b, tt: qp_layer(P, tt)(x, c, b, y0=y0), (x, c, b, tt))


def test_coupled_qp_nonlinear_constraint_gradcheck():
    """A convex quadratic row (fraction to boundary by halving): same implicit formula."""
    P = coupled_qp(seed=1)

    def g(x, y, c, b):
        return torch.cat([P["A"] @ y - b - P["D"] @ x, (y @ y - 4.0 - x.sum() ** 2).reshape(1)])

    def layer(t=1e-2):
        return BarrierArgmin(P["f"], g, n_y=5, t=t, y_interior=P["yint"])

    y = layer()(P["x"], P["c"], P["b"])
    x, c, b = (P[k].clone().requires_grad_() for k in ("x", "c", "b"))
    assert torch.autograd.gradcheck(lambda x, c, b: layer()(x, c, b, y0=y.detach()), (x, c, b))


def test_structured_lower_matches_generic_path():
    P = coupled_qp()
    lower = LowerQP(Q=P["Q"], q=lambda x, c, b: c + P["C"] @ x, A=P["A"], b=lambda x, c, b: b + P["D"] @ x)
    x, c, b = (P[k].clone().requires_grad_() for k in ("x", "c", "b"))
    ys = BarrierArgmin(None, None, n_y=5, t=1e-2, lower=lower)(x, c, b)
    yg = qp_layer(P)(x, c, b)
    torch.testing.assert_close(ys, yg, atol=1e-12, rtol=0)
    w = torch.linspace(-1, 1, 5, dtype=DT)
    gs = torch.autograd.grad((w * ys).sum(), (x, c, b))
    gg = torch.autograd.grad((w * yg).sum(), (x, c, b))
    for u, v in zip(gs, gg):
        torch.testing.assert_close(u, v, atol=1e-10, rtol=1e-10)


def test_central_differences_of_a_scalar_loss():
    P = coupled_qp()
    layer = qp_layer(P)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=DT)

    def loss(x, c):
        y = layer(x, c, P["b"])
        return (w * y).sum() + 0.5 * (y ** 2).sum()

    x, c = P["x"].clone().requires_grad_(), P["c"].clone().requires_grad_()
    gx, gc = torch.autograd.grad(loss(x, c), (x, c))
    gen = torch.Generator().manual_seed(3)
    h = 1e-5
    with torch.no_grad():
        for _ in range(2):
            dx, dc = torch.randn(3, generator=gen, dtype=DT), torch.randn(5, generator=gen, dtype=DT)
            fd = (loss(P["x"] + h * dx, P["c"] + h * dc) - loss(P["x"] - h * dx, P["c"] - h * dc)) / (2 * h)
            ad = gx @ dx + gc @ dc
            assert abs(float(fd - ad)) <= 1e-7 * max(1.0, abs(float(ad)))


def test_v2_budget_lp_layer_matches_spec_values():
    """LowerLP: y_t(2) at t = 1e-2 from spec V2, and dy/dx by central differences."""
    lower = LowerLP(c=np.array([-3.0, -2.0, -1.0]),
                    A=np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0], [1.0, 1.0, 1.0]]),
                    b=lambda x: torch.cat([torch.zeros(3, dtype=x.dtype), x[:1]]))
    layer = BarrierArgmin(None, None, n_y=3, t=1e-2, lower=lower)
    x = torch.tensor([2.0], dtype=DT, requires_grad=True)
    y = layer(x)
    ref = torch.tensor([1.981735055, 0.009949792519, 0.004987416541], dtype=DT)
    torch.testing.assert_close(y.detach(), ref, atol=1e-9, rtol=0)
    J = torch.autograd.functional.jacobian(layer, x.detach())
    h = 1e-6
    with torch.no_grad():
        fd = (layer(x.detach() + h) - layer(x.detach() - h)) / (2 * h)
    torch.testing.assert_close(J[:, 0], fd, atol=1e-7, rtol=1e-7)


# ---------------------------------------------------------------- batches
def test_batch_of_8_equals_8_single_calls():
    P = coupled_qp()
    gen = torch.Generator().manual_seed(5)
    X = (P["x"] + 0.3 * torch.randn(8, 3, generator=gen, dtype=DT)).requires_grad_()
    Cb = (P["c"] + torch.randn(8, 5, generator=gen, dtype=DT)).requires_grad_()  # per instance
    b = P["b"].clone().requires_grad_()  # shared
    tt = torch.tensor(1e-2, dtype=DT, requires_grad=True)
    W = torch.randn(8, 5, generator=gen, dtype=DT)
    layer = qp_layer(P, tt)
    Y = layer(X, Cb, b)
    assert Y.shape == (8, 5) and layer.last_info["status"].shape == (8,)
    assert layer.last_info["multipliers"].shape == (8, 4)
    gX, gC, gb, gt = torch.autograd.grad((W * Y).sum(), (X, Cb, b, tt))
    gb_sum, gt_sum = torch.zeros_like(b), torch.zeros_like(tt)
    for i in range(8):
        xi, ci = X[i].detach().requires_grad_(), Cb[i].detach().requires_grad_()
        yi = layer(xi, ci, b)
        torch.testing.assert_close(yi, Y[i], atol=1e-12, rtol=0)
        gxi, gci, gbi, gti = torch.autograd.grad((W[i] * yi).sum(), (xi, ci, b, tt))
        torch.testing.assert_close(gxi, gX[i], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(gci, gC[i], atol=1e-10, rtol=1e-10)
        gb_sum += gbi
        gt_sum += gti
    torch.testing.assert_close(gb, gb_sum, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(gt, gt_sum, atol=1e-10, rtol=1e-10)


def test_param_dims_overrides_the_batch_rule():
    """A shared (4, 4) parameter with a batch of 4: the default rule would split it per instance."""
    M = torch.eye(4, dtype=DT) + 0.1
    layer = BarrierArgmin(lambda x, y, M: 0.5 * y @ (M @ y) - y.sum(), v1_g, n_y=4, t=1e-2,
                          y_interior=lambda x, M: v1_yint(x, None), param_dims=(None,))
    X = torch.randn(4, 4, dtype=DT, generator=torch.Generator().manual_seed(0)) + 1.0
    Y = layer(X, M)
    for i in range(4):
        torch.testing.assert_close(layer(X[i], M), Y[i], atol=1e-12, rtol=0)


# ---------------------------------------------------------------- diff modes
def test_unroll_agrees_with_implicit_after_enough_steps():
    P = coupled_qp()
    w = torch.linspace(-1, 2, 5, dtype=DT)
    grads = {}
    for mode in ("implicit", "unroll"):
        x, c, b = (P[k].clone().requires_grad_() for k in ("x", "c", "b"))
        tt = torch.tensor(1e-2, dtype=DT, requires_grad=True)
        y = qp_layer(P, tt, diff_mode=mode, unroll_steps=30)(x, c, b)
        grads[mode] = (y.detach(), *torch.autograd.grad((w * y).sum(), (x, c, b, tt)))
    for u, v in zip(grads["implicit"], grads["unroll"]):
        torch.testing.assert_close(u, v, atol=1e-9, rtol=1e-9)


def test_unroll_gradcheck_and_none_mode():
    x = X_V1.clone().requires_grad_()
    a = A_V1.clone().requires_grad_()
    y0 = v1()(X_V1, A_V1).detach()
    assert torch.autograd.gradcheck(lambda x, a: v1(diff_mode="unroll", unroll_steps=4)(x, a, y0=y0), (x, a))
    y = v1(diff_mode="none")(x, a)
    assert not y.requires_grad
    torch.testing.assert_close(y, v1_closed_form(X_V1, A_V1, 1e-2)[0], atol=1e-12, rtol=0)


# ---------------------------------------------------------------- failures
def test_backward_raises_on_non_converged_instance():
    x = torch.stack([X_V1, X_V1 + 1.0]).requires_grad_()
    layer = v1(max_newton=1)
    y = layer(x, A_V1)  # forward returns and records the status
    st = layer.last_info["status"]
    assert (st == int(Status.MAX_ITER)).all() and not layer.last_info["converged"].any()
    with pytest.raises(ConvergenceError, match="not solved"):
        y.sum().backward()
    # strict=False: the formula at the returned point, never a zero gradient
    x2 = X_V1.clone().requires_grad_()
    v1(max_newton=1, strict=False)(x2, A_V1).pow(2).sum().backward()
    assert torch.isfinite(x2.grad).all() and x2.grad.abs().sum() > 0
    # unroll with too few steps is flagged the same way
    x3 = X_V1.clone().requires_grad_()
    y3 = v1(diff_mode="unroll", unroll_steps=1)(x3, A_V1)
    with pytest.raises(ConvergenceError):
        y3.sum().backward()


def test_no_strictly_feasible_point_raises():
    # g = ||y||^2 + 1 - ||x||^2 <= 0 has no interior point when ||x|| < 1
    layer = BarrierArgmin(lambda x, y: 0.5 * (y ** 2).sum(), lambda x, y: (y @ y + 1 - x @ x).reshape(1), n_y=2)
    with pytest.raises(InvalidProblemError, match="strictly feasible"):
        layer(torch.tensor([0.1, 0.2], dtype=DT))
    lower = LowerQP(Q=np.eye(2), q=np.zeros(2), A=np.array([[1.0, 0.0], [-1.0, 0.0]]),
                    b=lambda x: torch.cat([x[:1], -x[:1]]))  # x_1 <= y_1 <= x_1: empty interior
    with pytest.raises(InvalidProblemError, match="strictly feasible"):
        BarrierArgmin(None, None, n_y=2, lower=lower)(torch.tensor([0.5], dtype=DT))


def test_bad_inputs_name_the_argument():
    layer = v1()
    with pytest.raises(InvalidProblemError, match="x:"):
        layer(torch.tensor([0.5, math.nan, 1.0, 2.0], dtype=DT), A_V1)
    with pytest.raises(InvalidProblemError, match="x:"):
        layer(torch.zeros(2, 2, 4, dtype=DT), A_V1)
    with pytest.raises(BackendError, match="x:"):
        layer(X_V1.half(), A_V1)
    with pytest.raises(BackendError, match="x:"):
        layer(X_V1.numpy(), A_V1)
    with pytest.raises(InvalidProblemError, match=r"params\[0\]"):
        layer(X_V1, torch.tensor([1.0, math.inf, 3.0, 4.0], dtype=DT))
    with pytest.raises(BackendError, match=r"params\[0\]"):
        layer(X_V1, A_V1.to(torch.bfloat16))
    with pytest.raises(InvalidProblemError, match="y0:"):
        layer(X_V1, A_V1, y0=torch.zeros(3, dtype=DT))
    with pytest.raises(InvalidProblemError, match="y0:"):
        layer(X_V1, A_V1, y0=torch.full((4,), math.nan, dtype=DT))
    for bad_t in (0.0, -1e-3, math.inf, math.nan):
        with pytest.raises(InvalidProblemError, match="t:"):
            v1(bad_t)
    with pytest.raises(BackendError, match="t:"):
        v1(torch.tensor(1e-2, dtype=torch.float16))
    tt = torch.tensor(1e-2, dtype=DT)
    layer_t = v1(tt)
    tt.fill_(-1.0)  # a tensor t is re-checked at every call
    with pytest.raises(InvalidProblemError, match="t:"):
        layer_t(X_V1, A_V1)
    with pytest.raises(InvalidProblemError, match="diff_mode"):
        v1(diff_mode="magic")
    with pytest.raises(InvalidProblemError, match="max_newton"):
        v1(max_newton=0)
    with pytest.raises(InvalidProblemError, match="n_y"):
        BarrierArgmin(v1_f, v1_g, n_y=0)
    with pytest.raises(InvalidProblemError, match="f:"):
        BarrierArgmin(lambda x, y, a: y - a, v1_g, n_y=N, t=1e-2, y_interior=v1_yint)(X_V1, A_V1)
    with pytest.raises(InvalidProblemError, match="g:"):
        BarrierArgmin(v1_f, v1_g, n_y=N, m=2, t=1e-2, y_interior=v1_yint)(X_V1, A_V1)
    with pytest.raises(InvalidProblemError, match="f, g"):
        BarrierArgmin(v1_f, v1_g, n_y=N, lower=LowerQP(np.eye(N), np.zeros(N), np.ones((1, N)), np.ones(1)))


def test_float32_no_mutation_and_unbatched_info():
    x32 = X_V1.float().requires_grad_()
    a32 = A_V1.float()
    x_before, a_before = x32.detach().clone(), a32.clone()
    layer = v1()
    y = layer(x32, a32)
    assert y.dtype == torch.float32 and int(layer.last_info["status"]) == Status.CONVERGED
    y.sum().backward()
    assert x32.grad.dtype == torch.float32
    dtau = v1_closed_form(X_V1, A_V1, 1e-2)[2]
    torch.testing.assert_close(x32.grad, torch.full((N,), -N * dtau, dtype=torch.float32), atol=1e-5, rtol=0)
    assert torch.equal(x32.detach(), x_before) and torch.equal(a32, a_before)
    assert layer.last_info["multipliers"].shape == (1,)


@pytest.mark.gpu
def test_cuda_batch_matches_cpu():
    gen = torch.Generator().manual_seed(7)
    X = X_V1 + 0.5 * torch.randn(16, N, generator=gen, dtype=DT)
    Aa = A_V1 + torch.randn(16, N, generator=gen, dtype=DT)
    out = {}
    for dev in ("cpu", "cuda"):
        x = X.to(dev).requires_grad_()
        a = Aa.to(dev).requires_grad_()
        y = v1()(x, a)
        assert y.device.type == dev
        gx, ga = torch.autograd.grad((y ** 2).sum(), (x, a))
        out[dev] = (y.detach().cpu(), gx.cpu(), ga.cpu())
    for u, v in zip(out["cpu"], out["cuda"]):
        torch.testing.assert_close(u, v, atol=1e-10, rtol=1e-10)
