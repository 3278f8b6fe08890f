r"""Differentiable sparsity-constrained OT layers and the k-sparse OT MoE router (torch).

* :func:`sparse_ot_value` -- the optimal value :math:`V(a, b, C) = \max_\alpha S_k(\alpha)`
  (= the optimum of the k-support relaxation), differentiated by the envelope theorem.
* :func:`sparse_ot_plan` -- the k-sparse optimal plan :math:`T^*(a, b, C)`, differentiated
  implicitly on its k-sparse support (spec ``ot.md`` §3.8), or by unrolling Adam.
* :class:`SparseOT` -- ``nn.Module`` wrapper of both, with optional warm starts.
* :class:`KSparseOTRouter` -- the mixture-of-experts router of Liu, Puigcerver & Blondel
  (ICLR 2023; V-MoE ``ksparse_projection_routing``) with a converged solver by default.

The forward passes call :func:`optkit.ot.sparse_ot` under ``torch.no_grad`` (one batched call for
``(B, m, n)`` costs); the backward passes are written out explicitly (``O(nk)`` work on the
k-sparse support plus one Laplacian solve). Importing this module imports torch.

Gradient semantics (spec §3.8)
------------------------------
Value layer (``diff_mode="envelope"``):

* ``dV/dC`` = the relaxed optimal plan: the plan itself in the smooth regime, the tie-LP plan
  (``relaxed_plan``) at a certified kink, the EMD/LP plan for ``k = 1``. The value layer runs
  the solver with ``certify=True`` (the tie LP runs on CPU copies) and, for ``k = 1`` with
  ``method="auto"`` and ``m n <= 250,000``, the exact transport LP on CPU copies.
* ``dV/da = alpha*``, ``dV/db = beta*`` (``beta_j = -lambda_j``), each centered: they are the
  gradients for mass-preserving perturbations (POT ``emd2`` does the same).
* regime ``"unknown"`` (stalled, uncertified kink): the k-sparse plan is used as a surrogate
  ``dV/dC`` with a :class:`SurrogateGradientWarning`, or ``RuntimeError`` if ``strict=True``.

Plan layer (``diff_mode="implicit"``): with ``S_j`` the support of column ``j``, ``s_j = |S_j|``,
``P_j v = v - mean_{S_j} v`` on ``S_j`` (0 elsewhere), ``J_j = P_j / gamma`` and the upstream
gradient ``G`` (columns ``g_j``)::

    r = sum_j J_j g_j;  H_N w = r  (minimum norm, H_N = (1/gamma) sum_j diag(u_j) - u_j u_j^T/s_j)
    dL/dc_j = J_j (w - g_j);  dL/da = w;  dL/db_j = mean_{S_j}(g_j - w).

This is exact in the smooth regime. The ``(a, b)`` gradients are meaningful for balanced
perturbations (``sum da = sum db``); their component along ``(1_m, -1_n)`` is arbitrary.
Special cases:

* forest support (``nnz = m + n - #components`` of the bipartite support graph, marginals met):
  ``T*`` depends on ``(a, b)`` only and ``dL/dC`` is returned as exact zeros.
* ``k = 1``: every ``J_j = 0``, so ``dL/dC = 0`` (as for EMD plans; the plan is piecewise
  constant in ``C``); learn through the value layer or through surrogate combine weights (as
  V-MoE does). No warning is issued for this documented zero.
* kink (certified or not) or unconverged: the same formula on the current support is a
  straight-through surrogate: :class:`SurrogateGradientWarning`, ``RuntimeError`` if ``strict``.

``diff_mode="unroll"`` (``method="adam"`` only) runs the fixed-iteration Adam solver of spec
§3.6 with autograd enabled, through a differentiable re-implementation of the semi-dual kernel
(top-k selection and simplex threshold treated as piecewise constant), and differentiates
through the iterations. ``diff_mode="none"`` returns detached outputs.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from .._backend import get_torch
from .._errors import InvalidProblemError
from .._result import Status
from .sparse_ot import KSparsePlan, sparse_ot

torch = get_torch()
nn = torch.nn

__all__ = [
    "KSparseOTRouter",
    "RouterOutput",
    "SparseOT",
    "SurrogateGradientWarning",
    "compute_capacity",
    "sparse_ot_plan",
    "sparse_ot_value",
]

#: regime codes carried through autograd
_SMOOTH, _KINK, _UNKNOWN = 0, 1, 2
_REGIME_CODE = {"smooth": _SMOOTH, "kink": _KINK, "unknown": _UNKNOWN}

#: Laplacian solves with m up to this size (and a moderate support) use a dense pseudo-inverse
_DENSE_MAX = 512
_DENSE_ENTRIES_MAX = 50_000_000  # B n m entries of the dense support indicator
#: relative residual of the Laplacian solve above which backward raises
_SOLVE_RTOL = 1e-6

_PLAN_DIFF_MODES = ("implicit", "unroll", "none")
_VALUE_DIFF_MODES = ("envelope", "unroll", "none")
_FORBIDDEN_OPTS = ("axis", "plan_format", "device", "dtype", "max_nz", "reg")


class SurrogateGradientWarning(UserWarning):
    """Backward used a straight-through surrogate (kink or unconverged solve), not the gradient."""


_SURROGATE_MSG = {
    "plan": ("sparse_ot_plan backward: the solve did not end in the smooth regime (kink or "
             "unconverged); the implicit formula on the current k-sparse support is a "
             "straight-through surrogate, not the gradient (pass strict=True to raise)"),
    "value": ("sparse_ot_value backward: regime 'unknown' (stalled or uncertified kink); the "
              "k-sparse plan is used as a surrogate for dV/dC (pass strict=True to raise, or "
              "certify=True / a tighter solve)"),
}


def _surrogate(kind, strict):
    if strict:
        raise RuntimeError(_SURROGATE_MSG[kind].replace(" (pass strict=True to raise)", "")
                           + "; strict=True forbids surrogate gradients")
    # constant message and location: Python's default filter shows it once
    warnings.warn(_SURROGATE_MSG[kind], SurrogateGradientWarning, stacklevel=2)


# ----------------------------------------------------------------------------------------------
# configuration and the solver call


@dataclasses.dataclass(eq=False)
class _Config:
    k: int
    reg: float
    opts: dict
    strict: bool
    kind: str  # "plan" | "value"
    batched: bool  # the caller's C was 3-D
    stash: dict


@dataclasses.dataclass
class _Solution:
    plan: Any  # (B, m, n) k-sparse plan
    idx: Any  # (B, n, kk)
    val: Any  # (B, n, kk)
    alpha: Any  # (B, m)
    beta: Any  # (B, n)
    fun: Any  # (B,)
    regimes: list
    statuses: list
    relaxed: list  # per instance (m, n) tensor or None
    result: Any


def _check_common(max_nz, reg, opts, diff_mode, modes):
    if diff_mode not in modes:
        raise InvalidProblemError(f"diff_mode: expected one of {modes}, got {diff_mode!r}")
    if isinstance(max_nz, bool) or not isinstance(max_nz, (int, np.integer)) or max_nz < 1:
        raise InvalidProblemError(f"max_nz: expected an integer >= 1, got {max_nz!r}")
    if isinstance(reg, bool) or not isinstance(reg, (int, float, np.floating)) or not (
            math.isfinite(float(reg)) and float(reg) > 0):
        raise InvalidProblemError(f"reg: expected a finite number > 0, got {reg!r}")
    for key in _FORBIDDEN_OPTS:
        if key in opts:
            raise InvalidProblemError(
                f"{key}: not accepted by the torch layers (axis is a named argument; the layers "
                "keep the plan dense and follow C's device and dtype)")
    if diff_mode == "unroll" and opts.get("method", "auto") != "adam":
        raise InvalidProblemError("diff_mode='unroll' needs method='adam' (the only fixed-iteration "
                                  "solver); use diff_mode='implicit' for the converged solvers")


def _as_tensor(x, like, name):
    if x is None:
        return None
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x), dtype=like.dtype, device=like.device)
    if not x.is_floating_point():
        raise InvalidProblemError(f"{name}: expected a floating tensor, got {x.dtype}")
    return x


def _inputs(C, a, b):
    """Validate shapes; return (C3 (B,m,n), a2 (B,m), b2 (B,n), batched) keeping autograd links."""
    if not isinstance(C, torch.Tensor):
        raise InvalidProblemError(f"C: the torch layers expect a tensor, got {type(C).__name__}")
    if not C.is_floating_point():
        raise InvalidProblemError(f"C: expected a floating tensor, got {C.dtype}")
    if C.ndim not in (2, 3):
        raise InvalidProblemError(f"C: expected shape (m, n) or (B, m, n), got {tuple(C.shape)}")
    batched = C.ndim == 3
    C3 = C if batched else C.unsqueeze(0)
    B, m, n = C3.shape
    out = []
    for name, v, size in (("a", a, m), ("b", b, n)):
        v = _as_tensor(v, C, name)
        if v is None:
            v = torch.full((B, size), 1.0 / size, dtype=C.dtype, device=C.device)
        elif v.ndim == 1 and v.shape[0] == size:
            v = v.unsqueeze(0).expand(B, size)
        elif not (batched and v.ndim == 2 and tuple(v.shape) == (B, size)):
            exp = f"({size},)" + (f" or ({B}, {size})" if batched else "")
            raise InvalidProblemError(f"{name}: expected shape {exp}, got {tuple(v.shape)}")
        out.append(v)
    return C3, out[0], out[1], batched


def _to_torch(x, like):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.to(device=like.device, dtype=like.dtype if x.is_floating_point() else x.dtype)
    arr = np.asarray(x)
    dtype = like.dtype if np.issubdtype(arr.dtype, np.floating) else torch.int64
    return torch.as_tensor(arr, device=like.device).to(dtype)


def _support_from_dense(T, k):
    """(idx, val) of shape (B, n, kk) from a dense (B, m, n) plan with <= k nonzeros per column."""
    kk = min(k, T.shape[-2])
    val, idx = torch.topk(T.transpose(-1, -2), kk, dim=-1)
    return idx, val


def _solve(C3, a2, b2, cfg: _Config) -> _Solution:
    """One (batched) sparse_ot call on detached inputs; results normalised to a batch axis."""
    B, m, n = C3.shape
    opts = dict(cfg.opts)
    k_eff = min(cfg.k, m)
    method = opts.get("method", "auto")
    use_lp = (cfg.kind == "value" and k_eff == 1 and method == "auto" and m * n <= 250_000)
    if cfg.kind == "value":
        opts.setdefault("certify", True)
    x0 = opts.pop("x0", None)
    with torch.no_grad():
        Cd, ad, bd = C3.detach(), a2.detach(), b2.detach()
        if use_lp:
            # k = 1: the exact transport LP on CPU copies (spec §3.4); relaxed_plan = LP plan
            conv = lambda t: t.cpu().numpy().astype(np.float64)
            opts.pop("certify", None)
            args = (conv(ad), conv(bd), conv(Cd)) if cfg.batched else (conv(ad[0]), conv(bd[0]),
                                                                       conv(Cd[0]))
            res = sparse_ot(*args, max_nz=cfg.k, reg=cfg.reg, axis="columns", plan_format="ksparse",
                            **{**opts, "method": "auto"})
        else:
            if x0 is not None:
                x0 = _to_torch(x0, Cd)
            args = (ad, bd, Cd) if cfg.batched else (ad[0], bd[0], Cd[0])
            res = sparse_ot(*args, max_nz=cfg.k, reg=cfg.reg, axis="columns", plan_format="ksparse",
                            x0=x0, **opts)
    like = C3
    if cfg.batched:
        plan = res.plan
        alpha, beta = res.potentials
        fun = _to_torch(res.fun, like)
        regimes = list(res.regime)
        statuses = [int(s) for s in np.asarray(
            res.statuses.cpu() if isinstance(res.statuses, torch.Tensor) else res.statuses).ravel()]
        relaxed = [_to_torch(r, like) for r in res.relaxed_plan]
    else:
        plan = res.plan
        alpha, beta = res.potentials
        alpha, beta = alpha[None], beta[None]
        fun = torch.tensor([res.fun], dtype=like.dtype, device=like.device)
        regimes = [res.regime]
        statuses = [int(res.status)]
        relaxed = [_to_torch(res.relaxed_plan, like)]
        if isinstance(plan, KSparsePlan):
            plan = KSparsePlan(plan.indices[None], plan.values[None], (1,) + tuple(plan.shape))
        else:
            plan = plan[None]
    if isinstance(plan, KSparsePlan):
        idx = _to_torch(plan.indices, like).to(torch.int64)
        val = _to_torch(plan.values, like)
        dense = torch.zeros((B, n, m), dtype=like.dtype, device=like.device).scatter_add_(
            2, idx, val).transpose(-1, -2).contiguous()
    else:  # zero-marginal path of the solver returns dense plans
        dense = _to_torch(plan, like)
        idx, val = _support_from_dense(dense, cfg.k)
    return _Solution(plan=dense, idx=idx, val=val, alpha=_to_torch(alpha, like),
                     beta=_to_torch(beta, like), fun=fun.reshape(B), regimes=regimes,
                     statuses=statuses, relaxed=relaxed, result=res)


def _regime_tensor(sol, like):
    return torch.tensor([_REGIME_CODE.get(r, _UNKNOWN) for r in sol.regimes], dtype=torch.int64,
                        device=like.device)


# ----------------------------------------------------------------------------------------------
# backward helpers (spec §3.8)


def _components(idx, mask, m, n):
    """Connected components of each instance's bipartite support graph (rows 0..m-1, columns m..).

    Returns ``(row_labels, forest)``: ``row_labels`` (B, m) int64 tensor (labels unique across the
    batch) and ``forest`` (B,) bool tensor: ``nnz == m + n - #components``. One scipy call on the
    host (``O(B n k)`` data).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    B = idx.shape[0]
    idx_h = idx.detach().cpu().numpy()
    mask_h = mask.detach().cpu().numpy()
    bi, ji, li = np.nonzero(mask_h)
    N = m + n
    rows = bi * N + idx_h[bi, ji, li]
    cols = bi * N + m + ji
    graph = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(B * N, B * N))
    _, labels = connected_components(graph, directed=False)
    labels = labels.reshape(B, N)
    lab = np.sort(labels, axis=1)
    comps = 1 + np.count_nonzero(np.diff(lab, axis=1), axis=1)
    nnz = mask_h.reshape(B, -1).sum(axis=1)
    return (torch.as_tensor(labels[:, :m].astype(np.int64), device=idx.device),
            torch.as_tensor(nnz == N - comps, device=idx.device))


