"""optkit bench milp (quick, end to end on a few dev records), the milp demo, and the section-6 cases module."""

import json
import os

import numpy as np
import pytest

from optkit import Status, cli
from optkit.milp.cases import CASES, case_dict, case_model
from optkit.milp.solve import solve

_REPO_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "nl4opt")
DATA = os.environ.get("OPTKIT_NL4OPT_DIR") or _REPO_DATA
HAS_DATA = os.path.isfile(os.path.join(DATA, "generation_dev.jsonl")) and os.path.isfile(
    os.path.join(DATA, "ner_dev.txt"))
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"NL4Opt data not found at {DATA} (set OPTKIT_NL4OPT_DIR)")

# the spec's table (section 6), written out again here, independent of optkit.milp.cases
SPEC = {
    "ducks": (1140.0, 1160.0), "elm_chairs": (236.5, 224.0), "painkillers": (21.3333, 20.8),
    "coconut": (888.889, 880.0), "knapsack": (240.0, 220.0), "infeasible": ("INFEASIBLE", "INFEASIBLE"),
    "unbounded": ("UNBOUNDED", "UNBOUNDED"), "fixed_charge": (18.5, 25.0), "either_or": (12.969, 9.0),
    "min_lot": (60.0, 30.0), "projects": (17.4167, 17.0),
}


def test_cases_cover_the_spec_table():
    assert list(CASES) == list(SPEC)
    for name, (lp, mi) in SPEC.items():
        c = CASES[name]
        for got, want in ((c.lp, lp), (c.milp, mi)):
            if isinstance(want, str):
                assert got == want
            else:  # the spec prints 4-6 significant digits
                assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_cases_solve_to_the_spec_numbers(name):
    c = CASES[name]
    for policy, want, x in (("continuous", c.lp, c.lp_x), (c.milp_policy, c.milp, c.milp_x)):
        r = solve(case_model(name), integrality=policy)
        if isinstance(want, str):
            assert r.status.name == want
            continue
        assert r.status == Status.CONVERGED
        assert r.fun == pytest.approx(want, rel=1e-9)
        if x is not None:
            np.testing.assert_allclose(r.x, x, atol=1e-9)


def test_case_accessors_return_fresh_copies():
    d = case_dict("knapsack")
    d["variables"].clear()
    assert len(case_dict("knapsack")["variables"]) == 3
    assert case_model("knapsack") is not case_model("knapsack")
    with pytest.raises(KeyError, match="no validation case"):
        case_dict("nope")


def test_demo_runs(capsys):
    assert cli.main(["demo", "milp"]) == 0
    out = capsys.readouterr().out
    assert "optkit.milp" in out and "CONVERGED" in out
    assert "1160" in out and "1140" in out


def test_bench_listed_and_needs_data(tmp_path, monkeypatch, capsys):
    assert cli.main(["bench", "--list"]) == 0
    assert "milp" in capsys.readouterr().out
    monkeypatch.delenv("OPTKIT_NL4OPT_DIR", raising=False)
    code = cli.main(["bench", "milp", "--quick", "--experiment", "formulators", "--out", str(tmp_path)])
    assert code == cli.EXIT_INPUT
    assert "OPTKIT_NL4OPT_DIR" in capsys.readouterr().err


