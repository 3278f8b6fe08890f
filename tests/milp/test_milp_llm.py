"""optkit.milp.llm against a real local HTTP server speaking the chat-completions protocol (canned replies)."""

import json
import pathlib
import threading

import pytest

from optkit import LLMError
from optkit.milp.ir import MILPModel
from optkit.milp.llm import (
    CallableBackend,
    LLMBackend,
    OpenAICompatibleBackend,
    as_backend,
    drop_wire_nulls,
    extract_json,
    format_errors,
    request_ir,
)

SCHEMA = MILPModel.wire_schema()
MESSAGES = [{"role": "system", "content": "You write MILP IR as JSON."},
            {"role": "user", "content": "A shop makes chairs and tables; at most 10 items; profit 3 and 5."}]
VALID = {"variables": [{"name": "chairs", "domain": "integer"}, {"name": "tables", "domain": "integer"}],
         "objective": {"sense": "maximize", "terms": {"chairs": 3, "tables": 5}},
         "constraints": [{"type": "sum", "operator": "LESS_OR_EQUAL", "limit": 10}]}
UNKNOWN_VAR = {**VALID, "constraints": [{"type": "linear", "terms": {"stools": 1}, "limit": 4}]}


# ------------------------------------------------------------------------------------------------------ fake server
class FakeLLM:
    """Serves queued actions in order; records every request (path, headers, JSON body)."""

    def __init__(self):
        self.queue = []
        self.requests = []
        self.lock = threading.Lock()

    def reply(self, content):
        text = content if isinstance(content, str) else json.dumps(content)
        self.queue.append((200, {}, json.dumps({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})))

    def error(self, code, body="", headers=None):
        self.queue.append((code, headers or {}, body))

    def drop(self):
        self.queue.append(("drop", {}, ""))

    def raw(self, body):
        self.queue.append((200, {}, body))

    @property
    def bodies(self):
        return [r["body"] for r in self.requests]


@pytest.fixture
def server(chat_server):
    fake = FakeLLM()

    def respond(path, headers, body):
        with fake.lock:
            fake.requests.append({"path": path, "headers": headers, "body": body})
            code, extra, payload = fake.queue.pop(0) if fake.queue else (500, {}, "queue empty")
        return "drop" if code == "drop" else (code, extra, payload)

    fake.url = chat_server(respond)
    return fake


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("OPTKIT_LLM_API_KEY", raising=False)


def backend(server, **kw):
    sleeps = []
    kw.setdefault("timeout", 5.0)
    b = OpenAICompatibleBackend(server.url + "/", "test-model", sleep=sleeps.append, **kw)
    return b, sleeps


# -------------------------------------------------------------------------------------------------------- protocol
def test_valid_ir_first_try(server):
    server.reply(VALID)
    b, sleeps = backend(server)
    assert isinstance(b, LLMBackend)
    model, n_calls, n_repairs, errors = request_ir(b, MESSAGES, schema=SCHEMA, seed=7)
    assert isinstance(model, MILPModel)
    assert [v.name for v in model.variables] == ["chairs", "tables"]
    assert (n_calls, n_repairs, errors, sleeps) == (1, 0, [], [])
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    body = req["body"]
    assert body["model"] == "test-model" and body["messages"] == MESSAGES
    assert body["temperature"] == 0.0 and body["max_tokens"] == 2048 and body["seed"] == 7
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "milp_ir", "schema": SCHEMA, "strict": True}}
    assert "Authorization" not in req["headers"]


def test_malformed_json_is_repaired(server):
    server.reply('{"variables": [{"name": "chairs"}, ')  # truncated
    server.reply("Here you go:\n```json\n" + json.dumps(VALID) + "\n```")
    b, _ = backend(server)
    model, n_calls, n_repairs, errors = request_ir(b, MESSAGES, schema=SCHEMA)
    assert model is not None and (n_calls, n_repairs, errors) == (2, 1, [])
    second = server.bodies[1]["messages"]
    assert second[:2] == MESSAGES  # the caller's list is extended, not mutated
    assert second[2] == {"role": "assistant", "content": '{"variables": [{"name": "chairs"}, '}
    assert second[3]["role"] == "user"
    assert "reply" in second[3]["content"] and "corrected JSON object only" in second[3]["content"]
    assert len(MESSAGES) == 2


