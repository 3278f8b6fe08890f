"""Self-check diagnostics after solving (spec milp 3.7).

:func:`diagnose` inspects an IR model, its compiled :class:`~optkit.milp.build.LinearForm` and its solution, and
returns :class:`Diagnostic` notes, each naming the IR constraints (indices into ``model.constraints``) and
variables (names) involved:

* errors: ``infeasible`` (an irreducible infeasible subset of IR constraints, deletion filter),
  ``unbounded`` (variables that reach a large box in the LP), ``trivial_solution`` (x = 0 optimal under
  minimisation), ``unused_variable``, ``zero_objective``, ``invalid_model`` (the model does not compile);
* warnings: ``duplicate_constraint``, ``ratio_base_guess``, ``negative_capacity_rhs``, ``coefficient_range``,
  ``big_m_large`` (passed through from the compiler, as is its info ``disjunction_dropped``);
* info: ``integrality_sensitive``.

Sub-solves reuse the highspy path of :mod:`optkit.milp.solve` on row subsets of the compiled form, so big-M
constants derived from the full model stay fixed while constraints are dropped. The model is never modified.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from .._errors import InvalidProblemError
from .._result import Status
from .build import LinearForm, to_linear_form
from .ir import TEMPLATE_TYPES, MILPModel, to_number

__all__ = ["Diagnostic", "diagnose", "self_check_summary", "guess_ratio_base", "irreducible_infeasible_subset",
           "SEVERITIES"]

SEVERITIES = ("info", "warning", "error")

#: a coefficient ratio above this is reported as ``coefficient_range``
COEFFICIENT_RANGE_LIMIT = 1e6
_ZERO_TOL = 1e-9
_REL_TOL = 1e-6


@dataclasses.dataclass
class Diagnostic:
    """A note from the pipeline: ``code``, ``severity`` (info/warning/error), ``message``, ``constraints`` (IR
    constraint indices) and ``variables`` (IR variable names)."""

    code: str
    severity: str = "warning"
    message: str = ""
    constraints: list = dataclasses.field(default_factory=list)
    variables: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------- sub-solves
def _opts():
    from .solve import _check_options

    return _check_options("highspy", "ir", None, 1e-9, 1e-9, 1, True, True, 0, 0)


def _run(lf: LinearForm):
    """Solve a LinearForm with the same highspy path (and ambiguity resolution) as :func:`solve`."""
    from .solve import _run_highspy, _solve_lf

    out, _ = _solve_lf(lf, _run_highspy, _opts())
    return out


def _subset(lf: LinearForm, keep: set[int], *, feasibility: bool = False) -> LinearForm:
    """The rows of the IR constraints in ``keep``; column bounds and domains always stay."""
    mask = np.isin(lf.row_origin, np.fromiter(keep, dtype=np.int64, count=len(keep)))
    sub = dataclasses.replace(lf, A=lf.A[mask], row_lb=lf.row_lb[mask], row_ub=lf.row_ub[mask],
                              row_origin=lf.row_origin[mask])
    if feasibility:
        # a zero objective cannot be unbounded, so HiGHS answers feasible or infeasible outright
        sub = dataclasses.replace(sub, c=np.zeros_like(lf.c), c0=0.0)
    return sub


def _is_infeasible(lf: LinearForm, keep: set[int]) -> bool:
    """True only when HiGHS proves the subset infeasible; an inconclusive answer counts as feasible, so the
    deletion filter never drops a constraint it is unsure about."""
    return _run(_subset(lf, keep, feasibility=True)).status == Status.INFEASIBLE


def irreducible_infeasible_subset(model: MILPModel, integrality: str = "ir", *, lf: LinearForm | None = None):
    """An irreducible infeasible subset of ``model``'s constraint indices by the deletion filter, or None if the
    model is feasible.

    Each constraint (in index order) is dropped in turn and stays dropped if the rest is still infeasible;
    variable bounds and domains are always present. An empty list means the bounds and domains alone are
    infeasible. Constraints that compile to no row are never part of the subset.
    """
    if lf is None:
        lf = to_linear_form(model, integrality=integrality)
    keep = {int(i) for i in np.unique(lf.row_origin)}
    if not _is_infeasible(lf, keep):
        return None
    for ci in sorted(keep):
        trial = keep - {ci}
        if _is_infeasible(lf, trial):
            keep = trial
    return sorted(keep)


# ------------------------------------------------------------------------------------------------ helpers
def _constraint_rows(lf: LinearForm) -> dict[int, list[int]]:
    rows: dict[int, list[int]] = {}
    for r, ci in enumerate(lf.row_origin):
        rows.setdefault(int(ci), []).append(r)
    return rows


def _row(lf: LinearForm, r: int) -> tuple[np.ndarray, np.ndarray]:
    a = lf.A
    lo, hi = a.indptr[r], a.indptr[r + 1]
    return a.indices[lo:hi], a.data[lo:hi]


def _vars_of(lf: LinearForm, constraints) -> list[str]:
    rows = _constraint_rows(lf)
    cols: set[int] = set()
    for ci in constraints:
        for r in rows.get(ci, []):
            idx, val = _row(lf, r)
            cols.update(int(j) for j, v in zip(idx, val) if v != 0.0 and j < lf.n_ir)
    return [lf.names[j] for j in sorted(cols)]


def _fmt_list(items) -> str:
    return ", ".join(str(i) for i in items)


def _sig(v: float) -> float:
    return float(f"{v:.10g}") + 0.0  # + 0.0: no negative zero in keys


def _normalised_row(idx, val, lb, ub) -> tuple:
    """A row scaled to max|a| = 1 with its first coefficient positive (a >= b and -a <= -b coincide)."""
    if len(idx) == 0:
        return ((), _sig(lb) if math.isfinite(lb) else -math.inf, _sig(ub) if math.isfinite(ub) else math.inf)
    order = np.argsort(idx)
    idx, val = idx[order], val[order]
    s = float(np.max(np.abs(val)))
    if val[0] < 0:
        s = -s
    coefs = tuple((int(j), _sig(v / s)) for j, v in zip(idx, val))
    lo, hi = lb / s, ub / s
    if s < 0:
        lo, hi = hi, lo
    return (coefs, _sig(lo) if math.isfinite(lo) else -math.inf, _sig(hi) if math.isfinite(hi) else math.inf)


def _limit(con, ci) -> float | None:
    if getattr(con, "limit", None) is None:
        return None
    try:
        return to_number(con.limit, f"constraints[{ci}].limit")
    except InvalidProblemError:  # pragma: no cover - a validated model has parsable numbers
        return None


# ------------------------------------------------------------------------------------------- ratio base hook
_WORD_RE = re.compile(r"[a-z0-9]+")
_SHARE_OF_RE = re.compile(
    r"(?:%|\bpercent|\bper cent|\bfraction|\bshare|\bproportion|\bportion|\bhalf|\bthirds?|\bquarters?|"
    r"\bfourths?|\bfifths?|\btenths?)\s+of\s+(.*)")
_BASE_STOP = frozenset(
    "the a an all its their his her our total overall entire whole combined of and or each per every any "
    "unit units number amount".split())
_TOTAL_WORDS = frozenset("total overall entire whole combined all".split())


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and re.search(r"(s|x|ch|sh)es$", word):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD_RE.findall(text.lower()) if w not in _BASE_STOP}


def guess_ratio_base(model: MILPModel, index: int) -> list[str] | None:
    """The sub-total a ratio constraint's text seems to name, or None when its share is of all variables.

    Rule (kept simple on purpose): for ``constraints[index]`` of type ``ratio`` with ``base=None``, a ``text``
    and more than two variables, read the phrase after "<share> of" (``%``, percent, fraction, half, third, ...;
    at most three content words, determiners and "total"/"all" ignored). Variables whose name or a mention
    shares a stemmed word with that phrase, plus the ratio's own variable, are the guessed base; it is returned
    only when it is a proper subset of the variables. Formulators can call this to fill ``base``;
    :func:`diagnose` reports ``ratio_base_guess`` where it returns a list.
    """
    con = model.constraints[index]
    if con.type != "ratio" or con.base is not None or len(model.variables) <= 2 or not con.text:
        return None
    m = _SHARE_OF_RE.search(con.text.lower())
    if not m:
        return None
    phrase_words = [w for w in _WORD_RE.findall(m.group(1)) if w not in _BASE_STOP][:3]
    phrase = {_stem(w) for w in phrase_words}
    if not phrase:
        return None
    own = model.variables[model.resolve(con.var, f"constraints[{index}].var")].name
    matched = []
    for v in model.variables:
        words: set[str] = _content_words(v.name)
        for mention in v.mentions:
            words |= _content_words(mention)
        if v.name == own or words & phrase:
            matched.append(v.name)
    if len(matched) <= 1 or len(matched) == len(model.variables):
        return None
    return matched


# --------------------------------------------------------------------------------------------------- checks
_CAPACITY_RE = re.compile(
    r"\b(availab\w*|budget\w*|capacit\w*|supply|supplies|stock|inventory|resources?|has|have|up to|at most|"
    r"no more than|maximum|limit\w*)\b")


def _structural(model: MILPModel, lf: LinearForm) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    n_ir = lf.n_ir
    names = lf.names
    csc = lf.A.tocsc()
    col_nnz = np.diff(csc.indptr)[:n_ir] if lf.m else np.zeros(n_ir, dtype=np.int64)
    c = np.asarray(lf.c[:n_ir], dtype=np.float64)

    if not np.any(np.abs(c) > 0.0):
        out.append(Diagnostic(
            "zero_objective", "error",
            "the objective has no nonzero coefficient: every feasible point is optimal (missing objective terms?)",
            [], [v.name for v in model.variables]))
    for j in range(n_ir):
        if col_nnz[j] == 0 and c[j] == 0.0:
            out.append(Diagnostic(
                "unused_variable", "error",
                f"variable {names[j]!r} appears in no constraint and has a zero objective coefficient",
                [], [names[j]]))

    rows = _constraint_rows(lf)
    groups: dict[tuple, list[int]] = {}
    for ci in sorted(rows):
        key = tuple(sorted(_normalised_row(*_row(lf, r), float(lf.row_lb[r]), float(lf.row_ub[r]))
                           for r in rows[ci]))
        groups.setdefault(key, []).append(ci)
    for members in groups.values():
        if len(members) > 1:
            out.append(Diagnostic(
                "duplicate_constraint", "warning",
                f"constraints {_fmt_list(members)} are the same row after normalisation (a statement read twice?)",
                members, _vars_of(lf, members[:1])))

    for ci, con in enumerate(model.constraints):
        if con.type == "ratio":
            base = guess_ratio_base(model, ci)
            if base is not None:
                out.append(Diagnostic(
                    "ratio_base_guess", "warning",
                    f"constraints[{ci}]: the share is taken of all variables, but the text {con.text!r} seems to "
                    f"name a sub-total; set base (guess: {base})", [ci], base))
        if con.type in ("sum", "upperbound", "linear") and con.operator == "LESS_OR_EQUAL":
            b = _limit(con, ci)
            cue = f"{con.direction or ''} {con.text or ''}".lower()
            if b is not None and b < 0 and _CAPACITY_RE.search(cue):
                out.append(Diagnostic(
                    "negative_capacity_rhs", "warning",
                    f"constraints[{ci}]: an availability/budget/capacity limit of {b:g} < 0 (sign lost or "
                    "a cost read as a limit?)", [ci], _vars_of(lf, [ci])))

    template = [ci for ci, con in enumerate(model.constraints) if con.type in TEMPLATE_TYPES]
    largest = None  # (|a|, constraint, column) at the extremes
    smallest = None
    for ci in template:
        for r in rows.get(ci, []):
            idx, val = _row(lf, r)
            for j, a in zip(idx, val):
                a = abs(float(a))
                if a == 0.0:
                    continue
                if largest is None or a > largest[0]:
                    largest = (a, ci, int(j))
                if smallest is None or a < smallest[0]:
                    smallest = (a, ci, int(j))
    if largest is not None and largest[0] / smallest[0] > COEFFICIENT_RANGE_LIMIT:
        cons = sorted({largest[1], smallest[1]})
        out.append(Diagnostic(
            "coefficient_range", "warning",
            f"coefficients range from {smallest[0]:.3g} ({names[smallest[2]]!r} in constraint {smallest[1]}) to "
            f"{largest[0]:.3g} ({names[largest[2]]!r} in constraint {largest[1]}): ratio {largest[0] / smallest[0]:.3g} > "
            f"{COEFFICIENT_RANGE_LIMIT:g} (a unit mismatch?)",
            cons, sorted({names[largest[2]], names[smallest[2]]}, key=names.index)))
    return out


def _infeasible(model: MILPModel, lf: LinearForm) -> list[Diagnostic]:
    iis = irreducible_infeasible_subset(model, lf=lf)
    if iis is None:
        return []
    if not iis:
        bad = [v.name for v in model.variables]
        return [Diagnostic("infeasible", "error",
                           "the variable bounds and domains alone are infeasible", [], bad)]
    # an LP-feasible subset is infeasible only because of integrality: say so, it changes the fix
    relaxed = _subset(lf.relaxed(), set(iis), feasibility=True)
    by_integrality = bool(np.any(lf.integrality)) and _run(relaxed).status == Status.CONVERGED
    what = "; it is feasible without integrality, so the integer domains cause it" if by_integrality else ""
    variables = _vars_of(lf, iis)
    if len(iis) == 1:
        ci = iis[0]
        alone = "it has no variable terms" if not variables else "within the variable bounds"
        msg = f"infeasible: constraint {ci} ({model.constraints[ci].type}) cannot hold on its own ({alone}){what}"
    else:
        kinds = [f"{ci} ({model.constraints[ci].type})" for ci in iis]
        msg = (f"infeasible: constraints {_fmt_list(kinds)} cannot hold together (irreducible: dropping any one "
               f"of them, with the variable bounds kept, makes the rest feasible){what}")
    return [Diagnostic("infeasible", "error", msg, list(iis), variables)]


def _unbounded(model: MILPModel, lf: LinearForm) -> list[Diagnostic]:
    finite = [abs(float(b)) for b in np.concatenate([lf.row_lb, lf.row_ub]) if math.isfinite(b)]
    box = 1e6 * (1.0 + max(finite, default=0.0))
    col_lb = lf.col_lb.copy()
    col_ub = lf.col_ub.copy()
    free_lo = ~np.isfinite(col_lb[:lf.n_ir])
    free_hi = ~np.isfinite(col_ub[:lf.n_ir])
    col_lb[:lf.n_ir][free_lo] = -box
    col_ub[:lf.n_ir][free_hi] = box
    boxed = dataclasses.replace(lf.relaxed(), col_lb=col_lb, col_ub=col_ub)
    out = _run(boxed)
    at_box: list[str] = []
    if out.x is not None:
        x = out.x[:lf.n_ir]
        hit = (free_hi & (x >= box * (1 - 1e-7))) | (free_lo & (x <= -box * (1 - 1e-7)))
        at_box = [lf.names[j] for j in np.flatnonzero(hit)]
    rows = _constraint_rows(lf)
    involved = sorted(ci for ci in rows if set(_vars_of(lf, [ci])) & set(at_box))
    if at_box:
        msg = (f"unbounded: {_fmt_list(repr(v) for v in at_box)} reach the box |x| <= {box:.3g} in the LP "
               f"relaxation; no constraint limits them in the improving direction (a missing capacity row or a "
               f"flipped operator?)")
        if involved:
            msg += f"; constraints involving them: {_fmt_list(involved)}"
    else:
        msg = "unbounded: the objective can improve without limit (no variable reached the LP box)"
    return [Diagnostic("unbounded", "error", msg, involved, at_box)]


def _trivial(model: MILPModel, lf: LinearForm, solution) -> list[Diagnostic]:
    if lf.sense != "minimize" or solution.status != Status.CONVERGED or solution.x is None:
        return []
    x = np.asarray(solution.x, dtype=np.float64)
    if x.size == 0 or np.any(np.abs(x) > _ZERO_TOL) or not np.any(lf.c[:lf.n_ir] != 0.0):
        return []
    cons = sorted(_constraint_rows(lf))
    return [Diagnostic(
        "trivial_solution", "error",
        "x = 0 is optimal when minimising: every constraint already holds with nothing produced or bought, so a "
        "requirement (>= row) is missing or has the wrong direction", cons, [v.name for v in model.variables])]


def _integrality(model: MILPModel, lf: LinearForm, solution, lp_solution) -> list[Diagnostic]:
    if solution.status != Status.CONVERGED or solution.fun is None or not np.any(lf.integrality[:lf.n_ir]):
        return []
    integer_cols = np.flatnonzero(lf.integrality)
    marked = [int(j) for j in integer_cols if j < lf.n_ir and model.variables[j].domain_source == "inferred"]
    lp_fun = lp_x = None
    if marked and len(marked) < len(integer_cols):
        # stated binaries and auxiliaries keep their integrality: only the inferred domains are on trial, and a
        # full LP relaxation would blame them for the gap of every indicator
        integ = lf.integrality.copy()
        integ[marked] = 0
        out = _run(dataclasses.replace(lf, integrality=integ))
        if out.status == Status.CONVERGED and out.x is not None:
            lp_fun, lp_x = lf.objective(out.x), out.x[:lf.n_ir]
        suspects = marked
        what = "relaxing the inferred domains gives"
    else:
        if lp_solution is not None:
            if lp_solution.status == Status.CONVERGED:
                lp_fun, lp_x = lp_solution.fun, lp_solution.x
        elif solution.lp_fun is not None and solution.lp_status == Status.CONVERGED:
            lp_fun, lp_x = solution.lp_fun, solution.lp_x
        else:
            from .solve import solve

            lp = solve(model, integrality="continuous")
            if lp.status == Status.CONVERGED:
                lp_fun, lp_x = lp.fun, lp.x
        suspects = [int(j) for j in integer_cols if j < lf.n_ir]
        what = "the LP optimum is"
    if lp_fun is None or abs(lp_fun - solution.fun) <= _REL_TOL * max(1.0, abs(solution.fun)):
        return []
    names = [lf.names[j] for j in suspects]
    if lp_x is not None:
        lp_x = np.asarray(lp_x, dtype=np.float64)
        frac = [lf.names[j] for j in suspects if abs(lp_x[j] - round(lp_x[j])) > _REL_TOL]
        names = frac or names
    return [Diagnostic(
        "integrality_sensitive", "info",
        f"{what} {lp_fun:.10g}, the integer optimum is {solution.fun:.10g}: the inferred integrality of "
        f"{_fmt_list(repr(v) for v in names)} changes the answer; check those domains",
        [], names)]


# --------------------------------------------------------------------------------------------------- public
def diagnose(model: MILPModel, *, solution=None, integrality: str = "ir", inferred: bool = False,
             lp_solution=None) -> list[Diagnostic]:
    """Self-check ``model`` (spec milp 3.7) and return its diagnostics, errors first.

    Parameters
    ----------
    model : a validated :class:`~optkit.milp.ir.MILPModel`; never modified.
    solution : the :class:`~optkit.milp.solve.MILPResult` of ``solve(model, integrality=integrality)``;
        solved here when None.
    integrality : the policy ``solution`` was solved under (``"both"`` reads as ``"ir"``).
    inferred : True when some domain was inferred rather than stated; only then is ``integrality_sensitive``
        checked. When the IR marks some integer variables ``domain_source="inferred"`` and other columns are
        integer too (stated binaries, auxiliaries), only the marked ones are relaxed (one more solve); otherwise
        the LP optimum is compared (``lp_solution``, else ``solution.lp_fun``, else one more solve).
    lp_solution : optional ``MILPResult`` of ``solve(model, integrality="continuous")``.

    Returns
    -------
    list of :class:`Diagnostic`, sorted by severity (error, warning, info), then in discovery order. A model that
    does not compile (e.g. no big-M can be derived) gives a single ``invalid_model`` error.
    """
    if not isinstance(model, MILPModel):
        raise TypeError(f"model: expected a MILPModel, got {type(model).__name__}")
    policy = "ir" if integrality == "both" else integrality
    try:
        lf = to_linear_form(model, integrality=policy)
    except InvalidProblemError as exc:
        return [Diagnostic("invalid_model", "error", str(exc))]
    if solution is None:
        from .solve import solve

        solution = solve(model, integrality=integrality)

    diags = [Diagnostic(d.get("code", ""), d.get("severity", "warning"), d.get("message", ""),
                        list(d.get("constraints", [])), _vars_of(lf, d.get("constraints", [])))
             for d in lf.diagnostics]
    diags += _structural(model, lf)

    status = solution.status
    if status in (Status.INFEASIBLE, Status.INFEASIBLE_OR_UNBOUNDED):
        found = _infeasible(model, lf)
        diags += found
        if not found and status == Status.INFEASIBLE_OR_UNBOUNDED:
            diags += _unbounded(model, lf)
    elif status == Status.UNBOUNDED:
        diags += _unbounded(model, lf)
    diags += _trivial(model, lf, solution)
    if inferred:
        diags += _integrality(model, lf, solution, lp_solution)
    rank = {"error": 0, "warning": 1, "info": 2}
    return sorted(diags, key=lambda d: rank.get(d.severity, 3))


def self_check_summary(diags) -> str:
    """One line per diagnostic: ``severity code [constraints ...; variables ...]: message``; "no diagnostics"
    when the list is empty."""
    if not diags:
        return "no diagnostics"
    lines = []
    for d in diags:
        where = []
        if d.constraints:
            where.append("constraints " + _fmt_list(d.constraints))
        if getattr(d, "variables", None):
            where.append("variables " + _fmt_list(d.variables))
        loc = f" [{'; '.join(where)}]" if where else ""
        lines.append(f"{d.severity} {d.code}{loc}: {d.message}")
    return "\n".join(lines)