def _support_stats(idx, val):
    mask = val > 0
    cnt = mask.sum(-1)  # (B, n)
    safe = cnt.clamp(min=1).to(val.dtype)
    return mask, cnt, safe


def _center_on_support(vs, mask, safe):
    """P_j applied to gathered values vs (B, n, kk): v - mean_{S_j} v on S_j, 0 elsewhere."""
    mean = torch.where(mask, vs, 0.0).sum(-1) / safe
    return torch.where(mask, vs - mean[..., None], 0.0), mean


def _scatter_rows(idx, vals, m):
    B = idx.shape[0]
    out = torch.zeros((B, m), dtype=vals.dtype, device=vals.device)
    return out.scatter_add_(1, idx.reshape(B, -1), vals.reshape(B, -1))


def _laplacian_solve(idx, mask, safe, r, reg, m, row_labels):
    """Minimum-norm solution of H_N w = r, H_N = (1/gamma) sum_j diag(u_j) - u_j u_j^T / s_j.

    ``r`` sums to zero on every connected component of the support (it is in the range of
    H_N). Dense path (m <= 512): Cholesky of ``H_N + (1/gamma) sum_c 1_c 1_c^T / |c|`` (the
    components' indicators span the null space, so the solution is the minimum-norm one), in
    float64. Otherwise batched MINRES from zero (minimum-norm on consistent singular systems).
    """
    B, n, _kk = idx.shape
    out_dtype = r.dtype
    rtol = max(_SOLVE_RTOL, 1e3 * torch.finfo(out_dtype).eps)
    if m <= _DENSE_MAX and B * n * m <= _DENSE_ENTRIES_MAX:
        dtype = torch.float64
        r = r.to(dtype)
        mf = mask.to(dtype)
        # U[j] = u_j / sqrt(s_j) as a dense (B, n, m) array: H_N = (diag(deg) - U^T U) / gamma
        U = torch.zeros((B, n, m), dtype=dtype, device=r.device).scatter_(
            2, idx, mf / torch.sqrt(safe.to(dtype))[..., None])
        deg = _scatter_rows(idx, mf, m)
        H = (torch.diag_embed(deg) - U.transpose(-1, -2) @ U) / reg
        same = (row_labels[:, :, None] == row_labels[:, None, :]).to(dtype)
        size = same.sum(-1, keepdim=True)
        A = H + same / (size * reg)
        L, info = torch.linalg.cholesky_ex(A)
        if bool((info != 0).any()):
            w = (torch.linalg.pinv(H, hermitian=True) @ r.unsqueeze(-1)).squeeze(-1)
        else:
            w = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
        resid = torch.linalg.vector_norm((H @ w.unsqueeze(-1)).squeeze(-1) - r, dim=-1)
    else:
        from ..linalg import minres

        def matvec(v):
            vs = torch.gather(v.unsqueeze(1).expand(B, n, m), 2, idx)
            cen, _ = _center_on_support(vs, mask, safe)
            return _scatter_rows(idx, cen / reg, m)

        w, info = minres(matvec, r, rtol=max(1e-12, 10 * torch.finfo(out_dtype).eps),
                         maxiter=max(200, 4 * m))
        resid = info["residual"]
    rn = torch.linalg.vector_norm(r, dim=-1)
    tiny = torch.finfo(rn.dtype).tiny
    bad = ~torch.isfinite(w).all(-1) | (resid > rtol * torch.clamp(rn, min=tiny))
    if bool(bad.any()):
        raise RuntimeError(
            "sparse_ot_plan backward: the support Laplacian solve H_N w = r failed "
            f"(relative residual {float((resid / torch.clamp(rn, min=tiny)).max()):.2e}); "
            "no gradient returned")
    return w.to(out_dtype)


