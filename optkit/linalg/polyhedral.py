r"""Euclidean projection onto a polyhedron: warm-started ADMM plus active-set polishing (numpy, torch).

.. math::

    \Pi(w_0) = \arg\min_v \tfrac12 \|v - w_0\|^2 \quad\text{s.t.}\quad
    G v \le h,\; P v = q,\; lb \le v \le ub .

**ADMM.** The OSQP splitting (Stellato, Banjac, Goulart, Bemporad, Boyd, "OSQP: an operator
splitting solver for quadratic programs", Math. Prog. Comp. 2020) specialised to the identity
Hessian. With the rows of ``A = [G; P]`` scaled to unit norm, ``z`` the constrained copy of ``A v``,
``y`` its multiplier and ``alpha`` the over-relaxation,

.. math::

    (D + A^T R A)\, v^{k+1} &= w_0 + A^T (R z^k - y^k) + (R_b z_b^k - y_b^k) \\
    \hat z^{k+1} &= \alpha A v^{k+1} + (1 - \alpha) z^k,\qquad
    z^{k+1} = \Pi_{[l, u]}(\hat z^{k+1} + R^{-1} y^k),\qquad
    y^{k+1} = y^k + R (\hat z^{k+1} - z^{k+1})

and the same for the box rows ``z_b`` of the coordinates with a finite bound (``D = I +
diag(rho_box)``). ``R`` is ``rho`` on inequality rows and ``rho_eq`` on equality rows. The matrix
``D + A^T R A`` depends on ``(G, P, rho)`` only and is factorised once by :func:`polyhedral_factor`
(Cholesky of ``D + A^T R A`` when ``m >= n``, else of the ``m x m`` Woodbury capacitance
``R^{-1} + A D^{-1} A^T``), stored as an explicit inverse: an iteration is three or four matrix
products (GEMMs on a GPU) plus elementwise work. ``(z, y)`` of the previous call warm-start the next.

**Polishing** (as OSQP's): the active set read off ``(z, y)`` (row ``i`` active when
``u_i - z_i < y_i``; bounds likewise) defines the equality-constrained projection
``v = w - A_S^T lambda``, ``(A_S A_S^T) lambda = A_S w - b_S`` (box-active coordinates fixed at
their bound), one small batched ``|S| x |S|`` solve (regularised by ``1e-13`` and refined twice).
The polished point is accepted only if it satisfies every KKT condition of the projection to
``eps`` -- primal feasibility, ``lambda >= 0`` on inequality rows, correct signs of the bound
multipliers, the active rows tight (stationarity holds by construction) -- so an accepted point is
certified; its KKT residual (reported, typically 1e-14) is at rounding level. It is tried first
with the warm start's active set (a slowly moving sequence of points usually keeps it: no ADMM
iteration at all), then whenever the ADMM residual is below ``polish_gate * scale`` and the active
set has changed. The Cholesky factors of the active-set Gram matrices are cached per active set
(LRU of 16), so an unchanged active set costs a few triangular solves per call, no factorisation.
Memory: the explicit inverse is ``n x n`` (direct mode) or ``m x m`` (Woodbury), plus ``A`` (``m x n``).

**Stopping.** Every ``check_every`` iterations (one host sync on torch), per instance: ADMM residuals
``||A v - z||_inf <= eps`` (the rows have unit norm: a distance in the units of ``w``) and
``||v - w_0 + A^T y||_inf <= eps``; or an accepted polish. ``eps = tol * scale`` with
``scale = max(1, ||w_0 - w_prev||_inf)``, ``w_prev`` the previous projection carried by the warm
start (``max(1, ||w_0||_inf)`` on a cold start), or the caller's ``scale``. On exit ``v`` is clipped
to ``[lb, ub]`` (a move of at most the residual), so bounds hold exactly.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from .._backend import get_torch, is_torch
from .._errors import BackendError, InvalidProblemError

__all__ = ["PolyhedralFactor", "PolyhedralProblem", "PolyhedralWarmStart", "polyhedral_factor",
           "polyhedral_problem", "project_polyhedron"]


# ----------------------------------------------------------------------------------------------
# validation helpers (host data)
# ----------------------------------------------------------------------------------------------

def _host(v):
    return v.detach().cpu().numpy() if is_torch(v) else v


def _host_matrix(M, name, n=None):
    if M is None:
        return None
    try:
        M = np.array(_host(M), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"{name}: cannot convert to a float64 array ({exc})") from None
    if M.ndim == 1 and n is not None and M.shape[0] == n:
        M = M[None, :]
    if M.ndim != 2:
        raise InvalidProblemError(f"{name}: expected a 2-D matrix, got shape {M.shape}")
    if n is not None and M.shape[1] != n:
        raise InvalidProblemError(f"{name}: expected shape (rows, {n}), got {M.shape}")
    if not np.all(np.isfinite(M)):
        raise InvalidProblemError(f"{name}: contains non-finite values (NaN or inf)")
    return M


def _host_vector(v, name, m, allow_inf=None):
    """Host float64 vector of length ``m`` (scalars broadcast); ``allow_inf`` in {None, "+", "-"}."""
    try:
        v = np.array(_host(v), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"{name}: cannot convert to a float64 array ({exc})") from None
    if v.ndim == 0:
        v = np.full(m, float(v))
    if v.shape != (m,):
        raise InvalidProblemError(f"{name}: expected shape ({m},), got {v.shape}")
    if np.isnan(v).any():
        raise InvalidProblemError(f"{name}: contains NaN")
    if allow_inf != "+" and np.isposinf(v).any():
        raise InvalidProblemError(f"{name}: contains +inf")
    if allow_inf != "-" and np.isneginf(v).any():
        raise InvalidProblemError(f"{name}: contains -inf")
    return v


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise InvalidProblemError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


def _count(value, name, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InvalidProblemError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# the cached factor
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class PolyhedralFactor:
    """Cached data of the projector for one ``(G, P, box pattern, rho)``; see :func:`polyhedral_factor`.

    Host (numpy float64) arrays: ``A`` (``m x n``, the unit rows ``[G; P] / row_norm``), ``row_norm``,
    ``m_in`` (rows of ``G``), ``rho`` (per row), ``box`` (bool per coordinate: has a finite bound),
    ``rho_box`` (per coordinate, 0 where unbounded), ``mode`` (``"direct"``: ``inv`` is
    ``(D + A^T R A)^{-1}``; ``"woodbury"``: ``inv`` is ``(R^{-1} + A D^{-1} A^T)^{-1}``), ``gram``
    (``A A^T``, for polishing). Torch copies are made lazily, once per ``(device, dtype)``.
    ``n_factorizations`` counts the factorisations of the ADMM matrix (one, at construction);
    ``n_polish_factorizations`` those of active-set Gram matrices (cached by active set, LRU of 16).
    """

    A: np.ndarray
    row_norm: np.ndarray
    m_in: int
    rho: np.ndarray
    box: np.ndarray
    rho_box: np.ndarray
    mode: str
    inv: np.ndarray
    d_inv: np.ndarray
    gram: np.ndarray
    n_factorizations: int = 1
    n_polish_factorizations: int = 0
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)
    polish_cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return self.A.shape[1]

    @property
    def m(self) -> int:
        return self.A.shape[0]

    def arrays(self, like):
        """The factor's arrays in the backend, device and dtype of ``like`` (converted once, cached)."""
        host = self._cache.get("numpy")
        if host is None:
            box_idx = np.flatnonzero(self.box)
            host = dict(A=self.A, AT=np.ascontiguousarray(self.A.T), rho=self.rho, inv_rho=1.0 / self.rho,
                        rho_box=self.rho_box[box_idx], inv_rho_box=1.0 / self.rho_box[box_idx],
                        inv=self.inv, d_inv=self.d_inv, gram=self.gram, row_norm=self.row_norm,
                        box_idx=box_idx)
            self._cache["numpy"] = host
        if not is_torch(like):
            return host
        key = (str(like.device), like.dtype)
        got = self._cache.get(key)
        if got is None:
            torch = get_torch()
            got = {k: torch.as_tensor(v, device=like.device).to(like.dtype) for k, v in host.items()
                   if k != "box_idx"}
            got["box_idx"] = torch.as_tensor(host["box_idx"], dtype=torch.long, device=like.device)
            self._cache[key] = got
        return got

    def solve(self, rhs, arr):
        """``(D + A^T R A)^{-1} rhs`` for the rows of ``rhs`` (shape ``(N, n)``)."""
        if self.mode == "direct":
            return rhs @ arr["inv"]  # symmetric
        u = rhs * arr["d_inv"]
        t = (u @ arr["AT"]) @ arr["inv"]
        return u - (t @ arr["A"]) * arr["d_inv"]


