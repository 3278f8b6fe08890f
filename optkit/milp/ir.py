"""Typed MILP intermediate representation (spec milp, sections 3.2, 3.6 and 5).

The IR is a set of pydantic v2 models (``extra="forbid"``): :class:`Variable`, :class:`Objective`, the constraint
classes discriminated on ``type`` and :class:`MILPModel`. Numbers may be given as floats or as strings; strings are
kept as written (the raw text) and parsed by :func:`to_number` (the strict parser of :mod:`optkit.milp.numbers`)
when the model is validated or compiled. :func:`from_nl4opt` and :func:`to_nl4opt` convert NL4Opt generation
records to and from the IR.

Every validation failure, pydantic's or the semantic checks of section 3.6, raises
:class:`~optkit.InvalidProblemError` whose message names the field path (``constraints[2].terms['chairs']``); the
individual problems are in its ``errors`` attribute as ``{"loc": ..., "msg": ...}`` dictionaries.
"""

from __future__ import annotations

import copy
import json
import math
import re
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .._errors import InvalidProblemError
from .numbers import parse_number

__all__ = [
    "Number",
    "Operator",
    "Variable",
    "Objective",
    "Row",
    "SumConstraint",
    "UpperBoundConstraint",
    "LowerBoundConstraint",
    "LinearConstraint",
    "RatioConstraint",
    "XByConstraint",
    "XYConstraint",
    "ActivationConstraint",
    "MinLotConstraint",
    "ImplicationConstraint",
    "ExclusionConstraint",
    "CardinalityConstraint",
    "EitherOrConstraint",
    "Constraint",
    "MILPModel",
    "TEMPLATE_TYPES",
    "LOGIC_TYPES",
    "to_number",
    "from_nl4opt",
    "to_nl4opt",
    "sense_from_direction",
    "NL4OPT_INTEGRALITY",
    "format_loc",
]

Number = float | str
Operator = Literal["LESS_OR_EQUAL", "GREATER_OR_EQUAL", "EQUAL"]

#: constraint types that become unconditional rows (NL4Opt's seven types less the objective)
TEMPLATE_TYPES = ("sum", "upperbound", "lowerbound", "linear", "ratio", "xby", "xy")
#: constraint types that need binaries and (possibly) big-M rows
LOGIC_TYPES = ("activation", "min_lot", "implication", "exclusion", "cardinality", "either_or")

_MAX_NAME = 100


