"""optkit: published optimization methods with NumPy/SciPy and torch (GPU) paths.

Submodules load on first access (PEP 562), so ``import optkit`` stays light: it imports none of
torch, cvxpy, pyomo or highspy.
"""

from __future__ import annotations

import importlib

from ._errors import (
    BackendError,
    ConvergenceError,
    DependencyError,
    InvalidProblemError,
    LLMError,
    OptkitError,
)
from ._result import BatchedResult, Result, Status

__version__ = "0.1.0"

#: algorithm modules that exist in this release (the CLI and the registry iterate over them)
MODULES = ("ot", "nlp", "bilevel", "mimo", "milp")
_SUBMODULES = set(MODULES) | {"autodiff", "linalg", "bench", "callbacks", "cli", "registry"}

__all__ = [
    "__version__", "Status", "Result", "BatchedResult", "OptkitError", "InvalidProblemError",
    "BackendError", "DependencyError", "ConvergenceError", "LLMError", *sorted(_SUBMODULES),
]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'optkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)
