"""optkit.milp.evaluate (spec milp 3.8, 5): component accuracies checked against counts worked out by hand,
reference handling (dict, JSON, JSONL, excluded values), the ``either`` policy, the process pool, the report."""

import copy
import json
import math
import os
import warnings

import pytest

from optkit import InvalidProblemError
from optkit.milp.datasets import load_nl4opt_generation
from optkit.milp.evaluate import EvaluationReport, component_scores, evaluate, load_references

pytest.importorskip("highspy")

_REPO_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "nl4opt")
DATA = os.environ.get("OPTKIT_NL4OPT_DIR") or _REPO_DATA
DEV = os.path.join(DATA, "generation_dev.jsonl")
needs_data = pytest.mark.skipif(not os.path.isfile(DEV), reason=f"NL4Opt data not found at {DATA} "
                                                                "(set OPTKIT_NL4OPT_DIR)")

#: the coconut case (spec 6): max 50r + 30o; 10r + 8o <= 200; r <= o. MILP 880 (11, 11), LP 888.89
COCONUT = {
    "id": "coconut", "vars": ["rickshaws", "ox carts"],
    "obj_declaration": {"type": "objective", "direction": "maximize", "name": "coconuts",
                        "terms": {"rickshaws": "50", "ox carts": "30"}},
    "const_declarations": [
        {"type": "linear", "direction": "at most", "limit": "200", "terms": {"rickshaws": "10", "ox carts": "8"},
         "operator": "LESS_OR_EQUAL"},
        {"type": "xy", "x_var": "rickshaws", "direction": "must not exceed", "y_var": "ox carts",
         "operator": "LESS_OR_EQUAL"}],
    "order_mapping": {"rickshaws": 0, "ox carts": 1},
}
LP_OPT = 8000 / 9


def perturbed(**changes):
    rec = copy.deepcopy(COCONUT)
    for key, value in changes.items():
        if key == "limit":
            rec["const_declarations"][0]["limit"] = value
        elif key == "extra":
            rec["const_declarations"].append(value)
        elif key == "direction":
            rec["obj_declaration"]["direction"] = value
        elif key == "consts":
            rec["const_declarations"] = value
    return rec


def as_pred(rec):
    return {k: rec[k] for k in ("obj_declaration", "const_declarations", "vars")}


@pytest.fixture(scope="module")
def dev():
    if not os.path.isfile(DEV):
        pytest.skip(f"NL4Opt data not found at {DATA}")
    return load_nl4opt_generation(DEV)


# ------------------------------------------------------------------------------------------------- components
def test_components_exact_prediction():
    s = component_scores([as_pred(COCONUT)], [COCONUT])
    assert (s["objective_accuracy"], s["constraint_precision"], s["constraint_recall"], s["constraint_f1"],
            s["model_accuracy"], s["n_fully_correct"]) == (1.0, 1.0, 1.0, 1.0, 1.0, 1)
    assert (s["n_pred_rows"], s["n_gold_rows"], s["n_matched_rows"]) == (2, 2, 2)


def test_components_changed_limit_by_hand():
    # one of two rows wrong: tp 1, 2 predicted, 2 gold -> P = R = F1 = 1/2; objective still right
    s = component_scores([as_pred(perturbed(limit="250"))], [COCONUT])
    assert s["objective_accuracy"] == 1.0
    assert s["constraint_precision"] == 0.5 and s["constraint_recall"] == 0.5 and s["constraint_f1"] == 0.5
    assert s["model_accuracy"] == 0.0 and s["n_fully_correct"] == 0


