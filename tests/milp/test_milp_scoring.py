"""NL4Opt declaration scorer, NER scorer and data loaders (spec milp 3.8, 5, 6 "Scorer")."""

import copy
import os

import numpy as np
import pytest

from optkit._errors import InvalidProblemError
from optkit.milp.datasets import (
    NERDocument,
    default_data_dir,
    load_nl4opt_generation,
    load_nl4opt_ner,
)
from optkit.milp.scoring import (
    ner_score,
    ner_spans,
    nl4opt_canonical,
    nl4opt_score,
    objective_is_max,
)

_REPO_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "nl4opt")
DATA = os.environ.get("OPTKIT_NL4OPT_DIR") or _REPO_DATA
HAS_DATA = os.path.isfile(os.path.join(DATA, "generation_dev.jsonl"))
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"NL4Opt data not found at {DATA} (set OPTKIT_NL4OPT_DIR)")


@pytest.fixture(scope="module")
def dev():
    return load_nl4opt_generation(os.path.join(DATA, "generation_dev.jsonl"))


# a hand-written record in NL4Opt layout (not from the data): 2 variables, 3 order_mapping keys
TOY = {
    "id": "toy",
    "vars": ["chairs", "tables"],
    "order_mapping": {"chairs": 0, "tables": 1, "the tables": 1},
    "obj_declaration": {"type": "objective", "direction": "maximize", "name": "profit",
                        "terms": {"chairs": "43", "tables": "52"}},
    "const_declarations": [
        {"type": "linear", "direction": "available", "limit": "17", "terms": {"chairs": "1.4"},
         "operator": "LESS_OR_EQUAL"},
        {"type": "ratio", "direction": "at least", "limit": "60%", "var": "tables", "operator": "GREATER_OR_EQUAL"},
        {"type": "xby", "direction": "at most", "x_var": "chairs", "param": "twice", "y_var": "the tables",
         "operator": "LESS_OR_EQUAL"},
        {"type": "lowerbound", "direction": "at least", "limit": "2", "var": "chairs", "operator": "GREATER_OR_EQUAL"},
        {"type": "sum", "direction": "at most", "limit": "ten", "operator": "LESS_OR_EQUAL"},
        {"type": "xy", "direction": "exceed", "x_var": "chairs", "y_var": "tables", "operator": "GREATER_OR_EQUAL"},
    ],
}


def test_toy_faithful_rows():
    obj, rows = nl4opt_canonical(TOY)
    np.testing.assert_array_equal(obj, [43, 52, 0])        # K = 3 keys, direction not encoded
    expected = [
        [1.4, 1, 1, 17],                                   # linear starts from ones
        [0.6, -0.4, 0.6, 0],                               # ratio: -r everywhere, 1-r at var, rhs 0; >= negated
        [1, -2, 0, 0],                                     # xby: x 1, y -a
        [-1, 0, 0, -2],                                    # lowerbound negated
        [1, 1, 1, 10],                                     # sum: ones
        [-1, 1, -1, -1],                                   # xy: ones, y -1, x 1, rhs 1; then negated
    ]
    np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-15)


def test_toy_fixed_rows():
    obj, rows = nl4opt_canonical(TOY, mode="fixed")
    np.testing.assert_array_equal(obj, [-43, -52])           # max negated, length = #variables
    expected = [[1.4, 0, 17], [0.6, -0.4, 0], [1, -2, 0], [-1, 0, -2], [1, 1, 10], [-1, 1, 0]]
    np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-15)


def test_objective_direction_words():
    assert objective_is_max("maximize") and objective_is_max("highest") and objective_is_max("most")
    assert not objective_is_max("minimize") and not objective_is_max("lowest") and not objective_is_max("reduce")


@needs_data
@pytest.mark.parametrize("mode", ["faithful", "fixed"])
def test_gold_vs_gold(dev, mode):
    assert len(dev) == 99
    r = nl4opt_score(dev, dev, mode=mode)
    assert r["accuracy"] == 1.0
    assert (r["fp"], r["fn"], r["n_docs"]) == (0, 0, 99)
    assert r["d"] == 99 + sum(len(g["const_declarations"]) for g in dev)
    assert r["n_unparsable"] == r["n_fuzzy"] == r["n_zero_parsed"] == r["n_number_errors"] == 0


