"""LLM backends for the MILP formulator (spec milp, section 3.5).

An LLM is only ever asked for JSON (the IR or a phase of it); its reply is parsed with :func:`json.loads` and
validated with pydantic plus the IR's semantic rules. Nothing it returns is executed, imported, unpickled or used as
a path.

* :class:`LLMBackend` -- the protocol ``complete(messages, *, schema=None, temperature=0.0, max_tokens=2048,
  seed=None, stop=None) -> str``.
* :class:`CallableBackend` -- wraps any callable ``(messages, **kw) -> str`` (a test fake, a transformers pipeline).
* :class:`OpenAICompatibleBackend` -- stdlib ``urllib`` client of ``{base_url}/chat/completions`` (vLLM, llama.cpp
  ``llama-server``, hosted APIs); structured-output ladder ``json_schema -> json_object -> prompt only``, retries
  with backoff, optional response cache.
* :func:`extract_json`, :func:`request_ir` -- reply parsing and the validate-and-repair loop.
"""

from __future__ import annotations

import hashlib
import http.client
import inspect
import json
import os
import re
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol, Union, get_args, get_origin, runtime_checkable

import pydantic

from .._errors import InvalidProblemError, LLMError
from .._logging import get_logger

__all__ = [
    "LLMBackend",
    "CallableBackend",
    "OpenAICompatibleBackend",
    "as_backend",
    "extract_json",
    "request_ir",
    "format_errors",
    "MAX_REPLY_BYTES",
]

log = get_logger("milp.llm")

#: replies (HTTP bodies and returned texts) larger than this are refused
MAX_REPLY_BYTES = 1 << 20
#: follow-up repair messages list errors within this many characters
MAX_ERROR_CHARS = 2048
#: HTTP error bodies are quoted up to this many characters
MAX_BODY_CHARS = 500
#: the longest wait a ``Retry-After`` header may impose, seconds
MAX_RETRY_AFTER = 60.0

_LEVELS = ("json_schema", "json_object", "prompt")
_STRUCTURED = ("auto",) + _LEVELS
_LADDER_WORDS = re.compile(r"response_format|json_schema|grammar|schema", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL)


# ---------------------------------------------------------------------------------------------------------- protocol
@runtime_checkable
class LLMBackend(Protocol):
    """Anything with this ``complete`` method can drive the formulator."""

    def complete(self, messages: Sequence[Mapping[str, str]], *, schema: dict | None = None,
                 temperature: float = 0.0, max_tokens: int = 2048, seed: int | None = None,
                 stop: Sequence[str] | None = None) -> str:  # pragma: no cover - protocol
        ...


