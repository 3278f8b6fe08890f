"""Registry entries of optkit.ot (contract tests, benchmarks)."""

import numpy as np

from .._errors import InvalidProblemError
from ..registry import Case, SolverEntry, register
from .sparse_ot import sparse_ot


def _arrays(backend, seed, m=6, n=7):
    rng = np.random.default_rng(seed)
    a = rng.random(m) + 0.5
    b = rng.random(n) + 0.5
    a /= a.sum()
    b /= b.sum()
    C = rng.random((m, n))
    if backend == "torch":
        import torch

        a, b, C = (torch.as_tensor(v) for v in (a, b, C))
    return a, b, C


def _case(method):
    def make(backend, seed):
        a, b, C = _arrays(backend, seed)
        return Case((a, b, C), {"max_nz": 2, "reg": 0.5, "method": method})
    return make


def _invalid(method):
    def cases(backend):
        a, b, C = _arrays(backend, 0)
        Cn = C.clone() if backend == "torch" else C.copy()
        Cn[0, 0] = float("nan")
        kw = {"max_nz": 2, "method": method}
        return {"nan": Case((a, b, Cn), kw, raises=InvalidProblemError),
                "shape": Case((a[:-1], b, C), kw, raises=InvalidProblemError),
                "max_nz": Case((a, b, C), {**kw, "max_nz": 0}, raises=InvalidProblemError)}
    return cases


FIELDS = ("potentials", "plan", "relaxed_plan", "regime", "marginal_residual", "duality_gap",
          "primal_cost", "reg_value", "nnz")

for _method, _caps in (("bfgs", {"iterative", "callback", "torch", "batched", "time_limit"}),
                       ("lbfgs", {"iterative", "callback", "torch", "batched", "time_limit"})):
    register(SolverEntry(name=f"ot.sparse_ot[{_method}]", solve=sparse_ot, make_case=_case(_method),
                         invalid_cases=_invalid(_method), capabilities=frozenset(_caps), fields=FIELDS))
