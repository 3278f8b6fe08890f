"""Implicit differentiation of a solution map ``theta -> z*(theta)`` defined by ``F(z*, theta) = 0``.

By the implicit function theorem, ``dz*/dtheta = -(dF/dz)^{-1} dF/dtheta``, so a vector-Jacobian
product needs one adjoint solve ``(dF/dz)^T u = g`` and one VJP of ``F`` with respect to
``theta``: ``grad_theta = -(dF/dtheta)^T u``. The forward solver is never differentiated through.
"""

from __future__ import annotations

import math
import numbers

from .._backend import get_torch
from ..linalg.krylov import cg, minres

__all__ = ["implicit_function"]

_LINEAR_SOLVERS = ("auto", "dense", "cg", "minres")
#: relative residual of the adjoint solve above which backward refuses to return a gradient
_ADJOINT_RTOL = 1e-6


def _validate(solver, residual, linear_solver, symmetric, tol, maxiter, dense_max):
    if not callable(solver):
        raise TypeError(f"solver: expected a callable, got {type(solver).__name__}")
    if not callable(residual):
        raise TypeError(f"residual: expected a callable, got {type(residual).__name__}")
    if linear_solver not in _LINEAR_SOLVERS:
        raise ValueError(f"linear_solver: must be one of {_LINEAR_SOLVERS}, got {linear_solver!r}")
    if linear_solver in ("cg", "minres") and not symmetric:
        raise ValueError(
            f"linear_solver={linear_solver!r} needs a symmetric Jacobian dF/dz: pass symmetric=True "
            "if it is, or use linear_solver='dense'"
        )
    if not (isinstance(tol, numbers.Real) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol: must be a finite number > 0, got {tol!r}")
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral)
                                or maxiter < 1):
        raise ValueError(f"maxiter: must be None or an integer >= 1, got {maxiter!r}")
    if isinstance(dense_max, bool) or not isinstance(dense_max, numbers.Integral) or dense_max < 0:
        raise ValueError(f"dense_max: must be an integer >= 0, got {dense_max!r}")


def implicit_function(solver, residual, *, linear_solver="auto", symmetric=False, batched=False,
                      tol=1e-10, maxiter=None, dense_max=2000):
    """Make a solution map differentiable by implicit differentiation.

    Parameters
    ----------
    solver : callable
        ``solver(*theta) -> z``, a tensor solving ``F(z, theta) = 0``. It runs under
        ``torch.no_grad()`` on detached copies of the tensor arguments, so it may be any
        algorithm (iterative, external, non-differentiable).
    residual : callable
        ``residual(z, *theta) -> F``, the optimality conditions, a tensor shaped like ``z``
        written with torch operations (differentiated with ``torch.func``).
    linear_solver : {"auto", "dense", "cg", "minres"}
        How the adjoint system ``(dF/dz)^T u = grad_z`` is solved. ``"dense"`` forms ``dF/dz``
        with ``torch.func.jacrev`` and calls ``torch.linalg.solve``; ``"cg"`` (symmetric positive
        definite ``dF/dz``) and ``"minres"`` (symmetric, possibly indefinite) are matrix-free.
        ``"auto"`` is dense up to ``dense_max`` unknowns per instance, then MINRES when
        ``symmetric``; otherwise it raises.
    symmetric : bool
        Whether ``dF/dz`` is symmetric (true when ``F`` is the gradient of a scalar objective).
    batched : bool
        ``z`` has a leading batch dimension of independent instances: ``F_b`` depends on ``z_b``
        only. Then only the per-instance diagonal blocks of ``dF/dz`` are formed or applied.
    tol : float
        Relative tolerance of the Krylov solvers.
    maxiter : int, optional
        Iteration cap of the Krylov solvers (their default: ``10 n``).
    dense_max : int
        Largest per-instance size for which ``"auto"`` picks the dense solve.

    Returns
    -------
    callable
        ``fn(*theta) -> z``, differentiable with respect to every tensor in ``theta`` that
        requires grad. Non-tensor arguments (``None``, floats) get no gradient.

    Raises
    ------
    TypeError
        When ``solver`` or ``residual`` is not callable, or ``solver`` returns a non-tensor.
    ValueError
        On invalid arguments (at construction), or from ``fn`` when ``"auto"`` cannot choose a
        linear solver for a large non-symmetric problem.
    RuntimeError
        From backward when the adjoint solve fails (singular Jacobian, non-finite values, or a
        relative residual above 1e-6): a gradient is never silently wrong or zero.

    Notes
    -----
    Double backward is not supported: the backward pass is ``once_differentiable``.

    Examples
    --------
    Ridge regression, ``F(z) = X^T (X z - y) + lam z``:

    >>> import torch
    >>> def solve(X, y, lam):
    ...     A = X.mT @ X + lam * torch.eye(X.shape[-1], dtype=X.dtype)
    ...     return torch.linalg.solve(A, X.mT @ y)
    >>> def F(z, X, y, lam):
    ...     return X.mT @ (X @ z - y) + lam * z
    >>> ridge = implicit_function(solve, F, symmetric=True)
    >>> X = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    >>> z = ridge(X, torch.randn(8, dtype=torch.float64), 0.5)
    >>> z.sum().backward(); X.grad.shape
    torch.Size([8, 3])
    """
    _validate(solver, residual, linear_solver, symmetric, tol, maxiter, dense_max)
    torch = get_torch()
    once_differentiable = torch.autograd.function.once_differentiable

    def choose(z):
        m = z[0].numel() if batched else z.numel()
        if linear_solver != "auto":
            return linear_solver
        if m <= dense_max:
            return "dense"
        if symmetric:
            return "minres"
        raise ValueError(
            f"linear_solver='auto': the adjoint system has {m} unknowns per instance "
            f"(> dense_max={dense_max}) and symmetric=False, so no matrix-free solver applies; "
            "pass linear_solver='dense' (or raise dense_max), or symmetric=True if dF/dz is symmetric"
        )

    class _Implicit(torch.autograd.Function):
        @staticmethod
        def forward(*theta):
            z = solver(*(t.detach() if torch.is_tensor(t) else t for t in theta))
            if not torch.is_tensor(z):
                raise TypeError(f"solver must return a tensor, got {type(z).__name__}")
            if batched and z.ndim == 0:
                raise ValueError("batched=True: solver returned a 0-d tensor, expected (B, ...)")
            return z

        @staticmethod
        def setup_context(ctx, inputs, output):
            is_t = [torch.is_tensor(t) for t in inputs]
            ctx.is_tensor = is_t
            ctx.others = [None if f else t for t, f in zip(inputs, is_t)]
            ctx.save_for_backward(output, *(t for t, f in zip(inputs, is_t) if f))

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_z):
            z, *tensors = ctx.saved_tensors
            it = iter(tensors)
            theta = [next(it) if f else o for f, o in zip(ctx.is_tensor, ctx.others)]
            diff = [i for i, need in enumerate(ctx.needs_input_grad) if need]
            grads = [None] * len(theta)
            if not diff:
                return tuple(grads)

            def with_theta(vals):
                full = list(theta)
                for i, v in zip(diff, vals):
                    full[i] = v
                return full

            def f_z(zz):
                return residual(zz, *theta)

            def f_theta(*vals):
                return residual(z, *with_theta(vals))

            u = _adjoint_solve(torch, choose(z), f_z, z, grad_z, batched, tol, maxiter)
            _, vjp_theta = torch.func.vjp(f_theta, *(theta[i] for i in diff))
            for i, g in zip(diff, vjp_theta(-u)):
                grads[i] = g
            return tuple(grads)

    def fn(*theta):
        z = _Implicit.apply(*theta)
        if z.requires_grad:
            choose(z)  # an unusable configuration fails at the call site, not later in backward
        return z

    return fn


