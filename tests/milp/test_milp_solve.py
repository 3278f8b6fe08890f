"""optkit.milp.solve: the validation table of spec milp section 6 on both compile paths, cross-checked with
scipy.optimize.milp on independently written matrices and, for knapsack and projects, brute force."""

import copy
import itertools
import json

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from optkit import InvalidProblemError, Status
from optkit.milp.solve import MILPResult, solve, to_highspy, to_pyomo


def _has_appsi():
    try:
        import pyomo.environ as pe

        return bool(pe.SolverFactory("appsi_highs").available())
    except Exception:
        return False


METHODS = ["highspy", pytest.param("pyomo", marks=pytest.mark.skipif(not _has_appsi(), reason="no appsi_highs"))]


def V(name, **kw):
    return dict(name=name, **kw)


def lin(terms, limit, op="LESS_OR_EQUAL"):
    return dict(type="linear", terms=terms, limit=limit, operator=op)


# ---------------------------------------------------------------------------------------------- the section-6 cases
CASES = {
    "ducks": dict(
        variables=[V("b"), V("c")],
        objective=dict(sense="minimize", terms={"b": 20, "c": 40}),
        constraints=[dict(type="upperbound", var="b", limit=12),
                     dict(type="ratio", var="c", limit=0.6, operator="GREATER_OR_EQUAL"),
                     lin({"b": 10, "c": 8}, 300, "GREATER_OR_EQUAL")]),
    "elm_chairs": dict(
        variables=[V("b"), V("c")],
        objective=dict(terms={"b": 43, "c": 52}),
        constraints=[lin({"b": 1.4, "c": 1.1}, 17), lin({"b": 2, "c": 3}, 11)]),
    "painkillers": dict(
        variables=[V("b"), V("c")],
        objective=dict(terms={"b": 0.8, "c": 0.4}),
        constraints=[lin({"b": 0.3, "c": 0.6}, 8), lin({"b": 0.5, "c": 0.7}, 4, "GREATER_OR_EQUAL")]),
    "coconut": dict(
        variables=[V("rickshaws"), V("ox carts")],
        objective=dict(terms={"rickshaws": "50", "ox carts": "30"}),
        constraints=[lin({"rickshaws": "10", "ox carts": "8"}, "200"),
                     dict(type="xy", x_var="rickshaws", y_var="ox carts", operator="LESS_OR_EQUAL")]),
    "knapsack": dict(
        variables=[V("x1", domain="binary"), V("x2", domain="binary"), V("x3", domain="binary")],
        objective=dict(terms={"x1": 60, "x2": 100, "x3": 120}),
        constraints=[lin({"x1": 10, "x2": 20, "x3": 30}, 50)]),
    "fixed_charge": dict(
        variables=[V("x1", ub=8), V("x2", ub=3), V("y1", domain="binary"), V("y2", domain="binary")],
        objective=dict(sense="minimize", terms={"x1": 3, "x2": 2, "y1": 10, "y2": 4}),
        constraints=[lin({"x1": 1, "x2": 1}, 5, "GREATER_OR_EQUAL"),
                     dict(type="activation", var="x1", indicator="y1"),
                     dict(type="activation", var="x2", indicator="y2")]),
    "either_or": dict(
        variables=[V("x", ub=10), V("y", ub=10)],
        objective=dict(terms={"x": 1, "y": 1}),
        constraints=[dict(type="either_or", first=dict(terms={"x": 1, "y": 2}, limit=8),
                          second=dict(terms={"x": 3, "y": 1}, limit=9))]),
    "min_lot": dict(
        variables=[V("x", ub=30), V("y"), V("w", domain="binary")],
        objective=dict(terms={"x": 4, "y": 3}),
        constraints=[lin({"x": 1, "y": 1}, 15), dict(type="upperbound", var="y", limit=10),
                     dict(type="min_lot", var="x", indicator="w", min=20)]),
    "projects": dict(
        variables=[V(f"y{i}", domain="binary") for i in range(1, 5)],
        objective=dict(terms={"y1": 8, "y2": 11, "y3": 6, "y4": 4}),
        constraints=[lin({"y1": 5, "y2": 7, "y3": 4, "y4": 3}, 11),
                     dict(type="cardinality", vars=["y1", "y2", "y3", "y4"], k=2, operator="LESS_OR_EQUAL"),
                     dict(type="implication", if_var="y1", then_var="y2"),
                     dict(type="exclusion", vars=["y3", "y4"])]),
}