def polyhedral_factor(G=None, P=None, *, n=None, box=None, rho=2.5, rho_eq=None, rho_box=None):
    """Factorise the ADMM matrix of :func:`project_polyhedron` once, for repeated projections.

    Parameters
    ----------
    G : (m_in, n) array, optional
        Inequality rows ``G v <= h``.
    P : (m_eq, n) array, optional
        Equality rows ``P v = q`` (need not have full row rank, but must be consistent).
    n : int, optional
        Dimension (needed when neither G nor P is given).
    box : bool array (n,) or bool, optional
        Coordinates that carry a finite lower or upper bound (True: all; default: none).
    rho : float, default 2.5
        ADMM penalty of the inequality rows (after scaling the rows to unit norm).
    rho_eq : float, optional
        Penalty of the equality rows (default ``100 * rho``).
    rho_box : float, optional
        Penalty of the bound rows (default ``rho``).

    Returns
    -------
    PolyhedralFactor

    Raises
    ------
    InvalidProblemError
        Non-finite or mis-shaped ``G``/``P``, a zero row, a non-positive penalty.
    """
    import scipy.linalg

    rho = _positive(rho, "rho")
    rho_eq = 100.0 * rho if rho_eq is None else _positive(rho_eq, "rho_eq")
    rho_box = rho if rho_box is None else _positive(rho_box, "rho_box")
    if n is None:
        for M in (G, P):
            if M is not None and np.ndim(_host(M)) == 2:
                n = np.shape(_host(M))[-1]
                break
    if n is None:
        raise InvalidProblemError("n: give G, P or the dimension n")
    n = _count(n, "n")
    G = _host_matrix(G, "G", n)
    P = _host_matrix(P, "P", n)
    G = np.zeros((0, n)) if G is None else G
    P = np.zeros((0, n)) if P is None else P
    A = np.vstack([G, P])
    norms = np.linalg.norm(A, axis=1)
    for name, M, off in (("G", G, 0), ("P", P, G.shape[0])):
        zero = np.flatnonzero(norms[off:off + M.shape[0]] == 0)
        if zero.size:
            raise InvalidProblemError(f"{name}: row {int(zero[0])} is zero (drop it)")
    A = np.ascontiguousarray(A / norms[:, None]) if A.shape[0] else A
    m = A.shape[0]
    rvec = np.concatenate([np.full(G.shape[0], rho), np.full(P.shape[0], rho_eq)])
    if box is None or box is False:
        bmask = np.zeros(n, dtype=bool)
    elif box is True:
        bmask = np.ones(n, dtype=bool)
    else:
        bmask = np.asarray(_host(box), dtype=bool)
        if bmask.shape != (n,):
            raise InvalidProblemError(f"box: expected a bool mask of shape ({n},), got {bmask.shape}")
    rb = np.where(bmask, rho_box, 0.0)
    dvec = 1.0 + rb
    d_inv = 1.0 / dvec
    if m == 0:
        mode, inv = "direct", np.diag(d_inv)
    else:
        if m >= n:
            K, mode = np.diag(dvec) + (A.T * rvec) @ A, "direct"
        else:
            K, mode = np.diag(1.0 / rvec) + (A * d_inv) @ A.T, "woodbury"
        c = scipy.linalg.cho_factor(K, lower=True)
        inv = scipy.linalg.cho_solve(c, np.eye(K.shape[0]))
        inv = 0.5 * (inv + inv.T)
    return PolyhedralFactor(A=A, row_norm=norms, m_in=G.shape[0], rho=rvec, box=bmask, rho_box=rb, mode=mode,
                            inv=inv, d_inv=d_inv, gram=A @ A.T)


