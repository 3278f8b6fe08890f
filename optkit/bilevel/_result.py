"""Result of every bilevel solver (barrier, LV-HBA, kkt)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .._result import BatchedResult, Result

__all__ = ["BilevelResult", "BatchedBilevelResult"]


@dataclasses.dataclass(repr=False)
class BilevelResult(Result):
    """Outcome of ``min_x F(x, y*(x))``.

    Besides the fields of :class:`optkit.Result` (``fun = F(x, y)`` at the method's iterate,
    ``kkt_residual = ||x - P_X(x - hypergrad)||``, ``constraint_violation = max(0, max_i g_i(x, y))``):

    Attributes
    ----------
    y : array
        The method's lower-level iterate (barrier: ``y_t(x)``).
    fun_resolved, y_resolved : float, array
        ``F(x, y*(x))`` and ``y*(x)`` from an exact lower-level solve after the clock stopped (None
        when no lower solver exists or ``resolve_lower=False``).
    ll_gap : float
        ``f(x, y) - f(x, y*(x))`` (the barrier's is at most ``m t``).
    multipliers : array
        Lower-level multipliers (barrier ``-t / g_i``, kkt the exact duals, LV-HBA ``lambda``).
    t : float
        Final barrier parameter (barrier).
    hypergrad : array
        The last (barrier or kkt) hypergradient ``grad phi_t(x)``.
    value_gap, theta, z : LV-HBA quantities (None for the other methods).
    n_ll_iter : int
        Lower-level Newton steps (barrier) or lower-level solves (kkt).
    """

    y: Any = None
    fun_resolved: Any = None
    y_resolved: Any = None
    ll_gap: Any = None
    multipliers: Any = None
    t: Any = None
    hypergrad: Any = None
    value_gap: Any = None
    theta: Any = None
    z: Any = None
    n_ll_iter: Any = 0


@dataclasses.dataclass(repr=False)
class BatchedBilevelResult(BatchedResult, BilevelResult):
    """Batched form: per-instance fields are (B,) arrays; ``statuses`` per instance."""
