"""``formulate``: text (or an NL4Opt record) -> validated MILP IR -> HiGHS solution (spec milp 3.1, 3.4, 5).

Only the offline ``"rules"`` backend is implemented here: tokenise -> CRF tagger (or gold spans) -> grouping ->
rules (:func:`optkit.milp.extract.rules.formulate_from_spans`) -> domains (3.4 item 10) -> :func:`solve`.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

from .._errors import InvalidProblemError
from .._result import Result, Status
from .extract.grouping import normalize_mention
from .extract.postprocess import (
    augment_objective_names,
    bio_to_spans,
    fix_number_roles,
    propagate_var_mentions,
)
from .ir import MILPModel
from .selfcheck import Diagnostic

__all__ = ["FormulationResult", "Diagnostic", "formulate", "infer_domains"]

_ENTITIES = (None, "tagger", "gold", "gold-spans")
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
    /``status`` from the solve (CONVERGED with ``solve=False`` and a valid IR; ERROR when no valid IR),
    ``diagnostics``, ``phases`` (seconds per phase)."""

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


def _check(backend, entities, integrality, time_limit):
    if backend != "rules":
        if callable(backend) or not isinstance(backend, str):
            raise NotImplementedError("formulate: LLM backends (LLMBackend / callable) are not wired into "
                                      "formulate yet; use backend='rules'")
        raise InvalidProblemError(f"backend: unknown backend {backend!r}; expected 'rules'")
    if not (entities in _ENTITIES or isinstance(entities, (list, tuple))):
        raise InvalidProblemError(f"entities: expected one of {_ENTITIES[1:]}, None or a list of spans, "
                                  f"got {entities!r}")
    if integrality not in _INTEGRALITY:
        raise InvalidProblemError(f"integrality: expected one of {_INTEGRALITY}, got {integrality!r}")
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise InvalidProblemError(f"time_limit: expected a positive number or None, got {time_limit!r}")


def formulate(text, *, backend="rules", entities=None, integrality="auto", solve=True, self_check=True,
              time_limit=None, verbose=0, callback=None, rng=0) -> FormulationResult:
    """Formulate a natural-language optimisation problem as a MILP and (optionally) solve it.

    Parameters
    ----------
    text : str or NL4Opt record (dict with ``document``, ``tokens``, ``spans``, ``order_mapping``).
    backend : ``"rules"`` (offline). LLM backends raise ``NotImplementedError`` for now.
    entities : None (tagger for a string; gold spans + ``order_mapping`` for a record), ``"tagger"``,
        ``"gold"``, ``"gold-spans"`` (gold spans, own grouping) or a list of span dicts (``label``,
        ``token_start``, ``token_end`` inclusive, over :func:`optkit.milp.extract.tokenize` tokens).
    integrality : ``"auto"`` (domains inferred, spec 3.4 item 10, solved under ``"ir"``), or a solve policy
        ``"ir"``, ``"all-integer"``, ``"continuous"``.
    solve : solve the IR with HiGHS. self_check : accepted; the rules backend has no self-check loop.
    callback : ``callback(state_dict)`` after each phase; returning True stops with CALLBACK_STOP.
    """
    _check(backend, entities, integrality, time_limit)
    t_all = time.perf_counter()
    rec, doc = _unwrap(text)
    if not doc.strip():
        raise InvalidProblemError("text: empty problem text")
    if entities is None:
        entities = "gold" if rec is not None else "tagger"
    phases: dict[str, float] = {}
    diags: list[Diagnostic] = []
    res = FormulationResult(backend="rules", phases=phases, diagnostics=diags)

    def stop(phase, **state):
        if callback is not None and callback({"phase": phase, **state}) is True:
            res.status = Status.CALLBACK_STOP
            res.message = f"stopped by the callback after phase {phase!r}"
            return True
        return False

    # ---------------------------------------------------------------- entities
    t0 = time.perf_counter()
    order_mapping = None
    if entities in ("gold", "gold-spans"):
        if rec is None:
            raise InvalidProblemError(f"entities: {entities!r} needs an NL4Opt record, got a plain string")
        if "tokens" not in rec or "spans" not in rec:
            raise InvalidProblemError("text: the NL4Opt record lacks 'tokens' or 'spans'")
        words = [t["text"] if isinstance(t, Mapping) else str(t) for t in rec["tokens"]]
        spans = [dict(s) for s in rec["spans"]]
        if entities == "gold":
            order_mapping = rec.get("order_mapping")
    else:
        from .extract.tokenize import tokenize

        words = [t.text for t in tokenize(doc)]
        if isinstance(entities, (list, tuple)):
            spans = [dict(s) for s in entities]
        else:
            spans = propagate_var_mentions(words, bio_to_spans(words, _tagger().tag(words)))
            spans = augment_objective_names(words, fix_number_roles(words, spans))
    phases["entities"] = time.perf_counter() - t0
    if not any(re.search(r"\d", w) for w in words) and not any(s.get("label") in ("PARAM", "LIMIT") for s in spans):
        raise InvalidProblemError("text: no number found; a problem needs coefficients or limits")
    if not any(s.get("label") == "VAR" for s in spans):
        raise InvalidProblemError("text: no decision variable found (no VAR span)")
    if stop("entities", tokens=words, spans=spans):
        return res

    # ---------------------------------------------------------------- rules
    from .extract.rules import formulate_from_spans

    t0 = time.perf_counter()
    try:
        model, rdiags = formulate_from_spans(words, spans, order_mapping=order_mapping)
    except InvalidProblemError as exc:  # the rules produced no valid IR: a result with status ERROR, not a raise
        if isinstance(entities, (list, tuple)) and str(exc).startswith("spans["):
            raise
        phases["rules"] = time.perf_counter() - t0
        diags.append(Diagnostic("invalid_ir", "error", str(exc)))
        res.status, res.message = Status.ERROR, f"no valid IR: {exc}"
        res.wall_time = phases["total"] = time.perf_counter() - t_all
        return res
    diags.extend(Diagnostic(d.get("code", ""), d.get("severity", "warning"), d.get("message", ""))
                 for d in rdiags)
    if integrality == "auto":
        model = infer_domains(model, doc)
    model = model.model_copy(update={"source_text": doc})
    phases["rules"] = time.perf_counter() - t0
    res.model = model
    res.status = Status.CONVERGED
    res.message = "IR built (not solved)"
    if stop("rules", model=model):
        return res

    # ---------------------------------------------------------------- solve
    if solve:
        from .solve import solve as _solve

        t0 = time.perf_counter()
        policy = "ir" if integrality == "auto" else integrality
        sol = _solve(model, integrality=policy, time_limit=time_limit, verbose=verbose, rng=rng)
        phases["solve"] = time.perf_counter() - t0
        res.solution = sol
        res.x, res.fun, res.status, res.message = sol.x, sol.fun, sol.status, sol.message
        stop("solve", model=model, solution=sol)
    res.wall_time = time.perf_counter() - t_all
    phases["total"] = res.wall_time
    return res