# ----------------------------------------------------------------------------------------------
# backend operations (numpy / torch)
# ----------------------------------------------------------------------------------------------

class _Ops:
    def __init__(self, like):
        self.torch = is_torch(like)
        if self.torch:
            self.t = get_torch()
            self.dtype, self.device = like.dtype, like.device
            self.eps = self.t.finfo(like.dtype).eps
        else:
            self.dtype, self.device = np.float64, None
            self.eps = np.finfo(np.float64).eps

    def asarr(self, v):
        if self.torch:
            return self.t.as_tensor(np.asarray(v, dtype=np.float64), device=self.device).to(self.dtype)
        return np.asarray(v, dtype=np.float64)

    def zeros(self, shape):
        if self.torch:
            return self.t.zeros(shape, dtype=self.dtype, device=self.device)
        return np.zeros(shape)

    def ones_bool(self, shape, value=True):
        if self.torch:
            return self.t.full(shape, value, dtype=self.t.bool, device=self.device)
        return np.full(shape, value, dtype=bool)

    def where(self, c, a, b):
        return self.t.where(c, a, b) if self.torch else np.where(c, a, b)

    def maximum(self, a, b):
        return self.t.maximum(a, b) if self.torch else np.maximum(a, b)

    def minimum(self, a, b):
        return self.t.minimum(a, b) if self.torch else np.minimum(a, b)

    def clip(self, v, lo, hi):
        return self.minimum(self.maximum(v, lo), hi)

    def amax(self, a):
        """Max of ``|a|`` over the last axis (0 for an empty axis)."""
        if a.shape[-1] == 0:
            return self.zeros(a.shape[:-1])
        return self.t.amax(a.abs(), dim=-1) if self.torch else np.abs(a).max(axis=-1)

    def pos_max(self, a):
        """Max of ``max(a, 0)`` over the last axis (``-inf`` entries count as 0)."""
        if a.shape[-1] == 0:
            return self.zeros(a.shape[:-1])
        return self.t.clamp(self.t.amax(a, dim=-1), min=0.0) if self.torch else np.maximum(a.max(axis=-1), 0.0)

    def float(self, b):
        return b.to(self.dtype) if self.torch else b.astype(np.float64)

    def any(self, b):
        return bool(b.any().item()) if self.torch else bool(np.any(b))

    def all(self, b):
        return bool(b.all().item()) if self.torch else bool(np.all(b))

    def set_cols(self, M, idx, vals):
        """A copy of ``M`` with ``M[:, idx] = vals``."""
        out = M.clone() if self.torch else M.copy()
        out[:, idx] = vals
        return out

    def eye(self, k):
        return self.t.eye(k, dtype=self.dtype, device=self.device) if self.torch else np.eye(k)


