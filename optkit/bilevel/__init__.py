"""Bilevel optimization with coupled lower-level constraints (spec bilevel).

``optkit.bilevel.solve(problem, method="barrier" | "lvhba" | "kkt")`` on a :class:`BilevelProblem`;
projections onto coupled sets in :mod:`optkit.bilevel.sets`, instances in
:mod:`optkit.bilevel.problems`, the torch layer in :mod:`optkit.bilevel.layers`.
"""

from . import _register  # noqa: F401  (registers the solvers for the contract tests)
from ._result import BatchedBilevelResult, BilevelResult
from ._solve import METHODS, solve
from .barrier import BarrierOptions, BarrierSolver, BarrierState
from .lvhba import LVHBAOptions, LVHBASolver, LVHBAState
from .problem import BilevelProblem, Box, LowerLP, LowerQP

__all__ = ["solve", "METHODS", "BilevelProblem", "LowerQP", "LowerLP", "Box", "BilevelResult",
           "BatchedBilevelResult", "BarrierSolver", "BarrierState", "BarrierOptions", "LVHBASolver", "LVHBAState",
           "LVHBAOptions"]