def test_components_micro_average_two_documents():
    # doc 1 exact (2/2), doc 2 one wrong row and a spurious bound: tp 2 + 1 = 3, pred 2 + 3 = 5, gold 4
    extra = {"type": "upperbound", "var": "rickshaws", "limit": "5", "operator": "LESS_OR_EQUAL"}
    s = component_scores([as_pred(COCONUT), as_pred(perturbed(limit="250", extra=extra))], [COCONUT, COCONUT])
    assert s["n_matched_rows"] == 3 and s["n_pred_rows"] == 5 and s["n_gold_rows"] == 4
    assert s["constraint_precision"] == pytest.approx(3 / 5, rel=1e-12)
    assert s["constraint_recall"] == pytest.approx(3 / 4, rel=1e-12)
    assert s["constraint_f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35, rel=1e-12)
    assert s["objective_accuracy"] == 1.0 and s["model_accuracy"] == 0.5 and s["n_fully_correct"] == 1
    assert [d["model_correct"] for d in s["per_doc"]] == [True, False]


def test_components_scaling_sign_and_sense():
    # rows equal up to a positive factor, and >= rows negated, are the same constraint
    scaled = [{"type": "linear", "limit": "400", "terms": {"rickshaws": "20", "ox carts": "16"},
               "operator": "LESS_OR_EQUAL"},
              {"type": "linear", "limit": "0", "terms": {"ox carts": "1", "rickshaws": "-1"},
               "operator": "GREATER_OR_EQUAL"}]
    s = component_scores([as_pred(perturbed(consts=scaled))], [COCONUT])
    assert s["model_accuracy"] == 1.0 and s["n_matched_rows"] == 2
    # a negative factor flips the inequality: not the same row
    flipped = [scaled[0], {"type": "linear", "limit": "0", "terms": {"ox carts": "1", "rickshaws": "-1"},
                           "operator": "LESS_OR_EQUAL"}]
    s = component_scores([as_pred(perturbed(consts=flipped))], [COCONUT])
    assert s["n_matched_rows"] == 1 and s["model_accuracy"] == 0.0
    # the sense is part of the objective
    s = component_scores([as_pred(perturbed(direction="minimize"))], [COCONUT])
    assert s["objective_accuracy"] == 0.0 and s["constraint_f1"] == 1.0 and s["model_accuracy"] == 0.0


def test_components_multiset_duplicates_and_missing_prediction():
    # a duplicated row matches one gold row only (multiset, not set)
    dup = perturbed(extra=copy.deepcopy(COCONUT["const_declarations"][0]))
    s = component_scores([as_pred(dup)], [COCONUT])
    assert (s["n_pred_rows"], s["n_matched_rows"]) == (3, 2) and s["model_accuracy"] == 0.0
    s = component_scores([None, {"obj_declaration": {}}], [COCONUT, COCONUT])
    assert s["n_unparsable"] == 2 and s["n_pred_rows"] == 0 and s["constraint_recall"] == 0.0
    assert s["objective_accuracy"] == 0.0
    with pytest.raises(InvalidProblemError, match="preds"):
        component_scores([None], [COCONUT, COCONUT])


# ------------------------------------------------------------------------------------------------- references
def test_references_numbers_statuses_and_excluded():
    recs = [dict(COCONUT, id=str(i)) for i in range(7)]
    refs = {"0": 880, "1": 880.004, "2": "infeasible", "3": "n/a", "4": None, "6": "880"}  # "5" missing
    rep = evaluate(recs, formulator="gold", integrality="all-integer", references=refs, progress=False)
    ex = rep["execution"]["all-integer"]
    assert ex["strict"]["n"] == 4 and ex["strict"]["n_correct"] == 2  # 880 and "880"
    assert ex["loose"]["n"] == 4 and ex["loose"]["n_correct"] == 3  # 880.004 within 0.011
    assert ex["strict"]["n_excluded"] == 3
    assert ex["strict"]["excluded"] == {"non-numeric reference 'n/a'": 1, "missing reference": 2}
    rows = {r["id"]: r["exec"]["all-integer"] for r in rep.records}
    assert rows["3"]["strict"] is None and rows["5"]["ref"] is None  # excluded, never scored against 0
    assert rows["2"]["strict"] is False and rows["2"]["status"] == "CONVERGED"
    assert rep.references == "dict"


def test_references_files(tmp_path):
    as_json = tmp_path / "refs.json"
    as_json.write_text(json.dumps({"a": 1.5, "b": "unbounded"}))
    as_list = tmp_path / "refs_list.json"
    as_list.write_text(json.dumps([{"id": "a", "reference": 1.5}, {"id": "b", "optimum": "unbounded"}]))
    as_jsonl = tmp_path / "refs.jsonl"
    as_jsonl.write_text('{"id": "a", "reference": 1.5}\n\n{"b": "unbounded"}\n')
    for p in (as_json, as_list, as_jsonl):
        assert load_references(p) == {"a": 1.5, "b": "unbounded"}
        assert load_references(str(p)) == {"a": 1.5, "b": "unbounded"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "reference": 1}\nnot json\n')
    with pytest.raises(InvalidProblemError, match="bad.jsonl:2"):
        load_references(bad)
    with pytest.raises(FileNotFoundError):
        load_references(tmp_path / "missing.json")
    rep = evaluate([COCONUT], formulator="gold", integrality="all-integer", references=as_jsonl, progress=False)
    assert rep["execution"]["all-integer"]["strict"]["n"] == 0  # id "coconut" absent from the file
    ref = tmp_path / "c.json"
    ref.write_text(json.dumps({"coconut": 880}))
    rep = evaluate([COCONUT], formulator="gold", integrality="all-integer", references=ref, progress=False)
    assert rep["execution"]["all-integer"]["strict"]["n_correct"] == 1 and rep.references == str(ref)


def test_either_policy():
    # one file reference for both halves: 880 matches the all-integer answer, 8000/9 the continuous one
    for ref, via in ((880, "all-integer"), (LP_OPT, "continuous"), (100, None)):
        rep = evaluate([COCONUT], formulator="gold", integrality=("all-integer", "continuous", "either"),
                       references={"coconut": ref}, metrics="execution", progress=False)
        ex = rep["execution"]
        e = rep.records[0]["exec"]["either"]
        assert e["strict_via"] == via
        assert ex["either"]["strict"]["n_correct"] == (via is not None)
        assert ex["either"]["strict"]["n_correct"] == max(ex["all-integer"]["strict"]["n_correct"],
                                                          ex["continuous"]["strict"]["n_correct"])
    # gold-derived references: each half against its own policy's reference
    rep = evaluate([COCONUT], formulator="gold", integrality="either", metrics="execution", progress=False)
    e = rep.records[0]["exec"]["either"]
    assert e["ref"] == {"all-integer": pytest.approx(880), "continuous": pytest.approx(LP_OPT)}
    assert e["strict"] is True and list(rep["execution"]) == ["either"]


def test_metrics_subset_without_execution():
    rep = evaluate([COCONUT], formulator="gold", metrics=("declaration", "components"), progress=False)
    assert rep.components["model_accuracy"] == 1.0 and rep.execution == {}
    assert rep["declaration"]["faithful"]["accuracy"] == 1.0


# ------------------------------------------------------------------------------------------------- dev data
@needs_data
def test_gold_ceiling_on_dev_file():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warnings are captured per record, none escape
        rep = evaluate(DEV, formulator="gold", progress=False)
    assert isinstance(rep, EvaluationReport) and rep.n_docs == 99 and rep.n_errors == 0
    assert rep.declaration["faithful"]["accuracy"] == 1.0 and rep.declaration["fixed"]["accuracy"] == 1.0
    assert rep.components["model_accuracy"] == 1.0 and rep.components["n_fully_correct"] == 99
    assert rep.components["constraint_f1"] == 1.0 and rep.components["objective_accuracy"] == 1.0
    for policy in ("all-integer", "continuous", "ir"):
        for tol in ("strict", "loose"):
            e = rep.execution[policy][tol]
            assert e["n"] + e["n_excluded"] == 99 and e["accuracy"] == 1.0, (policy, tol, e)
    d = rep.to_dict()
    for key in ("formulator", "entities", "n_docs", "declaration", "execution", "time", "n_errors", "records"):
        assert key in d
    assert rep["execution"] is d["execution"] or rep["execution"] == d["execution"]
    assert dict(rep)["n_docs"] == 99
    text = rep.summary()
    assert "all-integer" in text and "99/99" in text and "components" in text
    assert any(r["warnings"] for r in rep.records)  # the one dev record with an empty objective


@needs_data
def test_processes_two_equals_one_and_jsonl(dev, tmp_path):
    recs = dev[:10]
    one = evaluate(recs, entities="gold", processes=1, progress=False)
    two = evaluate(recs, entities="gold", processes=2, progress=False)

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "time"} for r in rows]

    assert strip(two.records) == strip(one.records)
    assert two.execution == one.execution and two.components == one.components
    assert two.declaration == one.declaration
    path = tmp_path / "records.jsonl"
    two.to_jsonl(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 10 and [ln["id"] for ln in lines] == [r["id"] for r in recs]
    first = lines[0]
    assert {"id", "error", "execution", "time", "prediction", "components"} <= set(first)
    assert set(first["execution"]) == {"all-integer", "continuous", "ir"}
    assert {"status", "fun", "ref", "strict", "loose"} <= set(first["execution"]["all-integer"])


@needs_data
def test_rules_lower_than_gold_on_a_slice(dev):
    rep = evaluate(dev[:20], entities="gold", integrality="all-integer", progress=False)
    c = rep.components
    assert 0 <= c["model_accuracy"] <= 1 and c["n_fully_correct"] == round(c["model_accuracy"] * 20)
    per = [r["components"] for r in rep.records]
    assert sum(p["n_matched"] for p in per) == c["n_matched_rows"]
    assert c["constraint_precision"] == c["n_matched_rows"] / c["n_pred_rows"]


# ------------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("kw, name", [
    (dict(metrics=("declaration", "speed")), "metrics"),
    (dict(integrality="both"), "integrality"),
    (dict(integrality=()), "integrality"),
    (dict(tolerance="exact"), "tolerance"),
    (dict(processes=0), "processes"),
    (dict(processes=1.5), "processes"),
    (dict(formulator="llm"), "formulator"),
    (dict(formulator=3), "formulator"),
    (dict(entities="spans"), "entities"),
    (dict(progress="yes"), "progress"),
    (dict(references=3), "references"),
])
def test_bad_arguments_name_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        evaluate([COCONUT], **kw)