@dataclasses.dataclass
class PolyhedralWarmStart:
    """State carried from one :func:`project_polyhedron` call to the next (scaled rows):
    ``z, y`` (``(N, m)``), ``zb, yb`` (``(N, n_box)``), the previous projection ``w`` (``(N, n)``),
    the batch shape, and the factor it belongs to."""

    z: Any
    y: Any
    zb: Any
    yb: Any
    w: Any
    batch: tuple
    factor: Any = None


_POLISH_REG = 1e-13  # relative ridge of the active-set Gram matrix (unit rows: diag(A A^T) <= 1)
_POLISH_CACHE = 16  # active-set factorisations kept per factor (LRU)


def _active_solve(act, fixed, f, rhs, arr, ops, factor):
    """``lambda_S = (A_S diag(f) A_S^T)^{-1} rhs_S`` on each instance's active rows ``S`` (0 elsewhere).

    The Cholesky factor of every active-set Gram matrix is kept in ``cache`` (LRU, keyed by the
    active rows and fixed coordinates), so a sequence of points with an unchanged active set
    factorises once. A ``1e-13`` ridge plus two steps of iterative refinement handle dependent
    active rows; a failed factorisation yields NaN (the polish is then rejected).
    """
    import scipy.linalg

    N, m = rhs.shape
    A = arr["A"]
    cache = factor.polish_cache
    if ops.torch:  # batched, masked to full size (GPU friendly): inactive rows get an identity block
        torch = ops.t
        key = ("torch", str(ops.device), ops.dtype, act.cpu().numpy().tobytes(),
               None if fixed is None else fixed.cpu().numpy().tobytes())
        got = cache.pop(key, None)
        if got is None:
            d = ops.float(act)
            M = arr["gram"] + 0 * d[:, :, None] if f is None else (A * f[:, None, :]) @ arr["AT"]
            Md = d[:, :, None] * M * d[:, None, :] + (1.0 - d)[:, :, None] * ops.eye(m)
            L, info = torch.linalg.cholesky_ex(Md + _POLISH_REG * ops.eye(m))
            L = torch.where((info == 0)[:, None, None], L, torch.full_like(L, math.nan))
            got = (L, Md)
            factor.n_polish_factorizations += 1
        cache[key] = got
        L, Md = got
        lam = torch.cholesky_solve(rhs[:, :, None], L)
        for _ in range(2):  # iterative refinement against the unregularised system
            lam = lam + torch.cholesky_solve(rhs[:, :, None] - Md @ lam, L)
        lam = lam[..., 0]
    else:
        lam = np.zeros((N, m))
        for i in range(N):
            idx = np.flatnonzero(act[i])
            if idx.size == 0:
                continue
            key = ("numpy", act[i].tobytes(), None if fixed is None else fixed[i].tobytes())
            got = cache.pop(key, None)
            if got is None:
                As = A[idx]
                M = As @ As.T if f is None else (As * f[i]) @ As.T
                try:
                    c = scipy.linalg.cho_factor(M + _POLISH_REG * np.eye(idx.size), lower=True,
                                                check_finite=False)
                except (np.linalg.LinAlgError, ValueError):
                    c = None
                got = (c, M)
                factor.n_polish_factorizations += 1
            cache[key] = got
            c, M = got
            if c is None:
                lam[i] = math.nan
                continue
            r = rhs[i, idx]
            sol = scipy.linalg.cho_solve(c, r, check_finite=False)
            for _ in range(2):
                sol = sol + scipy.linalg.cho_solve(c, r - M @ sol, check_finite=False)
            lam[i, idx] = sol
    while len(cache) > _POLISH_CACHE:
        cache.pop(next(iter(cache)))
    return lam