# (LP fun, LP x or None, MILP policy, MILP fun, MILP x or None) from the spec's table
EXPECTED = {
    "ducks": (1140.0, [12, 22.5], "all-integer", 1160.0, [12, 23]),
    "elm_chairs": (236.5, [5.5, 0], "all-integer", 224.0, [4, 1]),
    "painkillers": (64 / 3, [80 / 3, 0], "all-integer", 20.8, [26, 0]),
    "coconut": (8000 / 9, [100 / 9, 100 / 9], "all-integer", 880.0, [11, 11]),
    "knapsack": (240.0, [1, 1, 2 / 3], "ir", 220.0, [0, 1, 1]),
    "fixed_charge": (18.5, None, "ir", 25.0, [5, 0, 1, 0]),
    "either_or": (12.969072164948454, None, "all-integer", 9.0, [0, 9]),
    "min_lot": (60.0, None, "all-integer", 30.0, [0, 10, 0]),
    "projects": (209 / 12, None, "ir", 17.0, [0, 1, 1, 0]),
}

# Independent matrices for scipy.optimize.milp (written by hand, not through the compiler): c (max sense
# as +c), rows (A, lb, ub), bounds, integrality for the MILP column; auxiliaries included where the model has them.
INF = np.inf
SCIPY = {
    "ducks": (-1, [20, 40], [[1, 0], [-0.6, 0.4], [10, 8]], [-INF, 0, 300], [12, INF, INF], [INF, INF], [1, 1]),
    "elm_chairs": (1, [43, 52], [[1.4, 1.1], [2, 3]], [-INF, -INF], [17, 11], [INF, INF], [1, 1]),
    "painkillers": (1, [0.8, 0.4], [[0.3, 0.6], [0.5, 0.7]], [-INF, 4], [8, INF], [INF, INF], [1, 1]),
    "coconut": (1, [50, 30], [[10, 8], [1, -1]], [-INF, -INF], [200, 0], [INF, INF], [1, 1]),
    "knapsack": (1, [60, 100, 120], [[10, 20, 30]], [-INF], [50], [1, 1, 1], [1, 1, 1]),
    "fixed_charge": (-1, [3, 2, 10, 4], [[1, 1, 0, 0], [1, 0, -8, 0], [0, 1, 0, -3]], [5, -INF, -INF],
                     [INF, 0, 0], [8, 3, 1, 1], [0, 0, 1, 1]),
    # x, y, z with M1 = 22, M2 = 31
    "either_or": (1, [1, 1, 0], [[1, 2, -22], [3, 1, 31]], [-INF, -INF], [8, 40], [10, 10, 1], [1, 1, 1]),
    "min_lot": (1, [4, 3, 0], [[1, 1, 0], [0, 1, 0], [1, 0, -20], [1, 0, -30]], [-INF, -INF, 0, -INF],
                [15, 10, INF, 0], [30, INF, 1], [1, 1, 1]),
    "projects": (1, [8, 11, 6, 4], [[5, 7, 4, 3], [1, 1, 1, 1], [1, -1, 0, 0], [0, 0, 1, 1]],
                 [-INF] * 4, [11, 2, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]),
}


