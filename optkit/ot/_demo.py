"""`optkit demo` tour of optkit.ot (a few seconds)."""

import time

import numpy as np


def _clouds(n, seed=0):
    rs = np.random.RandomState(seed)
    xs, xt = rs.randn(n, 2), rs.randn(n, 2) + (2, 1)
    C = ((xs[:, None] - xt[None]) ** 2).sum(-1)
    return C / C.max()


def run():
    from scipy.optimize import linprog

    from optkit.ot import sparse_ot

    n = 200
    C = _clouds(n)
    a = np.full(n, 1.0 / n)
    print(f"2-D Gaussian clouds, n = m = {n}, squared distances, reg = 1")
    print(f"{'max_nz':>6} {'status':>10} {'regime':>7} {'value':>12} {'<T,C>':>10} "
          f"{'nnz':>5} {'max col nnz':>11} {'row resid':>9} {'time':>7}")
    for k in (1, 2, 5, n):
        t0 = time.perf_counter()
        res = sparse_ot(a, a, C, max_nz=k, reg=1.0)
        dt = time.perf_counter() - t0
        print(f"{k:>6} {res.status.name:>10} {res.regime:>7} {res.fun:12.8f} {res.primal_cost:10.6f} "
              f"{res.nnz:>5} {res.extra['col_nnz_max']:>11} {res.marginal_residual[0]:9.1e} {dt:6.2f}s")
    # k = 1 identity: value = exact OT + (reg/2)||b||^2, checked against a HiGHS LP solve here
    A = np.vstack([np.kron(np.eye(n), np.ones(n)), np.kron(np.ones(n), np.eye(n))])
    lp = linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([a, a]), bounds=(0, None), method="highs")
    res = sparse_ot(a, a, C, max_nz=1, reg=1.0, method="bfgs")
    print(f"k = 1 by weak-Wolfe BFGS: value - reg/2 ||b||^2 = {res.fun - 0.5 * a @ a:.10f}; "
          f"exact OT (HiGHS) = {lp.fun:.10f}  [{res.status.name}, {res.nit} iterations]")
    try:
        import torch
    except ImportError:
        print("(torch not installed: skipping the batched torch example)")
        return
    Cb = torch.rand(8, 32, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    # the kink certificate is off by default on torch (its LP runs on the CPU); ask for it here
    res = sparse_ot(None, None, Cb, max_nz=3, reg=0.5, certify=True)
    dt = time.perf_counter() - t0
    nnz_max = int((res.plan > 0).sum(-2).max())
    print(f"torch batch of 8 problems (32 x 24, k = 3) in one call: {int((res.statuses == 0).sum())}/8 "
          f"converged (regimes {sorted(set(res.regime))}), max column nnz {nnz_max}, "
          f"{dt:.2f} s on {res.device}")
