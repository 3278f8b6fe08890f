"""Offline rule formulator (spec milp 3.4 items 4-9): mention grouping, hand-written span cases checked against
hand-written declarations, and declaration accuracy on NL4Opt dev (faithful scorer) with gold spans."""

import os
import re

import pytest

from optkit import InvalidProblemError
from optkit.milp.datasets import load_nl4opt_generation
from optkit.milp.extract.grouping import group_mentions, normalize_mention, singularize
from optkit.milp.extract.rules import formulate_from_spans
from optkit.milp.ir import MILPModel
from optkit.milp.scoring import nl4opt_score

_REPO_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "nl4opt")
DATA = os.environ.get("OPTKIT_NL4OPT_DIR") or _REPO_DATA
HAS_DATA = os.path.isfile(os.path.join(DATA, "generation_dev.jsonl"))
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"NL4Opt data not found at {DATA} (set OPTKIT_NL4OPT_DIR)")

#: measured on dev (gold spans): gold order_mapping 0.9205, own grouping 0.9205
#: (the faithful scorer maps names through the gold order_mapping, so grouping errors rarely change it); tests
#: allow 0.005 slack. Own grouping reproduces the gold partition on 94 of 99 dev records.
DEV_GROUPING_EXACT = 94
DEV_ACC_GOLD_GROUPING = 0.9205
DEV_ACC_OWN_GROUPING = 0.9205


def marked(text: str):
    """Tokens and spans from a marked-up sentence: ``[ox carts|VAR]`` is a span; tokens split at spaces and before
    ``. , ; ? !`` and after ``$``."""
    tokens, spans = [], []
    for m in re.finditer(r"\[([^\]|]+)\|([A-Z_]+)\]|(\S+)", text):
        if m.group(3) is not None:
            parts = re.findall(r"\$|[^\s.,;?!$]+(?:[.,]\d+)*|[.,;?!]", m.group(3))
            tokens += parts
            continue
        words = re.findall(r"\$|[^\s$]+", m.group(1))
        start = len(tokens)
        tokens += words
        spans.append({"text": m.group(1).replace("$ ", "$"), "label": m.group(2), "token_start": start,
                      "token_end": len(tokens) - 1})
    return tokens, spans


def decl(text, order_mapping=None):
    tokens, spans = marked(text)
    model, _ = formulate_from_spans(tokens, spans, order_mapping=order_mapping)
    assert isinstance(model, MILPModel)
    return model.to_nl4opt()


def strip(c):
    return {k: v for k, v in c.items() if k != "direction"}


COCONUT = (
    "A coconut seller has to transport coconuts using either [rickshaws|VAR] or [ox carts|VAR] . "
    "The [rickshaws|VAR] can take [50|PARAM] [coconuts|OBJ_NAME] each and cost $ [10|PARAM] per trip . "
    "The [ox carts|VAR] can take [30|PARAM] [coconuts|OBJ_NAME] each and cost $ [8|PARAM] per trip . "
    "The seller has [at most|CONST_DIR] $ [200|LIMIT] to spend on transporting the coconuts . "
    "Due to pollution , the number of [rickshaws|VAR] [must not exceed|CONST_DIR] the number of [ox carts|VAR] . "
    "Formulate a LP to [maximize|OBJ_DIR] the [number of coconuts|OBJ_NAME] that can be transported .")


def test_coconut_exact_declarations():
    d = decl(COCONUT, order_mapping={"rickshaws": 0, "ox carts": 1})
    assert d["obj_declaration"]["type"] == "objective"
    assert d["obj_declaration"]["terms"] == {"rickshaws": "50", "ox carts": "30"}
    assert d["obj_declaration"]["direction"] == "maximize"
    cons = [strip(c) for c in d["const_declarations"]]
    assert cons == [
        {"type": "linear", "terms": {"rickshaws": "10", "ox carts": "8"}, "limit": "200",
         "operator": "LESS_OR_EQUAL"},
        {"type": "xy", "x_var": "rickshaws", "y_var": "ox carts", "operator": "LESS_OR_EQUAL"},
    ]
    # own grouping gives the same declarations
    assert [strip(c) for c in decl(COCONUT)["const_declarations"]] == cons


