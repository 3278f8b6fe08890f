"""NL4Opt scorers (spec milp 3.8): declaration accuracy and NER span F1.

:func:`nl4opt_score` re-implements the official NL4Opt sub-task 2 canonical form and score
(``mode="faithful"``, comparable with published numbers, quirks included) and a corrected form
(``mode="fixed"``). The faithful canonical matrices are for scoring only -- never solve them (spec 4.1):
``linear`` rows start from ones, ``xy`` rows keep rhs 1, the objective carries no direction.

Both modes work on NL4Opt-style declaration dicts (``obj_declaration``, ``const_declarations``, ``vars``) and
index variables through the **gold** record's ``order_mapping``.

:func:`ner_score` is exact-span micro precision/recall/F1 with the conlleval chunking rule.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np

from .._errors import InvalidProblemError
from .numbers import official_number, parse_number

__all__ = ["nl4opt_score", "nl4opt_canonical", "ner_score", "ner_spans", "objective_is_max"]

_TYPES = ("sum", "upperbound", "lowerbound", "linear", "ratio", "xby", "xy")
_GE = "GREATER_OR_EQUAL"
_MAX_CUES = ("max", "high", "most", "great", "large")


class _Unparsable(Exception):
    """A prediction the official parser would turn into an empty formulation."""


def objective_is_max(direction) -> bool:
    """Objective sense from NL4Opt's free-text direction: max if it contains max, high, most, great or large."""
    d = str(direction or "").lower()
    return any(c in d for c in _MAX_CUES)


def _similarity(a: str, b: str) -> float:
    sm = difflib.SequenceMatcher(isjunk=lambda ch: ch in " \t", a=a.strip().lower(), b=b.strip().lower())
    return sm.ratio()


def _unwrap(rec):
    """(id or None, record dict) from a record, a ``{id: record}`` line or a JSON string."""
    if isinstance(rec, str):
        try:
            rec = json.loads(rec)
        except (json.JSONDecodeError, ValueError):
            raise _Unparsable("not valid JSON") from None
    if not isinstance(rec, Mapping):
        raise _Unparsable(f"expected a declaration dict, got {type(rec).__name__}")
    if "obj_declaration" not in rec and len(rec) == 1:
        (key, inner), = rec.items()
        if isinstance(inner, Mapping):
            return str(key), inner
    return rec.get("id"), rec


class _Ctx:
    """Name resolution and number parsing for one document, with counters."""

    def __init__(self, order_mapping: Mapping, mode: str):
        self.om = order_mapping
        self.mode = mode
        self.n_fuzzy = 0
        self.n_zero_parsed = 0
        self.n_number_errors = 0

    def index(self, name) -> int:
        if not isinstance(name, str):
            raise _Unparsable(f"variable name {name!r} is not a string")
        x = name.strip()
        if x in self.om:
            return int(self.om[x])
        best, best_key = 0.0, None
        for k in self.om:
            s = _similarity(x, k)
            if s > best:
                best, best_key = s, k
        if best_key is None:
            raise _Unparsable(f"variable {name!r} matches no order_mapping key")
        self.n_fuzzy += 1
        return int(self.om[best_key])

    def number(self, raw, field: str) -> float:
        if raw is None:
            return math.nan
        if self.mode == "faithful":
            try:
                v, zero = official_number(raw)
            except InvalidProblemError as e:
                raise _Unparsable(str(e)) from None
            self.n_zero_parsed += bool(zero)
            return v
        try:
            return parse_number(raw, field=field).value
        except InvalidProblemError:
            self.n_number_errors += 1
            return math.nan


