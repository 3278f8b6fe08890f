"""The validation cases of spec milp section 6 as IR models, with the spec's LP and MILP optima.

Used by ``optkit bench milp`` (solver paths), ``optkit demo`` and the tests. Every accessor returns a fresh
object, so a caller may modify what it gets. ``x >= 0`` unless a bound is given; the "MILP" column solves under
``milp_policy`` (``"all-integer"`` where the spec's model has no stated domains, ``"ir"`` where it declares binaries
or mixes domains); the "LP" column is ``integrality="continuous"`` (binaries relaxed to [0, 1]).

>>> from optkit.milp.cases import case_model, CASES
>>> case_model("ducks").objective.sense
'minimize'
>>> CASES["knapsack"].milp
220.0
"""

from __future__ import annotations

import copy
import dataclasses

from .ir import MILPModel

__all__ = ["ValidationCase", "CASES", "case_dict", "case_model", "names"]


def _v(name, **kw):
    return dict(name=name, **kw)


def _lin(terms, limit, op="LESS_OR_EQUAL"):
    return dict(type="linear", terms=terms, limit=limit, operator=op)


@dataclasses.dataclass(frozen=True)
class ValidationCase:
    """One row of the section-6 table.

    ``lp`` / ``milp``: the expected optimum (``fun``) or, for ill-posed cases, the expected status name
    (``"INFEASIBLE"``, ``"UNBOUNDED"``); ``lp_x`` / ``milp_x``: the expected point where the spec gives it (IR
    variable order), else None.
    """

    name: str
    model: dict
    lp: float | str
    milp: float | str
    milp_policy: str = "all-integer"
    lp_x: tuple | None = None
    milp_x: tuple | None = None
    note: str = ""

    def as_dict(self) -> dict:
        """A deep copy of the IR dict."""
        return copy.deepcopy(self.model)

    def as_model(self) -> MILPModel:
        """A validated :class:`MILPModel` (new each call)."""
        return MILPModel.model_validate(self.as_dict())