def test_percentage_is_ratio():
    d = decl("A company transports goods by [canoe|VAR] or [truck|VAR] . A canoe trip costs $ [10|PARAM] and a "
             "truck trip costs $ [20|PARAM] . [At least|CONST_DIR] [60%|LIMIT] of trips must be by [canoe|VAR] . "
             "[Minimize|OBJ_DIR] the [cost|OBJ_NAME] .")
    ratio = [strip(c) for c in d["const_declarations"] if c["type"] == "ratio"]
    assert ratio == [{"type": "ratio", "var": "canoe", "limit": "60%", "operator": "GREATER_OR_EQUAL"}]


def test_twice_as_many_is_xby():
    d = decl("A shop sells [chairs|VAR] and [tables|VAR] . Each [chair|VAR] yields a [profit|OBJ_NAME] of $ [20|PARAM] "
             "and each [table|VAR] $ [50|PARAM] . The shop must sell [at least|CONST_DIR] [twice|PARAM] as many "
             "[chairs|VAR] as [tables|VAR] . [Maximize|OBJ_DIR] [profit|OBJ_NAME] .")
    xby = [strip(c) for c in d["const_declarations"] if c["type"] == "xby"]
    assert xby == [{"type": "xby", "x_var": "chairs", "param": "twice", "y_var": "tables",
                    "operator": "GREATER_OR_EQUAL"}]
    assert d["obj_declaration"]["terms"] == {"chairs": "20", "tables": "50"}
    assert d["order_mapping"] == {"chairs": 0, "tables": 1, "chair": 0, "table": 1}


def test_amount_in_variable_is_bound():
    d = decl("Bold Tycoon has $ [10,000|LIMIT] to [invest|CONST_DIR] in [GICs|VAR] and [index ETF|VAR] . "
             "[GICs|VAR] yield a [2%|PARAM] [return|OBJ_NAME] whereas [index ETF|VAR] yields a [return|OBJ_NAME] of "
             "[7.5%|PARAM] . He needs to place [at least|CONST_DIR] $ [4,000|LIMIT] in [index ETF|VAR] . "
             "[Maximize|OBJ_DIR] the [return|OBJ_NAME] .")
    cons = [strip(c) for c in d["const_declarations"]]
    assert {"type": "lowerbound", "var": "index ETF", "limit": "4,000", "operator": "GREATER_OR_EQUAL"} in cons
    assert {"type": "sum", "limit": "10,000", "operator": "LESS_OR_EQUAL"} in cons
    assert d["obj_declaration"]["terms"] == {"GICs": "2%", "index ETF": "7.5%"}


def test_global_assignment_keeps_coefficients_apart():
    d = decl("A bakery makes [cakes|VAR] and [pies|VAR] . A [cake|VAR] needs [2|PARAM] kg of flour and "
             "[3|PARAM] eggs ; "
             "a [pie|VAR] needs [1|PARAM] kg of flour and [4|PARAM] eggs . There are [50|LIMIT] kg of flour and "
             "[90|LIMIT] eggs [available|CONST_DIR] . Each [cake|VAR] earns a [profit|OBJ_NAME] of $ [5|PARAM] . "
             "Each [pie|VAR] earns $ [4|PARAM] . [Maximize|OBJ_DIR] [profit|OBJ_NAME] .")
    lin = {c["limit"]: c["terms"] for c in d["const_declarations"] if c["type"] == "linear"}
    assert lin == {"50": {"cakes": "2", "pies": "1"}, "90": {"cakes": "3", "pies": "4"}}


