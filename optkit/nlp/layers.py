"""Differentiable solution map ``theta -> (x*(theta), lam*(theta))`` of an equality-constrained NLP.

The forward pass solves ``min f(x, theta) s.t. c(x, theta) = 0`` with :func:`optkit.nlp.solve`
(practical mode, tol 1e-10, no autograd graph). The backward pass differentiates the KKT
conditions ``F(x, lam, theta) = (grad_x f + G^T lam, c) = 0`` implicitly: with
``K* = [[H*, G*^T], [G*, 0]]`` at the solution (the EXACT Lagrangian Hessian, never the shifted
one the solver may have used), ``K* (u, v) = (xbar, lambar)`` and
``thetabar = -(dF/dtheta)^T (u, v)``. ``K*`` is nonsingular under LICQ and second-order
sufficiency; when it is not, backward raises :class:`~optkit.ConvergenceError`.
"""

from __future__ import annotations

from collections.abc import Callable

from .._backend import get_torch
from .._errors import ConvergenceError, InvalidProblemError

__all__ = ["EqualityConstrainedLayer"]

torch = get_torch()


def _kkt_residual_fn(f, c):
    """Single-instance ``F(x, lam, *params) -> (N,)``."""

    def lag(x, lam, *ps):
        fv = f(x, *ps) if f is not None else x.sum() * 0.0
        return fv + (lam * c(x, *ps)).sum()

    def F(x, lam, *ps):
        gx = torch.func.grad(lag)(x, lam, *ps)
        return torch.cat([gx, c(x, *ps)])

    return F


class _Adjoint:
    """Solve ``K* w = g`` for a batch (direct, MINRES, or sketch-and-project)."""

    def __init__(self, F, n, m, solver, tol):
        self.F, self.n, self.m, self.solver, self.tol = F, n, m, solver, tol

    def matrix(self, x, lam, params, dims):
        n = self.n

        def K1(x1, l1, *ps):
            J = torch.func.jacrev(lambda z: self.F(z[:n], z[n:], *ps))(torch.cat([x1, l1]))
            return 0.5 * (J + J.T)  # symmetric in exact arithmetic; remove rounding asymmetry

        return torch.func.vmap(K1, in_dims=(0, 0, *dims))(x, lam, *params)

    def matvec(self, x, lam, params, dims):
        n = self.n

        def mv1(x1, l1, w, *ps):
            z = torch.cat([x1, l1])
            return torch.func.jvp(lambda zz: self.F(zz[:n], zz[n:], *ps), (z,), (w,))[1]

        vm = torch.func.vmap(mv1, in_dims=(0, 0, 0, *dims))
        return lambda W: vm(x, lam, W, *params)

    def solve(self, x, lam, params, dims, g):
        N = self.n + self.m
        solver = self.solver
        if solver == "auto":
            solver = "direct" if N <= 2000 else "minres"
        gn = torch.linalg.vector_norm(g, dim=-1)
        if solver == "direct":
            K = self.matrix(x, lam, params, dims)
            w, info = torch.linalg.solve_ex(K, g[..., None])
            w = w[..., 0]
            bad = (info != 0) | ~torch.isfinite(w).all(-1)
            res = torch.linalg.vector_norm((K @ w[..., None])[..., 0] - g, dim=-1)
        else:
            mv = self.matvec(x, lam, params, dims)
            if solver == "minres":
                from ..linalg.krylov import minres

                w = minres(mv, g, rtol=self.tol * 0.1, maxiter=max(1000, 20 * N))
                w = w[0] if isinstance(w, tuple) else w
            else:  # sketch-and-project with Gaussian blocks
                from .sketching import project_step

                gen = torch.Generator(device=g.device)
                gen.manual_seed(0)
                w = torch.zeros_like(g)
                r = -g
                q = min(N, 32)
                for it in range(max(1000, 50 * N)):
                    S = torch.randn((g.shape[0], N, q), generator=gen, dtype=g.dtype, device=g.device)
                    W = torch.stack([mv(S[:, :, j]) for j in range(q)], dim=2)
                    dz, _ = project_step(S, W, r)
                    w = w - dz
                    r = r - mv(dz)
                    if it % 10 == 9:
                        r = mv(w) - g
                        if bool((torch.linalg.vector_norm(r, dim=-1) <= self.tol * gn).all()):
                            break
            bad = ~torch.isfinite(w).all(-1)
            res = torch.linalg.vector_norm(mv(w) - g, dim=-1)
        bad = bad | (res > max(self.tol, 1e-12) * torch.clamp(gn, min=1.0) * 1e3)
        if bool(bad.any()):
            raise ConvergenceError(
                "EqualityConstrainedLayer backward: the KKT matrix at the solution is singular or "
                "ill-conditioned (adjoint residual too large); LICQ or second-order sufficiency "
                "fails at x*")
        return w


