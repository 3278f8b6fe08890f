"""``formulate``: text (or an NL4Opt record) -> validated MILP IR -> HiGHS solution (spec milp 3.1, 3.4, 3.5, 3.7, 5).

* ``backend="rules"`` (offline): tokenise -> CRF tagger (or gold spans) -> grouping -> rules
  (:func:`optkit.milp.extract.rules.formulate_from_spans`) -> domains (3.4 item 10) -> :func:`solve`.
* An LLM backend, ``pipeline="three-phase"``: phase 1 variables (JSON), phase 2 objective and constraint
  statements with slots (JSON, variable names as an enum), phase 3 deterministic slots -> IR
  (:func:`statements_to_ir`). ``classify="rules"`` is the hybrid: LLM variables, offline rules.
  ``pipeline="one-step"``: the whole IR in one reply. Prompts live in :mod:`optkit.milp.prompts`; replies are
  validated and repaired by :func:`optkit.milp.llm.request_ir`; nothing the LLM returns is executed.
* After solving, :func:`optkit.milp.selfcheck.diagnose`; with an LLM, the self-check loop of 3.7.

:class:`Formulator` (``init / step / run``) is the one implementation; :func:`formulate` runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

import pydantic

from .._errors import InvalidProblemError
from .._logging import get_logger
from .._result import Result, Status
from . import prompts
from .extract.grouping import normalize_mention
from .extract.postprocess import bio_to_spans, propagate_var_mentions, repair_spans, tagger_spans
from .ir import MILPModel, Variable
from .llm import as_backend, request_ir
from .selfcheck import Diagnostic

__all__ = ["FormulationResult", "FormulationState", "Formulator", "VariableStatement", "Diagnostic", "formulate",
           "infer_domains", "statements_to_ir"]

log = get_logger("milp.formulate")

_ENTITIES = (None, "tagger", "gold", "gold-spans")
_PIPELINES = ("three-phase", "one-step")
_CLASSIFY = ("auto", "llm", "rules")
#: replies of a few-variable IR fit easily; the wire schema's explicit nulls make them longer than NL4Opt JSON
_MAX_TOKENS = 4096
_INTEGRALITY = ("auto", "ir", "all-integer", "continuous")
_TAGGER = None

# 3.4 item 10: amount words (prefix match on lowercase words) -> continuous.
_AMOUNT = ("$", "dollar", "money", "invest", "kg", "kilogram", "gram", "pound", "lb", "ton", "litre", "liter",
           "ml", "gallon", "hour", "minute", "acre", "hectare", "metre", "meter", "km", "mile", "square", "percent",
           "amount", "volume", "weight", "fraction", "portion", "fund", "budget", "capital", "cash", "saving")
_BINARY_CUES = ("whether", "open or not", "or not")


@dataclasses.dataclass(repr=False)
class FormulationResult(Result):
    """Outcome of :func:`formulate`: ``model`` (MILPModel or None), ``solution`` (MILPResult or None), ``x``/``fun``
    /``status`` from the solve (CONVERGED with ``solve=False`` and a valid IR; ERROR when no valid IR, with an LLM's
    last validation errors in ``extra["errors"]``), ``diagnostics`` (pipeline notes, then the self-check of the
    final model), ``phases`` (seconds per phase and ``total``), ``n_llm_calls``, ``n_repairs`` (follow-up
    messages after invalid replies), ``n_self_check_rounds``; ``backend`` is ``"rules"`` or ``"llm"`` (then
    ``extra["pipeline"]`` and ``extra["classify"]``)."""

    model: Any = None
    solution: Any = None
    diagnostics: list = dataclasses.field(default_factory=list)
    phases: dict = dataclasses.field(default_factory=dict)
    n_llm_calls: int = 0
    n_repairs: int = 0
    n_self_check_rounds: int = 0


def _tagger():
    global _TAGGER
    if _TAGGER is None:
        from .extract.crf import load_tagger

        _TAGGER = load_tagger()
    return _TAGGER


def _offline_spans(words: list[str]) -> list[dict]:
    """The fully offline entity stage of the rules backend (CRF spans and their post-processing)."""
    return tagger_spans(words, _tagger())


def _unwrap(text):
    """(record or None, document string)."""
    if isinstance(text, Mapping):
        rec = text
        if "document" not in rec and len(rec) == 1:
            (_, inner), = rec.items()
            if isinstance(inner, Mapping):
                rec = inner
        doc = rec.get("document")
        if not isinstance(doc, str):
            raise InvalidProblemError("text['document']: an NL4Opt record needs a 'document' string")
        return rec, doc
    if not isinstance(text, str):
        raise InvalidProblemError(f"text: expected a str or an NL4Opt record, got {type(text).__name__}")
    return None, text


def _is_amount(words) -> bool:
    return any(w.startswith(a) for w in words for a in _AMOUNT)


def infer_domains(model: MILPModel, document: str = "") -> MILPModel:
    """Spec 3.4 item 10: continuous for amount words in a variable's name/mentions, binary for a "whether"/
    "or not" sentence naming it without a number, else integer; ``domain_source="inferred"``."""
    sents = re.split(r"(?<=[.?!])\s+", document.lower()) if document else []
    new_vars = []
    for v in model.variables:
        words = [w for m in [v.name, *v.mentions] for w in normalize_mention(m)]
        if v.unit:
            words.append(v.unit.lower())
        if _is_amount(words):
            dom = "continuous"
        else:
            dom = "integer"
            heads = {" ".join(normalize_mention(m)) for m in [v.name, *v.mentions]}
            for s in sents:
                if any(c in s for c in _BINARY_CUES) and not re.search(r"\d", s) and any(h and h in s for h in heads):
                    dom = "binary"
                    break
        new_vars.append(v.model_copy(update={"domain": dom, "domain_source": "inferred"}))
    return model.model_copy(update={"variables": new_vars})


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")


# ------------------------------------------------------------------------------------------------ phase-1 replies
class VariableStatement(pydantic.BaseModel):
    """One decision variable of the phase-1 reply: ``lb=None`` reads as 0 (non-negativity is implicit)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    mentions: list[str] = pydantic.Field(default_factory=list)
    domain: Literal["continuous", "integer", "binary"] = "continuous"
    domain_reason: str | None = None
    unit: str | None = None
    lb: float | str | None = None
    ub: float | str | None = None

    @pydantic.field_validator("mentions", mode="before")
    @classmethod
    def _null_mentions(cls, v):
        return [] if v is None else v

    def to_variable(self) -> Variable:
        mentions = [m.strip() for m in self.mentions if m.strip() and m.strip() != self.name]
        return Variable(name=self.name, domain=self.domain, lb=0.0 if self.lb is None else self.lb, ub=self.ub,
                        unit=self.unit, mentions=list(dict.fromkeys(mentions)), domain_source="inferred")