def _scipy_opt(name, integer):
    s, c, A, lb, ub, colub, integ = SCIPY[name]
    res = milp(-s * np.asarray(c, float), constraints=LinearConstraint(np.asarray(A, float), lb, ub),
               bounds=Bounds(0, np.asarray(colub, float)), integrality=np.asarray(integ) if integer else None,
               options={"mip_rel_gap": 1e-9})
    assert res.status == 0
    return -s * res.fun


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(CASES))
def test_validation_table(name, method):
    lp_fun, lp_x, policy, mip_fun, mip_x = EXPECTED[name]
    model = CASES[name]
    before = copy.deepcopy(model)
    lp = solve(model, method=method, integrality="continuous")
    assert lp.status == Status.CONVERGED and lp.success
    assert lp.fun == pytest.approx(lp_fun, rel=1e-9)
    assert lp.fun == pytest.approx(_scipy_opt(name, integer=False), rel=1e-9)
    if lp_x is not None:
        np.testing.assert_allclose(lp.x, lp_x, rtol=1e-9, atol=1e-9)
    assert lp.constraint_violation <= 1e-7
    mi = solve(model, method=method, integrality=policy)
    assert mi.status == Status.CONVERGED
    assert mi.fun == pytest.approx(mip_fun, rel=1e-9)
    assert mi.fun == pytest.approx(_scipy_opt(name, integer=True), rel=1e-9)
    np.testing.assert_allclose(mi.x, mip_x, atol=1e-9)
    assert mi.integrality_violation <= 1e-6 and mi.constraint_violation <= 1e-7
    assert isinstance(mi, MILPResult) and mi.x.dtype == np.float64 and len(mi.x) == len(model["variables"])
    assert list(mi.values) == [v["name"] for v in model["variables"]]
    assert mi.integrality == policy and mi.method == method and mi.backend == "numpy"
    assert model == before  # the input is never mutated


@pytest.mark.parametrize("name", ["knapsack", "projects"])
def test_brute_force(name):
    m = CASES[name]
    names = [v["name"] for v in m["variables"]]
    obj = m["objective"]["terms"]
    best = -np.inf
    for bits in itertools.product((0, 1), repeat=len(names)):
        x = dict(zip(names, bits))
        ok = True
        for con in m["constraints"]:
            t = con["type"]
            if t == "linear":
                ok &= sum(a * x[k] for k, a in con["terms"].items()) <= con["limit"]
            elif t == "cardinality":
                ok &= sum(x[k] for k in con["vars"]) <= con["k"]
            elif t == "implication":
                ok &= x[con["if_var"]] <= x[con["then_var"]]
            elif t == "exclusion":
                ok &= sum(x[k] for k in con["vars"]) <= 1
        if ok:
            best = max(best, sum(c * x[k] for k, c in obj.items()))
    assert solve(m).fun == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_pyomo_matches_highspy_both_policy(method):
    for model in CASES.values():
        r = solve(model, method=method, integrality="both")
        ref_ir = solve(model, integrality="ir")
        ref_lp = solve(model, integrality="continuous")
        assert r.status == ref_ir.status and r.fun == pytest.approx(ref_ir.fun, rel=1e-9)
        assert r.lp_fun == pytest.approx(ref_lp.fun, rel=1e-9) and r.lp_status == Status.CONVERGED
        assert r.integrality == "both" and len(r.lp_x) == len(model["variables"])


INFEASIBLE = dict(variables=[V("x", domain="integer"), V("y")], objective=dict(terms={"x": 1, "y": 1}),
                  constraints=[lin({"x": 1, "y": 1}, 1), dict(type="lowerbound", var="x", limit=2)])
UNBOUNDED = dict(variables=[V("x", domain="integer"), V("y")], objective=dict(terms={"x": 1, "y": 1}),
                 constraints=[lin({"x": 1, "y": -1}, 1)])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("policy", ["continuous", "ir"])
def test_infeasible_and_unbounded(method, policy):
    r = solve(INFEASIBLE, method=method, integrality=policy)
    assert r.status == Status.INFEASIBLE and not r.success and r.x is None and r.fun is None
    r = solve(UNBOUNDED, method=method, integrality=policy)
    assert r.status == Status.UNBOUNDED and r.x is None
    with pytest.raises(Exception, match="UNBOUNDED"):
        r.raise_for_status()