def test_bad_data():
    with pytest.raises(InvalidProblemError, match=r"data\[0\]"):
        evaluate(["not a record"], formulator="gold")
    with pytest.raises(FileNotFoundError):
        evaluate("/nonexistent/generation.jsonl")


def test_unpicklable_formulator_with_processes():
    with pytest.raises(InvalidProblemError, match="processes"):
        evaluate([COCONUT, COCONUT], formulator=lambda m, **kw: "{}", processes=2, progress=False)


def test_progress_bar_forced(capsys):
    evaluate([COCONUT], formulator="gold", metrics="execution", integrality="all-integer", progress=True)
    assert "evaluate" in capsys.readouterr().err
    evaluate([COCONUT], formulator="gold", metrics="execution", integrality="all-integer", progress=False)
    assert capsys.readouterr().err == ""


def test_empty_data_report():
    rep = evaluate([], formulator="gold", progress=False)
    assert rep.n_docs == 0 and rep.execution["all-integer"]["strict"]["n"] == 0
    assert math.isnan(rep.execution["all-integer"]["strict"]["accuracy"])
    assert "n=0" in rep.summary()


# ------------------------------------------------------------------------------------------------- LLM formulator
PERTURBED_IR = {
    "variables": [{"name": "rickshaws", "domain": "integer"}, {"name": "ox carts", "domain": "integer"}],
    "objective": {"sense": "maximize", "terms": {"rickshaws": 50, "ox carts": 30}},
    "constraints": [{"type": "linear", "terms": {"rickshaws": 10, "ox carts": 8}, "operator": "LESS_OR_EQUAL",
                     "limit": 250},
                    {"type": "xy", "x_var": "rickshaws", "y_var": "ox carts", "operator": "LESS_OR_EQUAL"}]}


