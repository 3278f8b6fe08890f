"""optkit.nlp.layers.EqualityConstrainedLayer: gradcheck, finite differences, modes, failures."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from optkit import ConvergenceError, InvalidProblemError  # noqa: E402
from optkit.nlp.layers import EqualityConstrainedLayer  # noqa: E402

DT = torch.float64


def sphere_f(x, th):
    return 0.5 * ((x - th) ** 2).sum()


def sphere_c(x, th):
    return (x @ x - 1).reshape(1)


def _qp(n=5, m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q = 2 * torch.eye(n, dtype=DT) + 0.1
    A = torch.randn(m, n, generator=g, dtype=DT)
    return Q, A, (lambda x, p, b: 0.5 * x @ (Q @ x) + p @ x), (lambda x, p, b: A @ x - b)


def test_sphere_projection_jacobian_closed_form():
    layer = EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1)
    th = torch.tensor([1.0, 2.0, -0.5], dtype=DT)
    x0 = torch.ones(3, dtype=DT)
    J = torch.autograd.functional.jacobian(lambda t: layer(t, x0=x0), th)
    xs = th / th.norm()
    expected = (torch.eye(3, dtype=DT) - torch.outer(xs, xs)) / th.norm()
    assert torch.allclose(J, expected, atol=1e-10)


def test_gradcheck_sphere_and_qp():
    layer = EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1)
    th = torch.tensor([1.0, 2.0, -0.5], dtype=DT, requires_grad=True)
    x0 = torch.ones(3, dtype=DT)
    assert torch.autograd.gradcheck(lambda t: layer(t, x0=x0), (th,), eps=1e-6, atol=1e-5)
    Q, A, f, c = _qp()
    qp = EqualityConstrainedLayer(f, c, n=5, m=2, return_multipliers=True)
    p = torch.randn(5, dtype=DT, requires_grad=True)
    b = torch.randn(2, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, b: qp(p, b), (p, b), eps=1e-6, atol=1e-5)


def test_qp_gradient_matches_direct_kkt_solution_map():
    Q, A, f, c = _qp()
    layer = EqualityConstrainedLayer(f, c, n=5, m=2)
    p = torch.randn(5, dtype=DT, requires_grad=True)
    b = torch.randn(2, dtype=DT, requires_grad=True)

    def ref(p, b):  # x*(p, b) by a differentiable direct KKT solve
        K = torch.cat([torch.cat([Q, A.T], 1), torch.cat([A, torch.zeros(2, 2, dtype=DT)], 1)], 0)
        return torch.linalg.solve(K, torch.cat([-p, b]))[:5]

    w = torch.randn(5, dtype=DT)
    g1 = torch.autograd.grad((layer(p, b) * w).sum(), (p, b))
    g2 = torch.autograd.grad((ref(p, b) * w).sum(), (p, b))
    for a, r in zip(g1, g2):
        assert torch.allclose(a, r, atol=1e-10)


@pytest.mark.parametrize("solver", ["direct", "minres", "sketch"])
def test_adjoint_solvers_and_unroll_agree(solver):
    th = torch.tensor([0.3, -1.2, 0.8, 0.4], dtype=DT)
    x0 = torch.ones(4, dtype=DT)
    ref = EqualityConstrainedLayer(sphere_f, sphere_c, n=4, m=1)
    J = torch.autograd.functional.jacobian(lambda t: ref(t, x0=x0), th)
    other = EqualityConstrainedLayer(sphere_f, sphere_c, n=4, m=1, adjoint_solver=solver)
    assert torch.allclose(J, torch.autograd.functional.jacobian(lambda t: other(t, x0=x0), th), atol=1e-6)
    unroll = EqualityConstrainedLayer(sphere_f, sphere_c, n=4, m=1, diff_mode="unroll")
    assert torch.allclose(J, torch.autograd.functional.jacobian(lambda t: unroll(t, x0=x0), th), atol=1e-6)


def test_implicit_gradient_matches_finite_differences_of_solution_map():
    # nonlinear objective and constraints: f = sum x^4 / 4 - th.x, c = (x1 x2 - th3, sum x - 1)
    f = lambda x, th: 0.25 * (x ** 4).sum() - th[:3] @ x
    c = lambda x, th: torch.stack([x[0] * x[1] - th[3], x.sum() - 1])
    layer = EqualityConstrainedLayer(f, c, n=3, m=2)
    th = torch.tensor([0.5, -0.2, 0.1, -0.3], dtype=DT)
    x0 = torch.tensor([1.0, -0.5, 0.5], dtype=DT)
    J = torch.autograd.functional.jacobian(lambda t: layer(t, x0=x0), th)
    eps = 1e-6
    for k in range(4):
        e = torch.zeros(4, dtype=DT)
        e[k] = eps
        with torch.no_grad():
            fd = (layer(th + e, x0=x0) - layer(th - e, x0=x0)) / (2 * eps)
        assert torch.allclose(J[:, k], fd, atol=1e-6), k


def test_batched_with_shared_parameter():
    layer = EqualityConstrainedLayer(lambda x, th, s: s * sphere_f(x, th), lambda x, th, s: sphere_c(x, th),
                                     n=3, m=1, batched=True)
    th = torch.randn(2, 3, dtype=DT, requires_grad=True)
    s = torch.tensor(2.0, dtype=DT, requires_grad=True)
    x0 = torch.ones(2, 3, dtype=DT)
    x = layer(th, s, x0=x0)
    assert x.shape == (2, 3)
    assert torch.allclose(x, th / th.norm(dim=1, keepdim=True), atol=1e-10)
    assert torch.autograd.gradcheck(lambda t, s: layer(t, s, x0=x0), (th, s), eps=1e-6, atol=1e-5)


def test_envelope_value_gradient():
    layer = EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1, diff_mode="envelope")
    th = torch.tensor([1.0, 2.0, -0.5], dtype=DT, requires_grad=True)
    v = layer(th, x0=torch.ones(3, dtype=DT))
    # f*(th) = (||th|| - 1)^2 / 2, gradient (||th|| - 1) th / ||th||
    r = th.norm()
    assert torch.allclose(v, 0.5 * (r - 1) ** 2)
    (g,) = torch.autograd.grad(v, th)
    assert torch.allclose(g, ((r - 1) * th / r).detach(), atol=1e-10)


def test_failures_raise_or_warn():
    # max_iter too small: the forward does not converge
    layer = EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1, solver_options={"max_iter": 1})
    th = torch.tensor([1.0, 2.0, -0.5], dtype=DT)
    with pytest.raises(ConvergenceError):
        layer(th, x0=torch.ones(3, dtype=DT))
    warn = EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1, solver_options={"max_iter": 1},
                                    on_failure="warn")
    with pytest.warns(RuntimeWarning):
        warn(th, x0=torch.ones(3, dtype=DT))
    # degenerate KKT at the solution: two copies of one constraint (LICQ fails)
    dup = EqualityConstrainedLayer(lambda x, t: 0.5 * ((x - t) ** 2).sum(),
                                   lambda x, t: torch.stack([x.sum() - 1, x.sum() - 1]), n=3, m=2,
                                   solver_options={"linear_solver": "minres"}, on_failure="warn")
    t = torch.tensor([0.2, 0.1, 0.3], dtype=DT, requires_grad=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = dup(t, x0=torch.zeros(3, dtype=DT))
    with pytest.raises(ConvergenceError, match="LICQ"):
        out.sum().backward()


def test_bad_arguments():
    with pytest.raises(InvalidProblemError, match="diff_mode"):
        EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1, diff_mode="fd")
    with pytest.raises(InvalidProblemError, match="adjoint_solver"):
        EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1, adjoint_solver="lu")
    with pytest.raises(InvalidProblemError, match="m"):
        EqualityConstrainedLayer(sphere_f, sphere_c, n=1, m=2)
    np.testing.assert_equal(EqualityConstrainedLayer(sphere_f, sphere_c, n=3, m=1).extra_repr(),
                            "n=3, m=1, diff_mode='implicit'")