def _check_reply(text: Any, who: str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise LLMError(f"{who}: expected the reply as str, got {type(text).__name__}")
    if len(text.encode("utf-8", errors="replace")) > MAX_REPLY_BYTES:
        raise LLMError(f"{who}: reply exceeds {MAX_REPLY_BYTES} bytes")
    return text


class CallableBackend:
    """Wrap a callable ``fn(messages, **kw) -> str`` as an :class:`LLMBackend`.

    Keyword arguments (``schema, temperature, max_tokens, seed, stop``) are passed only if ``fn`` accepts them (by
    name or through ``**kwargs``). A transformers chat pipeline's ``[{"generated_text": [..., {"role":
    "assistant", "content": ...}]}]`` is unwrapped to the assistant text.
    """

    def __init__(self, fn: Callable[..., Any]):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
        self.fn = fn
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature: pass everything
            self._accepts = None
        else:
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
                self._accepts = None
            else:
                self._accepts = {p.name for p in params
                                 if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}

    def __repr__(self) -> str:
        return f"CallableBackend({getattr(self.fn, '__name__', type(self.fn).__name__)})"

    def complete(self, messages, *, schema=None, temperature=0.0, max_tokens=2048, seed=None, stop=None) -> str:
        kw = dict(schema=schema, temperature=temperature, max_tokens=max_tokens, seed=seed, stop=stop)
        if self._accepts is not None:
            kw = {k: v for k, v in kw.items() if k in self._accepts}
        out = self.fn([dict(m) for m in messages], **kw)
        return _check_reply(_unwrap_pipeline(out), "CallableBackend")


def _unwrap_pipeline(out: Any) -> Any:
    if isinstance(out, list) and len(out) == 1 and isinstance(out[0], dict) and "generated_text" in out[0]:
        gen = out[0]["generated_text"]
        if isinstance(gen, list) and gen and isinstance(gen[-1], dict):
            return gen[-1].get("content", "")
        return gen
    return out


def as_backend(backend: Any) -> LLMBackend:
    """An :class:`LLMBackend` as is; any other callable wrapped in :class:`CallableBackend`."""
    if isinstance(backend, LLMBackend):
        return backend
    if callable(backend):
        return CallableBackend(backend)
    raise TypeError(f"backend: expected an LLMBackend or a callable (messages, **kw) -> str, got "
                    f"{type(backend).__name__}")


# ------------------------------------------------------------------------------------------------------ HTTP backend
class _Retryable(Exception):
    def __init__(self, what: str, retry_after: float | None = None, code: int | None = None, body: str = ""):
        super().__init__(what)
        self.retry_after, self.code, self.body = retry_after, code, body


class OpenAICompatibleBackend:
    """Client of an OpenAI-compatible ``/chat/completions`` endpoint using only the standard library.

    Parameters
    ----------
    base_url : e.g. ``"http://localhost:8000/v1"`` (vLLM) or ``"http://localhost:8080/v1"`` (llama.cpp); http(s) only.
    model : model name sent in the request body.
    api_key : sent as ``Authorization: Bearer`` when given; defaults to env ``OPTKIT_LLM_API_KEY``; never logged.
    timeout : seconds per HTTP request.
    max_retries : retries of 429 / 5xx / connection resets, waiting 1, 2, 4, ... s (or ``Retry-After``, <= 60 s).
    structured : ``"auto"`` (``json_schema``, falling back to ``json_object`` then prompt-only on an HTTP 400 about
        the response format; remembered by the instance), or a fixed level ``"json_schema"``, ``"json_object"``,
        ``"prompt"``. Only used when ``complete`` gets a ``schema``.
    extra_body : extra request-body keys (e.g. ``{"top_k": 1}``), merged last.
    cache : ``None``, a dict-like (``key in cache``, ``cache[key] = text``) or a directory path (one JSON file per
        reply). Keyed by sha256 of (base_url, model, messages, schema, temperature, seed, max_tokens, stop).
    sleep : the wait function (injectable for tests); defaults to :func:`time.sleep`.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 3, structured: str = "auto", extra_body: Mapping[str, Any] | None = None,
                 cache: MutableMapping[str, str] | str | os.PathLike | None = None,
                 sleep: Callable[[float], Any] | None = None):
        if not isinstance(base_url, str) or urllib.parse.urlsplit(base_url).scheme not in ("http", "https") \
                or not urllib.parse.urlsplit(base_url).netloc:
            raise ValueError(f"base_url: expected an http(s) URL such as 'http://localhost:8000/v1', got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model: expected a non-empty string, got {model!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout: expected seconds > 0, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries: expected an integer >= 0, got {max_retries!r}")
        if structured not in _STRUCTURED:
            raise ValueError(f"structured: expected one of {_STRUCTURED}, got {structured!r}")
        if extra_body is not None and not isinstance(extra_body, Mapping):
            raise TypeError(f"extra_body: expected a mapping, got {type(extra_body).__name__}")
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError("api_key: expected a string")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.structured = structured
        self.extra_body = dict(extra_body or {})
        self._api_key = api_key if api_key else (os.environ.get("OPTKIT_LLM_API_KEY") or None)
        self._level = "json_schema" if structured == "auto" else structured
        self._sleep = sleep if sleep is not None else time.sleep
        if cache is None or isinstance(cache, MutableMapping):
            self._cache_dir, self._cache = None, cache
        elif isinstance(cache, (str, os.PathLike)):
            self._cache_dir, self._cache = Path(cache), None
        else:
            raise TypeError(f"cache: expected None, a dict-like or a directory path, got {type(cache).__name__}")
        self.n_requests = 0  # HTTP requests sent (retries and ladder steps included)
        self.n_cache_hits = 0

    def __repr__(self) -> str:  # the key is never shown
        key = ", api_key=***" if self._api_key else ""
        return f"OpenAICompatibleBackend({self.base_url!r}, {self.model!r}{key}, structured={self.structured!r})"

    @property
    def structured_level(self) -> str:
        """The structured-output level the next request with a schema will use."""
        return self._level

    # ------------------------------------------------------------------------------------------------ public
    def complete(self, messages, *, schema=None, temperature=0.0, max_tokens=2048, seed=None, stop=None) -> str:
        messages = [dict(m) for m in messages]
        if stop is not None and isinstance(stop, str):
            stop = [stop]
        key = self._cache_key(messages, schema, temperature, seed, max_tokens, stop)
        hit = self._cache_get(key)
        if hit is not None:
            self.n_cache_hits += 1
            log.debug("LLM cache hit %s", key[:12])
            return hit
        while True:
            level = self._level if schema is not None else None
            body = self._body(messages, schema, level, temperature, max_tokens, seed, stop)
            try:
                text = self._post_with_retries(body)
            except LLMError as exc:
                if (self.structured == "auto" and level is not None and level != "prompt"
                        and getattr(exc, "code", None) == 400 and _LADDER_WORDS.search(getattr(exc, "body", ""))):
                    self._level = _LEVELS[_LEVELS.index(level) + 1]
                    log.info("LLM server refused response_format %s; falling back to %s", level, self._level)
                    continue
                raise
            break
        self._cache_put(key, text)
        return text

    # ------------------------------------------------------------------------------------------------ request
    def _body(self, messages, schema, level, temperature, max_tokens, seed, stop) -> dict:
        if schema is not None and level in ("json_object", "prompt"):
            messages = _with_schema_instruction(messages, schema)
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": float(temperature),
                                "max_tokens": int(max_tokens)}
        if seed is not None:
            body["seed"] = int(seed)
        if stop is not None:
            body["stop"] = list(stop)
        if level == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "milp_ir", "schema": schema, "strict": True}}
        elif level == "json_object":
            body["response_format"] = {"type": "json_object"}
        body.update(self.extra_body)
        return body

    def _headers(self) -> dict:
        h = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "optkit-milp"}
        if self._api_key:
            h["Authorization"] = "Bearer " + self._api_key
        return h

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _post_with_retries(self, body: dict) -> str:
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        attempt = 0
        while True:
            try:
                return self._post_once(data)
            except _Retryable as exc:
                if attempt >= self.max_retries:
                    tail = f": {exc.body}" if exc.body else ""
                    err = LLMError(f"LLM request to {self.url} failed after {attempt + 1} attempts: {exc}{tail}")
                    err.code, err.body = exc.code, exc.body
                    raise err from None
                delay = 2.0 ** attempt
                if exc.retry_after is not None:
                    delay = min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER)
                log.info("LLM request %s (attempt %d); retrying in %.1f s", exc, attempt + 1, delay)
                self._sleep(delay)
                attempt += 1

    def _post_once(self, data: bytes) -> str:
        req = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
        self.n_requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - scheme checked in __init__
                raw = resp.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            try:
                err_body = exc.read(MAX_REPLY_BYTES).decode("utf-8", errors="replace")
            except Exception:  # noqa: BLE001 - the body is only diagnostic
                err_body = ""
            finally:
                exc.close()
            err_body = self._redact(err_body)
            if exc.code == 429 or 500 <= exc.code <= 599:
                raise _Retryable(f"HTTP {exc.code}", _retry_after(exc.headers), exc.code,
                                 err_body[:MAX_BODY_CHARS]) from None
            short = err_body[:MAX_BODY_CHARS]
            err = LLMError(f"LLM request to {self.url} failed with HTTP {exc.code}: {short}")
            err.code, err.body = exc.code, short
            raise err from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                http.client.RemoteDisconnected, http.client.IncompleteRead) as exc:
            raise _Retryable(f"connection reset ({type(exc).__name__})") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (ConnectionResetError, ConnectionAbortedError)):
                raise _Retryable(f"connection reset ({type(exc.reason).__name__})") from None
            raise LLMError(f"LLM request to {self.url} failed: {exc.reason}") from None
        except TimeoutError:
            raise LLMError(f"LLM request to {self.url} timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise LLMError(f"LLM request to {self.url} failed: {exc}") from None
        if len(raw) > MAX_REPLY_BYTES:
            raise LLMError(f"LLM reply from {self.url} exceeds {MAX_REPLY_BYTES} bytes")
        try:
            payload = json.loads(raw.decode("utf-8", errors="replace"))
            msg = payload["choices"][0]["message"]
            content = msg.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            snippet = self._redact(raw[:MAX_BODY_CHARS].decode("utf-8", errors="replace"))
            raise LLMError(f"LLM reply from {self.url} is not a chat completion: {snippet}") from None
        if not isinstance(content, str):
            refusal = msg.get("refusal") if isinstance(msg, dict) else None
            raise LLMError(f"LLM reply from {self.url} has no text content" + (f" (refusal: {refusal!r:.200})"
                                                                                 if refusal else ""))
        return content

    # ------------------------------------------------------------------------------------------------ cache
    def _cache_key(self, messages, schema, temperature, seed, max_tokens, stop) -> str:
        blob = json.dumps([self.base_url, self.model, messages, schema, float(temperature), seed, int(max_tokens),
                           stop], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_get(self, key: str) -> str | None:
        if self._cache is not None:
            val = self._cache.get(key) if hasattr(self._cache, "get") else (self._cache[key] if key in self._cache
                                                                            else None)
            return val if isinstance(val, str) else None
        if self._cache_dir is not None:
            path = self._cache_dir / f"{key}.json"
            try:
                if path.stat().st_size > 2 * MAX_REPLY_BYTES:
                    return None
                val = json.loads(path.read_text(encoding="utf-8")).get("content")
            except (OSError, ValueError, AttributeError):
                return None
            return val if isinstance(val, str) else None
        return None

    def _cache_put(self, key: str, text: str) -> None:
        if self._cache is not None:
            self._cache[key] = text
        elif self._cache_dir is not None:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            path = self._cache_dir / f"{key}.json"
            tmp = path.with_name(f"{key}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"model": self.model, "content": text}, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _with_schema_instruction(messages: list[dict], schema: dict) -> list[dict]:
    """Without server-side schema enforcement, state the schema in the (first) system message."""
    note = ("Reply with one JSON object only (no prose, no code fences) that follows this JSON schema:\n"
            + json.dumps(schema, separators=(",", ":")))
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content', '')}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


# ---------------------------------------------------------------------------------------------------- reply parsing
def extract_json(text: str) -> Any:
    """Parse the JSON object in an LLM reply: strip code fences, take the first balanced ``{...}`` that parses,
    :func:`json.loads` it. Raises ``ValueError`` with a message fit to send back to the model."""
    if not isinstance(text, str):
        raise ValueError(f"reply: expected text, got {type(text).__name__}")
    fenced = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "json", "jsonc", "json5")]
    candidates = fenced + [text]
    first_error: str | None = None
    for chunk in candidates:
        for start, end in _balanced_objects(chunk):
            if end is None:
                first_error = first_error or "unterminated JSON object (reply truncated?)"
                break
            try:
                obj = json.loads(chunk[start:end])
            except json.JSONDecodeError as exc:
                first_error = first_error or f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                continue
            except RecursionError:
                first_error = first_error or "invalid JSON: nested too deeply"
                continue
            if isinstance(obj, dict):
                return obj
    raise ValueError(first_error or "no JSON object found in the reply")


def _balanced_objects(s: str):
    """Yield ``(start, end)`` of successive top-level balanced ``{...}`` spans (string-aware); ``end=None`` when
    the last one never closes."""
    i, n = 0, len(s)
    while True:
        start = s.find("{", i)
        if start < 0:
            return
        depth, in_str, esc = 0, False, False
        j = start
        while j < n:
            ch = s[j]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if j >= n:
            yield start, None
            return
        yield start, j + 1
        i = j + 1


# ---------------------------------------------------------------------------------------------------- validation
def _allows_none(annotation) -> bool:
    return annotation is None or annotation is type(None) or (
        get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation))


def _model_of(annotation):
    """The pydantic model class inside ``annotation`` (``X``, ``list[X]``, ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in get_args(annotation):
        m = _model_of(arg)
        if m is not None:
            return m
    return None


def _constraint_classes() -> dict[str, type]:
    from . import ir

    out = {}
    for name in dir(ir):
        cls = getattr(ir, name)
        if isinstance(cls, type) and issubclass(cls, ir._ConstraintBase) and "type" in cls.model_fields:
            out[cls.model_fields["type"].default] = cls
    return out


def drop_wire_nulls(obj: Any, cls: type[pydantic.BaseModel] | None = None) -> Any:
    """Undo the wire schema's "every key required, optional ones nullable": drop ``null`` values of fields that do
    not accept ``None`` so their defaults apply (``mentions: null`` -> ``[]``); nullable fields keep their null
    (``ub: null`` = no bound). Returns a new object; unknown shapes pass through for validation to report."""
    from .ir import MILPModel

    cls = cls or MILPModel
    if not isinstance(obj, dict):
        return obj
    ctypes = _constraint_classes()
    out = {}
    for k, v in obj.items():
        field = cls.model_fields.get(k) if isinstance(k, str) else None
        if field is None:
            out[k] = v
            continue
        if v is None and not _allows_none(field.annotation) and not field.is_required():
            continue
        if k == "constraints" and cls is MILPModel and isinstance(v, list):
            out[k] = [drop_wire_nulls(c, ctypes[c["type"]]) if isinstance(c, dict) and c.get("type") in ctypes
                      else c for c in v]
            continue
        sub = _model_of(field.annotation)
        if sub is not None and isinstance(v, list):
            out[k] = [drop_wire_nulls(x, sub) for x in v]
        elif sub is not None and isinstance(v, dict):
            out[k] = drop_wire_nulls(v, sub)
        else:
            out[k] = v
    return out


def _errors_of(exc: BaseException) -> list[dict]:
    from .ir import format_loc

    if isinstance(exc, pydantic.ValidationError):
        return [{"loc": format_loc(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors(include_url=False)]
    errs = getattr(exc, "errors", None)
    if isinstance(errs, list) and errs and all(isinstance(e, dict) for e in errs):
        return [{"loc": str(e.get("loc", "model")), "msg": str(e.get("msg", ""))} for e in errs]
    msg = str(exc)
    loc, sep, rest = msg.partition(": ")
    return [{"loc": loc, "msg": rest}] if sep and " " not in loc else [{"loc": "model", "msg": msg}]


def _validator(validate):
    from .ir import MILPModel

    if validate is None:
        validate = MILPModel
    if isinstance(validate, type) and issubclass(validate, pydantic.BaseModel):
        cls = validate

        def run(obj):
            return cls.model_validate(drop_wire_nulls(obj, cls))

        return run
    if callable(validate):
        return validate
    raise TypeError(f"validate: expected a pydantic model class or a callable, got {type(validate).__name__}")


def format_errors(errors: Sequence[Mapping[str, Any]], limit: int = MAX_ERROR_CHARS) -> str:
    """``- loc: msg`` lines within ``limit`` characters (``... and N more`` when cut)."""
    lines: list[str] = []
    used = 0
    for i, e in enumerate(errors):
        line = f"- {e.get('loc', 'model')}: {str(e.get('msg', ''))[:300]}"
        if used + len(line) + 40 > limit:
            lines.append(f"... and {len(errors) - i} more")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)[:limit]


def request_ir(backend: Any, messages: Sequence[Mapping[str, str]], *, schema: dict | None, max_repairs: int = 2,
               validate: Any = None, temperature: float = 0.0, max_tokens: int = 2048, seed: int | None = None):
    """Ask ``backend`` for JSON, parse and validate it, and ask for corrections at most ``max_repairs`` times.

    ``validate`` is a pydantic model class (default :class:`~optkit.milp.ir.MILPModel`: pydantic plus semantic
    rules) or a callable ``dict -> object`` raising ``InvalidProblemError``/``ValueError`` on bad input.

    Returns ``(obj or None, n_calls, n_repairs, errors)``, ``errors`` the last failure's ``[{"loc", "msg"}]`` (empty
    on success). Transport failures raise :class:`~optkit.LLMError`.
    """
    if isinstance(max_repairs, bool) or not isinstance(max_repairs, int) or max_repairs < 0:
        raise ValueError(f"max_repairs: expected an integer >= 0, got {max_repairs!r}")
    backend = as_backend(backend)
    run = _validator(validate)
    convo = [dict(m) for m in messages]
    n_calls = n_repairs = 0
    errors: list[dict] = []
    while True:
        reply = backend.complete(convo, schema=schema, temperature=temperature, max_tokens=max_tokens, seed=seed)
        reply = _check_reply(reply, type(backend).__name__)
        n_calls += 1
        try:
            obj = extract_json(reply)
        except ValueError as exc:
            errors = [{"loc": "reply", "msg": str(exc)}]
        else:
            try:
                return run(obj), n_calls, n_repairs, []
            except (InvalidProblemError, pydantic.ValidationError, ValueError, TypeError, KeyError) as exc:
                errors = _errors_of(exc)
        log.info("LLM reply %d invalid: %s", n_calls, "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)[:500])
        if n_repairs >= max_repairs:
            return None, n_calls, n_repairs, errors
        n_repairs += 1
        convo.append({"role": "assistant", "content": reply[:16384]})
        convo.append({"role": "user", "content": "The JSON has these errors:\n" + format_errors(errors)
                      + "\nReply with the corrected JSON object only."})