def _polish(W, z, y, zb, yb, arr, hi, blo, bhi, m_in, nb, ops, factor):
    """Equality-constrained projection on the active set read off ``(z, y)``; returns the polished
    ``(v, lam, mu_b, kkt_residual)`` for every instance (scaled multipliers)."""
    N, n = W.shape
    m = z.shape[1]
    A, AT, bidx = arr["A"], arr["AT"], arr["box_idx"]
    what, f = W, None
    fixed = up = None
    if nb:
        up = (bhi - zb) < yb
        low = ((zb - blo) < -yb) & ~up
        fixed = up | low
        bound = ops.where(up, bhi + 0 * zb, ops.where(low, blo + 0 * zb, W[:, bidx]))
        what = ops.set_cols(W, bidx, bound)
        f = ops.set_cols(ops.zeros((N, n)) + 1.0, bidx, 1.0 - ops.float(fixed))
    if m:
        act = ops.ones_bool((N, m))
        if m_in:
            act = ops.set_cols(act, slice(0, m_in), (hi[:m_in] - z[:, :m_in]) < y[:, :m_in])
        rhs = ops.where(act, what @ AT - ops.where(act, hi + 0 * z, 0 * z), 0 * z)
        lam = _active_solve(act, fixed, f, rhs, arr, ops, factor)
        lam = ops.where(act, lam, 0 * lam)
        ATlam = lam @ A
    else:
        lam = ops.zeros((N, 0))
        ATlam = ops.zeros((N, n))
        act = ops.ones_bool((N, 0))
    v = what - (ATlam if f is None else f * ATlam)
    Av = v @ AT
    res = ops.zeros((N,))
    if m:
        gap = Av - hi
        res = ops.maximum(res, ops.pos_max(gap[:, :m_in]))                       # primal, inequalities
        res = ops.maximum(res, ops.amax(ops.where(act, gap, ops.zeros(gap.shape))))  # active rows tight
        res = ops.maximum(res, ops.pos_max(-lam[:, :m_in]))                       # lambda >= 0
    mu_b = ops.zeros((N, nb))
    if nb:
        vb = v[:, bidx]
        res = ops.maximum(res, ops.pos_max(ops.where(fixed, 0 * vb, vb - bhi)))
        res = ops.maximum(res, ops.pos_max(ops.where(fixed, 0 * vb, blo - vb)))
        mu = (W - v - ATlam)[:, bidx]
        mu_b = ops.where(fixed, mu, 0 * mu)
        wrong = ops.where(up, -mu, mu)
        res = ops.maximum(res, ops.pos_max(ops.where(fixed, wrong, 0 * wrong)))
    bad = (res != res)  # NaN from a failed solve: reject
    res = ops.where(bad, res * 0 + math.inf, res)
    sig = act if not nb else (act, fixed)
    return v, lam, mu_b, res, sig


def _same_signature(a, b, ops):
    """Per instance: True where the active sets ``a`` and ``b`` coincide."""
    if b is None:
        return ops.ones_bool((_first(a).shape[0],), False)
    if isinstance(a, tuple):
        out = None
        for x, y in zip(a, b):
            s = (x == y).all(-1) if ops.torch else np.all(x == y, axis=-1)
            out = s if out is None else out & s
        return out
    return (a == b).all(-1) if ops.torch else np.all(a == b, axis=-1)


def _first(a):
    return a[0] if isinstance(a, tuple) else a


