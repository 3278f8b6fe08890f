"""Global references for bilevel problems with an LP lower level: the KKT big-M MILP (HiGHS).

Class covered: upper variable ``x`` in a finite box, lower level

    y*(x) in argmin_y (c0 + C x)^T y   s.t.   A y <= b,   y_lo <= y <= y_hi          (LL)

with ``A, b`` independent of x (the finite bounds of the Y box become rows of ``A, b`` below), and an
upper objective

    F(x, y) = F_x^T x + F_y^T y + rho (C x)^T y                                      (UL)

(linear, plus the bilinear "revenue" term ``(C x)^T y`` of pricing problems). Replacing (LL) by its
KKT conditions (rows ``a_i^T y <= b_i`` of the stacked system, slacks ``s = b - A y``)

    A y <= b,   c0 + C x + A^T lam = 0,   lam >= 0,   lam_i s_i = 0

and the complementarity by binaries ``z_i`` (``lam_i <= M z_i``, ``s_i <= Ms_i (1 - z_i)``) gives a
MILP whose optimum is the *optimistic* bilevel optimum over the x box (the leader picks among tied
lower-level solutions). The bilinear term is linear on the KKT set by strong duality: the LL dual is
``max -b^T lam s.t. A^T lam = -(c0 + C x), lam >= 0``, so at a KKT pair
``(c0 + C x)^T y = -b^T lam`` and

    (C x)^T y = -b^T lam - c0^T y.

Price setting (``optkit.bilevel.problems.price_setting``): ``x = T``, ``y = (x_ll, y_ll)``,
``C = [I; 0]``, ``rho = -1`` (``F = -T^T x_ll``), so ``F = b^T lam + c0^T y`` (b including the box
rows ``v <= u``, ``-v <= 0``) — the follower's total cost minus the cost of its purchases at
``T = 0``.

Big-M constants. ``Ms_i`` (slack bounds) are proven from the data: ``b_i - min_{y in box} a_i^T y``
when the Y box is finite, else by one LP ``max s_i`` over the polytope. The dual bound ``M`` is the
user's; the function also proves a bound when it can: if ``y_s`` is a Slater point (largest minimum
slack, by LP), then every optimal dual at any x of the box satisfies ``lam >= 0``,
``A^T lam = -(c0 + C x)`` and ``-b^T lam = p*(x) >= L`` with ``L`` a lower bound of the LL optimal
value over the x box (interval arithmetic on ``c(x)_j y_j``); the set of such ``(x, lam)`` is bounded
(a recession direction ``d >= 0``, ``A^T d = 0`` would have ``b^T d = d^T s(y_s) > 0``), and one LP
per row gives ``M_i^proven = max lam_i`` over it. ``certified`` is True only when HiGHS reports an
optimum and ``M >= max_i M_i^proven``; otherwise the result is a "reference under M": the MILP
may cut off KKT points whose multipliers exceed M, so for a minimisation its value is an upper
bound on the true optimistic optimum over the box (revenue: a lower bound).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

__all__ = ["KKTMILPResult", "lp_kkt_milp", "lp_bilevel_value", "price_setting_reference"]


@dataclasses.dataclass(frozen=True, eq=False)
class KKTMILPResult:
    """Outcome of :func:`lp_kkt_milp`.

    ``objective`` is F at the MILP point (None if HiGHS found no feasible point); ``x, y, lam`` the
    point (``lam``: the problem's rows, then the finite upper bounds of Y, then the finite lower
    bounds, in index order); ``M`` the dual big-M used; ``M_proven`` the per-row proven dual bounds
    (None if the proof failed); ``certified`` see the module docstring; ``M_binding`` whether some
    ``lam_i`` reached ``M`` (then M did cut, or could have); ``status`` / ``message`` / ``mip_gap``
    HiGHS's (via ``scipy.optimize.milp``; status 0 optimal, 1 time or iteration limit, 2 infeasible,
    3 unbounded, 4 other); ``wall_time`` seconds; ``extra`` problem-specific values.
    """

    objective: float | None
    x: np.ndarray | None
    y: np.ndarray | None
    lam: np.ndarray | None
    M: float
    M_proven: np.ndarray | None
    certified: bool
    M_binding: bool
    status: int
    message: str
    mip_gap: float | None
    wall_time: float
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.status == 0 and self.objective is not None


def _stack_rows(A, b, y_bounds, n_y):
    """``A, b`` with the finite Y-box rows appended (upper bounds first, then lower bounds)."""
    A = np.atleast_2d(np.asarray(A, dtype=float)).reshape(-1, n_y)
    b = np.asarray(b, dtype=float).reshape(-1)
    if A.shape[0] != b.shape[0]:
        raise ValueError(f"A, b: {A.shape[0]} rows vs {b.shape[0]} entries")
    lo, hi = _bounds(y_bounds, n_y, "y_bounds")
    eye = np.eye(n_y)
    up, dn = np.isfinite(hi), np.isfinite(lo)
    return np.vstack([A, eye[up], -eye[dn]]), np.concatenate([b, hi[up], -lo[dn]]), lo, hi


def _bounds(bounds, n, name, finite=False):
    if bounds is None:
        lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    else:
        lo, hi = bounds
        lo = np.broadcast_to(np.asarray(lo, dtype=float), (n,)).copy()
        hi = np.broadcast_to(np.asarray(hi, dtype=float), (n,)).copy()
    if np.isnan(lo).any() or np.isnan(hi).any() or np.any(lo > hi):
        raise ValueError(f"{name}: need lower <= upper (no NaN)")
    if finite and not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError(f"{name}: finite bounds are required")
    return lo, hi


def _y_range(G, h, lo, hi):
    """Finite per-coordinate range of y over ``{G y <= h}`` (the box, else LPs); raises if unbounded."""
    from scipy.optimize import linprog

    lo, hi = lo.copy(), hi.copy()
    n = G.shape[1]
    for j in range(n):
        for sense, arr in ((1.0, lo), (-1.0, hi)):
            if np.isfinite(arr[j]):
                continue
            c = np.zeros(n)
            c[j] = sense
            res = linprog(c, A_ub=G, b_ub=h, bounds=(None, None), method="highs")
            if res.status != 0:
                raise ValueError("lower level: the polytope {A y <= b, y in Y} is unbounded or empty "
                                 f"(coordinate {j}); the KKT MILP needs a bounded polytope")
            arr[j] = sense * res.fun
    return lo, hi


def _slack_bounds(G, h, ylo, yhi):
    """``Ms_i = max_{y in box} (h_i - G_i y) = h_i - sum_j min(G_ij ylo_j, G_ij yhi_j)`` (box >= polytope)."""
    return h - np.minimum(G * ylo, G * yhi).sum(1)


def _slater(G, h):
    """``(y_s, sigma)``: a point of ``{G y <= h}`` maximising the smallest slack ``sigma`` (LP)."""
    from scipy.optimize import linprog

    m, n = G.shape
    c = np.zeros(n + 1)
    c[-1] = -1.0
    res = linprog(c, A_ub=np.hstack([G, np.ones((m, 1))]), b_ub=h, bounds=[(None, None)] * n + [(None, None)],
                  method="highs")
    if res.status != 0:
        return None, 0.0
    return res.x[:n], float(res.x[-1])


def _prove_dual_bounds(G, h, c0, C, xlo, xhi, ylo, yhi):
    """Per-row bounds on every optimal LL multiplier over the x box (module docstring); None if unproven."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack

    m, n_y = G.shape
    n_x = C.shape[1]
    y_s, sigma = _slater(G, h)
    if y_s is None or not sigma > 1e-9 * max(1.0, float(np.abs(h).max(initial=0.0))):
        return None
    # interval of c_j(x) over the box, and of c_j(x) y_j over box x box
    clo = c0 + np.minimum(C * xlo, C * xhi).sum(1)
    chi = c0 + np.maximum(C * xlo, C * xhi).sum(1)
    L = float(np.minimum.reduce([clo * ylo, clo * yhi, chi * ylo, chi * yhi]).sum())
    # variables (lam, x): G^T lam + C x = -c0, -h^T lam >= L, lam >= 0, x in box
    Aeq = hstack([csr_matrix(G.T), csr_matrix(C)]).tocsr()
    Aub = np.concatenate([h, np.zeros(n_x)])[None, :]
    bounds = [(0, None)] * m + list(zip(xlo, xhi, strict=True))
    out = np.empty(m)
    for i in range(m):
        obj = np.zeros(m + n_x)
        obj[i] = -1.0
        res = linprog(obj, A_ub=Aub, b_ub=[-L], A_eq=Aeq, b_eq=-c0, bounds=bounds, method="highs")
        if res.status == 2:  # no dual-feasible point at all: the LL is unbounded/infeasible everywhere
            return None
        if res.status != 0:
            return None
        out[i] = -res.fun
    # a safety margin for the LPs' tolerances
    return out * (1.0 + 1e-7) + 1e-9