def test_semantic_error_is_repaired(server):
    server.reply(UNKNOWN_VAR)
    server.reply(VALID)
    b, _ = backend(server)
    model, n_calls, n_repairs, errors = request_ir(b, MESSAGES, schema=SCHEMA)
    assert model is not None and (n_calls, n_repairs) == (2, 1)
    follow_up = server.bodies[1]["messages"][-1]["content"]
    assert "constraints[0].terms['stools']" in follow_up and "unknown variable" in follow_up
    assert len(follow_up.encode()) <= 2048 + 200


def test_repairs_exhausted_returns_errors(server):
    for _ in range(3):
        server.reply(UNKNOWN_VAR)
    b, _ = backend(server)
    model, n_calls, n_repairs, errors = request_ir(b, MESSAGES, schema=SCHEMA, max_repairs=2)
    assert model is None and (n_calls, n_repairs) == (3, 2)
    assert errors and errors[0]["loc"] == "constraints[0].terms['stools']"
    server.reply("no json at all")
    model, n_calls, n_repairs, errors = request_ir(b, MESSAGES, schema=SCHEMA, max_repairs=0)
    assert model is None and (n_calls, n_repairs) == (1, 0)
    assert errors == [{"loc": "reply", "msg": "no JSON object found in the reply"}]


def test_structured_ladder_falls_back_and_remembers(server):
    server.error(400, json.dumps({"error": {"message": "response_format json_schema not supported"}}))
    server.reply(VALID)
    b, _ = backend(server)
    model, n_calls, n_repairs, _ = request_ir(b, MESSAGES, schema=SCHEMA)
    assert model is not None and (n_calls, n_repairs) == (1, 0)  # the ladder step is not a repair
    first, second = server.bodies
    assert first["response_format"]["type"] == "json_schema"
    assert second["response_format"] == {"type": "json_object"}
    # without server-side enforcement the schema goes into the system message
    assert second["messages"][0]["role"] == "system" and '"variables"' in second["messages"][0]["content"]
    assert len(second["messages"]) == len(MESSAGES)
    assert b.structured_level == "json_object"
    # remembered: the next call starts at json_object; a grammar complaint then drops to prompt-only
    server.error(400, "Either json_schema or grammar can be specified, but not both")
    server.reply(VALID)
    assert request_ir(b, MESSAGES, schema=SCHEMA)[0] is not None
    third, fourth = server.bodies[2:]
    assert third["response_format"] == {"type": "json_object"}
    assert "response_format" not in fourth and b.structured_level == "prompt"


def test_unrelated_400_and_fixed_level_do_not_fall_back(server):
    server.error(400, "messages: field required")
    b, _ = backend(server)
    with pytest.raises(LLMError, match="HTTP 400") as ei:
        b.complete(MESSAGES, schema=SCHEMA)
    assert ei.value.code == 400 and len(server.requests) == 1 and b.structured_level == "json_schema"
    server.error(400, "response_format json_schema not supported")
    fixed, _ = backend(server, structured="json_schema")
    with pytest.raises(LLMError, match="json_schema not supported"):
        fixed.complete(MESSAGES, schema=SCHEMA)
    # no schema -> no response_format at all
    server.reply("plain")
    assert b.complete(MESSAGES) == "plain" and "response_format" not in server.bodies[-1]


def test_429_retry_after_then_success(server):
    server.error(429, "slow down", {"Retry-After": "7"})
    server.error(503, "busy")
    server.reply(VALID)
    b, sleeps = backend(server)
    model, n_calls, *_ = request_ir(b, MESSAGES, schema=SCHEMA)
    assert model is not None and n_calls == 1
    assert sleeps == [7.0, 2.0]  # Retry-After honoured, then the backoff continues 1, 2, 4
    assert len(server.requests) == 3 and b.n_requests == 3