# ----------------------------------------------------------------------------------------------
# the projector
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class PolyhedralProblem:
    """Validated data of one polyhedron: the factor plus the scaled bound vectors (host), with
    per-``(device, dtype)`` copies made once. Built by :func:`polyhedral_problem`."""

    factor: PolyhedralFactor
    lo: np.ndarray
    hi: np.ndarray
    blo: np.ndarray
    bhi: np.ndarray
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def bounds(self, ops):
        key = (str(ops.device), ops.dtype) if ops.torch else "numpy"
        got = self._cache.get(key)
        if got is None:
            got = tuple(ops.asarr(v) for v in (self.lo, self.hi, self.blo, self.bhi))
            self._cache[key] = got
        return got


def polyhedral_problem(n, G=None, h=None, P=None, q=None, *, lb=None, ub=None, factor=None, rho=2.5):
    """Validate ``(G, h, P, q, lb, ub)`` for dimension ``n`` and attach (or build) the factor."""
    n = _count(n, "n")
    lbv = _host_vector(-math.inf if lb is None else lb, "lb", n, allow_inf="-")
    ubv = _host_vector(math.inf if ub is None else ub, "ub", n, allow_inf="+")
    if np.any(lbv > ubv):
        i = int(np.flatnonzero(lbv > ubv)[0])
        raise InvalidProblemError(f"lb, ub: lb > ub at coordinate {i} ({lbv[i]} > {ubv[i]})")
    box = np.isfinite(lbv) | np.isfinite(ubv)
    if factor is None:
        factor = polyhedral_factor(G, P, n=n, box=box, rho=rho)
    elif not isinstance(factor, PolyhedralFactor):
        raise InvalidProblemError(f"factor: expected a PolyhedralFactor, got {type(factor).__name__}")
    if factor.n != n:
        raise InvalidProblemError(f"w0: expected last dimension {factor.n} (the factor's), got {n}")
    if not np.array_equal(factor.box, box):
        raise InvalidProblemError("lb, ub: the pattern of finite bounds differs from the factor's box mask")
    m, m_in = factor.m, factor.m_in
    m_eq = m - m_in
    if m_in and h is None:
        raise InvalidProblemError("h: required with G")
    if m_eq and q is None:
        raise InvalidProblemError("q: required with P")
    hv = _host_vector(h, "h", m_in, allow_inf="+") if m_in else np.zeros(0)
    qv = _host_vector(q, "q", m_eq) if m_eq else np.zeros(0)
    nrm = factor.row_norm
    lo = np.concatenate([np.full(m_in, -np.inf), qv / nrm[m_in:]])
    hi = np.concatenate([hv / nrm[:m_in], qv / nrm[m_in:]])
    return PolyhedralProblem(factor=factor, lo=lo, hi=hi, blo=lbv[box], bhi=ubv[box])