@needs_data
def test_coconut_faithful_rows(dev):
    coconut = dev[0]
    assert coconut["document"].startswith("A coconut seller")
    obj, rows = nl4opt_canonical(coconut)
    np.testing.assert_array_equal(obj, [50, 30])
    np.testing.assert_array_equal(rows, [[10, 8, 200], [1, -1, 1]])
    _, rows_fixed = nl4opt_canonical(coconut, mode="fixed")
    np.testing.assert_array_equal(rows_fixed, [[10, 8, 200], [1, -1, 0]])


@needs_data
@pytest.mark.parametrize("mode", ["faithful", "fixed"])
def test_dropped_and_spurious_rows(dev, mode):
    gold = dev[0]
    pred = copy.deepcopy(gold)
    del pred["const_declarations"][1]
    r = nl4opt_score([pred], [gold], mode=mode)
    assert (r["fp"], r["fn"], r["d"]) == (0, 1, 3)
    assert r["accuracy"] == pytest.approx(2 / 3, rel=1e-15)

    pred = copy.deepcopy(gold)
    pred["const_declarations"].append({"type": "upperbound", "direction": "at most", "limit": "7",
                                       "var": "rickshaws", "operator": "LESS_OR_EQUAL"})
    r = nl4opt_score([pred], [gold], mode=mode)
    assert (r["fp"], r["fn"], r["d"]) == (1, 0, 3)

    pred = copy.deepcopy(gold)   # duplicated rows count once
    pred["const_declarations"].append(copy.deepcopy(pred["const_declarations"][0]))
    assert nl4opt_score([pred], [gold], mode=mode)["accuracy"] == 1.0


@needs_data
def test_flipped_objective_sense(dev):
    gold = dev[0]
    pred = copy.deepcopy(gold)
    pred["obj_declaration"]["direction"] = "minimize"
    assert nl4opt_score([pred], [gold], mode="faithful")["accuracy"] == 1.0
    r = nl4opt_score([pred], [gold], mode="fixed")
    assert (r["fp"], r["fn"]) == (1, 0)
    assert r["per_doc"][0]["objective_match"] is False


@needs_data
def test_official_number_quirks_in_score(dev):
    gold = dev[0]
    pred = copy.deepcopy(gold)
    pred["const_declarations"][0]["limit"] = "200-piece"   # official strips non-digits -> 200
    r = nl4opt_score([pred], [gold])
    assert r["accuracy"] == 1.0
    assert nl4opt_score([pred], [gold], mode="fixed")["n_number_errors"] == 1  # strict parser rejects it
    pred["const_declarations"][0]["limit"] = "plenty"      # -> 0, counted
    r = nl4opt_score([pred], [gold])
    assert r["n_zero_parsed"] == 1 and r["fp"] == 1


@needs_data
def test_fuzzy_names_and_unparsable(dev):
    gold = dev[0]
    pred = copy.deepcopy(gold)
    pred["obj_declaration"]["terms"] = {"Rickshaw": "50", "ox cart": "30"}
    r = nl4opt_score([pred], [gold])
    assert r["accuracy"] == 1.0 and r["n_fuzzy"] == 2

    bad = [None, "not json", {"obj_declaration": {}}, {**gold, "const_declarations": [{"type": "weird"}]}]
    r = nl4opt_score(bad, [gold] * 4)
    assert r["n_unparsable"] == 4
    assert all(d["fp"] == 1 and d["fn"] == 2 for d in r["per_doc"])   # empty formulation, never dropped

    # predictions keyed by id; a missing id is an empty formulation
    r = nl4opt_score({gold["id"]: pred}, dev[:2])
    assert r["per_doc"][0]["fp"] == 0 and r["per_doc"][1]["unparsable"]


def test_score_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        nl4opt_score([TOY], [TOY], mode="lenient")
    with pytest.raises(InvalidProblemError, match="preds"):
        nl4opt_score([TOY], [TOY, TOY])


# ------------------------------------------------------------------------------------------------- NER