_TABLE = [
    ValidationCase(
        "ducks",
        dict(name="ducks", variables=[_v("b"), _v("c")],
             objective=dict(sense="minimize", terms={"b": 20, "c": 40}),
             constraints=[dict(type="upperbound", var="b", limit=12),
                          dict(type="ratio", var="c", limit=0.6, operator="GREATER_OR_EQUAL"),
                          _lin({"b": 10, "c": 8}, 300, "GREATER_OR_EQUAL")]),
        lp=1140.0, milp=1160.0, lp_x=(12.0, 22.5), milp_x=(12.0, 23.0),
        note="min 20b + 40c; b <= 12; c >= 0.6(b + c); 10b + 8c >= 300"),
    ValidationCase(
        "elm_chairs",
        dict(name="elm_chairs", variables=[_v("b"), _v("c")], objective=dict(terms={"b": 43, "c": 52}),
             constraints=[_lin({"b": 1.4, "c": 1.1}, 17), _lin({"b": 2, "c": 3}, 11)]),
        lp=236.5, milp=224.0, lp_x=(5.5, 0.0), milp_x=(4.0, 1.0)),
    ValidationCase(
        "painkillers",
        dict(name="painkillers", variables=[_v("b"), _v("c")], objective=dict(terms={"b": 0.8, "c": 0.4}),
             constraints=[_lin({"b": 0.3, "c": 0.6}, 8), _lin({"b": 0.5, "c": 0.7}, 4, "GREATER_OR_EQUAL")]),
        lp=64 / 3, milp=20.8, lp_x=(80 / 3, 0.0), milp_x=(26.0, 0.0)),
    ValidationCase(
        "coconut",
        dict(name="coconut", variables=[_v("rickshaws"), _v("ox carts")],
             objective=dict(terms={"rickshaws": 50, "ox carts": 30}),
             constraints=[_lin({"rickshaws": 10, "ox carts": 8}, 200),
                          dict(type="xy", x_var="rickshaws", y_var="ox carts", operator="LESS_OR_EQUAL")]),
        lp=8000 / 9, milp=880.0, lp_x=(100 / 9, 100 / 9), milp_x=(11.0, 11.0), note="first dev record"),
    ValidationCase(
        "knapsack",
        dict(name="knapsack", variables=[_v(f"x{i}", domain="binary") for i in (1, 2, 3)],
             objective=dict(terms={"x1": 60, "x2": 100, "x3": 120}),
             constraints=[_lin({"x1": 10, "x2": 20, "x3": 30}, 50)]),
        lp=240.0, milp=220.0, milp_policy="ir", lp_x=(1.0, 1.0, 2 / 3), milp_x=(0.0, 1.0, 1.0)),
    ValidationCase(
        "infeasible",
        dict(name="infeasible", variables=[_v("x", domain="integer"), _v("y")],
             objective=dict(terms={"x": 1, "y": 1}),
             constraints=[_lin({"x": 1, "y": 1}, 1), dict(type="lowerbound", var="x", limit=2)]),
        lp="INFEASIBLE", milp="INFEASIBLE", milp_policy="ir"),
    ValidationCase(
        "unbounded",
        dict(name="unbounded", variables=[_v("x", domain="integer"), _v("y")],
             objective=dict(terms={"x": 1, "y": 1}), constraints=[_lin({"x": 1, "y": -1}, 1)]),
        lp="UNBOUNDED", milp="UNBOUNDED", milp_policy="ir",
        note="HiGHS presolve gives kUnboundedOrInfeasible for the MILP; optkit resolves it"),
    ValidationCase(
        "fixed_charge",
        dict(name="fixed_charge",
             variables=[_v("x1", ub=8), _v("x2", ub=3), _v("y1", domain="binary"), _v("y2", domain="binary")],
             objective=dict(sense="minimize", terms={"x1": 3, "x2": 2, "y1": 10, "y2": 4}),
             constraints=[_lin({"x1": 1, "x2": 1}, 5, "GREATER_OR_EQUAL"),
                          dict(type="activation", var="x1", indicator="y1"),
                          dict(type="activation", var="x2", indicator="y2")]),
        lp=18.5, milp=25.0, milp_policy="ir", milp_x=(5.0, 0.0, 1.0, 0.0), note="x continuous, y binary"),
    ValidationCase(
        "either_or",
        dict(name="either_or", variables=[_v("x", ub=10), _v("y", ub=10)], objective=dict(terms={"x": 1, "y": 1}),
             constraints=[dict(type="either_or", first=dict(terms={"x": 1, "y": 2}, limit=8),
                               second=dict(terms={"x": 3, "y": 1}, limit=9))]),
        lp=12.969072164948454, milp=9.0, milp_x=(0.0, 9.0), note="M1 = 22, M2 = 31"),
    ValidationCase(
        "min_lot",
        dict(name="min_lot", variables=[_v("x", ub=30), _v("y"), _v("w", domain="binary")],
             objective=dict(terms={"x": 4, "y": 3}),
             constraints=[_lin({"x": 1, "y": 1}, 15), dict(type="upperbound", var="y", limit=10),
                          dict(type="min_lot", var="x", indicator="w", min=20)]),
        lp=60.0, milp=30.0, milp_x=(0.0, 10.0, 0.0), note="x = 0 or 20 <= x <= 30"),
    ValidationCase(
        "projects",
        dict(name="projects", variables=[_v(f"y{i}", domain="binary") for i in range(1, 5)],
             objective=dict(terms={"y1": 8, "y2": 11, "y3": 6, "y4": 4}),
             constraints=[_lin({"y1": 5, "y2": 7, "y3": 4, "y4": 3}, 11),
                          dict(type="cardinality", vars=["y1", "y2", "y3", "y4"], k=2, operator="LESS_OR_EQUAL"),
                          dict(type="implication", if_var="y1", then_var="y2"),
                          dict(type="exclusion", vars=["y3", "y4"])]),
        lp=209 / 12, milp=17.0, milp_policy="ir", milp_x=(0.0, 1.0, 1.0, 0.0)),
]

#: name -> :class:`ValidationCase`, in the spec's table order
CASES: dict[str, ValidationCase] = {c.name: c for c in _TABLE}


def names() -> list[str]:
    """Case names in table order."""
    return list(CASES)


def case_dict(name: str) -> dict:
    """The IR dict of case ``name`` (a fresh deep copy)."""
    try:
        return CASES[name].as_dict()
    except KeyError:
        raise KeyError(f"no validation case {name!r}; known: {', '.join(CASES)}") from None


def case_model(name: str) -> MILPModel:
    """The validated :class:`MILPModel` of case ``name`` (new each call)."""
    return MILPModel.model_validate(case_dict(name))