class _ImplicitFn(torch.autograd.Function):
    @staticmethod
    def forward(layer, x, lam, *params):
        return x.clone(), lam.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        layer, x, lam, *params = inputs
        ctx.layer = layer
        ctx.save_for_backward(x, lam, *params)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, xbar, lambar):
        layer = ctx.layer
        x, lam, *params = ctx.saved_tensors
        dims = layer._dims
        g = torch.cat([xbar, lambar], dim=-1)
        w = layer._adjoint.solve(x, lam, params, dims, g)
        n = layer.n
        u, v = w[:, :n], w[:, n:]
        F = layer._F
        grads = []
        if params:
            idx = [i for i, p in enumerate(params) if p.is_floating_point()]
            fl = [params[i] for i in idx]
            fdims = tuple(dims[i] for i in idx)
            others = {i: params[i] for i in range(len(params)) if i not in idx}

            def pull_f(x1, l1, u1, v1, *fps):
                def F_of(*qs):
                    full = list(range(len(params)))
                    it = iter(qs)
                    args = [next(it) if i in idx else others[i] for i in full]
                    return F(x1, l1, *args)

                _, vjp = torch.func.vjp(F_of, *fps)
                return vjp(torch.cat([u1, v1]))

            out = torch.func.vmap(pull_f, in_dims=(0, 0, 0, 0, *fdims), out_dims=0)(x, lam, u, v, *fl)
            gi = {}
            for j, i in enumerate(idx):
                gr = -out[j]
                if dims[i] is None:  # shared parameter: sum the per-instance cotangents
                    gr = gr.sum(0)
                gi[i] = gr
            grads = [gi.get(i) for i in range(len(params))]
        return (None, None, None, *grads)


