"""CUTEst problems through pycutest (needs a user-compiled CUTEst + SIFDecode).

``pycutest_problem("BT9")`` imports (and on first use compiles) the problem with
``pycutest.import_problem`` and wraps ``obj(x, gradient=True)``, ``cons(x, gradient=True)``,
``hess(x, v)`` / ``ihess(x)`` and ``hprod`` (sparse ``scons`` / ``sphess`` when ``n`` is large) in an
:class:`optkit.nlp.Problem`. CUTEst's Lagrangian is ``f + v^T c``, the sign used by optkit.

Only equality-constrained problems are accepted (``is_eq_cons`` all true; ``c_eq = c(x) - cl``).
Variable bounds go to ``Problem.bounds``. Known pycutest issues (spec nlp 7.3): the import crashes on
WAYSEA1NE and HIMMELBA, and sizes can only be chosen from the values listed in the SIF file
(``sif_params={"N": 100}``); the pure-Python S2MPJ adapter
(:func:`optkit.nlp.problems.s2mpj.s2mpj_problem`) needs no compiler.
"""

from __future__ import annotations

import numpy as np

from ..._errors import DependencyError, InvalidProblemError
from ..problem import Problem

__all__ = ["pycutest_problem"]

#: use the sparse CUTEst tools (scons, sphess) from this many variables on
SPARSE_FROM_N = 200
_BIG = 1e20


def _import_pycutest():
    try:
        import pycutest
    except ImportError:
        pycutest = None
    except Exception as err:  # pycutest raises when CUTEST / SIFDECODE / MASTSIF are not set
        raise DependencyError(
            "pycutest", "bench",
            f"CUTEst problems (also needs a compiled CUTEst + SIFDecode; import failed: {err})") from err
    if pycutest is None:
        raise DependencyError("pycutest", "bench",
                              "CUTEst problems (also needs a compiled CUTEst + SIFDecode)")
    return pycutest


def pycutest_problem(name: str, sif_params: dict | None = None, *, sparse: bool | None = None,
                     drop_fixed_variables: bool = True) -> Problem:
    """The CUTEst problem ``name`` via pycutest as an equality-constrained :class:`Problem`.

    ``sif_params`` is passed to ``pycutest.import_problem(name, sifParams=...)``; ``sparse`` (default:
    ``n >= 200``) selects scipy.sparse Jacobians and Hessians.
    """
    pycutest = _import_pycutest()
    if sif_params:
        p = pycutest.import_problem(name, sifParams=dict(sif_params), drop_fixed_variables=drop_fixed_variables)
    else:
        p = pycutest.import_problem(name, drop_fixed_variables=drop_fixed_variables)
    n, m = int(p.n), int(p.m or 0)
    label = name if not sif_params else f"{name}{dict(sif_params)}"
    if m == 0:
        raise InvalidProblemError(f"pycutest_problem: {label} is unsupported: it has no constraints (m = 0)")
    eqflags = np.asarray(p.is_eq_cons, dtype=bool).reshape(-1)
    if not eqflags.all():
        raise InvalidProblemError(
            f"pycutest_problem: {label} is unsupported: it has {int((~eqflags).sum())} inequality "
            "constraints; optkit.nlp handles equalities only")
    if m > n:
        raise InvalidProblemError(f"pycutest_problem: {label} is unsupported: m = {m} > n = {n}")
    cl = np.asarray(p.cl, dtype=np.float64).reshape(-1)
    sparse = n >= SPARSE_FROM_N if sparse is None else bool(sparse)

    has_f = True
    try:
        props = pycutest.problem_properties(name)
        if str(props.get("objective", "")).lower() in ("none", "n"):
            has_f = False
    except Exception:  # pragma: no cover - properties unavailable for some installs
        pass

    def X(x):
        return np.asarray(x, dtype=np.float64).reshape(-1)

    def f(x):
        return float(p.obj(X(x)))

    def grad(x):
        return np.asarray(p.obj(X(x), gradient=True)[1], dtype=np.float64).reshape(-1)

    def fg(x):
        v, g = p.obj(X(x), gradient=True)
        return float(v), np.asarray(g, dtype=np.float64).reshape(-1)

    def c(x):
        return np.asarray(p.cons(X(x)), dtype=np.float64).reshape(-1) - cl

    def cj(x):
        if sparse:
            cv, J = p.scons(X(x), gradient=True)
            return np.asarray(cv, dtype=np.float64).reshape(-1) - cl, J.tocsr()
        cv, J = p.cons(X(x), gradient=True)
        return np.asarray(cv, dtype=np.float64).reshape(-1) - cl, np.asarray(J, dtype=np.float64)

    def jac(x):
        return cj(x)[1]

    def jvp(x, v):
        return np.asarray(p.jprod(X(v), transpose=False, x=X(x)), dtype=np.float64).reshape(-1)

    def vjp(x, w):
        return np.asarray(p.jprod(X(w), transpose=True, x=X(x)), dtype=np.float64).reshape(-1)

    def hess_lag(x, lam):
        lam = X(lam)
        if sparse:
            return p.sphess(X(x), lam).tocsr()
        return np.asarray(p.hess(X(x), lam), dtype=np.float64)

    def hvp_lag(x, lam, v):
        return np.asarray(p.hprod(X(v), x=X(x), v=X(lam)), dtype=np.float64).reshape(-1)

    lo = np.asarray(p.bl, dtype=np.float64).reshape(-1)
    hi = np.asarray(p.bu, dtype=np.float64).reshape(-1)
    lo = np.where(lo <= -_BIG, -np.inf, lo)
    hi = np.where(hi >= _BIG, np.inf, hi)
    bounds = (lo, hi) if (np.isfinite(lo).any() or np.isfinite(hi).any()) else None
    v0 = getattr(p, "v0", None)
    y0 = np.asarray(v0, dtype=np.float64).reshape(-1) if v0 is not None else np.zeros(m)
    tags = set() if has_f else {"ne"}
    lin = getattr(p, "is_linear_cons", None)
    if lin is not None and np.asarray(lin, dtype=bool).all():
        tags.add("linear_constraints")
    return Problem(
        n=n, m=m, x0=np.asarray(p.x0, dtype=np.float64).reshape(-1), c=c,
        f=f if has_f else None, grad=grad if has_f else None, fg=fg if has_f else None,
        jac=jac, cj=cj, jvp=jvp, vjp=vjp, hess_lag=hess_lag, hvp_lag=hvp_lag,
        y0=y0, bounds=bounds, name=label, tags=frozenset(tags), source="pycutest",
    )