def test_callable_formulator_one_step():
    calls = []

    def llm(messages, **kw):
        calls.append(messages)
        return json.dumps(PERTURBED_IR)

    rec = dict(COCONUT, document="A coconut seller ... at most $200 ...")
    rep = evaluate([rec], formulator=llm, pipeline="one-step", integrality="all-integer", progress=False)
    assert len(calls) >= 1 and rep.records[0]["llm"]["n_llm_calls"] >= 1 and rep.entities is None
    c = rep.components
    assert c["objective_accuracy"] == 1.0 and c["constraint_precision"] == 0.5 and c["constraint_recall"] == 0.5
    assert rep.declaration["faithful"]["accuracy"] == pytest.approx(2 / 3)  # fp 1, fn 0, d 3
    # 10r + 8o <= 250, r <= o: (13, 15) -> 1100 against the gold 880
    e = rep.records[0]["exec"]["all-integer"]
    assert e["fun"] == pytest.approx(1100.0) and e["strict"] is False


def test_llm_transport_failure_stops_the_run():
    from optkit import LLMError

    def dead(messages, **kw):
        raise LLMError("connection refused")

    with pytest.raises(LLMError):
        evaluate([dict(COCONUT, document="A coconut seller ...")], formulator=dead, pipeline="one-step",
                 progress=False)


def test_processes_with_file_references_and_missing_ids():
    # the missing-reference sentinel and plain records cross the spawn boundary unchanged
    recs = [dict(COCONUT, id=str(i)) for i in range(3)]
    refs = {"0": 880, "1": "n/a"}
    kw = dict(formulator="gold", integrality=("all-integer", "either"), references=refs, progress=False)
    one, two = evaluate(recs, processes=1, **kw), evaluate(recs, processes=2, **kw)
    assert two.execution == one.execution
    assert two.execution["all-integer"]["strict"]["excluded"] == {"non-numeric reference 'n/a'": 1,
                                                                  "missing reference": 1}
    assert [r["exec"] for r in two.records] == [r["exec"] for r in one.records]
