"""Compile a :class:`~optkit.milp.ir.MILPModel` into a :class:`LinearForm` (spec milp, sections 3.2, 3.3, 3.6).

Template rows (section 3.2) are built first; they are the *unconditional* rows. Logic constraints then add rows
with derived big-M constants (section 3.3), never a fixed constant such as 1e6:

* activation / minimum lot, U_j: the constraint's ``ub``, else ``Variable.ub``, else the tightest bound implied by
  an unconditional row with nonnegative coefficients (x_j <= (b - sum_{i != j} a_i l_i) / a_j), else an LP
  maximising x_j over the unconditional rows (HiGHS through ``scipy.optimize.linprog``) plus a margin
  1e-6 max(1, |U|); an integer column gets floor(U + 1e-6). An unbounded or infeasible LP raises
  InvalidProblemError naming the variable and the constraint.
* either-or, each side's <= rows a^T x <= b (an equality splits in two, >= is negated): M = sum_i max(a_i l_i,
  a_i u_i) - b when finite, else the LP maximum of a^T x (plus the margin) - b; a side whose every M <= 0 always
  holds, so the disjunction is dropped (info diagnostic).

Auxiliary binaries are appended after the IR variables as ``__z{k}``. The input model is never modified.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._errors import InvalidProblemError
from .ir import MILPModel, to_number

__all__ = ["LinearForm", "to_linear_form", "INTEGRALITY_POLICIES"]

INTEGRALITY_POLICIES = ("ir", "all-integer", "continuous")
_MIP_FEAS_TOL = 1e-6
_INF = math.inf


@dataclasses.dataclass
class LinearForm:
    """``opt c^T x + c0  s.t.  row_lb <= A x <= row_ub,  col_lb <= x <= col_ub,  x_j integer where integrality``.

    Attributes
    ----------
    c : (n,) float64 array; c0 : float; sense : "minimize" or "maximize" (the user's sense).
    A : scipy.sparse.csr_matrix (m, n).
    row_lb, row_ub, col_lb, col_ub : float64 arrays (+-inf where absent).
    integrality : (n,) int8 array, 1 for integer (and binary) columns under the compiled policy.
    names : column names (IR variables first, then auxiliaries ``__z{k}``).
    row_origin : (m,) int array, the IR constraint index of each row.
    n_ir : number of IR variables (the leading columns).
    policy : the integrality policy compiled.
    big_m : list of dicts, one per derived constant (constraint, variable or side, value, source).
    diagnostics : list of dicts ``{code, severity, message, constraints}`` (``big_m_large``, ``disjunction_dropped``).
    """

    c: np.ndarray
    c0: float
    sense: str
    A: Any
    row_lb: np.ndarray
    row_ub: np.ndarray
    col_lb: np.ndarray
    col_ub: np.ndarray
    integrality: np.ndarray
    names: list
    row_origin: np.ndarray
    n_ir: int = 0
    policy: str = "ir"
    big_m: list = dataclasses.field(default_factory=list)
    diagnostics: list = dataclasses.field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.c)

    @property
    def m(self) -> int:
        return self.A.shape[0]

    def row_violation(self, x) -> float:
        """Largest violation of rows and column bounds at ``x`` (full length, auxiliaries included)."""
        x = np.asarray(x, dtype=np.float64)
        viol = 0.0
        if self.m:
            ax = self.A @ x
            viol = max(viol, float(np.max(np.maximum(self.row_lb - ax, 0.0), initial=0.0)))
            viol = max(viol, float(np.max(np.maximum(ax - self.row_ub, 0.0), initial=0.0)))
        viol = max(viol, float(np.max(np.maximum(self.col_lb - x, 0.0), initial=0.0)))
        viol = max(viol, float(np.max(np.maximum(x - self.col_ub, 0.0), initial=0.0)))
        return viol

    def integrality_violation(self, x) -> float:
        x = np.asarray(x, dtype=np.float64)
        mask = self.integrality.astype(bool)
        if not mask.any():
            return 0.0
        return float(np.max(np.abs(x[mask] - np.round(x[mask]))))

    def objective(self, x) -> float:
        return float(self.c @ np.asarray(x, dtype=np.float64) + self.c0)

    def relaxed(self) -> LinearForm:
        """A copy with every column continuous (the LP relaxation)."""
        return dataclasses.replace(self, integrality=np.zeros_like(self.integrality), policy="continuous")


# ------------------------------------------------------------------------------------------------------- helpers
def _op_bounds(op: str, b: float) -> tuple[float, float]:
    if op == "LESS_OR_EQUAL":
        return -_INF, b
    if op == "GREATER_OR_EQUAL":
        return b, _INF
    return b, b


class _Rows:
    def __init__(self):
        self.coefs: list[dict[int, float]] = []
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.origin: list[int] = []

    def add(self, coefs: dict[int, float], lb: float, ub: float, origin: int):
        self.coefs.append({j: a for j, a in coefs.items() if a != 0.0})
        self.lb.append(lb)
        self.ub.append(ub)
        self.origin.append(origin)


def _acc(d: dict[int, float], j: int, a: float):
    d[j] = d.get(j, 0.0) + a


def _lp_max(obj: dict[int, float], rows: _Rows, col_lb, col_ub):
    """max obj^T x over the given rows and column bounds, continuous. Returns (status, value) with status
    'optimal', 'unbounded' or 'infeasible'."""
    from scipy.optimize import linprog

    n = len(col_lb)
    c = np.zeros(n)
    for j, a in obj.items():
        c[j] = -a
    a_ub, b_ub, a_eq, b_eq = [], [], [], []
    for coefs, lb, ub in zip(rows.coefs, rows.lb, rows.ub):
        vec = np.zeros(n)
        for j, a in coefs.items():
            vec[j] = a
        if lb == ub:
            a_eq.append(vec)
            b_eq.append(ub)
            continue
        if ub < _INF:
            a_ub.append(vec)
            b_ub.append(ub)
        if lb > -_INF:
            a_ub.append(-vec)
            b_ub.append(-lb)
    bounds = [(None if not math.isfinite(lo) else lo, None if not math.isfinite(hi) else hi)
              for lo, hi in zip(col_lb, col_ub)]
    res = linprog(
        c,
        A_ub=np.array(a_ub) if a_ub else None,
        b_ub=np.array(b_ub) if b_ub else None,
        A_eq=np.array(a_eq) if a_eq else None,
        b_eq=np.array(b_eq) if b_eq else None,
        bounds=bounds,
        method="highs",
    )
    if res.status == 0:
        return "optimal", float(-res.fun)
    if res.status == 3:
        return "unbounded", _INF
    if res.status == 2:
        return "infeasible", math.nan
    return "failed", math.nan  # pragma: no cover - iteration limit / numerical trouble on a tiny LP


def _margin(u: float) -> float:
    return u + 1e-6 * max(1.0, abs(u))


def _check_large(lf_diags: list, value: float, what: str, ci: int):
    if value > 1e6 or value * _MIP_FEAS_TOL > 1e-3:
        lf_diags.append({
            "code": "big_m_large",
            "severity": "warning",
            "message": f"big-M {value:.6g} for {what} is large: the MIP feasibility tolerance "
                       f"{_MIP_FEAS_TOL:g} lets the indicator leak up to {value * _MIP_FEAS_TOL:.3g}",
            "constraints": [ci],
        })


# --------------------------------------------------------------------------------------------------------- compile
def to_linear_form(model, integrality: str = "ir") -> LinearForm:
    """Compile an IR model (validated first) into a :class:`LinearForm` under an integrality policy.

    ``integrality``: ``"ir"`` (domains as declared), ``"all-integer"`` (every non-binary variable integer),
    ``"continuous"`` (all continuous; binaries relaxed to [0, 1]).
    """
    if integrality not in INTEGRALITY_POLICIES:
        raise ValueError(f"integrality: expected one of {INTEGRALITY_POLICIES}, got {integrality!r}")
    if not isinstance(model, MILPModel):
        model = MILPModel.model_validate(model)
    else:
        model.check()
    idx = model.name_index()
    nv = len(model.variables)

    # columns
    col_lb = np.empty(nv)
    col_ub = np.empty(nv)
    integ = np.zeros(nv, dtype=np.int8)
    for j, v in enumerate(model.variables):
        lb = -_INF if v.lb is None else to_number(v.lb, f"variables[{j}].lb")
        ub = _INF if v.ub is None else to_number(v.ub, f"variables[{j}].ub")
        if v.domain == "binary":
            lb, ub = max(lb, 0.0), min(ub, 1.0)
        col_lb[j], col_ub[j] = lb, ub
        if integrality == "ir":
            integ[j] = v.domain != "continuous"
        elif integrality == "all-integer":
            integ[j] = 1
    all_vars = list(range(nv))

    # objective
    o = model.objective
    c = np.zeros(nv)
    if o.type == "objvar":
        for r in o.vars:
            c[idx[r]] += 1.0
    else:
        for k, a in o.terms.items():
            c[idx[k]] += to_number(a, f"objective.terms[{k!r}]")
    c0 = to_number(o.constant, "objective.constant")

    # template (unconditional) rows
    rows = _Rows()
    for ci, con in enumerate(model.constraints):
        loc = f"constraints[{ci}]"
        t = con.type
        coefs: dict[int, float] = {}
        if t == "sum":
            for j in all_vars:
                _acc(coefs, j, 1.0)
            rows.add(coefs, *_op_bounds(con.operator, to_number(con.limit, f"{loc}.limit")), ci)
        elif t in ("upperbound", "lowerbound"):
            _acc(coefs, idx[con.var], 1.0)
            rows.add(coefs, *_op_bounds(con.operator, to_number(con.limit, f"{loc}.limit")), ci)
        elif t == "linear":
            for k, a in con.terms.items():
                _acc(coefs, idx[k], to_number(a, f"{loc}.terms[{k!r}]"))
            rows.add(coefs, *_op_bounds(con.operator, to_number(con.limit, f"{loc}.limit")), ci)
        elif t == "ratio":
            r = to_number(con.limit, f"{loc}.limit")
            _acc(coefs, idx[con.var], 1.0)
            base = all_vars if con.base is None else [idx[b] for b in con.base]
            for j in base:
                _acc(coefs, j, -r)
            rows.add(coefs, *_op_bounds(con.operator, 0.0), ci)
        elif t == "xby":
            _acc(coefs, idx[con.x_var], 1.0)
            _acc(coefs, idx[con.y_var], -to_number(con.param, f"{loc}.param"))
            rows.add(coefs, *_op_bounds(con.operator, 0.0), ci)
        elif t == "xy":
            _acc(coefs, idx[con.x_var], 1.0)
            _acc(coefs, idx[con.y_var], -1.0)
            rows.add(coefs, *_op_bounds(con.operator, 0.0), ci)
    uncond = _Rows()
    uncond.coefs, uncond.lb, uncond.ub, uncond.origin = (
        list(rows.coefs), list(rows.lb), list(rows.ub), list(rows.origin))

    big_m: list[dict] = []
    diags: list[dict] = []
    names = [v.name for v in model.variables]
    aux_lb: list[float] = []
    aux_ub: list[float] = []
    aux_int: list[int] = []

    def upper(j: int, ci: int, override) -> float:
        """U_j for activation / minimum lot at constraint ci (section 3.3)."""
        v = model.variables[j]
        is_int = bool(integ[j])
        source = None
        if override is not None:
            u, source = to_number(override, f"constraints[{ci}].ub"), "constraint.ub"
        elif math.isfinite(col_ub[j]):
            u, source = float(col_ub[j]), "Variable.ub"
        else:
            u = _implied_bound(j, uncond, col_lb)
            if u is not None:
                source = "implied"
            else:
                status, val = _lp_max({j: 1.0}, uncond, col_lb, col_ub)
                if status != "optimal":
                    raise InvalidProblemError(
                        f"constraints[{ci}]: cannot derive big-M for {v.name!r} in constraint {ci} "
                        f"(LP maximum of {v.name!r} over the unconditional rows is {status}); set Variable.ub")
                u, source = _margin(val), "lp"
        if is_int:
            u = math.floor(u + 1e-6)
        big_m.append({"constraint": ci, "variable": v.name, "value": float(u), "source": source})
        _check_large(diags, u, f"{v.name!r}", ci)
        return u

    z_count = 0
    for ci, con in enumerate(model.constraints):
        t = con.type
        loc = f"constraints[{ci}]"
        if t == "activation":
            j, y = idx[con.var], idx[con.indicator]
            u = upper(j, ci, con.ub)
            rows.add({j: 1.0, y: -u}, -_INF, 0.0, ci)
        elif t == "min_lot":
            j, y = idx[con.var], idx[con.indicator]
            m = to_number(con.min, f"{loc}.min")
            u = upper(j, ci, con.ub)
            if m > u:
                raise InvalidProblemError(f"{loc}.min: minimum lot {m:g} exceeds the upper bound {u:g} of "
                                          f"{model.variables[j].name!r}")
            rows.add({j: 1.0, y: -m}, 0.0, _INF, ci)
            rows.add({j: 1.0, y: -u}, -_INF, 0.0, ci)
        elif t == "implication":
            rows.add({idx[con.if_var]: 1.0, idx[con.then_var]: -1.0} if con.if_var != con.then_var else {},
                     -_INF, 0.0, ci)
        elif t in ("exclusion", "cardinality"):
            coefs = {}
            for r in con.vars:
                _acc(coefs, idx[r], 1.0)
            if t == "exclusion":
                rows.add(coefs, -_INF, 1.0, ci)
            else:
                rows.add(coefs, *_op_bounds(con.operator, to_number(con.k, f"{loc}.k")), ci)
        elif t == "either_or":
            sides = []
            for side in ("first", "second"):
                row = getattr(con, side)
                a: dict[int, float] = {}
                for k, val in row.terms.items():
                    _acc(a, idx[k], to_number(val, f"{loc}.{side}.terms[{k!r}]"))
                b = to_number(row.limit, f"{loc}.{side}.limit")
                le = []  # (coefs, rhs) of <= rows
                if row.operator in ("LESS_OR_EQUAL", "EQUAL"):
                    le.append((a, b))
                if row.operator in ("GREATER_OR_EQUAL", "EQUAL"):
                    le.append(({j: -x for j, x in a.items()}, -b))
                with_m = []
                for coefs, rhs in le:
                    mk = _disjunct_m(coefs, rhs, col_lb, col_ub, uncond, ci, side, names)
                    with_m.append((coefs, rhs, mk))
                sides.append((side, with_m))
            always = [side for side, wm in sides if all(mk <= 0 for _, _, mk in wm)]
            if always:
                diags.append({
                    "code": "disjunction_dropped",
                    "severity": "info",
                    "message": f"{loc}: the {always[0]} row always holds within the bounds; disjunction dropped",
                    "constraints": [ci],
                })
                continue
            if con.indicator is not None:
                z = idx[con.indicator]
            else:
                z = nv + z_count
                names.append(f"__z{z_count}")
                z_count += 1
                aux_lb.append(0.0)
                aux_ub.append(1.0)
                aux_int.append(0 if integrality == "continuous" else 1)
            for (side, wm) in sides:
                for coefs, rhs, mk in wm:
                    if mk <= 0:
                        continue  # this row holds whatever z is
                    big_m.append({"constraint": ci, "side": side, "value": float(mk), "source": "disjunction"})
                    _check_large(diags, mk, f"{loc}.{side}", ci)
                    row = dict(coefs)
                    if side == "first":  # g1 - M1 z <= b1
                        _acc(row, z, -mk)
                        rows.add(row, -_INF, rhs, ci)
                    else:  # g2 + M2 z <= b2 + M2
                        _acc(row, z, mk)
                        rows.add(row, -_INF, rhs + mk, ci)

    n = nv + z_count
    c_full = np.concatenate([c, np.zeros(z_count)])
    lb_full = np.concatenate([col_lb, np.array(aux_lb, dtype=np.float64)])
    ub_full = np.concatenate([col_ub, np.array(aux_ub, dtype=np.float64)])
    int_full = np.concatenate([integ, np.array(aux_int, dtype=np.int8)]).astype(np.int8)
    data, ri, cj = [], [], []
    for i, coefs in enumerate(rows.coefs):
        for j, a in sorted(coefs.items()):
            if a != 0.0:
                ri.append(i)
                cj.append(j)
                data.append(a)
    A = sp.csr_matrix((np.array(data, dtype=np.float64), (np.array(ri, dtype=np.int64), np.array(cj, dtype=np.int64))),
                      shape=(len(rows.coefs), n))
    A.sum_duplicates()
    return LinearForm(
        c=c_full,
        c0=c0,
        sense=o.sense,
        A=A,
        row_lb=np.array(rows.lb, dtype=np.float64),
        row_ub=np.array(rows.ub, dtype=np.float64),
        col_lb=lb_full,
        col_ub=ub_full,
        integrality=int_full,
        names=names,
        row_origin=np.array(rows.origin, dtype=np.int64),
        n_ir=nv,
        policy=integrality,
        big_m=big_m,
        diagnostics=diags,
    )


def _implied_bound(j: int, rows: _Rows, col_lb) -> float | None:
    """Tightest x_j <= (b - sum_{i != j} a_i l_i) / a_j over unconditional rows whose coefficients all have one
    sign (<= rows with a >= 0, >= rows with a <= 0 read negated) and a_j != 0; None if there is none."""
    best = None
    for coefs, lb, ub in zip(rows.coefs, rows.lb, rows.ub):
        if j not in coefs or not coefs:
            continue
        cands = []
        if ub < _INF and all(a >= 0 for a in coefs.values()) and coefs[j] > 0:
            cands.append((coefs, ub))
        if lb > -_INF and all(a <= 0 for a in coefs.values()) and coefs[j] < 0:
            cands.append(({i: -a for i, a in coefs.items()}, -lb))
        for cf, b in cands:
            rest = 0.0
            ok = True
            for i, a in cf.items():
                if i == j:
                    continue
                if not math.isfinite(col_lb[i]):
                    ok = False
                    break
                rest += a * col_lb[i]
            if ok:
                u = (b - rest) / cf[j]
                best = u if best is None else min(best, u)
    return best


def _disjunct_m(coefs, rhs, col_lb, col_ub, uncond, ci, side, names) -> float:
    total = 0.0
    for i, a in coefs.items():
        hi = max(a * col_lb[i] if math.isfinite(col_lb[i]) else (-_INF if a > 0 else _INF),
                 a * col_ub[i] if math.isfinite(col_ub[i]) else (_INF if a > 0 else -_INF))
        total += hi
    if math.isfinite(total):
        return total - rhs
    status, val = _lp_max(coefs, uncond, col_lb, col_ub)
    if status != "optimal":
        vars_ = [names[i] for i in coefs]
        raise InvalidProblemError(
            f"constraints[{ci}].{side}: cannot derive big-M for the row over {vars_} in constraint {ci} "
            f"(LP maximum is {status}); set Variable.ub on these variables")
    return _margin(val) - rhs
