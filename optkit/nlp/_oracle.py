"""Derivative oracles behind the solver: one batched interface over numpy and torch problems.

The solver works on batched arrays ``X (B, n)``, ``Lam (B, m)``. A numpy problem is one instance
(``B = 1``) whose callables may return dense or scipy.sparse matrices or only products; a torch
problem is a pair of single-instance functions ``f(x, *params)``, ``c(x, *params)`` vmapped over the
batch, with every derivative from ``torch.func``. Each oracle call is counted once per instance.
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import Backend, get_torch, is_torch
from .._errors import InvalidProblemError
from .problem import Problem, _is_sparse

COUNTERS = ("nfev", "ngev", "ncev", "njev", "n_jvp", "n_vjp", "n_hvp", "nhev")


class NumpyFunctions:
    """Single-instance numpy access to a :class:`Problem`, validating shapes and counting calls."""

    def __init__(self, problem: Problem):
        self.p = problem
        self.n, self.m = problem.n, problem.m
        self.count = dict.fromkeys(COUNTERS, 0)

    # values ----------------------------------------------------------------
    def fg(self, x):
        p = self.p
        if not p.has_objective:
            return 0.0, np.zeros(self.n)
        self.count["nfev"] += 1
        self.count["ngev"] += 1
        if p.fg is not None:
            f, g = p.fg(x.copy())
        else:
            f, g = p.f(x.copy()), p.grad(x.copy())
        g = np.asarray(g, dtype=np.float64).reshape(-1)
        if g.shape != (self.n,):
            raise InvalidProblemError(f"grad: expected shape ({self.n},), got {g.shape}")
        return float(np.asarray(f).reshape(())), g

    def fval(self, x):
        p = self.p
        if not p.has_objective:
            return 0.0
        self.count["nfev"] += 1
        if p.f is not None:
            return float(np.asarray(p.f(x.copy())).reshape(()))
        return float(np.asarray(p.fg(x.copy())[0]).reshape(()))

    def c(self, x):
        self.count["ncev"] += 1
        v = np.asarray(self.p.c(x.copy()), dtype=np.float64).reshape(-1)
        if v.shape != (self.m,):
            raise InvalidProblemError(f"c: expected {self.m} constraint values, got shape {v.shape}")
        return v

    # derivatives ------------------------------------------------------------
    @property
    def has_jac(self):
        return self.p.jac is not None or self.p.cj is not None

    @property
    def has_hess(self):
        return self.p.hess_lag is not None

    def jac(self, x):
        self.count["njev"] += 1
        J = self.p.jac(x.copy()) if self.p.jac is not None else self.p.cj(x.copy())[1]
        if not _is_sparse(J):
            J = np.asarray(J, dtype=np.float64)
            if J.ndim == 1 and self.m == 1:
                J = J.reshape(1, -1)
        if J.shape != (self.m, self.n):
            raise InvalidProblemError(f"jac: expected shape ({self.m}, {self.n}), got {J.shape}")
        return J

    def jvp(self, x, v):
        self.count["n_jvp"] += 1
        if self.p.jvp is not None:
            out = self.p.jvp(x.copy(), v)
        else:
            out = self.jac(x) @ v
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def vjp(self, x, w):
        self.count["n_vjp"] += 1
        if self.p.vjp is not None:
            out = self.p.vjp(x.copy(), w)
        else:
            out = self.jac(x).T @ w
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def hess(self, x, lam):
        self.count["nhev"] += 1
        H = self.p.hess_lag(x.copy(), lam.copy())
        if not _is_sparse(H):
            H = np.asarray(H, dtype=np.float64)
        if H.shape != (self.n, self.n):
            raise InvalidProblemError(f"hess_lag: expected shape ({self.n}, {self.n}), got {H.shape}")
        return H

    def hvp(self, x, lam, v):
        self.count["n_hvp"] += 1
        if self.p.hvp_lag is not None:
            out = self.p.hvp_lag(x.copy(), lam.copy(), v)
        else:
            out = self.hess(x, lam) @ v
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def check_at(self, x, lam):
        """Shapes and finiteness of every oracle at ``x`` (errors name the callable)."""
        if not np.all(np.isfinite(x)):
            raise InvalidProblemError("x0: contains NaN or inf")
        f, g = self.fg(x)
        if not math.isfinite(f):
            raise InvalidProblemError(f"f: not finite at x0 (f(x0) = {f})")
        if not np.all(np.isfinite(g)):
            raise InvalidProblemError("grad: not finite at x0")
        c = self.c(x)
        if not np.all(np.isfinite(c)):
            raise InvalidProblemError("c: not finite at x0")
        if self.has_jac:
            J = self.jac(x)
            data = J.data if _is_sparse(J) else J
            if not np.all(np.isfinite(data)):
                raise InvalidProblemError("jac: not finite at x0")
        else:
            v = np.ones(self.n)
            if not np.all(np.isfinite(self.jvp(x, v))):
                raise InvalidProblemError("jvp: not finite at x0")
            if not np.all(np.isfinite(self.vjp(x, np.ones(self.m)))):
                raise InvalidProblemError("vjp: not finite at x0")
        if self.has_hess:
            H = self.hess(x, lam)
            if _is_sparse(H):  # never densify: sparse Hessians can be large
                data, asym = H.data, (H - H.T).tocsr().data
            else:
                data = asym = H
                asym = H - H.T
            if not np.all(np.isfinite(data)):
                raise InvalidProblemError("hess_lag: not finite at x0")
            scale = max(1.0, float(np.max(np.abs(data))) if data.size else 1.0)
            if asym.size and float(np.max(np.abs(asym))) > 1e-10 * scale:
                raise InvalidProblemError("hess_lag: not symmetric at x0")
        else:
            if not np.all(np.isfinite(self.hvp(x, lam, np.ones(self.n)))):
                raise InvalidProblemError("hvp_lag: not finite at x0")


class Linearization:
    """Derivatives at one batched point ``(X, Lam)``: products on ``(B, n|m, q)`` blocks and, when
    assembled, dense ``G (B, m, n)``, ``H (B, n, n)``, ``Hf (B, n, n)`` (objective Hessian)."""

    G = H = Hf = None
    Gs = Hs = None  # numpy sparse matrices (B = 1)

    def G_mv(self, V):  # (B, n, q) -> (B, m, q)
        raise NotImplementedError

    def GT_mv(self, W):  # (B, m, q) -> (B, n, q)
        raise NotImplementedError

    def H_mv(self, V):
        raise NotImplementedError

    def Hf_mv(self, V):
        raise NotImplementedError


# ---------------------------------------------------------------------------- numpy (B = 1)
class _NumpyLin(Linearization):
    def __init__(self, fn: NumpyFunctions, x, lam, operator, need_Hf):
        self.fn, self.x, self.lam = fn, x, lam
        n, m = fn.n, fn.m
        self.J = fn.jac(x) if fn.has_jac else None
        self.Hm = fn.hess(x, lam) if fn.has_hess else None
        self.Hfm = None
        if need_Hf:
            self.Hfm = fn.hess(x, np.zeros(m)) if fn.has_hess else None
        if operator == "dense":
            if self.J is None:
                self.J = np.stack([fn.vjp(x, e) for e in np.eye(m)])
            if self.Hm is None:
                self.Hm = np.stack([fn.hvp(x, lam, e) for e in np.eye(n)], axis=1)
                self.Hm = 0.5 * (self.Hm + self.Hm.T)
            if need_Hf and self.Hfm is None:
                z = np.zeros(m)
                self.Hfm = np.stack([fn.hvp(x, z, e) for e in np.eye(n)], axis=1)
                self.Hfm = 0.5 * (self.Hfm + self.Hfm.T)
            dense = lambda A: A.toarray() if _is_sparse(A) else A
            self.G = dense(self.J)[None]
            self.H = dense(self.Hm)[None]
            if need_Hf:
                self.Hf = dense(self.Hfm)[None]
        elif operator == "sparse":
            self.Gs = self.J
            self.Hs = self.Hm

    def _apply(self, A, prod, V):
        if A is not None:
            return np.asarray(A @ V[0])[None]
        return np.stack([prod(V[0][:, j]) for j in range(V.shape[2])], axis=1)[None]

    def G_mv(self, V):
        if self.J is not None:
            self.fn.count["n_jvp"] += V.shape[2]
        return self._apply(self.J, lambda v: self.fn.jvp(self.x, v), V)

    def GT_mv(self, W):
        if self.J is not None:
            self.fn.count["n_vjp"] += W.shape[2]
            return np.asarray(self.J.T @ W[0])[None]
        return np.stack([self.fn.vjp(self.x, W[0][:, j]) for j in range(W.shape[2])], axis=1)[None]

    def H_mv(self, V):
        if self.Hm is not None:
            self.fn.count["n_hvp"] += V.shape[2]
        return self._apply(self.Hm, lambda v: self.fn.hvp(self.x, self.lam, v), V)

    def Hf_mv(self, V):
        if self.Hfm is not None:
            self.fn.count["n_hvp"] += V.shape[2]
            return np.asarray(self.Hfm @ V[0])[None]
        z = np.zeros(self.fn.m)
        return self._apply(None, lambda v: self.fn.hvp(self.x, z, v), V)


class NumpyOracle:
    """Batched (B = 1) view of a numpy problem."""

    def __init__(self, problem: Problem, backend: Backend):
        self.problem = problem
        self.fn = NumpyFunctions(problem)
        self.B, self.n, self.m = 1, problem.n, problem.m
        self.backend = backend
        self.is_torch = False

    @property
    def sparse(self) -> bool:
        x = self.problem.x0
        fn = NumpyFunctions(self.problem)
        return (fn.has_jac and _is_sparse(fn.jac(x))) or (fn.has_hess and _is_sparse(
            fn.hess(x, np.zeros(self.m))))

    @property
    def explicit(self) -> bool:
        return self.fn.has_jac and self.fn.has_hess

    def counts(self):
        return {k: np.array([v]) for k, v in self.fn.count.items()}

    def x0_batch(self):
        return self.problem.x0[None].astype(np.float64)

    def y0_batch(self):
        y0 = self.problem.y0
        return (np.zeros(self.m) if y0 is None else np.asarray(y0, dtype=np.float64))[None].copy()

    def check_start(self, X, Lam):
        self.fn.check_at(X[0], Lam[0])

    def fgc(self, X):
        f, g = self.fn.fg(X[0])
        c = self.fn.c(X[0])
        return np.array([f]), g[None], c[None]

    def vjp(self, X, W):
        return self.fn.vjp(X[0], W[0])[None]

    def merit_parts(self, X, Lam, active=None):
        """f, grad f, c and G^T lam at trial points (one Armijo trial)."""
        f, g, c = self.fgc(X)
        return f, g, c, self.vjp(X, Lam)

    def linearize(self, X, Lam, operator, need_Hf=False):
        return _NumpyLin(self.fn, X[0], Lam[0], operator, need_Hf)


# ---------------------------------------------------------------------------- torch (batched)
class _TorchLin(Linearization):
    def __init__(self, orc, X, Lam, operator, need_Hf):
        self.o, self.X, self.Lam = orc, X, Lam
        torch = orc.torch
        if operator == "dense":
            self.G = orc._vjac(X, *orc.params)
            self.H = orc._vhess(X, Lam, *orc.params)
            self.H = 0.5 * (self.H + self.H.transpose(1, 2))
            if need_Hf:
                self.Hf = orc._vhess(X, torch.zeros_like(Lam), *orc.params)
                self.Hf = 0.5 * (self.Hf + self.Hf.transpose(1, 2))
            orc.cnt("njev")
            orc.cnt("nhev", 2 if need_Hf else 1)

    def G_mv(self, V):
        self.o.cnt("n_jvp", V.shape[2])
        if self.G is not None:
            return self.G @ V
        return self.o._vjvp_c(self.X, V, *self.o.params)

    def GT_mv(self, W):
        self.o.cnt("n_vjp", W.shape[2])
        if self.G is not None:
            return self.G.transpose(1, 2) @ W
        return self.o._vvjp_c(self.X, W, *self.o.params)

    def H_mv(self, V):
        self.o.cnt("n_hvp", V.shape[2])
        if self.H is not None:
            return self.H @ V
        return self.o._vhvp(self.X, self.Lam, V, *self.o.params)

    def Hf_mv(self, V):
        self.o.cnt("n_hvp", V.shape[2])
        if self.Hf is not None:
            return self.Hf @ V
        return self.o._vhvp(self.X, self.o.torch.zeros_like(self.Lam), V, *self.o.params)


class TorchOracle:
    """Batched torch oracle: ``torch.func`` derivatives of the single-instance functions."""

    def __init__(self, problem: Problem, backend: Backend, x0=None):
        torch = get_torch()
        self.torch = torch
        self.problem = problem
        self.backend = backend
        self.is_torch = True
        self.sparse = False
        self.explicit = True
        dev, dt = backend.device, backend.dtype
        x0 = problem.x0 if x0 is None else x0
        x0 = x0.to(device=dev, dtype=dt)
        raw = tuple(problem.params or ())
        Bx = x0.shape[0] if x0.ndim == 2 else None
        self.B = Bx or 1
        self.n, self.m = problem.n, problem.m
        params, dims = [], []
        for p in raw:
            if is_torch(p):
                q = p.to(device=dev, dtype=dt) if p.is_floating_point() else p.to(device=dev)
                batched = Bx is not None and q.ndim >= 1 and q.shape[0] == Bx
                params.append(q)
                dims.append(0 if batched else None)
            else:
                params.append(p)
                dims.append(None)
        self.params = tuple(params)
        self._x0 = x0 if x0.ndim == 2 else x0[None]
        self.count = {k: np.zeros(self.B, dtype=np.int64) for k in COUNTERS}
        self.active_np = np.ones(self.B, dtype=bool)
        f, c = problem.torch_f, problem.torch_c
        fn = torch.func
        pd = tuple(dims)

        def f1(x, *ps):
            return f(x, *ps) if f is not None else x.sum() * 0.0

        def lag(x, lam, *ps):
            return f1(x, *ps) + (lam * c(x, *ps)).sum()

        def fgc1(x, *ps):
            g, fv = fn.grad_and_value(f1)(x, *ps)
            return fv, g, c(x, *ps)

        def vjp1(x, w, *ps):
            return fn.vjp(lambda z: c(z, *ps), x)[1](w)[0]

        def vjp_cols(x, W, *ps):  # W (m, q)
            _, pull = fn.vjp(lambda z: c(z, *ps), x)
            return fn.vmap(lambda w: pull(w)[0], in_dims=1, out_dims=1)(W)

        def jvp_cols(x, V, *ps):  # V (n, q)
            return fn.vmap(lambda v: fn.jvp(lambda z: c(z, *ps), (x,), (v,))[1], in_dims=1, out_dims=1)(V)

        def hvp_cols(x, lam, V, *ps):
            gl = lambda z: fn.grad(lag)(z, lam, *ps)
            return fn.vmap(lambda v: fn.jvp(gl, (x,), (v,))[1], in_dims=1, out_dims=1)(V)

        self._vfgc = fn.vmap(fgc1, in_dims=(0, *pd))
        self._vc = fn.vmap(lambda x, *ps: c(x, *ps), in_dims=(0, *pd))
        self._vvjp = fn.vmap(vjp1, in_dims=(0, 0, *pd))
        self._vvjp_c = fn.vmap(vjp_cols, in_dims=(0, 0, *pd))
        self._vjvp_c = fn.vmap(jvp_cols, in_dims=(0, 0, *pd))
        self._vhvp = fn.vmap(hvp_cols, in_dims=(0, 0, 0, *pd))
        self._vjac = fn.vmap(fn.jacrev(lambda x, *ps: c(x, *ps)), in_dims=(0, *pd))
        self._vhess = fn.vmap(fn.jacfwd(fn.jacrev(lag)), in_dims=(0, 0, *pd))

    def cnt(self, key, k=1):
        self.count[key] += k * self.active_np

    def counts(self):
        return {k: v.copy() for k, v in self.count.items()}

    def x0_batch(self):
        return self._x0.clone()

    def y0_batch(self):
        y0 = self.problem.y0
        torch = self.torch
        if y0 is None:
            return torch.zeros(self.B, self.m, dtype=self.backend.dtype, device=self.backend.device)
        y0 = torch.as_tensor(y0, dtype=self.backend.dtype, device=self.backend.device)
        return (y0 if y0.ndim == 2 else y0.expand(self.B, self.m)).clone()

    def check_start(self, X, Lam):
        torch = self.torch
        if not bool(torch.isfinite(X).all()):
            raise InvalidProblemError("x0: contains NaN or inf")
        f, g, c = self.fgc(X)
        if c.shape != (self.B, self.m):
            raise InvalidProblemError(f"c: expected {self.m} constraint values, got shape {tuple(c.shape[1:])}")
        for name, v in (("f", f), ("grad", g), ("c", c)):
            if not bool(torch.isfinite(v).all()):
                raise InvalidProblemError(f"{name}: not finite at x0")

    def fgc(self, X):
        self.cnt("nfev")
        self.cnt("ngev")
        self.cnt("ncev")
        f, g, c = self._vfgc(X, *self.params)
        return f, g, c

    def vjp(self, X, W):
        self.cnt("n_vjp")
        return self._vvjp(X, W, *self.params)

    def merit_parts(self, X, Lam, active=None):
        f, g, c = self.fgc(X)
        return f, g, c, self.vjp(X, Lam)

    def linearize(self, X, Lam, operator, need_Hf=False):
        return _TorchLin(self, X, Lam, operator, need_Hf)


def make_oracle(problem: Problem, backend: Backend | None, x0=None):
    if problem.kind == "numpy" and backend is not None and backend.is_torch:
        return HostTorchOracle(problem, backend)
    if problem.kind == "torch":
        if backend is None:
            x = problem.x0
            backend = Backend("torch", x.device, x.dtype)
        return TorchOracle(problem, backend, x0=x0)
    return NumpyOracle(problem, backend or Backend("numpy", None, np.dtype("float64")))


# ---------------------------------------------------------------------------- numpy problem, torch path
class _HostLin(Linearization):
    """A numpy linearization seen through tensors (one host round trip per product)."""

    def __init__(self, inner: _NumpyLin, to_t):
        self.inner, self.to_t = inner, to_t
        self.G = None if inner.G is None else to_t(inner.G)
        self.H = None if inner.H is None else to_t(inner.H)
        self.Hf = None if inner.Hf is None else to_t(inner.Hf)

    def _wrap(self, fn, V):
        return self.to_t(fn(V.detach().cpu().numpy()))

    def G_mv(self, V):
        return self._wrap(self.inner.G_mv, V)

    def GT_mv(self, W):
        return self._wrap(self.inner.GT_mv, W)

    def H_mv(self, V):
        return self._wrap(self.inner.H_mv, V)

    def Hf_mv(self, V):
        return self._wrap(self.inner.Hf_mv, V)


class HostTorchOracle:
    """Runs the torch path of the solver on a numpy problem: the derivatives are evaluated on the
    host by the problem's numpy callables and moved to the tensors' device (tests compare the two
    paths of the solver on the same problem this way)."""

    def __init__(self, problem: Problem, backend: Backend):
        self.torch = get_torch()
        self.np = NumpyOracle(problem, backend)
        self.problem, self.backend = problem, backend
        self.B, self.n, self.m = 1, problem.n, problem.m
        self.is_torch = True
        self.sparse = False
        self.explicit = self.np.explicit
        self.active_np = np.ones(1, dtype=bool)
        self.fn = self.np.fn

    def to_t(self, a):
        return self.torch.as_tensor(np.asarray(a), dtype=self.backend.dtype, device=self.backend.device)

    def to_n(self, t):
        return t.detach().cpu().numpy().astype(np.float64)

    def counts(self):
        return self.np.counts()

    def x0_batch(self):
        return self.to_t(self.np.x0_batch())

    def y0_batch(self):
        return self.to_t(self.np.y0_batch())

    def check_start(self, X, Lam):
        self.np.check_start(self.to_n(X), self.to_n(Lam))

    def fgc(self, X):
        return tuple(self.to_t(v) for v in self.np.fgc(self.to_n(X)))

    def vjp(self, X, W):
        return self.to_t(self.np.vjp(self.to_n(X), self.to_n(W)))

    def merit_parts(self, X, Lam, active=None):
        return tuple(self.to_t(v) for v in self.np.merit_parts(self.to_n(X), self.to_n(Lam)))

    def linearize(self, X, Lam, operator, need_Hf=False):
        return _HostLin(self.np.linearize(self.to_n(X), self.to_n(Lam), operator, need_Hf), self.to_t)