def _check_w0(w0, name="w0"):
    if is_torch(w0):
        torch = get_torch()
        if w0.dtype in (torch.float16, torch.bfloat16):
            raise BackendError(f"{name}: dtype {w0.dtype} is not supported (use float32 or float64)")
        if not w0.is_floating_point():
            w0 = w0.to(torch.float64)
        if not bool(torch.isfinite(w0).all()):
            raise InvalidProblemError(f"{name}: contains non-finite values (NaN or inf)")
    else:
        try:
            w0 = np.asarray(w0, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidProblemError(f"{name}: cannot convert to a float64 array ({exc})") from None
        if not np.all(np.isfinite(w0)):
            raise InvalidProblemError(f"{name}: contains non-finite values (NaN or inf)")
    if w0.ndim == 0:
        raise InvalidProblemError(f"{name}: expected shape (..., n), got a scalar")
    return w0


def _check_options(alpha, tol, max_iter, check_every, polish_gate):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 2:
        raise InvalidProblemError(f"alpha: must be in (0, 2), got {alpha!r}")
    return (float(alpha), _positive(tol, "tol"), _count(max_iter, "max_iter", 0),
            _count(check_every, "check_every"), _positive(polish_gate, "polish_gate"))


def project_polyhedron(w0, G=None, h=None, P=None, q=None, *, lb=None, ub=None, factor=None, warm=None,
                       scale=None, rho=2.5, alpha=1.6, tol=1e-10, max_iter=10000, check_every=5, polish=True,
                       polish_gate=1e-4):
    r"""Project ``w0`` (any leading batch dimensions) onto ``{v : G v <= h, P v = q, lb <= v <= ub}``.

    Parameters
    ----------
    w0 : array or tensor of shape (..., n)
        Points to project (never modified). numpy in -> float64 numpy out; torch in -> torch
        out on the same device and dtype.
    G, h : (m_in, n) matrix and (m_in,) vector, optional
        Inequalities ``G v <= h`` (``h`` may hold ``+inf``). With ``factor`` given, ``G`` and ``P``
        are taken from it (their values here are ignored).
    P, q : (m_eq, n) matrix and (m_eq,) vector, optional
        Equalities ``P v = q``.
    lb, ub : scalar or (n,) vector, optional
        Bounds (``-inf``/``+inf`` for none).
    factor : PolyhedralFactor, optional
        From :func:`polyhedral_factor` for the same ``G``, ``P`` and bound pattern; built here (one
        Cholesky) when omitted -- pass it for repeated projections.
    warm : PolyhedralWarmStart, optional
        ``info["warm"]`` of a previous call with the same factor; ignored when its factor, batch
        shape, backend, device or dtype differ.
    scale : float or array (batch shape), optional
        Tolerance scale; default ``max(1, ||w0 - w_prev||_inf)`` (``w_prev``: the projection held by
        ``warm``), or ``max(1, ||w0||_inf)`` on a cold start.
    rho : float, default 2.5
        ADMM penalty (only used when ``factor`` is built here).
    alpha : float, default 1.6
        Over-relaxation, in ``(0, 2)``.
    tol : float, default 1e-10
        Relative tolerance on the residuals (floored at ``100 eps`` of the dtype).
    max_iter : int, default 10000
        ADMM iteration cap.
    check_every : int, default 5
        Iterations between convergence checks (one host sync each on torch).
    polish : bool, default True
        Try the active-set polish (module docstring).
    polish_gate : float, default 1e-4
        Polish once the ADMM residual is below ``polish_gate * scale``.

    Returns
    -------
    w : array or tensor like ``w0``
    info : dict
        ``converged`` (bool per instance), ``iterations`` (ADMM iterations run, an int),
        ``polished`` (bool per instance), ``residual`` (per instance: the KKT residual of the
        polished point, else ``max(primal, dual)`` ADMM residual; units of ``w``), ``eps``
        (threshold per instance), ``lam`` (multipliers of the ``G`` rows), ``nu`` (of the ``P``
        rows), ``mu_box`` (of the bounds: ``> 0`` at an upper, ``< 0`` at a lower bound), ``warm``.

    Raises
    ------
    InvalidProblemError
        Mis-shaped or non-finite data, ``lb > ub``, bad options.
    BackendError
        float16 / bfloat16 tensors.

    Notes
    -----
    The set must be non-empty (an empty one makes ADMM diverge: ``converged`` False after
    ``max_iter``); :class:`optkit.bilevel.sets.Polyhedron` checks this once by an LP.
    """
    w0 = _check_w0(w0)
    opts = _check_options(alpha, tol, max_iter, check_every, polish_gate)
    prob = polyhedral_problem(w0.shape[-1], G, h, P, q, lb=lb, ub=ub, factor=factor, rho=rho)
    return _run(prob, w0, warm, scale, *opts, polish)


def _run(prob, w0, warm, scale, alpha, tol, max_iter, check_every, polish_gate, polish):
    factor = prob.factor
    n = w0.shape[-1]
    m, m_in = factor.m, factor.m_in
    m_eq = m - m_in
    ops = _Ops(w0)
    arr = factor.arrays(w0)
    batch = tuple(w0.shape[:-1])
    W = w0.reshape(-1, n)
    N = W.shape[0]
    lo, hi, blo, bhi = prob.bounds(ops)
    bidx = arr["box_idx"]
    nb = int(factor.box.sum())
    A, AT, R, inv_R = arr["A"], arr["AT"], arr["rho"], arr["inv_rho"]
    Rb, inv_Rb = arr["rho_box"], arr["inv_rho_box"]
    tol = max(tol, 100 * ops.eps)

    ok_warm = (isinstance(warm, PolyhedralWarmStart) and warm.factor is factor and warm.batch == batch
               and is_torch(warm.z) == ops.torch and tuple(warm.z.shape) == (N, m)
               and (not ops.torch or (warm.z.device == w0.device and warm.z.dtype == w0.dtype)))
    if ok_warm:
        z, y, zb, yb, ref = warm.z, warm.y, warm.zb, warm.yb, warm.w
    else:
        z, y = ops.clip(W @ AT, lo, hi), ops.zeros((N, m))
        zb, yb = ops.clip(W[:, bidx], blo, bhi), ops.zeros((N, nb))
        ref = None
    if scale is None:
        sc = ops.maximum(ops.amax(W - ref) if ref is not None else ops.amax(W), ops.asarr(1.0))
    else:
        sh = np.asarray(_host(scale), dtype=np.float64)
        sc = _host_vector(sh.reshape(-1) if sh.ndim else sh, "scale", N)
        if np.any(sc <= 0) or not np.all(np.isfinite(sc)):
            raise InvalidProblemError("scale: must be finite and > 0")
        sc = ops.asarr(sc)
    eps = tol * sc

    done = ops.ones_bool((N,), False)
    polished = ops.ones_bool((N,), False)
    v_out, lam_out, mub_out = W, ops.zeros((N, m)), ops.zeros((N, nb))
    res_out = ops.zeros((N,)) + math.inf
    last_sig = None

    def merge(sel, v, lam, mub, res):
        nonlocal v_out, lam_out, mub_out, res_out
        c = sel[:, None]
        v_out = ops.where(c, v, v_out)
        lam_out = ops.where(c, lam, lam_out)
        mub_out = ops.where(c, mub, mub_out)
        res_out = ops.where(sel, res, res_out)

    def try_polish(todo):
        nonlocal done, polished, last_sig
        vp, lp, mbp, rp_, sig = _polish(W, z, y, zb, yb, arr, hi, blo, bhi, m_in, nb, ops, factor)
        fresh = ~_same_signature(sig, last_sig, ops)
        acc = todo & fresh & (rp_ <= eps)
        last_sig = sig
        if ops.any(acc):
            merge(acc, vp, lp, mbp, rp_)
            done = done | acc
            polished = polished | acc

    if polish and ok_warm:
        try_polish(~done)
    it = 0
    finished = ops.all(done)  # host flag, refreshed at checks only (no sync per iteration)
    while it < max_iter and not finished:
        rhs = W + (z * R - y) @ A
        if nb:
            rhs = ops.set_cols(rhs, bidx, rhs[:, bidx] + (zb * Rb - yb))
        v = factor.solve(rhs, arr)
        Av = v @ AT
        zh = alpha * Av + (1 - alpha) * z
        z_new = ops.clip(zh + y * inv_R, lo, hi)
        y = y + R * (zh - z_new)
        z = z_new
        if nb:
            zbh = alpha * v[:, bidx] + (1 - alpha) * zb
            zb_new = ops.clip(zbh + yb * inv_Rb, blo, bhi)
            yb = yb + Rb * (zbh - zb_new)
            zb = zb_new
        it += 1
        if it % check_every == 0 or it == max_iter:
            rp = ops.amax(Av - z)
            g = v - W + y @ A
            if nb:
                rp = ops.maximum(rp, ops.amax(v[:, bidx] - zb))
                g = ops.set_cols(g, bidx, g[:, bidx] + yb)
            rd = ops.amax(g)
            r = ops.maximum(rp, rd)
            todo = ~done
            ok = todo & (r <= eps)
            # unconverged instances keep their latest ADMM iterate as the answer
            merge(todo, v, y, yb, r)
            done = done | ok
            if polish and ops.any(~done & (r <= polish_gate * sc)):
                try_polish(~done & (r <= polish_gate * sc))
            finished = ops.all(done)

    if nb:  # bounds hold exactly
        v_out = ops.set_cols(v_out, bidx, ops.clip(v_out[:, bidx], blo, bhi))
    if ops.any(polished):  # warm state of polished instances: their exact (z, y)
        c = polished[:, None]
        z = ops.where(c, ops.clip(v_out @ AT, lo, hi), z)
        y = ops.where(c, lam_out, y)
        if nb:
            zb = ops.where(c, v_out[:, bidx], zb)
            yb = ops.where(c, mub_out, yb)
    rn = arr["row_norm"]
    lam = lam_out[:, :m_in] / rn[:m_in]
    nu = lam_out[:, m_in:] / rn[m_in:]
    mu_box = ops.set_cols(ops.zeros((N, n)), bidx, mub_out) if nb else ops.zeros((N, n))
    state = PolyhedralWarmStart(z=z, y=y, zb=zb, yb=yb, w=v_out, batch=batch, factor=factor)
    info = dict(converged=(res_out <= eps).reshape(batch), iterations=it, polished=polished.reshape(batch),
                residual=res_out.reshape(batch), eps=eps.reshape(batch), lam=lam.reshape(batch + (m_in,)),
                nu=nu.reshape(batch + (m_eq,)), mu_box=mu_box.reshape(batch + (n,)), warm=state)
    return v_out.reshape(batch + (n,)), info
