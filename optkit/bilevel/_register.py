"""Registry entries of optkit.bilevel (contract tests, benchmarks)."""

import functools

import numpy as np

from .._errors import InvalidProblemError
from ..registry import Case, SolverEntry, register
from ._solve import solve
from .problems import sum_coupled_qp


def _case(backend, seed, n=4):
    p = sum_coupled_qp(n)
    x0 = np.random.default_rng(seed).uniform(-1, 1, n)
    y0 = -10 * np.ones(n)
    if backend == "torch":
        import torch

        return Case((p,), {"x0": torch.as_tensor(x0), "y0": torch.as_tensor(y0)})
    return Case((p,), {"x0": x0, "y0": y0})


def _invalid(backend):
    p = sum_coupled_qp(4)
    bad = np.zeros(4)
    bad[1] = np.nan
    conv = (lambda v: __import__("torch").as_tensor(v)) if backend == "torch" else (lambda v: v)
    return {"nan": Case((p,), {"x0": conv(bad)}, raises=InvalidProblemError),
            "shape": Case((p,), {"x0": conv(np.zeros(5))}, raises=InvalidProblemError)}


FIELDS = ("y", "fun_resolved", "y_resolved", "ll_gap", "multipliers", "t", "hypergrad", "value_gap", "theta",
          "z", "n_ll_iter")

register(SolverEntry(name="bilevel.barrier", solve=functools.partial(solve, method="barrier"), make_case=_case,
                     invalid_cases=_invalid, capabilities=frozenset({"iterative", "callback", "torch", "time_limit"}),
                     fields=FIELDS))
register(SolverEntry(name="bilevel.lvhba", solve=functools.partial(solve, method="lvhba", max_iter=200),
                     make_case=_case, invalid_cases=_invalid,
                     capabilities=frozenset({"iterative", "callback", "torch", "time_limit"}), fields=FIELDS))
register(SolverEntry(name="bilevel.kkt", solve=functools.partial(solve, method="kkt"), make_case=_case,
                     invalid_cases=_invalid, capabilities=frozenset({"iterative", "callback", "time_limit"}),
                     fields=FIELDS))