def _plan_vjp(gT, idx, val, reg, m, need_C, need_a, need_b, forest, row_labels, k_one):
    """Implicit VJP of the k-sparse plan (spec §3.8); gT (B, m, n)."""
    B, n, _kk = idx.shape
    mask, cnt, safe = _support_stats(idx, val)
    GT = gT.transpose(-1, -2)  # (B, n, m)
    gs = torch.gather(GT, 2, idx)  # (B, n, kk)
    Pg, mean_g = _center_on_support(gs, mask, safe)
    if k_one:
        w = torch.zeros((B, m), dtype=gT.dtype, device=gT.device)
    elif need_a or need_b or (need_C and not bool(forest.all())):
        r = _scatter_rows(idx, Pg / reg, m)
        w = _laplacian_solve(idx, mask, safe, r, reg, m, row_labels)
    else:
        w = None
    grad_C = grad_a = grad_b = None
    if need_C:
        if k_one or w is None:
            grad_C = torch.zeros_like(gT)
        else:
            ws = torch.gather(w.unsqueeze(1).expand(B, n, m), 2, idx)
            Pw, _ = _center_on_support(ws, mask, safe)
            dc = (Pw - Pg) / reg  # J_j (w - g_j)
            gCT = torch.zeros((B, n, m), dtype=gT.dtype, device=gT.device).scatter_add_(2, idx, dc)
            grad_C = gCT.transpose(-1, -2)
            if bool(forest.any()):
                grad_C = torch.where(forest[:, None, None], torch.zeros_like(grad_C), grad_C)
            grad_C = grad_C.contiguous()
    if need_a:
        grad_a = w
    if need_b:
        ws = torch.gather(w.unsqueeze(1).expand(B, n, m), 2, idx)
        mean_w = torch.where(mask, ws, 0.0).sum(-1) / safe
        grad_b = torch.where(cnt > 0, mean_g - mean_w, 0.0)
    return grad_C, grad_a, grad_b


