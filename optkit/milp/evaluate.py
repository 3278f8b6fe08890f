"""``evaluate``: declaration and execution accuracy of a formulator on NL4Opt records (spec milp 3.8).

Dev references are the gold declarations solved under the same integrality policy (fidelity to gold).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._errors import InvalidProblemError
from .._result import Status

__all__ = ["evaluate", "wilson_interval", "matches"]

_POLICIES = ("all-integer", "continuous", "ir")
_TOLERANCES = ("strict", "loose")
_STATUS_REFS = {Status.INFEASIBLE: "infeasible", Status.UNBOUNDED: "unbounded",
                Status.INFEASIBLE_OR_UNBOUNDED: "infeasible_or_unbounded"}


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95% by default); (nan, nan) for n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def matches(pred_status, pred_fun, ref, tolerance: str) -> bool:
    """Spec 3.8: numeric references match only CONVERGED within the tolerance; status references by status."""
    if isinstance(ref, str):
        return _STATUS_REFS.get(Status(pred_status)) == ref
    if Status(pred_status) != Status.CONVERGED or pred_fun is None or not np.isfinite(pred_fun):
        return False
    d = abs(float(pred_fun) - float(ref))
    if tolerance == "strict":
        return d <= 1e-6 * max(1.0, abs(ref))
    return d <= 0.011 or d <= 1e-4 * abs(ref)


def _reference(rec, policy):
    from .ir import MILPModel
    from .solve import solve

    try:
        sol = solve(MILPModel.from_nl4opt(rec), integrality=policy)
    except Exception as exc:  # noqa: BLE001 - an unusable gold record is excluded and counted
        return None, f"gold error: {exc}"
    if sol.status == Status.CONVERGED and sol.fun is not None and np.isfinite(sol.fun):
        return float(sol.fun), None
    if sol.status in _STATUS_REFS:
        return _STATUS_REFS[sol.status], None
    return None, f"gold status {sol.status.name}"


def evaluate(records, *, formulator="rules", entities="gold", integrality=("all-integer",),
             tolerance=("loose", "strict")) -> dict:
    """Evaluate ``formulator`` on NL4Opt ``records`` (as from :func:`load_nl4opt_generation`).

    ``formulator``: ``"rules"`` (with ``entities`` ``"gold"``, ``"gold-spans"`` or ``"tagger"``) or ``"gold"``
    (the gold declarations: the ceiling). Returns a dict with ``declaration`` (``faithful``/``fixed``
    :func:`nl4opt_score` summaries), ``execution[policy][tolerance]`` (``n``, ``n_correct``, ``accuracy``,
    ``wilson95``, ``n_excluded``, ``by_status``), ``time`` (per-problem formulate+solve seconds: mean, median,
    p90, max) and ``records`` (one dict per problem).
    """
    from .formulate import formulate
    from .scoring import nl4opt_score

    if formulator not in ("rules", "gold"):
        raise InvalidProblemError(f"formulator: expected 'rules' or 'gold', got {formulator!r}")
    if isinstance(integrality, str):
        integrality = (integrality,)
    if isinstance(tolerance, str):
        tolerance = (tolerance,)
    for p in integrality:
        if p not in _POLICIES:
            raise InvalidProblemError(f"integrality: expected policies from {_POLICIES}, got {p!r}")
    for t in tolerance:
        if t not in _TOLERANCES:
            raise InvalidProblemError(f"tolerance: expected values from {_TOLERANCES}, got {t!r}")
    records = list(records)
    preds, per = [], []
    times = []
    for i, rec in enumerate(records):
        row = {"id": rec.get("id", i), "error": None, "exec": {}}
        model = None
        for pi, policy in enumerate(integrality):
            ref, why = _reference(rec, policy)
            t0 = time.perf_counter()
            status, fun = Status.ERROR, None
            try:
                if formulator == "gold":
                    from .ir import MILPModel
                    from .solve import solve

                    model = MILPModel.from_nl4opt(rec)
                    sol = solve(model, integrality=policy)
                    status, fun = sol.status, sol.fun
                else:
                    r = formulate(rec, entities=entities, integrality=policy)
                    model, status, fun = r.model, r.status, r.fun
            except Exception as exc:  # noqa: BLE001 - a failure is a wrong answer, recorded
                row["error"] = f"{type(exc).__name__}: {exc}"
            if pi == 0:
                times.append(time.perf_counter() - t0)
            row["exec"][policy] = {"ref": ref, "excluded": why, "status": Status(status).name,
                                   "fun": None if fun is None else float(fun),
                                   **{t: (None if ref is None else matches(status, fun, ref, t)) for t in tolerance}}
        pred = {}
        if model is not None:
            try:
                pred = model.to_nl4opt()
            except Exception as exc:  # noqa: BLE001
                row["error"] = row["error"] or f"to_nl4opt: {exc}"
        preds.append(pred)
        per.append(row)

    decl = {}
    for mode in ("faithful", "fixed"):
        s = nl4opt_score(preds, records, mode=mode)
        decl[mode] = {k: v for k, v in s.items() if k != "per_doc"}
    execution: dict = {}
    for policy in integrality:
        execution[policy] = {}
        for t in tolerance:
            vals = [r["exec"][policy][t] for r in per]
            n = sum(v is not None for v in vals)
            k = sum(v is True for v in vals)
            by_status: dict = {}
            for r in per:
                e = r["exec"][policy]
                if e[t] is None:
                    continue
                b = by_status.setdefault(e["status"], [0, 0])
                b[0] += 1
                b[1] += bool(e[t])
            execution[policy][t] = {"n": n, "n_correct": k, "accuracy": k / n if n else math.nan,
                                    "wilson95": wilson_interval(k, n), "n_excluded": len(vals) - n,
                                    "by_status": {s: {"n": a, "correct": c} for s, (a, c) in by_status.items()}}
    ta = np.asarray(times) if times else np.zeros(1)
    return {"formulator": formulator, "entities": entities, "n_docs": len(records), "declaration": decl,
            "execution": execution,
            "time": {"mean": float(ta.mean()), "median": float(np.median(ta)), "p90": float(np.quantile(ta, 0.9)),
                     "max": float(ta.max())},
            "n_errors": sum(r["error"] is not None for r in per), "records": per}
