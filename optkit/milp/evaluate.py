"""``evaluate``: declaration, component and execution accuracy of a formulator on NL4Opt records (spec milp 3.8).

Dev references are the gold declarations solved under the same integrality policy (fidelity to gold); release
references come from a file (``references=``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import InvalidProblemError, LLMError
from .._result import Status

__all__ = ["evaluate", "EvaluationReport", "component_scores", "load_references", "wilson_interval", "matches"]

_METRICS = ("declaration", "components", "execution")
_POLICIES = ("all-integer", "continuous", "ir", "either")
_BASE_POLICIES = ("all-integer", "continuous", "ir")
_TOLERANCES = ("strict", "loose")
_STATUS_REFS = {Status.INFEASIBLE: "infeasible", Status.UNBOUNDED: "unbounded",
                Status.INFEASIBLE_OR_UNBOUNDED: "infeasible_or_unbounded"}
_REF_KEYS = ("reference", "optimal_value", "optimum", "objective", "answer", "fun")
_ROW_RTOL = 1e-9


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95% by default); (nan, nan) for n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def matches(pred_status, pred_fun, ref, tolerance: str) -> bool:
    """Spec 3.8: numeric references match only CONVERGED within the tolerance; status references by status."""
    if isinstance(ref, str):
        return _STATUS_REFS.get(Status(pred_status)) == ref
    if Status(pred_status) != Status.CONVERGED or pred_fun is None or not np.isfinite(pred_fun):
        return False
    d = abs(float(pred_fun) - float(ref))
    if tolerance == "strict":
        return d <= 1e-6 * max(1.0, abs(ref))
    return d <= 0.011 or d <= 1e-4 * abs(ref)


# ------------------------------------------------------------------------------------------------- references
def _reference_value(value) -> tuple[Any, str | None]:
    """(usable reference or None, why excluded). Never reads a missing or odd value as 0."""
    if isinstance(value, bool) or value is None:
        return None, "missing reference" if value is None else f"non-numeric reference {value!r}"
    if isinstance(value, (int, float)):
        return (float(value), None) if math.isfinite(value) else (None, f"non-finite reference {value!r}")
    if isinstance(value, str):
        s = value.strip().lower().replace(" ", "_").replace("-", "_")
        if s in _STATUS_REFS.values():
            return s, None
        try:
            v = float(value.strip())
        except ValueError:
            return None, f"non-numeric reference {value[:60]!r}"
        return (v, None) if math.isfinite(v) else (None, f"non-finite reference {value!r}")
    return None, f"non-numeric reference of type {type(value).__name__}"


def _entry(obj, where: str) -> tuple[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidProblemError(f"references: {where}: expected an object, got {type(obj).__name__}")
    if "id" in obj:
        for k in _REF_KEYS:
            if k in obj:
                return str(obj["id"]), obj[k]
        return str(obj["id"]), None
    if len(obj) == 1:
        (k, v), = obj.items()
        return str(k), v
    raise InvalidProblemError(f"references: {where}: expected {{'id': ..., 'reference': ...}} or {{id: value}}")


def load_references(references) -> dict:
    """``{id: raw value}`` from a dict or a JSON / JSONL file.

    JSON: an object ``{id: value}`` or a list of ``{"id": ..., "reference": ...}`` objects; JSONL: one such object
    (or a one-key ``{id: value}`` object) per line. Values are numbers or ``"infeasible"``, ``"unbounded"``,
    ``"infeasible_or_unbounded"``; anything else is kept raw and later excluded (and counted) by :func:`evaluate`.
    """
    if isinstance(references, Mapping):
        return {str(k): v for k, v in references.items()}
    if not isinstance(references, (str, os.PathLike)):
        raise InvalidProblemError(f"references: expected None, a dict or a path, got {type(references).__name__}")
    path = os.fspath(references)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"references: file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
        out = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidProblemError(f"references: {os.path.basename(path)}:{lineno}: invalid JSON "
                                          f"({exc.msg})") from None
            k, v = _entry(item, f"{os.path.basename(path)}:{lineno}")
            out[k] = v
        return out
    if isinstance(obj, list):
        return dict(_entry(item, f"{os.path.basename(path)}[{i}]") for i, item in enumerate(obj))
    if isinstance(obj, Mapping):
        if "id" in obj:  # a JSONL file holding a single line
            return dict([_entry(obj, os.path.basename(path))])
        return {str(k): v for k, v in obj.items()}
    raise InvalidProblemError(f"references: {path}: expected a JSON object or list")


# ------------------------------------------------------------------------------------------------- components
def _scaled_rows(rows: np.ndarray) -> list[np.ndarray]:
    out = []
    for r in rows:
        s = float(np.max(np.abs(r[:-1]))) if len(r) > 1 else 0.0
        if not (s > 0 and math.isfinite(s)):  # a coefficient-free row is compared unscaled
            s = 1.0
        out.append(r / s)
    return out


def _rows_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= _ROW_RTOL * np.maximum(np.abs(a), np.abs(b))))


def _component_doc(pred, gold) -> dict:
    from .scoring import nl4opt_canonical, objective_is_max

    g_obj, g_rows = nl4opt_canonical(gold, gold, mode="fixed")
    g_scaled = _scaled_rows(g_rows)
    doc = {"objective_correct": False, "n_pred": 0, "n_gold": len(g_scaled), "n_matched": 0, "model_correct": False,
           "unparsable": False, "error": None}
    if pred is None or (isinstance(pred, Mapping) and not pred):
        doc.update(unparsable=True, error="no prediction")
        return doc
    try:
        p_obj, p_rows = nl4opt_canonical(pred, gold, mode="fixed")
    except InvalidProblemError as exc:
        doc.update(unparsable=True, error=str(exc))
        return doc
    # the fixed form negates the objective for max; the sense is also compared by name so that a zero
    # objective cannot hide a wrong sense
    p_dir = (pred.get("obj_declaration") or {}).get("direction") if isinstance(pred, Mapping) else None
    g_dir = (gold.get("obj_declaration") or {}).get("direction")
    doc["objective_correct"] = (objective_is_max(p_dir) == objective_is_max(g_dir)
                                and _rows_equal(np.asarray(p_obj, float), np.asarray(g_obj, float)))
    p_scaled = _scaled_rows(p_rows) if p_rows.ndim == 2 else []
    free = list(range(len(g_scaled)))
    for r in p_scaled:
        for j in free:
            if _rows_equal(r, g_scaled[j]):
                free.remove(j)
                doc["n_matched"] += 1
                break
    doc["n_pred"] = len(p_scaled)
    doc["model_correct"] = bool(doc["objective_correct"] and doc["n_matched"] == doc["n_pred"] == doc["n_gold"])
    return doc


def component_scores(preds, golds) -> dict:
    """Component accuracies (spec 3.8) of predicted declarations against gold NL4Opt records.

    Fixed canonical form (:func:`~optkit.milp.scoring.nl4opt_canonical`, names resolved through the gold
    ``order_mapping`` as the faithful scorer does), >= rows negated, each row scaled by 1/max|a|, equality at rtol
    1e-9. ``preds`` aligned with ``golds``; None or an unparsable prediction is an empty formulation.

    Returns ``dict(objective_accuracy, constraint_precision, constraint_recall, constraint_f1, model_accuracy,
    n_fully_correct, n_docs, n_pred_rows, n_gold_rows, n_matched_rows, n_unparsable, per_doc)``; precision and
    recall are micro-averaged over rows (multiset matching per document).
    """
    preds, golds = list(preds), list(golds)
    if len(preds) != len(golds):
        raise InvalidProblemError(f"preds: {len(preds)} predictions for {len(golds)} gold records")
    per_doc = []
    for gi, (p, g) in enumerate(zip(preds, golds)):
        try:
            doc = _component_doc(p, g)
        except InvalidProblemError as exc:
            raise InvalidProblemError(f"golds[{gi}]: {exc}") from None
        doc["id"] = g.get("id") if isinstance(g, Mapping) else None
        per_doc.append(doc)
    n = len(per_doc)
    tp = sum(d["n_matched"] for d in per_doc)
    npred = sum(d["n_pred"] for d in per_doc)
    ngold = sum(d["n_gold"] for d in per_doc)
    prec = tp / npred if npred else (1.0 if ngold == 0 and n else 0.0)
    rec = tp / ngold if ngold else (1.0 if npred == 0 and n else 0.0)
    full = sum(d["model_correct"] for d in per_doc)
    return {"objective_accuracy": sum(d["objective_correct"] for d in per_doc) / n if n else math.nan,
            "constraint_precision": prec, "constraint_recall": rec,
            "constraint_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            "model_accuracy": full / n if n else math.nan, "n_fully_correct": full, "n_docs": n,
            "n_pred_rows": npred, "n_gold_rows": ngold, "n_matched_rows": tp,
            "n_unparsable": sum(d["unparsable"] for d in per_doc), "per_doc": per_doc}


# ------------------------------------------------------------------------------------------------- one problem
def _solve_status(model, policy):
    from .solve import solve

    sol = solve(model, integrality=policy, threads=1)
    fun = None if sol.fun is None or not np.isfinite(sol.fun) else float(sol.fun)
    return Status(sol.status), fun


def _gold_reference(rec, policy):
    from .ir import MILPModel

    try:
        status, fun = _solve_status(MILPModel.from_nl4opt(rec), policy)
    except Exception as exc:  # noqa: BLE001 - an unusable gold record is excluded and counted
        return None, f"gold error: {exc}"
    if status == Status.CONVERGED and fun is not None:
        return fun, None
    if status in _STATUS_REFS:
        return _STATUS_REFS[status], None
    return None, f"gold status {status.name}"


def _evaluate_one(task) -> dict:
    """One record -> its row. Module-level and fed plain data so that a spawn pool can run it."""
    index, rec, cfg = task
    formulator = cfg["formulator"]
    base = cfg["base_policies"]
    row: dict[str, Any] = {"id": rec.get("id", index), "error": None, "warnings": [], "exec": {},
                           "time": {}, "prediction": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, results = None, {}
        t0 = time.perf_counter()
        try:
            if formulator == "gold":
                from .ir import MILPModel

                model = MILPModel.from_nl4opt(rec)
            else:
                from .formulate import formulate

                if formulator == "rules":
                    # domains as the rules write them (no inference): the policies below decide integrality
                    r = formulate(rec, entities=cfg["entities"], integrality="ir", solve=False)
                else:
                    # an LLM keeps its own domains, and its self-check loop needs the solve
                    r = formulate(rec, backend=formulator, integrality="auto", solve=True, **cfg["llm_options"])
                model = r.model
                row["time"]["phases"] = {k: float(v) for k, v in (r.phases or {}).items()}
                row["llm"] = {"n_llm_calls": r.n_llm_calls, "n_repairs": r.n_repairs,
                              "n_self_check_rounds": r.n_self_check_rounds}
                if model is None:
                    msg = r.message or ""
                    row["error"] = msg if msg.startswith("no valid IR") else f"no valid IR: {msg}"
        except LLMError:
            raise  # a dead endpoint would turn every later problem into a silent wrong answer
        except Exception as exc:  # noqa: BLE001 - a failure is a wrong answer, recorded
            row["error"] = f"{type(exc).__name__}: {exc}"
        row["time"]["formulate"] = time.perf_counter() - t0
        solve_times = {}
        if cfg["execution"]:
            for policy in base:
                t1 = time.perf_counter()
                status, fun = Status.ERROR, None
                if model is not None:
                    try:
                        status, fun = _solve_status(model, policy)
                    except Exception as exc:  # noqa: BLE001
                        row["error"] = row["error"] or f"{type(exc).__name__}: {exc}"
                solve_times[policy] = time.perf_counter() - t1
                results[policy] = (status, fun)
        row["time"]["solve"] = solve_times
        row["time"]["total"] = row["time"]["formulate"] + sum(solve_times.values())
        if model is not None:
            try:
                row["prediction"] = model.to_nl4opt()
            except Exception as exc:  # noqa: BLE001
                row["error"] = row["error"] or f"to_nl4opt: {type(exc).__name__}: {exc}"
        if cfg["execution"]:
            refs = {}
            for policy in base:
                if cfg["references"] is None:
                    refs[policy] = _gold_reference(rec, policy)
                elif cfg["reference"] is _MISSING:
                    refs[policy] = (None, "missing reference")
                else:
                    refs[policy] = _reference_value(cfg["reference"])
            for policy in cfg["policies"]:
                row["exec"][policy] = _exec_entry(policy, results, refs, cfg["tolerance"])
    row["warnings"] = sorted({str(w.message) for w in caught})
    return row


class _Missing:
    def __repr__(self):
        return "<missing>"

    def __reduce__(self):  # one sentinel in every worker process
        return "_MISSING"


_MISSING = _Missing()


def _exec_entry(policy, results, refs, tolerance) -> dict:
    if policy != "either":
        status, fun = results[policy]
        ref, why = refs[policy]
        return {"ref": ref, "excluded": why, "status": status.name, "fun": fun,
                **{t: (None if ref is None else matches(status, fun, ref, t)) for t in tolerance}}
    # optimistic: each half against its own reference; excluded only when neither half has one
    halves = ("all-integer", "continuous")
    entry: dict[str, Any] = {"ref": {h: refs[h][0] for h in halves}, "excluded": None,
                             "status": results["all-integer"][0].name, "fun": results["all-integer"][1],
                             "statuses": {h: results[h][0].name for h in halves},
                             "funs": {h: results[h][1] for h in halves}}
    if all(refs[h][0] is None for h in halves):
        entry["excluded"] = refs["all-integer"][1]
    for t in tolerance:
        if entry["excluded"] is not None:
            entry[t] = None
            continue
        via = [h for h in halves if refs[h][0] is not None and matches(*results[h], refs[h][0], t)]
        entry[t] = bool(via)
        entry[f"{t}_via"] = via[0] if via else None
    return entry


# ------------------------------------------------------------------------------------------------- report
def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


@dataclasses.dataclass
class EvaluationReport:
    """Outcome of :func:`evaluate`.

    ``declaration``: ``faithful``/``fixed`` :func:`~optkit.milp.scoring.nl4opt_score` summaries; ``components``:
    :func:`component_scores` without ``per_doc``; ``execution[policy][tolerance]``: ``n``, ``n_correct``,
    ``accuracy``, ``wilson95``, ``n_excluded``, ``excluded`` (reason -> count), ``by_status``; ``time``: seconds
    per problem (formulate + prediction solves); ``records``: one dict per problem. ``report["execution"]``
    reads :meth:`to_dict`.
    """

    formulator: str
    entities: Any
    n_docs: int
    metrics: tuple
    integrality: tuple
    tolerance: tuple
    declaration: dict
    components: dict
    execution: dict
    time: dict
    n_errors: int
    records: list
    references: str = "gold"

    def to_dict(self) -> dict:
        return {"formulator": self.formulator, "entities": self.entities, "n_docs": self.n_docs,
                "metrics": list(self.metrics), "integrality": list(self.integrality),
                "tolerance": list(self.tolerance), "references": self.references,
                "declaration": self.declaration, "components": self.components, "execution": self.execution,
                "time": self.time, "n_errors": self.n_errors, "records": self.records}

    def __getitem__(self, key):
        return self.to_dict()[key]

    def keys(self):
        return self.to_dict().keys()

    def to_jsonl(self, path) -> None:
        """One JSON line per problem: id, per-policy status/fun/reference/correctness, error, timing, prediction."""
        with open(os.fspath(path), "w", encoding="utf-8") as fh:
            for r in self.records:
                line = {"id": r["id"], "error": r["error"], "warnings": r.get("warnings", []),
                        "execution": r["exec"], "time": r["time"], "components": r.get("components"),
                        "declaration": r.get("declaration"), "llm": r.get("llm"), "prediction": r["prediction"]}
                fh.write(json.dumps(_json_safe(line), allow_nan=False) + "\n")

    def summary(self) -> str:
        """A short human-readable table."""
        lines = [f"formulator={self.formulator} entities={self.entities} references={self.references} "
                 f"n={self.n_docs} errors={self.n_errors}"]
        if self.declaration:
            f, x = self.declaration["faithful"], self.declaration["fixed"]
            lines.append(f"declaration  faithful {f['accuracy']:.4f}  fixed {x['accuracy']:.4f}  "
                         f"(unparsable {f['n_unparsable']})")
        if self.components:
            c = self.components
            lines.append(f"components   objective {c['objective_accuracy']:.4f}  constraints P {c['constraint_precision']:.4f}"
                         f" R {c['constraint_recall']:.4f} F1 {c['constraint_f1']:.4f}  model {c['model_accuracy']:.4f}"
                         f" ({c['n_fully_correct']}/{c['n_docs']} fully correct)")
        if self.execution:
            tols = list(self.tolerance)
            lines.append("execution    " + f"{'policy':<12}" + "".join(f"{t:<28}" for t in tols) + "excluded")
            for policy, by_tol in self.execution.items():
                cells = []
                for t in tols:
                    e = by_tol[t]
                    lo, hi = e["wilson95"]
                    acc = "nan" if e["n"] == 0 else f"{100 * e['accuracy']:.1f}%"
                    ci = "" if e["n"] == 0 else f" [{100 * lo:.1f}, {100 * hi:.1f}]"
                    cells.append(f"{e['n_correct']}/{e['n']} {acc}{ci}".ljust(28))
                lines.append(" " * 13 + f"{policy:<12}" + "".join(cells) + str(by_tol[tols[0]]["n_excluded"]))
        tm = self.time
        lines.append(f"time/problem mean {tm['mean']:.4f} s  median {tm['median']:.4f} s  p90 {tm['p90']:.4f} s  "
                     f"max {tm['max']:.4f} s")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- evaluate
def _as_tuple(value, name, allowed):
    if isinstance(value, str):
        value = (value,)
    try:
        value = tuple(value)
    except TypeError:
        raise InvalidProblemError(f"{name}: expected a string or a sequence of strings, got {value!r}") from None
    if not value:
        raise InvalidProblemError(f"{name}: expected at least one of {allowed}")
    for v in value:
        if v not in allowed:
            raise InvalidProblemError(f"{name}: expected values from {allowed}, got {v!r}")
    return tuple(dict.fromkeys(value))


def _formulator_name(formulator) -> str:
    if isinstance(formulator, str):
        return formulator
    return getattr(formulator, "__name__", None) or repr(formulator)


def _show_progress(progress) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def evaluate(data, *, formulator="rules", entities="gold", metrics=_METRICS,
             integrality=("all-integer", "continuous", "ir"), tolerance=("strict", "loose"), references=None,
             processes=1, progress=None, pipeline=None, classify=None) -> EvaluationReport:
    """Evaluate ``formulator`` on NL4Opt records (spec milp 3.8).

    Parameters
    ----------
    data : list of records (as from :func:`~optkit.milp.datasets.load_nl4opt_generation`) or the path of a
        generation JSONL file.
    formulator : ``"rules"`` (with ``entities``), ``"gold"`` (the gold declarations: the ceiling), or an
        ``LLMBackend`` / callable passed to :func:`~optkit.milp.formulate.formulate` as ``backend=``.
    entities : ``"gold"``, ``"gold-spans"`` or ``"tagger"``; used by the rules formulator only.
    metrics : any of ``"declaration"`` (faithful and fixed NL4Opt scores), ``"components"``
        (:func:`component_scores`), ``"execution"``.
    integrality : solve policies among ``"all-integer"`` (the NL4Opt headline), ``"continuous"``, ``"ir"`` and
        ``"either"`` (optimistic: correct if the all-integer or the continuous answer matches; never a headline).
    tolerance : ``"strict"`` and/or ``"loose"`` (see :func:`matches`).
    references : None (gold declarations solved under the same policy), a dict ``{id: number | "infeasible" |
        "unbounded" | "infeasible_or_unbounded"}`` or a JSON/JSONL file of them (:func:`load_references`). A
        missing or non-numeric reference excludes the problem (counted in ``n_excluded``), never reads as 0.
    processes : worker processes (spawn pool; HiGHS runs with one thread each). Results equal ``processes=1``.
    progress : tqdm bar on stderr; None shows it only when stderr is a terminal.
    pipeline, classify : passed to :func:`~optkit.milp.formulate.formulate` with an LLM formulator when not None
        (``"three-phase"``/``"one-step"``; ``classify="rules"`` is the hybrid). The rules and gold formulators
        ignore them.

    Raises
    ------
    InvalidProblemError
        An unknown ``formulator``/``entities``/``metrics``/``integrality``/``tolerance`` value, ``processes < 1``,
        malformed data or references (naming the argument). ``FileNotFoundError`` for a missing file.
    LLMError
        Transport failure of an LLM formulator (the run stops: it would otherwise score every later problem 0).

    Returns
    -------
    EvaluationReport
    """
    from .scoring import nl4opt_score

    if isinstance(formulator, str):
        if formulator not in ("rules", "gold"):
            raise InvalidProblemError(f"formulator: expected 'rules', 'gold', an LLMBackend or a callable, "
                                      f"got {formulator!r}")
    elif not (callable(formulator) or hasattr(formulator, "complete")):
        raise InvalidProblemError(f"formulator: expected 'rules', 'gold', an LLMBackend or a callable, "
                                  f"got {type(formulator).__name__}")
    if formulator == "rules" and entities not in ("gold", "gold-spans", "tagger"):
        raise InvalidProblemError(f"entities: expected 'gold', 'gold-spans' or 'tagger', got {entities!r}")
    metrics = _as_tuple(metrics, "metrics", _METRICS)
    integrality = _as_tuple(integrality, "integrality", _POLICIES)
    tolerance = _as_tuple(tolerance, "tolerance", _TOLERANCES)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InvalidProblemError(f"processes: expected an integer >= 1, got {processes!r}")
    if progress is not None and not isinstance(progress, bool):
        raise InvalidProblemError(f"progress: expected None, True or False, got {progress!r}")
    if isinstance(data, (str, os.PathLike)):
        from .datasets import load_nl4opt_generation

        records = load_nl4opt_generation(data)
    else:
        try:
            records = list(data)
        except TypeError:
            raise InvalidProblemError(f"data: expected a list of records or a path, got {type(data).__name__}") \
                from None
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise InvalidProblemError(f"data[{i}]: expected an NL4Opt record dict, got {type(rec).__name__}")
    ref_map = None if references is None else load_references(references)

    do_exec = "execution" in metrics
    base = [p for p in _BASE_POLICIES
            if p in integrality or ("either" in integrality and p in ("all-integer", "continuous"))]
    llm_options = {k: v for k, v in (("pipeline", pipeline), ("classify", classify)) if v is not None}
    cfg = {"formulator": formulator, "entities": entities, "execution": do_exec, "base_policies": base,
           "llm_options": llm_options,
           "policies": integrality, "tolerance": tolerance, "references": None if ref_map is None else "file"}
    tasks = []
    for i, rec in enumerate(records):
        c = cfg
        if ref_map is not None:
            c = {**cfg, "reference": ref_map.get(str(rec.get("id", i)), _MISSING)}
        tasks.append((i, rec, c))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), disable=not _show_progress(progress), desc="evaluate", unit="problem",
               file=sys.stderr)
    try:
        if processes == 1 or len(tasks) <= 1:
            rows = []
            for t in tasks:
                rows.append(_evaluate_one(t))
                bar.update(1)
        else:
            try:
                pickle.dumps(formulator)
            except Exception as exc:  # noqa: BLE001 - lambdas and closures cannot reach a spawned worker
                raise InvalidProblemError(f"processes: the formulator cannot be pickled for worker processes "
                                          f"({type(exc).__name__}); use processes=1") from None
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(processes, len(tasks))) as pool:
                rows = []
                for row in pool.imap(_evaluate_one, tasks, chunksize=1):
                    rows.append(row)
                    bar.update(1)
    finally:
        bar.close()

    preds = [r["prediction"] for r in rows]
    decl: dict = {}
    if "declaration" in metrics:
        for mode in ("faithful", "fixed"):
            s = nl4opt_score([p if p is not None else {} for p in preds], records, mode=mode)
            decl[mode] = {k: v for k, v in s.items() if k != "per_doc"}
            for row, doc in zip(rows, s["per_doc"]):
                row.setdefault("declaration", {})[mode] = {k: doc[k] for k in ("fp", "fn", "d", "unparsable")}
    comps: dict = {}
    if "components" in metrics:
        cs = component_scores(preds, records)
        comps = {k: v for k, v in cs.items() if k != "per_doc"}
        for row, doc in zip(rows, cs["per_doc"]):
            row["components"] = {k: v for k, v in doc.items() if k != "id"}
    execution: dict = {}
    if do_exec:
        for policy in integrality:
            execution[policy] = {}
            for t in tolerance:
                entries = [r["exec"][policy] for r in rows]
                n = sum(e[t] is not None for e in entries)
                k = sum(e[t] is True for e in entries)
                by_status: dict = {}
                excluded: dict = {}
                for e in entries:
                    if e[t] is None:
                        excluded[e["excluded"]] = excluded.get(e["excluded"], 0) + 1
                        continue
                    b = by_status.setdefault(e["status"], [0, 0])
                    b[0] += 1
                    b[1] += bool(e[t])
                execution[policy][t] = {"n": n, "n_correct": k, "accuracy": k / n if n else math.nan,
                                        "wilson95": wilson_interval(k, n), "n_excluded": len(entries) - n,
                                        "excluded": excluded,
                                        "by_status": {s: {"n": a, "correct": c} for s, (a, c) in by_status.items()}}
    times = np.asarray([r["time"]["total"] for r in rows]) if rows else np.zeros(1)
    return EvaluationReport(
        formulator=_formulator_name(formulator), entities=entities if formulator == "rules" else None,
        n_docs=len(records), metrics=metrics, integrality=integrality, tolerance=tolerance,
        declaration=decl, components=comps, execution=execution,
        time={"mean": float(times.mean()), "median": float(np.median(times)),
              "p90": float(np.quantile(times, 0.9)), "max": float(times.max())},
        n_errors=sum(r["error"] is not None for r in rows), records=rows,
        references="gold" if references is None else ("dict" if isinstance(references, Mapping)
                                                        else os.fspath(references)))
