import pytest
import torch

from optkit.autodiff import check_gradients, implicit_function

B, M, N = 3, 8, 5  # batch, samples, features
SOLVERS = ["dense", "cg", "minres"]


def _ridge_solve(X, y, lam):
    A = X.mT @ X + lam[..., None, None] * torch.eye(X.shape[-1], dtype=X.dtype)
    return torch.linalg.solve(A, (X.mT @ y.unsqueeze(-1))).squeeze(-1)


def _ridge_residual(z, X, y, lam):
    Xz_y = (X @ z.unsqueeze(-1)).squeeze(-1) - y
    return (X.mT @ Xz_y.unsqueeze(-1)).squeeze(-1) + lam[..., None] * z


def _data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(B, M, N, generator=gen, dtype=torch.float64)
    y = torch.randn(B, M, generator=gen, dtype=torch.float64)
    lam = torch.rand(B, generator=gen, dtype=torch.float64) + 0.1
    return [t.requires_grad_() for t in (X, y, lam)]


def _ridge(linear_solver, **kw):
    return implicit_function(_ridge_solve, _ridge_residual, linear_solver=linear_solver,
                             symmetric=True, batched=True, **kw)


@pytest.mark.parametrize("linear_solver", SOLVERS)
def test_ridge_gradcheck(linear_solver):
    assert torch.autograd.gradcheck(_ridge(linear_solver), tuple(_data()))


@pytest.mark.parametrize("linear_solver", SOLVERS)
def test_ridge_matches_autograd_through_solve(linear_solver):
    inputs = _data(1)
    G = torch.randn(B, N, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    implicit = torch.autograd.grad((G * _ridge(linear_solver)(*inputs)).sum(), inputs)
    direct = torch.autograd.grad((G * _ridge_solve(*inputs)).sum(), inputs)
    for a, b in zip(implicit, direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_unbatched_auto_with_non_tensor_theta():
    def solve(X, y, lam, note):
        return _ridge_solve(X, y, torch.tensor(lam, dtype=X.dtype))

    def residual(z, X, y, lam, note):
        return _ridge_residual(z, X, y, torch.tensor(lam, dtype=X.dtype))

    fn = implicit_function(solve, residual)  # auto -> dense for 5 unknowns
    X, y, _ = _data(3)
    X, y = X[0].detach().requires_grad_(), y[0].detach().requires_grad_()
    z = fn(X, y, 0.7, None)
    gX, gy = torch.autograd.grad(z.sum(), (X, y))
    lam = torch.tensor(0.7, dtype=torch.float64)
    rX, ry = torch.autograd.grad(_ridge_solve(X, y, lam).sum(), (X, y))
    torch.testing.assert_close(gX, rX)
    torch.testing.assert_close(gy, ry)
    assert torch.autograd.gradcheck(lambda X, y: fn(X, y, 0.7, None), (X, y))


def test_only_required_grads_are_computed():
    X, y, lam = _data(4)
    X.requires_grad_(False)
    z = _ridge("dense")(X, y, lam)
    gy, glam = torch.autograd.grad(z.sum(), (y, lam))
    assert gy.shape == y.shape and glam.shape == lam.shape and X.grad is None


def test_auto_switches_to_minres_and_refuses_non_symmetric():
    inputs = _data(5)
    fn = implicit_function(_ridge_solve, _ridge_residual, symmetric=True, batched=True,
                           dense_max=0)
    g = torch.autograd.grad(fn(*inputs).sum(), inputs)
    ref = torch.autograd.grad(_ridge_solve(*inputs).sum(), inputs)
    torch.testing.assert_close(g, ref)
    fn = implicit_function(_ridge_solve, _ridge_residual, batched=True, dense_max=0)
    with pytest.raises(ValueError, match="linear_solver='dense'"):
        fn(*inputs)
    with torch.no_grad():
        fn(*inputs)  # no gradient wanted: no linear solver needed


@pytest.mark.parametrize("kwargs,name", [
    ({"linear_solver": "lu"}, "linear_solver"),
    ({"linear_solver": "cg"}, "symmetric"),
    ({"linear_solver": "minres", "symmetric": False}, "symmetric"),
    ({"tol": 0.0}, "tol"),
    ({"tol": float("nan")}, "tol"),
    ({"maxiter": 0}, "maxiter"),
    ({"dense_max": -1}, "dense_max"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        implicit_function(_ridge_solve, _ridge_residual, **kwargs)

def test_non_callable_solver_raises():
    with pytest.raises(TypeError, match="solver"):
        implicit_function(None, _ridge_residual)


def _linear_map(A):
    """z*(b) = A^{-1} b, written as a solution map with residual A z - b."""
    return (lambda b: torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1),
            lambda z, b: A @ z - b)


def test_singular_jacobian_raises_in_backward():
    A = torch.diag(torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64))
    solve, residual = _linear_map(A)
    b = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    for ls in ("dense", "minres"):
        z = implicit_function(solve, residual, linear_solver=ls, symmetric=True)(b)
        with pytest.raises(RuntimeError, match="adjoint solve|singular"):
            z.sum().backward()
    assert b.grad is None


def test_krylov_non_convergence_raises():
    Q, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(0, 6, 20, dtype=torch.float64)) @ Q.T
    solve, residual = _linear_map(A)
    fn = implicit_function(solve, residual, linear_solver="cg", symmetric=True, maxiter=2)
    b = torch.ones(20, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="did not converge after 2 iterations"):
        fn(b).sum().backward()


def test_non_finite_residual_raises():
    fn = implicit_function(lambda t: t.clone(), lambda z, t: (z - t) * float("nan"))
    t = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="adjoint solve"):
        fn(t).sum().backward()


def test_check_gradients_passes_and_catches_wrong_gradient():
    inputs = _data(6)
    errs = check_gradients(_ridge("dense"), inputs)
    assert errs["gradcheck"] and errs["max_abs_error"] < 1e-6
    assert set(errs["per_input"]) == {0, 1, 2}

    def wrong_residual(z, X, y, lam):  # optimality of a different lam: gradient is wrong
        return _ridge_residual(z, X, y, 2 * lam)

    wrong = implicit_function(_ridge_solve, wrong_residual, batched=True)
    with pytest.raises(AssertionError, match="gradcheck"):
        check_gradients(wrong, inputs)