# ----------------------------------------------------------------------------------------------------------- numbers
_PLAIN_FLOAT_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def to_number(value: Any, path: str) -> float:
    """Turn an IR number (float or string) into a finite float, or raise naming ``path`` and the raw text.

    Strings go through the strict parser :func:`optkit.milp.numbers.parse_number` (``"4,000"``, ``"60%"``,
    ``"a third"``, ``"twice"``, ``"$1.5 million"``, ``"8000 minutes"``); plain decimal literals that Python's
    :func:`float` reads but the prose parser does not (``"5."``) are accepted too. The string itself is never
    rewritten: the IR keeps the raw text, only the compiled form holds floats. Anything else raises
    :class:`InvalidProblemError` whose message starts with ``path`` and quotes the raw text, never 0.
    """
    if isinstance(value, bool):
        raise InvalidProblemError(f"{path}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = parse_number(value, field=path).value
        except InvalidProblemError:
            if not _PLAIN_FLOAT_RE.match(value.strip()):
                raise
            v = float(value.strip())
    else:
        raise InvalidProblemError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(v):
        raise InvalidProblemError(f"{path}: number must be finite, got {value!r}")
    return v


def format_loc(loc) -> str:
    """Format a pydantic ``loc`` tuple as a field path: ``constraints[2].terms['chairs']``."""
    out = ""
    prev = None
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif prev in ("terms",) or (isinstance(prev, str) and prev.endswith("terms")):
            out += f"[{part!r}]"
        elif isinstance(prev, int) and i >= 2 and loc[i - 2] == "constraints" and part in _TYPE_TAGS:
            continue  # discriminator tag pydantic inserts into the location
        else:
            out += ("." if out else "") + str(part)
        prev = part
    return out or "model"


def _pydantic_to_invalid(exc: pydantic.ValidationError, prefix: str = "") -> InvalidProblemError:
    errors = []
    for e in exc.errors(include_url=False):
        loc = format_loc(e.get("loc", ()))
        if prefix:
            loc = prefix if loc == "model" else f"{prefix}.{loc}"
        errors.append({"loc": loc, "msg": e.get("msg", "")})
    err = InvalidProblemError("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
    err.errors = errors
    return err


class _IRBase(BaseModel):
    """Base of the IR models (``extra="forbid"``). Constructing a part directly raises pydantic's
    ``ValidationError`` (a ``ValueError``); :class:`MILPModel` turns every error into InvalidProblemError."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class _ConstraintBase(_IRBase):
    id: str | None = None
    direction: str | None = None
    text: str | None = None
    confidence: float | None = None


# --------------------------------------------------------------------------------------------------------- variables
class Variable(_IRBase):
    """A decision variable. ``lb=None`` means no lower bound, ``ub=None`` none above (default ``0 <= x``)."""

    name: str
    domain: Literal["continuous", "integer", "binary"] = "continuous"
    lb: Number | None = 0.0
    ub: Number | None = None
    unit: str | None = None
    mentions: list[str] = Field(default_factory=list)
    domain_source: Literal["stated", "inferred", "default"] = "default"


class Objective(_IRBase):
    """``objective``: opt sum c_j x_j + constant; ``objvar``: opt sum of ``vars``."""

    type: Literal["objective", "objvar"] = "objective"
    sense: Literal["maximize", "minimize"] = "maximize"
    direction: str | None = None
    name: str | None = None
    terms: dict[str, Number] = Field(default_factory=dict)
    vars: list[str] = Field(default_factory=list)
    constant: Number = 0.0


class Row(_IRBase):
    """One linear row ``sum terms[v] x_v op limit`` (a side of an either-or)."""

    terms: dict[str, Number]
    operator: Operator = "LESS_OR_EQUAL"
    limit: Number


# ------------------------------------------------------------------------------------------------------- constraints
class SumConstraint(_ConstraintBase):
    """sum over all variables op limit."""

    type: Literal["sum"] = "sum"
    operator: Operator = "LESS_OR_EQUAL"
    limit: Number


class UpperBoundConstraint(_ConstraintBase):
    """x_var <= limit (operator as stated)."""

    type: Literal["upperbound"] = "upperbound"
    var: str
    operator: Operator = "LESS_OR_EQUAL"
    limit: Number


class LowerBoundConstraint(_ConstraintBase):
    """x_var >= limit (operator as stated)."""

    type: Literal["lowerbound"] = "lowerbound"
    var: str
    operator: Operator = "GREATER_OR_EQUAL"
    limit: Number


class LinearConstraint(_ConstraintBase):
    """sum terms[v] x_v op limit; unmentioned variables get coefficient 0 (empty ``terms``: the row 0 op limit,
    as in two NL4Opt dev gold records whose terms were not annotated)."""

    type: Literal["linear"] = "linear"
    terms: dict[str, Number]
    operator: Operator = "LESS_OR_EQUAL"
    limit: Number


class RatioConstraint(_ConstraintBase):
    """x_var op limit * sum_{i in base} x_i, with the share ``limit`` in [0, 1]; ``base=None`` = all variables."""

    type: Literal["ratio"] = "ratio"
    var: str
    operator: Operator = "LESS_OR_EQUAL"
    limit: Number
    base: list[str] | None = None


class XByConstraint(_ConstraintBase):
    """x_var op param * y_var."""

    type: Literal["xby"] = "xby"
    x_var: str
    param: Number
    y_var: str
    operator: Operator = "LESS_OR_EQUAL"


class XYConstraint(_ConstraintBase):
    """x_var op y_var."""

    type: Literal["xy"] = "xy"
    x_var: str
    y_var: str
    operator: Operator = "LESS_OR_EQUAL"


class ActivationConstraint(_ConstraintBase):
    """x_var <= U indicator (x may be positive only if the binary indicator is 1); ``ub`` overrides U."""

    type: Literal["activation"] = "activation"
    var: str
    indicator: str
    ub: Number | None = None


class MinLotConstraint(_ConstraintBase):
    """min * indicator <= var <= U * indicator (x = 0 or min <= x <= U); ``ub`` overrides U."""

    type: Literal["min_lot"] = "min_lot"
    var: str
    indicator: str
    min: Number
    ub: Number | None = None


class ImplicationConstraint(_ConstraintBase):
    """if_var <= then_var (binaries)."""

    type: Literal["implication"] = "implication"
    if_var: str
    then_var: str


class ExclusionConstraint(_ConstraintBase):
    """sum of the binaries ``vars`` <= 1 (not both / at most one)."""

    type: Literal["exclusion"] = "exclusion"
    vars: list[str]


class CardinalityConstraint(_ConstraintBase):
    """sum of the binaries ``vars`` op k."""

    type: Literal["cardinality"] = "cardinality"
    vars: list[str]
    k: Number
    operator: Operator = "LESS_OR_EQUAL"


class EitherOrConstraint(_ConstraintBase):
    """``first`` or ``second`` holds: g1 <= b1 + M1 z, g2 <= b2 + M2 (1 - z).

    ``indicator`` (a binary variable) plays z when given (z = 1 relaxes ``first``); otherwise an auxiliary binary
    ``__z{k}`` is added by the compiler.
    """

    type: Literal["either_or"] = "either_or"
    first: Row
    second: Row
    indicator: str | None = None


Constraint = Annotated[
    SumConstraint
    | UpperBoundConstraint
    | LowerBoundConstraint
    | LinearConstraint
    | RatioConstraint
    | XByConstraint
    | XYConstraint
    | ActivationConstraint
    | MinLotConstraint
    | ImplicationConstraint
    | ExclusionConstraint
    | CardinalityConstraint
    | EitherOrConstraint,
    Field(discriminator="type"),
]

_TYPE_TAGS = set(TEMPLATE_TYPES) | set(LOGIC_TYPES)


# ------------------------------------------------------------------------------------------------------------- model
class MILPModel(_IRBase):
    """A MILP in IR form. Construction validates it (pydantic, then the semantic rules of section 3.6)."""

    variables: list[Variable]
    objective: Objective
    constraints: list[Constraint] = Field(default_factory=list)
    name: str | None = None
    source_text: str | None = None
    version: Literal["1"] = "1"

    def __init__(self, /, **data):
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise _pydantic_to_invalid(exc) from exc
        self.check()

    @classmethod
    def model_validate(cls, obj, *args, **kwargs):
        """Validate a dict (or a model); errors raise :class:`InvalidProblemError` with field paths."""
        if isinstance(obj, cls):
            return cls(**obj.model_dump())
        if not isinstance(obj, dict):
            raise InvalidProblemError(f"model: expected a JSON object, got {type(obj).__name__}")
        return cls(**obj)

    @classmethod
    def model_validate_json(cls, json_data, *args, **kwargs):
        try:
            obj = json.loads(json_data)
        except json.JSONDecodeError as exc:
            raise InvalidProblemError(f"model: invalid JSON ({exc})") from exc
        return cls.model_validate(obj)

    # ------------------------------------------------------------------------------------------ name resolution
    def name_index(self) -> dict[str, int]:
        """Map every variable name, and every unambiguous mention, to the variable's index."""
        idx: dict[str, int] = {}
        for i, v in enumerate(self.variables):
            idx.setdefault(v.name, i)
        owners: dict[str, set[int]] = {}
        for i, v in enumerate(self.variables):
            for m in v.mentions:
                owners.setdefault(m, set()).add(i)
        for m, s in owners.items():
            if m not in idx and len(s) == 1:
                idx[m] = next(iter(s))
        return idx

    def resolve(self, ref: str, path: str) -> int:
        """Index of the variable named (or mentioned as) ``ref``; InvalidProblemError naming ``path`` otherwise."""
        idx = self.name_index()
        if ref not in idx:
            raise InvalidProblemError(f"{path}: unknown variable {ref!r} (known: {[v.name for v in self.variables]})")
        return idx[ref]

    # ------------------------------------------------------------------------------------------------ validation
    def semantic_errors(self) -> list[dict]:
        """The list of semantic problems (section 3.6) as ``{"loc", "msg"}`` dictionaries; empty when valid."""
        errs: list[dict] = []

        def add(loc, msg):
            errs.append({"loc": loc, "msg": msg})

        def num(value, loc, *, optional=False):
            if value is None:
                if not optional:
                    add(loc, "number required")
                return None
            try:
                return to_number(value, loc)
            except InvalidProblemError as e:
                add(loc, str(e).split(": ", 1)[-1])
                return None

        if not self.variables:
            add("variables", "at least one variable is required")
        seen: dict[str, int] = {}
        for i, v in enumerate(self.variables):
            loc = f"variables[{i}]"
            if not v.name or not v.name.strip():
                add(f"{loc}.name", "empty variable name")
            elif len(v.name) > _MAX_NAME or not v.name.isprintable():
                add(f"{loc}.name", f"names must be <= {_MAX_NAME} printable characters")
            elif v.name.startswith("__"):
                add(f"{loc}.name", f"names starting with '__' are reserved for auxiliaries: {v.name!r}")
            if v.name in seen:
                add(f"{loc}.name", f"duplicate variable name {v.name!r} (also variables[{seen[v.name]}])")
            else:
                seen[v.name] = i
            lb = num(v.lb, f"{loc}.lb", optional=True)
            ub = num(v.ub, f"{loc}.ub", optional=True)
            if lb is not None and ub is not None and lb > ub:
                add(f"{loc}.lb", f"lb = {lb:g} exceeds ub = {ub:g}")
            if v.domain == "binary" and ((lb is not None and lb > 1) or (ub is not None and ub < 0)):
                add(f"{loc}.domain", "binary variable with bounds excluding {0, 1}")
        owners: dict[str, set[int]] = {}
        for i, v in enumerate(self.variables):
            for m in v.mentions:
                if m not in seen:
                    owners.setdefault(m, set()).add(i)
        for m, s in owners.items():
            if len(s) > 1:
                add(f"variables[{min(s)}].mentions", f"mention {m!r} is shared by variables {sorted(s)}")
        idx = self.name_index()
        names = [v.name for v in self.variables]

        def ref(r, loc, *, binary=False):
            if r not in idx:
                add(loc, f"unknown variable {r!r} (known: {names})")
                return None
            j = idx[r]
            if binary and self.variables[j].domain != "binary":
                add(loc, f"indicator {r!r} must be a binary variable (domain is {self.variables[j].domain!r})")
            return j

        o = self.objective
        for k, c in o.terms.items():
            ref(k, f"objective.terms[{k!r}]")
            num(c, f"objective.terms[{k!r}]")
        for i, r in enumerate(o.vars):
            ref(r, f"objective.vars[{i}]")
        num(o.constant, "objective.constant")
        if o.type == "objective" and not o.terms:
            add("objective.terms", "objective needs terms (or type 'objvar' with vars)")
        if o.type == "objvar" and not o.vars:
            add("objective.vars", "objvar objective needs at least one variable")

        for ci, c in enumerate(self.constraints):
            loc = f"constraints[{ci}]"
            t = c.type
            if t in ("sum", "upperbound", "lowerbound", "linear", "ratio"):
                lim = num(c.limit, f"{loc}.limit")
            if t in ("upperbound", "lowerbound", "ratio"):
                ref(c.var, f"{loc}.var")
            if t == "linear":
                # empty terms are allowed: the constant row 0 op limit (two NL4Opt dev gold rows have no terms)
                for k, a in c.terms.items():
                    ref(k, f"{loc}.terms[{k!r}]")
                    num(a, f"{loc}.terms[{k!r}]")
            elif t == "ratio":
                if lim is not None and not (0.0 <= lim <= 1.0):
                    add(f"{loc}.limit", f"ratio share must lie in [0, 1], got {c.limit!r}")
                if c.base is not None:
                    if not c.base:
                        add(f"{loc}.base", "empty base (use None for all variables)")
                    for i, r in enumerate(c.base):
                        ref(r, f"{loc}.base[{i}]")
            elif t in ("xby", "xy"):
                ref(c.x_var, f"{loc}.x_var")
                ref(c.y_var, f"{loc}.y_var")
                if t == "xby":
                    num(c.param, f"{loc}.param")
            elif t in ("activation", "min_lot"):
                ref(c.var, f"{loc}.var")
                ref(c.indicator, f"{loc}.indicator", binary=True)
                u = num(c.ub, f"{loc}.ub", optional=True)
                if t == "min_lot":
                    m = num(c.min, f"{loc}.min")
                    if m is not None and m < 0:
                        add(f"{loc}.min", f"minimum lot must be >= 0, got {c.min!r}")
                    if m is not None and u is not None and m > u:
                        add(f"{loc}.min", f"minimum lot {m:g} exceeds ub {u:g}")
            elif t == "implication":
                ref(c.if_var, f"{loc}.if_var", binary=True)
                ref(c.then_var, f"{loc}.then_var", binary=True)
            elif t in ("exclusion", "cardinality"):
                if not c.vars:
                    add(f"{loc}.vars", "at least one variable is required")
                for i, r in enumerate(c.vars):
                    ref(r, f"{loc}.vars[{i}]", binary=True)
                if t == "cardinality":
                    num(c.k, f"{loc}.k")
            elif t == "either_or":
                for side in ("first", "second"):
                    row = getattr(c, side)
                    if not row.terms:
                        add(f"{loc}.{side}.terms", "row needs at least one term")
                    for k, a in row.terms.items():
                        ref(k, f"{loc}.{side}.terms[{k!r}]")
                        num(a, f"{loc}.{side}.terms[{k!r}]")
                    num(row.limit, f"{loc}.{side}.limit")
                if c.indicator is not None:
                    ref(c.indicator, f"{loc}.indicator", binary=True)
            if c.confidence is not None and not (0.0 <= c.confidence <= 1.0 and math.isfinite(c.confidence)):
                add(f"{loc}.confidence", f"confidence must lie in [0, 1], got {c.confidence!r}")
        return errs

    def check(self) -> MILPModel:
        """Raise :class:`InvalidProblemError` (message naming every field path) unless the model is valid."""
        errs = self.semantic_errors()
        if errs:
            err = InvalidProblemError("; ".join(f"{e['loc']}: {e['msg']}" for e in errs))
            err.errors = errs
            raise err
        return self

    # ---------------------------------------------------------------------------------------------- conversions
    @classmethod
    def from_nl4opt(cls, record, *, integrality: str = "continuous") -> MILPModel:
        """Build the IR of an NL4Opt generation record; see :func:`from_nl4opt`."""
        return from_nl4opt(record, integrality=integrality)

    def to_nl4opt(self, include_extensions: bool = False) -> dict:
        """NL4Opt declaration dict of this model; see :func:`to_nl4opt`."""
        return _to_nl4opt(self, include_extensions)

    def to_linear_form(self, integrality: str = "ir"):
        """Compile to a :class:`~optkit.milp.build.LinearForm` (template rows, big-M, auxiliaries)."""
        from .build import to_linear_form

        return to_linear_form(self, integrality=integrality)

    @classmethod
    def wire_schema(cls) -> dict:
        """Flattened JSON schema for structured LLM output: no ``$ref``, no ``oneOf``, closed objects, all keys
        required (optional ones nullable)."""
        return wire_schema(cls)

    def copy_deep(self) -> MILPModel:
        return copy.deepcopy(self)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.model_dump(mode="json"), **kwargs)


# ------------------------------------------------------------------------------------------------------ wire schema
def wire_schema(model: type[BaseModel] = MILPModel) -> dict:
    """Flatten ``model.model_json_schema()``: inline ``$ref``, ``oneOf`` -> ``anyOf``, drop discriminators and
    defaults, ``additionalProperties: false`` on every fixed object, every property required (optional ones get
    ``null`` added to their types)."""
    raw = model.model_json_schema()
    defs = raw.get("$defs", {})

    def inline(node, depth=0):
        if depth > 50:  # pragma: no cover - the IR is not recursive
            raise RecursionError("schema too deep")
        if isinstance(node, list):
            return [inline(x, depth + 1) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            base = inline(defs[name], depth + 1)
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**base, **inline(rest, depth + 1)}
        out = {}
        for k, v in node.items():
            if k in ("$defs", "discriminator", "default", "title"):
                continue
            if k == "oneOf":
                k = "anyOf"
            if k == "properties":
                out[k] = {pk: inline(pv, depth + 1) for pk, pv in v.items()}
            else:
                out[k] = inline(v, depth + 1)
        if out.get("type") == "object" and "properties" in out:
            req = set(out.get("required", []))
            for pk, pv in out["properties"].items():
                if pk not in req and not _nullable(pv) and "const" not in pv:  # tags stay plain
                    out["properties"][pk] = {"anyOf": [pv, {"type": "null"}]}
            out["required"] = list(out["properties"])
            out["additionalProperties"] = False
        return out

    return inline(raw)


def _nullable(node: dict) -> bool:
    if node.get("type") == "null":
        return True
    if isinstance(node.get("type"), list) and "null" in node["type"]:
        return True
    return any(_nullable(x) for x in node.get("anyOf", []) if isinstance(x, dict))


# ------------------------------------------------------------------------------------------------------------ NL4Opt
#: ``integrality`` choices of :func:`from_nl4opt` (the variables' IR domain)
NL4OPT_INTEGRALITY = ("continuous", "all-integer")
_MAX_CUES = ("max", "high", "most", "great", "large")
_OPERATORS = ("LESS_OR_EQUAL", "GREATER_OR_EQUAL", "EQUAL")
#: NL4Opt fields of each template type, in the order NL4Opt writes them (``type`` and ``direction`` first)
_NL4OPT_FIELDS = {
    "sum": ("limit", "operator"),
    "upperbound": ("var", "limit", "operator"),
    "lowerbound": ("var", "limit", "operator"),
    "linear": ("limit", "terms", "operator"),
    "ratio": ("var", "limit", "operator"),
    "xby": ("x_var", "param", "y_var", "operator"),
    "xy": ("x_var", "y_var", "operator"),
}
_REF_FIELDS = ("var", "x_var", "y_var")


def sense_from_direction(direction) -> str:
    """Objective sense from NL4Opt's free-text direction: ``"maximize"`` if it contains max, high, most, great or
    large (case-insensitive), else ``"minimize"`` ("minimum", "lowest", "reduce", ..., and a missing direction)."""
    d = str(direction or "").lower()
    return "maximize" if any(c in d for c in _MAX_CUES) else "minimize"


def _unwrap_record(record) -> tuple[str | None, Mapping]:
    if not isinstance(record, Mapping):
        raise InvalidProblemError(f"record: expected an NL4Opt record (a dict), got {type(record).__name__}")
    if "obj_declaration" not in record and len(record) == 1:
        (key, inner), = record.items()
        if isinstance(inner, Mapping):
            return str(key), inner
    rid = record.get("id", record.get("_input_hash"))
    return (None if rid is None else str(rid)), record


def _nl4opt_groups(rec: Mapping) -> list[list[str]]:
    """Surface mentions of each variable, in variable-index order; the first mention is the variable's name.

    Sources, first present wins: ``order_mapping`` (mention -> index; indices must be 0..n-1), else
    ``first_var_to_mentions`` (a mention listed under two variables stays with the first), else ``vars``, else the
    names referenced by the declarations in order of appearance."""
    om = rec.get("order_mapping")
    if om:
        if not isinstance(om, Mapping):
            raise InvalidProblemError(f"order_mapping: expected an object, got {type(om).__name__}")
        groups: dict[int, list[str]] = {}
        for k, i in om.items():
            if isinstance(i, bool) or not isinstance(i, int) or not isinstance(k, str):
                raise InvalidProblemError(f"order_mapping[{k!r}]: expected a string key and an integer index, got {i!r}")
            groups.setdefault(i, []).append(k)
        if sorted(groups) != list(range(len(groups))):
            raise InvalidProblemError(f"order_mapping: variable indices must be 0..n-1, got {sorted(groups)}")
        return [groups[i] for i in range(len(groups))]
    fv = rec.get("first_var_to_mentions")
    if fv:
        if not isinstance(fv, Mapping):
            raise InvalidProblemError(f"first_var_to_mentions: expected an object, got {type(fv).__name__}")
        seen: set[str] = set()
        out = []
        for first, ms in fv.items():
            g = [m for m in dict.fromkeys([first, *(ms or [])]) if isinstance(m, str) and m not in seen]
            if first in seen or not g:
                raise InvalidProblemError(f"first_var_to_mentions[{first!r}]: mention already used by another variable")
            seen.update(g)
            out.append(g)
        return out
    names = rec.get("vars")
    if not names:
        names = []
        obj = rec.get("obj_declaration") or {}
        if isinstance(obj, Mapping):
            names += list(obj.get("terms") or {}) + list(obj.get("vars") or [])
        for c in rec.get("const_declarations") or []:
            if isinstance(c, Mapping):
                names += list(c.get("terms") or {}) + [c[f] for f in _REF_FIELDS if f in c]
    if not isinstance(names, list):
        raise InvalidProblemError(f"vars: expected a list of names, got {type(names).__name__}")
    return [[n] for n in dict.fromkeys(names)]


def from_nl4opt(record, *, integrality: str = "continuous") -> MILPModel:
    """Build a :class:`MILPModel` from an NL4Opt generation record (spec milp 2, 3.2, 5).

    ``record``: a record dict (as from :func:`optkit.milp.datasets.load_nl4opt_generation`, or the output of
    :func:`to_nl4opt`) or a raw ``{"<input_hash>": record}`` line. Needs ``obj_declaration``;
    ``const_declarations`` defaults to none.

    * **Variables**: one per variable index of ``order_mapping`` (else ``first_var_to_mentions``, else ``vars``,
      else the names the declarations use). ``mentions`` = every surface mention of that index (aliases
      included, in mapping order); ``name`` = the first of them (NL4Opt's first mention, ``vars[i]``). The
      mapping is authoritative: the declarations' names are kept as written and resolve through the mentions.
    * **Domain**: NL4Opt annotates no integrality, so the default ``integrality="continuous"`` gives continuous
      variables (``domain_source="default"``) and the integrality policy is chosen when solving (the NL4Opt
      headline is ``solve(..., integrality="all-integer")``). ``integrality="all-integer"`` writes integer domains
      into the IR instead (``domain_source="default"``), so that ``integrality="ir"`` solves it as a MILP.
    * **Objective**: ``objective`` (terms) or ``objvar`` (``vars``; an empty list falls back to the record's
      top-level ``vars``, as the official scorer reads it; empty ``terms`` become explicit zero coefficients, with a
      ``UserWarning``, since an IR objective needs terms). Sense from the free-text ``direction``
      (:func:`sense_from_direction`); ``direction`` and ``name`` are kept.
    * **Constraints**: the seven NL4Opt types with NL4Opt's field names, the ``operator`` and the free-text
      ``direction``; ``ratio.limit`` is a share of the sum of all variables (``base`` is read when present).
      Extension types written by ``to_nl4opt(include_extensions=True)`` are read back, as is its ``variables``
      list (domains and bounds).
    * **Numbers** stay the raw strings of the record; each is checked with the strict parser
      (:func:`optkit.milp.numbers.parse_number`) and a failure raises :class:`InvalidProblemError` naming the
      record field (``const_declarations[2].terms['chairs']``) and the raw text, never 0.

    The record is not modified. Raises ``ValueError`` for an unknown ``integrality``.
    """
    if integrality not in NL4OPT_INTEGRALITY:
        raise ValueError(f"integrality: expected one of {NL4OPT_INTEGRALITY}, got {integrality!r}")
    rid, rec = _unwrap_record(record)
    obj = rec.get("obj_declaration")
    if not isinstance(obj, Mapping):
        raise InvalidProblemError("obj_declaration: missing or not an object")
    cons = rec.get("const_declarations")
    if cons is None:
        cons = []
    if not isinstance(cons, list):
        raise InvalidProblemError(f"const_declarations: expected a list, got {type(cons).__name__}")

    ext_vars = rec.get("variables")
    if isinstance(ext_vars, list) and ext_vars and all(isinstance(v, Mapping) for v in ext_vars):
        variables = [dict(v) for v in ext_vars]
    else:
        domain = "integer" if integrality == "all-integer" else "continuous"
        variables = [{"name": g[0], "domain": domain, "mentions": list(g), "domain_source": "default"}
                     for g in _nl4opt_groups(rec)]
    known: set[str] = set()
    for v in variables:
        known.add(v.get("name"))
        known.update(v.get("mentions") or [])
    var_names = [v.get("name") for v in variables]

    def ref(name, path):
        if not isinstance(name, str):
            raise InvalidProblemError(f"{path}: expected a variable name, got {name!r}")
        if name not in known:
            raise InvalidProblemError(f"{path}: unknown variable {name!r} (variables: {var_names})")
        return name

    def num(raw, path):
        if raw is None:
            raise InvalidProblemError(f"{path}: number required")
        to_number(raw, path)  # strict parse now, so the error names the record field
        return raw if isinstance(raw, str) else float(raw)

    def terms(d, path):
        if not isinstance(d, Mapping):
            raise InvalidProblemError(f"{path}: expected an object of name -> coefficient")
        return {ref(k, f"{path}[{k!r}]"): num(a, f"{path}[{k!r}]") for k, a in d.items()}

    def operator(c, path, default=None):
        op = c.get("operator", default)
        if isinstance(op, str):
            op = op.strip()
        if op not in _OPERATORS:
            raise InvalidProblemError(f"{path}.operator: expected one of {_OPERATORS}, got {op!r}")
        return op

    # objective
    otype = obj.get("type") or ("objective" if "terms" in obj else "objvar")
    direction = obj.get("direction")
    objective: dict[str, Any] = {"type": otype, "sense": sense_from_direction(direction), "direction": direction,
                                 "name": obj.get("name")}
    if otype == "objective":
        objective["terms"] = terms(obj.get("terms"), "obj_declaration.terms")
        if not objective["terms"]:  # an unannotated objective (one NL4Opt dev gold record): explicit zeros
            warnings.warn("obj_declaration.terms: empty; read as coefficient 0 for every variable (a zero "
                          "objective)", UserWarning, stacklevel=3)
            objective["terms"] = {v.get("name"): 0.0 for v in variables}
    elif otype == "objvar":
        names = obj.get("vars") or rec.get("vars") or []
        if not isinstance(names, list):
            raise InvalidProblemError("obj_declaration.vars: expected a list of names")
        objective["vars"] = [ref(n, f"obj_declaration.vars[{i}]") for i, n in enumerate(names)]
    else:
        raise InvalidProblemError(f"obj_declaration.type: expected 'objective' or 'objvar', got {otype!r}")
    if obj.get("constant") is not None:
        objective["constant"] = num(obj["constant"], "obj_declaration.constant")

    # constraints
    constraints = []
    for ci, c in enumerate(cons):
        path = f"const_declarations[{ci}]"
        if not isinstance(c, Mapping):
            raise InvalidProblemError(f"{path}: expected an object, got {type(c).__name__}")
        t = c.get("type")
        if t in LOGIC_TYPES:
            constraints.append(dict(c))
            continue
        if t not in _NL4OPT_FIELDS:
            raise InvalidProblemError(
                f"{path}.type: unknown constraint type {t!r} (expected one of {TEMPLATE_TYPES + LOGIC_TYPES})")
        out: dict[str, Any] = {"type": t}
        if c.get("direction") is not None:
            out["direction"] = c["direction"]
        for f in _NL4OPT_FIELDS[t]:
            if f == "operator":
                out[f] = operator(c, path, {"upperbound": "LESS_OR_EQUAL", "lowerbound": "GREATER_OR_EQUAL"}.get(t))
            elif f == "terms":
                out[f] = terms(c.get("terms"), f"{path}.terms")
            elif f in _REF_FIELDS:
                out[f] = ref(c.get(f), f"{path}.{f}")
            else:
                out[f] = num(c.get(f), f"{path}.{f}")
        if t == "ratio" and not 0.0 <= to_number(out["limit"], f"{path}.limit") <= 1.0:
            raise InvalidProblemError(f"{path}.limit: ratio share must lie in [0, 1], got {out['limit']!r}")
        if t == "ratio" and c.get("base") is not None:
            base = c["base"]
            if not isinstance(base, list):
                raise InvalidProblemError(f"{path}.base: expected a list of names")
            out["base"] = [ref(n, f"{path}.base[{i}]") for i, n in enumerate(base)]
        for f in ("id", "text", "confidence"):
            if c.get(f) is not None:
                out[f] = c[f]
        constraints.append(out)
    doc = rec.get("document")
    return MILPModel(variables=variables, objective=objective, constraints=constraints, name=rid,
                     source_text=doc if isinstance(doc, str) else None)


def _nl4opt_number(value):
    """NL4Opt writes numbers as strings: raw text is kept, floats are written shortest-exact (200.0 -> "200")."""
    if isinstance(value, str):
        return value
    r = repr(float(value))
    return r[:-2] if r.endswith(".0") else r


def to_nl4opt(model: MILPModel, include_extensions: bool = False) -> dict:
    """NL4Opt declaration dict of ``model``: ``obj_declaration``, ``const_declarations`` (NL4Opt field names,
    numbers as strings, raw text kept), ``order_mapping`` (every name and mention -> variable index) and ``vars``
    (the variable names). The result scores with :func:`optkit.milp.scoring.nl4opt_score` and reads back with
    :func:`from_nl4opt`.

    NL4Opt cannot express the logic constraints (``activation`` ... ``either_or``), a ratio ``base``, an objective
    ``constant``, domains or bounds. With ``include_extensions=False`` (default) they are left out and a
    ``UserWarning`` lists what was dropped (domains and default bounds are dropped silently: NL4Opt has no
    integrality and every variable is >= 0). With ``include_extensions=True`` they are written too: logic
    constraints as their IR dicts, ``base``, ``constant`` and a top-level ``variables`` list; the official scorer
    rejects the unknown constraint types, so use it only for optkit's own round trips. ``EQUAL`` operators are
    written as ``"EQUAL"`` either way.
    """
    return _to_nl4opt(model, include_extensions)


def _to_nl4opt(model: MILPModel, include_extensions: bool) -> dict:
    if not isinstance(model, MILPModel):
        raise TypeError(f"model: expected a MILPModel, got {type(model).__name__}")
    model.check()
    order_mapping: dict[str, int] = {}
    for i, v in enumerate(model.variables):
        order_mapping.setdefault(v.name, i)
    for i, v in enumerate(model.variables):
        for m in v.mentions:
            order_mapping.setdefault(m, i)
    dropped: list[str] = []

    o = model.objective
    direction = o.direction if o.direction is not None and sense_from_direction(o.direction) == o.sense else o.sense
    obj: dict[str, Any] = {"type": o.type, "direction": direction}
    if o.name is not None:
        obj["name"] = o.name
    if o.type == "objective":
        obj["terms"] = {k: _nl4opt_number(a) for k, a in o.terms.items()}
    else:
        obj["vars"] = list(o.vars)
    if to_number(o.constant, "objective.constant") != 0.0:
        if include_extensions:
            obj["constant"] = _nl4opt_number(o.constant)
        else:
            dropped.append("objective.constant")

    cons = []
    for ci, c in enumerate(model.constraints):
        if c.type in LOGIC_TYPES:
            if include_extensions:
                cons.append(c.model_dump(mode="json", exclude_none=True))
            else:
                dropped.append(f"constraints[{ci}] ({c.type})")
            continue
        out: dict[str, Any] = {"type": c.type}
        if c.direction is not None:
            out["direction"] = c.direction
        for f in _NL4OPT_FIELDS[c.type]:
            val = getattr(c, f)
            if f == "terms":
                out[f] = {k: _nl4opt_number(a) for k, a in val.items()}
            elif f in _REF_FIELDS or f == "operator":
                out[f] = val
            else:
                out[f] = _nl4opt_number(val)
        if c.type == "ratio" and c.base is not None:
            if include_extensions:
                out["base"] = list(c.base)
            else:
                dropped.append(f"constraints[{ci}].base")
        if include_extensions:
            for f in ("id", "text", "confidence"):
                if getattr(c, f) is not None:
                    out[f] = getattr(c, f)
        cons.append(out)
    if dropped:
        warnings.warn(f"to_nl4opt: NL4Opt cannot express {', '.join(dropped)}; dropped "
                      "(pass include_extensions=True to keep them)", UserWarning, stacklevel=3)
    out = {"obj_declaration": obj, "const_declarations": cons, "order_mapping": order_mapping,
           "vars": [v.name for v in model.variables]}
    if include_extensions:
        out["variables"] = [v.model_dump(mode="json") for v in model.variables]
    return out
