"""optkit.milp.ir (validation, wire schema) and optkit.milp.build (template rows, big-M, LinearForm)."""

import copy
import json

import numpy as np
import pytest
import scipy.sparse as sp

from optkit import InvalidProblemError
from optkit.milp.build import LinearForm, to_linear_form
from optkit.milp.ir import MILPModel, Variable, format_loc, to_number, wire_schema


def V(name, **kw):
    return dict(name=name, **kw)


def base(constraints=(), variables=None, objective=None):
    return dict(variables=variables or [V("a"), V("b"), V("c")],
                objective=objective or dict(terms={"a": 1, "b": 2, "c": 3}), constraints=list(constraints))


def dense(lf):
    return lf.A.toarray()


# ------------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("constraint, path, word", [
    (dict(type="linear", terms={"chairs": 2}, limit=5), "constraints[0].terms['chairs']", "unknown variable"),
    (dict(type="ratio", var="a", limit=1.5), "constraints[0].limit", "[0, 1]"),
    (dict(type="ratio", var="a", limit="-0.1"), "constraints[0].limit", "[0, 1]"),
    (dict(type="linear", terms={"a": "two dozen-ish"}, limit=5), "constraints[0].terms['a']", "two dozen-ish"),
    (dict(type="sum", limit="lots"), "constraints[0].limit", "'lots'"),
    (dict(type="xby", x_var="a", y_var="zz", param=2), "constraints[0].y_var", "'zz'"),
    (dict(type="activation", var="a", indicator="b"), "constraints[0].indicator", "binary"),
    (dict(type="linear", terms={"a": 1}, limit=5, bogus=1), "constraints[0].bogus", "Extra"),
    (dict(type="knapsack"), "constraints[0]", "tag"),
    (dict(type="linear", terms={"a": float("inf")}, limit=5), "constraints[0].terms['a']", "finite"),
])
def test_invalid_constraints_name_the_field(constraint, path, word):
    with pytest.raises(InvalidProblemError) as ei:
        MILPModel(**base([constraint]))
    msg = str(ei.value)
    assert msg.startswith(path) and word in msg
    assert ei.value.errors[0]["loc"] == path


def test_other_semantic_rules():
    cases = [
        (dict(variables=[V("a"), V("a")]), "variables[1].name", "duplicate"),
        (dict(variables=[]), "variables", "at least one"),
        (dict(variables=[V("a", lb=5, ub=2)]), "variables[0].lb", "exceeds"),
        (dict(variables=[V("__z0")]), "variables[0].name", "reserved"),
        (dict(objective=dict(terms={})), "objective.terms", "objvar"),
        (dict(objective=dict(type="objvar", vars=[])), "objective.vars", "at least one"),
        (dict(objective=dict(terms={"q": 1})), "objective.terms['q']", "unknown"),
    ]
    for patch, path, word in cases:
        d = base()
        d.update(patch)
        if "variables" in patch and "objective" not in patch:
            d["objective"] = dict(type="objvar", vars=[v["name"] for v in patch["variables"]][:1])
            if not patch["variables"]:
                d["objective"] = dict(type="objvar", vars=["a"])
        with pytest.raises(InvalidProblemError) as ei:
            MILPModel(**d)
        locs = [e["loc"] for e in ei.value.errors]
        assert path in locs, (path, locs)
        assert word in str(ei.value)


def test_model_validate_json_and_mentions():
    d = base([dict(type="linear", terms={"the a": "3", "b": 1.5}, limit="10")])
    d["variables"][0]["mentions"] = ["the a"]
    m = MILPModel.model_validate_json(json.dumps(d))
    assert m.constraints[0].terms == {"the a": "3", "b": 1.5}  # raw text kept
    lf = to_linear_form(m)
    np.testing.assert_array_equal(dense(lf), [[3.0, 1.5, 0.0]])
    with pytest.raises(InvalidProblemError, match="invalid JSON"):
        MILPModel.model_validate_json("{not json")
    assert to_number(" 4.5 ", "f") == 4.5
    with pytest.raises(InvalidProblemError, match=r"^f: .*'x1'"):
        to_number("x1", "f")
    assert format_loc(("constraints", 2, "linear", "terms", "chairs")) == "constraints[2].terms['chairs']"
    Variable(name="v", domain="integer", ub="7")


