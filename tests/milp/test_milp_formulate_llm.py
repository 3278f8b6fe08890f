"""formulate with LLM backends (spec milp 3.1, 3.5, 3.7, 5): canned replies from a Python fake and from a real
local HTTP chat-completions server (127.0.0.1 only). References: the spec's "elm chairs" case (MILP 224 at (4, 1),
LP 236.5) checked again with scipy.optimize.milp, and brute force."""

import json
import os
import threading

import numpy as np
import pytest

from optkit import InvalidProblemError, LLMError
from optkit._result import Status
from optkit.milp import prompts
from optkit.milp.formulate import FormulationState, Formulator, formulate, statements_to_ir
from optkit.milp.ir import MILPModel, Variable
from optkit.milp.llm import OpenAICompatibleBackend

pytest.importorskip("highspy")

ELM = ("A workshop builds benches and chairs from elm. A bench earns $43 and a chair earns $52. A bench takes 1.4 "
       "hours of carving and a chair 1.1 hours; 17 carving hours are available. A bench uses 2 elm planks and a "
       "chair 3 planks, and only 11 planks are in stock. How many benches and chairs maximize earnings?")
PHASE1 = {"variables": [
    {"name": "benches", "mentions": ["benches", "bench"], "domain": "integer", "domain_reason": "counted",
     "unit": None, "lb": None, "ub": None},
    {"name": "chairs", "mentions": ["chairs", "chair"], "domain": "integer", "domain_reason": "counted",
     "unit": None, "lb": None, "ub": None}]}


def _slots(**kw):
    return {k: kw.get(k) for k in prompts.SLOT_NAMES}


def _terms(**kw):
    return [{"var": k, "coef": v} for k, v in kw.items()]


CARVING = {"class": "linear", "text": "17 carving hours are available",
           "slots": _slots(terms=_terms(benches=1.4, chairs=1.1), operator="<=", limit=17)}
PLANKS = {"class": "linear", "text": "only 11 planks are in stock",
          "slots": _slots(terms=_terms(benches=2, chairs=3), operator="<=", limit=11)}
OBJECTIVE = {"class": "objective", "sense": "maximize", "name": "earnings", "terms": _terms(benches=43, chairs=52),
             "vars": []}
PHASE2 = {"objective": OBJECTIVE, "constraints": [CARVING, PLANKS]}
# misread "at least 20 benches" that is not in the text: infeasible together with the plank stock
PHASE2_INFEASIBLE = {"objective": OBJECTIVE, "constraints": [
    CARVING, PLANKS, {"class": "lowerbound", "text": "benches", "slots": _slots(var="benches", operator=">=",
                                                                               limit=20)}]}
IR = {"variables": [{"name": "benches", "domain": "integer", "lb": 0, "ub": None, "unit": None, "mentions": ["bench"],
                     "domain_source": "inferred"},
                    {"name": "chairs", "domain": "integer", "lb": 0, "ub": None, "unit": None, "mentions": ["chair"],
                     "domain_source": "inferred"}],
      "objective": {"type": "objective", "sense": "maximize", "direction": None, "name": "earnings",
                    "terms": {"benches": 43, "chairs": 52}, "vars": [], "constant": 0},
      "constraints": [{"type": "linear", "terms": {"benches": 1.4, "chairs": 1.1}, "operator": "LESS_OR_EQUAL",
                       "limit": 17},
                      {"type": "linear", "terms": {"benches": 2, "chairs": 3}, "operator": "LESS_OR_EQUAL",
                       "limit": 11}]}