def test_ner_hand_computed():
    gold = [["B-VAR", "I-VAR", "O", "B-PARAM", "O", "B-LIMIT"],
            ["O", "B-VAR", "O", "B-PARAM", "I-PARAM"]]
    pred = [["B-VAR", "I-VAR", "O", "B-PARAM", "O", "B-PARAM"],   # VAR ok, PARAM ok, LIMIT as PARAM
            ["O", "I-VAR", "O", "B-PARAM", "O"]]                  # stray I-VAR starts a VAR (ok); PARAM too short
    assert ner_spans(pred[1]) == [("VAR", 1, 2), ("PARAM", 3, 4)]
    r = ner_score(pred, gold)
    # pred spans 5, gold spans 5, correct 3 (VAR, PARAM, VAR)
    assert (r["n_pred"], r["n_gold"], r["n_correct"]) == (5, 5, 3)
    assert r["precision"] == pytest.approx(3 / 5) and r["recall"] == pytest.approx(3 / 5)
    assert r["per_type"]["VAR"]["f1"] == 1.0
    assert r["per_type"]["PARAM"] == pytest.approx(
        {"precision": 1 / 3, "recall": 1 / 2, "f1": 0.4, "n_pred": 3, "n_gold": 2, "n_correct": 1})
    assert r["per_type"]["LIMIT"]["recall"] == 0.0 and r["per_type"]["LIMIT"]["n_pred"] == 0


def test_ner_spans_conlleval():
    assert ner_spans(["I-VAR", "I-VAR", "I-PARAM", "B-PARAM", "I-PARAM", "O", "I-VAR"]) == \
        [("VAR", 0, 2), ("PARAM", 2, 3), ("PARAM", 3, 5), ("VAR", 6, 7)]
    assert ner_spans(["B-VAR", "B-VAR"]) == [("VAR", 0, 1), ("VAR", 1, 2)]
    with pytest.raises(InvalidProblemError):
        ner_score([["O"]], [["O", "O"]])


# --------------------------------------------------------------------------------------------- loaders

@needs_data
def test_loaders(dev):
    assert all(isinstance(r["id"], str) and "obj_declaration" in r for r in dev)
    assert dev[0]["id"] == "-640645082"
    train = load_nl4opt_ner(os.path.join(DATA, "ner_train.txt"))
    dv = load_nl4opt_ner(os.path.join(DATA, "ner_dev.txt"))
    assert isinstance(train[0], NERDocument)
    assert len(train) == 713 and len(dv) == 99
    # spec: 74,377 token lines; one of them is the -DOCSTART- marker, which is not a token
    assert sum(len(d.tokens) for d in train) + 1 == 74377
    assert all(len(d.tokens) == len(d.tags) for d in train)
    b_counts = {}
    for d in train:
        for t in d.tags:
            if t.startswith("B-"):
                b_counts[t[2:]] = b_counts.get(t[2:], 0) + 1
    assert b_counts == {"VAR": 4604, "PARAM": 3635, "LIMIT": 1805, "CONST_DIR": 1623, "OBJ_DIR": 714,
                        "OBJ_NAME": 2108}
    assert ner_score(dv, dv)["f1"] == 1.0


def test_default_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("OPTKIT_NL4OPT_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="OPTKIT_NL4OPT_DIR"):
        default_data_dir()
    assert default_data_dir(tmp_path) == str(tmp_path)
    monkeypatch.setenv("OPTKIT_NL4OPT_DIR", str(tmp_path))
    assert default_data_dir() == str(tmp_path)
    with pytest.raises(FileNotFoundError):
        default_data_dir(tmp_path / "missing")


def test_loader_errors(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"1": {"vars": []}}\n\n{"2": 3}\n')
    with pytest.raises(InvalidProblemError, match="g.jsonl:3"):
        load_nl4opt_generation(f)
    n = tmp_path / "n.txt"
    n.write_text("-DOCSTART-\t_\t_\tO\n\nA\t_\t_\tO\nB\t_\t_\tB-VAR\n\n\nC\t_\t_\tO\n")
    assert load_nl4opt_ner(n) == [NERDocument(["A", "B"], ["O", "B-VAR"]), NERDocument(["C"], ["O"])]
    n.write_text("A\tO\n")
    with pytest.raises(InvalidProblemError, match="n.txt:1"):
        load_nl4opt_ner(n)