def _adjoint_solve(torch, method, f_z, z, g, batched, tol, maxiter):
    """Solve ``(dF/dz)^T u = g`` (per instance when ``batched``) and check the result."""
    shape = z.shape
    nb = shape[0] if batched else 1
    m = z.numel() // nb if nb else 0
    F, vjp_z = torch.func.vjp(f_z, z)
    if F.shape != shape:
        raise RuntimeError(f"implicit differentiation: residual(z, *theta) has shape "
                           f"{tuple(F.shape)}, expected the shape of z, {tuple(shape)}")

    def matvec(U):  # (nb, m) -> (nb, m); instances are independent, so one VJP serves all
        return vjp_z(U.reshape(shape))[0].reshape(nb, m)

    G = g.reshape(nb, m)
    if method == "dense":
        if batched:
            # Row block [:, b, :] of d(sum_b F_b)/dz is dF_b/dz_b, the only non-zero block.
            J = torch.func.jacrev(lambda zz: f_z(zz).sum(0))(z).reshape(m, nb, m).transpose(0, 1)
        else:
            J = torch.func.jacrev(f_z)(z).reshape(1, m, m)
        U, info = torch.linalg.solve_ex(J.mT, G.unsqueeze(-1))
        U = U.squeeze(-1)
        if bool((info != 0).any()):
            raise RuntimeError(
                "implicit differentiation: the Jacobian dF/dz is singular "
                f"(instances {torch.nonzero(info).flatten().tolist()}); the solution map is not "
                "differentiable there, or the residual does not determine z")
    else:
        krylov = cg if method == "cg" else minres
        U, info = krylov(matvec, G, rtol=tol, maxiter=maxiter)
    if not bool(torch.isfinite(U).all()):
        raise RuntimeError(
            f"implicit differentiation: the adjoint solve ({method}) produced non-finite values; "
            "check that F(z, theta) is finite at the solution and dF/dz is non-singular")
    res = torch.linalg.vector_norm(matvec(U) - G, dim=-1)
    scale = torch.linalg.vector_norm(G, dim=-1)
    rel = torch.where(scale > 0, res / torch.where(scale > 0, scale, 1.0), res)
    worst = float(rel.max()) if rel.numel() else 0.0
    if not worst <= _ADJOINT_RTOL:
        if method == "dense":
            what, hint = "is inaccurate", "dF/dz is singular or too ill-conditioned"
        else:
            what = f"did not converge after {info['nit']} iterations"
            hint = ("increase maxiter, pass linear_solver='dense', or check that dF/dz is "
                    + ("positive definite" if method == "cg" else "symmetric and non-singular"))
        raise RuntimeError(
            f"implicit differentiation: the adjoint solve ({method}) {what}: relative residual "
            f"{worst:.3g} > {_ADJOINT_RTOL:g}; {hint}")
    return U.reshape(shape)
