"""Unit tests of the offline entity repairs (optkit.milp.extract.postprocess) and the grouping rules they rely on."""

import numpy as np
import pytest

from optkit.milp.extract import postprocess as pp
from optkit.milp.extract.crf import load_tagger
from optkit.milp.extract.grouping import group_mentions
from optkit.milp.extract.tokenize import tokenize


def _words(text):
    return [t.text for t in tokenize(text)]


def _span(words, label, a, b=None):
    b = a if b is None else b
    return {"label": label, "token_start": a, "token_end": b, "text": " ".join(words[a:b + 1])}


def _find(words, phrase):
    p = phrase.split()
    for i in range(len(words) - len(p) + 1):
        if words[i:i + len(p)] == p:
            return i, i + len(p) - 1
    raise AssertionError(phrase)


def _labels(spans, label):
    return [s["text"] for s in sorted(spans, key=lambda s: s["token_start"]) if s["label"] == label]


def test_milp_grouping_keeps_negated_and_labelled_variants_apart():
    assert group_mentions(["AC seats", "non - AC seats", "AC seat", "non - AC seat"]) == [
        ["AC seats", "AC seat"], ["non - AC seats", "non - AC seat"]]
    g = group_mentions(["physics class", "mixture A", "mixture B", "Mixture A"])
    assert ["mixture A", "Mixture A"] in g and ["mixture B"] in g
    # the earlier rules still merge what they should
    assert group_mentions(["film - based", "film - based stores"]) == [["film - based", "film - based stores"]]


def test_milp_marginals_are_probabilities_consistent_with_viterbi():
    tagger = load_tagger()
    words = _words("A factory makes chairs and tables. Each chair takes 2 hours.")
    P = tagger.marginals(words)
    assert P.shape == (len(words), len(tagger.labels))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(P >= 0)
    tags = tagger.tag(words)
    # the most likely label per token agrees with Viterbi on confident tokens
    for i, t in enumerate(tags):
        if P[i].max() > 0.9:
            assert tagger.labels[int(P[i].argmax())] == t
    assert tagger.marginals([]).shape == (0, len(tagger.labels))


def test_milp_select_variables_drops_stray_groups_and_generic_heads():
    words = _words("An airport uses commercial planes and private planes for the pandemic . "
                   "A commercial plane carries 180 travelers . How many planes ?")
    labels = ("O", "B-VAR", "I-VAR")
    P = np.zeros((len(words), 3))
    P[:, 0] = 1.0
    spans = []
    for phrase, p in (("commercial planes", 0.9), ("private planes", 0.9), ("pandemic", 0.6),
                      ("commercial plane", 0.8), ("planes ?", None)):
        a, b = _find(words, phrase)
        if p is None:
            b = a
            p = 0.7
        P[a:b + 1] = [1 - p, p, 0.0]
        spans.append(_span(words, "VAR", a, b))
    out = pp.select_variables(words, spans, P, labels)
    var = _labels(out, "VAR")
    assert "pandemic" not in var  # a third group needs a higher score
    assert "planes" not in var  # the category noun would merge both variables
    assert sorted(set(var)) == ["commercial plane", "commercial planes", "private planes"]


def test_milp_select_variables_finds_a_coordinated_second_variable():
    words = _words("A distributor moves goods using trucks or boats . A truck takes 30 units .")
    a, _ = _find(words, "trucks")
    b, _ = _find(words, "boats")
    P = np.zeros((len(words), 3))
    P[:, 0] = 1.0
    P[a] = [0.1, 0.9, 0.0]
    P[b] = [0.9, 0.1, 0.0]  # below every candidate threshold, but coordinated with a variable
    out = pp.select_variables(words, [_span(words, "VAR", a)], P, ("O", "B-VAR", "I-VAR"))
    assert _labels(out, "VAR") == ["trucks", "boats"]
    assert all("new" not in s for s in out)
    # a word the tagger all but excludes (a verb: "or outsource") is not taken
    P[b] = [1.0, 0.0, 0.0]
    out = pp.select_variables(words, [_span(words, "VAR", a)], P, ("O", "B-VAR", "I-VAR"))
    assert _labels(out, "VAR") == ["trucks"]


def test_milp_select_variables_prefers_coordinated_groups():
    words = _words("A milk company delivers milk through bikes or by car . Milk is fresh . A car carries milk .")
    P = np.zeros((len(words), 3))
    P[:, 0] = 1.0
    spans = []
    for i, w in enumerate(words):
        if w.lower() == "milk":
            P[i] = [0.4, 0.6, 0.0]
            spans.append(_span(words, "VAR", i))
        elif w == "car":
            P[i] = [0.2, 0.8, 0.0]
            spans.append(_span(words, "VAR", i))
    P[_find(words, "bikes")[0]] = [0.8, 0.2, 0.0]
    out = pp.select_variables(words, spans, P, ("O", "B-VAR", "I-VAR"))
    assert sorted(set(_labels(out, "VAR"))) == ["bikes", "car"]