def _reference():
    """Independent optimum of the elm chairs case: scipy's HiGHS MILP and brute force over the integer grid."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    A = np.array([[1.4, 1.1], [2.0, 3.0]])
    r = milp(-np.array([43.0, 52.0]), constraints=LinearConstraint(A, -np.inf, [17.0, 11.0]),
             integrality=np.ones(2), bounds=Bounds(0, np.inf))
    brute = max(43 * b + 52 * c for b in range(13) for c in range(5) if 1.4 * b + 1.1 * c <= 17 and 2 * b + 3 * c <= 11)
    assert abs(-r.fun - brute) < 1e-9
    return brute


class Fake:
    """A callable LLM: replies by the ``TASK:`` line of the first user message; a list is served in order (its
    last item repeats)."""

    def __init__(self, **replies):
        self.replies = {getattr(prompts, f"TASK_{k.upper()}"): v for k, v in replies.items()}
        self.calls = []

    def __call__(self, messages, *, schema=None, seed=None, temperature=None, max_tokens=None, stop=None):
        self.calls.append({"messages": messages, "schema": schema, "seed": seed, "temperature": temperature})
        task = messages[1]["content"].split("\n", 1)[0]
        seq = self.replies[task]
        if isinstance(seq, list):
            item = seq.pop(0) if len(seq) > 1 else seq[0]
        else:
            item = seq
        return item if isinstance(item, str) else json.dumps(item)

    def tasks(self):
        return [c["messages"][1]["content"].split("\n", 1)[0][len("TASK: "):] for c in self.calls]


# ----------------------------------------------------------------------------------------------- three-phase
def test_three_phase_solves_elm_chairs():
    fake = Fake(variables=PHASE1, statements=PHASE2)
    r = formulate(ELM, backend=fake, rng=3)
    best = _reference()
    assert r.status == Status.CONVERGED and r.backend == "llm"
    assert r.fun == pytest.approx(best) and best == 224
    np.testing.assert_allclose(r.x, [4.0, 1.0])
    assert (r.n_llm_calls, r.n_repairs, r.n_self_check_rounds) == (2, 0, 0)
    assert fake.tasks() == ["variables", "statements"]
    assert r.extra["pipeline"] == "three-phase" and r.extra["classify"] == "llm"
    m = r.model
    assert [v.name for v in m.variables] == ["benches", "chairs"]
    assert all(v.domain == "integer" and v.domain_source == "inferred" for v in m.variables)
    assert m.source_text == ELM and m.constraints[0].text == CARVING["text"]
    # phase 2 is constrained to the phase-1 names; seed and temperature 0 are passed
    enum = fake.calls[1]["schema"]["properties"]["constraints"]["items"]["properties"]["slots"]["properties"]["var"]
    assert {"type": "string", "enum": ["benches", "chairs"]} in enum["anyOf"]
    assert all(c["seed"] == 3 and c["temperature"] == 0.0 for c in fake.calls)
    assert set(r.phases) >= {"variables", "classify", "generate", "solve", "diagnose", "total"}
    # the LP relaxation of the same IR gives the spec's 236.5
    rc = formulate(ELM, backend=Fake(variables=PHASE1, statements=PHASE2), integrality="continuous")
    assert rc.fun == pytest.approx(236.5)


def test_prompts_are_json_only_and_carry_the_table():
    fake = Fake(variables=PHASE1, statements=PHASE2)
    formulate(ELM, backend=fake, solve=False)
    system = fake.calls[0]["messages"][0]["content"]
    assert "| xby |" in system and "either_or" in system and "no code" in system
    assert ELM in fake.calls[1]["messages"][1]["content"] and '"benches"' in fake.calls[1]["messages"][1]["content"]


def test_malformed_json_is_repaired():
    fake = Fake(variables=["Sure! Here are the variables: {\"variables\": [", PHASE1],
                statements=[{"objective": OBJECTIVE, "constraints": [
                    CARVING, {"class": "ratio", "text": "x", "slots": _slots(var="chairs", operator="<=", limit=30)}]},
                    PHASE2])
    r = formulate(ELM, backend=fake)
    assert r.status == Status.CONVERGED and r.fun == pytest.approx(224.0)
    assert (r.n_llm_calls, r.n_repairs) == (4, 2)
    repair = fake.calls[3]["messages"][-1]["content"]
    # the IR's semantic error comes back under the phase-2 reply's path
    assert "constraints[1].slots.limit" in repair and "[0, 1]" in repair
    assert "unterminated JSON" in fake.calls[1]["messages"][-1]["content"]


def test_persistent_garbage_is_status_error():
    fake = Fake(variables="I cannot help with that.")
    r = formulate(ELM, backend=fake)
    assert r.status == Status.ERROR and not r.success and r.model is None and r.fun is None
    assert (r.n_llm_calls, r.n_repairs) == (3, 2)
    assert r.extra["errors"] and r.extra["errors"][0]["loc"] == "reply"
    assert r.diagnostics[-1].code == "invalid_ir" and "variables" in r.message
    r0 = formulate(ELM, backend=Fake(variables=PHASE1, statements={"objective": OBJECTIVE, "constraints": [
        {"class": "sum", "text": "", "slots": _slots(limit=5)}]}), max_repairs=0)
    assert r0.status == Status.ERROR and (r0.n_llm_calls, r0.n_repairs) == (2, 0)
    assert r0.extra["errors"] == [{"loc": "constraints[0].slots.operator", "msg": "required for class 'sum'"}]


def test_phase1_rules_checked_with_ir_paths():
    dup = {"variables": [PHASE1["variables"][0], {**PHASE1["variables"][0], "mentions": []}]}
    fake = Fake(variables=[dup, {"variables": []}, PHASE1], statements=PHASE2)
    r = formulate(ELM, backend=fake, solve=False)
    assert r.status == Status.CONVERGED and r.n_repairs == 2
    assert "variables[1].name" in fake.calls[1]["messages"][-1]["content"]
    assert "at least one" in fake.calls[2]["messages"][-1]["content"]


def test_one_step_pipeline():
    fake = Fake(model=IR)
    r = formulate(ELM, backend=fake, pipeline="one-step")
    assert r.status == Status.CONVERGED and r.fun == pytest.approx(_reference())
    assert r.n_llm_calls == 1 and fake.tasks() == ["model"] and r.extra["pipeline"] == "one-step"
    assert fake.calls[0]["schema"] == MILPModel.wire_schema()
    assert r.model.source_text == ELM


def test_hybrid_llm_variables_rules_classification():
    text = ("A factory makes chairs and tables. Each chair gives a profit of $30 and each table gives a profit of "
            "$50. Each chair needs 2 hours of labor and 1 kg of wood, and each table needs 3 hours of labor and 4 kg "
            "of wood. There are at most 100 hours of labor and 90 kg of wood available. How many of each should be "
            "made to maximize profit?")
    p1 = {"variables": [
        {"name": "n_chairs", "mentions": ["chairs", "chair"], "domain": "integer", "domain_reason": None,
         "unit": None, "lb": None, "ub": None},
        {"name": "n_tables", "mentions": ["tables", "table"], "domain": "integer", "domain_reason": None,
         "unit": None, "lb": None, "ub": 30},
        {"name": "n_stools", "mentions": ["stools"], "domain": "integer", "domain_reason": None, "unit": None,
         "lb": None, "ub": None}]}
    fake = Fake(variables=p1)
    st_seen = []
    r = formulate(text, backend=fake, classify="rules", callback=lambda s: st_seen.append(s.phase),
                  max_self_check_rounds=0)
    assert fake.tasks() == ["variables"] and r.n_llm_calls == 1 and r.extra["classify"] == "rules"
    m = r.model
    assert [v.name for v in m.variables] == ["n_chairs", "n_tables", "n_stools"]
    assert [float(v.ub) if v.ub is not None else None for v in m.variables] == [None, 30.0, None]
    assert all(v.domain == "integer" for v in m.variables)
    rows = sorted((tuple(float(c.terms.get(n, 0)) for n in ("n_chairs", "n_tables")), float(c.limit), c.operator)
                  for c in m.constraints)
    assert rows == [((1.0, 4.0), 90.0, "LESS_OR_EQUAL"), ((2.0, 3.0), 100.0, "LESS_OR_EQUAL")]
    best = max(30 * a + 50 * b for a in range(51) for b in range(31) if 2 * a + 3 * b <= 100 and a + 4 * b <= 90)
    assert r.fun == pytest.approx(best)
    assert any(d.code == "mention_not_found" and "n_stools" in d.message for d in r.diagnostics)
    assert any(d.code == "unused_variable" and d.variables == ["n_stools"] for d in r.diagnostics)
    assert st_seen[:3] == ["variables", "entities", "rules"]


# ---------------------------------------------------------------------------------------------- self-check
def test_self_check_fixes_infeasible_ir():
    fake = Fake(variables=PHASE1, statements=PHASE2_INFEASIBLE, revise=IR)
    r = formulate(ELM, backend=fake)
    assert r.status == Status.CONVERGED and r.fun == pytest.approx(224.0)
    assert r.n_self_check_rounds == 1 and r.n_llm_calls == 3
    assert fake.tasks() == ["variables", "statements", "revise"]
    prompt = fake.calls[2]["messages"][1]["content"]
    assert "infeasible" in prompt and "Constraints involved" in prompt and '"index": 2' in prompt
    assert fake.calls[2]["schema"] == MILPModel.wire_schema()
    assert len(r.model.constraints) == 2
    assert any(d.code == "revision_accepted" for d in r.diagnostics)
    assert not any(d.severity == "error" for d in r.diagnostics)


def test_self_check_rejects_a_revision_that_keeps_the_error():
    still = json.loads(json.dumps(IR))
    still["constraints"].append({"type": "lowerbound", "var": "benches", "operator": "GREATER_OR_EQUAL", "limit": 19})
    fake = Fake(variables=PHASE1, statements=PHASE2_INFEASIBLE, revise=still)
    r = formulate(ELM, backend=fake)
    assert r.status == Status.INFEASIBLE and r.n_self_check_rounds == 1
    assert len(r.model.constraints) == 3 and float(r.model.constraints[2].limit) == 20.0
    codes = [d.code for d in r.diagnostics]
    assert "revision_rejected" in codes and "infeasible" in codes
    # a revision that hands back the same IR stops the loop
    same = Formulator(Fake(variables=PHASE1, statements=PHASE2_INFEASIBLE), max_self_check_rounds=2)
    state = same.init(ELM)
    while state.pending and state.pending[0] != "revise":
        same.step(state)
    echo = state.model.model_dump(mode="json")
    same.llm = Formulator(Fake(revise=echo)).llm
    res = same.result(same.step(state))
    assert res.n_self_check_rounds == 1 and state.done
    assert any(d.code == "revision_repeated" for d in res.diagnostics)


def test_self_check_off_and_rounds_zero():
    for kw in ({"self_check": False}, {"max_self_check_rounds": 0}):
        fake = Fake(variables=PHASE1, statements=PHASE2_INFEASIBLE, revise=IR)
        r = formulate(ELM, backend=fake, **kw)
        assert r.status == Status.INFEASIBLE and r.n_self_check_rounds == 0 and "revise" not in fake.tasks()
    assert not formulate(ELM, backend=Fake(variables=PHASE1, statements=PHASE2_INFEASIBLE),
                         self_check=False).diagnostics


def test_rules_backend_reports_diagnostics_only():
    text = ("A shop sells lamps and fans. Each lamp gives a profit of $5 and each fan a profit of $4. At least 3 lamps "
            "must be sold and at most 2 lamps can be sold. How many should it sell to maximize profit?")
    r = formulate(text)
    assert r.status == Status.INFEASIBLE and r.n_llm_calls == 0 and r.n_self_check_rounds == 0
    assert [(d.code, d.constraints, d.variables) for d in r.diagnostics if d.severity == "error"] == [
        ("infeasible", [0, 1], ["lamps"])]
    assert "diagnose" in r.phases and "revise" not in r.phases
    # no solve, no self-check (it needs the solution)
    assert formulate(text, solve=False).diagnostics == []


# ------------------------------------------------------------------------------------------ Formulator API
def test_formulator_steps_and_callback_stop():
    f = Formulator(Fake(variables=PHASE1, statements=PHASE2))
    state = f.init(ELM)
    assert isinstance(state, FormulationState) and state.pending[:3] == ["variables", "classify", "generate"]
    seen = []
    while not state.done:
        f.step(state)
        seen.append(state.phase)
    assert seen == ["variables", "classify", "generate", "solve", "diagnose", "revise"]
    assert [v.name for v in state.variables] == ["benches", "chairs"] and state["phase"] == "revise"
    assert len(state.statements) == 3 and state.statements[0]["class"] == "objective"
    assert f.result(state).fun == pytest.approx(224.0)

    fake = Fake(variables=PHASE1, statements=PHASE2)
    r = formulate(ELM, backend=fake, callback=lambda s: s.phase == "variables")
    assert r.status == Status.CALLBACK_STOP and r.model is None and r.n_llm_calls == 1

    def stop(s):
        if s.phase == "generate":
            raise StopIteration

    r2 = formulate(ELM, backend=Fake(variables=PHASE1, statements=PHASE2), callback=stop)
    assert r2.status == Status.CALLBACK_STOP and r2.model is not None and r2.solution is None


def test_transport_failure_propagates():
    def down(messages, **kw):
        raise LLMError("connection refused")

    with pytest.raises(LLMError, match="refused"):
        formulate(ELM, backend=down)


@pytest.mark.parametrize("kw, exc, match", [
    ({"pipeline": "two-step"}, InvalidProblemError, "pipeline"),
    ({"classify": "neural"}, InvalidProblemError, "classify"),
    ({"max_repairs": -1}, ValueError, "max_repairs"),
    ({"max_self_check_rounds": -2}, ValueError, "max_self_check_rounds"),
    ({"max_repairs": 1.5}, TypeError, "max_repairs"),
    ({"entities": "gold"}, InvalidProblemError, "entities"),
    ({"pipeline": "one-step", "classify": "rules"}, InvalidProblemError, "classify"),
    ({"callback": 3}, TypeError, "callback"),
])
def test_bad_options_llm(kw, exc, match):
    with pytest.raises(exc, match=match):
        formulate(ELM, backend=Fake(variables=PHASE1, statements=PHASE2), **kw)


@pytest.mark.parametrize("kw, match", [({"classify": "llm"}, "classify"), ({"pipeline": "one-step"}, "pipeline"),
                                       ({"max_repairs": -1}, "max_repairs")])
def test_bad_options_rules(kw, match):
    with pytest.raises(ValueError, match=match):
        formulate(ELM, **kw)


# ----------------------------------------------------------------------------------------------- prompts
def test_examples_phase3_reproduces_their_ir():
    for ex in prompts.EXAMPLES:
        variables = [Variable(**{**v, "lb": 0.0 if v["lb"] is None else v["lb"], "domain_source": "inferred"})
                     for v in ({k: x for k, x in v.items() if k != "domain_reason"}
                               for v in ex["variables"]["variables"])]
        statements = [ex["statements"]["objective"], *ex["statements"]["constraints"]]
        got = statements_to_ir(statements, variables)
        want = MILPModel(**ex["model"])
        strip = {"constraints": {"__all__": {"text"}}}
        assert got.model_dump(exclude=strip) == want.model_dump(exclude=strip)


def test_examples_are_not_nl4opt_text():
    path = os.path.join(os.environ.get("OPTKIT_NL4OPT_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                                                         "shared", "data", "nl4opt")),
                        "generation_dev.jsonl")
    if not os.path.exists(path):
        pytest.skip("NL4Opt dev data not found")
    from optkit.milp.datasets import load_nl4opt_generation

    prompt_text = " ".join(m["content"] for m in prompts.variables_messages("x") + prompts.statements_messages("x", [])
                           + prompts.one_step_messages("x"))
    for rec in load_nl4opt_generation(path):
        for sent in rec["document"].split(". "):
            if len(sent) > 40:
                assert sent not in prompt_text


# -------------------------------------------------------------------------------------------- HTTP server
class _Server:
    def __init__(self):
        self.queue, self.bodies, self.lock = [], [], threading.Lock()

    def reply(self, content, code=200):
        text = content if isinstance(content, str) else json.dumps(content)
        body = json.dumps({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        self.queue.append((code, body if code == 200 else content))


@pytest.fixture
def server(chat_server):
    fake = _Server()

    def respond(path, headers, body):
        with fake.lock:
            fake.bodies.append(body)
            code, payload = fake.queue.pop(0) if fake.queue else (500, "queue empty")
        return code, {}, payload

    fake.url = chat_server(respond)
    return fake


def test_http_backend_three_phase(server, monkeypatch):
    monkeypatch.delenv("OPTKIT_LLM_API_KEY", raising=False)
    server.reply("```json\n" + json.dumps(PHASE1) + "\n```")
    server.reply(PHASE2)
    b = OpenAICompatibleBackend(server.url, "test-model", timeout=5.0, max_retries=0, sleep=lambda s: None)
    r = formulate(ELM, backend=b, rng=11)
    assert r.status == Status.CONVERGED and r.fun == pytest.approx(224.0) and r.n_llm_calls == 2
    assert [x["response_format"]["type"] for x in server.bodies] == ["json_schema", "json_schema"]
    assert all(x["seed"] == 11 and x["temperature"] == 0.0 and x["model"] == "test-model" for x in server.bodies)
    assert server.bodies[1]["response_format"]["json_schema"]["schema"] == prompts.statements_schema(
        ["benches", "chairs"])
    server.reply('{"error": "bad key"}', code=401)
    with pytest.raises(LLMError, match="401"):
        formulate(ELM, backend=b)


def test_phase2_validation_never_crashes_on_odd_shapes():
    """Whatever JSON comes back, phase 2/3 either builds a model or raises InvalidProblemError with paths (which
    request_ir turns into a repair message), never another exception."""
    from optkit.milp.formulate import _parse_statements

    variables = [Variable(name="benches", domain="integer"), Variable(name="chairs", domain="integer")]
    odd = [[], "x", {"objective": []}, {"objective": {"class": ["objective"], "sense": ["max"]}},
           {"objective": OBJECTIVE, "constraints": {"a": 1}}, {"objective": OBJECTIVE, "constraints": [3, None]},
           {"objective": OBJECTIVE, "constraints": [{"class": "linear", "slots": [1]}]},
           {"objective": OBJECTIVE, "constraints": [{"class": "linear", "slots": {"terms": [1, {"var": 2}],
                                                                                   "limit": {}, "operator": 5}}]},
           {"objective": OBJECTIVE, "constraints": [{"class": "either_or", "slots": {"first": [], "second": {}}}]},
           {"objective": {**OBJECTIVE, "terms": {"stools": 1}}, "constraints": []},
           {"objective": OBJECTIVE, "constraints": [{"class": "ratio", "text": 7, "slots": _slots(
               var="chairs", operator="<=", limit="lots")}]},
           {"objective": OBJECTIVE, "extra": 1}]
    for obj in odd:
        with pytest.raises(InvalidProblemError) as info:
            statements_to_ir(_parse_statements(obj), variables)
        assert info.value.errors and all({"loc", "msg"} <= set(e) for e in info.value.errors)
    # spellings without a schema are read as the same class; operators in IR or symbol form
    ok = {"objective": {**OBJECTIVE, "sense": "Max"}, "constraints": [
        {"class": "Upper-Bound", "text": "", "slots": {"var": "chairs", "limit": 3}},
        {"class": "linear", "text": "", "slots": {"terms": {"benches": 2, "chairs": 3}, "operator": "LESS_OR_EQUAL",
                                                  "limit": "11"}}]}
    m = statements_to_ir(_parse_statements(ok), variables)
    assert [c.type for c in m.constraints] == ["upperbound", "linear"] and m.objective.sense == "maximize"


def test_self_check_rejects_a_revision_with_a_new_kind_of_error():
    worse = json.loads(json.dumps(IR))
    worse["variables"].append({"name": "stools", "domain": "integer", "lb": 0, "ub": None, "unit": None,
                               "mentions": [], "domain_source": "inferred"})
    fake = Fake(variables=PHASE1, statements=PHASE2_INFEASIBLE, revise=[worse, IR])
    r = formulate(ELM, backend=fake, max_self_check_rounds=1)
    assert r.status == Status.INFEASIBLE and r.n_self_check_rounds == 1
    assert any(d.code == "revision_rejected" and "unused_variable" in d.message for d in r.diagnostics)
    # a second round is not spent on the error already sent back for this IR
    r2 = formulate(ELM, backend=Fake(variables=PHASE1, statements=PHASE2_INFEASIBLE, revise=[worse, IR]))
    assert r2.status == Status.INFEASIBLE and r2.n_self_check_rounds == 1 and r2.n_llm_calls == 3


def test_a_failed_step_can_be_retried():
    replies = {"n": 0}

    def flaky(messages, **kw):
        replies["n"] += 1
        if replies["n"] == 1:
            raise LLMError("HTTP 503 after retries")
        return json.dumps(PHASE1 if prompts.TASK_VARIABLES in messages[1]["content"] else PHASE2)

    f = Formulator(flaky)
    state = f.init(ELM)
    with pytest.raises(LLMError):
        f.step(state)
    assert state.pending[0] == "variables" and state.n_llm_calls == 0
    while not state.done:
        f.step(state)
    assert f.result(state).fun == pytest.approx(224.0) and state.n_llm_calls == 2
