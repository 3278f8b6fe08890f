"""Sketched Newton on the exact augmented Lagrangian (Hong, Na, Mahoney & Kolar, ICML 2023).

For ``min f(x) s.t. c(x) = 0``, each outer iteration solves the Newton-KKT system
``[[B, G^T], [G, 0]] (dx, dlam) = -(grad_x L, c)`` inexactly by randomized sketch-and-project,
adapts the penalties ``(eta1, eta2)`` of the merit

    L_eta(x, lam) = f + lam^T c + eta1/2 ||c||^2 + eta2/2 ||grad_x L||^2

until the direction is a sufficient descent direction, and takes an Armijo step on ``L_eta``.

One implementation serves numpy (one instance, dense or scipy.sparse or matrix-free) and torch
(a batch of instances in lockstep, per-instance penalties, shifts, accuracies and step sizes held
in masks). ``mode="paper"`` reproduces the authors' algorithm (Frobenius-norm constants, dense
operators, fixed theta, objective Hessian in the merit gradient); ``mode="practical"`` (default)
is the matrix-free variant with block sketches, a relative inner rule and scaled stopping.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import numpy as np

from .._backend import Backend, get_torch, is_torch
from .._errors import BackendError, InvalidProblemError
from .._logging import get_logger, verbosity
from .._options import Options, option
from .._result import Status
from ..callbacks import IterInfo, call_callback
from ._oracle import COUNTERS, make_oracle
from ._result import REASON_STATUS, BatchedNLPResult, NLPResult
from .problem import Problem
from .sketching import SKETCHES, block_size_of, draw_sketch, project_step, row_sampling_weights

__all__ = ["solve", "sketched_al_newton", "SketchedALNewton", "ALNewtonOptions", "ALNewtonState",
           "METHODS"]

METHODS = ("sketched-al-newton", "adasketch-newton")
_log = get_logger("nlp")

_FLOAT = dict(kind="float", allow_none=True)


@dataclasses.dataclass(frozen=True)
class ALNewtonOptions(Options):
    """Options of :func:`solve` (``None`` = the mode's default, spec nlp §3.8)."""

    mode: str = option("practical", kind="choice", choices=("practical", "paper"),
                       doc="practical (matrix-free, relative inner rule) or paper (the authors' algorithm)")
    tol: float | None = option(None, low=0.0, low_open=True, **_FLOAT,
                               doc="stopping tolerance (practical 1e-8 scaled; paper 1e-4 absolute)")
    max_iter: int | None = option(None, kind="int", low=0, allow_none=True,
                                  doc="outer iterations (practical 500; paper 10000)")
    time_limit: float | None = option(None, low=0.0, low_open=True, **_FLOAT, doc="seconds")
    linear_solver: str = option("sketch-and-project", kind="choice",
                                choices=("sketch-and-project", "direct", "minres"),
                                doc="inner solver of the KKT system (direct and minres for references)")
    sketch: str | None = option(None, kind="choice", choices=SKETCHES, allow_none=True,
                                doc="practical: gaussian-block; paper: gaussian (GV) or kaczmarz (RK)")
    block_size: int | None = option(None, kind="int", low=1, allow_none=True,
                                    doc="columns q of a block sketch (default min(N, 32))")
    row_sampling: str | None = option(None, kind="choice", choices=("uniform", "row-norm"), allow_none=True,
                                      doc="Kaczmarz row distribution (default uniform)")
    operator: str = option("auto", kind="choice", choices=("auto", "dense", "sparse", "matrix-free"),
                           doc="how K is applied; auto: sparse for sparse derivatives, dense for N <= 512")
    max_inner: int | None = option(None, kind="int", low=1, allow_none=True,
                                   doc="inner steps per solve (practical max(100, 20 ceil(N/q)); paper 1e5)")
    inner_check_every: int = option(10, kind="int", low=1, doc="inner steps between accuracy checks (practical)")
    theta_power: float | None = option(None, low=0.0, **_FLOAT,
                                       doc="theta_k = min(1, (KKT_k / max(1, KKT_0))^p); practical 0.5, paper 0")
    eta1_0: float = option(1.0, kind="float", low=0.0, low_open=True, doc="initial eta1 (penalty on ||c||^2)")
    eta2_0: float = option(0.1, kind="float", low=0.0, low_open=True,
                           doc="initial eta2 (penalty on ||grad_x L||^2)")
    delta_0: float = option(0.1, kind="float", low=0.0, low_open=True, high=1.0, doc="initial inner accuracy")
    delta_min: float | None = option(None, low=0.0, low_open=True, **_FLOAT,
                                     doc="floor of delta (practical 1e-10, paper 1e-6)")
    xi_B: float = option(0.1, kind="float", low=0.0, low_open=True, doc="reduced-Hessian curvature floor")
    adaptive_xi_B: bool = option(True, kind="bool",
                                 doc="practical mode: floor min(xi_B, ||nabla L_k||), so the shift vanishes "
                                     "near a solution and Newton keeps its local rate on degenerate problems")
    beta: float = option(0.1, kind="float", low=0.0, low_open=True, high=0.5, doc="Armijo constant in (0, 0.5)")
    nu: float = option(1.5, kind="float", low=1.0, low_open=True, doc="penalty growth factor (> 1)")
    backtrack: float = option(0.5, kind="float", low=0.0, low_open=True, high=1.0, doc="step shrink factor")
    alpha_min: float = option(1e-12, kind="float", low=0.0, low_open=True, doc="smallest step before STALLED")
    xi_G_min: float | None = option(None, low=0.0, **_FLOAT,
                                    doc="stop when lambda_min(G G^T) < xi_G_min (paper 1e-2; off in practical; 0 = off)")
    eps_red: float = option(1e-6, kind="float", low=0.0, doc="paper-mode shift trigger on lambda_min(Z^T H Z)")
    matrix_norm: str | None = option(None, kind="choice", choices=("fro", "2"), allow_none=True,
                                     doc="norm of the paper constants (paper: fro)")
    merit_hessian: str | None = option(None, kind="choice", choices=("lagrangian", "objective"), allow_none=True,
                                       doc="Hessian in the merit gradient (practical lagrangian; paper objective)")
    stopping: str | None = option(None, kind="choice", choices=("scaled", "absolute"), allow_none=True,
                                  doc="scaled KKT test (practical) or ||nabla L||_2 <= tol (paper)")
    allow_dense: bool = option(False, kind="bool", doc="let paper mode assemble K with N > 5000")
    ignore_bounds: bool = option(False, kind="bool", doc="solve problems that carry finite bounds anyway")
    rng: Any = option(0, kind="any", allow_none=True, doc="seed or numpy Generator / torch.Generator of the sketches")
    verbose: int = option(0, kind="int", low=0, high=3, doc="0 silent, 2 prints one line per iteration")
    callback: Any = option(None, kind="callable", allow_none=True,
                           doc="called with an IterInfo after each iteration; True/StopIteration stops")
    record_history: bool = option(False, kind="bool", doc="keep per-iteration records in result.history")
    x0: Any = option(None, kind="any", allow_none=True, doc="start (default problem.x0)")
    y0: Any = option(None, kind="any", allow_none=True, doc="start multipliers (default problem.y0 or 0)")
    device: Any = option(None, kind="any", allow_none=True, doc="torch device")
    dtype: Any = option(None, kind="any", allow_none=True, doc="dtype (float64 default)")

    def resolved(self, N: int) -> _Cfg:
        paper = self.mode == "paper"
        pick = lambda v, prac, pap: v if v is not None else (pap if paper else prac)
        sketch = pick(self.sketch, "gaussian-block", "gaussian")
        q = block_size_of(sketch, self.block_size or min(N, 32), N)
        return _Cfg(
            paper=paper, tol=pick(self.tol, 1e-8, 1e-4), max_iter=pick(self.max_iter, 500, 10000),
            sketch=sketch, q=q, row_sampling=self.row_sampling or "uniform",
            max_inner=pick(self.max_inner, max(100, 20 * math.ceil(N / q)), 100000),
            check_every=1 if paper else self.inner_check_every,
            theta_power=pick(self.theta_power, 0.5, 0.0), delta_min=pick(self.delta_min, 1e-10, 1e-6),
            matrix_norm=pick(self.matrix_norm, "2", "fro"),
            merit_hessian=pick(self.merit_hessian, "lagrangian", "objective"),
            stopping=pick(self.stopping, "scaled", "absolute"),
            xi_G_min=(pick(self.xi_G_min, None, 1e-2) or None),
        )


@dataclasses.dataclass
class _Cfg:
    paper: bool
    tol: float
    max_iter: int
    sketch: str
    q: int
    row_sampling: str
    max_inner: int
    check_every: int
    theta_power: float
    delta_min: float
    matrix_norm: str
    merit_hessian: str
    stopping: str
    xi_G_min: float | None


@dataclasses.dataclass
class ALNewtonState:
    """Iterate and adaptive parameters; pass it back to :meth:`SketchedALNewton.run` to warm-start.

    Arrays are batched: ``x (B, n)``, ``lam (B, m)``, ``eta1, eta2, delta, shift (B,)``; ``done``
    (B,) marks finished instances, ``codes`` their reasons.
    """

    x: Any
    lam: Any
    eta1: Any
    eta2: Any
    delta: Any
    shift: Any
    k: int
    rng: Any
    done: np.ndarray
    reasons: list
    f: Any = None
    g: Any = None
    c: Any = None
    GTlam: Any = None
    counters: dict = dataclasses.field(default_factory=dict)
    n_kprod: np.ndarray | None = None
    n_inner: np.ndarray | None = None
    inner_cap_hits: np.ndarray | None = None
    n_penalty_updates: np.ndarray | None = None
    n_shifts: np.ndarray | None = None
    n_unit: np.ndarray | None = None
    n_steps: np.ndarray | None = None
    nit: np.ndarray | None = None
    g0_scale: Any = None
    c0_scale: Any = None
    kkt0: Any = None
    xi_G: Any = None
    history: list | None = None
    t_start: float = 0.0
    elapsed: float = 0.0


# ------------------------------------------------------------------------------ backend helpers
class _Ops:
    """The few array operations the solver needs, for numpy or torch."""

    def __init__(self, be: Backend):
        self.be = be
        self.torch = be.is_torch
        if self.torch:
            self.t = get_torch()

    def zeros(self, *shape):
        if self.torch:
            return self.t.zeros(shape, dtype=self.be.dtype, device=self.be.device)
        return np.zeros(shape, dtype=self.be.dtype)

    def full(self, B, v):
        if self.torch:
            return self.t.full((B,), float(v), dtype=self.be.dtype, device=self.be.device)
        return np.full(B, float(v), dtype=self.be.dtype)

    def eye(self, n):
        if self.torch:
            return self.t.eye(n, dtype=self.be.dtype, device=self.be.device)
        return np.eye(n, dtype=self.be.dtype)

    def cat(self, xs, axis=-1):
        return self.t.cat(xs, dim=axis) if self.torch else np.concatenate(xs, axis=axis)

    def norm(self, v):  # over the last axis
        return self.t.linalg.vector_norm(v, dim=-1) if self.torch else np.linalg.norm(v, axis=-1)

    def inf(self, v):
        return v.abs().amax(-1) if self.torch else np.abs(v).max(-1)

    def dot(self, a, b):
        return (a * b).sum(-1)

    def finite_rows(self, v):
        if self.torch:
            return self.t.isfinite(v).reshape(v.shape[0], -1).all(1)
        return np.isfinite(v).reshape(v.shape[0], -1).all(1)

    def host(self, v):
        """(B,) array -> numpy float64 / bool (one host sync)."""
        if self.torch:
            return v.detach().cpu().numpy()
        return np.asarray(v)

    def dev(self, v, dtype=None):
        """numpy (B,) -> backend array."""
        if self.torch:
            t = self.t.as_tensor(np.asarray(v), device=self.be.device)
            return t.to(self.be.dtype) if dtype is None and t.is_floating_point() else t
        return np.asarray(v)

    def mask(self, m_np):
        """numpy bool (B,) -> backend float mask (B,)."""
        if self.torch:
            return self.t.as_tensor(m_np, device=self.be.device).to(self.be.dtype)
        return m_np.astype(self.be.dtype)

    def where(self, cond_np, a, b):
        """Per-instance select; ``cond_np`` a numpy bool (B,) broadcast over trailing axes."""
        c = self.dev(cond_np) if self.torch else cond_np
        shape = (-1,) + (1,) * (a.ndim - 1)
        c = c.reshape(shape)
        return self.t.where(c, a, b) if self.torch else np.where(c, a, b)

    def eigvalsh_min(self, A):
        if self.torch:
            return self.t.linalg.eigvalsh(A)[..., 0]
        return np.linalg.eigvalsh(A)[..., 0]

    def matnorm(self, A, kind):
        if self.torch:
            return self.t.linalg.matrix_norm(A, ord="fro" if kind == "fro" else 2)
        return np.linalg.norm(A, ord="fro" if kind == "fro" else 2, axis=(-2, -1))

    def qr_complete(self, A):
        if self.torch:
            return self.t.linalg.qr(A, mode="complete")[0]
        return np.stack([np.linalg.qr(a, mode="complete")[0] for a in A])

    def transpose(self, A):
        return A.transpose(-1, -2) if self.torch else np.swapaxes(A, -1, -2)

    def solve(self, A, b):
        if self.torch:
            sol, info = self.t.linalg.solve_ex(A, b[..., None])
            return sol[..., 0], self.host(info) != 0
        out = np.empty_like(b)
        bad = np.zeros(b.shape[0], dtype=bool)
        for i in range(b.shape[0]):
            try:
                out[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                out[i] = np.nan
                bad[i] = True
        return out, bad


def _make_rng(rng, be: Backend):
    """(generator, seed) for the backend; a given Generator is used as is."""
    if be.is_torch:
        torch = get_torch()
        if isinstance(rng, torch.Generator):
            return rng, None
        if rng is not None and not isinstance(rng, (int, np.integer)):
            raise TypeError(f"rng: expected an int seed or a torch.Generator for a torch problem, got {rng!r}")
        seed = 0 if rng is None else int(rng)
        g = torch.Generator(device=be.device)
        g.manual_seed(seed)
        return g, seed
    if isinstance(rng, np.random.Generator):
        return rng, None
    if rng is not None and not isinstance(rng, (int, np.integer)):
        raise TypeError(f"rng: expected an int seed or a numpy Generator, got {rng!r}")
    seed = 0 if rng is None else int(rng)
    return np.random.default_rng(seed), seed


# ------------------------------------------------------------------------------ the KKT operator
class _KKT:
    """``K = [[H + t I, G^T], [G, 0]]`` applied to ``(B, N, q)`` blocks."""

    def __init__(self, lin, shift, n, m, dense, ops):
        self.lin, self.n, self.m, self.ops = lin, n, m, ops
        self.shift = shift  # (B,)
        self.K = None
        if dense:
            o = ops
            H = lin.H + shift[:, None, None] * o.eye(n)[None]
            top = o.cat([H, o.transpose(lin.G)], axis=2)
            bot = o.cat([lin.G, o.zeros(lin.G.shape[0], m, m)], axis=2)
            self.K = o.cat([top, bot], axis=1)
        self.nprod = 0

    def __call__(self, Z):
        self.nprod += Z.shape[2]
        if self.K is not None:
            return self.K @ Z
        n = self.n
        Zx, Zl = Z[:, :n], Z[:, n:]
        top = self.lin.H_mv(Zx) + self.shift[:, None, None] * Zx + self.lin.GT_mv(Zl)
        return self.ops.cat([top, self.lin.G_mv(Zx)], axis=1)

    def mv(self, z):
        return self(z[:, :, None])[:, :, 0]


# ------------------------------------------------------------------------------ the solver
class SketchedALNewton:
    """Solver object with ``init / step / run`` (spec nlp §5.2).

    >>> from optkit.nlp import Problem, SketchedALNewton
    >>> import numpy as np
    >>> p = Problem.from_qp(np.eye(2), np.zeros(2), np.ones((1, 2)), np.ones(1))
    >>> solver = SketchedALNewton(p)
    >>> res = solver.run()
    >>> bool(res.success), np.round(res.x, 6).tolist()
    (True, [0.5, 0.5])
    """

    def __init__(self, problem: Problem, **options):
        if not isinstance(problem, Problem):
            raise TypeError(f"problem: expected an optkit.nlp.Problem, got {type(problem).__name__}")
        self.problem = problem
        self.options = ALNewtonOptions.from_kwargs(**options)
        o = self.options
        if problem.finite_bounds and not o.ignore_bounds:
            raise InvalidProblemError(
                f"problem '{problem.name}' has finite variable bounds, which this method does not "
                "handle; pass ignore_bounds=True to solve without them")
        self.N = problem.n + problem.m
        self.cfg = o.resolved(self.N)
        self._q = self.cfg.q
        self._notes = {}
        self.seed = int(o.rng) if isinstance(o.rng, (int, np.integer)) else (0 if o.rng is None else None)
        self._setup_backend()

    # -------------------------------------------------------------- setup
    def _setup_backend(self):
        p, o = self.problem, self.options
        if p.kind == "torch":
            torch = get_torch()
            # an explicit torch start decides the device and dtype (as any tensor argument would)
            x = o.x0 if is_torch(o.x0) else p.x0
            dev = torch.device(o.device) if o.device is not None else x.device
            if o.dtype is not None:
                from .._backend import _parse_dtype

                dt = _parse_dtype(o.dtype, True)
            else:
                dt = x.dtype if x.is_floating_point() else torch.float64
            be = Backend("torch", dev, dt)
        elif o.device is not None or is_torch(o.x0):
            # a numpy problem on the torch path: the solver's tensors live on the device, the
            # problem's callables run on the host
            torch = get_torch()
            from .._backend import _parse_dtype

            dev = torch.device(o.device) if o.device is not None else o.x0.device
            dt = _parse_dtype(o.dtype, True) if o.dtype is not None else (
                o.x0.dtype if is_torch(o.x0) else torch.float64)
            be = Backend("torch", dev, dt)
        else:
            if o.dtype is not None and np.dtype(str(o.dtype).replace("torch.", "")) != np.float64:
                raise BackendError(f"dtype: numpy problems are solved in float64, got {o.dtype!r}; "
                                   "pass device='cpu' (or 'cuda') to run the torch path")
            be = Backend("numpy", None, np.dtype("float64"))
        self.be = be
        self.ops = _Ops(be)
        if be.is_torch and be.dtype not in (get_torch().float32, get_torch().float64):
            raise BackendError(f"dtype: expected float32 or float64, got {be.dtype}")
        if self.cfg.paper and be.is_torch and be.dtype != get_torch().float64:
            raise BackendError("dtype: paper mode needs float64 (its inner rule asks for ~1e-10 "
                               "relative residuals)")
        if (be.is_torch and be.dtype == get_torch().float32 and not self.cfg.paper
                and self.cfg.tol < 1e-5):
            warnings.warn(f"float32 cannot reach tol={self.cfg.tol:g}; use float64 or tol >= 1e-5",
                          RuntimeWarning, stacklevel=3)
        if self.cfg.paper and self.N > 5000 and not o.allow_dense:
            raise InvalidProblemError(
                f"paper mode assembles the dense {self.N}x{self.N} KKT matrix; pass allow_dense=True "
                "or use mode='practical'")
        self.oracle = make_oracle(p, be, x0=self._x0_override())
        self.B = self.oracle.B
        # operator choice (spec §3.7)
        op = o.operator
        if self.cfg.paper:
            op = "dense"
        elif op == "auto":
            # small systems are assembled densely even when the derivatives are sparse: the dense
            # operator gets the exact minimal shift, where the matrix-free curvature test can miss
            # negative curvature (S2MPJ's BYRDSPHR and CYCLOOCF fail with it, converge dense)
            if self.N <= 512:
                op = "dense"
            elif not be.is_torch and self.oracle.sparse:
                op = "sparse"
            else:
                op = "matrix-free"
        if op == "sparse" and be.is_torch:
            raise InvalidProblemError("operator: 'sparse' needs a numpy problem with sparse derivatives")
        if op == "sparse" and not self.oracle.explicit:
            raise InvalidProblemError("operator: 'sparse' needs explicit 'jac' and 'hess_lag'")
        self.op = op

    def _x0_override(self):
        o, p = self.options, self.problem
        if o.x0 is None or p.kind != "torch":
            return None
        torch = get_torch()
        x0 = torch.as_tensor(o.x0) if not is_torch(o.x0) else o.x0
        if x0.shape[-1] != p.n or x0.ndim not in (1, 2):
            raise InvalidProblemError(f"x0: expected shape ({p.n},) or (B, {p.n}), got {tuple(x0.shape)}")
        return x0

    def _start_arrays(self, x0, y0):
        p = self.problem
        X = self.oracle.x0_batch()
        if x0 is not None:
            X = self._coerce(x0, p.n, "x0")
        Lam = self.oracle.y0_batch()
        if y0 is not None:
            Lam = self._coerce(y0, p.m, "y0")
        return X, Lam

    def _coerce(self, v, size, name):
        be, B = self.be, self.B
        if be.is_torch:
            torch = get_torch()
            t = torch.as_tensor(v) if not is_torch(v) else v
            t = t.to(device=be.device, dtype=be.dtype)
        else:
            if is_torch(v):
                raise BackendError(f"{name}: got a torch.Tensor for a numpy problem")
            t = np.array(v, dtype=np.float64)
        if t.ndim == 1:
            if t.shape[0] != size:
                raise InvalidProblemError(f"{name}: expected shape ({size},), got {tuple(t.shape)}")
            t = t[None].repeat(B, 0) if not be.is_torch else t[None].expand(B, size).clone()
        elif t.ndim == 2 and t.shape == (B, size):
            t = t.clone() if be.is_torch else t.copy()
        else:
            raise InvalidProblemError(f"{name}: expected shape ({size},) or ({B}, {size}), got {tuple(t.shape)}")
        if not np.all(self.ops.host(self.ops.finite_rows(t))):
            raise InvalidProblemError(f"{name}: contains NaN or inf")
        return t

    # -------------------------------------------------------------- init
    def init(self, x0=None, y0=None) -> ALNewtonState:
        o, ops, B = self.options, self.ops, self.B
        x0 = o.x0 if x0 is None and self.problem.kind == "numpy" else x0
        y0 = o.y0 if y0 is None else y0
        X, Lam = self._start_arrays(x0, y0)
        self.oracle.check_start(X, Lam)
        gen, seed = _make_rng(o.rng, self.be)
        self.seed = seed
        f, g, c, GTlam = self.oracle.merit_parts(X, Lam)
        if not bool(np.all(ops.host(ops.finite_rows(ops.cat([f[:, None], g, c, GTlam], axis=1))))):
            raise InvalidProblemError("f/grad/c: not finite at x0")
        gL = g + GTlam
        zi = lambda: np.zeros(B, dtype=np.int64)
        st = ALNewtonState(
            x=X, lam=Lam, eta1=ops.full(B, o.eta1_0), eta2=ops.full(B, o.eta2_0),
            delta=ops.full(B, o.delta_0), shift=ops.full(B, 0.0), k=0, rng=gen,
            done=np.zeros(B, dtype=bool), reasons=[""] * B, f=f, g=g, c=c, GTlam=GTlam,
            n_kprod=zi(), n_inner=zi(), inner_cap_hits=zi(), n_penalty_updates=zi(), n_shifts=zi(),
            n_unit=zi(), n_steps=zi(), nit=zi(),
            g0_scale=np.maximum(1.0, ops.host(ops.inf(g))), c0_scale=np.maximum(1.0, ops.host(ops.inf(c))),
            kkt0=ops.host(ops.norm(ops.cat([gL, c]))),
            history=[] if o.record_history or o.verbose >= 2 else None, t_start=time.perf_counter(),
        )
        self._t_start = st.t_start
        return st

    # -------------------------------------------------------------- one outer iteration
    def step(self, st: ALNewtonState) -> ALNewtonState:
        o, cfg, ops, orc = self.options, self.cfg, self.ops, self.oracle
        n, m = self.problem.n, self.problem.m
        active = ~st.done
        if not active.any():
            return st
        gL = st.g + st.GTlam
        c = st.c
        b = -ops.cat([gL, c])
        kkt = ops.host(ops.norm(b))
        if cfg.stopping == "scaled":
            conv = (ops.host(ops.inf(gL)) <= cfg.tol * st.g0_scale) & (ops.host(ops.inf(c)) <= cfg.tol * st.c0_scale)
        else:
            conv = kkt <= cfg.tol
        self._finish(st, active & conv, "kkt_tol")
        active = ~st.done
        if not active.any():
            return st
        if st.k >= cfg.max_iter:
            self._finish(st, active, "max_iter")
            return st
        if o.time_limit is not None and time.perf_counter() - st.t_start >= o.time_limit:
            self._finish(st, active, "time_limit")
            return st
        if orc.is_torch:
            orc.active_np = active.copy()
        self._timed_out = False
        self._t_start = st.t_start
        dense = self.op == "dense"
        lin = orc.linearize(st.x, st.lam, self.op, need_Hf=cfg.merit_hessian == "objective")
        if dense:
            okd = ops.host(ops.finite_rows(lin.G)) & ops.host(ops.finite_rows(lin.H))
            bad = active & ~okd
            if bad.any():
                self._finish(st, bad, "nonfinite")
                active = ~st.done
                if not active.any():
                    return st
        # ---- Hessian shift, paper constants
        self._kkt_now = kkt
        shift, Psi, Ups, Knorm = self._shift_and_constants(st, lin, dense, active)
        K = _SparseKKT(lin, shift, n, m) if self.op == "sparse" else _KKT(lin, shift, n, m, dense, ops)
        # ---- theta and delta
        theta = np.minimum(1.0, (kkt / np.maximum(1.0, st.kkt0)) ** cfg.theta_power) \
            if cfg.theta_power > 0 else np.ones(self.B)
        delta = ops.host(st.delta).astype(np.float64)
        eta1 = ops.host(st.eta1).astype(np.float64)
        eta2 = ops.host(st.eta2).astype(np.float64)
        if cfg.paper:
            dtrial = self._delta_trial(eta1, eta2, Ups, Psi)
            delta = np.maximum(np.minimum(delta, dtrial), cfg.delta_min)
        bnorm = kkt  # ||b|| = ||nabla L||
        # ---- merit-gradient ingredients (one HVP, one JVP, one VJP)
        Hg = (lin.Hf_mv if cfg.merit_hessian == "objective" else lin.H_mv)(gL[:, :, None])[:, :, 0]
        Gg = lin.G_mv(gL[:, :, None])[:, :, 0]
        GTc = lin.GT_mv(c[:, :, None])[:, :, 0]
        # ---- inner solve with penalty adaptation
        z = ops.zeros(self.B, self.N)
        r = -b
        inner_steps = np.zeros(self.B, dtype=np.int64)
        capped = np.zeros(self.B, dtype=bool)
        searching = active.copy()
        accepted_q = np.zeros(self.B)
        stalled = np.zeros(self.B, dtype=bool)
        scale_test = (Knorm * Psi) if cfg.paper else np.ones(self.B)
        while True:
            tol_abs = theta * delta * bnorm / scale_test
            z, r, steps, cap_hit = self._inner(K, b, z, r, tol_abs, searching, st)
            inner_steps += steps
            if not dense and not cfg.paper:
                # matrix-free curvature test (spec §3.3): shift and resume until dx has curvature
                for _ in range(10):
                    grow = self._curvature_fails(lin, z[:, :n], searching, K.shift)
                    if not grow.any():
                        break
                    t = ops.host(K.shift).astype(np.float64)
                    hn = self._hess_norm_estimate(lin, st)
                    t = np.where(grow, np.maximum(10 * t, 1e-4 * np.maximum(1.0, hn)), t)
                    K.shift = ops.dev(t)
                    st.n_shifts += grow
                    r = K.mv(z) - b
                    z, r, steps, cap_hit = self._inner(K, b, z, r, tol_abs, grow, st)
                    inner_steps += steps
                shift = K.shift
            capped |= cap_hit & searching
            e1, e2 = ops.dev(eta1), ops.dev(eta2)
            gx = gL + e1[:, None] * GTc + e2[:, None] * Hg
            gl = c + e2[:, None] * Gg
            qv = ops.host(ops.dot(gx, z[:, :n]) + ops.dot(gl, z[:, n:])).astype(np.float64)
            qv = np.where(np.isfinite(qv), qv, np.inf)
            guard = (eta1 > 1e8) | (eta2 < 1e-8)
            suff = qv <= -(eta2 / 2) * bnorm ** 2
            ok = searching & (suff | guard)
            if not cfg.paper:
                bad_guard = searching & guard & ~suff & (qv >= 0)
                stalled |= bad_guard
            accepted_q = np.where(ok, qv, accepted_q)
            searching &= ~ok
            if not searching.any():
                break
            st.n_penalty_updates += searching
            eta1 = np.where(searching, eta1 * o.nu ** 2, eta1)
            eta2 = np.where(searching, eta2 / o.nu, eta2)
            if cfg.paper:
                dtrial = self._delta_trial(eta1, eta2, Ups, Psi)
                delta = np.where(searching, np.maximum(np.minimum(delta / o.nu ** 4, dtrial), cfg.delta_min), delta)
            else:
                delta = np.where(searching, np.maximum(delta / o.nu ** 4, cfg.delta_min), delta)
        st.eta1, st.eta2, st.delta = ops.dev(eta1), ops.dev(eta2), ops.dev(delta)
        st.shift = shift
        self._hnorm = None
        if self._timed_out:  # the inner solve ran out of time: no step from a half-solved system
            st.n_inner += inner_steps
            self._finish(st, active, "time_limit")
            return st
        st.n_inner += inner_steps
        st.inner_cap_hits += capped
        st.n_kprod += K.nprod * active
        znan = active & ~ops.host(ops.finite_rows(z))
        if znan.any():
            self._finish(st, znan, "nonfinite")
        if stalled.any():
            if dense:  # say why when the KKT matrix is (nearly) singular: LICQ fails here
                sv = ops.host(ops.eigvalsh_min(lin.G @ ops.transpose(lin.G))).astype(np.float64)
                gn = ops.host(ops.matnorm(lin.G, "fro")).astype(np.float64) ** 2
                for i in np.flatnonzero(stalled & (sv <= 1e-10 * np.maximum(gn, 1e-300))):
                    self._notes[i] = (f"; lambda_min(G G^T) = {sv[i]:.1e} (||G||_F^2 = {gn[i]:.1e}): the "
                                      "constraint Jacobian is numerically rank deficient (LICQ fails)")
            self._finish(st, stalled & ~st.done, "penalty_limit")
        active = ~st.done
        # ---- Armijo line search on the merit, per instance in lockstep
        dx, dl = z[:, :n], z[:, n:]
        e1, e2 = st.eta1, st.eta2
        merit0_np = ops.host(self._merit(st.f, st.lam, c, gL, e1, e2)).astype(np.float64)
        eps = float(np.finfo(np.float32).eps if self._is_f32() else np.finfo(np.float64).eps)
        slack = 0.0 if self.cfg.paper else 10.0 * eps * np.maximum(1.0, np.abs(merit0_np))
        alpha = np.where(active, 1.0, 0.0)
        searching = active.copy()
        newf, newg, newc, newGT = st.f, st.g, st.c, st.GTlam
        Xn, Ln = st.x, st.lam
        failed = np.zeros(self.B, dtype=bool)
        while searching.any():
            a = ops.dev(alpha)[:, None]
            Xt = st.x + a * dx
            Lt = st.lam + a * dl
            if orc.is_torch:
                orc.active_np = searching.copy()
            with np.errstate(all="ignore"):  # an overflowing trial point is rejected below
                ft, gt, ct, GTt = orc.merit_parts(Xt, Lt)
                mt = self._merit(ft, Lt, ct, gt + GTt, e1, e2)
            mt_np = ops.host(mt).astype(np.float64)
            fin = np.isfinite(mt_np) & ops.host(ops.finite_rows(ops.cat([gt, ct, GTt], axis=1)))
            # Armijo relaxed by the merit's own rounding level (as IPOPT does): near a solution the
            # predicted decrease alpha beta q falls below eps |L_eta| and an exact test then rejects
            # every step, leaving the iterate stuck at KKT ~ 1e-9 (sphere projection, tol 1e-10)
            ok = searching & fin & (mt_np <= merit0_np + alpha * o.beta * accepted_q + slack)
            if ok.any():
                Xn = ops.where(ok, Xt, Xn)
                Ln = ops.where(ok, Lt, Ln)
                newf = ops.where(ok, ft, newf)
                newg = ops.where(ok, gt, newg)
                newc = ops.where(ok, ct, newc)
                newGT = ops.where(ok, GTt, newGT)
            searching &= ~ok
            alpha = np.where(searching, alpha * o.backtrack, alpha)
            too_small = searching & (alpha < o.alpha_min)
            failed |= too_small
            searching &= ~too_small
        moved = active & ~failed
        st.x, st.lam, st.f, st.g, st.c, st.GTlam = Xn, Ln, newf, newg, newc, newGT
        st.n_steps += moved
        st.n_unit += moved & (alpha == 1.0)
        st.nit += moved
        st.k += 1
        if failed.any():
            self._finish(st, failed, "line_search_failed")
        if st.history is not None:
            self._record(st, kkt, alpha, eta1, eta2, delta, ops.host(shift), inner_steps, accepted_q, r, b)
        st.elapsed = time.perf_counter() - st.t_start
        st.counters = {**self.oracle.counts(), "n_kprod": st.n_kprod.copy(), "n_inner": st.n_inner.copy()}
        if o.callback is not None:
            info = IterInfo(nit=st.k, fun=_scalar(ops.host(st.f)), x=st.x if self.B > 1 else st.x[0],
                            residual=_scalar(kkt), step=_scalar(alpha), elapsed=st.elapsed,
                            extra={"eta1": _scalar(eta1), "eta2": _scalar(eta2), "delta": _scalar(delta)})
            if call_callback(o.callback, info):
                self._finish(st, ~st.done, "callback")
        return st

    # -------------------------------------------------------------- pieces
    def _merit(self, f, lam, c, gL, eta1, eta2):
        """``L_eta = f + lam^T c + eta1/2 ||c||^2 + eta2/2 ||grad_x L||^2`` per instance."""
        dot = self.ops.dot
        return f + dot(lam, c) + 0.5 * eta1 * dot(c, c) + 0.5 * eta2 * dot(gL, gL)

    def _is_f32(self):
        return self.be.is_torch and self.be.dtype == get_torch().float32

    def _delta_trial(self, eta1, eta2, Ups, Psi):
        return (0.5 - self.options.beta) * eta2 / ((1 + eta1 + eta2) * Ups ** 2 * Psi ** 2)

    def _shift_and_constants(self, st, lin, dense, active):
        """Hessian shift t_k (spec §3.3) and, in paper mode, Psi, Upsilon and ||K|| (§3.4)."""
        o, cfg, ops = self.options, self.cfg, self.ops
        n, m, B = self.problem.n, self.problem.m, self.B
        ones = np.ones(B)
        Psi, Ups, Knorm = ones, ones, ones
        need_xiG = cfg.paper or cfg.xi_G_min is not None
        if not dense:
            shift = self._matrix_free_shift(st, lin)
            if cfg.xi_G_min is not None:
                warnings.warn("xi_G_min is only checked with a dense operator", RuntimeWarning, stacklevel=4)
            return shift, Psi, Ups, Knorm
        G, H = lin.G, lin.H
        if need_xiG:
            xiG = ops.host(ops.eigvalsh_min(G @ ops.transpose(G))).astype(np.float64)
            st.xi_G = xiG
            if cfg.xi_G_min is not None:
                bad = active & (xiG < cfg.xi_G_min)
                if bad.any():
                    self._finish(st, bad, "jacobian_rank_deficient")
        if m < n:
            Q = ops.qr_complete(ops.transpose(G))
            Z = Q[:, :, m:]
            lmin = ops.host(ops.eigvalsh_min(ops.transpose(Z) @ H @ Z)).astype(np.float64)
        else:
            lmin = np.full(B, np.inf)
        if cfg.paper:
            Hn = ops.host(ops.matnorm(H, cfg.matrix_norm)).astype(np.float64)
            t = np.where(lmin < o.eps_red, o.xi_B + Hn, 0.0)
        else:
            xiB = self._xi_B_now()
            t = np.where(np.isfinite(lmin), np.maximum(0.0, xiB - lmin), 0.0)
        st.n_shifts += active & (t > 0)
        shift = ops.dev(t)
        if cfg.paper:
            Bm = H + shift[:, None, None] * ops.eye(n)[None]
            nB = ops.host(ops.matnorm(Bm, cfg.matrix_norm)).astype(np.float64)
            nG = ops.host(ops.matnorm(G, cfg.matrix_norm)).astype(np.float64)
            nH = ops.host(ops.matnorm(H, cfg.matrix_norm)).astype(np.float64)
            xiG = np.asarray(st.xi_G, dtype=np.float64)
            with np.errstate(divide="ignore"):  # xi_G = 0 (rank deficient): Psi = inf, cap decides
                Psi = 20.0 * np.maximum(nB ** 2, 1.0) / (np.minimum(np.maximum(xiG, 0.0), 1.0) * min(o.xi_B, 1.0))
            Ups = np.maximum(np.maximum(nG, nH), 1.0)
            Kfull = ops.cat([ops.cat([Bm, ops.transpose(G)], axis=2),
                             ops.cat([G, ops.zeros(B, m, m)], axis=2)], axis=1)
            Knorm = ops.host(ops.matnorm(Kfull, cfg.matrix_norm)).astype(np.float64)
        return shift, Psi, Ups, Knorm

    def _matrix_free_shift(self, st, lin):
        # the curvature test runs after the inner solve (see _inner); start from a third of the
        # previous shift so that a transient shift decays
        t = self.ops.host(st.shift).astype(np.float64) / 3.0
        t = np.where(t < 1e-12, 0.0, t)
        return self.ops.dev(t)

    def _xi_B_now(self):
        """The curvature floor of this iteration, per instance."""
        o = self.options
        if o.adaptive_xi_B and not self.cfg.paper:
            return np.minimum(o.xi_B, self._kkt_now)
        return np.full(self.B, o.xi_B)

    def _curvature_fails(self, lin, dx, mask, shift):
        """Instances whose tangential step ``u = dx - G^T w`` (``G G^T w = G dx``, CG) has
        ``u^T B u < xi_B ||u||^2`` with the shifted ``B = H + t I``. (The spec's test with the
        unshifted H can never pass on a one-dimensional null space of negative curvature, HS7 at
        x0: no shift changes ``u^T H u``; the requirement of the analysis is ``Z^T B Z >= xi_B``.)"""
        ops = self.ops
        Gdx = lin.G_mv(dx[:, :, None])[:, :, 0]
        mv = lambda w: lin.G_mv(lin.GT_mv(w[:, :, None]))[:, :, 0]
        w = ops.zeros(*Gdx.shape)
        res = Gdx
        pdir = res
        rs = ops.dot(res, res)
        tol = 1e-20 * ops.host(rs).max() if rs.shape[0] else 0.0
        for _ in range(50):
            Ap = mv(pdir)
            den = ops.dot(pdir, Ap)
            den = den + (den == 0) * 1.0
            a = rs / den
            w = w + a[:, None] * pdir
            res = res - a[:, None] * Ap
            rs_new = ops.dot(res, res)
            if float(ops.host(rs_new).max()) <= tol:
                break
            pdir = res + (rs_new / (rs + (rs == 0) * 1.0))[:, None] * pdir
            rs = rs_new
        u = dx - lin.GT_mv(w[:, :, None])[:, :, 0]
        uu = ops.host(ops.dot(u, u)).astype(np.float64)
        uHu = ops.host(ops.dot(u, lin.H_mv(u[:, :, None])[:, :, 0])).astype(np.float64)
        uHu = uHu + ops.host(shift).astype(np.float64) * uu
        dd = ops.host(ops.dot(dx, dx)).astype(np.float64)
        return mask & (uHu < self._xi_B_now() * uu) & (np.sqrt(uu) > 1e-8 * np.sqrt(dd))

    def _hess_norm_estimate(self, lin, st):
        """||H||_2 by 10 power iterations (once per outer iteration)."""
        if getattr(self, "_hnorm", None) is not None:
            return self._hnorm
        ops = self.ops
        v = ops.dev(np.random.default_rng(1).standard_normal((self.B, self.problem.n)))
        est = np.zeros(self.B)
        for _ in range(10):
            v = v / (ops.norm(v)[:, None] + 1e-300)
            hv = lin.H_mv(v[:, :, None])[:, :, 0]
            est = ops.host(ops.norm(hv)).astype(np.float64)
            v = hv
        self._hnorm = est
        return est

    def _inner(self, K, b, z, r, tol_abs, mask, st):
        """Solve ``K z = b`` for the instances in ``mask`` from the current ``z`` until
        ``||K z - b|| <= tol_abs``; returns (z, r, steps, cap_hit)."""
        cfg, ops, B = self.cfg, self.ops, self.B
        steps = np.zeros(B, dtype=np.int64)
        o = self.options
        need = mask & (ops.host(ops.norm(r)) > tol_abs)
        if not need.any():
            return z, r, steps, np.zeros(B, dtype=bool)
        if o.linear_solver == "direct":
            return self._direct(K, b, z, r, need, steps)
        if o.linear_solver == "minres":
            return self._minres(K, b, z, r, tol_abs, need, steps)
        gen = st.rng
        probs = None
        if cfg.row_sampling == "row-norm" and cfg.sketch in ("kaczmarz", "block-kaczmarz"):
            probs = self._row_probs(K, b)
        it = 0
        q = self._q
        cap = self._cap(q)
        # numpy reads the (incremental) residual norm every step for free; torch polls the host
        # only every `check_every` steps. Either way the exact residual decides.
        poll = 1 if not self.be.is_torch else cfg.check_every
        prev_rn, prev_it = None, 0
        while need.any():
            if it >= cap:
                # the block was too small for this system's conditioning: double it (practical
                # mode, block sketches, block_size not fixed by the user) and go on; a block of N
                # columns makes the next step exact
                if not self._can_grow(q):
                    break
                q = min(self.N if self.N <= 512 else 256, 2 * q)
                self._q = q
                it, cap = 0, self._cap(q)
                prev_rn = None
            w = ops.mask(need)
            for j in range(cfg.check_every):
                S = draw_sketch(cfg.sketch, B, self.N, q, gen, b, probs)
                W = K(S)
                dz, _ = project_step(S, W, r)
                dz = dz * w[:, None]
                z = z - dz
                r = r - K.mv(dz)
                it += 1
                steps += need
                if it >= cap:
                    break
                if (j + 1) % poll == 0 and not (need & (ops.host(ops.norm(r)) > tol_abs)).any():
                    break
            r = K.mv(z) - b  # exact residual: the incremental one drifts
            rn = ops.host(ops.norm(r))
            need &= rn > tol_abs
            if need.any() and self._out_of_time():
                self._timed_out = True
                break
            if need.any() and self._can_grow(q) and prev_rn is not None:
                # observed linear rate; grow the block now when the cap cannot be met at this rate
                rate = np.clip(rn / np.maximum(prev_rn, 1e-300), 1e-12, 1.0) ** (1.0 / max(1, it - prev_it))
                with np.errstate(divide="ignore", invalid="ignore"):
                    to_go = np.where(rate < 1, np.log(tol_abs / np.maximum(rn, 1e-300)) / np.log(rate), np.inf)
                if np.any(need & (to_go > cap - it)):
                    it = cap
            prev_rn, prev_it = rn, it
        return z, r, steps, need

    def _cap(self, q):
        if self.options.max_inner is not None or self.cfg.paper:
            return self.cfg.max_inner
        return max(100, 20 * math.ceil(self.N / q))

    def _can_grow(self, q):
        cfg = self.cfg
        # small systems may grow to an exact (N-column) step; large ones stop at 256 columns,
        # beyond which a block step costs more than a direct or Krylov solve
        qmax = self.N if self.N <= 512 else 256
        return (not cfg.paper and self.options.block_size is None and q < qmax
                and cfg.sketch in ("gaussian-block", "block-kaczmarz", "countsketch"))

    def _out_of_time(self):
        tl = self.options.time_limit
        return tl is not None and time.perf_counter() - self._t_start >= tl

    def _direct(self, K, b, z, r, need, steps):
        ops = self.ops
        if getattr(K, "K", None) is not None:
            sol, bad = ops.solve(K.K, b)
        elif isinstance(K, _SparseKKT):
            sol, bad = K.solve(b)
        else:
            raise InvalidProblemError("linear_solver: 'direct' needs a dense or sparse operator; use "
                                      "operator='dense' or linear_solver='minres'")
        z = ops.where(need, sol, z)
        steps += need
        r = K.mv(z) - b
        return z, r, steps, np.zeros(self.B, dtype=bool)

    def _minres(self, K, b, z, r, tol_abs, need, steps):
        ops = self.ops
        bn = ops.host(ops.norm(b))
        rtol = np.minimum(1.0, tol_abs / np.maximum(bn, 1e-300))
        maxit = max(1000, 20 * self.N)
        if self.be.is_torch:
            from ..linalg.krylov import minres

            # one rtol for the batch (the tightest): minres takes a scalar
            rt = float(np.min(rtol[need])) * 0.5
            sol = minres(K.mv, b, x0=z, rtol=rt, maxiter=maxit)
            sol = sol[0] if isinstance(sol, tuple) else sol
            iters = maxit
        else:
            import scipy.sparse.linalg as sla

            op = sla.LinearOperator((self.N, self.N), matvec=lambda v: K.mv(v[None])[0], dtype=np.float64)
            count = [0]
            sol0, rt = z[0], float(rtol[0]) * 0.5
            # scipy's MINRES stops on ||r|| <= rtol (||A|| ||x|| + ||b||), which can be far above
            # the relative residual our inner test needs when ||K|| is large (PDE: 1/h^2): restart
            # from the iterate with a proportionally tighter rtol until the true residual passes
            for _ in range(8):
                sol0, _ = sla.minres(op, b[0], x0=sol0, rtol=rt, maxiter=maxit,
                                     callback=lambda xk: count.__setitem__(0, count[0] + 1))
                res_true = float(np.linalg.norm(K.mv(sol0[None])[0] - b[0]))
                if res_true <= tol_abs[0] or count[0] >= maxit:
                    break
                rt = max(rt * min(0.5, tol_abs[0] / res_true), 1e-16)
            sol = sol0[None]
            iters = count[0]
        z = ops.where(need, sol, z)
        steps += need * iters
        r = K.mv(z) - b
        cap = need & (ops.host(ops.norm(r)) > tol_abs)
        return z, r, steps, cap

    def _row_probs(self, K, b):
        ops = self.ops
        if getattr(K, "K", None) is not None:
            rows = (K.K * K.K).sum(-1)
        else:
            # E[(K v)^2] over Rademacher v is the vector of squared row norms
            gen = np.random.default_rng(0)
            V = gen.integers(2, size=(self.B, self.N, 8)) * 2.0 - 1.0
            V = ops.dev(V)
            KV = K(V)
            rows = (KV * KV).mean(-1)
        return row_sampling_weights(rows + 1e-300)

    def _finish(self, st, mask, reason):
        mask = mask & ~st.done
        if not mask.any():
            return
        for i in np.flatnonzero(mask):
            st.reasons[i] = reason
        st.done |= mask

    def _record(self, st, kkt, alpha, eta1, eta2, delta, t, inner_steps, q, r, b):
        ops = self.ops
        rel = ops.host(ops.norm(r)) / np.maximum(ops.host(ops.norm(b)), 1e-300)
        rec = {"k": st.k, "f": ops.host(st.f), "kkt": kkt, "alpha": alpha, "eta1": eta1, "eta2": eta2,
               "delta": delta, "t": t, "inner_steps": inner_steps, "inner_rel_residual": rel, "q": q,
               "c_norm": ops.host(ops.norm(st.c)), "grad_lag_norm": ops.host(ops.norm(st.g + st.GTlam))}
        rec = {k: _scalar(v) for k, v in rec.items()}
        st.history.append(rec)
        if self.options.verbose >= 2:
            _log.info("it %4d  f %+.6e  kkt %.3e  alpha %.3g  eta1 %.3g  eta2 %.3g  delta %.3g  inner %s",
                      rec["k"], _first(rec["f"]), _first(rec["kkt"]), _first(rec["alpha"]),
                      _first(rec["eta1"]), _first(rec["eta2"]), _first(rec["delta"]), rec["inner_steps"])

    # -------------------------------------------------------------- result
    def result(self, st: ALNewtonState) -> NLPResult:
        ops, B = self.ops, self.B
        gL = st.g + st.GTlam
        kkt = ops.host(ops.norm(ops.cat([gL, st.c])))
        cv = ops.host(ops.inf(st.c))
        stat = ops.host(ops.inf(gL))
        reasons = [rs or "max_iter" for rs in st.reasons]
        statuses = np.array([int(Status[REASON_STATUS[rs]]) for rs in reasons])
        counts = self.oracle.counts()
        unit = np.where(st.n_steps > 0, st.n_unit / np.maximum(st.n_steps, 1), np.nan)
        be = self.be
        common = dict(backend=be.name, device=be.device_str, dtype=be.dtype_str,
                      options=self.options, wall_time=time.perf_counter() - st.t_start,
                      history=st.history if self.options.record_history else None, seed=self.seed)
        xo = self._x0_override()
        batched = be.is_torch and (B > 1 or getattr(self.problem.x0, "ndim", 1) == 2
                                   or (xo is not None and xo.ndim == 2))
        if not batched:
            reason = reasons[0]
            return NLPResult(
                x=st.x[0], fun=float(ops.host(st.f)[0]), status=Status(statuses[0]),
                message=_MESSAGES.get(reason, reason) + self._notes.get(0, ""), nit=int(st.nit[0]),
                nfev=int(counts["nfev"][0]),
                kkt_residual=float(kkt[0]), constraint_violation=float(cv[0]),
                multipliers=st.lam[0], stationarity=float(stat[0]), reason=reason,
                eta=(float(ops.host(st.eta1)[0]), float(ops.host(st.eta2)[0])),
                delta=float(ops.host(st.delta)[0]), n_penalty_updates=int(st.n_penalty_updates[0]),
                n_shifts=int(st.n_shifts[0]), n_kprod=int(st.n_kprod[0]), n_inner=int(st.n_inner[0]),
                inner_cap_hits=int(st.inner_cap_hits[0]), unit_step_fraction=float(unit[0]),
                extra={"block_size": self._q, "operator": self.op},
                xi_G=None if st.xi_G is None else float(np.asarray(st.xi_G)[0]),
                **{k: int(counts[k][0]) for k in COUNTERS if k != "nfev"}, **common)
        return BatchedNLPResult(
            x=st.x, fun=st.f, statuses=statuses, nit=st.nit.copy(), nfev=counts["nfev"],
            kkt_residual=kkt, constraint_violation=cv, multipliers=st.lam, stationarity=stat,
            reason=reasons, eta=np.stack([ops.host(st.eta1), ops.host(st.eta2)], 1),
            delta=ops.host(st.delta), n_penalty_updates=st.n_penalty_updates.copy(),
            n_shifts=st.n_shifts.copy(), n_kprod=st.n_kprod.copy(), n_inner=st.n_inner.copy(),
            inner_cap_hits=st.inner_cap_hits.copy(), unit_step_fraction=unit,
            extra={"block_size": self._q, "operator": self.op},
            xi_G=None if st.xi_G is None else np.asarray(st.xi_G),
            **{k: counts[k] for k in COUNTERS if k != "nfev"}, **common)

    def run(self, state: ALNewtonState | None = None) -> NLPResult:
        """Iterate to a stop; ``state`` (from :meth:`init` or a previous run) warm-starts."""
        with verbosity(self.options.verbose):
            st = self.init() if state is None else state
            if state is not None:
                st.done[:] = False
                st.reasons = [""] * self.B
                st.k = 0
                st.t_start = time.perf_counter()
                self._t_start = st.t_start
            while not st.done.all():
                self.step(st)
            return self.result(st)


class _SparseKKT:
    """K from scipy.sparse G and H (numpy, B = 1); direct solves by sparse LU."""

    def __init__(self, lin, shift, n, m):
        import scipy.sparse as sp

        self._G = sp.csr_matrix(lin.J)
        self._H = sp.csr_matrix(lin.Hm)
        self.K = None
        self.n, self.m = n, m
        self.nprod = 0
        self.shift = shift

    @property
    def shift(self):
        return self._shift

    @shift.setter
    def shift(self, value):
        import scipy.sparse as sp

        self._shift = value
        t = float(np.asarray(value)[0])
        H = self._H + t * sp.identity(self.n, format="csr") if t else self._H
        self.Ks = sp.bmat([[H, self._G.T], [self._G, None]], format="csr")

    def __call__(self, Z):
        self.nprod += Z.shape[2]
        return np.asarray(self.Ks @ Z[0])[None]

    def mv(self, z):
        return self(z[:, :, None])[:, :, 0]

    def solve(self, b):
        import scipy.sparse.linalg as sla

        try:
            lu = sla.splu(self.Ks.tocsc())
            return lu.solve(b[0])[None], np.array([False])
        except RuntimeError:
            return np.full_like(b, np.nan), np.array([True])


def _scalar(v):
    a = np.asarray(v)
    if a.ndim == 0:
        return a.item()
    if a.size == 1:
        return a.reshape(-1)[0].item()
    return a.tolist()


def _first(v):
    return v[0] if isinstance(v, list) else v


_MESSAGES = {
    "kkt_tol": "KKT residual below the tolerance",
    "max_iter": "maximum number of outer iterations reached",
    "time_limit": "time limit reached",
    "line_search_failed": "Armijo line search failed (step below alpha_min)",
    "penalty_limit": "penalty safeguard reached without a descent direction",
    "jacobian_rank_deficient": "lambda_min(G G^T) < xi_G_min: constraint Jacobian (nearly) rank deficient",
    "nonfinite": "non-finite value in the derivatives or the direction; last finite iterate returned",
    "callback": "stopped by the callback",
}


def solve(problem: Problem, method: str = "sketched-al-newton", **options) -> NLPResult:
    """Solve ``min f(x) s.t. c(x) = 0`` (spec nlp §5.2).

    Parameters
    ----------
    problem : Problem
    method : {"sketched-al-newton", "adasketch-newton"}
        The method (the two names are aliases).
    **options
        See :class:`ALNewtonOptions` (``docs/nlp.md`` has the table): ``mode``, ``tol``,
        ``max_iter``, ``time_limit``, ``linear_solver``, ``sketch``, ``block_size``, ``x0``, ``y0``,
        ``rng``, ``device``, ``dtype``, ``callback``, ``record_history`` ...

    Returns
    -------
    NLPResult (or BatchedNLPResult for a batched torch problem)
    """
    if method not in METHODS:
        raise InvalidProblemError(f"method: unknown method {method!r}; valid: {list(METHODS)}")
    return SketchedALNewton(problem, **options).run()


def sketched_al_newton(problem: Problem, **options) -> NLPResult:
    """Same as ``solve(problem, method="sketched-al-newton", **options)``."""
    return solve(problem, "sketched-al-newton", **options)