# ----------------------------------------------------------------------------------------------
# autograd Functions


class _PlanFn(torch.autograd.Function):
    """(C, a, b) -> k-sparse plan; forward = sparse_ot, backward = implicit VJP on the support."""

    @staticmethod
    def forward(C, a, b, cfg):
        sol = _solve(C, a, b, cfg)
        cfg.stash["solution"] = sol
        return sol.plan, sol.idx, sol.val, _regime_tensor(sol, C)

    @staticmethod
    def setup_context(ctx, inputs, output):
        C, _a, _b, cfg = inputs
        _, idx, val, regime = output
        ctx.mark_non_differentiable(idx, val, regime)
        ctx.save_for_backward(idx, val, regime)
        ctx.cfg = cfg
        ctx.m, ctx.n = C.shape[-2], C.shape[-1]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gT, _gi, _gv, _gr):
        idx, val, regime = ctx.saved_tensors
        cfg = ctx.cfg
        need_C, need_a, need_b = ctx.needs_input_grad[:3]
        m, n = ctx.m, ctx.n
        k_one = min(cfg.k, m) == 1
        nonsmooth = regime != _SMOOTH
        if bool(nonsmooth.any()) and (need_a or need_b or not k_one):
            _surrogate("plan", cfg.strict)
        forest = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        row_labels = None
        if not k_one:
            row_labels, forest = _components(idx, val > 0, m, n)
            forest = forest & ~nonsmooth  # a forest support proves T*(a, b) only with marginals met
        gC, ga, gb = _plan_vjp(gT, idx, val, cfg.reg, m, need_C, need_a, need_b, forest,
                               row_labels, k_one)
        return gC, ga, gb, None


class _ValueFn(torch.autograd.Function):
    """(C, a, b) -> optimal value; backward by the envelope theorem (spec §3.8)."""

    @staticmethod
    def forward(C, a, b, cfg):
        sol = _solve(C, a, b, cfg)
        cfg.stash["solution"] = sol
        grads_C = []
        for i, reg_i in enumerate(sol.regimes):
            rel = sol.relaxed[i]
            grads_C.append(rel if (reg_i in ("smooth", "kink") and rel is not None) else sol.plan[i])
        dC = torch.stack(grads_C).to(C.dtype)
        alpha = sol.alpha - sol.alpha.mean(-1, keepdim=True)
        beta = sol.beta - sol.beta.mean(-1, keepdim=True)
        regime = torch.tensor([_UNKNOWN if (r not in ("smooth", "kink") or sol.relaxed[i] is None)
                               else _REGIME_CODE[r] for i, r in enumerate(sol.regimes)],
                              dtype=torch.int64, device=C.device)
        return sol.fun.to(C.dtype), dC, alpha, beta, regime

    @staticmethod
    def setup_context(ctx, inputs, output):
        cfg = inputs[3]
        _, dC, alpha, beta, regime = output
        ctx.mark_non_differentiable(dC, alpha, beta, regime)
        ctx.save_for_backward(dC, alpha, beta, regime)
        ctx.cfg = cfg

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gv, *_):
        dC, alpha, beta, regime = ctx.saved_tensors
        need_C, need_a, need_b = ctx.needs_input_grad[:3]
        if (need_C or need_a or need_b) and bool((regime == _UNKNOWN).any()):
            _surrogate("value", ctx.cfg.strict)
        gC = gv[:, None, None] * dC if need_C else None
        ga = gv[:, None] * alpha if need_a else None
        gb = gv[:, None] * beta if need_b else None
        return gC, ga, gb, None


# ----------------------------------------------------------------------------------------------
# unrolled Adam (method="adam", diff_mode="unroll")