def _faithful(rec: Mapping, ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    K = len(ctx.om)
    obj = rec["obj_declaration"]
    objective = np.zeros(K)
    if "terms" in obj:
        for k, v in obj["terms"].items():
            objective[ctx.index(k)] = ctx.number(v, f"obj_declaration.terms[{k!r}]")
    else:
        names = rec["vars"] if "vars" in rec else obj["vars"]
        for name in names:
            objective[ctx.index(name)] = 1.0
    rows = []
    for ci, c in enumerate(rec["const_declarations"]):
        ctype = c["type"]
        if ctype not in _TYPES:
            raise _Unparsable(f"const_declarations[{ci}]: unknown type {ctype!r}")
        op = c["operator"]
        if not isinstance(op, str):
            raise _Unparsable(f"const_declarations[{ci}].operator is not a string")
        limit = ctx.number(c["limit"], f"const_declarations[{ci}].limit") if "limit" in c else 0.0
        terms: dict[str, list] = {}  # insertion-ordered name -> [index, value]; a repeated name keeps its slot
        if "terms" in c:
            for k, v in c["terms"].items():
                terms[k] = [ctx.index(k), ctx.number(v, f"const_declarations[{ci}].terms[{k!r}]")]
        elif ctype in ("upperbound", "lowerbound", "ratio"):
            terms[c["var"]] = [ctx.index(c["var"]), None]
        elif ctype == "xby":
            terms[c["y_var"]] = [ctx.index(c["y_var"]), ctx.number(c["param"], f"const_declarations[{ci}].param")]
            terms[c["x_var"]] = [ctx.index(c["x_var"]), None]
        elif ctype == "xy":
            terms[c["y_var"]] = [ctx.index(c["y_var"]), None]
            terms[c["x_var"]] = [ctx.index(c["x_var"]), None]
        row = np.ones(K + 1)
        if ctype == "sum":
            row[-1] = limit
        elif ctype in ("upperbound", "lowerbound"):
            row *= 0
            for idx, _ in terms.values():
                row[idx] = 1
            row[-1] = limit
        elif ctype == "linear":
            for idx, v in terms.values():
                row[idx] = math.nan if v is None else v
            row[-1] = limit
        elif ctype == "ratio":
            row *= -limit
            for idx, _ in terms.values():
                row[idx] = 1 - limit
            row[-1] = 0
        elif ctype == "xby":
            row *= 0
            for idx, v in terms.values():
                row[idx] = 1 if v is None else -v
        elif ctype == "xy":
            for i, (idx, _) in enumerate(terms.values()):
                if i == 0:
                    row[idx] = -1
                elif i == 1:
                    row[idx] = 1
        if op.strip() == _GE:
            row *= -1
        rows.append(row)
    return objective, np.asarray(rows)


def _fixed(rec: Mapping, ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    n = (max(int(v) for v in ctx.om.values()) + 1) if len(ctx.om) else 0
    obj = rec["obj_declaration"]
    objective = np.zeros(n)
    if "terms" in obj:
        for k, v in obj["terms"].items():
            objective[ctx.index(k)] = ctx.number(v, f"obj_declaration.terms[{k!r}]")
    else:
        names = obj.get("vars") or rec.get("vars")
        if not names:
            raise _Unparsable("objvar objective without vars")
        for name in names:
            objective[ctx.index(name)] = 1.0
    if objective_is_max(obj.get("direction")):
        objective = -objective
    rows = []
    for ci, c in enumerate(rec["const_declarations"]):
        ctype = c["type"]
        where = f"const_declarations[{ci}]"
        if ctype not in _TYPES:
            raise _Unparsable(f"{where}: unknown type {ctype!r}")
        op = str(c["operator"]).strip()
        if op not in ("LESS_OR_EQUAL", _GE, "EQUAL"):
            raise _Unparsable(f"{where}: unknown operator {op!r}")
        row = np.zeros(n + 1)
        if ctype == "sum":
            row[:n] = 1
            row[-1] = ctx.number(c["limit"], f"{where}.limit")
        elif ctype in ("upperbound", "lowerbound"):
            row[ctx.index(c["var"])] = 1
            row[-1] = ctx.number(c["limit"], f"{where}.limit")
        elif ctype == "linear":
            for k, v in c["terms"].items():
                row[ctx.index(k)] = ctx.number(v, f"{where}.terms[{k!r}]")
            row[-1] = ctx.number(c["limit"], f"{where}.limit")
        elif ctype == "ratio":
            r = ctx.number(c["limit"], f"{where}.limit")
            row[:n] = -r
            row[ctx.index(c["var"])] = 1 - r
        elif ctype == "xby":
            row[ctx.index(c["x_var"])] += 1
            row[ctx.index(c["y_var"])] -= ctx.number(c["param"], f"{where}.param")
        elif ctype == "xy":
            row[ctx.index(c["x_var"])] += 1
            row[ctx.index(c["y_var"])] -= 1
        if op == _GE:
            rows.append(-row)
        elif op == "EQUAL":  # an equality is both halves
            rows.extend([row, -row])
        else:
            rows.append(row)
    return objective, np.asarray(rows)


def nl4opt_canonical(record, gold=None, *, mode: str = "faithful"):
    """Canonical ``(objective, constraints)`` arrays of one declaration record (spec milp 3.8).

    ``gold`` supplies the ``order_mapping`` (default: the record's own). Faithful: objective length K =
    number of order_mapping keys, rows of length K+1 (last = rhs) in the official layout. Fixed: length =
    number of variables, zero-start rows, xy rhs 0, objective negated for max, >= rows negated.
    Raises :class:`InvalidProblemError` if the record cannot be parsed.
    """
    _check_mode(mode)
    try:
        _, rec = _unwrap(record)
        _, g = _unwrap(gold if gold is not None else record)
        ctx = _Ctx(g["order_mapping"], mode)
        return (_faithful if mode == "faithful" else _fixed)(rec, ctx)
    except (_Unparsable, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise InvalidProblemError(f"record: cannot build the canonical form ({type(e).__name__}: {e})") from None


def _check_mode(mode):
    if mode not in ("faithful", "fixed"):
        raise ValueError(f"mode: expected 'faithful' or 'fixed', got {mode!r}")


def _unique_rows(rows: np.ndarray) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    seen = set()
    for r in rows:
        key = tuple(float(v) for v in r)
        if key in seen and not any(math.isnan(v) for v in key):
            continue
        seen.add(key)
        out.append(r)
    return out


def _per_example(p_obj, p_cons, t_obj, t_cons) -> tuple[int, int, int, bool]:
    uniq = _unique_rows(p_cons) if p_cons.ndim == 2 else []
    d = 1 + len(t_cons)
    fn = max(len(t_cons) - len(uniq), 0)
    obj_ok = p_obj.shape == t_obj.shape and bool((p_obj == t_obj).all())
    fp = 0 if obj_ok else 1
    matches = 0
    for a in uniq:
        if len(a) > 0 and len(t_cons) > 0 and t_cons.ndim == 2 and a.shape[0] == t_cons.shape[1] \
                and bool((a == t_cons).all(axis=1).any()):
            matches += 1
    fp += len(uniq) - matches
    return min(fp, d), fn, d, obj_ok


def nl4opt_score(preds, golds, mode: str = "faithful") -> dict:
    """NL4Opt declaration accuracy (spec milp 3.8).

    ``golds``: NL4Opt records (as from :func:`optkit.milp.datasets.load_nl4opt_generation`, or raw
    ``{id: record}`` lines). ``preds``: a sequence aligned with ``golds`` or a mapping from record id to
    prediction; each prediction a declaration dict (``obj_declaration``, ``const_declarations``, ``vars`` for
    ``objvar``), a ``{id: dict}`` line or a JSON string. Names are indexed through the gold
    ``order_mapping`` (exact key, else the most similar key by ``difflib`` ratio; counted in ``n_fuzzy``).

    ``mode="faithful"`` reproduces the official scorer (official number parser; ``n_zero_parsed`` counts
    numbers it turned into 0); ``mode="fixed"`` scores the corrected form (strict number parser; numbers it
    rejects become NaN and are counted in ``n_number_errors``). A prediction that cannot be parsed (missing
    keys, unknown type, unknown name, not a dict) scores as an empty formulation and is counted in
    ``n_unparsable``, never dropped.

    Returns ``dict(accuracy, n_docs, fp, fn, d, n_fuzzy, n_zero_parsed, n_unparsable, n_number_errors, mode,
    per_doc)`` with accuracy = 1 - (fp + fn) / d summed over documents.
    """
    _check_mode(mode)
    golds = list(golds)
    if isinstance(preds, Mapping) and "obj_declaration" not in preds:
        pred_list = []
        for gi, g in enumerate(golds):
            try:
                gid, _ = _unwrap(g)
            except _Unparsable as e:
                raise InvalidProblemError(f"golds[{gi}]: {e}") from None
            pred_list.append(preds.get(gid) if gid is not None else None)
    else:
        pred_list = list(preds)
        if len(pred_list) != len(golds):
            raise InvalidProblemError(f"preds: {len(pred_list)} predictions for {len(golds)} gold records")
    build = _faithful if mode == "faithful" else _fixed
    tot = {"fp": 0, "fn": 0, "d": 0, "n_fuzzy": 0, "n_zero_parsed": 0, "n_unparsable": 0, "n_number_errors": 0}
    per_doc = []
    for gi, (p, g) in enumerate(zip(pred_list, golds)):
        try:
            gid, grec = _unwrap(g)
            gctx = _Ctx(grec["order_mapping"], mode)
            t_obj, t_cons = build(grec, gctx)
        except (_Unparsable, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise InvalidProblemError(f"golds[{gi}]: cannot parse the gold record ({type(e).__name__}: {e})") \
                from None
        ctx = _Ctx(grec["order_mapping"], mode)
        error = None
        try:
            _, prec = _unwrap(p)
            p_obj, p_cons = build(prec, ctx)
        except (_Unparsable, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            error = f"{type(e).__name__}: {e}"
            p_obj, p_cons = np.zeros(0), np.asarray([])
            ctx = _Ctx(grec["order_mapping"], mode)  # counters of a discarded parse do not count
        fp, fn, d, obj_ok = _per_example(p_obj, p_cons, t_obj, t_cons)
        doc = {"id": gid, "fp": fp, "fn": fn, "d": d, "objective_match": obj_ok, "n_fuzzy": ctx.n_fuzzy,
               "n_zero_parsed": ctx.n_zero_parsed, "n_number_errors": ctx.n_number_errors,
               "unparsable": error is not None, "error": error,
               "gold_n_zero_parsed": gctx.n_zero_parsed, "gold_n_number_errors": gctx.n_number_errors}
        per_doc.append(doc)
        for k in ("fp", "fn", "d", "n_fuzzy", "n_zero_parsed", "n_number_errors"):
            tot[k] += doc[k]
        tot["n_unparsable"] += error is not None
    acc = 1.0 - (tot["fp"] + tot["fn"]) / tot["d"] if tot["d"] else math.nan
    return {"accuracy": acc, "n_docs": len(golds), **tot, "mode": mode, "per_doc": per_doc}


# ------------------------------------------------------------------------------------------------- NER

def ner_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` (end exclusive) of a BIO sequence, conlleval rule: an ``I-X`` that
    does not continue a chunk of type X starts a new chunk; tags other than ``B-``/``I-`` are outside."""
    spans = []
    typ, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        tag = str(tag)
        if tag[:2] in ("B-", "I-"):
            prefix, t = tag[0], tag[2:]
        else:
            prefix, t = "O", None
        if typ is not None and (prefix in ("O", "B") or t != typ):
            spans.append((typ, start, i))
            typ = None
        if prefix == "B" or (prefix == "I" and typ is None):
            typ, start = t, i
    return spans


def _as_docs(x, name):
    if hasattr(x, "tags"):
        return [list(x.tags)]
    x = list(x)
    if x and isinstance(x[0], str):
        return [x]
    return [list(d.tags) if hasattr(d, "tags") else list(d) for d in x]


def _prf(n_correct, n_pred, n_gold):
    p = n_correct / n_pred if n_pred else 0.0
    r = n_correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "n_pred": n_pred, "n_gold": n_gold, "n_correct": n_correct}


def ner_score(pred_tags, gold_tags) -> dict:
    """Exact-span micro precision/recall/F1, overall and per entity type (spec milp 3.8).

    Inputs: a list of documents, each a list of BIO tags (or objects with ``.tags`` such as
    :class:`~optkit.milp.datasets.NERDocument`); a flat list of tags is one document. A span counts as
    correct when type, start and end all match. Returns ``dict(precision, recall, f1, n_pred, n_gold,
    n_correct, per_type={type: dict(precision, recall, f1, n_pred, n_gold, n_correct)})``.
    """
    P, G = _as_docs(pred_tags, "pred_tags"), _as_docs(gold_tags, "gold_tags")
    if len(P) != len(G):
        raise InvalidProblemError(f"pred_tags: {len(P)} documents, gold_tags: {len(G)}")
    counts: dict[str, list[int]] = {}
    for di, (p, g) in enumerate(zip(P, G)):
        if len(p) != len(g):
            raise InvalidProblemError(f"pred_tags[{di}]: {len(p)} tags for {len(g)} gold tags")
        ps, gs = set(ner_spans(p)), set(ner_spans(g))
        for t, *_ in ps:
            counts.setdefault(t, [0, 0, 0])[1] += 1
        for t, *_ in gs:
            counts.setdefault(t, [0, 0, 0])[2] += 1
        for t, *_ in ps & gs:
            counts[t][0] += 1
    per_type = {t: _prf(*counts[t]) for t in sorted(counts)}
    tot = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {**_prf(*tot), "per_type": per_type}
