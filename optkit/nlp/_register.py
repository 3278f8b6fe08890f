"""Registry entry of optkit.nlp (contract tests, benchmarks)."""

import numpy as np

from .._errors import InvalidProblemError
from ..registry import Case, SolverEntry, register
from .al_newton import solve
from .problem import Problem


def _qp_data(seed, n=6, m=2):
    rng = np.random.default_rng(seed)
    Q = np.diag(np.arange(1.0, n + 1)) + 0.1
    return Q, rng.standard_normal(n), rng.standard_normal((m, n)), rng.standard_normal(m)


def _torch_qp(Q, p, A, b):
    import torch

    Qt, pt, At, bt = (torch.as_tensor(v) for v in (Q, p, A, b))
    f = lambda x: 0.5 * x @ (Qt.to(x.dtype) @ x) + pt.to(x.dtype) @ x
    c = lambda x: At.to(x.dtype) @ x - bt.to(x.dtype)
    return Problem.from_torch(f, c, torch.zeros(len(p), dtype=torch.float64)), torch


def _case(backend, seed):
    Q, p, A, b = _qp_data(seed)
    if backend == "torch":
        prob, torch = _torch_qp(Q, p, A, b)
        return Case((prob,), {"x0": torch.zeros(len(p), dtype=torch.float64)})
    return Case((Problem.from_qp(Q, p, A, b),), {})


def _invalid(backend):
    Q, p, A, b = _qp_data(0)
    bad = np.zeros(len(p))
    bad[0] = np.nan
    if backend == "torch":
        prob, torch = _torch_qp(Q, p, A, b)
        return {"nan": Case((prob,), {"x0": torch.as_tensor(bad)}, raises=InvalidProblemError),
                "shape": Case((prob,), {"x0": torch.zeros(len(p) + 1, dtype=torch.float64)},
                              raises=InvalidProblemError)}
    prob = Problem.from_qp(Q, p, A, b)
    return {"nan": Case((prob,), {"x0": bad}, raises=InvalidProblemError),
            "shape": Case((prob,), {"x0": np.zeros(len(p) + 1)}, raises=InvalidProblemError),
            "y0": Case((prob,), {"y0": np.zeros(3)}, raises=InvalidProblemError)}


FIELDS = ("multipliers", "stationarity", "reason", "eta", "delta", "n_penalty_updates", "n_shifts",
          "ngev", "ncev", "njev", "n_jvp", "n_vjp", "n_hvp", "nhev", "n_kprod", "n_inner",
          "inner_cap_hits", "unit_step_fraction", "seed", "xi_G")

register(SolverEntry(name="nlp.sketched_al_newton", solve=solve, make_case=_case, invalid_cases=_invalid,
                     capabilities=frozenset({"iterative", "callback", "torch", "time_limit"}),
                     fields=FIELDS))
