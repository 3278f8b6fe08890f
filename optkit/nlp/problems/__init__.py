"""Test problems for :mod:`optkit.nlp` (spec 6, 7).

- ``hs_bt`` / ``ne``: the in-package Hock-Schittkowski, Boggs-Tolle and nonlinear-equation problems
  with exact derivatives (``get_problem("HS6")``, ``list_problems(tag="ne")``).
- ``pde``: the PDE-constrained QP family ``pde_qp(N)`` (sparse, any N).
- ``logreg``: constrained logistic regression (synthetic, from arrays, LIBSVM reader).
- ``s2mpj`` / ``pycutest``: adapters to S2MPJ's pure-Python CUTEst problems (``bench`` extra) and to
  compiled CUTEst through pycutest; imported only when used.
- ``suites``: the benchmark suites (``get_suite("hs-bt")``) and the paper's CUTEst table.
"""

from .hs_bt import (
    ALL_NAMES,
    HS_BT_NAMES,
    KKT0_REFERENCE,
    NE_NAMES,
    OTHER_MINIMA,
    PAPER_P_NAMES,
    get_problem,
    list_problems,
)
from .logreg import constrained_logreg, constrained_logreg_from_arrays, load_libsvm
from .pde import pde_qp, pde_qp_reference
from .suites import SUITES, get_suite

__all__ = ["ALL_NAMES", "HS_BT_NAMES", "KKT0_REFERENCE", "NE_NAMES", "OTHER_MINIMA", "PAPER_P_NAMES",
           "get_problem", "list_problems", "pde_qp", "pde_qp_reference", "constrained_logreg",
           "constrained_logreg_from_arrays", "load_libsvm", "SUITES", "get_suite"]