def test_wire_schema_flat():
    s = wire_schema()
    text = json.dumps(s)
    assert "$ref" not in text and "oneOf" not in text and "$defs" not in text
    assert s["additionalProperties"] is False and set(s["required"]) == set(s["properties"])

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node["additionalProperties"] is False
                assert set(node["required"]) == set(node["properties"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    assert MILPModel.wire_schema() == s
    arr = next(a for a in s["properties"]["constraints"]["anyOf"] if a.get("type") == "array")
    kinds = {alt["properties"]["type"].get("const") for alt in arr["items"]["anyOf"]}
    assert {"sum", "linear", "either_or", "min_lot"} <= kinds


# -------------------------------------------------------------------------------------------------- template rows
def test_template_rows():
    cons = [
        dict(type="sum", limit=50, operator="LESS_OR_EQUAL"),
        dict(type="upperbound", var="a", limit=7),
        dict(type="lowerbound", var="b", limit="2"),
        dict(type="linear", terms={"a": 2, "c": -1}, limit=9, operator="EQUAL"),
        dict(type="ratio", var="a", limit="0.25", operator="GREATER_OR_EQUAL"),
        dict(type="ratio", var="c", limit=0.5, base=["b", "c"]),
        dict(type="xby", x_var="a", param=3, y_var="b", operator="GREATER_OR_EQUAL"),
        dict(type="xy", x_var="b", y_var="c"),
    ]
    lf = to_linear_form(base(cons))
    assert isinstance(lf, LinearForm) and sp.isspmatrix_csr(lf.A)
    np.testing.assert_allclose(dense(lf), [
        [1, 1, 1], [1, 0, 0], [0, 1, 0], [2, 0, -1], [0.75, -0.25, -0.25], [0, -0.5, 0.5], [1, -3, 0], [0, 1, -1]])
    inf = np.inf
    np.testing.assert_array_equal(lf.row_lb, [-inf, -inf, 2, 9, 0, -inf, 0, -inf])
    np.testing.assert_array_equal(lf.row_ub, [50, 7, inf, 9, inf, 0, inf, 0])
    np.testing.assert_array_equal(lf.row_origin, np.arange(8))
    np.testing.assert_array_equal(lf.c, [1, 2, 3])
    assert lf.sense == "maximize" and lf.c0 == 0.0 and lf.names == ["a", "b", "c"]
    np.testing.assert_array_equal(lf.col_lb, [0, 0, 0])
    np.testing.assert_array_equal(lf.col_ub, [inf, inf, inf])


def test_objvar_and_integrality_policies():
    d = base(variables=[V("a"), V("b", domain="integer"), V("c", domain="binary", ub=5)],
             objective=dict(type="objvar", vars=["a", "c"], sense="minimize", constant="4"))
    d["constraints"] = [dict(type="either_or", first=dict(terms={"a": 1}, limit=1),
                             second=dict(terms={"b": 1}, limit=1))]
    d["variables"][0]["ub"] = 3
    d["variables"][1]["ub"] = 3
    lf = to_linear_form(d, "ir")
    np.testing.assert_array_equal(lf.c, [1, 0, 1, 0])
    assert lf.c0 == 4.0 and lf.sense == "minimize"
    np.testing.assert_array_equal(lf.integrality, [0, 1, 1, 1])
    assert lf.col_ub[2] == 1.0 and lf.names[-1] == "__z0" and lf.n_ir == 3
    np.testing.assert_array_equal(to_linear_form(d, "all-integer").integrality, [1, 1, 1, 1])
    np.testing.assert_array_equal(to_linear_form(d, "continuous").integrality, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="integrality"):
        to_linear_form(d, "both")


# --------------------------------------------------------------------------------------------------------- big-M
def _fc(x1=None, rows=()):
    return dict(variables=[V("x1", **({} if x1 is None else {"ub": x1})), V("x2", ub=3),
                           V("y1", domain="binary"), V("y2", domain="binary")],
                objective=dict(sense="minimize", terms={"x1": 3, "x2": 2, "y1": 10, "y2": 4}),
                constraints=[dict(type="linear", terms={"x1": 1, "x2": 1}, limit=5, operator="GREATER_OR_EQUAL"),
                             dict(type="activation", var="x1", indicator="y1"),
                             dict(type="activation", var="x2", indicator="y2"), *rows])


def test_big_m_sources():
    with pytest.raises(InvalidProblemError, match=r"'x1' in constraint 1.*Variable.ub"):
        to_linear_form(_fc())
    lf = to_linear_form(_fc(x1=8))
    assert lf.big_m[0] == {"constraint": 1, "variable": "x1", "value": 8.0, "source": "Variable.ub"}
    np.testing.assert_array_equal(dense(lf)[1], [1, 0, -8, 0])
    # implied bound: x1 + x2 <= 20 gives U = 20 exactly; the tightest of several rows wins; a >= row with
    # nonpositive coefficients counts too
    lf = to_linear_form(_fc(rows=[dict(type="linear", terms={"x1": 1, "x2": 1}, limit=20)]))
    assert lf.big_m[0]["value"] == 20.0 and lf.big_m[0]["source"] == "implied"
    lf = to_linear_form(_fc(rows=[dict(type="linear", terms={"x1": 2, "x2": 1}, limit=20),
                                  dict(type="upperbound", var="x1", limit=12)]))
    assert lf.big_m[0]["value"] == 10.0
    lf = to_linear_form(_fc(rows=[dict(type="linear", terms={"x1": -4}, limit=-10, operator="GREATER_OR_EQUAL")]))
    assert lf.big_m[0]["value"] == 2.5
    # LP bound over unconditional rows (x1 - x2 <= 2.5, x2 <= 3 -> 5.5) plus the margin; integer floor
    lf = to_linear_form(_fc(rows=[dict(type="linear", terms={"x1": 1, "x2": -1}, limit=2.5)]))
    assert lf.big_m[0]["source"] == "lp" and lf.big_m[0]["value"] == pytest.approx(5.5 * (1 + 1e-6), rel=1e-12)
    lf = to_linear_form(_fc(rows=[dict(type="linear", terms={"x1": 1, "x2": -1}, limit=2.5)]), "all-integer")
    assert lf.big_m[0]["value"] == 5.0
    # the constraint's own ub wins
    d = _fc(x1=8)
    d["constraints"][1]["ub"] = 6
    assert to_linear_form(d).big_m[0] == {"constraint": 1, "variable": "x1", "value": 6.0, "source": "constraint.ub"}
    # infeasible unconditional rows
    with pytest.raises(InvalidProblemError, match="'x1'.*infeasible"):
        to_linear_form(_fc(rows=[dict(type="xy", x_var="x1", y_var="x2"),
                                 dict(type="lowerbound", var="x2", limit=4)]))


def test_min_lot_rows_and_large_m_warning():
    d = dict(variables=[V("x", ub=2e7), V("w", domain="binary")], objective=dict(terms={"x": 1}),
             constraints=[dict(type="min_lot", var="x", indicator="w", min=20)])
    lf = to_linear_form(d)
    np.testing.assert_array_equal(dense(lf), [[1, -20], [1, -2e7]])
    np.testing.assert_array_equal(lf.row_lb, [0, -np.inf])
    np.testing.assert_array_equal(lf.row_ub, [np.inf, 0])
    assert [g["code"] for g in lf.diagnostics] == ["big_m_large"]


def test_either_or_m_values_split_and_drop():
    d = dict(variables=[V("x", ub=10), V("y", ub=10)], objective=dict(terms={"x": 1, "y": 1}),
             constraints=[dict(type="either_or", first=dict(terms={"x": 1, "y": 2}, limit=8),
                               second=dict(terms={"x": 3, "y": 1}, limit=9))])
    lf = to_linear_form(d)
    assert [b["value"] for b in lf.big_m] == [22.0, 31.0]
    np.testing.assert_array_equal(dense(lf), [[1, 2, -22], [3, 1, 31]])
    np.testing.assert_array_equal(lf.row_ub, [8, 40])
    assert lf.names == ["x", "y", "__z0"] and lf.integrality[2] == 1 and lf.col_ub[2] == 1
    # a >= side is negated, an equality splits into two rows
    d2 = copy.deepcopy(d)
    d2["constraints"][0]["first"] = dict(terms={"x": 1}, limit=4, operator="EQUAL")
    d2["constraints"][0]["second"] = dict(terms={"y": 1}, limit=3, operator="GREATER_OR_EQUAL")
    lf = to_linear_form(d2)
    np.testing.assert_array_equal(dense(lf), [[1, 0, -6], [-1, 0, -4], [0, -1, 3]])
    np.testing.assert_array_equal(lf.row_ub, [4, -4, 0])
    # a row that always holds drops the disjunction
    d3 = copy.deepcopy(d)
    d3["constraints"][0]["second"] = dict(terms={"x": 1}, limit=10)
    lf = to_linear_form(d3)
    assert lf.m == 0 and lf.names == ["x", "y"] and lf.diagnostics[0]["code"] == "disjunction_dropped"
    # unbounded variables: M from the LP over the unconditional rows
    d4 = copy.deepcopy(d)
    for v in d4["variables"]:
        v.pop("ub")
    d4["constraints"].append(dict(type="sum", limit=10))
    lf = to_linear_form(d4)
    assert lf.big_m[0]["value"] == pytest.approx(20 * (1 + 1e-6) - 8)
    d4["constraints"].pop()
    with pytest.raises(InvalidProblemError, match=r"constraints\[0\]\.first.*unbounded"):
        to_linear_form(d4)


def test_inputs_not_mutated():
    d = _fc(x1=8)
    d["constraints"].append(dict(type="either_or", first=dict(terms={"x1": 1}, limit=2),
                                 second=dict(terms={"x2": 1}, limit=1)))
    before = copy.deepcopy(d)
    m = MILPModel(**d)
    dump = m.model_dump()
    to_linear_form(d)
    lf = m.to_linear_form()
    assert d == before and m.model_dump() == dump
    assert lf.names[-1] == "__z0" and len(m.variables) == 4
