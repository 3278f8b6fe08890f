"""Registry of solvers, used by the contract tests and the benchmarks.

Each module registers its public solvers at import time with :func:`register`. An entry declares
its capabilities (DESIGN.md §7) and knows how to build a small valid case and invalid cases, so
``tests/test_contract.py`` checks every registered solver without new test code.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["Case", "SolverEntry", "register", "get", "entries", "load_all", "CAPABILITIES"]

#: capabilities an entry may declare
CAPABILITIES = frozenset({"iterative", "callback", "torch", "batched", "time_limit"})


@dataclasses.dataclass
class Case:
    """Arguments of one call: ``entry.solve(*args, **kwargs)``."""

    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    #: for invalid cases, the exception type the call must raise
    raises: type | None = None


@dataclasses.dataclass(frozen=True)
class SolverEntry:
    """A registered solver.

    Parameters
    ----------
    name : str
        ``"<module>.<method>"``, e.g. ``"ot.sparse_ot"``.
    solve : callable
        The public function; returns a :class:`~optkit.Result` (or subclass).
    make_case : callable(backend: str, seed: int) -> Case
        A small valid problem. ``backend`` is ``"numpy"`` or ``"torch"`` (torch only when declared).
    invalid_cases : callable(backend: str) -> dict[str, Case]
        Invalid inputs; must include ``"nan"`` and ``"shape"``, each with the error type to raise.
    capabilities : frozenset
        Subset of :data:`CAPABILITIES`.
    fields : tuple of str
        Result attributes the docs promise (checked to exist).
    """

    name: str
    solve: Callable[..., Any]
    make_case: Callable[[str, int], Case]
    invalid_cases: Callable[[str], dict]
    capabilities: frozenset = frozenset()
    fields: tuple = ()

    def __post_init__(self):
        unknown = set(self.capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(f"capabilities: unknown {sorted(unknown)}; valid: {sorted(CAPABILITIES)}")

    def has(self, capability: str) -> bool:
        return capability in self.capabilities


_REGISTRY: dict[str, SolverEntry] = {}


def register(entry: SolverEntry) -> SolverEntry:
    """Add (or replace, for reloads) a solver entry."""
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> SolverEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no solver registered as {name!r}; registered: {sorted(_REGISTRY)}") from None


def load_all() -> None:
    """Import every algorithm module so that its solvers register."""
    from . import MODULES

    for mod in MODULES:
        importlib.import_module(f"optkit.{mod}")


def entries() -> list[SolverEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