def test_milp_head_noun_mentions_only_for_unique_heads():
    words = _words("She takes sleeping pills and sleep supplement . One serving of pills has 1 gram of sugar .")
    spans = [_span(words, "VAR", *_find(words, "sleeping pills")),
             _span(words, "VAR", *_find(words, "sleep supplement"))]
    out = pp.head_noun_mentions(words, spans)
    assert _labels(out, "VAR") == ["sleeping pills", "sleep supplement", "pills"]
    words = _words("large containers and medium containers . Each containers holds 5 .")
    spans = [_span(words, "VAR", *_find(words, "large containers")),
             _span(words, "VAR", *_find(words, "medium containers"))]
    assert pp.head_noun_mentions(words, spans) == spans  # "containers" belongs to both


def test_milp_detect_objective_direction():
    words = _words("Lines make 20 sets . How many lines should be used to reduce the total number of lines ?")
    out = pp.detect_objective_direction(words, [])
    assert _labels(out, "OBJ_DIR") == ["reduce"]
    words = _words("We must minimize cost . At least 5 are needed .")
    assert _labels(pp.detect_objective_direction(words, []), "OBJ_DIR") == ["minimize"]
    existing = [_span(words, "OBJ_DIR", 2)]
    assert pp.detect_objective_direction(words, existing) == existing
    assert pp.detect_objective_direction(_words("A has 5 units ."), []) == []


def test_milp_objective_units_and_consistency():
    words = _words("A salad contains 3 grams of sugar and costs $ 2 . A soup contains 5 grams of sugar . "
                   "Minimize the sugar intake .")
    spans = [_span(words, "PARAM", i) for i, w in enumerate(words) if w in ("3", "2", "5")]
    spans += [_span(words, "OBJ_DIR", _find(words, "Minimize")[0]),
              _span(words, "OBJ_NAME", *_find(words, "sugar intake")),
              _span(words, "OBJ_NAME", _find(words, "costs")[0])]
    out = pp.clean_objective_names(words, pp.augment_objective_names(words, spans))
    names = _labels(out, "OBJ_NAME")
    assert names.count("sugar") == 2 and "costs" not in names
    # a count objective whose noun is never a unit keeps only its own phrase (objvar)
    words = _words("The cans hold 5 litres . Minimize the total number of cans .")
    spans = [_span(words, "PARAM", _find(words, "5")[0]), _span(words, "OBJ_DIR", _find(words, "Minimize")[0]),
             _span(words, "OBJ_NAME", *_find(words, "total number of cans"))]
    out = pp.clean_objective_names(words, pp.augment_objective_names(words, spans))
    assert _labels(out, "OBJ_NAME") == ["total number of cans"]


def test_milp_comparison_limit_and_enumeration_cues():
    words = _words("The number of cars used must exceed the number of trucks used .")
    spans = [_span(words, "VAR", _find(words, "cars")[0]), _span(words, "VAR", _find(words, "trucks")[0])]
    assert _labels(pp.add_comparison_cues(words, spans), "CONST_DIR") == ["must exceed"]
    words = _words("It needs to move 1000 units and must have a maximum of 40 % by boat .")
    spans = [_span(words, "LIMIT", _find(words, "1000")[0]), _span(words, "CONST_DIR", _find(words, "maximum")[0]),
             _span(words, "LIMIT", *_find(words, "40 %"))]
    assert _labels(pp.add_limit_cues(words, spans), "CONST_DIR") == ["needs", "maximum"]
    words = _words("He wants at least 160 grams of protein and 180 grams of carbs .")
    spans = [_span(words, "CONST_DIR", *_find(words, "at least")), _span(words, "LIMIT", _find(words, "160")[0]),
             _span(words, "PARAM", _find(words, "180")[0])]
    assert _labels(pp.enumerated_limits(words, spans), "LIMIT") == ["160", "180"]


@pytest.mark.parametrize("flag", ["COMPARE_CUES", "LIMIT_CUES", "ENUM_LIMITS"])
def test_milp_repair_switches_are_honoured(monkeypatch, flag):
    words = _words("The number of cars used must exceed the number of trucks used .")
    spans = [_span(words, "VAR", _find(words, "cars")[0]), _span(words, "VAR", _find(words, "trucks")[0])]
    monkeypatch.setattr(pp, flag, False)
    out = pp.repair_spans(words, spans)
    assert (_labels(out, "CONST_DIR") == ["must exceed"]) == (flag != "COMPARE_CUES")


def test_milp_supply_clause_after_the_number_is_a_limit():
    words = _words("Each chair uses 2 units of wood and each table uses 6 units of wood , and 100 units of wood are "
                   "available .")
    spans = [_span(words, "VAR", _find(words, "chair")[0]), _span(words, "VAR", _find(words, "table")[0]),
             _span(words, "PARAM", _find(words, "2")[0]), _span(words, "PARAM", _find(words, "6")[0]),
             _span(words, "PARAM", _find(words, "100")[0])]
    out = pp.enumerated_limits(words, spans)
    assert _labels(out, "LIMIT") == ["100"] and _labels(out, "CONST_DIR") == ["available"]
    # and the LIMIT survives fix_number_roles (its sentence now has a CONST_DIR)
    assert _labels(pp.fix_number_roles(words, out), "LIMIT") == ["100"]
