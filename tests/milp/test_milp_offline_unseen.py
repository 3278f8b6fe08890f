"""The fully offline formulator on word problems written for these tests (not NL4Opt, never used to tune the rules
except the carpenter's supply clause): each must reach the optimum of a hand-written model. A regression guard for
the tagger + repairs + rules path on unseen phrasing; docs/milp.md reports the misses too."""

import pytest

from optkit.milp import formulate, solve

pytest.importorskip("highspy")


def _m(obj, cons, sense="maximize"):
    names = sorted({v for t in [obj, *[c.get("terms", {}) for c in cons]] for v in t}
                   | {c[k] for c in cons for k in ("var", "x_var", "y_var") if k in c})
    return {"variables": [{"name": v, "domain": "integer"} for v in names],
            "objective": {"type": "objective", "sense": sense, "terms": obj}, "constraints": cons}


def _le(terms, b, op="LESS_OR_EQUAL"):
    return {"type": "linear", "terms": terms, "limit": b, "operator": op}


CASES = {
    "carpenter": (
        "A carpenter makes chairs and tables. Each chair takes 3 hours of labor and each table takes 5 hours of "
        "labor. The carpenter has 120 hours of labor available. Each chair uses 2 units of wood and each table uses 6 "
        "units of wood, and 100 units of wood are available. The profit is $40 per chair and $90 per table. How many "
        "chairs and tables should be made to maximize profit?",
        _m({"c": 40, "t": 90}, [_le({"c": 3, "t": 5}, 120), _le({"c": 2, "t": 6}, 100)])),
    "boxes": (
        "A company produces small boxes and large boxes. A small box requires 1 square meter of cardboard and a large "
        "box requires 3 square meters of cardboard. There are 900 square meters of cardboard available. At least 100 "
        "small boxes must be produced. The profit is $2 per small box and $5 per large box. How many boxes of each "
        "size should be produced to maximize profit?",
        _m({"s": 2, "l": 5}, [_le({"s": 1, "l": 3}, 900), {"type": "lowerbound", "var": "s", "limit": 100,
                                                              "operator": "GREATER_OR_EQUAL"}])),
    "diet": (
        "A diet must contain at least 60 units of protein and at least 40 units of fat. Food A contains 6 units of "
        "protein and 2 units of fat per serving, and food B contains 3 units of protein and 4 units of fat per "
        "serving. Food A costs $4 per serving and food B costs $3 per serving. How many servings of each food "
        "minimize the cost?",
        _m({"a": 4, "b": 3}, [_le({"a": 6, "b": 3}, 60, "GREATER_OR_EQUAL"),
                              _le({"a": 2, "b": 4}, 40, "GREATER_OR_EQUAL")], "minimize")),
    "shop": (
        "A shop sells laptops and tablets. Each laptop takes 2 hours to set up and each tablet takes 1 hour. The shop "
        "has 80 hours of setup time. The shop can sell at most 30 laptops. The profit per laptop is $150 and the "
        "profit per tablet is $70. How many laptops and tablets should the shop sell to maximize profit?",
        _m({"l": 150, "t": 70}, [_le({"l": 2, "t": 1}, 80), _le({"l": 1}, 30)])),
    "bikes": (
        "A factory makes bikes and scooters. A bike needs 4 hours of assembly and a scooter needs 2 hours of "
        "assembly, with 240 hours of assembly available. The number of scooters must be at least twice the number of "
        "bikes. The profit is $60 per bike and $35 per scooter. How many bikes and scooters maximize profit?",
        _m({"b": 60, "s": 35}, [_le({"b": 4, "s": 2}, 240),
                                {"type": "xby", "x_var": "s", "param": 2, "y_var": "b",
                                 "operator": "GREATER_OR_EQUAL"}])),
    "brewery": (
        "A brewery brews ale and lager. Each barrel of ale requires 5 kg of barley and each barrel of lager requires "
        "3 kg of barley. The brewery has 450 kg of barley. Each barrel of ale needs 2 hours of brewing and each "
        "barrel of lager needs 4 hours of brewing, and 360 hours of brewing are available. The profit is $80 per "
        "barrel of ale and $70 per barrel of lager. How many barrels of each should be brewed to maximize profit?",
        _m({"a": 80, "l": 70}, [_le({"a": 5, "l": 3}, 450), _le({"a": 2, "l": 4}, 360)])),
    "printer": (
        "A printer prints posters and flyers. A poster uses 4 units of ink and a flyer uses 1 unit of ink; 200 units "
        "of ink are available. At most 70 percent of the items can be flyers. A poster earns $3 and a flyer earns $1. "
        "How many posters and flyers should be printed to maximize earnings?",
        _m({"p": 3, "f": 1}, [_le({"p": 4, "f": 1}, 200),
                              {"type": "ratio", "var": "f", "limit": 0.7, "operator": "LESS_OR_EQUAL"}])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_milp_offline_formulator_on_unseen_text(name):
    text, reference = CASES[name]
    ref = solve(reference, integrality="all-integer")
    res = formulate(text, integrality="all-integer")
    assert res.status == ref.status and res.fun == pytest.approx(ref.fun, rel=1e-9), (res.model, res.fun, ref.fun)
