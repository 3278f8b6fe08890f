"""Prompts and reply schemas of the LLM formulator (spec milp 3.1, 3.5, 3.7).

The LLM is asked for JSON only, never code:

* phase 1 (``variables``): ``{variables: [{name, mentions, domain, domain_reason, unit, lb, ub}]}``;
* phase 2 (``statements``): ``{objective, constraints: [{class, text, slots}]}``, every variable slot an enum of
  the phase-1 names; phase 3 turns the slots into IR deterministically (:mod:`optkit.milp.formulate`);
* one-step (``model``): the whole IR in :meth:`~optkit.milp.ir.MILPModel.wire_schema`;
* self-check (``revise``): the IR, one error diagnostic and the constraints/variables it names; the reply is a
  corrected IR in the same wire schema.

Every user message starts with a ``TASK: <name>`` line (the ``TASK_*`` constants) so that a reply cache, a log
reader or a test fake can tell the requests apart. The two worked examples are hand-written for this module (a
bakery and an apple cooperative); no NL4Opt text is used, in particular none of its test split.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence

__all__ = [
    "TASK_VARIABLES",
    "TASK_STATEMENTS",
    "TASK_MODEL",
    "TASK_REVISE",
    "CLASSES",
    "OPERATORS",
    "SLOT_NAMES",
    "EXAMPLES",
    "variables_schema",
    "statements_schema",
    "variables_messages",
    "statements_messages",
    "one_step_messages",
    "revise_messages",
]

TASK_VARIABLES = "TASK: variables"
TASK_STATEMENTS = "TASK: statements"
TASK_MODEL = "TASK: model"
TASK_REVISE = "TASK: revise"

#: constraint classes of spec 3.2: NL4Opt's seven template types, then the logic extensions
CLASSES = ("sum", "upperbound", "lowerbound", "linear", "ratio", "xby", "xy",
           "activation", "min_lot", "implication", "exclusion", "cardinality", "either_or")
#: operators the phase-2 reply may use (the IR's names are accepted too)
OPERATORS = ("<=", ">=", "=")
#: every slot key of a phase-2 constraint (all present in the reply; those the class does not use are null)
SLOT_NAMES = ("var", "vars", "terms", "limit", "operator", "base", "x_var", "param", "y_var", "indicator", "min",
              "ub", "if_var", "then_var", "k", "first", "second")

_TABLE = """\
Constraint classes (slots the class uses; every other slot is null):
| class | slots | meaning |
|---|---|---|
| sum | limit, operator | x_1 + ... + x_n op limit, over EVERY variable (binaries included); if only some variables count, use linear |
| upperbound | var, limit | var <= limit |
| lowerbound | var, limit | var >= limit |
| linear | terms, limit, operator | sum of coef * var over terms op limit; variables not listed have coefficient 0 |
| ratio | var, limit, operator, base | var op limit * (sum of the variables in base); limit is a share in [0, 1] ("30%" -> 0.3, "a third" -> 0.3333); base null = all variables |
| xby | x_var, param, y_var, operator | x_var op param * y_var ("at least twice as many x as y": x_var >= 2 y_var) |
| xy | x_var, y_var, operator | x_var op y_var |
| activation | var, indicator, ub | var <= ub * indicator: var may be positive only if the binary indicator is 1 (ub null: derived from the variable's bound or the other constraints) |
| min_lot | var, indicator, min, ub | min * indicator <= var <= ub * indicator: var is 0 or between min and ub |
| implication | if_var, then_var | if_var <= then_var (binaries: "if A then B") |
| exclusion | vars | sum of the binaries vars <= 1 ("not both", "at most one of") |
| cardinality | vars, k, operator | sum of the binaries vars op k ("at least two of the sites") |
| either_or | first, second, indicator | the row first holds or the row second holds; each row is {terms, operator, limit}; indicator: a binary variable or null |
Operators: "<=" (at most, no more than, available, budget, capacity), ">=" (at least, minimum, require, must), "=" (exactly).
Objective: class "objective" with terms (maximize/minimize sum of coef * var) or class "objvar" with vars (the plain sum of those variables, e.g. "maximize the number of items").
Domains: "integer" for countable things (trucks, chairs, workers), "continuous" for amounts (dollars, kg, hours, litres, acres, fractions), "binary" for yes/no decisions (whether to open, select or not). A fixed cost f per open facility adds f * open to the objective and an activation constraint.
Terms are lists of {"var": name, "coef": number}. Numbers are JSON numbers; percentages are written as shares (60% -> 0.6)."""

_RULES = """\
You turn an optimization word problem into a mixed-integer linear program, step by step.
Reply with one JSON object only: no prose, no code fences, no code. Use only numbers stated or directly implied by the text."""

_VARIABLES_HELP = """\
List the decision variables: quantities the decision maker chooses (not parameters, not the objective).
For each: name (short, unique, letters/digits/underscores), mentions (the exact phrases of the text that refer to it, as written, most specific first), domain ("continuous", "integer" or "binary"), domain_reason (a few words), unit (or null), lb (lower bound; null means 0), ub (upper bound stated for the variable itself, or null).
Add a binary variable for every yes/no decision the logic constraints need (open/lease/select)."""

_STATEMENTS_HELP = """\
Given the decision variables, write the objective and one entry per constraint sentence or clause of the text.
Each constraint: class (from the table), text (the words of the problem it comes from), slots (an object with every slot key; unused slots null).
Do not restate variable bounds already given as lb/ub, and do not add non-negativity (it is implicit)."""

_MODEL_HELP = """\
Write the whole model in the JSON schema of the intermediate representation: variables (name, domain, lb, ub, unit, mentions, domain_source "inferred"), objective (type "objective" with terms {name: coef}, or "objvar" with vars; sense "maximize"/"minimize") and constraints (type = the class, with the class's slots as fields: operator as "LESS_OR_EQUAL", "GREATER_OR_EQUAL" or "EQUAL"; linear terms as {name: coef})."""


# ----------------------------------------------------------------------------------------------------------- schemas
def _nullable(node: dict) -> dict:
    return {"anyOf": [node, {"type": "null"}]}


_NUMBER = {"anyOf": [{"type": "number"}, {"type": "string"}]}


def _obj(props: dict) -> dict:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def variables_schema() -> dict:
    """JSON schema of the phase-1 reply (strict-mode friendly: closed objects, all keys required)."""
    var = _obj({
        "name": {"type": "string"},
        "mentions": {"type": "array", "items": {"type": "string"}},
        "domain": {"type": "string", "enum": ["continuous", "integer", "binary"]},
        "domain_reason": _nullable({"type": "string"}),
        "unit": _nullable({"type": "string"}),
        "lb": _nullable(_NUMBER),
        "ub": _nullable(_NUMBER),
    })
    return _obj({"variables": {"type": "array", "items": var}})


def statements_schema(names: Sequence[str]) -> dict:
    """JSON schema of the phase-2 reply; every variable slot is an enum of ``names``."""
    name = {"type": "string", "enum": list(names)}
    terms = {"type": "array", "items": _obj({"var": name, "coef": _NUMBER})}
    op = {"type": "string", "enum": list(OPERATORS)}
    row = _obj({"terms": terms, "operator": op, "limit": _NUMBER})
    names_list = {"type": "array", "items": name}
    slots = _obj({
        "var": _nullable(name), "vars": _nullable(names_list), "terms": _nullable(terms),
        "limit": _nullable(_NUMBER), "operator": _nullable(op), "base": _nullable(names_list),
        "x_var": _nullable(name), "param": _nullable(_NUMBER), "y_var": _nullable(name),
        "indicator": _nullable(name), "min": _nullable(_NUMBER), "ub": _nullable(_NUMBER),
        "if_var": _nullable(name), "then_var": _nullable(name), "k": _nullable(_NUMBER),
        "first": _nullable(row), "second": _nullable(row),
    })
    objective = _obj({
        "class": {"type": "string", "enum": ["objective", "objvar"]},
        "sense": {"type": "string", "enum": ["maximize", "minimize"]},
        "name": _nullable({"type": "string"}),
        "terms": terms,
        "vars": names_list,
    })
    constraint = _obj({"class": {"type": "string", "enum": list(CLASSES)}, "text": {"type": "string"},
                       "slots": slots})
    return _obj({"objective": objective, "constraints": {"type": "array", "items": constraint}})


# ---------------------------------------------------------------------------------------------------------- examples
def _slots(**given) -> dict:
    return {k: given.get(k) for k in SLOT_NAMES}


def _terms(**coefs) -> list[dict]:
    return [{"var": k, "coef": v} for k, v in coefs.items()]


_BAKERY = ("A bakery bakes loaves of rye bread and trays of scones. Each loaf earns $4 and each tray earns $7. A loaf "
           "uses 3 cups of flour and a tray uses 5 cups; 150 cups of flour are on hand. The bakery must bake at least "
           "8 loaves, at most 30% of all items may be trays of scones, and it bakes at least as many loaves as "
           "trays. How many of each should it bake to maximize earnings?")
_COOP = ("A cooperative may lease a cider press in Ames and one in Boone; a lease costs $900 a week in Ames and $700 "
         "in Boone. Pressing a tonne of apples costs $20 in Ames and $25 in Boone. The Ames press handles at most "
         "50 tonnes a week and the Boone press at most 40. The cooperative must press 60 tonnes a week in total, "
         "and it leases Boone only if it also leases Ames. Minimize the weekly cost.")

#: the two worked examples: problem text, phase-1 reply, phase-2 reply and the IR (one-step reply)
EXAMPLES = (
    {
        "text": _BAKERY,
        "variables": {"variables": [
            {"name": "loaves", "mentions": ["loaves of rye bread", "loaves", "loaf"], "domain": "integer",
             "domain_reason": "loaves are counted", "unit": "loaf", "lb": None, "ub": None},
            {"name": "trays", "mentions": ["trays of scones", "trays", "tray"], "domain": "integer",
             "domain_reason": "trays are counted", "unit": "tray", "lb": None, "ub": None},
        ]},
        "statements": {
            "objective": {"class": "objective", "sense": "maximize", "name": "earnings",
                          "terms": _terms(loaves=4, trays=7), "vars": []},
            "constraints": [
                {"class": "linear", "text": "A loaf uses 3 cups of flour and a tray uses 5 cups; 150 cups of flour "
                 "are on hand", "slots": _slots(terms=_terms(loaves=3, trays=5), operator="<=", limit=150)},
                {"class": "lowerbound", "text": "must bake at least 8 loaves",
                 "slots": _slots(var="loaves", operator=">=", limit=8)},
                {"class": "ratio", "text": "at most 30% of all items may be trays of scones",
                 "slots": _slots(var="trays", operator="<=", limit=0.3)},
                {"class": "xy", "text": "it bakes at least as many loaves as trays",
                 "slots": _slots(x_var="loaves", y_var="trays", operator=">=")},
            ],
        },
        "model": {
            "variables": [
                {"name": "loaves", "domain": "integer", "lb": 0, "ub": None, "unit": "loaf",
                 "mentions": ["loaves of rye bread", "loaves", "loaf"], "domain_source": "inferred"},
                {"name": "trays", "domain": "integer", "lb": 0, "ub": None, "unit": "tray",
                 "mentions": ["trays of scones", "trays", "tray"], "domain_source": "inferred"},
            ],
            "objective": {"type": "objective", "sense": "maximize", "name": "earnings",
                          "terms": {"loaves": 4, "trays": 7}},
            "constraints": [
                {"type": "linear", "terms": {"loaves": 3, "trays": 5}, "operator": "LESS_OR_EQUAL", "limit": 150},
                {"type": "lowerbound", "var": "loaves", "operator": "GREATER_OR_EQUAL", "limit": 8},
                {"type": "ratio", "var": "trays", "operator": "LESS_OR_EQUAL", "limit": 0.3, "base": None},
                {"type": "xy", "x_var": "loaves", "y_var": "trays", "operator": "GREATER_OR_EQUAL"},
            ],
        },
    },
    {
        "text": _COOP,
        "variables": {"variables": [
            {"name": "tonnes_ames", "mentions": ["tonnes a week in Ames", "Ames"], "domain": "continuous",
             "domain_reason": "tonnes are an amount", "unit": "tonne", "lb": None, "ub": 50},
            {"name": "tonnes_boone", "mentions": ["tonnes a week in Boone", "Boone"], "domain": "continuous",
             "domain_reason": "tonnes are an amount", "unit": "tonne", "lb": None, "ub": 40},
            {"name": "lease_ames", "mentions": ["lease a cider press in Ames"], "domain": "binary",
             "domain_reason": "lease or not", "unit": None, "lb": None, "ub": None},
            {"name": "lease_boone", "mentions": ["leases Boone"], "domain": "binary",
             "domain_reason": "lease or not", "unit": None, "lb": None, "ub": None},
        ]},
        "statements": {
            "objective": {"class": "objective", "sense": "minimize", "name": "weekly cost",
                          "terms": _terms(tonnes_ames=20, tonnes_boone=25, lease_ames=900, lease_boone=700),
                          "vars": []},
            "constraints": [
                {"class": "activation", "text": "The Ames press handles at most 50 tonnes a week",
                 "slots": _slots(var="tonnes_ames", indicator="lease_ames")},
                {"class": "activation", "text": "the Boone press at most 40",
                 "slots": _slots(var="tonnes_boone", indicator="lease_boone")},
                {"class": "linear", "text": "must press 60 tonnes a week in total",
                 "slots": _slots(terms=_terms(tonnes_ames=1, tonnes_boone=1), operator=">=", limit=60)},
                {"class": "implication", "text": "it leases Boone only if it also leases Ames",
                 "slots": _slots(if_var="lease_boone", then_var="lease_ames")},
            ],
        },
        "model": {
            "variables": [
                {"name": "tonnes_ames", "domain": "continuous", "lb": 0, "ub": 50, "unit": "tonne",
                 "mentions": ["tonnes a week in Ames", "Ames"], "domain_source": "inferred"},
                {"name": "tonnes_boone", "domain": "continuous", "lb": 0, "ub": 40, "unit": "tonne",
                 "mentions": ["tonnes a week in Boone", "Boone"], "domain_source": "inferred"},
                {"name": "lease_ames", "domain": "binary", "lb": 0, "ub": None, "unit": None,
                 "mentions": ["lease a cider press in Ames"], "domain_source": "inferred"},
                {"name": "lease_boone", "domain": "binary", "lb": 0, "ub": None, "unit": None,
                 "mentions": ["leases Boone"], "domain_source": "inferred"},
            ],
            "objective": {"type": "objective", "sense": "minimize", "name": "weekly cost",
                          "terms": {"tonnes_ames": 20, "tonnes_boone": 25, "lease_ames": 900, "lease_boone": 700}},
            "constraints": [
                {"type": "activation", "var": "tonnes_ames", "indicator": "lease_ames", "ub": None},
                {"type": "activation", "var": "tonnes_boone", "indicator": "lease_boone", "ub": None},
                {"type": "linear", "terms": {"tonnes_ames": 1, "tonnes_boone": 1}, "operator": "GREATER_OR_EQUAL",
                 "limit": 60},
                {"type": "implication", "if_var": "lease_boone", "then_var": "lease_ames"},
            ],
        },
    },
)


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def _examples(kind: str) -> str:
    parts = []
    for i, ex in enumerate(EXAMPLES, 1):
        if kind == "statements":
            parts.append(f"Example {i}.\nProblem: {ex['text']}\nVariables: {_dump(ex['variables'])}\n"
                         f"Answer: {_dump(ex['statements'])}")
        else:
            parts.append(f"Example {i}.\nProblem: {ex['text']}\nAnswer: {_dump(ex[kind])}")
    return "\n\n".join(parts)


def _system(extra: str) -> dict:
    return {"role": "system", "content": f"{_RULES}\n\n{_TABLE}\n\n{extra}"}


# ---------------------------------------------------------------------------------------------------------- messages
def variables_messages(text: str) -> list[dict]:
    """Phase 1: the decision variables of ``text``."""
    return [_system(_VARIABLES_HELP + "\n\n" + _examples("variables")),
            {"role": "user", "content": f"{TASK_VARIABLES}\nProblem: {text}\nAnswer with the variables JSON."}]


def statements_messages(text: str, variables: Sequence[dict]) -> list[dict]:
    """Phase 2: objective and constraint statements of ``text`` over the phase-1 ``variables`` (dicts)."""
    return [_system(_STATEMENTS_HELP + "\n\n" + _examples("statements")),
            {"role": "user", "content": f"{TASK_STATEMENTS}\nProblem: {text}\n"
                                        f"Variables: {_dump({'variables': list(variables)})}\n"
                                        "Answer with the objective and constraints JSON."}]


def one_step_messages(text: str) -> list[dict]:
    """One-step baseline: the whole IR of ``text`` in one reply."""
    return [_system(_MODEL_HELP + "\n\n" + _examples("model")),
            {"role": "user", "content": f"{TASK_MODEL}\nProblem: {text}\nAnswer with the model JSON."}]


def revise_messages(text: str, model: dict, diagnostic: dict) -> list[dict]:
    """Self-check (3.7): ``model`` (IR dict) has the error ``diagnostic`` (``code``, ``message``, ``constraints``
    (indices), ``variables``); ask for the corrected IR in the same schema."""
    model = copy.deepcopy(model)
    cons = model.get("constraints") or []
    involved = [{"index": i, "constraint": cons[i]} for i in diagnostic.get("constraints") or []
                if isinstance(i, int) and 0 <= i < len(cons)]
    lines = [TASK_REVISE, f"Problem: {text}", f"Model: {_dump(model)}",
             f"Self-check error {diagnostic.get('code')!s}: {diagnostic.get('message')!s}"]
    if involved:
        lines.append(f"Constraints involved: {_dump(involved)}")
    if diagnostic.get("variables"):
        lines.append(f"Variables involved: {_dump(list(diagnostic['variables']))}")
    lines.append("Compare the model with the problem text and fix what was misread (a wrong number, operator, "
                 "class or variable). Answer with the complete corrected model JSON in the same schema.")
    return [_system(_MODEL_HELP), {"role": "user", "content": "\n".join(lines)}]
