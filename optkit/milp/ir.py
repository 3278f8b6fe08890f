"""Typed MILP intermediate representation (spec milp, sections 3.2, 3.6 and 5).

The IR is a set of pydantic v2 models (``extra="forbid"``): :class:`Variable`, :class:`Objective`, the constraint
classes discriminated on ``type`` and :class:`MILPModel`. Numbers may be given as floats or as strings; strings are
kept as written (the raw text) and parsed by :func:`to_number` when the model is validated or compiled.

Every validation failure, pydantic's or the semantic checks of section 3.6, raises
:class:`~optkit.InvalidProblemError` whose message names the field path (``constraints[2].terms['chairs']``); the
individual problems are in its ``errors`` attribute as ``{"loc": ..., "msg": ...}`` dictionaries.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .._errors import InvalidProblemError

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
def to_number(value: Any, path: str) -> float:
    """Turn an IR number (float or string) into a finite float, or raise naming ``path`` and the raw text.

    Strings are parsed with :func:`float` only (surrounding blanks allowed); the full numeral parser of section
    3.4.3 replaces this function's string branch.
    """
    if isinstance(value, bool):
        raise InvalidProblemError(f"{path}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            raise InvalidProblemError(f"{path}: cannot parse a number from {value!r}") from None
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
    """sum terms[v] x_v op limit; unmentioned variables get coefficient 0."""

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
                if not c.terms:
                    add(f"{loc}.terms", "linear constraint needs at least one term")
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
