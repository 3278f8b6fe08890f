"""Result type of every equality-constrained NLP solver in optkit (ours and the baselines)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .._result import BatchedResult, Result

__all__ = ["NLPResult", "BatchedNLPResult", "REASON_STATUS"]

# reason -> Status name (spec nlp §5.3)
REASON_STATUS = {
    "kkt_tol": "CONVERGED",
    "max_iter": "MAX_ITER",
    "time_limit": "TIME_LIMIT",
    "line_search_failed": "STALLED",
    "penalty_limit": "STALLED",
    "jacobian_rank_deficient": "NUMERICAL_ERROR",
    "nonfinite": "NUMERICAL_ERROR",
    "callback": "CALLBACK_STOP",
}


@dataclasses.dataclass(repr=False)
class NLPResult(Result):
    """Outcome of ``min f(x) s.t. c(x) = 0``.

    Besides the fields of :class:`optkit.Result` (``kkt_residual = ||(grad_x L, c)||_2`` and
    ``constraint_violation = ||c||_inf`` at the returned ``(x, multipliers)``):

    Attributes
    ----------
    multipliers : array
        ``lam`` of ``L = f + lam^T c`` (plus sign, as IPOPT and CUTEst).
    stationarity : float
        ``||grad_x L||_inf``.
    reason : str
        Why the run stopped: kkt_tol, max_iter, time_limit, line_search_failed, penalty_limit,
        jacobian_rank_deficient, nonfinite, callback (baselines: their own short code).
    eta, delta : final penalties ``(eta1, eta2)`` and inner accuracy.
    n_penalty_updates, n_shifts : how often the penalties grew and the Hessian was shifted.
    ngev, ncev, njev, n_jvp, n_vjp, n_hvp, nhev : oracle counts (gradients, constraints,
        Jacobians, products, Hessians), each counted once per call.
    n_kprod : KKT-matrix products (one per column of a block).
    n_inner, inner_cap_hits : sketch-and-project steps, and outer iterations whose inner solve
        stopped at the cap instead of the accuracy test.
    unit_step_fraction : share of accepted steps with ``alpha = 1``.
    seed : the seed of the sketch generator (None when given a Generator).
    xi_G : ``lambda_min(G G^T)`` at the last iterate (paper mode).
    """

    multipliers: Any = None
    stationarity: Any = None
    reason: Any = ""
    eta: Any = None
    delta: Any = None
    n_penalty_updates: Any = 0
    n_shifts: Any = 0
    ngev: Any = 0
    ncev: Any = 0
    njev: Any = 0
    n_jvp: Any = 0
    n_vjp: Any = 0
    n_hvp: Any = 0
    nhev: Any = 0
    n_kprod: Any = 0
    n_inner: Any = 0
    inner_cap_hits: Any = 0
    unit_step_fraction: Any = None
    seed: Any = None
    xi_G: Any = None


@dataclasses.dataclass(repr=False)
class BatchedNLPResult(BatchedResult, NLPResult):
    """Batched form: every per-instance field holds a (B,) array; ``statuses`` per instance."""
