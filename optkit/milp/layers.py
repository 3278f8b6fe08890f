"""torch layer of optkit.milp: perturbed optimizers over a compiled MILP (spec milp, sections 3.9, 5, 8).

The feasible set C of a compiled model is fixed; a learnable cost ``theta`` replaces the IR costs of ``cost_vars``
(other columns keep theirs) and the oracle returns the optimal values of ``output_vars``:

* forward: ``y_sigma(theta) = (1/M) sum_m y*(theta + sigma Z_m)``, Z_m iid with density ~ exp(-nu(z)) (Gaussian
  or Gumbel), drawn from a seeded ``torch.Generator`` on theta's device;
* backward (Berthet et al. 2020, Prop. 3.1, a score-function identity valid for min and max):
  ``vjp(g) = (1/(sigma M)) sum_m (g . y_m) grad nu(Z_m)`` -- one einsum on theta's device;
* Fenchel-Young loss (``cost_vars == output_vars``): max sense
  ``L = (1/M) sum_m (theta + sigma Z_m)^T (y_m - y_true)``, gradient ``mean_m y_m - y_true`` (reversed for min).

Solves run in float64 on the host (one ``highspy.Highs`` per worker, built once; only ``changeColsCost`` between
samples); one host transfer each way per forward. A failed sample raises :class:`ConvergenceError` naming it, never
a silent zero gradient. This module imports torch at the top; ``import optkit.milp`` does not import it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._errors import ConvergenceError, DependencyError, InvalidProblemError

try:
    import torch
except ImportError as exc:  # pragma: no cover - the test suite always has torch
    raise DependencyError("torch", "torch", feature="optkit.milp.layers") from exc
from .build import INTEGRALITY_POLICIES, LinearForm, to_linear_form
from .solve import _check_options, _highs_from_lf, coerce_model

__all__ = ["MILPOracle", "PerturbedMILP", "PerturbedFenchelYoungLoss"]

_NOISES = ("gaussian", "gumbel")
_VARIANCE_REDUCTIONS = ("none", "baseline", "antithetic")
_DIFF_MODES = ("perturbed", "none")
_UNSUPPORTED_DIFF = ("implicit", "unroll", "envelope")
_REDUCTIONS = ("mean", "sum", "none")
_DUP_TOL = 1e-9


# ----------------------------------------------------------------------------------------------------- worker
class _Solver:
    """One silent ``Highs`` holding the compiled model; only the costs of ``cost_idx`` change between samples."""

    def __init__(self, lf: LinearForm, cost_idx: np.ndarray):
        opts = _check_options("highspy", lf.policy, None, 1e-9, 1e-9, 1, True, True, 0, 0)
        self.h = _highs_from_lf(lf, opts)
        self.idx = np.ascontiguousarray(cost_idx, dtype=np.int32)
        self.n_col = lf.n

    def solve(self, costs: np.ndarray, offset: int = 0):
        """Rows of ``costs`` -> (K, n_col) full solutions; returns ``(X, None)`` or ``(None, (k, reason))``."""
        import highspy

        k_rows = costs.shape[0]
        out = np.empty((k_rows, self.n_col))
        n = len(self.idx)
        for k in range(k_rows):
            self.h.changeColsCost(n, self.idx, np.ascontiguousarray(costs[k], dtype=np.float64))
            self.h.run()
            ms = self.h.getModelStatus()
            if ms != highspy.HighsModelStatus.kOptimal:
                raw = ms.name if hasattr(ms, "name") else str(ms).split(".")[-1]
                return None, (offset + k, raw)
            out[k] = self.h.getSolution().col_value
        return out, None


_WORKER: _Solver | None = None


def _worker_init(lf: LinearForm, cost_idx: np.ndarray):  # pragma: no cover - runs in a child process
    global _WORKER
    _WORKER = _Solver(lf, cost_idx)


def _worker_solve(costs: np.ndarray, offset: int):  # pragma: no cover - runs in a child process
    return _WORKER.solve(costs, offset)


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(v).__name__} {v!r}")
    if v < low:
        raise ValueError(f"{name}: must be >= {low}, got {v!r}")
    return int(v)


def _check_real(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__} {v!r}")
    return float(v)


def _check_choice(name, v, choices):
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {v!r}")
    return v


# ----------------------------------------------------------------------------------------------------- oracle
class MILPOracle:
    """``y*(c) = argopt_{x in C} c^T x_cost + c_rest^T x_rest`` restricted to ``output_vars``, for many costs.

    Parameters
    ----------
    model : MILPModel, dict, JSON text/path or NL4Opt record (compiled once with ``integrality``).
    cost_vars, output_vars : variable names (or mentions); None = every IR variable. ``output_vars`` defaults to
        ``cost_vars``.
    integrality : "ir", "all-integer" or "continuous".
    processes : worker processes (each holds its own ``Highs``); 1 solves in this process.

    Calling the oracle maps a (K, n_cost) float64 array to (K, n_out) float64 solutions. ``solve_mask`` (K,) bool,
    optional: rows with False take the best cached distinct solution instead of a HiGHS call (solution caching,
    spec 3.9 ``solve_ratio``); the cache holds every distinct solution found so far (full columns).
    """

    def __init__(self, model, cost_vars=None, output_vars=None, integrality: str = "ir", processes: int = 1):
        _check_choice("integrality", integrality, INTEGRALITY_POLICIES)
        self.processes = _check_int("processes", processes, 1)
        ir = coerce_model(model)
        lf = to_linear_form(ir, integrality=integrality)
        self.lf = lf
        self.integrality = integrality
        self.sense = lf.sense
        self.cost_idx = self._resolve(ir, cost_vars, "cost_vars", None)
        self.output_idx = self._resolve(ir, output_vars, "output_vars", self.cost_idx)
        self.cost_names = [lf.names[j] for j in self.cost_idx]
        self.output_names = [lf.names[j] for j in self.output_idx]
        self._solver = _Solver(lf, self.cost_idx)
        self._pool = None
        self.cache = np.empty((0, lf.n))
        self.n_solves = 0

    @staticmethod
    def _resolve(ir, names, what, default):
        if names is None:
            return np.arange(len(ir.variables)) if default is None else default.copy()
        if isinstance(names, str):
            names = [names]
        names = list(names)
        if not names:
            raise InvalidProblemError(f"{what}: empty list")
        idx = [ir.resolve(nm, f"{what}[{i}]") if isinstance(nm, str) else None for i, nm in enumerate(names)]
        for i, (nm, j) in enumerate(zip(names, idx)):
            if j is None:
                raise InvalidProblemError(f"{what}[{i}]: expected a variable name, got {type(nm).__name__}")
        if len(set(idx)) != len(idx):
            raise InvalidProblemError(f"{what}: a variable is listed twice ({names})")
        return np.asarray(idx, dtype=np.int64)

    @property
    def n_cost(self) -> int:
        return len(self.cost_idx)

    @property
    def n_out(self) -> int:
        return len(self.output_idx)

    # ------------------------------------------------------------------------------------------------ solving
    def _pool_get(self):
        if self._pool is None:
            import concurrent.futures
            import multiprocessing

            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init, initargs=(self.lf, self.cost_idx))
        return self._pool

    def close(self):
        """Shut the worker pool down (a later call starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_solver"] = None
        state["_pool"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._solver = _Solver(self.lf, self.cost_idx)

    def _solve_full(self, costs: np.ndarray) -> np.ndarray:
        k_rows = costs.shape[0]
        if k_rows == 0:
            return np.empty((0, self.lf.n))
        if self.processes == 1 or k_rows < 2 * self.processes:
            x, fail = self._solver.solve(costs)
            fails = [] if fail is None else [fail]
        else:
            pool = self._pool_get()
            bounds = np.linspace(0, k_rows, self.processes + 1).astype(int)
            futs = [pool.submit(_worker_solve, costs[a:b], int(a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
            parts, fails = [], []
            for f in futs:
                xp, fail = f.result()
                parts.append(xp)
                if fail is not None:
                    fails.append(fail)
            x = None if fails else np.concatenate(parts, axis=0)
        if fails:
            k, raw = min(fails)
            err = ConvergenceError(f"sample {k}: HiGHS returned {raw} (no optimal solution) for cost "
                                   f"{np.array2string(costs[k], precision=6)}")
            err.sample = k
            raise err
        self.n_solves += k_rows
        return x

    def _add_to_cache(self, x: np.ndarray):
        for row in x:
            if self.cache.shape[0] and np.min(np.max(np.abs(self.cache - row), axis=1)) <= _DUP_TOL:
                continue
            self.cache = np.vstack([self.cache, row[None, :]])

    def __call__(self, costs, solve_mask=None) -> np.ndarray:
        return self.solve(costs, solve_mask)[:, self.output_idx]

    def solve(self, costs, solve_mask=None) -> np.ndarray:
        """Like calling the oracle, but returns the full columns (auxiliaries included), shape (K, n)."""
        costs = np.asarray(costs, dtype=np.float64)
        if costs.ndim != 2 or costs.shape[1] != self.n_cost:
            raise InvalidProblemError(f"costs: expected (K, n_cost={self.n_cost}), got {tuple(costs.shape)}")
        if not np.all(np.isfinite(costs)):
            raise InvalidProblemError("costs: must be finite")
        k_rows = costs.shape[0]
        if solve_mask is None:
            x = self._solve_full(costs)
            self._add_to_cache(x)
            return x
        mask = np.asarray(solve_mask, dtype=bool).reshape(-1)
        if mask.shape[0] != k_rows:
            raise InvalidProblemError(f"solve_mask: expected ({k_rows},), got {mask.shape}")
        if self.cache.shape[0] == 0 and not mask.any() and k_rows:
            mask = mask.copy()
            mask[0] = True  # an empty cache: the first sample is solved
        out = np.empty((k_rows, self.lf.n))
        xs = self._solve_full(costs[mask])
        out[mask] = xs
        self._add_to_cache(xs)
        rest = ~mask
        if rest.any():
            full_c = np.broadcast_to(self.lf.c, (int(rest.sum()), self.lf.n)).copy()
            full_c[:, self.cost_idx] = costs[rest]
            vals = full_c @ self.cache.T  # (K_rest, n_cache)
            best = np.argmax(vals, axis=1) if self.sense == "maximize" else np.argmin(vals, axis=1)
            out[rest] = self.cache[best]
        return out

    def __repr__(self):
        return (f"MILPOracle(n_cost={self.n_cost}, n_out={self.n_out}, sense={self.sense!r}, "
                f"integrality={self.integrality!r}, processes={self.processes})")


# ---------------------------------------------------------------------------------------------- autograd
class _PerturbedFn(torch.autograd.Function):
    """theta (B, n) -> (B, n_out); samples are computed outside and passed in (non-differentiable)."""

    @staticmethod
    def forward(theta, y_mean, yc, grad_nu, sigma):
        return y_mean.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, _, yc, grad_nu, sigma = inputs
        ctx.save_for_backward(yc, grad_nu)
        ctx.sigma = sigma
        ctx.theta_dtype = theta.dtype

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        yc, grad_nu = ctx.saved_tensors
        m = yc.shape[1]
        gt = torch.einsum("bo,bmo,bmi->bi", g.to(yc.dtype), yc, grad_nu) / (ctx.sigma * m)
        return gt.to(ctx.theta_dtype), None, None, None, None


class _FYFn(torch.autograd.Function):
    """Per-instance Fenchel-Young loss (B,) with the closed-form gradient ``grad`` (B, n) w.r.t. theta."""

    @staticmethod
    def forward(theta, loss, grad):
        return loss.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, _, grad = inputs
        ctx.save_for_backward(grad)
        ctx.theta_dtype = theta.dtype

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return (g.to(grad.dtype)[:, None] * grad).to(ctx.theta_dtype), None, None


# ----------------------------------------------------------------------------------------------- layers
class PerturbedMILP(torch.nn.Module):
    """Perturbed optimizer over a MILP (spec 3.9): ``theta`` (n_cost,) or (B, n_cost) -> (B, n_out).

    Parameters
    ----------
    oracle_or_model : a :class:`MILPOracle`, or a model (an oracle is built with ``processes``; the cost and
        output variables are then every IR variable).
    n_samples : M >= 1.  sigma : noise scale > 0.  noise : "gaussian" or "gumbel".
    variance_reduction : "none" (paper), "baseline" (y_m - y*(theta); one extra solve per instance) or
        "antithetic" (Gaussian only: pairs Z, -Z).
    solve_ratio : in (0, 1]; below 1 a sample takes the best cached distinct solution with probability
        1 - solve_ratio instead of a HiGHS call.
    diff_mode : "perturbed" (score-function backward) or "none" (no gradient). "implicit", "unroll" and
        "envelope" raise InvalidProblemError: a MILP solution is piecewise constant (zero derivative a.e.).
    rng : seed of the noise generator (one ``torch.Generator`` per device) and of the caching draws.

    ``forward(theta, noise=None)``: ``noise`` (M, n_cost) or (B, M, n_cost) freezes Z (used as given).
    The output has theta's device and dtype; solves run in float64.
    """

    def __init__(self, oracle_or_model, n_samples: int = 10, sigma: float = 1.0, noise: str = "gaussian",
                 variance_reduction: str = "none", solve_ratio: float = 1.0, diff_mode: str = "perturbed",
                 processes: int = 1, rng: int = 0):
        super().__init__()
        self.n_samples = _check_int("n_samples", n_samples, 1)
        sigma = _check_real("sigma", sigma)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma: must be finite and > 0, got {sigma!r}")
        self.sigma = sigma
        self.noise = _check_choice("noise", noise, _NOISES)
        self.variance_reduction = _check_choice("variance_reduction", variance_reduction, _VARIANCE_REDUCTIONS)
        if self.variance_reduction == "antithetic" and self.noise != "gaussian":
            raise ValueError("variance_reduction: 'antithetic' needs a symmetric noise (noise='gaussian'), "
                             f"got noise={self.noise!r}")
        solve_ratio = _check_real("solve_ratio", solve_ratio)
        if not (0.0 < solve_ratio <= 1.0):
            raise ValueError(f"solve_ratio: must be in (0, 1], got {solve_ratio!r}")
        self.solve_ratio = solve_ratio
        if isinstance(diff_mode, str) and diff_mode in _UNSUPPORTED_DIFF:
            raise InvalidProblemError(
                f"diff_mode: {diff_mode!r} is not available for a MILP layer (a MILP solution is piecewise "
                "constant in theta, so its implicit/unrolled/envelope derivative is 0 almost everywhere); use "
                "'perturbed'")
        self.diff_mode = _check_choice("diff_mode", diff_mode, _DIFF_MODES)
        processes = _check_int("processes", processes, 1)
        self.rng = _check_int("rng", rng, 0)
        if isinstance(oracle_or_model, MILPOracle):
            self.oracle = oracle_or_model
        else:
            self.oracle = MILPOracle(oracle_or_model, processes=processes)
        self._generators: dict = {}
        self._np_rng = np.random.default_rng(self.rng)

    # -------------------------------------------------------------------------------------------- helpers
    def _generator(self, device):
        key = str(device)
        g = self._generators.get(key)
        if g is None:
            g = torch.Generator(device=device)
            g.manual_seed(self.rng)
            self._generators[key] = g
        return g

    def _check_theta(self, theta):
        if not isinstance(theta, torch.Tensor):
            raise TypeError(f"theta: expected a torch.Tensor, got {type(theta).__name__}")
        n = self.oracle.n_cost
        if theta.ndim not in (1, 2) or theta.shape[-1] != n:
            raise InvalidProblemError(f"theta: expected (B, n_cost={n}), got {tuple(theta.shape)}")
        if not theta.is_floating_point():
            raise TypeError(f"theta: expected a floating-point tensor, got {theta.dtype}")
        if not bool(torch.isfinite(theta).all()):
            raise InvalidProblemError("theta: contains NaN or inf")
        return theta if theta.ndim == 2 else theta[None, :]

    def _draw(self, b, n, device, noise):
        m = self.n_samples
        if noise is not None:
            if not isinstance(noise, torch.Tensor):
                raise TypeError(f"noise: expected a torch.Tensor, got {type(noise).__name__}")
            z = noise.to(device=device, dtype=torch.float64)
            if z.ndim == 2:
                z = z[None].expand(b, -1, -1)
            if z.ndim != 3 or z.shape[0] != b or z.shape[2] != n or z.shape[1] < 1:
                raise InvalidProblemError(f"noise: expected (M, {n}) or ({b}, M, {n}), got {tuple(noise.shape)}")
            if not bool(torch.isfinite(z).all()):
                raise InvalidProblemError("noise: contains NaN or inf")
            return z
        gen = self._generator(device)
        if self.noise == "gaussian":
            if self.variance_reduction == "antithetic":
                half = torch.randn((b, (m + 1) // 2, n), generator=gen, device=device, dtype=torch.float64)
                return torch.cat([half, -half], dim=1)[:, :m]
            return torch.randn((b, m, n), generator=gen, device=device, dtype=torch.float64)
        u = torch.rand((b, m, n), generator=gen, device=device, dtype=torch.float64)
        u = u.clamp(min=torch.finfo(torch.float64).tiny)
        return -torch.log(-torch.log(u))

    def _grad_nu(self, z):
        return z if self.noise == "gaussian" else 1.0 - torch.exp(-z)

    def _samples(self, theta2, noise, baseline):
        """(theta64 (B,n), Z (B,M,n), Y (B,M,n_out), y0 (B,n_out) or None), all float64 on theta's device."""
        b, n = theta2.shape
        dev = theta2.device
        t64 = theta2.detach().to(torch.float64)
        z = self._draw(b, n, dev, noise)
        m = z.shape[1]
        costs = (t64[:, None, :] + self.sigma * z).reshape(b * m, n)
        if baseline:
            costs = torch.cat([costs, t64], dim=0)
        host = costs.cpu().numpy()  # one transfer to the host
        mask = None
        if self.solve_ratio < 1.0:
            mask = self._np_rng.random(host.shape[0]) < self.solve_ratio
            if baseline:
                mask[b * m:] = True  # y*(theta) is always solved
        try:
            y = self.oracle(host, solve_mask=mask)
        except ConvergenceError as exc:
            k = getattr(exc, "sample", None)
            if k is None:
                raise
            where = f"instance {k // m}, perturbation {k % m}" if k < b * m else f"instance {k - b * m}, baseline"
            err = ConvergenceError(f"theta[{where}]: {exc}")
            err.sample = k
            raise err from exc
        y = torch.from_numpy(y).to(dev)  # one transfer back
        y0 = y[b * m:] if baseline else None
        return t64, z, y[: b * m].reshape(b, m, -1), y0

    # -------------------------------------------------------------------------------------------- forward
    def forward(self, theta, noise=None):
        theta2 = self._check_theta(theta)
        with torch.no_grad():
            _, z, y, y0 = self._samples(theta2, noise, self.variance_reduction == "baseline")
            y_mean = y.mean(dim=1).to(theta.dtype)
        if self.diff_mode == "none" or not (torch.is_grad_enabled() and theta.requires_grad):
            return y_mean
        yc = y if y0 is None else y - y0[:, None, :]
        return _PerturbedFn.apply(theta2, y_mean, yc, self._grad_nu(z), self.sigma)

    def extra_repr(self):
        return (f"n_samples={self.n_samples}, sigma={self.sigma}, noise={self.noise!r}, "
                f"variance_reduction={self.variance_reduction!r}, solve_ratio={self.solve_ratio}, "
                f"diff_mode={self.diff_mode!r}")


class PerturbedFenchelYoungLoss(PerturbedMILP):
    """Perturbed Fenchel-Young loss (spec 3.9), ``cost_vars == output_vars``.

    ``forward(theta, y_true, noise=None)``; max sense ``L = (1/M) sum_m (theta + sigma Z_m)^T (y_m - y_true)``,
    gradient ``mean_m y_m - y_true``; min sense ``L = (1/M) sum_m (theta + sigma Z_m)^T (y_true - y_m)``, gradient
    ``y_true - mean_m y_m``. ``reduction``: "mean" (over the batch), "sum" or "none" ((B,)). Same options as
    :class:`PerturbedMILP`; ``variance_reduction`` does not change the loss or its gradient.
    """

    def __init__(self, oracle_or_model, n_samples: int = 10, sigma: float = 1.0, noise: str = "gaussian",
                 variance_reduction: str = "none", solve_ratio: float = 1.0, diff_mode: str = "perturbed",
                 processes: int = 1, rng: int = 0, reduction: str = "mean"):
        super().__init__(oracle_or_model, n_samples=n_samples, sigma=sigma, noise=noise,
                         variance_reduction=variance_reduction, solve_ratio=solve_ratio, diff_mode=diff_mode,
                         processes=processes, rng=rng)
        self.reduction = _check_choice("reduction", reduction, _REDUCTIONS)
        if not np.array_equal(self.oracle.cost_idx, self.oracle.output_idx):
            raise InvalidProblemError(
                f"oracle: the Fenchel-Young loss needs cost_vars == output_vars, got {self.oracle.cost_names} and "
                f"{self.oracle.output_names}")

    def forward(self, theta, y_true, noise=None):
        theta2 = self._check_theta(theta)
        if not isinstance(y_true, torch.Tensor):
            y_true = torch.as_tensor(y_true)
        if tuple(y_true.shape) != tuple(theta.shape):
            raise InvalidProblemError(f"y_true: expected shape {tuple(theta.shape)} (theta's), "
                                      f"got {tuple(y_true.shape)}")
        yt = y_true.detach().to(device=theta.device, dtype=torch.float64).reshape(theta2.shape)
        if not bool(torch.isfinite(yt).all()):
            raise InvalidProblemError("y_true: contains NaN or inf")
        with torch.no_grad():
            t64, z, y, _ = self._samples(theta2, noise, False)
        sign = 1.0 if self.oracle.sense == "maximize" else -1.0
        with torch.no_grad():
            pert = t64[:, None, :] + self.sigma * z  # (B, M, n)
            loss = sign * torch.einsum("bmi,bmi->b", pert, y - yt[:, None, :]) / y.shape[1]
            grad = sign * (y.mean(dim=1) - yt)
        loss = loss.to(theta.dtype)
        if self.diff_mode != "none" and torch.is_grad_enabled() and theta.requires_grad:
            loss = _FYFn.apply(theta2, loss, grad)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss if theta.ndim == 2 else loss[0]