def test_bad_inputs():
    tokens, spans = marked("Make [at least|CONST_DIR] [10|LIMIT] units .")
    with pytest.raises(InvalidProblemError, match="no VAR"):
        formulate_from_spans(tokens, spans)
    with pytest.raises(InvalidProblemError, match=r"spans\[0\]"):
        formulate_from_spans(tokens, [{"label": "VAR", "token_start": 99, "token_end": 99}])
    with pytest.raises(InvalidProblemError, match=r"spans\[0\]"):
        formulate_from_spans(tokens, [{"label": "VAR"}])
    # a LIMIT that is not a number is dropped with a diagnostic, the rest still formulates
    tokens, spans = marked("Make [at least|CONST_DIR] [many|LIMIT] [chairs|VAR] and [at most|CONST_DIR] [40|LIMIT] "
                           "[tables|VAR] . [Maximize|OBJ_DIR] [profit|OBJ_NAME] .")
    model, diags = formulate_from_spans(tokens, spans)
    assert [d["code"] for d in diags] == ["unparsable_number"]
    cons = [strip(c) for c in model.to_nl4opt()["const_declarations"]]
    assert cons == [{"type": "upperbound", "var": "tables", "limit": "40", "operator": "LESS_OR_EQUAL"}]
    assert model.objective.type == "objvar"


# ------------------------------------------------------------------------------------------------------ grouping
def test_singularize():
    assert [singularize(w) for w in ("batteries", "boxes", "benches", "dishes", "trucks", "glass", "bus")] == [
        "battery", "box", "bench", "dish", "truck", "glass", "bus"]


def test_normalize_drops_determiners_and_number_of():
    assert normalize_mention("the number of Trucks") == ("truck",)
    assert normalize_mention("units of ham") == ("ham",)
    assert normalize_mention("John's cakes") == ("john", "cake")


def test_group_mentions_forms_and_containment():
    g = group_mentions(["rickshaws", "ox carts", "rickshaw", "the number of ox carts", "Rickshaws"])
    assert g == [["rickshaws", "rickshaw", "Rickshaws"], ["ox carts", "the number of ox carts"]]
    g = group_mentions(["film-based", "electrical-based stores", "film-based stores", "electrical-based store"])
    assert g == [["film-based", "film-based stores"], ["electrical-based stores", "electrical-based store"]]


def test_group_mentions_anaphoric_head():
    g = group_mentions(["economical mobile phone", "premium mobile phone", "premium one"])
    assert g == [["economical mobile phone"], ["premium mobile phone", "premium one"]]


# ------------------------------------------------------------------------------------------------------ dev data
@pytest.fixture(scope="module")
def dev():
    return load_nl4opt_generation(os.path.join(DATA, "generation_dev.jsonl"))


def _accuracy(recs, gold_grouping):
    preds = []
    for r in recs:
        om = r["order_mapping"] if gold_grouping else None
        model, _ = formulate_from_spans(r["tokens"], r["spans"], order_mapping=om)
        preds.append(model.to_nl4opt())
    return nl4opt_score(preds, recs)


@needs_data
def test_dev_first_record_exact(dev):
    r = dev[0]
    model, _ = formulate_from_spans(r["tokens"], r["spans"], order_mapping=r["order_mapping"])
    d = model.to_nl4opt()
    assert [strip(c) for c in d["const_declarations"]] == [strip(c) for c in r["const_declarations"]]
    assert d["obj_declaration"]["terms"] == r["obj_declaration"]["terms"]


@needs_data
def test_dev_accuracy_gold_spans_gold_grouping(dev):
    s = _accuracy(dev, True)
    assert s["n_unparsable"] == 0
    assert s["accuracy"] >= max(0.877, DEV_ACC_GOLD_GROUPING - 0.005)


@needs_data
def test_dev_grouping_matches_gold_partition(dev):
    exact = 0
    for r in dev:
        mentions = [s.get("text") or " ".join(t["text"] for t in r["tokens"][s["token_start"]:s["token_end"] + 1])
                    for s in r["spans"] if s["label"] == "VAR"]
        groups = group_mentions(mentions)
        om = r["order_mapping"]
        exact += len(groups) == len(set(om.values())) and all(len({om.get(m) for m in g}) == 1 for g in groups)
    assert exact >= DEV_GROUPING_EXACT


@needs_data
def test_dev_accuracy_gold_spans_own_grouping(dev):
    s = _accuracy(dev, False)
    assert s["accuracy"] >= DEV_ACC_OWN_GROUPING - 0.005
