"""Solve an IR model with HiGHS, through highspy (default) or Pyomo + ``appsi_highs`` (spec milp, section 3.6).

The model is compiled once to a :class:`~optkit.milp.build.LinearForm`; both paths solve the same rows. HiGHS's
``kUnboundedOrInfeasible`` is resolved (presolve-off re-solve, then an objective-0 feasibility solve and the LP
relaxation). After solving, constraint and integrality violations are recomputed from the compiled IR rows,
integer columns within the MIP feasibility tolerance are rounded to exact integers and ``fun`` is recomputed in the
user's sense.

highspy and pyomo are imported lazily; a missing one raises :class:`~optkit.DependencyError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import pathlib
import time
import warnings
from typing import Any

import numpy as np

from .._errors import DependencyError, InvalidProblemError
from .._result import Result, Status
from .build import LinearForm, to_linear_form
from .ir import MILPModel

__all__ = ["MILPResult", "solve", "to_highspy", "to_pyomo", "coerce_model"]

_METHODS = ("highspy", "pyomo")
_POLICIES = ("ir", "all-integer", "continuous", "both")
_MIP_FEAS_TOL = 1e-6


@dataclasses.dataclass(repr=False)
class MILPResult(Result):
    """Outcome of :func:`solve`.

    ``x`` holds the IR variables in model order (auxiliaries are in ``extra["auxiliary"]``); ``fun`` is in the
    user's sense; ``values`` maps names to values; ``raw_status`` is HiGHS's (or Pyomo's) status string;
    ``constraint_violation`` / ``integrality_violation`` are recomputed from the compiled rows. With
    ``integrality="both"`` the main fields are the ``"ir"`` MILP and ``lp_fun`` / ``lp_x`` the LP relaxation.
    ``method`` names the solver path (``"highspy"``, ``"pyomo"``); ``backend`` is the array backend of ``x``
    (``"numpy"``), as for every optkit result.
    """

    method: str = "highspy"
    raw_status: str | None = None
    values: dict = dataclasses.field(default_factory=dict)
    mip_gap: float | None = None
    dual_bound: float | None = None
    integrality_violation: float | None = None
    integrality: str = "ir"
    lp_fun: float | None = None
    lp_x: Any = None
    lp_status: Status | None = None


@dataclasses.dataclass
class _Opts:
    time_limit: float | None
    mip_rel_gap: float
    mip_abs_gap: float
    threads: int
    presolve: bool
    resolve_ambiguous: bool
    verbose: int
    rng: int


@dataclasses.dataclass
class _Outcome:
    status: Status  # INFEASIBLE_OR_UNBOUNDED marks HiGHS's ambiguous status before resolution
    raw: str
    x: np.ndarray | None = None
    mip_gap: float | None = None
    dual_bound: float | None = None
    nit: int = 0
    nodes: int = 0


# ------------------------------------------------------------------------------------------------------ coercion
def _is_nl4opt(obj) -> bool:
    if isinstance(obj, dict):
        if "const_declarations" in obj or "obj_declaration" in obj:
            return True
        if len(obj) == 1:
            v = next(iter(obj.values()))
            return isinstance(v, dict) and ("const_declarations" in v or "obj_declaration" in v)
    return False


def coerce_model(model) -> MILPModel:
    """``MILPModel``, dict, JSON string, path to a JSON file, or NL4Opt record -> validated ``MILPModel``."""
    if isinstance(model, MILPModel):
        return model.check()
    if isinstance(model, (str, os.PathLike)):
        text = str(model) if not isinstance(model, os.PathLike) else None
        if text is not None and text.lstrip().startswith("{"):
            try:
                model = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidProblemError(f"model: invalid JSON ({exc})") from exc
        else:
            path = pathlib.Path(model)
            if not path.is_file():
                raise InvalidProblemError(f"model: {str(model)[:200]!r} is neither JSON nor an existing file")
            try:
                model = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InvalidProblemError(f"model: {path} is not valid JSON ({exc})") from exc
    if isinstance(model, dict):
        if _is_nl4opt(model):
            from_nl4opt = getattr(MILPModel, "from_nl4opt", None)
            if from_nl4opt is None:  # pragma: no cover - provided by the NL4Opt converter
                raise InvalidProblemError("model: NL4Opt records need MILPModel.from_nl4opt")
            return from_nl4opt(model)
        return MILPModel.model_validate(model)
    raise InvalidProblemError(f"model: expected MILPModel, dict, JSON text or path, got {type(model).__name__}")


def _check_options(method, integrality, time_limit, mip_rel_gap, mip_abs_gap, threads, presolve,
                   resolve_ambiguous, verbose, rng) -> _Opts:
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    if not isinstance(integrality, str) or integrality not in _POLICIES:
        raise ValueError(f"integrality: expected one of {_POLICIES}, got {integrality!r}")
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real):
            raise TypeError(f"time_limit: expected a number or None, got {type(time_limit).__name__}")
        if not time_limit > 0:
            raise ValueError(f"time_limit: must be > 0, got {time_limit!r}")
    for name, v in (("mip_rel_gap", mip_rel_gap), ("mip_abs_gap", mip_abs_gap)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name}: must be finite and >= 0, got {v!r}")
    for name, v, low in (("threads", threads, 1), ("verbose", verbose, 0), ("rng", rng, 0)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name}: expected an integer, got {type(v).__name__} {v!r}")
        if v < low:
            raise ValueError(f"{name}: must be >= {low}, got {v!r}")
    return _Opts(
        time_limit=None if time_limit is None else float(time_limit),
        mip_rel_gap=float(mip_rel_gap),
        mip_abs_gap=float(mip_abs_gap),
        threads=int(threads),
        presolve=bool(presolve),
        resolve_ambiguous=bool(resolve_ambiguous),
        verbose=int(verbose),
        rng=int(rng) % 2147483647,
    )


# ------------------------------------------------------------------------------------------------------- highspy
def _import_highspy():
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - highspy is installed in the test environment
        raise DependencyError("highspy", None, feature="solving MILP models") from exc
    return highspy


def _highs_from_lf(lf: LinearForm, opts: _Opts, *, presolve: bool | None = None, zero_objective: bool = False):
    highspy = _import_highspy()
    h = highspy.Highs()
    h.setOptionValue("output_flag", opts.verbose >= 3)
    h.setOptionValue("mip_rel_gap", opts.mip_rel_gap)
    h.setOptionValue("mip_abs_gap", opts.mip_abs_gap)
    h.setOptionValue("threads", opts.threads)
    h.setOptionValue("presolve", "on" if (opts.presolve if presolve is None else presolve) else "off")
    h.setOptionValue("random_seed", opts.rng)
    if opts.time_limit is not None:
        h.setOptionValue("time_limit", opts.time_limit)
    lp = highspy.HighsLp()
    n, m = lf.n, lf.m
    lp.num_col_ = n
    lp.num_row_ = m
    lp.col_cost_ = np.zeros(n) if zero_objective else np.asarray(lf.c, dtype=np.float64)
    lp.offset_ = 0.0 if zero_objective else float(lf.c0)
    lp.sense_ = highspy.ObjSense.kMaximize if lf.sense == "maximize" else highspy.ObjSense.kMinimize
    lp.col_lower_ = np.asarray(lf.col_lb, dtype=np.float64)
    lp.col_upper_ = np.asarray(lf.col_ub, dtype=np.float64)
    lp.row_lower_ = np.asarray(lf.row_lb, dtype=np.float64)
    lp.row_upper_ = np.asarray(lf.row_ub, dtype=np.float64)
    csc = lf.A.tocsc()
    csc.sort_indices()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = m
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(np.float64)
    if np.any(lf.integrality):
        lp.integrality_ = [highspy.HighsVarType.kInteger if f else highspy.HighsVarType.kContinuous
                           for f in lf.integrality]
    lp.col_names_ = list(lf.names)
    st = h.passModel(lp)
    if st == highspy.HighsStatus.kError:  # pragma: no cover - the compiler produces valid models
        raise RuntimeError("highspy passModel rejected the compiled model (an optkit bug)")
    return h


_HIGHS_MAP = {
    "kOptimal": Status.CONVERGED,
    "kModelEmpty": Status.CONVERGED,
    "kInfeasible": Status.INFEASIBLE,
    "kUnbounded": Status.UNBOUNDED,
    "kUnboundedOrInfeasible": Status.INFEASIBLE_OR_UNBOUNDED,
    "kTimeLimit": Status.TIME_LIMIT,
    "kIterationLimit": Status.MAX_ITER,
    "kSolutionLimit": Status.FEASIBLE_NOT_OPTIMAL,
    "kInterrupt": Status.FEASIBLE_NOT_OPTIMAL,
    "kHighsInterrupt": Status.FEASIBLE_NOT_OPTIMAL,
    "kObjectiveBound": Status.FEASIBLE_NOT_OPTIMAL,
    "kObjectiveTarget": Status.FEASIBLE_NOT_OPTIMAL,
    "kMemoryLimit": Status.NUMERICAL_ERROR,
    "kSolveError": Status.NUMERICAL_ERROR,
    "kPresolveError": Status.NUMERICAL_ERROR,
    "kPostsolveError": Status.NUMERICAL_ERROR,
    "kUnknown": Status.NUMERICAL_ERROR,
    "kNotset": Status.ERROR,
    "kLoadError": Status.ERROR,
    "kModelError": Status.ERROR,
}


def _run_highspy(lf: LinearForm, opts: _Opts, presolve: bool, zero_objective: bool = False) -> _Outcome:
    h = _highs_from_lf(lf, opts, presolve=presolve, zero_objective=zero_objective)
    h.run()
    ms = h.getModelStatus()
    raw = ms.name if hasattr(ms, "name") else str(ms).split(".")[-1]
    status = _HIGHS_MAP.get(raw, Status.NUMERICAL_ERROR)
    info = h.getInfo()
    feasible = int(info.primal_solution_status) == 2
    if status == Status.FEASIBLE_NOT_OPTIMAL and not feasible:
        status = Status.NUMERICAL_ERROR if raw not in ("kSolutionLimit", "kInterrupt", "kHighsInterrupt") \
            else Status.ERROR
    x = None
    if feasible and status in (Status.CONVERGED, Status.TIME_LIMIT, Status.MAX_ITER, Status.FEASIBLE_NOT_OPTIMAL):
        x = np.array(h.getSolution().col_value, dtype=np.float64)
    is_mip = bool(np.any(lf.integrality))
    gap = dual = None
    if is_mip:
        gap = float(info.mip_gap) if x is not None else None
        dual = float(info.mip_dual_bound) if math.isfinite(info.mip_dual_bound) else None
    elif status == Status.CONVERGED:
        gap, dual = 0.0, float(info.objective_function_value)
    return _Outcome(status=status, raw=raw, x=x, mip_gap=gap, dual_bound=dual,
                    nit=int(max(info.simplex_iteration_count, 0)) + int(max(info.ipm_iteration_count, 0)),
                    nodes=int(max(info.mip_node_count, 0)))


# --------------------------------------------------------------------------------------------------------- pyomo
def _import_pyomo():
    try:
        import pyomo.environ as pe
    except ImportError as exc:
        raise DependencyError("pyomo", None, feature="the Pyomo compile path") from exc
    return pe


def _pyomo_from_lf(lf: LinearForm, *, zero_objective: bool = False):
    pe = _import_pyomo()
    m = pe.ConcreteModel(name="optkit_milp")
    n = lf.n
    domains = {}
    for j in range(n):
        if lf.integrality[j]:
            domains[j] = pe.Binary if (lf.col_lb[j] == 0.0 and lf.col_ub[j] == 1.0) else pe.Integers
        else:
            domains[j] = pe.Reals

    def _bounds(_m, j):
        lo, hi = lf.col_lb[j], lf.col_ub[j]
        return (float(lo) if math.isfinite(lo) else None, float(hi) if math.isfinite(hi) else None)

    m.x = pe.Var(range(n), within=lambda _m, j: domains[j], bounds=_bounds)
    if zero_objective:
        m.obj = pe.Objective(expr=0.0 * m.x[0], sense=pe.minimize)
    else:
        m.obj = pe.Objective(
            expr=sum(float(lf.c[j]) * m.x[j] for j in range(n) if lf.c[j] != 0.0) + float(lf.c0),
            sense=pe.maximize if lf.sense == "maximize" else pe.minimize,
        )
    m.rows = pe.ConstraintList()
    A = lf.A.tocsr()
    for i in range(lf.m):
        cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
        vals = A.data[A.indptr[i]:A.indptr[i + 1]]
        lo, hi = float(lf.row_lb[i]), float(lf.row_ub[i])
        if len(cols) == 0:
            if lo <= 0.0 <= hi:
                continue
            expr = 0.0 * m.x[0]
        else:
            expr = sum(float(a) * m.x[int(j)] for j, a in zip(cols, vals))
        if lo == hi:
            m.rows.add(expr == hi)
        elif math.isfinite(lo) and math.isfinite(hi):
            m.rows.add(pe.inequality(lo, expr, hi))
        elif math.isfinite(hi):
            m.rows.add(expr <= hi)
        elif math.isfinite(lo):
            m.rows.add(expr >= lo)
    m._optkit_names = list(lf.names)
    return m


_PYOMO_MAP = {
    "optimal": Status.CONVERGED,
    "globallyOptimal": Status.CONVERGED,
    "locallyOptimal": Status.CONVERGED,
    "infeasible": Status.INFEASIBLE,
    "unbounded": Status.UNBOUNDED,
    "infeasibleOrUnbounded": Status.INFEASIBLE_OR_UNBOUNDED,
    "maxTimeLimit": Status.TIME_LIMIT,
    "maxIterations": Status.MAX_ITER,
    "maxEvaluations": Status.MAX_ITER,
    "minFunctionValue": Status.FEASIBLE_NOT_OPTIMAL,
    "objectiveLimit": Status.FEASIBLE_NOT_OPTIMAL,
    "userInterrupt": Status.FEASIBLE_NOT_OPTIMAL,
    "interrupted": Status.FEASIBLE_NOT_OPTIMAL,
    "error": Status.ERROR,
    "solverFailure": Status.NUMERICAL_ERROR,
    "unknown": Status.NUMERICAL_ERROR,
}


def _appsi_solver():
    pe = _import_pyomo()
    try:
        opt = pe.SolverFactory("appsi_highs")
        ok = bool(opt.available())
    except Exception:  # pragma: no cover - depends on the pyomo build
        ok = False
    return opt if ok else None


def _run_pyomo(lf: LinearForm, opts: _Opts, presolve: bool, zero_objective: bool = False) -> _Outcome:
    opt = _appsi_solver()
    m = _pyomo_from_lf(lf, zero_objective=zero_objective)
    options = {
        "mip_rel_gap": opts.mip_rel_gap,
        "mip_abs_gap": opts.mip_abs_gap,
        "threads": opts.threads,
        "presolve": "on" if presolve else "off",
        "random_seed": opts.rng,
    }
    res = opt.solve(m, load_solutions=False, tee=opts.verbose >= 3, timelimit=opts.time_limit, options=options)
    tc = res.solver.termination_condition
    raw = getattr(tc, "name", str(tc))
    status = _PYOMO_MAP.get(raw, Status.NUMERICAL_ERROR)
    has_solution = len(res.solution) > 0
    if status == Status.FEASIBLE_NOT_OPTIMAL and not has_solution:
        status = Status.NUMERICAL_ERROR
    x = None
    if has_solution and status in (Status.CONVERGED, Status.TIME_LIMIT, Status.MAX_ITER,
                                   Status.FEASIBLE_NOT_OPTIMAL):
        m.solutions.load_from(res)
        x = np.array([m.x[j].value if m.x[j].value is not None else 0.0 for j in range(lf.n)], dtype=np.float64)
    is_mip = bool(np.any(lf.integrality))
    gap = dual = None
    if x is not None:
        bound = res.problem.upper_bound if lf.sense == "maximize" else res.problem.lower_bound
        try:
            bound = float(bound)
        except (TypeError, ValueError):
            bound = None
        if bound is not None and math.isfinite(bound) and not zero_objective:
            dual = bound
            obj = lf.objective(x)
            gap = abs(obj - bound) / max(abs(obj), 1e-10) if is_mip else 0.0
    return _Outcome(status=status, raw=raw, x=x, mip_gap=gap, dual_bound=dual)


# ---------------------------------------------------------------------------------------------------- resolution
def _solve_lf(lf: LinearForm, runner, opts: _Opts) -> tuple[_Outcome, list]:
    """Run once; resolve an ambiguous infeasible-or-unbounded status (section 3.6)."""
    out = runner(lf, opts, opts.presolve)
    steps: list = []
    if out.status != Status.INFEASIBLE_OR_UNBOUNDED or not opts.resolve_ambiguous:
        return out, steps
    first_raw = out.raw
    steps.append({"step": "initial", "raw_status": first_raw})
    if opts.presolve:
        out2 = runner(lf, opts, False)
        steps.append({"step": "presolve_off", "raw_status": out2.raw})
        if out2.status != Status.INFEASIBLE_OR_UNBOUNDED:
            return out2, steps
    feas = runner(lf, opts, False, zero_objective=True)
    steps.append({"step": "feasibility", "raw_status": feas.raw})
    if feas.status == Status.INFEASIBLE:
        return _Outcome(status=Status.INFEASIBLE, raw=first_raw), steps
    if feas.status == Status.CONVERGED:
        relax = runner(lf.relaxed(), opts, False)
        steps.append({"step": "lp_relaxation", "raw_status": relax.raw})
        if relax.status in (Status.UNBOUNDED, Status.INFEASIBLE_OR_UNBOUNDED):
            return _Outcome(status=Status.UNBOUNDED, raw=first_raw), steps
    return _Outcome(status=Status.INFEASIBLE_OR_UNBOUNDED, raw=first_raw), steps


def _finish(x_full: np.ndarray | None, lf: LinearForm):
    """Round integer columns within the MIP feasibility tolerance; return (x_full, fun, cviol, iviol)."""
    if x_full is None:
        return None, None, None, None
    x_full = np.array(x_full, dtype=np.float64)
    iviol = lf.integrality_violation(x_full)
    mask = lf.integrality.astype(bool)
    r = np.round(x_full)
    close = mask & (np.abs(x_full - r) <= _MIP_FEAS_TOL)
    x_full[close] = r[close]
    x_full[x_full == 0.0] = 0.0  # no negative zeros
    return x_full, lf.objective(x_full), lf.row_violation(x_full), iviol


# ------------------------------------------------------------------------------------------------------- public
def solve(model, *, method: str = "highspy", integrality: str = "ir", time_limit: float | None = None,
          mip_rel_gap: float = 1e-9, mip_abs_gap: float = 1e-9, threads: int = 1, presolve: bool = True,
          resolve_ambiguous: bool = True, verbose: int = 0, rng: int = 0) -> MILPResult:
    """Compile ``model`` and solve it with HiGHS.

    Parameters
    ----------
    model : MILPModel, dict, JSON string, path to a JSON file, or NL4Opt record.
    method : ``"highspy"`` (``HighsLp`` + ``passModel``) or ``"pyomo"`` (``ConcreteModel`` + ``appsi_highs``).
    integrality : ``"ir"``, ``"all-integer"``, ``"continuous"`` or ``"both"`` (the ``"ir"`` MILP and its LP
        relaxation; ``lp_fun`` / ``lp_x`` hold the latter).
    time_limit, mip_rel_gap, mip_abs_gap, threads, presolve : HiGHS options (gaps default to 1e-9, not HiGHS's
        loose 1e-4 / 1e-6).
    resolve_ambiguous : resolve ``kUnboundedOrInfeasible`` into INFEASIBLE or UNBOUNDED where possible.
    verbose : HiGHS output from 3 on. rng : HiGHS ``random_seed``.

    Returns
    -------
    MILPResult
    """
    opts = _check_options(method, integrality, time_limit, mip_rel_gap, mip_abs_gap, threads, presolve,
                          resolve_ambiguous, verbose, rng)
    ir = coerce_model(model)
    t0 = time.perf_counter()
    used = method
    message = ""
    if method == "pyomo":
        if _appsi_solver() is None:
            warnings.warn("pyomo's appsi_highs solver is unavailable (is highspy installed?); solving with highspy "
                          "instead", RuntimeWarning, stacklevel=2)
            runner, used = _run_highspy, "highspy (pyomo appsi_highs unavailable)"
            message = "appsi_highs unavailable: solved with highspy"
        else:
            runner = _run_pyomo
    else:
        runner = _run_highspy

    main_policy = "ir" if integrality == "both" else integrality
    lf = to_linear_form(ir, integrality=main_policy)
    out, steps = _solve_lf(lf, runner, opts)
    x_full, fun, cviol, iviol = _finish(out.x, lf)

    res = MILPResult(
        status=out.status,
        message=message,
        raw_status=out.raw,
        integrality=integrality,
        method=used,
        backend="numpy",
        dtype="float64",
        device="cpu",
        nit=out.nit,
        mip_gap=out.mip_gap,
        dual_bound=out.dual_bound,
        extra={"nodes": out.nodes, "resolves": steps, "linear_form": lf, "diagnostics": list(lf.diagnostics),
               "big_m": list(lf.big_m)},
    )
    if x_full is not None:
        res.x = x_full[:lf.n_ir].copy()
        res.fun = fun
        res.constraint_violation = cviol
        res.integrality_violation = iviol
        res.values = {name: float(v) for name, v in zip(lf.names[:lf.n_ir], res.x)}
        res.extra["auxiliary"] = {name: float(v) for name, v in zip(lf.names[lf.n_ir:], x_full[lf.n_ir:])}
    if integrality == "both":
        lf_lp = to_linear_form(ir, integrality="continuous")
        out_lp, steps_lp = _solve_lf(lf_lp, runner, opts)
        xl, fl, _, _ = _finish(out_lp.x, lf_lp)
        res.lp_status = out_lp.status
        res.lp_fun = fl
        res.lp_x = None if xl is None else xl[:lf_lp.n_ir].copy()
        res.extra["lp_resolves"] = steps_lp
        res.extra["lp_raw_status"] = out_lp.raw
    res.wall_time = time.perf_counter() - t0
    return res


def to_highspy(model, integrality: str = "ir", **options):
    """``(Highs, LinearForm)``: a silent ``highspy.Highs`` holding the compiled model (``passModel``), not yet run.

    ``options`` are those of :func:`solve` (time_limit, mip_rel_gap, mip_abs_gap, threads, presolve, verbose, rng).
    """
    if integrality not in ("ir", "all-integer", "continuous"):
        raise ValueError(f"integrality: expected 'ir', 'all-integer' or 'continuous', got {integrality!r}")
    kw = dict(time_limit=None, mip_rel_gap=1e-9, mip_abs_gap=1e-9, threads=1, presolve=True, verbose=0, rng=0)
    unknown = set(options) - set(kw)
    if unknown:
        raise TypeError(f"to_highspy got unknown option(s) {sorted(unknown)}")
    kw.update(options)
    opts = _check_options("highspy", integrality, kw["time_limit"], kw["mip_rel_gap"], kw["mip_abs_gap"],
                          kw["threads"], kw["presolve"], True, kw["verbose"], kw["rng"])
    lf = to_linear_form(coerce_model(model), integrality=integrality)
    return _highs_from_lf(lf, opts), lf


def to_pyomo(model, integrality: str = "ir"):
    """A Pyomo ``ConcreteModel`` of the compiled rows: ``x`` indexed by column (names in ``_optkit_names``),
    ``obj`` and the ``rows`` ConstraintList."""
    if integrality not in ("ir", "all-integer", "continuous"):
        raise ValueError(f"integrality: expected 'ir', 'all-integer' or 'continuous', got {integrality!r}")
    lf = to_linear_form(coerce_model(model), integrality=integrality)
    return _pyomo_from_lf(lf)