def _diff_semi_dual(alpha, a, b, CT, k, reg):
    """Differentiable (autograd) semi-dual kernel: same arithmetic as ``_kernels.semi_dual_kernel``.

    The top-k selection and the simplex support are piecewise constant; values flow through
    ``t = [x - tau]_+ / gamma`` with ``tau = (sum_{q<=rho} x_(q) - gamma b_j)/rho``.
    Returns (S (B,), grad of -S (B, m), idx (B, n, kk), t (B, n, kk)).
    """
    m = CT.shape[-1]
    X = alpha[:, None, :] - CT  # (B, n, m)
    if k >= m:
        xk, idx = torch.sort(X, dim=-1, descending=True, stable=True)
    else:
        xk, idx = torch.topk(X, k, dim=-1, largest=True, sorted=True)
    kk = xk.shape[-1]
    bb = b[..., None]
    z = reg * bb
    css = torch.cumsum(xk, dim=-1) - z
    r = torch.arange(1, kk + 1, dtype=xk.dtype, device=xk.device)
    rho = (xk * r > css).sum(-1, keepdim=True).clamp(min=1)
    tau = torch.gather(css, -1, rho - 1) / rho.to(xk.dtype)
    t = torch.clamp(xk - tau, min=0.0) / reg
    s = t.sum(-1, keepdim=True)
    t = t * torch.where(s > 0, bb / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
    cmax = (xk * t).sum(-1) - (0.5 * reg) * (t * t).sum(-1)
    S = (alpha * a).sum(-1) - cmax.sum(-1)
    T1 = _scatter_rows(idx, t, m)
    return S, T1 - a, idx, t


_UNROLL_OPTS = {"method", "lr", "max_iter", "tol", "check_every", "x0", "polish", "certify",
                "history", "dense_max", "verbose", "formulation"}


def _adam_unroll(C3, a2, b2, cfg):
    """The Adam solver of spec §3.6 (as in sparse_ot, per-instance freezing included) under autograd."""
    unknown = set(cfg.opts) - _UNROLL_OPTS
    if unknown:
        raise InvalidProblemError(f"diff_mode='unroll': options {sorted(unknown)} are not supported")
    if cfg.opts.get("formulation", "semi-dual") != "semi-dual":
        raise InvalidProblemError("diff_mode='unroll': only formulation='semi-dual' is unrolled")
    B, m, n = C3.shape
    k = min(cfg.k, m)
    reg = cfg.reg
    dtype = C3.dtype
    lr = float(cfg.opts.get("lr", 1e-2))
    max_iter = cfg.opts.get("max_iter")
    max_iter = 20 if max_iter is None else int(max_iter)
    tol = cfg.opts.get("tol")
    tol = (1e-8 if dtype == torch.float64 else 1e-5) if tol is None else float(tol)
    check_every = cfg.opts.get("check_every") or 10
    if not bool(torch.isfinite(C3).all()):
        raise InvalidProblemError("C: non-finite entries")
    sa, sb = a2.sum(-1), b2.sum(-1)
    if bool(((sa - sb).abs() > 1e-8 * sa).any()):
        raise InvalidProblemError("unbalanced marginals: sum(a) != sum(b)")
    b2 = b2 * (sa / sb)[:, None]
    mass = sa.detach()
    CT = C3.transpose(-1, -2)
    x0 = cfg.opts.get("x0")
    if x0 is None:
        z = torch.zeros((B, m), dtype=dtype, device=C3.device)
    else:
        z = _to_torch(x0, C3).reshape(-1, m).expand(B, m).clone()
    z = z - z.mean(-1, keepdim=True)
    S, g, idx, t = _diff_semi_dual(z, a2, b2, CT, k, reg)
    m1 = torch.zeros_like(z)
    v1 = torch.zeros_like(z)
    running = (g.detach().abs().sum(-1) / mass) > tol
    tiny = torch.finfo(dtype).tiny
    it = 0
    while bool(running.any()) and it < max_iter:
        it += 1
        m1 = 0.9 * m1 + 0.1 * g
        v1 = 0.999 * v1 + 0.001 * g * g
        mh = m1 / (1 - 0.9 ** it)
        vh = v1 / (1 - 0.999 ** it)
        step = lr * mh / (torch.sqrt(torch.clamp(vh, min=tiny)) + 1e-8)
        z_new = z - step
        z_new = z_new - z_new.mean(-1, keepdim=True)
        S_new, g_new, idx_new, t_new = _diff_semi_dual(z_new, a2, b2, CT, k, reg)
        act = running
        z = torch.where(act[:, None], z_new, z)
        S = torch.where(act, S_new, S)
        g = torch.where(act[:, None], g_new, g)
        idx = torch.where(act[:, None, None], idx_new, idx)
        t = torch.where(act[:, None, None], t_new, t)
        if it % check_every == 0 or it == max_iter:
            running = running & ((g.detach().abs().sum(-1) / mass) > tol)
    plan = torch.zeros((B, n, m), dtype=dtype, device=C3.device).scatter_add(2, idx, t)
    plan = plan.transpose(-1, -2)
    statuses = [int(Status.MAX_ITER) if bool(r) else int(Status.CONVERGED) for r in running.cpu()]
    cfg.stash["unroll"] = {"alpha": z.detach(), "statuses": statuses, "nit": it}
    return S, plan


# ----------------------------------------------------------------------------------------------
# public functions


def _make_cfg(kind, max_nz, reg, strict, opts, batched, stash):
    return _Config(k=int(max_nz), reg=float(reg), opts=dict(opts), strict=bool(strict), kind=kind,
                   batched=batched, stash=stash if stash is not None else {})


def _core(kind, C, a, b, max_nz, reg, diff_mode, strict, opts, stash=None):
    """Shared body of the plan and value layers: batching, diff_mode dispatch, un-batching."""
    C3, a2, b2, batched = _inputs(C, a, b)
    cfg = _make_cfg(kind, max_nz, reg, strict, opts, batched, stash)
    fn = _PlanFn if kind == "plan" else _ValueFn
    if diff_mode == "unroll":
        val, plan = _adam_unroll(C3, a2, b2, cfg)
        out = plan if kind == "plan" else val
    elif diff_mode == "none":
        with torch.no_grad():
            out = fn.apply(C3.detach(), a2.detach(), b2.detach(), cfg)[0]
    else:
        out = fn.apply(C3, a2, b2, cfg)[0]
    return out if batched else out[0]


def _plan_core(C, a, b, max_nz, reg, diff_mode, strict, opts, stash=None):
    return _core("plan", C, a, b, max_nz, reg, diff_mode, strict, opts, stash)


def _value_core(C, a, b, max_nz, reg, diff_mode, strict, opts, stash=None):
    return _core("value", C, a, b, max_nz, reg, diff_mode, strict, opts, stash)


def _transpose_inputs(C, a, b, axis):
    if axis == "columns":
        return C, a, b
    if axis == "rows":
        return C.transpose(-1, -2), b, a
    raise InvalidProblemError(f"axis: expected 'columns' or 'rows', got {axis!r}")


def sparse_ot_value(C, a=None, b=None, *, max_nz, reg=1.0, axis="columns", diff_mode="envelope",
                    strict=False, **opts):
    r"""Differentiable optimal value of sparsity-constrained OT.

    :math:`V(a, b, C) = \max_\alpha S_k(\alpha)`, the common optimal value of the semi-dual, the
    dual and the k-support-norm relaxation (for ``k = 1``: ``OT(a, b) + (reg/2)||b||^2``).

    Parameters
    ----------
    C : torch.Tensor (m, n) or (B, m, n)
        Cost (floating). Batched costs are solved in one batched :func:`sparse_ot` call.
    a, b : torch.Tensor (m,) / (n,), or (B, m) / (B, n), optional
        Marginals (None: uniform, mass 1); same total mass.
    max_nz : int
        k, the largest number of nonzeros per column (per row with ``axis="rows"``).
    reg : float, default 1.0
        gamma > 0.
    axis : {"columns", "rows"}
    diff_mode : {"envelope", "unroll", "none"}, default "envelope"
        ``envelope``: dV/dC = relaxed optimal plan, dV/da = alpha*, dV/db = beta* (centered);
        ``unroll``: autograd through the Adam iterations (``method="adam"``); ``none``: detached.
    strict : bool, default False
        Raise ``RuntimeError`` in backward instead of warning when the regime is "unknown".
    **opts
        Passed to :func:`optkit.ot.sparse_ot` (``method``, ``tol``, ``max_iter``, ``certify``, ``x0``,
        ...). The value layer defaults to ``certify=True`` (tie LP on CPU copies) and solves
        ``k = 1`` by the exact transport LP on CPU copies when ``method="auto"``.

    Returns
    -------
    torch.Tensor, shape () or (B,)

    Notes
    -----
    Gradient (spec §3.8): dV/dC is the relaxed plan -- the k-sparse plan in the smooth regime,
    the tie-LP plan at a certified kink, the EMD plan for k = 1; the k-sparse plan at a kink is
    *not* the gradient and is used only as a warned surrogate when no certificate is available.
    """
    _check_common(max_nz, reg, opts, diff_mode, _VALUE_DIFF_MODES)
    C, a, b = _transpose_inputs(C, a, b, axis)
    return _value_core(C, a, b, max_nz, reg, diff_mode, strict, opts)


def sparse_ot_plan(C, a=None, b=None, *, max_nz, reg=1.0, axis="columns", diff_mode="implicit",
                   strict=False, **opts):
    r"""Differentiable k-sparse optimal plan of sparsity-constrained OT.

    Parameters
    ----------
    C : torch.Tensor (m, n) or (B, m, n)
    a, b : torch.Tensor, optional
        Marginals (None: uniform, mass 1).
    max_nz : int
        k: at most k nonzeros per column (``axis="columns"``) or per row (``axis="rows"``).
    reg : float, default 1.0
    axis : {"columns", "rows"}
    diff_mode : {"implicit", "unroll", "none"}, default "implicit"
        ``implicit``: VJP by implicit differentiation on the k-sparse support (see module doc);
        ``unroll``: autograd through the Adam iterations (requires ``method="adam"``);
        ``none``: detached output.
    strict : bool, default False
        Raise ``RuntimeError`` in backward at a kink / unconverged solve instead of warning.
    **opts
        Passed to :func:`optkit.ot.sparse_ot`. ``tol=1e-12`` with the default polish gives plans
        accurate to ~1e-15 in the smooth regime (needed for finite-difference checks).

    Returns
    -------
    torch.Tensor (m, n) or (B, m, n)
        The plan, with at most ``max_nz`` nonzeros per column (row).

    Notes
    -----
    Exact zeros for dL/dC are returned on forest supports and for k = 1 (the plan is then
    locally independent of C). At a kink the backward is a straight-through surrogate
    (:class:`SurrogateGradientWarning`).
    """
    _check_common(max_nz, reg, opts, diff_mode, _PLAN_DIFF_MODES)
    if axis == "rows":
        Ct, at, bt = _transpose_inputs(C, a, b, axis)
        return _plan_core(Ct, at, bt, max_nz, reg, diff_mode, strict, opts).transpose(-1, -2)
    _transpose_inputs(C, a, b, axis)  # validates axis
    return _plan_core(C, a, b, max_nz, reg, diff_mode, strict, opts)


# ----------------------------------------------------------------------------------------------
# modules


class SparseOT(nn.Module):
    """Sparsity-constrained OT as a module: ``forward(C, a=None, b=None)`` -> plan or value.

    Parameters
    ----------
    max_nz : int
    reg : float, default 1.0
    output : {"plan", "value"}
    warm_start : bool, default False
        Start each solve from the last solution's alpha when the shapes match (x0).
    axis : {"columns", "rows"}
    diff_mode : str, optional
        Default "implicit" (plan) or "envelope" (value).
    strict : bool, default False
    **opts
        Solver options (:func:`optkit.ot.sparse_ot`).

    Attributes
    ----------
    last_result : SparseOTResult or None
        The solver result of the last forward (None for ``diff_mode="unroll"``).
    """

    def __init__(self, max_nz, reg=1.0, output="plan", warm_start=False, axis="columns",
                 diff_mode=None, strict=False, **opts):
        super().__init__()
        if output not in ("plan", "value"):
            raise InvalidProblemError(f"output: expected 'plan' or 'value', got {output!r}")
        self.max_nz = max_nz
        self.reg = reg
        self.output = output
        self.warm_start = bool(warm_start)
        self.axis = axis
        self.diff_mode = diff_mode or ("implicit" if output == "plan" else "envelope")
        self.strict = strict
        self.opts = opts
        _check_common(max_nz, reg, opts, self.diff_mode,
                      _PLAN_DIFF_MODES if output == "plan" else _VALUE_DIFF_MODES)
        _transpose_inputs(torch.empty(1, 1), None, None, axis)
        self.last_result = None
        self._last_alpha = None
        self._last_key = None

    def reset_warm_start(self):
        self._last_alpha = None
        self._last_key = None

    def forward(self, C, a=None, b=None):
        Ct, at, bt = _transpose_inputs(C, a, b, self.axis)
        opts = dict(self.opts)
        key = (tuple(Ct.shape), Ct.device, Ct.dtype)
        if self.warm_start and self._last_alpha is not None and self._last_key == key:
            opts.setdefault("x0", self._last_alpha)
        stash = {}
        core = _plan_core if self.output == "plan" else _value_core
        out = core(Ct, at, bt, self.max_nz, self.reg, self.diff_mode, self.strict, opts, stash)
        sol = stash.get("solution")
        if sol is not None:
            self.last_result = sol.result
            alpha = sol.alpha
        else:
            self.last_result = None
            alpha = stash["unroll"]["alpha"]
        alpha = alpha.detach()
        self._last_alpha = alpha if Ct.ndim == 3 else alpha[0]
        self._last_key = key
        if self.output == "plan" and self.axis == "rows":
            out = out.transpose(-1, -2)
        return out

    def extra_repr(self):
        return (f"max_nz={self.max_nz}, reg={self.reg}, output={self.output!r}, axis={self.axis!r}, "
                f"diff_mode={self.diff_mode!r}, warm_start={self.warm_start}")


@dataclasses.dataclass
class RouterOutput:
    """Output of :class:`KSparseOTRouter`.

    Attributes
    ----------
    dispatch : bool tensor (G, N, E, capacity)
        ``dispatch[g, i, e, c]``: token i of group g goes to slot c of expert e.
    combine : float tensor (G, N, E, capacity)
        Combine weights at the dispatched slots (0 elsewhere).
    plan : tensor (G, N, E)
        The k-sparse transport plan (tokens x experts).
    metrics : dict
        Balance statistics (Python numbers) and solver status counts.
    """

    dispatch: Any
    combine: Any
    plan: Any
    metrics: dict


def compute_capacity(num_tokens, num_experts, capacity_factor, multiple_of=4):
    """V-MoE ``compute_capacity``: ceil(N capacity_factor / E), rounded up to ``multiple_of``."""
    cap = math.ceil(num_tokens * capacity_factor / num_experts)
    if multiple_of and multiple_of > 1:
        cap = int(math.ceil(cap / multiple_of) * multiple_of)
    return max(cap, 1)


class KSparseOTRouter(nn.Module):
    r"""Mixture-of-experts router by sparsity-constrained OT (Liu, Puigcerver & Blondel, 2023).

    ``x (G, N, dim)`` -> ``logits = Linear(dim, E, bias=False)(x)`` -> ``scores = softmax`` over
    experts (computed in float32, or float64 for float64 inputs) -> cost ``-scores``, marginals
    ``a = 1_N`` (each token has mass 1) and ``b = (N/E) 1_E`` (balanced experts), ``gamma = reg``.
    All G groups are solved in one batched :func:`optkit.ot.sparse_ot` call.

    * ``mode="experts_choose"`` (V-MoE ``TopItemsPerExpert``): column (expert) sparsity with
      ``k = capacity``, so no expert receives more than ``capacity`` tokens.
    * ``mode="tokens_choose"`` (``TopExpertsPerItem``): row (token) sparsity with
      ``k = num_selected_experts``; afterwards each expert keeps at most ``capacity`` tokens,
      by decreasing plan value.

    ``capacity = ceil(N capacity_factor / E)`` rounded up to a multiple of ``capacity_multiple_of``
    (V-MoE ``compute_capacity``). Dispatch: ``plan > 0``, placed in capacity slots in order of
    decreasing plan value per expert.

    Gradients. ``combine="softmax"`` (V-MoE's default ``use_softmax_combine_weights``) puts the
    softmax gates at the dispatched slots: the routing decision (the plan) is piecewise constant
    and, with ``diff_mode="none"`` (default), gradients reach the router weights *only through
    the softmax gates in combine*, exactly as in V-MoE. ``combine="plan"`` uses the plan row-
    normalised (rows sum to 1 at the optimum) and differentiates through the OT solution: it
    needs ``diff_mode="implicit"`` (implicit VJP; exact in the smooth regime, a warned surrogate
    at kinks) or ``"unroll"`` (``method="adam"``).

    Parameters
    ----------
    dim : int
    num_experts : int
    mode : {"experts_choose", "tokens_choose"}
    num_selected_experts : int, default 1
        k for ``tokens_choose`` (1 <= k <= E).
    capacity_factor : float, default 1.05
    capacity_multiple_of : int, default 4
    reg : float, default 1.0
    method : str, default "bfgs"
        ``"adam"`` with ``max_iter=20`` reproduces V-MoE (Adam lr 1e-2, 20 steps).
    max_iter : int, default 100
    tol : float, default 1e-4
    combine : {"softmax", "plan"}
    diff_mode : {"none", "implicit", "unroll"}
    strict : bool, default False
        With ``combine="plan"``: raise in backward at kinks instead of warning.
    **solver_opts
        Further :func:`optkit.ot.sparse_ot` options (e.g. ``lr``, ``certify``).

    Attributes
    ----------
    last_result : SparseOTResult of the last forward (None with ``diff_mode="unroll"``).
    """

    def __init__(self, dim, num_experts, mode="experts_choose", num_selected_experts=1,
                 capacity_factor=1.05, capacity_multiple_of=4, reg=1.0, method="bfgs", max_iter=100,
                 tol=1e-4, combine="softmax", diff_mode="none", strict=False, **solver_opts):
        super().__init__()
        if mode not in ("experts_choose", "tokens_choose"):
            raise InvalidProblemError(f"mode: expected 'experts_choose' or 'tokens_choose', got {mode!r}")
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise InvalidProblemError(f"num_experts: expected an integer >= 1, got {num_experts!r}")
        if mode == "tokens_choose" and not (isinstance(num_selected_experts, int)
                                            and 1 <= num_selected_experts <= num_experts):
            raise InvalidProblemError(
                f"num_selected_experts: expected an integer in [1, num_experts={num_experts}], "
                f"got {num_selected_experts!r}")
        if not (capacity_factor > 0 and math.isfinite(capacity_factor)):
            raise InvalidProblemError(f"capacity_factor: expected a finite number > 0, got {capacity_factor!r}")
        if isinstance(capacity_multiple_of, bool) or not isinstance(capacity_multiple_of, int) or \
                capacity_multiple_of < 1:
            raise InvalidProblemError(
                f"capacity_multiple_of: expected an integer >= 1, got {capacity_multiple_of!r}")
        if combine not in ("softmax", "plan"):
            raise InvalidProblemError(f"combine: expected 'softmax' or 'plan', got {combine!r}")
        if diff_mode not in _PLAN_DIFF_MODES:
            raise InvalidProblemError(f"diff_mode: expected one of {_PLAN_DIFF_MODES}, got {diff_mode!r}")
        if combine == "plan" and diff_mode == "none":
            raise InvalidProblemError(
                "combine='plan' differentiates through the OT plan: use diff_mode='implicit' "
                "(or 'unroll' with method='adam')")
        _check_common(1, reg, dict(solver_opts, method=method), diff_mode, _PLAN_DIFF_MODES)
        self.dense = nn.Linear(dim, num_experts, bias=False)
        self.num_experts = num_experts
        self.mode = mode
        self.num_selected_experts = num_selected_experts
        self.capacity_factor = capacity_factor
        self.capacity_multiple_of = capacity_multiple_of
        self.reg = reg
        self.method = method
        self.max_iter = max_iter
        self.tol = tol
        self.combine = combine
        self.diff_mode = diff_mode
        self.solver_opts = solver_opts
        self.strict = bool(strict)
        self.last_result = None

    def compute_capacity(self, num_tokens):
        return compute_capacity(num_tokens, self.num_experts, self.capacity_factor,
                                self.capacity_multiple_of)

    def forward(self, x):
        if x.ndim != 3:
            raise InvalidProblemError(f"x: expected shape (G, N, dim), got {tuple(x.shape)}")
        logits = self.dense(x)
        sdtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        scores = torch.softmax(logits.to(sdtype), dim=-1)  # (G, N, E)
        _G, N, E = scores.shape
        capacity = self.compute_capacity(N)
        a = torch.ones(N, dtype=sdtype, device=x.device)
        b = torch.full((E,), N / E, dtype=sdtype, device=x.device)
        cost = -scores
        if self.diff_mode == "none":
            cost = cost.detach()
        if self.mode == "experts_choose":
            axis, k = "columns", capacity
        else:
            axis, k = "rows", self.num_selected_experts
        opts = dict(self.solver_opts, method=self.method, max_iter=self.max_iter, tol=self.tol)
        stash = {}
        if axis == "rows":
            plan = _plan_core(cost.transpose(-1, -2), b, a, k, self.reg, self.diff_mode,
                              self.strict, opts, stash).transpose(-1, -2)
        else:
            plan = _plan_core(cost, a, b, k, self.reg, self.diff_mode, self.strict, opts, stash)
        sol = stash.get("solution")
        self.last_result = sol.result if sol is not None else None
        statuses = sol.statuses if sol is not None else stash["unroll"]["statuses"]
        dispatch, _slots_used = _dispatch(plan.detach(), capacity)
        if self.combine == "softmax":
            weights = scores
        else:
            rs = plan.sum(-1, keepdim=True)
            weights = plan / torch.clamp(rs, min=torch.finfo(plan.dtype).tiny)
        combine = dispatch.to(weights.dtype) * weights.unsqueeze(-1)
        metrics = _router_metrics(plan.detach(), dispatch, statuses, capacity, N, E)
        return RouterOutput(dispatch=dispatch, combine=combine, plan=plan, metrics=metrics)

    def extra_repr(self):
        return (f"num_experts={self.num_experts}, mode={self.mode!r}, k={self.num_selected_experts}, "
                f"capacity_factor={self.capacity_factor}, reg={self.reg}, method={self.method!r}, "
                f"combine={self.combine!r}, diff_mode={self.diff_mode!r}")


def _dispatch(plan, capacity):
    """(G, N, E) plan -> (G, N, E, capacity) bool; slots by decreasing plan value per expert."""
    G, N, E = plan.shape
    order = torch.argsort(-plan, dim=1, stable=True)  # tokens by decreasing value, per expert
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=plan.device).view(1, N, 1).expand(G, N, E))
    keep = (plan > 0) & (rank < capacity)
    slots = torch.arange(capacity, device=plan.device)
    dispatch = keep.unsqueeze(-1) & (rank.unsqueeze(-1) == slots)
    return dispatch, keep


