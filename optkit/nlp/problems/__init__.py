"""Test problems for :mod:`optkit.nlp` (spec 6, 7).

``hs_bt`` / ``ne``: the in-package Hock-Schittkowski, Boggs-Tolle and nonlinear-equation problems
with exact derivatives (``get_problem("HS6")``, ``list_problems(tag="ne")``).
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

__all__ = ["ALL_NAMES", "HS_BT_NAMES", "KKT0_REFERENCE", "NE_NAMES", "OTHER_MINIMA", "PAPER_P_NAMES",
           "get_problem", "list_problems"]
