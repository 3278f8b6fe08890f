"""Lower-level models: barrier values, Newton systems and hypergradient products, batched.

Every array carries a leading batch dimension B (numpy: B = 1). Two models:

* :class:`StructuredModel` for ``LowerQP`` / ``LowerLP``: ``Q, q, A, b`` are evaluated once per
  x and the Newton system ``H = Q + t A^T S^-2 A`` is one batched GEMM. The x-part of the
  hypergradient is exact with first-order oracles only: for f quadratic and g affine in y,
  ``<grad_y f(x, y), v> = (f(x, y + v) - f(x, y - v)) / 2`` and
  ``<J_y g_i(x, y), v> = g_i(x, y + v) - g_i(x, y)`` hold exactly, so
  ``grad_x <grad_y f_t(x, y), v>`` needs two ``grad_f`` and three ``vjp_g`` calls (numpy), or one
  ``torch.func.grad`` (torch).
* :class:`AutodiffModel` for general ``f, g`` (torch.func; numpy arrays are converted).
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import Backend, get_torch, is_torch
from .._errors import BackendError, DependencyError, InvalidProblemError
from .problem import Box, LowerLP, LowerQP, lower_data


class Ops:
    """The handful of array operations the solvers need, for numpy (B = 1) and torch."""

    def __init__(self, be: Backend):
        self.be = be
        self.torch = get_torch() if be.is_torch else None

    def arr(self, v, dtype=None):
        if self.torch is not None:
            return self.torch.as_tensor(v, dtype=dtype or self.be.dtype, device=self.be.device)
        return np.asarray(v, dtype=dtype or self.be.dtype)

    def zeros(self, *shape):
        if self.torch is not None:
            return self.torch.zeros(*shape, dtype=self.be.dtype, device=self.be.device)
        return np.zeros(shape, dtype=self.be.dtype)

    def host(self, v):
        if self.torch is not None and self.torch.is_tensor(v):
            return v.detach().cpu().numpy()
        return np.asarray(v)

    def log(self, v):
        return self.torch.log(v) if self.torch is not None else np.log(v)

    def where(self, c, a, b):
        if self.torch is not None:
            a = a if self.torch.is_tensor(a) else self.torch.as_tensor(a, dtype=self.be.dtype, device=self.be.device)
            b = b if self.torch.is_tensor(b) else self.torch.as_tensor(b, dtype=self.be.dtype, device=self.be.device)
            return self.torch.where(c, a, b)
        return np.where(c, a, b)

    def amax(self, v, axis=-1):
        if self.torch is not None:
            return self.torch.amax(v, dim=axis)
        return np.max(v, axis=axis)

    def amin(self, v, axis=-1):
        if self.torch is not None:
            return self.torch.amin(v, dim=axis)
        return np.min(v, axis=axis)

    def norm(self, v):
        if self.torch is not None:
            return self.torch.linalg.vector_norm(v, dim=-1)
        return np.linalg.norm(v, axis=-1)

    def dot(self, a, b):
        return (a * b).sum(-1)

    def mv(self, M, v):  # (B, m, n) @ (B, n) -> (B, m)
        return (M @ v[..., None])[..., 0]

    def mtv(self, M, v):  # (B, m, n)^T @ (B, m) -> (B, n)
        return (v[..., None, :] @ M)[..., 0, :]

    def isfinite(self, v):
        return self.torch.isfinite(v) if self.torch is not None else np.isfinite(v)

    def chol(self, H):
        """Batched Cholesky factor and a host bool array ``ok`` (False: not positive definite)."""
        if self.torch is not None:
            L, info = self.torch.linalg.cholesky_ex(H)
            ok = self.host(info == 0) & self.host(self.torch.isfinite(L).all(-1).all(-1))
            return L, ok
        L = np.zeros_like(H)
        ok = np.zeros(H.shape[0], dtype=bool)
        for i in range(H.shape[0]):
            try:
                L[i] = np.linalg.cholesky(H[i])
                ok[i] = np.isfinite(L[i]).all()
            except np.linalg.LinAlgError:
                ok[i] = False
        return L, ok

    def chol_solve(self, L, b):
        if self.torch is not None:
            return self.torch.cholesky_solve(b[..., None], L)[..., 0]
        from scipy.linalg import cho_solve

        return np.stack([cho_solve((L[i], True), b[i]) for i in range(L.shape[0])])

    def stack(self, rows):
        return self.torch.stack(rows) if self.torch is not None else np.stack(rows)

    def project(self, S, V):
        """Rows of V projected onto a Box, a per-vector projection callable, or None (whole space)."""
        if S is None:
            return V
        if isinstance(S, Box):
            return S.project(V)
        return self.stack([self.arr(S(V[i])) for i in range(V.shape[0])])

    def coerce(self, v, n, name):
        """A validated copy of a start: shape (n,) (torch also (B, n)), finite, in this backend."""
        if is_torch(v) and self.torch is None:
            raise BackendError(f"{name}: torch tensor on a numpy solve")
        try:
            a = self.arr(v if is_torch(v) else np.asarray(v, dtype=float))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidProblemError(f"{name}: cannot convert to an array ({exc})") from None
        batched_ok = self.torch is not None
        if a.ndim == 0 or a.shape[-1] != n or a.ndim > 2 or (a.ndim == 2 and not batched_ok):
            raise InvalidProblemError(f"{name}: expected shape ({n},)" + (" or (B, n)" if batched_ok else "")
                                      + f", got {tuple(a.shape)}")
        if not bool(self.host(self.isfinite(a)).all()):
            raise InvalidProblemError(f"{name}: contains NaN or inf")
        return a.clone() if batched_ok else a.copy()

    def mask(self, m):
        """A host bool mask as a backend bool array shaped for broadcasting over (B, n)."""
        if self.torch is not None:
            return self.torch.as_tensor(np.asarray(m), device=self.be.device)[:, None]
        return np.asarray(m)[:, None]

    def bmask(self, m):
        if self.torch is not None:
            return self.torch.as_tensor(np.asarray(m), device=self.be.device)
        return np.asarray(m)


def scalar_or_array(v):
    """A host value for histories and callbacks: a float for one instance, an array for a batch."""
    v = np.asarray(v)
    return float(v[0]) if v.size == 1 else v.copy()


def _stack(rows, shape=None):
    """Stack per-instance numpy outputs as float64 (B = 1, the numpy path, without np.stack)."""
    if len(rows) == 1:
        a = np.asarray(rows[0], dtype=float)
        return (a.reshape(shape) if shape is not None else a)[None]
    return np.stack([np.asarray(r, dtype=float).reshape(shape) if shape is not None else np.asarray(r, float)
                     for r in rows])


def _box_rows(Y, n_y):
    """Finite bounds of a Box Y as extra rows ``G y <= h``: returns (G, h) host arrays or None."""
    if Y is None:
        return None
    lo, hi = Y.bounds(n_y)
    eye = np.eye(n_y)
    up, dn = np.isfinite(hi), np.isfinite(lo)
    if not up.any() and not dn.any():
        return None
    G = np.vstack([eye[up], -eye[dn]])
    h = np.concatenate([hi[up], -lo[dn]])
    return G, h


class _Base:
    """Pieces shared by both models: the upper objective, its gradient, problem sizes."""

    def __init__(self, problem, be: Backend, ops: Ops):
        self.p, self.be, self.ops = problem, be, ops
        self.n_x, self.n_y, self.m = problem.n_x, problem.n_y, problem.m
        self.box = _box_rows(problem.Y, problem.n_y) if isinstance(problem.Y, Box) else None
        self.m_tot = self.m + (0 if self.box is None else self.box[0].shape[0])
        self.params_host = tuple(ops.host(v) if hasattr(v, "shape") else v for v in problem.params)
        self.params = tuple(ops.arr(v) if hasattr(v, "shape") else v for v in problem.params)
        self._tf = None

    # -- torch.func helpers (built lazily; numpy problems reach them only for missing derivatives)
    def tf(self):
        if self._tf is None:
            self._tf = _TorchFuncs(self.p, self.box, self.m)
        return self._tf

    def _call_batched(self, fn, X, Y, *extra):
        """Evaluate a per-instance numpy callable over the batch, stacking the outputs."""
        return [fn(X[i], Y[i], *[e[i] for e in extra], *self.params) for i in range(X.shape[0])]

    def F(self, X, Y):
        if self.be.is_torch:
            return self.tf().F(X, Y, self.params)
        return np.array([float(v) for v in self._call_batched(self.p.F, X, Y)])

    def f(self, X, Y):
        if self.be.is_torch:
            return self.tf().f(X, Y, self.params)
        return np.array([float(v) for v in self._call_batched(self.p.f, X, Y)])

    def g_user(self, X, Y):
        if self.m == 0:
            return self.ops.zeros(X.shape[0], 0)
        if self.be.is_torch:
            return self.tf().g(X, Y, self.params)
        return _stack(self._call_batched(self.p.g, X, Y), (self.m,))

    def grad_F(self, X, Y):
        # torch solves differentiate the callables themselves: the numpy oracles may not take tensors
        if self.be.is_torch:
            return self.tf().grad_F(X, Y, self.params)
        if self.p.grad_F is not None:
            outs = self._call_batched(self.p.grad_F, X, Y)
            return _stack([o[0] for o in outs]), _stack([o[1] for o in outs])
        return _host_call(self.tf().grad_F, X, Y, self.params_host)

    def grad_f(self, X, Y):
        """``(grad_x f, grad_y f)`` over the batch."""
        if self.be.is_torch:
            return self.tf().grad_f(X, Y, self.params)
        if self.p.grad_f is not None:
            outs = self._call_batched(self.p.grad_f, X, Y)
            return _stack([o[0] for o in outs], (self.n_x,)), _stack([o[1] for o in outs], (self.n_y,))
        return _host_call(self.tf().grad_f, X, Y, self.params_host)

    def vjp_g(self, X, Y, Lam):
        """``(J_x g^T lam, J_y g^T lam)`` for the user rows over the batch."""
        if self.be.is_torch:
            return self.tf().vjp_g(X, Y, Lam, self.params)
        if self.p.vjp_g is not None:
            outs = self._call_batched(self.p.vjp_g, X, Y, Lam)
            return _stack([o[0] for o in outs], (self.n_x,)), _stack([o[1] for o in outs], (self.n_y,))
        return _host_call(self.tf().vjp_g, X, Y, self.params_host, Lam=Lam)

    def grad_f_x(self, X, Y):
        if self.p.grad_f is not None and not self.be.is_torch:
            return _stack([o[0] for o in self._call_batched(self.p.grad_f, X, Y)])
        if self.be.is_torch:
            return self.tf().grad_f(X, Y, self.params)[0]
        return _host_call(self.tf().grad_f, X, Y, self.params_host)[0]

    def vjp_g_x(self, X, Y, Lam):
        """``J_x g(x, y)^T lam`` for the user rows."""
        if self.p.vjp_g is not None and not self.be.is_torch:
            return _stack([o[0] for o in self._call_batched(self.p.vjp_g, X, Y, Lam)])
        if self.be.is_torch:
            return self.tf().vjp_g(X, Y, Lam, self.params)[0]
        return _host_call(self.tf().vjp_g, X, Y, self.params_host, Lam=Lam)[0]


def _host_call(fn, X, Y, params, Lam=None):
    """Run a torch.func derivative on numpy arrays (CPU, float64) and return numpy arrays."""
    torch = get_torch()
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    pt = tuple(torch.as_tensor(v) if hasattr(v, "shape") else v for v in params)
    try:
        out = fn(Xt, Yt, torch.as_tensor(Lam), pt) if Lam is not None else fn(Xt, Yt, pt)
    except Exception as exc:
        raise InvalidProblemError(
            "a derivative is missing (grad_F, grad_f or vjp_g) and torch.func could not differentiate the "
            f"problem's callables on tensors ({type(exc).__name__}: {exc}); give the numpy derivatives or "
            "write F, f, g with operations that accept torch tensors") from None
    return tuple(o.detach().numpy() for o in out)


class StructuredModel(_Base):
    """``LowerQP`` / ``LowerLP``: closed-form Newton systems, exact fraction to boundary."""

    linear_in_y = True

    def __init__(self, problem, be, ops):
        super().__init__(problem, be, ops)
        lw = problem.lower
        self.is_lp = isinstance(lw, LowerLP)
        self.fields = (None if self.is_lp else lw.Q, lw.c if self.is_lp else lw.q, lw.A, lw.b)

    def _eval(self, part, X, shape):
        B = X.shape[0]
        if not callable(part):
            a = self.ops.arr(self.ops.host(part) if hasattr(part, "detach") else part)
            if tuple(a.shape) != shape:
                raise InvalidProblemError(f"lower: expected a constant of shape {shape}, got {tuple(a.shape)}")
            return a[None].expand(B, *shape) if self.be.is_torch else np.broadcast_to(a, (B, *shape))
        if self.be.is_torch:
            torch = self.ops.torch
            try:
                out = torch.func.vmap(lambda x: torch.as_tensor(part(x, *self.params)).to(x))(X)
            except Exception:
                out = torch.stack([torch.as_tensor(part(X[i], *self.params)).to(X) for i in range(B)])
        else:
            out = _stack([part(X[i], *self.params) for i in range(B)])
        if tuple(out.shape[1:]) != shape:
            raise InvalidProblemError(f"lower: a data callable returned shape {tuple(out.shape[1:])}, expected {shape}")
        return out

    def at(self, X):
        """Per-x data ``(Q, q, A, b)`` with the box rows of Y appended to ``A, b``."""
        n, m = self.n_y, self.m
        Q = None if self.is_lp else self._eval(self.fields[0], X, (n, n))
        q = self._eval(self.fields[1], X, (n,))
        A = self._eval(self.fields[2], X, (m, n)) if m else self.ops.zeros(X.shape[0], 0, n)
        b = self._eval(self.fields[3], X, (m,)) if m else self.ops.zeros(X.shape[0], 0)
        if self.box is not None:
            G, h = (self.ops.arr(v) for v in self.box)
            B = X.shape[0]
            if self.be.is_torch:
                torch = self.ops.torch
                A = torch.cat([A, G[None].expand(B, *G.shape)], 1)
                b = torch.cat([b, h[None].expand(B, *h.shape)], 1)
            else:
                A = np.concatenate([A, np.broadcast_to(G, (B, *G.shape))], 1)
                b = np.concatenate([b, np.broadcast_to(h, (B, *h.shape))], 1)
        return dict(X=X, Q=Q, q=q, A=A, b=b)

    def g(self, ctx, Y):
        return self.ops.mv(ctx["A"], Y) - ctx["b"]

    def dg(self, ctx, Y, D):
        """Directional change of g along D (exact: g is affine in y)."""
        return self.ops.mv(ctx["A"], D)

    def f_low(self, ctx, Y):
        val = self.ops.dot(ctx["q"], Y)
        if ctx["Q"] is not None:
            val = val + 0.5 * self.ops.dot(Y, self.ops.mv(ctx["Q"], Y))
        return val

    def ft(self, ctx, Y, t):
        """Barrier value; +inf where a row is not strictly feasible."""
        s = -self.g(ctx, Y)
        ok = self.ops.host(self.ops.amin(s, -1) > 0) if self.m_tot else np.ones(Y.shape[0], bool)
        logs = self.ops.log(self.ops.where(s > 0, s, 1.0)).sum(-1)
        val = self.f_low(ctx, Y) - t * logs
        return self.ops.where(self.ops.bmask(ok), val, math.inf)

    def grad_hess(self, ctx, Y, t):
        s = -self.g(ctx, Y)
        A = ctx["A"]
        grad = ctx["q"] + t * self.ops.mtv(A, 1.0 / s)
        W = A * (1.0 / s)[..., None]
        H = t * (W.transpose(-1, -2) @ W) if self.be.is_torch else t * (W.swapaxes(-1, -2) @ W)
        if ctx["Q"] is not None:
            grad = grad + self.ops.mv(ctx["Q"], Y)
            H = H + ctx["Q"]
        return grad, H, s

    def hyper_x(self, ctx, Y, t, V):
        """``grad_x <grad_y f_t(x, y), v>`` at fixed (y, v)."""
        X = ctx["X"]
        if self.be.is_torch:
            return self.tf_struct().psi_grad(X, Y, V, t, self.params)
        s = -self.g(ctx, Y)[:, : self.m]
        # scale v to the size of y: the identities are exact for any scale, the cancellation is not
        sc = 1.0 / max(1.0, float(np.abs(V).max()) / max(1.0, float(np.abs(Y).max())))
        Vs = V * sc
        out = np.zeros_like(X)
        if self._x_dependent(1) or (not self.is_lp and self._x_dependent(0)):
            out += 0.5 * (self.grad_f_x(X, Y + Vs) - self.grad_f_x(X, Y - Vs))
        if self.m and (self._x_dependent(2) or self._x_dependent(3)):
            w = self.g_user(X, Y + Vs) - self.g_user(X, Y)
            inv = t / s
            out += (self.vjp_g_x(X, Y + Vs, inv) - self.vjp_g_x(X, Y, inv)
                    + self.vjp_g_x(X, Y, t * w / s**2))
        return out / sc

    def _x_dependent(self, i):
        return callable(self.fields[i])

    def tf_struct(self):
        if getattr(self, "_tfs", None) is None:
            self._tfs = _StructTorch(self.p.lower, self.m)
        return self._tfs


class AutodiffModel(_Base):
    """General strongly convex lower level through torch.func (Hessian of f_t by forward-over-reverse)."""

    def __init__(self, problem, be, ops):
        super().__init__(problem, be, ops)
        self.linear_in_y = bool(problem.g_linear_in_y)
        self.torch = get_torch()

    def _t(self, v):
        return self.torch.as_tensor(v) if not self.be.is_torch else v

    def _b(self, v):
        return v.detach().numpy() if not self.be.is_torch else v

    def at(self, X):
        return dict(X=X)

    def g(self, ctx, Y):
        return self._b(self.tf().g_aug(self._t(ctx["X"]), self._t(Y), self._tparams()))

    def _tparams(self):
        if self.be.is_torch:
            return self.params
        return tuple(self.torch.as_tensor(v) if hasattr(v, "shape") else v for v in self.params_host)

    def dg(self, ctx, Y, D):
        return self._b(self.tf().jvp_g(self._t(ctx["X"]), self._t(Y), self._t(D), self._tparams()))

    def f_low(self, ctx, Y):
        return self._b(self.tf().f(self._t(ctx["X"]), self._t(Y), self._tparams()))

    def ft(self, ctx, Y, t):
        g = self.g(ctx, Y)
        s = -g
        ok = self.ops.host(self.ops.amin(s, -1) > 0) if self.m_tot else np.ones(Y.shape[0], bool)
        logs = self.ops.log(self.ops.where(s > 0, s, 1.0)).sum(-1)
        val = self.f_low(ctx, Y) - t * logs
        return self.ops.where(self.ops.bmask(ok), val, math.inf)

    def grad_hess(self, ctx, Y, t):
        grad, H, g = self.tf().ft_grad_hess(self._t(ctx["X"]), self._t(Y), t, self._tparams())
        return self._b(grad), self._b(H), self._b(-g)

    def hyper_x(self, ctx, Y, t, V):
        return self._b(self.tf().psi_grad(self._t(ctx["X"]), self._t(Y), self._t(V), t, self._tparams()))


class _TorchFuncs:
    """Vmapped torch.func derivatives of the problem's callables (per instance -> batch)."""

    def __init__(self, problem, box, m):
        self.torch = get_torch()
        self.p, self.m = problem, m
        self.box = box

    def _vm(self, fn, n_batched):
        vmap = self.torch.func.vmap
        return lambda *args: vmap(lambda *a: fn(*a[:n_batched], *args[n_batched]),
                                  in_dims=(0,) * n_batched)(*args[:n_batched])

    def _scalar(self, fn):
        torch = self.torch

        def s(x, y, *params):
            return torch.as_tensor(fn(x, y, *params)).to(x).reshape(())
        return s

    def F(self, X, Y, params):
        return self._vm(self._scalar(self.p.F), 2)(X, Y, params)

    def f(self, X, Y, params):
        return self._vm(self._scalar(self.p.f), 2)(X, Y, params)

    def _g1(self, x, y, *params):
        return self.torch.as_tensor(self.p.g(x, y, *params)).to(x).reshape(self.m)

    def g(self, X, Y, params):
        return self._vm(self._g1, 2)(X, Y, params)

    def _g_aug1(self, x, y, *params):
        torch = self.torch
        parts = [self._g1(x, y, *params)] if self.m else []
        if self.box is not None:
            G, h = (torch.as_tensor(v).to(y) for v in self.box)
            parts.append(G @ y - h)
        return torch.cat(parts) if parts else y[:0]

    def g_aug(self, X, Y, params):
        return self._vm(self._g_aug1, 2)(X, Y, params)

    def jvp_g(self, X, Y, D, params):
        torch = self.torch

        def one(x, y, d, *p):
            return torch.func.jvp(lambda yy: self._g_aug1(x, yy, *p), (y,), (d,))[1]
        return self._vm(one, 3)(X, Y, D, params)

    def grad_F(self, X, Y, params):
        return self._vm(self.torch.func.grad(self._scalar(self.p.F), argnums=(0, 1)), 2)(X, Y, params)

    def grad_f(self, X, Y, params):
        return self._vm(self.torch.func.grad(self._scalar(self.p.f), argnums=(0, 1)), 2)(X, Y, params)

    def vjp_g(self, X, Y, Lam, params):
        torch = self.torch

        def one(x, y, lam, *p):
            return torch.func.grad(lambda xx, yy: self._g1(xx, yy, *p) @ lam, argnums=(0, 1))(x, y)
        return self._vm(one, 3)(X, Y, Lam, params)

    def _ft1(self, t):
        torch = self.torch
        f = self._scalar(self.p.f)

        def ft(x, y, *p):
            g = self._g_aug1(x, y, *p)
            return f(x, y, *p) - t * torch.log(-g).sum()
        return ft

    def ft_grad_hess(self, X, Y, t, params):
        torch = self.torch
        ft = self._ft1(t)

        def one(x, y, *p):
            gy = torch.func.grad(ft, argnums=1)
            H = torch.func.jacfwd(gy, argnums=1)(x, y, *p)
            return gy(x, y, *p), H, self._g_aug1(x, y, *p)
        return self._vm(one, 2)(X, Y, params)

    def psi_grad(self, X, Y, V, t, params):
        torch = self.torch
        ft = self._ft1(t)

        def one(x, y, v, *p):
            gy = torch.func.grad(ft, argnums=1)
            return torch.func.grad(lambda xx: gy(xx, y, *p) @ v)(x)
        return self._vm(one, 3)(X, Y, V, params)


class _StructTorch:
    """torch.func x-gradient of ``<grad_y f_t(x, y), v>`` for LowerQP/LowerLP data callables."""

    def __init__(self, lower, m):
        self.torch = get_torch()
        self.lower, self.m = lower, m
        self.is_lp = isinstance(lower, LowerLP)

    def psi_grad(self, X, Y, V, t, params):
        torch = self.torch
        lw = self.lower

        def data(part, x):
            return torch.as_tensor(lower_data(part, x, params)).to(x)

        def psi(x, y, v):
            val = data(lw.c if self.is_lp else lw.q, x) @ v
            if not self.is_lp:
                val = val + v @ (data(lw.Q, x) @ y)
            if self.m:
                A, b = data(lw.A, x), data(lw.b, x)
                val = val + t * ((A @ v) / (b - A @ y)).sum()
            return val
        return torch.func.vmap(torch.func.grad(psi), in_dims=(0, 0, 0))(X, Y, V)


def make_model(problem, be: Backend, ops: Ops):
    if isinstance(problem.lower, (LowerQP, LowerLP)):
        return StructuredModel(problem, be, ops)
    try:
        get_torch()
    except DependencyError:
        raise DependencyError("torch", "torch") from None
    return AutodiffModel(problem, be, ops)
