"""Exact semi-dual evaluation on a few candidate rows per column (safe screening).

A full evaluation of the semi-dual reads the whole (n, m) cost matrix, but only the top-k entries
of each column of X = alpha 1^T - C enter the value, the gradient and the plan. We keep, for every
column j, the L > k rows with the largest x_ij at a reference point alpha_ref, and the margin

    margin_j = x_(k)j - x_(L+1)j   (k-th largest minus the best row left out).

Moving alpha by delta changes every x_ij by at most ||delta||_inf, so while
2 ||alpha - alpha_ref||_inf < margin_j, the top-k of column j over all m rows lies among its L
candidates and the restricted evaluation is *exactly* the full one (ties included: candidates
are kept in increasing row order, so the lowest-index rule is unchanged). Columns that fail the
test are refreshed from their full rows; when many fail, everything is refreshed. Near the
optimum alpha moves little and an evaluation costs O(nL) instead of O(nm).
"""

from __future__ import annotations

import numpy as np

from .._backend import get_torch, is_torch
from ..linalg.projections import _topk_desc
from ._kernels import _sparse_simplex_rows, plan_row_sums, semi_dual_kernel

#: refresh every column when more than this fraction fails the margin test
FULL_REFRESH_FRACTION = 0.05
#: consecutive evaluations far from the reference before the candidates are rebuilt there
MISSES_BEFORE_REFRESH = 3


def default_candidates(k: int, m: int) -> int:
    """L used by ``screening="auto"``; 0 disables screening (too few rows to gain from it)."""
    L = max(2 * k + 3, 7)
    return L if 4 * (L + 1) <= m else 0


class ScreenedSemiDual:
    """Callable ``(alpha) -> (S, grad, idx, val)`` equal to ``semi_dual_kernel`` (batched)."""

    def __init__(self, a, b, CT, k, reg, L, xp, work=None):
        self.a, self.b, self.CT, self.k, self.reg, self.L, self.xp = a, b, CT, k, reg, L, xp
        self.work = work
        self.cand = None
        self.misses = 0
        self.plain_evals = 0
        self.full_refreshes = 0
        self.column_refreshes = 0

    # -- candidate maintenance ---------------------------------------------------------------
    def _top(self, X):
        vals, idx = _topk_desc(X, self.L + 1, overwrite=True)
        margin = vals[..., self.k - 1] - vals[..., self.L]
        cand = idx[..., : self.L]
        cand = get_torch().sort(cand, dim=-1).values if is_torch(cand) else np.sort(cand, axis=-1)
        return cand, margin

    def _refresh_all(self, z):
        X = self.work
        if is_torch(z):
            get_torch().sub(z[:, None, :], self.CT, out=X)
        else:
            np.subtract(z[:, None, :], self.CT, out=X)
        self.cand, self.margin = self._top(X)
        self.Cc = _gather_last(self.CT, self.cand)
        self.ref = z * 1.0
        self.full_refreshes += 1

    def _refresh_columns(self, z, bad, drift):
        if is_torch(bad):
            bi, ji = get_torch().nonzero(bad, as_tuple=True)
        else:
            bi, ji = np.nonzero(bad)
        X = z[bi] - self.CT[bi, ji]  # (F, m): full rows of the failing columns only
        cand, margin = self._top(X)
        self.cand[bi, ji] = cand
        self.Cc[bi, ji] = _gather_last(self.CT[bi, ji], cand)
        # stored relative to alpha_ref (triangle inequality): valid while 2|alpha - ref| < margin
        self.margin[bi, ji] = margin - 2.0 * drift[bi]
        self.column_refreshes += int(bi.shape[0])

    # -- evaluation --------------------------------------------------------------------------
    def __call__(self, z):
        xp = self.xp
        B, n = self.CT.shape[0], self.CT.shape[1]
        if self.cand is None:
            self._refresh_all(z)
        else:
            drift = xp.max(xp.abs(z - self.ref), axis=-1)
            bad = 2.0 * drift[:, None] >= self.margin
            nbad = int(xp.sum(xp.astype(bad, xp.int64)))
            if nbad > FULL_REFRESH_FRACTION * B * n:
                # far from the reference (typically a line-search trial): a plain evaluation is
                # cheaper than a refresh; re-centre only once the iterates stay away
                self.misses += 1
                if self.misses < MISSES_BEFORE_REFRESH:
                    self.plain_evals += 1
                    return semi_dual_kernel(z, self.a, self.b, self.CT, self.k, self.reg,
                                            work=self.work)
                self._refresh_all(z)
            elif nbad:
                self._refresh_columns(z, bad, drift)
        self.misses = 0
        zc = _gather_rows(z, self.cand)
        Xc = zc - self.Cc
        idx_l, val, cmax = _sparse_simplex_rows(Xc, self.b, min(self.k, self.L), self.reg, xp,
                                                overwrite=True)
        idx = _gather_last(self.cand, idx_l)
        S = xp.sum(z * self.a, axis=-1) - xp.sum(cmax, axis=-1)
        grad = self.a - plan_row_sums(idx, val, self.a.shape[-1])
        return S, grad, idx, val


def _gather_last(arr, idx):
    """arr[..., idx] along the last axis with matching leading dims."""
    if is_torch(arr):
        return arr.gather(-1, idx)
    return np.take_along_axis(arr, idx, axis=-1)


def _gather_rows(z, cand):
    """z[b, cand[b, j, l]] for z (B, m) and cand (B, n, L)."""
    B, n, L = cand.shape
    if is_torch(z):
        return z.gather(1, cand.reshape(B, n * L)).reshape(B, n, L)
    return np.take_along_axis(z, cand.reshape(B, n * L), axis=1).reshape(B, n, L)
