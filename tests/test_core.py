import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

import optkit
from optkit import BackendError, ConvergenceError, InvalidProblemError, Result, Status
from optkit._backend import check_finite, check_integer, infer_backend, to_backend
from optkit._options import CommonOptions
from optkit.callbacks import CallbackList, EarlyStop, History, IterInfo, TimeBudget, call_callback

torch = pytest.importorskip("torch")


def test_import_is_light():
    code = ("import sys, optkit; heavy = [m for m in ('torch','pyomo','cvxpy','highspy') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_submodules():
    assert optkit.ot.__name__ == "optkit.ot"
    with pytest.raises(AttributeError):
        optkit.nonexistent_module


# ---- options --------------------------------------------------------------------------------

def test_options_defaults_and_frozen():
    opts = CommonOptions.from_kwargs()
    assert opts.tol == 1e-8 and opts.max_iter == 1000 and opts.time_limit is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.tol = 1.0


def test_unknown_option_suggests_closest():
    with pytest.raises(TypeError, match="unknown option 'max_iters'; did you mean 'max_iter'"):
        CommonOptions.from_kwargs(max_iters=3)
    with pytest.raises(TypeError, match="valid options"):
        CommonOptions.from_kwargs(zzz=3)


@pytest.mark.parametrize("kw,err,text", [
    ({"tol": -1e-3}, ValueError, "'tol' must be > 0.0, got -0.001"),
    ({"tol": 0.0}, ValueError, "'tol'"),
    ({"tol": float("nan")}, ValueError, "'tol' must not be NaN"),
    ({"max_iter": 2.5}, TypeError, "'max_iter' must be an integer"),
    ({"max_iter": True}, TypeError, "'max_iter'"),
    ({"max_iter": -1}, ValueError, "'max_iter' must be >= 0"),
    ({"verbose": 7}, ValueError, "'verbose' must be <= 3"),
    ({"callback": 3}, TypeError, "'callback' must be callable"),
    ({"time_limit": 0}, ValueError, "'time_limit'"),
])
def test_option_range_errors_name_the_option(kw, err, text):
    with pytest.raises(err, match=text.replace("(", r"\(")):
        CommonOptions.from_kwargs(**kw)


def test_options_accept_numpy_scalars():
    opts = CommonOptions.from_kwargs(max_iter=np.int64(5), tol=np.float32(1e-3))
    assert opts.max_iter == 5 and isinstance(opts.max_iter, int)


def test_doc_table_lists_every_option():
    table = CommonOptions.doc_table()
    for name in CommonOptions.names():
        assert f"`{name}`" in table


# ---- result ---------------------------------------------------------------------------------

def test_result_success_message_and_raise():
    r = Result(x=np.zeros(3), fun=1.5, status=Status.MAX_ITER)
    assert not r.success
    assert r.message == Status.MAX_ITER.default_message
    with pytest.raises(ConvergenceError, match="MAX_ITER") as info:
        r.raise_for_status()
    assert info.value.result is r
    ok = Result(x=np.zeros(3), fun=0.0, status=0)
    assert ok.success and ok.raise_for_status() is ok and ok.status is Status.CONVERGED


def test_result_repr_and_to_dict():
    r = Result(x=np.arange(10.0), fun=2.0, status=Status.CONVERGED, extra={"a": np.float64(1.0)},
               history=[{"nit": 1}])
    text = repr(r)
    assert "CONVERGED" in text and "shape=(10,)" in text and "<1 records>" in text
    d = r.to_dict()
    assert d["status"] == "CONVERGED" and d["success"] is True and d["x"][3] == 3.0
    json.dumps(d)
    t = Result(x=torch.ones(2, 3), fun=torch.tensor(1.0), status=1)
    json.dumps(t.to_dict())


def test_batched_result_summary():
    r = optkit.BatchedResult(fun=np.zeros(3), statuses=np.array([0, 1, 1]))
    assert r.status == Status.MAX_ITER and not r.success
    assert r.successes == [True, False, False] and len(r) == 3
    assert "1/3 instances converged" in r.message
    assert optkit.BatchedResult(statuses=torch.tensor([0, 0])).success


# ---- backend --------------------------------------------------------------------------------

def test_infer_backend_numpy_and_torch():
    b = infer_backend(np.ones(2), None, names=["a", "b"])
    assert b.name == "numpy" and b.dtype == np.float64
    t = infer_backend(np.ones(2), torch.ones(2, dtype=torch.float32), names=["a", "b"])
    assert t.name == "torch" and t.dtype == torch.float32 and t.device.type == "cpu"
    x = to_backend(np.ones(2), t, "a")
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    d = infer_backend(np.ones(2), device="cpu", dtype="float64")
    assert d.is_torch and d.dtype == torch.float64


def test_device_mismatch_names_both():
    a = torch.ones(2)
    b = torch.ones(2, device="meta")
    with pytest.raises(BackendError, match="'a' on cpu and 'b' on meta"):
        infer_backend(a, b, names=["a", "b"])


def test_check_finite_and_integer():
    with pytest.raises(InvalidProblemError, match="C: contains 2 non-finite"):
        check_finite(np.array([1.0, np.nan, np.inf]), "C")
    with pytest.raises(InvalidProblemError, match="C: contains 1"):
        check_finite(torch.tensor([1.0, float("nan")]), "C")
    assert check_integer(np.int64(2), "k") == 2
    for bad in (True, 2.0, "2"):
        with pytest.raises(InvalidProblemError, match="k: expected an integer"):
            check_integer(bad, "k")
    with pytest.raises(InvalidProblemError, match="k: must be >= 1"):
        check_integer(0, "k", low=1)


# ---- callbacks ------------------------------------------------------------------------------

def test_callbacks():
    h = History()
    assert call_callback(h, IterInfo(nit=1, fun=np.float64(2.0), residual=0.5)) is False
    assert h.column("fun") == [2.0]

    def raiser(info):
        raise StopIteration

    assert call_callback(raiser, IterInfo(nit=1)) is True
    assert call_callback(lambda i: True, IterInfo(nit=1)) is True
    es = EarlyStop(patience=2, key="fun")
    stops = [es(IterInfo(nit=i, fun=1.0)) for i in range(3)]
    assert stops == [False, False, True]
    tb = TimeBudget(1e-9)
    tb(IterInfo(nit=0))
    assert tb(IterInfo(nit=1)) is True
    both = CallbackList([History(), lambda i: True])
    assert both(IterInfo(nit=0)) is True
    with pytest.raises(ValueError, match="seconds"):
        TimeBudget(-1)
