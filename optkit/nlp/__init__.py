"""Equality-constrained nonlinear programming (Hong, Na, Mahoney & Kolar, ICML 2023).

``solve(problem)`` runs Newton's method on ``min f(x) s.t. c(x) = 0`` with the KKT system solved
by randomized sketch-and-project and an Armijo search on the exact augmented Lagrangian. Problems
are :class:`Problem` objects (numpy callables, QPs, or torch functions); ``optkit.nlp.problems``
holds the HS/BT/NE collection, the PDE QP family, constrained logistic regression and the S2MPJ /
pycutest adapters; ``optkit.nlp.baselines`` wraps IPOPT and SciPy; ``optkit.nlp.layers`` the
differentiable layer.
"""

from . import _register  # noqa: F401  (registers the solver for the contract tests)
from ._result import BatchedNLPResult, NLPResult
from .al_newton import (
    METHODS,
    ALNewtonOptions,
    ALNewtonState,
    SketchedALNewton,
    sketched_al_newton,
    solve,
)
from .problem import Problem, check_problem

__all__ = ["Problem", "check_problem", "solve", "sketched_al_newton", "SketchedALNewton",
           "ALNewtonOptions", "ALNewtonState", "NLPResult", "BatchedNLPResult", "METHODS",
           "problems", "baselines", "layers"]


def __getattr__(name):
    if name in ("problems", "baselines", "layers"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'optkit.nlp' has no attribute {name!r}")
