"""Registry entries of optkit.milp (contract tests, benchmarks).

``milp.solve`` (highspy ``passModel``) and ``milp.solve-pyomo`` (Pyomo + ``appsi_highs``) solve a section-6
validation case picked by the seed. Neither is iterative in the registry's sense (HiGHS runs to the end; no
per-iteration callback) and neither takes ``tol``/``max_iter``, so only the base contracts apply; ``time_limit`` is
a HiGHS option, but the time-limit contract passes ``tol`` too, which a MILP solve does not accept, so it is not
declared. Importing this module imports neither highspy, pyomo nor torch (solving imports them lazily).
"""

from __future__ import annotations

import functools

from .._errors import InvalidProblemError
from ..registry import Case, SolverEntry, register
from .cases import CASES, case_dict
from .solve import solve

#: cases with an optimum (the contract cases must solve to CONVERGED)
_SOLVABLE = [name for name, c in CASES.items() if not isinstance(c.milp, str)]

FIELDS = ("raw_status", "values", "mip_gap", "dual_bound", "integrality_violation", "integrality", "lp_fun",
          "lp_x", "lp_status")


def _case(backend: str, seed: int) -> Case:
    name = _SOLVABLE[seed % len(_SOLVABLE)]
    return Case((case_dict(name),), {"integrality": CASES[name].milp_policy})


def _invalid(backend: str) -> dict:
    nan = case_dict("ducks")
    nan["objective"]["terms"]["b"] = float("nan")
    shape = case_dict("ducks")  # a row over a variable the model does not have
    shape["constraints"].append(dict(type="linear", terms={"b": 1, "z": 2}, limit=5, operator="LESS_OR_EQUAL"))
    empty = case_dict("ducks")
    empty["variables"] = []
    return {"nan": Case((nan,), {}, raises=InvalidProblemError),
            "shape": Case((shape,), {}, raises=InvalidProblemError),
            "no_variables": Case((empty,), {}, raises=InvalidProblemError),
            "integrality": Case((case_dict("ducks"),), {"integrality": "integer"}, raises=ValueError)}


for _name, _method in (("milp.solve", "highspy"), ("milp.solve-pyomo", "pyomo")):
    register(SolverEntry(name=_name, solve=functools.partial(solve, method=_method), make_case=_case,
                         invalid_cases=_invalid, capabilities=frozenset(), fields=FIELDS))