def lp_kkt_milp(c0, C, A, b, x_bounds, *, y_bounds=None, F_x=None, F_y=None, rho: float = 0.0,
                M: float | None = 1e3, prove_M: bool = True, time_limit: float | None = None,
                mip_rel_gap: float = 1e-9) -> KKTMILPResult:
    """Optimistic bilevel optimum of an LP lower level by the KKT big-M MILP (HiGHS).

    Parameters
    ----------
    c0 : (n_y,), C : (n_y, n_x)
        Lower-level cost ``c(x) = c0 + C x``.
    A : (m, n_y), b : (m,)
        x-independent lower-level rows ``A y <= b`` (without the Y box).
    x_bounds : (lower, upper)
        Finite bounds of the upper variable (scalars or arrays; required).
    y_bounds : (lower, upper), optional
        The Y box (infinite entries allowed); its finite entries become rows.
    F_x : (n_x,), F_y : (n_y,), rho : float
        Upper objective ``F = F_x^T x + F_y^T y + rho (C x)^T y`` (minimised).
    M : float or None
        Big-M of the multipliers. None: the proven per-row bounds (an error if the proof fails).
    prove_M : bool
        Compute the proven bounds (one LP per row) to report ``certified``.
    time_limit, mip_rel_gap
        HiGHS options.

    Returns
    -------
    KKTMILPResult
        ``certified`` only if HiGHS proved optimality and ``M`` covers the proven dual bounds; else
        the value is a reference under M (module docstring).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix, diags, eye, hstack, vstack

    c0 = np.asarray(c0, dtype=float).reshape(-1)
    n_y = c0.shape[0]
    C = np.asarray(C, dtype=float).reshape(n_y, -1)
    n_x = C.shape[1]
    xlo, xhi = _bounds(x_bounds, n_x, "x_bounds", finite=True)
    G, h, ylo, yhi = _stack_rows(A, b, y_bounds, n_y)
    m = G.shape[0]
    F_x = np.zeros(n_x) if F_x is None else np.asarray(F_x, dtype=float).reshape(n_x)
    F_y = np.zeros(n_y) if F_y is None else np.asarray(F_y, dtype=float).reshape(n_y)
    if not (math.isfinite(rho) and np.isfinite(c0).all() and np.isfinite(C).all() and np.isfinite(G).all()
            and np.isfinite(h).all() and np.isfinite(F_x).all() and np.isfinite(F_y).all()):
        raise ValueError("lp_kkt_milp: data must be finite")

    t_start = time.perf_counter()
    ylo_f, yhi_f = _y_range(G, h, ylo, yhi)
    Ms = np.maximum(_slack_bounds(G, h, ylo_f, yhi_f), 0.0) * (1.0 + 1e-9) + 1e-9
    M_proven = _prove_dual_bounds(G, h, c0, C, xlo, xhi, ylo_f, yhi_f) if (prove_M or M is None) else None
    if M is None:
        if M_proven is None:
            raise ValueError("M=None: the dual bound could not be proven (no Slater point?); give M")
        M_vec = M_proven.copy()
    else:
        if not (M > 0 and math.isfinite(M)):
            raise ValueError(f"M: must be positive and finite, got {M!r}")
        M_vec = np.full(m, float(M))

    # variables: [x (n_x), y (n_y), lam (m), z (m)]
    Z = lambda r, c: csr_matrix((r, c))
    rows = [
        hstack([Z(m, n_x), csr_matrix(G), Z(m, 2 * m)]),                        # G y <= h
        hstack([csr_matrix(C), Z(n_y, n_y), csr_matrix(G.T), Z(n_y, m)]),        # C x + G^T lam = -c0
        hstack([Z(m, n_x + n_y), eye(m), -diags(M_vec)]),                        # lam - M z <= 0
        hstack([Z(m, n_x), csr_matrix(-G), Z(m, m), diags(Ms)]),                 # h - G y <= Ms (1 - z)
    ]
    lo = np.concatenate([np.full(m, -np.inf), -c0, np.full(m, -np.inf), np.full(m, -np.inf)])
    hi = np.concatenate([h, -c0, np.zeros(m), Ms - h])
    cons = LinearConstraint(vstack(rows).tocsr(), lo, hi)
    # objective: F_x^T x + F_y^T y + rho (-h^T lam - c0^T y)
    obj = np.concatenate([F_x, F_y - rho * c0, -rho * h, np.zeros(m)])
    lb = np.concatenate([xlo, ylo_f, np.zeros(m), np.zeros(m)])
    ub = np.concatenate([xhi, yhi_f, np.full(m, np.inf), np.ones(m)])
    integrality = np.concatenate([np.zeros(n_x + n_y + m), np.ones(m)])
    options = dict(mip_rel_gap=float(mip_rel_gap), disp=False)
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    res = milp(obj, constraints=cons, bounds=Bounds(lb, ub), integrality=integrality, options=options)
    wall = time.perf_counter() - t_start

    x = y = lam = None
    objective = None
    if res.x is not None:
        v = np.asarray(res.x, dtype=float)
        x, y, lam = v[:n_x], v[n_x:n_x + n_y], v[n_x + n_y:n_x + n_y + m]
        objective = float(F_x @ x + F_y @ y + rho * ((C @ x) @ y))
    M_binding = bool(lam is not None and np.any(lam >= M_vec * (1.0 - 1e-6)))
    certified = bool(res.status == 0 and M_proven is not None and np.all(M_vec >= M_proven))
    mip_gap = getattr(res, "mip_gap", None)
    msg = str(res.message)
    if res.status != 0:
        msg += " [not certified: HiGHS did not prove optimality]"
    elif not certified:
        proven = "could not be proven" if M_proven is None else f"proven bound {float(M_proven.max()):.6g}"
        msg += f" [reference under M: M = {float(np.max(M_vec)):g} does not cover the multipliers ({proven})]"
    return KKTMILPResult(objective=objective, x=x, y=y, lam=lam, M=float(np.max(M_vec)), M_proven=M_proven,
                         certified=certified, M_binding=M_binding, status=int(res.status), message=msg,
                         mip_gap=None if mip_gap is None else float(mip_gap), wall_time=wall)


def lp_bilevel_value(x, c0, C, A, b, *, y_bounds=None, F_x=None, F_y=None, rho: float = 0.0,
                     selection: str = "optimistic", tol: float = 1e-9):
    """``F(x, y)`` at a given x with y the best (``"optimistic"``) or worst (``"pessimistic"``) LL solution.

    Two HiGHS LPs: the LL optimum ``p*`` and then ``min / max F(x, y)`` over ``{A y <= b, Y,
    c(x)^T y <= p* + tol max(1, |p*|)}`` (F is linear in y at fixed x). Returns ``(F, y)``, or
    ``(inf, None)`` if the LL is infeasible. The brute-force check of :func:`lp_kkt_milp`.
    """
    from scipy.optimize import linprog

    if selection not in ("optimistic", "pessimistic"):
        raise ValueError(f"selection: must be 'optimistic' or 'pessimistic', got {selection!r}")
    c0 = np.asarray(c0, dtype=float).reshape(-1)
    n_y = c0.shape[0]
    C = np.asarray(C, dtype=float).reshape(n_y, -1)
    x = np.asarray(x, dtype=float).reshape(C.shape[1])
    G, h, _, _ = _stack_rows(A, b, y_bounds, n_y)
    F_x = np.zeros(C.shape[1]) if F_x is None else np.asarray(F_x, dtype=float)
    F_y = np.zeros(n_y) if F_y is None else np.asarray(F_y, dtype=float)
    c = c0 + C @ x
    r1 = linprog(c, A_ub=G, b_ub=h, bounds=(None, None), method="highs")
    if r1.status != 0:
        return math.inf, None
    p = float(r1.fun)
    Fy = F_y + rho * (C @ x)
    sgn = 1.0 if selection == "optimistic" else -1.0
    r2 = linprog(sgn * Fy, A_ub=np.vstack([G, c[None]]), b_ub=np.concatenate([h, [p + tol * max(1.0, abs(p))]]),
                 bounds=(None, None), method="highs")
    y = r2.x if r2.status == 0 else r1.x
    return float(F_x @ x + Fy @ y), np.asarray(y, dtype=float)


def price_setting_reference(n: int = 60, seed: int = 0, u: float = 1.0, M: float | None = 1e3,
                            T_max: float = 10.0, T_min: float = 0.0, time_limit: float | None = None,
                            mip_rel_gap: float = 1e-9) -> KKTMILPResult:
    """Global (optimistic) optimum of ``price_setting(n, seed, u)`` over prices ``T in [T_min, T_max]^n``.

    ``extra``: ``revenue`` (``T^T x_ll = -objective``), ``T``, ``at_bound_used`` (indices with
    ``T_i >= T_max`` and ``x_ll,i > 0``: raising ``T_max`` could only help through those; an index
    with ``x_ll,i = 0`` at ``T_max`` stays unused at any higher price), and ``revenue_bound`` (the
    follower's cost of buying only from competitors, ``min 1^T y s.t. B y >= b, 0 <= y <= u``, an
    upper bound on any revenue since the follower's total cost can never exceed it; inf when that
    LP is infeasible; then the leader is a monopolist on some demand row and the revenue grows
    with ``T_max``, as for tiny ``n`` with ``u = 1``). Measured (n = 60, u = 1, T in [0, 10],
    M = 1e3, 2-core CPU): revenues 4.3522, 4.8904, 5.8738 for seeds 0, 1, 2 in 4-6 s each (1-2 s
    of them the dual-bound proof), certified (proven bounds 16-18), M not binding (largest
    multiplier <= 8.6); T_max = 100 gives the same values.
    """
    from scipy.optimize import linprog

    from .problems import _price_setting_data

    Ad, Bd, bd = _price_setting_data(n, seed)
    c0 = np.ones(2 * n)
    C = np.vstack([np.eye(n), np.zeros((n, n))])
    F_rows = -np.hstack([Ad, Bd])
    res = lp_kkt_milp(c0, C, F_rows, -bd, (T_min, T_max), y_bounds=(0.0, u), rho=-1.0, M=M,
                      time_limit=time_limit, mip_rel_gap=mip_rel_gap)
    extra = dict(revenue=None if res.objective is None else -res.objective)
    if res.x is not None:
        T, xl = res.x, res.y[:n]
        extra["T"] = T.copy()
        extra["at_bound_used"] = np.flatnonzero((T >= T_max - 1e-7) & (xl > 1e-9))
    r = linprog(np.ones(n), A_ub=-Bd, b_ub=-bd, bounds=[(0.0, u)] * n, method="highs")
    extra["revenue_bound"] = float(r.fun) if r.status == 0 else math.inf
    return dataclasses.replace(res, extra=extra)