@needs_data
def test_bench_quick_end_to_end(tmp_path, capsys):
    args = ["bench", "milp", "--quick", "--records", "3", "--repeats", "1", "--layer-batch", "2",
            "--layer-samples", "2", "--data-dir", DATA, "--out", str(tmp_path), "--quiet"]
    assert cli.main(args) == 0
    f = json.loads((tmp_path / "formulators.json").read_text())
    labels = [r["label"] for r in f["formulators"]]
    assert labels == ["rules+gold", "rules+gold-spans", "tagger+rules", "gold"]
    gold = f["formulators"][-1]
    assert gold["declaration"]["faithful"]["accuracy"] == 1.0
    assert gold["execution"]["all-integer"]["strict"]["n_correct"] == 3
    for r in f["formulators"]:
        assert set(r["execution"]) >= {"all-integer", "continuous", "ir", "either"}
        assert set(r["time"]) >= {"mean", "median", "p90", "max"}
    assert set(f["skipped"]) == {"llm-three-phase", "llm-hybrid", "llm-one-step"}
    assert 0.0 < f["ner"]["f1"] <= 1.0 and f["ner"]["n_docs"] == 3
    s = json.loads((tmp_path / "solvers.json").read_text())
    assert all(c["ok"] for c in s["checks"] if c["gate"])
    assert len(s["dev"]) == 3 and all(r["agree"] for r in s["dev"])
    la = json.loads((tmp_path / "layer.json").read_text())
    assert {r["layer"] for r in la["rows"]} == {"PerturbedMILP", "PerturbedFenchelYoungLoss"}
    assert la["pyepo"]["status"] in ("installed", "not installed")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["experiments"] == ["formulators", "layer", "solvers"]
    assert any(c["target"] == ">= 0.877" for c in summary["checks"])
    table = (tmp_path / "table.md").read_text()
    assert "Solver paths" in table and "Spec §7 targets" in table
    lines = (tmp_path / "formulators_records.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 3


# ------------------------------------------------------------------------------- LLM formulators over HTTP
_LLM_VARS = {"variables": [
    {"name": name, "mentions": [name], "domain": "integer", "domain_reason": "counted", "unit": None, "lb": None,
     "ub": None} for name in ("x", "y")]}
_LLM_TERMS = [{"var": "x", "coef": 1}, {"var": "y", "coef": 1}]


def _llm_reply(task: str) -> dict:
    """A fixed, valid answer per task (the same small model for every problem: wrong, but well-formed)."""
    from optkit.milp import prompts

    slots = {k: None for k in prompts.SLOT_NAMES}
    if task == prompts.TASK_VARIABLES:
        return _LLM_VARS
    stmt = {"objective": {"class": "objective", "sense": "maximize", "name": "profit", "terms": _LLM_TERMS,
                          "vars": []},
            "constraints": [{"class": "sum", "text": "at most 10", "slots": {**slots, "operator": "<=",
                                                                               "limit": 10}}]}
    if task == prompts.TASK_STATEMENTS:
        return stmt
    return {"variables": [{"name": "x", "domain": "integer", "lb": 0, "ub": None, "unit": None, "mentions": ["x"],
                           "domain_source": "inferred"},
                          {"name": "y", "domain": "integer", "lb": 0, "ub": None, "unit": None, "mentions": ["y"],
                           "domain_source": "inferred"}],
            "objective": {"type": "objective", "sense": "maximize", "direction": None, "name": "profit",
                          "terms": {"x": 1, "y": 1}, "vars": [], "constant": 0},
            "constraints": [{"type": "sum", "operator": "LESS_OR_EQUAL", "limit": 10}]}


@pytest.fixture
def llm_server(chat_server):
    calls = []

    def respond(path, headers, body):
        task = next(m["content"] for m in body["messages"] if m["role"] == "user").split("\n", 1)[0]
        calls.append(task)
        return 200, {}, json.dumps({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": json.dumps(_llm_reply(task))},
             "finish_reason": "stop"}]})

    return chat_server(respond), calls


@needs_data
def test_bench_llm_formulators_over_http(tmp_path, llm_server, monkeypatch):
    url, calls = llm_server
    monkeypatch.delenv("OPTKIT_LLM_API_KEY", raising=False)
    args = ["bench", "milp", "--experiment", "formulators", "--records", "2", "--data-dir", DATA,
            "--out", str(tmp_path), "--quiet", "--base-url", url, "--model", "fake",
            "--methods", "llm-three-phase,llm-hybrid,llm-one-step"]
    assert cli.main(args) == 0
    f = json.loads((tmp_path / "formulators.json").read_text())
    assert [r["label"] for r in f["formulators"]] == ["llm-three-phase", "llm-hybrid", "llm-one-step"]
    assert f["skipped"] == {} and not f["llm_transport_failed"]
    for r in f["formulators"]:
        assert r["n_docs"] == 2 and r["execution"]["all-integer"]["strict"]["n"] == 2 and r["n_errors"] == 0
        assert r["execution"]["all-integer"]["strict"]["by_status"] == {"CONVERGED": {"n": 2, "correct": 0}}
    assert calls  # the endpoint was used


def test_bench_llm_transport_failure_exits_4(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("OPTKIT_LLM_API_KEY", raising=False)
    if not HAS_DATA:
        pytest.skip("NL4Opt data not found")
    args = ["bench", "milp", "--experiment", "formulators", "--records", "1", "--data-dir", DATA,
            "--out", str(tmp_path), "--quiet", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "fake",
            "--methods", "llm-one-step"]
    assert cli.main(args) == cli.EXIT_SERVICE
    f = json.loads((tmp_path / "formulators.json").read_text())
    assert f["llm_transport_failed"] and "LLMError" in f["skipped"]["llm-one-step"]
