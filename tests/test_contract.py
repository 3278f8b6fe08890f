"""Contract tests over every registered solver (DESIGN.md §7).

A module registers its solvers in ``optkit.registry``; these tests then cover them with no new
test code. The test-only ridge solver keeps the contracts exercised on their own.
"""

import copy
import dataclasses

import numpy as np
import pytest
from conftest import HAS_CUDA, to_np

import optkit
from optkit import registry
from optkit.callbacks import IterInfo

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

from _ridge_solver import ridge_entry

registry.register(ridge_entry())
registry.load_all()
ENTRIES = registry.entries()
IDS = [e.name for e in ENTRIES]

BASE_FIELDS = ("x", "fun", "status", "message", "success", "nit", "nfev", "kkt_residual",
               "constraint_violation", "wall_time", "history", "backend", "device", "dtype",
               "options", "extra")


def _backends(entry):
    out = ["numpy"]
    if entry.has("torch") and torch is not None:
        out.append("torch")
    return out


def _params(cap=None):
    return [pytest.param(e, b, id=f"{e.name}-{b}") for e in ENTRIES for b in _backends(e)
            if cap is None or e.has(cap)]


def _snapshot(obj):
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    return copy.copy(obj)


def _same(a, b):
    if torch is not None and isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, (list, tuple)):
        return all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    return True


def test_registry_not_empty():
    assert "test.ridge" in IDS
    for mod in optkit.MODULES:
        assert any(n.startswith(mod + ".") for n in IDS), f"module {mod} registers no solver"


@pytest.mark.parametrize("entry,backend", _params())
def test_returns_result_with_documented_fields(entry, backend):
    case = entry.make_case(backend, 0)
    res = entry.solve(*case.args, **case.kwargs)
    assert isinstance(res, optkit.Result)
    for name in BASE_FIELDS + tuple(entry.fields):
        assert hasattr(res, name), f"{entry.name}: result lacks '{name}'"
    assert isinstance(res.status, optkit.Status)
    assert res.success == (res.status == optkit.Status.CONVERGED)
    assert res.backend == ("torch" if backend == "torch" else "numpy")
    assert isinstance(repr(res), str) and type(res).__name__ in repr(res)
    d = res.to_dict()
    assert d["status"] == res.status.name
    import json

    json.dumps(d)


@pytest.mark.parametrize("entry,backend", _params())
def test_does_not_mutate_inputs(entry, backend):
    case = entry.make_case(backend, 1)
    before = _snapshot((case.args, case.kwargs))
    entry.solve(*case.args, **case.kwargs)
    assert _same((case.args, case.kwargs), before), f"{entry.name} mutated its inputs"


@pytest.mark.parametrize("entry,backend", _params())
def test_prints_nothing(entry, backend, capsys):
    case = entry.make_case(backend, 2)
    entry.solve(*case.args, **case.kwargs)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("entry,backend", _params())
@pytest.mark.parametrize("kind", ["nan", "shape"])
def test_invalid_input_raises(entry, backend, kind):
    cases = entry.invalid_cases(backend)
    assert kind in cases, f"{entry.name} declares no '{kind}' invalid case"
    case = cases[kind]
    assert case.raises is not None
    with pytest.raises(case.raises):
        entry.solve(*case.args, **case.kwargs)


@pytest.mark.parametrize("entry,backend", _params())
@pytest.mark.parametrize("bad", [{"tol": -1.0}, {"max_iter": 2.5}, {"tolx": 1e-3}])
def test_bad_options_raise(entry, backend, bad):
    case = entry.make_case(backend, 0)
    with pytest.raises((ValueError, TypeError)) as info:
        entry.solve(*case.args, **{**case.kwargs, **bad})
    assert next(iter(bad)).rstrip("x") in str(info.value)


@pytest.mark.parametrize("entry,backend", _params("iterative"))
def test_honours_max_iter(entry, backend):
    case = entry.make_case(backend, 3)
    res = entry.solve(*case.args, **{**case.kwargs, "max_iter": 1, "tol": 1e-300})
    assert res.nit <= 1
    assert res.status in (optkit.Status.MAX_ITER, optkit.Status.CONVERGED)
    assert not (res.status == optkit.Status.MAX_ITER and res.success)


@pytest.mark.parametrize("entry,backend", _params("time_limit"))
def test_honours_time_limit(entry, backend):
    case = entry.make_case(backend, 4)
    res = entry.solve(*case.args, **{**case.kwargs, "time_limit": 1e-9, "tol": 1e-300})
    assert res.status in (optkit.Status.TIME_LIMIT, optkit.Status.CONVERGED)
    assert res.status != optkit.Status.CONVERGED or res.nit == 0


@pytest.mark.parametrize("entry,backend", _params("callback"))
@pytest.mark.parametrize("how", ["true", "stopiteration"])
def test_callback_stops(entry, backend, how):
    seen = []

    def cb(info):
        assert isinstance(info, IterInfo)
        seen.append(info.nit)
        if how == "true":
            return True
        raise StopIteration

    case = entry.make_case(backend, 5)
    res = entry.solve(*case.args, **{**case.kwargs, "callback": cb, "tol": 1e-300})
    assert len(seen) == 1
    assert res.status == optkit.Status.CALLBACK_STOP
    assert not res.success


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.has("torch")], ids=lambda e: e.name)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_preserves_dtype_and_device(entry, dtype):
    if torch is None:
        pytest.skip("torch not installed")
    devices = ["cpu"] + (["cuda"] if HAS_CUDA else [])
    for dev in devices:
        case = entry.make_case("torch", 6)
        tdt = getattr(torch, dtype)
        def conv(v, dev=dev, tdt=tdt):
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v.to(device=dev, dtype=tdt)
            if dataclasses.is_dataclass(v) and callable(getattr(v, "to", None)):  # data containers (mimo Feedback)
                return v.to(device=dev, dtype=tdt)
            return v
        args = tuple(conv(a) for a in case.args)
        kwargs = {k: conv(v) for k, v in case.kwargs.items()}
        res = entry.solve(*args, **kwargs)
        x = res.x
        assert isinstance(x, torch.Tensor)
        assert x.dtype == tdt and x.device.type == dev
        assert res.dtype == dtype
        np.isfinite(to_np(x)).all()