def test_connection_reset_is_retried(server):
    server.drop()
    server.reply("ok")
    b, sleeps = backend(server)
    assert b.complete(MESSAGES) == "ok"
    assert sleeps == [1.0] and len(server.requests) == 2


def test_500_after_retries_raises_with_code(server):
    for _ in range(4):
        server.error(500, "internal boom")
    b, sleeps = backend(server)
    with pytest.raises(LLMError, match="HTTP 500") as ei:
        b.complete(MESSAGES, schema=SCHEMA)
    assert ei.value.code == 500 and "internal boom" in str(ei.value)
    assert sleeps == [1.0, 2.0, 4.0] and len(server.requests) == 4


def test_401_raises_without_retry_and_never_shows_key(server):
    server.error(401, "bad key sk-secret-123 " + "x" * 2000)
    b, sleeps = backend(server, api_key="sk-secret-123")
    with pytest.raises(LLMError) as ei:
        b.complete(MESSAGES)
    err = ei.value
    assert err.code == 401 and "HTTP 401" in str(err)
    assert "sk-secret-123" not in str(err) and "sk-secret-123" not in repr(b)
    assert len(err.body) <= 500 and sleeps == [] and len(server.requests) == 1


def test_authorization_header_only_with_key(server, monkeypatch):
    for _ in range(3):
        server.reply("ok")
    backend(server)[0].complete(MESSAGES)
    backend(server, api_key="k-arg")[0].complete(MESSAGES)
    monkeypatch.setenv("OPTKIT_LLM_API_KEY", "k-env")
    backend(server)[0].complete(MESSAGES)
    auth = [r["headers"].get("Authorization") for r in server.requests]
    assert auth == [None, "Bearer k-arg", "Bearer k-env"]


def test_cache_avoids_second_http_call(server, tmp_path):
    server.reply(VALID)
    cache = {}
    b, _ = backend(server, cache=cache)
    first = b.complete(MESSAGES, schema=SCHEMA, seed=1)
    assert b.complete(MESSAGES, schema=SCHEMA, seed=1) == first
    assert len(server.requests) == 1 and len(cache) == 1 and b.n_cache_hits == 1
    server.reply("other")
    assert b.complete(MESSAGES, schema=SCHEMA, seed=2) == "other"  # the seed is part of the key
    assert len(server.requests) == 2
    # a directory cache survives the instance
    server.reply("from disk")
    d = tmp_path / "llm-cache"
    assert backend(server, cache=str(d))[0].complete(MESSAGES) == "from disk"
    assert backend(server, cache=d)[0].complete(MESSAGES) == "from disk"
    assert len(server.requests) == 3 and len(list(d.glob("*.json"))) == 1


def test_oversized_and_malformed_replies(server):
    server.raw(json.dumps({"choices": [{"message": {"content": "x" * (1 << 20)}}]}))
    server.raw("<html>not json</html>")
    b, _ = backend(server)
    with pytest.raises(LLMError, match="exceeds"):
        b.complete(MESSAGES)
    with pytest.raises(LLMError, match="not a chat completion"):
        b.complete(MESSAGES)


def test_transport_failure_raises_llmerror():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", "m", timeout=2, sleep=lambda t: None)
    with pytest.raises(LLMError):
        b.complete(MESSAGES)


@pytest.mark.parametrize("kw, word", [
    (dict(base_url="file:///etc/passwd"), "base_url"), (dict(base_url="localhost:8000"), "base_url"),
    (dict(model=""), "model"), (dict(timeout=0), "timeout"), (dict(max_retries=-1), "max_retries"),
    (dict(structured="grammar"), "structured"),
])
def test_bad_arguments(kw, word):
    args = dict(base_url="http://localhost:8000/v1", model="m") | kw
    with pytest.raises(ValueError, match=word):
        OpenAICompatibleBackend(args.pop("base_url"), args.pop("model"), **args)


