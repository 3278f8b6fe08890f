"""Registry entries of optkit.mimo (contract tests, benchmarks)."""

import functools

import numpy as np

from .._errors import InvalidProblemError
from ..registry import Case, SolverEntry, register
from .admm import recover
from .channels import random_channel
from .feedback import feedback


def _fb(backend, seed):
    ch = random_channel(6, 8, 1, rng=seed)
    H = ch.H
    if backend == "torch":
        import torch

        H = torch.as_tensor(H)
    return feedback(H, R=24, bits=3, rng=seed)


def _case(backend, seed):
    return Case((_fb(backend, seed), 1), {})


def _invalid(backend):
    fb = _fb(backend, 0)
    return {"nan": Case((fb, 1), {"x0": (np.full((6, 8), np.nan + 0j) if backend == "numpy"
                                         else __import__("torch").full((6, 8), float("nan"),
                                                                       dtype=__import__("torch").complex128))},
                        raises=InvalidProblemError),
            "shape": Case((fb, 1), {"x0": (np.zeros((6, 7), complex) if backend == "numpy"
                                           else __import__("torch").zeros((6, 7), dtype=__import__("torch").complex128))},
                          raises=InvalidProblemError)}


FIELDS = ("H_hat", "H_unstructured", "paths", "nll_unstructured", "n_hr_calls", "time_hr", "time_u")

for _mode in ("stable", "fast", "reference"):
    register(SolverEntry(name=f"mimo.redeem-{_mode}", solve=functools.partial(recover, mode=_mode, max_iter=30),
                         make_case=_case, invalid_cases=_invalid,
                         capabilities=frozenset({"iterative", "callback", "torch", "time_limit", "batched"}),
                         fields=FIELDS))
