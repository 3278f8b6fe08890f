r"""Numerical building blocks of sparsity-constrained optimal transport (numpy and torch).

Notation (spec ``ot.md`` §2): ``a`` (m,), ``b`` (n,), cost ``C`` (m, n) with columns ``c_j``,
``gamma = reg > 0``, ``k = max_nz``. Column sparsity: the top-k runs over the row index ``i``.

* :func:`topk_l2_conjugate` -- :math:`\delta_k(s) = \frac{1}{2\gamma}\sum_{i \in \mathrm{top}_k(s)}
  [s_i]_+^2` and its gradient.
* :func:`topk_simplex_max` -- :math:`\max_{k,b}(s) = \sup_{t \in b\Delta, \|t\|_0 \le k}
  \langle s,t\rangle - \frac{\gamma}{2}\|t\|^2` and its maximiser ``b P_k(s/(gamma b))``.
* :func:`ksupport_sq`, :func:`relaxed_primal_value` -- the convex relaxation.
* :func:`semi_dual_kernel`, :func:`dual_kernel` -- the hot evaluations of ``S_k`` and ``D_k`` with
  their gradients and the plan in sparse form, on the transposed layout ``CT = C^T`` (n, m) so the
  top-k runs along the contiguous last axis (spec §3.1, §8).
* :func:`plan_to_dense`, :func:`plan_row_sums` -- sparse plan utilities.

Every function accepts an optional leading batch dimension (any number of leading axes), is
vectorised over columns and instances, never mutates its inputs, and returns numpy float64 for
numpy input and tensors on the input's device and dtype for torch input. Plain array operations
only: nothing here is meant to be differentiated by autograd (the layers supply their own
backward passes).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._backend import array_namespace, check_integer, infer_backend, is_torch
from .._errors import InvalidProblemError
from ..linalg.projections import _device, _scatter_add_last, _simplex_tau, _topk_desc

__all__ = [
    "dual_kernel", "ksupport_sq", "plan_row_sums", "plan_to_dense", "relaxed_primal_value",
    "semi_dual_kernel", "topk_l2_conjugate", "topk_simplex_max",
]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _check_reg(reg):
    if is_torch(reg) or hasattr(reg, "shape"):
        if math.prod(reg.shape) != 1:
            raise InvalidProblemError(f"reg: expected a scalar, got shape {tuple(reg.shape)}")
        reg = reg.item()
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real):
        raise InvalidProblemError(f"reg: expected a number, got {type(reg).__name__}")
    reg = float(reg)
    if not (math.isfinite(reg) and reg > 0):
        raise InvalidProblemError(f"reg: must be a finite number > 0, got {reg!r}")
    return reg


def _convert(names, *arrays):
    bk = infer_backend(*arrays, names=names)
    return [bk.asarray(x, name=n) for n, x in zip(names, arrays)]


def _check_axis(axis, ndim, name):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise InvalidProblemError(f"axis: expected an integer in [{-ndim}, {ndim}) for {name}, "
                                  f"got {axis!r}")
    return int(axis) % ndim


def _sparse_simplex_rows(X, b, k, reg, xp, overwrite=False):
    r"""Row-wise semi-dual conjugate of ``X`` (..., n, m): top-k along the last axis.

    ``b`` has shape broadcastable to ``X.shape[:-1]``. Returns ``(idx, t, value)``: the k-sparse
    maximisers in sparse form ``(..., n, k)`` and ``max_{k,b}`` per row ``(..., n)``.
    ``overwrite=True``: ``X`` is scratch (see :func:`_topk_desc`).
    """
    xk, idx = _topk_desc(X, k, overwrite=overwrite)
    bb = xp.broadcast_to(b, xk.shape[:-1])[..., None]
    # project in the x scale: tau = gamma b theta, so t = b [x/(gamma b) - theta]_+ = [x - tau]_+ / gamma
    tau = _simplex_tau(xk, reg * bb, xp)
    t = xp.clip(xk - tau, min=0.0) / reg
    # rescale so every column carries exactly b (to rounding): without it the sum is off by
    # ~ k eps |x| / gamma, i.e. 1e-13 for small gamma
    s = xp.sum(t, axis=-1, keepdims=True)
    t = t * xp.where(s > 0, bb / xp.where(s > 0, s, 1.0), 0.0)
    value = xp.sum(xk * t, axis=-1) - (0.5 * reg) * xp.sum(t * t, axis=-1)
    return idx, t, value


def _topk_l2_rows(X, k, reg, xp, overwrite=False):
    r"""Row-wise :math:`\delta_k` of ``X`` (..., n, m): returns ``(idx, grad values, value)``."""
    m = X.shape[-1]
    if k >= m:
        # no selection needed: all entries, in index order
        y = xp.clip(X, min=0.0)
        idx = xp.broadcast_to(xp.arange(m, dtype=xp.int64, device=_device(X)), X.shape)
        idx = xp.asarray(idx, copy=True)
    else:
        xk, idx = _topk_desc(X, k, overwrite=overwrite)
        y = xp.clip(xk, min=0.0)
    value = xp.sum(y * y, axis=-1) / (2.0 * reg)
    return idx, y / reg, value


def _work_buffer(work, shape, like, xp):
    """Validated scratch buffer for X (C-contiguous so top-k runs along contiguous memory)."""
    if work is None:
        return xp.empty(shape, dtype=like.dtype, device=_device(like))
    ok = tuple(work.shape) == tuple(shape) and work.dtype == like.dtype and (
        work.is_contiguous() if is_torch(work) else work.flags.c_contiguous)
    if not ok or is_torch(work) != is_torch(like) or (
            is_torch(work) and work.device != like.device):
        raise InvalidProblemError(
            f"work: expected a C-contiguous {like.dtype} buffer of shape {tuple(shape)} on the "
            f"inputs' backend/device, got shape {tuple(work.shape)} dtype {work.dtype}")
    return work


def _kernel_shapes(alpha, CT, a, b, beta=None):
    if CT.ndim < 2:
        raise InvalidProblemError(f"CT: expected shape (..., n, m), got {tuple(CT.shape)}")
    n, m = CT.shape[-2:]
    for name, x, size in (("alpha", alpha, m), ("a", a, m), ("b", b, n), ("beta", beta, n)):
        if x is not None and (x.ndim < 1 or x.shape[-1] != size):
            raise InvalidProblemError(
                f"{name}: expected last dimension {size} (CT has shape (..., n={n}, m={m})), "
                f"got shape {tuple(x.shape)}")
    return n, m


# ----------------------------------------------------------------------------------------------
# conjugates
# ----------------------------------------------------------------------------------------------

def topk_l2_conjugate(s, max_nz, reg, axis=0):
    r"""Conjugate of the k-sparse squared-L2 regulariser (dual formulation) and its gradient.

    Parameters
    ----------
    s : array_like or torch.Tensor
        Points; each 1-D slice along ``axis`` is one vector ``s`` (for OT: ``alpha + beta_j - c_j``,
        the slice axis is the row index ``i``).
    max_nz : int
        ``k >= 1``; ``k >= s.shape[axis]`` means no sparsity constraint.
    reg : float
        ``gamma > 0``.
    axis : int, default 0
        Slice axis.

    Returns
    -------
    value : ndarray or torch.Tensor
        :math:`\delta_k(s)` per slice; shape of ``s`` with ``axis`` removed.
    grad : ndarray or torch.Tensor
        Same shape as ``s``: :math:`[s_i]_+/\gamma` on the top-k entries, 0 elsewhere.

    Notes
    -----
    .. math::

        \delta_k(s) = \sup_{t \ge 0,\ \|t\|_0 \le k} \langle s,t\rangle - \tfrac{\gamma}{2}\|t\|^2
        = \frac{1}{2\gamma}\sum_{i \in \mathrm{top}_k(s)} [s_i]_+^2 ,

    maximised by :math:`t_i = [s_i]_+/\gamma` on :math:`\mathrm{top}_k(s)` (the gradient, by
    Danskin). At ties at rank ``k`` inside the positive part the gradient is one subgradient
    (numpy: lowest indices).
    """
    k = check_integer(max_nz, "max_nz", low=1)
    reg = _check_reg(reg)
    (s,) = _convert(["s"], s)
    xp = array_namespace(s)
    axis = _check_axis(axis, s.ndim, "s")
    X = xp.moveaxis(s, axis, -1)
    m = X.shape[-1]
    idx, g, value = _topk_l2_rows(X, k, reg, xp)
    grad = _scatter_add_last(idx, g, m)
    return value, xp.moveaxis(grad, -1, axis)


def topk_simplex_max(s, b, max_nz, reg, axis=0):
    r"""Semi-dual conjugate :math:`\max_{k,b}(s)` and its maximiser (the k-sparse plan column).

    Parameters
    ----------
    s : array_like or torch.Tensor
        Points; each 1-D slice along ``axis`` is one vector (for OT: ``alpha - c_j``).
    b : float or array_like
        Column mass per slice (> 0): scalar or broadcastable to ``s`` without ``axis``.
    max_nz : int
        ``k >= 1``.
    reg : float
        ``gamma > 0``.
    axis : int, default 0
        Slice axis.

    Returns
    -------
    value : ndarray or torch.Tensor
        :math:`\max_{k,b}(s)` per slice (``s`` without ``axis``).
    argmax : ndarray or torch.Tensor
        :math:`t^* = b\,P_k(s/(\gamma b))`, same shape as ``s`` (the gradient in ``s``); each slice
        sums to ``b`` and has at most ``k`` nonzeros.

    Notes
    -----
    .. math::

        \max_{k,b}(s) = \sup_{t \ge 0,\ \sum t = b,\ \|t\|_0 \le k}
        \langle s,t\rangle - \tfrac{\gamma}{2}\|t\|^2
        = \langle s,t^*\rangle - \tfrac{\gamma}{2}\|t^*\|^2 .

    ``P_k`` projects the ``k`` largest entries onto the simplex (Kyrillidis et al. 2013). For
    ``k = 1``: :math:`\max_{1,b}(s) = b\max_i s_i - \gamma b^2/2`. No ``b <= 0`` check is made
    here (hot path); ``b = 0`` gives value 0 and a zero maximiser.
    """
    k = check_integer(max_nz, "max_nz", low=1)
    reg = _check_reg(reg)
    s, b = _convert(["s", "b"], s, b)
    xp = array_namespace(s)
    axis = _check_axis(axis, s.ndim, "s")
    X = xp.moveaxis(s, axis, -1)
    m = X.shape[-1]
    try:
        b = xp.broadcast_to(b, X.shape[:-1])
    except (ValueError, RuntimeError):
        raise InvalidProblemError(f"b: shape {tuple(b.shape)} does not broadcast to the slice "
                                  f"shape {tuple(X.shape[:-1])}") from None
    idx, t, value = _sparse_simplex_rows(X, b, k, reg, xp)
    return value, xp.moveaxis(_scatter_add_last(idx, t, m), -1, axis)


# ----------------------------------------------------------------------------------------------
# convex relaxation
# ----------------------------------------------------------------------------------------------

def ksupport_sq(t, max_nz, axis=0):
    r"""Squared k-support norm :math:`\|t\|_{sp,k}^2` of every slice along ``axis``.

    Parameters
    ----------
    t : array_like or torch.Tensor
        Vectors (plan columns: slice axis = row index). Entries are used in absolute value (the
        norm is sign-invariant; plans are nonnegative anyway).
    max_nz : int
        ``k >= 1``; ``k >= t.shape[axis]`` gives the squared Euclidean norm.
    axis : int, default 0

    Returns
    -------
    ndarray or torch.Tensor
        Shape of ``t`` with ``axis`` removed.

    Notes
    -----
    Argyriou, Foygel, Srebro (NeurIPS 2012). With :math:`t_{(1)} \ge \dots \ge t_{(m)}` and
    :math:`t_{(0)} = \infty`, let :math:`r \in \{0, \dots, k-1\}` satisfy
    :math:`t_{(k-r-1)} > \frac{1}{r+1}\sum_{i \ge k-r} t_{(i)} \ge t_{(k-r)}`; then

    .. math::

        \|t\|_{sp,k}^2 = \sum_{i \le k-r-1} t_{(i)}^2 + \frac{1}{r+1}\Big(\sum_{i \ge k-r} t_{(i)}\Big)^2 .

    The left inequality holds for every ``r`` at or above the right one, so the smallest ``r``
    satisfying it is taken (robust to rounding; the expression is continuous across the
    boundaries). :math:`\tfrac12\|\cdot\|_{sp,k}^2` is the conjugate of half the sum of the ``k``
    largest squares; it equals :math:`\|t\|^2` for k-sparse ``t`` and :math:`\|t\|_1^2` for
    ``k = 1``.
    """
    k = check_integer(max_nz, "max_nz", low=1)
    (t,) = _convert(["t"], t)
    xp = array_namespace(t)
    axis = _check_axis(axis, t.ndim, "t")
    u = xp.moveaxis(xp.abs(t), axis, -1)
    m = u.shape[-1]
    if k >= m:
        return xp.sum(u * u, axis=-1)
    u = xp.sort(u, axis=-1, descending=True)
    # tail[p] = sum_{i >= p} u_i (0-based) by a reversed cumsum: no cancellation for tiny tails
    tail = xp.flip(xp.cumulative_sum(xp.flip(u, axis=-1), axis=-1), axis=-1)[..., :k]
    sq = u[..., :k] * u[..., :k]
    head = xp.cumulative_sum(sq, axis=-1) - sq  # exclusive: sum_{i < p} u_i^2
    # p = k - 1 - r is the 0-based start of the averaged tail; left(p): u_{p-1} (k - p) > tail_p
    p = xp.arange(k, dtype=xp.int64, device=_device(u))
    left = u[..., :k - 1] * xp.astype(k - p[1:], u.dtype) > tail[..., 1:]
    pstar = xp.max(xp.where(left, p[1:], xp.zeros_like(p[1:])), axis=-1, keepdims=True) \
        if k > 1 else xp.zeros(u.shape[:-1] + (1,), dtype=xp.int64, device=_device(u))
    cand = head + tail * tail / xp.astype(k - p, u.dtype)
    return xp.take_along_axis(cand, pstar, axis=-1)[..., 0]


def relaxed_primal_value(T, C, max_nz, reg):
    r"""Objective of the convex relaxation at a plan ``T``: :math:`\langle T,C\rangle +
    \frac{\gamma}{2}\sum_j \|t_j\|_{sp,k}^2`.

    Parameters
    ----------
    T, C : array_like or torch.Tensor
        Plan and cost, shape ``(..., m, n)``; the columns ``t_j`` are the k-sparse objects.
    max_nz : int
        ``k >= 1``.
    reg : float
        ``gamma > 0``.

    Returns
    -------
    ndarray or torch.Tensor
        Shape ``(...)``.

    Notes
    -----
    For ``T`` in ``U(a, b)`` this upper-bounds the optimal value ``P_k^* = max S_k = max D_k``
    (spec §2); for a k-sparse ``T`` it equals the primal objective
    :math:`\langle T,C\rangle + \frac{\gamma}{2}\|T\|_F^2`. No feasibility check is made.
    """
    reg = _check_reg(reg)
    T, C = _convert(["T", "C"], T, C)
    if T.ndim < 2:
        raise InvalidProblemError(f"T: expected shape (..., m, n), got {tuple(T.shape)}")
    xp = array_namespace(T)
    lin = xp.sum(xp.sum(T * C, axis=-1), axis=-1)
    return lin + (0.5 * reg) * xp.sum(ksupport_sq(T, max_nz, axis=-2), axis=-1)


# ----------------------------------------------------------------------------------------------
# hot kernels (transposed layout)
# ----------------------------------------------------------------------------------------------

def semi_dual_kernel(alpha, a, b, CT, max_nz, reg, *, work=None):
    r"""Semi-dual value, gradient and k-sparse plan at ``alpha`` (column sparsity).

    Parameters
    ----------
    alpha : array_like or torch.Tensor, shape (..., m)
        Row potentials.
    a : shape (..., m)
        Row marginal.
    b : shape (..., n)
        Column marginal (entries > 0; not checked here).
    CT : shape (..., n, m)
        Cost transposed, ``CT[..., j, i] = C[..., i, j]``, preferably C-contiguous. Leading
        dimensions broadcast (one ``CT`` may serve a batch of potentials).
    max_nz : int
        ``k >= 1``; ``k >= m`` is the unconstrained (QOT) case: the top-k is skipped.
    reg : float
        ``gamma > 0``.
    work : ndarray or torch.Tensor, optional
        Preallocated C-contiguous scratch buffer of the broadcast shape ``(..., n, m)`` and the
        inputs' dtype/device, used as scratch (its contents afterwards are unspecified); saves
        a large allocation per call (spec §8). Without it a fresh buffer is allocated.

    Returns
    -------
    S : shape (...)
        :math:`S_k(\alpha)`.
    grad : shape (..., m)
        :math:`\nabla S_k(\alpha) = a - T\mathbf 1`.
    idx : int64, shape (..., n, k)
        Row index of each stored plan entry of column ``j`` (``k = min(max_nz, m)``), ordered by
        decreasing ``alpha_i - c_ij``.
    val : shape (..., n, k)
        Plan values ``T[idx[j, l], j] = val[j, l]``: nonnegative (possibly zero), each column
        summing to ``b_j`` (rescaled to rounding).

    Notes
    -----
    .. math::

        S_k(\alpha) = \langle\alpha,a\rangle - \sum_j \max_{k,b_j}(\alpha - c_j),\qquad
        t_j = b_j P_k\big((\alpha - c_j)/(\gamma b_j)\big).

    Steps (spec §3.1): ``X = alpha 1^T - C`` as ``(n, m)``; one sorted top-k per row of ``X``;
    the simplex threshold by a cumulative sum over the ``k`` values; ``T 1`` by a scatter-add
    (numpy: ``np.bincount``). Work ``O(nm)`` + ``O(nk log k)``, memory one ``(n, m)`` buffer
    plus the top-k temporaries and ``O(nk)`` for the plan. The projection is not meant to be
    differentiated: the gradient is returned explicitly.

    Ties at rank ``k``: numpy keeps the lowest row indices; torch's choice is unspecified.
    """
    k = check_integer(max_nz, "max_nz", low=1)
    reg = _check_reg(reg)
    alpha, a, b, CT = _convert(["alpha", "a", "b", "CT"], alpha, a, b, CT)
    _, m = _kernel_shapes(alpha, CT, a, b)
    xp = array_namespace(CT)
    shape = np.broadcast_shapes(tuple(alpha.shape[:-1]) + (1, m), tuple(CT.shape))
    X = _work_buffer(work, shape, CT, xp)
    # written into a C-contiguous buffer: a plain ``alpha - CT`` may inherit a transposed
    # layout from CT, which makes the row-wise top-k stride through memory (10x slower)
    if is_torch(X):
        import torch

        torch.sub(alpha[..., None, :], CT, out=X)
    else:
        np.subtract(alpha[..., None, :], CT, out=X)
    idx, val, cmax = _sparse_simplex_rows(X, b, min(k, m), reg, xp, overwrite=True)
    S = xp.sum(alpha * a, axis=-1) - xp.sum(cmax, axis=-1)
    grad = a - plan_row_sums(idx, val, m)
    return S, grad, idx, val


def dual_kernel(alpha, beta, a, b, CT, max_nz, reg, *, work=None):
    r"""Dual value, gradients and plan at ``(alpha, beta)`` (column sparsity).

    Parameters
    ----------
    alpha : shape (..., m)
    beta : shape (..., n)
    a : shape (..., m)
    b : shape (..., n)
    CT : shape (..., n, m)
        Cost transposed (see :func:`semi_dual_kernel`).
    max_nz : int
        ``k >= 1``; ``k >= m`` skips the top-k.
    reg : float
        ``gamma > 0``.
    work : optional scratch buffer as in :func:`semi_dual_kernel`.

    Returns
    -------
    D : shape (...)
        :math:`D_k(\alpha, \beta)`.
    grad_alpha : shape (..., m)
        :math:`a - T\mathbf 1`.
    grad_beta : shape (..., n)
        :math:`b - T^\top\mathbf 1`.
    idx, val : shape (..., n, k)
        Plan in sparse form as in :func:`semi_dual_kernel` (``val >= 0``, possibly zero;
        columns do not sum to ``b`` away from the optimum).

    Notes
    -----
    .. math::

        D_k(\alpha,\beta) = \langle\alpha,a\rangle + \langle\beta,b\rangle
        - \sum_j \delta_k(\alpha + \beta_j\mathbf 1 - c_j),\qquad
        T_{:,j} = \nabla\delta_k(\alpha + \beta_j\mathbf 1 - c_j).

    :math:`D_k \le S_k` pointwise and :math:`S_k(\alpha) = \max_\beta D_k(\alpha,\beta)`
    (spec §2).
    """
    k = check_integer(max_nz, "max_nz", low=1)
    reg = _check_reg(reg)
    alpha, beta, a, b, CT = _convert(["alpha", "beta", "a", "b", "CT"], alpha, beta, a, b, CT)
    n, m = _kernel_shapes(alpha, CT, a, b, beta)
    xp = array_namespace(CT)
    shape = np.broadcast_shapes(tuple(alpha.shape[:-1]) + (1, m),
                                tuple(beta.shape[:-1]) + (n, 1), tuple(CT.shape))
    X = _work_buffer(work, shape, CT, xp)
    if is_torch(X):
        import torch

        torch.sub(alpha[..., None, :], CT, out=X)
    else:
        np.subtract(alpha[..., None, :], CT, out=X)
    X += beta[..., :, None]  # in place on our own buffer
    idx, val, delta = _topk_l2_rows(X, min(k, m), reg, xp, overwrite=True)
    D = xp.sum(alpha * a, axis=-1) + xp.sum(beta * b, axis=-1) - xp.sum(delta, axis=-1)
    grad_alpha = a - plan_row_sums(idx, val, m)
    grad_beta = b - xp.sum(val, axis=-1)
    return D, grad_alpha, grad_beta, idx, val


# ----------------------------------------------------------------------------------------------
# sparse plan utilities
# ----------------------------------------------------------------------------------------------

def plan_to_dense(idx, val, m):
    """Dense plan ``(..., m, n)`` (the layout of ``C``) from the sparse ``(..., n, k)`` form.

    Parameters
    ----------
    idx : int array, shape (..., n, k)
        Row indices per column (as returned by the kernels).
    val : shape (..., n, k)
        Values; repeated indices within a column accumulate.
    m : int
        Number of rows.

    Returns
    -------
    ndarray or torch.Tensor, shape (..., m, n), C-contiguous.
    """
    m = check_integer(m, "m", low=1)
    dense_t = _scatter_add_last(idx, val, m)  # (..., n, m)
    if is_torch(dense_t):
        return dense_t.transpose(-1, -2).contiguous()
    return np.ascontiguousarray(np.swapaxes(dense_t, -1, -2))


def plan_row_sums(idx, val, m):
    """Row sums ``T 1`` (shape ``(..., m)``) of a plan in sparse form ``(..., n, k)``.

    One scatter-add over the ``n k`` stored entries (numpy: ``np.bincount`` with weights on
    flattened indices, offset per batch instance).
    """
    m = check_integer(m, "m", low=1)
    shp = tuple(idx.shape[:-2]) + (idx.shape[-2] * idx.shape[-1],)
    if is_torch(val):
        val = val.expand(idx.shape)
    else:
        val = np.broadcast_to(val, idx.shape)
    return _scatter_add_last(idx.reshape(shp), val.reshape(shp), m)