# -------------------------------------------------------------------------------------------------------- callables
def test_callable_backend_with_python_function():
    seen = []

    def fake(messages, *, schema=None, seed=None):  # accepts only some keywords
        seen.append((len(messages), schema is SCHEMA, seed))
        return json.dumps(UNKNOWN_VAR) if len(seen) == 1 else json.dumps(VALID)

    b = CallableBackend(fake)
    assert isinstance(b, LLMBackend) and as_backend(b) is b
    model, n_calls, n_repairs, errors = request_ir(b, MESSAGES, schema=SCHEMA, seed=3)
    assert model is not None and (n_calls, n_repairs, errors) == (2, 1, [])
    assert seen == [(2, True, 3), (4, True, 3)]
    # a bare callable is wrapped; a transformers-style chat output is unwrapped
    pipe = lambda messages, **kw: [{"generated_text": messages + [{"role": "assistant", "content": "{}"}]}]  # noqa: E731
    assert as_backend(pipe).complete(MESSAGES) == "{}"
    with pytest.raises(LLMError, match="str"):
        CallableBackend(lambda m: 42).complete(MESSAGES)
    with pytest.raises(TypeError, match="backend"):
        as_backend(3)


def test_request_ir_with_custom_validator():
    def phase1(obj):
        if "variables" not in obj:
            raise ValueError("variables: field required")
        return obj["variables"]

    replies = iter(['{"vars": []}', '{"variables": ["a"]}'])
    out, n_calls, n_repairs, _ = request_ir(lambda m, **kw: next(replies), MESSAGES, schema=None, validate=phase1)
    assert out == ["a"] and (n_calls, n_repairs) == (2, 1)


# ------------------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! ```json\n{"a": "}{"}\n``` hope this helps', {"a": "}{"}),
    ('```\n{"a": [1, {"b": 2}]}\n```', {"a": [1, {"b": 2}]}),
    ('The model {as requested}: {"a": 2} and {"b": 3}', {"a": 2}),
    ('{"a": "quote \\" and brace }"}', {"a": 'quote " and brace }'}),
])
def test_extract_json(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize("text, word", [
    ("no braces", "no JSON object"), ('{"a": 1', "unterminated"), ("{'a': 1}", "invalid JSON"),
])
def test_extract_json_errors(text, word):
    with pytest.raises(ValueError, match=word):
        extract_json(text)


def test_wire_nulls_are_dropped_where_not_allowed():
    wire = {"variables": [{"name": "a", "domain": None, "lb": None, "ub": None, "unit": None, "mentions": None,
                           "domain_source": None}],
            "objective": {"type": None, "sense": "minimize", "direction": None, "name": None, "terms": {"a": 1},
                          "vars": None, "constant": None},
            "constraints": [{"type": "either_or", "first": {"terms": {"a": 1}, "operator": None, "limit": 1},
                             "second": {"terms": {"a": 1}, "operator": "GREATER_OR_EQUAL", "limit": 3},
                             "indicator": None, "id": None, "direction": None, "text": None, "confidence": None}],
            "name": None, "source_text": None, "version": None}
    m = MILPModel.model_validate(drop_wire_nulls(wire))
    v = m.variables[0]
    assert v.lb is None and v.mentions == [] and v.domain == "continuous"  # lb: null keeps "no lower bound"
    assert m.constraints[0].first.operator == "LESS_OR_EQUAL" and m.objective.constant == 0.0
    assert wire["variables"][0]["mentions"] is None  # input untouched


def test_format_errors_is_bounded():
    errs = [{"loc": f"constraints[{i}].limit", "msg": "x" * 200} for i in range(100)]
    text = format_errors(errs)
    assert len(text) <= 2048 and text.endswith("more") and text.startswith("- constraints[0].limit")


def test_module_never_executes_model_text():
    import ast

    import optkit.milp.llm as mod

    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names} | {(n.module or "").split(".")[0] for n in ast.walk(tree)
                                     if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "subprocess", "marshal", "shelve", "runpy", "importlib"}
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"exec", "eval", "compile", "__import__"}