def test_ambiguous_status_resolution():
    # HiGHS with presolve on reports an unbounded MIP as kUnboundedOrInfeasible
    r = solve(UNBOUNDED, integrality="ir", resolve_ambiguous=False)
    assert r.raw_status == "kUnboundedOrInfeasible" and r.status == Status.INFEASIBLE_OR_UNBOUNDED
    r = solve(UNBOUNDED, integrality="ir")
    assert r.status == Status.UNBOUNDED
    assert [s["step"] for s in r.extra["resolves"]][:2] == ["initial", "presolve_off"]
    assert r.extra["resolves"][0]["raw_status"] == "kUnboundedOrInfeasible"
    # the objective-0 / relaxation fallback, exercised directly
    from optkit.milp.build import to_linear_form
    from optkit.milp.solve import _Opts, _Outcome, _run_highspy, _solve_lf

    opts = _Opts(None, 1e-9, 1e-9, 1, True, True, 0, 0)

    def stubborn(lf, o, presolve, zero_objective=False):  # ambiguous whenever the objective is kept
        if not zero_objective and lf.policy != "continuous":
            return _Outcome(status=Status.INFEASIBLE_OR_UNBOUNDED, raw="kUnboundedOrInfeasible")
        return _run_highspy(lf, o, presolve, zero_objective)

    out, steps = _solve_lf(to_linear_form(UNBOUNDED, "ir"), stubborn, opts)
    assert out.status == Status.UNBOUNDED and [s["step"] for s in steps][-1] == "lp_relaxation"
    out, steps = _solve_lf(to_linear_form(INFEASIBLE, "ir"), stubborn, opts)
    assert out.status == Status.INFEASIBLE and steps[-1]["step"] == "feasibility"


def _fixed_charge(x1_ub=None, extra_row=False):
    m = copy.deepcopy(CASES["fixed_charge"])
    m["variables"][0] = V("x1") if x1_ub is None else V("x1", ub=x1_ub)
    if extra_row:
        m["constraints"].append(lin({"x1": 1, "x2": 1}, 20))
    return m


def test_big_m_bullet():
    with pytest.raises(InvalidProblemError, match="x1") as ei:
        solve(_fixed_charge())
    assert "constraints[1]" in str(ei.value) and "Variable.ub" in str(ei.value)
    r = solve(_fixed_charge(extra_row=True))
    assert r.status == Status.CONVERGED and r.fun == pytest.approx(25.0, rel=1e-12)
    bm = [b for b in r.extra["big_m"] if b.get("variable") == "x1"]
    assert bm == [{"constraint": 1, "variable": "x1", "value": 20.0, "source": "implied"}]


def test_time_limit_and_options_and_inputs(tmp_path):
    model = CASES["ducks"]
    r = solve(json.dumps(model), time_limit=10.0, threads=1, rng=3, presolve=False)
    assert r.fun == pytest.approx(1140.0)
    p = tmp_path / "m.json"
    p.write_text(json.dumps(model))
    assert solve(p, integrality="all-integer").fun == pytest.approx(1160.0)
    assert solve(str(p)).fun == pytest.approx(1140.0)
    for kw, exc, word in [({"method": "gurobi"}, ValueError, "method"), ({"integrality": "int"}, ValueError,
                          "integrality"), ({"time_limit": 0}, ValueError, "time_limit"),
                          ({"mip_rel_gap": -1e-3}, ValueError, "mip_rel_gap"), ({"threads": 0}, ValueError,
                          "threads"), ({"threads": 1.5}, TypeError, "threads")]:
        with pytest.raises(exc, match=word):
            solve(model, **kw)
    with pytest.raises(InvalidProblemError, match="neither JSON nor an existing file"):
        solve(str(tmp_path / "missing.json"))


def test_to_highspy_and_to_pyomo():
    h, lf = to_highspy(CASES["knapsack"])
    h.run()
    assert h.getInfo().objective_function_value == pytest.approx(220.0)
    assert lf.names == ["x1", "x2", "x3"]
    if _has_appsi():
        import pyomo.environ as pe

        m = to_pyomo(CASES["either_or"], integrality="all-integer")
        assert m._optkit_names == ["x", "y", "__z0"]
        assert len(m.rows) == 2 and m.x[2].domain is pe.Binary


def test_result_fields_and_dict():
    r = solve(CASES["fixed_charge"], integrality="both")
    assert r.mip_gap is not None and r.mip_gap <= 1e-9 and r.dual_bound == pytest.approx(25.0)
    assert r.values == {"x1": 5.0, "x2": 0.0, "y1": 1.0, "y2": 0.0}
    assert r.lp_fun == pytest.approx(18.5)
    d = r.to_dict()
    assert d["status"] == "CONVERGED" and d["success"]
