"""Euclidean projections onto the simplex and its k-sparse subset (numpy and torch).

One implementation serves both backends: numpy in -> float64 numpy out, torch in -> torch out on the
same device and dtype. Every function is vectorised over all slices (no Python loop over slices)
and never mutates its inputs.

The private helpers below (``_topk_desc``, ``_simplex_tau``, ``_scatter_add_last``) are the shared
backend shims for the operations the array API lacks (top-k with indices, scatter-add); the
sparsity-constrained OT kernels (:mod:`optkit.ot._kernels`) reuse them.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._backend import array_namespace, check_finite, check_integer, infer_backend, is_torch
from .._errors import InvalidProblemError

__all__ = ["projection_simplex", "projection_sparse_simplex"]


# ----------------------------------------------------------------------------------------------
# backend shims (operations the array API does not provide)
# ----------------------------------------------------------------------------------------------

def _device(x):
    return x.device if is_torch(x) else None


#: numpy: up to this k, k passes of argmax (~6 ms each on 25e6 float64) beat one argpartition
#: (~50 ms plus a tie-check pass) and break ties by lowest index for free
_ARGMAX_TOPK_MAX = 8


def _topk_desc(X, k, overwrite=False):
    """The ``k`` largest entries along the last axis, sorted descending, and their indices.

    ``k >= X.shape[-1]`` sorts the whole axis (no selection). numpy breaks ties at rank ``k`` in
    favour of the lowest index, and orders equal selected values by increasing index, so the
    result is deterministic and permutation-consistent; ``torch.topk`` gives no such guarantee
    (in particular on CUDA), so callers must compare values, not indices, across backends.
    Indices are int64 on both backends. ``overwrite=True`` lets numpy use ``X`` as scratch
    (its selected entries are set to ``-inf``); otherwise ``X`` is left untouched. ``X`` must be
    finite.
    """
    m = X.shape[-1]
    if is_torch(X):
        import torch

        if k >= m:
            return torch.sort(X, dim=-1, descending=True, stable=True)
        return torch.topk(X, k, dim=-1, largest=True, sorted=True)
    if k >= m:
        # stable sort of -X: equal values keep increasing index order
        idx = np.argsort(-X, axis=-1, kind="stable")
        return np.take_along_axis(X, idx, axis=-1), idx.astype(np.int64, copy=False)
    if k <= _ARGMAX_TOPK_MAX:
        batch = X.shape[:-1]
        Xf = X.reshape(-1, m)  # a copy when X is not contiguous: then nothing is overwritten
        if not overwrite and np.may_share_memory(Xf, X):
            Xf = Xf.copy()
        rows = np.arange(Xf.shape[0])
        idx = np.empty((Xf.shape[0], k), dtype=np.int64)
        vals = np.empty((Xf.shape[0], k), dtype=X.dtype)
        for r in range(k):  # k rank passes, each vectorised over every row
            j = np.argmax(Xf, axis=-1)  # first maximum: lowest index among ties
            idx[:, r] = j
            vals[:, r] = Xf[rows, j]
            Xf[rows, j] = -np.inf
        return vals.reshape(batch + (k,)), idx.reshape(batch + (k,))
    part = np.argpartition(X, m - k, axis=-1)
    sel = np.ascontiguousarray(part[..., m - k:])
    del part  # an (.., m) int64 array: release it before the next full pass over X
    kth = np.take_along_axis(X, sel[..., :1], axis=-1)  # the k-th largest value
    # argpartition picks an arbitrary subset of the entries tied with the k-th largest; repair
    # only the slices where such a tie crosses the boundary (rare for continuous data)
    amb = np.count_nonzero(X >= kth, axis=-1) > k
    if amb.any():
        Xa, ka = X[amb], kth[amb]
        gt, eq = Xa > ka, Xa == ka
        need = k - np.count_nonzero(gt, axis=-1)[:, None]
        keep = gt | (eq & (np.cumsum(eq, axis=-1) <= need))
        # np.nonzero is row-major: exactly k ascending column indices per row
        sel[amb] = np.nonzero(keep)[1].reshape(-1, k)
    sel = np.sort(sel, axis=-1)
    vals = np.take_along_axis(X, sel, axis=-1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return np.take_along_axis(vals, order, axis=-1), np.take_along_axis(sel, order, axis=-1).astype(
        np.int64, copy=False)


def _scatter_add_last(idx, val, m):
    """Dense ``(..., m)`` array with ``val`` added at ``idx`` along the last axis.

    ``idx`` and ``val`` have the same shape ``(..., K)``; duplicate indices accumulate. numpy
    uses one ``np.bincount`` on indices offset per slice (``np.add.at`` is an order of
    magnitude slower); torch uses ``scatter_add_``.
    """
    batch = tuple(idx.shape[:-1])
    if is_torch(idx):
        import torch

        out = torch.zeros(batch + (m,), dtype=val.dtype, device=val.device)
        return out.scatter_add_(-1, idx, val.expand(idx.shape))
    nb = math.prod(batch)
    K = idx.shape[-1]
    flat = idx.reshape(nb, K)
    if nb > 1:
        flat = flat + (np.arange(nb, dtype=np.int64) * m)[:, None]
    w = np.broadcast_to(val, idx.shape).reshape(-1)
    out = np.bincount(flat.reshape(-1), weights=w, minlength=nb * m)
    return out.reshape(batch + (m,))


def _simplex_tau(u, z, xp):
    """Threshold ``tau`` with ``sum_i [u_i - tau]_+ = z`` for ``u`` sorted descending (last axis).

    ``z`` has shape ``(..., 1)`` (positive). ``rho = max{r: u_r - (sum_{q<=r} u_q - z)/r > 0}``
    and ``tau = (sum_{q<=rho} u_q - z)/rho``; the condition holds exactly on a prefix, so ``rho``
    is counted rather than searched. Returns shape ``(..., 1)``.
    """
    k = u.shape[-1]
    css = xp.cumulative_sum(u, axis=-1) - z
    r = xp.arange(1, k + 1, dtype=u.dtype, device=_device(u))
    # u_r r > css_r  <=>  u_r - css_r / r > 0, without a division per entry
    rho = xp.sum(xp.astype(u * r > css, xp.int64), axis=-1, keepdims=True)
    # r = 1 always qualifies in exact arithmetic (u_1 - (u_1 - z) = z > 0); rounding can lose it
    # when |u_1| >> z
    rho = xp.clip(rho, min=1)
    return xp.take_along_axis(css, rho - 1, axis=-1) / xp.astype(rho, u.dtype)


# ----------------------------------------------------------------------------------------------
# public projections
# ----------------------------------------------------------------------------------------------

def _prepare(v, z, axis, name="v"):
    """Backend conversion, validation, axis moved last; returns (v, z[..., None], xp, axis)."""
    bk = infer_backend(v, z if not isinstance(z, numbers.Real) else None, names=[name, "z"])
    v = bk.asarray(v, name=name)
    if v.ndim == 0:
        raise InvalidProblemError(f"{name}: expected at least 1 dimension, got a scalar")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -v.ndim <= axis < v.ndim:
        raise InvalidProblemError(f"axis: expected an integer in [{-v.ndim}, {v.ndim}), got {axis!r}")
    axis = int(axis) % v.ndim
    if v.shape[axis] == 0:
        raise InvalidProblemError(f"{name}: the projection axis {axis} is empty")
    check_finite(v, name)
    xp = array_namespace(v)
    v = xp.moveaxis(v, axis, -1)
    red = tuple(v.shape[:-1])
    if isinstance(z, numbers.Real) and not isinstance(z, bool):
        if not (math.isfinite(z) and z > 0):
            raise InvalidProblemError(f"z: must be a finite number > 0, got {z!r}")
        zz = xp.full(red + (1,), float(z), dtype=v.dtype, device=_device(v))
    else:
        zz = bk.asarray(z, name="z")
        check_finite(zz, "z")
        if bool(xp.any(zz <= 0)):
            raise InvalidProblemError("z: every entry must be > 0")
        try:
            zz = xp.broadcast_to(zz, red)
        except (ValueError, RuntimeError):
            raise InvalidProblemError(
                f"z: shape {tuple(zz.shape)} does not broadcast to the slice shape {red}") from None
        zz = zz[..., None]
    return v, zz, xp, axis


def projection_simplex(v, z=1.0, axis=-1):
    r"""Euclidean projection of every slice of ``v`` onto the simplex ``{p >= 0, sum p = z}``.

    Parameters
    ----------
    v : array_like or torch.Tensor
        Points to project; every 1-D slice along ``axis`` is projected independently.
    z : float or array_like, default 1.0
        Mass of the simplex (> 0): a scalar, or one value per slice (an array broadcastable to
        ``v``'s shape with ``axis`` removed).
    axis : int, default -1
        Axis along which the slices lie.

    Returns
    -------
    p : ndarray or torch.Tensor
        Same shape as ``v``; numpy float64 for numpy input, same device and dtype for torch input.

    Raises
    ------
    InvalidProblemError
        Non-finite ``v`` or ``z``, ``z <= 0``, an empty axis, or a bad ``axis``.

    Notes
    -----
    With ``u`` the slice sorted decreasingly (Held, Wolfe, Crowder 1974; Duchi et al. 2008):

    .. math::

        \rho = \max\{r : u_r - \tfrac{1}{r}(\textstyle\sum_{q \le r} u_q - z) > 0\},\quad
        \theta = \tfrac{1}{\rho}(\textstyle\sum_{q \le \rho} u_q - z),\quad p = [v - \theta]_+ .

    Cost ``O(m log m)`` per slice (one sort). The input is never modified.
    """
    v, zz, xp, axis = _prepare(v, z, axis)
    u = xp.sort(v, axis=-1, descending=True)
    tau = _simplex_tau(u, zz, xp)
    p = xp.clip(v - tau, min=0.0)
    return xp.moveaxis(p, -1, axis)


def projection_sparse_simplex(v, max_nz, z=1.0, axis=-1):
    r"""k-sparse simplex projection ``P_k``: nearest point of ``{p in z Delta, ||p||_0 <= k}``.

    Keeps the ``k = max_nz`` largest entries of each slice, projects them onto the simplex of
    mass ``z`` and sets every other entry to zero (Kyrillidis, Becker, Cevher, Krause, ICML 2013,
    "Sparse projections onto the simplex"). ``max_nz >= v.shape[axis]`` is the plain simplex
    projection.

    Parameters
    ----------
    v : array_like or torch.Tensor
        Points to project; every 1-D slice along ``axis`` is projected independently.
    max_nz : int
        Maximum number of nonzeros per slice (``>= 1``; an ``int`` or numpy integer, not bool or
        float).
    z : float or array_like, default 1.0
        Mass (> 0): scalar or one value per slice (broadcastable to ``v`` without ``axis``).
    axis : int, default -1
        Axis along which the slices lie.

    Returns
    -------
    p : ndarray or torch.Tensor
        Same shape as ``v``, at most ``max_nz`` nonzeros per slice, each slice summing to ``z``.

    Raises
    ------
    InvalidProblemError
        Bad ``max_nz``, non-finite ``v`` or ``z``, ``z <= 0``, an empty axis, or a bad ``axis``.

    Notes
    -----
    With ``S`` the indices of the ``k`` largest entries of ``v``,
    :math:`P_k(v)_S = \mathrm{proj}_{z\Delta}(v_S)` and :math:`P_k(v)_{S^c} = 0`; this maximises
    :math:`\langle v, p\rangle - \tfrac12\|p\|^2` over k-sparse points of the simplex.

    Ties at rank ``k`` make ``S`` (and hence ``P_k``) non-unique; the objective value is the same
    for every choice. numpy picks the lowest indices (deterministic). torch uses
    ``torch.topk``, whose choice among tied entries is unspecified (notably on CUDA): compare
    values, not supports, across backends. One partial selection (``O(m)``) plus a sort of ``k``
    values per slice. The input is never modified.
    """
    k = check_integer(max_nz, "max_nz", low=1)
    v, zz, xp, axis = _prepare(v, z, axis)
    m = v.shape[-1]
    if k >= m:
        u = xp.sort(v, axis=-1, descending=True)
        p = xp.clip(v - _simplex_tau(u, zz, xp), min=0.0)
        return xp.moveaxis(p, -1, axis)
    vk, idx = _topk_desc(v, k)
    pk = xp.clip(vk - _simplex_tau(vk, zz, xp), min=0.0)
    p = _scatter_add_last(idx, pk, m)
    return xp.moveaxis(p, -1, axis)