class _VariablesReply(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    variables: list[VariableStatement]


def _invalid(errors: list[dict]) -> InvalidProblemError:
    err = InvalidProblemError("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
    err.errors = errors
    return err


def _validate_variables(obj) -> list[VariableStatement]:
    """Phase-1 check: pydantic shape, then the IR's own variable rules (unique printable names, bounds, mentions
    not shared), so the repair message carries IR field paths such as ``variables[1].name``."""
    reply = _VariablesReply.model_validate(obj)
    if not reply.variables:
        raise _invalid([{"loc": "variables", "msg": "no decision variable found; list at least one"}])
    names = [v.name for v in reply.variables]
    MILPModel(variables=[v.to_variable().model_dump() for v in reply.variables],
              objective={"type": "objvar", "vars": list(dict.fromkeys(names))})
    return list(reply.variables)


# ------------------------------------------------------------------------------------------ phase 2 -> phase 3
_OPS = {"<=": "LESS_OR_EQUAL", "=<": "LESS_OR_EQUAL", "\u2264": "LESS_OR_EQUAL", "le": "LESS_OR_EQUAL",
        ">=": "GREATER_OR_EQUAL", "=>": "GREATER_OR_EQUAL", "\u2265": "GREATER_OR_EQUAL", "ge": "GREATER_OR_EQUAL",
        "=": "EQUAL", "==": "EQUAL", "eq": "EQUAL",
        "less_or_equal": "LESS_OR_EQUAL", "greater_or_equal": "GREATER_OR_EQUAL", "equal": "EQUAL"}
# (required slots, optional slots) per class; upper/lower bounds default their operator as NL4Opt does, every
# other operator must be stated: a guessed direction would be a silent wrong model
_SLOTS = {
    "sum": (("limit", "operator"), ()),
    "upperbound": (("var", "limit"), ("operator",)),
    "lowerbound": (("var", "limit"), ("operator",)),
    "linear": (("terms", "limit", "operator"), ()),
    "ratio": (("var", "limit", "operator"), ("base",)),
    "xby": (("x_var", "param", "y_var", "operator"), ()),
    "xy": (("x_var", "y_var", "operator"), ()),
    "activation": (("var", "indicator"), ("ub",)),
    "min_lot": (("var", "indicator", "min"), ("ub",)),
    "implication": (("if_var", "then_var"), ()),
    "exclusion": (("vars",), ()),
    "cardinality": (("vars", "k", "operator"), ()),
    "either_or": (("first", "second"), ("indicator",)),
}


# spellings a model writes without a schema (prompt-only servers) for the same class
_CLASS_ALIASES = {"upper_bound": "upperbound", "lower_bound": "lowerbound", "minlot": "min_lot",
                  "minimum_lot": "min_lot", "eitheror": "either_or", "x_by": "xby", "x_y": "xy"}


def _operator(value, loc, errs):
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in _OPS:
        errs.append({"loc": loc, "msg": f"operator must be one of {list(prompts.OPERATORS)}, got {value!r}"})
        return None
    return _OPS[key]


def _terms(value, loc, errs) -> dict | None:
    """``[{"var", "coef"}]`` (the schema's form) or ``{name: coef}`` -> ``{name: coef}``."""
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, list):
        errs.append({"loc": loc, "msg": "expected a list of {\"var\": name, \"coef\": number}"})
        return None
    out: dict = {}
    for j, t in enumerate(value):
        if not isinstance(t, Mapping) or not isinstance(t.get("var"), str) or "coef" not in t:
            errs.append({"loc": f"{loc}[{j}]", "msg": "expected {\"var\": name, \"coef\": number}"})
            continue
        if t["var"] in out:
            errs.append({"loc": f"{loc}[{j}].var", "msg": f"variable {t['var']!r} listed twice"})
            continue
        out[t["var"]] = t["coef"]
    return out


def _parse_statements(obj) -> list[dict]:
    """Phase-2 reply -> ``[objective statement, *constraint statements]`` (plain dicts), shape errors raised with
    reply paths (``constraints[2].class``)."""
    if not isinstance(obj, Mapping):
        raise _invalid([{"loc": "reply", "msg": "expected a JSON object"}])
    errs = [{"loc": str(k), "msg": "unexpected key"} for k in obj if k not in ("objective", "constraints")]
    objective = obj.get("objective")
    if not isinstance(objective, Mapping):
        errs.append({"loc": "objective", "msg": "expected an object {class, sense, name, terms, vars}"})
    cons = obj.get("constraints")
    cons = [] if cons is None else cons
    if not isinstance(cons, list):
        errs.append({"loc": "constraints", "msg": "expected a list"})
        cons = []
    out = [dict(objective) if isinstance(objective, Mapping) else {}]
    for i, c in enumerate(cons):
        if not isinstance(c, Mapping):
            errs.append({"loc": f"constraints[{i}]", "msg": "expected an object {class, text, slots}"})
            continue
        cls = c.get("class")
        if isinstance(cls, str):
            cls = cls.strip().lower().replace("-", "_").replace(" ", "_")
            cls = _CLASS_ALIASES.get(cls, cls)
        if not isinstance(cls, str) or cls not in _SLOTS:
            errs.append({"loc": f"constraints[{i}].class", "msg": f"expected one of {list(prompts.CLASSES)}, "
                                                                 f"got {cls!r}"})
        slots = c.get("slots")
        if slots is not None and not isinstance(slots, Mapping):
            errs.append({"loc": f"constraints[{i}].slots", "msg": "expected an object"})
        extra = [k for k in c if k not in ("class", "text", "slots")]
        errs += [{"loc": f"constraints[{i}].{k}", "msg": "unexpected key"} for k in extra]
        out.append({"class": cls,
                    "text": c.get("text") if isinstance(c.get("text"), str) else None,
                    "slots": dict(slots) if isinstance(slots, Mapping) else {}})
    if errs:
        raise _invalid(errs)
    return out


def _objective_ir(o: dict, errs: list) -> dict:
    cls = o.get("class") or ("objective" if o.get("terms") else "objvar")
    cls = cls if isinstance(cls, str) else repr(cls)
    sense = o.get("sense")
    if isinstance(sense, str):
        sense = {"max": "maximize", "min": "minimize"}.get(sense.strip().lower(), sense.strip().lower())
    out = {"type": cls, "sense": sense, "name": o.get("name") if isinstance(o.get("name"), str) else None}
    if cls == "objective":
        out["terms"] = _terms(o.get("terms"), "objective.terms", errs) or {}
    elif cls == "objvar":
        out["vars"] = o.get("vars") or []
    else:
        errs.append({"loc": "objective.class", "msg": f"expected 'objective' or 'objvar', got {cls!r}"})
    return out


def _constraint_ir(i: int, s: dict, errs: list) -> dict | None:
    cls, slots = s["class"], s["slots"]
    loc = f"constraints[{i}].slots"
    required, optional = _SLOTS[cls]
    out: dict[str, Any] = {"type": cls}
    if s.get("text"):
        out["text"] = s["text"]
    ok = True
    for k in required + optional:
        v = slots.get(k)
        if v is None:
            if k in required:
                errs.append({"loc": f"{loc}.{k}", "msg": f"required for class {cls!r}"})
                ok = False
            continue
        if k == "operator":
            v = _operator(v, f"{loc}.operator", errs)
        elif k == "terms":
            v = _terms(v, f"{loc}.terms", errs)
        elif k in ("first", "second"):
            if not isinstance(v, Mapping):
                errs.append({"loc": f"{loc}.{k}", "msg": "expected a row {terms, operator, limit}"})
                v = None
            else:
                row_errs_before = len(errs)
                row = {"terms": _terms(v.get("terms"), f"{loc}.{k}.terms", errs),
                       "operator": _operator(v.get("operator"), f"{loc}.{k}.operator", errs),
                       "limit": v.get("limit")}
                v = row if len(errs) == row_errs_before else None
        if v is None:
            ok = False
            continue
        out[k] = v
    return out if ok else None


def _slot_loc(loc: str) -> str:
    """IR path -> phase-2 reply path: ``constraints[2].limit`` -> ``constraints[2].slots.limit``."""
    m = re.match(r"^(constraints\[\d+\])\.(.+)$", loc)
    if m and not m.group(2).startswith(("type", "text")):
        return f"{m.group(1)}.slots.{m.group(2)}"
    return loc


def statements_to_ir(statements: list[dict], variables: list[Variable], document: str | None = None) -> MILPModel:
    """Phase 3 (spec 3.1, deterministic): phase-1 variables and phase-2 statements (``[objective, *constraints]``)
    -> a validated :class:`MILPModel`. Raises :class:`InvalidProblemError` whose ``errors`` use the phase-2 reply's
    paths (``constraints[1].slots.limit``)."""
    errs: list[dict] = []
    objective = _objective_ir(statements[0], errs)
    constraints = [_constraint_ir(i, s, errs) for i, s in enumerate(statements[1:])]
    if errs:
        raise _invalid(errs)
    try:
        return MILPModel(variables=[v.model_dump() for v in variables], objective=objective,
                         constraints=constraints, source_text=document)
    except InvalidProblemError as exc:
        errors = getattr(exc, "errors", None) or [{"loc": "model", "msg": str(exc)}]
        raise _invalid([{"loc": _slot_loc(e["loc"]), "msg": e["msg"]} for e in errors]) from None


# -------------------------------------------------------------------------------------------- hybrid entities
def _llm_var_spans(words: list[str], variables: list[VariableStatement], tagged: list[dict]):
    """VAR spans at every occurrence of an LLM mention (case-insensitive token match, longest mention first, no
    overlap with tagger numbers), plus the tagger's other spans that do not overlap them; an ``order_mapping``
    with each variable's name first (so the rules keep the LLM's names), then the surface texts."""
    from .extract.tokenize import tokenize

    lw = [w.lower() for w in words]
    numbers = {j for s in tagged if s["label"] in ("PARAM", "LIMIT")
               for j in range(s["token_start"], s["token_end"] + 1)}
    cands = []
    for i, v in enumerate(variables):
        for m in dict.fromkeys([*v.mentions, v.name.replace("_", " ")]):
            toks = tuple(t.text.lower() for t in tokenize(m))
            if toks:
                cands.append((len(toks), i, toks))
    cands.sort(key=lambda c: -c[0])
    order_mapping = {v.name: i for i, v in enumerate(variables)}
    used: set[int] = set()
    var_spans = []
    for n, i, toks in cands:
        for a in range(len(words) - n + 1):
            if tuple(lw[a:a + n]) == toks and not any(j in used or j in numbers for j in range(a, a + n)):
                text = " ".join(words[a:a + n])
                var_spans.append({"label": "VAR", "token_start": a, "token_end": a + n - 1, "text": text})
                used.update(range(a, a + n))
                order_mapping.setdefault(text, i)
    others = [dict(s) for s in tagged if s["label"] != "VAR"
              and not any(j in used for j in range(s["token_start"], s["token_end"] + 1))]
    spans = sorted(var_spans + others, key=lambda s: (s["token_start"], s["token_end"]))
    found = {order_mapping[s["text"]] for s in var_spans}
    return spans, order_mapping, [v.name for i, v in enumerate(variables) if i not in found]


# ---------------------------------------------------------------------------------------------- diagnostics
def _fallback_diagnose(model, *, solution=None, integrality="ir", inferred=False):
    """Used only when :func:`optkit.milp.selfcheck.diagnose` cannot be imported: status-level errors without
    the infeasible subset."""
    if solution is None:
        return []
    if solution.status == Status.INFEASIBLE:
        return [Diagnostic("infeasible", "error", "the model is infeasible", list(range(len(model.constraints))))]
    if solution.status == Status.UNBOUNDED:
        return [Diagnostic("unbounded", "error", "the model is unbounded")]
    return []


def _diagnose_fn():
    try:
        from .selfcheck import diagnose
    except ImportError:  # pragma: no cover - selfcheck.diagnose ships with the package
        return _fallback_diagnose
    return diagnose


def _error_key(d) -> tuple:
    return (d.code, tuple(sorted(d.constraints or [])), tuple(sorted(getattr(d, "variables", None) or [])))


def _same_error(a, b) -> bool:
    """Whether ``b`` is still the error ``a``: same code, and a shared variable when both name variables (an
    infeasible subset may move to other constraint indices after a revision)."""
    if a.code != b.code:
        return False
    va, vb = set(getattr(a, "variables", None) or []), set(getattr(b, "variables", None) or [])
    return not va or not vb or bool(va & vb)


def _ir_hash(model: MILPModel) -> str:
    blob = json.dumps(model.model_dump(mode="json", exclude={"source_text", "name"}), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------- state
@dataclasses.dataclass(repr=False)
class FormulationState:
    """Where a :class:`Formulator` run stands (spec milp 5; lists of pydantic objects and dicts, not arrays: a
    deliberate deviation from DESIGN 2, since the pipeline works on text).

    ``text`` (the document), ``record`` (the NL4Opt record or None), ``mode`` (``"rules"``, ``"llm"`` (three-phase),
    ``"hybrid"`` (LLM variables, rules classification) or ``"one-step"``), ``phase`` (last phase run), ``pending``
    (phases still to run; empty when done), ``tokens``/``spans`` (offline entities), ``variables`` (phase-1
    :class:`VariableStatement` objects, or the IR's :class:`~optkit.milp.ir.Variable` objects once built),
    ``statements`` (phase 2: ``[objective, *constraints]`` dicts), ``model`` (the IR), ``solution``,
    ``diagnostics`` (pipeline notes: rules warnings, self-check decisions), ``check`` (the self-check diagnostics of
    the current ``model``), ``timings``, the LLM counters, ``status``/``message``/``errors``.

    ``state["phase"]`` works like ``state.phase`` (callbacks written for the earlier dict form keep working).
    """

    text: str
    record: Any = None
    mode: str = "rules"
    phase: str | None = None
    pending: list = dataclasses.field(default_factory=list)
    tokens: list = dataclasses.field(default_factory=list)
    spans: list = dataclasses.field(default_factory=list)
    variables: list = dataclasses.field(default_factory=list)
    statements: list = dataclasses.field(default_factory=list)
    model: Any = None
    solution: Any = None
    diagnostics: list = dataclasses.field(default_factory=list)
    check: list = dataclasses.field(default_factory=list)
    timings: dict = dataclasses.field(default_factory=dict)
    n_llm_calls: int = 0
    n_repairs: int = 0
    n_self_check_rounds: int = 0
    status: Status | None = None
    message: str = ""
    errors: list = dataclasses.field(default_factory=list)
    order_mapping: dict | None = None
    started: float = dataclasses.field(default_factory=time.perf_counter)
    seen_models: set = dataclasses.field(default_factory=set)
    attempted: set = dataclasses.field(default_factory=set)

    @property
    def done(self) -> bool:
        return not self.pending

    @property
    def ir(self):
        return self.model

    def __getitem__(self, key: str):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __repr__(self) -> str:
        model = "None" if self.model is None else f"<{len(self.model.variables)} variables, " \
                                                   f"{len(self.model.constraints)} constraints>"
        return (f"FormulationState(mode={self.mode!r}, phase={self.phase!r}, pending={self.pending}, "
                f"status={None if self.status is None else self.status.name}, model={model})")


# --------------------------------------------------------------------------------------------------- driver
class Formulator:
    """The formulation pipeline with ``init / step / run`` (spec milp 3.1, 3.5, 3.7, 5).

    Options as in :func:`formulate`. ``init(text)`` validates the text and returns a :class:`FormulationState`;
    ``step(state)`` runs the next phase (the self-check loop runs one round per step) and then the callback;
    ``run(text)`` steps until done and returns :meth:`result`.

    Phases by mode: rules ``entities, rules``; LLM three-phase ``variables, classify, generate``; hybrid
    (``classify="rules"``) ``variables, entities, rules``; one-step ``model``; then ``solve``, ``diagnose`` and,
    with an LLM, ``revise`` (self-check rounds), when ``solve`` and ``self_check`` ask for them.
    """

    def __init__(self, backend="rules", *, pipeline="three-phase", entities=None, classify="auto",
                 integrality="auto", solve=True, self_check=True, max_self_check_rounds=2, max_repairs=2,
                 time_limit=None, verbose=0, callback=None, rng=0):
        if isinstance(backend, str):
            if backend != "rules":
                raise InvalidProblemError(f"backend: unknown backend {backend!r}; expected 'rules', an LLMBackend "
                                          "or a callable (messages, **kw) -> str")
            self.llm = None
        else:
            self.llm = as_backend(backend)
        if pipeline not in _PIPELINES:
            raise InvalidProblemError(f"pipeline: expected one of {_PIPELINES}, got {pipeline!r}")
        if classify not in _CLASSIFY:
            raise InvalidProblemError(f"classify: expected one of {_CLASSIFY}, got {classify!r}")
        if self.llm is None:
            if classify == "llm":
                raise InvalidProblemError("classify: 'llm' needs an LLM backend (backend='rules' classifies with "
                                          "rules)")
            if pipeline == "one-step":
                raise InvalidProblemError("pipeline: 'one-step' needs an LLM backend")
            if not (entities in _ENTITIES or isinstance(entities, (list, tuple))):
                raise InvalidProblemError(f"entities: expected one of {_ENTITIES[1:]}, None or a list of spans, "
                                          f"got {entities!r}")
        else:
            if pipeline == "one-step" and classify == "rules":
                raise InvalidProblemError("classify: 'rules' (LLM variables, rules classification) needs "
                                          "pipeline='three-phase'")
            if entities is not None:
                raise InvalidProblemError("entities: only used with backend='rules' (an LLM backend finds the "
                                          f"variables itself), got {entities!r}")
        if integrality not in _INTEGRALITY:
            raise InvalidProblemError(f"integrality: expected one of {_INTEGRALITY}, got {integrality!r}")
        if time_limit is not None and not (isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool)
                                           and time_limit > 0):
            raise InvalidProblemError(f"time_limit: expected a positive number or None, got {time_limit!r}")
        _check_count("max_repairs", max_repairs)
        _check_count("max_self_check_rounds", max_self_check_rounds)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
        self.backend = backend if self.llm is None else self.llm
        self.pipeline, self.entities, self.classify = pipeline, entities, classify
        self.integrality, self.solve, self.self_check = integrality, bool(solve), bool(self_check)
        self.max_self_check_rounds, self.max_repairs = max_self_check_rounds, max_repairs
        self.time_limit, self.verbose, self.callback, self.rng = time_limit, verbose, callback, rng
        if self.llm is None:
            self.mode = "rules"
        elif pipeline == "one-step":
            self.mode = "one-step"
        else:
            self.mode = "hybrid" if classify == "rules" else "llm"
        self._seed = rng if isinstance(rng, int) and not isinstance(rng, bool) else None

    @property
    def policy(self) -> str:
        """Integrality policy of the solve: the IR's domains under ``integrality="auto"``."""
        return "ir" if self.integrality == "auto" else self.integrality

    # ------------------------------------------------------------------------------------------------ public
    def init(self, text) -> FormulationState:
        rec, doc = _unwrap(text)
        if not doc.strip():
            raise InvalidProblemError("text: empty problem text")
        if self.mode == "rules":
            entities = self.entities if self.entities is not None else ("gold" if rec is not None else "tagger")
            if entities in ("gold", "gold-spans"):
                if rec is None:
                    raise InvalidProblemError(f"entities: {entities!r} needs an NL4Opt record, got a plain string")
                if "tokens" not in rec or "spans" not in rec:
                    raise InvalidProblemError("text: the NL4Opt record lacks 'tokens' or 'spans'")
            pending = ["entities", "rules"]
        else:
            pending = {"llm": ["variables", "classify", "generate"], "hybrid": ["variables", "entities", "rules"],
                       "one-step": ["model"]}[self.mode]
        if self.solve:
            pending = pending + ["solve"]
            if self.self_check:
                pending.append("diagnose")
                if self.llm is not None and self.max_self_check_rounds > 0:
                    pending.append("revise")
        return FormulationState(text=doc, record=rec, mode=self.mode, pending=list(pending))

    def step(self, state: FormulationState) -> FormulationState:
        """Run the next phase of ``state`` (in place; also returned), then the callback. A phase that raises
        (``LLMError``, ``InvalidProblemError``) stays pending, so the step can be retried."""
        if state.done:
            return state
        phase = state.pending[0]
        t0 = time.perf_counter()
        finished = getattr(self, f"_phase_{phase}")(state)
        dt = time.perf_counter() - t0
        state.timings[phase] = state.timings.get(phase, 0.0) + dt
        log.debug("formulate: phase %s (%s) %.3f s, %d LLM call(s)", phase, state.mode, dt, state.n_llm_calls)
        state.phase = phase
        if finished is not False and state.pending and state.pending[0] == phase:
            state.pending.pop(0)
        if state.status == Status.ERROR:
            state.pending.clear()
            return state
        if self.callback is not None:
            try:
                stop = self.callback(state) is True
            except StopIteration:
                stop = True
            if stop:
                state.status = Status.CALLBACK_STOP
                state.message = f"stopped by the callback after phase {phase!r}"
                state.pending.clear()
        return state

    def run(self, text) -> FormulationResult:
        state = self.init(text)
        while not state.done:
            self.step(state)
        return self.result(state)

    def result(self, state: FormulationState) -> FormulationResult:
        """The :class:`FormulationResult` of ``state`` (finished or not)."""
        phases = dict(state.timings)
        wall = time.perf_counter() - state.started
        phases["total"] = wall
        res = FormulationResult(backend="rules" if self.llm is None else "llm", phases=phases,
                                diagnostics=list(state.diagnostics) + list(state.check), model=state.model,
                                solution=state.solution, n_llm_calls=state.n_llm_calls, n_repairs=state.n_repairs,
                                n_self_check_rounds=state.n_self_check_rounds,
                                status=Status.ERROR if state.status is None else state.status,
                                message=state.message, wall_time=wall)
        if state.solution is not None:
            res.x, res.fun = state.solution.x, state.solution.fun
        if self.llm is not None:
            res.extra["pipeline"] = self.pipeline
            res.extra["classify"] = "rules" if self.mode == "hybrid" else "llm"
        if state.errors:
            res.extra["errors"] = list(state.errors)
        return res

    # -------------------------------------------------------------------------------------------- helpers
    def _ask(self, state, messages, schema, validate):
        obj, calls, repairs, errors = request_ir(self.llm, messages, schema=schema, max_repairs=self.max_repairs,
                                                 validate=validate, seed=self._seed, max_tokens=_MAX_TOKENS)
        state.n_llm_calls += calls
        state.n_repairs += repairs
        return obj, errors

    def _fail(self, state, phase, errors):
        from .llm import format_errors

        state.errors = list(errors)
        state.status = Status.ERROR
        state.message = f"no valid IR: the LLM reply for phase {phase!r} is invalid after {self.max_repairs} " \
                        f"repair(s):\n{format_errors(errors)}"
        state.diagnostics.append(Diagnostic("invalid_ir", "error", state.message))

    def _built(self, state, model):
        state.model = model
        state.status = Status.CONVERGED
        state.message = "IR built (not solved)"

    # --------------------------------------------------------------------------------------- rules phases
    def _phase_entities(self, state):
        words: list[str]
        if state.mode == "hybrid":
            from .extract.tokenize import tokenize

            words = [t.text for t in tokenize(state.text)]
            tagged = bio_to_spans(words, _tagger().tag(words))
            spans, order_mapping, missing = _llm_var_spans(words, state.variables, tagged)
            # the same post-processing as the tagger path, now around the LLM's VAR spans
            spans = propagate_var_mentions(words, spans)
            located = {normalize_mention(s["text"]): order_mapping[s["text"]]
                       for s in spans if s["label"] == "VAR" and s["text"] in order_mapping}
            for s in spans:
                if s["label"] == "VAR" and s["text"] not in order_mapping:
                    idx = located.get(normalize_mention(s["text"]))
                    if idx is not None:
                        order_mapping[s["text"]] = idx
            spans = repair_spans(words, spans)
            for name in missing:
                state.diagnostics.append(Diagnostic("mention_not_found", "warning",
                                                    f"variable {name!r}: none of its LLM mentions occurs in the text"))
            state.tokens, state.spans, state.order_mapping = words, spans, order_mapping
            return
        rec, doc = state.record, state.text
        entities = self.entities if self.entities is not None else ("gold" if rec is not None else "tagger")
        order_mapping = None
        if entities in ("gold", "gold-spans"):
            words = [t["text"] if isinstance(t, Mapping) else str(t) for t in rec["tokens"]]
            spans = [dict(s) for s in rec["spans"]]
            if entities == "gold":
                order_mapping = rec.get("order_mapping")
        else:
            from .extract.tokenize import tokenize

            words = [t.text for t in tokenize(doc)]
            spans = [dict(s) for s in entities] if isinstance(entities, (list, tuple)) else _offline_spans(words)
        if not any(re.search(r"\d", w) for w in words) and not any(s.get("label") in ("PARAM", "LIMIT")
                                                                   for s in spans):
            raise InvalidProblemError("text: no number found; a problem needs coefficients or limits")
        if not any(s.get("label") == "VAR" for s in spans):
            raise InvalidProblemError("text: no decision variable found (no VAR span)")
        state.tokens, state.spans, state.order_mapping = words, spans, order_mapping

    def _phase_rules(self, state):
        from .extract.rules import formulate_from_spans

        try:
            model, rdiags = formulate_from_spans(state.tokens, state.spans, order_mapping=state.order_mapping)
        except InvalidProblemError as exc:  # the rules produced no valid IR: status ERROR, not a raise
            if isinstance(self.entities, (list, tuple)) and str(exc).startswith("spans["):
                raise
            state.diagnostics.append(Diagnostic("invalid_ir", "error", str(exc)))
            state.status, state.message = Status.ERROR, f"no valid IR: {exc}"
            return
        state.diagnostics.extend(Diagnostic(d.get("code", ""), d.get("severity", "warning"), d.get("message", ""))
                                 for d in rdiags)
        if state.mode == "hybrid":
            # the LLM's domains and bounds (phase 1) replace the offline domain rules
            by_name = {v.name: v.to_variable() for v in state.variables}
            new_vars = []
            for v in model.variables:
                llm_v = by_name.get(v.name)
                if llm_v is not None:
                    v = v.model_copy(update={"domain": llm_v.domain, "lb": llm_v.lb, "ub": llm_v.ub,
                                             "unit": llm_v.unit, "domain_source": "inferred"})
                new_vars.append(v)
            model = MILPModel(**{**model.model_dump(), "variables": [v.model_dump() for v in new_vars]})
        elif self.integrality == "auto":
            model = infer_domains(model, state.text)
        model = model.model_copy(update={"source_text": state.text})
        if state.mode == "rules":
            state.variables = list(model.variables)
        self._built(state, model)

    # ----------------------------------------------------------------------------------------- LLM phases
    def _phase_variables(self, state):
        obj, errors = self._ask(state, prompts.variables_messages(state.text), prompts.variables_schema(),
                                _validate_variables)
        if obj is None:
            self._fail(state, "variables", errors)
            return
        state.variables = obj

    def _phase_classify(self, state):
        ir_vars = [v.to_variable() for v in state.variables]

        def validate(reply):
            statements = _parse_statements(reply)
            statements_to_ir(statements, ir_vars, state.text)  # phase 3 as the check, so repairs see its errors
            return statements

        obj, errors = self._ask(state, prompts.statements_messages(state.text, [v.model_dump() for v in
                                                                                state.variables]),
                                prompts.statements_schema([v.name for v in state.variables]), validate)
        if obj is None:
            self._fail(state, "classify", errors)
            return
        state.statements = obj

    def _phase_generate(self, state):
        ir_vars = [v.to_variable() for v in state.variables]
        self._built(state, statements_to_ir(state.statements, ir_vars, state.text))

    def _phase_model(self, state):
        obj, errors = self._ask(state, prompts.one_step_messages(state.text), MILPModel.wire_schema(), None)
        if obj is None:
            self._fail(state, "model", errors)
            return
        model = obj.model_copy(update={"source_text": state.text})
        state.variables = list(model.variables)
        self._built(state, model)

    # ---------------------------------------------------------------------------------- solve, self-check
    def _solve_model(self, model):
        from .solve import solve as _solve

        return _solve(model, integrality=self.policy, time_limit=self.time_limit, verbose=self.verbose, rng=self.rng)

    def _diagnose(self, model, solution) -> list:
        inferred = any(v.domain_source == "inferred" for v in model.variables)
        try:
            return list(_diagnose_fn()(model, solution=solution, integrality=self.policy, inferred=inferred))
        except Exception as exc:  # noqa: BLE001 - a failing check must not lose the formulation; it is reported
            log.warning("self-check failed: %s: %s", type(exc).__name__, exc)
            return [Diagnostic("self_check_failed", "warning", f"diagnose raised {type(exc).__name__}: {exc}")]

    def _phase_solve(self, state):
        sol = self._solve_model(state.model)
        state.solution = sol
        state.status, state.message = sol.status, sol.message

    def _phase_diagnose(self, state):
        state.check = self._diagnose(state.model, state.solution)
        state.seen_models.add(_ir_hash(state.model))

    def _phase_revise(self, state):
        """One self-check round (spec 3.7): the first error of the current model not yet sent back goes to the
        LLM with the IR and the constraints/variables it names; the revision is kept only if it validates,
        removes that error and adds no error of a new kind. Returns False while more rounds may follow."""
        model = state.model
        h = _ir_hash(model)
        target = next((d for d in state.check if d.severity == "error" and (h, _error_key(d)) not in state.attempted),
                      None)
        if target is None or state.n_self_check_rounds >= self.max_self_check_rounds:
            return True
        state.attempted.add((h, _error_key(target)))
        state.n_self_check_rounds += 1
        k = state.n_self_check_rounds
        diag = {"code": target.code, "message": target.message, "constraints": list(target.constraints or []),
                "variables": list(getattr(target, "variables", None) or [])}
        ir_json = model.model_dump(mode="json", exclude={"source_text"})
        rev, errors = self._ask(state, prompts.revise_messages(state.text, ir_json, diag), MILPModel.wire_schema(),
                                None)

        def note(code, msg):
            state.diagnostics.append(Diagnostic(code, "info", f"self-check round {k} ({target.code}): {msg}",
                                                list(target.constraints or [])))

        if rev is None:
            note("revision_invalid", "the revised IR did not validate: "
                 + "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)[:500])
            return False
        rev = rev.model_copy(update={"source_text": state.text, "name": model.name})
        rh = _ir_hash(rev)
        if rh in state.seen_models:
            note("revision_repeated", "the revision repeats an earlier IR; self-check stopped")
            return True
        state.seen_models.add(rh)
        sol = self._solve_model(rev)
        check = self._diagnose(rev, sol)
        new_errors = [d for d in check if d.severity == "error"]
        old_codes = {d.code for d in state.check if d.severity == "error"}
        if any(_same_error(target, d) for d in new_errors):
            note("revision_rejected", f"the revision still has the {target.code!r} error")
            return False
        added = sorted({d.code for d in new_errors} - old_codes)
        if added:
            note("revision_rejected", f"the revision adds new errors {added}")
            return False
        note("revision_accepted", "revision kept")
        state.model, state.solution, state.check = rev, sol, check
        state.variables = list(rev.variables)
        state.status, state.message = sol.status, sol.message
        return False


def formulate(text, *, backend="rules", pipeline="three-phase", entities=None, classify="auto", integrality="auto",
              solve=True, self_check=True, max_self_check_rounds=2, max_repairs=2, time_limit=None, verbose=0,
              callback=None, rng=0) -> FormulationResult:
    """Formulate a natural-language optimisation problem as a MILP and (optionally) solve it (spec milp 3.1, 5).

    Parameters
    ----------
    text : str or NL4Opt record (dict with ``document``, ``tokens``, ``spans``, ``order_mapping``).
    backend : ``"rules"`` (offline: tagger + rules, spec 3.4), an :class:`~optkit.milp.llm.LLMBackend` or a
        callable ``(messages, **kw) -> str`` (wrapped by :func:`~optkit.milp.llm.as_backend`).
    pipeline : with an LLM, ``"three-phase"`` (default: phase 1 variables, phase 2 objective and constraint
        statements with slots, phase 3 deterministic slots -> IR) or ``"one-step"`` (the whole IR in one reply,
        the paper's baseline).
    entities : rules backend only. None (tagger for a string; gold spans + ``order_mapping`` for a record),
        ``"tagger"``, ``"gold"``, ``"gold-spans"`` (gold spans, own grouping) or a list of span dicts (``label``,
        ``token_start``, ``token_end`` inclusive, over :func:`optkit.milp.extract.tokenize` tokens).
    classify : ``"auto"`` (the LLM with an LLM backend, else rules), ``"llm"`` or ``"rules"``; ``"rules"`` with an
        LLM backend is the hybrid: LLM variables (their mentions become VAR spans beside the tagger's other
        spans), then the offline rules.
    integrality : ``"auto"`` (rules: domains inferred by spec 3.4 item 10; LLM: the LLM's domains), solved under
        ``"ir"``; or a solve policy ``"ir"``, ``"all-integer"``, ``"continuous"`` (the rules then leave domains
        continuous; an LLM's domains stay in the IR).
    solve : solve the IR with HiGHS. With ``solve=False`` no self-check runs (it needs the solution).
    self_check : after solving, add the diagnostics of :func:`optkit.milp.selfcheck.diagnose`; with an LLM, send
        each error back for a corrected IR (spec 3.7), at most ``max_self_check_rounds`` rounds; a revision is
        kept only if it validates, removes that error and adds no new kind of error; a repeated IR stops the loop.
    max_repairs : follow-up messages per LLM request when the reply is not valid JSON/IR.
    time_limit, verbose, rng : passed to :func:`~optkit.milp.solve.solve`; ``rng`` (an int) is also the LLM seed.
    callback : ``callback(state)`` (a :class:`FormulationState`) after each phase; returning True (or raising
        StopIteration) stops with CALLBACK_STOP.

    Returns
    -------
    FormulationResult
        ``status`` is the solve's; CONVERGED with ``solve=False`` and a valid IR; ERROR when no valid IR was
        produced (an LLM reply still invalid after ``max_repairs`` repairs: the errors are in
        ``extra["errors"]``). ``n_llm_calls``, ``n_repairs``, ``n_self_check_rounds`` count the LLM work.

    Raises
    ------
    InvalidProblemError
        Empty text, no decision variable (rules), an unknown option value (naming the argument).
    ValueError, TypeError
        ``max_repairs`` / ``max_self_check_rounds`` negative or not an integer; a backend that is neither.
    LLMError
        Transport failure of the LLM backend (propagated, not turned into a status).
    """
    return Formulator(backend, pipeline=pipeline, entities=entities, classify=classify, integrality=integrality,
                      solve=solve, self_check=self_check, max_self_check_rounds=max_self_check_rounds,
                      max_repairs=max_repairs, time_limit=time_limit, verbose=verbose, callback=callback,
                      rng=rng).run(text)