class EqualityConstrainedLayer(torch.nn.Module):
    """``x*(theta) = argmin f(x, theta) s.t. c(x, theta) = 0`` as a torch module (spec nlp §5.5).

    Parameters
    ----------
    f, c : callable
        Single-instance torch functions ``f(x, *params) -> scalar`` (or None for a system of
        equations) and ``c(x, *params) -> (m,)``.
    n, m : int
        Sizes of x and c.
    solver_options : dict, optional
        Options of :func:`optkit.nlp.solve` (default practical mode, ``tol=1e-10``).
    diff_mode : {"implicit", "unroll", "envelope", "none"}
        implicit: the KKT adjoint (default). unroll: differentiate through ``unroll_steps`` exact
        Newton-KKT steps taken from the solution with autograd on (for tests). envelope: the layer
        returns the optimal value ``f(x*, theta)`` with ``d f*/d theta = d_theta L(x*, lam*)``.
        none: no gradient.
    adjoint_solver : {"auto", "direct", "minres", "sketch"}
        auto = direct (``solve_ex``) for N <= 2000, else MINRES.
    adjoint_tol : float
        Relative residual of the adjoint solve.
    return_multipliers : bool
        Also return ``lam*``.
    warm_start : bool
        Start the next forward from the last solution when shapes match.
    on_failure : {"raise", "warn"}
        A forward that does not converge raises :class:`ConvergenceError` or warns.
    batched : bool
        Parameters carry a leading batch dimension B (every parameter whose first dimension equals
        the batch size of the first parameter is batched; others are shared).
    """

    def __init__(self, f: Callable | None, c: Callable, *, n: int, m: int, solver_options=None,
                 diff_mode: str = "implicit", adjoint_solver: str = "auto", adjoint_tol: float = 1e-10,
                 return_multipliers: bool = False, warm_start: bool = True, on_failure: str = "raise",
                 batched: bool = False, unroll_steps: int = 3):
        super().__init__()
        if diff_mode not in ("implicit", "unroll", "envelope", "none"):
            raise InvalidProblemError(f"diff_mode: expected implicit, unroll, envelope or none, got {diff_mode!r}")
        if adjoint_solver not in ("auto", "direct", "minres", "sketch"):
            raise InvalidProblemError(f"adjoint_solver: expected auto, direct, minres or sketch, got {adjoint_solver!r}")
        if on_failure not in ("raise", "warn"):
            raise InvalidProblemError(f"on_failure: expected 'raise' or 'warn', got {on_failure!r}")
        if not (adjoint_tol > 0):
            raise InvalidProblemError(f"adjoint_tol: must be > 0, got {adjoint_tol!r}")
        if int(m) < 1 or int(n) < int(m):
            raise InvalidProblemError(f"m: need 1 <= m <= n, got n={n}, m={m}")
        self.f, self.c, self.n, self.m = f, c, int(n), int(m)
        self.solver_options = {"tol": 1e-10, **(solver_options or {})}
        self.diff_mode, self.return_multipliers = diff_mode, return_multipliers
        self.warm_start, self.on_failure, self.batched = warm_start, on_failure, batched
        self.unroll_steps = int(unroll_steps)
        self._F = _kkt_residual_fn(f, c)
        self._adjoint = _Adjoint(self._F, self.n, self.m, adjoint_solver, adjoint_tol)
        self._last = None
        self.last_result = None

    # ------------------------------------------------------------------ helpers
    def _batch(self, params, x0):
        if self.batched:
            if not params:
                raise InvalidProblemError("batched=True needs at least one parameter")
            B = params[0].shape[0]
            dims = tuple(0 if (p.ndim >= 1 and p.shape[0] == B) else None for p in params)
        else:
            B = 1
            dims = tuple(0 for _ in params)
        return B, dims

    def forward(self, *params, x0=None, y0=None):
        from .al_newton import solve
        from .problem import Problem

        params = tuple(params)
        ref = next((p for p in params if torch.is_tensor(p) and p.is_floating_point()), None)
        dtype = ref.dtype if ref is not None else torch.float64
        device = ref.device if ref is not None else torch.device("cpu")
        B, dims = self._batch(params, x0)
        # batched internal view of the parameters
        P = tuple(p if (self.batched and d == 0) else (p.unsqueeze(0) if not self.batched else p)
                  for p, d in zip(params, dims))
        if not self.batched:
            dims = tuple(0 for _ in P)
        if x0 is None:
            if self.warm_start and self._last is not None and self._last[0].shape == (B, self.n):
                x0, y0 = self._last
                x0, y0 = x0.to(device=device, dtype=dtype), y0.to(device=device, dtype=dtype)
            else:
                x0 = torch.zeros(B, self.n, dtype=dtype, device=device)
        x0 = torch.as_tensor(x0, dtype=dtype, device=device)
        x0 = x0.expand(B, self.n).clone() if x0.ndim == 1 else x0
        det = tuple(p.detach() for p in P)
        if self.batched:
            prob = Problem.from_torch(self.f, self.c, x0, params=det)
        else:
            prob = Problem.from_torch(self.f, self.c, x0[0], params=tuple(p[0] for p in det))
        opts = dict(self.solver_options)
        if y0 is not None:
            y0 = torch.as_tensor(y0, dtype=dtype, device=device)
            opts["y0"] = y0 if self.batched else y0.reshape(-1, self.m)[0]
        with torch.no_grad():
            res = solve(prob, **opts)
        self.last_result = res
        if not res.success:
            msg = f"EqualityConstrainedLayer forward did not converge: {res.status.name} ({res.message})"
            if self.on_failure == "raise":
                raise ConvergenceError(msg, result=res)
            import warnings

            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        x = res.x.reshape(B, self.n).detach()
        lam = res.multipliers.reshape(B, self.m).detach()
        if res.success and self.n + self.m <= 2000:
            x, lam = self._polish(x, lam, tuple(p.detach() for p in P), dims)
        self._last = (x.clone(), lam.clone())
        need_grad = torch.is_grad_enabled() and any(torch.is_tensor(p) and p.requires_grad for p in P)
        if self.diff_mode == "envelope":
            out = self._envelope(x, lam, P, dims)
            return out if self.batched else out[0]
        if need_grad and self.diff_mode == "implicit":
            self._dims = dims
            x, lam = _ImplicitFn.apply(self, x, lam, *P)
        elif need_grad and self.diff_mode == "unroll":
            x, lam = self._unroll(x, lam, P, dims)
        if not self.batched:
            x, lam = x[0], lam[0]
        return (x, lam) if self.return_multipliers else x

    def _polish(self, x, lam, P, dims):
        """One exact Newton-KKT step from the converged point: the solution map is then accurate
        to rounding, so finite-difference checks of the gradients are meaningful."""
        with torch.no_grad():
            try:
                x1, l1 = self._unroll(x, lam, P, dims, steps=1)
            except RuntimeError:  # singular KKT matrix: nothing to polish (backward will say why)
                return x, lam
            F = torch.func.vmap(self._F, in_dims=(0, 0, *dims))
            r0 = torch.linalg.vector_norm(F(x, lam, *P), dim=-1)
            r1 = torch.linalg.vector_norm(F(x1, l1, *P), dim=-1)
            keep = (torch.isfinite(r1) & (r1 <= r0))[:, None]
            return torch.where(keep, x1, x), torch.where(keep, l1, lam)

    def _envelope(self, x, lam, P, dims):
        f, c = self.f, self.c

        def L1(x1, l1, *ps):
            fv = f(x1, *ps) if f is not None else x1.sum() * 0.0
            return fv + (l1 * c(x1, *ps)).sum()

        # L(x*, lam*, theta) = f(x*, theta) at a feasible point; its theta-gradient is the envelope
        return torch.func.vmap(L1, in_dims=(0, 0, *dims))(x, lam, *P)

    def _unroll(self, x, lam, P, dims, steps=None):
        n = self.n
        F = self._F

        def newton(x1, l1, *ps):
            z = torch.cat([x1, l1])
            Fz = F(x1, l1, *ps)
            J = torch.func.jacrev(lambda zz: F(zz[:n], zz[n:], *ps))(z)
            return z - torch.linalg.solve(J, Fz)

        step = torch.func.vmap(newton, in_dims=(0, 0, *dims))
        for _ in range(max(1, self.unroll_steps if steps is None else steps)):
            z = step(x, lam, *P)
            x, lam = z[:, :n], z[:, n:]
        return x, lam

    def extra_repr(self):
        return f"n={self.n}, m={self.m}, diff_mode={self.diff_mode!r}"
