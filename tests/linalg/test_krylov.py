import numpy as np
import pytest
import torch

from optkit.linalg import cg, minres

N = 30


def _spectral(eigs, seed=0):
    """Batch of symmetric matrices Q diag(eigs) Q^T with random orthogonal Q."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(eigs.shape[0], N, N, generator=gen, dtype=torch.float64))
    return Q @ torch.diag_embed(eigs) @ Q.mT


def _matvec(A):
    return lambda v: (A @ v.unsqueeze(-1)).squeeze(-1)


def _mixed_eigs(conds, indefinite=False):
    """One instance per condition number: mixed difficulty within one batch."""
    ev = torch.stack([torch.logspace(0, np.log10(c), N, dtype=torch.float64) for c in conds])
    if indefinite:
        ev = ev * torch.where(torch.arange(N) % 2 == 0, 1.0, -1.0).to(ev)
    return ev


def _rhs(B, seed=1):
    return torch.randn(B, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rel_err(x, ref):
    return (torch.linalg.vector_norm(x - ref, dim=-1) / torch.linalg.vector_norm(ref, dim=-1)).max()


def test_cg_matches_solve_on_spd_batch():
    A = _spectral(_mixed_eigs([1, 10, 1e3, 1e5]))
    b = _rhs(4)
    x, info = cg(_matvec(A), b)
    assert info["converged"].all() and isinstance(info["nit"], int)
    assert _rel_err(x, torch.linalg.solve(A, b)) < 1e-8
    assert (info["residual"] <= 1e-9 * torch.linalg.vector_norm(b, dim=-1)).all()


def test_cg_vector_rhs_and_zero_instance():
    A = _spectral(_mixed_eigs([1, 100]))
    b = _rhs(2)
    b[1] = 0.0
    x, info = cg(_matvec(A), b)
    assert torch.equal(x[1], torch.zeros(N, dtype=torch.float64)) and info["converged"].all()
    x1, info1 = cg(lambda v: A[0] @ v, b[0])
    assert x1.shape == (N,) and info1["converged"].ndim == 0
    torch.testing.assert_close(x1, torch.linalg.solve(A[0], b[0]))


def test_cg_semidefinite_consistent():
    ev = _mixed_eigs([10, 10])
    ev[:, :4] = 0.0
    A = _spectral(ev)
    b = _matvec(A)(_rhs(2))
    _, info = cg(_matvec(A), b)
    assert info["converged"].all()
    assert (info["residual"] <= 1e-8 * torch.linalg.vector_norm(b, dim=-1)).all()


def test_minres_matches_solve_on_indefinite_batch():
    A = _spectral(_mixed_eigs([1, 10, 1e3, 1e5], indefinite=True))
    b = _rhs(4)
    x, info = minres(_matvec(A), b)
    assert info["converged"].all()
    assert _rel_err(x, torch.linalg.solve(A, b)) < 1e-8


def test_minres_shift():
    A = _spectral(_mixed_eigs([10, 10]))
    b = _rhs(2)
    x, info = minres(_matvec(A), b, shift=5.5)
    ref = torch.linalg.solve(A - 5.5 * torch.eye(N, dtype=torch.float64), b)
    assert info["converged"].all() and _rel_err(x, ref) < 1e-8


def test_minres_singular_consistent_gives_min_norm():
    ev = _mixed_eigs([1, 10, 1e3], indefinite=True)
    ev[:, :5] = 0.0
    A = _spectral(ev)
    b = _matvec(A)(_rhs(3))
    x, info = minres(_matvec(A), b)
    assert info["converged"].all()
    assert (info["residual"] <= 1e-8 * torch.linalg.vector_norm(b, dim=-1)).all()
    assert _rel_err(x, (torch.linalg.pinv(A) @ b.unsqueeze(-1)).squeeze(-1)) < 1e-6


def test_minres_singular_inconsistent_stays_bounded():
    ev = _mixed_eigs([1, 10, 1e3], indefinite=True)
    ev[:, :5] = 0.0
    A = _spectral(ev)
    b = _rhs(3)
    x, info = minres(_matvec(A), b)
    x_ls = (torch.linalg.pinv(A) @ b.unsqueeze(-1)).squeeze(-1)
    best = torch.linalg.vector_norm(b - _matvec(A)(x_ls), dim=-1)
    assert not info["converged"].any()
    torch.testing.assert_close(info["residual"], best, rtol=1e-6, atol=0)
    assert torch.isfinite(x).all() and (torch.linalg.vector_norm(x, dim=-1) < 100).all()


@pytest.mark.parametrize("solver,indefinite", [(cg, False), (minres, True)])
def test_maxiter_honoured(solver, indefinite):
    A = _spectral(_mixed_eigs([1, 1e4], indefinite=indefinite))
    calls = []

    def mv(v):
        calls.append(1)
        return _matvec(A)(v)

    _, info = solver(mv, _rhs(2), maxiter=3)
    assert info["nit"] <= 3 and len(calls) <= 4  # 3 iterations + the final residual
    assert info["converged"].tolist() == [True, False]  # identity-like instance done in 1 step


@pytest.mark.parametrize("solver", [cg, minres])
def test_x0_at_solution_needs_no_iteration(solver):
    A = _spectral(_mixed_eigs([10, 100]))
    b = _rhs(2)
    _, info = solver(_matvec(A), b, x0=torch.linalg.solve(A, b), rtol=1e-8)
    assert info["nit"] == 0 and info["converged"].all()


@pytest.mark.parametrize("solver", [cg, minres])
def test_numpy_input(solver):
    A = _spectral(_mixed_eigs([10]))[0].numpy()
    b = np.arange(1.0, N + 1)
    x, info = solver(lambda v: A @ v, b)
    assert isinstance(x, np.ndarray) and bool(info["converged"])
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-8)


@pytest.mark.parametrize("solver", [cg, minres])
@pytest.mark.parametrize("kwargs,name", [({"rtol": -1.0}, "rtol"), ({"atol": float("nan")}, "atol"),
                                         ({"maxiter": 2.5}, "maxiter"),
                                         ({"b": torch.zeros(2, 2, 2)}, "b"),
                                         ({"x0": torch.zeros(3)}, "x0")])
def test_bad_arguments(solver, kwargs, name):
    args = {"b": torch.ones(2, 4, dtype=torch.float64), **kwargs}
    with pytest.raises(ValueError, match=name):
        solver(lambda v: v, **args)