def _router_metrics(plan, dispatch, statuses, capacity, N, E):
    routed = dispatch.any(-1)  # (G, N, E)
    per_expert = routed.sum(1).to(torch.float64)  # (G, E)
    per_item = routed.sum(2).to(torch.float64)  # (G, N)
    mass = plan.sum(1).to(torch.float64)  # (G, E)
    row = plan.sum(2).to(torch.float64)  # (G, N)
    counts: dict = {}
    for s in statuses:
        name = Status(s).name
        counts[name] = counts.get(name, 0) + 1
    return {
        "capacity": capacity,
        "num_items_per_expert_min": float(per_expert.min()),
        "num_items_per_expert_max": float(per_expert.max()),
        "num_items_per_expert_mean": float(per_expert.mean()),
        "num_experts_per_item_min": float(per_item.min()),
        "num_experts_per_item_max": float(per_item.max()),
        "num_experts_per_item_mean": float(per_item.mean()),
        "expert_mass_min": float(mass.min()),
        "expert_mass_max": float(mass.max()),
        "expert_mass_target": N / E,
        "token_mass_residual_max": float((row - 1.0).abs().max()),
        "dropped_fraction": float((per_item == 0).to(torch.float64).mean()),
        "dropped_by_capacity": int(((plan > 0) & ~routed).sum()),
        "status_counts": counts,
    }
