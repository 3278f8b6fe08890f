"""Linear-algebra kernels shared across optkit modules: Krylov solvers and projections."""

from .krylov import cg, minres
from .projections import projection_simplex, projection_sparse_simplex

__all__ = ["cg", "minres", "projection_simplex", "projection_sparse_simplex"]
