"""Sparsity-constrained optimal transport (Liu, Puigcerver & Blondel, ICLR 2023).

``sparse_ot`` solves OT with squared-L2 regularisation and at most ``max_nz`` nonzeros per column
(or row) of the plan, on numpy or torch (any device, batched). ``optkit.ot.layers`` wraps it as
differentiable torch functions and an MoE router.
"""

from . import _register  # noqa: F401  (registers the solvers for the contract tests)
from ._certificate import certify
from ._kernels import (
    dual_kernel,
    ksupport_sq,
    plan_to_dense,
    relaxed_primal_value,
    semi_dual_kernel,
    topk_l2_conjugate,
    topk_simplex_max,
)
from .sparse_ot import (
    KSparsePlan,
    SparseOTOptions,
    SparseOTResult,
    SparseOTSolver,
    SparseOTState,
    sparse_ot,
)

__all__ = ["sparse_ot", "SparseOTResult", "SparseOTOptions", "SparseOTSolver", "SparseOTState", "KSparsePlan",
           "certify", "topk_l2_conjugate", "topk_simplex_max", "semi_dual_kernel", "dual_kernel",
           "ksupport_sq", "relaxed_primal_value", "plan_to_dense", "layers", "problems"]


def __getattr__(name):
    if name in ("layers", "problems"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'optkit.ot' has no attribute {name!r}")
