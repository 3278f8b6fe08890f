"""Reference solvers for ``min f(x) s.t. c(x) = 0``: IPOPT (cyipopt), SciPy trust-constr and SLSQP.

Every baseline takes an :class:`~optkit.nlp.Problem`, uses its exact derivatives (explicit
matrices, or matrices built from JVP/VJP/HVP products when only products are given), counts each
oracle call, converts the solver's multipliers to the sign of ``L = f + lam^T c`` and returns an
:class:`~optkit.nlp.NLPResult`. ``status`` is ``CONVERGED`` only when the solver reports success
AND the common KKT test (:func:`common_kkt`, spec nlp 7.3) passes at the returned point.

Multiplier signs (checked on BT9 = HS39, true ``lam* = (-1, -1)``): IPOPT ``mult_g`` and
trust-constr ``res.v`` already use the plus sign; SLSQP's ``res.multipliers`` has the opposite
sign and is negated.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._errors import DependencyError, InvalidProblemError
from .._result import Status
from ._result import NLPResult
from .problem import Problem, _dense, _is_sparse

__all__ = ["ipopt", "scipy_trust_constr", "scipy_slsqp", "common_kkt"]

#: largest n for which a matrix is assembled from JVP/VJP/HVP products (n products each)
MAX_PRODUCT_N = 5000


# ---------------------------------------------------------------------------------------- oracles
class _Derivs:
    """Derivatives of a NumPy :class:`Problem` as matrices, with one counter per oracle.

    ``f, g, c`` give the objective (0 for ``f=None``), its gradient and the constraints;
    ``jac, hess`` the Jacobian ``G`` and the Lagrangian Hessian ``H(x, lam)`` in their native
    form (dense array or scipy.sparse CSR), ``J, H`` the same as dense arrays. Matrices missing
    from the problem are assembled from ``vjp`` (m products) / ``hvp_lag`` (n products).
    """

    _COUNTERS = ("nfev", "ngev", "ncev", "njev", "nhev", "n_jvp", "n_vjp", "n_hvp")

    def __init__(self, problem: Problem):
        if problem.kind == "torch":
            problem = _numpy_from_torch(problem)
        self.problem = problem
        self.n, self.m = problem.n, problem.m
        self.has_f = problem.has_objective
        self.reset()

    def reset(self):
        for k in self._COUNTERS:
            setattr(self, k, 0)

    def counts(self) -> dict:
        return {k: int(getattr(self, k)) for k in self._COUNTERS}

    # -- first order
    def f(self, x) -> float:
        p = self.problem
        if not self.has_f:
            return 0.0
        self.nfev += 1
        if p.f is not None:
            return float(p.f(x))
        return float(p.fg(x)[0])

    def g(self, x) -> np.ndarray:
        p = self.problem
        if not self.has_f:
            return np.zeros(self.n)
        self.ngev += 1
        g = p.grad(x) if p.grad is not None else p.fg(x)[1]
        return np.asarray(g, dtype=np.float64).reshape(-1)

    def c(self, x) -> np.ndarray:
        self.ncev += 1
        return np.asarray(self.problem.c(x), dtype=np.float64).reshape(-1)

    def jac(self, x):
        p = self.problem
        if p.jac is not None or p.cj is not None:
            self.njev += 1
            G = p.jac(x) if p.jac is not None else p.cj(x)[1]
            if _is_sparse(G):
                return G.tocsr().astype(np.float64)
            return np.atleast_2d(np.asarray(G, dtype=np.float64)).reshape(self.m, self.n)
        if self.n > MAX_PRODUCT_N:
            raise InvalidProblemError(
                f"baselines: the problem gives only 'jvp'/'vjp' and n = {self.n} > {MAX_PRODUCT_N}; "
                "supply 'jac' (dense or scipy.sparse) to use the matrix-based baselines")
        E = np.eye(self.m)
        self.n_vjp += self.m
        return np.vstack([np.asarray(p.vjp(x, E[i]), dtype=np.float64).reshape(-1) for i in range(self.m)])

    def J(self, x) -> np.ndarray:
        return _dense(self.jac(x))

    # -- second order
    def hess(self, x, lam):
        p = self.problem
        lam = np.asarray(lam, dtype=np.float64).reshape(-1)
        if p.hess_lag is not None:
            self.nhev += 1
            H = p.hess_lag(x, lam)
            if _is_sparse(H):
                return H.tocsr().astype(np.float64)
            return np.asarray(H, dtype=np.float64).reshape(self.n, self.n)
        if self.n > MAX_PRODUCT_N:
            raise InvalidProblemError(
                f"baselines: the problem gives only 'hvp_lag' and n = {self.n} > {MAX_PRODUCT_N}; "
                "supply 'hess_lag' (dense or scipy.sparse) to use the matrix-based baselines")
        E = np.eye(self.n)
        self.n_hvp += self.n
        H = np.column_stack([np.asarray(p.hvp_lag(x, lam, E[j]), dtype=np.float64).reshape(-1)
                             for j in range(self.n)])
        return 0.5 * (H + H.T)

    def H(self, x, lam) -> np.ndarray:
        return _dense(self.hess(x, lam))

    def hess_obj(self, x):
        """``grad^2 f`` (= ``H(x, 0)``)."""
        return self.hess(x, np.zeros(self.m))

    def hess_con(self, x, lam):
        """``sum_i lam_i grad^2 c_i`` (= ``H(x, lam) - H(x, 0)``)."""
        if not self.has_f:
            return self.hess(x, lam)
        return self.hess(x, lam) - self.hess(x, np.zeros(self.m))

    def hess_scaled(self, x, obj_factor, lam):
        """``obj_factor grad^2 f + sum_i lam_i grad^2 c_i`` (IPOPT's convention)."""
        if not self.has_f:
            return self.hess(x, lam)
        if obj_factor > 0.0:
            # H is linear in lam: s H(x, lam/s) = s grad^2 f + sum lam_i grad^2 c_i (one evaluation)
            return self.hess(x, np.asarray(lam, dtype=np.float64) / obj_factor) * obj_factor
        Hc = self.hess_con(x, lam)
        if obj_factor != 0.0:
            Hc = Hc + obj_factor * self.hess_obj(x)
        return Hc


def _dense_derivs(problem: Problem) -> _Derivs:
    """Dense ``f, g, c, J, H`` callables (and native ``jac``/``hess``) for any :class:`Problem`.

    Torch problems (single instance) are converted through ``torch.func``; batched torch problems
    are refused.
    """
    if not isinstance(problem, Problem):
        raise InvalidProblemError(f"baselines: expected an optkit.nlp.Problem, got {type(problem).__name__}")
    return _Derivs(problem)


def _numpy_from_torch(problem: Problem) -> Problem:
    """NumPy-facing Problem for a single-instance torch problem (derivatives by torch.func)."""
    from .._backend import get_torch

    torch = get_torch()
    x0 = problem.x0
    if getattr(x0, "ndim", 1) != 1:
        raise InvalidProblemError(
            "baselines need a single-instance problem: this torch problem is batched "
            f"(x0 shape {tuple(x0.shape)}); solve each instance separately")
    tf, tc = problem.torch_f, problem.torch_c
    params = tuple(problem.params or ())
    dtype = x0.dtype if x0.is_floating_point() else torch.float64
    dev = x0.device

    def T(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=dev)

    def N(t):
        return t.detach().cpu().numpy().astype(np.float64)

    def lag(x, lam):
        val = (tc(x, *params) * lam).sum()
        return val + tf(x, *params) if tf is not None else val

    def f(x):
        with torch.no_grad():
            return float(tf(T(x), *params))

    def grad(x):
        return N(torch.func.grad(lambda z: tf(z, *params))(T(x)))

    def c(x):
        with torch.no_grad():
            return N(tc(T(x), *params))

    def jac(x):
        return np.atleast_2d(N(torch.func.jacrev(lambda z: tc(z, *params))(T(x))))

    def hess_lag(x, lam):
        lam_t = T(lam)
        H = torch.func.jacrev(torch.func.grad(lambda z: lag(z, lam_t)))(T(x))  # reverse-over-reverse
        return N(H)

    return Problem(n=problem.n, m=problem.m, x0=N(x0), c=c, f=f if tf is not None else None,
                   grad=grad if tf is not None else None, jac=jac, hess_lag=hess_lag,
                   y0=None if problem.y0 is None else N(torch.as_tensor(problem.y0)).reshape(-1),
                   name=problem.name, f_star=problem.f_star, tags=problem.tags, source=problem.source)


# ---------------------------------------------------------------------------------- KKT measures
def _lstsq_multipliers(G, g) -> np.ndarray:
    """``argmin_lam ||g + G^T lam||_2`` (minimum-norm solution)."""
    if _is_sparse(G):
        m, n = G.shape
        if n * m <= 4_000_000:
            G = G.toarray()
        else:
            from scipy.sparse.linalg import lsqr

            return lsqr(G.T.tocsr(), -g, atol=1e-15, btol=1e-15, conlim=1e14,
                        iter_lim=max(10 * m, 1000))[0]
    lam, *_ = np.linalg.lstsq(G.T, -g, rcond=None)
    return lam


def common_kkt(problem: Problem, x, x0=None, tol: float = 1e-6) -> dict:
    """The benchmark's solver-independent success test (spec nlp 7.3).

    With least-squares multipliers ``lam_LS = argmin ||grad f + G^T lam||``, the point is solved iff
    ``||c(x)||_inf <= tol max(1, ||c(x0)||_inf)`` and
    ``||grad f(x) + G(x)^T lam_LS||_inf <= tol max(1, ||grad f(x0)||_inf)``.

    Returns a dict with ``solved`` (bool), ``c_inf``, ``stat_inf``, ``lam_ls``, ``f`` and the two
    scales ``c_scale``, ``g_scale``. Non-finite values make ``solved`` False.
    """
    d = _dense_derivs(problem)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (problem.n,):
        raise InvalidProblemError(f"common_kkt: 'x' must have shape ({problem.n},), got {x.shape}")
    x0 = d.problem.x0 if x0 is None else np.asarray(x0, dtype=np.float64).reshape(-1)
    with np.errstate(all="ignore"):
        c0 = d.c(x0)
        g0 = d.g(x0)
        c_scale = max(1.0, float(np.max(np.abs(c0)))) if np.all(np.isfinite(c0)) else math.inf
        g_scale = max(1.0, float(np.max(np.abs(g0)))) if np.all(np.isfinite(g0)) else math.inf
        f = d.f(x)
        c = d.c(x)
        g = d.g(x)
        G = d.jac(x)
        finite = bool(np.all(np.isfinite(c)) and np.all(np.isfinite(g)) and math.isfinite(f)
                      and np.all(np.isfinite(G.data if _is_sparse(G) else G)))
        if finite:
            lam = _lstsq_multipliers(G, g)
            r = g + np.asarray(G.T @ lam).reshape(-1)
            c_inf = float(np.max(np.abs(c)))
            stat_inf = float(np.max(np.abs(r)))
        else:
            lam = np.full(problem.m, np.nan)
            c_inf = stat_inf = math.nan
    solved = bool(finite and c_inf <= tol * c_scale and stat_inf <= tol * g_scale)
    return {"solved": solved, "c_inf": c_inf, "stat_inf": stat_inf, "lam_ls": lam, "f": f,
            "c_scale": c_scale, "g_scale": g_scale, "tol": tol}


def _kkt_fields(d: _Derivs, x, lam) -> dict:
    """kkt_residual, constraint_violation and stationarity at (x, lam) with the solver's lam."""
    with np.errstate(all="ignore"):
        g = d.g(x)
        c = d.c(x)
        G = d.jac(x)
        r = g + np.asarray(G.T @ lam).reshape(-1)
        return {
            "fun": d.f(x),
            "kkt_residual": float(np.sqrt(r @ r + c @ c)),
            "constraint_violation": float(np.max(np.abs(c))),
            "stationarity": float(np.max(np.abs(r))),
        }


# ------------------------------------------------------------------------------------- helpers
def _prepare(problem: Problem, x0, y0, ignore_bounds: bool):
    d = _dense_derivs(problem)
    p = d.problem
    if p.finite_bounds and not ignore_bounds:
        raise InvalidProblemError(
            f"baselines: problem {p.name!r} has finite variable bounds, which these equality-"
            "constrained baselines ignore; pass ignore_bounds=True to solve without them")
    x0 = p.x0.copy() if x0 is None else np.asarray(x0, dtype=np.float64).reshape(-1).copy()
    if x0.shape != (p.n,):
        raise InvalidProblemError(f"baselines: 'x0' must have shape ({p.n},), got {x0.shape}")
    if not np.all(np.isfinite(x0)):
        raise InvalidProblemError("baselines: 'x0' contains NaN or inf")
    if y0 is not None:
        y0 = np.asarray(y0, dtype=np.float64).reshape(-1).copy()
        if y0.shape != (p.m,):
            raise InvalidProblemError(f"baselines: 'y0' must have shape ({p.m},), got {y0.shape}")
        if not np.all(np.isfinite(y0)):
            raise InvalidProblemError("baselines: 'y0' contains NaN or inf")
    return d, x0, y0


def _finish(d: _Derivs, *, x, lam, x0, nit, solver_ok: bool, status_if_ok_fail, reason, message,
            fail_status, wall_time, kkt_tol, options, extra) -> NLPResult:
    counts = d.counts()  # the solver's own calls only: evaluations below are not counted
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    lam = np.asarray(lam, dtype=np.float64).reshape(-1) if lam is not None else None
    kkt = common_kkt(d.problem, x, x0=x0, tol=kkt_tol)
    if lam is None or not np.all(np.isfinite(lam)):
        lam = kkt["lam_ls"]
        extra["multipliers_source"] = "least_squares"
    fields = _kkt_fields(d, x, lam)
    if solver_ok:
        if kkt["solved"]:
            status = Status.CONVERGED
        else:
            status = status_if_ok_fail
            message = (f"{message}; but the common KKT test failed (||c||_inf = {kkt['c_inf']:.3g}, "
                       f"||grad_x L(lam_LS)||_inf = {kkt['stat_inf']:.3g}, tol {kkt_tol:g})")
    else:
        status = fail_status
    if not (math.isfinite(fields["fun"]) and np.all(np.isfinite(x))) and status == Status.CONVERGED:
        status = Status.NUMERICAL_ERROR  # pragma: no cover - defensive
    extra["common_kkt"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in kkt.items()}
    return NLPResult(
        x=x, fun=fields["fun"], status=status, message=message, nit=int(nit), nfev=counts["nfev"],
        kkt_residual=fields["kkt_residual"], constraint_violation=fields["constraint_violation"],
        stationarity=fields["stationarity"], multipliers=lam, reason=reason, wall_time=wall_time,
        backend="numpy", device="cpu", dtype="float64", options=options, extra=extra,
        ngev=counts["ngev"], njev=counts["njev"], nhev=counts["nhev"], n_jvp=counts["n_jvp"],
        n_vjp=counts["n_vjp"], n_hvp=counts["n_hvp"], ncev=counts["ncev"],
    )


# ------------------------------------------------------------------------------------------ IPOPT
#: Ipopt ApplicationReturnStatus -> optkit Status (0 and 1 are "solver says solved")
_IPOPT_STATUS = {
    0: Status.CONVERGED,          # Solve_Succeeded
    1: Status.CONVERGED,          # Solved_To_Acceptable_Level
    2: Status.INFEASIBLE,         # Infeasible_Problem_Detected
    3: Status.STALLED,            # Search_Direction_Becomes_Too_Small
    4: Status.NUMERICAL_ERROR,    # Diverging_Iterates
    5: Status.CALLBACK_STOP,      # User_Requested_Stop
    6: Status.FEASIBLE_NOT_OPTIMAL,  # Feasible_Point_Found
    -1: Status.MAX_ITER,          # Maximum_Iterations_Exceeded
    -2: Status.STALLED,           # Restoration_Failed
    -3: Status.NUMERICAL_ERROR,   # Error_In_Step_Computation
    -4: Status.TIME_LIMIT,        # Maximum_CpuTime_Exceeded
    -5: Status.TIME_LIMIT,        # Maximum_WallTime_Exceeded
    -13: Status.NUMERICAL_ERROR,  # Invalid_Number_Detected
}


def _sparsity(mats, lower=False):
    """Union of the nonzero patterns of ``mats`` (scipy.sparse), optionally lower triangle only."""
    import scipy.sparse as sp

    acc = None
    for A in mats:
        B = abs(sp.coo_matrix(A))
        acc = B if acc is None else acc + B
    acc = sp.coo_matrix(acc)
    r, c = acc.row, acc.col
    if lower:
        r, c = np.maximum(r, c), np.minimum(r, c)
        n = acc.shape[0]
        r = np.concatenate([r, np.arange(n)])  # keep the diagonal: cheap and safe
        c = np.concatenate([c, np.arange(n)])
    keys = np.unique(r.astype(np.int64) * acc.shape[1] + c)
    return (keys // acc.shape[1]).astype(np.int32), (keys % acc.shape[1]).astype(np.int32)


#: IPOPT gets dense Jacobian/Hessian structures up to this n even when the problem returns
#: scipy.sparse matrices: the structure changes MUMPS' pivoting and hence Ipopt's iterates (HS27,
#: BYRDSPHR and BT8 from S2MPJ take 57/18/41 iterations with sparse structures, 54/13/31 dense,
#: the counts of spec nlp 6.2).
IPOPT_DENSE_MAX_N = 200


def ipopt(problem: Problem, tol: float = 1e-8, max_iter: int = 3000, x0=None, y0=None,
          time_limit: float | None = None, *, sparse: bool | None = None, kkt_tol: float = 1e-6,
          ignore_bounds: bool = False, **opts) -> NLPResult:
    """Solve with IPOPT through cyipopt (``pip install cyipopt-wheels``; Ipopt 3.14 + MUMPS).

    Constraints ``0 <= c(x) <= 0``, exact Lagrangian Hessian (lower triangle), ``print_level 0``.
    ``sparse=None``: sparse structures for the matrices that ``jac`` / ``hess_lag`` return as
    scipy.sparse when ``n > IPOPT_DENSE_MAX_N`` (200), dense structures otherwise; ``True`` / ``False``
    force it (``True`` applies to the sparse-returning matrices only). ``nit`` is the last
    iteration number seen by the ``intermediate`` callback (restoration iterations included).
    ``y0`` given: warm start of the multipliers (``warm_start_init_point yes``). ``time_limit``
    sets ``max_wall_time``. Further keyword arguments are IPOPT options.

    Returns an :class:`NLPResult` with ``reason = "ipopt:<status>"`` and ``multipliers =
    info["mult_g"]`` (sign of ``L = f + lam^T c``).
    """
    try:
        import cyipopt
    except ImportError:
        raise DependencyError("cyipopt-wheels", "bench", "the IPOPT baseline") from None
    if cyipopt is None:  # sys.modules entry set to None
        raise DependencyError("cyipopt-wheels", "bench", "the IPOPT baseline")
    d, x0, y0 = _prepare(problem, x0, y0, ignore_bounds)
    n, m = d.n, d.m

    # sparsity: decided from the native type at x0 (and a perturbed point, for the pattern)
    rng = np.random.default_rng(12345)
    xp = x0 + 0.1 * rng.standard_normal(n) * np.maximum(1.0, np.abs(x0))
    lam_p = rng.standard_normal(m)
    J0 = d.jac(x0)
    H0 = d.hess(x0, lam_p)
    jac_sparse, hess_sparse = _is_sparse(J0), _is_sparse(H0)
    if sparse is None:
        sparse = n > IPOPT_DENSE_MAX_N
    jac_sparse, hess_sparse = jac_sparse and sparse, hess_sparse and sparse
    if jac_sparse:
        with np.errstate(all="ignore"):
            Jp = d.jac(xp)
        jrows, jcols = _sparsity([J0] + ([Jp] if np.all(np.isfinite(Jp.data)) else []))
    else:
        jrows, jcols = np.repeat(np.arange(m), n).astype(np.int32), np.tile(np.arange(n), m).astype(np.int32)
    if hess_sparse:
        with np.errstate(all="ignore"):
            Hp = d.hess(xp, rng.standard_normal(m))
            Hf = d.hess_obj(x0)
        mats = [H0, Hf] + ([Hp] if np.all(np.isfinite(Hp.data)) else [])
        hrows, hcols = _sparsity(mats, lower=True)
    else:
        hrows, hcols = np.tril_indices(n)
        hrows, hcols = hrows.astype(np.int32), hcols.astype(np.int32)
    d.reset()  # structure probes are not the solver's evaluations

    state = {"nit": 0}

    class _Callbacks:
        def objective(self, x):
            return d.f(x)

        def gradient(self, x):
            return d.g(x)

        def constraints(self, x):
            return d.c(x)

        def jacobian(self, x):
            G = d.jac(x)
            if jac_sparse:
                G = G.tocsr() if _is_sparse(G) else G
                return np.asarray(G[jrows, jcols]).reshape(-1)
            return _dense(G).reshape(-1)

        def jacobianstructure(self):
            return jrows, jcols

        def hessian(self, x, lagrange, obj_factor):
            H = d.hess_scaled(x, float(obj_factor), lagrange)
            if _is_sparse(H):
                H = H.tocsr() if hess_sparse else H.toarray()
            return np.asarray(H[hrows, hcols]).reshape(-1)

        def hessianstructure(self):
            return hrows, hcols

        def intermediate(self, alg_mod, iter_count, obj_value, inf_pr, inf_du, mu, d_norm,
                         regularization_size, alpha_du, alpha_pr, ls_trials):
            state["nit"] = max(state["nit"], int(iter_count))
            return True

    nlp = cyipopt.Problem(n=n, m=m, problem_obj=_Callbacks(), lb=None, ub=None,
                          cl=np.zeros(m), cu=np.zeros(m))
    options = {"tol": float(tol), "max_iter": int(max_iter), "print_level": 0, "sb": "yes"}
    if time_limit is not None:
        options["max_wall_time"] = float(time_limit)
    if y0 is not None:
        options["warm_start_init_point"] = "yes"
    options.update(opts)
    for k, v in options.items():
        nlp.add_option(k, v)
    options["sparse"] = bool(jac_sparse or hess_sparse)
    t0 = time.perf_counter()
    if y0 is not None:
        x, info = nlp.solve(x0.copy(), lagrange=y0.copy())
    else:
        x, info = nlp.solve(x0.copy())
    wall = time.perf_counter() - t0
    code = int(info["status"])
    st = _IPOPT_STATUS.get(code, Status.ERROR)
    msg = info.get("status_msg", b"")
    msg = msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)
    return _finish(
        d, x=x, lam=np.asarray(info["mult_g"], dtype=np.float64), x0=x0, nit=state["nit"],
        solver_ok=st == Status.CONVERGED, status_if_ok_fail=Status.STALLED, reason=f"ipopt:{code}",
        message=f"IPOPT: {msg}", fail_status=st, wall_time=wall, kkt_tol=kkt_tol, options=options,
        extra={"solver": "ipopt", "ipopt_status": code, "obj_val": float(info["obj_val"]),
               "sparse_jacobian": jac_sparse, "sparse_hessian": hess_sparse},
    )


# ---------------------------------------------------------------------------------------- SciPy
class _TimeLimit:
    """SciPy callback stopping the run after ``time_limit`` seconds (raises StopIteration)."""

    def __init__(self, time_limit):
        self.time_limit = time_limit
        self.t0 = time.perf_counter()
        self.hit = False

    def __call__(self, intermediate_result=None):
        if self.time_limit is not None and time.perf_counter() - self.t0 > self.time_limit:
            self.hit = True
            raise StopIteration


def scipy_trust_constr(problem: Problem, gtol: float = 1e-8, xtol: float = 1e-12, maxiter: int = 3000,
                       x0=None, y0=None, time_limit: float | None = None, *, kkt_tol: float = 1e-6,
                       ignore_bounds: bool = False, **opts) -> NLPResult:
    """Solve with ``scipy.optimize.minimize(method="trust-constr")`` (equality-constrained SQP).

    ``NonlinearConstraint(c, 0, 0)`` with the exact Jacobian and constraint Hessian
    ``sum_i v_i grad^2 c_i = H(x, v) - H(x, 0)``; objective Hessian ``H(x, 0)``. Multipliers
    ``res.v[0]`` (already the sign of ``L = f + lam^T c``). trust-constr statuses 1 (gtol) and 2
    (xtol) count as the solver's success. ``y0`` is ignored (trust-constr has no multiplier start).
    """
    try:
        from scipy.optimize import NonlinearConstraint, minimize
    except ImportError:  # pragma: no cover - scipy is a core dependency
        raise DependencyError("scipy", "bench", "the trust-constr baseline") from None
    d, x0, _ = _prepare(problem, x0, y0, ignore_bounds)
    n = d.n
    H0 = d.hess(x0, np.zeros(d.m))
    sparse_h = _is_sparse(H0)
    J0 = d.jac(x0)
    sparse_j = _is_sparse(J0)
    d.reset()

    def jac(x):
        G = d.jac(x)
        return G if sparse_j else _dense(G)

    def hess_f(x):
        if not d.has_f:
            import scipy.sparse as sp

            return sp.csr_matrix((n, n)) if sparse_h else np.zeros((n, n))
        return d.hess_obj(x)

    def hess_c(x, v):
        return d.hess_con(x, v)

    con = NonlinearConstraint(d.c, 0.0, 0.0, jac=jac, hess=hess_c)
    options = {"gtol": float(gtol), "xtol": float(xtol), "maxiter": int(maxiter), "verbose": 0}
    options.update(opts)
    tl = _TimeLimit(time_limit)
    import warnings

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(d.f, x0.copy(), jac=d.g, hess=hess_f, method="trust-constr", constraints=[con],
                       options=options, callback=tl if time_limit is not None else None)
    wall = time.perf_counter() - t0
    code = int(res.status)
    if tl.hit:
        fail = Status.TIME_LIMIT
    else:
        fail = {0: Status.MAX_ITER, 3: Status.CALLBACK_STOP}.get(code, Status.ERROR)
    lam = np.asarray(res.v[0], dtype=np.float64).reshape(-1) if getattr(res, "v", None) else None
    return _finish(
        d, x=res.x, lam=lam, x0=x0, nit=int(res.nit), solver_ok=code in (1, 2),
        status_if_ok_fail=Status.STALLED, reason=f"trust-constr:{code}",
        message=f"trust-constr: {res.message}", fail_status=fail, wall_time=wall, kkt_tol=kkt_tol,
        options=options, extra={"solver": "trust-constr", "scipy_status": code,
                                "constr_violation": float(res.constr_violation)},
    )


def scipy_slsqp(problem: Problem, ftol: float = 1e-12, maxiter: int = 3000, x0=None, y0=None,
                time_limit: float | None = None, *, kkt_tol: float = 1e-6, ignore_bounds: bool = False,
                **opts) -> NLPResult:
    """Solve with ``scipy.optimize.minimize(method="SLSQP")`` (dense).

    Multipliers ``-res.multipliers`` (SciPy's SLSQP uses ``L = f - lam^T c``); when SciPy does not
    report them, least-squares multipliers ``argmin ||grad f + G^T lam||``. ``y0`` is ignored.
    """
    try:
        from scipy.optimize import minimize
    except ImportError:  # pragma: no cover
        raise DependencyError("scipy", "bench", "the SLSQP baseline") from None
    d, x0, _ = _prepare(problem, x0, y0, ignore_bounds)
    options = {"ftol": float(ftol), "maxiter": int(maxiter)}
    options.update(opts)
    tl = _TimeLimit(time_limit)
    import warnings

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(d.f, x0.copy(), jac=d.g, method="SLSQP",
                       constraints=[{"type": "eq", "fun": d.c, "jac": d.J}], options=options,
                       callback=tl if time_limit is not None else None)
    wall = time.perf_counter() - t0
    code = int(res.status)
    if tl.hit:
        fail = Status.TIME_LIMIT
    else:
        fail = {9: Status.MAX_ITER, 99: Status.CALLBACK_STOP, 8: Status.STALLED,
                4: Status.INFEASIBLE, 6: Status.NUMERICAL_ERROR}.get(code, Status.ERROR)
    mult = getattr(res, "multipliers", None)
    extra = {"solver": "slsqp", "scipy_status": code}
    if mult is not None and np.size(mult) == d.m:
        lam = -np.asarray(mult, dtype=np.float64).reshape(-1)
        extra["multipliers_source"] = "slsqp"
    else:  # older SciPy: no multipliers reported -> least squares in _finish
        lam = None
    return _finish(
        d, x=res.x, lam=lam, x0=x0, nit=int(res.nit), solver_ok=code == 0,
        status_if_ok_fail=Status.STALLED, reason=f"slsqp:{code}", message=f"SLSQP: {res.message}",
        fail_status=fail, wall_time=wall, kkt_tol=kkt_tol, options=options, extra=extra,
    )
