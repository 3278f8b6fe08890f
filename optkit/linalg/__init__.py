"""Linear-algebra kernels shared across optkit modules: Krylov solvers and projections."""

from .krylov import cg, minres
from .polyhedral import project_polyhedron
from .projections import projection_simplex, projection_sparse_simplex

__all__ = ["cg", "minres", "project_polyhedron", "projection_simplex", "projection_sparse_simplex"]
