"""Kink certificate for the semi-dual (ot.md §3.5).

At a kink the k-sparse plan read off alpha misses the row marginal, yet alpha may be optimal: the
optimal plan is then a convex combination of the plans of the tied top-k selections. We look for
such a combination with a small LP (HiGHS) over the tied entries and accept alpha when the combined
("relaxed") plan meets the row marginal and closes the duality gap with the k-support relaxation.
For k = 1 this is complementary slackness of the transport LP on the tied edges.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from . import _kernels

TIE_TOLS = (1e-12, 1e-10, 1e-8, 1e-6)


def certify(alpha, a, b, C, max_nz, reg, tie_tol=None, tol=1e-8):
    """Public wrapper: certify optimality of ``alpha`` (numpy, one instance).

    Returns a dict with ``accepted`` (bool), ``relaxed_plan`` (m, n), ``plan_indices`` /
    ``plan_values`` (the k-sparse plan chosen from the LP), ``residual`` (row L1 / mass), ``gap``
    (relative duality gap) and ``tie_tol`` (the rung used), or None when no column has ties.
    """
    rungs = TIE_TOLS if tie_tol is None else (float(tie_tol),)
    return certify_kink(np.asarray(alpha, float), np.asarray(a, float), np.asarray(b, float),
                        np.asarray(C, float), int(max_nz), float(reg), tol=tol, rungs=rungs)


def certify_kink(alpha, a, b, C, k, reg, tol=1e-8, rungs=TIE_TOLS):
    m, n = C.shape
    k = min(k, m)
    mass = float(a.sum())
    scale = max(1.0, float(np.abs(C).max()))
    S, _, idx, val = _kernels.semi_dual_kernel(alpha[None], a[None], b[None],
                                               np.ascontiguousarray(C.T)[None], k, reg)
    S = float(S[0])
    idx, val = idx[0], val[0]  # (n, k)
    X = alpha[:, None] - C  # (m, n)
    if k < m:
        xk = -np.partition(-X, k - 1, axis=0)[k - 1]  # k-th largest per column
    else:
        xk = X.min(axis=0)
    last = None
    for rung in rungs:
        tie = rung * scale
        A = X > xk[None, :] + tie
        Bt = np.abs(X - xk[None, :]) <= tie
        nA = A.sum(axis=0)
        nj = k - nA
        sel_tied = Bt[idx, np.arange(n)[:, None]]  # (n, k): selected rows that are tied
        cnt = sel_tied.sum(axis=1)
        v = np.where(cnt > 0, (val * sel_tied).sum(axis=1) / np.maximum(cnt, 1), 0.0)
        nB = Bt.sum(axis=0)
        tied = (nB > nj) & (nj >= 1) & (v > 0)
        fixed = np.zeros((m, n))
        keep = ~(sel_tied & tied[:, None])
        np.add.at(fixed, (idx[keep], np.nonzero(keep)[0]), val[keep])
        cols = np.flatnonzero(tied)
        if cols.size == 0:
            T_rel = _kernels.plan_to_dense(idx[None], val[None], m)[0]
            z_rows = z_cols = z = np.zeros(0)
        else:
            z_rows, z_cols = np.nonzero(Bt[:, cols])
            z_cols = cols[z_cols]
            nz = z_rows.size
            # variables: z (nz), p (m), q (m); rows: fixed_rowsum + Z - a = p - q; column sums of z
            row_part = sp.csr_matrix((np.ones(nz), (z_rows, np.arange(nz))), shape=(m, nz))
            eye = sp.identity(m, format="csr")
            A_rows = sp.hstack([row_part, -eye, eye])
            col_pos = np.searchsorted(cols, z_cols)
            A_cols = sp.hstack([sp.csr_matrix((np.ones(nz), (col_pos, np.arange(nz))),
                                              shape=(cols.size, nz)),
                                sp.csr_matrix((cols.size, 2 * m))])
            A_eq = sp.vstack([A_rows, A_cols]).tocsr()
            b_eq = np.concatenate([a - fixed.sum(axis=1), nj[cols] * v[cols]])
            cost = np.concatenate([np.zeros(nz), np.ones(2 * m)])
            bounds = np.column_stack([np.concatenate([np.zeros(nz), np.zeros(2 * m)]),
                                      np.concatenate([v[z_cols], np.full(2 * m, np.inf)])])
            lp = linprog(cost, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
            if lp.status != 0:
                continue
            z = lp.x[:nz]
            T_rel = fixed.copy()
            np.add.at(T_rel, (z_rows, z_cols), z)
        residual = float(np.abs(T_rel.sum(axis=1) - a).sum()) / mass
        P = float(_kernels.relaxed_primal_value(T_rel, C, k, reg))
        # relative to the value itself: OT values of normalised histograms are often << 1, where
        # max(1, |S|) would make the test absolute and accept non-optimal assignments
        gap = (P - S) / max(abs(S), 1e-300)
        last = dict(accepted=residual <= tol and gap <= tol, relaxed_plan=T_rel, residual=residual,
                    gap=gap, tie_tol=rung, value=S)
        if last["accepted"]:
            last["plan_indices"], last["plan_values"] = _pick_plan(
                idx, val, sel_tied, tied, cols, z_rows, z_cols, z, nj, v)
            return last
    return last


def _pick_plan(idx, val, sel_tied, tied, cols, z_rows, z_cols, z, nj, v):
    """In tied columns keep the n_j tied rows with the largest LP mass (deterministic)."""
    idx = idx.copy()
    val = val.copy()
    for j in cols:
        here = z_cols == j
        rows = z_rows[here]
        order = np.lexsort((rows, -z[here]))[: nj[j]]
        slots = np.flatnonzero(sel_tied[j])
        idx[j, slots] = rows[order]
        val[j, slots] = v[j]
    return idx, val
