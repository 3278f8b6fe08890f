"""Differentiable barrier argmin ``x -> y_t(x) = argmin_y f(x, y) - t sum_i log(-g_i(x, y))`` (spec bilevel §5).

The forward pass is the batched lower-level Newton of :class:`~optkit.bilevel.BarrierSolver`
(fraction to boundary, Armijo, strictly feasible restoration), run under ``torch.no_grad``. The
backward pass differentiates the central-path condition ``grad_y f_t(x, y_t, theta, t) = 0``
implicitly (spec §3.1): with ``H_yy = L L^T`` the factor of the last Newton step,

    v = H_yy^{-1} ybar,   (xbar, thetabar) = -grad_(x, theta) <grad_y f_t(x, y, theta), v>,
    tbar = -<J_y g(x, y) v, 1/s>,   s = -g(x, y)     (since d/dt grad_y f_t = J_y g^T (1/s)),

at fixed ``(y, v)``: two triangular solves and one vector-Jacobian product per backward.

Per-instance parameters reuse the solver unchanged: they are appended to the upper variable,
``xa = (x, vec(theta_b))``, so the solver's models (vmapped over x only) see one instance per
row. Shared parameters that require grad are appended as well (their per-instance cotangents
are summed in backward); other arguments are captured as constants.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from .._backend import Backend, get_torch
from .._errors import BackendError, ConvergenceError, InvalidProblemError
from .._result import Status
from ._model import Ops, make_model
from .barrier import _LL_MAX_NEWTON, _LL_MESSAGES, _LL_OK, BarrierSolver
from .problem import BilevelProblem, LowerLP, LowerQP

__all__ = ["BarrierArgmin"]

torch = get_torch()

_DIFF_MODES = ("implicit", "unroll", "none")
_EPS = float(np.finfo(float).eps)


def _zero_F(xa, y):
    return (y * 0.0).sum()


class _Layout:
    """Where each parameter lives: inside the augmented upper variable ``xa`` or as a constant.

    ``entries[i]`` is ``("inst", offset, shape)`` (per instance: ``shape`` excludes the batch
    dim), ``("shared", offset, shape)`` (shared, appended to every row) or ``("const", value)``.
    """

    def __init__(self, n_x):
        self.n_x = n_x
        self.n_xa = n_x
        self.entries = []

    def add(self, kind, value=None, shape=None):
        if kind == "const":
            self.entries.append(("const", value))
            return
        size = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
        self.entries.append((kind, self.n_xa, tuple(shape), size))
        self.n_xa += size

    def unflatten(self, xa):
        """``(x, params)`` of one instance from its row ``xa`` (works under vmap)."""
        out = []
        for e in self.entries:
            if e[0] == "const":
                out.append(e[1])
            else:
                _, off, shape, size = e
                out.append(xa[off:off + size].reshape(shape))
        return xa[: self.n_x], tuple(out)

    def wrap(self, fn):
        """``fn(x, *rest, *params)`` as a callable of ``(xa, *rest)``."""
        def wrapped(xa, *rest):
            x, ps = self.unflatten(xa)
            return fn(x, *rest, *ps)
        return wrapped


class _Solve:
    """Everything one forward leaves for backward and ``last_info``."""

    solver: BarrierSolver
    model: object
    ctx: dict
    Y: object
    L: object
    ok: np.ndarray
    code: np.ndarray
    t: float
    layout: _Layout
    B: int
    batched: bool
    strict: bool
    steps: np.ndarray
    L_ok: np.ndarray  # the factor L is usable (H_yy positive definite at Y)
    message: str


class _ArgminFn(torch.autograd.Function):
    """Attach the implicit backward to a solution computed without autograd."""

    @staticmethod
    def forward(y, sol, x, t, *params):
        return y.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.sol = inputs[1]
        ctx.inputs_meta = [(v.shape, v.dtype) if torch.is_tensor(v) else None for v in inputs]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, ybar):
        sol = ctx.sol
        _raise_if_failed(sol)
        need = ctx.needs_input_grad
        model, ops = sol.model, sol.solver.ops
        dt = sol.Y.dtype
        ybar = ybar.to(dt).reshape(sol.B, -1)
        V = ops.chol_solve(sol.L, ybar)
        if not sol.L_ok.all():  # strict=False: no usable factor -> NaN, never a silent wrong value
            V = torch.where(ops.mask(sol.L_ok), V, math.nan)
        meta = ctx.inputs_meta
        grads = [None] * len(meta)
        if need[2] or any(need[4:]):
            Gxa = -model.hyper_x(sol.ctx, sol.Y, sol.t, V)
            if need[2]:
                grads[2] = Gxa[:, : sol.layout.n_x].reshape(meta[2][0]).to(meta[2][1])
            for j, e in enumerate(sol.layout.entries):
                i = 4 + j
                if e[0] == "const" or not need[i]:
                    continue
                _, off, shape, size = e
                blk = Gxa[:, off:off + size]
                if e[0] == "shared":
                    blk = blk.sum(0)
                grads[i] = blk.reshape(meta[i][0]).to(meta[i][1])
        if need[3]:
            s = -model.g(sol.ctx, sol.Y)
            w = model.dg(sol.ctx, sol.Y, V)
            gt = -(w / s).sum()
            grads[3] = gt.reshape(meta[3][0]).to(meta[3][1])
        return tuple(grads)


class _GuardFn(torch.autograd.Function):
    """Identity whose backward raises when the solve it guards failed (unroll mode)."""

    @staticmethod
    def forward(y, sol):
        return y.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.sol = inputs[1]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, ybar):
        _raise_if_failed(ctx.sol)
        return ybar, None


def _raise_if_failed(sol):
    if sol.strict and not sol.ok.all():
        bad = np.flatnonzero(~sol.ok)
        raise ConvergenceError(
            "BarrierArgmin backward: the lower-level barrier problem was not solved for instance(s) "
            f"{bad[:10].tolist()} ({sol.message}); implicit gradients exist only at converged solutions "
            "(spec bilevel §9.13) -- raise max_newton, give a better y0, or pass strict=False")


class BarrierArgmin(torch.nn.Module):
    """``y_t(x, theta) = argmin_y f(x, y, theta) - t sum_i log(-g_i(x, y, theta))`` as a torch module.

    Parameters
    ----------
    f : callable ``(x, y, *params) -> scalar`` or None
        Lower-level objective for ONE instance, written with torch operations (vmapped over the
        batch, differentiated by ``torch.func``). Strongly convex in y (precisely: the barrier
        Hessian ``H_yy`` must be positive definite). None when ``lower`` is given.
    g : callable ``(x, y, *params) -> (m,)`` or None
        Constraints ``g(x, y, theta) <= 0``, convex in y, for one instance. None with ``lower``.
    n_y : int
        Size of y.
    m : int, optional
        Number of constraints (default: inferred from one evaluation of ``g`` or of ``lower.A``).
    t : float or 0-d tensor
        Barrier parameter, > 0. A tensor that requires grad receives ``dL/dt``.
    lower : LowerQP or LowerLP, optional
        Structured lower level (closed-form Newton systems, exact fraction to boundary, phase-1
        restoration by an LP). Its callable fields take ``(x, *params)``.
    y_interior : callable ``(x, *params) -> (n_y,)``, optional
        A strictly feasible point for every x (used as default start and for restoration).
    ll_tol : float
        Newton stops at ``decrement^2 / 2 <= ll_tol max(1, |f_t|)``.
    max_newton : int
        Newton steps per solve; an instance that does not converge gets status MAX_ITER.
    diff_mode : {"implicit", "unroll", "none"}
        implicit: the adjoint formula above (default). unroll: autograd through ``unroll_steps``
        damped Newton steps from the (restored) start, with step sizes (fraction to boundary,
        Armijo) treated as constants. none: the output is detached.
    strict : bool
        Backward raises :class:`~optkit.ConvergenceError` when an instance of the batch did not
        converge (never a zero gradient). With False the formula is applied at the returned point
        anyway (NaN where the Hessian factor is unusable).
    check_every : int
        Accepted for the API of spec §5; the shared Newton loop of BarrierSolver currently checks
        convergence after every step (one host sync per step), so this value is not used yet.
    g_linear_in_y : bool
        ``g(x, .)`` is affine: exact fraction to boundary (for ``f, g`` callables).
    unroll_steps : int, optional
        Newton steps of diff_mode="unroll" (default ``max_newton``).
    param_dims : tuple of (0 or None), optional
        Batch dim of each parameter (like ``vmap``'s ``in_dims``), overriding the default rule.

    Notes
    -----
    Batch rule: ``x`` of shape ``(B, n_x)`` is a batch; ``(n_x,)`` is one instance. With a
    batched ``x``, a tensor parameter whose first dimension equals ``B`` is per-instance (its
    first dimension is stripped before ``f, g`` see it); every other parameter is shared. Pass
    ``param_dims`` when a shared parameter happens to have ``B`` rows. Numpy arrays become
    constant tensors on x's device; non-tensor parameters are passed through unchanged; integer
    tensors are always shared constants.

    After each forward, ``last_info`` holds per-instance tensors ``status`` (``Status`` codes),
    ``converged``, ``n_newton``, ``decrement`` (``delta^2 / 2`` at the returned y),
    ``multipliers`` (``-t / g_i``, shape ``(B, m)``) and ``message``; unbatched inputs give
    unbatched entries.

    The layer reuses :class:`BarrierSolver`'s lower-level Newton: the gradient holds at the
    barrier solution ``y_t`` (bias O(t) from ``y*`` at non-degenerate points, spec §3.1).
    float32 inputs are solved in float64 (the output and the gradients are cast back): the
    shared Newton loop's stopping test and Armijo slack assume float64 resolution.

    Examples
    --------
    >>> import torch
    >>> layer = BarrierArgmin(lambda x, y, a: 0.5 * ((y - a) ** 2).sum(),
    ...                       lambda x, y, a: (y.sum() - x.sum()).reshape(1), n_y=2, t=1e-2,
    ...                       y_interior=lambda x, a: (x.sum() - 1.0) / 2 * torch.ones(2, dtype=x.dtype))
    >>> x = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    >>> y = layer(x, torch.tensor([1.0, 2.0], dtype=torch.float64))
    >>> y.sum().backward(); x.grad.shape
    torch.Size([2])
    """

    def __init__(self, f: Callable | None, g: Callable | None, *, n_y: int, m: int | None = None, t=1e-3,
                 lower=None, y_interior: Callable | None = None, ll_tol: float = 1e-14, max_newton: int = 50,
                 diff_mode: str = "implicit", strict: bool = True, check_every: int = 5,
                 g_linear_in_y: bool = False, unroll_steps: int | None = None, param_dims=None):
        super().__init__()
        self.n_y = _pos_int(n_y, "n_y")
        if m is not None:
            self_m = _pos_int(m, "m")
        else:
            self_m = None
        if lower is not None:
            if not isinstance(lower, (LowerQP, LowerLP)):
                raise InvalidProblemError(f"lower: expected LowerQP or LowerLP, got {type(lower).__name__}")
            if f is not None or g is not None:
                raise InvalidProblemError("f, g: give either f and g or lower=, not both")
        else:
            if not callable(f):
                raise InvalidProblemError("f: must be callable (x, y, *params) -> scalar (or give lower=)")
            if not callable(g):
                raise InvalidProblemError("g: must be callable (x, y, *params) -> (m,); the barrier needs "
                                          "at least one constraint")
        if y_interior is not None and not callable(y_interior):
            raise InvalidProblemError("y_interior: must be callable (x, *params) -> (n_y,)")
        if diff_mode not in _DIFF_MODES:
            raise InvalidProblemError(f"diff_mode: expected one of {_DIFF_MODES}, got {diff_mode!r}")
        if not (isinstance(ll_tol, numbers.Real) and not isinstance(ll_tol, bool) and math.isfinite(ll_tol)
                and ll_tol > 0):
            raise InvalidProblemError(f"ll_tol: must be a finite number > 0, got {ll_tol!r}")
        self.max_newton = _pos_int(max_newton, "max_newton")
        self.check_every = _pos_int(check_every, "check_every")
        self.unroll_steps = self.max_newton if unroll_steps is None else _pos_int(unroll_steps, "unroll_steps")
        if not isinstance(strict, bool):
            raise InvalidProblemError(f"strict: expected a bool, got {strict!r}")
        if param_dims is not None:
            param_dims = tuple(param_dims)
            if any(d not in (0, None) for d in param_dims):
                raise InvalidProblemError(f"param_dims: entries must be 0 or None, got {param_dims!r}")
        self.t = _check_t(t)
        self.f, self.g, self.m, self.lower = f, g, self_m, lower
        self.y_interior = y_interior
        self.ll_tol = float(ll_tol)
        self.diff_mode, self.strict = diff_mode, strict
        self.g_linear_in_y = bool(g_linear_in_y) or lower is not None
        self.param_dims = param_dims
        self.last_info = None

    # ------------------------------------------------------------------ validation
    def _inputs(self, x, params):
        if not torch.is_tensor(x):
            raise BackendError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            raise BackendError(f"x: dtype {x.dtype} not supported; use float32 or float64")
        if x.ndim not in (1, 2) or x.shape[-1] < 1 or (x.ndim == 2 and x.shape[0] < 1):
            raise InvalidProblemError(f"x: expected shape (n_x,) or (B, n_x), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise InvalidProblemError("x: contains NaN or inf")
        t = self.t
        tv = float(t.detach()) if torch.is_tensor(t) else float(t)
        if not (math.isfinite(tv) and tv > 0):
            raise InvalidProblemError(f"t: must be finite and > 0, got {tv!r}")
        # float32 inputs are solved in float64: the shared Newton loop's stopping test (ll_tol) and
        # Armijo slack are float64-sized, so float32 solves stall at max_newton (see module notes)
        cdt = torch.float64
        if self.param_dims is not None and len(self.param_dims) != len(params):
            raise InvalidProblemError(f"param_dims: {len(self.param_dims)} entries for {len(params)} params")
        out = []
        for i, p in enumerate(params):
            name = f"params[{i}]"
            if isinstance(p, np.ndarray):
                if not np.issubdtype(p.dtype, np.number):
                    raise InvalidProblemError(f"{name}: expected numeric data, got dtype {p.dtype}")
                p = torch.as_tensor(p, device=x.device)
                if p.is_floating_point():
                    p = p.to(cdt)
            if torch.is_tensor(p):
                if p.device != x.device:
                    raise BackendError(f"{name}: on {p.device}, x on {x.device}; move them to one device")
                if p.dtype in (torch.float16, torch.bfloat16):
                    raise BackendError(f"{name}: dtype {p.dtype} not supported; use float32 or float64")
                if (p.is_floating_point() or p.is_complex()) and not bool(torch.isfinite(p).all()):
                    raise InvalidProblemError(f"{name}: contains NaN or inf")
                if p.is_complex():
                    raise BackendError(f"{name}: complex tensors are not supported")
            out.append(p)
        return tv, cdt, out

    def _layout(self, x, params, B, batched, cdt, need_grad):
        lay = _Layout(x.shape[-1])
        parts = [x.detach().to(cdt)]
        for i, p in enumerate(params):
            if not (torch.is_tensor(p) and p.is_floating_point()):
                if self.param_dims is not None and self.param_dims[i] == 0:
                    raise InvalidProblemError(f"params[{i}]: param_dims marks it per-instance, but only floating "
                                              f"tensors can be (got {type(p).__name__}"
                                              + (f" of dtype {p.dtype})" if torch.is_tensor(p) else ")"))
                lay.add("const", value=p)
                continue
            if self.param_dims is not None:
                inst = self.param_dims[i] == 0
                if inst and not (batched and p.ndim >= 1 and p.shape[0] == B):
                    raise InvalidProblemError(f"params[{i}]: param_dims says per-instance, but its shape "
                                              f"{tuple(p.shape)} has no leading batch dim {B} (x {tuple(x.shape)})")
            else:
                inst = batched and p.ndim >= 1 and p.shape[0] == B
            pd = p.detach().to(cdt)
            if inst:
                lay.add("inst", shape=tuple(p.shape[1:]))
                parts.append(pd.reshape(B, -1))
            elif need_grad and p.requires_grad:
                lay.add("shared", shape=tuple(p.shape))
                parts.append(pd.reshape(1, -1).expand(B, -1))
            else:
                lay.add("const", value=pd)
        return lay, torch.cat(parts, -1) if len(parts) > 1 else parts[0].clone()

    def _instance0(self, lay, Xa):
        return lay.unflatten(Xa[0])

    def _infer_m(self, lay, Xa):
        x0, ps = self._instance0(lay, Xa)
        if self.lower is not None:
            A = self.lower.A
            A = A(x0, *ps) if callable(A) else A
            shape = tuple(A.shape)
            if len(shape) != 2 or shape[1] != self.n_y:
                raise InvalidProblemError(f"lower: A has shape {shape}, expected (m, {self.n_y})")
            return shape[0]
        y = torch.zeros(self.n_y, dtype=Xa.dtype, device=Xa.device)
        try:
            gv = torch.as_tensor(self.g(x0, y, *ps))
        except Exception as exc:
            raise InvalidProblemError(f"g: evaluation failed ({type(exc).__name__}: {exc})") from None
        if gv.ndim != 1 or gv.shape[0] < 1:
            raise InvalidProblemError(f"g: expected a vector of shape (m,), got shape {tuple(gv.shape)}")
        return gv.shape[0]

    def _check_shapes(self, lay, Xa, Y):
        """f -> scalar, g -> (m,), on the first instance (clear messages before vmapping)."""
        if self.lower is not None:
            return
        x0, ps = self._instance0(lay, Xa)
        for name, fn, shape in (("f", self.f, ()), ("g", self.g, (self.m,))):
            try:
                v = torch.as_tensor(fn(x0, Y[0], *ps))
            except Exception as exc:
                raise InvalidProblemError(f"{name}: evaluation failed ({type(exc).__name__}: {exc})") from None
            if tuple(v.shape) != shape:
                raise InvalidProblemError(f"{name}: expected shape {shape}, got {tuple(v.shape)}")

    def _adapt_lower(self, lay):
        lw = self.lower

        def ad(part):
            return lay.wrap(part) if callable(part) else part
        if isinstance(lw, LowerQP):
            return LowerQP(Q=ad(lw.Q), q=ad(lw.q), A=ad(lw.A), b=ad(lw.b))
        return LowerLP(c=ad(lw.c), A=ad(lw.A), b=ad(lw.b))

    def _build(self, lay, n_xa, cdt, device):
        yint = lay.wrap(self.y_interior) if self.y_interior is not None else None
        if self.lower is not None:
            prob = BilevelProblem(_zero_F, n_x=n_xa, n_y=self.n_y, m=self.m, lower=self._adapt_lower(lay),
                                  y_interior=yint, name="BarrierArgmin")
        else:
            prob = BilevelProblem(_zero_F, lay.wrap(self.f), lay.wrap(self.g), n_x=n_xa, n_y=self.n_y, m=self.m,
                                  y_interior=yint, g_linear_in_y=self.g_linear_in_y, name="BarrierArgmin")
        # phase-1 restoration needs the constraint matrix of a structured lower level
        restoration = "auto" if self.lower is not None else "interior"
        solver = BarrierSolver(prob, ll_tol=self.ll_tol, max_newton=self.max_newton, restoration=restoration)
        be = Backend("torch", device, cdt)
        solver.be, solver.ops = be, Ops(be)
        solver.out_dtype = cdt
        solver.model = make_model(prob, be, solver.ops)
        solver.batched = True
        return solver

    def _start(self, solver, Xa, y0, B, cdt):
        n_y = self.n_y
        if y0 is None:
            if self.y_interior is not None:
                try:
                    Y = solver._y_interior(Xa)
                except Exception as exc:
                    raise InvalidProblemError(f"y_interior: evaluation failed ({type(exc).__name__}: {exc})") from None
                if tuple(Y.shape) != (B, n_y):
                    raise InvalidProblemError(f"y_interior: expected shape ({n_y},), got {tuple(Y.shape[1:])}")
            else:
                Y = torch.zeros(B, n_y, dtype=cdt, device=Xa.device)
        else:
            if not torch.is_tensor(y0):
                try:
                    y0 = torch.as_tensor(np.asarray(y0, dtype=float))
                except (TypeError, ValueError) as exc:
                    raise InvalidProblemError(f"y0: cannot convert to a tensor ({exc})") from None
            Y = y0.detach().to(device=Xa.device, dtype=cdt)
            if Y.ndim == 1:
                Y = Y[None]
            if Y.ndim != 2 or Y.shape[1] != n_y or Y.shape[0] not in (1, B):
                raise InvalidProblemError(f"y0: expected shape ({n_y},) or ({B}, {n_y}), got {tuple(y0.shape)}")
            Y = Y.expand(B, n_y).clone()
        if not bool(torch.isfinite(Y).all()):
            raise InvalidProblemError("y0: contains NaN or inf" if y0 is not None else "y_interior: returned NaN or inf")
        return Y

    # ------------------------------------------------------------------ forward
    def forward(self, x, *params, y0=None):
        """Return ``y_t(x, params)``, shape ``(B, n_y)`` or ``(n_y,)`` like ``x``."""
        tv, cdt, params = self._inputs(x, params)
        batched = x.ndim == 2
        B = x.shape[0] if batched else 1
        t_req = torch.is_tensor(self.t) and self.t.requires_grad
        need_grad = (self.diff_mode != "none" and torch.is_grad_enabled()
                     and (x.requires_grad or t_req or any(torch.is_tensor(p) and p.requires_grad for p in params)))
        Xa_in = x if batched else x[None]
        lay, Xa = self._layout(Xa_in, params, B, batched, cdt, need_grad)
        if self.m is None:
            self.m = self._infer_m(lay, Xa)
        solver = self._build(lay, Xa.shape[1], cdt, x.device)
        model, ops = solver.model, solver.ops
        with torch.no_grad():
            Y = self._start(solver, Xa, y0, B, cdt)
            self._check_shapes(lay, Xa, Y)
            ctx = model.at(Xa)
            act = np.ones(B, bool)
            Y, okr = solver._restore(ctx, Y, act)
            if not okr.all():
                gmax = ops.host(ops.amax(model.g(ctx, Y), -1))
                bad = np.flatnonzero(~okr)
                raise InvalidProblemError(
                    f"x, y0: no strictly feasible lower-level point for instance(s) {bad[:10].tolist()}; max_i g_i = "
                    f"{float(gmax[bad].max()):.6g} (give a strictly feasible y0 or y_interior)")
            fv = model.f(Xa, Y)
            if not bool(torch.isfinite(fv).all()):
                raise InvalidProblemError("f: not finite at the strictly feasible start")
            gv = model.g(ctx, Y)
            if not bool(torch.isfinite(gv).all()):
                raise InvalidProblemError("g: returned NaN or inf at the strictly feasible start")
        sol = _Solve()
        sol.solver, sol.model, sol.layout, sol.B, sol.batched, sol.t = solver, model, lay, B, batched, tv
        sol.strict = self.strict
        if need_grad and self.diff_mode == "unroll":
            Yout = self._unroll(sol, ctx, Xa_in, params, Y, tv)
        else:
            with torch.no_grad():
                Yn, L, ok, code, steps = solver._newton(ctx, Y, tv, act)
            sol.ctx, sol.Y, sol.L, sol.ok, sol.code, sol.steps = ctx, Yn, L, ok, code, steps
            Yout = Yn
        self._record(sol, tv, x.dtype)
        out = Yout.to(x.dtype)
        if need_grad and self.diff_mode == "implicit":
            out = _ArgminFn.apply(out.detach(), sol, x, self.t if t_req else None, *params)
        elif need_grad and self.diff_mode == "unroll":
            out = _GuardFn.apply(out, sol)
        else:
            out = out.detach()
        return out if batched else out[0]

    def _record(self, sol, tv, out_dtype):
        model, ops = sol.model, sol.solver.ops
        with torch.no_grad():
            Y = sol.Y
            grad, H, s = model.grad_hess(sol.ctx, Y, tv)
            L, okL = ops.chol(H)
            sol.L_ok = okL
            dec = 0.5 * ops.dot(grad, ops.chol_solve(L, grad))
            dec = torch.where(torch.as_tensor(okL, device=Y.device), dec, torch.full_like(dec, math.nan))
            lam = tv / s[:, : self.m]
        code = sol.code
        status = np.where(code == _LL_OK, int(Status.CONVERGED),
                          np.where(code == _LL_MAX_NEWTON, int(Status.MAX_ITER), int(Status.NUMERICAL_ERROR)))
        msgs = sorted({_LL_MESSAGES[int(c)] for c in code if int(c) != _LL_OK})
        sol.message = "; ".join(msgs) if msgs else "converged"
        dev = Y.device
        info = dict(status=torch.as_tensor(status, device=dev), converged=torch.as_tensor(sol.ok, device=dev),
                    n_newton=torch.as_tensor(np.asarray(sol.steps), device=dev), decrement=dec.to(out_dtype),
                    multipliers=lam.to(out_dtype),
                    ll_code=torch.as_tensor(code, device=dev), message=sol.message)
        if not sol.batched:
            info = {k: (v[0] if torch.is_tensor(v) else v) for k, v in info.items()}
        self.last_info = info

    # ------------------------------------------------------------------ unroll
    def _unroll(self, sol, ctx_d, Xa_in, params, Y, tv):
        """``unroll_steps`` damped Newton steps with autograd; step sizes computed without grad."""
        solver, model, ops, lay = sol.solver, sol.model, sol.solver.ops, sol.layout
        B, cdt = sol.B, Y.dtype
        parts = [Xa_in.to(cdt)]
        for p, e in zip(params, lay.entries):
            if e[0] == "inst":
                parts.append(p.to(cdt).reshape(B, -1))
            elif e[0] == "shared":
                parts.append(p.to(cdt).reshape(1, -1).expand(B, -1))
        Xg = torch.cat(parts, -1)
        ctx_g = model.at(Xg)
        t_g = self.t.to(cdt) if torch.is_tensor(self.t) and self.t.requires_grad else tv
        code = np.full(B, _LL_OK)
        running = np.ones(B, bool)
        steps = np.zeros(B, int)
        for _ in range(self.unroll_steps):
            grad, H, s = model.grad_hess(ctx_g, Y, t_g)
            Lc, info = torch.linalg.cholesky_ex(H)
            okL = ops.host(info == 0) & ops.host(torch.isfinite(Lc).all(-1).all(-1))
            fin = ops.host(torch.isfinite(grad).all(-1))
            code[running & ~fin] = 3
            code[running & fin & ~okL] = 1
            running &= fin & okL
            if not running.any():
                break
            Lsafe = torch.where(ops.mask(running)[..., None], Lc, torch.eye(self.n_y, dtype=cdt, device=Y.device))
            D = -torch.cholesky_solve(grad[..., None], Lsafe)[..., 0]
            with torch.no_grad():
                Dd, Yd = D.detach(), Y.detach()
                Dd = torch.where(ops.mask(running), Dd, 0.0)
                gd = ops.host(ops.dot(grad.detach(), Dd))
                a = solver._frac_to_boundary(ctx_d, Yd, Dd, s.detach(), running)
                f0 = ops.host(model.ft(ctx_d, Yd, tv))
                scale = np.maximum(1.0, np.abs(f0))
                armijo = running & (-gd / 2 > 1e-8)
                for _ in range(60):
                    if not armijo.any():
                        break
                    ft = ops.host(model.ft(ctx_d, Yd + torch.as_tensor(a, dtype=cdt, device=Y.device)[:, None] * Dd, tv))
                    armijo &= ~(ft <= f0 + 0.25 * a * gd + 10 * _EPS * scale)
                    a[armijo] *= 0.5
                code[armijo] = 2
                running &= ~armijo
            take = torch.as_tensor(np.where(running, a, 0.0), dtype=cdt, device=Y.device)
            Y = Y + take[:, None] * D
            steps += running
        with torch.no_grad():
            Yd = Y.detach()
            grad, H, s = model.grad_hess(ctx_d, Yd, tv)
            Lc, okL = ops.chol(H)
            f0 = ops.host(model.ft(ctx_d, Yd, tv))
            dec = ops.host(0.5 * ops.dot(grad, ops.chol_solve(Lc, grad)))
            code[(code == _LL_OK) & ~okL] = 1
            conv = (code == _LL_OK) & (dec <= self.ll_tol * np.maximum(1.0, np.abs(f0)))
            code[(code == _LL_OK) & ~conv] = _LL_MAX_NEWTON
        sol.ctx, sol.Y, sol.L, sol.code, sol.steps = ctx_d, Yd, Lc, code, steps
        sol.ok = code == _LL_OK
        return Y

    def extra_repr(self):
        t = self.t if not torch.is_tensor(self.t) else float(self.t.detach())
        return f"n_y={self.n_y}, m={self.m}, t={t:g}, diff_mode={self.diff_mode!r}, strict={self.strict}"


def _pos_int(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise InvalidProblemError(f"{name}: expected an integer >= 1, got {v!r}")
    return int(v)


def _check_t(t):
    if torch.is_tensor(t):
        if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
            raise BackendError(f"t: dtype {t.dtype} not supported; use float32 or float64")
        if t.numel() != 1:
            raise InvalidProblemError(f"t: expected a scalar, got shape {tuple(t.shape)}")
        tv = float(t.detach())
    elif isinstance(t, numbers.Real) and not isinstance(t, bool):
        tv = float(t)
    else:
        raise InvalidProblemError(f"t: expected a positive number or a scalar tensor, got {t!r}")
    if not (math.isfinite(tv) and tv > 0):
        raise InvalidProblemError(f"t: must be finite and > 0, got {tv!r}")
    return t if torch.is_tensor(t) else tv
