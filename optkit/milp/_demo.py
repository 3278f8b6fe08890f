"""`optkit demo` tour of optkit.milp (about a second): a word problem formulated offline, then LP vs MILP."""

from __future__ import annotations

import textwrap
import time

import numpy as np

TEXT = ("A bakery makes cakes and pies. Each cake needs 2 hours of oven time and each pie needs 1 hour of oven "
        "time. The bakery has 40 hours of oven time available. Each cake uses 3 kg of flour and each pie uses 2 kg "
        "of flour, and 70 kg of flour are available. The profit per cake is $5 and the profit per pie is $3. How "
        "many cakes and pies should the bakery make to maximize profit?")


def _num(v: float) -> str:
    return f"{v:.6g}"


def _rows(model) -> list[str]:
    """The compiled rows of ``model`` in algebraic form (objective first)."""
    from .build import to_linear_form

    lf = to_linear_form(model, integrality="ir")
    names = [n.replace(" ", "_") for n in lf.names]

    def expr(coefs):
        parts = [f"{'-' if a < 0 else '+'} {_num(abs(a))} {names[j]}" for j, a in enumerate(coefs) if a != 0.0]
        text = " ".join(parts) or "0"
        return text[2:] if text.startswith("+ ") else text

    out = [f"{'max' if lf.sense == 'maximize' else 'min'}  {expr(lf.c)}"]
    A = lf.A.toarray()
    for i in range(lf.m):
        lo, hi = lf.row_lb[i], lf.row_ub[i]
        if lo == hi:
            rel = f"= {_num(hi)}"
        elif np.isfinite(hi) and not np.isfinite(lo):
            rel = f"<= {_num(hi)}"
        elif np.isfinite(lo) and not np.isfinite(hi):
            rel = f">= {_num(lo)}"
        else:
            rel = f"in [{_num(lo)}, {_num(hi)}]"
        out.append(f"s.t. {expr(A[i])} {rel}   (IR constraint {int(lf.row_origin[i])})")
    doms = ", ".join(f"{v.name}: {v.domain} ({v.domain_source})" for v in model.variables)
    out.append(f"     {doms}; all >= 0")
    return out


def run():
    from optkit import InvalidProblemError
    from optkit.milp import formulate, solve
    from optkit.milp.cases import CASES

    print("Word problem (offline: tokenizer -> CRF tagger -> grouping -> rules -> HiGHS):")
    print(textwrap.fill(TEXT, width=110, initial_indent="  ", subsequent_indent="  "))
    t0 = time.perf_counter()
    try:
        res = formulate(TEXT)
    except InvalidProblemError as exc:  # the offline tagger found no usable entities
        res, msg = None, str(exc)
    dt = time.perf_counter() - t0
    if res is None or res.model is None:
        print(f"  no valid IR: {msg if res is None else res.message}")
    else:
        print(f"IR: {len(res.model.variables)} variables, {len(res.model.constraints)} constraints "
              f"({', '.join(c.type for c in res.model.constraints)})")
        for line in _rows(res.model):
            print("  " + line)
        if res.solution is not None and res.fun is not None:
            vals = ", ".join(f"{k} = {v:g}" for k, v in res.solution.values.items())
            print(f"  {res.status.name}: profit {res.fun:g} at {vals}  ({1e3 * dt:.0f} ms incl. tagging)")
        else:
            print(f"  {res.status.name}: {res.message}")

    case = CASES["ducks"]
    print(f"\nSpec section-6 case 'ducks': {case.note}")
    model = case.as_model()
    print(f"{'policy':>12} {'status':>10} {'fun':>8} {'b':>6} {'c':>6} {'ms':>6}")
    for policy in ("continuous", case.milp_policy):
        t0 = time.perf_counter()
        r = solve(model, integrality=policy)
        dt = time.perf_counter() - t0
        print(f"{policy:>12} {r.status.name:>10} {r.fun:8.6g} {r.x[0]:6.4g} {r.x[1]:6.4g} {1e3 * dt:6.2f}")
    print(f"(spec: LP {case.lp:g} at (12, 22.5); MILP {case.milp:g} at (12, 23): integrality is part of the answer)")
