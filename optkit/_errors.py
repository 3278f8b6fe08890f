"""Exception hierarchy shared by every optkit module.

Invalid input raises (before any work is done); what a solver *finds* (infeasible, no convergence,
NaN met) is a status in the result, never an exception -- except when the caller asks for one with
``Result.raise_for_status()``.
"""

from __future__ import annotations

__all__ = [
    "OptkitError",
    "InvalidProblemError",
    "BackendError",
    "DependencyError",
    "ConvergenceError",
    "LLMError",
]


class OptkitError(Exception):
    """Base class of every error raised by optkit."""


class InvalidProblemError(OptkitError, ValueError):
    """The problem data are invalid (shape, finiteness, sign, mass, option range...)."""


class BackendError(OptkitError, TypeError):
    """Arrays disagree on backend, device or dtype, or a dtype is not supported."""


class DependencyError(OptkitError, ImportError):
    """An optional dependency is missing; the message names the pip extra that installs it."""

    def __init__(self, package: str, extra: str | None, feature: str | None = None):
        self.package = package
        self.extra = extra
        what = f" for {feature}" if feature else ""
        how = (f"install it with `pip install 'optkit[{extra}]'`" if extra
               else "it is a core dependency of optkit: reinstall with `pip install optkit`")
        super().__init__(f"{package} is required{what} but is not installed; {how}")


class ConvergenceError(OptkitError, RuntimeError):
    """Raised by ``Result.raise_for_status()`` when a solve did not succeed."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class LLMError(OptkitError, RuntimeError):
    """Transport or protocol failure of an LLM backend."""
